/**
 * Exact conversions between f32 and the 16-bit float storage types, on bit patterns.
 *
 * - f16 → f32 and bf16 → f32 are exact (every f16/bf16 value is an f32 value); NaN payloads are kept.
 * - f32 → f16 and f32 → bf16 round to nearest, ties to even; values past the largest finite f16 become ±inf, values
 *   below half the smallest subnormal become ±0, and NaN stays NaN (quiet, sign and top payload bits kept).
 * - Raw byte buffers are little-endian (as in safetensors); all JavaScript engines in use are little-endian.
 */

const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

/** The f32 bit pattern (uint32) of `x` rounded to f32. */
export function f32Bits(x: number): number {
  scratchF32[0] = x;
  return scratchU32[0]!;
}

/** The f32 value (as a JS number) whose bit pattern is `bits`. */
export function f32FromBits(bits: number): number {
  scratchU32[0] = bits;
  return scratchF32[0]!;
}

/** f16 bit pattern → f32 bit pattern (exact). */
export function f16BitsToF32Bits(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0x1f) return (sign | 0x7f800000 | (mant << 13)) >>> 0;
  if (exp !== 0) return (sign | ((exp + 112) << 23) | (mant << 13)) >>> 0;
  if (mant === 0) return sign >>> 0;
  // Subnormal: normalize. Value = mant * 2^-24, mant < 2^10.
  let e = 113;
  let m = mant;
  while ((m & 0x400) === 0) {
    m <<= 1;
    e--;
  }
  return (sign | (e << 23) | ((m & 0x3ff) << 13)) >>> 0;
}

/** f32 bit pattern → f16 bit pattern, round to nearest even. */
export function f32BitsToF16Bits(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) return mant === 0 ? sign | 0x7c00 : sign | 0x7e00 | (mant >>> 13);
  const e = exp - 112; // biased f16 exponent
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    // f16 subnormal (or zero): value in units of 2^-24 is M / 2^shift.
    const shift = 14 - e;
    if (shift > 24) return sign;
    const m = mant | 0x800000;
    let q = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (q & 1) === 1)) q++;
    return sign | q;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1) === 1)) h++; // a carry into the exponent (up to inf) is correct
  return sign | h;
}

/** bf16 bit pattern → f32 bit pattern (exact). */
export function bf16BitsToF32Bits(b: number): number {
  return (b << 16) >>> 0;
}

/** f32 bit pattern → bf16 bit pattern, round to nearest even. */
export function f32BitsToBf16Bits(x: number): number {
  if ((x & 0x7f800000) === 0x7f800000 && (x & 0x7fffff) !== 0) return ((x >>> 16) | 0x40) & 0xffff;
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

/** The value of an f16 bit pattern. */
export function f16BitsToNumber(h: number): number {
  return f32FromBits(f16BitsToF32Bits(h));
}

/** `x` rounded to f32, then to f16 (round to nearest even); returns the f16 bit pattern. */
export function numberToF16Bits(x: number): number {
  return f32BitsToF16Bits(f32Bits(x));
}

/** The value of a bf16 bit pattern. */
export function bf16BitsToNumber(b: number): number {
  return f32FromBits(bf16BitsToF32Bits(b));
}

/** `x` rounded to f32, then to bf16 (round to nearest even); returns the bf16 bit pattern. */
export function numberToBf16Bits(x: number): number {
  return f32BitsToBf16Bits(f32Bits(x));
}

let f16Table: Uint32Array | undefined;

/** f32 bit patterns of all 65536 f16 bit patterns (256 KiB, built on first use). */
function f16ToF32Table(): Uint32Array {
  if (!f16Table) {
    f16Table = new Uint32Array(65536);
    for (let h = 0; h < 65536; h++) f16Table[h] = f16BitsToF32Bits(h);
  }
  return f16Table;
}

/** 16-bit words of raw little-endian bytes (or the array itself); copies when the bytes are not 2-aligned. */
function words16(src: Uint8Array | Uint16Array, fn: string): Uint16Array {
  if (src instanceof Uint16Array) return src;
  if (!(src instanceof Uint8Array)) throw new TypeError(`${fn}: expected a Uint8Array or Uint16Array`);
  if (src.byteLength % 2 !== 0)
    throw new RangeError(`${fn}: byte length ${src.byteLength} is not a multiple of 2`);
  if (src.byteOffset % 2 !== 0) return new Uint16Array(src.slice().buffer);
  return new Uint16Array(src.buffer, src.byteOffset, src.byteLength / 2);
}

/** f16 values (raw little-endian bytes or bit patterns) → a new Float32Array (exact). */
export function f16ToF32(src: Uint8Array | Uint16Array): Float32Array {
  const h = words16(src, 'f16ToF32');
  const table = f16ToF32Table();
  const out = new Float32Array(h.length);
  const bits = new Uint32Array(out.buffer);
  for (let i = 0; i < h.length; i++) bits[i] = table[h[i]!]!;
  return out;
}

/** bf16 values (raw little-endian bytes or bit patterns) → a new Float32Array (exact). */
export function bf16ToF32(src: Uint8Array | Uint16Array): Float32Array {
  const b = words16(src, 'bf16ToF32');
  const out = new Float32Array(b.length);
  const bits = new Uint32Array(out.buffer);
  for (let i = 0; i < b.length; i++) bits[i] = b[i]! << 16;
  return out;
}

/** f32 values → a new Uint16Array of f16 bit patterns (round to nearest even). */
export function f32ToF16(src: Float32Array): Uint16Array {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = f32BitsToF16Bits(bits[i]!);
  return out;
}

/** f32 values → a new Uint16Array of bf16 bit patterns (round to nearest even). */
export function f32ToBf16(src: Float32Array): Uint16Array {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = f32BitsToBf16Bits(bits[i]!);
  return out;
}

/**
 * Raw little-endian bytes of `dtype` elements → a new Float32Array (always a copy; bytes at any byteOffset).
 */
export function toFloat32(dtype: 'f32' | 'f16' | 'bf16', bytes: Uint8Array): Float32Array {
  if (!(bytes instanceof Uint8Array)) throw new TypeError('toFloat32: expected raw bytes in a Uint8Array');
  if (dtype === 'f16') return f16ToF32(bytes);
  if (dtype === 'bf16') return bf16ToF32(bytes);
  if (dtype !== 'f32')
    throw new TypeError(`toFloat32: unsupported dtype ${String(dtype)} (f32, f16 or bf16)`);
  if (bytes.byteLength % 4 !== 0)
    throw new RangeError(`toFloat32: byte length ${bytes.byteLength} is not a multiple of 4`);
  return new Float32Array(bytes.slice().buffer);
}

/**
 * Fills rotary tables for positions `startPos .. startPos + rows - 1`: `cos[r * h + i] = cos((startPos + r) * invFreq[i])`
 * and likewise `sin`, with `h = invFreq.length` (= rotDim / 2), i.e. `[rows, h]` row-major. The angle
 * `pos * invFreq[i]` and its cosine/sine are computed in float64 (invFreq's f32 values taken exactly) and only the
 * result is rounded to f32, so a table is accurate to f32 rounding even at large positions (an angle computed in f32
 * at position ~600 is already off by ~1e-5 rad). `cos` and `sin` must hold at least `rows * h` values.
 */
export function ropeTable(
  invFreq: Float32Array,
  startPos: number,
  rows: number,
  cos: Float32Array,
  sin: Float32Array,
): void {
  if (!Number.isSafeInteger(startPos) || startPos < 0)
    throw new RangeError(`ropeTable: startPos must be a non-negative integer, got ${startPos}`);
  if (!Number.isSafeInteger(rows) || rows < 0)
    throw new RangeError(`ropeTable: rows must be a non-negative integer, got ${rows}`);
  const h = invFreq.length;
  if (cos.length < rows * h || sin.length < rows * h)
    throw new RangeError(
      `ropeTable: cos/sin need ${rows * h} values for [${rows}, ${h}], got ${cos.length}/${sin.length}`,
    );
  for (let r = 0; r < rows; r++) {
    const pos = startPos + r;
    for (let i = 0; i < h; i++) {
      const angle = pos * invFreq[i]!;
      cos[r * h + i] = Math.cos(angle);
      sin[r * h + i] = Math.sin(angle);
    }
  }
}
