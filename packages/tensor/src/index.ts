export {
  type AttentionOptions,
  BACKEND_API_VERSION,
  type Backend,
  type BackendFactory,
  type RopeLayout,
  type RopeOptions,
} from './backend';
export type { DType, QuantBits, QuantGroupSize, QuantSpec, ScaleDType } from './dtype';
export { DTYPE_BYTES, DTYPES, isDType, QUANT_BITS, QUANT_GROUP_SIZES } from './dtype';
export { isQuantized, QuantizedTensor, Tensor, type Weight } from './tensor';
