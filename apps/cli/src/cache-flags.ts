import type { CacheKindOptions } from '@mnemo/kv-cache';
import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';
import { intArg } from './options';

export interface CacheFlags {
  maxKvSize?: number;
  kvBits?: 4 | 8;
  kvGroupSize?: 32 | 64;
  quantizedKvStart?: number;
  kvDtype?: 'f32' | 'f16';
}

function oneOf<T extends number>(values: readonly T[]) {
  return (value: string): T => {
    const n = Number(value);
    if (!(values as readonly number[]).includes(n) || !/^\d+$/.test(value)) {
      throw new InvalidArgumentError(`expected one of ${values.join(', ')}, got "${value}"`);
    }
    return n as T;
  };
}

/** A rotating cache keeps the first 4 tokens (mlx-lm's `keep`) and at least one recent one. */
function maxKvSizeArg(value: string): number {
  const n = intArg(1, 1 << 24)(value);
  if (n <= 4)
    throw new InvalidArgumentError(
      'It must be at least 5: a rotating cache keeps the first 4 tokens and at least one recent one.',
    );
  return n;
}

function dtypeArg(value: string): 'f32' | 'f16' {
  if (value !== 'f32' && value !== 'f16')
    throw new InvalidArgumentError(`expected f32 or f16, got "${value}"`);
  return value;
}

/** `--max-kv-size`, `--kv-dtype`, `--kv-bits`, `--kv-group-size`, `--quantized-kv-start`. */
export function addCacheFlags(cmd: Command): Command {
  return cmd
    .option(
      '--max-kv-size <n>',
      'bound the KV cache to n tokens (rotating cache; at least 5: it keeps the first 4 tokens)',
      maxKvSizeArg,
    )
    .option(
      '--kv-dtype <dtype>',
      'store the KV cache as f32 (default) or f16 (half the memory; cached and uncached runs stay equal)',
      dtypeArg,
    )
    .option('--kv-bits <bits>', 'quantize the KV cache to 4 or 8 bits', oneOf([4, 8] as const))
    .option(
      '--kv-group-size <n>',
      'group size of the quantized KV cache (32 or 64)',
      oneOf([32, 64] as const),
    )
    .option(
      '--quantized-kv-start <n>',
      'tokens kept unquantized before the KV cache is quantized',
      intArg(0, 1 << 24),
    );
}

export function cacheKind(f: CacheFlags): CacheKindOptions {
  return {
    ...(f.maxKvSize !== undefined ? { maxKvSize: f.maxKvSize } : {}),
    ...(f.kvBits !== undefined ? { kvBits: f.kvBits } : {}),
    ...(f.kvGroupSize !== undefined ? { kvGroupSize: f.kvGroupSize } : {}),
    ...(f.quantizedKvStart !== undefined ? { quantizedKvStart: f.quantizedKvStart } : {}),
    ...(f.kvDtype !== undefined ? { kvDtype: f.kvDtype } : {}),
  };
}

export function hasCacheFlags(f: CacheFlags): boolean {
  return Object.keys(cacheKind(f)).length > 0;
}
