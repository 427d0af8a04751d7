import type { Backend, Weight } from '@mnemo/tensor';
import { ConfigReader, type DecoderConfig, type RawConfig, readDecoderConfig } from '../config';
import { Decoder, type DecoderLayer, type DecoderWeights } from '../decoder';
import { ModelLoadError } from '../errors';
import { ropeInvFreq } from '../rope';
import type { Weights } from '../weights';

/** Which optional parts a Llama-family architecture has. */
export interface Features {
  /** q/k/v projection biases (`attention_bias`, always on for qwen2). */
  readonly qkvBias: boolean;
  /** Output projection bias. */
  readonly oBias: boolean;
  /** Per-head RMSNorm of q and k before RoPE (qwen3). */
  readonly qkNorm: boolean;
  /** Fused `qkv_proj` and `gate_up_proj` (phi3). */
  readonly fused: boolean;
}

/** Loads the embedding, final norm and head; the head is the embedding when tied (or when `lm_head` is absent and tying is unspecified). */
export async function loadEnds(
  c: DecoderConfig,
  w: Weights,
): Promise<{ embed: Weight; norm: DecoderWeights['norm']; head: Weight }> {
  const embed = await w.linear('model.embed_tokens', c.vocabSize, c.hiddenSize);
  const norm = await w.f32('model.norm.weight', [c.hiddenSize]);
  const tied = c.tieWordEmbeddings ?? !w.has('lm_head.weight');
  if (!tied && !w.has('lm_head.weight')) {
    throw new ModelLoadError(
      'checkpoint is missing tensor "lm_head.weight" (config.json sets tie_word_embeddings: false)',
    );
  }
  const head = tied ? embed : await w.linear('lm_head', c.vocabSize, c.hiddenSize);
  return { embed, norm, head };
}

/** Loads layer `i` under `model.layers.{i}` with HF names. */
export async function loadLayer(c: DecoderConfig, w: Weights, i: number, f: Features): Promise<DecoderLayer> {
  const p = `model.layers.${i}`;
  const qDim = c.numHeads * c.headDim;
  const kvDim = c.numKvHeads * c.headDim;
  const h = c.hiddenSize;
  let wq: Weight;
  let wk: Weight;
  let wv: Weight;
  let gate: Weight;
  let up: Weight;
  if (f.fused) {
    [wq, wk, wv] = (await w.linearSplit(`${p}.self_attn.qkv_proj`, [qDim, kvDim, kvDim], h)) as [
      Weight,
      Weight,
      Weight,
    ];
    [gate, up] = (await w.linearSplit(
      `${p}.mlp.gate_up_proj`,
      [c.intermediateSize, c.intermediateSize],
      h,
    )) as [Weight, Weight];
  } else {
    wq = await w.linear(`${p}.self_attn.q_proj`, qDim, h);
    wk = await w.linear(`${p}.self_attn.k_proj`, kvDim, h);
    wv = await w.linear(`${p}.self_attn.v_proj`, kvDim, h);
    gate = await w.linear(`${p}.mlp.gate_proj`, c.intermediateSize, h);
    up = await w.linear(`${p}.mlp.up_proj`, c.intermediateSize, h);
  }
  return {
    inputNorm: await w.f32(`${p}.input_layernorm.weight`, [h]),
    wq,
    wk,
    wv,
    wo: await w.linear(`${p}.self_attn.o_proj`, h, qDim),
    bq: f.qkvBias ? await w.f32(`${p}.self_attn.q_proj.bias`, [qDim]) : undefined,
    bk: f.qkvBias ? await w.f32(`${p}.self_attn.k_proj.bias`, [kvDim]) : undefined,
    bv: f.qkvBias ? await w.f32(`${p}.self_attn.v_proj.bias`, [kvDim]) : undefined,
    bo: f.oBias ? await w.f32(`${p}.self_attn.o_proj.bias`, [h]) : undefined,
    qNorm: f.qkNorm ? await w.f32(`${p}.self_attn.q_norm.weight`, [c.headDim]) : undefined,
    kNorm: f.qkNorm ? await w.f32(`${p}.self_attn.k_norm.weight`, [c.headDim]) : undefined,
    postNorm: await w.f32(`${p}.post_attention_layernorm.weight`, [h]),
    gate,
    up,
    down: await w.linear(`${p}.mlp.down_proj`, h, c.intermediateSize),
  };
}

/** Builds a {@link Decoder} from a parsed config: loads every tensor, checks none is left unused, sets up RoPE. */
export async function buildDecoder(
  c: DecoderConfig,
  w: Weights,
  backend: Backend,
  f: Features,
  opts: { rotDim?: number } = {},
): Promise<Decoder> {
  const before = backend.memoryInUse();
  const ends = await loadEnds(c, w);
  const layers: DecoderLayer[] = [];
  for (let i = 0; i < c.numLayers; i++) layers.push(await loadLayer(c, w, i, f));
  const tied = ends.head === ends.embed;
  const ignored = w
    .unused()
    .filter((n) => !/rotary_emb\.inv_freq$/.test(n) && !(tied && n.startsWith('lm_head.')));
  if (ignored.length > 0) {
    throw new ModelLoadError(
      `checkpoint has ${ignored.length} tensor(s) the ${c.modelType} architecture does not use, e.g. "${ignored[0]}" — wrong model_type or num_hidden_layers?`,
    );
  }
  const rotDim = opts.rotDim ?? c.headDim;
  return new Decoder(
    backend,
    {
      modelType: c.modelType,
      hidden: c.hiddenSize,
      nHeads: c.numHeads,
      nKvHeads: c.numKvHeads,
      headDim: c.headDim,
      ffn: c.intermediateSize,
      vocab: c.vocabSize,
      eps: c.rmsNormEps,
      window: c.slidingWindow,
      ropeLayout: c.ropeTraditional ? 'pair' : 'half',
      invFreq: ropeInvFreq(rotDim, c.ropeTheta, c.ropeScaling),
      attnScale: 1 / Math.sqrt(c.headDim),
      maxPositionEmbeddings: c.maxPositionEmbeddings,
    },
    { ...ends, layers },
    backend.memoryInUse() - before,
  );
}

export { ConfigReader, type RawConfig, readDecoderConfig };
