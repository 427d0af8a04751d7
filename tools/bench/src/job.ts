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
  /**
   * The read-bandwidth probe (`buildProbe`), run on 2 threads before each decode and after every
   * `PROBE_EVERY` of its tokens (the decode's clock stopped meanwhile); absent: not run.
   */
  readonly bandwidthProbe?: string;
}

/**
 * The 2-thread read bandwidth measured during the decode of run `run`, after a slice of `tokens` decoded tokens that took
 * `ms` (the clock stopped while the probes run); the first probe of a run comes before its first slice (0 tokens).
 */
export interface DecodeProbe extends TwoThreadBandwidth {
  readonly run: number;
  readonly tokens: number;
  readonly ms: number;
}

/** Decode tokens between two bandwidth probes. */
export const PROBE_EVERY = 16;

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

/** Runs the job's bandwidth probe during each decode (the runtime idle meanwhile) and keeps what it measured. */
export class DecodeProbes {
  readonly list: DecodeProbe[] = [];
  constructor(private readonly exe: string | undefined) {}
  take(run: number, tokens: number, ms: number): void {
    if (!this.exe) return;
    const b = probeTwoThreads(this.exe);
    if (b) this.list.push({ run, tokens, ms, ...b });
  }
  /** The clock of one decode, probing between its slices (`now`: the time source, ms). */
  clock(run: number, now: () => number = () => performance.now()): DecodeClock {
    return new DecodeClock(this, run, now);
  }
}

/**
 * The clock of a decode that probes the read bandwidth before its first token is timed and after every `PROBE_EVERY`
 * tokens: the bandwidth a virtual machine's two cores get can double or halve within seconds, so decode is
 * compared with what the memory gave while it ran. The probes' own time is left out of the decode's.
 */
export class DecodeClock {
  private start = 0;
  private paused = 0;
  private sliceStart = 0;
  private sliceTokens = 0;
  constructor(
    private readonly probes: DecodeProbes,
    private readonly run: number,
    private readonly now: () => number,
  ) {}
  /** After the first token (which ends prefill): probe, then start the clock. */
  begin(): void {
    this.probes.take(this.run, 0, 0);
    this.start = this.now();
    this.sliceStart = this.start;
  }
  /** After each decoded token. */
  token(): void {
    if (++this.sliceTokens >= PROBE_EVERY) this.cut(this.now());
  }
  /** After the last token: the decode's wall time without the probes (a last probe closes a partial slice). */
  end(): number {
    const t = this.now();
    const ms = t - this.start - this.paused;
    if (this.sliceTokens > 0) this.cut(t);
    return ms;
  }
  private cut(t: number): void {
    this.probes.take(this.run, this.sliceTokens, t - this.sliceStart);
    const resumed = this.now();
    this.paused += resumed - t;
    this.sliceStart = resumed;
    this.sliceTokens = 0;
  }
}
