import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeCaches } from '@mnemo/kv-cache';
import { createRegistry, type LoadedModel, loadModel } from '@mnemo/models';
import { openCheckpoint, writeSafetensors } from '@mnemo/safetensors';
import { createBackend } from '@mnemo/tensor';
import { syntheticPreset } from '@mnemo/test-utils';
import { afterAll, describe, expect, it } from 'vitest';
import { hfName, metaLayoutPlugin } from './index';

const tmp = mkdtempSync(join(tmpdir(), 'mnemo-plugin-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Rewrites a synthetic HF checkpoint with Meta's tensor names and `model_type: llama-meta`. */
async function metaCopy(preset: 'llama-f32' | 'llama-q4g32'): Promise<string> {
  const src = syntheticPreset(preset);
  const dir = join(tmp, preset);
  const ck = await openCheckpoint(src);
  const toMeta = new Map<string, string>();
  const metaNames = [
    'tok_embeddings',
    'norm',
    'output',
    ...Array.from({ length: 2 }, (_, i) => [
      `layers.${i}.attention.wq`,
      `layers.${i}.attention.wk`,
      `layers.${i}.attention.wv`,
      `layers.${i}.attention.wo`,
      `layers.${i}.feed_forward.w1`,
      `layers.${i}.feed_forward.w2`,
      `layers.${i}.feed_forward.w3`,
      `layers.${i}.attention_norm`,
      `layers.${i}.ffn_norm`,
    ]).flat(),
  ];
  for (const m of metaNames)
    for (const suffix of ['weight', 'scales', 'biases'])
      toMeta.set(hfName(`${m}.${suffix}`), `${m}.${suffix}`);
  const tensors = [];
  for (const name of ck.names()) {
    const info = ck.info(name);
    tensors.push({
      name: toMeta.get(name) ?? name,
      dtype: info.dtype,
      shape: [...info.shape],
      data: await ck.read(name),
    });
  }
  await ck.close();
  const { mkdirSync } = await import('node:fs');
  mkdirSync(dir, { recursive: true });
  await writeSafetensors(join(dir, 'model.safetensors'), tensors);
  const config = JSON.parse(readFileSync(join(src, 'config.json'), 'utf8'));
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...config, model_type: 'llama-meta' }));
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(src, f), join(dir, f));
  return dir;
}

async function lastLogits(loaded: LoadedModel, ids: number[]): Promise<Float32Array> {
  const { model, backend } = loaded;
  const caches = makeCaches(model.numLayers, { backend, ...model.cacheShape });
  const out = backend.read(model.forward(Int32Array.from(ids), caches));
  for (const c of caches) c.free();
  return out;
}

describe('a third-party plugin loads a model through the public plugin API', () => {
  for (const preset of ['llama-f32', 'llama-q4g32'] as const) {
    it(`${preset} in Meta's layout computes what the built-in llama computes on the HF layout`, async () => {
      const dir = await metaCopy(preset);
      const backend = await createBackend({ backend: 'wasm' });
      const registry = createRegistry();
      await expect(loadModel(dir, { backend, registry })).rejects.toThrow(/unknown model_type "llama-meta"/);
      registry.register(metaLayoutPlugin);
      const viaPlugin = await loadModel(dir, { backend, registry });
      const builtIn = await loadModel(syntheticPreset(preset), { backend });
      const ids = [256, 72, 105, 33, 32, 87];
      expect(await lastLogits(viaPlugin, ids)).toEqual(await lastLogits(builtIn, ids));
      // the fingerprint covers the weights the plugin read (same values, other names: another identity)
      expect(viaPlugin.fingerprint).toMatch(/^[0-9a-f]{64}$/);
      expect(viaPlugin.fingerprint).not.toBe(builtIn.fingerprint);
      viaPlugin.model.free();
      builtIn.model.free();
      backend.dispose();
    });
  }

  it('refuses a plugin written for another plugin API version', () => {
    const registry = createRegistry();
    expect(() => registry.register({ ...metaLayoutPlugin, apiVersion: 1 as unknown as 2 })).toThrow(
      /plugin API 1/,
    );
  });
});
