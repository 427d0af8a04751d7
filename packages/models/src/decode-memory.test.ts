import { Session } from 'node:inspector/promises';
import { makeCaches } from '@mnemo/kv-cache';
import { syntheticPreset } from '@mnemo/test-utils';
import { describe, expect, it } from 'vitest';
import { loadModel } from './load';

interface ProfileNode {
  callFrame: { functionName: string; url: string };
  selfSize: number;
  children: ProfileNode[];
}

/** Bytes allocated (sampled by V8's heap profiler) in calls made under `fn`, while `run` executes. */
async function allocatedUnder(fn: string, run: () => void): Promise<number> {
  const session = new Session();
  session.connect();
  try {
    await session.post('HeapProfiler.startSampling', { samplingInterval: 32 });
    run();
    const { profile } = (await session.post('HeapProfiler.stopSampling')) as {
      profile: { head: ProfileNode };
    };
    let total = 0;
    const walk = (n: ProfileNode, inside: boolean) => {
      const here = inside || n.callFrame.functionName === fn;
      if (here) total += n.selfSize;
      for (const c of n.children) walk(c, here);
    };
    walk(profile.head, false);
    return total;
  } finally {
    session.disconnect();
  }
}

// Decoding a token allocates nothing on the JS heap in steady state: the forward pass reuses its scratch views, the
// cache returns the same view object, the backend ops take preallocated outputs and validate without allocating.
describe('decode steady state', () => {
  for (const preset of [
    'llama-q4g32',
    'qwen2-bias-f32',
    'llama3-f16-tied',
    'gemma2-f32',
    'gemma3-q4g32',
  ] as const) {
    it(`${preset}: a decode step allocates nothing on the JS heap`, async () => {
      const { model, backend } = await loadModel(syntheticPreset(preset), { backendName: 'wasm' });
      const caches = makeCaches(model.numLayers, { backend, ...model.cacheShape });
      model.forward(Int32Array.from([256, 72, 105, 33, 32]), caches);
      const one = new Int32Array(1);
      const logits = new Float32Array(model.vocabSize);
      const step = (i: number) => {
        one[0] = 32 + (i % 90);
        backend.read(model.forward(one, caches), logits);
        // stay inside the cache's first 256-row block: growing it allocates (once per 256 tokens, by design)
        if (caches[0]!.offset >= 200) for (const c of caches) c.trim(c.offset - 5);
      };
      for (let i = 0; i < 3000; i++) step(i);
      // V8 keeps optimizing hot code for a while (which allocates a little): the best of three rounds counts.
      const steps = 1000;
      let bytes = Number.POSITIVE_INFINITY;
      for (let round = 0; round < 3; round++) {
        bytes = Math.min(
          bytes,
          await allocatedUnder('forward', () => {
            for (let i = 0; i < steps; i++) step(i);
          }),
        );
      }
      for (const c of caches) c.free();
      model.free();
      backend.dispose();
      // One small object (≥ 16 bytes) per op is hundreds of bytes per step, one per layer ≥ 32; what remains is V8
      // re-optimizing forward for another model's shapes (a few bytes per step).
      expect(bytes / steps).toBeLessThan(24);
    });
  }
});
