export {
  type AttentionOptions,
  BACKEND_API_VERSION,
  type Backend,
  type BackendFactory,
  type BackendOptions,
  type FileRange,
  type KvRows,
  kvRow,
  type RopeLayout,
  type RopeOptions,
  type WriteKvOptions,
} from './backend';
export {
  bf16BitsToNumber,
  bf16ToF32,
  f16BitsToNumber,
  f16ToF32,
  f32ToBf16,
  f32ToF16,
  numberToBf16Bits,
  numberToF16Bits,
  ropeTable,
  toFloat32,
} from './convert';
export type { DType, QuantBits, QuantGroupSize, QuantSpec, ScaleDType } from './dtype';
export { DTYPE_BYTES, DTYPES, isDType, QUANT_BITS, QUANT_GROUP_SIZES } from './dtype';
export {
  dequantizeGgmlRow,
  GGML_BLOCK_TYPES,
  type GgmlBlockInfo,
  type GgmlBlockType,
  GgmlTensor,
  ggmlBlockAffine,
  ggmlRowBytes,
  isGgml,
  isGgmlBlockType,
} from './ggml';
// For Backend implementations (the native backend, third-party ones): the storage bookkeeping, argument checks and
// settings the built-in backends share, so that every backend refuses exactly the same calls.
export { Owner, overlaps, type StorageBase, width } from './owner';
export {
  checkQuantSpec,
  dequantize,
  dequantizeRow,
  INT8_ACTIVATION_BLOCK,
  packedRowWords,
  type QuantizedData,
  quantize,
  roundActivationsInt8,
  type ScaleArray,
} from './quant';
export { createReferenceBackend } from './reference/backend';
export {
  BackendUnavailableError,
  BackendVersionError,
  createBackend,
  DEFAULT_BACKEND,
  PREFERRED_BACKEND,
  registerBackend,
  registeredBackends,
  setBackendWarningHandler,
  UnknownBackendError,
} from './select';
export { isQuantized, QuantizedTensor, Tensor, type Weight } from './tensor';
export {
  checkAdd,
  checkArgmax,
  checkAttention,
  checkCopyRows,
  checkEmbedding,
  checkFree,
  checkGeluGlu,
  checkMatmul,
  checkRead,
  checkReadBytes,
  checkRmsnorm,
  checkRope,
  checkScale,
  checkShape,
  checkSoftcap,
  checkSoftmax,
  checkSwiglu,
  checkToF32,
  checkUpload,
  checkUploadGgml,
  checkUploadQuantized,
  checkView,
  checkWrite,
  checkWriteKv,
} from './validate';
export {
  createWasmBackend,
  DEFAULT_SHARD_MIN_BYTES,
  type InstanceMemory,
  WASM32_MAX_BYTES,
  type WasmBackend,
  type WasmBackendOptions,
  WasmCapacityError,
} from './wasm/backend';
export type { Kernels, WeightDType } from './wasm/kernels';
export { envInt8Activations, hardwareThreads, resolveThreads } from './wasm/threads/options';
