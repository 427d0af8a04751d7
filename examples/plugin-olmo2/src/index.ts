import {
  type ArchitecturePlugin,
  AttentionBlock,
  ConfigReader,
  EmbeddingBlock,
  LmHead,
  loadRmsNorm,
  MlpBlock,
  type Model,
  ModelLoadError,
  PLUGIN_API_VERSION,
  type RawConfig,
  RopeTable,
  readDecoderConfig,
  ropeInvFreq,
  Scratch,
  TransformerLayer,
  TransformerModel,
  type Weights,
} from '@mnemo/models';
import type { Backend } from '@mnemo/tensor';

/**
 * OLMo 2 (`model_type: olmo2`), assembled from the blocks of `@mnemo/models`. It is a Llama variant with two
 * differences the built-in decoder does not have:
 * - post-norm layers: `h += norm(attention(h))`, then `h += norm(mlp(h))` (no norm before attention or the MLP);
 * - q/k RMSNorm over the whole projection (`[nHeads · headDim]`, `[nKvHeads · headDim]`), not per head, before RoPE.
 * Tensor names are Hugging Face's (`model.layers.N.self_attn.q_norm`, `post_attention_layernorm`,
 * `post_feedforward_layernorm`, ...).
 */
export async function createOlmo2(config: RawConfig, weights: Weights, backend: Backend): Promise<Model> {
  const before = backend.memoryInUse();
  const c = readDecoderConfig(new ConfigReader(config), { rmsNormEps: 1e-6, ropeTheta: 500000 });
  if (new ConfigReader(config).bool('attention_bias', false))
    throw new ModelLoadError('config.json: attention_bias is not supported by this OLMo 2 plugin');
  const h = c.hiddenSize;
  const qDim = c.numHeads * c.headDim;
  const kvDim = c.numKvHeads * c.headDim;
  const norm = (name: string, dim = h) => loadRmsNorm(weights, name, dim, c.rmsNormEps);
  const scratch = new Scratch(backend);
  const rope = new RopeTable(scratch, ropeInvFreq(c.headDim, c.ropeTheta, c.ropeScaling), 'half');
  const layers: TransformerLayer[] = [];
  for (let i = 0; i < c.numLayers; i++) {
    const p = `model.layers.${i}`;
    const attention = new AttentionBlock(
      scratch,
      {
        wq: await weights.linear(`${p}.self_attn.q_proj`, qDim, h),
        wk: await weights.linear(`${p}.self_attn.k_proj`, kvDim, h),
        wv: await weights.linear(`${p}.self_attn.v_proj`, kvDim, h),
        wo: await weights.linear(`${p}.self_attn.o_proj`, h, qDim),
        // whole-projection norms: their weights have nHeads·headDim (nKvHeads·headDim) elements
        qNorm: await norm(`${p}.self_attn.q_norm.weight`, qDim),
        kNorm: await norm(`${p}.self_attn.k_norm.weight`, kvDim),
      },
      {
        nHeads: c.numHeads,
        nKvHeads: c.numKvHeads,
        headDim: c.headDim,
        scale: 1 / Math.sqrt(c.headDim),
        rope,
      },
    );
    const mlp = new MlpBlock(
      scratch,
      {
        gate: await weights.linear(`${p}.mlp.gate_proj`, c.intermediateSize, h),
        up: await weights.linear(`${p}.mlp.up_proj`, c.intermediateSize, h),
        down: await weights.linear(`${p}.mlp.down_proj`, h, c.intermediateSize),
      },
      { activation: 'silu' },
    );
    layers.push(
      new TransformerLayer(scratch, {
        attention,
        postAttentionNorm: await norm(`${p}.post_attention_layernorm.weight`),
        mlp,
        postMlpNorm: await norm(`${p}.post_feedforward_layernorm.weight`),
      }),
    );
  }
  const embed = await weights.linear('model.embed_tokens', c.vocabSize, h);
  const tied = c.tieWordEmbeddings ?? !weights.has('lm_head.weight');
  const head = tied ? embed : await weights.linear('lm_head', c.vocabSize, h);
  const finalNorm = await norm('model.norm.weight');
  const unused = weights.unused().filter((n) => !(tied && n.startsWith('lm_head.')));
  if (unused.length > 0)
    throw new ModelLoadError(`checkpoint has tensor(s) OLMo 2 does not use, e.g. "${unused[0]}"`);
  return new TransformerModel(scratch, {
    modelType: c.modelType,
    maxPositionEmbeddings: c.maxPositionEmbeddings,
    embedding: new EmbeddingBlock(backend, embed),
    layers,
    head: new LmHead(scratch, { norm: finalNorm, weight: head }),
    weightBytes: backend.memoryInUse() - before,
  });
}

/** The plugin: register it with `registerArchitecture(olmo2Plugin)` or a registry of your own. */
export const olmo2Plugin: ArchitecturePlugin = {
  apiVersion: PLUGIN_API_VERSION,
  name: 'olmo2 (example plugin)',
  modelTypes: ['olmo2'],
  create: createOlmo2,
};
