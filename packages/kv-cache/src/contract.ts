import type { Backend, KvRows, Tensor } from '@mnemo/tensor';
import type { KvStorage } from './storage';

/**
 * What attention reads after a cache update: the cache's storage as it is stored (Backend API v3 `KvRows`: f32, f16 or
 * 4/8-bit rows, position j at row `kvRow(j, rows, keep)`), the position of the first row just added, and which
 * positions the storage holds for a query: `window` (0 = every earlier position; for a ring, its most recent
 * `maxSize - keep`) and `keep` (pinned leading positions, always visible). Pass `window`/`keep` to `attention`
 * (combined with a layer's own sliding window: see `attentionWindow`).
 */
export interface CacheView {
  readonly keys: KvRows;
  readonly values: KvRows;
  /** Absolute position of the first row passed to `updateAndFetch`. */
  readonly startPos: number;
  readonly window: number;
  readonly keep: number;
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
 * Rows are written into the cache's storage by the backend (`writeKv`): never copied to the host per token.
 */
export interface KVCache {
  readonly kind: CacheKind;
  readonly shape: CacheShape;
  /** How the rows are stored. */
  readonly storage: KvStorage;
  /** Number of tokens seen: the absolute position of the next row. */
  readonly offset: number;
  /**
   * Bytes of backend memory the cache holds now: its storage as stored (f32, f16, or packed codes with scales and
   * biases), spare rows of its capacity included. What a memory budget should count for it.
   */
  readonly byteLength: number;
  /**
   * Bytes of the rows a state holds now (`exportState()`, and a prompt-cache file's tensors): the positions the cache
   * holds, in their storage format, without spare rows.
   */
  readonly stateByteLength: number;
  /**
   * Appends `k`, `v` (f32 `[rows, nKvHeads * headDim]`, positions `offset .. offset + rows - 1`) and returns the view
   * attention reads. Allocation (capacity growth) happens here, never in attention, and not at all in steady-state
   * decoding. The returned object may be the same one every call (refilled in place): use it before the next update.
   */
  updateAndFetch(k: Tensor, v: Tensor): CacheView;
  /** Whether `trim` can drop at least one token. */
  readonly isTrimmable: boolean;
  /** The most tokens `trim` can drop now (0 when it cannot trim). */
  trimmable(): number;
  /** Drops the last `n` tokens; returns how many were dropped (0, changing nothing, when it cannot drop `n`). */
  trim(n: number): number;
  /** Releases the cache's backend memory. */
  free(): void;
  /** A new, empty cache of the same kind, shape and parameters on the same backend. */
  makeEmpty(): KVCache;
  /**
   * The most rows the next `updateAndFetch` may take while keeping results independent of how the prompt is split
   * into forward steps (`Infinity` when there is no limit). A larger step still works, but its logits may differ from
   * those of another split: split prefill chunks at this limit (see `maxStepRows` for a list of caches).
   * - standard, rotating: always `Infinity`;
   * - quantized: `start + 1 - offset` until the cache converts, then `Infinity`.
   */
  maxRowsNextStep(): number;
  /**
   * The cache's content (the positions it holds, never spare capacity) in its storage format, copied to the host.
   * Without `buffers` every array is freshly allocated. With `buffers` the arrays are views on `buffers`' reusable
   * slots (no allocation once the slots are large enough): they are only valid until the next export with the same
   * buffers, which overwrites them.
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

  /** A Uint16Array of exactly `length` elements backed by slot `name` (contents unspecified). */
  u16(name: string, length: number): Uint16Array {
    return new Uint16Array(this.#buffer(name, length * 2), 0, length);
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
      throw new RangeError(`StateBuffers: bad length ${bytes} bytes for slot '${name}'`);
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

/** f16 rows `[rows, nKvHeads * headDim]` as stored (bit patterns), row-major. */
export interface HalfRows {
  readonly format: 'f16';
  readonly rows: number;
  readonly data: Uint16Array;
}

/**
 * MLX-affine-quantized rows `[rows, nKvHeads * headDim]`, quantized along each row in groups of `groupSize`:
 * `packed` uint32 `[rows, width * bits / 32]` (element k at bit `bits * k` of the row's little-endian bit stream),
 * `scales` and `biases` f32 `[rows, width / groupSize]`; the value attention reads is `fl(fl(scale * q) + bias)`.
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

export type RowData = DenseRows | HalfRows | QuantizedRows;

/** Bit widths of a quantized KV cache. */
export type KvBits = 4 | 8;
/** Group sizes of a quantized KV cache. */
export type KvGroupSize = 32 | 64;

export interface StandardState {
  readonly kind: 'standard';
  readonly shape: CacheShape;
  readonly offset: number;
  /** `offset` rows (f32 or f16, as the cache stores them): row j is position j. */
  readonly keys: DenseRows | HalfRows;
  readonly values: DenseRows | HalfRows;
}

export interface RotatingState {
  readonly kind: 'rotating';
  readonly shape: CacheShape;
  readonly offset: number;
  readonly maxSize: number;
  readonly keep: number;
  /**
   * `min(offset, maxSize)` rows in time order (in the cache's storage format): positions `0 .. keep - 1`, then the
   * most recent positions `offset - (rows - keep) .. offset - 1` (when `offset <= maxSize`, simply `0 .. offset - 1`).
   */
  readonly keys: RowData;
  readonly values: RowData;
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
  readonly keys: DenseRows | QuantizedRows;
  readonly values: DenseRows | QuantizedRows;
}

/** One layer's exported cache: what `exportState` returns and `importState` takes. */
export type LayerState = StandardState | RotatingState | QuantizedState;
