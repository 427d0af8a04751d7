import type { CacheKindOptions, CacheShape, KVCache } from '@mnemo/kv-cache';
import type { Backend, Tensor } from '@mnemo/tensor';
import type { RawConfig } from './config';
import type { Weights } from './weights';

/**
 * Version of the architecture plugin API ({@link ArchitecturePlugin}, {@link Model}). v2: a model says what each
 * layer needs from its cache (`attentionLayers`) and makes its caches (`makeCaches`).
 */
export const PLUGIN_API_VERSION = 2 as const;

/** One layer's attention, as its KV cache sees it (`Model.attentionLayers`). */
export interface AttentionLayerInfo {
  /** Sliding window in keys (the current one included); 0 = global. */
  readonly window: number;
  readonly nKvHeads: number;
  readonly headDim: number;
}

export interface ForwardOptions {
  /** Return logits for every input token (`[tokens, vocab]`) instead of the last one only (`[1, vocab]`). */
  readonly allLogits?: boolean;
}

/**
 * A loaded model, immutable after loading (all mutable state lives in the caches it is given). Prefill and decode are
 * the same call: `forward` runs `tokens` at positions `caches[0].offset ..`, appends their keys and values to the
 * caches (one per layer) and returns f32 logits. The returned tensor belongs to the model and is overwritten by the
 * next call; read it before calling again.
 */
export interface Model {
  readonly modelType: string;
  readonly numLayers: number;
  readonly vocabSize: number;
  /** Shape of layer 0's KV cache rows (every layer's is in `attentionLayers`). */
  readonly cacheShape: CacheShape;
  /**
   * Sliding attention window (0 = none); caches must keep at least this many tokens. When only some layers slide
   * (Gemma 2/3) this is 0: the global layers need every position.
   */
  readonly slidingWindow: number;
  /**
   * What each layer's attention needs from its cache, in layer order: its window (keys a query sees, itself included;
   * 0 = global) and the shape of its cache rows. A layer with a window never reads positions before it.
   */
  readonly attentionLayers: readonly AttentionLayerInfo[];
  /**
   * Fresh per-layer caches for this model, as each layer needs them (`makeLayerCaches` of `@mnemo/kv-cache` over
   * `attentionLayers`: ring caches of the window on sliding layers, the kind `opts` asks for on global ones).
   */
  makeCaches(opts?: CacheKindOptions): KVCache[];
  /** Longest context the model was trained for (informative). */
  readonly maxPositionEmbeddings: number;
  forward(tokens: Int32Array, caches: readonly KVCache[], opts?: ForwardOptions): Tensor;
  /** Bytes of backend memory held by the weights. */
  readonly weightBytes: number;
  /** Releases weights and scratch buffers. */
  free(): void;
}

/**
 * An architecture: built-ins register through this same API third parties use. `create` receives the parsed
 * `config.json`, a weight loader bound to the checkpoint and backend, and the backend.
 */
export interface ArchitecturePlugin {
  readonly apiVersion: typeof PLUGIN_API_VERSION;
  /** Human-readable name, e.g. `llama`. */
  readonly name: string;
  /** `model_type` values this plugin handles. */
  readonly modelTypes: readonly string[];
  create(config: RawConfig, weights: Weights, backend: Backend): Promise<Model>;
}
