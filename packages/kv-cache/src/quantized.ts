import type { Backend, Tensor } from '@mnemo/tensor';
import { checkShape, checkTrimCount, checkUpdate, roundUpToStep, ViewSlot } from './buffer';
import {
  type CacheCodec,
  checkMetaKeys,
  isCount,
  type ParsedLayer,
  rowData,
  rowSpecs,
  rowTensors,
  UnsupportedCacheError,
} from './codec';
import type {
  CacheOptions,
  CacheShape,
  CacheView,
  DenseRows,
  KVCache,
  KvBits,
  KvGroupSize,
  QuantizedRows,
  QuantizedState,
  StateBuffers,
} from './contract';
import { CacheStateError, checkRows, checkStateHeader } from './state-check';
import { checkStorageShape, KvSide, type KvStorage, quantizedStorage, storageRowBytes } from './storage';

export interface QuantizedCacheOptions extends CacheOptions {
  /** 4 or 8 (default 8). */
  readonly bits?: KvBits;
  /** 32 or 64 (default 64); `nKvHeads * headDim` must be a multiple of it and `headDim` of 8. */
  readonly groupSize?: KvGroupSize;
  /** mlx-lm's `quantized_kv_start` (default 0): rows stay exact until an update finds `offset > start`. */
  readonly start?: number;
}

/**
 * A KV cache stored MLX-affine-quantized per row (groups along the row), following mlx-lm's `quantized_kv_start`:
 * until an update finds `offset > start` the cache holds exact f32 rows; that update quantizes every held row (on the
 * backend, `writeKv` from the f32 rows) and frees the f32 storage, and from then on new rows are quantized by the
 * backend as they are written. Attention reads the quantized rows as they are (4-bit rows take about a sixth of the
 * memory of f32 ones), new rows included, so cached and uncached runs with the same settings are bitwise equal as long
 * as no forward step holds both position `start` and `start + 1` (`maxRowsNextStep()` says where to split). A larger
 * step that goes past `start + 1` converts at its end (its own queries read exact rows), so the cache never holds more
 * than `start + 1` exact rows.
 *
 * Once converted, `trim` refuses (returns 0) to go back to `offset <= start`: those rows can no longer be exact.
 */
export class QuantizedKVCache implements KVCache {
  /** Returned by every `updateAndFetch`, refilled in place: decoding allocates nothing per token. */
  readonly #view = new ViewSlot();
  readonly kind = 'quantized' as const;
  readonly shape: CacheShape;
  readonly bits: KvBits;
  readonly groupSize: KvGroupSize;
  readonly start: number;
  readonly #width: number;
  readonly #backend: Backend;
  /** Exact rows until the conversion; then null. */
  #exact: [KvSide, KvSide] | null;
  /** Exact rows a step that converted at its end returned to attention: freed by the next update. */
  #retired: [KvSide, KvSide] | null = null;
  readonly #quant: [KvSide, KvSide];
  #offset = 0;
  #converted = false;

  constructor(opts: QuantizedCacheOptions) {
    this.#width = checkShape('QuantizedKVCache', opts.nKvHeads, opts.headDim);
    const bits = opts.bits ?? 8;
    const groupSize = opts.groupSize ?? 64;
    const start = opts.start ?? 0;
    if (bits !== 4 && bits !== 8) throw new RangeError(`QuantizedKVCache: bits must be 4 or 8, got ${bits}`);
    if (groupSize !== 32 && groupSize !== 64)
      throw new RangeError(`QuantizedKVCache: groupSize must be 32 or 64, got ${groupSize}`);
    checkStorageShape('QuantizedKVCache', quantizedStorage(bits, groupSize), opts.nKvHeads, opts.headDim);
    if (!Number.isSafeInteger(start) || start < 0)
      throw new RangeError(`QuantizedKVCache: start must be a non-negative integer, got ${start}`);
    this.shape = { nKvHeads: opts.nKvHeads, headDim: opts.headDim };
    this.bits = bits;
    this.groupSize = groupSize;
    this.start = start;
    this.#backend = opts.backend;
    const b = opts.backend;
    const q = quantizedStorage(bits, groupSize);
    this.#exact = [new KvSide(b, 'f32', this.#width), new KvSide(b, 'f32', this.#width)];
    this.#quant = [new KvSide(b, q, this.#width), new KvSide(b, q, this.#width)];
  }

  /** How the rows are stored now: `f32` until the conversion, then quantized. */
  get storage(): KvStorage {
    return this.#converted ? quantizedStorage(this.bits, this.groupSize) : 'f32';
  }

  get offset(): number {
    return this.#offset;
  }

  get byteLength(): number {
    let n = this.#quant[0].byteLength + this.#quant[1].byteLength;
    if (this.#exact) n += this.#exact[0].byteLength + this.#exact[1].byteLength;
    if (this.#retired) n += this.#retired[0].byteLength + this.#retired[1].byteLength;
    return n;
  }

  get stateByteLength(): number {
    return 2 * this.#offset * storageRowBytes(this.storage, this.#width);
  }

  /** Whether the rows are held quantized (after the first update that found `offset > start`). */
  get converted(): boolean {
    return this.#converted;
  }

  get isTrimmable(): boolean {
    return true;
  }

  trimmable(): number {
    return this.#converted ? Math.max(0, this.#offset - this.start - 1) : this.#offset;
  }

  maxRowsNextStep(): number {
    return !this.#converted && this.#offset <= this.start
      ? this.start + 1 - this.#offset
      : Number.POSITIVE_INFINITY;
  }

  #sides(): [KvSide, KvSide] {
    return this.#converted ? this.#quant : this.#exact!;
  }

  #grow(rows: number): void {
    const sides = this.#sides();
    if (rows <= sides[0].capacity) return;
    const held = [{ pos: 0, count: this.#offset }];
    const capacity = roundUpToStep(rows);
    for (const s of sides) s.resize(capacity, 0, held);
  }

  /**
   * Quantizes every held row on the backend and drops the exact rows (or, with `retire`, keeps them until the next
   * update: the view just returned still reads them).
   */
  #convert(retire = false): void {
    const exact = this.#exact!;
    const n = this.#offset;
    const capacity = Math.max(exact[0].capacity, 1);
    for (let i = 0; i < 2; i++) {
      this.#quant[i]!.resize(capacity, 0, []);
      if (n > 0) {
        const rows = exact[i]!.rows as Tensor;
        this.#quant[i]!.write(this.#backend.view(rows, [n, this.#width]), 0, 0);
      }
      if (!retire) exact[i]!.free();
    }
    if (retire) this.#retired = exact;
    this.#exact = null;
    this.#converted = true;
  }

  updateAndFetch(k: Tensor, v: Tensor): CacheView {
    const n = checkUpdate('QuantizedKVCache', this.#backend, this.#width, k, v);
    const o = this.#offset;
    if (this.#retired) {
      for (const s of this.#retired) s.free();
      this.#retired = null;
    }
    if (!this.#converted && o > this.start) this.#convert();
    this.#grow(o + n);
    const [ks, vs] = this.#sides();
    ks.write(k, o, 0);
    vs.write(v, o, 0);
    this.#offset = o + n;
    const view = this.#view.fill(ks.rows, vs.rows, o, 0, 0);
    // A step larger than `maxRowsNextStep()` advised went past start + 1: its own queries read the exact rows (the
    // view above), and the cache converts now rather than at the next update, so that it never holds more than
    // start + 1 exact rows (the next steps read the same quantized rows either way).
    if (!this.#converted && o + n > this.start + 1) this.#convert(true);
    return view;
  }

  trim(n: number): number {
    checkTrimCount('QuantizedKVCache', n);
    const dropped = Math.min(n, this.#offset);
    if (dropped > this.trimmable()) return 0;
    this.#offset -= dropped;
    return dropped;
  }

  makeEmpty(): QuantizedKVCache {
    return new QuantizedKVCache({
      backend: this.#backend,
      ...this.shape,
      bits: this.bits,
      groupSize: this.groupSize,
      start: this.start,
    });
  }

  exportState(buffers?: StateBuffers): QuantizedState {
    const runs = [{ pos: 0, count: this.#offset }];
    const [ks, vs] = this.#sides();
    return {
      kind: 'quantized',
      shape: { ...this.shape },
      offset: this.#offset,
      bits: this.bits,
      groupSize: this.groupSize,
      start: this.start,
      keys: ks.read(runs, 0, buffers, 'keys') as DenseRows | QuantizedRows,
      values: vs.read(runs, 0, buffers, 'values') as DenseRows | QuantizedRows,
    };
  }

  /** Rebuilds a cache from `exportState()` output without replaying tokens. */
  static fromState(backend: Backend, state: QuantizedState): QuantizedKVCache {
    checkStateHeader('quantized', state);
    const cache = new QuantizedKVCache({
      backend,
      ...state.shape,
      bits: state.bits,
      groupSize: state.groupSize,
      start: state.start,
    });
    try {
      const quantized = state.keys?.format === 'quantized';
      const rows = state.offset;
      // Rows are converted by the first update that finds offset > start (so at most start + 1 are exact), and a
      // converted cache never goes back to offset <= start.
      if (quantized ? rows <= cache.start : rows > cache.start + 1)
        throw new CacheStateError(
          `quantized state: ${quantized ? 'quantized' : 'exact'} rows at offset ${rows} with start ${cache.start} (quantized rows need offset > start, exact ones offset <= start + 1)`,
        );
      const storage = quantized ? quantizedStorage(state.bits, state.groupSize) : 'f32';
      for (const name of ['keys', 'values'] as const)
        checkRows('quantized', name, state[name], rows, cache.#width, storage);
      cache.#load(state, quantized);
    } catch (e) {
      cache.free();
      throw e;
    }
    return cache;
  }

  #load(state: QuantizedState, quantized: boolean): void {
    if (quantized) {
      for (const s of this.#exact!) s.free();
      this.#exact = null;
      this.#converted = true;
    }
    const rows = state.offset;
    this.#offset = rows;
    if (rows === 0) return;
    const runs = [{ pos: 0, count: rows }];
    const [ks, vs] = this.#sides();
    for (const s of [ks, vs]) s.resize(roundUpToStep(rows), 0, []);
    ks.load(runs, 0, state.keys);
    vs.load(runs, 0, state.values);
  }

  free(): void {
    if (this.#exact) for (const s of this.#exact) s.free();
    if (this.#retired) for (const s of this.#retired) s.free();
    this.#retired = null;
    for (const s of this.#quant) s.free();
  }
}

/**
 * The quantized kind's serialization: meta-state `{ bits, groupSize, start, quantized }` (`quantized` false: exact f32
 * rows, not yet converted), tensors `keys`/`values` `[rows, nKvHeads, headDim]` f32, or `keys.packed`, `keys.scales`,
 * `keys.biases` (and the same for values) once quantized.
 */
export const quantizedCodec: CacheCodec<QuantizedState> = {
  kind: 'quantized',
  metaState: (s) => ({
    bits: s.bits,
    groupSize: s.groupSize,
    start: s.start,
    quantized: s.keys.format === 'quantized',
  }),
  state: (s) => [...rowTensors('keys', s.keys, s.shape), ...rowTensors('values', s.values, s.shape)],
  parse(meta, shape, offset): ParsedLayer<QuantizedState> {
    const m = checkMetaKeys('quantized', meta, ['bits', 'groupSize', 'start', 'quantized']);
    if ((m.bits !== 4 && m.bits !== 8) || (m.groupSize !== 32 && m.groupSize !== 64))
      throw new UnsupportedCacheError(
        `quantized cache: ${String(m.bits)}-bit group ${String(m.groupSize)} is not supported (4/8 bits, groups 32/64)`,
      );
    if (!isCount(m.start) || typeof m.quantized !== 'boolean')
      throw new CacheStateError('quantized cache: bad start/quantized');
    // A quantized cache converts its rows on the first update that finds offset > start (so it holds at most
    // start + 1 exact rows) and never goes back to offset <= start.
    if (m.quantized ? offset <= m.start : offset > m.start + 1)
      throw new CacheStateError(
        `"quantized": ${m.quantized} contradicts offset ${offset} and start ${m.start} (quantized rows need offset > start, exact ones offset <= start + 1)`,
      );
    const bits = m.bits;
    const groupSize = m.groupSize;
    const start = m.start;
    const q = quantizedStorage(bits, groupSize);
    checkStorageShape('quantized cache', q, shape.nKvHeads, shape.headDim);
    const storage = m.quantized ? q : 'f32';
    return {
      rows: offset,
      tensors: [...rowSpecs('keys', storage, offset, shape), ...rowSpecs('values', storage, offset, shape)],
      state: (data) => ({
        kind: 'quantized',
        shape,
        offset,
        bits,
        groupSize,
        start,
        keys: rowData('keys', storage, offset, data) as DenseRows | QuantizedRows,
        values: rowData('values', storage, offset, data) as DenseRows | QuantizedRows,
      }),
    };
  },
  fromState: (backend, s) => QuantizedKVCache.fromState(backend, s),
};
