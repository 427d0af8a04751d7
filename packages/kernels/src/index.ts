export { type Kernels, loadKernels, type WeightDType } from './kernels';
