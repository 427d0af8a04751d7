import type { Backend } from '@mnemo/tensor';
import { ModelLoadError } from '../errors';
import { type ArchitecturePlugin, type Model, PLUGIN_API_VERSION } from '../model';
import type { Weights } from '../weights';
import { buildDecoder, ConfigReader, type RawConfig, readDecoderConfig } from './common';

/**
 * Llama 1/2/3 (and anything saved as `model_type: llama`): rotate-half RoPE (adjacent pairs with mlx's
 * `rope_traditional`), `rope_scaling` linear or llama3, `head_dim` override, optional `attention_bias`.
 */
export async function createLlama(config: RawConfig, weights: Weights, backend: Backend): Promise<Model> {
  const c = new ConfigReader(config);
  const args = readDecoderConfig(c, { rmsNormEps: 1e-6, ropeTheta: 10000 });
  if (c.bool('mlp_bias', false)) throw new ModelLoadError('config.json: mlp_bias is not supported');
  const bias = c.bool('attention_bias', false);
  return buildDecoder(args, weights, backend, { qkvBias: bias, oBias: bias, qkNorm: false, fused: false });
}

export const llama: ArchitecturePlugin = {
  apiVersion: PLUGIN_API_VERSION,
  name: 'llama',
  modelTypes: ['llama'],
  create: createLlama,
};
