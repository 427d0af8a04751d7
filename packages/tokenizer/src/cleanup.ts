/**
 * transformers' `clean_up_tokenization`: removes the space before punctuation and English contractions. Applied by
 * `decode` when `clean_up_tokenization_spaces` is true in `tokenizer_config.json` (GPT-2 / Phi-2 style configs).
 */
export function cleanUpTokenization(text: string): string {
  return text
    .replaceAll(' .', '.')
    .replaceAll(' ?', '?')
    .replaceAll(' !', '!')
    .replaceAll(' ,', ',')
    .replaceAll(" ' ", "'")
    .replaceAll(" n't", "n't")
    .replaceAll(" 'm", "'m")
    .replaceAll(" 's", "'s")
    .replaceAll(" 've", "'ve")
    .replaceAll(" 're", "'re");
}

/** Longest pattern of {@link cleanUpTokenization}, in characters. */
const LONGEST_PATTERN = 4;

/**
 * Largest `c` (0 ≤ c ≤ text.length) such that cutting `text` at `c` cannot change what
 * {@link cleanUpTokenization} does: `clean(x + y) === clean(x) + clean(y)` for `x = text.slice(0, c)` and any
 * continuation `y`. Every pattern starts with a space and is at most 4 characters long (replacements only delete
 * spaces), so a cut is safe when the 4 characters before it hold no space (or it is at the very start).
 */
export function cleanUpSafeCut(text: string): number {
  for (let c = text.length; c > 0; c--) {
    const from = Math.max(0, c - LONGEST_PATTERN);
    if (text.lastIndexOf(' ', c - 1) < from) return c;
  }
  return 0;
}
