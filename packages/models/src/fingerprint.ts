import { createHash } from 'node:crypto';
import type { RawConfig } from './config';

/** Bytes sampled from each tensor for its identity: 16 evenly spaced 4 KiB windows (the whole tensor when smaller). */
const SAMPLES = 16;
const WINDOW = 4096;

/**
 * Identity of a model's weights, accumulated while they load: per tensor its name, dtype, shape and a digest of
 * evenly spaced samples of its bytes (the whole tensor up to 64 KiB). Hashing every byte of a multi-GB checkpoint would
 * add seconds to every load; samples change with any fine-tune or re-quantization that touches a tensor broadly.
 */
export class WeightDigest {
  private readonly entries = new Map<string, string>();

  add(name: string, dtype: string, shape: readonly number[], bytes: Uint8Array): void {
    const h = createHash('sha256');
    h.update(`${name}\0${dtype}\0${shape.join(',')}\0${bytes.byteLength}\0`);
    if (bytes.byteLength <= SAMPLES * WINDOW) h.update(bytes);
    else {
      const step = Math.floor((bytes.byteLength - WINDOW) / (SAMPLES - 1));
      for (let i = 0; i < SAMPLES; i++) h.update(bytes.subarray(i * step, i * step + WINDOW));
    }
    this.entries.set(name, h.digest('hex'));
  }

  digest(): string {
    const h = createHash('sha256');
    for (const name of [...this.entries.keys()].sort()) h.update(`${name}=${this.entries.get(name)}\n`);
    return h.digest('hex');
  }
}

/** JSON with object keys sorted, so equal configs serialise equally. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value && typeof value === 'object') {
    const o = value as Record<string, unknown>;
    return `{${Object.keys(o)
      .sort()
      .filter((k) => o[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

/** Keys of config.json that do not change what the model computes. */
const COSMETIC_KEYS = new Set([
  '_name_or_path',
  'transformers_version',
  'architectures',
  'torch_dtype',
  'use_cache',
]);

/** sha256 hex of the architecture config (cosmetic keys dropped) and the weights' identity. */
export function modelFingerprint(config: RawConfig, weights: WeightDigest): string {
  const arch = Object.fromEntries(Object.entries(config).filter(([k]) => !COSMETIC_KEYS.has(k)));
  return createHash('sha256')
    .update(`mnemo-model-v1\n${canonicalJson(arch)}\n${weights.digest()}`)
    .digest('hex');
}
