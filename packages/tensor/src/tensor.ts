import { DTYPE_BYTES, type DType, type QuantSpec } from './dtype';
import type { GgmlTensor } from './ggml';

/**
 * A dense n-dimensional array living in one backend's memory. Row-major, no strides: a view is a contiguous
 * range of its parent's storage (`offset` in elements) under a new shape. Storage is opaque outside the backend
 * that made it; read and write through the backend.
 */
export class Tensor {
  readonly size: number;

  constructor(
    /** Name of the backend that owns the storage (`backend.name`). */
    readonly backendName: string,
    readonly dtype: DType,
    readonly shape: readonly number[],
    /** Backend-private storage handle, shared by views. */
    readonly storage: object,
    /** Offset of element 0 in the storage, in elements. */
    readonly offset = 0,
  ) {
    let n = 1;
    for (const d of shape) {
      if (!Number.isSafeInteger(d) || d < 0)
        throw new RangeError(`tensor: bad dimension ${d} in shape [${shape}]`);
      n *= d;
    }
    this.size = n;
  }

  get byteLength(): number {
    return this.size * DTYPE_BYTES[this.dtype];
  }

  /** First dimension (rows of a matrix); 1 for a scalar. */
  get rows(): number {
    return this.shape.length === 0 ? 1 : this.shape[0]!;
  }

  /** Product of all dimensions but the first. */
  get cols(): number {
    return this.shape.length === 0 ? 1 : this.size / Math.max(1, this.shape[0]!) || 0;
  }

  toString(): string {
    return `Tensor<${this.dtype}>[${this.shape.join(', ')}]`;
  }
}

/**
 * An MLX affine-quantized weight matrix `[rows, cols]` (for a linear layer `[out, in]`), stored as three tensors.
 * See {@link QuantSpec} for the layout.
 */
export class QuantizedTensor {
  readonly kind = 'quantized' as const;
  constructor(
    readonly spec: QuantSpec,
    readonly shape: readonly [rows: number, cols: number],
    /** uint32 `[rows, cols * bits / 32]`. */
    readonly packed: Tensor,
    /** `[rows, cols / groupSize]` in `spec.scaleDtype`. */
    readonly scales: Tensor,
    /** `[rows, cols / groupSize]` in `spec.scaleDtype`. */
    readonly biases: Tensor,
  ) {}

  get backendName(): string {
    return this.packed.backendName;
  }

  toString(): string {
    return `QuantizedTensor<q${this.spec.bits}g${this.spec.groupSize},${this.spec.scaleDtype}>[${this.shape.join(', ')}]`;
  }
}

/** A weight matrix `[out, in]` as matmul and embedding take it: dense f32/f16/bf16, MLX-quantized or GGML blocks. */
export type Weight = Tensor | QuantizedTensor | GgmlTensor;

export function isQuantized(w: Weight): w is QuantizedTensor {
  return w instanceof QuantizedTensor;
}
