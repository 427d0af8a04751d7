import { beforeAll, describe, expect, it } from 'vitest';
import { type Kernels, loadKernels, type WeightDType } from './index';
import {
  expectBitwise,
  expectClose,
  f32s,
  get,
  put,
  randomQuantized,
  randoms,
  refMatmul,
} from './testing/ref';

let k: Kernels;
beforeAll(async () => {
  k = await loadKernels();
});

const BITS = [2, 3, 4, 5, 6, 8] as const;
const GROUPS = [32, 64, 128] as const;
const SCALE_DTYPES: WeightDType[] = ['f32', 'f16', 'bf16'];

function setup(
  rows: number,
  n: number,
  m: number,
  bits: number,
  gs: number,
  sdt: WeightDType,
  seed: number,
  withBias: boolean,
) {
  const q = randomQuantized(m, n, bits, gs, sdt, seed);
  const x = f32s(randoms(rows * n, seed + 1));
  const bias = withBias ? f32s(randoms(m, seed + 2)) : undefined;
  const p = {
    x: put(k, Float32Array.from(x)),
    packed: put(k, q.packed),
    scales: put(k, q.scales),
    biases: put(k, q.biases),
    bias: bias ? put(k, Float32Array.from(bias)) : undefined,
    y: k.alloc(rows * m * 4),
  };
  const ref = refMatmul(x, q.deq, rows, n, m, bias);
  const free = () => {
    for (const v of Object.values(p)) if (v !== undefined) k.free(v);
  };
  const run = (y: number, x: number, r: number) =>
    k.matmulQ(y, x, p.packed, p.scales, p.biases, r, n, m, bits, gs, sdt, p.bias);
  return { p, ref, free, run, q };
}

describe('matmulQ', () => {
  for (const bits of BITS) {
    for (const gs of GROUPS) {
      for (const sdt of SCALE_DTYPES) {
        it(`bits=${bits} group=${gs} scales=${sdt} matches float64 (1 row, 5 rows, bias)`, () => {
          const n = gs * 3;
          const m = 7;
          for (const [rows, withBias] of [
            [1, false],
            [5, true],
          ] as const) {
            const s = setup(rows, n, m, bits, gs, sdt, bits * 100 + gs + rows, withBias);
            s.run(s.p.y, s.p.x, rows);
            expectClose(
              get(k, s.p.y, rows * m),
              s.ref.y,
              s.ref.mag,
              2e-6,
              `q${bits} g${gs} ${sdt} rows=${rows}`,
            );
            s.free();
          }
        });
      }
    }
  }

  it('handles larger shapes on the fast paths (in not a multiple of 4 groups, odd out)', () => {
    for (const bits of [4, 8]) {
      for (const gs of [32, 64]) {
        const s = setup(9, gs * 7, 13, bits, gs, 'f16', 77 + bits + gs, true);
        s.run(s.p.y, s.p.x, 9);
        expectClose(get(k, s.p.y, 9 * 13), s.ref.y, s.ref.mag, 2e-6, `q${bits} g${gs}`);
        s.free();
      }
    }
  });

  it('is bitwise row-invariant for every bits value (rows=1 vs all rows vs uneven chunks)', () => {
    for (const bits of BITS) {
      for (const [gs, sdt] of [
        [32, 'f16'],
        [64, 'bf16'],
        [128, 'f32'],
      ] as const) {
        const rows = 23;
        const n = gs * 5;
        const m = 11;
        const s = setup(rows, n, m, bits, gs, sdt, 1000 + bits, true);
        s.run(s.p.y, s.p.x, rows);
        const all = get(k, s.p.y, rows * m);
        const one = new Float32Array(rows * m);
        const y1 = k.alloc(m * 4);
        for (let r = 0; r < rows; r++) {
          s.run(y1, s.p.x + r * n * 4, 1);
          one.set(get(k, y1, m), r * m);
        }
        expectBitwise(one, all, `q${bits} g${gs} rows=1 vs rows=${rows}`);
        const chunked = new Float32Array(rows * m);
        let r0 = 0;
        for (const c of [2, 5, 3, 4, 8, 1]) {
          const yc = k.alloc(c * m * 4);
          s.run(yc, s.p.x + r0 * n * 4, c);
          chunked.set(get(k, yc, c * m), r0 * m);
          k.free(yc);
          r0 += c;
        }
        expect(r0).toBe(rows);
        expectBitwise(chunked, all, `q${bits} g${gs} chunks vs rows=${rows}`);
        k.free(y1);
        s.free();
      }
    }
  });
});

describe('matmulQ across prefill row tiles', () => {
  it('is bitwise row-invariant when rows span several row tiles (70 rows; and in = 32768, 8-row tiles)', () => {
    for (const [rows, n, m, bits, gs] of [
      [70, 96, 5, 4, 32],
      [70, 128, 3, 8, 64],
      [70, 96, 3, 3, 32],
      [11, 32768, 3, 4, 128],
      [11, 32768, 2, 8, 64],
    ] as const) {
      const s = setup(rows, n, m, bits, gs, 'f16', 5000 + rows + n, true);
      s.run(s.p.y, s.p.x, rows);
      const all = get(k, s.p.y, rows * m);
      expectClose(all, s.ref.y, s.ref.mag, 2e-6, `q${bits} rows=${rows} in=${n}`);
      const y1 = k.alloc(m * 4);
      const one = new Float32Array(rows * m);
      for (let r = 0; r < rows; r++) {
        s.run(y1, s.p.x + r * n * 4, 1);
        one.set(get(k, y1, m), r * m);
      }
      expectBitwise(one, all, `q${bits} in=${n}: rows=1 vs rows=${rows}`);
      k.free(y1);
      s.free();
    }
  });
});

describe('embeddingQ', () => {
  it('dequantizes gathered rows for every bits × group × scale dtype', () => {
    const vocab = 9;
    for (const bits of BITS) {
      for (const gs of GROUPS) {
        for (const sdt of SCALE_DTYPES) {
          const dim = gs * 2;
          const q = randomQuantized(vocab, dim, bits, gs, sdt, bits + gs);
          const ids = [8, 0, 4, 4];
          const pp = put(k, q.packed);
          const ps = put(k, q.scales);
          const pb = put(k, q.biases);
          const pi = put(k, ids, 'i32');
          const po = k.alloc(ids.length * dim * 4);
          k.embeddingQ(po, pp, ps, pb, pi, ids.length, vocab, dim, bits, gs, sdt);
          const out = get(k, po, ids.length * dim);
          const want = new Float64Array(ids.length * dim);
          for (let t = 0; t < ids.length; t++)
            want.set(q.deq.subarray(ids[t]! * dim, (ids[t]! + 1) * dim), t * dim);
          // w = scale * q + bias rounded twice in f32
          expectClose(out, want, 0.02 * 2 ** bits, 1e-6, `embeddingQ q${bits} g${gs} ${sdt}`);
          for (const p of [pp, ps, pb, pi, po]) k.free(p);
        }
      }
    }
  });
});
