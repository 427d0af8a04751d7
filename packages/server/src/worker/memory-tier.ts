/**
 * The memory tier: prompt caches kept in the backend after their request, reused by the next prompt that shares their
 * longest prefix. Least recently used entries go first when the byte budget is exceeded; the prefixes of what was
 * evicted are remembered (as chain hashes, bounded) so a later miss can say "evicted" instead of nothing.
 *
 * Lookup compares token ids exactly against every entry (an entry is a whole conversation, so there are few; each
 * comparison stops at the first difference).
 */
import type { PromptCache } from '@mnemo/lm';
import { chainHashes, commonPrefix } from '../cache/prefix';

interface Entry {
  readonly pc: PromptCache;
  readonly bytes: number;
}

/** Evicted prefix hashes remembered for diagnostics. */
const MAX_GHOSTS = 65_536;

export class MemoryTier {
  /** Map order is recency order: the first entry is the least recently used. */
  readonly #entries = new Map<number, Entry>();
  readonly #ghosts = new Map<string, number>();
  #bytes = 0;
  #next = 1;

  constructor(
    readonly budgetBytes: number,
    private readonly blockTokens: number,
  ) {}

  get bytes(): number {
    return this.#bytes;
  }
  get size(): number {
    return this.#entries.size;
  }

  /** The entry sharing the longest prefix with `prompt` (at most `max` tokens), if any shares one. */
  best(prompt: readonly number[], max: number): { key: number; lcp: number; length: number } | undefined {
    let best: { key: number; lcp: number; length: number } | undefined;
    for (const [key, e] of this.#entries) {
      const lcp = commonPrefix(e.pc.tokens, prompt, max);
      if (lcp > 0 && (best === undefined || lcp > best.lcp)) best = { key, lcp, length: e.pc.tokens.length };
    }
    return best;
  }

  /** Removes an entry and hands its cache to the caller (who gives it back with `put` or frees it). */
  take(key: number): PromptCache {
    const e = this.#entries.get(key);
    if (!e) throw new Error(`memory tier: no entry ${key}`);
    this.#entries.delete(key);
    this.#bytes -= e.bytes;
    return e.pc;
  }

  /**
   * Keeps `pc`, evicting least recently used entries to stay within the budget. An entry counts the backend bytes its
   * caches hold (`PromptCache.byteLength`: each cache kind's own accounting — f16 or quantized rows, ring caches of
   * sliding-window layers at their window). A cache bigger than the whole budget, or empty, is freed instead. An entry
   * holding exactly the same tokens is replaced.
   */
  put(pc: PromptCache): void {
    const bytes = pc.byteLength;
    if (pc.tokens.length === 0 || bytes > this.budgetBytes) {
      this.#remember(pc.tokens);
      pc.free();
      return;
    }
    for (const [key, e] of this.#entries) {
      if (
        e.pc.tokens.length === pc.tokens.length &&
        commonPrefix(e.pc.tokens, pc.tokens) === pc.tokens.length
      ) {
        this.take(key).free();
        break;
      }
    }
    while (this.#bytes + bytes > this.budgetBytes && this.#entries.size > 0) {
      const [key] = this.#entries.keys();
      const old = this.take(key!);
      this.#remember(old.tokens);
      old.free();
    }
    this.#entries.set(this.#next++, { pc, bytes });
    this.#bytes += bytes;
  }

  /** Length of the longest evicted prefix among the boundaries named by `chain` (0 if none). */
  evicted(chain: readonly string[]): number {
    for (let k = chain.length; k > 0; k--) if (this.#ghosts.has(chain[k - 1]!)) return k * this.blockTokens;
    return 0;
  }

  #remember(tokens: readonly number[]): void {
    for (const h of chainHashes(tokens, tokens.length, this.blockTokens)) {
      this.#ghosts.delete(h);
      this.#ghosts.set(h, tokens.length);
    }
    while (this.#ghosts.size > MAX_GHOSTS) {
      const [oldest] = this.#ghosts.keys();
      this.#ghosts.delete(oldest!);
    }
  }

  /** Frees every entry. */
  clear(): void {
    for (const e of this.#entries.values()) e.pc.free();
    this.#entries.clear();
    this.#bytes = 0;
  }
}
