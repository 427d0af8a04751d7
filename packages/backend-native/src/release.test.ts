import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { loadAddon } from './addon';
import { createNativeBackend } from './index';

// Resident memory of this process, from /proc (Linux only, like the check).
const MiB = 1 << 20;
function residentMiB(): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  if (!m) throw new Error('no VmRSS in /proc/self/status');
  return Number(m[1]) / 1024;
}

describe.runIf(process.platform === 'linux')('native: freed buffers leave the process', () => {
  // A freed KV cache must not stay resident. Through malloc it would: once glibc has freed a large mapping it raises
  // its mmap threshold, later buffers below it land in the heap, and a buffer allocated after them pins the heap's top,
  // so freeing them leaves holes that stay resident (about a third of them did, measured). 192 MiB written, a small
  // buffer after it, then the 192 MiB freed: the resident size must fall by all of it but 16 MiB, a margin far beyond
  // what else this process does in those few milliseconds (and anything it frees only makes the fall larger).
  it('returns the memory of large tensors to the system when they are freed', async () => {
    const b = await createNativeBackend({ threads: 1 });
    try {
      for (let i = 0; i < 4; i++) b.free(b.alloc('f32', [4 << 20])); // 16 MiB each: raises glibc's threshold
      const src = new Float32Array(2 << 20).fill(1); // 8 MiB
      const before = residentMiB();
      const parts = Array.from({ length: 24 }, () => b.upload('f32', [2 << 20], src)); // 24 × 8 MiB, every page written
      const pin = b.upload('f32', [1024], src.subarray(0, 1024));
      const held = residentMiB();
      expect(held - before).toBeGreaterThan(192 - 64);
      for (const t of parts) b.free(t);
      const after = residentMiB();
      expect(held - after).toBeGreaterThan(192 - 16);
      b.free(pin);
      expect(b.nativeBytes()).toBeLessThan(MiB);
    } finally {
      b.dispose();
    }
  });
});

// Bytes of this process's mappings that carry the huge-page hint (VmFlags "hg", set by madvise(MADV_HUGEPAGE)). The
// flag is on the mapping whether or not the kernel found free huge pages, so this does not depend on how fragmented
// the machine's memory is. (Adjacent mappings with the same flags merge, so this counts bytes, not mappings.)
function hugeHintedBytes(): number {
  let total = 0;
  let size = 0;
  for (const line of readFileSync('/proc/self/smaps', 'utf8').split('\n')) {
    const head = /^([0-9a-f]+)-([0-9a-f]+) /.exec(line);
    if (head) size = Number(BigInt(`0x${head[2]}`) - BigInt(`0x${head[1]}`));
    else if (line.startsWith('VmFlags:') && / hg\b/.test(line)) total += size;
  }
  return total;
}

describe.runIf(process.platform === 'linux')('native: large buffers ask for huge pages', () => {
  // Decode streams every weight once per token; with 2 MiB pages it walks ~500x fewer page tables doing so.
  it('marks buffers of 2 MiB and more (weights, caches) for transparent huge pages, smaller ones not', async () => {
    const b = await createNativeBackend({ threads: 1 });
    try {
      const before = hugeHintedBytes();
      const big = b.upload('f16', [2048, 2048], new Uint16Array(2048 * 2048)); // 8 MiB of weights
      const cache = b.alloc('f32', [1 << 20]); // 4 MiB
      const mid = hugeHintedBytes();
      expect(mid - before).toBeGreaterThanOrEqual(12 * MiB);
      const small = b.alloc('f32', [128 << 10]); // 512 KiB: its own mapping, without the hint
      expect(hugeHintedBytes() - mid).toBeLessThan(512 << 10);
      b.free(big);
      b.free(cache);
      b.free(small);
      expect(hugeHintedBytes()).toBeLessThanOrEqual(mid - 12 * MiB);
    } finally {
      b.dispose();
    }
  });
});

describe('native: buffers are reported to V8 as external memory', () => {
  // V8 sees only its own heap unless told: with ~1 GiB of weights and caches held natively it would never collect on
  // their account, and the young generation it grew while a tokenizer was built would stay committed (~30 MiB of the
  // 1B model's peak RSS). Reported, a cache growing by hundreds of MiB starts a collection, which also shrinks it.
  // `reported()` is what this context has told V8 (its successful napi_adjust_external_memory calls), exact between
  // two synchronous calls. V8's own total (`external()`) counts every report of the process, and a report of 1 GiB can
  // start a collection, whose frees come off that total too (a CI run saw it rise by 8 MiB less than 1 GiB), so of V8's
  // total the test asks only that it hold at least what this context reported.
  // Address space never written costs no memory.
  it('tells V8 of allocations, frees and dispose', () => {
    const GiB = 1024 * MiB;
    const ctx = loadAddon().createContext('scalar', 1, 0);
    let disposed = false;
    try {
      const told = () => ctx.reported();
      const check = (bytes: number) => {
        expect(told()).toBe(bytes);
        expect(ctx.external()).toBeGreaterThanOrEqual(bytes);
      };
      check(0);
      const a = ctx.alloc(GiB);
      check(GiB);
      const small = ctx.alloc(1000);
      check(GiB + 1000);
      ctx.free(a);
      check(1000);
      ctx.alloc(GiB / 2);
      ctx.free(small);
      check(GiB / 2);
      ctx.dispose();
      disposed = true;
      expect(told()).toBe(0);
    } finally {
      if (!disposed) ctx.dispose();
    }
  });
});
