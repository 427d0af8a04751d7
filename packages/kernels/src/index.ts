export {
  ACTIVATION_BLOCK,
  attentionScratchBytes,
  type Kernels,
  loadKernels,
  quantizedActivationBytes,
  type WeightDType,
} from './kernels';
