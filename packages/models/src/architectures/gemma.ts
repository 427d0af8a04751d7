import {
  type Backend,
  bf16BitsToNumber,
  f16BitsToNumber,
  numberToBf16Bits,
  numberToF16Bits,
  type Weight,
} from '@mnemo/tensor';
import { AttentionBlock } from '../blocks/attention';
import { EmbeddingBlock } from '../blocks/embedding';
import { LmHead } from '../blocks/head';
import { TransformerLayer } from '../blocks/layer';
import { MlpBlock } from '../blocks/mlp';
import { TransformerModel } from '../blocks/model';
import { loadRmsNorm } from '../blocks/norm';
import { RopeTable } from '../blocks/rope';
import { Scratch } from '../blocks/scratch';
import { ConfigReader, type DecoderConfig, type RawConfig, readDecoderConfig } from '../config';
import { ModelLoadError } from '../errors';
import { type ArchitecturePlugin, type Model, PLUGIN_API_VERSION } from '../model';
import { ropeInvFreq } from '../rope';
import type { Weights } from '../weights';

/** Which Gemma: 1, 2 or 3 (text). */
export type GemmaVersion = 1 | 2 | 3;

/** Everything a Gemma text model's forward pass depends on, read from its config. */
export interface GemmaConfig extends DecoderConfig {
  readonly version: GemmaVersion;
  /** Input embeddings are multiplied by this: sqrt(hidden_size) rounded to the checkpoint's dtype. */
  readonly embedScale: number;
  /** Multiplier of q·k: head_dim^-0.5 (Gemma 1), query_pre_attn_scalar^-0.5 (Gemma 2/3). */
  readonly attnScale: number;
  /** Attention-logit soft-cap, 0 = none. */
  readonly attnSoftcap: number;
  /** Final-logit soft-cap, 0 = none. */
  readonly finalSoftcap: number;
  /** Sliding window per layer (0 = global layer). */
  readonly windows: readonly number[];
  /** RoPE base of sliding layers (Gemma 3's `rope_local_base_freq`, unscaled); `ropeTheta` otherwise. */
  readonly localRopeTheta: number;
  /** Whether sliding layers use `localRopeTheta` without scaling (Gemma 3) or the global table (Gemma 1/2). */
  readonly localRope: boolean;
  /** q/k/v/o projection biases (`attention_bias`). */
  readonly attentionBias: boolean;
}

/** HF's `Gemma3TextConfig` defaults, for the keys a multimodal `gemma3` config's `text_config` may leave out. */
const GEMMA3_TEXT_DEFAULTS: RawConfig = {
  model_type: 'gemma3_text',
  vocab_size: 262_208,
  hidden_size: 2304,
  intermediate_size: 9216,
  num_hidden_layers: 26,
  num_attention_heads: 8,
  num_key_value_heads: 4,
  head_dim: 256,
  hidden_activation: 'gelu_pytorch_tanh',
  max_position_embeddings: 131_072,
  rms_norm_eps: 1e-6,
  rope_theta: 1_000_000,
  query_pre_attn_scalar: 256,
  sliding_window: 4096,
  rope_local_base_freq: 10_000,
  sliding_window_pattern: 6,
};

/** Activations that are the tanh approximation of GELU under HF's names. */
const GELU_TANH = new Set(['gelu_pytorch_tanh', 'gelu_new', 'gelu_fast']);

/** `x` rounded to the dtype named by `torch_dtype` (`float32`, `bfloat16`, `float16`). */
function roundTo(dtype: string, x: number): number {
  switch (dtype) {
    case 'bfloat16':
      return bf16BitsToNumber(numberToBf16Bits(x));
    case 'float16':
      return f16BitsToNumber(numberToF16Bits(x));
    default:
      return Math.fround(x);
  }
}

/** The config of the text model: `config` itself, or a multimodal `gemma3` config's `text_config` over HF's defaults. */
export function gemmaTextConfig(config: RawConfig): RawConfig {
  if (config.model_type !== 'gemma3') return config;
  const text = new ConfigReader(config).object('text_config');
  if (!text)
    throw new ModelLoadError(
      'config.json: a "gemma3" config needs a "text_config" object (the language model)',
    );
  // dtype and tying are often only at the top level of a multimodal config
  const top: Record<string, unknown> = {};
  for (const key of ['torch_dtype', 'dtype', 'tie_word_embeddings', 'quantization', 'quantization_config'])
    if (config[key] !== undefined) top[key] = config[key];
  return { ...GEMMA3_TEXT_DEFAULTS, ...top, ...text, model_type: 'gemma3_text' };
}

/**
 * Reads a Gemma config (`gemma`, `gemma2`, `gemma3_text`, or `gemma3` with a `text_config`). `embedDtype` is the
 * stored dtype of the embedding table (`f32`/`f16`/`bf16`), used for the embedding scale's rounding when the config
 * names no `torch_dtype`.
 */
export function readGemmaConfig(config: RawConfig, embedDtype?: string): GemmaConfig {
  const raw = gemmaTextConfig(config);
  const c = new ConfigReader(raw);
  const type = c.str('model_type');
  const version: GemmaVersion = type === 'gemma' ? 1 : type === 'gemma2' ? 2 : 3;
  if (version === 3 && type !== 'gemma3_text')
    throw new ModelLoadError(`config.json: model_type "${type}" is not a Gemma text model`);
  const base = readDecoderConfig(c, {
    rmsNormEps: 1e-6,
    ropeTheta: version === 3 ? 1_000_000 : 10_000,
    tieWordEmbeddings: true,
  });
  // Gemma 1 configs often say hidden_act "gelu" but HF runs the tanh approximation unless hidden_activation says otherwise
  const act =
    version === 1
      ? c.str('hidden_activation', 'gelu_pytorch_tanh')
      : c.str('hidden_activation', c.str('hidden_act', 'gelu_pytorch_tanh'));
  if (!GELU_TANH.has(act))
    throw new ModelLoadError(
      `config.json: hidden_activation "${act}" is not supported for ${type} (supported: ${[...GELU_TANH].join(', ')})`,
    );
  if (c.bool('mlp_bias', false)) throw new ModelLoadError('config.json: mlp_bias is not supported');
  const dtype = raw.torch_dtype ?? raw.dtype;
  const scaleDtype =
    typeof dtype === 'string'
      ? dtype
      : embedDtype === 'bf16'
        ? 'bfloat16'
        : embedDtype === 'f16'
          ? 'float16'
          : 'float32';
  const capOf = (key: string, fallback: number | null): number => {
    const v = raw[key] === undefined ? fallback : raw[key];
    if (v === null) return 0;
    const n = c.num(key, typeof v === 'number' ? v : undefined);
    if (n <= 0) throw new ModelLoadError(`config.json: "${key}" must be positive or null, got ${n}`);
    return n;
  };
  const n = base.numLayers;
  let windows: number[] = new Array<number>(n).fill(0);
  if (version > 1) {
    const window = c.positiveInt('sliding_window', 4096);
    const types = raw.layer_types;
    let sliding: boolean[];
    if (types !== undefined && types !== null) {
      if (!Array.isArray(types) || types.length !== n)
        throw new ModelLoadError(`config.json: "layer_types" must list ${n} layer types`);
      sliding = types.map((t, i) => {
        if (t !== 'sliding_attention' && t !== 'full_attention')
          throw new ModelLoadError(
            `config.json: layer_types[${i}] is ${JSON.stringify(t)}; expected "sliding_attention" or "full_attention"`,
          );
        return t === 'sliding_attention';
      });
    } else if (version === 2) {
      sliding = Array.from({ length: n }, (_, i) => i % 2 === 0);
    } else {
      const pattern = c.positiveInt('sliding_window_pattern', 6);
      sliding = Array.from({ length: n }, (_, i) => (i + 1) % pattern !== 0);
    }
    windows = sliding.map((s) => (s ? window : 0));
  }
  const positive = (key: string, fallback: number): number => {
    const v = c.num(key, fallback);
    if (v <= 0) throw new ModelLoadError(`config.json: "${key}" must be positive, got ${v}`);
    return v;
  };
  return {
    ...base,
    version,
    embedScale: roundTo(scaleDtype, Math.sqrt(base.hiddenSize)),
    attnScale:
      version === 1 ? 1 / Math.sqrt(base.headDim) : 1 / Math.sqrt(positive('query_pre_attn_scalar', 256)),
    attnSoftcap: version === 1 ? 0 : capOf('attn_logit_softcapping', version === 2 ? 50 : null),
    finalSoftcap: version === 1 ? 0 : capOf('final_logit_softcapping', version === 2 ? 30 : null),
    windows,
    localRopeTheta: version === 3 ? positive('rope_local_base_freq', 10_000) : base.ropeTheta,
    localRope: version === 3,
    attentionBias: c.bool('attention_bias', false),
    slidingWindow: 0,
  };
}

/** Where the text model's tensors are: `model.` (text checkpoints) or a multimodal checkpoint's language model. */
function layout(w: Weights): { prefix: string; head: string; ignored: RegExp } {
  if (w.has('language_model.model.embed_tokens.weight'))
    return {
      prefix: 'language_model.model.',
      head: 'language_model.lm_head',
      ignored: /^(vision_tower|multi_modal_projector)\./,
    };
  if (w.has('model.language_model.embed_tokens.weight'))
    return {
      prefix: 'model.language_model.',
      head: 'lm_head',
      ignored: /^(model\.vision_tower|model\.multi_modal_projector|vision_tower|multi_modal_projector)\./,
    };
  return { prefix: 'model.', head: 'lm_head', ignored: /^$/ };
}

/**
 * Builds a Gemma 1/2/3 text model from blocks: scaled embedding, (1 + w) RMSNorms, GELU-tanh MLP, pre/post norms
 * (Gemma 2/3), q/k norms (Gemma 3), per-layer windows and RoPE tables, soft-caps, tied head.
 */
export async function createGemma(config: RawConfig, weights: Weights, backend: Backend): Promise<Model> {
  const before = backend.memoryInUse();
  const { prefix, head: headName, ignored } = layout(weights);
  const embedName = `${prefix}embed_tokens`;
  const embedInfo = weights.has(`${embedName}.weight`)
    ? weights.source.info(`${embedName}.weight`)
    : undefined;
  const embedDtype = weights.has(`${embedName}.scales`)
    ? weights.source.info(`${embedName}.scales`).dtype
    : embedInfo?.dtype;
  const c = readGemmaConfig(config, embedDtype?.toLowerCase());
  const h = c.hiddenSize;
  const qDim = c.numHeads * c.headDim;
  const kvDim = c.numKvHeads * c.headDim;
  const eps = c.rmsNormEps;
  const norm = (name: string, dim = h) => loadRmsNorm(weights, name, dim, eps, { unitOffset: true });
  const bias = c.attentionBias;
  const scratch = new Scratch(backend);
  const globalRope = new RopeTable(scratch, ropeInvFreq(c.headDim, c.ropeTheta, c.ropeScaling), 'half');
  const localRope = c.localRope
    ? new RopeTable(scratch, ropeInvFreq(c.headDim, c.localRopeTheta, undefined), 'half')
    : globalRope;
  const embed = await weights.linear(embedName, c.vocabSize, h);
  const layers: TransformerLayer[] = [];
  for (let i = 0; i < c.numLayers; i++) {
    const p = `${prefix}layers.${i}`;
    const window = c.windows[i]!;
    const optionalBias = async (name: string, dim: number) =>
      bias ? await weights.f32(`${p}.self_attn.${name}.bias`, [dim]) : undefined;
    const attention = new AttentionBlock(
      scratch,
      {
        wq: await weights.linear(`${p}.self_attn.q_proj`, qDim, h),
        wk: await weights.linear(`${p}.self_attn.k_proj`, kvDim, h),
        wv: await weights.linear(`${p}.self_attn.v_proj`, kvDim, h),
        wo: await weights.linear(`${p}.self_attn.o_proj`, h, qDim),
        bq: await optionalBias('q_proj', qDim),
        bk: await optionalBias('k_proj', kvDim),
        bv: await optionalBias('v_proj', kvDim),
        bo: await optionalBias('o_proj', h),
        qNorm: c.version === 3 ? await norm(`${p}.self_attn.q_norm.weight`, c.headDim) : undefined,
        kNorm: c.version === 3 ? await norm(`${p}.self_attn.k_norm.weight`, c.headDim) : undefined,
      },
      {
        nHeads: c.numHeads,
        nKvHeads: c.numKvHeads,
        headDim: c.headDim,
        scale: c.attnScale,
        window,
        softcap: c.attnSoftcap,
        rope: window > 0 ? localRope : globalRope,
      },
    );
    const mlp = new MlpBlock(
      scratch,
      {
        gate: await weights.linear(`${p}.mlp.gate_proj`, c.intermediateSize, h),
        up: await weights.linear(`${p}.mlp.up_proj`, c.intermediateSize, h),
        down: await weights.linear(`${p}.mlp.down_proj`, h, c.intermediateSize),
      },
      { activation: 'gelu_tanh' },
    );
    const sandwich = c.version > 1;
    layers.push(
      new TransformerLayer(scratch, {
        preAttentionNorm: await norm(`${p}.input_layernorm.weight`),
        attention,
        postAttentionNorm: sandwich ? await norm(`${p}.post_attention_layernorm.weight`) : undefined,
        preMlpNorm: await norm(
          sandwich ? `${p}.pre_feedforward_layernorm.weight` : `${p}.post_attention_layernorm.weight`,
        ),
        mlp,
        postMlpNorm: sandwich ? await norm(`${p}.post_feedforward_layernorm.weight`) : undefined,
      }),
    );
  }
  const finalNorm = await norm(`${prefix}norm.weight`);
  const tied = c.tieWordEmbeddings ?? !weights.has(`${headName}.weight`);
  if (!tied && !weights.has(`${headName}.weight`))
    throw new ModelLoadError(
      `checkpoint is missing tensor "${headName}.weight" (config.json sets tie_word_embeddings: false)`,
    );
  const head: Weight = tied ? embed : await weights.linear(headName, c.vocabSize, h);
  const unused = weights
    .unused()
    .filter(
      (n) => !ignored.test(n) && !/rotary_emb\.inv_freq$/.test(n) && !(tied && n.startsWith(`${headName}.`)),
    );
  if (unused.length > 0)
    throw new ModelLoadError(
      `checkpoint has ${unused.length} tensor(s) the ${c.modelType} architecture does not use, e.g. "${unused[0]}" — wrong model_type or num_hidden_layers?`,
    );
  return new TransformerModel(scratch, {
    modelType: c.modelType,
    maxPositionEmbeddings: c.maxPositionEmbeddings,
    embedding: new EmbeddingBlock(backend, embed, { scale: c.embedScale }),
    layers,
    head: new LmHead(scratch, { norm: finalNorm, weight: head, softcap: c.finalSoftcap }),
    weightBytes: backend.memoryInUse() - before,
  });
}

export const gemma: ArchitecturePlugin = {
  apiVersion: PLUGIN_API_VERSION,
  name: 'gemma',
  modelTypes: ['gemma', 'gemma2', 'gemma3_text', 'gemma3'],
  create: createGemma,
};
