import type { TokenizerConfig } from './types';

const SPECIAL_TOKEN_KEYS = [
  'bos_token',
  'eos_token',
  'unk_token',
  'sep_token',
  'pad_token',
  'cls_token',
  'mask_token',
] as const;

/** The string of a special token written as a string or as an AddedToken object (`{content: "<s>", ...}`). */
export function tokenContent(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (typeof v === 'object' && v !== null && typeof (v as { content?: unknown }).content === 'string') {
    return (v as { content: string }).content;
  }
  return null;
}

/**
 * transformers' `special_tokens_map`: `bos_token`, `eos_token`, ... and `additional_special_tokens` as strings, from
 * `tokenizer_config.json` overridden by `special_tokens_map.json`; tokens that are unset or `null` are left out.
 */
export function specialTokenStrings(
  config: TokenizerConfig | null | undefined,
  specialTokensMap: Record<string, unknown> | null | undefined,
): Record<string, string | string[]> {
  const cfg = config ?? {};
  const stm = specialTokensMap ?? {};
  const out: Record<string, string | string[]> = {};
  for (const key of SPECIAL_TOKEN_KEYS) {
    const v = key in stm ? tokenContent(stm[key]) : tokenContent(cfg[key]);
    if (v !== null) out[key] = v;
  }
  const extra = (stm.additional_special_tokens ?? cfg.additional_special_tokens) as unknown;
  const additional = Array.isArray(extra)
    ? extra.map(tokenContent).filter((x): x is string => x !== null)
    : [];
  if (additional.length > 0) out.additional_special_tokens = additional;
  return out;
}
