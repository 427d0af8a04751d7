import { probeTwoThreads, type TwoThreadBandwidth } from './bandwidth';

/** What the parent passes to a measuring child process, and what the child reports back (JSON files). */
export interface Job {
  /** mnemo: the Hugging Face folder; llama.cpp: the GGUF file. */
  readonly model: string;
  readonly prefillPrompt: readonly number[];
  readonly ttftPrompt: readonly number[];
  readonly decodeTokens: number;
  readonly agreeTokens: number;
  readonly runs: number;
  /**
   * Epoch ms after which no further repeat of a measurement is started (each is done at least once): keeps a default
   * run bounded when a runtime is slow. null for no limit.
   */
  readonly deadline: number | null;
  readonly threads: number;
  /** mnemo only: the backend to load the model on (`native`, `wasm`). */
  readonly backend?: string;
  /** Folder for the prompt-cache file. */
  readonly scratchDir: string;
  readonly outFile: string;
  /** llama.cpp only: where node-llama-cpp is installed, the context size, and mnemo's greedy tokens to teacher-force. */
  readonly peerDir?: string;
  readonly contextSize?: number;
  readonly referenceTokens?: readonly number[];
  /** The read-bandwidth probe (`buildProbe`), run on 2 threads right before and after each decode; absent: not run. */
  readonly bandwidthProbe?: string;
}

/** The 2-thread read bandwidth measured right before (`at: 'before'`) or after a decode of run `run`. */
export interface DecodeProbe extends TwoThreadBandwidth {
  readonly run: number;
  readonly at: 'before' | 'after';
}

export interface RunFigures {
  readonly prefillTps: number;
  readonly decodeTps: number;
  /** CPU time / wall time of the process during prefill and decode: cores actually busy. */
  readonly prefillCores: number;
  readonly decodeCores: number;
  readonly tokens: number[];
}

export interface ChildResult {
  readonly runtime: 'mnemo' | 'llama.cpp';
  readonly version: string;
  readonly loadMs: number;
  readonly runs: RunFigures[];
  readonly ttftUncachedMs: number[];
  /** Prompt-cache file of the first n - 1 prompt tokens: load it, then compute the last token. */
  readonly ttftCachedMs: number[] | null;
  readonly cacheNote: string;
  readonly cacheFileBytes: number | null;
  /** Whether the first token from the cache equals the first token without it (every cached run). */
  readonly cachedSameToken: boolean | null;
  readonly peakRssBytes: number;
  readonly threadsRequested: number;
  /** What the runtime says it uses (llama.cpp: context.currentThreads; mnemo: the backend's thread count). */
  readonly threadsReported: number | null;
  readonly threadsNote: string;
  /** Teacher-forced agreement (llama.cpp child only): positions where its greedy token equals mnemo's. */
  readonly teacherForcedAgree?: number | null;
  readonly kvBytesPerToken: number;
  /** mnemo only: the backend and arithmetic it ran with (`native`, `native-f32+int8a`, ...). */
  readonly backend?: string;
  readonly numerics?: string;
  /** The bandwidth probes run next to the decodes (none when the job had no probe or it failed). */
  readonly decodeProbes?: DecodeProbe[];
  readonly notes: string[];
}

/** Whether to start repeat `r` (0-based) of a measurement whose last repeat took `lastMs`. */
export function another(job: Job, r: number, lastMs: number): boolean {
  if (r >= job.runs) return false;
  return r === 0 || job.deadline === null || Date.now() + lastMs <= job.deadline;
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Cores busy between two `process.cpuUsage()` readings over `wallMs`. */
export function coresBusy(a: NodeJS.CpuUsage, b: NodeJS.CpuUsage, wallMs: number): number {
  const cpuMs = (b.user - a.user + (b.system - a.system)) / 1000;
  return wallMs > 0 ? cpuMs / wallMs : 0;
}

/** Runs the job's bandwidth probe next to each decode (the runtime idle meanwhile) and keeps what it measured. */
export class DecodeProbes {
  readonly list: DecodeProbe[] = [];
  constructor(private readonly exe: string | undefined) {}
  take(run: number, at: 'before' | 'after'): void {
    if (!this.exe) return;
    const b = probeTwoThreads(this.exe);
    if (b) this.list.push({ run, at, ...b });
  }
}
