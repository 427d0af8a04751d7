import { TokenizerLoadError } from './errors';
import type { TokenizerJson } from './types';

/**
 * Builds the `tokenizer.json` of a GPT-2-style byte-level BPE tokenizer from its `vocab.json` (token → id) and
 * `merges.txt` (an optional `#version` line, then one `left right` merge a line), as transformers'
 * `GPT2TokenizerFast` does: ByteLevel pre-tokenizer (GPT-2 regex, no prefix space), post-processor and decoder, and
 * `<|endoftext|>` as the special token when the vocabulary has it.
 */
export function byteLevelBpeToTokenizerJson(
  vocab: Record<string, number>,
  mergesText: string,
  file = 'merges.txt',
): TokenizerJson {
  const merges: [string, string][] = [];
  const lines = mergesText.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.replace(/\r$/, '');
    if (line === '' || (i === 0 && line.startsWith('#version'))) continue;
    const parts = line.split(' ');
    if (parts.length !== 2 || parts[0] === '' || parts[1] === '') {
      throw new TokenizerLoadError(
        file,
        `line ${i + 1} is not a "left right" merge: ${JSON.stringify(line)}`,
      );
    }
    merges.push([parts[0]!, parts[1]!]);
  }
  const byteLevel = { add_prefix_space: false, trim_offsets: true, use_regex: true };
  const eot = '<|endoftext|>';
  const addedTokens =
    vocab[eot] === undefined
      ? []
      : [
          {
            id: vocab[eot],
            content: eot,
            single_word: false,
            lstrip: false,
            rstrip: false,
            normalized: true,
            special: true,
          },
        ];
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: addedTokens,
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', ...byteLevel },
    post_processor: { type: 'ByteLevel', ...byteLevel },
    decoder: { type: 'ByteLevel', ...byteLevel },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: '',
      end_of_word_suffix: '',
      fuse_unk: false,
      byte_fallback: false,
      vocab,
      merges,
    },
  };
}
