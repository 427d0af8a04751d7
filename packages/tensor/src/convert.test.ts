import { describe, expect, it } from 'vitest';
import {
  bf16BitsToNumber,
  bf16ToF32,
  f16BitsToF32Bits,
  f16BitsToNumber,
  f16ToF32,
  f32Bits,
  f32BitsToBf16Bits,
  f32BitsToF16Bits,
  f32FromBits,
  f32ToBf16,
  f32ToF16,
  numberToBf16Bits,
  numberToF16Bits,
  ropeTable,
  toFloat32,
} from './convert';

/** The value of an f16 bit pattern by the IEEE formula, in float64. */
function f16Formula(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? Number.NaN : s * Number.POSITIVE_INFINITY;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

function roundHalfEven(x: number): number {
  const r = Math.floor(x);
  const d = x - r;
  if (d > 0.5) return r + 1;
  if (d < 0.5) return r;
  return r % 2 === 0 ? r : r + 1;
}

/**
 * Nearest value with `mantBits` fraction bits and minimum exponent `minExp` (subnormals below it) to the f32 whose
 * bits are `bits`, ties to even, ±inf past `maxFinite` (float64 arithmetic, exact for these widths).
 */
function roundRef(bits: number, mantBits: number, minExp: number, maxExp: number): number {
  const x = f32FromBits(bits);
  if (Number.isNaN(x)) return Number.NaN;
  const a = Math.abs(x);
  const sign = bits >>> 31 ? -1 : 1;
  if (a === Number.POSITIVE_INFINITY) return sign * a;
  const exp = (bits >>> 23) & 0xff;
  const e = Math.max(exp === 0 ? -126 : exp - 127, minExp);
  const ulp = 2 ** (e - mantBits);
  const v = roundHalfEven(a / ulp) * ulp;
  const maxFinite = (2 - 2 ** -mantBits) * 2 ** maxExp;
  return sign * (v > maxFinite ? Number.POSITIVE_INFINITY : v);
}

/** f32 bit patterns to test: a stride through all 2^32 plus every f16 value's neighbours and midpoints. */
function samplePatterns(): Uint32Array {
  const out: number[] = [];
  for (let b = 0; b < 2 ** 32; b += 12289) out.push(b);
  for (let h = 0; h < 0x7c00; h++) {
    const v = f16BitsToF32Bits(h);
    const next = f16BitsToF32Bits(h + 1);
    const mid = f32Bits((f32FromBits(v) + f32FromBits(next)) / 2);
    for (const p of [v, v + 1, v - 1, mid, mid + 1, mid - 1]) {
      out.push(p >>> 0, (p | 0x80000000) >>> 0);
    }
  }
  return Uint32Array.from(out);
}

describe('f16', () => {
  it('decodes all 65536 bit patterns exactly (against the float64 formula)', () => {
    for (let h = 0; h < 65536; h++) {
      const want = f16Formula(h);
      const got = f16BitsToNumber(h);
      if (Number.isNaN(want)) {
        expect(Number.isNaN(got)).toBe(true);
        expect(f16BitsToF32Bits(h)).toBe((((h & 0x8000) << 16) | 0x7f800000 | ((h & 0x3ff) << 13)) >>> 0);
      } else if (!Object.is(got, want)) {
        expect.fail(`f16 ${h.toString(16)}: got ${got}, want ${want}`);
      }
    }
  });

  it('round-trips every non-NaN pattern through f32, and keeps NaN a NaN', () => {
    for (let h = 0; h < 65536; h++) {
      const back = f32BitsToF16Bits(f16BitsToF32Bits(h));
      if ((h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0) expect(back & 0x7c00 && back & 0x3ff).toBeTruthy();
      else if (back !== h) expect.fail(`f16 ${h.toString(16)} came back as ${back.toString(16)}`);
    }
  });

  it('rounds f32 to nearest even, with subnormals, overflow to inf, and ties (against float64)', () => {
    let checked = 0;
    for (const bits of samplePatterns()) {
      const want = roundRef(bits, 10, -14, 15);
      const got = f16BitsToNumber(f32BitsToF16Bits(bits));
      if (Number.isNaN(want)) expect(Number.isNaN(got)).toBe(true);
      else if (!Object.is(got, want))
        expect.fail(`f32 ${bits.toString(16)} (${f32FromBits(bits)}): got ${got}, want ${want}`);
      checked++;
    }
    expect(checked).toBeGreaterThan(300_000);
  });

  it('handles the edge values', () => {
    expect(numberToF16Bits(65504)).toBe(0x7bff);
    expect(numberToF16Bits(65519.99)).toBe(0x7bff);
    expect(numberToF16Bits(65520)).toBe(0x7c00); // tie between 65504 and 2^16 goes to even: overflow
    expect(numberToF16Bits(-1e9)).toBe(0xfc00);
    expect(numberToF16Bits(2 ** -24)).toBe(1);
    expect(numberToF16Bits(2 ** -25)).toBe(0); // tie with 0 goes to even
    expect(numberToF16Bits(2 ** -25 * 1.0001)).toBe(1);
    expect(numberToF16Bits(3 * 2 ** -25)).toBe(2); // tie 1.5 ulp goes to even (2)
    expect(numberToF16Bits(-0)).toBe(0x8000);
    expect(numberToF16Bits(2 ** -14 - 2 ** -25)).toBe(0x400); // rounds up into the smallest normal
    expect(numberToF16Bits(1 + 2 ** -11)).toBe(0x3c00); // tie to even (down)
    expect(numberToF16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02); // tie to even (up)
    expect(numberToF16Bits(Number.NaN) & 0x7e00).toBe(0x7e00);
  });
});

describe('bf16', () => {
  it('decodes every pattern by shifting, and round-trips non-NaN patterns', () => {
    const bad: number[] = [];
    for (let b = 0; b < 65536; b++) {
      const v = bf16BitsToNumber(b);
      if (Number.isNaN(v)) continue;
      if (f32Bits(v) !== (b << 16) >>> 0 || numberToBf16Bits(v) !== b) bad.push(b);
    }
    expect(bad).toEqual([]);
  });

  it('rounds f32 to nearest even (against float64), NaN stays NaN', () => {
    for (const bits of samplePatterns()) {
      const want = roundRef(bits, 7, -126, 127);
      const got = bf16BitsToNumber(f32BitsToBf16Bits(bits));
      if (Number.isNaN(want)) expect(Number.isNaN(got)).toBe(true);
      else if (!Object.is(got, want)) expect.fail(`f32 ${bits.toString(16)}: got ${got}, want ${want}`);
    }
    expect(numberToBf16Bits(1 + 2 ** -8)).toBe(0x3f80);
    expect(numberToBf16Bits(1 + 3 * 2 ** -8)).toBe(0x3f82);
    expect(f32BitsToBf16Bits(0x7f7fffff)).toBe(0x7f80); // max f32 rounds to inf
    expect(f32BitsToBf16Bits(0x7f800001) & 0x7fc0).toBe(0x7fc0); // signalling NaN becomes a quiet NaN
  });
});

describe('bulk conversions', () => {
  const values = new Float32Array([0, -0, 1, -2.5, 65504, 1e-7, Number.POSITIVE_INFINITY, Math.PI]);

  it('converts arrays both ways and accepts raw bytes at odd offsets', () => {
    const h = f32ToF16(values);
    const back = f16ToF32(h);
    for (let i = 0; i < values.length; i++) expect(back[i]).toBe(f16BitsToNumber(h[i]!));
    const raw = new Uint8Array(h.byteLength + 1);
    raw.set(new Uint8Array(h.buffer), 1);
    expect(f16ToF32(raw.subarray(1))).toEqual(back);
    const b = f32ToBf16(values);
    const braw = new Uint8Array(b.byteLength + 1);
    braw.set(new Uint8Array(b.buffer), 1);
    expect(bf16ToF32(braw.subarray(1))).toEqual(bf16ToF32(b));
    expect(Array.from(bf16ToF32(b))).toEqual(Array.from(b, bf16BitsToNumber));
  });

  it('toFloat32 reads f32/f16/bf16 raw bytes at any offset and always copies', () => {
    const raw = new Uint8Array(values.byteLength + 3);
    raw.set(new Uint8Array(values.buffer), 3);
    const got = toFloat32('f32', raw.subarray(3));
    expect(got).toEqual(values);
    expect(got.buffer).not.toBe(raw.buffer);
    const aligned = new Uint8Array(values.buffer);
    expect(toFloat32('f32', aligned).buffer).not.toBe(values.buffer);
    expect(toFloat32('f16', new Uint8Array(f32ToF16(values).buffer))).toEqual(f16ToF32(f32ToF16(values)));
    expect(toFloat32('bf16', new Uint8Array(f32ToBf16(values).buffer))).toEqual(bf16ToF32(f32ToBf16(values)));
    expect(() => toFloat32('f32', new Uint8Array(5))).toThrow(RangeError);
    expect(() => toFloat32('f16', new Uint8Array(3))).toThrow(/multiple of 2/);
    expect(() => toFloat32('u8' as 'f32', new Uint8Array(4))).toThrow(/unsupported dtype/);
  });
});

describe('ropeTable', () => {
  it('fills [rows, invFreq.length] with cos/sin of pos·invFreq computed in float64', () => {
    const invFreq = Float32Array.from({ length: 4 }, (_, i) => 10000 ** (-i / 4));
    const cos = new Float32Array(12);
    const sin = new Float32Array(12);
    ropeTable(invFreq, 1000, 3, cos, sin);
    for (let r = 0; r < 3; r++)
      for (let i = 0; i < 4; i++) {
        const angle = (1000 + r) * invFreq[i]!;
        expect(cos[r * 4 + i]).toBe(Math.fround(Math.cos(angle)));
        expect(sin[r * 4 + i]).toBe(Math.fround(Math.sin(angle)));
      }
    // An angle computed in f32 would differ noticeably at this position.
    const f32Angle = Math.fround(Math.fround(1002) * invFreq[1]!);
    expect(Math.abs(Math.fround(Math.cos(f32Angle)) - cos[9]!)).toBeLessThan(1e-3);
    expect(() => ropeTable(invFreq, 0, 4, cos, sin)).toThrow(/need 16 values/);
    expect(() => ropeTable(invFreq, -1, 1, cos, sin)).toThrow(RangeError);
  });
});
