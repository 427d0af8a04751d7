import { QUANT_BITS, QUANT_GROUP_SIZES, type QuantBits, type QuantGroupSize } from '@mnemo/tensor';
import type { RawConfig } from './config';
import { ModelLoadError } from './errors';

export interface QuantParams {
  readonly bits: QuantBits;
  readonly groupSize: QuantGroupSize;
}

/**
 * MLX's `quantization` config (also spelled `quantization_config`): global `{group_size, bits}` plus optional
 * per-module overrides keyed by the module path (`"model.layers.0.mlp.down_proj": {bits, group_size}` or `false`).
 */
export class QuantizationConfig {
  private constructor(
    readonly global: QuantParams,
    private readonly overrides: ReadonlyMap<string, QuantParams | false>,
  ) {}

  /** `undefined` when the config has no quantization section. */
  static parse(config: RawConfig, source = 'config.json'): QuantizationConfig | undefined {
    const q = config.quantization ?? config.quantization_config;
    if (q === undefined || q === null) return undefined;
    if (typeof q !== 'object' || Array.isArray(q))
      throw new ModelLoadError(`${source}: "quantization" must be an object`);
    const section = q as Record<string, unknown>;
    const mode = section.mode ?? 'affine';
    if (mode !== 'affine') {
      throw new ModelLoadError(
        `${source}: quantization mode ${JSON.stringify(mode)} is not supported (only "affine")`,
      );
    }
    const global = parseParams(section, `${source}: quantization`);
    const overrides = new Map<string, QuantParams | false>();
    for (const [key, value] of Object.entries(section)) {
      if (key === 'bits' || key === 'group_size' || key === 'mode' || key === 'quant_method') continue;
      if (value === false) overrides.set(key, false);
      else if (value && typeof value === 'object' && !Array.isArray(value)) {
        overrides.set(
          key,
          parseParams(value as Record<string, unknown>, `${source}: quantization["${key}"]`),
        );
      }
    }
    return new QuantizationConfig(global, overrides);
  }

  /** Parameters for the module at `path` (e.g. `model.layers.3.self_attn.q_proj`). */
  paramsFor(path: string): QuantParams | false {
    return this.overrides.get(path) ?? this.global;
  }
}

function parseParams(section: Record<string, unknown>, where: string): QuantParams {
  const bits = section.bits;
  const groupSize = section.group_size ?? 64;
  if (typeof bits !== 'number' || !(QUANT_BITS as readonly number[]).includes(bits)) {
    throw new ModelLoadError(
      `${where}: bits must be one of ${QUANT_BITS.join(', ')}, got ${JSON.stringify(bits)}`,
    );
  }
  if (typeof groupSize !== 'number' || !(QUANT_GROUP_SIZES as readonly number[]).includes(groupSize)) {
    throw new ModelLoadError(
      `${where}: group_size must be one of ${QUANT_GROUP_SIZES.join(', ')}, got ${JSON.stringify(groupSize)}`,
    );
  }
  return { bits: bits as QuantBits, groupSize: groupSize as QuantGroupSize };
}
