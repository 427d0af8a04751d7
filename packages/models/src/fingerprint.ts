import { createHash } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import type { RawConfig } from './config';

/** What a tensor's digest covers besides its bytes: name, dtype, shape and length, unambiguously separated. */
function tensorHeader(name: string, dtype: string, shape: readonly number[], byteLength: number): string {
  return `${name}\0${dtype}\0${shape.join(',')}\0${byteLength}\0`;
}

/**
 * Identity of a model's weights, accumulated while they load: per tensor its name, dtype, shape and the sha256 of
 * every one of its bytes. Any change to any byte of any tensor the model reads changes the model's fingerprint, so a
 * prompt cache made before the change is refused (MODEL_MISMATCH) instead of continuing with another model's keys and
 * values. Tensors can be hashed here ({@link add}) or on a worker thread while the load goes on
 * ({@link ParallelWeightHasher}).
 */
export class WeightDigest {
  private readonly entries = new Map<string, string>();

  /** Hashes `bytes` (all of them) on the calling thread. */
  add(name: string, dtype: string, shape: readonly number[], bytes: Uint8Array): void {
    const h = createHash('sha256');
    h.update(tensorHeader(name, dtype, shape, bytes.byteLength));
    h.update(bytes);
    this.entries.set(name, h.digest('hex'));
  }

  /** Records a tensor's digest computed elsewhere (by {@link ParallelWeightHasher}). */
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

/** The hashing thread: one sha256 per tensor, over a SharedArrayBuffer the loading thread keeps using meanwhile. */
const HASHER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
parentPort.on('message', (m) => {
  try {
    const h = createHash('sha256');
    h.update(m.head);
    h.update(new Uint8Array(m.buffer, m.offset, m.length));
    parentPort.postMessage({ id: m.id, hex: h.digest('hex') });
  } catch (e) {
    parentPort.postMessage({ id: m.id, error: String(e && e.message || e) });
  }
});
`;

/** Bytes handed to the hashing thread and not hashed yet, beyond which loading waits (bounds the memory held). */
const MAX_PENDING_BYTES = 256 * 1024 * 1024;

/**
 * Hashes tensors on a worker thread, in parallel with the rest of the load (reading the next tensor, converting and
 * uploading this one), into a {@link WeightDigest}. The bytes must live in a SharedArrayBuffer (see
 * {@link sharedBytes}) and must not change until {@link finish} resolves; they stay usable by the caller meanwhile.
 */
export class ParallelWeightHasher {
  private readonly worker: Worker;
  private nextId = 0;
  private pendingBytes = 0;
  private readonly pending = new Map<
    number,
    { name: string; bytes: number; resolve: () => void; reject: (e: Error) => void }
  >();
  private readonly settled: Promise<void>[] = [];
  private failure: Error | undefined;
  private drained: (() => void) | undefined;

  constructor(private readonly digest: WeightDigest) {
    this.worker = new Worker(HASHER_SOURCE, { eval: true, name: 'mnemo-weight-hasher' });
    this.worker.unref();
    this.worker.on('message', (m: { id: number; hex?: string; error?: string }) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      this.pendingBytes -= p.bytes;
      if (m.hex !== undefined) {
        this.digest.set(p.name, m.hex);
        p.resolve();
      } else p.reject(new Error(`hashing tensor "${p.name}" failed: ${m.error}`));
      if (this.pending.size === 0) this.worker.unref();
      this.drained?.();
    });
    this.worker.on('error', (e) => this.fail(e));
    this.worker.on('exit', (code) => {
      if (this.pending.size > 0)
        this.fail(new Error(`the weight hashing thread stopped (exit code ${code})`));
    });
  }

  private fail(e: Error): void {
    this.failure ??= e;
    for (const p of this.pending.values()) p.reject(this.failure);
    this.pending.clear();
    this.pendingBytes = 0;
    this.drained?.();
  }

  /**
   * Queues a tensor for hashing; resolves once it is queued (waiting first while too many bytes are queued). Its
   * digest is recorded in the WeightDigest when hashed; {@link finish} waits for all of them.
   */
  async add(name: string, dtype: string, shape: readonly number[], bytes: Uint8Array): Promise<void> {
    if (this.failure) throw this.failure;
    if (!(bytes.buffer instanceof SharedArrayBuffer)) {
      this.digest.add(name, dtype, shape, bytes);
      return;
    }
    while (this.pendingBytes > 0 && this.pendingBytes + bytes.byteLength > MAX_PENDING_BYTES) {
      await new Promise<void>((resolve) => {
        this.drained = resolve;
      });
      this.drained = undefined;
      if (this.failure) throw this.failure;
    }
    const id = this.nextId++;
    this.settled.push(
      new Promise<void>((resolve, reject) => {
        this.pending.set(id, { name, bytes: bytes.byteLength, resolve, reject });
      }),
    );
    this.pendingBytes += bytes.byteLength;
    this.worker.ref();
    this.worker.postMessage({
      id,
      head: tensorHeader(name, dtype, shape, bytes.byteLength),
      buffer: bytes.buffer,
      offset: bytes.byteOffset,
      length: bytes.byteLength,
    });
  }

  /** Waits until every queued tensor is hashed, then stops the thread. Throws if any hashing failed. */
  async finish(): Promise<void> {
    try {
      await Promise.all(this.settled);
      if (this.failure) throw this.failure;
    } finally {
      await this.close();
    }
  }

  /** Stops the thread (queued work is dropped). */
  async close(): Promise<void> {
    this.worker.removeAllListeners('exit');
    await this.worker.terminate();
  }
}

/** A zeroed byte array of `n` bytes in a SharedArrayBuffer (readable by {@link ParallelWeightHasher}'s thread). */
export function sharedBytes(n: number): Uint8Array {
  return new Uint8Array(new SharedArrayBuffer(n));
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
