export { type EncodeOptions, type EncodeTensor, encodeGguf, GgufValues, ggmlByteLength } from './encode';
export { GgufError, type GgufErrorCode, type GgufErrorDetails } from './errors';
export {
  type DecodedGguf,
  decodeGguf,
  type GgufFile,
  type GgufHeader,
  MAX_HEADER_BYTES,
  openGguf,
} from './file';
export {
  DEFAULT_ALIGNMENT,
  type GgufTensorInfo,
  MAX_ARRAY_DEPTH,
  MAX_BOOL_ITEMS,
  MAX_DIMS,
  MAX_ENTRIES,
} from './header';
export { GgufMetadata } from './metadata';
export {
  GGML_TYPES,
  GGUF_VALUE_TYPE_NAMES,
  type GgmlTypeInfo,
  type GgufArray,
  type GgufArrayItems,
  type GgufArrayValue,
  type GgufValue,
  GgufValueType,
  ggmlType,
  ggmlTypeByName,
} from './types';
