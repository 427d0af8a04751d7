import { createHash } from 'node:crypto';
import { read } from 'node:fs';
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

/** Bytes read at a time by {@link tensorDigestFromFile}. */
const FILE_CHUNK = 4 << 20;

function readAt(fd: number, buf: Uint8Array, length: number, position: number): Promise<number> {
  return new Promise((res, rej) => read(fd, buf, 0, length, position, (e, n) => (e ? rej(e) : res(n))));
}

/**
 * {@link tensorDigest} of the `byteLength` bytes at `position` of an open file (`fd`), read through one bounded buffer
 * (never the whole tensor): for backends that load the tensor itself straight from the file. A file shorter than the
 * range is a RangeError.
 */
export async function tensorDigestFromFile(
  name: string,
  dtype: string,
  shape: readonly number[],
  byteLength: number,
  fd: number,
  position: number,
): Promise<string> {
  const h = createHash('sha256').update(tensorHeader(name, dtype, shape, byteLength));
  const buf = new Uint8Array(Math.min(byteLength, FILE_CHUNK));
  for (let done = 0; done < byteLength; ) {
    const want = Math.min(buf.byteLength, byteLength - done);
    let got = 0;
    while (got < want) {
      const n = await readAt(fd, buf.subarray(got), want - got, position + done + got);
      if (n === 0)
        throw new RangeError(
          `tensor "${name}": the file ends ${byteLength - done - got} bytes before the tensor does`,
        );
      got += n;
    }
    h.update(buf.subarray(0, want));
    done += want;
  }
  return h.digest('hex');
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

  /** {@link add} of the bytes at `position` of an open file, read through a bounded buffer. Returns the digest. */
  async addFromFile(
    name: string,
    dtype: string,
    shape: readonly number[],
    byteLength: number,
    fd: number,
    position: number,
  ): Promise<string> {
    const hex = await tensorDigestFromFile(name, dtype, shape, byteLength, fd, position);
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
