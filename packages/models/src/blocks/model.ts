import { type CacheKindOptions, type KVCache, makeLayerCaches } from '@mnemo/kv-cache';
import type { Tensor, Weight } from '@mnemo/tensor';
import type { ForwardOptions, Model } from '../model';
import type { AttentionLayer } from './attention';
import type { EmbeddingBlock } from './embedding';
import type { LmHead } from './head';
import type { TransformerLayer } from './layer';
import { residualBuffers, type Scratch, type ScratchBuffer } from './scratch';

/** Default {@link TransformerParts.forwardRows}. */
export const DEFAULT_FORWARD_ROWS = 128;

/** What a {@link TransformerModel} is made of. */
export interface TransformerParts {
  readonly modelType: string;
  /** Longest context the model was trained for (informative). */
  readonly maxPositionEmbeddings: number;
  readonly embedding: EmbeddingBlock;
  readonly layers: readonly TransformerLayer[];
  readonly head: LmHead;
  /** Bytes of backend memory held by the weights (e.g. `memoryInUse()` before and after loading). */
  readonly weightBytes: number;
  /**
   * Most rows one pass through the layers computes (default {@link DEFAULT_FORWARD_ROWS}): a longer forward (a prefill
   * step of 512 tokens) runs as consecutive passes of at most this many rows, as llama.cpp splits a batch into
   * micro-batches. Every kernel is batch-invariant, so the logits and caches are bitwise the same for any value; the
   * scratch buffers, sized by the rows of one pass, stay small (Llama-3.2-1B: 13.5 MiB instead of 30 MiB at 512 rows).
   * A forward that asks for every row's logits runs in one pass.
   */
  readonly forwardRows?: number;
}

/**
 * A decoder-only transformer assembled from blocks: embed → every layer (in order, each with its own KV cache) → head.
 * Implements {@link Model}; the built-in architectures and third-party plugins build one from their weights.
 */
export class TransformerModel implements Model {
  readonly modelType: string;
  readonly numLayers: number;
  readonly vocabSize: number;
  readonly maxPositionEmbeddings: number;
  readonly weightBytes: number;
  readonly attentionLayers: readonly AttentionLayer[];
  readonly cacheShape: { readonly nKvHeads: number; readonly headDim: number };
  readonly slidingWindow: number;
  /** Most rows one pass through the layers computes ({@link TransformerParts.forwardRows}). */
  readonly forwardRows: number;
  private readonly h: ScratchBuffer;

  constructor(
    readonly scratch: Scratch,
    readonly parts: TransformerParts,
  ) {
    const { embedding, layers, head } = parts;
    if (layers.length === 0) throw new RangeError('TransformerModel: no layers');
    this.modelType = parts.modelType;
    this.numLayers = layers.length;
    this.vocabSize = head.vocab;
    this.maxPositionEmbeddings = parts.maxPositionEmbeddings;
    this.weightBytes = parts.weightBytes;
    const fr = parts.forwardRows ?? DEFAULT_FORWARD_ROWS;
    if (!Number.isSafeInteger(fr) || fr < 1)
      throw new RangeError(`TransformerModel: forwardRows must be an integer >= 1, got ${fr}`);
    this.forwardRows = fr;
    this.attentionLayers = layers.map((l) => l.blocks.attention.layer);
    // layers may differ in cache shape: every layer has its own cache (`makeCaches`), and prompt-cache files describe
    // each layer's; `cacheShape` is layer 0's
    const first = this.attentionLayers[0]!;
    this.cacheShape = { nKvHeads: first.nKvHeads, headDim: first.headDim };
    // caches must keep every position unless every layer has a window
    const windows = this.attentionLayers.map((a) => a.window);
    this.slidingWindow = windows.every((w) => w > 0) ? Math.max(...windows) : 0;
    this.h = residualBuffers(scratch, embedding.dim).h;
    for (const l of layers)
      if (l.hidden !== embedding.dim)
        throw new RangeError(
          `TransformerModel: a layer has width ${l.hidden}, the embedding ${embedding.dim}`,
        );
  }

  /**
   * Fresh caches for every layer, as each needs them: a ring cache of the window on sliding-window layers, the kind
   * `opts` asks for on global ones (`makeLayerCaches` of `@mnemo/kv-cache` over `attentionLayers`).
   */
  makeCaches(opts: CacheKindOptions = {}): KVCache[] {
    return makeLayerCaches(this.attentionLayers, { ...opts, backend: this.scratch.backend });
  }

  forward(tokens: Int32Array, caches: readonly KVCache[], opts?: ForwardOptions): Tensor {
    const rows = tokens.length;
    if (rows === 0) throw new RangeError('forward: no tokens');
    if (caches.length !== this.numLayers) {
      throw new RangeError(`forward: got ${caches.length} caches for a model with ${this.numLayers} layers`);
    }
    const allLogits = opts?.allLogits === true;
    if (rows > this.forwardRows && !allLogits) {
      let logits: Tensor | undefined;
      for (let r = 0; r < rows; r += this.forwardRows)
        logits = this.forward(tokens.subarray(r, Math.min(rows, r + this.forwardRows)), caches);
      return logits!;
    }
    const { embedding, layers, head } = this.parts;
    const frame = this.scratch.frame(rows);
    const startPos = caches[0]!.offset;
    embedding.forward(frame, frame.get(this.h), tokens);
    for (let l = 0; l < layers.length; l++) {
      const cache = caches[l]!;
      if (cache.offset !== startPos) {
        throw new RangeError(
          `forward: cache of layer ${l} holds ${cache.offset} tokens, layer 0 holds ${startPos}`,
        );
      }
      layers[l]!.forward(frame, cache, startPos);
    }
    return head.forward(frame, allLogits);
  }

  /** Releases the scratch buffers (they are allocated again by the next forward). */
  freeScratch(): void {
    this.scratch.free();
  }

  /** Releases the scratch buffers and every weight (shared ones, such as a tied head, once). */
  free(): void {
    this.freeScratch();
    const seen = new Set<Weight>();
    const { embedding, layers, head } = this.parts;
    for (const t of [...embedding.tensors(), ...head.tensors(), ...layers.flatMap((l) => l.tensors())]) {
      if (seen.has(t)) continue;
      seen.add(t);
      this.scratch.backend.free(t);
    }
  }
}
