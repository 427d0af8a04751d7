import type { Backend } from '@mnemo/tensor';
import { ModelLoadError } from '../errors';
import { type ArchitecturePlugin, type Model, PLUGIN_API_VERSION } from '../model';
import type { Weights } from '../weights';
import { buildDecoder, ConfigReader, type RawConfig, readDecoderConfig } from './common';

/**
 * Phi-3: fused `qkv_proj` (q, k, v rows in that order) and `gate_up_proj` (gate rows, then up rows), split at load;
 * `partial_rotary_factor` rotates only the first part of each head.
 */
export async function createPhi3(config: RawConfig, weights: Weights, backend: Backend): Promise<Model> {
  const c = new ConfigReader(config);
  const base = readDecoderConfig(c, { rmsNormEps: 1e-5, ropeTheta: 10000 });
  const scaling = base.ropeScaling;
  const type = scaling ? (scaling.rope_type ?? scaling.type) : undefined;
  if (type === 'longrope' || type === 'su') {
    throw new ModelLoadError(`config.json: phi3 rope_scaling type "${String(type)}" is not supported yet`);
  }
  const factor = c.num('partial_rotary_factor', 1);
  const rotDim = Math.round(base.headDim * factor);
  if (rotDim <= 0 || rotDim % 2 !== 0 || rotDim > base.headDim) {
    throw new ModelLoadError(
      `config.json: partial_rotary_factor ${factor} gives an invalid rotary dimension ${rotDim}`,
    );
  }
  const window = c.int('sliding_window', 0);
  return buildDecoder(
    { ...base, slidingWindow: window },
    weights,
    backend,
    { qkvBias: false, oBias: false, qkNorm: false, fused: true },
    { rotDim },
  );
}

export const phi3: ArchitecturePlugin = {
  apiVersion: PLUGIN_API_VERSION,
  name: 'phi3',
  modelTypes: ['phi3'],
  create: createPhi3,
};
