export { type Kernels, kernelsWasmBytes, loadKernels, type WeightDType } from './kernels';
