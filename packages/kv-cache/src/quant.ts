/**
 * The KV cache's quantizer: MLX affine quantization along each row, with f32 scales and biases, delegated to
 * @mnemo/tensor's reference `quantize`/`dequantize` so that the cache's mirror holds exactly what a dequantizing
 * kernel would compute from the stored data.
 */
import { dequantize, quantize } from '@mnemo/tensor';
import type { KvBits, KvGroupSize } from './contract';

export interface QuantizedBlock {
  /** uint32 `[rows, cols * bits / 32]`; element k of a row sits at bit `bits * k` of the row's little-endian stream. */
  readonly packed: Uint32Array;
  /** f32 `[rows, cols / groupSize]`. */
  readonly scales: Float32Array;
  /** f32 `[rows, cols / groupSize]`. */
  readonly biases: Float32Array;
}

/** Quantizes `values` f32 `[rows, cols]`. */
export function quantizeRows(
  bits: KvBits,
  groupSize: KvGroupSize,
  rows: number,
  cols: number,
  values: Float32Array,
): QuantizedBlock {
  const q = quantize({ bits, groupSize, scaleDtype: 'f32' }, rows, cols, values.subarray(0, rows * cols));
  return { packed: q.packed, scales: q.scales as Float32Array, biases: q.biases as Float32Array };
}

/** Dequantizes `[rows, cols]` rows into a new Float32Array. */
export function dequantizeRows(
  bits: KvBits,
  groupSize: KvGroupSize,
  rows: number,
  cols: number,
  block: QuantizedBlock,
): Float32Array {
  return dequantize(
    { bits, groupSize, scaleDtype: 'f32' },
    [rows, cols],
    block.packed,
    block.scales,
    block.biases,
  );
}
