import { beforeAll, describe, expect, it } from 'vitest';
import { type Kernels, loadKernels, quantizedActivationBytes, type WeightDType } from './index';
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

  it('quantizeActivations and quantizedActivationBytes: sizes, block multiple, ranges, overlap', () => {
    expect(quantizedActivationBytes(1, 64)).toBe(64 + 2 * 8);
    expect(quantizedActivationBytes(3, 4096)).toBe(3 * (4096 + 128 * 8));
    expect(() => quantizedActivationBytes(1, 48)).toThrow(
      /quantizedActivationBytes: dim \(48\) must be a multiple of 32/,
    );
    expect(() => quantizedActivationBytes(0, 64)).toThrow(/quantizedActivationBytes: rows must be in \[1/);
    expect(() => quantizedActivationBytes(1.5, 64)).toThrow(TypeError);
    expect(() => quantizedActivationBytes(1, bad<number>('64'))).toThrow(TypeError);
    const x = k.alloc(2 * 64 * 4);
    const out = k.alloc(quantizedActivationBytes(2, 64));
    expect(() => k.quantizeActivations(out, x, 2, 64)).not.toThrow();
    expect(() => k.quantizeActivations(out, x, 0, 64)).toThrow(/quantizeActivations: rows must be in \[1/);
    expect(() => k.quantizeActivations(out, x, 2, 1.5)).toThrow(TypeError);
    expect(() => k.quantizeActivations(out, x, 1, 48)).toThrow(
      /quantizeActivations: dim \(48\) must be a multiple of 32/,
    );
    expect(() => k.quantizeActivations(out, x, 3, 64)).toThrow(/quantizeActivations: x range/);
    expect(() => k.quantizeActivations(out + 4, x, 2, 64)).toThrow(/quantizeActivations: out range/);
    expect(() => k.quantizeActivations(out + 2, x, 1, 64)).toThrow(
      /quantizeActivations: out .* 4-byte aligned/,
    );
    expect(() => k.quantizeActivations(x, x, 1, 64)).toThrow(/quantizeActivations: out .* overlaps x/);
    expect(() => k.quantizeActivations(out, bad<number>(null), 1, 64)).toThrow(TypeError);
    for (const p of [x, out]) k.free(p);
  });

  it('matmulQ8a: bits (4 and 8 only), groupSize, divisibility, scale dtype, ranges, overlap', () => {
    const n = 64;
    const m = 2;
    const xq = k.alloc(quantizedActivationBytes(2, n));
    const packed = k.alloc((m * n * 8) / 8);
    const scales = k.alloc(m * (n / 32) * 4);
    const biases = k.alloc(m * (n / 32) * 4);
    const y = k.alloc(2 * m * 4);
    const bias = k.alloc(m * 4);
    const call = (
      bits: number,
      gs: number,
      sdt: WeightDType,
      o: { inDim?: number; rows?: number; py?: number; b?: number } = {},
    ) => k.matmulQ8a(o.py ?? y, xq, packed, scales, biases, o.rows ?? 1, o.inDim ?? n, m, bits, gs, sdt, o.b);
    expect(() => call(4, 32, 'f16')).not.toThrow();
    expect(() => call(8, 32, 'f32', { rows: 2, b: bias })).not.toThrow();
    for (const bits of [2, 3, 5, 6]) {
      expect(() => call(bits, 32, 'f16')).toThrow(
        new RegExp(`matmulQ8a: bits ${bits} is not supported by the int8-activation path \\(4 and 8 are\\)`),
      );
    }
    expect(() => call(7, 32, 'f16')).toThrow(/matmulQ8a: bits must be one of 2, 3, 4, 5, 6, 8/);
    expect(() => call(bad<number>('4'), 32, 'f16')).toThrow(/matmulQ8a: bits must be one of/);
    expect(() => call(4, 16, 'f16')).toThrow(/matmulQ8a: groupSize must be one of 32, 64, 128/);
    expect(() => call(4, 64, 'f16', { inDim: 96 })).toThrow(
      /matmulQ8a: inDim \(96\) must be a multiple of groupSize \(64\)/,
    );
    expect(() => call(4, 32, bad<WeightDType>('int8'))).toThrow(/matmulQ8a: scaleDtype/);
    expect(() => call(4, 32, 'f16', { rows: 3 })).toThrow(/matmulQ8a: xq range/);
    expect(() => call(4, 32, 'f16', { inDim: 128, rows: 2 })).toThrow(/matmulQ8a: xq range/);
    expect(() => call(4, 32, 'f16', { rows: 0 })).toThrow(/matmulQ8a: rows must be in \[1/);
    expect(() => call(4, 32, 'f16', { inDim: 64.5 })).toThrow(TypeError);
    expect(() => call(4, 128, 'f32')).toThrow(
      /matmulQ8a: inDim \(64\) must be a multiple of groupSize \(128\)/,
    );
    expect(() => call(4, 32, 'f16', { py: y + 8, rows: 2 })).toThrow(/matmulQ8a: y range/);
    expect(() => call(4, 32, 'f16', { py: xq })).toThrow(/matmulQ8a: y .* overlaps xq/);
    expect(() => call(4, 32, 'f16', { py: bias, b: bias })).toThrow(/matmulQ8a: y .* overlaps bias/);
    expect(() => call(4, 32, 'f16', { b: bias + 4 })).toThrow(/matmulQ8a: bias range/);
    expect(() => call(4, 32, 'f16', { py: y + 2 })).toThrow(/matmulQ8a: y .* 4-byte aligned/);
    expect(() => k.matmulQ8a(y, xq + 2, packed, scales, biases, 1, n, m, 4, 32, 'f16')).toThrow(
      /matmulQ8a: xq .* 4-byte aligned/,
    );
    expect(() => k.matmulQ8a(y, xq, packed, scales + 2, biases, 1, n, m, 4, 32, 'f32')).toThrow(
      /matmulQ8a: scales .* 4-byte aligned/,
    );
    expect(() => k.matmulQ8a(y, xq, packed, scales, biases, 1, n, 5, 8, 32, 'f32')).toThrow(
      /matmulQ8a: packed range/,
    );
    // a failed call leaves y untouched
    k.f32(y, 2).set([7, 7]);
    expect(() => call(4, 32, 'f16', { b: bias + 4 })).toThrow(RangeError);
    expect(Array.from(k.f32(y, 2))).toEqual([7, 7]);
    for (const p of [xq, packed, scales, biases, y, bias]) k.free(p);
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
