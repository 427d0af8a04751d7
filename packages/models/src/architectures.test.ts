import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeCaches } from '@mnemo/kv-cache';
import { openCheckpoint, writeSafetensors } from '@mnemo/safetensors';
import { type Backend, createBackend } from '@mnemo/tensor';
import { type RefConfig, randomF32, referenceLogits, syntheticPreset } from '@mnemo/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel } from './load';

// Architecture variants without reference fixtures, checked against an independent float64 forward pass: the
// llama-f32 preset's weights rearranged into each variant's layout (fused projections, qk-norm weights, config keys).
const base = syntheticPreset('llama-f32');
const tmp = mkdtempSync(join(tmpdir(), 'mnemo-arch-'));
let backend: Backend;
let weights: Map<string, Float32Array>;
const baseConfig = JSON.parse(readFileSync(join(base, 'config.json'), 'utf8')) as Record<string, unknown>;
const IDS = [256, 84, 104, 101, 32, 113, 117, 105, 99, 107, 32, 98, 114, 111, 119, 110, 32, 102, 111, 120];

beforeAll(async () => {
  backend = await createBackend({ backend: 'wasm' });
  const ck = await openCheckpoint(base);
  weights = new Map();
  for (const n of ck.names()) weights.set(n, new Float32Array((await ck.read(n)).slice().buffer));
  await ck.close();
});
afterAll(() => {
  backend?.dispose();
  rmSync(tmp, { recursive: true, force: true });
});

const refBase: RefConfig = {
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
  qkNorm: false,
  bias: false,
  tied: false,
};

/** Writes a checkpoint folder with `tensors` (f32) and the base config changed by `config`. */
async function writeVariant(
  name: string,
  tensors: Map<string, Float32Array>,
  config: Record<string, unknown>,
) {
  const dir = join(tmp, name);
  mkdirSync(dir, { recursive: true });
  await writeSafetensors(
    join(dir, 'model.safetensors'),
    [...tensors].map(([n, data]) => ({
      name: n,
      dtype: 'F32' as const,
      shape: shapeOf(n, data),
      data: new Uint8Array(data.buffer),
    })),
  );
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...baseConfig, ...config }));
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(base, f), join(dir, f));
  return dir;
}
const shapes = new Map<string, number[]>();
function shapeOf(name: string, data: Float32Array): number[] {
  return shapes.get(name) ?? [data.length];
}

async function compare(dir: string, ref: RefConfig, W: Map<string, Float32Array>) {
  const { model } = await loadModel(dir, { backend });
  const caches = makeCaches(model.numLayers, { backend, ...model.cacheShape });
  const got = backend.read(model.forward(Int32Array.from(IDS), caches, { allLogits: true }));
  for (const c of caches) c.free();
  model.free();
  const want = referenceLogits(ref, (n) => Float64Array.from(W.get(n)!), IDS);
  let worst = 0;
  for (let t = 0; t < want.length; t++) {
    for (let i = 0; i < ref.vocab; i++)
      worst = Math.max(worst, Math.abs(want[t]![i]! - got[t * ref.vocab + i]!));
  }
  return worst;
}

describe('architecture variants against a float64 reference', () => {
  beforeAll(async () => {
    const ck = await openCheckpoint(base);
    for (const n of ck.names()) shapes.set(n, [...ck.info(n).shape]);
    await ck.close();
  });

  it('llama with adjacent-pair RoPE (rope_traditional)', async () => {
    const dir = await writeVariant('traditional', weights, { rope_traditional: true });
    expect(await compare(dir, { ...refBase, pairs: true }, weights)).toBeLessThan(1e-3);
  });

  it('llama with linear RoPE scaling', async () => {
    const dir = await writeVariant('linear', weights, { rope_scaling: { type: 'linear', factor: 4 } });
    expect(await compare(dir, { ...refBase, linearFactor: 4 }, weights)).toBeLessThan(1e-3);
  });

  it('the reference notices a wrong RoPE (so the comparisons above can fail)', async () => {
    const dir = await writeVariant('plain', weights, {});
    expect(await compare(dir, { ...refBase, pairs: true }, weights)).toBeGreaterThan(1e-2);
  });

  it('mistral with a sliding window', async () => {
    const dir = await writeVariant('mistral', weights, { model_type: 'mistral', sliding_window: 5 });
    expect(await compare(dir, { ...refBase, window: 5 }, weights)).toBeLessThan(1e-3);
    const full = await writeVariant('mistral-null', weights, { model_type: 'mistral', sliding_window: null });
    expect(await compare(full, refBase, weights)).toBeLessThan(1e-3);
  });

  it('qwen3 with q/k RMSNorm per head', async () => {
    const W = new Map(weights);
    for (let l = 0; l < 2; l++) {
      for (const [k, seed] of [
        ['q_norm', 1],
        ['k_norm', 2],
      ] as const) {
        const name = `model.layers.${l}.self_attn.${k}.weight`;
        W.set(
          name,
          randomF32(16, 100 * l + seed, 0.3).map((v) => 1 + v),
        );
        shapes.set(name, [16]);
      }
    }
    const dir = await writeVariant('qwen3', W, { model_type: 'qwen3', head_dim: 16, rms_norm_eps: 1e-5 });
    expect(await compare(dir, { ...refBase, qkNorm: true }, W)).toBeLessThan(1e-3);
  });

  it('phi3 with fused qkv and gate_up projections and partial rotary', async () => {
    const W = new Map<string, Float32Array>();
    const cat = (...parts: Float32Array[]) => {
      const out = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
      let o = 0;
      for (const p of parts) {
        out.set(p, o);
        o += p.length;
      }
      return out;
    };
    for (const [n, v] of weights) {
      if (/(q|k|v)_proj|gate_proj|up_proj/.test(n)) continue;
      W.set(n, v);
    }
    for (let l = 0; l < 2; l++) {
      const p = `model.layers.${l}`;
      const get = (s: string) => weights.get(`${p}.${s}.weight`)!;
      W.set(
        `${p}.self_attn.qkv_proj.weight`,
        cat(get('self_attn.q_proj'), get('self_attn.k_proj'), get('self_attn.v_proj')),
      );
      shapes.set(`${p}.self_attn.qkv_proj.weight`, [64 + 32 + 32, 64]);
      W.set(`${p}.mlp.gate_up_proj.weight`, cat(get('mlp.gate_proj'), get('mlp.up_proj')));
      shapes.set(`${p}.mlp.gate_up_proj.weight`, [2 * 172, 64]);
    }
    const dir = await writeVariant('phi3', W, {
      model_type: 'phi3',
      partial_rotary_factor: 0.5,
      rms_norm_eps: 1e-5,
    });
    expect(await compare(dir, { ...refBase, rotDim: 8 }, weights)).toBeLessThan(1e-3);
  });
});
