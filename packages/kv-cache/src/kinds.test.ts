import { type Backend, QuantizedTensor } from '@mnemo/tensor';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CACHE_STEP } from './buffer';
import type { KVCache } from './contract';
import { QuantizedKVCache } from './quantized';
import { RotatingKVCache } from './rotating';
import { StandardKVCache } from './standard';
import { makeBackend, randomRows, testBackends } from './testing';

// What each kind does beyond the common contract (caches.test.ts): capacity, memory, conversion, trimming, options.

const H = 2;
const D = 32;
const W = H * D;

describe.each(await testBackends())('cache kinds (%s backend)', (name) => {
  let backend: Backend;
  beforeEach(async () => {
    backend = await makeBackend(name);
  });
  afterEach(() => backend.dispose());

  const feed = (c: KVCache, n: number, seed = 1) => {
    const k = randomRows(backend, n, W, seed);
    const v = randomRows(backend, n, W, seed + 1);
    const view = c.updateAndFetch(k.t, v.t);
    backend.free(k.t);
    backend.free(v.t);
    return view;
  };

  it('standard: grows in 256-row steps, keeps rows across growth, trims by moving the offset', () => {
    const c = new StandardKVCache({ backend, nKvHeads: H, headDim: D });
    feed(c, 255);
    expect(c.capacity).toBe(CACHE_STEP);
    feed(c, 2);
    expect(c.capacity).toBe(2 * CACHE_STEP);
    expect(c.trim(100)).toBe(100);
    expect(c.offset).toBe(157);
    expect(c.trim(1000)).toBe(157);
    expect(c.offset).toBe(0);
    c.free();
    expect(backend.memoryInUse()).toBe(0);
  });

  /** Bytes of the arrays of an exported state. */
  const stateBytes = (c: KVCache) => {
    const s = c.exportState();
    let n = 0;
    for (const side of [s.keys, s.values])
      n +=
        side.format === 'quantized'
          ? side.packed.byteLength + side.scales.byteLength + side.biases.byteLength
          : side.data.byteLength;
    return n;
  };

  it('f16 and quantized storage take a half and about a sixth of the f32 memory: no f32 mirror', () => {
    const bytes = (make: () => KVCache) => {
      const before = backend.memoryInUse();
      const c = make();
      expect(c.byteLength).toBe(0);
      feed(c, 300);
      feed(c, 1);
      const used = backend.memoryInUse() - before;
      // the cache's own accounting is what the backend holds for it, and what a state of it holds
      expect(c.byteLength).toBe(used);
      expect(c.stateByteLength).toBe(stateBytes(c));
      c.free();
      return used;
    };
    const base = { backend, nKvHeads: H, headDim: D };
    const f32 = bytes(() => new StandardKVCache(base));
    const f16 = bytes(() => new StandardKVCache({ ...base, dtype: 'f16' }));
    const q8 = bytes(() => new QuantizedKVCache({ ...base, bits: 8, groupSize: 64 }));
    const q4 = bytes(() => new QuantizedKVCache({ ...base, bits: 4, groupSize: 64 }));
    const q4ring = bytes(() => new RotatingKVCache({ ...base, maxSize: 512, storage: 'q4g64' }));
    expect(f32).toBe(2 * 512 * W * 4); // keys and values, 512 rows
    expect(f16).toBe(f32 / 2);
    expect(q8).toBe(2 * 512 * (W + 2 * (W / 64) * 4));
    expect(q4).toBe(2 * 512 * (W / 2 + 2 * (W / 64) * 4));
    expect(q4 / f32).toBeLessThan(0.3);
    expect(q4ring).toBe(q4);
  });

  it('byteLength follows what the backend holds: growth, conversion, a ring at its size, free', () => {
    const base = { backend, nKvHeads: H, headDim: D };
    const held = (c: KVCache, before: number) => {
      expect(c.byteLength).toBe(backend.memoryInUse() - before);
      return c.byteLength;
    };
    let before = backend.memoryInUse();
    const q = new QuantizedKVCache({ ...base, bits: 4, groupSize: 32, start: 10 });
    feed(q, 11);
    expect(held(q, before)).toBe(2 * 256 * W * 4); // exact f32 rows until an update finds offset > start
    expect(q.stateByteLength).toBe(stateBytes(q));
    feed(q, 1);
    expect(q.converted).toBe(true);
    expect([q.stateByteLength, stateBytes(q)]).toEqual([
      2 * 12 * (W / 2 + 2 * (W / 32) * 4),
      q.stateByteLength,
    ]);
    expect(held(q, before)).toBe(2 * 256 * (W / 2 + 2 * (W / 32) * 4));
    q.free();
    expect(backend.memoryInUse()).toBe(before);
    before = backend.memoryInUse();
    const ring = new RotatingKVCache({ ...base, maxSize: 16, storage: 'f16' });
    for (let i = 0; i < 40; i++) feed(ring, 1, i);
    expect(held(ring, before)).toBe(2 * 16 * W * 2); // the window, however long the context
    expect(ring.stateByteLength).toBe(stateBytes(ring));
    ring.free();
    expect(backend.memoryInUse()).toBe(before);
  });

  it('quantized: exact rows until offset > start, then everything quantized on the backend', () => {
    const c = new QuantizedKVCache({ backend, nKvHeads: H, headDim: D, bits: 4, groupSize: 32, start: 5 });
    expect(c.maxRowsNextStep()).toBe(6);
    feed(c, 6);
    expect([c.converted, c.storage, c.maxRowsNextStep()]).toEqual([false, 'f32', Number.POSITIVE_INFINITY]);
    const view = feed(c, 2);
    expect([c.converted, c.storage]).toEqual([true, 'q4g32']);
    expect(view.keys.shape).toEqual([256, W]);
    // trims while it stays above start, refuses below
    expect(c.trimmable()).toBe(2);
    expect(c.trim(3)).toBe(0);
    expect(c.trim(2)).toBe(2);
    expect(c.offset).toBe(6);
    expect(c.isTrimmable).toBe(true);
    c.free();
    // a step straddling start still works: its queries read exact rows, and the cache converts at its end (so it
    // never holds more than start + 1 exact rows; mlx-lm would convert before the next update, to the same rows)
    const s = new QuantizedKVCache({ backend, nKvHeads: H, headDim: D, bits: 8, groupSize: 64, start: 3 });
    const straddling = feed(s, 10);
    expect(straddling.keys).not.toBeInstanceOf(QuantizedTensor); // f32 rows
    expect([s.converted, s.storage]).toEqual([true, 'q8g64']);
    expect(s.exportState().keys.format).toBe('quantized');
    expect(feed(s, 1).keys).toBeInstanceOf(QuantizedTensor);
    s.free();
    expect(backend.memoryInUse()).toBe(0);
  });

  it('rotating: maxSize rows when decoding, maxSize + n - 1 after an n-row step, trim within what is held', () => {
    const c = new RotatingKVCache({ backend, nKvHeads: H, headDim: D, maxSize: 300, keep: 4 });
    feed(c, 255);
    expect(c.capacity).toBe(256);
    feed(c, 2);
    expect(c.capacity).toBe(300); // 256-row steps capped at maxSize
    for (let i = 0; i < 50; i++) feed(c, 1, i);
    expect([c.capacity, c.offset, c.wrapped]).toEqual([300, 307, true]);
    expect(c.trimmable()).toBe(0);
    expect(c.trim(1)).toBe(0);
    const view = feed(c, 20);
    expect(c.capacity).toBe(300 + 20 - 1);
    expect([view.window, view.keep, view.startPos]).toEqual([296, 4, 307]);
    expect(c.trimmable()).toBe(19);
    for (let i = 0; i < 40; i++) feed(c, 1, i);
    expect(c.capacity).toBe(319); // decoding never allocates again
    expect(c.trim(19)).toBe(19);
    expect(c.trim(1)).toBe(0);
    expect(c.heldRows).toBe(300);
    expect(c.exportState().keys.rows).toBe(300);
    c.free();
    // a window smaller than the first step: the ring takes the step, then stays
    const w = new RotatingKVCache({ backend, nKvHeads: H, headDim: D, maxSize: 16 });
    feed(w, 512);
    expect(w.capacity).toBe(512);
    feed(w, 117);
    expect([w.capacity, w.offset, w.exportState().keys.rows]).toEqual([512, 629, 16]);
    w.free();
  });

  it('validates options and updates, naming the problem', () => {
    const base = { backend, nKvHeads: H, headDim: D };
    expect(() => new RotatingKVCache({ ...base, maxSize: 0 })).toThrow(/maxSize/);
    expect(() => new RotatingKVCache({ ...base, maxSize: 4, keep: 4 })).toThrow(/keep/);
    expect(() => new RotatingKVCache({ ...base, maxSize: 4, storage: 'q3g32' as 'f32' })).toThrow(/storage/);
    expect(() => new StandardKVCache({ ...base, dtype: 'bf16' as 'f16' })).toThrow(/dtype/);
    expect(() => new QuantizedKVCache({ ...base, bits: 3 as 4 })).toThrow(/bits/);
    expect(() => new QuantizedKVCache({ ...base, groupSize: 128 as 64 })).toThrow(/groupSize/);
    expect(() => new QuantizedKVCache({ backend, nKvHeads: 1, headDim: 32, groupSize: 64 })).toThrow(
      /not a multiple of groupSize 64/,
    );
    expect(() => new QuantizedKVCache({ backend, nKvHeads: 8, headDim: 12, groupSize: 32 })).toThrow(
      /multiple of 8/,
    );
    expect(() => new QuantizedKVCache({ ...base, start: -1 })).toThrow(/start/);
    const c = new StandardKVCache(base);
    const k = randomRows(backend, 2, W, 1);
    const other = randomRows(backend, 3, W, 2);
    expect(() => c.updateAndFetch(k.t, other.t)).toThrow(/keys have 2 rows but values 3/);
    expect(() =>
      c.updateAndFetch(randomRows(backend, 1, W + 1, 3).t, randomRows(backend, 1, W + 1, 4).t),
    ).toThrow(/must be \[rows, 64\]/);
    expect(() => c.trim(-1)).toThrow(/bad token count/);
    c.free();
  });
});
