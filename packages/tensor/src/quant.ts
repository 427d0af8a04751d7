/**
 * MLX affine quantization in plain TypeScript (see {@link QuantSpec} for the layout): dequantization for tests and
 * reference code, and the matching quantizer (used by tests and by the quantized KV cache).
 */
import { bf16BitsToNumber, f16BitsToNumber, f32Bits, f32BitsToBf16Bits, f32BitsToF16Bits } from './convert';
import { QUANT_BITS, QUANT_GROUP_SIZES, type QuantSpec, type ScaleDType } from './dtype';

/** Scales or biases as stored: f32 values, or f16/bf16 bit patterns. */
export type ScaleArray = Float32Array | Uint16Array;

/** The three raw parts of a quantized `[rows, cols]` matrix. */
export interface QuantizedData {
  /** uint32 `[rows, cols * bits / 32]`. */
  readonly packed: Uint32Array;
  /** `[rows, cols / groupSize]`: a Float32Array for f32, else f16/bf16 bit patterns. */
  readonly scales: ScaleArray;
  /** Same shape and type as `scales`. */
  readonly biases: ScaleArray;
}

/** Throws unless `spec` is a valid quantization spec and `cols` fits it. */
export function checkQuantSpec(fn: string, spec: QuantSpec, cols: number): void {
  if (typeof spec !== 'object' || spec === null) throw new TypeError(`${fn}: missing quantization spec`);
  if (!QUANT_BITS.includes(spec.bits))
    throw new RangeError(`${fn}: bits must be one of ${QUANT_BITS.join('/')}, got ${spec.bits}`);
  if (!QUANT_GROUP_SIZES.includes(spec.groupSize))
    throw new RangeError(
      `${fn}: groupSize must be one of ${QUANT_GROUP_SIZES.join('/')}, got ${spec.groupSize}`,
    );
  if (spec.scaleDtype !== 'f32' && spec.scaleDtype !== 'f16' && spec.scaleDtype !== 'bf16')
    throw new TypeError(`${fn}: scaleDtype must be f32, f16 or bf16, got ${String(spec.scaleDtype)}`);
  if (!Number.isSafeInteger(cols) || cols < 0 || cols % spec.groupSize !== 0)
    throw new RangeError(`${fn}: cols ${cols} is not a multiple of the group size ${spec.groupSize}`);
}

/** uint32 words per packed row. */
export function packedRowWords(spec: QuantSpec, cols: number): number {
  return (cols * spec.bits) / 32;
}

/** The value of scale/bias element `i`. */
export function scaleAt(dtype: ScaleDType, a: ScaleArray, i: number): number {
  if (dtype === 'f32') return a[i]!;
  return dtype === 'f16' ? f16BitsToNumber(a[i]!) : bf16BitsToNumber(a[i]!);
}

/** Quantized code of element `k` of the row starting at word `base` of `packed`. */
export function quantAt(packed: Uint32Array, base: number, bits: number, k: number): number {
  const bit = bits * k;
  const word = base + (bit >>> 5);
  const shift = bit & 31;
  let v = packed[word]! >>> shift;
  if (shift + bits > 32) v |= packed[word + 1]! << (32 - shift);
  return v & ((1 << bits) - 1);
}

function checkParts(fn: string, spec: QuantSpec, rows: number, cols: number, d: QuantizedData): void {
  checkQuantSpec(fn, spec, cols);
  const scaleType = spec.scaleDtype === 'f32' ? Float32Array : Uint16Array;
  if (!(d.packed instanceof Uint32Array)) throw new TypeError(`${fn}: packed must be a Uint32Array`);
  if (!(d.scales instanceof scaleType) || !(d.biases instanceof scaleType))
    throw new TypeError(`${fn}: ${spec.scaleDtype} scales/biases must be ${scaleType.name}s`);
  const words = rows * packedRowWords(spec, cols);
  const groups = rows * (cols / spec.groupSize);
  if (d.packed.length < words)
    throw new RangeError(`${fn}: packed has ${d.packed.length} words, need ${words}`);
  if (d.scales.length < groups || d.biases.length < groups)
    throw new RangeError(
      `${fn}: scales/biases need ${groups} values, got ${d.scales.length}/${d.biases.length}`,
    );
}

/**
 * Dequantizes row `row` of a `[rows, cols]` quantized matrix into `out[outOffset ..]`. Each value is
 * `scale * q + bias` computed in float64 and rounded once to f32.
 */
export function dequantizeRow(
  spec: QuantSpec,
  cols: number,
  data: QuantizedData,
  row: number,
  out: Float32Array,
  outOffset = 0,
): void {
  checkParts('dequantizeRow', spec, row + 1, cols, data);
  if (out.length < outOffset + cols)
    throw new RangeError(`dequantizeRow: out is too short for ${cols} values`);
  const base = row * packedRowWords(spec, cols);
  const groups = cols / spec.groupSize;
  for (let k = 0; k < cols; k++) {
    const g = row * groups + Math.floor(k / spec.groupSize);
    const q = quantAt(data.packed, base, spec.bits, k);
    out[outOffset + k] =
      scaleAt(spec.scaleDtype, data.scales, g) * q + scaleAt(spec.scaleDtype, data.biases, g);
  }
}

/** Dequantizes a whole `[rows, cols]` matrix into a new Float32Array. */
export function dequantize(
  spec: QuantSpec,
  shape: readonly [rows: number, cols: number],
  packed: Uint32Array,
  scales: ScaleArray,
  biases: ScaleArray,
): Float32Array {
  const [rows, cols] = shape;
  const data = { packed, scales, biases };
  checkParts('dequantize', spec, rows, cols, data);
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) dequantizeRow(spec, cols, data, r, out, r * cols);
  return out;
}

/** Rounds to the nearest integer, ties to even (like MLX's `round`). */
function roundEven(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** `x` rounded to `dtype`, as a stored element (f32 value or 16-bit pattern). */
function toScaleElement(dtype: ScaleDType, x: number): number {
  if (dtype === 'f32') return x;
  return dtype === 'f16' ? f32BitsToF16Bits(f32Bits(x)) : f32BitsToBf16Bits(f32Bits(x));
}

/**
 * Quantizes `values` (`[rows, cols]` row-major) with MLX's affine scheme: per group of `groupSize` consecutive
 * elements of a row, `scale = (max - min) / (2^bits - 1)` and `bias = min` (computed in f32), both rounded to
 * `scaleDtype`; then `q = clamp(round((w - bias) / scale), 0, 2^bits - 1)` with the rounded scale and bias (round
 * half to even; q = 0 when the scale is 0). Dequantizing the result gives each value to within about half a step.
 */
export function quantize(spec: QuantSpec, rows: number, cols: number, values: Float32Array): QuantizedData {
  checkQuantSpec('quantize', spec, cols);
  if (!Number.isSafeInteger(rows) || rows < 0) throw new RangeError(`quantize: bad row count ${rows}`);
  if (!(values instanceof Float32Array) || values.length !== rows * cols)
    throw new RangeError(`quantize: values must be a Float32Array of ${rows * cols} elements`);
  const { bits, groupSize, scaleDtype } = spec;
  const groups = cols / groupSize;
  const rowWords = packedRowWords(spec, cols);
  const packed = new Uint32Array(rows * rowWords);
  const scales = scaleDtype === 'f32' ? new Float32Array(rows * groups) : new Uint16Array(rows * groups);
  const biases = scaleDtype === 'f32' ? new Float32Array(rows * groups) : new Uint16Array(rows * groups);
  const maxQ = 2 ** bits - 1;
  for (let r = 0; r < rows; r++) {
    for (let g = 0; g < groups; g++) {
      const start = r * cols + g * groupSize;
      let min = Infinity;
      let max = -Infinity;
      for (let i = 0; i < groupSize; i++) {
        const w = values[start + i]!;
        if (w < min) min = w;
        if (w > max) max = w;
      }
      const gi = r * groups + g;
      scales[gi] = toScaleElement(scaleDtype, Math.fround(Math.fround(max - min) / maxQ));
      biases[gi] = toScaleElement(scaleDtype, min);
      const scale = scaleAt(scaleDtype, scales, gi);
      const bias = scaleAt(scaleDtype, biases, gi);
      for (let i = 0; i < groupSize; i++) {
        const k = g * groupSize + i;
        let q = scale === 0 ? 0 : roundEven((values[start + i]! - bias) / scale);
        q = Math.min(maxQ, Math.max(0, q));
        const bit = bits * k;
        const word = r * rowWords + (bit >>> 5);
        const shift = bit & 31;
        packed[word] = (packed[word]! | (q << shift)) >>> 0;
        if (shift + bits > 32) packed[word + 1] = (packed[word + 1]! | (q >>> (32 - shift))) >>> 0;
      }
    }
  }
  return { packed, scales, biases };
}

/** Values per scale of the int8 activation rounding ({@link roundActivationsInt8}). */
export const INT8_ACTIVATION_BLOCK = 32;

/** Rounds half to even (`Math.round` rounds half up). */
function roundHalfEven(v: number): number {
  const r = Math.round(v);
  return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * The activations as the opt-in int8-activation path of quantized matmuls sees them (`int8Activations` of the WASM
 * backend, `@mnemo/kernels`' `quantizeActivations`): each row of `dim` values (a multiple of 32) in blocks of 32,
 * `d = max|x| / 127`, `q = round_half_even(x · (127 / max|x|))`, value `q · d` (f32 at every step). A block with an
 * inf or NaN becomes NaN; a block whose `d` would be below the smallest normal f32 (all zeros included) becomes 0.
 * A matmul of these values with the dequantized weights is the reference for that path.
 */
export function roundActivationsInt8(x: Float32Array, rows: number, dim: number): Float32Array {
  if (dim % INT8_ACTIVATION_BLOCK !== 0)
    throw new RangeError(
      `roundActivationsInt8: dim must be a multiple of ${INT8_ACTIVATION_BLOCK}, got ${dim}`,
    );
  if (x.length !== rows * dim)
    throw new RangeError(`roundActivationsInt8: expected ${rows * dim} values, got ${x.length}`);
  const f = Math.fround;
  const out = new Float32Array(x.length);
  for (let b = 0; b < x.length; b += INT8_ACTIVATION_BLOCK) {
    let amax = 0;
    for (let i = b; i < b + INT8_ACTIVATION_BLOCK; i++) {
      const a = Math.abs(x[i]!);
      amax = Number.isNaN(a) || a > amax ? a : amax;
    }
    if (!Number.isFinite(amax)) {
      out.fill(Number.NaN, b, b + INT8_ACTIVATION_BLOCK);
      continue;
    }
    const d = f(amax / 127);
    if (!(d >= 2 ** -126)) continue; // zeros
    const inv = f(127 / amax);
    for (let i = b; i < b + INT8_ACTIVATION_BLOCK; i++) out[i] = f(roundHalfEven(f(x[i]! * inv)) * d);
  }
  return out;
}
