/**
 * Names for token prefixes. Every tier keys its entries by the model's identity and arithmetic (the scope) and by token
 * ids, never by prompt text. A prompt's prefixes are found through a chain of block hashes: the hash of the first
 * k·B tokens is sha256(hash of the first (k−1)·B tokens ‖ the k-th block's ids), so two prompts share the hash at
 * boundary k exactly when they share their first k·B tokens (up to sha256 collisions, and every tier checks the
 * tokens of what it loads anyway).
 */
import { createHash } from 'node:crypto';

/** Tokens per block of the prefix chain. */
export const BLOCK_TOKENS = 16;

const SEED = createHash('sha256').update('mnemo-prefix-chain-v1').digest();

function idsBytes(tokens: readonly number[], start: number, end: number): Buffer {
  const b = Buffer.allocUnsafe((end - start) * 4);
  for (let i = start; i < end; i++) b.writeUInt32LE(tokens[i]! >>> 0, (i - start) * 4);
  return b;
}

/**
 * Hashes of the prefixes of `tokens` at every block boundary up to `limit` tokens: element k−1 names the first
 * k·`block` tokens (hex sha256).
 */
export function chainHashes(
  tokens: readonly number[],
  limit: number = tokens.length,
  block: number = BLOCK_TOKENS,
): string[] {
  const out: string[] = [];
  let prev: Buffer = SEED;
  const n = Math.min(limit, tokens.length);
  for (let end = block; end <= n; end += block) {
    prev = createHash('sha256')
      .update(prev)
      .update(idsBytes(tokens, end - block, end))
      .digest();
    out.push(prev.toString('hex'));
  }
  return out;
}

/** What a cache's contents depend on besides the token ids: the model, its tokenizer, its arithmetic, the cache kind. */
export interface ScopeParts {
  readonly modelFingerprint: string;
  readonly tokenizerFingerprint: string;
  readonly numerics: string;
  readonly cacheKind: string;
}

/** A short name (32 hex digits) for a scope. */
export function scopeOf(p: ScopeParts): string {
  return createHash('sha256')
    .update(JSON.stringify([p.modelFingerprint, p.tokenizerFingerprint, p.numerics, p.cacheKind]))
    .digest('hex')
    .slice(0, 32);
}

/** The id of an entry holding exactly `tokens` in `scope` (64 hex digits: also its file name on disk). */
export function entryId(scope: string, tokens: readonly number[]): string {
  return createHash('sha256')
    .update(`mnemo-entry-v1:${scope}:${tokens.length}:`)
    .update(idsBytes(tokens, 0, tokens.length))
    .digest('hex');
}

/** Whether `s` is an entry id (the only thing ever used as a cache file name). */
export function isEntryId(s: string): boolean {
  return /^[0-9a-f]{64}$/.test(s);
}

/** Length of the common prefix of `a` and `b`, at most `max`. */
export function commonPrefix(
  a: readonly number[],
  b: readonly number[],
  max = Number.POSITIVE_INFINITY,
): number {
  const n = Math.min(a.length, b.length, max);
  let i = 0;
  while (i < n && a[i] === b[i]) i++;
  return i;
}
