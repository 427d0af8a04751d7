import type { Backend } from '@mnemo/tensor';
import { randomF32 } from '@mnemo/test-utils';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { importState, makeCaches, maxStepRows, trimCaches } from './caches';
import type { KvBits, KvGroupSize } from './contract';
import { dequantizeRows, quantizeRows } from './quant';
import { QuantizedKVCache } from './quantized';
import { bitsEqual, makeBackend, readRows, testBackends } from './testing';

const H = 2;
const D = 32;
const W = H * D;

function dq(bits: KvBits, groupSize: KvGroupSize, rows: Float32Array): Float32Array {
  const n = rows.length / W;
  return dequantizeRows(bits, groupSize, n, W, quantizeRows(bits, groupSize, n, W, rows));
}

describe.each(await testBackends())('QuantizedKVCache (%s backend)', (name) => {
  let backend: Backend;
  beforeEach(async () => {
    backend = await makeBackend(name);
  });
  afterEach(() => backend.dispose());

  const data = (total: number, seed: number) => ({
    keys: randomF32(total * W, seed, 3),
    values: randomF32(total * W, seed + 1, 3),
  });

  /**
   * Feeds rows `[0, total)` in steps given by `split(offset)` (capped by the cache's own limit when `respect`), and
   * returns, for each position p, the key and value rows `[0, p]` visible to the query at p.
   */
  function run(
    cache: QuantizedKVCache,
    d: { keys: Float32Array; values: Float32Array },
    total: number,
    split: (o: number) => number,
    respect = true,
  ) {
    const seen: { keys: Float32Array; values: Float32Array }[] = [];
    while (cache.offset < total) {
      const o = cache.offset;
      let n = Math.min(split(o), total - o);
      if (respect) n = Math.min(n, cache.maxRowsNextStep());
      const k = backend.upload('f32', [n, W], d.keys.subarray(o * W, (o + n) * W));
      const v = backend.upload('f32', [n, W], d.values.subarray(o * W, (o + n) * W));
      const view = cache.updateAndFetch(k, v);
      backend.free(k);
      backend.free(v);
      expect(view.startPos).toBe(o);
      for (let p = o; p < o + n; p++)
        seen.push({
          keys: readRows(backend, view.keys, 0, p + 1),
          values: readRows(backend, view.values, 0, p + 1),
        });
    }
    return seen;
  }

  it.each([
    [8, 64],
    [8, 32],
    [4, 64],
    [4, 32],
  ] as const)(
    'q%ig%i: exact until offset > start, then reads exactly dequantize(quantize(row))',
    (bits, groupSize) => {
      const start = 5;
      const cache = new QuantizedKVCache({ backend, nKvHeads: H, headDim: D, bits, groupSize, start });
      const d = data(20, 1);
      const seen = run(cache, d, 20, () => 3);
      for (let p = 0; p < 20; p++) {
        const rows = d.keys.subarray(0, (p + 1) * W);
        const expected = p <= start ? rows : dq(bits, groupSize, rows);
        expect(bitsEqual(seen[p]!.keys, expected)).toBe(true);
        const vrows = d.values.subarray(0, (p + 1) * W);
        expect(bitsEqual(seen[p]!.values, p <= start ? vrows : dq(bits, groupSize, vrows))).toBe(true);
      }
      expect(cache.converted).toBe(true);
      // The quantized data is exported; it dequantizes to the mirror.
      const state = cache.exportState();
      expect(state.keys.format).toBe('quantized');
      if (state.keys.format === 'quantized') {
        expect(state.keys.packed.length).toBe((20 * W * bits) / 32);
        expect(state.keys.scales.length).toBe((20 * W) / groupSize);
        expect(
          bitsEqual(dequantizeRows(bits, groupSize, 20, W, state.keys), dq(bits, groupSize, d.keys)),
        ).toBe(true);
      }
      cache.free();
    },
  );

  it('gives every position the same rows for any split that respects maxRowsNextStep', () => {
    const total = 40;
    const d = data(total, 2);
    const splits: ((o: number) => number)[] = [
      () => 1,
      () => 1000,
      (o) => (o % 7) + 1,
      (o) => (o < 3 ? 3 : 13),
    ];
    let reference: ReturnType<typeof run> | undefined;
    for (const split of splits) {
      const cache = new QuantizedKVCache({
        backend,
        nKvHeads: H,
        headDim: D,
        bits: 4,
        groupSize: 32,
        start: 9,
      });
      const seen = run(cache, d, total, split);
      if (!reference) reference = seen;
      else
        for (let p = 0; p < total; p++) {
          expect(bitsEqual(seen[p]!.keys, reference[p]!.keys)).toBe(true);
          expect(bitsEqual(seen[p]!.values, reference[p]!.values)).toBe(true);
        }
      cache.free();
    }
  });

  it('a straddling step still works (as mlx-lm: converts at the next update)', () => {
    const cache = new QuantizedKVCache({ backend, nKvHeads: H, headDim: D, start: 4 });
    const d = data(12, 3);
    run(cache, d, 10, () => 10, false);
    expect(cache.converted).toBe(false);
    expect(cache.maxRowsNextStep()).toBe(Number.POSITIVE_INFINITY);
    run(cache, d, 12, () => 1);
    expect(cache.converted).toBe(true);
    cache.free();
  });

  it('round-trips its state bitwise, before and after conversion', () => {
    for (const total of [3, 17]) {
      const cache = new QuantizedKVCache({
        backend,
        nKvHeads: H,
        headDim: D,
        bits: 8,
        groupSize: 64,
        start: 6,
      });
      const d = data(total + 2, 4);
      run(cache, d, total, () => 4);
      const state = cache.exportState();
      expect(state.keys.format).toBe(total > 7 ? 'quantized' : 'f32');
      const copy = importState(backend, state) as QuantizedKVCache;
      expect(copy.converted).toBe(cache.converted);
      const a = run(cache, d, total + 2, () => 2);
      const b = run(copy, d, total + 2, () => 2);
      for (let i = 0; i < a.length; i++) {
        expect(bitsEqual(a[i]!.keys, b[i]!.keys)).toBe(true);
        expect(bitsEqual(a[i]!.values, b[i]!.values)).toBe(true);
      }
      cache.free();
      copy.free();
    }
  });

  it('trims while it stays above start once converted, and refuses below', () => {
    const caches = makeCaches(2, { backend, nKvHeads: H, headDim: D, kvBits: 8, quantizedKvStart: 4 });
    expect(caches[0]).toBeInstanceOf(QuantizedKVCache);
    const d = data(12, 5);
    for (const c of caches) run(c as QuantizedKVCache, d, 12, () => 3);
    expect(maxStepRows(caches)).toBe(Number.POSITIVE_INFINITY);
    expect(trimCaches(caches, 3)).toBe(3);
    expect(trimCaches(caches, 5)).toBe(0); // would leave 4 <= start: those rows can no longer be exact
    expect(caches.map((c) => c.offset)).toEqual([9, 9]);
    expect(trimCaches(caches, 4)).toBe(4);
    expect(caches.map((c) => c.offset)).toEqual([5, 5]);
    for (const c of caches) c.free();
  });

  it('validates its options', () => {
    expect(() => new QuantizedKVCache({ backend, nKvHeads: 1, headDim: 48, groupSize: 32 })).toThrow(
      /multiple of groupSize/,
    );
    expect(() => new QuantizedKVCache({ backend, nKvHeads: 1, headDim: 64, bits: 3 as KvBits })).toThrow(
      /bits/,
    );
  });
});
