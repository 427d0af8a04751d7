/**
 * Measures llama.cpp through node-llama-cpp in its own process: node dist/child-peer.js <job.json>. The same
 * measurements as child-mnemo, on the GGUF file of the same weights; the prompt cache is llama.cpp's own sequence
 * state file (saveStateToFile / loadStateFromFile).
 */
import { readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  another,
  type ChildResult,
  coresBusy,
  type DecodeClock,
  DecodeProbes,
  type Job,
  type RunFigures,
} from './job';

const job = JSON.parse(readFileSync(process.argv[2]!, 'utf8')) as Job;
const log = (msg: string) => process.stderr.write(`    [llama.cpp] ${msg}\n`);

// The parts of node-llama-cpp's API used here (it is installed outside the workspace, so typed by hand).
type Token = number;
interface ControlledOutput {
  next: { token?: Token | null };
}
type ControlledInput =
  | Token
  | [Token, { generateNext?: { token?: boolean; options?: { temperature?: number } } }];
interface Sequence {
  readonly nextTokenIndex: number;
  clearHistory(): Promise<void>;
  eraseContextTokenRanges(ranges: { start: number; end: number }[]): Promise<void>;
  evaluate(
    tokens: Token[],
    options?: { temperature?: number },
  ): AsyncGenerator<Token, void, undefined | Token | Token[]>;
  controlledEvaluate(input: ControlledInput[]): Promise<Array<undefined | ControlledOutput>>;
  saveStateToFile(path: string): Promise<{ fileSize: number }>;
  loadStateFromFile(path: string, accept: { acceptRisk: true }): Promise<void>;
}
interface Context {
  readonly currentThreads: number;
  readonly idealThreads: number;
  readonly contextSize: number;
  readonly batchSize: number;
  readonly flashAttention: boolean;
  getSequence(): Sequence;
  dispose(): Promise<void>;
}
interface Model {
  createContext(opts: {
    contextSize: number;
    batchSize: number;
    threads: number;
    sequences: number;
  }): Promise<Context>;
  dispose(): Promise<void>;
}
interface Llama {
  readonly cpuMathCores: number;
  readonly maxThreads: number;
  readonly buildType: string;
  readonly systemInfo: string;
  loadModel(opts: { modelPath: string }): Promise<Model>;
  dispose(): Promise<void>;
}
interface NodeLlamaCpp {
  getLlama(opts: {
    gpu: false;
    build: 'never';
    logLevel: 'error' | 'warn';
    progressLogs: boolean;
  }): Promise<Llama>;
}

interface Gen extends RunFigures {
  readonly ttftMs: number;
}

async function gen(
  seq: Sequence,
  tokens: readonly number[],
  maxTokens: number,
  startedAt?: number,
  /** Decode's clock (probing the read bandwidth between slices of the decode); a plain clock without. */
  clock: DecodeClock = new DecodeProbes(undefined).clock(0),
): Promise<Gen> {
  const t0 = startedAt ?? performance.now();
  const c0 = process.cpuUsage();
  let tPrefilled = 0;
  let cFirst = c0;
  const out: number[] = [];
  for await (const t of seq.evaluate([...tokens], { temperature: 0 })) {
    if (out.length === 0) {
      tPrefilled = performance.now();
      clock.begin();
      cFirst = process.cpuUsage();
    } else clock.token();
    out.push(t);
    if (out.length >= maxTokens) break;
  }
  const cEnd = process.cpuUsage();
  const decodeMs = clock.end();
  const prefillMs = tPrefilled - t0;
  return {
    prefillTps: tokens.length / (prefillMs / 1000),
    decodeTps: out.length > 1 ? (out.length - 1) / (decodeMs / 1000) : 0,
    prefillCores: coresBusy(c0, cFirst, prefillMs),
    decodeCores: out.length > 1 ? coresBusy(cFirst, cEnd, decodeMs) : 0,
    tokens: out,
    ttftMs: prefillMs,
  };
}

async function main(): Promise<void> {
  const notes: string[] = [];
  const peerDir = job.peerDir!;
  const pkgPath = join(peerDir, 'node_modules', 'node-llama-cpp', 'package.json');
  const version = (JSON.parse(readFileSync(pkgPath, 'utf8')) as { version: string }).version;
  const entry = pathToFileURL(join(peerDir, 'node_modules', 'node-llama-cpp', 'dist', 'index.js')).href;
  const nlc = (await import(entry)) as NodeLlamaCpp;
  const llama = await nlc.getLlama({ gpu: false, build: 'never', logLevel: 'error', progressLogs: false });
  const t0 = performance.now();
  const model = await llama.loadModel({ modelPath: job.model });
  const context = await model.createContext({
    contextSize: job.contextSize!,
    batchSize: 512,
    threads: job.threads,
    sequences: 1,
  });
  const loadMs = performance.now() - t0;
  const seq = context.getSequence();
  log(
    `loaded in ${(loadMs / 1000).toFixed(1)} s (${llama.buildType} build, context ${context.contextSize}, batch ${context.batchSize}, threads ${context.currentThreads}, flash attention ${context.flashAttention})`,
  );

  await gen(seq, job.prefillPrompt.slice(0, 32), 4);
  await seq.clearHistory();

  const runs: RunFigures[] = [];
  const probes = new DecodeProbes(job.bandwidthProbe);
  let last = 0;
  for (let r = 0; another(job, r, last); r++) {
    const started = performance.now();
    const g = await gen(seq, job.prefillPrompt, job.decodeTokens + 1, undefined, probes.clock(r));
    await seq.clearHistory();
    runs.push({
      prefillTps: g.prefillTps,
      decodeTps: g.decodeTps,
      prefillCores: g.prefillCores,
      decodeCores: g.decodeCores,
      tokens: g.tokens.slice(0, Math.max(job.agreeTokens, 1)),
    });
    log(`run ${r + 1}: prefill ${g.prefillTps.toFixed(1)} tok/s, decode ${g.decodeTps.toFixed(2)} tok/s`);
    last = performance.now() - started;
  }

  // Teacher forcing: llama.cpp's greedy next token after the prompt and each of mnemo's tokens.
  let teacherForcedAgree: number | null = null;
  if (job.referenceTokens && job.referenceTokens.length > 0) {
    const ref = job.referenceTokens.slice(0, job.agreeTokens);
    const input: ControlledInput[] = [...job.prefillPrompt.slice(0, -1)];
    const forced = [job.prefillPrompt[job.prefillPrompt.length - 1]!, ...ref.slice(0, -1)];
    for (const t of forced) input.push([t, { generateNext: { token: true, options: { temperature: 0 } } }]);
    const outs = await seq.controlledEvaluate(input);
    await seq.clearHistory();
    teacherForcedAgree = 0;
    for (let i = 0; i < ref.length; i++) {
      const o = outs[job.prefillPrompt.length - 1 + i];
      if (o?.next.token === ref[i]) teacherForcedAgree++;
    }
  }

  const ttftUncachedMs: number[] = [];
  let firstToken = -1;
  last = 0;
  for (let r = 0; another(job, r, last); r++) {
    const started = performance.now();
    await seq.clearHistory();
    const g = await gen(seq, job.ttftPrompt, 1);
    ttftUncachedMs.push(g.ttftMs);
    firstToken = g.tokens[0]!;
    log(`uncached TTFT (${job.ttftPrompt.length} tokens): ${g.ttftMs.toFixed(0)} ms`);
    last = performance.now() - started;
  }

  const stateFile = join(job.scratchDir, 'llama-state.bin');
  let ttftCachedMs: number[] | null = null;
  let cacheFileBytes: number | null = null;
  let cachedSameToken: boolean | null = null;
  let cacheNote = '';
  try {
    const keep = job.ttftPrompt.length - 1;
    if (seq.nextTokenIndex > keep)
      await seq.eraseContextTokenRanges([{ start: keep, end: seq.nextTokenIndex }]);
    if (seq.nextTokenIndex !== keep)
      throw new Error(`the sequence holds ${seq.nextTokenIndex} tokens, not ${keep}`);
    await seq.saveStateToFile(stateFile);
    cacheFileBytes = statSync(stateFile).size;
    ttftCachedMs = [];
    cachedSameToken = true;
    for (let r = 0; r < job.runs; r++) {
      await seq.clearHistory();
      const start = performance.now();
      await seq.loadStateFromFile(stateFile, { acceptRisk: true });
      if (seq.nextTokenIndex !== keep)
        throw new Error(`the state file restored ${seq.nextTokenIndex} tokens`);
      const g = await gen(seq, job.ttftPrompt.slice(keep), 1, start);
      if (g.tokens[0] !== firstToken) cachedSameToken = false;
      ttftCachedMs.push(g.ttftMs);
      log(`cached TTFT: ${g.ttftMs.toFixed(0)} ms`);
    }
    cacheNote = `LlamaContextSequence.saveStateToFile / loadStateFromFile (${keep} tokens); TTFT counts loading the file`;
  } catch (e) {
    cacheNote = `state save/load failed: ${(e as Error).message}`;
    notes.push(cacheNote);
    ttftCachedMs = null;
  } finally {
    rmSync(stateFile, { force: true });
  }

  const result: ChildResult = {
    runtime: 'llama.cpp',
    version: `node-llama-cpp ${version}`,
    loadMs,
    runs,
    ttftUncachedMs,
    ttftCachedMs,
    cacheNote,
    cacheFileBytes,
    cachedSameToken,
    peakRssBytes: process.resourceUsage().maxRSS * 1024,
    threadsRequested: job.threads,
    threadsReported: context.currentThreads,
    threadsNote: `context threads ${context.currentThreads} (ideal ${context.idealThreads}), cpuMathCores ${llama.cpuMathCores}; KV cache f16, flash attention ${context.flashAttention}, batch ${context.batchSize}, context ${context.contextSize}; model file mmapped`,
    teacherForcedAgree,
    kvBytesPerToken: 0,
    decodeProbes: probes.list,
    notes,
  };
  writeFileSync(job.outFile, JSON.stringify(result));
  await context.dispose();
  await model.dispose();
  await llama.dispose();
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
