/**
 * One measurement of the KV-cache benchmark (`kv.ts`), in its own process so that its peak RSS is its own. Prints one
 * JSON line.
 *
 * - `memory <kind> <context>`: Llama-3.2-1B-shaped caches (16 layers of 8 kv heads × 64) of `kind` filled to `context`
 *   tokens in 512-row steps (random rows, as a prefill writes them): backend bytes held and peak RSS growth.
 * - `decode <model dir> <context> <steps> <threads>`: the model's own caches filled to `context` tokens, then `steps`
 *   greedy decode steps timed.
 */
import type { CacheKindOptions, KVCache } from '@mnemo/kv-cache';
import { makeLayerCaches } from '@mnemo/kv-cache';
import { loadModel } from '@mnemo/models';
import { type Backend, createWasmBackend } from '@mnemo/tensor';
import { Rng } from './prng';

export const KV_KINDS: Readonly<Record<string, CacheKindOptions>> = {
  f32: {},
  f16: { kvDtype: 'f16' },
  '8-bit (g64)': { kvBits: 8, kvGroupSize: 64 },
  '4-bit (g32)': { kvBits: 4, kvGroupSize: 32 },
  '4-bit (g64)': { kvBits: 4, kvGroupSize: 64 },
};

const STEP = 512;

function randomRows(backend: Backend, rows: number, width: number, seed: number) {
  const rng = new Rng(seed);
  const x = new Float32Array(rows * width);
  for (let i = 0; i < x.length; i++) x[i] = rng.normal() * 0.5;
  return backend.upload('f32', [rows, width], x);
}

/** Appends `context` positions to every cache, `STEP` rows at a time, as a prefill would. */
function fill(backend: Backend, caches: readonly KVCache[], context: number): void {
  const width = caches[0]!.shape.nKvHeads * caches[0]!.shape.headDim;
  const k = randomRows(backend, STEP, width, 1);
  const v = randomRows(backend, STEP, width, 2);
  for (let pos = 0; pos < context; pos += STEP) {
    const n = Math.min(STEP, context - pos);
    const kn = n === STEP ? k : backend.view(k, [n, width]);
    const vn = n === STEP ? v : backend.view(v, [n, width]);
    for (const c of caches) c.updateAndFetch(kn, vn);
  }
  backend.free(k);
  backend.free(v);
}

async function memory(kind: string, context: number): Promise<void> {
  const opts = KV_KINDS[kind];
  if (!opts) throw new Error(`unknown kind ${kind}`);
  const backend = await createWasmBackend({ threads: 1 });
  const layers = Array.from({ length: 16 }, () => ({ window: 0, nKvHeads: 8, headDim: 64 }));
  // warm the code paths on one small layer first (memory it leaves behind in the kernels' heap is a few MiB)
  const warm = makeLayerCaches(layers.slice(0, 1), { backend, ...opts });
  fill(backend, warm, STEP);
  for (const c of warm) c.free();
  const rssBefore = process.resourceUsage().maxRSS * 1024;
  const before = backend.memoryInUse();
  const caches = makeLayerCaches(layers, { backend, ...opts });
  fill(backend, caches, context);
  const held = backend.memoryInUse() - before;
  const rss = process.resourceUsage().maxRSS * 1024 - rssBefore;
  process.stdout.write(`${JSON.stringify({ kind, context, held, rss })}\n`);
  backend.dispose();
}

async function decode(dir: string, context: number, steps: number, threads: number): Promise<void> {
  const { model, backend } = await loadModel(dir, { backendName: 'wasm', threads });
  const caches = model.makeCaches();
  fill(backend, caches, context);
  const one = new Int32Array(1);
  const logits = new Float32Array(model.vocabSize);
  const step = (i: number) => {
    one[0] = 1000 + (i % 5000);
    backend.read(model.forward(one, caches), logits);
  };
  for (let i = 0; i < 3; i++) step(i);
  const t0 = performance.now();
  for (let i = 0; i < steps; i++) step(i);
  const ms = performance.now() - t0;
  const held = caches.reduce((n, c) => n + c.exportState().keys.rows, 0);
  process.stdout.write(
    `${JSON.stringify({
      dir,
      context,
      steps,
      tokPerSec: (steps * 1000) / ms,
      windows: model.attentionLayers.map((l) => l.window),
      rowsHeld: held,
      kinds: [...new Set(caches.map((c) => c.kind))],
    })}\n`,
  );
  for (const c of caches) c.free();
  model.free();
  backend.dispose();
}

const [mode, ...args] = process.argv.slice(2);
if (mode === 'memory') await memory(args[0]!, Number(args[1]));
else if (mode === 'decode') await decode(args[0]!, Number(args[1]), Number(args[2]), Number(args[3]));
else throw new Error(`kv-child: unknown mode ${String(mode)}`);
