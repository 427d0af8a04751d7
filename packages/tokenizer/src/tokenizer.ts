import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { type ChatMessage, ChatTemplate, type ChatTemplateOptions } from './chat-template';
import { cleanUpTokenization } from './cleanup';
import { createDetokenizer, type DetokenizerOptions, type StreamingDetokenizer } from './detokenizer';
import { ChatTemplateError, TokenizerLoadError } from './errors';
import { fixDecoder } from './hf-fixes';
import { specialTokenStrings } from './special-tokens';
import type { ModelConfigLike, NamedChatTemplate, TokenizerConfig, TokenizerJson } from './types';
import { checkVocab } from './vocab-check';

export interface EncodeOptions {
  /**
   * Add the tokenizer's BOS/EOS (default `true`). BOS is added when `tokenizer_config.json` says `add_bos_token`
   * (or, without that flag, when the tokenizer.json post-processor adds it), and never twice: a text that already
   * encodes to a leading BOS (e.g. it starts with `<s>`) gets no second one.
   */
  addSpecialTokens?: boolean;
  /**
   * Match special tokens written in the text (`<|im_end|>`, `</s>`) as those tokens (default `true`, as transformers
   * does). `false` encodes their text like any other text (llama.cpp's `parse_special = false`, transformers'
   * `split_special_tokens`); added tokens that are not special are still matched.
   */
  parseSpecial?: boolean;
}

export interface DecodeOptions {
  /** Drop special tokens (`<s>`, `</s>`, `<|im_end|>`, ...). Default `false`. */
  skipSpecialTokens?: boolean;
  /** Override `clean_up_tokenization_spaces` of `tokenizer_config.json` (default there: `false`). */
  cleanUpTokenizationSpaces?: boolean;
}

export interface EncodeChatOptions extends ChatTemplateOptions {
  /**
   * Default `false`, as transformers and mlx-lm do (GGUF tokenizers: `true`, as llama.cpp does): the rendered template
   * is encoded as is, so BOS is there exactly when the template writes it. `true`: also add the tokenizer's BOS/EOS
   * (BOS still never twice).
   */
  addSpecialTokens?: boolean;
}

/** Everything a {@link Tokenizer} is made from (the parsed files of a model folder). */
export interface TokenizerSources {
  /** Parsed `tokenizer.json` (or its equivalent built from `vocab.json`+`merges.txt` or `tokenizer.model`). */
  tokenizerJson: TokenizerJson;
  /** Exact text `tokenizerJson` was parsed from (for {@link tokenizerFingerprint}); default `JSON.stringify`. */
  tokenizerJsonText?: string;
  tokenizerConfig?: TokenizerConfig | null;
  generationConfig?: ModelConfigLike | null;
  /** `config.json` of the model. */
  modelConfig?: ModelConfigLike | null;
  specialTokensMap?: Record<string, unknown> | null;
  /** Chat template(s) overriding `tokenizerConfig.chat_template` (from `chat_template.jinja` and the like). */
  chatTemplate?: string | readonly NamedChatTemplate[] | null;
  /** Where it came from (a folder), for messages. */
  source?: string;
  /**
   * Default of {@link EncodeChatOptions.addSpecialTokens}: `false` (transformers) unless set; GGUF tokenizers set
   * `true`, as llama.cpp adds BOS to a rendered chat prompt (never twice).
   */
  chatAddsSpecialTokens?: boolean;
}

function idList(v: unknown): number[] {
  if (typeof v === 'number' && Number.isInteger(v)) return [v];
  if (Array.isArray(v)) return v.filter((x): x is number => typeof x === 'number' && Number.isInteger(x));
  return [];
}

function startsWith(a: readonly number[], prefix: readonly number[]): boolean {
  if (prefix.length > a.length) return false;
  for (let i = 0; i < prefix.length; i++) if (a[i] !== prefix[i]) return false;
  return true;
}

function endsWith(a: readonly number[], suffix: readonly number[]): boolean {
  if (suffix.length > a.length) return false;
  const off = a.length - suffix.length;
  for (let i = 0; i < suffix.length; i++) if (a[off + i] !== suffix[i]) return false;
  return true;
}

/**
 * A Hugging Face tokenizer (byte-level BPE, SentencePiece-style BPE with byte fallback, Unigram, ...) with its BOS/EOS
 * rules and chat template. Encoding and decoding are done by `@huggingface/tokenizers`; make one with
 * `loadTokenizer(dir)` or {@link createTokenizer}.
 */
export class Tokenizer {
  /** Where it was loaded from (a folder), for messages. */
  readonly source: string;
  /** Number of token ids (highest id + 1, added tokens included). */
  readonly vocabSize: number;
  /**
   * An upper bound of the characters (UTF-16 units) one token decodes to: a text of `n` tokens is at most
   * `n * maxTokenChars` long. Used to refuse informative texts that cannot belong to the tokens they come with.
   */
  readonly maxTokenChars: number;
  /** BOS token and its id, or `null` when the model has none (Qwen2). */
  readonly bosToken: string | null;
  readonly bosId: number | null;
  /** The tokenizer's own EOS token (`eos_token` of tokenizer_config) and its id. */
  readonly eosToken: string | null;
  readonly eosId: number | null;
  /**
   * Every id that ends generation: the union of `generation_config.json` `eos_token_id` (number or list),
   * `config.json` `eos_token_id` and the tokenizer's `eos_token`, in that order.
   */
  readonly eosIds: readonly number[];
  readonly unkId: number | null;
  readonly padId: number | null;
  /** Whether `encode` adds BOS / EOS by default. */
  readonly addBosToken: boolean;
  readonly addEosToken: boolean;
  /** `clean_up_tokenization_spaces` of tokenizer_config (default `false`, as current transformers). */
  readonly cleanUpTokenizationSpaces: boolean;
  /** Ids of special tokens (skipped by `skipSpecialTokens`). */
  readonly specialIds: ReadonlySet<number>;
  /** Special-token strings passed to chat templates (`bos_token`, `eos_token`, `additional_special_tokens`, ...). */
  readonly specialTokensMap: Readonly<Record<string, string | string[]>>;
  /** The chat template(s), or `null`. */
  readonly chatTemplate: ChatTemplate | null;
  /** Exact text of tokenizer.json (or the JSON of its built equivalent). */
  readonly tokenizerJsonText: string;

  private readonly hf: HfTokenizer;
  /** The same tokenizer without its special added tokens (for `parseSpecial: false`), made on first use. */
  private plainHf: HfTokenizer | null = null;
  private readonly hfConfig: Record<string, unknown>;
  private readonly prefixIds: readonly number[];
  private readonly suffixIds: readonly number[];
  private readonly chatAddsSpecialTokens: boolean;

  constructor(sources: TokenizerSources) {
    const src = sources.source ?? 'tokenizer';
    this.source = src;
    const tj = sources.tokenizerJson;
    if (typeof tj !== 'object' || tj === null || typeof tj.model !== 'object' || tj.model === null) {
      throw new TokenizerLoadError(`${src}/tokenizer.json`, 'not a tokenizer.json object (no "model")');
    }
    this.tokenizerJsonText = sources.tokenizerJsonText ?? JSON.stringify(tj);
    const config: TokenizerConfig = { ...(sources.tokenizerConfig ?? {}) };
    const stm = sources.specialTokensMap ?? {};

    const specials = specialTokenStrings(config, stm);
    const additional = (specials.additional_special_tokens as string[] | undefined) ?? [];
    this.specialTokensMap = specials;

    const facts = checkVocab(tj, `${src}/tokenizer.json`);
    this.hfConfig = {
      ...config,
      ...specials,
      additional_special_tokens: additional,
      clean_up_tokenization_spaces: false,
    };
    try {
      this.hf = buildHf(tj, this.hfConfig);
      fixDecoder(this.hf.decoder);
    } catch (e) {
      throw new TokenizerLoadError(
        `${src}/tokenizer.json`,
        `cannot build tokenizer: ${(e as Error).message}`,
        {
          cause: e,
        },
      );
    }

    this.vocabSize = facts.maxId + 1;
    this.maxTokenChars = facts.maxTokenChars;

    const special = new Set<number>();
    for (const t of tj.added_tokens ?? []) if (t.special) special.add(t.id);
    for (const s of additional) {
      const id = this.hf.token_to_id(s);
      if (id !== undefined) special.add(id);
    }
    this.specialIds = special;

    const idOf = (token: string | undefined): number | null => {
      if (token === undefined) return null;
      return this.hf.token_to_id(token) ?? null;
    };
    const gen = sources.generationConfig ?? {};
    const model = sources.modelConfig ?? {};
    const hasBosKey = 'bos_token' in stm || 'bos_token' in config;
    this.bosToken = (specials.bos_token as string | undefined) ?? null;
    if (hasBosKey) {
      this.bosId = idOf(specials.bos_token as string | undefined);
    } else {
      this.bosId = idList(gen.bos_token_id)[0] ?? idList(model.bos_token_id)[0] ?? null;
      this.bosToken = this.bosId === null ? null : (this.hf.id_to_token(this.bosId) ?? null);
    }
    this.eosToken = (specials.eos_token as string | undefined) ?? null;
    this.eosId = idOf(specials.eos_token as string | undefined);
    const eos: number[] = [];
    for (const id of [...idList(gen.eos_token_id), ...idList(model.eos_token_id), ...idList(this.eosId)]) {
      if (!eos.includes(id)) eos.push(id);
    }
    this.eosIds = eos;
    if (this.eosToken === null && eos.length > 0) {
      this.eosId = eos[0]!;
      this.eosToken = this.hf.id_to_token(eos[0]!) ?? null;
    }
    this.unkId = idOf(specials.unk_token as string | undefined);
    this.padId = idOf(specials.pad_token as string | undefined);

    // What the post-processor adds around a text, found by encoding a probe with and without special tokens.
    const bare = this.hf.encode('a', { add_special_tokens: false }).ids;
    const withSpecial = this.hf.encode('a', { add_special_tokens: true }).ids;
    let probePrefix: number[] = [];
    let probeSuffix: number[] = [];
    for (let k = 0; k + bare.length <= withSpecial.length; k++) {
      if (startsWith(withSpecial.slice(k), bare)) {
        probePrefix = withSpecial.slice(0, k);
        probeSuffix = withSpecial.slice(k + bare.length);
        break;
      }
    }
    const bosFlag = typeof config.add_bos_token === 'boolean' ? config.add_bos_token : undefined;
    const eosFlag = typeof config.add_eos_token === 'boolean' ? config.add_eos_token : undefined;
    if (bosFlag === undefined && eosFlag === undefined) {
      this.prefixIds = probePrefix;
      this.suffixIds = probeSuffix;
      this.addBosToken = this.bosId !== null && probePrefix.includes(this.bosId);
      this.addEosToken = probeSuffix.some((id) => eos.includes(id));
    } else {
      // As transformers' LlamaTokenizerFast.update_post_processor: the flags decide, whatever tokenizer.json says.
      this.addBosToken =
        (bosFlag ?? (this.bosId !== null && probePrefix.includes(this.bosId))) && this.bosId !== null;
      this.addEosToken = (eosFlag ?? probeSuffix.some((id) => eos.includes(id))) && this.eosId !== null;
      this.prefixIds = this.addBosToken ? [this.bosId!] : [];
      this.suffixIds = this.addEosToken ? [this.eosId!] : [];
    }

    this.cleanUpTokenizationSpaces = config.clean_up_tokenization_spaces === true;
    this.chatAddsSpecialTokens = sources.chatAddsSpecialTokens === true;

    const templateSource = sources.chatTemplate ?? config.chat_template ?? null;
    if (templateSource === null || templateSource === undefined) {
      this.chatTemplate = null;
    } else {
      try {
        this.chatTemplate = new ChatTemplate(templateSource, specials);
      } catch (e) {
        if (e instanceof ChatTemplateError) {
          throw new TokenizerLoadError(`${src}/tokenizer_config.json`, e.message, { cause: e });
        }
        throw e;
      }
    }
  }

  /** Encodes text to token ids. Special-token strings in the text (`<|im_end|>`) become their ids. */
  encode(text: string, options: EncodeOptions = {}): number[] {
    const hf = options.parseSpecial === false ? this.plain() : this.hf;
    const body = hf.encode(text, { add_special_tokens: false }).ids;
    if (options.addSpecialTokens === false) return body;
    const prefix = startsWith(body, this.prefixIds) ? [] : this.prefixIds;
    const suffix = endsWith(body, this.suffixIds) ? [] : this.suffixIds;
    if (prefix.length === 0 && suffix.length === 0) return body;
    return [...prefix, ...body, ...suffix];
  }

  private plain(): HfTokenizer {
    if (this.plainHf === null) {
      // parsed again from the text: the parsed tokenizer.json is not kept (see buildHf)
      const tj = JSON.parse(this.tokenizerJsonText) as TokenizerJson;
      this.plainHf = buildHf(
        { ...tj, added_tokens: (tj.added_tokens ?? []).filter((t) => !t.special) },
        this.hfConfig,
      );
    }
    return this.plainHf;
  }

  /** The tokens (vocabulary strings) of `text`, without special tokens added. */
  tokenize(text: string): string[] {
    return this.hf.encode(text, { add_special_tokens: false }).tokens;
  }

  /** Decodes ids to text. Ids outside the vocabulary are ignored (as the Rust tokenizers library does). */
  decode(ids: readonly number[], options: DecodeOptions = {}): string {
    const skip = options.skipSpecialTokens ?? false;
    const keep: number[] = [];
    for (const id of ids) {
      if (this.hf.id_to_token(id) === undefined) continue;
      if (skip && this.specialIds.has(id)) continue;
      keep.push(id);
    }
    if (keep.length === 0) return '';
    const text = this.hf.decode(keep, { skip_special_tokens: false, clean_up_tokenization_spaces: false });
    const cleanUp = options.cleanUpTokenizationSpaces ?? this.cleanUpTokenizationSpaces;
    return cleanUp ? cleanUpTokenization(text) : text;
  }

  /** The vocabulary string of an id (`▁Hello`, `<0x0A>`, `Ġworld`), or `undefined`. */
  idToToken(id: number): string | undefined {
    return Number.isInteger(id) && id >= 0 ? this.hf.id_to_token(id) : undefined;
  }

  /** The id of a vocabulary string or added token, or `undefined`. */
  tokenToId(token: string): number | undefined {
    return this.hf.token_to_id(token);
  }

  isSpecial(id: number): boolean {
    return this.specialIds.has(id);
  }

  isEos(id: number): boolean {
    return this.eosIds.includes(id);
  }

  get hasChatTemplate(): boolean {
    return this.chatTemplate !== null;
  }

  /** Names of the chat templates (`["default"]` for a single template, `[]` without one). */
  get chatTemplateNames(): string[] {
    return this.chatTemplate?.names ?? [];
  }

  /** Renders a conversation with the chat template; see {@link ChatTemplateOptions}. */
  applyChatTemplate(messages: readonly ChatMessage[], options: ChatTemplateOptions = {}): string {
    if (this.chatTemplate === null) {
      throw new ChatTemplateError(
        null,
        `${this.source} has no chat template (tokenizer_config.json "chat_template")`,
      );
    }
    return this.chatTemplate.render(messages, options);
  }

  /**
   * Renders a conversation and encodes it. By default the rendered text is encoded without adding special tokens
   * (transformers' `apply_chat_template(tokenize=True)`), so a template that writes `{{ bos_token }}` yields one BOS.
   */
  encodeChat(messages: readonly ChatMessage[], options: EncodeChatOptions = {}): number[] {
    const { addSpecialTokens, ...templateOptions } = options;
    return this.encode(this.applyChatTemplate(messages, templateOptions), {
      addSpecialTokens: addSpecialTokens ?? this.chatAddsSpecialTokens,
    });
  }

  /** A streaming detokenizer for this tokenizer. */
  createDetokenizer(options?: DetokenizerOptions): StreamingDetokenizer {
    return createDetokenizer(this, options);
  }
}

/** Builds a {@link Tokenizer} from already-parsed files. */
export function createTokenizer(sources: TokenizerSources): Tokenizer {
  return new Tokenizer(sources);
}

/**
 * The `@huggingface/tokenizers` tokenizer of `tj`, built from a shallow copy whose `model.vocab` is dropped once the
 * library has made its own map of it: the library keeps the JSON it was given, and the vocabulary object (a
 * dictionary of every token, ~6 MiB for 128k tokens) would otherwise stay in the heap beside that map. The caller's
 * object is not changed.
 */
function buildHf(tj: TokenizerJson, config: Record<string, unknown>): HfTokenizer {
  const model = { ...tj.model };
  const hf = new HfTokenizer({ ...tj, model }, config);
  delete (model as { vocab?: unknown }).vocab;
  return hf;
}
