import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type EncodeTensor, encodeGguf, type GgufValue, GgufValues as V } from '@mnemo/gguf';
import { openCheckpoint, writeSafetensors } from '@mnemo/safetensors';
import { type Backend, bf16BitsToNumber, createBackend, f16BitsToNumber } from '@mnemo/tensor';
import {
  compareWithReference,
  type RefConfig,
  readReference,
  referenceLogits,
  type SyntheticPreset,
  syntheticPreset,
} from '@mnemo/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel } from './load';
import { greedy, teacherForced } from './testing/greedy';

// The architectures without GGUF fixtures, each written the way llama.cpp's converter writes it (tensor names,
// metadata keys, llama's Q/K rows permuted to adjacent pairs, llama3 scaling as rope_freqs, Gemma norms as 1 + w)
// from a synthetic checkpoint, then loaded as GGUF and checked against the checkpoint's float64 reference.
const tmp = mkdtempSync(join(tmpdir(), 'mnemo-gguf-arch-'));
let backend: Backend;
beforeAll(async () => {
  backend = await createBackend({ backend: 'wasm', threads: 1 });
});
afterAll(() => {
  backend?.dispose();
  rmSync(tmp, { recursive: true, force: true });
});

const GGML = { F32: 0, F16: 1, BF16: 30 } as const;
const LAYER: Record<string, string> = {
  input_layernorm: 'attn_norm',
  'self_attn.q_proj': 'attn_q',
  'self_attn.k_proj': 'attn_k',
  'self_attn.v_proj': 'attn_v',
  'self_attn.o_proj': 'attn_output',
  'self_attn.qkv_proj': 'attn_qkv',
  'self_attn.q_norm': 'attn_q_norm',
  'self_attn.k_norm': 'attn_k_norm',
  'mlp.gate_proj': 'ffn_gate',
  'mlp.up_proj': 'ffn_up',
  'mlp.gate_up_proj': 'ffn_up',
  'mlp.down_proj': 'ffn_down',
};

function ggufName(hf: string, sandwich: boolean): string {
  const m = /^model\.layers\.(\d+)\.(.+)\.(weight|bias)$/.exec(hf);
  if (m) {
    let part = LAYER[m[2]!];
    if (m[2] === 'post_attention_layernorm') part = sandwich ? 'post_attention_norm' : 'ffn_norm';
    if (m[2] === 'pre_feedforward_layernorm') part = 'ffn_norm';
    if (m[2] === 'post_feedforward_layernorm') part = 'post_ffw_norm';
    if (!part) throw new Error(`no GGUF name for ${hf}`);
    return `blk.${m[1]}.${part}.${m[3]}`;
  }
  const ends: Record<string, string> = {
    'model.embed_tokens.weight': 'token_embd.weight',
    'model.norm.weight': 'output_norm.weight',
    'lm_head.weight': 'output.weight',
  };
  if (!ends[hf]) throw new Error(`no GGUF name for ${hf}`);
  return ends[hf];
}

/** float64 values of a tensor's bytes in its dtype. */
function values(dtype: string, bytes: Uint8Array): Float64Array {
  if (dtype === 'F32') return Float64Array.from(new Float32Array(bytes.slice().buffer));
  const u16 = new Uint16Array(bytes.slice().buffer);
  return Float64Array.from(u16, dtype === 'F16' ? f16BitsToNumber : bf16BitsToNumber);
}

/** llama.cpp's converter: Q/K rows of a llama model from rotate-half to adjacent pairs (per head). */
function permuteRows(bytes: Uint8Array, rows: number, heads: number): Uint8Array {
  const rowBytes = bytes.byteLength / rows;
  const hd = rows / heads;
  const out = new Uint8Array(bytes.byteLength);
  for (let h = 0; h < heads; h++)
    for (let j = 0; j < hd / 2; j++) {
      const src = (r: number) => bytes.subarray((h * hd + r) * rowBytes, (h * hd + r + 1) * rowBytes);
      out.set(src(j), (h * hd + 2 * j) * rowBytes);
      out.set(src(j + hd / 2), (h * hd + 2 * j + 1) * rowBytes);
    }
  return out;
}

/** llama.cpp's llama3 rope factors (the `rope_freqs` tensor), as its converter computes them. */
function llama3Factors(headDim: number, theta: number, s: Record<string, number>): Float32Array {
  const out = new Float32Array(headDim / 2);
  const lowWavelen = s.original_max_position_embeddings! / s.low_freq_factor!;
  const highWavelen = s.original_max_position_embeddings! / s.high_freq_factor!;
  for (let i = 0; i < headDim / 2; i++) {
    const freq = 1 / theta ** ((2 * i) / headDim);
    const wavelen = (2 * Math.PI) / freq;
    if (wavelen < highWavelen) out[i] = 1;
    else if (wavelen > lowWavelen) out[i] = s.factor!;
    else {
      const smooth =
        (s.original_max_position_embeddings! / wavelen - s.low_freq_factor!) /
        (s.high_freq_factor! - s.low_freq_factor!);
      out[i] = 1 / ((1 - smooth) / s.factor! + smooth);
    }
  }
  return out;
}

interface Converted {
  readonly path: string;
  readonly config: Record<string, unknown>;
}

/**
 * Writes a checkpoint (a preset folder, optionally with replaced tensors) as GGUF architecture `arch`, as
 * llama.cpp's converter would.
 */
async function toGguf(
  name: string,
  dir: string,
  arch: string,
  opts: {
    extraMeta?: [string, GgufValue][];
    tensors?: Map<string, { dtype: string; shape: number[]; bytes: Uint8Array }>;
  } = {},
): Promise<Converted> {
  const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
  let tensors = opts.tensors;
  if (!tensors) {
    tensors = new Map();
    const ck = await openCheckpoint(dir);
    for (const n of ck.names()) {
      const info = ck.info(n);
      tensors.set(n, { dtype: info.dtype, shape: [...info.shape], bytes: await ck.read(n) });
    }
    await ck.close();
  }
  const heads = config.num_attention_heads as number;
  const kvHeads = (config.num_key_value_heads as number) ?? heads;
  const hidden = config.hidden_size as number;
  const headDim = (config.head_dim as number) ?? hidden / heads;
  const gemma = arch.startsWith('gemma');
  const sandwich = arch === 'gemma2' || arch === 'gemma3';
  const out: EncodeTensor[] = [];
  for (const [hf, t] of tensors) {
    let bytes = t.bytes;
    let type: number = GGML[t.dtype as keyof typeof GGML];
    if (gemma && hf.endsWith('norm.weight')) {
      bytes = new Uint8Array(Float32Array.from(values(t.dtype, t.bytes), (v) => v + 1).buffer);
      type = GGML.F32;
    } else if (t.shape.length === 1 && t.dtype !== 'F32') {
      bytes = new Uint8Array(Float32Array.from(values(t.dtype, t.bytes)).buffer);
      type = GGML.F32;
    }
    if (arch === 'llama' && /self_attn\.(q|k)_proj\.weight$/.test(hf))
      bytes = permuteRows(bytes, t.shape[0]!, hf.includes('q_proj') ? heads : kvHeads);
    out.push({ name: ggufName(hf, sandwich), type, dims: [...t.shape].reverse(), data: bytes });
  }
  const scaling = config.rope_scaling as Record<string, number> | undefined;
  if (arch === 'llama' && scaling && (scaling.rope_type as unknown) === 'llama3')
    out.push({
      name: 'rope_freqs.weight',
      type: GGML.F32,
      dims: [headDim / 2],
      data: new Uint8Array(llama3Factors(headDim, config.rope_theta as number, scaling).buffer),
    });
  const k = (key: string) => `${arch}.${key}`;
  const meta: [string, GgufValue][] = [
    ['general.architecture', V.string(arch)],
    [k('context_length'), V.u32(config.max_position_embeddings as number)],
    [k('embedding_length'), V.u32(hidden)],
    [k('block_count'), V.u32(config.num_hidden_layers as number)],
    [k('feed_forward_length'), V.u32(config.intermediate_size as number)],
    [k('attention.head_count'), V.u32(heads)],
    [k('attention.head_count_kv'), V.u32(kvHeads)],
    [k('attention.key_length'), V.u32(headDim)],
    [k('attention.value_length'), V.u32(headDim)],
    [k('attention.layer_norm_rms_epsilon'), V.f32(config.rms_norm_eps as number)],
    [k('rope.freq_base'), V.f32(config.rope_theta as number)],
    [k('rope.dimension_count'), V.u32(Math.round(headDim * ((config.partial_rotary_factor as number) ?? 1)))],
    ...(opts.extraMeta ?? []),
  ];
  const path = join(tmp, `${name}.gguf`);
  writeFileSync(path, encodeGguf(meta, out));
  return { path, config };
}

/** Greedy runs of a GGUF model against the checkpoint's float64 reference (2e-3 per token). */
async function againstOracle(path: string, preset: SyntheticPreset): Promise<void> {
  const { model } = await loadModel(path, { backend });
  try {
    for (const c of readReference(syntheticPreset(preset)).cases) {
      const r = greedy(backend, model, c.prompt_tokens, c.steps.length);
      expect(compareWithReference(c, r).problems, `${preset}: ${c.prompt.slice(0, 20)}`).toEqual([]);
    }
  } finally {
    model.free();
  }
}

/**
 * A GGUF model's layers need from their caches what the safetensors checkpoint's do (the same windows), and it builds
 * the same caches: ring caches of the window on sliding layers (the oracle runs above use them: `greedy` and
 * `teacherForced` take the model's own caches).
 */
async function sameLayers(path: string, dir: string): Promise<void> {
  const a = await loadModel(path, { backend });
  const b = await loadModel(dir, { backend });
  try {
    expect(a.model.attentionLayers).toEqual(b.model.attentionLayers);
    const window = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')).sliding_window as number;
    expect(a.model.attentionLayers.filter((l) => l.window > 0).length).toBeGreaterThan(0);
    const caches = a.model.makeCaches({ kvBits: 4, kvGroupSize: 32 });
    try {
      caches.forEach((c, i) => {
        if (a.model.attentionLayers[i]!.window > 0)
          expect(c).toMatchObject({ kind: 'rotating', maxSize: window, storage: 'q4g32' });
        else expect(c.kind).toBe('quantized');
      });
    } finally {
      for (const c of caches) c.free();
    }
  } finally {
    a.model.free();
    b.model.free();
  }
}

describe('GGUF architectures written as llama.cpp writes them, against float64', () => {
  it('llama with llama3 RoPE as rope_freqs (F16, permuted Q/K, tied)', async () => {
    const g = await toGguf('llama3', syntheticPreset('llama3-f16-tied'), 'llama');
    await againstOracle(g.path, 'llama3-f16-tied');
  });

  it('llama with head_dim ≠ hidden / heads (BF16, two shards)', async () => {
    const g = await toGguf('headdim', syntheticPreset('llama-bf16-headdim'), 'llama');
    await againstOracle(g.path, 'llama-bf16-headdim');
  });

  it('qwen2 with q/k/v biases (not permuted)', async () => {
    const g = await toGguf('qwen2', syntheticPreset('qwen2-bias-f32'), 'qwen2');
    await againstOracle(g.path, 'qwen2-bias-f32');
  });

  it('gemma (norms stored as 1 + w)', async () => {
    const g = await toGguf('gemma', syntheticPreset('gemma-f32'), 'gemma');
    await againstOracle(g.path, 'gemma-f32');
  });

  it('gemma2: soft-caps, sliding window on even layers, post norms, attention scale', async () => {
    const dir = syntheticPreset('gemma2-f32');
    const c = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, number>;
    const g = await toGguf('gemma2', dir, 'gemma2', {
      extraMeta: [
        ['gemma2.attn_logit_softcapping', V.f32(c.attn_logit_softcapping!)],
        ['gemma2.final_logit_softcapping', V.f32(c.final_logit_softcapping!)],
        ['gemma2.attention.sliding_window', V.u32(c.sliding_window!)],
        // llama.cpp derives the scale from the head size; this preset's query_pre_attn_scalar differs, so say it
        ['gemma2.attention.scale', V.f32(1 / Math.sqrt(c.query_pre_attn_scalar!))],
      ],
    });
    await againstOracle(g.path, 'gemma2-f32');
    await sameLayers(g.path, dir);
  });

  it('gemma3: q/k norms, five sliding layers with the local RoPE base, linear scaling on the global one', async () => {
    const dir = syntheticPreset('gemma3-bf16');
    const c = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
    const g = await toGguf('gemma3', dir, 'gemma3', {
      extraMeta: [
        ['gemma3.attention.sliding_window', V.u32(c.sliding_window as number)],
        ['gemma3.attention.scale', V.f32(1 / Math.sqrt(c.query_pre_attn_scalar as number))],
        ['gemma3.rope.scaling.type', V.string('linear')],
        ['gemma3.rope.scaling.factor', V.f32(8)],
      ],
    });
    // llama.cpp scales the embeddings by √hidden in f32 where transformers rounds it to the bf16 of this checkpoint:
    // compare with the safetensors checkpoint run the llama.cpp way (torch_dtype float32), every position
    const f32dir = join(tmp, 'gemma3-f32scale');
    mkdirSync(f32dir, { recursive: true });
    const ck = await openCheckpoint(dir);
    const tensors = [];
    for (const n of ck.names()) {
      const i = ck.info(n);
      tensors.push({ name: n, dtype: i.dtype, shape: [...i.shape], data: await ck.read(n) });
    }
    await ck.close();
    await writeSafetensors(join(f32dir, 'model.safetensors'), tensors);
    writeFileSync(join(f32dir, 'config.json'), JSON.stringify({ ...c, torch_dtype: 'float32' }));
    const ids = readReference(dir).cases[3]!.prompt_tokens.slice(0, 60);
    await sameLayers(g.path, dir);
    const a = await loadModel(g.path, { backend });
    const b = await loadModel(f32dir, { backend });
    try {
      const x = teacherForced(backend, a.model, ids);
      const y = teacherForced(backend, b.model, ids);
      let worst = 0;
      for (let p = 0; p < ids.length; p++)
        for (let i = 0; i < x[p]!.length; i++) worst = Math.max(worst, Math.abs(x[p]![i]! - y[p]![i]!));
      expect(worst).toBeLessThan(1e-4);
    } finally {
      a.model.free();
      b.model.free();
    }
  });
});

describe('GGUF qwen3 and phi3 (from the llama-f32 weights) against the float64 forward pass', () => {
  const IDS = [256, 84, 104, 101, 32, 113, 117, 105, 99, 107, 32, 98, 114, 111, 119, 110];
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
    qkNorm: false,
    bias: false,
    tied: false,
  };
  let base: Map<string, { dtype: string; shape: number[]; bytes: Uint8Array }>;
  beforeAll(async () => {
    base = new Map();
    const ck = await openCheckpoint(syntheticPreset('llama-f32'));
    for (const n of ck.names())
      base.set(n, { dtype: 'F32', shape: [...ck.info(n).shape], bytes: await ck.read(n) });
    await ck.close();
  });
  const f32 = (t: { bytes: Uint8Array }) => new Float32Array(t.bytes.slice().buffer);
  const W = (m: Map<string, { bytes: Uint8Array }>) => (n: string) => Float64Array.from(f32(m.get(n)!));

  async function worst(path: string, cfg: RefConfig, weights: (n: string) => Float64Array): Promise<number> {
    const { model } = await loadModel(path, { backend });
    try {
      const got = teacherForced(backend, model, IDS);
      const want = referenceLogits(cfg, weights, IDS);
      let w = 0;
      for (let t = 0; t < IDS.length; t++) {
        // compare log-softmax (what teacherForced returns)
        const row = want[t]!;
        const max = Math.max(...row);
        const lse = max + Math.log(row.reduce((a, v) => a + Math.exp(v - max), 0));
        for (let i = 0; i < cfg.vocab; i++) w = Math.max(w, Math.abs(got[t]![i]! - (row[i]! - lse)));
      }
      return w;
    } finally {
      model.free();
    }
  }

  it('qwen3 with q/k norms', async () => {
    const m = new Map(base);
    for (let l = 0; l < 2; l++)
      for (const [k, s] of [
        ['q_norm', 1],
        ['k_norm', 2],
      ] as const) {
        const v = Float32Array.from({ length: 16 }, (_, i) => 1 + 0.3 * Math.sin(7 * l + 3 * s + i));
        m.set(`model.layers.${l}.self_attn.${k}.weight`, {
          dtype: 'F32',
          shape: [16],
          bytes: new Uint8Array(v.buffer),
        });
      }
    const g = await toGguf('qwen3', syntheticPreset('llama-f32'), 'qwen3', { tensors: m });
    expect(await worst(g.path, { ...ref, qkNorm: true }, W(m))).toBeLessThan(1e-3);
  });

  it('phi3 with fused qkv and gate_up, partial rotary', async () => {
    const m = new Map<string, { dtype: string; shape: number[]; bytes: Uint8Array }>();
    const cat = (...parts: Uint8Array[]) => {
      const out = new Uint8Array(parts.reduce((a, p) => a + p.byteLength, 0));
      let o = 0;
      for (const p of parts) {
        out.set(p, o);
        o += p.byteLength;
      }
      return out;
    };
    for (const [n, t] of base) if (!/(q|k|v)_proj|gate_proj|up_proj/.test(n)) m.set(n, t);
    for (let l = 0; l < 2; l++) {
      const p = `model.layers.${l}`;
      const get = (s: string) => base.get(`${p}.${s}.weight`)!.bytes;
      m.set(`${p}.self_attn.qkv_proj.weight`, {
        dtype: 'F32',
        shape: [128, 64],
        bytes: cat(get('self_attn.q_proj'), get('self_attn.k_proj'), get('self_attn.v_proj')),
      });
      m.set(`${p}.mlp.gate_up_proj.weight`, {
        dtype: 'F32',
        shape: [2 * 172, 64],
        bytes: cat(get('mlp.gate_proj'), get('mlp.up_proj')),
      });
    }
    const dir = join(tmp, 'phi3-config');
    mkdirSync(dir, { recursive: true });
    const config = JSON.parse(
      readFileSync(join(syntheticPreset('llama-f32'), 'config.json'), 'utf8'),
    ) as object;
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...config, partial_rotary_factor: 0.5 }));
    const g = await toGguf('phi3', dir, 'phi3', { tensors: m });
    expect(await worst(g.path, { ...ref, rotDim: 8 }, W(base))).toBeLessThan(1e-3);
  });
});
