import { beforeAll, describe, expect, it } from 'vitest';
import { type Kernels, loadKernels, type WeightDType } from './index';
import { put } from './testing/ref';

let k: Kernels;
beforeAll(async () => {
  k = await loadKernels();
});

/** Calls `f` with an argument deliberately of the wrong type. */
function bad<T>(v: unknown): T {
  return v as T;
}

describe('argument validation', () => {
  it('matmul: sizes, dtype, ranges, overlap', () => {
    const x = k.alloc(4 * 8 * 4);
    const w = k.alloc(8 * 8 * 4);
    const y = k.alloc(4 * 8 * 4);
    expect(() => k.matmul(y, x, w, 4, 8, 8, 'f32')).not.toThrow();
    expect(() => k.matmul(y, x, w, 0, 8, 8, 'f32')).toThrow(/matmul: rows must be in \[1/);
    expect(() => k.matmul(y, x, w, 1.5, 8, 8, 'f32')).toThrow(TypeError);
    expect(() => k.matmul(y, x, w, 4, 8, 8, bad<WeightDType>('f64'))).toThrow(/matmul: wDtype must be/);
    expect(() => k.matmul(y, x, w, 4, 9, 8, 'f32')).toThrow(
      /matmul: x range .* not inside a live allocation/,
    );
    expect(() => k.matmul(y, x, w, 4, 8, 9, 'f32')).toThrow(/matmul: w range/);
    expect(() => k.matmul(y + 4, x, w, 4, 8, 8, 'f32')).toThrow(/matmul: y range/);
    expect(() => k.matmul(y, x, w, 4, 8, 8, 'f32', y)).toThrow(/matmul: bias range|overlaps/);
    expect(() => k.matmul(x, x, w, 4, 8, 8, 'f32')).toThrow(/matmul: y .* overlaps x/);
    expect(() => k.matmul(y, x + 2, w, 1, 8, 8, 'f32')).toThrow(/matmul: x .* 4-byte aligned/);
    expect(() => k.matmul(y, bad<number>('0'), w, 1, 8, 8, 'f32')).toThrow(TypeError);
    expect(() => k.matmul(y, 2 ** 40, w, 1, 8, 8, 'f32')).toThrow(RangeError);
    expect(() => k.matmul(y, 16, w, 1, 8, 8, 'f32')).toThrow(/not inside a live allocation/);
    k.free(x);
    expect(() => k.matmul(y, x, w, 4, 8, 8, 'f32')).toThrow(/matmul: x range/); // freed
    for (const p of [w, y]) k.free(p);
  });

  it('matmulQ: bits, groupSize, divisibility, scale dtype, ranges', () => {
    const n = 64;
    const m = 2;
    const x = k.alloc(n * 4);
    const packed = k.alloc((m * n * 4) / 8);
    const scales = k.alloc(m * (n / 32) * 2);
    const biases = k.alloc(m * (n / 32) * 2);
    const y = k.alloc(m * 4);
    const call = (bits: number, gs: number, sdt: WeightDType, inDim = n, py = y) =>
      k.matmulQ(py, x, packed, scales, biases, 1, inDim, m, bits, gs, sdt);
    expect(() => call(4, 32, 'f16')).not.toThrow();
    expect(() => call(7, 32, 'f16')).toThrow(/matmulQ: bits must be one of 2, 3, 4, 5, 6, 8/);
    expect(() => call(4, 16, 'f16')).toThrow(/matmulQ: groupSize must be one of 32, 64, 128/);
    expect(() => call(4, 64, 'f16', 96)).toThrow(
      /matmulQ: inDim \(96\) must be a multiple of groupSize \(64\)/,
    );
    expect(() => call(4, 32, bad<WeightDType>('int8'))).toThrow(/matmulQ: scaleDtype/);
    expect(() => call(8, 32, 'f16')).toThrow(/matmulQ: packed range/);
    expect(() => call(4, 32, 'f32')).toThrow(/matmulQ: scales range/);
    expect(() => call(4, 32, 'f16', n, x)).toThrow(/matmulQ: y .* overlaps x/);
    for (const p of [x, packed, scales, biases, y]) k.free(p);
  });

  it('embedding: ids must be inside the vocabulary', () => {
    const table = k.alloc(10 * 4 * 4);
    const ids = put(k, [0, 9, 3], 'i32');
    const out = k.alloc(3 * 4 * 4);
    expect(() => k.embedding(out, table, ids, 3, 10, 4, 'f32')).not.toThrow();
    k.i32(ids, 3)[2] = 10;
    expect(() => k.embedding(out, table, ids, 3, 10, 4, 'f32')).toThrow(
      /embedding: ids\[2\] = 10 is outside the vocabulary \[0, 10\)/,
    );
    k.i32(ids, 3)[2] = -1;
    expect(() => k.embedding(out, table, ids, 3, 10, 4, 'f32')).toThrow(/ids\[2\] = -1/);
    expect(() => k.embedding(out, table, ids, 4, 10, 4, 'f32')).toThrow(/embedding: ids range/);
    const packed = k.alloc(10 * 4 * 4);
    const sc = k.alloc(10 * 2 * 4);
    k.i32(ids, 3)[2] = 12;
    expect(() => k.embeddingQ(out, packed, sc, sc, ids, 3, 10, 32, 4, 32, 'f32')).toThrow(
      /embeddingQ: out range/,
    );
    const out2 = k.alloc(3 * 32 * 4);
    expect(() => k.embeddingQ(out2, packed, sc, sc, ids, 3, 10, 32, 4, 32, 'f32')).toThrow(
      /embeddingQ: ids\[2\] = 12/,
    );
    expect(() => k.embeddingQ(out2, packed, sc, sc, ids, 3, 10, 48, 4, 32, 'f32')).toThrow(
      /embeddingQ: dim \(48\)/,
    );
    for (const p of [table, ids, out, packed, sc, out2]) k.free(p);
  });

  it('rope, rmsnorm, attention, elementwise, views', () => {
    const x = k.alloc(2 * 2 * 8 * 4);
    const cs = k.alloc(2 * 4 * 4);
    expect(() => k.rope(x, cs, cs, 2, 2, 8, 8, 'half')).not.toThrow();
    expect(() => k.rope(x, cs, cs, 2, 2, 8, 7, 'half')).toThrow(/rope: rotDim must be even/);
    expect(() => k.rope(x, cs, cs, 2, 2, 8, 10, 'half')).toThrow(/rope: rotDim must be even and <= headDim/);
    expect(() => k.rope(x, cs, cs, 2, 2, 8, 8, bad<'half'>('neox'))).toThrow(
      /rope: layout must be 'half' or 'pair'/,
    );
    expect(() => k.rmsnorm(x, x, cs, 1, 8, Number.NaN)).toThrow(/rmsnorm: eps/);
    expect(() => k.rmsnorm(x, x, cs, 1, 16, 1e-5)).toThrow(/rmsnorm: weight range/);
    expect(() => k.rmsnorm(x, x, x + 8, 1, 4, 1e-5)).toThrow(/overlaps weight/);
    expect(() => k.add(x + 4, x, x, 4)).toThrow(/add: out .* overlaps a/);
    expect(() => k.swiglu(x, x, x, 0)).toThrow(/swiglu: n must be in \[1/);
    expect(() => k.softmax(x, 3, 16)).toThrow(/softmax: x range/);
    expect(() => k.argmax(x, 33)).toThrow(/argmax: x range/);
    expect(() => k.copy(x, cs, 1000)).toThrow(/copy: src range/);
    const q = k.alloc(4 * 8 * 4);
    const kc = k.alloc(3 * 2 * 8 * 4);
    const out = k.alloc(4 * 8 * 4);
    expect(() => k.attention(out, q, kc, kc, 1, 2, 4, 2, 8, 0.3, 0)).not.toThrow();
    expect(() => k.attention(out, q, kc, kc, 1, 3, 4, 2, 8, 0.3, 0)).toThrow(/attention: k range/);
    expect(() => k.attention(out, q, kc, kc, 1, 2, 4, 3, 8, 0.3, 0)).toThrow(
      /nHeads \(4\) must be a multiple of nKvHeads \(3\)/,
    );
    expect(() => k.attention(out, q, kc, kc, 1, 2, 4, 2, 8, Number.POSITIVE_INFINITY, 0)).toThrow(
      /attention: scale/,
    );
    expect(() => k.attention(out, q, kc, kc, 1, -1, 4, 2, 8, 0.3, 0)).toThrow(/attention: startPos/);
    expect(() => k.attention(q, q, kc, kc, 1, 2, 4, 2, 8, 0.3, 0)).toThrow(/attention: out .* overlaps q/);
    expect(() => k.f32(x + 2, 1)).toThrow(/f32: ptr .* aligned/);
    expect(() => k.f32(x, 2 ** 40)).toThrow(/outside memory/);
    expect(() => k.u16(x, -1)).toThrow(TypeError);
    for (const p of [x, cs, q, kc, out]) k.free(p);
  });

  it('never lets a kernel touch memory after a validation error', () => {
    const x = put(k, [1, 2, 3, 4]);
    const y = put(k, [9, 9]);
    expect(() => k.add(y, x, x, 4)).toThrow(/add: out range/);
    expect(Array.from(k.f32(y, 2))).toEqual([9, 9]);
    k.free(x);
    k.free(y);
  });
});
