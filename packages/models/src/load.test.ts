import { syntheticPreset } from '@mnemo/test-utils';
import { describe, expect, it } from 'vitest';
import { loadModel } from './load';

// The native backend reads weights straight from the safetensors files (uploadFromFile), the WASM backend through
// JavaScript buffers: the model's fingerprint (which prompt caches record) must not depend on that (the outputs are
// checked against the float64 references on both backends by @mnemo/lm).
describe('loading through file ranges', () => {
  for (const preset of ['llama-q4g32', 'llama3-f16-tied', 'llama-bf16-headdim', 'gemma3-q4g32'] as const)
    it(`${preset}: the same fingerprint and weights on native (from the file) as on wasm (from buffers)`, async () => {
      const dir = syntheticPreset(preset);
      const native = await loadModel(dir, { backendName: 'native' });
      const wasm = await loadModel(dir, { backendName: 'wasm' });
      try {
        expect(native.backend.name).toBe('native');
        expect(native.fingerprint).toBe(wasm.fingerprint);
      } finally {
        native.backend.dispose();
        wasm.backend.dispose();
      }
    });
});
