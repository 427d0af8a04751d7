/** Element types a tensor can hold. Compute is always f32; f16/bf16 are storage types for weights. */
export type DType = 'f32' | 'f16' | 'bf16' | 'u32' | 'i32' | 'u8';

/** Bytes per element of each dtype. */
export const DTYPE_BYTES: Readonly<Record<DType, number>> = {
  f32: 4,
  f16: 2,
  bf16: 2,
  u32: 4,
  i32: 4,
  u8: 1,
};

export const DTYPES: readonly DType[] = ['f32', 'f16', 'bf16', 'u32', 'i32', 'u8'];

export function isDType(x: unknown): x is DType {
  return typeof x === 'string' && (DTYPES as readonly string[]).includes(x);
}

/** Bit widths of MLX affine quantization. */
export type QuantBits = 2 | 3 | 4 | 5 | 6 | 8;
export const QUANT_BITS: readonly QuantBits[] = [2, 3, 4, 5, 6, 8];
/** Group sizes of MLX affine quantization. */
export type QuantGroupSize = 32 | 64 | 128;
export const QUANT_GROUP_SIZES: readonly QuantGroupSize[] = [32, 64, 128];
/** Storage dtype of the per-group scales and biases. */
export type ScaleDType = 'f32' | 'f16' | 'bf16';

/**
 * Describes an MLX affine-quantized matrix `[rows, cols]` (weights are `[out, in]`).
 * `packed` is uint32 `[rows, cols * bits / 32]`: element k of a row sits at bit offset `bits * k` of the row's
 * little-endian bit stream (3/5/6-bit elements straddle words). `scales` and `biases` are
 * `[rows, cols / groupSize]` in `scaleDtype`; the dequantized value is `scale * q + bias`.
 */
export interface QuantSpec {
  readonly bits: QuantBits;
  readonly groupSize: QuantGroupSize;
  readonly scaleDtype: ScaleDType;
}
