/** Seeded test data for the conformance suite (self-contained: the suite ships to third-party backends). */
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from '../convert';
import type { ScaleDType } from '../dtype';

/** mulberry32: a small, fast, seeded PRNG returning numbers in [0, 1). */
export class Rng {
  private a: number;
  constructor(seed: number) {
    this.a = seed >>> 0;
  }
  next(): number {
    this.a = (this.a + 0x6d2b79f5) >>> 0;
    let t = this.a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** Integer in [lo, hi). */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo));
  }
  /** Uniform in [-scale, scale). */
  sym(scale = 1): number {
    return (this.next() * 2 - 1) * scale;
  }
  u32(): number {
    return Math.floor(this.next() * 4294967296) >>> 0;
  }
}

/** n values uniform in [-scale, scale). */
export function floats(rng: Rng, n: number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = rng.sym(scale);
  return out;
}

/** n values with random sign and magnitudes spread over 2^-spread .. 2^spread (a wide dynamic range). */
export function wideFloats(rng: Rng, n: number, spread = 6): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++)
    out[i] = (rng.next() < 0.5 ? -1 : 1) * (1 + rng.next()) * 2 ** rng.int(-spread, spread + 1);
  return out;
}

/** Dense float data ready to upload as `dtype`, plus its exact f32 values. */
export interface FloatData {
  readonly data: Float32Array | Uint16Array;
  readonly values: Float32Array;
}

/** Encodes f32 values as `dtype` (f16/bf16 round to nearest even); `values` are the values actually stored. */
export function encode(dtype: ScaleDType, values: Float32Array): FloatData {
  if (dtype === 'f32') return { data: values, values };
  const bits = dtype === 'f16' ? f32ToF16(values) : f32ToBf16(values);
  return { data: bits, values: dtype === 'f16' ? f16ToF32(bits) : bf16ToF32(bits) };
}

/** Absolute values of stored dense data (sign bits cleared for f16/bf16). */
export function absData(data: Float32Array | Uint16Array): Float32Array | Uint16Array {
  if (data instanceof Float32Array) return data.map(Math.abs);
  return data.map((b) => b & 0x7fff);
}

export function absF32(a: Float32Array): Float32Array {
  return a.map(Math.abs);
}

/** n ids in [0, vocab). */
export function ids(rng: Rng, n: number, vocab: number): Int32Array {
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) out[i] = rng.int(0, vocab);
  return out;
}
