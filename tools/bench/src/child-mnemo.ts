/**
 * Measures mnemo in its own process (so its peak RSS is its own): node dist/child-mnemo.js <job.json>.
 * Loads the model, warms up, then per run: prefill of the prefill prompt and greedy decode; time to first token of the
 * long prompt without a cache, then from a prompt-cache file of all but its last token.
 */
import { readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PROMPT_CACHE_FORMAT_VERSION } from '@mnemo/kv-cache';
import { LM, type PromptCache } from '@mnemo/lm';
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
const log = (msg: string) => process.stderr.write(`    [mnemo] ${msg}\n`);

interface Gen extends RunFigures {
  readonly ttftMs: number;
  readonly cachedTokens: number;
}

async function gen(
  lm: LM,
  tokens: readonly number[],
  maxTokens: number,
  promptCache?: PromptCache,
  startedAt?: number,
  /** Decode's clock (probing the read bandwidth between slices of the decode); a plain clock without. */
  clock: DecodeClock = new DecodeProbes(undefined).clock(0),
): Promise<Gen> {
  const t0 = startedAt ?? performance.now();
  const c0 = process.cpuUsage();
  let tPrefilled = 0;
  let cFirst = c0;
  const out: number[] = [];
  const it = lm.stream(
    { tokens },
    {
      maxTokens,
      temperature: 0,
      ignoreEos: true,
      prefillStepSize: 512,
      ...(promptCache ? { promptCache } : {}),
    },
  );
  let cachedTokens = 0;
  for (;;) {
    const r = await it.next();
    if (r.done) {
      cachedTokens = r.value.stats.cachedTokens;
      break;
    }
    if (out.length === 0) {
      tPrefilled = performance.now();
      clock.begin();
      cFirst = process.cpuUsage();
    } else clock.token();
    out.push(r.value.token);
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
    cachedTokens,
  };
}

async function main(): Promise<void> {
  const notes: string[] = [];
  const t0 = performance.now();
  const lm = await LM.load(job.model, { backendName: job.backend ?? 'native' });
  const loadMs = performance.now() - t0;
  const isa = (lm.backend as { readonly isa?: unknown }).isa;
  log(
    `loaded in ${(loadMs / 1000).toFixed(1)} s on ${lm.backend.name}${typeof isa === 'string' ? ` (${isa})` : ''}, numerics ${lm.numerics}`,
  );

  await gen(lm, job.prefillPrompt.slice(0, 32), 4); // warm-up (JIT, first allocations)

  const runs: RunFigures[] = [];
  const probes = new DecodeProbes(job.bandwidthProbe);
  let last = 0;
  for (let r = 0; another(job, r, last); r++) {
    const started = performance.now();
    const g = await gen(lm, job.prefillPrompt, job.decodeTokens + 1, undefined, undefined, probes.clock(r));
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

  // Time to first token of the long prompt, without a cache. The last run's cache (filled as any run's, through an
  // empty prompt cache) is then trimmed to all but the last prompt token and saved as a prompt-cache file.
  const ttftUncachedMs: number[] = [];
  let firstToken = -1;
  last = 0;
  let kept: PromptCache | undefined;
  for (let r = 0; another(job, r, last); r++) {
    const started = performance.now();
    kept?.free();
    kept = lm.makePromptCache();
    const g = await gen(lm, job.ttftPrompt, 1, kept);
    ttftUncachedMs.push(g.ttftMs);
    firstToken = g.tokens[0]!;
    log(`uncached TTFT (${job.ttftPrompt.length} tokens): ${g.ttftMs.toFixed(0)} ms`);
    last = performance.now() - started;
  }

  const cacheFile = join(job.scratchDir, 'mnemo-prompt-cache.safetensors');
  let ttftCachedMs: number[] | null = null;
  let cacheFileBytes: number | null = null;
  let cachedSameToken: boolean | null = null;
  let cacheNote = '';
  try {
    const pc = kept!;
    const reused = pc.prepare(job.ttftPrompt); // keeps all but the last token
    if (reused !== job.ttftPrompt.length - 1) throw new Error(`the cache kept ${reused} tokens`);
    await lm.savePromptCache(cacheFile, pc);
    pc.free();
    cacheFileBytes = statSync(cacheFile).size;
    ttftCachedMs = [];
    cachedSameToken = true;
    for (let r = 0; r < job.runs; r++) {
      const start = performance.now();
      const loaded = await lm.loadPromptCache(cacheFile);
      const g = await gen(lm, job.ttftPrompt, 1, loaded, start);
      loaded.free();
      if (g.cachedTokens !== job.ttftPrompt.length - 1)
        throw new Error(`expected ${job.ttftPrompt.length - 1} cached tokens, got ${g.cachedTokens}`);
      if (g.tokens[0] !== firstToken) cachedSameToken = false;
      ttftCachedMs.push(g.ttftMs);
      log(`cached TTFT: ${g.ttftMs.toFixed(0)} ms`);
    }
    cacheNote = `lm.savePromptCache / lm.loadPromptCache (mnemo prompt-cache file v${PROMPT_CACHE_FORMAT_VERSION}, ${job.ttftPrompt.length - 1} tokens); TTFT counts loading and checking the file`;
  } catch (e) {
    cacheNote = `prompt cache failed: ${(e as Error).message}`;
    notes.push(cacheNote);
    ttftCachedMs = null;
  } finally {
    rmSync(cacheFile, { force: true });
  }

  const env = process.env.MNEMO_THREADS;
  // The backends report the threads they compute with (the calling thread included).
  const backendThreads = (lm.backend as { readonly threads?: unknown }).threads;
  const threadsReported = typeof backendThreads === 'number' ? backendThreads : null;
  const result: ChildResult = {
    runtime: 'mnemo',
    version: lmVersion(),
    loadMs,
    runs,
    ttftUncachedMs,
    ttftCachedMs,
    cacheNote,
    cacheFileBytes,
    cachedSameToken,
    peakRssBytes: process.resourceUsage().maxRSS * 1024,
    threadsRequested: job.threads,
    threadsReported,
    threadsNote:
      threadsReported === null
        ? `MNEMO_THREADS=${env ?? '(unset)'}; the backend reports no thread count — see the cores busy, measured from CPU time`
        : `MNEMO_THREADS=${env ?? '(unset)'}; backend threads ${threadsReported} (${lm.backend.name}${typeof isa === 'string' ? `, ISA level ${isa}` : ''}, numerics ${lm.numerics})`,
    kvBytesPerToken: 2 * lm.model.numLayers * lm.model.cacheShape.nKvHeads * lm.model.cacheShape.headDim * 4,
    backend: lm.backend.name,
    numerics: lm.numerics,
    decodeProbes: probes.list,
    notes,
  };
  writeFileSync(job.outFile, JSON.stringify(result));
  lm.free();
}

function lmVersion(): string {
  try {
    const url = new URL(import.meta.resolve('@mnemo/lm'));
    // dist/index.js → package.json
    const pkg = JSON.parse(readFileSync(new URL('../package.json', url), 'utf8')) as { version: string };
    return pkg.version;
  } catch {
    return 'unknown';
  }
}

main()
  .then(() => process.exit(0)) // worker threads of the backend must not keep the process alive
  .catch((e: unknown) => {
    process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1);
  });
