import type { Backend, Tensor } from '@mnemo/tensor';
import { checkShape, checkTrimCount, checkUpdate, roundUpToStep, ViewSlot } from './buffer';
import {
  type CacheCodec,
  checkMetaKeys,
  type ParsedLayer,
  parseStorage,
  rowData,
  rowSpecs,
  rowTensors,
  storageOfRows,
} from './codec';
import type {
  CacheOptions,
  CacheShape,
  CacheView,
  DenseRows,
  HalfRows,
  KVCache,
  StandardState,
  StateBuffers,
} from './contract';
import { checkRows, checkStateHeader } from './state-check';
import { checkStorageShape, KvSide, storageRowBytes } from './storage';

export interface StandardCacheOptions extends CacheOptions {
  /**
   * Storage of the rows: `f32` (default, exact) or `f16` (half the memory; every row is rounded to f16 when it is
   * written, before any attention reads it, so cached and uncached runs with f16 caches stay bitwise equal).
   */
  readonly dtype?: 'f32' | 'f16';
}

/**
 * The plain cache: keys and values `[capacity, nKvHeads * headDim]` in f32 or f16, row j = position j. Capacity grows
 * in steps of 256 rows. `trim` only moves `offset`: rows past it are garbage that attention never reads.
 */
export class StandardKVCache implements KVCache {
  /** Returned by every `updateAndFetch`, refilled in place: decoding allocates nothing per token. */
  readonly #view = new ViewSlot();
  readonly kind = 'standard' as const;
  readonly shape: CacheShape;
  readonly storage: 'f32' | 'f16';
  readonly #width: number;
  readonly #backend: Backend;
  readonly #keys: KvSide;
  readonly #values: KvSide;
  #offset = 0;

  constructor(opts: StandardCacheOptions) {
    this.#width = checkShape('StandardKVCache', opts.nKvHeads, opts.headDim);
    const dtype = opts.dtype ?? 'f32';
    if (dtype !== 'f32' && dtype !== 'f16')
      throw new RangeError(`StandardKVCache: dtype must be f32 or f16, got ${String(dtype)}`);
    this.shape = { nKvHeads: opts.nKvHeads, headDim: opts.headDim };
    this.storage = dtype;
    this.#backend = opts.backend;
    this.#keys = new KvSide(opts.backend, dtype, this.#width);
    this.#values = new KvSide(opts.backend, dtype, this.#width);
  }

  get offset(): number {
    return this.#offset;
  }

  get byteLength(): number {
    return this.#keys.byteLength + this.#values.byteLength;
  }

  get stateByteLength(): number {
    return 2 * this.#offset * storageRowBytes(this.storage, this.#width);
  }

  /** Rows allocated (a multiple of 256, or 0 before the first update). */
  get capacity(): number {
    return this.#keys.capacity;
  }

  get isTrimmable(): boolean {
    return true;
  }

  trimmable(): number {
    return this.#offset;
  }

  maxRowsNextStep(): number {
    return Number.POSITIVE_INFINITY;
  }

  #grow(rows: number): void {
    if (rows <= this.#keys.capacity) return;
    const held = [{ pos: 0, count: this.#offset }];
    const capacity = roundUpToStep(rows);
    this.#keys.resize(capacity, 0, held);
    this.#values.resize(capacity, 0, held);
  }

  updateAndFetch(k: Tensor, v: Tensor): CacheView {
    const n = checkUpdate('StandardKVCache', this.#backend, this.#width, k, v);
    const start = this.#offset;
    this.#grow(start + n);
    this.#keys.write(k, start, 0);
    this.#values.write(v, start, 0);
    this.#offset = start + n;
    return this.#view.fill(this.#keys.rows, this.#values.rows, start, 0, 0);
  }

  trim(n: number): number {
    checkTrimCount('StandardKVCache', n);
    const dropped = Math.min(n, this.#offset);
    this.#offset -= dropped;
    return dropped;
  }

  makeEmpty(): StandardKVCache {
    return new StandardKVCache({ backend: this.#backend, ...this.shape, dtype: this.storage });
  }

  exportState(buffers?: StateBuffers): StandardState {
    const runs = [{ pos: 0, count: this.#offset }];
    return {
      kind: 'standard',
      shape: { ...this.shape },
      offset: this.#offset,
      keys: this.#keys.read(runs, 0, buffers, 'keys') as DenseRows | HalfRows,
      values: this.#values.read(runs, 0, buffers, 'values') as DenseRows | HalfRows,
    };
  }

  /** Rebuilds a cache from `exportState()` output without replaying tokens. */
  static fromState(backend: Backend, state: StandardState): StandardKVCache {
    checkStateHeader('standard', state);
    const dtype = state.keys?.format === 'f16' ? 'f16' : 'f32';
    const width = state.shape.nKvHeads * state.shape.headDim;
    checkRows('standard', 'keys', state.keys, state.offset, width, dtype);
    checkRows('standard', 'values', state.values, state.offset, width, dtype);
    const cache = new StandardKVCache({ backend, ...state.shape, dtype });
    try {
      cache.#load(state);
    } catch (e) {
      cache.free();
      throw e;
    }
    return cache;
  }

  #load(state: StandardState): void {
    const rows = state.offset;
    if (rows > 0) {
      this.#grow(rows);
      const runs = [{ pos: 0, count: rows }];
      this.#keys.load(runs, 0, state.keys);
      this.#values.load(runs, 0, state.values);
    }
    this.#offset = rows;
  }

  free(): void {
    this.#keys.free();
    this.#values.free();
  }
}

/** The standard kind's serialization: meta-state `{ storage: 'f32' | 'f16' }`, tensors `keys`, `values` `[rows, nKvHeads, headDim]`. */
export const standardCodec: CacheCodec<StandardState> = {
  kind: 'standard',
  metaState: (s) => ({ storage: storageOfRows(s.keys) }),
  state: (s) => [...rowTensors('keys', s.keys, s.shape), ...rowTensors('values', s.values, s.shape)],
  parse(meta, shape, offset): ParsedLayer<StandardState> {
    const m = checkMetaKeys('standard', meta, ['storage']);
    const storage = parseStorage('standard', m.storage, (s) => s === 'f32' || s === 'f16') as 'f32' | 'f16';
    checkStorageShape('standard cache', storage, shape.nKvHeads, shape.headDim);
    return {
      rows: offset,
      tensors: [...rowSpecs('keys', storage, offset, shape), ...rowSpecs('values', storage, offset, shape)],
      state: (data) => ({
        kind: 'standard',
        shape,
        offset,
        keys: rowData('keys', storage, offset, data) as DenseRows | HalfRows,
        values: rowData('values', storage, offset, data) as DenseRows | HalfRows,
      }),
    };
  },
  fromState: (backend, s) => StandardKVCache.fromState(backend, s),
};
