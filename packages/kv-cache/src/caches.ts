import type { Backend } from '@mnemo/tensor';
import type { CacheCodec } from './codec';
import type { CacheKind, CacheShape, KVCache, KvBits, KvGroupSize, LayerState } from './contract';
import { QuantizedKVCache, quantizedCodec } from './quantized';
import { RotatingKVCache, rotatingCodec } from './rotating';
import { StandardKVCache, standardCodec } from './standard';
import { CacheStateError } from './state-check';
import { type KvStorage, quantizedStorage } from './storage';

/** Which kind of cache to build (mlx-lm's `max_kv_size`, `kv_bits`, ... options, plus the storage dtype). */
export interface CacheKindOptions {
  /** Bound every layer's cache: `RotatingKVCache` with this `maxSize` (mlx-lm's `max_kv_size`). */
  readonly maxKvSize?: number;
  /** Leading positions a `maxKvSize` cache never evicts (default 4, as mlx-lm's `make_prompt_cache`). */
  readonly keep?: number;
  /** Quantize the cache to 4 or 8 bits (mlx-lm's `kv_bits`). */
  readonly kvBits?: KvBits;
  /** Group size of a quantized cache (default 64, as mlx-lm's `kv_group_size`). */
  readonly kvGroupSize?: KvGroupSize;
  /** mlx-lm's `quantized_kv_start` (default 0): global layers keep exact rows until then. */
  readonly quantizedKvStart?: number;
  /** Storage of unquantized caches: `f32` (default) or `f16` (half the memory). */
  readonly kvDtype?: 'f32' | 'f16';
}

/** What one attention layer needs from its cache (a model's `attentionLayers` entry). */
export interface LayerCacheSpec extends CacheShape {
  /** Sliding window of the layer (a query at p sees `p - window < j <= p`); 0 = global attention. */
  readonly window: number;
}

export interface LayerCachesOptions extends CacheKindOptions {
  readonly backend: Backend;
}

export interface MakeCachesOptions extends LayerCachesOptions, CacheShape {}

const CODECS: { readonly [K in CacheKind]: CacheCodec<Extract<LayerState, { kind: K }>> } = {
  standard: standardCodec,
  rotating: rotatingCodec,
  quantized: quantizedCodec,
};

/** The serialization of a cache kind; undefined for a kind this version does not know. */
export function codecFor(kind: string): CacheCodec | undefined {
  return Object.hasOwn(CODECS, kind) ? (CODECS[kind as CacheKind] as unknown as CacheCodec) : undefined;
}

/** Throws unless the kind options are consistent. */
export function checkKindOptions(what: string, o: CacheKindOptions): void {
  if (o.kvBits !== undefined && o.kvDtype !== undefined && o.kvDtype !== 'f32')
    throw new RangeError(
      `${what}: a quantized cache (kvBits ${o.kvBits}) cannot also be stored as ${o.kvDtype}`,
    );
  if (o.kvDtype !== undefined && o.kvDtype !== 'f32' && o.kvDtype !== 'f16')
    throw new RangeError(`${what}: kvDtype must be f32 or f16, got ${String(o.kvDtype)}`);
  if (o.kvBits !== undefined && o.kvBits !== 4 && o.kvBits !== 8)
    throw new RangeError(`${what}: kvBits must be 4 or 8, got ${String(o.kvBits)}`);
  if (o.kvGroupSize !== undefined && o.kvGroupSize !== 32 && o.kvGroupSize !== 64)
    throw new RangeError(`${what}: kvGroupSize must be 32 or 64, got ${String(o.kvGroupSize)}`);
  if (o.maxKvSize !== undefined) {
    const keep = o.keep ?? 4;
    if (!Number.isSafeInteger(o.maxKvSize) || o.maxKvSize <= keep)
      throw new RangeError(
        `${what}: maxKvSize must be an integer larger than keep (${keep}): a rotating cache keeps the first ${keep} tokens and at least one recent one, got ${o.maxKvSize}`,
      );
  }
}

/**
 * One cache per attention layer, as each layer needs it:
 * - a sliding-window layer (`window > 0`) gets a `RotatingKVCache` of `window` rows (keep 0): it never holds more
 *   than its window (or, with a smaller `maxKvSize`, a rotating cache of `maxKvSize` with `keep` sinks);
 * - a global layer gets a `RotatingKVCache(maxKvSize, keep ?? 4)` when `maxKvSize` is set, else a `QuantizedKVCache`
 *   when `kvBits` is set, else a `StandardKVCache`.
 * Rows are stored quantized (`kvBits`/`kvGroupSize`; rotating caches from the start, global ones after
 * `quantizedKvStart`), else as `kvDtype` (f32 or f16).
 */
export function makeLayerCaches(layers: readonly LayerCacheSpec[], opts: LayerCachesOptions): KVCache[] {
  if (!Array.isArray(layers) || layers.length === 0)
    throw new RangeError('makeLayerCaches: need at least one layer');
  checkKindOptions('makeLayerCaches', opts);
  const storage: KvStorage =
    opts.kvBits !== undefined
      ? quantizedStorage(opts.kvBits, opts.kvGroupSize ?? 64)
      : (opts.kvDtype ?? 'f32');
  const out: KVCache[] = [];
  try {
    for (const [i, l] of layers.entries()) {
      if (!Number.isSafeInteger(l.window) || l.window < 0)
        throw new RangeError(`makeLayerCaches: layer ${i} has a bad window ${l.window}`);
      const base = { backend: opts.backend, nKvHeads: l.nKvHeads, headDim: l.headDim };
      const bound = opts.maxKvSize;
      if (l.window > 0 && (bound === undefined || bound >= l.window))
        out.push(new RotatingKVCache({ ...base, maxSize: l.window, keep: 0, storage }));
      else if (bound !== undefined)
        out.push(new RotatingKVCache({ ...base, maxSize: bound, keep: opts.keep ?? 4, storage }));
      else if (opts.kvBits !== undefined)
        out.push(
          new QuantizedKVCache({
            ...base,
            bits: opts.kvBits,
            groupSize: opts.kvGroupSize ?? 64,
            start: opts.quantizedKvStart ?? 0,
          }),
        );
      else out.push(new StandardKVCache({ ...base, dtype: opts.kvDtype ?? 'f32' }));
    }
  } catch (e) {
    freeCaches(out);
    throw e;
  }
  return out;
}

/** `nLayers` caches of one shape for global-attention layers (see {@link makeLayerCaches}). */
export function makeCaches(nLayers: number, opts: MakeCachesOptions): KVCache[] {
  if (!Number.isSafeInteger(nLayers) || nLayers < 1)
    throw new RangeError(`makeCaches: nLayers must be a positive integer, got ${nLayers}`);
  checkKindOptions('makeCaches', opts);
  const layer = { window: 0, nKvHeads: opts.nKvHeads, headDim: opts.headDim };
  return makeLayerCaches(
    Array.from({ length: nLayers }, () => layer),
    opts,
  );
}

/** Whether every cache can drop at least one token (or is empty). */
export function canTrim(caches: readonly KVCache[]): boolean {
  return caches.length > 0 && caches.every((c) => c.isTrimmable);
}

/**
 * Drops the last `n` tokens of every layer; returns how many were dropped: `min(n, offset)`, or 0 when some layer
 * cannot give that many back exactly (then nothing changes). Callers needing exactly `n` must compare and recompute
 * otherwise.
 */
export function trimCaches(caches: readonly KVCache[], n: number): number {
  if (caches.length === 0) return 0;
  const offset = caches[0]!.offset;
  if (caches.some((c) => c.offset !== offset))
    throw new RangeError(`trimCaches: layers disagree on offset (${caches.map((c) => c.offset).join(', ')})`);
  const want = Math.min(n, offset);
  if (want === 0 || caches.some((c) => c.trimmable() < want)) return 0;
  for (let i = 0; i < caches.length; i++) {
    const d = caches[i]!.trim(want);
    if (d !== want) throw new Error(`trimCaches: layer ${i} dropped ${d} tokens, ${want} were asked`);
  }
  return want;
}

/** The most rows the next forward step may take with every cache keeping results split-independent. */
export function maxStepRows(caches: readonly KVCache[]): number {
  let m = Number.POSITIVE_INFINITY;
  for (const c of caches) m = Math.min(m, c.maxRowsNextStep());
  return m;
}

/** Rebuilds a cache of any kind from `exportState()` output without replaying tokens. */
export function importState(backend: Backend, state: LayerState): KVCache {
  const codec = codecFor((state as { kind?: unknown })?.kind as string);
  if (codec === undefined)
    throw new CacheStateError(
      `importState: unknown cache kind '${String((state as { kind?: unknown })?.kind)}'`,
    );
  return codec.fromState(backend, state);
}

/**
 * A cache's kind and parameters in words (no data read), e.g. `rotating (maxSize 64, keep 4, f32)`, `quantized (4-bit
 * g32, start 0)`, `standard (f16)`: two caches of the same description hold rows the same way.
 */
export function describeCache(c: KVCache): string {
  if (c instanceof RotatingKVCache) return `rotating (maxSize ${c.maxSize}, keep ${c.keep}, ${c.storage})`;
  if (c instanceof QuantizedKVCache) return `quantized (${c.bits}-bit g${c.groupSize}, start ${c.start})`;
  return `${c.kind} (${c.storage})`;
}

/** Frees every cache. */
export function freeCaches(caches: readonly KVCache[]): void {
  for (const c of caches) c.free();
}
