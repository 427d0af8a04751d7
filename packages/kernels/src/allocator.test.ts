import { describe, expect, it } from 'vitest';
import { Allocator, type GrowableMemory, MAX_PAGES, PAGE_BYTES } from './allocator';
import { loadKernels } from './index';

/** A fake memory that only tracks its size (pages are never touched). */
class FakeMemory implements GrowableMemory {
  private size: number;
  grows = 0;
  constructor(pages: number) {
    this.size = pages * PAGE_BYTES;
  }
  get buffer(): ArrayBuffer {
    return { byteLength: this.size } as ArrayBuffer;
  }
  grow(pages: number): number {
    const old = this.size / PAGE_BYTES;
    if (old + pages > MAX_PAGES)
      throw new RangeError('WebAssembly.Memory.grow(): Maximum memory size exceeded');
    this.size += pages * PAGE_BYTES;
    this.grows++;
    return old;
  }
}

describe('Allocator', () => {
  it('returns 16-byte aligned, non-overlapping blocks above the heap base', () => {
    const a = new Allocator(new FakeMemory(2), 1000);
    const ptrs = [1, 17, 0, 100, 33].map((n) => [a.alloc(n), n] as const);
    for (const [p] of ptrs) {
      expect(p % 16).toBe(0);
      expect(p).toBeGreaterThanOrEqual(1008);
    }
    const sorted = [...ptrs].sort((x, y) => x[0] - y[0]);
    for (let i = 1; i < sorted.length; i++) {
      expect(sorted[i]![0]).toBeGreaterThanOrEqual(sorted[i - 1]![0] + Math.max(1, sorted[i - 1]![1]));
    }
    expect(a.allocatedBytes()).toBe(1 + 17 + 0 + 100 + 33);
  });

  it('reuses freed space first-fit and coalesces neighbours', () => {
    const a = new Allocator(new FakeMemory(1), 0);
    const p1 = a.alloc(100);
    const p2 = a.alloc(100);
    const p3 = a.alloc(100);
    const p4 = a.alloc(100);
    expect(a.freeBlockCount()).toBe(1);
    a.free(p2);
    expect(a.freeBlockCount()).toBe(2);
    expect(a.alloc(50)).toBe(p2); // first fit
    a.free(p2);
    a.free(p3);
    expect(a.freeBlockCount()).toBe(2); // p2+p3 merged
    a.free(p1);
    expect(a.freeBlockCount()).toBe(2); // p1+p2+p3 merged
    const big = a.alloc(330); // fits in p1..p3 (3 × 112 = 336 bytes)
    expect(big).toBe(p1);
    a.free(big);
    a.free(p4);
    expect(a.freeBlockCount()).toBe(1); // everything back to one block
    expect(a.allocatedBytes()).toBe(0);
    expect(a.liveCount()).toBe(0);
  });

  it('grows the memory when nothing fits, extending a trailing free block', () => {
    const m = new FakeMemory(1);
    const a = new Allocator(m, 0);
    const p = a.alloc(60_000);
    const q = a.alloc(3 * PAGE_BYTES);
    expect(m.grows).toBe(1);
    expect(q).toBeGreaterThanOrEqual(p + 60_000);
    expect(m.buffer.byteLength).toBeGreaterThanOrEqual(q + 3 * PAGE_BYTES);
    a.free(q);
    a.free(p);
    expect(a.freeBlockCount()).toBe(1);
    expect(a.alloc(m.buffer.byteLength)).toBe(0 + 0); // needs one more page: grows, starts at base
  });

  it('throws on double free and unknown pointers', () => {
    const a = new Allocator(new FakeMemory(1), 0);
    const p = a.alloc(10);
    a.free(p);
    expect(() => a.free(p)).toThrow(/double free or unknown pointer/);
    const q = a.alloc(32);
    expect(() => a.free(q + 16)).toThrow(/not a live allocation/);
    expect(() => a.free(123456)).toThrow(Error);
  });

  it('refuses allocations beyond 4 GiB with a RangeError naming the sizes', () => {
    const a = new Allocator(new FakeMemory(MAX_PAGES - 2), 0);
    a.alloc((MAX_PAGES - 3) * PAGE_BYTES);
    expect(() => a.alloc(5 * 2 ** 30)).toThrow(RangeError);
    expect(() => a.alloc(5 * 2 ** 30)).toThrow(/5\.00 GiB.*4\.00 GiB/);
    expect(() => a.alloc(4 * PAGE_BYTES)).toThrow(/65536 pages/);
    expect(() => a.alloc(-1)).toThrow(TypeError);
    expect(() => a.alloc(1.5)).toThrow(TypeError);
  });

  it('finds the live allocation containing a range', () => {
    const a = new Allocator(new FakeMemory(1), 0);
    const p = a.alloc(100);
    const q = a.alloc(50);
    expect(a.containing(p, 100)).toBe(true);
    expect(a.containing(p + 40, 60)).toBe(true);
    expect(a.containing(p + 40, 61)).toBe(false); // past the requested bytes
    expect(a.containing(q + 49, 1)).toBe(true);
    a.free(q);
    expect(a.containing(q, 1)).toBe(false);
  });
});

describe('Kernels memory', () => {
  it('grows the real memory and refreshes bytes()', async () => {
    const k = await loadKernels();
    const before = k.memory.buffer.byteLength;
    const b1 = k.bytes();
    expect(k.bytes() === b1).toBe(true); // cached
    const p = k.alloc(before + 5 * PAGE_BYTES);
    expect(k.memory.buffer.byteLength).toBeGreaterThan(before);
    const b2 = k.bytes();
    expect(b2 === b1).toBe(false);
    expect(b2.length).toBe(k.memory.buffer.byteLength);
    k.f32(p, 4).set([1, 2, 3, 4]);
    expect(Array.from(k.f32(p, 4))).toEqual([1, 2, 3, 4]);
    expect(k.allocatedBytes()).toBe(before + 5 * PAGE_BYTES);
    k.free(p);
    expect(k.allocatedBytes()).toBe(0);
    expect(() => k.free(p)).toThrow(/double free/);
  });

  it('keeps the internal scratch out of allocatedBytes() and out of reach of free()', async () => {
    const k = await loadKernels();
    const n = 4096;
    const q = k.alloc(n * 4);
    const kv = k.alloc(n * 4 * 4000);
    const out = k.alloc(n * 4);
    const before = k.allocatedBytes();
    const pages = k.memory.buffer.byteLength;
    // 4000 positions × 32 heads of scores: the scratch grows (and may grow the memory)
    k.attention(out, q, kv, kv, 1, 3999, 32, 32, 128, 0.1, 0);
    expect(k.allocatedBytes()).toBe(before);
    expect(k.memory.buffer.byteLength).toBeGreaterThanOrEqual(pages);
    // a pointer that is not the start of a user allocation (e.g. inside the scratch) cannot be freed
    expect(() => k.free(out + n * 4 + 64)).toThrow(/not a live allocation/);
    for (const p of [q, kv, out]) k.free(p);
    expect(k.allocatedBytes()).toBe(0);
  });

  it('works at the 4 GiB cap (views, pointers above 2^31, the ids check)', async () => {
    const k = await loadKernels();
    // fill the memory up to its last page (only touched pages are committed)
    const big = k.alloc(2 ** 32 - k.memory.buffer.byteLength - 4 * PAGE_BYTES);
    const table = k.alloc(10 * 4 * 4);
    const ids = k.alloc(2 * 4);
    const out = k.alloc(2 * 4 * 4);
    const fillers: number[] = [];
    for (;;) {
      try {
        fillers.push(k.alloc(PAGE_BYTES));
      } catch (e) {
        expect(e).toBeInstanceOf(RangeError);
        break;
      }
    }
    expect(k.memory.buffer.byteLength).toBe(2 ** 32);
    expect(ids).toBeGreaterThan(2 ** 31);
    expect(k.bytes().length).toBe(2 ** 32);
    k.f32(table, 40).set(Array.from({ length: 40 }, (_, i) => i));
    k.i32(ids, 2).set([9, 2]);
    k.embedding(out, table, ids, 2, 10, 4, 'f32');
    expect(Array.from(k.f32(out, 8))).toEqual([36, 37, 38, 39, 8, 9, 10, 11]);
    k.i32(ids, 2)[1] = 10;
    expect(() => k.embedding(out, table, ids, 2, 10, 4, 'f32')).toThrow(/ids\[1\] = 10/);
    for (const p of [big, table, ids, out, ...fillers]) k.free(p);
    expect(k.allocatedBytes()).toBe(0);
  });

  it('gives each loadKernels() call its own instance and memory', async () => {
    const a = await loadKernels();
    const b = await loadKernels();
    expect(a.memory).not.toBe(b.memory);
    const pa = a.alloc(16);
    expect(b.allocatedBytes()).toBe(0);
    a.free(pa);
  });
});
