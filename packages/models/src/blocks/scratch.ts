import type { Backend, Tensor } from '@mnemo/tensor';

/** A named f32 scratch buffer of `width` floats per row, shared by every block that declares the same name. */
export interface ScratchBuffer {
  readonly name: string;
  readonly width: number;
  /** Most rows it holds: a step of more rows gets views of its first `maxRows` rows (Infinity = every row). */
  readonly maxRows: number;
  /** Position in its {@link Scratch} (frames index their views by it). */
  readonly index: number;
}

interface BufferState {
  readonly spec: ScratchBuffer;
  tensor: Tensor | null;
}

/** Most frames (row counts) kept at once; older ones are dropped and made again when needed. */
const MAX_FRAMES = 32;

/**
 * The scratch/view manager of a model: blocks declare the buffers they need ({@link Scratch.buffer}), and each forward
 * step asks for the {@link ScratchFrame} of its row count, which hands out `[rows, width]` views of those buffers. Views
 * are made once per row count and reused, so a decode step allocates nothing. A buffer is allocated the first time a
 * frame hands it out, for the largest row count seen so far; a larger step frees every buffer and drops every frame
 * (their views would point into freed memory), and buffers are allocated again as they are used.
 */
export class Scratch {
  private readonly buffers: BufferState[] = [];
  private readonly byName = new Map<string, BufferState>();
  private readonly frames = new Map<number, ScratchFrame>();
  /** Rows every buffer is (or will be) allocated for. */
  private capacity = 0;

  constructor(readonly backend: Backend) {}

  /**
   * Declares (or finds) the buffer `name`: `width` floats per row, at most `maxRows` rows. Declaring a name again with
   * the same width and `maxRows` returns the same buffer (blocks with equal shapes share scratch); with other sizes it
   * throws.
   */
  buffer(name: string, width: number, opts: { maxRows?: number } = {}): ScratchBuffer {
    const maxRows = opts.maxRows ?? Number.POSITIVE_INFINITY;
    if (!Number.isSafeInteger(width) || width < 0)
      throw new RangeError(`Scratch: buffer "${name}" needs a width >= 0, got ${width}`);
    if (maxRows !== Number.POSITIVE_INFINITY && (!Number.isSafeInteger(maxRows) || maxRows < 1))
      throw new RangeError(`Scratch: buffer "${name}" needs maxRows >= 1, got ${maxRows}`);
    const found = this.byName.get(name);
    if (found) {
      if (found.spec.width !== width || found.spec.maxRows !== maxRows)
        throw new RangeError(
          `Scratch: buffer "${name}" is declared as [${found.spec.maxRows}, ${found.spec.width}], not [${maxRows}, ${width}]`,
        );
      return found.spec;
    }
    const state: BufferState = { spec: { name, width, maxRows, index: this.buffers.length }, tensor: null };
    this.buffers.push(state);
    this.byName.set(name, state);
    return state.spec;
  }

  /** The frame for steps of `rows` rows (made on first use, then reused). */
  frame(rows: number): ScratchFrame {
    const hit = this.frames.get(rows);
    if (hit) return hit;
    if (!Number.isSafeInteger(rows) || rows < 1) throw new RangeError(`Scratch: bad row count ${rows}`);
    if (rows > this.capacity) {
      this.free();
      this.capacity = rows;
    }
    if (this.frames.size >= MAX_FRAMES) this.frames.clear();
    const f = new ScratchFrame(this, rows);
    this.frames.set(rows, f);
    return f;
  }

  /** Bytes of backend memory the allocated buffers hold. */
  bytes(): number {
    let n = 0;
    for (const b of this.buffers) if (b.tensor) n += b.tensor.byteLength;
    return n;
  }

  /** Frees every buffer and drops every frame (declarations stay; buffers are allocated again when used). */
  free(): void {
    for (const b of this.buffers) {
      if (b.tensor) this.backend.free(b.tensor);
      b.tensor = null;
    }
    this.frames.clear();
    this.capacity = 0;
  }

  /** @internal The backing tensor of `buf`, allocated on first use. */
  storage(buf: ScratchBuffer): Tensor {
    const b = this.buffers[buf.index];
    if (b === undefined || b.spec !== buf)
      throw new TypeError(`Scratch: "${buf.name}" is not a buffer of this scratch`);
    if (b.tensor === null) {
      const rows = Math.min(this.capacity, buf.maxRows);
      b.tensor = this.backend.alloc('f32', [rows, buf.width]);
    }
    return b.tensor;
  }
}

/**
 * The views of one row count. `get` returns the `[rows, width]` view of a buffer (made once); `rows` views a range of
 * rows; `cached` keeps any per-row-count state of a block (its views, host arrays) for the frame's lifetime.
 */
export class ScratchFrame {
  private readonly views: (Tensor | undefined)[] = [];
  private readonly state = new Map<object, unknown>();

  constructor(
    readonly scratch: Scratch,
    readonly rows: number,
  ) {}

  /** The `[min(rows, maxRows), width]` view of `buf`. */
  get(buf: ScratchBuffer): Tensor {
    const v = this.views[buf.index];
    if (v !== undefined) return v;
    const made = this.rowsOf(buf, 0, Math.min(this.rows, buf.maxRows));
    this.views[buf.index] = made;
    return made;
  }

  /** A new `[n, width]` view of rows `start .. start + n` of `buf` (make views in `cached`, not per step). */
  rowsOf(buf: ScratchBuffer, start: number, n: number): Tensor {
    return this.scratch.backend.view(this.scratch.storage(buf), [n, buf.width], start * buf.width);
  }

  /** A new view of rows `start .. start + n` of `t` (a `[rows, ...]` tensor), e.g. a chunk of another view. */
  slice(t: Tensor, start: number, n: number): Tensor {
    const w = t.size / (t.shape[0] || 1);
    return this.scratch.backend.view(t, [n, ...t.shape.slice(1)], start * w);
  }

  /**
   * Per-frame state of `owner`: `make(owner, frame)` on the first call, the same value afterwards. Pass a function
   * that does not capture (a module-level one or a method reference) so that hot paths allocate nothing.
   */
  cached<K extends object, T>(owner: K, make: (owner: K, frame: ScratchFrame) => T): T {
    const hit = this.state.get(owner);
    if (hit !== undefined) return hit as T;
    const v = make(owner, this);
    this.state.set(owner, v);
    return v;
  }
}

/** The residual stream's buffers, shared by the embedding, every layer and the head. */
export interface ResidualBuffers {
  /** The residual stream `h`. */
  readonly h: ScratchBuffer;
  /** Normed inputs of the blocks. */
  readonly x: ScratchBuffer;
  /** Outputs of the blocks, before they are added to `h`. */
  readonly o: ScratchBuffer;
}

/** Declares (or finds) the `[rows, hidden]` residual buffers of `scratch`. */
export function residualBuffers(scratch: Scratch, hidden: number): ResidualBuffers {
  return {
    h: scratch.buffer(`residual.h:${hidden}`, hidden),
    x: scratch.buffer(`residual.x:${hidden}`, hidden),
    o: scratch.buffer(`residual.o:${hidden}`, hidden),
  };
}
