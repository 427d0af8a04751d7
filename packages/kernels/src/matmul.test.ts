import { beforeAll, describe, expect, it } from 'vitest';
import { type Kernels, loadKernels, type WeightDType } from './index';
import {
  encode,
  expectBitwise,
  expectClose,
  f16ToNumber,
  f32s,
  get,
  put,
  randoms,
  refMatmul,
} from './testing/ref';

let k: Kernels;
beforeAll(async () => {
  k = await loadKernels();
});

const DTYPES: WeightDType[] = ['f32', 'f16', 'bf16'];

/** Uploads a random problem; returns pointers and the float64 reference. */
function setup(rows: number, n: number, m: number, dtype: WeightDType, seed: number, withBias: boolean) {
  const x = f32s(randoms(rows * n, seed));
  const w = encode(randoms(m * n, seed + 1, 0.5), dtype);
  const bias = withBias ? f32s(randoms(m, seed + 2)) : undefined;
  const px = put(k, Float32Array.from(x));
  const pw = put(k, w.bytes);
  const pb = bias ? put(k, Float32Array.from(bias)) : undefined;
  const py = k.alloc(rows * m * 4);
  const ref = refMatmul(x, w.exact, rows, n, m, bias);
  const free = () => {
    for (const p of [px, pw, py]) k.free(p);
    if (pb !== undefined) k.free(pb);
  };
  return { px, pw, pb, py, ref, free, x };
}

describe('matmul', () => {
  const shapes: [number, number, number][] = [
    [1, 1, 1],
    [1, 3, 5],
    [1, 13, 7],
    [1, 64, 33],
    [3, 37, 9],
    [5, 129, 17],
    [17, 100, 6],
    [9, 8, 4],
    [70, 45, 11],
  ];
  for (const dtype of DTYPES) {
    for (const [rows, n, m] of shapes) {
      it(`${dtype} rows=${rows} in=${n} out=${m} matches float64`, () => {
        for (const withBias of [false, true]) {
          const s = setup(rows, n, m, dtype, rows * 1000 + n * 10 + m, withBias);
          k.matmul(s.py, s.px, s.pw, rows, n, m, dtype, s.pb);
          expectClose(get(k, s.py, rows * m), s.ref.y, s.ref.mag, 2e-6, `${dtype} ${rows}x${n}x${m}`);
          s.free();
        }
      });
    }
  }

  it('is bitwise row-invariant: rows=1 vs all rows vs uneven chunks, every dtype, odd in', () => {
    for (const dtype of DTYPES) {
      for (const [rows, n, m] of [
        [37, 203, 13],
        [64, 256, 9],
        [11, 7, 5],
        [29, 77, 7], // 77 = 9·8 + 4 + 1: every part of the reduction order is exercised
        [13, 134, 6], // 134 = 16·8 + 4 + 2
        [70, 45, 3], // two 64-row prefill tiles
        [13, 40001, 2], // large in: 6-row tiles
      ] as const) {
        const s = setup(rows, n, m, dtype, 7 + n, true);
        k.matmul(s.py, s.px, s.pw, rows, n, m, dtype, s.pb);
        const all = get(k, s.py, rows * m);
        // one row at a time
        const one = new Float32Array(rows * m);
        const y1 = k.alloc(m * 4);
        for (let r = 0; r < rows; r++) {
          k.matmul(y1, s.px + r * n * 4, s.pw, 1, n, m, dtype, s.pb);
          one.set(get(k, y1, m), r * m);
        }
        expectBitwise(one, all, `${dtype} rows=1 vs rows=${rows}`);
        // uneven chunks: 1, 2, 3, 5, 7, ...
        const chunked = new Float32Array(rows * m);
        let r0 = 0;
        for (const c of [1, 2, 3, 5, 7, 6, 4, 9, 13, 50]) {
          const c2 = Math.min(c, rows - r0);
          if (c2 <= 0) break;
          const yc = k.alloc(c2 * m * 4);
          k.matmul(yc, s.px + r0 * n * 4, s.pw, c2, n, m, dtype, s.pb);
          chunked.set(get(k, yc, c2 * m), r0 * m);
          k.free(yc);
          r0 += c2;
        }
        expectBitwise(chunked, all, `${dtype} chunks vs rows=${rows}`);
        k.free(y1);
        s.free();
      }
    }
  });
});

describe('matmul with f16 inf/NaN weights (the exact fallback of the fast f16 path)', () => {
  it('propagates inf and NaN exactly like the reference, and leaves other rows untouched', () => {
    for (const rows of [1, 6]) {
      const n = 37;
      const m = 9;
      const x = f32s(randoms(rows * n, 3)).map((v) => Math.abs(v) + 0.1); // positive: inf stays inf
      const w = encode(randoms(m * n, 4, 0.5), 'f16');
      const u16 = new Uint16Array(w.bytes.buffer);
      const special: [number, number, number][] = [
        [2, 5, 0x7c00], // +inf
        [4, 36, 0xfc00], // -inf (in the tail)
        [5, 0, 0x7e01], // NaN
        [7, 3, 0x7c00], // +inf and -inf in one row -> NaN
        [7, 30, 0xfc00],
      ];
      for (const [o, i, h] of special) {
        u16[o * n + i] = h;
        w.exact[o * n + i] = h === 0x7c00 ? Infinity : h === 0xfc00 ? -Infinity : Number.NaN;
      }
      const px = put(k, Float32Array.from(x));
      const pw = put(k, w.bytes);
      const py = k.alloc(rows * m * 4);
      k.matmul(py, px, pw, rows, n, m, 'f16');
      const got = get(k, py, rows * m);
      const ref = refMatmul(x, w.exact, rows, n, m);
      for (let r = 0; r < rows; r++) {
        for (let o = 0; o < m; o++) {
          const g = got[r * m + o]!;
          const want = ref.y[r * m + o]!;
          if (Number.isFinite(want)) {
            expect(Math.abs(g - want) / ref.mag[r * m + o]!, `row ${r} out ${o}`).toBeLessThan(2e-6);
          } else {
            expect(
              Object.is(g, want) || (Number.isNaN(g) && Number.isNaN(want)),
              `row ${r} out ${o}: ${g}`,
            ).toBe(true);
          }
        }
      }
      for (const p of [px, pw, py]) k.free(p);
    }
  });
});

describe('toF32', () => {
  it('converts every f16 bit pattern exactly (subnormals, inf, NaN)', () => {
    const n = 65536;
    const src = new Uint16Array(n);
    for (let i = 0; i < n; i++) src[i] = i;
    const ps = put(k, src);
    const po = k.alloc(n * 4);
    k.toF32(po, ps, n, 'f16');
    const out = get(k, po, n);
    const bits = new Uint32Array(out.buffer);
    for (let i = 0; i < n; i++) {
      const want = f16ToNumber(i);
      if (Number.isNaN(want)) {
        expect(Number.isNaN(out[i]!), `f16 0x${i.toString(16)}`).toBe(true);
        // payload kept: quiet bit and mantissa move to the top of the f32 mantissa
        expect(bits[i]! & 0x7fffff, `payload 0x${i.toString(16)}`).toBe((i & 0x3ff) << 13);
        expect(bits[i]! >>> 31).toBe(i >> 15);
      } else {
        expect(Object.is(out[i], want), `f16 0x${i.toString(16)}: ${out[i]} vs ${want}`).toBe(true);
      }
    }
    k.free(ps);
    k.free(po);
  });

  it('converts bf16 and f32 (odd lengths)', () => {
    for (const n of [1, 7, 8, 9, 1001]) {
      const vals = randoms(n, n, 1e3);
      for (const dt of ['bf16', 'f32'] as const) {
        const e = encode(vals, dt);
        const ps = put(k, e.bytes);
        const po = k.alloc(n * 4);
        k.toF32(po, ps, n, dt);
        expect(Array.from(get(k, po, n))).toEqual(Array.from(e.exact));
        k.free(ps);
        k.free(po);
      }
    }
  });
});

describe('embedding', () => {
  it('gathers dense rows in every dtype', () => {
    const vocab = 13;
    const dim = 19;
    for (const dt of DTYPES) {
      const table = encode(randoms(vocab * dim, 5), dt);
      const ids = [3, 0, 12, 3, 7];
      const pt = put(k, table.bytes);
      const pi = put(k, ids, 'i32');
      const po = k.alloc(ids.length * dim * 4);
      k.embedding(po, pt, pi, ids.length, vocab, dim, dt);
      const out = get(k, po, ids.length * dim);
      for (let t = 0; t < ids.length; t++) {
        for (let d = 0; d < dim; d++) expect(out[t * dim + d]).toBe(table.exact[ids[t]! * dim + d]);
      }
      for (const p of [pt, pi, po]) k.free(p);
    }
  });
});
