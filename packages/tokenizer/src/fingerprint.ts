import { createHash } from 'node:crypto';
import type { Tokenizer } from './tokenizer';

const cache = new WeakMap<Tokenizer, string>();

/**
 * A sha256 (hex) over the tokenizer.json content (the exact file text, or the JSON of the tokenizer built from
 * `vocab.json`/`merges.txt`/`tokenizer.model`) and every chat template with its name. Two tokenizers with the same
 * fingerprint map text and conversations to the same ids, so prompt caches keyed by it are safe to reuse.
 */
export function tokenizerFingerprint(tok: Tokenizer): string {
  let fp = cache.get(tok);
  if (fp !== undefined) return fp;
  const h = createHash('sha256');
  const part = (label: string, text: string) => {
    const bytes = Buffer.from(text, 'utf8');
    h.update(`${label}:${bytes.length}\n`);
    h.update(bytes);
    h.update('\n');
  };
  part('mnemo-tokenizer-fingerprint', 'v1');
  part('tokenizer.json', tok.tokenizerJsonText);
  const templates = tok.chatTemplate
    ? [...tok.chatTemplate.templates].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    : [];
  for (const [name, template] of templates) part(`chat_template[${name}]`, template);
  fp = h.digest('hex');
  cache.set(tok, fp);
  return fp;
}
