export { CACHE_STEP } from './buffer';
export {
  type CacheKindOptions,
  canTrim,
  freeCaches,
  importState,
  type MakeCachesOptions,
  makeCaches,
  maxStepRows,
  trimCaches,
} from './caches';
export type {
  CacheKind,
  CacheOptions,
  CacheShape,
  CacheView,
  DenseRows,
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
  layerTensorNames,
  loadPromptCache,
  MNEMO_VERSION,
  PROMPT_CACHE_FORMAT,
  PROMPT_CACHE_FORMAT_VERSION,
  PROMPT_CACHE_KEYS,
  type PromptCacheExpectation,
  type PromptCacheInfo,
  type PromptCacheInspection,
  type PromptCacheMeta,
  savePromptCache,
} from './prompt-cache';
export { type QuantizedCacheOptions, QuantizedKVCache } from './quantized';
export { type RotatingCacheOptions, RotatingKVCache } from './rotating';
export { StandardKVCache } from './standard';
export { CacheStateError } from './state-check';
