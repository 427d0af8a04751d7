import type { Backend, KvRows, Tensor } from '@mnemo/tensor';
import type { CacheView } from './contract';

/** Capacity grows in steps of this many rows (as in mlx-lm). */
export const CACHE_STEP = 256;

export function roundUpToStep(rows: number): number {
  return Math.ceil(rows / CACHE_STEP) * CACHE_STEP;
}

/**
 * The one view object a cache returns from every `updateAndFetch`, refilled in place, so that decoding allocates
 * nothing per token. Callers use it before the next update (as models do: update, then attention).
 */
export class ViewSlot {
  readonly #view: {
    keys: KvRows | null;
    values: KvRows | null;
    startPos: number;
    window: number;
    keep: number;
  } = { keys: null, values: null, startPos: 0, window: 0, keep: 0 };

  fill(keys: KvRows, values: KvRows, startPos: number, window: number, keep: number): CacheView {
    const v = this.#view;
    v.keys = keys;
    v.values = values;
    v.startPos = startPos;
    v.window = window;
    v.keep = keep;
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
