import type { Backend } from '@mnemo/tensor';
import { type ArchitecturePlugin, type Model, PLUGIN_API_VERSION } from '../model';
import type { Weights } from '../weights';
import { buildDecoder, ConfigReader, type RawConfig, readDecoderConfig } from './common';

/** Qwen3: RMSNorm over each head of q and k before RoPE, explicit `head_dim`, optional `attention_bias`. */
export async function createQwen3(config: RawConfig, weights: Weights, backend: Backend): Promise<Model> {
  const c = new ConfigReader(config);
  const base = readDecoderConfig(c, { rmsNormEps: 1e-6, ropeTheta: 1000000 });
  const window = c.bool('use_sliding_window', false) ? c.int('sliding_window', 0) : 0;
  const bias = c.bool('attention_bias', false);
  return buildDecoder({ ...base, slidingWindow: window }, weights, backend, {
    qkvBias: bias,
    oBias: bias,
    qkNorm: true,
    fused: false,
  });
}

export const qwen3: ArchitecturePlugin = {
  apiVersion: PLUGIN_API_VERSION,
  name: 'qwen3',
  modelTypes: ['qwen3'],
  create: createQwen3,
};
