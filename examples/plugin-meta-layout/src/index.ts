import {
  type ArchitecturePlugin,
  buildDecoder,
  ConfigReader,
  type Model,
  PLUGIN_API_VERSION,
  type RawConfig,
  readDecoderConfig,
  type TensorSource,
  Weights,
} from '@mnemo/models';
import type { Backend } from '@mnemo/tensor';

/** Meta's original Llama tensor names → Hugging Face names (what the shared decoder loads). */
export function hfName(meta: string): string {
  const rules: [RegExp, string][] = [
    [/^tok_embeddings\.(.+)$/, 'model.embed_tokens.$1'],
    [/^norm\.(.+)$/, 'model.norm.$1'],
    [/^output\.(.+)$/, 'lm_head.$1'],
    [/^layers\.(\d+)\.attention\.wq\.(.+)$/, 'model.layers.$1.self_attn.q_proj.$2'],
    [/^layers\.(\d+)\.attention\.wk\.(.+)$/, 'model.layers.$1.self_attn.k_proj.$2'],
    [/^layers\.(\d+)\.attention\.wv\.(.+)$/, 'model.layers.$1.self_attn.v_proj.$2'],
    [/^layers\.(\d+)\.attention\.wo\.(.+)$/, 'model.layers.$1.self_attn.o_proj.$2'],
    [/^layers\.(\d+)\.feed_forward\.w1\.(.+)$/, 'model.layers.$1.mlp.gate_proj.$2'],
    [/^layers\.(\d+)\.feed_forward\.w2\.(.+)$/, 'model.layers.$1.mlp.down_proj.$2'],
    [/^layers\.(\d+)\.feed_forward\.w3\.(.+)$/, 'model.layers.$1.mlp.up_proj.$2'],
    [/^layers\.(\d+)\.attention_norm\.(.+)$/, 'model.layers.$1.input_layernorm.$2'],
    [/^layers\.(\d+)\.ffn_norm\.(.+)$/, 'model.layers.$1.post_attention_layernorm.$2'],
  ];
  for (const [re, to] of rules) if (re.test(meta)) return meta.replace(re, to);
  return meta;
}

/** Presents a checkpoint with Meta names under Hugging Face names. */
export function renamed(source: TensorSource): TensorSource {
  const toMeta = new Map(source.names().map((n) => [hfName(n), n]));
  const meta = (name: string) => toMeta.get(name) ?? `\0missing:${name}`;
  return {
    names: () => [...toMeta.keys()],
    has: (name) => toMeta.has(name),
    info: (name) => source.info(meta(name)),
    read: (name) => source.read(meta(name)),
  };
}

async function create(config: RawConfig, weights: Weights, backend: Backend): Promise<Model> {
  const args = readDecoderConfig(new ConfigReader(config), { rmsNormEps: 1e-5, ropeTheta: 10000 });
  const hf = new Weights(renamed(weights.source), backend, weights.quantization);
  return buildDecoder(args, hf, backend, { qkvBias: false, oBias: false, qkNorm: false, fused: false });
}

/** The plugin: register it with `registerArchitecture(metaLayoutPlugin)` or a registry of your own. */
export const metaLayoutPlugin: ArchitecturePlugin = {
  apiVersion: PLUGIN_API_VERSION,
  name: 'llama (Meta layout)',
  modelTypes: ['llama-meta'],
  create,
};
