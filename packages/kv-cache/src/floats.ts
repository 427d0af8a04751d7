import { f32ToBf16, f32ToF16, toFloat32 } from '@mnemo/tensor';

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
