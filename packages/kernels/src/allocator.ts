/** Bytes in a WebAssembly page. */
export const PAGE_BYTES = 65536;
/** wasm32 memories stop at 65536 pages (4 GiB). */
export const MAX_PAGES = 65536;
/** Every allocation starts on this boundary (and reserves a multiple of it). */
export const ALIGN = 16;

/** The grow operation of a memory, injectable for tests. */
export interface GrowableMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}

function formatBytes(n: number): string {
  if (n >= 2 ** 30) return `${(n / 2 ** 30).toFixed(2)} GiB`;
  if (n >= 2 ** 20) return `${(n / 2 ** 20).toFixed(2)} MiB`;
  if (n >= 2 ** 10) return `${(n / 2 ** 10).toFixed(2)} KiB`;
  return `${n} B`;
}

/**
 * First-fit free-list allocator over `[base, memory end)`, growing the memory when nothing fits. Free blocks are
 * kept sorted by address and coalesced with their neighbours on `free`. Live allocations are kept sorted by
 * address too, so the allocation containing any address is found by binary search (argument validation).
 */
export class Allocator {
  /** Free blocks, sorted by start, never adjacent (always coalesced). */
  private readonly freeStart: number[] = [];
  private readonly freeSize: number[] = [];
  /** Live allocations, sorted by start: start, reserved size (multiple of ALIGN), requested size. */
  private readonly liveStart: number[] = [];
  private readonly liveReserved: number[] = [];
  private readonly liveRequested: number[] = [];
  private requestedTotal = 0;
  private readonly base: number;

  constructor(
    private readonly memory: GrowableMemory,
    heapBase: number,
  ) {
    this.base = Math.ceil(heapBase / ALIGN) * ALIGN;
    const end = memory.buffer.byteLength;
    if (end > this.base) {
      this.freeStart.push(this.base);
      this.freeSize.push(end - this.base);
    }
  }

  /** Sum of the sizes callers asked for, over live allocations. */
  allocatedBytes(): number {
    return this.requestedTotal;
  }

  /** Number of live allocations. */
  liveCount(): number {
    return this.liveStart.length;
  }

  /** Number of free blocks (for tests of coalescing). */
  freeBlockCount(): number {
    return this.freeStart.length;
  }

  alloc(bytes: number): number {
    if (typeof bytes !== 'number' || !Number.isInteger(bytes) || bytes < 0) {
      throw new TypeError(`alloc: bytes must be a non-negative integer, got ${String(bytes)}`);
    }
    const cap = MAX_PAGES * PAGE_BYTES;
    const size = Math.max(ALIGN, Math.ceil(bytes / ALIGN) * ALIGN);
    if (this.base + size > cap) {
      throw new RangeError(
        `alloc: cannot allocate ${formatBytes(bytes)}: wasm32 memory is capped at ${formatBytes(cap)} ` +
          `(${formatBytes(this.requestedTotal)} already allocated)`,
      );
    }
    let i = this.findFit(size);
    if (i < 0) {
      this.growFor(size, bytes);
      i = this.findFit(size);
      if (i < 0) throw new Error(`alloc: internal error: no block after growing for ${bytes} bytes`);
    }
    const ptr = this.freeStart[i]!;
    if (this.freeSize[i] === size) {
      this.freeStart.splice(i, 1);
      this.freeSize.splice(i, 1);
    } else {
      this.freeStart[i] = ptr + size;
      this.freeSize[i] = this.freeSize[i]! - size;
    }
    const j = this.upperBound(this.liveStart, ptr);
    this.liveStart.splice(j, 0, ptr);
    this.liveReserved.splice(j, 0, size);
    this.liveRequested.splice(j, 0, bytes);
    this.requestedTotal += bytes;
    return ptr;
  }

  free(ptr: number): void {
    const j = typeof ptr === 'number' ? this.upperBound(this.liveStart, ptr) - 1 : -1;
    if (j < 0 || this.liveStart[j] !== ptr) {
      throw new Error(`free: ${String(ptr)} is not a live allocation (double free or unknown pointer)`);
    }
    const size = this.liveReserved[j]!;
    this.requestedTotal -= this.liveRequested[j]!;
    this.liveStart.splice(j, 1);
    this.liveReserved.splice(j, 1);
    this.liveRequested.splice(j, 1);
    this.insertFree(ptr, size);
  }

  /** Whether `[ptr, ptr + bytes)` (`bytes >= 1`) lies inside the requested bytes of one live allocation. */
  containing(ptr: number, bytes: number): boolean {
    const j = this.upperBound(this.liveStart, ptr) - 1;
    if (j < 0) return false;
    const start = this.liveStart[j]!;
    return ptr + bytes <= start + this.liveRequested[j]!;
  }

  private findFit(size: number): number {
    for (let i = 0; i < this.freeStart.length; i++) if (this.freeSize[i]! >= size) return i;
    return -1;
  }

  /** Grows the memory so that a block of `size` bytes exists at its end (extending a trailing free block). */
  private growFor(size: number, requested: number): void {
    const end = this.memory.buffer.byteLength;
    const n = this.freeStart.length;
    const tail = n > 0 && this.freeStart[n - 1]! + this.freeSize[n - 1]! === end ? this.freeSize[n - 1]! : 0;
    const start = Math.max(end, this.base);
    const need = size - tail + (start - end);
    const pages = Math.ceil(need / PAGE_BYTES);
    const have = end / PAGE_BYTES;
    if (have + pages > MAX_PAGES) {
      throw new RangeError(
        `alloc: cannot allocate ${formatBytes(requested)}: memory would need ${have + pages} pages ` +
          `(${formatBytes((have + pages) * PAGE_BYTES)}) but wasm32 is capped at ${MAX_PAGES} pages ` +
          `(${formatBytes(MAX_PAGES * PAGE_BYTES)}); ${formatBytes(this.requestedTotal)} already allocated`,
      );
    }
    try {
      this.memory.grow(pages);
    } catch (e) {
      throw new RangeError(
        `alloc: cannot allocate ${formatBytes(requested)}: growing memory from ${formatBytes(end)} by ` +
          `${formatBytes(pages * PAGE_BYTES)} failed (${e instanceof Error ? e.message : String(e)})`,
      );
    }
    const newEnd = this.memory.buffer.byteLength;
    if (tail > 0) {
      this.freeSize[n - 1] = this.freeSize[n - 1]! + (newEnd - end);
    } else {
      this.freeStart.push(start);
      this.freeSize.push(newEnd - start);
    }
  }

  private insertFree(ptr: number, size: number): void {
    const i = this.upperBound(this.freeStart, ptr);
    const prev = i - 1;
    const mergesPrev = prev >= 0 && this.freeStart[prev]! + this.freeSize[prev]! === ptr;
    const mergesNext = i < this.freeStart.length && ptr + size === this.freeStart[i];
    if (mergesPrev && mergesNext) {
      this.freeSize[prev] = this.freeSize[prev]! + size + this.freeSize[i]!;
      this.freeStart.splice(i, 1);
      this.freeSize.splice(i, 1);
    } else if (mergesPrev) {
      this.freeSize[prev] = this.freeSize[prev]! + size;
    } else if (mergesNext) {
      this.freeStart[i] = ptr;
      this.freeSize[i] = this.freeSize[i]! + size;
    } else {
      this.freeStart.splice(i, 0, ptr);
      this.freeSize.splice(i, 0, size);
    }
  }

  /** First index whose value is > v. */
  private upperBound(a: readonly number[], v: number): number {
    let lo = 0;
    let hi = a.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (a[mid]! <= v) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}
