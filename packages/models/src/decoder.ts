import type { Backend, RopeLayout, Tensor, Weight } from '@mnemo/tensor';
import { AttentionBlock } from './blocks/attention';
import { EmbeddingBlock } from './blocks/embedding';
import { LmHead } from './blocks/head';
import { TransformerLayer } from './blocks/layer';
import { MLP_CHUNK_BYTES, MlpBlock } from './blocks/mlp';
import { TransformerModel } from './blocks/model';
import { RmsNorm } from './blocks/norm';
import { RopeTable } from './blocks/rope';
import { Scratch } from './blocks/scratch';

/** Weights of one pre-norm decoder layer. Optional parts are used when present. */
export interface DecoderLayer {
  readonly inputNorm: Tensor; // [hidden]
  readonly wq: Weight; // [nHeads * headDim, hidden]
  readonly wk: Weight; // [nKvHeads * headDim, hidden]
  readonly wv: Weight; // [nKvHeads * headDim, hidden]
  readonly wo: Weight; // [hidden, nHeads * headDim]
  readonly bq?: Tensor | undefined; // [nHeads * headDim]
  readonly bk?: Tensor | undefined; // [nKvHeads * headDim]
  readonly bv?: Tensor | undefined; // [nKvHeads * headDim]
  readonly bo?: Tensor | undefined; // [hidden]
  readonly qNorm?: Tensor | undefined; // [headDim] (qwen3)
  readonly kNorm?: Tensor | undefined; // [headDim] (qwen3)
  readonly postNorm: Tensor; // [hidden]
  readonly gate: Weight; // [ffn, hidden]
  readonly up: Weight; // [ffn, hidden]
  readonly down: Weight; // [hidden, ffn]
}

export interface DecoderWeights {
  readonly embed: Weight; // [vocab, hidden]
  readonly layers: readonly DecoderLayer[];
  readonly norm: Tensor; // [hidden]
  readonly head: Weight; // [vocab, hidden] (the embedding when tied)
}

export interface DecoderDims {
  readonly modelType: string;
  readonly hidden: number;
  readonly nHeads: number;
  readonly nKvHeads: number;
  readonly headDim: number;
  readonly ffn: number;
  readonly vocab: number;
  readonly eps: number;
  /** Sliding attention window, 0 for none. */
  readonly window: number;
  readonly ropeLayout: RopeLayout;
  /** Inverse frequencies for the rotated dimensions (length rotDim / 2). */
  readonly invFreq: Float64Array;
  /** Multiplier of q·k, usually 1/sqrt(headDim). */
  readonly attnScale: number;
  readonly maxPositionEmbeddings: number;
}

export { MLP_CHUNK_BYTES };

export interface DecoderOptions {
  /**
   * Rows the MLP computes per matmul call while prefilling (default: as many as fit {@link MLP_CHUNK_BYTES} in one
   * `[rows, ffn]` f32 buffer, a multiple of 64 and at least 64). The MLP is row-wise and every kernel batch-invariant,
   * so results are bitwise the same for any value; bounding it bounds the `[rows, ffn]` scratch (and the backend's own
   * staging of those rows), which would otherwise grow with the prefill step size.
   */
  readonly mlpChunkRows?: number;
  /** Most rows one pass through the layers computes ({@link TransformerParts.forwardRows}). */
  readonly forwardRows?: number;
}

/**
 * The Llama-family pre-norm decoder shared by the built-in Llama, Mistral, Qwen 2/3 and Phi-3 architectures, assembled
 * from the exported blocks: embed → N × (RMSNorm → attention with RoPE over the KV cache → residual → RMSNorm → SwiGLU
 * MLP → residual) → RMSNorm → head.
 */
export class Decoder extends TransformerModel {
  /** Rows the MLP computes per call (see {@link DecoderOptions.mlpChunkRows}). */
  readonly mlpChunkRows: number;

  constructor(
    backend: Backend,
    readonly dims: DecoderDims,
    readonly w: DecoderWeights,
    weightBytes: number,
    opts: DecoderOptions = {},
  ) {
    const scratch = new Scratch(backend);
    const d = dims;
    const rope = new RopeTable(scratch, d.invFreq, d.ropeLayout);
    let chunkRows = 0;
    const layers = w.layers.map((L) => {
      const mlp = new MlpBlock(
        scratch,
        { gate: L.gate, up: L.up, down: L.down },
        { activation: 'silu', ...(opts.mlpChunkRows === undefined ? {} : { chunkRows: opts.mlpChunkRows }) },
      );
      chunkRows = mlp.chunkRows;
      const attention = new AttentionBlock(
        scratch,
        {
          wq: L.wq,
          wk: L.wk,
          wv: L.wv,
          wo: L.wo,
          bq: L.bq,
          bk: L.bk,
          bv: L.bv,
          bo: L.bo,
          qNorm: L.qNorm && new RmsNorm(backend, L.qNorm, d.eps),
          kNorm: L.kNorm && new RmsNorm(backend, L.kNorm, d.eps),
        },
        {
          nHeads: d.nHeads,
          nKvHeads: d.nKvHeads,
          headDim: d.headDim,
          scale: d.attnScale,
          window: d.window,
          rope,
        },
      );
      return new TransformerLayer(scratch, {
        preAttentionNorm: new RmsNorm(backend, L.inputNorm, d.eps),
        attention,
        preMlpNorm: new RmsNorm(backend, L.postNorm, d.eps),
        mlp,
      });
    });
    super(scratch, {
      modelType: d.modelType,
      maxPositionEmbeddings: d.maxPositionEmbeddings,
      embedding: new EmbeddingBlock(backend, w.embed),
      layers,
      head: new LmHead(scratch, { norm: new RmsNorm(backend, w.norm, d.eps), weight: w.head }),
      weightBytes,
      ...(opts.forwardRows === undefined ? {} : { forwardRows: opts.forwardRows }),
    });
    this.mlpChunkRows = chunkRows;
  }
}
