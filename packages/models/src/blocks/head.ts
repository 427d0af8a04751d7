import type { Backend, Tensor, Weight } from '@mnemo/tensor';
import type { RmsNorm } from './norm';
import { residualBuffers, type Scratch, type ScratchBuffer, type ScratchFrame } from './scratch';

export interface LmHeadParts {
  /** Final norm (absent: the hidden states go to the head as they are). */
  readonly norm?: RmsNorm | undefined;
  /** `[vocab, hidden]`, the embedding table when tied. */
  readonly weight: Weight;
  /** Final-logit soft-cap (`final_logit_softcapping`): logits → `c · tanh(logits / c)`; 0 or absent = none. */
  readonly softcap?: number | undefined;
}

interface Views {
  readonly lastH: Tensor;
  readonly lastX: Tensor;
  readonly logits: Tensor;
  all: Tensor | null;
}

function makeViews(head: LmHead, frame: ScratchFrame): Views {
  const r = frame.rows - 1;
  return {
    lastH: frame.slice(frame.get(head.bufs.h), r, 1),
    lastX: frame.rowsOf(head.bufs.x, r, 1),
    logits: frame.get(head.bufs.logits),
    all: null,
  };
}

/**
 * Final norm, head matmul and optional logit soft-cap. Only the last row's logits are computed unless every row's is
 * asked for, so the `[rows, vocab]` buffer (hundreds of MB for a 128k vocabulary and a 512-token prefill step) exists
 * only for callers that want it.
 */
export class LmHead {
  readonly backend: Backend;
  readonly vocab: number;
  /** @internal */
  readonly bufs: { h: ScratchBuffer; x: ScratchBuffer; logits: ScratchBuffer; all: ScratchBuffer };

  constructor(
    scratch: Scratch,
    readonly parts: LmHeadParts,
  ) {
    this.backend = scratch.backend;
    this.vocab = parts.weight.shape[0]!;
    const { h, x } = residualBuffers(scratch, parts.weight.shape[1]!);
    if (parts.softcap !== undefined && !(parts.softcap >= 0 && Number.isFinite(parts.softcap)))
      throw new RangeError(`LmHead: softcap must be a finite number >= 0, got ${parts.softcap}`);
    this.bufs = {
      h,
      x,
      logits: scratch.buffer(`logits:${this.vocab}`, this.vocab, { maxRows: 1 }),
      all: scratch.buffer(`logits.all:${this.vocab}`, this.vocab),
    };
  }

  /** Logits of the last row (`[1, vocab]`) or of every row (`[rows, vocab]`); the tensor is reused by the next call. */
  forward(frame: ScratchFrame, allLogits: boolean): Tensor {
    const be = this.backend;
    const p = this.parts;
    const v = frame.cached(this, makeViews);
    let src: Tensor;
    let dst: Tensor;
    if (allLogits) {
      const h = frame.get(this.bufs.h);
      src = p.norm ? frame.get(this.bufs.x) : h;
      if (p.norm) p.norm.apply(src, h);
      v.all ??= frame.get(this.bufs.all);
      dst = v.all;
    } else {
      src = p.norm ? v.lastX : v.lastH;
      if (p.norm) p.norm.apply(v.lastX, v.lastH);
      dst = v.logits;
    }
    be.matmul(dst, src, p.weight);
    if (p.softcap) be.softcap(dst, p.softcap);
    return dst;
  }

  tensors(): Weight[] {
    const { norm, weight } = this.parts;
    return norm ? [weight, norm.weight] : [weight];
  }
}
