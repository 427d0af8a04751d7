export {
  AttentionBlock,
  type AttentionConfig,
  type AttentionLayer,
  type AttentionWeights,
} from './attention';
export { EmbeddingBlock } from './embedding';
export { LmHead, type LmHeadParts } from './head';
export { type LayerBlocks, TransformerLayer } from './layer';
export {
  type Activation,
  defaultMlpChunkRows,
  MLP_CHUNK_BYTES,
  MlpBlock,
  type MlpOptions,
  type MlpWeights,
} from './mlp';
export { DEFAULT_FORWARD_ROWS, TransformerModel, type TransformerParts } from './model';
export { loadRmsNorm, RmsNorm } from './norm';
export { RopeTable } from './rope';
export {
  type ResidualBuffers,
  residualBuffers,
  Scratch,
  type ScratchBuffer,
  ScratchFrame,
} from './scratch';
