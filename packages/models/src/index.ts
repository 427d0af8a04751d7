export { buildDecoder, type Features, loadEnds, loadLayer } from './architectures/common';
export {
  createGemma,
  type GemmaConfig,
  type GemmaVersion,
  gemma,
  gemmaTextConfig,
  readGemmaConfig,
} from './architectures/gemma';
export { createLlama, llama } from './architectures/llama';
export { createMistral, mistral } from './architectures/mistral';
export { createPhi3, phi3 } from './architectures/phi3';
export { createQwen2, qwen2 } from './architectures/qwen2';
export { createQwen3, qwen3 } from './architectures/qwen3';
export {
  type Activation,
  AttentionBlock,
  type AttentionConfig,
  type AttentionLayer,
  type AttentionWeights,
  DEFAULT_FORWARD_ROWS,
  defaultMlpChunkRows,
  EmbeddingBlock,
  type LayerBlocks,
  LmHead,
  type LmHeadParts,
  loadRmsNorm,
  MlpBlock,
  type MlpOptions,
  type MlpWeights,
  type ResidualBuffers,
  RmsNorm,
  RopeTable,
  residualBuffers,
  Scratch,
  type ScratchBuffer,
  ScratchFrame,
  TransformerLayer,
  TransformerModel,
  type TransformerParts,
} from './blocks/index';
export { ConfigReader, type DecoderConfig, type RawConfig, readDecoderConfig } from './config';
export {
  Decoder,
  type DecoderDims,
  type DecoderLayer,
  type DecoderOptions,
  type DecoderWeights,
  MLP_CHUNK_BYTES,
} from './decoder';
export { DigestCache, defaultDigestCacheDir } from './digest-cache';
export { ModelLoadError } from './errors';
export { canonicalJson, modelFingerprint, tensorDigest, WeightDigest } from './fingerprint';
export {
  GGUF_ARCHITECTURES,
  type GgufModelInfo,
  ggufConfig,
  ggufTensorSource,
  hfTensorName,
  openGgufModel,
} from './gguf';
export {
  type GgufFileSource,
  type LoadedModel,
  type LoadModelOptions,
  loadGgufModel,
  loadModel,
  readJsonFile,
  resolveGgufFile,
} from './load';
export {
  type ArchitecturePlugin,
  type AttentionLayerInfo,
  type ForwardOptions,
  type Model,
  PLUGIN_API_VERSION,
} from './model';
export { loadNativeBackend } from './native';
export { QuantizationConfig, type QuantParams } from './quantization';
export {
  ArchitectureRegistry,
  BUILTIN_ARCHITECTURES,
  createRegistry,
  defaultRegistry,
  registerArchitecture,
} from './registry';
export { fillRopeTables, ropeInvFreq } from './rope';
export { type DigestingSource, digestingSource, type TensorSource, Weights } from './weights';
