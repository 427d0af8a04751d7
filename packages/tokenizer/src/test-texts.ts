// Shared inputs for the tests (not part of the package's API).
import { join } from 'node:path';
import { realFixture } from '@mnemo/test-utils';

/** Multilingual text with emoji (ZWJ sequences, flags, skin tones), CJK, combining marks, odd whitespace. */
export const TEXTS: readonly string[] = [
  'Hello world',
  'Once upon a time, there was a little girl named Lily.',
  "I don't know. It's what they've said , isn't it ? Yes ! 'quoted' text .",
  '日本語のテキストと中文字符，还有한국어 문장입니다。',
  'Emoji: 😀 👍🏽 👨‍👩‍👧‍👦 🇫🇷 🏳️‍🌈 ❤️ 🦙',
  'Combining: e\u0301 n\u0303 a\u0308\u0304 Z\u0351\u0327 — café naïve Ångström',
  'Ελληνικά, русский текст, עברית, العربية, हिन्दी, ไทย, ქართული',
  '  leading spaces, double  spaces,\ttabs\t\tand\nnewlines\n\n\nend  ',
  'Non-breaking\u00a0space, line\u2028separator, zero\u200bwidth, BOM\ufeff.',
  'function add(a, b) {\n    return a + b; // 42\n}\n',
  'Math: ∑ᵢ xᵢ² ≤ ∞, 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝟙𝟚𝟛, 1234567890',
  '¿Qué tal? Ça va! Straße über Öl. Ĳsselmeer.',
  '\u{10FFFF}\u{1F9EC}\u{E0041} private and rare planes',
];

/** Folder of a real tokenizer fixture, or null (the test skips). */
export function realTokenizerDir(name: string): string | null {
  return realFixture(join('tokenizers', name));
}
