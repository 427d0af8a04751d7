/**
 * The part of `@mnemo/kernels`' loader API that the WASM backend uses. Declared here structurally so that the
 * backend can also run on any object of this shape (a test double, or a kernels build loaded some other way).
 * Pointers are byte offsets into `memory`; sizes are in elements.
 */
export type WeightDType = 'f32' | 'f16' | 'bf16';

/** The kernels' linear memory (a `WebAssembly.Memory`); its `buffer` is replaced when the memory grows. */
export interface KernelMemory {
  readonly buffer: ArrayBuffer;
}

export interface Kernels {
  readonly memory: KernelMemory;
  alloc(bytes: number): number;
  free(ptr: number): void;
  allocatedBytes(): number;
  matmul(
    y: number,
    x: number,
    w: number,
    rows: number,
    inDim: number,
    outDim: number,
    wDtype: WeightDType,
    bias?: number,
  ): void;
  matmulQ(
    y: number,
    x: number,
    packed: number,
    scales: number,
    biases: number,
    rows: number,
    inDim: number,
    outDim: number,
    bits: number,
    groupSize: number,
    scaleDtype: WeightDType,
    bias?: number,
  ): void;
  toF32(out: number, src: number, n: number, srcDtype: WeightDType): void;
  embedding(
    out: number,
    table: number,
    ids: number,
    nIds: number,
    vocab: number,
    dim: number,
    dtype: WeightDType,
  ): void;
  embeddingQ(
    out: number,
    packed: number,
    scales: number,
    biases: number,
    ids: number,
    nIds: number,
    vocab: number,
    dim: number,
    bits: number,
    groupSize: number,
    scaleDtype: WeightDType,
  ): void;
  rmsnorm(out: number, x: number, weight: number, rows: number, dim: number, eps: number): void;
  rope(
    x: number,
    cos: number,
    sin: number,
    rows: number,
    nHeads: number,
    headDim: number,
    rotDim: number,
    layout: 'half' | 'pair',
  ): void;
  swiglu(out: number, gate: number, up: number, n: number): void;
  add(out: number, a: number, b: number, n: number): void;
  softmax(x: number, rows: number, n: number): void;
  argmax(x: number, n: number): number;
  copy(dst: number, src: number, bytes: number): void;
  attention(
    out: number,
    q: number,
    k: number,
    v: number,
    rows: number,
    startPos: number,
    nHeads: number,
    nKvHeads: number,
    headDim: number,
    scale: number,
    window: number,
  ): void;
}
