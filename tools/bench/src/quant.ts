/**
 * Weight encodings of the two runtimes, from the same source values:
 *
 * - MLX affine quantization (mnemo's rule, the same as `quantize` of @mnemo/tensor, just faster for 4 and 8 bits):
 *   per group of `groupSize` elements of a row, `scale = (max - min) / (2^bits - 1)` and `bias = min`, both stored as
 *   f16; `q = clamp(roundEven((w - bias) / scale))`; packed little-endian into uint32 words, element k at bit
 *   `bits * k` of its row.
 * - GGUF Q4_1 (block of 32: f16 d, f16 m, 16 bytes of nibbles, value `d * q + m`) holds MLX 4-bit group-32 f16
 *   weights exactly: d = scale, m = bias, same codes. Only the nibble order differs: element j of a block sits in the
 *   low nibble of byte j, element j + 16 in its high nibble.
 * - GGUF Q8_0 (block of 32: f16 d, 32 int8; `d = max|x| / 127`, `q = round(x / d)`) is quantized from the f32 source
 *   as llama.cpp's reference quantizer does; it is not the same as MLX 8-bit (a different scheme), only the same size.
 * - f16: the same f16 values in both files.
 */
import { f16BitsToNumber, numberToF16Bits } from '@mnemo/tensor';

export const GGML_TYPE = { F32: 0, F16: 1, Q4_1: 3, Q8_0: 8, Q4_K: 12, Q6_K: 14 } as const;
export type GgmlType = (typeof GGML_TYPE)[keyof typeof GGML_TYPE];

/** Bytes of a `[rows, cols]` tensor of `type`. */
export function ggmlBytes(type: GgmlType, rows: number, cols: number): number {
  switch (type) {
    case GGML_TYPE.F32:
      return rows * cols * 4;
    case GGML_TYPE.F16:
      return rows * cols * 2;
    case GGML_TYPE.Q4_1:
      return rows * (cols / 32) * 20;
    case GGML_TYPE.Q8_0:
      return rows * (cols / 32) * 34;
    case GGML_TYPE.Q4_K:
      return rows * (cols / 256) * 144;
    case GGML_TYPE.Q6_K:
      return rows * (cols / 256) * 210;
  }
  throw new RangeError(`unknown ggml type ${String(type)}`);
}

/** Rounds to the nearest integer, ties to even (MLX's and mnemo's `round`). */
function roundEven(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** The three parts of an MLX-quantized `[rows, cols]` matrix with f16 scales and biases. */
export interface MlxQuantized {
  readonly bits: 4 | 8;
  readonly groupSize: 32 | 64;
  readonly rows: number;
  readonly cols: number;
  /** uint32 `[rows, cols * bits / 32]`. */
  readonly packed: Uint32Array;
  /** f16 bit patterns `[rows, cols / groupSize]`. */
  readonly scales: Uint16Array;
  readonly biases: Uint16Array;
}

export function allocMlx(bits: 4 | 8, groupSize: 32 | 64, rows: number, cols: number): MlxQuantized {
  if (cols % groupSize !== 0)
    throw new RangeError(`cols ${cols} is not a multiple of the group size ${groupSize}`);
  return {
    bits,
    groupSize,
    rows,
    cols,
    packed: new Uint32Array((rows * cols * bits) / 32),
    scales: new Uint16Array((rows * cols) / groupSize),
    biases: new Uint16Array((rows * cols) / groupSize),
  };
}

/** Quantizes rows `row0 ..` of `out` from `values` (whole rows, row-major). */
export function quantizeMlxRows(out: MlxQuantized, row0: number, values: Float32Array): void {
  const { bits, groupSize, cols } = out;
  const n = values.length / cols;
  if (!Number.isInteger(n) || row0 + n > out.rows) throw new RangeError('quantizeMlxRows: rows out of range');
  const maxQ = bits === 4 ? 15 : 255;
  const perWord = 32 / bits;
  const rowWords = (cols * bits) / 32;
  const groups = cols / groupSize;
  const { packed, scales, biases } = out;
  for (let r = 0; r < n; r++) {
    const vBase = r * cols;
    const wBase = (row0 + r) * rowWords;
    for (let g = 0; g < groups; g++) {
      const start = vBase + g * groupSize;
      let min = Infinity;
      let max = -Infinity;
      for (let i = 0; i < groupSize; i++) {
        const w = values[start + i]!;
        if (w < min) min = w;
        if (w > max) max = w;
      }
      const gi = (row0 + r) * groups + g;
      const sBits = numberToF16Bits(Math.fround(Math.fround(max - min) / maxQ));
      const bBits = numberToF16Bits(min);
      scales[gi] = sBits;
      biases[gi] = bBits;
      const scale = f16BitsToNumber(sBits);
      const bias = f16BitsToNumber(bBits);
      let word = 0;
      let k = g * groupSize;
      for (let i = 0; i < groupSize; i++, k++) {
        let q = scale === 0 ? 0 : roundEven((values[start + i]! - bias) / scale);
        q = Math.max(0, Math.min(q, maxQ));
        const slot = k % perWord;
        word |= q << (slot * bits);
        if (slot === perWord - 1) {
          packed[wBase + (k - slot) / perWord] = word >>> 0;
          word = 0;
        }
      }
    }
  }
}

/** Quantized code of element `k` of row `row`. */
export function mlxCode(m: MlxQuantized, row: number, k: number): number {
  const perWord = 32 / m.bits;
  const word = m.packed[row * ((m.cols * m.bits) / 32) + Math.floor(k / perWord)]!;
  return (word >>> ((k % perWord) * m.bits)) & ((1 << m.bits) - 1);
}

/**
 * The row of the GGUF tensor's row `r` in the Hugging Face tensor, for q_proj / k_proj with `heads` heads: llama.cpp
 * rotates adjacent pairs, Hugging Face the two halves of a head, so its converter interleaves each head's halves
 * (HF row `h*D + s*D/2 + i` becomes row `h*D + 2i + s`).
 */
export function hfRowOfGgufRow(r: number, rows: number, heads: number | undefined): number {
  if (heads === undefined) return r;
  const d = rows / heads;
  const h = Math.floor(r / d);
  const j = r % d;
  return h * d + (j % 2) * (d / 2) + Math.floor(j / 2);
}

/** Writes the Q4_1 blocks of row `row` of an MLX 4-bit group-32 matrix into `out` at `offset`. */
export function q4_1FromMlxRow(m: MlxQuantized, row: number, out: Uint8Array, offset: number): void {
  if (m.bits !== 4 || m.groupSize !== 32) throw new RangeError('Q4_1 holds MLX 4-bit group-32 weights only');
  const groups = m.cols / 32;
  const rowWords = m.cols / 8;
  for (let g = 0; g < groups; g++) {
    const o = offset + g * 20;
    const d = m.scales[row * groups + g]!;
    const mm = m.biases[row * groups + g]!;
    out[o] = d & 0xff;
    out[o + 1] = d >>> 8;
    out[o + 2] = mm & 0xff;
    out[o + 3] = mm >>> 8;
    const w = row * rowWords + g * 4;
    for (let j = 0; j < 16; j++) {
      const lo = (m.packed[w + (j >>> 3)]! >>> ((j & 7) * 4)) & 15;
      const hi = (m.packed[w + 2 + (j >>> 3)]! >>> ((j & 7) * 4)) & 15;
      out[o + 4 + j] = lo | (hi << 4);
    }
  }
}

/** Q8_0 blocks of one row of f32 values, as llama.cpp's `quantize_row_q8_0_ref`. */
export function q8_0Row(values: Float32Array, out: Uint8Array, offset: number): void {
  const blocks = values.length / 32;
  for (let b = 0; b < blocks; b++) {
    let amax = 0;
    for (let j = 0; j < 32; j++) {
      const a = Math.abs(values[b * 32 + j]!);
      if (a > amax) amax = a;
    }
    const d = Math.fround(amax / 127);
    const id = d !== 0 ? Math.fround(1 / d) : 0;
    const dBits = numberToF16Bits(d);
    const o = offset + b * 34;
    out[o] = dBits & 0xff;
    out[o + 1] = dBits >>> 8;
    for (let j = 0; j < 32; j++) {
      const x = Math.fround(values[b * 32 + j]! * id);
      // roundf: half away from zero.
      const q = x < 0 ? -Math.round(-x) : Math.round(x);
      out[o + 2 + j] = q & 0xff;
    }
  }
}

/** Dequantizes Q4_1 blocks (value `d * q + m`, exact in f64 and rounded once to f32, as f32 `q*d + m` is). */
export function dequantQ4_1(bytes: Uint8Array, count: number): Float32Array {
  const out = new Float32Array(count);
  for (let b = 0; b < count / 32; b++) {
    const o = b * 20;
    const d = f16BitsToNumber(bytes[o]! | (bytes[o + 1]! << 8));
    const m = f16BitsToNumber(bytes[o + 2]! | (bytes[o + 3]! << 8));
    for (let j = 0; j < 16; j++) {
      const byte = bytes[o + 4 + j]!;
      out[b * 32 + j] = d * (byte & 15) + m;
      out[b * 32 + j + 16] = d * (byte >>> 4) + m;
    }
  }
  return out;
}

/** Dequantizes Q8_0 blocks. */
export function dequantQ8_0(bytes: Uint8Array, count: number): Float32Array {
  const out = new Float32Array(count);
  const signed = new Int8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let b = 0; b < count / 32; b++) {
    const o = b * 34;
    const d = f16BitsToNumber(bytes[o]! | (bytes[o + 1]! << 8));
    for (let j = 0; j < 32; j++) out[b * 32 + j] = d * signed[o + 2 + j]!;
  }
  return out;
}
