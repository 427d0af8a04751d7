import { LM, type PromptCache } from '@mnemo/lm';
import { readReference, syntheticPreset } from '@mnemo/test-utils';
import { describe, expect, it } from 'vitest';
import { chainHashes } from '../cache/prefix';
import { MemoryTier } from './memory-tier';

// The memory tier's bookkeeping, with stand-in caches (the tier only reads `tokens` and `byteLength` and calls
// `free`); here each token takes one byte.
function fake(tokens: number[], freed: number[][]): PromptCache {
  return { tokens, byteLength: tokens.length, free: () => freed.push(tokens) } as unknown as PromptCache;
}
const seq = (start: number, n: number) => Array.from({ length: n }, (_, i) => start + i);

describe('the memory tier', () => {
  it('finds the entry sharing the longest prefix, capped', () => {
    const t = new MemoryTier(1e9, 16);
    const freed: number[][] = [];
    t.put(fake([1, 2, 3, 4, 5], freed));
    t.put(fake([1, 2, 9], freed));
    expect(t.best([1, 2, 3, 4, 7], 4)).toMatchObject({ lcp: 4, length: 5 });
    expect(t.best([1, 2, 3, 4, 5, 6], 5)).toMatchObject({ lcp: 5 });
    expect(t.best([1, 2, 3, 4, 5], 4)).toMatchObject({ lcp: 4 }); // the last prompt token is always computed
    expect(t.best([7], 0)).toBeUndefined();
  });

  it('evicts least recently used entries past its budget, remembers what it evicted, and frees oversized caches', () => {
    const t = new MemoryTier(100, 16);
    const freed: number[][] = [];
    const a = seq(0, 40);
    const b = seq(1000, 40);
    const c = seq(2000, 40);
    t.put(fake(a, freed));
    t.put(fake(b, freed));
    // Using a moves it to the back of the queue.
    t.put(t.take(t.best(a, 39)!.key));
    t.put(fake(c, freed)); // 120 > 100: b goes
    expect(freed).toEqual([b]);
    expect(t.size).toBe(2);
    expect(t.bytes).toBe(80);
    expect(t.evicted(chainHashes(b, 39, 16))).toBe(32);
    expect(t.evicted(chainHashes(a, 39, 16))).toBe(0);
    t.put(fake(seq(5000, 101), freed)); // larger than the whole budget: freed at once
    expect(freed).toHaveLength(2);
    expect(t.size).toBe(2);
    t.clear();
    expect(freed).toHaveLength(4);
    expect(t.bytes).toBe(0);
  });

  it('replaces an entry holding the same tokens', () => {
    const t = new MemoryTier(1000, 16);
    const freed: number[][] = [];
    t.put(fake([1, 2, 3], freed));
    t.put(fake([1, 2, 3], freed));
    expect(t.size).toBe(1);
    expect(freed).toHaveLength(1);
  });
});

describe('the memory tier counts what the caches hold', () => {
  it('gemma3: ring caches on the sliding layers, by the caches’ own accounting (not f32 rows for every layer)', async () => {
    const dir = syntheticPreset('gemma3-bf16');
    const lm = await LM.load(dir, { backendName: 'wasm', threads: 1 });
    try {
      const prompt = readReference(dir).cases[3]!.prompt;
      lm.cachePrompt(prompt, { chatTemplate: false }).free(); // the model's scratch buffers, once
      const before = lm.backend.memoryInUse();
      const pc = lm.cachePrompt(prompt, { chatTemplate: false });
      const held = lm.backend.memoryInUse() - before;
      const t = new MemoryTier(1e9, 16);
      t.put(pc);
      expect(t.bytes).toBe(pc.byteLength);
      expect(t.bytes).toBe(held);
      // 630 tokens prefilled in 512-token steps, which the model computes in passes of 128 rows (`forwardRows`): the
      // global layer holds 768 f32 rows, each sliding layer a ring of the 16-token window grown for one pass (the 15
      // earlier positions the pass still sees + its 128 rows) — not the 6 × 768 f32 rows a per-token estimate would charge
      const { nKvHeads, headDim } = lm.model.cacheShape;
      const row = 2 * nKvHeads * headDim * 4;
      expect(pc.tokens.length).toBeGreaterThan(600);
      expect(pc.caches.map((c) => c.kind)).toEqual([...Array(5).fill('rotating'), 'standard']);
      expect(t.bytes).toBe(768 * row + 5 * (15 + 128) * row);
      // what a saved file of it holds (the disk tier's estimate): every position on the global layer, the window on
      // each sliding one
      expect(pc.stateByteLength).toBe(pc.tokens.length * row + 5 * 16 * row);
      t.clear();
      expect(lm.backend.memoryInUse()).toBe(before);
    } finally {
      lm.free();
    }
  });
});
