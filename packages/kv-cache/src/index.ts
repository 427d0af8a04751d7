export { CACHE_STEP } from './buffer';
export {
  type CacheKindOptions,
  canTrim,
  checkKindOptions,
  codecFor,
  describeCache,
  freeCaches,
  importState,
  type LayerCacheSpec,
  type LayerCachesOptions,
  type MakeCachesOptions,
  makeCaches,
  makeLayerCaches,
  maxStepRows,
  trimCaches,
} from './caches';
export {
  type CacheCodec,
  type MetaState,
  type MetaValue,
  type ParsedLayer,
  type StateDType,
  type StateTensor,
  type TensorSpec,
  UnsupportedCacheError,
} from './codec';
export type {
  CacheKind,
  CacheOptions,
  CacheShape,
  CacheView,
  DenseRows,
  HalfRows,
  KVCache,
  KvBits,
  KvGroupSize,
  LayerState,
  QuantizedRows,
  QuantizedState,
  RotatingState,
  RowData,
  StandardState,
} from './contract';
export { StateBuffers } from './contract';
export { PromptCacheError, type PromptCacheErrorCode } from './errors';
export { rowsToF32 } from './floats';
export {
  type ExportMlxOptions,
  exportMlxPromptCache,
  type ImportedMlxPromptCache,
  type ImportMlxOptions,
  importMlxPromptCache,
  type MlxDType,
} from './mlx';
export {
  type CacheDescription,
  inspectPromptCache,
  type LayerDescription,
  type LoadedPromptCache,
  type LoadPromptCacheOptions,
  layerTensorName,
  layerTensorNames,
  loadPromptCache,
  MNEMO_VERSION,
  PROMPT_CACHE_FORMAT,
  PROMPT_CACHE_FORMAT_VERSION,
  PROMPT_CACHE_KEYS,
  PROMPT_CACHE_READABLE_VERSIONS,
  type PromptCacheExpectation,
  type PromptCacheInfo,
  type PromptCacheInspection,
  type PromptCacheMeta,
  savePromptCache,
  summarizeCache,
} from './prompt-cache';
export { type QuantizedCacheOptions, QuantizedKVCache, quantizedCodec } from './quantized';
export { type RotatingCacheOptions, RotatingKVCache, rotatingCodec } from './rotating';
export { type StandardCacheOptions, StandardKVCache, standardCodec } from './standard';
export { CacheStateError } from './state-check';
export {
  checkStorageShape,
  isKvStorage,
  KV_STORAGES,
  type KvStorage,
  quantOf,
  storageRowBytes,
} from './storage';
