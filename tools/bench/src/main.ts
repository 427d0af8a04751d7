/**
 * `pnpm bench`: generates the synthetic checkpoints (MLX/HF for mnemo, GGUF for llama.cpp, same weights), installs the
 * pinned peer when missing, measures the machine's read bandwidth, runs each runtime per format in its own process,
 * and prints and saves the table (markdown, JSON) and a chart (SVG, PNG) under tools/bench/results/.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Bandwidth, buildProbe, describeBandwidth, measureBandwidth } from './bandwidth';
import { ALL_FORMATS, type Checkpoint, ensureCheckpoint, FORMAT_INFO, type Format } from './checkpoint';
import { ggufBenchModel, ggufPrompts } from './gguf-file';
import type { ChildResult, Job } from './job';
import { makeQ4KMFile } from './kquant-file';
import { ensurePeer } from './peer';
import { Rng } from './prng';
import {
  ALL_VARIANTS,
  agreement,
  type BenchConfig,
  type BenchReport,
  chartSvg,
  type FormatResult,
  figures,
  formatTargets,
  type MnemoVariant,
  markdown,
  referenceBandwidth,
  renderPng,
  upgradeReport,
  type VariantResult,
  variantApplies,
  variantBackend,
} from './report';
import { kvElementsPerToken, MODEL_SPECS, type ModelSpec } from './spec';
import { makeVocab } from './vocab';

const BENCH_DIR = fileURLToPath(new URL('..', import.meta.url));

interface Args {
  models: ModelSpec[];
  formats: Format[];
  runs: number;
  threads: number;
  /** llama.cpp's threads when they should differ from mnemo's (a supplementary comparison). */
  peerThreads: number | undefined;
  skipPeer: boolean;
  skipMnemo: boolean;
  /** What mnemo runs on, each in its own process per format: backend, with or without int8 activations. */
  variants: MnemoVariant[];
  /** One GGUF file that both runtimes load as it is (instead of generated checkpoints). */
  gguf: string | undefined;
  /** Write a Q4_K_M-style GGUF of the model's shapes (random blocks) and bench it as with --gguf. */
  makeQ4km: boolean;
  prefill: number;
  decode: number;
  ttft: number;
  agree: number;
  regenerate: boolean;
  render: string | undefined;
  budgetMin: number;
  out: string;
  modelsDir: string;
  peerDir: string;
}

const USAGE = `pnpm bench [options]

  --formats q4,q8,f16   formats to run (default: all three)
  --runs N              runs per figure, the median is reported (default 3)
  --mnemo LIST          mnemo variants (default native,native+int8a,wasm,wasm+int8a): the native or WASM backend,
                        "+int8a" with its opt-in int8 activations (q4/q8 only)
  --skip-peer           mnemo only (no node-llama-cpp install, no llama.cpp runs)
  --skip-mnemo          llama.cpp only (no greedy agreement then)
  --8b                  also run Llama-3.1-8B (about 60 GB of checkpoints for the three formats, both runtimes)
  --model 1b|8b|tiny    run only this model (tiny: a small model of the same family, a quick smoke test)
  --gguf FILE           run both runtimes on this GGUF file as it is (any GGML types mnemo runs, e.g. Q4_K_M);
                        results in <file>-gguf.*; prompts are seeded ids of the file's vocabulary
  --make-q4km           write models/<model>-q4_k_m.gguf (Q4_K_M-style random K-quant blocks in the --model shapes)
                        and run --gguf on it
  --threads N           threads for both runtimes (default 2)
  --peer-threads N      threads for llama.cpp only (supplementary runs; default: --threads)
  --prefill N --decode N --ttft N   prompt / generation lengths (default 512 / 128 / 2000)
  --budget-min N        time budget in minutes (default 30; 0 = none): repeats of a measurement stop when the
                        budget share of a runtime and format is used up (each is measured at least once)
  --regenerate          rewrite the checkpoints even when up to date
  --render FILE.json    only re-render the markdown and chart of a saved report (next to it)
  --out DIR             results folder (default tools/bench/results)
`;

function parseArgs(argv: string[]): Args {
  const a: Args = {
    models: [MODEL_SPECS['1b']!],
    formats: [...ALL_FORMATS],
    runs: 3,
    threads: 2,
    peerThreads: undefined,
    skipPeer: false,
    skipMnemo: false,
    variants: [...ALL_VARIANTS],
    gguf: undefined,
    makeQ4km: false,
    prefill: 512,
    decode: 128,
    ttft: 2000,
    agree: 32,
    regenerate: false,
    render: undefined,
    budgetMin: 30,
    out: join(BENCH_DIR, 'results'),
    modelsDir: join(BENCH_DIR, 'models'),
    peerDir: join(BENCH_DIR, '.peer'),
  };
  const int = (v: string | undefined, name: string, min: number) => {
    const n = Number(v);
    if (!Number.isSafeInteger(n) || n < min)
      throw new RangeError(`${name} must be an integer ≥ ${min}, got ${v}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i]!;
    const next = () => argv[++i];
    switch (k) {
      case '--':
        break;
      case '--formats': {
        const fs = (next() ?? '').split(',').filter(Boolean);
        for (const f of fs)
          if (!(ALL_FORMATS as readonly string[]).includes(f))
            throw new RangeError(`unknown format ${f} (q4, q8, f16)`);
        a.formats = fs as Format[];
        break;
      }
      case '--runs':
        a.runs = int(next(), '--runs', 1);
        break;
      case '--threads':
        a.threads = int(next(), '--threads', 1);
        break;
      case '--peer-threads':
        a.peerThreads = int(next(), '--peer-threads', 1);
        break;
      case '--skip-peer':
        a.skipPeer = true;
        break;
      case '--skip-mnemo':
        a.skipMnemo = true;
        break;
      case '--mnemo': {
        const vs = (next() ?? '').split(',').filter(Boolean);
        for (const v of vs)
          if (!(ALL_VARIANTS as readonly string[]).includes(v))
            throw new RangeError(`unknown mnemo variant ${v} (${ALL_VARIANTS.join(', ')})`);
        if (vs.length === 0) throw new RangeError('--mnemo needs at least one variant');
        a.variants = vs as MnemoVariant[];
        break;
      }
      case '--make-q4km':
        a.makeQ4km = true;
        break;
      case '--gguf': {
        const file = next();
        if (!file) throw new RangeError('--gguf takes a GGUF file');
        // relative to where `pnpm bench` was run (pnpm runs the script in tools/bench)
        a.gguf = resolve(process.env.INIT_CWD ?? process.cwd(), file);
        break;
      }
      case '--8b':
        if (!a.models.includes(MODEL_SPECS['8b']!)) a.models.push(MODEL_SPECS['8b']!);
        break;
      case '--model': {
        const m = MODEL_SPECS[next() ?? ''];
        if (!m) throw new RangeError(`--model takes one of ${Object.keys(MODEL_SPECS).join(', ')}`);
        a.models = [m];
        break;
      }
      case '--prefill':
        a.prefill = int(next(), '--prefill', 2);
        break;
      case '--decode':
        a.decode = int(next(), '--decode', 1);
        break;
      case '--ttft':
        a.ttft = int(next(), '--ttft', 2);
        break;
      case '--render':
        a.render = next();
        break;
      case '--budget-min':
        a.budgetMin = int(next(), '--budget-min', 0);
        break;
      case '--regenerate':
        a.regenerate = true;
        break;
      case '--out':
        a.out = next() ?? a.out;
        break;
      case '--help':
      case '-h':
        process.stdout.write(USAGE);
        process.exit(0);
        break;
      default:
        throw new RangeError(`unknown option ${k}\n\n${USAGE}`);
    }
  }
  return a;
}

const log = (msg: string) => process.stderr.write(`${msg}\n`);

function prompts(spec: ModelSpec, prefill: number, ttft: number): { prefill: number[]; ttft: number[] } {
  const v = makeVocab(spec.vocab);
  const rng = new Rng(7, 'prompt');
  const draw = (n: number) => [
    v.bosId,
    ...Array.from({ length: n - 1 }, () => rng.int(v.normalStart, v.normalEnd)),
  ];
  return { prefill: draw(prefill), ttft: draw(ttft) };
}

function runChild(script: string, job: Job, env: NodeJS.ProcessEnv): Promise<ChildResult> {
  const dir = mkdtempSync(join(tmpdir(), 'mnemo-bench-job-'));
  const jobFile = join(dir, 'job.json');
  const full: Job = { ...job, scratchDir: dir, outFile: join(dir, 'result.json') };
  writeFileSync(jobFile, JSON.stringify(full));
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ['--max-old-space-size=8192', join(BENCH_DIR, 'dist', script), jobFile],
      {
        stdio: ['ignore', 'inherit', 'inherit'],
        env: { ...process.env, ...env },
      },
    );
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      try {
        if (code !== 0) throw new Error(`${script} exited with ${signal ?? code}`);
        resolve(JSON.parse(readFileSync(full.outFile, 'utf8')) as ChildResult);
      } catch (e) {
        reject(e);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });
}

function gitDescribe(): string {
  const head = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: BENCH_DIR, encoding: 'utf8' });
  if (head.status !== 0) return 'unknown';
  const dirty = spawnSync('git', ['status', '--porcelain', '--', '../../packages'], {
    cwd: BENCH_DIR,
    encoding: 'utf8',
  });
  return `${head.stdout.trim()}${dirty.stdout.trim() ? ' (+ uncommitted changes in packages/)' : ''}`;
}

const roundUp = (n: number, step: number) => Math.ceil(n / step) * step;

/** Splits what is left of the time budget evenly over the child processes still to run. */
class Budget {
  private readonly end: number;
  constructor(
    minutes: number,
    private left: number,
  ) {
    this.end = minutes > 0 ? Date.now() + minutes * 60_000 : Number.POSITIVE_INFINITY;
  }
  nextDeadline(): number | null {
    const share = (this.end - Date.now()) / Math.max(1, this.left);
    this.left--;
    return Number.isFinite(share) ? Date.now() + Math.max(0, share) : null;
  }
}

async function benchModel(
  spec: ModelSpec,
  a: Args,
  bandwidth: Awaited<ReturnType<typeof measureBandwidth>>,
  budget: Budget,
  git: string,
  probe: string | undefined,
) {
  const p = prompts(spec, a.prefill, a.ttft);
  const maxTokens = Math.max(a.ttft + 1, a.prefill + a.decode + 1);
  const contextSize = roundUp(maxTokens + 1, 256);
  const config: BenchConfig = {
    runs: a.runs,
    threads: a.threads,
    peerThreads: a.peerThreads ?? a.threads,
    prefillTokens: a.prefill,
    decodeTokens: a.decode,
    ttftTokens: a.ttft,
    agreeTokens: a.agree,
    contextSize,
    variants: a.variants,
  };
  const notes: string[] = [];
  const loadBefore = loadavg()[0]!;
  const formats: FormatResult[] = [];
  for (const format of a.formats) {
    log(`\n== ${spec.label} ${format}: ${FORMAT_INFO[format].label}`);
    const errors: string[] = [];
    let ckpt: Checkpoint;
    try {
      ckpt = await ensureCheckpoint(spec, format, a.modelsDir, { log, force: a.regenerate });
    } catch (e) {
      errors.push(`checkpoint generation failed: ${(e as Error).message}`);
      formats.push({ format, label: FORMAT_INFO[format].label, mnemo: [], peer: null, targets: [], errors });
      continue;
    }
    log(
      ckpt.generated
        ? `  generated ${ckpt.dir} and ${ckpt.gguf} in ${ckpt.seconds.toFixed(0)} s`
        : `  reusing ${ckpt.dir} and ${ckpt.gguf}`,
    );
    const base = {
      prefillPrompt: p.prefill,
      ttftPrompt: p.ttft,
      decodeTokens: a.decode,
      agreeTokens: a.agree,
      runs: a.runs,
      deadline: null,
      threads: a.threads,
      scratchDir: '',
      outFile: '',
      ...(probe ? { bandwidthProbe: probe } : {}),
    };
    const loads: Record<string, [number, number]> = {};
    const mnemoRuns: [MnemoVariant, ChildResult | null][] = [];
    if (!a.skipMnemo) {
      for (const variant of a.variants) {
        if (!variantApplies(variant, format)) continue;
        const before = loadavg()[0]!;
        const { backend, int8 } = variantBackend(variant);
        let res: ChildResult | null = null;
        try {
          const env: NodeJS.ProcessEnv = { MNEMO_THREADS: String(a.threads) };
          env.MNEMO_INT8_ACTIVATIONS = int8 ? '1' : '0'; // never inherited: the report names what ran
          log(
            `  mnemo ${variant} (${Object.entries(env)
              .map(([k, v]) => `${k}=${v}`)
              .join(' ')})`,
          );
          res = await runChild(
            'child-mnemo.js',
            { ...base, model: ckpt.dir, backend, deadline: budget.nextDeadline() },
            env,
          );
        } catch (e) {
          errors.push(`mnemo ${variant}: ${(e as Error).message}`);
        }
        loads[variant] = [before, loadavg()[0]!];
        mnemoRuns.push([variant, res]);
      }
    }
    const first = mnemoRuns.find(([, r]) => r !== null)?.[1] ?? null;
    let peer: ChildResult | null = null;
    if (!a.skipPeer) {
      const before = loadavg()[0]!;
      try {
        log(`  llama.cpp (${a.peerThreads ?? a.threads} threads)`);
        peer = await runChild(
          'child-peer.js',
          {
            ...base,
            model: ckpt.gguf,
            threads: a.peerThreads ?? a.threads,
            deadline: budget.nextDeadline(),
            peerDir: a.peerDir,
            contextSize,
            ...(first ? { referenceTokens: first.runs[0]!.tokens } : {}),
          },
          {},
        );
      } catch (e) {
        errors.push(`llama.cpp: ${(e as Error).message}`);
      }
      loads.peer = [before, loadavg()[0]!];
    }
    const kvElems = kvElementsPerToken(spec);
    const variants: VariantResult[] = mnemoRuns.map(([variant, res]) => ({
      variant,
      figures: res
        ? figures(
            spec,
            format,
            res,
            config,
            bandwidth,
            ckpt.hfWeightBytes,
            res.kvBytesPerToken,
            roundUp(maxTokens, 256),
            loads[variant]!,
          )
        : null,
      agreement:
        res && peer
          ? {
              ...agreement(res, peer, a.agree),
              // llama.cpp was teacher-forced with the first variant's tokens only
              ...(res === first ? {} : { teacherForced: null }),
            }
          : null,
    }));
    // llama.cpp: f16 K and V for the whole context, allocated up front.
    const pf = peer
      ? figures(
          spec,
          format,
          peer,
          config,
          bandwidth,
          ckpt.ggufWeightBytes,
          kvElems * 2,
          contextSize,
          loads.peer!,
        )
      : null;
    const result: FormatResult = {
      format,
      label: FORMAT_INFO[format].label,
      mnemo: variants,
      peer: pf,
      targets: [],
      errors,
    };
    result.targets = formatTargets(spec, result);
    formats.push(result);
    for (const e of errors) log(`  error: ${e}`);
  }
  const loadAfter = loadavg()[0]!;
  notes.push(
    'Weights are random (seeded N(0, 0.02), norms 1 + N(0, 0.02)) in the real shapes; speed does not depend on the values. The tokenizer is a dummy sentencepiece-style vocabulary; prompts are token ids.',
  );
  notes.push(
    "Q and K rows are permuted in the GGUF as llama.cpp's converter does (rotate-half → adjacent pairs), and llama3 rope scaling is written as the rope_freqs tensor, so both runtimes compute the same function. q4 weights are identical in both files (Q4_1 = MLX 4-bit g32 f16); q8 differs (Q8_0 is symmetric, MLX 8-bit affine), so its greedy tokens may diverge sooner.",
  );
  notes.push(
    'Decode bandwidth = (weights in their stored form + norms + KV cache at the mean decode context) × decode tok/s, against the read bandwidth measured while it ran (above). mnemo keeps its KV cache in f32, llama.cpp in f16.',
  );
  notes.push(
    "Peak RSS is each runtime's own child process (process.resourceUsage().maxRSS, loading included). llama.cpp maps the GGUF file, so its RSS counts the mapped pages it touched. KV in the budget: mnemo's f32 cache at its capacity for the longest prompt, llama.cpp's f16 cache for the whole context.",
  );
  const cpu = cpus()[0]?.model ?? 'unknown CPU';
  const report: BenchReport = {
    model: spec.name,
    spec,
    date: new Date().toISOString().slice(0, 16).replace('T', ' '),
    machine: {
      cpu,
      cores: cpus().length,
      memoryGb: Math.round(totalmem() / 2 ** 30),
      node: process.versions.node,
      platform: `${process.platform}-${process.arch}`,
    },
    git,
    config,
    bandwidth,
    bandwidthMeasurements: [bandwidth],
    loadAverage: [
      loadBefore,
      ...formats.flatMap((f) => [
        ...f.mnemo.flatMap((v) => v.figures?.loadAverage ?? []),
        ...(f.peer?.loadAverage ?? []),
      ]),
      loadAfter,
    ],
    formats,
    notes,
  };
  return report;
}

export function busyNote(load: number, cores: number): string {
  return `Other work ran on the machine during this run (1-minute load average up to ${load.toFixed(1)} on ${cores} cores, of which the benchmark itself accounts for about 2). llama.cpp's threads meet at spin barriers many times per token, so its multi-thread figures drop sharply when a core is taken by something else; mnemo's drop too. The load average before and after each process is listed above.`;
}

/** Puts every bandwidth measurement of the run into the report and recomputes the shares of it. */
function finishReport(report: BenchReport, bandwidths: Bandwidth[]): void {
  const best = bandwidths.reduce((x, y) => (referenceBandwidth(y) > referenceBandwidth(x) ? y : x));
  report.bandwidth = best;
  report.bandwidthMeasurements = bandwidths;
  for (const f of report.formats) {
    for (const fig of [...f.mnemo.map((v) => v.figures), f.peer]) {
      if (!fig) continue;
      fig.decodeBandwidthPctOfRun = (100 * fig.decodeGBs) / referenceBandwidth(best);
      if (!fig.decodeBandwidthAdjacent) {
        fig.decodeBandwidthRefGBs = referenceBandwidth(best);
        fig.decodeBandwidthPct = fig.decodeBandwidthPctOfRun;
      }
    }
    f.targets = formatTargets(report.spec, f);
  }
  const cores = Number(report.machine.cores);
  // The benchmark itself keeps about `threads` cores busy; more than one core beyond that is someone else's work.
  const busy = Math.max(...report.loadAverage);
  if (busy > cores + 1) report.notes.unshift(busyNote(busy, cores));
}

/** `--gguf FILE`: both runtimes on the same GGUF file (mnemo through LM.load of the path, llama.cpp as always). */
async function benchGguf(
  path: string,
  a: Args,
  bandwidth: Awaited<ReturnType<typeof measureBandwidth>>,
  budget: Budget,
  git: string,
  probe: string | undefined,
): Promise<BenchReport> {
  const g = await ggufBenchModel(path);
  const spec = g.spec;
  const p = ggufPrompts(g, a.prefill, a.ttft);
  const maxTokens = Math.max(a.ttft + 1, a.prefill + a.decode + 1);
  const contextSize = roundUp(maxTokens + 1, 256);
  const config: BenchConfig = {
    runs: a.runs,
    threads: a.threads,
    peerThreads: a.peerThreads ?? a.threads,
    prefillTokens: a.prefill,
    decodeTokens: a.decode,
    ttftTokens: a.ttft,
    agreeTokens: a.agree,
    contextSize,
    variants: a.variants,
  };
  const types = Object.entries(g.typeBytes)
    .sort((x, y) => y[1] - x[1])
    .map(([t, b]) => `${t} ${(b / 2 ** 20).toFixed(1)} MiB`)
    .join(', ');
  log(`\n== ${spec.label}: ${types}`);
  const base = {
    prefillPrompt: p.prefill,
    ttftPrompt: p.ttft,
    decodeTokens: a.decode,
    agreeTokens: a.agree,
    runs: a.runs,
    deadline: null,
    threads: a.threads,
    scratchDir: '',
    outFile: '',
    ...(probe ? { bandwidthProbe: probe } : {}),
    model: path,
  };
  const errors: string[] = [];
  const loads: Record<string, [number, number]> = {};
  const mnemoRuns: [MnemoVariant, ChildResult | null][] = [];
  if (!a.skipMnemo) {
    for (const variant of a.variants) {
      const before = loadavg()[0]!;
      const { backend, int8 } = variantBackend(variant);
      let res: ChildResult | null = null;
      try {
        const env: NodeJS.ProcessEnv = {
          MNEMO_THREADS: String(a.threads),
          MNEMO_INT8_ACTIVATIONS: int8 ? '1' : '0', // never inherited: the report names what ran
        };
        log(
          `  mnemo ${variant} (MNEMO_THREADS=${env.MNEMO_THREADS} MNEMO_INT8_ACTIVATIONS=${env.MNEMO_INT8_ACTIVATIONS})`,
        );
        res = await runChild('child-mnemo.js', { ...base, backend, deadline: budget.nextDeadline() }, env);
      } catch (e) {
        errors.push(`mnemo ${variant}: ${(e as Error).message}`);
      }
      loads[variant] = [before, loadavg()[0]!];
      mnemoRuns.push([variant, res]);
    }
  }
  const first = mnemoRuns.find(([, r]) => r !== null)?.[1] ?? null;
  let peer: ChildResult | null = null;
  if (!a.skipPeer) {
    const before = loadavg()[0]!;
    try {
      log(`  llama.cpp (${a.peerThreads ?? a.threads} threads)`);
      peer = await runChild(
        'child-peer.js',
        {
          ...base,
          threads: a.peerThreads ?? a.threads,
          deadline: budget.nextDeadline(),
          peerDir: a.peerDir,
          contextSize,
          ...(first ? { referenceTokens: first.runs[0]!.tokens } : {}),
        },
        {},
      );
    } catch (e) {
      errors.push(`llama.cpp: ${(e as Error).message}`);
    }
    loads.peer = [before, loadavg()[0]!];
  }
  const kvElems = kvElementsPerToken(spec);
  const fig = (r: ChildResult, kvBytes: number, capacity: number, load: [number, number]) =>
    figures(
      spec,
      'gguf',
      r,
      config,
      bandwidth,
      g.weightBytes,
      kvBytes,
      capacity,
      load,
      g.weightBytesPerToken,
    );
  const variants: VariantResult[] = mnemoRuns.map(([variant, res]) => ({
    variant,
    figures: res ? fig(res, res.kvBytesPerToken, roundUp(maxTokens, 256), loads[variant]!) : null,
    agreement:
      res && peer
        ? {
            ...agreement(res, peer, a.agree),
            // llama.cpp was teacher-forced with the first variant's tokens only
            ...(res === first ? {} : { teacherForced: null }),
          }
        : null,
  }));
  const pf = peer ? fig(peer, kvElems * 2, contextSize, loads.peer!) : null;
  for (const e of errors) log(`  error: ${e}`);
  const result: FormatResult = {
    format: 'gguf',
    label: `${g.fileType} GGUF, the same file for both runtimes (${types})`,
    mnemo: variants,
    peer: pf,
    targets: [],
    errors,
  };
  result.targets = formatTargets(spec, result);
  return {
    model: spec.name,
    spec,
    date: new Date().toISOString().slice(0, 16).replace('T', ' '),
    machine: {
      cpu: cpus()[0]?.model ?? 'unknown CPU',
      cores: cpus().length,
      memoryGb: Math.round(totalmem() / 2 ** 30),
      node: process.versions.node,
      platform: `${process.platform}-${process.arch}`,
    },
    git,
    config,
    bandwidth,
    bandwidthMeasurements: [bandwidth],
    loadAverage: [...variants.flatMap((v) => v.figures?.loadAverage ?? []), ...(pf?.loadAverage ?? [])],
    formats: [result],
    notes: [
      'Both runtimes load the same GGUF file as it is: mnemo computes with its GGML blocks (Q4_K, Q6_K, ... per tensor, exact f32 path unless int8 activations are asked for), llama.cpp with its own CPU kernels. Prompts are seeded ids of the file’s normal tokens.',
      'Decode bandwidth = (the tensors in their stored form, one row of the embedding unless it is the head, + KV at the mean decode context) × decode tok/s. mnemo keeps its KV cache in f32, llama.cpp in f16.',
    ],
  };
}

async function save(report: BenchReport, stem: string): Promise<string> {
  const md = markdown(report);
  writeFileSync(`${stem}.md`, md);
  writeFileSync(`${stem}.json`, `${JSON.stringify(report, null, 2)}\n`);
  const svg = chartSvg(report);
  writeFileSync(`${stem}.svg`, svg);
  const png = await renderPng(svg);
  if (typeof png === 'string') log(png);
  else writeFileSync(`${stem}.png`, png);
  log(`saved ${stem}.{md,json,svg${typeof png === 'string' ? '' : ',png'}}`);
  return md;
}

async function main(): Promise<void> {
  const a = parseArgs(process.argv.slice(2));
  if (a.render !== undefined) {
    const report = upgradeReport(JSON.parse(readFileSync(a.render, 'utf8')) as BenchReport);
    process.stdout.write(`${await save(report, a.render.replace(/\.json$/, ''))}\n`);
    return;
  }
  mkdirSync(a.modelsDir, { recursive: true });
  mkdirSync(a.out, { recursive: true });
  // The code measured is what was built when the run started (others may commit while it runs).
  const git = gitDescribe();
  if (!a.skipPeer) ensurePeer(a.peerDir, log);
  // One build of the bandwidth probe for the run: measured before and after, and by the children during each decode.
  const probeDir = mkdtempSync(join(tmpdir(), 'mnemo-bench-bw-'));
  try {
    await benchAll(a, git, buildProbe(probeDir));
  } finally {
    rmSync(probeDir, { recursive: true, force: true });
  }
}

async function benchAll(a: Args, git: string, probe: string | undefined): Promise<void> {
  log('measuring memory read bandwidth…');
  const bandwidth = await measureBandwidth(probe);
  log(`  ${describeBandwidth(bandwidth)}`);
  const bandwidths = [bandwidth];
  if (a.makeQ4km)
    a.gguf = makeQ4KMFile(a.models[0]!, join(a.modelsDir, `${a.models[0]!.name}-q4_k_m.gguf`), log).path;
  if (a.gguf !== undefined) {
    const budget = new Budget(a.budgetMin, (a.skipMnemo ? 0 : a.variants.length) + (a.skipPeer ? 0 : 1));
    const report = await benchGguf(a.gguf, a, bandwidth, budget, git, probe);
    log('measuring memory read bandwidth again…');
    const again = await measureBandwidth(probe);
    log(`  ${describeBandwidth(again)}`);
    bandwidths.push(again);
    finishReport(report, bandwidths);
    const md = await save(report, join(a.out, report.model));
    process.stdout.write(`\n${md}\n`);
    return;
  }
  const perFormat = (f: Format) =>
    (a.skipMnemo ? 0 : a.variants.filter((v) => variantApplies(v, f)).length) + (a.skipPeer ? 0 : 1);
  const children = a.models.length * a.formats.reduce((n, f) => n + perFormat(f), 0);
  const budget = new Budget(a.budgetMin, children);
  for (const spec of a.models) {
    const report = await benchModel(spec, a, bandwidth, budget, git, probe);
    // Measure again after the runs: other work on the machine can lower either measurement.
    log('measuring memory read bandwidth again…');
    const again = await measureBandwidth(probe);
    log(`  ${describeBandwidth(again)}`);
    bandwidths.push(again);
    finishReport(report, bandwidths);
    const md = await save(report, join(a.out, spec.name));
    process.stdout.write(`\n${md}\n`);
  }
}

main().catch((e: unknown) => {
  log(e instanceof Error ? (e.stack ?? e.message) : String(e));
  process.exit(1);
});
