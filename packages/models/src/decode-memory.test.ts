import { getHeapStatistics } from 'node:v8';
import { type CacheKindOptions, makeCaches } from '@mnemo/kv-cache';
import { measureSteadyState } from '@mnemo/tensor/conformance';
import { type SyntheticPreset, syntheticPreset } from '@mnemo/test-utils';
import { describe, expect, it } from 'vitest';
import { loadModel } from './load';

const gc = (globalThis as { gc?: () => void }).gc;
const heapUsed = () => getHeapStatistics().used_heap_size;

/** Steps of the shorter measuring window (see measureSteadyState). */
const STEPS = 500;
/**
 * Bytes a decode step may allocate on the JS heap: less than one small object (16 bytes). The attention options a model
 * passes hold fractional numbers (scale, soft-cap); the backend and kernels check them where they read them instead of
 * passing them on to calls V8 may not inline, so no step boxes a number any more.
 */
const PER_STEP = 8;

// A decode step of a whole model reuses its scratch views, the cache returns the same view object, and the backend
// ops take preallocated outputs and validate without allocating. measureSteadyState tells an allocation per step from
// V8's one-off heap noise (compiling, deoptimizing, collecting), which a loaded machine spreads over many steps.
describe('decode steady state', () => {
  for (const preset of [
    'llama-q4g32',
    'qwen2-bias-f32',
    'llama3-f16-tied',
    'gemma2-f32',
    'gemma3-q4g32',
  ] as const) {
    it(`${preset}: a decode step allocates (almost) nothing on the JS heap`, async () => {
      const { model, backend } = await loadModel(syntheticPreset(preset), { backendName: 'wasm' });
      const caches = makeCaches(model.numLayers, { backend, ...model.cacheShape });
      try {
        model.forward(Int32Array.from([256, 72, 105, 33, 32]), caches);
        const one = new Int32Array(1);
        const logits = new Float32Array(model.vocabSize);
        const step = (i: number) => {
          one[0] = 32 + (i % 90);
          backend.read(model.forward(one, caches), logits);
          // stay inside the cache's first 256-row block: growing it allocates (once per 256 tokens, by design)
          if (caches[0]!.offset >= 200) for (const c of caches) c.trim(c.offset - 5);
        };
        const r = measureSteadyState(step, { heapUsed, gc, iterations: STEPS, budget: PER_STEP * STEPS });
        expect(r.leaks, `${JSON.stringify(r)}`).toBe(false);
      } finally {
        for (const c of caches) c.free();
        model.free();
        backend.dispose();
      }
    });
  }
});

// The same with every cache kind, and with the caches a model builds itself: rows are written into the caches on the
// backend (converted, quantized) and attention reads them there, so no cache allocates per token either; a ring cache,
// once wrapped, keeps its rows in place. The Gemma models get ring caches of their window on sliding layers and, with
// `maxKvSize`, rings on the global ones too (so that nothing grows and nothing needs trimming).
describe('decode steady state with every cache kind', () => {
  const cases: [SyntheticPreset, string, CacheKindOptions][] = [
    ['llama-f32', 'f16', { kvDtype: 'f16' }],
    ['llama-f32', '8-bit', { kvBits: 8, kvGroupSize: 32 }],
    ['llama-f32', '4-bit', { kvBits: 4, kvGroupSize: 32 }],
    ['llama-f32', 'rotating (wrapped)', { maxKvSize: 48 }],
    ['llama-f32', 'rotating 4-bit (wrapped)', { maxKvSize: 48, kvBits: 4, kvGroupSize: 32 }],
    ['gemma2-f32', 'model-built rings (wrapped), f16', { maxKvSize: 48, kvDtype: 'f16' }],
    ['gemma3-bf16', 'model-built rings (wrapped), 8-bit', { maxKvSize: 48, kvBits: 8, kvGroupSize: 64 }],
  ];
  it.each(cases)('%s, %s caches: a decode step allocates (almost) nothing', async (preset, _name, kind) => {
    const { model, backend } = await loadModel(syntheticPreset(preset), {
      backendName: 'wasm',
    });
    const caches = model.makeCaches(kind);
    try {
      model.forward(Int32Array.from([256, 72, 105, 33, 32]), caches);
      const one = new Int32Array(1);
      const logits = new Float32Array(model.vocabSize);
      const rings = caches.every((c) => c.kind === 'rotating');
      const step = (i: number) => {
        one[0] = 32 + (i % 90);
        backend.read(model.forward(one, caches), logits);
        // stay inside the caches' first 256-row block (rings stay at their size by themselves)
        if (!rings && caches[0]!.offset >= 200) for (const c of caches) c.trim(c.offset - 5);
      };
      const r = measureSteadyState(step, { heapUsed, gc, iterations: STEPS, budget: PER_STEP * STEPS });
      expect(r.leaks, `${JSON.stringify(r)}`).toBe(false);
      if (rings) expect(caches.map((c) => c.offset)).toEqual(caches.map(() => caches[0]!.offset));
    } finally {
      for (const c of caches) c.free();
      model.free();
      backend.dispose();
    }
  });
});
