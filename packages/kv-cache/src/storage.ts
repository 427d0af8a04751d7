/**
 * Backend storage of a cache's keys or values: rows of `nKvHeads * headDim` values in one storage format, addressed as
 * a ring (Backend API v3's `kvRow`: position j in row j while it fits, then cycling through the rows after the
 * `keep` pinned ones). New rows are written (converted, quantized) by the backend's `writeKv`; attention reads the rows
 * as they are. Host copies happen only for export and import.
 */
import { type Backend, type KvRows, kvRow, QuantizedTensor, type Tensor } from '@mnemo/tensor';
import type { RowData, StateBuffers } from './contract';

/** How a cache stores its rows: f32, f16, or MLX affine 4/8-bit in groups of 32/64 (f32 scales and biases). */
export type KvStorage = 'f32' | 'f16' | 'q4g32' | 'q4g64' | 'q8g32' | 'q8g64';
export const KV_STORAGES: readonly KvStorage[] = ['f32', 'f16', 'q4g32', 'q4g64', 'q8g32', 'q8g64'];

export function isKvStorage(s: unknown): s is KvStorage {
  return typeof s === 'string' && (KV_STORAGES as readonly string[]).includes(s);
}

/** Bits and group size of a quantized storage; null for f32/f16. */
export function quantOf(s: KvStorage): { bits: 4 | 8; groupSize: 32 | 64 } | null {
  if (s === 'f32' || s === 'f16') return null;
  return { bits: s[1] === '4' ? 4 : 8, groupSize: s.endsWith('32') ? 32 : 64 };
}

/** The quantized storage of `bits` and `groupSize`. */
export function quantizedStorage(bits: 4 | 8, groupSize: 32 | 64): KvStorage {
  return `q${bits}g${groupSize}` as KvStorage;
}

/** Bytes of one stored row of `width` values (scales and biases included). */
export function storageRowBytes(s: KvStorage, width: number): number {
  const q = quantOf(s);
  if (q === null) return width * (s === 'f32' ? 4 : 2);
  return (width * q.bits) / 8 + (8 * width) / q.groupSize;
}

/** Throws unless rows of `width` values (heads of `headDim`) can be held in storage `s`. */
export function checkStorageShape(what: string, s: KvStorage, nKvHeads: number, headDim: number): void {
  if (!isKvStorage(s))
    throw new RangeError(`${what}: storage must be one of ${KV_STORAGES.join(', ')}, got ${String(s)}`);
  const q = quantOf(s);
  if (q === null) return;
  const width = nKvHeads * headDim;
  if (width % q.groupSize !== 0)
    throw new RangeError(
      `${what}: row width ${width} (nKvHeads ${nKvHeads} x headDim ${headDim}) is not a multiple of groupSize ${q.groupSize}`,
    );
  if (headDim % 8 !== 0)
    throw new RangeError(`${what}: quantized rows need headDim to be a multiple of 8, got ${headDim}`);
}

/** A run of consecutive positions `[pos, pos + count)`. */
export interface Run {
  readonly pos: number;
  readonly count: number;
}

/** Rows of positions `[pos, pos + count)` under `capacity` rows with `keep` pinned: `[row, count]` pieces in order. */
export function rowPieces(pos: number, count: number, capacity: number, keep: number): [number, number][] {
  const out: [number, number][] = [];
  let j = pos;
  const end = pos + count;
  while (j < end) {
    const row = kvRow(j, capacity, keep);
    const n =
      j < keep
        ? Math.min(end, keep) - j
        : j < capacity
          ? Math.min(end, capacity) - j
          : Math.min(end - j, capacity - row);
    out.push([row, n]);
    j += n;
  }
  return out;
}

/**
 * One side (keys or values) of a cache in backend memory: `capacity` rows of `width` values in `storage`. Rows that
 * hold no position the owner tracks are garbage, never read.
 */
export class KvSide {
  #rows: KvRows | null = null;

  constructor(
    readonly backend: Backend,
    readonly storage: KvStorage,
    readonly width: number,
  ) {}

  get capacity(): number {
    return this.#rows === null ? 0 : this.#rows.shape[0]!;
  }

  /** Bytes of backend memory the storage holds (spare rows included; 0 before the first `resize`). */
  get byteLength(): number {
    if (this.#rows === null) return 0;
    let n = 0;
    for (const p of this.#parts(this.#rows)) n += p.byteLength;
    return n;
  }

  /** The storage attention reads (allocated by an earlier `resize`). */
  get rows(): KvRows {
    if (this.#rows === null) throw new Error('kv-cache: storage used before allocation');
    return this.#rows;
  }

  /** The backend tensors of the storage (one, or packed/scales/biases). */
  #parts(t: KvRows): Tensor[] {
    return t instanceof QuantizedTensor ? [t.packed, t.scales, t.biases] : [t];
  }

  #alloc(capacity: number): KvRows {
    const b = this.backend;
    const q = quantOf(this.storage);
    if (q === null) return b.alloc(this.storage as 'f32' | 'f16', [capacity, this.width]);
    const groups = this.width / q.groupSize;
    const parts: Tensor[] = [];
    try {
      parts.push(b.alloc('u32', [capacity, (this.width * q.bits) / 32]));
      parts.push(b.alloc('f32', [capacity, groups]));
      parts.push(b.alloc('f32', [capacity, groups]));
    } catch (e) {
      for (const p of parts) b.free(p);
      throw e;
    }
    return new QuantizedTensor(
      { ...q, scaleDtype: 'f32' },
      [capacity, this.width],
      parts[0]!,
      parts[1]!,
      parts[2]!,
    );
  }

  /**
   * Re-allocates the storage with `capacity` rows and moves the positions in `held` (runs, all currently held under
   * `keep`) to their rows in the new layout. Allocation happens here, never per token in steady state.
   */
  resize(capacity: number, keep: number, held: readonly Run[]): void {
    const old = this.#rows;
    const next = this.#alloc(capacity);
    if (old !== null) {
      const from = this.#parts(old);
      const to = this.#parts(next);
      const oldCap = old.shape[0]!;
      for (const run of held) {
        // split the run where either layout wraps, so each piece is contiguous in both
        let pos = run.pos;
        const end = run.pos + run.count;
        while (pos < end) {
          const [src, a] = rowPieces(pos, end - pos, oldCap, keep)[0]!;
          const [dst, b] = rowPieces(pos, end - pos, capacity, keep)[0]!;
          const n = Math.min(a, b);
          for (let i = 0; i < to.length; i++) this.backend.copyRows(to[i]!, dst, from[i]!, src, n);
          pos += n;
        }
      }
      this.backend.free(old);
    }
    this.#rows = next;
  }

  /** Options of `writeKv`, refilled in place: decoding allocates nothing per token. */
  readonly #writeOpts = { startPos: 0, keep: 0 };

  /** Writes f32 rows `src` (`[n, width]`) at the rows of positions `startPos ..` (converted by the backend). */
  write(src: Tensor, startPos: number, keep: number): void {
    this.#writeOpts.startPos = startPos;
    this.#writeOpts.keep = keep;
    this.backend.writeKv(this.rows, src, this.#writeOpts);
  }

  /**
   * Copies the rows of the positions in `runs` (time order, all held under `keep`) to the host, as row data in the
   * storage format (into `buffers`' slots `<name>`, `<name>.packed`, ... when given).
   */
  read(runs: readonly Run[], keep: number, buffers: StateBuffers | undefined, name: string): RowData {
    const rows = runs.reduce((n, r) => n + r.count, 0);
    const q = quantOf(this.storage);
    const w = this.width;
    const capacity = this.capacity;
    const parts = rows === 0 ? [] : this.#parts(this.rows);
    const copy = (part: number, out: ArrayBufferView & { BYTES_PER_ELEMENT: number }, partWidth: number) => {
      let at = 0;
      for (const run of runs)
        for (const [row, n] of rowPieces(run.pos, run.count, capacity, keep)) {
          const bytes = n * partWidth * out.BYTES_PER_ELEMENT;
          const dst = new Uint8Array(out.buffer, out.byteOffset + at, bytes);
          this.backend.readBytes(this.backend.view(parts[part]!, [n, partWidth], row * partWidth), dst);
          at += bytes;
        }
    };
    if (q === null) {
      if (this.storage === 'f32') {
        const data = buffers?.f32(name, rows * w) ?? new Float32Array(rows * w);
        copy(0, data, w);
        return { format: 'f32', rows, data };
      }
      const data = buffers?.u16(name, rows * w) ?? new Uint16Array(rows * w);
      copy(0, data, w);
      return { format: 'f16', rows, data };
    }
    const words = (w * q.bits) / 32;
    const groups = w / q.groupSize;
    const packed = buffers?.u32(`${name}.packed`, rows * words) ?? new Uint32Array(rows * words);
    const scales = buffers?.f32(`${name}.scales`, rows * groups) ?? new Float32Array(rows * groups);
    const biases = buffers?.f32(`${name}.biases`, rows * groups) ?? new Float32Array(rows * groups);
    copy(0, packed, words);
    copy(1, scales, groups);
    copy(2, biases, groups);
    return { format: 'quantized', rows, bits: q.bits, groupSize: q.groupSize, packed, scales, biases };
  }

  /** Writes host row data (rows of the positions in `runs`, time order, in this storage's format) into their rows. */
  load(runs: readonly Run[], keep: number, data: RowData): void {
    const capacity = this.capacity;
    const parts = this.#parts(this.rows);
    const arrays: ArrayBufferView[] =
      data.format === 'quantized' ? [data.packed, data.scales, data.biases] : [data.data];
    parts.forEach((p, i) => {
      const pw = p.shape[1]!;
      const a = arrays[i] as Float32Array | Uint16Array | Uint32Array;
      let at = 0;
      for (const run of runs)
        for (const [row, n] of rowPieces(run.pos, run.count, capacity, keep)) {
          this.backend.write(this.backend.view(p, [n, pw], row * pw), a.subarray(at * pw, (at + n) * pw));
          at += n;
        }
    });
  }

  free(): void {
    if (this.#rows !== null) this.backend.free(this.#rows);
    this.#rows = null;
  }
}
