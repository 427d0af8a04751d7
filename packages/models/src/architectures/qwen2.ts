import type { Backend } from '@mnemo/tensor';
import { type ArchitecturePlugin, type Model, PLUGIN_API_VERSION } from '../model';
import type { Weights } from '../weights';
import { buildDecoder, ConfigReader, type RawConfig, readDecoderConfig } from './common';

/** Qwen2 / Qwen2.5: Llama with q/k/v projection biases; sliding window only when `use_sliding_window` is set. */
export async function createQwen2(config: RawConfig, weights: Weights, backend: Backend): Promise<Model> {
  const c = new ConfigReader(config);
  const base = readDecoderConfig(c, { rmsNormEps: 1e-6, ropeTheta: 1000000 });
  const window = c.bool('use_sliding_window', false) ? c.int('sliding_window', 0) : 0;
  return buildDecoder({ ...base, slidingWindow: window }, weights, backend, {
    qkvBias: true,
    oBias: false,
    qkNorm: false,
    fused: false,
  });
}

export const qwen2: ArchitecturePlugin = {
  apiVersion: PLUGIN_API_VERSION,
  name: 'qwen2',
  modelTypes: ['qwen2'],
  create: createQwen2,
};
