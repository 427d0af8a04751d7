import { randomF32, rng } from '@mnemo/test-utils';
import { describe, expect, it } from 'vitest';
import { bf16BitsToNumber, f16BitsToNumber, f32ToBf16, f32ToF16 } from './convert';
import { QUANT_BITS, QUANT_GROUP_SIZES, type QuantSpec, type ScaleDType } from './dtype';
import { dequantize, dequantizeRow, packedRowWords, quantAt, quantize } from './quant';

const SCALE_DTYPES: ScaleDType[] = ['f16', 'bf16', 'f32'];

/** Element k of a row by an independent route: the row's words as one little-endian BigInt bit stream. */
function codeByBigInt(words: Uint32Array, bits: number, k: number): number {
  let stream = 0n;
  for (let i = words.length - 1; i >= 0; i--) stream = (stream << 32n) | BigInt(words[i]!);
  return Number((stream >> BigInt(bits * k)) & ((1n << BigInt(bits)) - 1n));
}

function scaleValue(dtype: ScaleDType, a: Float32Array | Uint16Array, i: number): number {
  if (dtype === 'f32') return a[i]!;
  return dtype === 'f16' ? f16BitsToNumber(a[i]!) : bf16BitsToNumber(a[i]!);
}

describe('MLX affine dequantization', () => {
  it('reads codes at bit offset bits·k of the row bit stream (3/5/6 bits straddle words)', () => {
    const r = rng(7);
    for (const bits of QUANT_BITS) {
      const cols = 128;
      const words = packedRowWords({ bits, groupSize: 32, scaleDtype: 'f32' }, cols);
      const packed = Uint32Array.from({ length: 2 * words }, () => Math.floor(r() * 2 ** 32));
      for (let row = 0; row < 2; row++)
        for (let k = 0; k < cols; k++)
          expect(quantAt(packed, row * words, bits, k)).toBe(
            codeByBigInt(packed.subarray(row * words, (row + 1) * words), bits, k),
          );
    }
  });

  it('dequantizes w = scale·q + bias per group, for every bits × group × scale dtype', () => {
    const r = rng(8);
    for (const bits of QUANT_BITS)
      for (const groupSize of QUANT_GROUP_SIZES)
        for (const scaleDtype of SCALE_DTYPES) {
          const spec: QuantSpec = { bits, groupSize, scaleDtype };
          const rows = 3;
          const cols = 2 * groupSize;
          const words = packedRowWords(spec, cols);
          const packed = Uint32Array.from({ length: rows * words }, () => Math.floor(r() * 2 ** 32));
          const sv = randomF32(rows * 2, 1 + bits, 0.1);
          const bv = randomF32(rows * 2, 2 + bits, 0.5);
          const enc = (v: Float32Array) =>
            scaleDtype === 'f32' ? v : scaleDtype === 'f16' ? f32ToF16(v) : f32ToBf16(v);
          const scales = enc(sv);
          const biases = enc(bv);
          const w = dequantize(spec, [rows, cols], packed, scales, biases);
          for (let row = 0; row < rows; row++)
            for (let k = 0; k < cols; k++) {
              const g = row * 2 + Math.floor(k / groupSize);
              const q = codeByBigInt(packed.subarray(row * words, (row + 1) * words), bits, k);
              const want = Math.fround(
                scaleValue(scaleDtype, scales, g) * q + scaleValue(scaleDtype, biases, g),
              );
              if (w[row * cols + k] !== want)
                expect.fail(`q${bits} g${groupSize} ${scaleDtype} [${row},${k}]`);
            }
          const one = new Float32Array(cols + 1);
          dequantizeRow(spec, cols, { packed, scales, biases }, 2, one, 1);
          expect(one.subarray(1)).toEqual(w.subarray(2 * cols));
        }
  });

  it('rejects bad specs and short parts', () => {
    const spec: QuantSpec = { bits: 4, groupSize: 32, scaleDtype: 'f16' };
    expect(() =>
      dequantize(spec, [1, 48], new Uint32Array(6), new Uint16Array(2), new Uint16Array(2)),
    ).toThrow(/multiple of the group size/);
    expect(() =>
      dequantize(spec, [2, 32], new Uint32Array(4), new Uint16Array(2), new Uint16Array(2)),
    ).toThrow(/packed has 4 words, need 8/);
    expect(() =>
      dequantize(spec, [1, 32], new Uint32Array(4), new Float32Array(1), new Float32Array(1)),
    ).toThrow(/Uint16Array/);
    expect(() =>
      dequantize(
        { ...spec, bits: 7 as 4 },
        [1, 32],
        new Uint32Array(7),
        new Uint16Array(1),
        new Uint16Array(1),
      ),
    ).toThrow(/bits must be one of/);
  });
});

describe('MLX affine quantization', () => {
  it('round-trips within half a step (plus scale rounding) for every bits × group × scale dtype', () => {
    for (const bits of QUANT_BITS)
      for (const groupSize of QUANT_GROUP_SIZES)
        for (const scaleDtype of SCALE_DTYPES) {
          const spec: QuantSpec = { bits, groupSize, scaleDtype };
          const rows = 3;
          const cols = 2 * groupSize;
          const values = randomF32(rows * cols, bits * 1000 + groupSize, 2);
          const { packed, scales, biases } = quantize(spec, rows, cols, values);
          expect(packed.length).toBe(rows * packedRowWords(spec, cols));
          expect(scales.length).toBe(rows * 2);
          const back = dequantize(spec, [rows, cols], packed, scales, biases);
          for (let i = 0; i < values.length; i++) {
            const g = Math.floor(i / groupSize);
            const scale = scaleValue(scaleDtype, scales, g);
            const bias = scaleValue(scaleDtype, biases, g);
            // Half a step, plus the codes clamped at the ends after bias/scale rounding (f16/bf16).
            const maxQ = 2 ** bits - 1;
            const top = bias + scale * maxQ;
            const slack = Math.max(0, bias - values[i]!, values[i]! - top);
            expect(Math.abs(back[i]! - values[i]!)).toBeLessThanOrEqual(scale / 2 + slack + 1e-6);
          }
        }
  });

  it('follows MLX: scale = (max − min)/(2^bits − 1), bias = min, q = round-half-even((w − bias)/scale)', () => {
    const spec: QuantSpec = { bits: 2, groupSize: 32, scaleDtype: 'f32' };
    const values = new Float32Array(32);
    values.set([-1, 2, 0.5, -0.5, 1, 0.2500001, 0.25]);
    for (let i = 7; i < 32; i++) values[i] = -1;
    const { packed, scales, biases } = quantize(spec, 1, 32, values);
    expect(scales[0]).toBe(1);
    expect(biases[0]).toBe(-1);
    const codes = Array.from({ length: 7 }, (_, k) => quantAt(packed, 0, 2, k));
    // (w + 1) / 1 = 0, 3, 1.5 → 2 (tie to even), 0.5 → 0 (tie to even), 2, 1.2500001 → 1, 1.25 → 1
    expect(codes).toEqual([0, 3, 2, 0, 2, 1, 1]);
  });

  it('stores a constant group exactly (scale 0, all codes 0)', () => {
    const spec: QuantSpec = { bits: 4, groupSize: 32, scaleDtype: 'bf16' };
    const values = new Float32Array(64).fill(0.75);
    const { packed, scales, biases } = quantize(spec, 1, 64, values);
    expect(Array.from(packed)).toEqual(new Array(8).fill(0));
    expect(dequantize(spec, [1, 64], packed, scales, biases)).toEqual(values);
  });
});
