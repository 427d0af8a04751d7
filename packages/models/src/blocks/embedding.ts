import type { Backend, Tensor, Weight } from '@mnemo/tensor';
import type { ScratchFrame } from './scratch';

function makeIds(_: EmbeddingBlock, frame: ScratchFrame): Int32Array {
  return new Int32Array(frame.rows);
}

/**
 * Token embedding: `out[r] = table[tokens[r]]`, then multiplied by `scale` when one is given (Gemma: `sqrt(hidden)`
 * rounded to the checkpoint's dtype; the product is the exactly rounded f32 one).
 */
export class EmbeddingBlock {
  readonly scale: number | undefined;

  constructor(
    private readonly backend: Backend,
    readonly table: Weight,
    opts: { scale?: number } = {},
  ) {
    if (opts.scale !== undefined && !Number.isFinite(opts.scale))
      throw new RangeError(`EmbeddingBlock: scale must be a finite number, got ${opts.scale}`);
    this.scale = opts.scale;
  }

  /** Rows of the table's second dimension. */
  get dim(): number {
    return this.table.shape[1]!;
  }

  forward(frame: ScratchFrame, out: Tensor, tokens: Int32Array): void {
    const ids = frame.cached(this, makeIds);
    ids.set(tokens);
    this.backend.embedding(out, this.table, ids);
    if (this.scale !== undefined) this.backend.scale(out, out, this.scale);
  }

  tensors(): Weight[] {
    return [this.table];
  }
}
