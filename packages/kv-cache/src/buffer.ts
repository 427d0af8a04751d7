import type { Backend, DType, Tensor } from '@mnemo/tensor';
import type { CacheView } from './contract';

/** Capacity grows in steps of this many rows (as in mlx-lm). */
export const CACHE_STEP = 256;

export function roundUpToStep(rows: number): number {
  return Math.ceil(rows / CACHE_STEP) * CACHE_STEP;
}

/**
 * A growable backend matrix `[capacity, width]`. Growth allocates a larger tensor, copies the rows still needed with
 * `copyRows` and frees the old one. Rows past what the owner tracks are garbage.
 */
export class RowBuffer {
  #tensor: Tensor | null = null;

  constructor(
    readonly backend: Backend,
    readonly dtype: DType,
    readonly width: number,
  ) {}

  get capacity(): number {
    return this.#tensor === null ? 0 : this.#tensor.shape[0]!;
  }

  /** The whole `[capacity, width]` tensor (allocated by an earlier `ensure`). */
  get tensor(): Tensor {
    if (this.#tensor === null) throw new Error('kv-cache: buffer used before allocation');
    return this.#tensor;
  }

  /** Makes room for `rows` rows (capacity `min(roundUp(rows), limit)`), keeping the first `keepRows`. */
  ensure(rows: number, keepRows: number, limit = Number.POSITIVE_INFINITY): void {
    if (rows <= this.capacity) return;
    const capacity = Math.max(rows, Math.min(roundUpToStep(rows), limit));
    const next = this.backend.alloc(this.dtype, [capacity, this.width]);
    const old = this.#tensor;
    if (old !== null) {
      if (keepRows > 0) this.backend.copyRows(next, 0, old, 0, keepRows);
      this.backend.free(old);
    }
    this.#tensor = next;
  }

  /** Copies `rows` rows of `src` starting at `srcRow` into this buffer at `row`. */
  copyFrom(row: number, src: Tensor, srcRow: number, rows: number): void {
    if (rows > 0) this.backend.copyRows(this.tensor, row, src, srcRow, rows);
  }

  /** Writes host data (`rows * width` elements) at `row`. */
  writeHost(row: number, rows: number, data: ArrayBufferView): void {
    if (rows === 0) return;
    this.backend.write(this.backend.view(this.tensor, [rows, this.width], row * this.width), data);
  }

  /** Reads rows `[row, row + rows)` as f32 (f32 buffers only). */
  readF32(row: number, rows: number, out?: Float32Array): Float32Array {
    if (rows === 0) return out ?? new Float32Array(0);
    return this.backend.read(this.backend.view(this.tensor, [rows, this.width], row * this.width), out);
  }

  /** Reads the raw bytes of rows `[row, row + rows)` (into `out` when given: exactly that many bytes long). */
  readBytes(row: number, rows: number, out?: Uint8Array): Uint8Array {
    if (rows === 0) return out ?? new Uint8Array(0);
    return this.backend.readBytes(this.backend.view(this.tensor, [rows, this.width], row * this.width), out);
  }

  free(): void {
    if (this.#tensor !== null) this.backend.free(this.#tensor);
    this.#tensor = null;
  }
}

/**
 * The one view object a cache returns from every `updateAndFetch`, refilled in place, so that decoding allocates
 * nothing per token. Callers use it before the next update (as models do: update, then attention).
 */
export class ViewSlot {
  readonly #view: { keys: Tensor | null; values: Tensor | null; startPos: number } = {
    keys: null,
    values: null,
    startPos: 0,
  };

  fill(keys: Tensor, values: Tensor, startPos: number): CacheView {
    const v = this.#view;
    v.keys = keys;
    v.values = values;
    v.startPos = startPos;
    return v as CacheView;
  }
}

/** Checks the arguments of `updateAndFetch`; returns the row count. Allocates nothing (it runs every token). */
export function checkUpdate(what: string, backend: Backend, width: number, k: Tensor, v: Tensor): number {
  checkRows(what, 'keys', backend, width, k);
  checkRows(what, 'values', backend, width, v);
  if (k.rows !== v.rows)
    throw new TypeError(`${what}.updateAndFetch: keys have ${k.rows} rows but values ${v.rows}`);
  if (k.rows === 0) throw new RangeError(`${what}.updateAndFetch: no rows to append`);
  return k.rows;
}

function checkRows(what: string, name: string, backend: Backend, width: number, t: Tensor): void {
  if (t.dtype !== 'f32') throw new TypeError(`${what}.updateAndFetch: ${name} must be f32, got ${t.dtype}`);
  if (t.backendName !== backend.name)
    throw new TypeError(
      `${what}.updateAndFetch: ${name} belong to backend '${t.backendName}', the cache to '${backend.name}'`,
    );
  if (t.shape.length !== 2 || t.shape[1] !== width)
    throw new TypeError(
      `${what}.updateAndFetch: ${name} must be [rows, ${width}], got [${t.shape.join(', ')}]`,
    );
}

export function checkTrimCount(what: string, n: number): void {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`${what}.trim: bad token count ${n}`);
}

export function checkShape(what: string, nKvHeads: number, headDim: number): number {
  if (!Number.isSafeInteger(nKvHeads) || nKvHeads < 1)
    throw new RangeError(`${what}: nKvHeads must be a positive integer, got ${nKvHeads}`);
  if (!Number.isSafeInteger(headDim) || headDim < 1)
    throw new RangeError(`${what}: headDim must be a positive integer, got ${headDim}`);
  return nKvHeads * headDim;
}
