import type { RopeLayout, RopeOptions, Tensor } from '@mnemo/tensor';
import { fillRopeTables } from '../rope';
import type { Scratch, ScratchBuffer, ScratchFrame } from './scratch';

let nextId = 0;

interface Host {
  readonly cos: Float32Array;
  readonly sin: Float32Array;
}

function makeHost(rope: RopeTable, frame: ScratchFrame): Host {
  const n = frame.rows * rope.half;
  return { cos: new Float32Array(n), sin: new Float32Array(n) };
}

/**
 * A RoPE table: inverse frequencies (with any scaling already applied, see `ropeInvFreq`) and a layout. Layers that
 * share a table share its cos/sin rows, filled once per step; layers with other bases (Gemma 3's local and global
 * layers) use tables of their own.
 */
export class RopeTable {
  /** Rotated dimensions per head: `2 · invFreq.length`. */
  readonly rotDim: number;
  readonly half: number;
  private readonly cos: ScratchBuffer;
  private readonly sin: ScratchBuffer;
  /** The frame and start position the cos/sin buffers currently hold. */
  private preparedFrame: ScratchFrame | null = null;
  private preparedPos = -1;

  constructor(
    readonly scratch: Scratch,
    readonly invFreq: Float64Array,
    readonly layout: RopeLayout,
  ) {
    this.half = invFreq.length;
    this.rotDim = 2 * this.half;
    const id = nextId++;
    this.cos = scratch.buffer(`rope${id}.cos`, this.half);
    this.sin = scratch.buffer(`rope${id}.sin`, this.half);
  }

  /** Options for `backend.rope` of a `[rows, nHeads · headDim]` tensor with this table's layout. */
  options(nHeads: number, headDim: number): RopeOptions {
    if (this.rotDim > headDim)
      throw new RangeError(`RopeTable: rotDim ${this.rotDim} exceeds headDim ${headDim}`);
    return { nHeads, headDim, layout: this.layout };
  }

  /** Rotates `x` (`[frame.rows, nHeads · headDim]`) for positions `startPos ..`, in place. */
  apply(frame: ScratchFrame, startPos: number, x: Tensor, opts: RopeOptions): void {
    if (this.preparedFrame !== frame || this.preparedPos !== startPos) {
      const host = frame.cached(this, makeHost);
      fillRopeTables(this.invFreq, startPos, frame.rows, host.cos, host.sin);
      const be = this.scratch.backend;
      be.write(frame.get(this.cos), host.cos);
      be.write(frame.get(this.sin), host.sin);
      this.preparedFrame = frame;
      this.preparedPos = startPos;
    }
    this.scratch.backend.rope(x, frame.get(this.cos), frame.get(this.sin), opts);
  }
}
