import { createHash } from 'node:crypto';
import type { RawConfig } from './config';

/** What a tensor's digest covers besides its bytes: name, dtype, shape and length, unambiguously separated. */
function tensorHeader(name: string, dtype: string, shape: readonly number[], byteLength: number): string {
  return `${name}\0${dtype}\0${shape.join(',')}\0${byteLength}\0`;
}

/** The sha256 (hex) of one tensor: its name, dtype, shape and length, then every one of its bytes. */
export function tensorDigest(
  name: string,
  dtype: string,
  shape: readonly number[],
  bytes: Uint8Array,
): string {
  return createHash('sha256')
    .update(tensorHeader(name, dtype, shape, bytes.byteLength))
    .update(bytes)
    .digest('hex');
}

/**
 * Identity of a model's weights, accumulated while they load: per tensor its name, dtype, shape and the sha256 of
 * every one of its bytes. Any change to any byte of any tensor the model reads changes the model's fingerprint, so a
 * prompt cache made before the change is refused (MODEL_MISMATCH) instead of continuing with another model's keys and
 * values. A tensor's digest can come from a `DigestCache` instead, for a file verified unchanged.
 */
export class WeightDigest {
  private readonly entries = new Map<string, string>();

  /** Hashes `bytes`, all of them. Returns the tensor's digest. */
  add(name: string, dtype: string, shape: readonly number[], bytes: Uint8Array): string {
    const hex = tensorDigest(name, dtype, shape, bytes);
    this.entries.set(name, hex);
    return hex;
  }

  /** Records a tensor's digest known from elsewhere (a verified `DigestCache` entry). */
  set(name: string, hex: string): void {
    this.entries.set(name, hex);
  }

  /** Number of tensors recorded. */
  get size(): number {
    return this.entries.size;
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

/**
 * sha256 hex of the architecture config (cosmetic keys dropped) and the weights' identity. `v2`: tensors are hashed
 * whole (v1 sampled 16 windows of 4 KiB per tensor, so a change elsewhere went unnoticed).
 */
export function modelFingerprint(config: RawConfig, weights: WeightDigest): string {
  const arch = Object.fromEntries(Object.entries(config).filter(([k]) => !COSMETIC_KEYS.has(k)));
  return createHash('sha256')
    .update(`mnemo-model-v2\n${canonicalJson(arch)}\n${weights.digest()}`)
    .digest('hex');
}
