import { beforeAll, describe, expect, it } from 'vitest';
import { type Kernels, loadKernels } from './index';
import { expectBitwise, expectClose, f32s, get, put, randoms } from './testing/ref';

let k: Kernels;
beforeAll(async () => {
  k = await loadKernels();
});

interface Shape {
  nHeads: number;
  nKvHeads: number;
  headDim: number;
  window: number;
  /** Soft-cap of the scaled scores (absent = none). */
  softcap?: number;
}

function refAttention(
  q: Float64Array,
  kc: Float64Array,
  vc: Float64Array,
  rows: number,
  start: number,
  s: Shape,
  scale: number,
): Float64Array {
  const { nHeads, nKvHeads, headDim: hd, window } = s;
  const out = new Float64Array(rows * nHeads * hd);
  const g = nHeads / nKvHeads;
  for (let r = 0; r < rows; r++) {
    const p = start + r;
    const lo = window > 0 ? Math.max(0, p - window + 1) : 0;
    for (let h = 0; h < nHeads; h++) {
      const kvh = Math.floor(h / g);
      const sc: number[] = [];
      for (let j = lo; j <= p; j++) {
        let d = 0;
        for (let i = 0; i < hd; i++) d += q[(r * nHeads + h) * hd + i]! * kc[(j * nKvHeads + kvh) * hd + i]!;
        const x = d * scale;
        sc.push(s.softcap ? s.softcap * Math.tanh(x / s.softcap) : x);
      }
      const m = Math.max(...sc);
      const e = sc.map((v) => Math.exp(v - m));
      const tot = e.reduce((a, b) => a + b, 0);
      for (let i = 0; i < hd; i++) {
        let acc = 0;
        for (let j = lo; j <= p; j++) acc += e[j - lo]! * vc[(j * nKvHeads + kvh) * hd + i]!;
        out[(r * nHeads + h) * hd + i] = acc / tot;
      }
    }
  }
  return out;
}

function setup(capacity: number, rows: number, s: Shape, seed: number) {
  const kvDim = s.nKvHeads * s.headDim;
  const q = f32s(randoms(rows * s.nHeads * s.headDim, seed, 2));
  const kc = f32s(randoms(capacity * kvDim, seed + 1, 2));
  const vc = f32s(randoms(capacity * kvDim, seed + 2));
  const p = {
    q: put(k, Float32Array.from(q)),
    k: put(k, Float32Array.from(kc)),
    v: put(k, Float32Array.from(vc)),
    out: k.alloc(rows * s.nHeads * s.headDim * 4),
  };
  const free = () => {
    for (const v of Object.values(p)) k.free(v);
  };
  return { q, kc, vc, p, free, kvDim };
}

const SHAPES: Shape[] = [
  { nHeads: 1, nKvHeads: 1, headDim: 1, window: 0 },
  { nHeads: 4, nKvHeads: 2, headDim: 16, window: 0 },
  { nHeads: 6, nKvHeads: 1, headDim: 13, window: 0 },
  { nHeads: 8, nKvHeads: 8, headDim: 32, window: 5 },
  { nHeads: 4, nKvHeads: 2, headDim: 64, window: 1 },
  { nHeads: 2, nKvHeads: 1, headDim: 6, window: 17 },
  { nHeads: 4, nKvHeads: 2, headDim: 16, window: 0, softcap: 0.5 },
  { nHeads: 6, nKvHeads: 3, headDim: 13, window: 4, softcap: 10 },
  { nHeads: 2, nKvHeads: 1, headDim: 7, window: 0, softcap: 1e-3 },
];

describe('attention', () => {
  for (const s of SHAPES) {
    it(`matches float64: heads ${s.nHeads}/${s.nKvHeads}, headDim ${s.headDim}, window ${s.window}, softcap ${s.softcap ?? 0}`, () => {
      for (const [rows, start] of [
        [1, 0],
        [1, 9],
        [7, 0],
        [5, 11],
      ] as const) {
        const t = setup(start + rows, rows, s, rows * 31 + start);
        const scale = 1 / Math.sqrt(s.headDim);
        k.attention(
          t.p.out,
          t.p.q,
          t.p.k,
          t.p.v,
          rows,
          start,
          s.nHeads,
          s.nKvHeads,
          s.headDim,
          scale,
          s.window,
          s.softcap ?? 0,
        );
        const want = refAttention(t.q, t.kc, t.vc, rows, start, s, Math.fround(scale));
        expectClose(get(k, t.p.out, want.length), want, 1, 2e-6, `attention rows=${rows} start=${start}`);
        t.free();
      }
    });
  }

  it('is bitwise invariant: prefill vs one row at a time vs chunks, with garbage in spare cache rows', () => {
    for (const s of [
      { nHeads: 4, nKvHeads: 2, headDim: 20, window: 0 },
      { nHeads: 8, nKvHeads: 2, headDim: 64, window: 0 },
      { nHeads: 3, nKvHeads: 3, headDim: 9, window: 6 },
      { nHeads: 4, nKvHeads: 2, headDim: 12, window: 5, softcap: 2 },
    ] as Shape[]) {
      const rows = 37;
      const capacity = 64;
      const t = setup(capacity, rows, s, 99 + s.headDim);
      const rowBytes = s.nHeads * s.headDim * 4;
      const scale = 1 / Math.sqrt(s.headDim);
      const args = [s.nHeads, s.nKvHeads, s.headDim, scale, s.window, s.softcap ?? 0] as const;
      // prefill of all rows with the spare cache rows (>= rows) holding NaN / huge values
      const poison = (from: number) => {
        const kv = k.f32(t.p.k, capacity * t.kvDim);
        const vv = k.f32(t.p.v, capacity * t.kvDim);
        for (let i = from * t.kvDim; i < capacity * t.kvDim; i++) {
          kv[i] = i % 2 ? Number.NaN : 3e38;
          vv[i] = i % 3 ? Number.NaN : -3e38;
        }
      };
      poison(rows);
      k.attention(t.p.out, t.p.q, t.p.k, t.p.v, rows, 0, ...args);
      const all = get(k, t.p.out, rows * s.nHeads * s.headDim);
      expect(all.every(Number.isFinite)).toBe(true);
      // decode: one row at a time, the cache beyond the current position poisoned differently each time
      const one = new Float32Array(all.length);
      const o1 = k.alloc(rowBytes);
      for (let r = 0; r < rows; r++) {
        const saved = k.f32(t.p.k, capacity * t.kvDim).slice();
        const savedV = k.f32(t.p.v, capacity * t.kvDim).slice();
        poison(r + 1);
        k.attention(o1, t.p.q + r * rowBytes, t.p.k, t.p.v, 1, r, ...args);
        one.set(get(k, o1, s.nHeads * s.headDim), r * s.nHeads * s.headDim);
        k.f32(t.p.k, capacity * t.kvDim).set(saved);
        k.f32(t.p.v, capacity * t.kvDim).set(savedV);
      }
      expectBitwise(one, all, `decode vs prefill ${JSON.stringify(s)}`);
      // chunks
      const chunked = new Float32Array(all.length);
      let r0 = 0;
      for (const c of [3, 1, 8, 5, 20]) {
        const oc = k.alloc(c * rowBytes);
        k.attention(oc, t.p.q + r0 * rowBytes, t.p.k, t.p.v, c, r0, ...args);
        chunked.set(get(k, oc, c * s.nHeads * s.headDim), r0 * s.nHeads * s.headDim);
        k.free(oc);
        r0 += c;
      }
      expect(r0).toBe(rows);
      expectBitwise(chunked, all, `chunks vs prefill ${JSON.stringify(s)}`);
      // a k/v row before the window start must not be read either
      if (s.window > 0) {
        const p = rows - 1;
        const lo = p - s.window + 1;
        const kv = k.f32(t.p.k, capacity * t.kvDim);
        for (let i = 0; i < lo * t.kvDim; i++) kv[i] = Number.NaN;
        k.attention(o1, t.p.q + p * rowBytes, t.p.k, t.p.v, 1, p, ...args);
        expectBitwise(
          get(k, o1, s.nHeads * s.headDim),
          all.subarray(p * s.nHeads * s.headDim),
          'window: rows before the window are not read',
        );
      }
      k.free(o1);
      t.free();
    }
  });

  it('handles long contexts (softmax over thousands of keys)', () => {
    const s = { nHeads: 4, nKvHeads: 1, headDim: 32, window: 0 };
    const start = 3000;
    const t = setup(start + 2, 2, s, 5);
    const scale = 1 / Math.sqrt(32);
    k.attention(t.p.out, t.p.q, t.p.k, t.p.v, 2, start, 4, 1, 32, scale, 0);
    const want = refAttention(t.q, t.kc, t.vc, 2, start, s, Math.fround(scale));
    expectClose(get(k, t.p.out, want.length), want, 1, 2e-6, 'long context');
    t.free();
  });

  it('rejects a negative, infinite or NaN softcap', () => {
    const t = setup(2, 1, { nHeads: 2, nKvHeads: 1, headDim: 4, window: 0 }, 3);
    for (const cap of [-1, Number.POSITIVE_INFINITY, Number.NaN])
      expect(() => k.attention(t.p.out, t.p.q, t.p.k, t.p.v, 1, 0, 2, 1, 4, 0.5, 0, cap)).toThrow(
        /attention: softcap/,
      );
    t.free();
  });
});
