/**
 * Attention: correctness against the reference (GQA ratios 1/2/4, windows, soft-caps, startPos > 0), and bitwise invariance of
 * each position's output across prefill, chunked prefill and decode, and across garbage in cache rows the position
 * must not read.
 */
import type { AttentionOptions, Backend } from '../backend';
import type { Tensor } from '../tensor';
import { EXP_REL, expectBitwise, expectClose, type Scope, scoped, TINY, U } from './compare';
import { floats, Rng } from './random';
import type { ConformanceCase } from './types';

interface Config {
  readonly nHeads: number;
  readonly nKvHeads: number;
  readonly headDim: number;
  readonly window: number;
  /** Soft-cap of the scaled scores (absent = none). */
  readonly softcap?: number;
}

/**
 * Per-element tolerance of attention output (rows of q from `startPos`; k, v with position j at row j), from a float64 evaluation: the score error (f32 dot products) moves the
 * softmax weights, plus exp and the two normalising/accumulating sums, all relative to Σ p_j |v_j|.
 */
export function attentionTolerance(
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  rows: number,
  o: AttentionOptions,
): Float64Array {
  const { nHeads, nKvHeads, headDim, startPos, scale } = o;
  const window = o.window ?? 0;
  const cap = o.softcap ?? 0;
  const keep = o.keep ?? 0;
  const tol = new Float64Array(rows * nHeads * headDim);
  const group = nHeads / nKvHeads;
  for (let r = 0; r < rows; r++) {
    const p = startPos + r;
    const lo = window > 0 ? Math.max(0, p - window + 1) : 0;
    const seen: number[] = [];
    for (let j = 0; j < Math.min(keep, lo); j++) seen.push(j);
    for (let j = lo; j <= p; j++) seen.push(j);
    const n = seen.length;
    for (let h = 0; h < nHeads; h++) {
      const kvh = Math.floor(h / group);
      const s: number[] = [];
      let scoreErr = 0;
      for (const j of seen) {
        let dot = 0;
        let mag = 0;
        for (let d = 0; d < headDim; d++) {
          const a = q[(r * nHeads + h) * headDim + d]! * k[(j * nKvHeads + kvh) * headDim + d]!;
          dot += a;
          mag += Math.abs(a);
        }
        // a soft-cap c·tanh(s/c) has slope <= 1 (it never amplifies the score's error) and adds its own rounding
        const raw = dot * scale;
        const capped = cap > 0 ? cap * Math.tanh(raw / cap) : raw;
        s.push(capped);
        scoreErr = Math.max(
          scoreErr,
          (headDim + 4) * U * mag * Math.abs(scale) +
            U * Math.abs(raw) +
            (cap > 0 ? (2 * EXP_REL + 8 * U) * Math.abs(capped) : 0),
        );
      }
      const max = Math.max(...s);
      const e = s.map((x) => Math.exp(x - max));
      const sum = e.reduce((a, b) => a + b, 0);
      const range = max - Math.min(...s);
      const rel = 4 * scoreErr + 2 * EXP_REL + 2 * (n + headDim + 4) * U + 2 * U * range;
      for (let d = 0; d < headDim; d++) {
        let mag = 0;
        seen.forEach((j, i) => {
          mag += (e[i]! / sum) * Math.abs(v[(j * nKvHeads + kvh) * headDim + d]!);
        });
        tol[(r * nHeads + h) * headDim + d] = 2 * rel * mag + TINY;
      }
    }
  }
  return tol;
}

const CORRECTNESS: readonly (Config & { rows: number; startPos: number; qScale: number })[] = [
  { nHeads: 2, nKvHeads: 2, headDim: 8, window: 0, rows: 1, startPos: 0, qScale: 1 },
  { nHeads: 4, nKvHeads: 2, headDim: 16, window: 0, rows: 5, startPos: 0, qScale: 1 },
  { nHeads: 8, nKvHeads: 2, headDim: 8, window: 0, rows: 3, startPos: 7, qScale: 1 },
  { nHeads: 4, nKvHeads: 1, headDim: 12, window: 3, rows: 4, startPos: 9, qScale: 1 },
  { nHeads: 4, nKvHeads: 4, headDim: 8, window: 4, rows: 6, startPos: 2, qScale: 1 },
  { nHeads: 8, nKvHeads: 2, headDim: 16, window: 8, rows: 1, startPos: 20, qScale: 1 },
  { nHeads: 2, nKvHeads: 1, headDim: 64, window: 0, rows: 2, startPos: 30, qScale: 1 },
  { nHeads: 6, nKvHeads: 3, headDim: 5, window: 0, rows: 7, startPos: 1, qScale: 6 },
  { nHeads: 4, nKvHeads: 2, headDim: 32, window: 1, rows: 3, startPos: 4, qScale: 1 },
  { nHeads: 4, nKvHeads: 2, headDim: 16, window: 0, rows: 5, startPos: 3, qScale: 6, softcap: 2 },
  { nHeads: 8, nKvHeads: 2, headDim: 8, window: 4, rows: 3, startPos: 7, qScale: 3, softcap: 0.5 },
  { nHeads: 2, nKvHeads: 1, headDim: 32, window: 0, rows: 2, startPos: 20, qScale: 1, softcap: 50 },
];

const correctnessCase: ConformanceCase = {
  name: 'attention vs reference: GQA 1/2/4, windows, soft-caps, startPos > 0',
  group: 'ops',
  run: (backend, reference) =>
    scoped(backend, reference, (b, r) => {
      const rng = new Rng(1300);
      for (const c of CORRECTNESS) {
        const capacity = c.startPos + c.rows + 3;
        const qw = c.nHeads * c.headDim;
        const kw = c.nKvHeads * c.headDim;
        const qv = floats(rng, c.rows * qw, c.qScale);
        const kv = floats(rng, capacity * kw, 2);
        const vv = floats(rng, capacity * kw, 3);
        const opts: AttentionOptions = { ...c, scale: 1 / Math.sqrt(c.headDim) };
        const out = b.f32([c.rows, qw], new Float32Array(c.rows * qw).fill(Number.NaN));
        b.backend.attention(
          out,
          b.f32([c.rows, qw], qv),
          b.f32([capacity, kw], kv),
          b.f32([capacity, kw], vv),
          opts,
        );
        const want = r.alloc('f32', [c.rows, qw]);
        r.backend.attention(
          want,
          r.f32([c.rows, qw], qv),
          r.f32([capacity, kw], kv),
          r.f32([capacity, kw], vv),
          opts,
        );
        expectClose(
          `attention heads ${c.nHeads}/${c.nKvHeads} headDim ${c.headDim} rows ${c.rows} startPos ${c.startPos} window ${c.window} softcap ${c.softcap ?? 0}`,
          b.backend.read(out),
          r.backend.read(want),
          attentionTolerance(qv, kv, vv, c.rows, opts),
        );
      }
    }),
};

type Garbage = 'zeros' | 'NaN' | '1e30' | 'random';

function garbageRows(rng: Rng, kind: Garbage, n: number): Float32Array {
  if (kind === 'zeros') return new Float32Array(n);
  if (kind === 'NaN') return new Float32Array(n).fill(Number.NaN);
  if (kind === '1e30') return new Float32Array(n).fill(1e30);
  return floats(rng, n, 1e6);
}

/**
 * Runs attention over positions 0..T-1 in the given chunks on a cache that starts full of garbage; before each chunk
 * the chunk's k/v rows are copied in (as a KV cache fills), and with a window, rows no query of the chunk may read
 * are overwritten with garbage. Returns the outputs of all T positions.
 */
function runChunked(
  s: Scope,
  c: Config,
  data: { q: Float32Array; k: Float32Array; v: Float32Array },
  T: number,
  capacity: number,
  chunks: readonly number[],
  garbage: Garbage,
  rng: Rng,
): Float32Array {
  const b: Backend = s.backend;
  const qw = c.nHeads * c.headDim;
  const kw = c.nKvHeads * c.headDim;
  const q = s.f32([T, qw], data.q);
  const kSrc = s.f32([T, kw], data.k);
  const vSrc = s.f32([T, kw], data.v);
  const k = s.f32([capacity, kw], garbageRows(rng, garbage, capacity * kw));
  const v = s.f32([capacity, kw], garbageRows(rng, garbage, capacity * kw));
  const out = s.f32([T, qw], new Float32Array(T * qw).fill(Number.NaN));
  let start = 0;
  for (const len of chunks) {
    b.copyRows(k, start, kSrc, start, len);
    b.copyRows(v, start, vSrc, start, len);
    const dead = c.window > 0 ? start - c.window + 1 : 0; // rows below this are outside every query's window
    if (dead > 0) {
      b.write(b.view(k, [dead, kw]), garbageRows(rng, garbage, dead * kw));
      b.write(b.view(v, [dead, kw]), garbageRows(rng, garbage, dead * kw));
    }
    const opts: AttentionOptions = { ...c, startPos: start, scale: 1 / Math.sqrt(c.headDim) };
    const rowsView = (t: Tensor) => b.view(t, [len, qw], start * qw);
    b.attention(rowsView(out), rowsView(q), k, v, opts);
    start += len;
  }
  if (start !== T) throw new Error(`conformance: chunks ${chunks} do not cover ${T} positions`);
  return b.read(out);
}

const INVARIANCE: readonly Config[] = [
  { nHeads: 4, nKvHeads: 4, headDim: 16, window: 0 },
  { nHeads: 4, nKvHeads: 2, headDim: 8, window: 0 },
  { nHeads: 8, nKvHeads: 2, headDim: 12, window: 0 },
  { nHeads: 4, nKvHeads: 2, headDim: 8, window: 5 },
  { nHeads: 8, nKvHeads: 2, headDim: 16, window: 3 },
  { nHeads: 2, nKvHeads: 1, headDim: 7, window: 1 },
  { nHeads: 4, nKvHeads: 2, headDim: 12, window: 4, softcap: 1.5 },
  { nHeads: 4, nKvHeads: 1, headDim: 8, window: 0, softcap: 10 },
];

function invarianceCase(garbage: Garbage): ConformanceCase {
  return {
    name: `attention invariance: prefill = chunked = decode, unused cache rows hold ${garbage}`,
    group: 'invariance',
    run: (backend) =>
      scoped(backend, backend, (s) => {
        const rng = new Rng(1400);
        const T = 13;
        const capacity = 19;
        for (const c of INVARIANCE) {
          const data = {
            q: floats(rng, T * c.nHeads * c.headDim, 2),
            k: floats(rng, T * c.nKvHeads * c.headDim, 2),
            v: floats(rng, T * c.nKvHeads * c.headDim, 3),
          };
          const label = `attention heads ${c.nHeads}/${c.nKvHeads} headDim ${c.headDim} window ${c.window} softcap ${c.softcap ?? 0}`;
          const base = runChunked(s, c, data, T, capacity, [T], 'zeros', rng);
          const plans: [string, number[]][] = [
            ['one prefill call', [T]],
            ['chunks 4+3+6', [4, 3, 6]],
            ['chunks 1+7+5', [1, 7, 5]],
            ['decode (one row at a time)', Array(T).fill(1)],
            ['prefill 5 then decode', [5, 1, 1, 1, 1, 1, 1, 1, 1]],
          ];
          for (const [plan, chunks] of plans)
            expectBitwise(
              `${label}: ${plan} with ${garbage} in unused rows vs one call on zeros`,
              runChunked(s, c, data, T, capacity, chunks, garbage, rng),
              base,
            );
        }
      }),
  };
}

export function attentionCases(): ConformanceCase[] {
  return [
    correctnessCase,
    invarianceCase('zeros'),
    invarianceCase('NaN'),
    invarianceCase('1e30'),
    invarianceCase('random'),
  ];
}
