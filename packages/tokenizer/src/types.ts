/** A special token as written in `tokenizer_config.json` / `special_tokens_map.json`: a string or an AddedToken object. */
export type SpecialTokenValue = string | { content: string; [key: string]: unknown } | null;

/** One entry of `tokenizer.json`'s `added_tokens`. */
export interface AddedTokenJson {
  id: number;
  content: string;
  single_word?: boolean;
  lstrip?: boolean;
  rstrip?: boolean;
  normalized?: boolean;
  special?: boolean;
}

/** The parsed content of a Hugging Face `tokenizer.json`. */
export interface TokenizerJson {
  model: Record<string, unknown>;
  added_tokens?: AddedTokenJson[];
  normalizer?: unknown;
  pre_tokenizer?: unknown;
  post_processor?: unknown;
  decoder?: unknown;
  [key: string]: unknown;
}

/** A named chat template, as in a `tokenizer_config.json` whose `chat_template` is a list. */
export interface NamedChatTemplate {
  name: string;
  template: string;
}

/** The fields of `tokenizer_config.json` this package reads (others are kept and ignored). */
export interface TokenizerConfig {
  add_bos_token?: boolean;
  add_eos_token?: boolean;
  bos_token?: SpecialTokenValue;
  eos_token?: SpecialTokenValue;
  unk_token?: SpecialTokenValue;
  pad_token?: SpecialTokenValue;
  sep_token?: SpecialTokenValue;
  cls_token?: SpecialTokenValue;
  mask_token?: SpecialTokenValue;
  additional_special_tokens?: SpecialTokenValue[];
  chat_template?: string | NamedChatTemplate[] | null;
  clean_up_tokenization_spaces?: boolean;
  [key: string]: unknown;
}

/** The fields of `generation_config.json` / `config.json` this package reads. */
export interface ModelConfigLike {
  bos_token_id?: number | number[] | null;
  eos_token_id?: number | number[] | null;
  [key: string]: unknown;
}
