import type { Backend, Tensor } from '@mnemo/tensor';
import { checkShape, checkTrimCount, checkUpdate, RowBuffer, ViewSlot } from './buffer';
import type { CacheOptions, CacheShape, CacheView, KVCache, RotatingState, StateBuffers } from './contract';
import { checkDenseRows, checkStateHeader } from './state-check';

export interface RotatingCacheOptions extends CacheOptions {
  /** Most positions held: the first `keep` ones plus the `maxSize - keep` most recent. */
  readonly maxSize: number;
  /** Leading positions never evicted (attention sinks). Default 0; `makeCaches` uses 4, as mlx-lm does. */
  readonly keep?: number;
}

/**
 * A bounded cache: positions `0 .. keep - 1` plus the `maxSize - keep` most recent positions.
 *
 * While `offset + rows <= maxSize` it behaves exactly like `StandardKVCache` (row j = position j). Storage is a ring:
 * position q lives in slot `q` for `q < keep`, else in slot `keep + (q - keep) % (maxSize - keep)`, a function of the
 * position only. Once a step would pass `maxSize`, attention reads a temporally ordered copy held in a scratch pair:
 * the `keep` rows, then the most recent rows in time order (at most `maxSize - 1` rows in all), then the new rows,
 * with `startPos` = the index of the first new row. Keys were rotated with their absolute positions when they were
 * computed, so row order only has to be temporal for the causal mask. That copy costs O(maxSize) rows per step after
 * wrapping (v1).
 *
 * A one-row step after wrapping therefore sees exactly `maxSize` rows (the `keep` sinks and the `maxSize - keep` most
 * recent positions, itself included); a multi-row step sees more for its later rows, as in mlx-lm, so results then
 * depend on the split: `maxRowsNextStep()` says where to split. Once a position has been evicted the cache cannot be
 * trimmed (`isTrimmable` is false and `trim` returns 0): fail closed, never corrupt.
 */
export class RotatingKVCache implements KVCache {
  /** Returned by every `updateAndFetch`, refilled in place: decoding allocates nothing per token. */
  readonly #view = new ViewSlot();
  readonly kind = 'rotating' as const;
  readonly shape: CacheShape;
  readonly maxSize: number;
  readonly keep: number;
  readonly #width: number;
  readonly #backend: Backend;
  readonly #ringK: RowBuffer;
  readonly #ringV: RowBuffer;
  readonly #viewK: RowBuffer;
  readonly #viewV: RowBuffer;
  #offset = 0;

  constructor(opts: RotatingCacheOptions) {
    this.#width = checkShape('RotatingKVCache', opts.nKvHeads, opts.headDim);
    const keep = opts.keep ?? 0;
    if (!Number.isSafeInteger(opts.maxSize) || opts.maxSize < 1)
      throw new RangeError(`RotatingKVCache: maxSize must be a positive integer, got ${opts.maxSize}`);
    if (!Number.isSafeInteger(keep) || keep < 0 || keep >= opts.maxSize)
      throw new RangeError(
        `RotatingKVCache: keep must be an integer in [0, maxSize), got ${keep} (maxSize ${opts.maxSize})`,
      );
    this.shape = { nKvHeads: opts.nKvHeads, headDim: opts.headDim };
    this.maxSize = opts.maxSize;
    this.keep = keep;
    this.#backend = opts.backend;
    this.#ringK = new RowBuffer(opts.backend, 'f32', this.#width);
    this.#ringV = new RowBuffer(opts.backend, 'f32', this.#width);
    this.#viewK = new RowBuffer(opts.backend, 'f32', this.#width);
    this.#viewV = new RowBuffer(opts.backend, 'f32', this.#width);
  }

  get offset(): number {
    return this.#offset;
  }

  /** Whether a position has been evicted (then the cache can no longer be trimmed). */
  get wrapped(): boolean {
    return this.#offset > this.maxSize;
  }

  get isTrimmable(): boolean {
    return !this.wrapped;
  }

  maxRowsNextStep(): number {
    return this.#offset < this.maxSize ? this.maxSize - this.#offset : 1;
  }

  /** Ring slot of position `q` (valid while q is held). */
  #slot(q: number): number {
    return q < this.keep ? q : this.keep + ((q - this.keep) % (this.maxSize - this.keep));
  }

  /**
   * Copies positions `[from, from + count)` (all held, all >= keep or all < keep) between the ring and `other`
   * starting at `otherRow`, splitting at the ring's wrap point. `toRing` picks the direction.
   */
  #ringCopy(
    from: number,
    count: number,
    other: Tensor | null,
    otherRow: number,
    toRing: boolean,
    buf: 'k' | 'v',
  ) {
    const ring = buf === 'k' ? this.#ringK : this.#ringV;
    const view = buf === 'k' ? this.#viewK : this.#viewV;
    let q = from;
    let row = otherRow;
    let left = count;
    while (left > 0) {
      const slot = this.#slot(q);
      const run = q < this.keep ? Math.min(left, this.keep - q) : Math.min(left, this.maxSize - slot);
      if (toRing) ring.copyFrom(slot, other!, row, run);
      else view.copyFrom(row, ring.tensor, slot, run);
      q += run;
      row += run;
      left -= run;
    }
  }

  updateAndFetch(k: Tensor, v: Tensor): CacheView {
    const n = checkUpdate('RotatingKVCache', this.#backend, this.#width, k, v);
    const o = this.#offset;
    if (o + n <= this.maxSize) {
      // Within the window: exactly the standard cache.
      this.#ringK.ensure(o + n, o, this.maxSize);
      this.#ringV.ensure(o + n, o, this.maxSize);
      this.#ringK.copyFrom(o, k, 0, n);
      this.#ringV.copyFrom(o, v, 0, n);
      this.#offset = o + n;
      return this.#view.fill(this.#ringK.tensor, this.#ringV.tensor, o);
    }

    // Temporally ordered view: sinks, the most recent old rows (maxSize - 1 old rows at most), the new rows.
    const old = Math.min(o, this.maxSize - 1);
    const sinks = Math.min(this.keep, o);
    const recent = old - sinks;
    this.#viewK.ensure(old + n, 0);
    this.#viewV.ensure(old + n, 0);
    for (const buf of ['k', 'v'] as const) {
      if (sinks > 0) this.#ringCopy(0, sinks, null, 0, false, buf);
      if (recent > 0) this.#ringCopy(o - recent, recent, null, sinks, false, buf);
    }
    this.#viewK.copyFrom(old, k, 0, n);
    this.#viewV.copyFrom(old, v, 0, n);

    // Store the new rows that stay held: new sinks, and the most recent maxSize - keep positions.
    const kept = Math.min(o, this.#ringK.capacity);
    this.#ringK.ensure(this.maxSize, kept, this.maxSize);
    this.#ringV.ensure(this.maxSize, kept, this.maxSize);
    const end = o + n;
    const newSinks = Math.max(0, Math.min(this.keep, end) - o);
    const firstRecent = Math.max(o, this.keep, end - (this.maxSize - this.keep));
    for (const [buf, src] of [
      ['k', k],
      ['v', v],
    ] as const) {
      if (newSinks > 0) this.#ringCopy(o, newSinks, src, 0, true, buf);
      if (end > firstRecent) this.#ringCopy(firstRecent, end - firstRecent, src, firstRecent - o, true, buf);
    }
    this.#offset = end;
    return this.#view.fill(this.#viewK.tensor, this.#viewV.tensor, old);
  }

  trim(n: number): number {
    checkTrimCount('RotatingKVCache', n);
    if (!this.isTrimmable) return 0;
    const dropped = Math.min(n, this.#offset);
    this.#offset -= dropped;
    return dropped;
  }

  /** Rows held: `min(offset, maxSize)`. */
  get heldRows(): number {
    return Math.min(this.#offset, this.maxSize);
  }

  exportState(buffers?: StateBuffers): RotatingState {
    const rows = this.heldRows;
    const w = this.#width;
    const data = (ring: RowBuffer, slotName: 'keys' | 'values'): Float32Array => {
      const into = buffers?.f32(slotName, rows * w);
      if (!this.wrapped) return ring.readF32(0, rows, into);
      const out = into ?? new Float32Array(rows * w);
      let at = 0;
      const take = (slot: number, count: number) => {
        ring.readF32(slot, count, out.subarray(at * w, (at + count) * w));
        at += count;
      };
      if (this.keep > 0) take(0, this.keep);
      let q = this.#offset - (this.maxSize - this.keep);
      while (q < this.#offset) {
        const slot = this.#slot(q);
        const run = Math.min(this.#offset - q, this.maxSize - slot);
        take(slot, run);
        q += run;
      }
      return out;
    };
    return {
      kind: 'rotating',
      shape: { ...this.shape },
      offset: this.#offset,
      maxSize: this.maxSize,
      keep: this.keep,
      keys: { format: 'f32', rows, data: data(this.#ringK, 'keys') },
      values: { format: 'f32', rows, data: data(this.#ringV, 'values') },
    };
  }

  /** Rebuilds a cache from `exportState()` output (rows in time order) without replaying tokens. */
  static fromState(backend: Backend, state: RotatingState): RotatingKVCache {
    checkStateHeader('rotating', state);
    const cache = new RotatingKVCache({ backend, ...state.shape, maxSize: state.maxSize, keep: state.keep });
    const rows = Math.min(state.offset, state.maxSize);
    const width = cache.#width;
    checkDenseRows('rotating', 'keys', state.keys, rows, width);
    checkDenseRows('rotating', 'values', state.values, rows, width);
    cache.#load(state, rows);
    return cache;
  }

  #load(state: RotatingState, rows: number): void {
    this.#offset = state.offset;
    if (rows === 0) return;
    for (const [ring, data] of [
      [this.#ringK, state.keys.data],
      [this.#ringV, state.values.data],
    ] as const) {
      ring.ensure(rows, 0, this.maxSize);
      if (!this.wrapped) {
        ring.writeHost(0, rows, data);
        continue;
      }
      const w = this.#width;
      if (this.keep > 0) ring.writeHost(0, this.keep, data.subarray(0, this.keep * w));
      let q = this.#offset - (this.maxSize - this.keep);
      let row = this.keep;
      while (q < this.#offset) {
        const slot = this.#slot(q);
        const run = Math.min(this.#offset - q, this.maxSize - slot);
        ring.writeHost(slot, run, data.subarray(row * w, (row + run) * w));
        q += run;
        row += run;
      }
    }
  }

  free(): void {
    this.#ringK.free();
    this.#ringV.free();
    this.#viewK.free();
    this.#viewV.free();
  }
}
