/**
 * The part of `@mnemo/kernels`' loader API that the WASM backend uses, taken from its own declarations so the two
 * cannot drift. The backend can run on any object of this shape (a test double, or a kernels build loaded some other
 * way). Pointers are byte offsets into `memory`; sizes are in elements.
 */
import type { Kernels as FullKernels, WeightDType } from '@mnemo/kernels';

export type { WeightDType };

/** The kernels' linear memory (a `WebAssembly.Memory`); its `buffer` is replaced when the memory grows. */
export interface KernelMemory {
  readonly buffer: ArrayBuffer;
}

export type Kernels = Pick<
  FullKernels,
  | 'alloc'
  | 'free'
  | 'allocatedBytes'
  | 'matmul'
  | 'matmulQ'
  | 'toF32'
  | 'embedding'
  | 'embeddingQ'
  | 'rmsnorm'
  | 'rope'
  | 'swiglu'
  | 'geluGlu'
  | 'softcap'
  | 'scale'
  | 'add'
  | 'softmax'
  | 'argmax'
  | 'copy'
  | 'attentionKv'
  | 'writeKv'
> &
  // the opt-in int8-activation path (a kernels double may leave it out; the backend then refuses int8Activations)
  Partial<Pick<FullKernels, 'quantizeActivations' | 'matmulQ8a'>> &
  // GGML block weights (a kernels double may leave them out; the backend then refuses uploadGgml)
  Partial<Pick<FullKernels, 'ggmlMatmul' | 'ggmlMatmulQ8a' | 'ggmlEmbedding'>> & {
    readonly memory: KernelMemory;
  };
