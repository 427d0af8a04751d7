/**
 * Thread-count invariance, checked bitwise: a backend that computes with several threads (splitting a matmul's output
 * features, placing weight rows on other threads or instances) must give exactly the results of its single-threaded
 * self. {@link checkThreadInvariance} takes a factory of backends by thread count and compares every thread count with
 * the first: matmul for each dense dtype and several quantized formats (one row and many, odd output sizes, with and
 * without bias), attention (split by kv heads; f32 caches and every KV storage format as a wrapped ring), embedding (dense and quantized tables, ids from every part of the table), a weight uploaded and then
 * used as an activation, and a short decoder-like forward pass (prefill then decode, tied embedding as the head).
 */
import type { AttentionOptions, Backend, RopeOptions } from '../backend';
import { ropeTable } from '../convert';
import type { QuantSpec, ScaleDType } from '../dtype';
import type { GgmlBlockType } from '../ggml';
import type { Tensor, Weight } from '../tensor';
import { ConformanceError, expectBitwise, type Scope, scoped } from './compare';
import { randomGgml } from './ggml';
import { allocKv, KV_KINDS } from './kv';
import { invFreq } from './ops';
import { randomQuantized } from './quantized';
import { encode, floats, ids, Rng, wideFloats } from './random';

/** Makes a backend computing with `threads` threads. */
export type ThreadedBackendFactory = (threads: number) => Promise<Backend>;

export interface ThreadInvarianceOptions {
  /** Thread counts to compare; the first is the reference (default `[1, 2, 3]`). */
  readonly threads?: readonly number[];
}

/** One named result of a run. */
type Results = Map<string, Float32Array>;

/** An f32 matrix made with `alloc` + `write` (an activation, never placed like a weight). */
function activation(s: Scope, shape: readonly number[], data: Float32Array): Tensor {
  const t = s.alloc('f32', shape);
  s.backend.write(t, data);
  return t;
}

const DENSE: readonly ScaleDType[] = ['f32', 'f16', 'bf16'];
const QUANT: readonly QuantSpec[] = [
  { bits: 4, groupSize: 32, scaleDtype: 'f16' },
  { bits: 4, groupSize: 64, scaleDtype: 'bf16' },
  { bits: 8, groupSize: 64, scaleDtype: 'f32' },
  { bits: 3, groupSize: 32, scaleDtype: 'f16' },
  { bits: 6, groupSize: 64, scaleDtype: 'bf16' },
  { bits: 2, groupSize: 128, scaleDtype: 'f16' },
];
const GGML: readonly GgmlBlockType[] = ['Q4_0', 'Q8_0', 'Q5_1', 'Q4_K', 'Q6_K', 'Q3_K'];
/** [out, in]: odd output sizes, some below one 16-row block, some spanning several blocks per thread. */
const SHAPES: readonly [number, number][] = [
  [1, 64],
  [7, 64],
  [33, 128],
  [70, 64],
  [131, 192],
  [45, 256],
  [1, 512],
];
const ROWS = [1, 5];

function matmuls(s: Scope, out: Results): void {
  const b = s.backend;
  const rng = new Rng(3100);
  for (const [outDim, inDim] of SHAPES) {
    const weights: [string, Weight][] = [];
    for (const dtype of DENSE)
      weights.push([
        dtype,
        s.upload(dtype, [outDim, inDim], encode(dtype, floats(rng, outDim * inDim, 0.5)).data),
      ]);
    for (const spec of QUANT)
      if (inDim % spec.groupSize === 0)
        weights.push([
          `q${spec.bits} g${spec.groupSize} ${spec.scaleDtype}`,
          s.quantized(spec, [outDim, inDim], randomQuantized(rng, spec, outDim, inDim, spec.bits === 4)),
        ]);
    if (inDim % 256 === 0)
      for (const type of GGML)
        weights.push([`GGML ${type}`, s.ggml(type, [outDim, inDim], randomGgml(rng, type, outDim, inDim))]);
    const bias = activation(s, [outDim], floats(rng, outDim, 2));
    for (const rows of ROWS) {
      const x = activation(s, [rows, inDim], wideFloats(rng, rows * inDim, 3));
      for (const [name, w] of weights)
        for (const withBias of [false, true]) {
          const y = activation(s, [rows, outDim], new Float32Array(rows * outDim).fill(Number.NaN));
          b.matmul(y, x, w, withBias ? bias : undefined);
          out.set(
            `matmul ${name} [${outDim}, ${inDim}] × ${rows} rows${withBias ? ' +bias' : ''}`,
            b.read(y),
          );
        }
    }
  }
}

function embeddings(s: Scope, out: Results): void {
  const b = s.backend;
  const rng = new Rng(3200);
  const vocab = 150;
  const tables: [string, Weight, number][] = [];
  for (const dtype of DENSE) {
    const dim = dtype === 'f16' ? 40 : 64;
    tables.push([
      dtype,
      s.upload(dtype, [vocab, dim], encode(dtype, wideFloats(rng, vocab * dim)).data),
      dim,
    ]);
  }
  for (const spec of QUANT.slice(0, 4))
    tables.push([
      `q${spec.bits} g${spec.groupSize} ${spec.scaleDtype}`,
      s.quantized(spec, [vocab, 128], randomQuantized(rng, spec, vocab, 128, false)),
      128,
    ]);
  for (const type of ['Q8_0', 'Q4_K'] as const)
    tables.push([`GGML ${type}`, s.ggml(type, [vocab, 256], randomGgml(rng, type, vocab, 256)), 256]);
  // ids from every part of the table (first and last rows, both sides of every 16-row boundary), in any order
  const picked = Int32Array.from([
    0,
    vocab - 1,
    15,
    16,
    31,
    32,
    47,
    48,
    63,
    64,
    79,
    80,
    95,
    96,
    111,
    112,
    127,
    128,
  ]);
  for (const [name, table, dim] of tables) {
    for (const idv of [picked, ids(rng, 9, vocab), Int32Array.of(vocab - 1), Int32Array.of(3)]) {
      const o = activation(s, [idv.length, dim], new Float32Array(idv.length * dim).fill(Number.NaN));
      b.embedding(o, table, idv);
      out.set(`embedding ${name} ids [${idv.join(',')}]`, b.read(o));
    }
  }
}

/** A 2-D f32 matrix uploaded like a weight, then used as x, read back, viewed and written: every op must still work. */
function uploadedActivation(s: Scope, out: Results): void {
  const b = s.backend;
  const rng = new Rng(3300);
  const rows = 40;
  const inDim = 64;
  const xv = floats(rng, rows * inDim);
  const x = s.upload('f32', [rows, inDim], xv);
  expectBitwise('an uploaded f32 matrix reads back as uploaded', b.read(x), xv);
  const w = s.upload('f32', [24, inDim], floats(rng, 24 * inDim));
  const y = activation(s, [rows, 24], new Float32Array(rows * 24));
  b.matmul(y, x, w);
  out.set('matmul with an uploaded matrix as x', b.read(y));
  b.rmsnorm(x, x, activation(s, [inDim], floats(rng, inDim)), 1e-5);
  out.set('rmsnorm in place on an uploaded matrix', b.read(x));
  out.set('view of an uploaded matrix', b.read(b.view(x, [2, inDim], 17 * inDim)));
}

interface Layer {
  norm1: Tensor;
  wq: Weight;
  wk: Weight;
  wv: Weight;
  wo: Weight;
  bq: Tensor;
  norm2: Tensor;
  gate: Weight;
  up: Weight;
  down: Weight;
}

/** A two-layer decoder-like forward (GQA 4/2, rope, attention over a cache), prefill of 5 tokens then 3 decode steps. */
function forward(s: Scope, out: Results): void {
  const b = s.backend;
  const rng = new Rng(3400);
  const dim = 64;
  const nHeads = 4;
  const nKvHeads = 2;
  const headDim = dim / nHeads;
  const kvDim = nKvHeads * headDim;
  const ffn = 96;
  const vocab = 100;
  const capacity = 16;
  const q4: QuantSpec = { bits: 4, groupSize: 32, scaleDtype: 'f16' };
  const dense = (dtype: ScaleDType, o: number, i: number) =>
    s.upload(dtype, [o, i], encode(dtype, floats(rng, o * i, 0.2)).data);
  const quant = (o: number, i: number) => s.quantized(q4, [o, i], randomQuantized(rng, q4, o, i, true));
  const embed = dense('bf16', vocab, dim); // tied: also the head
  const layers: Layer[] = [];
  for (let l = 0; l < 2; l++)
    layers.push({
      norm1: activation(s, [dim], floats(rng, dim, 1)),
      wq: dense('f16', dim, dim),
      wk: dense('f32', kvDim, dim),
      wv: quant(kvDim, dim),
      wo: dense('f16', dim, dim),
      bq: activation(s, [dim], floats(rng, dim, 0.1)),
      norm2: activation(s, [dim], floats(rng, dim, 1)),
      gate: quant(ffn, dim),
      up: dense('bf16', ffn, dim),
      down: quant(dim, ffn),
    });
  const finalNorm = activation(s, [dim], floats(rng, dim, 1));
  const caches = layers.map(() => ({
    k: activation(s, [capacity, kvDim], new Float32Array(capacity * kvDim)),
    v: activation(s, [capacity, kvDim], new Float32Array(capacity * kvDim)),
  }));
  const ropeOpts: RopeOptions = { nHeads, headDim, layout: 'half' };
  const kRopeOpts: RopeOptions = { nHeads: nKvHeads, headDim, layout: 'half' };
  const tokens = [
    Int32Array.from([1, 50, 99, 17, 64]),
    Int32Array.of(33),
    Int32Array.of(98),
    Int32Array.of(0),
  ];
  let pos = 0;
  for (const toks of tokens) {
    const rows = toks.length;
    const a = (w: number) => activation(s, [rows, w], new Float32Array(rows * w));
    const h = a(dim);
    const x = a(dim);
    const q = a(dim);
    const k = a(kvDim);
    const v = a(kvDim);
    const att = a(dim);
    const o = a(dim);
    const gate = a(ffn);
    const up = a(ffn);
    const logits = a(vocab);
    const half = headDim / 2;
    const cv = new Float32Array(rows * half);
    const sv = new Float32Array(rows * half);
    ropeTable(invFreq(headDim), pos, rows, cv, sv);
    const cos = activation(s, [rows, half], cv);
    const sin = activation(s, [rows, half], sv);
    b.embedding(h, embed, toks);
    layers.forEach((L, l) => {
      const c = caches[l]!;
      b.rmsnorm(x, h, L.norm1, 1e-5);
      b.matmul(q, x, L.wq, L.bq);
      b.matmul(k, x, L.wk);
      b.matmul(v, x, L.wv);
      b.rope(q, cos, sin, ropeOpts);
      b.rope(k, cos, sin, kRopeOpts);
      b.copyRows(c.k, pos, k, 0, rows);
      b.copyRows(c.v, pos, v, 0, rows);
      const opts: AttentionOptions = {
        startPos: pos,
        nHeads,
        nKvHeads,
        headDim,
        scale: 1 / Math.sqrt(headDim),
      };
      b.attention(att, q, c.k, c.v, opts);
      b.matmul(o, att, L.wo);
      b.add(h, h, o);
      b.rmsnorm(x, h, L.norm2, 1e-5);
      b.matmul(gate, x, L.gate);
      b.matmul(up, x, L.up);
      b.swiglu(gate, gate, up);
      b.matmul(o, gate, L.down);
      b.add(h, h, o);
    });
    b.rmsnorm(x, h, finalNorm, 1e-5);
    b.matmul(logits, x, embed);
    out.set(`forward at position ${pos} (${rows} rows): logits`, b.read(logits));
    out.set(`forward at position ${pos} (${rows} rows): hidden`, b.read(h));
    pos += rows;
  }
}

/**
 * Attention over caches long enough for a threaded backend to split it by kv heads (even and uneven splits, GQA,
 * sliding windows, soft-caps, prefill and decode rows, head sizes off the SIMD width), plus one too small to split. Runs after
 * the matmuls, so a backend that starts its workers with the first large weight has them running.
 */
function attentions(s: Scope, out: Results): void {
  const b = s.backend;
  const rng = new Rng(3500);
  // [heads, kv heads, head size, rows, start position, window, soft-cap]
  const cases: [number, number, number, number, number, number, number][] = [
    [8, 4, 64, 1, 700, 0, 0],
    [8, 8, 32, 1, 300, 0, 0],
    [6, 3, 36, 40, 300, 100, 0],
    [12, 3, 20, 17, 150, 0, 0],
    [4, 4, 20, 128, 0, 0, 0],
    [10, 5, 16, 3, 400, 64, 0],
    [4, 2, 8, 2, 3, 0, 0],
    [8, 4, 32, 9, 500, 128, 2],
  ];
  for (const [nHeads, nKvHeads, headDim, rows, startPos, window, softcap] of cases) {
    const capacity = startPos + rows + 5;
    const kvw = nKvHeads * headDim;
    const q = activation(s, [rows, nHeads * headDim], floats(rng, rows * nHeads * headDim, 1));
    const k = activation(s, [capacity, kvw], floats(rng, capacity * kvw, 1));
    const v = activation(s, [capacity, kvw], floats(rng, capacity * kvw, 1));
    const o = activation(s, [rows, nHeads * headDim], new Float32Array(rows * nHeads * headDim));
    const opts: AttentionOptions = {
      startPos,
      nHeads,
      nKvHeads,
      headDim,
      scale: 1 / Math.sqrt(headDim),
      window,
      softcap,
    };
    b.attention(o, q, k, v, opts);
    out.set(
      `attention h${nHeads}/${nKvHeads} d${headDim} rows ${rows} at ${startPos} window ${window} softcap ${softcap}`,
      b.read(o),
    );
  }
  // every KV storage format, as a wrapped ring with pinned rows (large enough to be split across the threads)
  const nHeads = 8;
  const nKvHeads = 4;
  const headDim = 64;
  const width = nKvHeads * headDim;
  const rows = 24;
  const window = 200;
  const keep = 4;
  const capacity = keep + window + rows - 1;
  const startPos = 900;
  const q = activation(s, [rows, nHeads * headDim], floats(rng, rows * nHeads * headDim, 1));
  const src = activation(s, [capacity, width], floats(rng, capacity * width, 1));
  for (const kind of KV_KINDS) {
    const k = allocKv(s, kind, capacity, width);
    const v = allocKv(s, kind, capacity, width);
    for (const t of [k, v]) {
      b.writeKv(t, b.view(src, [keep, width]), { startPos: 0, keep });
      const n = capacity - keep;
      b.writeKv(t, b.view(src, [n, width], keep * width), { startPos: startPos + rows - n, keep });
    }
    const o = activation(s, [rows, nHeads * headDim], new Float32Array(rows * nHeads * headDim));
    const opts: AttentionOptions = { startPos, nHeads, nKvHeads, headDim, scale: 0.125, window, keep };
    b.attention(o, q, k, v, opts);
    out.set(
      `attention over ${kind} ring storage, rows ${rows} at ${startPos}, window ${window} keep ${keep}`,
      b.read(o),
    );
  }
}

/** Runs every part on `backend` and returns the named results. */
async function runAll(backend: Backend): Promise<Results> {
  const out: Results = new Map();
  await scoped(backend, backend, (s) => {
    matmuls(s, out);
    attentions(s, out);
    embeddings(s, out);
    uploadedActivation(s, out);
    forward(s, out);
  });
  return out;
}

/**
 * Checks that backends from `factory` give bitwise identical results for every thread count in `opts.threads`
 * (default 1, 2 and 3), and that each leaves `memoryInUse()` where it started. Throws {@link ConformanceError} naming
 * the first result that differs. Disposes every backend it makes. Returns the number of results compared.
 */
export async function checkThreadInvariance(
  factory: ThreadedBackendFactory,
  opts: ThreadInvarianceOptions = {},
): Promise<number> {
  const counts = opts.threads ?? [1, 2, 3];
  if (counts.length < 2) throw new TypeError('checkThreadInvariance: give at least two thread counts');
  let expected: Results | undefined;
  for (const threads of counts) {
    const backend = await factory(threads);
    let got: Results;
    try {
      const before = backend.memoryInUse();
      got = await runAll(backend);
      const after = backend.memoryInUse();
      if (after !== before)
        throw new ConformanceError(
          `thread invariance (${threads} threads): memoryInUse() went from ${before} to ${after} although every tensor was freed`,
        );
    } finally {
      backend.dispose();
    }
    if (expected === undefined) {
      expected = got;
      continue;
    }
    for (const [name, want] of expected) {
      const have = got.get(name);
      if (!have) throw new ConformanceError(`thread invariance: ${name} missing with ${threads} threads`);
      expectBitwise(`thread invariance: ${name}: ${threads} threads vs ${counts[0]}`, have, want);
    }
  }
  return expected?.size ?? 0;
}
