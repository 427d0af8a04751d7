import type { Backend, Tensor } from '@mnemo/tensor';

/**
 * What attention reads after a cache update: key/value tensors f32 `[capacity, nKvHeads * headDim]` whose row j holds
 * absolute position j (for a ring buffer, see `RotatingKVCache`), and the position of the first row just added.
 */
export interface CacheView {
  readonly keys: Tensor;
  readonly values: Tensor;
  /** Absolute position of the first row passed to `updateAndFetch`. */
  readonly startPos: number;
}

/** Shape of one layer's cache: rows are `nKvHeads * headDim` wide. */
export interface CacheShape {
  readonly nKvHeads: number;
  readonly headDim: number;
}

/** Names of the cache kinds. */
export type CacheKind = 'standard' | 'rotating' | 'quantized';

/**
 * A per-layer KV cache: the only way models touch cached keys and values. Models call `updateAndFetch` once per
 * layer per forward step with the new rows (keys already rotated) and hand the returned view to `backend.attention`.
 */
export interface KVCache {
  readonly kind: CacheKind;
  readonly shape: CacheShape;
  /** Number of tokens seen: the absolute position of the next row. */
  readonly offset: number;
  /**
   * Appends `k`, `v` (f32 `[rows, nKvHeads * headDim]`, positions `offset .. offset + rows - 1`) and returns the view
   * attention reads. Allocation (capacity growth) happens here, never in attention. The returned object may be the
   * same one every call (refilled in place): use it before the next update.
   */
  updateAndFetch(k: Tensor, v: Tensor): CacheView;
  /** Whether `trim` can drop tokens (a rotating cache that has wrapped cannot). */
  readonly isTrimmable: boolean;
  /** Drops the last `n` tokens; returns how many were dropped. */
  trim(n: number): number;
  /** Releases the cache's backend memory. */
  free(): void;

  // ---- additions (kv-cache v1) ----------------------------------------------------------------------------------
  /**
   * The most rows the next `updateAndFetch` may take while keeping results independent of how the prompt is split
   * into forward steps (`Infinity` when there is no limit). A larger step still works, but its logits may differ from
   * those of another split: split prefill chunks at this limit (see `maxStepRows` for a list of caches).
   * - standard: always `Infinity`;
   * - rotating: `maxSize - offset` until the window is full, then 1 (every query sees exactly `maxSize` rows);
   * - quantized: `start + 1 - offset` until the cache converts, then `Infinity`.
   */
  maxRowsNextStep(): number;
  /**
   * The cache's content (used rows only, never spare capacity) in its storage dtype, copied to the host. Without
   * `buffers` every array is freshly allocated. With `buffers` the arrays are views on `buffers`' reusable slots (no
   * allocation once the slots are large enough): they are only valid until the next export with the same buffers,
   * which overwrites them.
   */
  exportState(buffers?: StateBuffers): LayerState;
}

/**
 * Reusable host arrays for `KVCache.exportState(buffers)`, one slot per name (e.g. `keys`, `values.scales`): exporting
 * layer after layer into the same buffers holds about one layer's data, instead of leaving a fresh copy of each layer
 * for the garbage collector. A slot grows (to exactly the length asked for) when too small and is otherwise reused.
 *
 * Arrays handed out for a slot are only valid until the next request for that slot (the next export with these
 * buffers): their contents are then overwritten, or they keep pointing at a dropped, smaller buffer.
 */
export class StateBuffers {
  readonly #slots = new Map<string, ArrayBuffer>();

  /** A Float32Array of exactly `length` elements backed by slot `name` (contents unspecified). */
  f32(name: string, length: number): Float32Array {
    return new Float32Array(this.#buffer(name, length * 4), 0, length);
  }

  /** A Uint32Array of exactly `length` elements backed by slot `name` (contents unspecified). */
  u32(name: string, length: number): Uint32Array {
    return new Uint32Array(this.#buffer(name, length * 4), 0, length);
  }

  /** Bytes currently held by all slots. */
  get byteLength(): number {
    let n = 0;
    for (const b of this.#slots.values()) n += b.byteLength;
    return n;
  }

  /** Drops every slot (arrays handed out stay usable; new requests allocate again). */
  clear(): void {
    this.#slots.clear();
  }

  #buffer(name: string, bytes: number): ArrayBuffer {
    if (!Number.isSafeInteger(bytes) || bytes < 0)
      throw new RangeError(`StateBuffers: bad length ${bytes / 4} for slot '${name}'`);
    let b = this.#slots.get(name);
    if (b === undefined || b.byteLength < bytes) {
      this.#slots.delete(name);
      b = new ArrayBuffer(bytes);
      this.#slots.set(name, b);
    }
    return b;
  }
}

/** Options shared by every cache kind's constructor. */
export interface CacheOptions extends CacheShape {
  readonly backend: Backend;
}

// ---- exported state -------------------------------------------------------------------------------------------

/** Exact f32 rows `[rows, nKvHeads * headDim]`, row-major. */
export interface DenseRows {
  readonly format: 'f32';
  readonly rows: number;
  readonly data: Float32Array;
}

/**
 * MLX-affine-quantized rows `[rows, nKvHeads * headDim]`, quantized along each row in groups of `groupSize`:
 * `packed` uint32 `[rows, width * bits / 32]` (element k at bit `bits * k` of the row's little-endian bit stream),
 * `scales` and `biases` f32 `[rows, width / groupSize]`; the value is `scale * q + bias`.
 */
export interface QuantizedRows {
  readonly format: 'quantized';
  readonly rows: number;
  readonly bits: KvBits;
  readonly groupSize: KvGroupSize;
  readonly packed: Uint32Array;
  readonly scales: Float32Array;
  readonly biases: Float32Array;
}

export type RowData = DenseRows | QuantizedRows;

/** Bit widths of a quantized KV cache. */
export type KvBits = 4 | 8;
/** Group sizes of a quantized KV cache. */
export type KvGroupSize = 32 | 64;

export interface StandardState {
  readonly kind: 'standard';
  readonly shape: CacheShape;
  readonly offset: number;
  /** `offset` rows: row j is position j. */
  readonly keys: DenseRows;
  readonly values: DenseRows;
}

export interface RotatingState {
  readonly kind: 'rotating';
  readonly shape: CacheShape;
  readonly offset: number;
  readonly maxSize: number;
  readonly keep: number;
  /**
   * `min(offset, maxSize)` rows in time order: positions `0 .. keep - 1`, then the most recent positions
   * `offset - (rows - keep) .. offset - 1` (when `offset <= maxSize`, simply positions `0 .. offset - 1`).
   */
  readonly keys: DenseRows;
  readonly values: DenseRows;
}

export interface QuantizedState {
  readonly kind: 'quantized';
  readonly shape: CacheShape;
  readonly offset: number;
  readonly bits: KvBits;
  readonly groupSize: KvGroupSize;
  /** The cache converts to quantized storage at the first update that finds `offset > start`. */
  readonly start: number;
  /** `offset` rows: exact f32 rows before conversion, quantized rows after it. */
  readonly keys: RowData;
  readonly values: RowData;
}

/** One layer's exported cache: what `exportState` returns and `importState` takes. */
export type LayerState = StandardState | RotatingState | QuantizedState;
