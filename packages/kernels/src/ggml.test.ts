import { beforeAll, describe, expect, it } from 'vitest';
import {
  dequantizeGgmlRow,
  GGML_BLOCK_TYPES,
  type GgmlBlockType,
  ggmlBlockAffine,
  ggmlRowBytes,
  type Kernels,
  loadKernels,
  quantizedActivationBytes,
} from './index';
import {
  expectBitwise,
  expectClose,
  f32s,
  get,
  numberToF16,
  put,
  randoms,
  refMatmul,
  refQuantizeActivations,
} from './testing/ref';

let k: Kernels;
beforeAll(async () => {
  k = await loadKernels();
});

const TYPES = Object.keys(GGML_BLOCK_TYPES) as GgmlBlockType[];

/** Byte offsets of each type's f16 scale fields within a block. */
const F16_FIELDS: Record<GgmlBlockType, number[]> = {
  Q4_0: [0],
  Q4_1: [0, 2],
  Q5_0: [0],
  Q5_1: [0, 2],
  Q8_0: [0],
  Q2_K: [80, 82],
  Q3_K: [108],
  Q4_K: [0, 2],
  Q5_K: [0, 2],
  Q6_K: [208],
};

function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Random blocks: random bytes everywhere (every code and scale bit pattern), finite random f16 scales. */
export function randomBlocks(type: GgmlBlockType, rows: number, cols: number, seed: number): Uint8Array {
  const r = rng(seed);
  const t = GGML_BLOCK_TYPES[type];
  const out = Uint8Array.from({ length: rows * ggmlRowBytes(type, cols) }, () => Math.floor(r() * 256));
  for (let b = 0; b < out.byteLength / t.blockBytes; b++)
    for (const f of F16_FIELDS[type]) {
      const h = numberToF16((r() < 0.5 ? -1 : 1) * 2 ** (-12 + 8 * r()));
      out[b * t.blockBytes + f] = h & 0xff;
      out[b * t.blockBytes + f + 1] = h >> 8;
    }
  return out;
}

/** Dequantized weights (float64) and per-element magnitudes `|s|·c + |o|`. */
function reference(type: GgmlBlockType, rows: number, cols: number, data: Uint8Array) {
  const w = new Float64Array(rows * cols);
  const mag = new Float64Array(rows * cols);
  const t = GGML_BLOCK_TYPES[type];
  const codes = new Uint8Array(t.blockSize);
  const s = new Float64Array(16);
  const o = new Float64Array(16);
  for (let r = 0; r < rows; r++) {
    dequantizeGgmlRow(type, cols, data, r, w, r * cols);
    for (let b = 0; b < cols / t.blockSize; b++) {
      const sub = ggmlBlockAffine(type, data, r * ggmlRowBytes(type, cols) + b * t.blockBytes, codes, s, o);
      for (let i = 0; i < t.blockSize; i++)
        mag[r * cols + b * t.blockSize + i] =
          Math.abs(s[Math.floor(i / sub)]!) * codes[i]! + Math.abs(o[Math.floor(i / sub)]!);
    }
  }
  return { w, mag };
}

describe('GGML block kernels', () => {
  for (const type of TYPES) {
    const n = 512;
    const m = 7;
    it(`${type}: ggmlMatmul matches float64 (1, 3 and 6 rows, bias) and rows are bitwise independent`, () => {
      const data = randomBlocks(type, m, n, 10 + GGML_BLOCK_TYPES[type].id);
      const { w, mag } = reference(type, m, n, data);
      const pw = put(k, data);
      for (const [rows, withBias] of [
        [1, false],
        [3, true],
        [6, false],
        [9, true],
      ] as const) {
        const x = f32s(randoms(rows * n, rows));
        const bias = withBias ? f32s(randoms(m, 5)) : undefined;
        const want = refMatmul(x, w, rows, n, m, bias);
        const magRef = refMatmul(x.map(Math.abs), mag, rows, n, m, bias?.map(Math.abs));
        const px = put(k, Float32Array.from(x));
        const pb = bias ? put(k, Float32Array.from(bias)) : undefined;
        const py = k.alloc(rows * m * 4);
        k.ggmlMatmul(py, px, pw, rows, n, m, type, pb);
        const got = get(k, py, rows * m);
        expectClose(got, want.y, magRef.y, 2e-6, `${type} rows=${rows}`);
        // each row alone gives the same bits
        const one = k.alloc(m * 4);
        for (let r = 0; r < rows; r++) {
          k.ggmlMatmul(one, px + r * n * 4, pw, 1, n, m, type, pb);
          expectBitwise(get(k, one, m), got.subarray(r * m, (r + 1) * m), `${type} row ${r} of ${rows}`);
        }
        for (const p of [px, py, one, ...(pb ? [pb] : [])]) k.free(p);
      }
      k.free(pw);
    });

    it(`${type}: ggmlEmbedding gives the dequantized rows`, () => {
      const vocab = 5;
      const data = randomBlocks(type, vocab, n, 30 + GGML_BLOCK_TYPES[type].id);
      const { w, mag } = reference(type, vocab, n, data);
      const ids = [4, 0, 2, 4];
      const pt = put(k, data);
      const pi = put(k, ids, 'i32');
      const po = k.alloc(ids.length * n * 4);
      k.ggmlEmbedding(po, pt, pi, ids.length, vocab, n, type);
      const got = get(k, po, ids.length * n);
      const want = new Float64Array(ids.length * n);
      const m2 = new Float64Array(ids.length * n);
      ids.forEach((id, r) => {
        want.set(w.subarray(id * n, (id + 1) * n), r * n);
        m2.set(mag.subarray(id * n, (id + 1) * n), r * n);
      });
      expectClose(got, want, m2, 2 ** -22, `${type} embedding`);
      for (const p of [pt, pi, po]) k.free(p);
    });

    it(`${type}: ggmlMatmulQ8a equals float64 on the int8-rounded activations, rows bitwise independent`, () => {
      const data = randomBlocks(type, m, n, 50 + GGML_BLOCK_TYPES[type].id);
      const { w, mag } = reference(type, m, n, data);
      const pw = put(k, data);
      for (const rows of [1, 5]) {
        const x = f32s(randoms(rows * n, 70 + rows));
        const qa = refQuantizeActivations(x, rows, n);
        const want = refMatmul(qa.xhat, w, rows, n, m);
        const magRef = refMatmul(qa.xhat.map(Math.abs), mag, rows, n, m);
        const px = put(k, Float32Array.from(x));
        const pq = k.alloc(quantizedActivationBytes(rows, n));
        k.quantizeActivations(pq, px, rows, n);
        const py = k.alloc(rows * m * 4);
        k.ggmlMatmulQ8a(py, pq, pw, rows, n, m, type);
        const got = get(k, py, rows * m);
        expectClose(got, want.y, magRef.y, 2e-6, `${type} q8a rows=${rows}`);
        // and close to the exact result (within the activation rounding)
        const exact = refMatmul(x, w, rows, n, m);
        expectClose(got, exact.y, magRef.y, 2e-2, `${type} q8a vs exact`);
        const one = k.alloc(m * 4);
        for (let r = 0; r < rows; r++) {
          k.ggmlMatmulQ8a(one, pq + r * quantizedActivationBytes(1, n), pw, 1, n, m, type);
          expectBitwise(get(k, one, m), got.subarray(r * m, (r + 1) * m), `${type} q8a row ${r}`);
        }
        for (const p of [px, pq, py, one]) k.free(p);
      }
      k.free(pw);
    });
  }

  it('refuses bad types, row lengths and ranges, naming the kernel', () => {
    const w = k.alloc(1024);
    const x = k.alloc(1024);
    const y = k.alloc(64);
    expect(() => k.ggmlMatmul(y, x, w, 1, 32, 1, 'Q4_2' as GgmlBlockType)).toThrow(
      /ggmlMatmul: type must be one of/,
    );
    expect(() => k.ggmlMatmul(y, x, w, 1, 48, 1, 'Q4_0')).toThrow(
      /ggmlMatmul: inDim \(48\) must be a multiple/,
    );
    expect(() => k.ggmlMatmul(y, x, w, 1, 256, 8, 'Q8_0')).toThrow(RangeError);
    expect(() => k.ggmlMatmulQ8a(y, x, w, 4, 256, 1, 'Q4_K')).toThrow(/ggmlMatmulQ8a: xq range/);
    expect(() => k.ggmlEmbedding(y, w, x, 1, 1, 16, 'Q4_0')).toThrow(/ggmlEmbedding: dim \(16\)/);
    for (const p of [w, x, y]) k.free(p);
  });
});
