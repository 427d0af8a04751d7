import { type Backend, kvRow, type Tensor } from '@mnemo/tensor';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { canTrim, importState, makeCaches, makeLayerCaches, maxStepRows, trimCaches } from './caches';
import type { CacheView, KVCache } from './contract';
import { QuantizedKVCache } from './quantized';
import { RotatingKVCache } from './rotating';
import { StandardKVCache } from './standard';
import {
  asStored,
  bitsEqual,
  makeBackend,
  randomRows,
  statesEqual,
  storedRow,
  testBackends,
} from './testing';

// Every cache kind, every storage: after each update the view holds, at the ring row of every position a query of
// the step sees, exactly the stored form of that position's row; exported states hold what the cache holds and
// continue identically; and attention over the views gives the same bits for any split of the positions into steps.

const H = 2;
const D = 32;
const W = H * D;

type Make = (b: Backend) => KVCache;
const KINDS: [string, Make][] = [
  ['standard f32', (b) => new StandardKVCache({ backend: b, nKvHeads: H, headDim: D })],
  ['standard f16', (b) => new StandardKVCache({ backend: b, nKvHeads: H, headDim: D, dtype: 'f16' })],
  [
    'quantized 8-bit g64',
    (b) => new QuantizedKVCache({ backend: b, nKvHeads: H, headDim: D, bits: 8, groupSize: 64 }),
  ],
  [
    'quantized 4-bit g32, start 7',
    (b) => new QuantizedKVCache({ backend: b, nKvHeads: H, headDim: D, bits: 4, groupSize: 32, start: 7 }),
  ],
  [
    'rotating 8 (window), f32',
    (b) => new RotatingKVCache({ backend: b, nKvHeads: H, headDim: D, maxSize: 8 }),
  ],
  [
    'rotating 10 keep 3, f16',
    (b) => new RotatingKVCache({ backend: b, nKvHeads: H, headDim: D, maxSize: 10, keep: 3, storage: 'f16' }),
  ],
  [
    'rotating 6, q4g32',
    (b) => new RotatingKVCache({ backend: b, nKvHeads: H, headDim: D, maxSize: 6, storage: 'q4g32' }),
  ],
  [
    'rotating 9 keep 1, q8g64',
    (b) =>
      new RotatingKVCache({ backend: b, nKvHeads: H, headDim: D, maxSize: 9, keep: 1, storage: 'q8g64' }),
  ],
];

const PLANS: number[][] = [Array(30).fill(1), [30], [5, 3, 1, 1, 9, 1, 10], [12, 1, 1, 3, 13], [2, 2, 2, 24]];

/** Positions a query at p sees through a view (`Backend.attention`'s V(p)). */
function seen(p: number, v: CacheView): number[] {
  const lo = v.window > 0 ? Math.max(0, p - v.window + 1) : 0;
  const out: number[] = [];
  for (let j = 0; j < Math.min(v.keep, lo); j++) out.push(j);
  for (let j = lo; j <= p; j++) out.push(j);
  return out;
}

describe.each(await testBackends())('every cache kind (%s backend)', (name) => {
  let backend: Backend;
  beforeEach(async () => {
    backend = await makeBackend(name);
  });
  afterEach(() => backend.dispose());

  /** The stored form of every position's rows, as the cache stores it at that time. */
  function expected(cache: KVCache, x: Float32Array): Float32Array {
    return asStored(cache.storage, x);
  }

  it.each(KINDS)('%s: the rows each query sees hold its positions, whatever the split', (_label, make) => {
    for (const plan of PLANS) {
      const cache = make(backend);
      const history: { k: Float32Array; v: Float32Array }[] = [];
      let seed = 1;
      for (const n of plan) {
        const o = cache.offset;
        const k = randomRows(backend, n, W, seed++);
        const v = randomRows(backend, n, W, seed++);
        const wasExact = cache.storage === 'f32';
        const view = cache.updateAndFetch(k.t, v.t);
        backend.free(k.t);
        backend.free(v.t);
        expect(view.startPos).toBe(o);
        expect(cache.offset).toBe(o + n);
        // a quantized cache converts before writing when the update finds offset > start, and at the end of a step
        // that went past start + 1 (whose queries still read exact rows)
        const converted = cache instanceof QuantizedKVCache && wasExact && cache.converted;
        const atEnd = converted && o <= (cache as QuantizedKVCache).start;
        if (atEnd) expect(o + n).toBeGreaterThan((cache as QuantizedKVCache).start + 1);
        for (let i = 0; i < n; i++)
          history.push({
            k: atEnd
              ? k.host.slice(i * W, (i + 1) * W)
              : expected(cache, k.host.subarray(i * W, (i + 1) * W)),
            v: atEnd
              ? v.host.slice(i * W, (i + 1) * W)
              : expected(cache, v.host.subarray(i * W, (i + 1) * W)),
          });
        // a quantized cache that converted before writing holds every earlier row quantized too
        if (converted && !atEnd)
          for (const h of history.slice(0, o)) {
            h.k = expected(cache, h.k);
            h.v = expected(cache, h.v);
          }
        const capacity = view.keys.shape[0]!;
        for (const p of [o, o + n - 1])
          for (const j of seen(p, view)) {
            const row = kvRow(j, capacity, view.keep);
            expect(
              bitsEqual(storedRow(backend, view.keys, row), history[j]!.k),
              `plan ${plan}: key ${j} for ${p}`,
            ).toBe(true);
            expect(
              bitsEqual(storedRow(backend, view.values, row), history[j]!.v),
              `value ${j} for ${p}`,
            ).toBe(true);
          }
        // ... and after a conversion at the end of the step, every row is quantized for the next ones
        if (atEnd) {
          for (const h of history) {
            h.k = expected(cache, h.k);
            h.v = expected(cache, h.v);
          }
        }
      }
      cache.free();
    }
  });

  it.each(KINDS)('%s: attention over the views gives the same bits for every split', (_label, make) => {
    const nHeads = 4;
    const T = 30;
    const q = randomRows(backend, T, nHeads * D, 900);
    const ks = randomRows(backend, T, W, 901);
    const vs = randomRows(backend, T, W, 902);
    const out = backend.alloc('f32', [T, nHeads * D]);
    const results: Float32Array[] = [];
    for (const plan of PLANS) {
      const cache = make(backend);
      let o = 0;
      // chunks split where the cache says (a quantized cache before its conversion), as prefill does
      for (let n0 of plan)
        while (n0 > 0) {
          const n = Math.min(n0, maxStepRows([cache]));
          n0 -= n;
          const rows = (t: Tensor, w: number) => backend.view(t, [n, w], o * w);
          const view = cache.updateAndFetch(rows(ks.t, W), rows(vs.t, W));
          backend.attention(rows(out, nHeads * D), rows(q.t, nHeads * D), view.keys, view.values, {
            startPos: o,
            nHeads,
            nKvHeads: H,
            headDim: D,
            scale: 0.2,
            window: view.window,
            keep: view.keep,
          });
          o += n;
        }
      results.push(backend.read(out));
      cache.free();
    }
    for (const r of results.slice(1)) expect(bitsEqual(r, results[0]!)).toBe(true);
    for (const t of [q.t, ks.t, vs.t, out]) backend.free(t);
  });

  it.each(KINDS)('%s: exported states hold what the cache holds and continue identically', (_label, make) => {
    const cache = make(backend);
    let seed = 50;
    for (const n of [3, 1, 9, 1, 2]) {
      cache.updateAndFetch(randomRows(backend, n, W, seed++).t, randomRows(backend, n, W, seed++).t);
      const state = cache.exportState();
      const copy = importState(backend, state);
      expect([copy.kind, copy.storage, copy.offset]).toEqual([cache.kind, cache.storage, cache.offset]);
      expect(statesEqual(copy.exportState(), state)).toBe(true);
      // both continue with the same rows (a multi-row step, then one row) to the same state
      for (const m of [4, 1]) {
        const k = randomRows(backend, m, W, 700 + seed);
        const v = randomRows(backend, m, W, 800 + seed);
        cache.updateAndFetch(k.t, v.t);
        copy.updateAndFetch(k.t, v.t);
        seed++;
      }
      expect(statesEqual(copy.exportState(), cache.exportState())).toBe(true);
      copy.free();
    }
    const empty = cache.makeEmpty();
    expect([empty.kind, empty.offset]).toEqual([cache.kind, 0]);
    empty.free();
    cache.free();
  });

  it('makeLayerCaches: ring caches of the window on sliding layers, the asked kind on global ones', () => {
    const layers = [
      { window: 4, nKvHeads: H, headDim: D },
      { window: 0, nKvHeads: H, headDim: D },
      { window: 16, nKvHeads: 1, headDim: 64 },
    ];
    const plain = makeLayerCaches(layers, { backend });
    expect(plain.map((c) => [c.kind, c.storage])).toEqual([
      ['rotating', 'f32'],
      ['standard', 'f32'],
      ['rotating', 'f32'],
    ]);
    expect((plain[0] as RotatingKVCache).maxSize).toBe(4);
    expect((plain[2] as RotatingKVCache).keep).toBe(0);
    const q = makeLayerCaches(layers, { backend, kvBits: 4, kvGroupSize: 32, quantizedKvStart: 5 });
    expect(q.map((c) => [c.kind, c.storage])).toEqual([
      ['rotating', 'q4g32'],
      ['quantized', 'f32'],
      ['rotating', 'q4g32'],
    ]);
    const h = makeLayerCaches(layers, { backend, kvDtype: 'f16', maxKvSize: 8 });
    expect(
      h.map((c) => [c.kind, c.storage, (c as RotatingKVCache).maxSize, (c as RotatingKVCache).keep]),
    ).toEqual([
      ['rotating', 'f16', 4, 0],
      ['rotating', 'f16', 8, 4],
      ['rotating', 'f16', 8, 4],
    ]);
    for (const c of [...plain, ...q, ...h]) c.free();
    expect(() => makeLayerCaches(layers, { backend, kvBits: 8, kvDtype: 'f16' })).toThrow(
      /cannot also be stored/,
    );
    expect(() => makeLayerCaches([{ window: 0, nKvHeads: 1, headDim: 12 }], { backend, kvBits: 8 })).toThrow(
      /groupSize|multiple of 8/,
    );
    expect(backend.memoryInUse()).toBe(0);
  });

  it('trimCaches drops all or nothing, and canTrim says whether any can be dropped', () => {
    const caches = makeLayerCaches(
      [
        { window: 4, nKvHeads: H, headDim: D },
        { window: 0, nKvHeads: H, headDim: D },
      ],
      { backend },
    );
    const feed = (n: number, seed: number) => {
      for (const c of caches)
        c.updateAndFetch(randomRows(backend, n, W, seed).t, randomRows(backend, n, W, seed + 1).t);
    };
    feed(3, 1);
    expect(canTrim(caches)).toBe(true);
    expect(trimCaches(caches, 2)).toBe(2);
    feed(1, 3); // offset 2: the ring (capacity 4) has not wrapped
    feed(1, 5);
    feed(1, 7);
    feed(1, 9); // offset 5 > 4: wrapped, no spare rows
    expect(caches[0]!.trimmable()).toBe(0);
    expect(canTrim(caches)).toBe(false);
    expect(trimCaches(caches, 1)).toBe(0);
    expect(caches.map((c) => c.offset)).toEqual([5, 5]);
    feed(6, 11); // a 6-row step needs 4 + 6 - 1 = 9 rows: 5 spare rows past the window
    expect(caches[0]!.trimmable()).toBe(5);
    expect(trimCaches(caches, 5)).toBe(5);
    expect(trimCaches(caches, 1)).toBe(0);
    for (const c of caches) c.free();
  });

  it('keeps the legacy makeCaches for one shape of global layers', () => {
    const caches = makeCaches(3, { backend, nKvHeads: H, headDim: D, kvDtype: 'f16' });
    expect(caches.map((c) => c.storage)).toEqual(['f16', 'f16', 'f16']);
    for (const c of caches) c.free();
    expect(() => makeCaches(0, { backend, nKvHeads: H, headDim: D })).toThrow(/nLayers/);
  });
});
