export {
  dequantizeGgmlRow,
  GGML_BLOCK_TYPES,
  type GgmlBlockInfo,
  type GgmlBlockType,
  ggmlBlockAffine,
  ggmlRowBytes,
  isGgmlBlockType,
} from './ggml';
export {
  ACTIVATION_BLOCK,
  attentionKvScratchBytes,
  attentionScratchBytes,
  type Kernels,
  type KvAttention,
  type KvFormat,
  type KvLayout,
  type KvPtrs,
  type KvWrite,
  loadKernels,
  quantizedActivationBytes,
  type WeightDType,
} from './kernels';
export {
  attachKernels,
  KERNELS_STACK_BYTES,
  type KernelsView,
  loadSharedKernels,
  MIN_KERNELS_STACK_BYTES,
} from './shared';
