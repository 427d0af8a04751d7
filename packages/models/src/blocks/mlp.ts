import type { Backend, Tensor, Weight } from '@mnemo/tensor';
import type { Scratch, ScratchBuffer, ScratchFrame } from './scratch';

/** Activation of a gated MLP: `silu` (SwiGLU: Llama, Qwen, Mistral, Phi-3) or `gelu_tanh` (GeGLU: Gemma). */
export type Activation = 'silu' | 'gelu_tanh';

/** Default bytes of one `[rows, ffn]` MLP scratch buffer during prefill (see {@link MlpOptions.chunkRows}). */
export const MLP_CHUNK_BYTES = 4 * 2 ** 20;

export interface MlpWeights {
  readonly gate: Weight; // [ffn, hidden]
  readonly up: Weight; // [ffn, hidden]
  readonly down: Weight; // [hidden, ffn]
}

export interface MlpOptions {
  readonly activation: Activation;
  /**
   * Rows computed per matmul call while prefilling (default: as many as fit {@link MLP_CHUNK_BYTES} in one
   * `[rows, ffn]` f32 buffer, a multiple of 64 and at least 64). The MLP is row-wise and every kernel batch-invariant,
   * so results are bitwise the same for any value; bounding it bounds the `[rows, ffn]` scratch.
   */
  readonly chunkRows?: number;
}

/** Default {@link MlpOptions.chunkRows} for an MLP of `ffn` intermediate features. */
export function defaultMlpChunkRows(ffn: number): number {
  return Math.max(64, Math.floor(MLP_CHUNK_BYTES / (4 * Math.max(1, ffn)) / 64) * 64);
}

/** One chunk of rows: input rows of x, gate/up scratch (gate also holds the activation), output rows of out. */
interface Chunk {
  readonly x: Tensor;
  readonly gate: Tensor;
  readonly up: Tensor;
  readonly out: Tensor;
}

interface Views {
  /** The x and out the chunks were made for (remade when a caller passes others). */
  x: Tensor | null;
  out: Tensor | null;
  chunks: Chunk[];
}

function makeViews(): Views {
  return { x: null, out: null, chunks: [] };
}

/**
 * Gated MLP: `out = down(act(gate(x)) · up(x))` with `act` = SiLU or GELU-tanh, computed `chunkRows` rows at a time.
 * Scratch: two `[chunkRows, ffn]` buffers, shared with every MLP block of the same width and chunking.
 */
export class MlpBlock {
  readonly backend: Backend;
  readonly ffn: number;
  readonly chunkRows: number;
  readonly activation: Activation;
  private readonly gateBuf: ScratchBuffer;
  private readonly upBuf: ScratchBuffer;

  constructor(
    scratch: Scratch,
    readonly weights: MlpWeights,
    opts: MlpOptions,
  ) {
    this.backend = scratch.backend;
    this.ffn = weights.gate.shape[0]!;
    if (opts.activation !== 'silu' && opts.activation !== 'gelu_tanh')
      throw new TypeError(
        `MlpBlock: activation must be 'silu' or 'gelu_tanh', got ${String(opts.activation)}`,
      );
    this.activation = opts.activation;
    const chunk = opts.chunkRows ?? defaultMlpChunkRows(this.ffn);
    if (!Number.isSafeInteger(chunk) || chunk < 1)
      throw new RangeError(`MlpBlock: chunkRows must be a positive integer, got ${chunk}`);
    this.chunkRows = chunk;
    this.gateBuf = scratch.buffer(`mlp.gate:${this.ffn}/${chunk}`, this.ffn, { maxRows: chunk });
    this.upBuf = scratch.buffer(`mlp.up:${this.ffn}/${chunk}`, this.ffn, { maxRows: chunk });
  }

  /** `out = mlp(x)`; `x` and `out` are distinct `[frame.rows, hidden]` tensors. */
  forward(frame: ScratchFrame, out: Tensor, x: Tensor): void {
    const be = this.backend;
    const w = this.weights;
    const v = frame.cached(this, makeViews);
    if (v.x !== x || v.out !== out) this.chunk(frame, v, x, out);
    const gelu = this.activation === 'gelu_tanh';
    for (let c = 0; c < v.chunks.length; c++) {
      const m = v.chunks[c]!;
      be.matmul(m.gate, m.x, w.gate);
      be.matmul(m.up, m.x, w.up);
      if (gelu) be.geluGlu(m.gate, m.gate, m.up);
      else be.swiglu(m.gate, m.gate, m.up);
      be.matmul(m.out, m.gate, w.down);
    }
  }

  private chunk(frame: ScratchFrame, v: Views, x: Tensor, out: Tensor): void {
    const rows = frame.rows;
    v.chunks = [];
    for (let r0 = 0; r0 < rows; r0 += this.chunkRows) {
      const n = Math.min(this.chunkRows, rows - r0);
      const whole = n === rows;
      v.chunks.push({
        x: whole ? x : frame.slice(x, r0, n),
        gate: frame.rowsOf(this.gateBuf, 0, n),
        up: frame.rowsOf(this.upBuf, 0, n),
        out: whole ? out : frame.slice(out, r0, n),
      });
    }
    v.x = x;
    v.out = out;
  }

  tensors(): Weight[] {
    return [this.weights.gate, this.weights.up, this.weights.down];
  }
}
