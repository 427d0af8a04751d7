export {
  ACTIVATION_BLOCK,
  type Kernels,
  loadKernels,
  quantizedActivationBytes,
  type WeightDType,
} from './kernels';
