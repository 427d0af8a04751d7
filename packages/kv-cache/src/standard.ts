import type { Backend, Tensor } from '@mnemo/tensor';
import { checkShape, checkTrimCount, checkUpdate, RowBuffer, ViewSlot } from './buffer';
import type { CacheOptions, CacheShape, CacheView, KVCache, StandardState, StateBuffers } from './contract';
import { checkDenseRows, checkStateHeader } from './state-check';

/**
 * The plain cache: f32 `[capacity, nKvHeads * headDim]` keys and values, row j = position j. Capacity grows in steps
 * of 256 rows. `trim` only moves `offset`: rows past it are garbage that attention never reads.
 */
export class StandardKVCache implements KVCache {
  /** Returned by every `updateAndFetch`, refilled in place: decoding allocates nothing per token. */
  readonly #view = new ViewSlot();
  readonly kind = 'standard' as const;
  readonly shape: CacheShape;
  readonly #width: number;
  readonly #backend: Backend;
  readonly #keys: RowBuffer;
  readonly #values: RowBuffer;
  #offset = 0;

  constructor(opts: CacheOptions) {
    this.#width = checkShape('StandardKVCache', opts.nKvHeads, opts.headDim);
    this.shape = { nKvHeads: opts.nKvHeads, headDim: opts.headDim };
    this.#backend = opts.backend;
    this.#keys = new RowBuffer(opts.backend, 'f32', this.#width);
    this.#values = new RowBuffer(opts.backend, 'f32', this.#width);
  }

  get offset(): number {
    return this.#offset;
  }

  /** Rows allocated (a multiple of 256, or 0 before the first update). */
  get capacity(): number {
    return this.#keys.capacity;
  }

  get isTrimmable(): boolean {
    return true;
  }

  maxRowsNextStep(): number {
    return Number.POSITIVE_INFINITY;
  }

  updateAndFetch(k: Tensor, v: Tensor): CacheView {
    const n = checkUpdate('StandardKVCache', this.#backend, this.#width, k, v);
    const start = this.#offset;
    this.#keys.ensure(start + n, start);
    this.#values.ensure(start + n, start);
    this.#keys.copyFrom(start, k, 0, n);
    this.#values.copyFrom(start, v, 0, n);
    this.#offset = start + n;
    return this.#view.fill(this.#keys.tensor, this.#values.tensor, start);
  }

  trim(n: number): number {
    checkTrimCount('StandardKVCache', n);
    const dropped = Math.min(n, this.#offset);
    this.#offset -= dropped;
    return dropped;
  }

  exportState(buffers?: StateBuffers): StandardState {
    const rows = this.#offset;
    const n = rows * this.#width;
    return {
      kind: 'standard',
      shape: { ...this.shape },
      offset: rows,
      keys: { format: 'f32', rows, data: this.#keys.readF32(0, rows, buffers?.f32('keys', n)) },
      values: { format: 'f32', rows, data: this.#values.readF32(0, rows, buffers?.f32('values', n)) },
    };
  }

  /** Rebuilds a cache from `exportState()` output without replaying tokens. */
  static fromState(backend: Backend, state: StandardState): StandardKVCache {
    checkStateHeader('standard', state);
    const width = state.shape.nKvHeads * state.shape.headDim;
    checkDenseRows('standard', 'keys', state.keys, state.offset, width);
    checkDenseRows('standard', 'values', state.values, state.offset, width);
    const cache = new StandardKVCache({ backend, ...state.shape });
    cache.#load(state);
    return cache;
  }

  #load(state: StandardState): void {
    const rows = state.offset;
    if (rows > 0) {
      this.#keys.ensure(rows, 0);
      this.#values.ensure(rows, 0);
      this.#keys.writeHost(0, rows, state.keys.data);
      this.#values.writeHost(0, rows, state.values.data);
    }
    this.#offset = rows;
  }

  free(): void {
    this.#keys.free();
    this.#values.free();
  }
}
