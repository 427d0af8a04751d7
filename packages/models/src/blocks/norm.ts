import type { Backend, Tensor } from '@mnemo/tensor';
import type { Weights } from '../weights';

/**
 * RMSNorm: `out = x / sqrt(mean(x²) + eps) · weight`, row by row over the last dimension of `x` (a `[rows, dim]`
 * tensor, or `[rows · heads, headDim]` for a per-head norm). Zero-centred weights (Gemma's `1 + w`) are folded into
 * `weight` at load time by {@link loadRmsNorm}.
 */
export class RmsNorm {
  readonly dim: number;

  constructor(
    private readonly backend: Backend,
    readonly weight: Tensor,
    readonly eps: number,
  ) {
    if (weight.shape.length !== 1) throw new RangeError(`RmsNorm: weight must be 1-D, got ${weight}`);
    this.dim = weight.shape[0]!;
  }

  /** `out = rmsnorm(x)`; `out` may be `x`. */
  apply(out: Tensor, x: Tensor): void {
    this.backend.rmsnorm(out, x, this.weight, this.eps);
  }
}

/**
 * Loads the RMSNorm weight `name` (`[dim]`, f32/f16/bf16) as f32. With `unitOffset` the stored weight is zero-centred
 * (Gemma: the scale is `1 + w`) and `1 + w` is computed here, once, in f32 — what Hugging Face computes in its forward.
 */
export async function loadRmsNorm(
  weights: Weights,
  name: string,
  dim: number,
  eps: number,
  opts: { unitOffset?: boolean } = {},
): Promise<RmsNorm> {
  if (!opts.unitOffset) return new RmsNorm(weights.backend, await weights.f32(name, [dim]), eps);
  const w = await weights.hostF32(name, [dim]);
  for (let i = 0; i < w.length; i++) w[i] = 1 + w[i]!;
  return new RmsNorm(weights.backend, weights.backend.upload('f32', [dim], w), eps);
}
