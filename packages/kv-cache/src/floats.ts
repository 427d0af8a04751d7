import { f16ToF32, f32ToBf16, f32ToF16, toFloat32 } from '@mnemo/tensor';
import type { RowData } from './contract';

/** f32 values in a storage dtype (f16/bf16 round to nearest even), as raw little-endian elements. */
export function f32ToStorage(
  dtype: 'f32' | 'f16' | 'bf16',
  values: Float32Array,
): Float32Array | Uint16Array {
  if (dtype === 'f32') return values;
  return dtype === 'f16' ? f32ToF16(values) : f32ToBf16(values);
}

/** Raw little-endian f32/f16/bf16 bytes as a new Float32Array (exact). */
export function storageToF32(dtype: 'f32' | 'f16' | 'bf16', bytes: Uint8Array): Float32Array {
  return toFloat32(dtype, bytes);
}

/**
 * The f32 values attention reads from row data of `width`-wide rows: f32 as is, f16 converted exactly, quantized
 * `fl(fl(scale * q) + bias)` (Backend API v3's definition). A new array unless the data is already f32.
 */
export function rowsToF32(d: RowData, width: number): Float32Array {
  if (d.format === 'f32') return d.data;
  if (d.format === 'f16') return f16ToF32(d.data);
  const out = new Float32Array(d.rows * width);
  const groups = width / d.groupSize;
  const words = (width * d.bits) / 32;
  const mask = (1 << d.bits) - 1;
  const f = Math.fround;
  for (let r = 0; r < d.rows; r++)
    for (let k = 0; k < width; k++) {
      const bit = d.bits * k;
      const q = (d.packed[r * words + (bit >>> 5)]! >>> (bit & 31)) & mask;
      const g = r * groups + Math.floor(k / d.groupSize);
      out[r * width + k] = f(f(d.scales[g]! * q) + d.biases[g]!);
    }
  return out;
}
