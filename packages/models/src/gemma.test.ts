import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { copyFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeCaches } from '@mnemo/kv-cache';
import { openCheckpoint, writeSafetensors } from '@mnemo/safetensors';
import { type Backend, createBackend, toFloat32 } from '@mnemo/tensor';
import {
  type RefConfig,
  readReference,
  referenceLogits,
  type SyntheticPreset,
  syntheticPreset,
} from '@mnemo/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readGemmaConfig } from './architectures/gemma';
import { loadModel } from './load';

const tmp = mkdtempSync(join(tmpdir(), 'mnemo-gemma-'));
let backend: Backend;
beforeAll(async () => {
  backend = await createBackend({ backend: 'wasm' });
});
afterAll(() => {
  backend?.dispose();
  rmSync(tmp, { recursive: true, force: true });
});

function config(preset: SyntheticPreset): Record<string, unknown> {
  return JSON.parse(readFileSync(join(syntheticPreset(preset), 'config.json'), 'utf8')) as Record<
    string,
    unknown
  >;
}

/** Every tensor of a dense checkpoint as float64, by name, with its stored dtype and shape. */
async function readWeights(dir: string) {
  const ck = await openCheckpoint(dir);
  const values = new Map<string, Float64Array>();
  const tensors: { name: string; dtype: string; shape: number[]; data: Uint8Array }[] = [];
  for (const n of ck.names()) {
    const info = ck.info(n);
    const bytes = await ck.read(n);
    const dtype = info.dtype === 'F32' ? 'f32' : info.dtype === 'BF16' ? 'bf16' : 'f16';
    values.set(n, Float64Array.from(toFloat32(dtype, bytes)));
    tensors.push({ name: n, dtype: info.dtype, shape: [...info.shape], data: bytes });
  }
  await ck.close();
  return { values, tensors };
}

/** The float64 reference's settings for a Gemma preset's config (independently of the engine's config reader). */
function refConfig(c: Record<string, unknown>): RefConfig {
  const type = c.model_type as string;
  const layers = c.num_hidden_layers as number;
  const v3 = type === 'gemma3_text';
  const v2 = type === 'gemma2';
  const sliding = (i: number) =>
    Array.isArray(c.layer_types)
      ? c.layer_types[i] === 'sliding_attention'
      : v2
        ? i % 2 === 0
        : v3 && (i + 1) % (c.sliding_window_pattern as number) !== 0;
  const hidden = c.hidden_size as number;
  const bf16 = c.torch_dtype === 'bfloat16';
  // sqrt(hidden) rounded to bf16 by hand: keep the 8 leading significand bits, round half to even
  const roundBf16 = (x: number) => {
    const e = 2 ** (Math.floor(Math.log2(x)) - 7);
    const q = x / e;
    const r = Math.round(q);
    return (
      (Math.abs(q - Math.trunc(q) - 0.5) < 1e-12 ? (Math.trunc(q) % 2 === 0 ? Math.trunc(q) : r) : r) * e
    );
  };
  const factor = (c.rope_scaling as { factor?: number } | undefined)?.factor ?? 1;
  return {
    hidden,
    layers,
    heads: c.num_attention_heads as number,
    kvHeads: c.num_key_value_heads as number,
    headDim: c.head_dim as number,
    ffn: c.intermediate_size as number,
    vocab: c.vocab_size as number,
    eps: c.rms_norm_eps as number,
    theta: c.rope_theta as number,
    rotDim: c.head_dim as number,
    pairs: false,
    linearFactor: 1,
    window: 0,
    qkNorm: v3,
    bias: false,
    tied: true,
    embedScale: bf16 ? roundBf16(Math.sqrt(hidden)) : Math.fround(Math.sqrt(hidden)),
    normOffset: 1,
    activation: 'gelu_tanh',
    placement: v2 || v3 ? 'sandwich' : 'pre',
    attnScale: v2 || v3 ? (c.query_pre_attn_scalar as number) ** -0.5 : (c.head_dim as number) ** -0.5,
    attnSoftcap: (c.attn_logit_softcapping as number | null) ?? 0,
    finalSoftcap: (c.final_logit_softcapping as number | null) ?? 0,
    windows: Array.from({ length: layers }, (_, i) => (sliding(i) ? (c.sliding_window as number) : 0)),
    thetas: Array.from({ length: layers }, (_, i) =>
      v3 && sliding(i) ? (c.rope_local_base_freq as number) : (c.rope_theta as number),
    ),
    linearFactors: Array.from({ length: layers }, (_, i) => (v3 && !sliding(i) ? factor : 1)),
  };
}

function logSoftmax(x: Float64Array): Float64Array {
  const m = Math.max(...x);
  const z = Math.log(x.reduce((a, v) => a + Math.exp(v - m), 0)) + m;
  return x.map((v) => v - z);
}

/** Writes a checkpoint folder from `tensors` and `cfg` (tokenizer files from `from`). */
async function writeCheckpoint(
  name: string,
  from: SyntheticPreset,
  tensors: { name: string; dtype: string; shape: number[]; data: Uint8Array }[],
  cfg: Record<string, unknown>,
): Promise<string> {
  const dir = join(tmp, name);
  mkdirSync(dir, { recursive: true });
  await writeSafetensors(
    join(dir, 'model.safetensors'),
    tensors.map((t) => ({ ...t, dtype: t.dtype as 'F32' })),
  );
  writeFileSync(join(dir, 'config.json'), JSON.stringify(cfg));
  for (const f of ['tokenizer.json', 'tokenizer_config.json'])
    await copyFile(join(syntheticPreset(from), f), join(dir, f));
  return dir;
}

async function allLogits(dir: string, ids: readonly number[]): Promise<Float32Array> {
  const { model } = await loadModel(dir, { backend });
  const caches = makeCaches(model.numLayers, { backend, ...model.cacheShape });
  const out = backend.read(model.forward(Int32Array.from(ids), caches, { allLogits: true }));
  for (const c of caches) c.free();
  model.free();
  return out;
}

describe('the float64 reference implements the Gemma presets', () => {
  // the reference is what the variants below are checked against: first check it against the fixtures' own float64
  // outputs (computed outside this project), which it must match to float64 rounding
  for (const preset of ['gemma-f32', 'gemma2-f32', 'gemma3-bf16'] as const)
    it(`${preset}: the reference's greedy logprobs are expected.json's`, async () => {
      const { values } = await readWeights(syntheticPreset(preset));
      const c = readReference(syntheticPreset(preset)).cases[0]!;
      const steps = c.steps.slice(0, 24);
      const ids = [...c.prompt_tokens, ...steps.map((s) => s.token)];
      const logits = referenceLogits(refConfig(config(preset)), (n) => values.get(n)!, ids);
      let worst = 0;
      for (let i = 0; i < steps.length; i++) {
        const lp = logSoftmax(logits[c.prompt_tokens.length - 1 + i]!);
        for (const [id, want] of steps[i]!.top) worst = Math.max(worst, Math.abs(lp[id]! - want));
      }
      expect(worst).toBeLessThan(1e-7);
    });
});

describe('gemma variants against the float64 reference', () => {
  const IDS = [
    256, 84, 104, 101, 32, 113, 117, 105, 99, 107, 32, 98, 114, 111, 119, 110, 32, 102, 111, 120, 33, 33,
  ];

  async function check(name: string, from: SyntheticPreset, change: Record<string, unknown>) {
    const { values, tensors } = await readWeights(syntheticPreset(from));
    const cfg = { ...config(from), ...change };
    const dir = await writeCheckpoint(name, from, tensors, cfg);
    const got = await allLogits(dir, IDS);
    const want = referenceLogits(refConfig(cfg), (n) => values.get(n)!, IDS);
    let worst = 0;
    for (let t = 0; t < want.length; t++)
      for (let i = 0; i < want[t]!.length; i++)
        worst = Math.max(worst, Math.abs(want[t]![i]! - got[t * want[t]!.length + i]!));
    return worst;
  }

  it('gemma3 with attention and final soft-caps set (HF applies both when the keys are non-null)', async () => {
    expect(
      await check('g3-softcaps', 'gemma3-bf16', { attn_logit_softcapping: 0.5, final_logit_softcapping: 3 }),
    ).toBeLessThan(1e-3);
  });

  it('gemma3 without layer_types: sliding_window_pattern decides (here every 3rd layer is global)', async () => {
    expect(
      await check('g3-pattern', 'gemma3-bf16', {
        layer_types: null,
        sliding_window_pattern: 3,
        sliding_window: 5,
      }),
    ).toBeLessThan(1e-3);
  });

  it('gemma2 with explicit layer_types and a smaller window', async () => {
    const layer_types = ['full_attention', 'sliding_attention', 'sliding_attention', 'full_attention'];
    expect(await check('g2-types', 'gemma2-f32', { layer_types, sliding_window: 3 })).toBeLessThan(1e-3);
  });

  it('the comparison notices a wrong window (so the checks above can fail)', async () => {
    const { values, tensors } = await readWeights(syntheticPreset('gemma2-f32'));
    const cfg = { ...config('gemma2-f32'), sliding_window: 3 };
    const dir = await writeCheckpoint('g2-wrong', 'gemma2-f32', tensors, cfg);
    const got = await allLogits(dir, IDS);
    const want = referenceLogits({ ...refConfig(cfg), windows: [0, 0, 0, 0] }, (n) => values.get(n)!, IDS);
    let worst = 0;
    for (let t = 0; t < want.length; t++)
      for (let i = 0; i < want[t]!.length; i++)
        worst = Math.max(worst, Math.abs(want[t]![i]! - got[t * want[t]!.length + i]!));
    expect(worst).toBeGreaterThan(1e-2);
  });
});

describe('gemma3 multimodal checkpoints', () => {
  it('a "gemma3" config with text_config and language_model.* tensors runs the text model bit for bit', async () => {
    const { tensors } = await readWeights(syntheticPreset('gemma3-bf16'));
    const text = config('gemma3-bf16');
    const { torch_dtype, tie_word_embeddings, ...textOnly } = text;
    const renamed = [
      ...tensors.map((t) => ({ ...t, name: t.name.replace(/^model\./, 'language_model.model.') })),
      // a vision tower the text model does not read
      { name: 'vision_tower.patch_embed.weight', dtype: 'F32', shape: [2, 2], data: new Uint8Array(16) },
      { name: 'multi_modal_projector.norm.weight', dtype: 'F32', shape: [2], data: new Uint8Array(8) },
    ];
    const dir = await writeCheckpoint('g3-mm', 'gemma3-bf16', renamed, {
      architectures: ['Gemma3ForConditionalGeneration'],
      model_type: 'gemma3',
      torch_dtype,
      tie_word_embeddings,
      text_config: textOnly,
      vision_config: { model_type: 'siglip_vision_model' },
    });
    const ids = [256, 72, 105, 33, 32, 87, 104, 97, 116];
    expect(await allLogits(dir, ids)).toEqual(await allLogits(syntheticPreset('gemma3-bf16'), ids));
  });
});

describe('gemma config', () => {
  it('rounds the embedding scale to torch_dtype, as transformers does', () => {
    expect(readGemmaConfig(config('gemma3-bf16')).embedScale).toBe(9.8125);
    expect(readGemmaConfig(config('gemma-f32')).embedScale).toBe(8);
    expect(readGemmaConfig({ ...config('gemma3-bf16'), torch_dtype: 'float32' }).embedScale).toBe(
      Math.fround(Math.sqrt(96)),
    );
    expect(readGemmaConfig({ ...config('gemma3-bf16'), torch_dtype: 'float16' }).embedScale).toBe(9.796875);
    // no torch_dtype: the embedding's stored dtype
    const { torch_dtype: _, ...noDtype } = config('gemma3-bf16');
    expect(readGemmaConfig(noDtype, 'bf16').embedScale).toBe(9.8125);
  });

  it('derives sliding layers, scales, soft-caps and RoPE bases per version', () => {
    const g1 = readGemmaConfig(config('gemma-f32'));
    expect(g1.windows).toEqual([0, 0]);
    expect(g1.attnScale).toBe(1 / Math.sqrt(32));
    expect([g1.attnSoftcap, g1.finalSoftcap]).toEqual([0, 0]);
    const g2 = readGemmaConfig(config('gemma2-f32'));
    expect(g2.windows).toEqual([8, 0, 8, 0]);
    expect(g2.attnScale).toBe(0.25);
    expect([g2.attnSoftcap, g2.finalSoftcap]).toEqual([10, 10]);
    const g3 = readGemmaConfig(config('gemma3-q4g32'));
    expect(g3.windows).toEqual([16, 16, 16, 16, 16, 0]);
    expect([g3.attnSoftcap, g3.finalSoftcap]).toEqual([0, 0]);
    expect([g3.localRopeTheta, g3.ropeTheta]).toEqual([10000, 1e6]);
    // HF defaults when the soft-cap keys are absent: gemma2 caps (50, 30), gemma3 does not
    const { attn_logit_softcapping: _a, final_logit_softcapping: _f, ...g2bare } = config('gemma2-f32');
    const d2 = readGemmaConfig(g2bare);
    expect([d2.attnSoftcap, d2.finalSoftcap]).toEqual([50, 30]);
  });

  it('refuses what it cannot run, naming the key', () => {
    expect(() => readGemmaConfig({ ...config('gemma2-f32'), layer_types: ['sliding_attention'] })).toThrow(
      /layer_types.*4 layer types/,
    );
    expect(() =>
      readGemmaConfig({
        ...config('gemma2-f32'),
        layer_types: ['sliding_attention', 'x', 'full_attention', 'y'],
      }),
    ).toThrow(/layer_types\[1\]/);
    expect(() => readGemmaConfig({ ...config('gemma2-f32'), hidden_activation: 'relu' })).toThrow(
      /hidden_activation "relu"/,
    );
    expect(() => readGemmaConfig({ ...config('gemma2-f32'), attn_logit_softcapping: -1 })).toThrow(
      /attn_logit_softcapping/,
    );
    expect(() => readGemmaConfig({ model_type: 'gemma3' })).toThrow(/text_config/);
    expect(() => readGemmaConfig({ ...config('gemma2-f32'), query_pre_attn_scalar: 0 })).toThrow(
      /query_pre_attn_scalar/,
    );
    expect(() => readGemmaConfig({ ...config('gemma3-bf16'), rope_local_base_freq: -1 })).toThrow(
      /rope_local_base_freq/,
    );
    expect(() => readGemmaConfig({ ...config('gemma3-bf16'), sliding_window: 0 })).toThrow(/sliding_window/);
  });
});

describe('gemma models expose their layers', () => {
  it('gemma3-bf16: five sliding layers (window 16) then a global one; caches must keep everything', async () => {
    const { model } = await loadModel(syntheticPreset('gemma3-bf16'), { backend });
    expect(model.attentionLayers).toEqual([
      ...Array(5).fill({ window: 16, nKvHeads: 2, headDim: 32 }),
      { window: 0, nKvHeads: 2, headDim: 32 },
    ]);
    expect(model.slidingWindow).toBe(0);
    expect(model.cacheShape).toEqual({ nKvHeads: 2, headDim: 32 });
    model.free();
  });

  it('llama and mistral: one entry per layer with the model-wide window', async () => {
    const { model } = await loadModel(syntheticPreset('llama-f32'), { backend });
    expect(model.attentionLayers).toEqual([
      { window: 0, nKvHeads: 2, headDim: 16 },
      { window: 0, nKvHeads: 2, headDim: 16 },
    ]);
    model.free();
  });
});
