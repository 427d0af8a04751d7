// Test-only helpers: number codecs, an MLX affine packer and float64 reference kernels. Independent of the wasm
// code on purpose (nothing here is shared with the kernels).
import { rng } from '@mnemo/test-utils';
import type { Kernels, WeightDType } from '../kernels';

const f32buf = new Float32Array(1);
const u32buf = new Uint32Array(f32buf.buffer);

/** f16 bits → value (exact, by definition of the format). */
export function f16ToNumber(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m === 0 ? s * Number.POSITIVE_INFINITY : Number.NaN;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** value → f16 bits, round to nearest even (overflow → inf). */
export function numberToF16(v: number): number {
  if (Number.isNaN(v)) return 0x7e00;
  const sign = v < 0 || Object.is(v, -0) ? 0x8000 : 0;
  const a = Math.abs(v);
  if (a === 0) return sign;
  if (a >= 65520) return sign | 0x7c00;
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e--;
  if (2 ** (e + 1) <= a) e++;
  if (e < -14) {
    const m = roundEven(a / 2 ** -24);
    return sign | m; // m may be 1024 = smallest normal, which is the right encoding
  }
  let m = roundEven((a / 2 ** e - 1) * 1024);
  if (m === 1024) {
    m = 0;
    e++;
  }
  if (e > 15) return sign | 0x7c00;
  return sign | ((e + 15) << 10) | m;
}

function roundEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

export function bf16ToNumber(h: number): number {
  u32buf[0] = h << 16;
  return f32buf[0]!;
}

/** value → bf16 bits, round to nearest even. */
export function numberToBf16(v: number): number {
  f32buf[0] = v;
  const u = u32buf[0]!;
  if (Number.isNaN(f32buf[0]!)) return 0x7fc0;
  const r = u + 0x7fff + ((u >>> 16) & 1);
  return (r >>> 16) & 0xffff;
}

/** Encodes float values as `dtype` raw elements, returning the bytes and the exactly representable values. */
export function encode(
  values: ArrayLike<number>,
  dtype: WeightDType,
): { bytes: Uint8Array; exact: Float64Array } {
  const n = values.length;
  const exact = new Float64Array(n);
  if (dtype === 'f32') {
    const a = Float32Array.from(values);
    for (let i = 0; i < n; i++) exact[i] = a[i]!;
    return { bytes: new Uint8Array(a.buffer), exact };
  }
  const a = new Uint16Array(n);
  for (let i = 0; i < n; i++) {
    a[i] = dtype === 'f16' ? numberToF16(values[i]!) : numberToBf16(values[i]!);
    exact[i] = dtype === 'f16' ? f16ToNumber(a[i]!) : bf16ToNumber(a[i]!);
  }
  return { bytes: new Uint8Array(a.buffer), exact };
}

export interface Quantized {
  packed: Uint32Array;
  scales: Uint8Array;
  biases: Uint8Array;
  /** Dequantized weights `[rows, cols]` in float64 (from the exactly stored scales/biases). */
  deq: Float64Array;
}

/**
 * Random MLX affine-quantized matrix `[rows, cols]`: q uniform in `[0, 2^bits)`, scale/bias per group.
 * Element k of a row is written at bit offset `bits·k` of the row's little-endian bit stream.
 */
export function randomQuantized(
  rows: number,
  cols: number,
  bits: number,
  groupSize: number,
  scaleDtype: WeightDType,
  seed: number,
): Quantized {
  const r = rng(seed);
  const groups = cols / groupSize;
  const wordsPerRow = (cols * bits) / 32;
  const packed = new Uint32Array(rows * wordsPerRow);
  const rawScales = new Float64Array(rows * groups);
  const rawBiases = new Float64Array(rows * groups);
  for (let i = 0; i < rows * groups; i++) {
    rawScales[i] = (0.5 + r()) * 0.02;
    rawBiases[i] = -(2 ** bits / 2) * rawScales[i]! * (0.8 + 0.4 * r());
  }
  const s = encode(rawScales, scaleDtype);
  const b = encode(rawBiases, scaleDtype);
  const deq = new Float64Array(rows * cols);
  for (let row = 0; row < rows; row++) {
    for (let k = 0; k < cols; k++) {
      const q = Math.floor(r() * 2 ** bits);
      writeBits(packed, row * wordsPerRow, k * bits, bits, q);
      const g = row * groups + Math.floor(k / groupSize);
      deq[row * cols + k] = s.exact[g]! * q + b.exact[g]!;
    }
  }
  return { packed, scales: s.bytes, biases: b.bytes, deq };
}

function writeBits(words: Uint32Array, base: number, bitPos: number, bits: number, value: number): void {
  for (let i = 0; i < bits; i++) {
    if ((value >> i) & 1) {
      const p = bitPos + i;
      const w = base + (p >>> 5);
      words[w] = (words[w]! | (1 << (p & 31))) >>> 0;
    }
  }
}

/** Uniform random floats in [-scale, scale). */
export function randoms(n: number, seed: number, scale = 1): Float64Array {
  const r = rng(seed);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = (r() * 2 - 1) * scale;
  return out;
}

/** Float32 rounding of every element (what the kernels actually see). */
export function f32s(a: ArrayLike<number>): Float64Array {
  const out = new Float64Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = Math.fround(a[i]!);
  return out;
}

/**
 * Reference `Y = X·Wᵀ (+bias)` in float64, with the magnitude `Σ|x·w| + |bias|` of each output for tolerances.
 */
export function refMatmul(
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  rows: number,
  n: number,
  m: number,
  bias?: ArrayLike<number>,
): { y: Float64Array; mag: Float64Array } {
  const y = new Float64Array(rows * m);
  const mag = new Float64Array(rows * m);
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < m; o++) {
      let s = bias ? bias[o]! : 0;
      let a = bias ? Math.abs(bias[o]!) : 0;
      for (let i = 0; i < n; i++) {
        const p = x[r * n + i]! * w[o * n + i]!;
        s += p;
        a += Math.abs(p);
      }
      y[r * m + o] = s;
      mag[r * m + o] = a;
    }
  }
  return { y, mag };
}

/** Asserts `|got − want| <= tol · mag` element-wise (or absolute `tol` when `mag` is a number). */
export function expectClose(
  got: ArrayLike<number>,
  want: ArrayLike<number>,
  mag: ArrayLike<number> | number,
  tol: number,
  what: string,
): void {
  if (got.length !== want.length) throw new Error(`${what}: length ${got.length} != ${want.length}`);
  let worst = 0;
  let at = -1;
  for (let i = 0; i < got.length; i++) {
    const m = typeof mag === 'number' ? mag : Math.max(mag[i]!, 1e-30);
    const e = Math.abs(got[i]! - want[i]!) / m;
    if (!(e <= worst)) {
      worst = e;
      at = i;
    }
  }
  if (!(worst <= tol)) {
    throw new Error(
      `${what}: error ${worst.toExponential(3)} (tolerance ${tol}) at ${at}: got ${got[at]}, want ${want[at]}`,
    );
  }
}

/** Bitwise equality of two f32 arrays (NaN payloads included). */
export function expectBitwise(a: Float32Array, b: Float32Array, what: string): void {
  if (a.length !== b.length) throw new Error(`${what}: length ${a.length} != ${b.length}`);
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < ua.length; i++) {
    if (ua[i] !== ub[i]) {
      throw new Error(
        `${what}: element ${i} differs: ${a[i]} (0x${ua[i]!.toString(16)}) vs ${b[i]} (0x${ub[i]!.toString(16)})`,
      );
    }
  }
}

/** Allocates and fills a buffer in kernel memory. */
export function put(
  k: Kernels,
  data: ArrayBufferView | ArrayLike<number>,
  as: 'f32' | 'i32' = 'f32',
): number {
  if (ArrayBuffer.isView(data)) {
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    const p = k.alloc(bytes.length);
    k.u8(p, bytes.length).set(bytes);
    return p;
  }
  const n = data.length;
  const p = k.alloc(n * 4);
  if (as === 'f32') k.f32(p, n).set(Array.from(data));
  else k.i32(p, n).set(Array.from(data));
  return p;
}

/** Copies `len` floats out of kernel memory. */
export function get(k: Kernels, ptr: number, len: number): Float32Array {
  return k.f32(ptr, len).slice();
}

/** Reference of `quantizeActivations` for one row set: int8 values, f32 block scales and sums, and x̂ = d·q. */
export interface QuantizedActivations {
  q: Int8Array;
  d: Float32Array;
  s: Float32Array;
  /** The dequantized activations `d_b · q_i` in float64 (exact). */
  xhat: Float64Array;
}

/**
 * The documented int8 activation quantization, in float64 arithmetic rounded to f32 where the kernel rounds (for
 * `/` and `·` of two f32 values that gives the same bits as f32 arithmetic): per block of 32, `amax = max|x|`,
 * `d = f32(amax / 127)`, `q = roundHalfEven(f32(x · f32(127 / amax)))`, `s = f32(d · Σq)`; inf/NaN → NaN block,
 * `d` below the smallest normal f32 → zero block.
 */
export function refQuantizeActivations(
  x: ArrayLike<number>,
  rows: number,
  dim: number,
): QuantizedActivations {
  const nb = dim / 32;
  const q = new Int8Array(rows * dim);
  const d = new Float32Array(rows * nb);
  const s = new Float32Array(rows * nb);
  const xhat = new Float64Array(rows * dim);
  for (let b = 0; b < rows * nb; b++) {
    const base = b * 32;
    let amax = 0;
    let finite = true;
    for (let i = 0; i < 32; i++) {
      const v = Math.fround(x[base + i]!);
      if (!Number.isFinite(v)) finite = false;
      else amax = Math.max(amax, Math.abs(v));
    }
    if (!finite) {
      d[b] = Number.NaN;
      s[b] = Number.NaN;
      for (let i = 0; i < 32; i++) xhat[base + i] = Number.NaN;
      continue;
    }
    const db = Math.fround(amax / 127);
    if (db < 2 ** -126) continue; // zeros
    const inv = Math.fround(127 / amax);
    let sum = 0;
    for (let i = 0; i < 32; i++) {
      const v = roundEven(Math.fround(Math.fround(x[base + i]!) * inv));
      q[base + i] = v;
      sum += v;
      xhat[base + i] = db * v;
    }
    d[b] = db;
    s[b] = Math.fround(db * sum);
  }
  return { q, d, s, xhat };
}

/**
 * Per output, the bound of the activation rounding error: `Σ_b 0.50003 · d_b · Σ_{i∈b} |w_i|`. Each x̂_i = d·q_i is
 * within `d/2` of `d · x_i·inv` (rounding to an integer), and that is within `|x_i| · 3·2^-24 <= 127·d · 1.8e-7 =
 * 0.000023·d` of x_i (the three f32 roundings of d, inv and x·inv).
 */
export function activationErrorBound(
  d: ArrayLike<number>,
  w: ArrayLike<number>,
  rows: number,
  n: number,
  m: number,
): Float64Array {
  const nb = n / 32;
  const out = new Float64Array(rows * m);
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < m; o++) {
      let e = 0;
      for (let b = 0; b < nb; b++) {
        let a = 0;
        for (let i = 0; i < 32; i++) a += Math.abs(w[o * n + b * 32 + i]!);
        e += 0.50003 * d[r * nb + b]! * a;
      }
      out[r * m + o] = e;
    }
  }
  return out;
}
