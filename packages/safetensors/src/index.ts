export {
  type Checkpoint,
  type CheckpointTensorInfo,
  INDEX_FILE,
  type OpenCheckpointOptions,
  openCheckpoint,
  type UnmappedTensor,
} from './checkpoint';
export {
  type DecodedSafetensors,
  type DecodedTensor,
  type DecodeOptions,
  decodeSafetensors,
  encodeSafetensors,
  type LazyTensorInput,
  type NamedTensorInput,
  type TensorInput,
  type TensorsInput,
} from './codec';
export {
  fromMnemoDType,
  isSafetensorsDType,
  type MnemoDType,
  SAFETENSORS_DTYPE_BITS,
  SAFETENSORS_DTYPES,
  type SafetensorsDType,
  toMnemoDType,
} from './dtype';
export { SafetensorsError, type SafetensorsErrorCode, type SafetensorsErrorDetails } from './errors';
export { openSafetensors, type SafetensorsFile, type TensorInfo } from './file';
export { MAX_HEADER_SIZE } from './header';
export { type WriteOptions, writeSafetensors, writeSafetensorsStreaming } from './write';
