import type { Backend, Tensor } from '@mnemo/tensor';
import { checkShape, checkTrimCount, checkUpdate, roundUpToStep, ViewSlot } from './buffer';
import {
  type CacheCodec,
  checkMetaKeys,
  isCount,
  type ParsedLayer,
  parseStorage,
  rowData,
  rowSpecs,
  rowTensors,
  storageOfRows,
} from './codec';
import type { CacheOptions, CacheShape, CacheView, KVCache, RotatingState, StateBuffers } from './contract';
import { CacheStateError, checkRows, checkStateHeader } from './state-check';
import { checkStorageShape, KvSide, type KvStorage, type Run, storageRowBytes } from './storage';

export interface RotatingCacheOptions extends CacheOptions {
  /** Most positions a query sees: the first `keep` ones plus the `maxSize - keep` most recent (itself included). */
  readonly maxSize: number;
  /** Leading positions never evicted (attention sinks). Default 0; `makeCaches` uses 4 for `maxKvSize`, as mlx-lm. */
  readonly keep?: number;
  /** Storage of the rows (default `f32`): `f16`, or `q4g32`/`q4g64`/`q8g32`/`q8g64` quantized by the backend. */
  readonly storage?: KvStorage;
}

/**
 * A bounded cache: a query at position p sees positions `0 .. keep - 1` and the `maxSize - keep` most recent
 * positions up to p (a sliding window of `maxSize` when `keep` is 0), in any split of the prompt into steps.
 *
 * Storage is a ring the backend's attention reads in place (Backend API v3: position j at row `kvRow(j, capacity,
 * keep)`); new rows are written into their ring rows by the backend, so nothing is copied per step once it has wrapped.
 * The ring has `maxSize` rows in steady-state decoding; a step of n > 1 rows that finds it full needs room for the
 * `maxSize - 1` earlier positions its first query sees plus its own n rows, so the capacity grows (once, to at most
 * `maxSize + n - 1` rows) and stays there. Because every query sees exactly its positions, whatever the split,
 * `maxRowsNextStep()` is `Infinity`: prefill chunks of any size give the same bits as decoding one row at a time.
 *
 * `trim(n)` works while the rows it would have to give back are still held: everything before the first eviction,
 * and afterwards `capacity - maxSize` tokens (the spare rows a multi-row step left). Otherwise it refuses (returns 0):
 * fail closed, never corrupt.
 */
export class RotatingKVCache implements KVCache {
  /** Returned by every `updateAndFetch`, refilled in place: decoding allocates nothing per token. */
  readonly #view = new ViewSlot();
  readonly kind = 'rotating' as const;
  readonly shape: CacheShape;
  readonly maxSize: number;
  readonly keep: number;
  readonly storage: KvStorage;
  readonly #width: number;
  readonly #backend: Backend;
  readonly #keys: KvSide;
  readonly #values: KvSide;
  #offset = 0;
  /** Positions `keep .. floor - 1` have been overwritten (their rows hold later positions). */
  #floor = 0;

  constructor(opts: RotatingCacheOptions) {
    this.#width = checkShape('RotatingKVCache', opts.nKvHeads, opts.headDim);
    const keep = opts.keep ?? 0;
    if (!Number.isSafeInteger(opts.maxSize) || opts.maxSize < 1)
      throw new RangeError(`RotatingKVCache: maxSize must be a positive integer, got ${opts.maxSize}`);
    if (!Number.isSafeInteger(keep) || keep < 0 || keep >= opts.maxSize)
      throw new RangeError(
        `RotatingKVCache: keep must be an integer in [0, maxSize), got ${keep} (maxSize ${opts.maxSize})`,
      );
    const storage = opts.storage ?? 'f32';
    checkStorageShape('RotatingKVCache', storage, opts.nKvHeads, opts.headDim);
    this.shape = { nKvHeads: opts.nKvHeads, headDim: opts.headDim };
    this.maxSize = opts.maxSize;
    this.keep = keep;
    this.storage = storage;
    this.#backend = opts.backend;
    this.#keys = new KvSide(opts.backend, storage, this.#width);
    this.#values = new KvSide(opts.backend, storage, this.#width);
    this.#floor = keep;
  }

  get offset(): number {
    return this.#offset;
  }

  get byteLength(): number {
    return this.#keys.byteLength + this.#values.byteLength;
  }

  get stateByteLength(): number {
    return 2 * this.heldRows * storageRowBytes(this.storage, this.#width);
  }

  /** Rows of the ring (0 before the first update). */
  get capacity(): number {
    return this.#keys.capacity;
  }

  /** Recent positions a query sees (itself included): `maxSize - keep`. */
  get window(): number {
    return this.maxSize - this.keep;
  }

  /** Whether some position's row has been overwritten. */
  get wrapped(): boolean {
    return this.#floor > this.keep;
  }

  get isTrimmable(): boolean {
    return this.#offset === 0 || this.trimmable() > 0;
  }

  trimmable(): number {
    const o = this.#offset;
    if (this.#floor <= this.keep) return o;
    // after trimming n, a state (and the next queries) need positions from (o - n) - (maxSize - keep) on
    return Math.max(0, o - this.maxSize + this.keep - this.#floor);
  }

  maxRowsNextStep(): number {
    return Number.POSITIVE_INFINITY;
  }

  /** Pinned positions, then the recent ones from `from` on (clipped to what is held), up to offset `o`. */
  #runs(o: number, from: number): Run[] {
    const sinks = Math.min(this.keep, o);
    const lo = Math.max(this.keep, this.#floor, from);
    const runs: Run[] = [];
    if (sinks > 0) runs.push({ pos: 0, count: sinks });
    if (o > lo) runs.push({ pos: lo, count: o - lo });
    return runs;
  }

  /** The positions a state holds (time order): pinned ones and the `maxSize - keep` most recent. */
  #exported(o: number): Run[] {
    return this.#runs(o, o - (this.maxSize - this.keep));
  }

  updateAndFetch(k: Tensor, v: Tensor): CacheView {
    const n = checkUpdate('RotatingKVCache', this.#backend, this.#width, k, v);
    const o = this.#offset;
    const capacity = this.capacity;
    if (o + n > capacity) {
      // rows needed: the step's own n plus the earlier positions its first query sees (all of them while they fit)
      const lo = Math.max(this.keep, o - this.window + 1);
      const need = Math.min(o + n, this.keep + (o + n - lo));
      if (need > capacity) {
        const next = need <= this.maxSize ? Math.min(roundUpToStep(need), this.maxSize) : need;
        const held = this.#runs(o, 0);
        this.#keys.resize(next, this.keep, held);
        this.#values.resize(next, this.keep, held);
      }
    }
    this.#keys.write(k, o, this.keep);
    this.#values.write(v, o, this.keep);
    this.#offset = o + n;
    this.#floor = Math.max(this.#floor, o + n - (this.capacity - this.keep));
    return this.#view.fill(this.#keys.rows, this.#values.rows, o, this.window, this.keep);
  }

  trim(n: number): number {
    checkTrimCount('RotatingKVCache', n);
    const dropped = Math.min(n, this.#offset);
    if (dropped > this.trimmable()) return 0;
    this.#offset -= dropped;
    return dropped;
  }

  makeEmpty(): RotatingKVCache {
    return new RotatingKVCache({
      backend: this.#backend,
      ...this.shape,
      maxSize: this.maxSize,
      keep: this.keep,
      storage: this.storage,
    });
  }

  /** Rows held: `min(offset, maxSize)`. */
  get heldRows(): number {
    return Math.min(this.#offset, this.maxSize);
  }

  exportState(buffers?: StateBuffers): RotatingState {
    const runs = this.#exported(this.#offset);
    return {
      kind: 'rotating',
      shape: { ...this.shape },
      offset: this.#offset,
      maxSize: this.maxSize,
      keep: this.keep,
      keys: this.#keys.read(runs, this.keep, buffers, 'keys'),
      values: this.#values.read(runs, this.keep, buffers, 'values'),
    };
  }

  /** Rebuilds a cache from `exportState()` output (rows in time order) without replaying tokens. */
  static fromState(backend: Backend, state: RotatingState): RotatingKVCache {
    checkStateHeader('rotating', state);
    const storage = state.keys ? storageOfRows(state.keys) : 'f32';
    const cache = new RotatingKVCache({
      backend,
      ...state.shape,
      maxSize: state.maxSize,
      keep: state.keep,
      storage,
    });
    try {
      const rows = Math.min(state.offset, state.maxSize);
      checkRows('rotating', 'keys', state.keys, rows, cache.#width, storage);
      checkRows('rotating', 'values', state.values, rows, cache.#width, storage);
      cache.#load(state);
    } catch (e) {
      cache.free();
      throw e;
    }
    return cache;
  }

  #load(state: RotatingState): void {
    const o = state.offset;
    this.#offset = o;
    this.#floor = Math.max(this.keep, o - (this.maxSize - this.keep));
    if (o === 0) return;
    const capacity = o <= this.maxSize ? Math.min(roundUpToStep(o), this.maxSize) : this.maxSize;
    const runs = this.#exported(o);
    for (const [side, data] of [
      [this.#keys, state.keys],
      [this.#values, state.values],
    ] as const) {
      side.resize(capacity, this.keep, []);
      side.load(runs, this.keep, data);
    }
  }

  free(): void {
    this.#keys.free();
    this.#values.free();
  }
}

/**
 * The rotating kind's serialization: meta-state `{ maxSize, keep, storage }`, tensors of `min(offset, maxSize)` rows
 * in time order (pinned positions, then the most recent), in the storage's format.
 */
export const rotatingCodec: CacheCodec<RotatingState> = {
  kind: 'rotating',
  metaState: (s) => ({ maxSize: s.maxSize, keep: s.keep, storage: storageOfRows(s.keys) }),
  state: (s) => [...rowTensors('keys', s.keys, s.shape), ...rowTensors('values', s.values, s.shape)],
  parse(meta, shape, offset): ParsedLayer<RotatingState> {
    const m = checkMetaKeys('rotating', meta, ['maxSize', 'keep', 'storage']);
    if (!isCount(m.maxSize, 1) || !isCount(m.keep) || m.keep >= m.maxSize)
      throw new CacheStateError('rotating cache: bad maxSize/keep');
    const storage = parseStorage('rotating', m.storage, () => true);
    checkStorageShape('rotating cache', storage, shape.nKvHeads, shape.headDim);
    const { maxSize, keep } = m;
    const rows = Math.min(offset, maxSize);
    return {
      rows,
      tensors: [...rowSpecs('keys', storage, rows, shape), ...rowSpecs('values', storage, rows, shape)],
      state: (data) => ({
        kind: 'rotating',
        shape,
        offset,
        maxSize,
        keep,
        keys: rowData('keys', storage, rows, data),
        values: rowData('values', storage, rows, data),
      }),
    };
  },
  fromState: (backend, s) => RotatingKVCache.fromState(backend, s),
};
