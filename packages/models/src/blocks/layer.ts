import type { KVCache } from '@mnemo/kv-cache';
import type { Backend, Tensor, Weight } from '@mnemo/tensor';
import type { AttentionBlock } from './attention';
import type { MlpBlock } from './mlp';
import type { RmsNorm } from './norm';
import { type ResidualBuffers, residualBuffers, type Scratch, type ScratchFrame } from './scratch';

/**
 * The blocks of one residual layer. Norms are optional, so every common placement fits:
 * - pre-norm (Llama, Qwen, Mistral, Gemma 1): `preAttentionNorm` (HF `input_layernorm`) and `preMlpNorm` (HF
 *   `post_attention_layernorm`, despite its name);
 * - pre- and post-norm (Gemma 2/3): all four (`input_layernorm`, `post_attention_layernorm`,
 *   `pre_feedforward_layernorm`, `post_feedforward_layernorm`);
 * - post-norm (OLMo 2): `postAttentionNorm` and `postMlpNorm` only.
 */
export interface LayerBlocks {
  readonly preAttentionNorm?: RmsNorm | undefined;
  readonly attention: AttentionBlock;
  readonly postAttentionNorm?: RmsNorm | undefined;
  readonly preMlpNorm?: RmsNorm | undefined;
  readonly mlp: MlpBlock;
  readonly postMlpNorm?: RmsNorm | undefined;
}

interface Views {
  readonly h: Tensor;
  readonly x: Tensor;
  readonly o: Tensor;
}

function makeViews(l: TransformerLayer, frame: ScratchFrame): Views {
  return { h: frame.get(l.bufs.h), x: frame.get(l.bufs.x), o: frame.get(l.bufs.o) };
}

/**
 * One residual layer:
 * `h += postAttentionNorm(attention(preAttentionNorm(h)))`, then `h += postMlpNorm(mlp(preMlpNorm(h)))`, each norm
 * applied only when present. `h` is the residual stream's buffer; `x` (normed input) and `o` (block output) are
 * `[rows, hidden]` scratch buffers shared by every layer ({@link residualBuffers}).
 */
export class TransformerLayer {
  readonly backend: Backend;
  readonly hidden: number;
  /** @internal */
  readonly bufs: ResidualBuffers;

  constructor(
    scratch: Scratch,
    readonly blocks: LayerBlocks,
  ) {
    this.backend = scratch.backend;
    this.hidden = blocks.attention.weights.wo.shape[0]!;
    this.bufs = residualBuffers(scratch, this.hidden);
  }

  forward(frame: ScratchFrame, cache: KVCache, startPos: number): void {
    const be = this.backend;
    const b = this.blocks;
    const s = frame.cached(this, makeViews);
    let input = s.h;
    if (b.preAttentionNorm) {
      b.preAttentionNorm.apply(s.x, s.h);
      input = s.x;
    }
    b.attention.forward(frame, s.o, input, cache, startPos);
    if (b.postAttentionNorm) b.postAttentionNorm.apply(s.o, s.o);
    be.add(s.h, s.h, s.o);
    input = s.h;
    if (b.preMlpNorm) {
      b.preMlpNorm.apply(s.x, s.h);
      input = s.x;
    }
    b.mlp.forward(frame, s.o, input);
    if (b.postMlpNorm) b.postMlpNorm.apply(s.o, s.o);
    be.add(s.h, s.h, s.o);
  }

  tensors(): Weight[] {
    const b = this.blocks;
    const norms = [b.preAttentionNorm, b.postAttentionNorm, b.preMlpNorm, b.postMlpNorm];
    return [
      ...b.attention.tensors(),
      ...b.mlp.tensors(),
      ...norms.filter((n): n is RmsNorm => n !== undefined).map((n) => n.weight),
    ];
  }
}
