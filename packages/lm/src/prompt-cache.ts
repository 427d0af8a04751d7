import { type CacheKindOptions, type KVCache, trimCaches } from '@mnemo/kv-cache';
import type { ChatMessage } from '@mnemo/tokenizer';

/** Whether and how the chat template was applied to a cached prompt. */
export interface PromptTemplateUse {
  readonly applied: boolean;
  readonly systemPrompt?: string;
  /** The conversation so far, for caches saved from a chat. */
  readonly messages?: readonly ChatMessage[];
}

/**
 * KV caches (one per layer) together with the token ids whose keys and values they hold. Generation reuses the longest
 * common prefix of these ids with the new prompt's ids, trims the rest, and appends; afterwards `tokens` again names
 * exactly what the caches hold, so the next turn can reuse it.
 */
export class PromptCache {
  /**
   * Text of the cached prompt (the user's text, before any chat template) and how it was templated. A follow-up prompt
   * `B` is assembled as `prompt + B`, templated the same way, tokenized whole, and matched by token ids.
   */
  prompt = '';
  template: PromptTemplateUse = { applied: false };

  constructor(
    public caches: KVCache[],
    /** Token ids held, in order: `tokens.length === caches[0].offset`. */
    public tokens: number[] = [],
    /** Fingerprint of the model the caches belong to. */
    readonly modelFingerprint?: string,
    /**
     * Makes empty caches of the same kinds, used when the current ones cannot be trimmed (default: an empty copy of
     * each current cache, `KVCache.makeEmpty`).
     */
    private readonly remake?: () => KVCache[],
    /** The options the caches were made with, when `LM.makePromptCache` made them (`{}` for loaded ones). */
    readonly kind: CacheKindOptions = {},
  ) {}

  get length(): number {
    return this.tokens.length;
  }

  /**
   * Bytes of backend memory the caches hold now (`KVCache.byteLength` summed over the layers): each kind's own
   * accounting of its storage (f32, f16 or quantized rows, ring caches at their window, spare capacity included).
   */
  get byteLength(): number {
    let n = 0;
    for (const c of this.caches) n += c.byteLength;
    return n;
  }

  /** Bytes of the rows a saved file of these caches holds (`KVCache.stateByteLength` summed): no spare rows. */
  get stateByteLength(): number {
    let n = 0;
    for (const c of this.caches) n += c.stateByteLength;
    return n;
  }

  /**
   * Prepares the caches for `prompt`: keeps the longest common prefix (leaving at least one prompt token to compute,
   * for logits) and drops the rest. If the caches cannot be trimmed exactly, they are replaced by empty ones and the
   * whole prompt is recomputed — never reused wrongly. Returns the number of tokens reused.
   */
  prepare(prompt: readonly number[]): number {
    const held = this.tokens.length;
    let common = 0;
    const max = Math.min(held, prompt.length - 1);
    while (common < max && this.tokens[common] === prompt[common]) common++;
    const drop = held - common;
    if (drop > 0 && trimCaches(this.caches, drop) !== drop) {
      // A rotating cache that has wrapped, or a quantized one asked to go back past its conversion point, cannot give
      // back exactly these rows: start over rather than reuse anything wrongly.
      const fresh = this.remake ? this.remake() : this.caches.map((c) => c.makeEmpty());
      for (const c of this.caches) c.free();
      this.caches = fresh;
      common = 0;
    }
    this.tokens = prompt.slice(0, common) as number[];
    return common;
  }

  /**
   * Makes `tokens` name exactly what the caches hold again after a step failed midway (a prefill chunk that threw, a
   * failed forward): when every layer holds the same number of rows, `tokens` keeps that many ids (those rows were
   * computed from them, in order); otherwise the caches are replaced by empty ones. Either way the next `prepare`
   * reuses only what is really there.
   */
  recover(): void {
    const offsets = this.caches.map((c) => c.offset);
    const held = offsets[0] ?? 0;
    if (offsets.every((o) => o === held) && held <= this.tokens.length) {
      this.tokens = this.tokens.slice(0, held);
      return;
    }
    if (!this.remake)
      throw new Error(
        'prompt cache: the layers disagree after a failed step and no way to remake them was given',
      );
    for (const c of this.caches) c.free();
    this.caches = this.remake();
    this.tokens = [];
  }

  free(): void {
    for (const c of this.caches) c.free();
    this.tokens = [];
  }
}
