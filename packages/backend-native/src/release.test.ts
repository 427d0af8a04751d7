import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
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
