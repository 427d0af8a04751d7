import { cleanUpSafeCut, cleanUpTokenization } from './cleanup';

/** What the streaming detokenizer needs from a tokenizer. */
export interface DetokenizerSource {
  decode(
    ids: readonly number[],
    options?: { skipSpecialTokens?: boolean; cleanUpTokenizationSpaces?: boolean },
  ): string;
  isSpecial(id: number): boolean;
  readonly cleanUpTokenizationSpaces: boolean;
}

export interface DetokenizerOptions {
  /** Drop special tokens from the text, as `decode(ids, { skipSpecialTokens: true })` does. Default `false`. */
  skipSpecialTokens?: boolean;
}

const REPLACEMENT = '\uFFFD';

/**
 * Incremental, UTF-8-safe detokenization for streaming generation.
 *
 * `push(id)` returns the text the new token completes, `flush()` the rest at the end; the concatenation of every
 * delta equals `tokenizer.decode(allIds, { skipSpecialTokens })` exactly. A character whose bytes are split over
 * several byte-fallback (`<0xE6>`) or byte-level tokens is held back until it is complete, so no delta ends in a
 * U+FFFD that the full decode would not have.
 *
 * How: each step decodes a short window of ids (vLLM's prefix/read offsets): `decode(ids[p..n])` minus
 * `decode(ids[p..r])`, where the window start `p` stays one token behind the last emitted one. Decoding the
 * window from the same start both times keeps SentencePiece's "strip the leading space of the first token" rule
 * and byte grouping consistent with the full decode. When the tokenizer cleans up tokenization spaces (GPT-2 style
 * configs), text after the last space that a later token could still change (" ." → ".") is held back too.
 */
export class StreamingDetokenizer {
  private readonly ids: number[] = [];
  private prefixOffset = 0;
  private readOffset = 0;
  /** `decode(ids[prefixOffset..readOffset])`, cached. */
  private prefixText = '';
  /** Decoded raw text not yet emitted because clean-up could still change it. */
  private held = '';
  private emitted = '';
  private readonly skipSpecial: boolean;
  private readonly cleanUp: boolean;

  constructor(
    private readonly tokenizer: DetokenizerSource,
    options: DetokenizerOptions = {},
  ) {
    this.skipSpecial = options.skipSpecialTokens ?? false;
    this.cleanUp = tokenizer.cleanUpTokenizationSpaces;
  }

  /** The text emitted so far (the concatenation of every delta returned). */
  get text(): string {
    return this.emitted;
  }

  /** Ids pushed so far (without skipped special tokens). */
  get tokenIds(): readonly number[] {
    return this.ids;
  }

  private decodeRaw(from: number, to: number): string {
    if (to <= from) return '';
    return this.tokenizer.decode(this.ids.slice(from, to), {
      skipSpecialTokens: false,
      cleanUpTokenizationSpaces: false,
    });
  }

  /** Adds one generated token id; returns the new text it makes final (often `''`). */
  push(id: number): string {
    if (this.skipSpecial && this.tokenizer.isSpecial(id)) return '';
    this.ids.push(id);
    const full = this.decodeRaw(this.prefixOffset, this.ids.length);
    if (
      full.endsWith(REPLACEMENT) ||
      !full.startsWith(this.prefixText) ||
      full.length === this.prefixText.length
    ) {
      return '';
    }
    const raw = full.slice(this.prefixText.length);
    this.prefixOffset = this.readOffset;
    this.readOffset = this.ids.length;
    this.prefixText = this.decodeRaw(this.prefixOffset, this.readOffset);
    return this.emit(raw, false);
  }

  /** Ends the stream: returns whatever text was still held back (an incomplete character decodes as U+FFFD). */
  flush(): string {
    let raw = '';
    if (this.readOffset < this.ids.length) {
      const full = this.decodeRaw(this.prefixOffset, this.ids.length);
      raw = full.startsWith(this.prefixText) ? full.slice(this.prefixText.length) : full;
      this.prefixOffset = this.readOffset;
      this.readOffset = this.ids.length;
      this.prefixText = this.decodeRaw(this.prefixOffset, this.readOffset);
    }
    return this.emit(raw, true);
  }

  /** Forgets everything, to start a new stream. */
  reset(): void {
    this.ids.length = 0;
    this.prefixOffset = 0;
    this.readOffset = 0;
    this.prefixText = '';
    this.held = '';
    this.emitted = '';
  }

  private emit(raw: string, final: boolean): string {
    let out: string;
    if (!this.cleanUp) {
      out = raw;
    } else {
      this.held += raw;
      const cut = final ? this.held.length : cleanUpSafeCut(this.held);
      out = cleanUpTokenization(this.held.slice(0, cut));
      this.held = this.held.slice(cut);
    }
    this.emitted += out;
    return out;
  }
}

/** Creates a {@link StreamingDetokenizer} for `tokenizer`. */
export function createDetokenizer(
  tokenizer: DetokenizerSource,
  options?: DetokenizerOptions,
): StreamingDetokenizer {
  return new StreamingDetokenizer(tokenizer, options);
}
