import type { Backend } from '@mnemo/tensor';
import { type ArchitecturePlugin, type Model, PLUGIN_API_VERSION } from '../model';
import type { Weights } from '../weights';
import { buildDecoder, ConfigReader, type RawConfig, readDecoderConfig } from './common';

/** Mistral: Llama with an optional sliding attention window (`sliding_window`, null = none). */
export async function createMistral(config: RawConfig, weights: Weights, backend: Backend): Promise<Model> {
  const c = new ConfigReader(config);
  const args = {
    ...readDecoderConfig(c, { rmsNormEps: 1e-6, ropeTheta: 10000 }),
    slidingWindow: c.int('sliding_window', 0),
  };
  return buildDecoder(args, weights, backend, { qkvBias: false, oBias: false, qkNorm: false, fused: false });
}

export const mistral: ArchitecturePlugin = {
  apiVersion: PLUGIN_API_VERSION,
  name: 'mistral',
  modelTypes: ['mistral'],
  create: createMistral,
};
