import { TokenizerLoadError } from './errors';
import type { TokenizerJson } from './types';

/** What loading learns from checking a tokenizer.json's token ids. */
export interface VocabFacts {
  /** Highest token id (model vocabulary and added tokens). */
  readonly maxId: number;
  /**
   * An upper bound of the text one token decodes to, in UTF-16 units: the longest token string plus one (byte-level,
   * metaspace and byte-fallback tokens never decode to more characters than they are written with; a decoder may add
   * one space between tokens).
   */
  readonly maxTokenChars: number;
}

/** Token strings and ids of the model's vocabulary: `{token: id}` (BPE, WordPiece, WordLevel) or `[[piece, score]]`. */
function* modelEntries(vocab: unknown): Generator<[string, unknown]> {
  if (Array.isArray(vocab)) {
    for (let i = 0; i < vocab.length; i++) {
      const e = vocab[i] as unknown;
      yield [Array.isArray(e) ? String(e[0]) : String(e), i];
    }
  } else if (vocab !== null && typeof vocab === 'object') {
    yield* Object.entries(vocab as Record<string, unknown>);
  }
}

function countEntries(vocab: unknown): number {
  if (Array.isArray(vocab)) return vocab.length;
  if (vocab !== null && typeof vocab === 'object') return Object.keys(vocab).length;
  return 0;
}

/**
 * Checks every token id before the tokenizer is built: each must be a non-negative integer no larger than twice the
 * number of tokens (plus 1,024). Real tokenizers number their tokens from 0 with few or no gaps; an id such as 1e9
 * would make the tokenizer library walk a billion empty slots (a 53-second load) for nothing.
 */
export function checkVocab(tj: TokenizerJson, file: string): VocabFacts {
  const vocab = tj.model?.vocab;
  const added = Array.isArray(tj.added_tokens) ? tj.added_tokens : [];
  const limit = 2 * (countEntries(vocab) + added.length) + 1024;
  let maxId = -1;
  let maxChars = 0;
  const check = (what: string, token: string, id: unknown): void => {
    if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 0 || id > limit) {
      throw new TokenizerLoadError(
        file,
        `${what} ${JSON.stringify(token.length > 64 ? `${token.slice(0, 64)}…` : token)} has id ${String(id)}: ids must be integers from 0 to ${limit} for a vocabulary of this size`,
      );
    }
    if (id > maxId) maxId = id;
    if (token.length > maxChars) maxChars = token.length;
  };
  for (const [token, id] of modelEntries(vocab)) check('token', token, id);
  for (const t of added) {
    const content = typeof t?.content === 'string' ? t.content : '';
    check('added token', content, t?.id);
  }
  return { maxId, maxTokenChars: maxChars + 1 };
}
