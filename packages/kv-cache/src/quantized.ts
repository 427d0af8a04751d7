import type { Backend, Tensor } from '@mnemo/tensor';
import { checkShape, checkTrimCount, checkUpdate, RowBuffer, ViewSlot } from './buffer';
import type {
  CacheOptions,
  CacheShape,
  CacheView,
  KVCache,
  KvBits,
  KvGroupSize,
  QuantizedRows,
  QuantizedState,
  RowData,
  StateBuffers,
} from './contract';
import { dequantizeRows, type QuantizedBlock, quantizeRows } from './quant';
import { CacheStateError, checkDenseRows, checkQuantizedRows, checkStateHeader } from './state-check';

export interface QuantizedCacheOptions extends CacheOptions {
  /** 4 or 8 (default 8). */
  readonly bits?: KvBits;
  /** 32 or 64 (default 64); `nKvHeads * headDim` must be a multiple of it. */
  readonly groupSize?: KvGroupSize;
  /** mlx-lm's `quantized_kv_start` (default 0): rows stay exact until an update finds `offset > start`. */
  readonly start?: number;
}

/** One side (keys or values) of the quantized storage. */
class QuantizedSide {
  readonly packed: RowBuffer;
  readonly scales: RowBuffer;
  readonly biases: RowBuffer;
  constructor(backend: Backend, width: number, bits: number, groupSize: number) {
    this.packed = new RowBuffer(backend, 'u32', (width * bits) / 32);
    this.scales = new RowBuffer(backend, 'f32', width / groupSize);
    this.biases = new RowBuffer(backend, 'f32', width / groupSize);
  }
  ensure(rows: number, keep: number): void {
    this.packed.ensure(rows, keep);
    this.scales.ensure(rows, keep);
    this.biases.ensure(rows, keep);
  }
  write(row: number, rows: number, block: QuantizedBlock): void {
    this.packed.writeHost(row, rows, block.packed);
    this.scales.writeHost(row, rows, block.scales);
    this.biases.writeHost(row, rows, block.biases);
  }
  /** Reads the first `rows` rows, into `buffers`' slots `<name>.packed`, `<name>.scales`, `<name>.biases` if given. */
  read(rows: number, buffers?: StateBuffers, name?: string): QuantizedBlock {
    if (buffers !== undefined) {
      const packed = buffers.u32(`${name}.packed`, rows * this.packed.width);
      this.packed.readBytes(0, rows, new Uint8Array(packed.buffer, packed.byteOffset, packed.byteLength));
      return {
        packed,
        scales: this.scales.readF32(0, rows, buffers.f32(`${name}.scales`, rows * this.scales.width)),
        biases: this.biases.readF32(0, rows, buffers.f32(`${name}.biases`, rows * this.biases.width)),
      };
    }
    const bytes = this.packed.readBytes(0, rows);
    return {
      packed: new Uint32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength)),
      scales: this.scales.readF32(0, rows),
      biases: this.biases.readF32(0, rows),
    };
  }
  free(): void {
    this.packed.free();
    this.scales.free();
    this.biases.free();
  }
}

/**
 * A KV cache stored MLX-affine-quantized per row (groups along the row), following mlx-lm's `quantized_kv_start`:
 * until an update finds `offset > start` the cache holds exact f32 rows; that update converts every held row, and from
 * then on new rows are quantized as they arrive. Attention reads an f32 mirror holding exactly
 * `dequantize(quantize(row))` (new rows included), so cached and uncached runs with the same settings are bitwise
 * equal as long as no forward step holds both position `start` and `start + 1` (`maxRowsNextStep()` says where to
 * split). The quantized data is the source of truth for `exportState`. The mirror means memory is not saved yet (v1).
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
  readonly #mirrorK: RowBuffer;
  readonly #mirrorV: RowBuffer;
  readonly #qK: QuantizedSide;
  readonly #qV: QuantizedSide;
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
    if (this.#width % groupSize !== 0)
      throw new RangeError(
        `QuantizedKVCache: row width ${this.#width} (nKvHeads ${opts.nKvHeads} x headDim ${opts.headDim}) is not a multiple of groupSize ${groupSize}`,
      );
    if (!Number.isSafeInteger(start) || start < 0)
      throw new RangeError(`QuantizedKVCache: start must be a non-negative integer, got ${start}`);
    this.shape = { nKvHeads: opts.nKvHeads, headDim: opts.headDim };
    this.bits = bits;
    this.groupSize = groupSize;
    this.start = start;
    this.#backend = opts.backend;
    this.#mirrorK = new RowBuffer(opts.backend, 'f32', this.#width);
    this.#mirrorV = new RowBuffer(opts.backend, 'f32', this.#width);
    this.#qK = new QuantizedSide(opts.backend, this.#width, bits, groupSize);
    this.#qV = new QuantizedSide(opts.backend, this.#width, bits, groupSize);
  }

  get offset(): number {
    return this.#offset;
  }

  /** Whether the rows are held quantized (after the first update that found `offset > start`). */
  get converted(): boolean {
    return this.#converted;
  }

  get isTrimmable(): boolean {
    return true;
  }

  maxRowsNextStep(): number {
    return !this.#converted && this.#offset <= this.start
      ? this.start + 1 - this.#offset
      : Number.POSITIVE_INFINITY;
  }

  /** Quantizes `rows` host rows into the storage at `row` and writes their dequantized values into the mirror. */
  #store(side: QuantizedSide, mirror: RowBuffer, row: number, rows: number, values: Float32Array): void {
    const block = quantizeRows(this.bits, this.groupSize, rows, this.#width, values);
    side.write(row, rows, block);
    mirror.writeHost(row, rows, dequantizeRows(this.bits, this.groupSize, rows, this.#width, block));
  }

  #convert(): void {
    const n = this.#offset;
    this.#qK.ensure(n, 0);
    this.#qV.ensure(n, 0);
    if (n > 0) {
      this.#store(this.#qK, this.#mirrorK, 0, n, this.#mirrorK.readF32(0, n));
      this.#store(this.#qV, this.#mirrorV, 0, n, this.#mirrorV.readF32(0, n));
    }
    this.#converted = true;
  }

  updateAndFetch(k: Tensor, v: Tensor): CacheView {
    const n = checkUpdate('QuantizedKVCache', this.#backend, this.#width, k, v);
    const o = this.#offset;
    if (!this.#converted && o > this.start) this.#convert();
    this.#mirrorK.ensure(o + n, o);
    this.#mirrorV.ensure(o + n, o);
    if (this.#converted) {
      this.#qK.ensure(o + n, o);
      this.#qV.ensure(o + n, o);
      this.#store(this.#qK, this.#mirrorK, o, n, this.#backend.read(k));
      this.#store(this.#qV, this.#mirrorV, o, n, this.#backend.read(v));
    } else {
      this.#mirrorK.copyFrom(o, k, 0, n);
      this.#mirrorV.copyFrom(o, v, 0, n);
    }
    this.#offset = o + n;
    return this.#view.fill(this.#mirrorK.tensor, this.#mirrorV.tensor, o);
  }

  trim(n: number): number {
    checkTrimCount('QuantizedKVCache', n);
    const dropped = Math.min(n, this.#offset);
    if (this.#converted && this.#offset - dropped <= this.start) return 0;
    this.#offset -= dropped;
    return dropped;
  }

  exportState(buffers?: StateBuffers): QuantizedState {
    const rows = this.#offset;
    const side = (q: QuantizedSide, mirror: RowBuffer, name: 'keys' | 'values'): RowData => {
      if (!this.#converted)
        return { format: 'f32', rows, data: mirror.readF32(0, rows, buffers?.f32(name, rows * this.#width)) };
      const block = q.read(rows, buffers, name);
      const out: QuantizedRows = {
        format: 'quantized',
        rows,
        bits: this.bits,
        groupSize: this.groupSize,
        ...block,
      };
      return out;
    };
    return {
      kind: 'quantized',
      shape: { ...this.shape },
      offset: rows,
      bits: this.bits,
      groupSize: this.groupSize,
      start: this.start,
      keys: side(this.#qK, this.#mirrorK, 'keys'),
      values: side(this.#qV, this.#mirrorV, 'values'),
    };
  }

  /** Rebuilds a cache from `exportState()` output without replaying tokens (the mirror is recomputed). */
  static fromState(backend: Backend, state: QuantizedState): QuantizedKVCache {
    checkStateHeader('quantized', state);
    const cache = new QuantizedKVCache({
      backend,
      ...state.shape,
      bits: state.bits,
      groupSize: state.groupSize,
      start: state.start,
    });
    const rows = state.offset;
    const w = cache.#width;
    const quantized = state.keys?.format === 'quantized';
    // Rows are converted by the first update that finds offset > start (so at most start + 1 are exact), and a
    // converted cache never goes back to offset <= start.
    if (quantized ? rows <= cache.start : rows > cache.start + 1)
      throw new CacheStateError(
        `quantized state: ${quantized ? 'quantized' : 'exact'} rows at offset ${rows} with start ${cache.start} (quantized rows need offset > start, exact ones offset <= start + 1)`,
      );
    for (const [name, data] of [
      ['keys', state.keys],
      ['values', state.values],
    ] as const) {
      if (quantized) checkQuantizedRows('quantized', name, data, rows, w, state.bits, state.groupSize);
      else checkDenseRows('quantized', name, data, rows, w);
    }
    cache.#load(state, quantized);
    return cache;
  }

  #load(state: QuantizedState, quantized: boolean): void {
    const rows = state.offset;
    this.#offset = rows;
    this.#converted = quantized;
    if (rows === 0) return;
    for (const [side, mirror, data] of [
      [this.#qK, this.#mirrorK, state.keys],
      [this.#qV, this.#mirrorV, state.values],
    ] as const) {
      mirror.ensure(rows, 0);
      if (data.format === 'f32') {
        mirror.writeHost(0, rows, data.data);
      } else {
        side.ensure(rows, 0);
        side.write(0, rows, data);
        mirror.writeHost(0, rows, dequantizeRows(this.bits, this.groupSize, rows, this.#width, data));
      }
    }
  }

  free(): void {
    this.#mirrorK.free();
    this.#mirrorV.free();
    this.#qK.free();
    this.#qV.free();
  }
}
