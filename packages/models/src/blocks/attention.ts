import type { KVCache } from '@mnemo/kv-cache';
import type { AttentionOptions, Backend, RopeOptions, Tensor, Weight } from '@mnemo/tensor';
import type { AttentionLayerInfo } from '../model';
import type { RmsNorm } from './norm';
import type { RopeTable } from './rope';
import type { Scratch, ScratchBuffer, ScratchFrame } from './scratch';

/** What one attention layer needs from its KV cache (`Model.attentionLayers`). */
export type AttentionLayer = AttentionLayerInfo;

/** Weights of an attention block. Optional parts are used when present. */
export interface AttentionWeights {
  readonly wq: Weight; // [nHeads * headDim, hidden]
  readonly wk: Weight; // [nKvHeads * headDim, hidden]
  readonly wv: Weight; // [nKvHeads * headDim, hidden]
  readonly wo: Weight; // [hidden, nHeads * headDim]
  readonly bq?: Tensor | undefined;
  readonly bk?: Tensor | undefined;
  readonly bv?: Tensor | undefined;
  readonly bo?: Tensor | undefined;
  /**
   * RMSNorm of q (and of k) before RoPE: per head when its weight has `headDim` elements (qwen3, gemma3), over the
   * whole projection when it has `nHeads · headDim` (`nKvHeads · headDim` for k; olmo2).
   */
  readonly qNorm?: RmsNorm | undefined;
  readonly kNorm?: RmsNorm | undefined;
}

export interface AttentionConfig {
  readonly nHeads: number;
  readonly nKvHeads: number;
  readonly headDim: number;
  /** Multiplier of q·k: `headDim^-0.5` usually, `query_pre_attn_scalar^-0.5` for Gemma 2/3. */
  readonly scale: number;
  /** Sliding window (keys a query sees, itself included); 0 or absent = global. */
  readonly window?: number;
  /** Soft-cap of the scaled scores (`attn_logit_softcapping`); 0 or absent = none. */
  readonly softcap?: number;
  /** The RoPE table of this layer (shared between layers with the same base and scaling). */
  readonly rope: RopeTable;
}

interface Views {
  readonly q: Tensor;
  readonly k: Tensor;
  readonly v: Tensor;
  readonly att: Tensor;
  /** q and k as the q/k norms see them: per head (`[rows · heads, headDim]`) or whole rows. */
  readonly qNormed: Tensor;
  readonly kNormed: Tensor;
}

function makeViews(a: AttentionBlock, frame: ScratchFrame): Views {
  const be = a.backend;
  const q = frame.get(a.bufs.q);
  const k = frame.get(a.bufs.k);
  const c = a.config;
  const perHead = (t: Tensor, heads: number, norm: RmsNorm | undefined) =>
    norm && norm.dim === c.headDim ? be.view(t, [frame.rows * heads, c.headDim]) : t;
  return {
    q,
    k,
    v: frame.get(a.bufs.v),
    att: frame.get(a.bufs.att),
    qNormed: perHead(q, c.nHeads, a.weights.qNorm),
    kNormed: perHead(k, c.nKvHeads, a.weights.kNorm),
  };
}

/**
 * Self-attention of one layer: q/k/v projections (optional biases), optional q/k RMSNorm, RoPE from the layer's table,
 * append to the layer's KV cache (written into its storage by the backend), causal (optionally windowed and
 * soft-capped) grouped-query attention over the cache as it is stored (f32, f16 or quantized rows, a ring for a
 * windowed cache: the view's `window`/`keep` narrow the layer's own window to what the cache holds), output
 * projection (optional bias). Scratch: `[rows, nHeads · headDim]` q and attention output, `[rows, nKvHeads · headDim]`
 * k and v, shared with every other attention block of the same widths.
 */
export class AttentionBlock {
  readonly backend: Backend;
  readonly layer: AttentionLayer;
  /** @internal */
  readonly bufs: { q: ScratchBuffer; k: ScratchBuffer; v: ScratchBuffer; att: ScratchBuffer };
  private readonly qRope: RopeOptions;
  private readonly kRope: RopeOptions;
  private readonly opts: { -readonly [K in keyof AttentionOptions]-?: AttentionOptions[K] };

  constructor(
    scratch: Scratch,
    readonly weights: AttentionWeights,
    readonly config: AttentionConfig,
  ) {
    const { nHeads, nKvHeads, headDim } = config;
    this.backend = scratch.backend;
    const qw = nHeads * headDim;
    const kw = nKvHeads * headDim;
    for (const [name, norm, heads] of [
      ['qNorm', weights.qNorm, nHeads],
      ['kNorm', weights.kNorm, nKvHeads],
    ] as const)
      if (norm && norm.dim !== headDim && norm.dim !== heads * headDim)
        throw new RangeError(
          `AttentionBlock: ${name} has ${norm.dim} weights; expected ${headDim} (per head) or ${heads * headDim}`,
        );
    this.bufs = {
      q: scratch.buffer(`attention.q:${qw}`, qw),
      k: scratch.buffer(`attention.k:${kw}`, kw),
      v: scratch.buffer(`attention.v:${kw}`, kw),
      att: scratch.buffer(`attention.out:${qw}`, qw),
    };
    this.qRope = config.rope.options(nHeads, headDim);
    this.kRope = config.rope.options(nKvHeads, headDim);
    const window = config.window ?? 0;
    this.layer = { window, nKvHeads, headDim };
    this.opts = {
      startPos: 0,
      nHeads,
      nKvHeads,
      headDim,
      scale: config.scale,
      window,
      softcap: config.softcap ?? 0,
      keep: 0,
    };
  }

  /**
   * `out = attention(x)` for rows at positions `startPos ..`: `x` and `out` are `[frame.rows, hidden]` (distinct
   * tensors); the rows' keys and values are appended to `cache` first.
   */
  forward(frame: ScratchFrame, out: Tensor, x: Tensor, cache: KVCache, startPos: number): void {
    const be = this.backend;
    const w = this.weights;
    const s = frame.cached(this, makeViews);
    be.matmul(s.q, x, w.wq, w.bq);
    be.matmul(s.k, x, w.wk, w.bk);
    be.matmul(s.v, x, w.wv, w.bv);
    if (w.qNorm) w.qNorm.apply(s.qNormed, s.qNormed);
    if (w.kNorm) w.kNorm.apply(s.kNormed, s.kNormed);
    const rope = this.config.rope;
    rope.apply(frame, startPos, s.q, this.qRope);
    rope.apply(frame, startPos, s.k, this.kRope);
    const kv = cache.updateAndFetch(s.k, s.v);
    this.opts.startPos = kv.startPos;
    // the layer's window, narrowed to what a ring cache holds; a ring's pinned positions stay visible
    const window = this.layer.window;
    this.opts.window = kv.window === 0 ? window : window === 0 ? kv.window : Math.min(window, kv.window);
    this.opts.keep = kv.keep;
    be.attention(s.att, s.q, kv.keys, kv.values, this.opts);
    be.matmul(out, s.att, w.wo, w.bo);
  }

  /** The weights this block reads (for freeing). */
  tensors(): Weight[] {
    const w = this.weights;
    const all: (Weight | undefined)[] = [
      w.wq,
      w.wk,
      w.wv,
      w.wo,
      w.bq,
      w.bk,
      w.bv,
      w.bo,
      w.qNorm?.weight,
      w.kNorm?.weight,
    ];
    return all.filter((t): t is Weight => t !== undefined);
  }
}
