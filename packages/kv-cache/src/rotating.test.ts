import type { Backend } from '@mnemo/tensor';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { canTrim, importState, makeCaches, maxStepRows, trimCaches } from './caches';
import { RotatingKVCache } from './rotating';
import { bitsEqual, makeBackend, randomRows, readRows, testBackends } from './testing';

const H = 2;
const D = 4;
const W = H * D;

/** Host model: every row ever appended, by position. */
class History {
  keys: Float32Array[] = [];
  values: Float32Array[] = [];
  rows(which: 'keys' | 'values', positions: number[]): Float32Array {
    const out = new Float32Array(positions.length * W);
    for (const [i, p] of positions.entries()) out.set(this[which][p]!, i * W);
    return out;
  }
}

function range(a: number, b: number): number[] {
  return Array.from({ length: Math.max(0, b - a) }, (_, i) => a + i);
}

describe.each(await testBackends())('RotatingKVCache (%s backend)', (name) => {
  let backend: Backend;
  beforeEach(async () => {
    backend = await makeBackend(name);
  });
  afterEach(() => backend.dispose());

  /** Appends `n` rows and checks the view against the host model. */
  function step(cache: RotatingKVCache, hist: History, n: number, seed: number): void {
    const { maxSize, keep } = cache;
    const o = cache.offset;
    const k = randomRows(backend, n, W, seed);
    const v = randomRows(backend, n, W, seed + 5000);
    for (let i = 0; i < n; i++) {
      hist.keys.push(k.host.slice(i * W, (i + 1) * W));
      hist.values.push(v.host.slice(i * W, (i + 1) * W));
    }
    const view = cache.updateAndFetch(k.t, v.t);
    backend.free(k.t);
    backend.free(v.t);
    let positions: number[];
    if (o + n <= maxSize) {
      positions = range(0, o + n);
      expect(view.startPos).toBe(o);
    } else {
      const old = Math.min(o, maxSize - 1);
      const sinks = Math.min(keep, o);
      const recent = old - sinks;
      positions = [...range(0, sinks), ...range(o - recent, o), ...range(o, o + n)];
      expect(view.startPos).toBe(old);
    }
    expect(cache.offset).toBe(o + n);
    expect(bitsEqual(readRows(backend, view.keys, 0, positions.length), hist.rows('keys', positions))).toBe(
      true,
    );
    expect(
      bitsEqual(readRows(backend, view.values, 0, positions.length), hist.rows('values', positions)),
    ).toBe(true);
  }

  function heldPositions(cache: RotatingKVCache): number[] {
    const o = cache.offset;
    if (o <= cache.maxSize) return range(0, o);
    return [...range(0, cache.keep), ...range(o - (cache.maxSize - cache.keep), o)];
  }

  it.each([
    [8, 2, [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]],
    [8, 2, [3, 4, 5, 1, 1, 7, 1, 20, 1, 2]],
    [8, 0, [5, 3, 1, 1, 9, 1, 1]],
    [6, 5, [2, 2, 2, 1, 1, 1, 4]],
    [5, 1, [12, 1, 1, 3]],
  ])('maxSize %i keep %i, steps %j: views hold sinks + recent rows + new rows', (maxSize, keep, steps) => {
    const cache = new RotatingKVCache({ backend, nKvHeads: H, headDim: D, maxSize, keep });
    const hist = new History();
    steps.forEach((n, i) => {
      step(cache, hist, n, 100 + i);
      // Export/import at every point: the copy holds the same rows and continues identically.
      const state = cache.exportState();
      const held = heldPositions(cache);
      expect(state.keys.rows).toBe(held.length);
      expect(bitsEqual(state.keys.data, hist.rows('keys', held))).toBe(true);
      expect(bitsEqual(state.values.data, hist.rows('values', held))).toBe(true);
      // The copy continues exactly as the model says the original would.
      const copy = importState(backend, state) as RotatingKVCache;
      const fork = new History();
      fork.keys = [...hist.keys];
      fork.values = [...hist.values];
      step(copy, fork, 2, 7000 + i);
      step(copy, fork, 1, 8000 + i);
      copy.free();
    });
    cache.free();
  });

  it('one row at a time after wrapping, every query sees exactly maxSize rows', () => {
    const cache = new RotatingKVCache({ backend, nKvHeads: H, headDim: D, maxSize: 10, keep: 3 });
    const hist = new History();
    for (let i = 0; i < 40; i++) {
      expect(cache.maxRowsNextStep()).toBe(i < 10 ? 10 - i : 1);
      step(cache, hist, 1, i);
    }
    cache.free();
  });

  it('is the standard cache within the window, growing in 256-row steps capped at maxSize', () => {
    const cache = new RotatingKVCache({ backend, nKvHeads: H, headDim: D, maxSize: 300, keep: 4 });
    const hist = new History();
    step(cache, hist, 255, 1);
    step(cache, hist, 2, 2);
    const view = cache.updateAndFetch(randomRows(backend, 43, W, 3).t, randomRows(backend, 43, W, 4).t);
    expect(view.keys.shape[0]).toBe(300);
    expect(cache.offset).toBe(300);
    cache.free();
  });

  it('trims before wrapping, then fails closed', () => {
    const cache = new RotatingKVCache({ backend, nKvHeads: H, headDim: D, maxSize: 8, keep: 2 });
    const hist = new History();
    step(cache, hist, 6, 1);
    expect(cache.isTrimmable).toBe(true);
    expect(cache.trim(2)).toBe(2);
    expect(cache.offset).toBe(4);
    hist.keys.length = 4;
    hist.values.length = 4;
    step(cache, hist, 4, 2);
    expect(cache.offset).toBe(8);
    expect(cache.isTrimmable).toBe(true); // full, nothing evicted yet
    step(cache, hist, 1, 3);
    expect(cache.wrapped).toBe(true);
    expect(cache.isTrimmable).toBe(false);
    expect(cache.trim(1)).toBe(0);
    expect(cache.offset).toBe(9);
    step(cache, hist, 1, 4); // still consistent
    cache.free();
  });

  it('trimCaches/canTrim refuse a wrapped set of layers', () => {
    const caches = makeCaches(2, { backend, nKvHeads: H, headDim: D, maxKvSize: 4, keep: 1 });
    expect(caches[0]).toBeInstanceOf(RotatingKVCache);
    for (const c of caches) c.updateAndFetch(randomRows(backend, 3, W, 1).t, randomRows(backend, 3, W, 2).t);
    expect(maxStepRows(caches)).toBe(1);
    expect(canTrim(caches)).toBe(true);
    expect(trimCaches(caches, 1)).toBe(1);
    for (const c of caches) c.updateAndFetch(randomRows(backend, 3, W, 1).t, randomRows(backend, 3, W, 2).t);
    expect(canTrim(caches)).toBe(false);
    expect(trimCaches(caches, 1)).toBe(0);
    expect(caches.map((c) => c.offset)).toEqual([5, 5]);
  });

  it('validates its options', () => {
    expect(() => new RotatingKVCache({ backend, nKvHeads: H, headDim: D, maxSize: 0 })).toThrow(/maxSize/);
    expect(() => new RotatingKVCache({ backend, nKvHeads: H, headDim: D, maxSize: 4, keep: 4 })).toThrow(
      /keep/,
    );
  });
});
