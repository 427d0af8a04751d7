/**
 * The KV-cache benchmark (`pnpm bench:kv`): prints (and saves to `results/kv-cache.md`) a table of
 *
 * 1. KV bytes per token of f32 / f16 / 8-bit / 4-bit caches on the Llama-3.2-1B shape (16 layers × 8 kv heads × 64),
 *    from the backend's own accounting (`memoryInUse`) and from the peak RSS growth of a process that fills the caches
 *    to `--context` tokens (default 8,192), each kind in its own process;
 * 2. decode tokens/s of the synthetic Llama-3.2-1B (4-bit) at `--decode-context` tokens of context (default 4,096),
 *    with every layer global and with every layer a `--window`-token sliding window (default 1,024: the same
 *    checkpoint loaded as `model_type: mistral` with `sliding_window`), alternating runs, median of `--runs`.
 *
 * Timings on a shared machine are noisy: compare figures of one run only.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureCheckpoint } from './checkpoint';
import { median } from './job';
import { LLAMA_3_2_1B } from './spec';

const BENCH_DIR = fileURLToPath(new URL('..', import.meta.url));
const CHILD = fileURLToPath(new URL('./kv-child.js', import.meta.url));

interface Args {
  context: number;
  decodeContext: number;
  window: number;
  steps: number;
  runs: number;
  threads: number;
  skipDecode: boolean;
  out: string;
}

function parseArgs(argv: readonly string[]): Args {
  const a: Args = {
    context: 8192,
    decodeContext: 4096,
    window: 1024,
    steps: 24,
    runs: 3,
    threads: 2,
    skipDecode: false,
    out: join(BENCH_DIR, 'results'),
  };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!;
    const num = () => {
      const v = Number(argv[++i]);
      if (!Number.isSafeInteger(v) || v < 1) throw new Error(`${flag} needs a positive integer`);
      return v;
    };
    if (flag === '--context') a.context = num();
    else if (flag === '--decode-context') a.decodeContext = num();
    else if (flag === '--window') a.window = num();
    else if (flag === '--steps') a.steps = num();
    else if (flag === '--runs') a.runs = num();
    else if (flag === '--threads') a.threads = num();
    else if (flag === '--skip-decode') a.skipDecode = true;
    else if (flag === '--out') a.out = argv[++i]!;
    else if (flag === '--help') {
      process.stdout.write(
        'pnpm bench:kv [--context 8192] [--decode-context 4096] [--window 1024] [--steps 24] [--runs 3] [--threads 2] [--skip-decode] [--out dir]\n',
      );
      process.exit(0);
    } else throw new Error(`unknown flag ${flag}`);
  }
  return a;
}

function child(args: string[]): Record<string, unknown> {
  const r = spawnSync(process.execPath, ['--max-old-space-size=8192', CHILD, ...args], {
    encoding: 'utf8',
    maxBuffer: 1 << 24,
  });
  if (r.status !== 0) throw new Error(`kv-child ${args.join(' ')} failed: ${r.stderr}`);
  const line = r.stdout.trim().split('\n').pop()!;
  return JSON.parse(line) as Record<string, unknown>;
}

/** The checkpoint's folder again, as `model_type: mistral` with a sliding window on every layer (weights linked). */
function windowedCopy(dir: string, window: number): string {
  const out = `${dir}-window${window}`;
  mkdirSync(out, { recursive: true });
  for (const f of readdirSync(dir)) {
    if (f === 'config.json' || existsSync(join(out, f))) continue;
    symlinkSync(join(dir, f), join(out, f));
  }
  const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
  writeFileSync(
    join(out, 'config.json'),
    JSON.stringify({
      ...config,
      model_type: 'mistral',
      architectures: ['MistralForCausalLM'],
      sliding_window: window,
    }),
  );
  return out;
}

const kib = (n: number) => `${(n / 1024).toFixed(1)} KiB`;

async function main(): Promise<void> {
  const a = parseArgs(process.argv.slice(2));
  const lines: string[] = [];
  const say = (s = '') => {
    lines.push(s);
    process.stdout.write(`${s}\n`);
  };
  say(`# KV cache: memory and windowed decode (${new Date().toISOString()})`);
  say();
  say(`## KV bytes per token, Llama-3.2-1B shape (16 layers × 8 kv heads × 64), ${a.context} tokens`);
  say();
  say('| cache | backend accounting | × f32 | peak RSS growth | × f32 |');
  say('|---|---:|---:|---:|---:|');
  const kinds = ['f32', 'f16', '8-bit (g64)', '4-bit (g32)', '4-bit (g64)'];
  const mem = kinds.map((k) => child(['memory', k, String(a.context)]) as { held: number; rss: number });
  const base = mem[0]!;
  kinds.forEach((k, i) => {
    const m = mem[i]!;
    say(
      `| ${k} | ${kib(m.held / a.context)} | ${(m.held / base.held).toFixed(3)} | ${kib(m.rss / a.context)} | ${(m.rss / base.rss).toFixed(3)} |`,
    );
  });
  if (!a.skipDecode) {
    say();
    say(
      `## Decode, synthetic Llama-3.2-1B 4-bit, ${a.decodeContext} tokens of context, ${a.threads} threads (${a.steps} steps, median of ${a.runs})`,
    );
    say();
    const modelsDir = join(BENCH_DIR, 'models');
    mkdirSync(modelsDir, { recursive: true });
    const ckpt = await ensureCheckpoint(LLAMA_3_2_1B, 'q4', modelsDir, {
      log: (m) => process.stderr.write(`${m}\n`),
    });
    const variants: [string, string][] = [
      ['every layer global (standard caches)', ckpt.dir],
      [`${a.window}-token window on every layer (ring caches)`, windowedCopy(ckpt.dir, a.window)],
    ];
    const tps: number[][] = variants.map(() => []);
    const held: number[] = [];
    for (let r = 0; r < a.runs; r++)
      variants.forEach(([, dir], i) => {
        const out = child(['decode', dir, String(a.decodeContext), String(a.steps), String(a.threads)]) as {
          tokPerSec: number;
          rowsHeld: number;
        };
        tps[i]!.push(out.tokPerSec);
        held[i] = out.rowsHeld / 16;
      });
    say('| attention | rows held per layer | decode tok/s (median) | runs |');
    say('|---|---:|---:|---|');
    variants.forEach(([name], i) => {
      say(
        `| ${name} | ${held[i]} | ${median(tps[i]!).toFixed(2)} | ${tps[i]!.map((x) => x.toFixed(2)).join(', ')} |`,
      );
    });
    say();
    say(`windowed / global: ${(median(tps[1]!) / median(tps[0]!)).toFixed(3)}×`);
  }
  mkdirSync(a.out, { recursive: true });
  writeFileSync(join(a.out, 'kv-cache.md'), `${lines.join('\n')}\n`);
}

await main();
