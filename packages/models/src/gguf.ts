/**
 * Models from GGUF files (llama.cpp's format): the architecture's hyperparameters are read from the metadata into an
 * HF-style config, and the tensors are renamed to the Hugging Face names the architectures load, so the same plugins
 * run GGUF and safetensors checkpoints. GGML block tensors are uploaded as they are (`Backend.uploadGgml`).
 *
 * llama.cpp's converter stores the Q and K rows of `llama` models permuted from rotate-half to adjacent-pair order (per
 * head, GGUF row 2j ← HF row j, 2j+1 ← j + head_dim/2). Rather than permute them back, a `llama` GGUF runs with
 * adjacent-pair RoPE (`rope_traditional`), which is the same function of the weights as stored. Architectures that
 * llama.cpp runs with NEOX RoPE (qwen2, qwen3, phi3) are stored unpermuted and run rotate-half, as from safetensors.
 */
import { type GgufFile, type GgufMetadata, type GgufTensorInfo, openGguf } from '@mnemo/gguf';
import { isGgmlBlockType } from '@mnemo/tensor';
import type { RawConfig } from './config';
import { ModelLoadError } from './errors';
import type { TensorSource } from './weights';

/**
 * GGUF architectures this loader maps, with the `model_type` of the plugin that runs them, whether llama.cpp's
 * converter permuted Q/K to adjacent pairs, and whether it stored RMSNorm weights as `1 + w` (Gemma).
 */
const ARCHITECTURES: Readonly<
  Record<string, { modelType: string; pairRope: boolean; normPlusOne?: boolean; sandwich?: boolean }>
> = {
  llama: { modelType: 'llama', pairRope: true },
  mistral: { modelType: 'mistral', pairRope: true },
  qwen2: { modelType: 'qwen2', pairRope: false },
  qwen3: { modelType: 'qwen3', pairRope: false },
  phi3: { modelType: 'phi3', pairRope: false },
  gemma: { modelType: 'gemma', pairRope: false, normPlusOne: true },
  gemma2: { modelType: 'gemma2', pairRope: false, normPlusOne: true, sandwich: true },
  gemma3: { modelType: 'gemma3_text', pairRope: false, normPlusOne: true, sandwich: true },
};

/** GGUF architecture names this version can load. */
export const GGUF_ARCHITECTURES: readonly string[] = Object.keys(ARCHITECTURES);

/** GGUF tensor name parts → Hugging Face ones (per layer, then the model's ends). */
const LAYER_NAMES: Readonly<Record<string, string>> = {
  attn_norm: 'input_layernorm',
  ffn_norm: 'post_attention_layernorm',
  attn_q: 'self_attn.q_proj',
  attn_k: 'self_attn.k_proj',
  attn_v: 'self_attn.v_proj',
  attn_output: 'self_attn.o_proj',
  attn_qkv: 'self_attn.qkv_proj',
  attn_q_norm: 'self_attn.q_norm',
  attn_k_norm: 'self_attn.k_norm',
  ffn_gate: 'mlp.gate_proj',
  ffn_up: 'mlp.up_proj',
  ffn_down: 'mlp.down_proj',
};
const END_NAMES: Readonly<Record<string, string>> = {
  token_embd: 'model.embed_tokens',
  output_norm: 'model.norm',
  output: 'lm_head',
};

/** Gemma 2/3's four norms per layer (pre and post attention, pre and post MLP). */
const SANDWICH_NAMES: Readonly<Record<string, string>> = {
  ffn_norm: 'pre_feedforward_layernorm',
  post_attention_norm: 'post_attention_layernorm',
  post_ffw_norm: 'post_feedforward_layernorm',
};

/** The Hugging Face name of a GGUF tensor (unknown names are kept, so an unused-tensor check names them). */
export function hfTensorName(name: string, arch: string): string {
  const m = /^blk\.(\d+)\.([a-z_0-9]+)\.(weight|bias)$/.exec(name);
  if (m) {
    let part = (ARCHITECTURES[arch]?.sandwich ? SANDWICH_NAMES[m[2]!] : undefined) ?? LAYER_NAMES[m[2]!];
    // phi3 stores gate and up fused in ffn_up (gate rows first), as HF's gate_up_proj
    if (arch === 'phi3' && m[2] === 'ffn_up') part = 'mlp.gate_up_proj';
    return part ? `model.layers.${m[1]}.${part}.${m[3]}` : name;
  }
  const e = /^([a-z_]+)\.(weight|bias)$/.exec(name);
  if (e && END_NAMES[e[1]!]) return `${END_NAMES[e[1]!]}.${e[2]}`;
  return name;
}

/** What a GGUF model needs besides its weights. */
export interface GgufModelInfo {
  readonly path: string;
  /** `general.architecture`. */
  readonly architecture: string;
  /** The metadata (tokenizer included). */
  readonly metadata: GgufMetadata;
  /** `general.file_type` as llama.cpp names it (e.g. `MOSTLY_Q4_K_M`), when known. */
  readonly fileType: string | undefined;
  /** GGML type of every tensor, by GGUF name. */
  readonly tensorTypes: Readonly<Record<string, string>>;
}

const FILE_TYPES: Readonly<Record<number, string>> = {
  0: 'ALL_F32',
  1: 'MOSTLY_F16',
  2: 'MOSTLY_Q4_0',
  3: 'MOSTLY_Q4_1',
  7: 'MOSTLY_Q8_0',
  8: 'MOSTLY_Q5_0',
  9: 'MOSTLY_Q5_1',
  10: 'MOSTLY_Q2_K',
  11: 'MOSTLY_Q3_K_S',
  12: 'MOSTLY_Q3_K_M',
  13: 'MOSTLY_Q3_K_L',
  14: 'MOSTLY_Q4_K_S',
  15: 'MOSTLY_Q4_K_M',
  16: 'MOSTLY_Q5_K_S',
  17: 'MOSTLY_Q5_K_M',
  18: 'MOSTLY_Q6_K',
  32: 'MOSTLY_BF16',
};

/** Dense GGML types the loader reads as plain tensors. */
const DENSE = new Set(['F32', 'F16', 'BF16']);

function fail(file: string, what: string): never {
  throw new ModelLoadError(`${file}: ${what}`);
}

/**
 * The HF-style config of a GGUF model, from its metadata and tensor shapes. Keys the architectures read
 * (`hidden_size`, `num_attention_heads`, ...) plus `gguf` (file type and the header's sha256, so that the model
 * fingerprint covers the file's identity). `rope_freqs` (llama3's per-frequency divisors) becomes
 * `rope_scaling: { rope_type: "freq_factors", freq_factors }`.
 */
export function ggufConfig(file: GgufFile, ropeFreqs: Float32Array | undefined): RawConfig {
  const m = file.metadata;
  const where = file.path;
  const arch = m.string('general.architecture');
  const a = ARCHITECTURES[arch];
  if (!a)
    fail(where, `GGUF architecture "${arch}" is not supported (supported: ${GGUF_ARCHITECTURES.join(', ')})`);
  const k = (key: string) => `${arch}.${key}`;
  const int = (key: string, fallback?: number) => m.int(k(key), fallback);
  const embd = file.tensors.get('token_embd.weight');
  if (!embd) fail(where, 'the file has no token_embd.weight tensor');
  const hidden = int('embedding_length');
  const heads = int('attention.head_count');
  const kvHeads = int('attention.head_count_kv', heads);
  const headDim = int('attention.key_length', heads > 0 ? hidden / heads : 0);
  const valueDim = int('attention.value_length', headDim);
  if (valueDim !== headDim)
    fail(
      where,
      `${k('attention.value_length')} ${valueDim} differs from the key length ${headDim} (not supported)`,
    );
  const rotDim = int('rope.dimension_count', headDim);
  const config: Record<string, unknown> = {
    model_type: a.modelType,
    hidden_size: hidden,
    intermediate_size: int('feed_forward_length'),
    num_hidden_layers: int('block_count'),
    num_attention_heads: heads,
    num_key_value_heads: kvHeads,
    head_dim: headDim,
    vocab_size: embd.shape[0],
    rms_norm_eps: m.number(k('attention.layer_norm_rms_epsilon'), 1e-5),
    rope_theta: m.number(k('rope.freq_base'), 10000),
    max_position_embeddings: int('context_length', 4096),
    tie_word_embeddings: !file.tensors.has('output.weight'),
    rope_traditional: a.pairRope,
  };
  if (rotDim !== headDim) {
    if (arch !== 'phi3')
      fail(
        where,
        `${k('rope.dimension_count')} ${rotDim} ≠ head size ${headDim} is not supported for ${arch}`,
      );
    config.partial_rotary_factor = rotDim / headDim;
  }
  const scaling = m.string(k('rope.scaling.type'), 'none');
  if (ropeFreqs) {
    if (scaling !== 'none')
      fail(where, `rope_freqs together with ${k('rope.scaling.type')} "${scaling}" is not supported`);
    if (ropeFreqs.length !== rotDim / 2)
      fail(
        where,
        `rope_freqs has ${ropeFreqs.length} values, the rotary dimension ${rotDim} needs ${rotDim / 2}`,
      );
    config.rope_scaling = { rope_type: 'freq_factors', freq_factors: Array.from(ropeFreqs) };
  } else if (scaling === 'linear') {
    config.rope_scaling = { rope_type: 'linear', factor: m.number(k('rope.scaling.factor')) };
  } else if (scaling !== 'none') {
    fail(where, `${k('rope.scaling.type')} "${scaling}" is not supported (none, linear and rope_freqs are)`);
  }
  if (file.tensors.has('blk.0.attn_q.bias')) config.attention_bias = true;
  if (a.normPlusOne) Object.assign(config, gemmaConfig(m, arch, config));
  const window = int('attention.sliding_window', 0);
  if (window > 0 && arch === 'phi3') config.sliding_window = window;
  for (const [key, id] of [
    ['bos_token_id', 'tokenizer.ggml.bos_token_id'],
    ['eos_token_id', 'tokenizer.ggml.eos_token_id'],
  ] as const)
    if (m.has(id)) config[key] = m.int(id);
  const fileType = m.has('general.file_type') ? m.int('general.file_type') : undefined;
  config.gguf = {
    architecture: arch,
    file_type: fileType === undefined ? null : (FILE_TYPES[fileType] ?? fileType),
    header_sha256: file.headerSha256,
  };
  return config;
}

/**
 * The Gemma keys llama.cpp reads: soft-caps, sliding window, and the attention scale llama.cpp derives (query_pre_attn
 * scalar = head size, or hidden / heads for the 27B models, which it recognises by their layer count) unless the
 * file sets `{arch}.attention.scale`. The embedding is scaled by √hidden in f32, as llama.cpp does.
 */
function gemmaConfig(m: GgufMetadata, arch: string, c: Record<string, unknown>): Record<string, unknown> {
  const k = (key: string) => `${arch}.${key}`;
  const layers = c.num_hidden_layers as number;
  const heads = c.num_attention_heads as number;
  const out: Record<string, unknown> = { torch_dtype: 'float32', hidden_activation: 'gelu_pytorch_tanh' };
  if (arch === 'gemma') return out;
  const big = (arch === 'gemma2' && layers === 46) || (arch === 'gemma3' && layers === 62);
  const scale = m.has(k('attention.scale')) ? m.number(k('attention.scale')) : 0;
  out.query_pre_attn_scalar =
    scale > 0 ? 1 / (scale * scale) : big ? (c.hidden_size as number) / heads : (c.head_dim as number);
  out.sliding_window = m.int(k('attention.sliding_window'), 4096);
  const cap = (key: string, fallback: number | null) => (m.has(k(key)) ? m.number(k(key)) : fallback);
  if (arch === 'gemma2') {
    out.attn_logit_softcapping = cap('attn_logit_softcapping', 50);
    out.final_logit_softcapping = cap('final_logit_softcapping', 30);
  } else {
    out.attn_logit_softcapping = null;
    out.final_logit_softcapping = cap('final_logit_softcapping', null);
    out.rope_local_base_freq = 10000;
    out.sliding_window_pattern = 6;
  }
  return out;
}

/** F32 bytes of `values`. */
function f32Bytes(values: Float32Array): Uint8Array {
  return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
}

/**
 * The tensors of a GGUF file under Hugging Face names, as the architectures load them: `info().dtype` is the GGML
 * type name (`F32`, `F16`, `BF16`, or a block type such as `Q4_K`) and `shape` is row-major. Tensors the config
 * consumed (`rope_freqs.weight`) are left out. A tensor in a GGML type mnemo cannot compute with is refused when it
 * is read, naming the type and the supported ones. `info()` names the file and the tensor's place in it, and
 * `identity()` the file's identity, so that a `DigestCache` can remember the tensors' digests.
 */
export function ggufTensorSource(file: GgufFile, arch: string): TensorSource {
  // llama.cpp's converter stores Gemma's RMSNorm weights as 1 + w; the architecture reads w (zero-centred)
  const normPlusOne = ARCHITECTURES[arch]?.normPlusOne === true;
  const isShiftedNorm = (t: GgufTensorInfo) => normPlusOne && t.name.endsWith('norm.weight');
  const byHf = new Map<string, GgufTensorInfo>();
  for (const t of file.tensors.values()) {
    if (t.name === 'rope_freqs.weight') continue;
    byHf.set(hfTensorName(t.name, arch), t);
  }
  const get = (name: string) => {
    const t = byHf.get(name);
    if (!t) throw new ModelLoadError(`${file.path}: no tensor "${name}"`);
    return t;
  };
  return {
    names: () => [...byHf.keys()],
    has: (name) => byHf.has(name),
    info: (name) => {
      const t = get(name);
      return {
        dtype: isShiftedNorm(t) ? 'F32' : t.typeName,
        shape: t.shape,
        file: file.path,
        byteOffset: t.byteOffset,
        byteLength: t.byteLength,
      };
    },
    identity: async (path) => {
      if (path !== file.path) throw new ModelLoadError(`${path} is not the GGUF file ${file.path}`);
      return file.identity();
    },
    // stored as read: dense and GGML block tensors (not the Gemma norms converted on reading, nor unknown types)
    fileRange: (name) => {
      const t = get(name);
      return isShiftedNorm(t) || (!DENSE.has(t.typeName) && !isGgmlBlockType(t.typeName))
        ? undefined
        : file.fileRange(t.name);
    },
    read: async (name) => {
      const t = get(name);
      if (isShiftedNorm(t)) {
        if (t.typeName !== 'F32')
          throw new ModelLoadError(`${file.path}: tensor "${t.name}" is ${t.typeName}; Gemma norms are F32`);
        const bytes = await file.read(t.name);
        const v = new Float32Array(bytes.buffer, bytes.byteOffset, t.elements);
        for (let i = 0; i < v.length; i++) v[i] = v[i]! - 1;
        return f32Bytes(v);
      }
      if (!DENSE.has(t.typeName) && !isGgmlBlockType(t.typeName))
        throw new ModelLoadError(
          `${file.path}: tensor "${t.name}" is ${t.typeName}, a GGML type mnemo cannot compute with (supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K)`,
        );
      return file.read(t.name);
    },
  };
}

/** Opens a GGUF model file: its config, tensors under HF names and what the tokenizer needs. Close `file` when done. */
export async function openGgufModel(
  path: string,
): Promise<{ file: GgufFile; config: RawConfig; source: TensorSource; info: GgufModelInfo }> {
  const file = await openGguf(path);
  try {
    const arch = file.metadata.string('general.architecture');
    let ropeFreqs: Float32Array | undefined;
    const rf = file.tensors.get('rope_freqs.weight');
    if (rf) {
      if (rf.typeName !== 'F32') fail(path, `rope_freqs.weight is ${rf.typeName}, expected F32`);
      const bytes = await file.read(rf.name);
      ropeFreqs = new Float32Array(bytes.buffer, bytes.byteOffset, rf.elements);
    }
    const config = ggufConfig(file, ropeFreqs);
    const fileType = (config.gguf as { file_type: unknown }).file_type;
    return {
      file,
      config,
      source: ggufTensorSource(file, arch),
      info: {
        path,
        architecture: arch,
        metadata: file.metadata,
        fileType: typeof fileType === 'string' ? fileType : undefined,
        tensorTypes: Object.fromEntries([...file.tensors.values()].map((t) => [t.name, t.typeName])),
      },
    };
  } catch (e) {
    await file.close();
    throw e;
  }
}
