/**
 * Tokenizers from GGUF metadata (`tokenizer.ggml.*`), built as the equivalent `tokenizer.json` so that encoding,
 * decoding and chat templates go through the same path as every other tokenizer, with the rules llama.cpp applies:
 *
 * - `tokenizer.ggml.model = "llama"` (SentencePiece): BPE over the pieces with merges ranked by piece score (as
 *   transformers converts a `tokenizer.model`), byte fallback when the vocabulary has `<0xXX>` pieces, `▁` for spaces
 *   and a `▁` prefix at the start of the text and after every special token (`add_space_prefix`, default true).
 * - `"gpt2"` (byte-level BPE): the merges of `tokenizer.ggml.merges`, split first by the pre-tokenizer regexes
 *   `tokenizer.ggml.pre` names (see {@link GGUF_PRE_TOKENIZERS}), with `\s` meaning Unicode White_Space as in
 *   llama.cpp (JavaScript's `\s` also matches U+FEFF).
 * - Token types: CONTROL (3) and UNKNOWN (2) tokens are special (matched in text only when special tokens are
 *   parsed); USER_DEFINED (4) tokens are always matched; BYTE (6) tokens are the byte fallback; UNUSED (5) never occur.
 * - BOS/EOS: `tokenizer.ggml.add_bos_token` / `add_eos_token` (defaults as llama.cpp: SentencePiece adds BOS, BPE
 *   adds BOS only for the llama3 pre-tokenizer), the ids of `bos_token_id`, `eos_token_id`, `unknown_token_id`,
 *   `padding_token_id`; generation ends at EOS, `eot_token_id`, `eom_token_id` and the end-of-generation control
 *   tokens llama.cpp recognises by their text (`<|eot_id|>`, `<|im_end|>`, `<end_of_turn>`, ...).
 * - `tokenizer.chat_template` (and named `tokenizer.chat_template.<name>` ones) through the Jinja path.
 */
import { TokenizerLoadError } from './errors';
import { SentencePieceModelType, SentencePieceType, sentencePieceToTokenizerJson } from './sentencepiece';
import { Tokenizer } from './tokenizer';
import type { AddedTokenJson, NamedChatTemplate, TokenizerConfig, TokenizerJson } from './types';

/** The metadata readers this module uses (`@mnemo/gguf`'s `GgufMetadata` has them). */
export interface GgufMetadataLike {
  has(key: string): boolean;
  keys(): string[];
  string(key: string, fallback?: string): string;
  int(key: string, fallback?: number): number;
  bool(key: string, fallback?: boolean): boolean;
  strings(key: string): string[] | undefined;
  numbers(key: string): Float64Array | undefined;
}

/** `\s` / `\S` as Unicode White_Space (llama.cpp's class), for JavaScript regexes with the `u` flag. */
function ws(regex: string): string {
  return regex.replace(/\\s/g, '\\p{White_Space}').replace(/\\S/g, '\\P{White_Space}');
}

const GPT2 = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)";
const LLAMA3 =
  "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const QWEN2 =
  "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

interface PreTokenizerRule {
  /** Regexes applied one after the other, each splitting the pieces of the previous (matches and gaps both kept). */
  readonly regexes: readonly string[];
  /** A piece that is a whole vocabulary entry is taken as is, without merges (llama3). */
  readonly ignoreMerges?: boolean;
  /** BOS added when the file does not say (`tokenizer.ggml.add_bos_token` absent). */
  readonly addBos?: boolean;
  /** Detokenization cleans spaces before punctuation (llama.cpp's `clean_spaces`). */
  readonly cleanSpaces?: boolean;
}

/** The BPE pre-tokenizers (`tokenizer.ggml.pre`) supported, with llama.cpp's regexes for each. */
export const GGUF_PRE_TOKENIZERS: Readonly<Record<string, PreTokenizerRule>> = {
  default: {
    regexes: ['[\\p{P}\\$\\+<=>\\^~\\|]+', GPT2, '\\p{N}+', '[0-9][0-9][0-9]'],
    cleanSpaces: true,
  },
  'gpt-2': { regexes: [GPT2], cleanSpaces: true },
  'phi-2': { regexes: [GPT2], cleanSpaces: true },
  'llama-bpe': { regexes: [LLAMA3], ignoreMerges: true, addBos: true, cleanSpaces: true },
  llama3: { regexes: [LLAMA3], ignoreMerges: true, addBos: true, cleanSpaces: true },
  'llama-v3': { regexes: [LLAMA3], ignoreMerges: true, addBos: true, cleanSpaces: true },
  qwen2: { regexes: [QWEN2] },
  'deepseek-r1-qwen': { regexes: [QWEN2] },
  starcoder: { regexes: ['\\p{N}', GPT2], cleanSpaces: true },
  smollm: { regexes: ['\\p{N}', GPT2], cleanSpaces: true },
  refact: { regexes: ['\\p{N}', GPT2], cleanSpaces: true },
};

/** llama.cpp's token types. */
const TYPE = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const;

/** Texts of control tokens llama.cpp treats as end of generation. */
const EOG_TEXTS = new Set([
  '<|eot_id|>',
  '<|im_end|>',
  '<|end|>',
  '<end_of_turn>',
  '<|endoftext|>',
  '<EOT>',
  '_<EOT>',
  '<｜end▁of▁sentence｜>',
  '<|return|>',
  '<|call|>',
]);

/** A `tokenizer.json` built from GGUF metadata, with what the {@link Tokenizer} needs around it. */
export interface GgufTokenizerParts {
  readonly tokenizerJson: TokenizerJson;
  readonly tokenizerConfig: TokenizerConfig;
  /** Every id that ends generation. */
  readonly eosIds: number[];
  readonly chatTemplate: string | NamedChatTemplate[] | null;
}

function bad(source: string, what: string): never {
  throw new TokenizerLoadError(source, what);
}

/** Builds the `tokenizer.json` equivalent of a GGUF file's tokenizer metadata (see the module docs). */
export function ggufTokenizerParts(meta: GgufMetadataLike, source = 'model.gguf'): GgufTokenizerParts {
  const model = meta.string('tokenizer.ggml.model', 'none');
  const tokens = meta.strings('tokenizer.ggml.tokens');
  if (!tokens || tokens.length === 0) bad(source, 'the GGUF file has no tokenizer.ggml.tokens');
  const n = tokens.length;
  const types = meta.numbers('tokenizer.ggml.token_type') ?? new Float64Array(n).fill(TYPE.NORMAL);
  if (types.length !== n)
    bad(source, `tokenizer.ggml.token_type has ${types.length} entries for ${n} tokens`);
  const id = (key: string): number | null => {
    if (!meta.has(key)) return null;
    const v = meta.int(key);
    return v >= 0 && v < n ? v : null;
  };
  const bosId = id('tokenizer.ggml.bos_token_id');
  const eosId = id('tokenizer.ggml.eos_token_id');
  const unkId = id('tokenizer.ggml.unknown_token_id');
  const padId = id('tokenizer.ggml.padding_token_id');

  let tokenizerJson: TokenizerJson;
  let addBos: boolean;
  let cleanSpaces: boolean;
  const addEos = meta.bool('tokenizer.ggml.add_eos_token', false);
  if (model === 'llama') {
    const scores = meta.numbers('tokenizer.ggml.scores') ?? new Float64Array(n);
    if (scores.length !== n)
      bad(source, `tokenizer.ggml.scores has ${scores.length} entries for ${n} tokens`);
    addBos = meta.bool('tokenizer.ggml.add_bos_token', true);
    cleanSpaces = false;
    const pieces = tokens.map((piece, i) => ({ piece, score: scores[i]!, type: types[i]! }));
    tokenizerJson = sentencePieceToTokenizerJson(
      {
        pieces,
        modelType: SentencePieceModelType.BPE,
        byteFallback: pieces.some((p) => p.type === SentencePieceType.BYTE),
        unkId: unkId ?? -1,
        bosId: bosId ?? -1,
        eosId: eosId ?? -1,
        padId: padId ?? -1,
        splitDigits: false,
        normalizerName: 'identity',
        precompiledCharsmap: new Uint8Array(0),
        addDummyPrefix: meta.bool('tokenizer.ggml.add_space_prefix', true),
        removeExtraWhitespaces: false,
        escapeWhitespaces: true,
      },
      { legacy: true, addBos: false, addEos: false },
      source,
    );
  } else if (model === 'gpt2') {
    const pre = meta.string('tokenizer.ggml.pre', 'default');
    const rule = GGUF_PRE_TOKENIZERS[pre];
    if (!rule)
      bad(
        source,
        `tokenizer.ggml.pre "${pre}" is not supported (supported: ${Object.keys(GGUF_PRE_TOKENIZERS).join(', ')})`,
      );
    addBos = meta.bool('tokenizer.ggml.add_bos_token', rule.addBos ?? false);
    cleanSpaces = rule.cleanSpaces ?? false;
    tokenizerJson = byteLevelJson(meta, tokens, types, rule, source);
  } else {
    bad(source, `tokenizer.ggml.model "${model}" is not supported (llama and gpt2 are)`);
  }

  const text = (i: number | null) => (i === null ? undefined : tokens[i]);
  const tokenizerConfig: TokenizerConfig = {
    add_bos_token: addBos && bosId !== null,
    add_eos_token: addEos && eosId !== null,
    clean_up_tokenization_spaces: cleanSpaces,
    ...(bosId !== null ? { bos_token: text(bosId) } : {}),
    ...(eosId !== null ? { eos_token: text(eosId) } : {}),
    ...(unkId !== null ? { unk_token: text(unkId) } : {}),
    ...(padId !== null ? { pad_token: text(padId) } : {}),
  };

  const eosIds: number[] = [];
  for (const i of [eosId, id('tokenizer.ggml.eot_token_id'), id('tokenizer.ggml.eom_token_id')])
    if (i !== null && !eosIds.includes(i)) eosIds.push(i);
  tokens.forEach((t, i) => {
    if (types[i] === TYPE.CONTROL && EOG_TEXTS.has(t) && !eosIds.includes(i)) eosIds.push(i);
  });

  const named: NamedChatTemplate[] = [];
  for (const key of meta.keys())
    if (key.startsWith('tokenizer.chat_template.'))
      named.push({ name: key.slice('tokenizer.chat_template.'.length), template: meta.string(key) });
  const main = meta.has('tokenizer.chat_template') ? meta.string('tokenizer.chat_template') : null;
  const chatTemplate =
    named.length === 0 ? main : [...(main !== null ? [{ name: 'default', template: main }] : []), ...named];
  return { tokenizerJson, tokenizerConfig, eosIds, chatTemplate };
}

function byteLevelJson(
  meta: GgufMetadataLike,
  tokens: readonly string[],
  types: Float64Array,
  rule: PreTokenizerRule,
  source: string,
): TokenizerJson {
  const vocab: Record<string, number> = {};
  tokens.forEach((t, i) => {
    if (!Object.hasOwn(vocab, t)) vocab[t] = i;
  });
  const merges: [string, string][] = [];
  const raw = meta.strings('tokenizer.ggml.merges') ?? [];
  for (let i = 0; i < raw.length; i++) {
    const m = raw[i]!;
    const sp = m.indexOf(' ', 1);
    if (sp < 0 || sp === m.length - 1)
      bad(source, `tokenizer.ggml.merges[${i}] is not "left right": ${JSON.stringify(m)}`);
    merges.push([m.slice(0, sp), m.slice(sp + 1)]);
  }
  const added: AddedTokenJson[] = [];
  tokens.forEach((content, i) => {
    const t = types[i];
    if (t === TYPE.CONTROL || t === TYPE.UNKNOWN || t === TYPE.USER_DEFINED)
      added.push({
        id: i,
        content,
        single_word: false,
        lstrip: false,
        rstrip: false,
        normalized: false,
        special: t !== TYPE.USER_DEFINED,
      });
  });
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false };
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: null,
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        ...rule.regexes.map((r) => ({
          type: 'Split',
          pattern: { Regex: ws(r) },
          behavior: 'Isolated',
          invert: false,
        })),
        byteLevel,
      ],
    },
    post_processor: null,
    decoder: byteLevel,
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: '',
      end_of_word_suffix: '',
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: rule.ignoreMerges ?? false,
      vocab,
      merges,
    },
  };
}

/**
 * The tokenizer of a GGUF model, from its metadata alone (see the module docs for the rules). `source` names the file
 * in errors.
 */
export function tokenizerFromGguf(meta: GgufMetadataLike, source = 'model.gguf'): Tokenizer {
  const parts = ggufTokenizerParts(meta, source);
  return new Tokenizer({
    tokenizerJson: parts.tokenizerJson,
    tokenizerConfig: parts.tokenizerConfig,
    modelConfig: { eos_token_id: parts.eosIds },
    chatTemplate: parts.chatTemplate,
    source,
    chatAddsSpecialTokens: true,
  });
}
