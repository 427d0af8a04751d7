import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeCaches } from '@mnemo/kv-cache';
import { createRegistry, loadModel } from '@mnemo/models';
import { openCheckpoint, writeSafetensors } from '@mnemo/safetensors';
import { type Backend, createBackend } from '@mnemo/tensor';
import { type RefConfig, randomF32, referenceLogits, syntheticPreset } from '@mnemo/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { olmo2Plugin } from './index';

const tmp = mkdtempSync(join(tmpdir(), 'mnemo-olmo2-'));
const base = syntheticPreset('llama-f32');
const IDS = [256, 84, 104, 101, 32, 113, 117, 105, 99, 107, 32, 98, 114, 111, 119, 110, 32, 102, 111, 120];
let backend: Backend;
let dir: string;
const W = new Map<string, Float32Array>();

// An OLMo 2 checkpoint made from the llama-f32 preset's weights: no input_layernorm, its post_attention_layernorm
// now applied after attention, plus random post_feedforward_layernorm and whole-projection q_norm / k_norm weights.
beforeAll(async () => {
  backend = await createBackend({ backend: 'wasm' });
  const ck = await openCheckpoint(base);
  const tensors: { name: string; dtype: 'F32'; shape: number[]; data: Uint8Array }[] = [];
  const add = (name: string, shape: number[], data: Float32Array) => {
    W.set(name, data);
    tensors.push({ name, dtype: 'F32', shape, data: new Uint8Array(data.buffer) });
  };
  for (const n of ck.names()) {
    if (n.endsWith('input_layernorm.weight')) continue;
    add(n, [...ck.info(n).shape], new Float32Array((await ck.read(n)).slice().buffer));
  }
  await ck.close();
  for (let l = 0; l < 2; l++) {
    const p = `model.layers.${l}`;
    const around1 = (n: number, seed: number) => randomF32(n, seed, 0.4).map((v) => 1 + v);
    add(`${p}.self_attn.q_norm.weight`, [64], around1(64, 10 * l + 1));
    add(`${p}.self_attn.k_norm.weight`, [32], around1(32, 10 * l + 2));
    add(`${p}.post_feedforward_layernorm.weight`, [64], around1(64, 10 * l + 3));
  }
  dir = join(tmp, 'olmo2');
  mkdirSync(dir, { recursive: true });
  await writeSafetensors(join(dir, 'model.safetensors'), tensors);
  const config = JSON.parse(readFileSync(join(base, 'config.json'), 'utf8'));
  writeFileSync(
    join(dir, 'config.json'),
    JSON.stringify({ ...config, model_type: 'olmo2', architectures: ['Olmo2ForCausalLM'] }),
  );
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(base, f), join(dir, f));
});
afterAll(() => {
  backend?.dispose();
  rmSync(tmp, { recursive: true, force: true });
});

const ref: RefConfig = {
  hidden: 64,
  layers: 2,
  heads: 4,
  kvHeads: 2,
  headDim: 16,
  ffn: 172,
  vocab: 264,
  eps: 1e-5,
  theta: 10000,
  rotDim: 16,
  pairs: false,
  linearFactor: 1,
  window: 0,
  qkNorm: true,
  qkNormScope: 'all',
  placement: 'post',
  bias: false,
  tied: false,
};

function worstDifference(got: Float32Array, want: Float64Array[]): number {
  let worst = 0;
  for (let t = 0; t < want.length; t++)
    for (let i = 0; i < ref.vocab; i++)
      worst = Math.max(worst, Math.abs(want[t]![i]! - got[t * ref.vocab + i]!));
  return worst;
}

describe('a plugin assembled from @mnemo/models blocks: OLMo 2', () => {
  it('computes what the float64 reference of OLMo 2 computes, for every position', async () => {
    const registry = createRegistry();
    await expect(loadModel(dir, { backend, registry })).rejects.toThrow(/unknown model_type "olmo2"/);
    registry.register(olmo2Plugin);
    const { model } = await loadModel(dir, { backend, registry });
    expect(model.attentionLayers).toHaveLength(2);
    const caches = makeCaches(model.numLayers, { backend, ...model.cacheShape });
    const got = backend.read(model.forward(Int32Array.from(IDS), caches, { allLogits: true }));
    // decoding on from the cache gives the same last-row logits as the prefill's last row
    for (const c of caches) c.trim(1);
    const last = backend.read(model.forward(Int32Array.from(IDS.slice(-1)), caches));
    expect(last).toEqual(got.subarray((IDS.length - 1) * ref.vocab));
    for (const c of caches) c.free();
    model.free();
    const weights = (n: string) => Float64Array.from(W.get(n)!);
    expect(worstDifference(got, referenceLogits(ref, weights, IDS))).toBeLessThan(1e-3);
    // the reference tells the layouts apart: pre-norm placement or per-head q/k norms give other logits
    const W2 = new Map(W);
    for (let l = 0; l < 2; l++)
      W2.set(`model.layers.${l}.input_layernorm.weight`, new Float32Array(64).fill(1));
    const w2 = (n: string) => Float64Array.from(W2.get(n)!);
    expect(worstDifference(got, referenceLogits({ ...ref, placement: 'pre' }, w2, IDS))).toBeGreaterThan(
      1e-2,
    );
  });

  it('refuses a checkpoint with tensors OLMo 2 does not use', async () => {
    const registry = createRegistry().register(olmo2Plugin);
    const other = join(tmp, 'llama-as-olmo2');
    mkdirSync(other, { recursive: true });
    copyFileSync(join(base, 'model.safetensors'), join(other, 'model.safetensors'));
    writeFileSync(
      join(other, 'config.json'),
      JSON.stringify({ ...JSON.parse(readFileSync(join(base, 'config.json'), 'utf8')), model_type: 'olmo2' }),
    );
    await expect(loadModel(other, { backend, registry })).rejects.toThrow(/q_norm/);
  });
});
