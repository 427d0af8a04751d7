import { makeCaches } from '@mnemo/kv-cache';
import type { Backend } from '@mnemo/tensor';
import { createBackend } from '@mnemo/tensor';
import { syntheticPreset } from '@mnemo/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_FORWARD_ROWS } from './blocks/index';
import { Decoder } from './decoder';
import { loadModel } from './load';

/** A backend that records the shape of every `alloc` (everything else goes straight to the real one). */
function recording(inner: Backend): { backend: Backend; allocs: number[][] } {
  const allocs: number[][] = [];
  const backend = new Proxy(inner, {
    get(target, prop) {
      const v = Reflect.get(target, prop, target) as unknown;
      if (typeof v !== 'function') return v;
      if (prop === 'alloc')
        return (dtype: Parameters<Backend['alloc']>[0], shape: readonly number[]) => {
          allocs.push([...shape]);
          return target.alloc(dtype, shape);
        };
      return (v as (...a: unknown[]) => unknown).bind(target);
    },
  });
  return { backend, allocs };
}

const IDS = Int32Array.from({ length: 40 }, (_, i) => 32 + ((i * 37) % 200));

// The prefill scratch must not grow with rows × vocab (a 128k vocabulary and 512-row steps are 256 MB of logits that
// nobody reads) nor with rows × ffn beyond one MLP chunk; results must not depend on the chunking.
describe('decoder scratch', () => {
  let inner: Backend;
  beforeAll(async () => {
    inner = await createBackend({ backend: 'wasm' });
  });
  afterAll(() => inner.dispose());

  it('allocates [rows, vocab] logits only when allLogits is asked for', async () => {
    const { backend, allocs } = recording(inner);
    const { model } = await loadModel(syntheticPreset('llama-q4g32'), { backend });
    const vocab = model.vocabSize;
    const caches = makeCaches(model.numLayers, { backend, ...model.cacheShape });
    allocs.length = 0;
    const last = backend.read(model.forward(IDS, caches));
    expect(last.length).toBe(vocab);
    const vocabWide = () => allocs.filter((s) => s[s.length - 1] === vocab);
    expect(vocabWide()).toEqual([[1, vocab]]);
    for (const c of caches) c.trim(c.offset);
    const all = backend.read(model.forward(IDS, caches, { allLogits: true }));
    expect(vocabWide()).toEqual([
      [1, vocab],
      [IDS.length, vocab],
    ]);
    // the last row of allLogits is the last-row logits, bit for bit
    expect(all.subarray((IDS.length - 1) * vocab)).toEqual(last);
    for (const c of caches) c.free();
    model.free();
  });

  it('bounds the MLP scratch by mlpChunkRows, with bitwise the same logits for any chunking', async () => {
    const { backend, allocs } = recording(inner);
    const { model } = await loadModel(syntheticPreset('llama-q4g32'), { backend });
    const d = model as Decoder;
    const ffn = d.dims.ffn;
    const run = (m: Decoder) => {
      const caches = makeCaches(m.numLayers, { backend, ...m.cacheShape });
      const first = backend.read(m.forward(IDS.subarray(0, 25), caches, { allLogits: true }));
      const rest = backend.read(m.forward(IDS.subarray(25), caches, { allLogits: true }));
      for (const c of caches) c.free();
      return [first, rest];
    };
    const want = run(d);
    for (const rows of [16, 7, 1]) {
      const chunked = new Decoder(backend, d.dims, d.w, d.weightBytes, { mlpChunkRows: rows });
      allocs.length = 0;
      expect(run(chunked)).toEqual(want);
      const ffnWide = allocs.filter((s) => s[1] === ffn);
      expect(ffnWide.length).toBeGreaterThan(0);
      for (const s of ffnWide) expect(s[0]).toBeLessThanOrEqual(rows);
      // scratch only: the weights are the first decoder's
      (chunked as unknown as { freeScratch(): void }).freeScratch();
    }
    model.free();
  });

  it('runs a long forward in passes of forwardRows rows: bitwise the same logits and caches, scratch for one pass', async () => {
    const { backend, allocs } = recording(inner);
    const { model } = await loadModel(syntheticPreset('llama-q4g32'), { backend });
    const d = model as Decoder;
    const hidden = d.dims.hidden;
    // two forwards: the second one's logits read every cache row the first one wrote
    const run = (m: Decoder) => {
      const caches = makeCaches(m.numLayers, { backend, ...m.cacheShape });
      const first = backend.read(m.forward(IDS.subarray(0, 25), caches));
      const rest = backend.read(m.forward(IDS.subarray(25), caches));
      const offsets = caches.map((c) => c.offset);
      for (const c of caches) c.free();
      return [first, rest, offsets];
    };
    const onePass = new Decoder(backend, d.dims, d.w, d.weightBytes, { forwardRows: 1000 });
    allocs.length = 0;
    const want = run(onePass);
    expect(Math.max(...allocs.filter((s) => s[1] === hidden).map((s) => s[0]!))).toBe(25);
    onePass.freeScratch();
    for (const rows of [16, 7, 1]) {
      const passes = new Decoder(backend, d.dims, d.w, d.weightBytes, { forwardRows: rows });
      allocs.length = 0;
      expect(run(passes)).toEqual(want);
      const wide = allocs.filter((s) => s[1] === hidden);
      expect(wide.length).toBeGreaterThan(0);
      for (const s of wide) expect(s[0]).toBeLessThanOrEqual(rows);
      passes.freeScratch();
    }
    // every row's logits: one pass, whatever forwardRows says
    const passes = new Decoder(backend, d.dims, d.w, d.weightBytes, { forwardRows: 4 });
    const caches = makeCaches(d.numLayers, { backend, ...d.cacheShape });
    expect(backend.read(passes.forward(IDS, caches, { allLogits: true })).length).toBe(
      IDS.length * d.vocabSize,
    );
    for (const c of caches) c.free();
    passes.freeScratch();
    expect(() => new Decoder(backend, d.dims, d.w, d.weightBytes, { forwardRows: 0 })).toThrow(/forwardRows/);
    expect(d.forwardRows).toBe(DEFAULT_FORWARD_ROWS);
    model.free();
  });

  it('chunks of at most MLP_CHUNK_BYTES by default', async () => {
    const { model } = await loadModel(syntheticPreset('llama-q4g32'), { backend: inner });
    const d = model as Decoder;
    expect(d.mlpChunkRows % 64).toBe(0);
    expect(d.mlpChunkRows).toBeGreaterThanOrEqual(64);
    model.free();
  });
});
