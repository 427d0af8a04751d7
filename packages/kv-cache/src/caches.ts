import type { Backend } from '@mnemo/tensor';
import type { KVCache, KvBits, KvGroupSize, LayerState } from './contract';
import { QuantizedKVCache } from './quantized';
import { RotatingKVCache } from './rotating';
import { StandardKVCache } from './standard';
import { CacheStateError } from './state-check';

/** Which kind of cache `makeCaches` builds (mlx-lm's `max_kv_size`, `kv_bits`, ... options). */
export interface CacheKindOptions {
  /** Bound the cache: `RotatingKVCache` with this `maxSize` (mlx-lm's `max_kv_size`). */
  readonly maxKvSize?: number;
  /** Leading positions a rotating cache never evicts (default 4, as mlx-lm's `make_prompt_cache`). */
  readonly keep?: number;
  /** Quantize the cache: `QuantizedKVCache` with these bits (mlx-lm's `kv_bits`). */
  readonly kvBits?: KvBits;
  /** Group size of a quantized cache (default 64, as mlx-lm's `kv_group_size`). */
  readonly kvGroupSize?: KvGroupSize;
  /** mlx-lm's `quantized_kv_start` (default 0). */
  readonly quantizedKvStart?: number;
}

export interface MakeCachesOptions extends CacheKindOptions {
  readonly backend: Backend;
  readonly nKvHeads: number;
  readonly headDim: number;
}

/** One cache per layer: rotating when `maxKvSize` is set, quantized when `kvBits` is set, standard otherwise. */
export function makeCaches(nLayers: number, opts: MakeCachesOptions): KVCache[] {
  if (!Number.isSafeInteger(nLayers) || nLayers < 1)
    throw new RangeError(`makeCaches: nLayers must be a positive integer, got ${nLayers}`);
  if (opts.maxKvSize !== undefined && opts.kvBits !== undefined)
    throw new RangeError(
      'makeCaches: a rotating cache cannot be quantized (maxKvSize and kvBits are both set)',
    );
  if (opts.maxKvSize !== undefined) {
    const keep = opts.keep ?? 4;
    if (!Number.isSafeInteger(opts.maxKvSize) || opts.maxKvSize <= keep)
      throw new RangeError(
        `makeCaches: maxKvSize must be an integer larger than keep (${keep}): a rotating cache keeps the first ${keep} tokens and at least one recent one, got ${opts.maxKvSize}`,
      );
  }
  const base = { backend: opts.backend, nKvHeads: opts.nKvHeads, headDim: opts.headDim };
  const make = (): KVCache => {
    if (opts.maxKvSize !== undefined)
      return new RotatingKVCache({ ...base, maxSize: opts.maxKvSize, keep: opts.keep ?? 4 });
    if (opts.kvBits !== undefined)
      return new QuantizedKVCache({
        ...base,
        bits: opts.kvBits,
        groupSize: opts.kvGroupSize ?? 64,
        start: opts.quantizedKvStart ?? 0,
      });
    return new StandardKVCache(base);
  };
  return Array.from({ length: nLayers }, make);
}

/** Whether every cache can be trimmed. */
export function canTrim(caches: readonly KVCache[]): boolean {
  return caches.length > 0 && caches.every((c) => c.isTrimmable);
}

/**
 * Drops the last `n` tokens of every layer; returns how many were dropped (0 when any layer cannot be trimmed: then
 * nothing changes). Callers needing exactly `n` must compare and recompute otherwise.
 */
export function trimCaches(caches: readonly KVCache[], n: number): number {
  if (!canTrim(caches)) return 0;
  const offset = caches[0]!.offset;
  if (caches.some((c) => c.offset !== offset))
    throw new RangeError(`trimCaches: layers disagree on offset (${caches.map((c) => c.offset).join(', ')})`);
  const dropped = caches[0]!.trim(n);
  if (dropped === 0) return 0;
  for (let i = 1; i < caches.length; i++) {
    const d = caches[i]!.trim(n);
    if (d !== dropped) throw new Error(`trimCaches: layer ${i} dropped ${d} tokens, layer 0 ${dropped}`);
  }
  return dropped;
}

/** The most rows the next forward step may take with every cache keeping results split-independent. */
export function maxStepRows(caches: readonly KVCache[]): number {
  let m = Number.POSITIVE_INFINITY;
  for (const c of caches) m = Math.min(m, c.maxRowsNextStep());
  return m;
}

/** Rebuilds a cache of any kind from `exportState()` output without replaying tokens. */
export function importState(backend: Backend, state: LayerState): KVCache {
  switch (state?.kind) {
    case 'standard':
      return StandardKVCache.fromState(backend, state);
    case 'rotating':
      return RotatingKVCache.fromState(backend, state);
    case 'quantized':
      return QuantizedKVCache.fromState(backend, state);
    default:
      throw new CacheStateError(
        `importState: unknown cache kind '${String((state as { kind?: unknown })?.kind)}'`,
      );
  }
}

/** Frees every cache. */
export function freeCaches(caches: readonly KVCache[]): void {
  for (const c of caches) c.free();
}
