import type { Backend } from '@mnemo/tensor';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { importState, makeCaches, trimCaches } from './caches';
import { StandardKVCache } from './standard';
import { bitsEqual, makeBackend, randomRows, readRows, testBackends } from './testing';

const H = 2;
const D = 16;
const W = H * D;

describe.each(await testBackends())('StandardKVCache (%s backend)', (name) => {
  let backend: Backend;
  beforeEach(async () => {
    backend = await makeBackend(name);
  });
  afterEach(() => backend.dispose());

  /** Appends `chunks` (row counts) and checks the view after each step against the host copy. */
  function fill(
    cache: StandardKVCache,
    chunks: number[],
    seed: number,
  ): { keys: Float32Array; values: Float32Array } {
    const total = chunks.reduce((a, b) => a + b, 0);
    const keys = new Float32Array(total * W);
    const values = new Float32Array(total * W);
    let at = 0;
    chunks.forEach((n, i) => {
      const k = randomRows(backend, n, W, seed + 2 * i);
      const v = randomRows(backend, n, W, seed + 2 * i + 1);
      keys.set(k.host, at * W);
      values.set(v.host, at * W);
      const view = cache.updateAndFetch(k.t, v.t);
      backend.free(k.t);
      backend.free(v.t);
      expect(view.startPos).toBe(at);
      at += n;
      expect(cache.offset).toBe(at);
      expect(view.keys.shape).toEqual([cache.capacity, W]);
      expect(cache.capacity % 256).toBe(0);
      expect(cache.capacity).toBeGreaterThanOrEqual(at);
      expect(cache.capacity - at).toBeLessThan(256);
      expect(bitsEqual(readRows(backend, view.keys, 0, at), keys.subarray(0, at * W))).toBe(true);
      expect(bitsEqual(readRows(backend, view.values, 0, at), values.subarray(0, at * W))).toBe(true);
    });
    return { keys, values };
  }

  it.each([1, 255, 256, 257, 511, 512, 513])(
    'grows in 256-row steps, one token at a time, to offset %i',
    (n) => {
      const cache = new StandardKVCache({ backend, nKvHeads: H, headDim: D });
      fill(
        cache,
        Array.from({ length: n }, () => 1),
        10,
      );
      expect(cache.capacity).toBe(Math.ceil(n / 256) * 256);
      cache.free();
    },
  );

  it('grows across steps with multi-row chunks (prefill 255 + 2, then 254 + 1 + 1)', () => {
    const cache = new StandardKVCache({ backend, nKvHeads: H, headDim: D });
    fill(cache, [255, 2, 254, 1, 1], 20);
    expect(cache.offset).toBe(513);
    expect(cache.capacity).toBe(768);
    cache.free();
  });

  it('trims by moving the offset only; new rows overwrite garbage', () => {
    const cache = new StandardKVCache({ backend, nKvHeads: H, headDim: D });
    const { keys } = fill(cache, [300], 30);
    expect(cache.trim(50)).toBe(50);
    expect(cache.offset).toBe(250);
    expect(cache.capacity).toBe(512);
    const k = randomRows(backend, 3, W, 99);
    const v = randomRows(backend, 3, W, 98);
    const view = cache.updateAndFetch(k.t, v.t);
    expect(view.startPos).toBe(250);
    expect(bitsEqual(readRows(backend, view.keys, 0, 250), keys.subarray(0, 250 * W))).toBe(true);
    expect(bitsEqual(readRows(backend, view.keys, 250, 3), k.host)).toBe(true);
    expect(cache.trim(1000)).toBe(253);
    expect(cache.offset).toBe(0);
    expect(() => cache.trim(-1)).toThrow(RangeError);
    cache.free();
  });

  it('exports only the used rows and imports them bitwise', () => {
    const cache = new StandardKVCache({ backend, nKvHeads: H, headDim: D });
    const { keys, values } = fill(cache, [257], 40);
    const state = cache.exportState();
    expect(state.offset).toBe(257);
    expect(state.keys.rows).toBe(257);
    expect(state.keys.data.length).toBe(257 * W);
    expect(bitsEqual(state.keys.data, keys)).toBe(true);
    expect(bitsEqual(state.values.data, values)).toBe(true);

    const copy = importState(backend, state) as StandardKVCache;
    expect(copy.offset).toBe(257);
    expect(bitsEqual(copy.exportState().keys.data, keys)).toBe(true);
    // Both continue identically.
    const k = randomRows(backend, 2, W, 7);
    const v = randomRows(backend, 2, W, 8);
    const a = cache.updateAndFetch(k.t, v.t);
    const b = copy.updateAndFetch(k.t, v.t);
    expect(a.startPos).toBe(b.startPos);
    expect(bitsEqual(readRows(backend, a.keys, 0, 259), readRows(backend, b.keys, 0, 259))).toBe(true);
    expect(bitsEqual(readRows(backend, a.values, 0, 259), readRows(backend, b.values, 0, 259))).toBe(true);
    cache.free();
    copy.free();
  });

  it('frees its memory', () => {
    const before = backend.memoryInUse();
    const cache = new StandardKVCache({ backend, nKvHeads: H, headDim: D });
    fill(cache, [300, 300], 50);
    cache.free();
    expect(backend.memoryInUse()).toBe(before);
  });

  it('rejects bad updates with a message naming the problem', () => {
    const cache = new StandardKVCache({ backend, nKvHeads: H, headDim: D });
    const k = randomRows(backend, 2, W, 1);
    const wrong = randomRows(backend, 2, W + 1, 2);
    expect(() => cache.updateAndFetch(k.t, wrong.t)).toThrow(/values must be \[rows, 32\]/);
    const short = randomRows(backend, 1, W, 3);
    expect(() => cache.updateAndFetch(k.t, short.t)).toThrow(/keys have 2 rows but values 1/);
    expect(cache.offset).toBe(0);
    cache.free();
  });

  it('makeCaches/trimCaches work on every layer', () => {
    const caches = makeCaches(3, { backend, nKvHeads: H, headDim: D });
    for (const c of caches) {
      const k = randomRows(backend, 5, W, 1);
      c.updateAndFetch(k.t, k.t);
    }
    expect(trimCaches(caches, 2)).toBe(2);
    expect(caches.map((c) => c.offset)).toEqual([3, 3, 3]);
    for (const c of caches) c.free();
  });
});
