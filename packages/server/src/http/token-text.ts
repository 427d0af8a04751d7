/**
 * The text and bytes of single tokens, for logprobs (OpenAI reports each token as a string with its UTF-8 bytes). A
 * token can be part of a character: byte-level (GPT-2 style) and byte-fallback (`<0xE6>`) vocabularies give its raw
 * bytes exactly; other tokens are their decoded text.
 */
import type { Tokenizer } from '@mnemo/tokenizer';

/** GPT-2's byte ↔ printable character table: the character each byte is written as in a byte-level vocabulary. */
function byteLevelTable(): Map<string, number> {
  const bytes: number[] = [];
  for (let b = 33; b <= 126; b++) bytes.push(b);
  for (let b = 161; b <= 172; b++) bytes.push(b);
  for (let b = 174; b <= 255; b++) bytes.push(b);
  const chars = [...bytes];
  let n = 0;
  for (let b = 0; b < 256; b++)
    if (!bytes.includes(b)) {
      bytes.push(b);
      chars.push(256 + n++);
    }
  const m = new Map<string, number>();
  for (let i = 0; i < bytes.length; i++) m.set(String.fromCodePoint(chars[i]!), bytes[i]!);
  return m;
}

function usesByteLevelDecoder(tokenizer: Tokenizer): boolean {
  try {
    const d = (JSON.parse(tokenizer.tokenizerJsonText) as { decoder?: unknown }).decoder;
    const types = (x: unknown): string[] => {
      if (!x || typeof x !== 'object') return [];
      const o = x as { type?: unknown; decoders?: unknown };
      return [String(o.type), ...(Array.isArray(o.decoders) ? o.decoders.flatMap(types) : [])];
    };
    return types(d).includes('ByteLevel');
  } catch {
    return false;
  }
}

export class TokenText {
  readonly #cache = new Map<number, { text: string; bytes: number[] }>();
  readonly #byteLevel: Map<string, number> | null;

  constructor(private readonly tokenizer: Tokenizer) {
    this.#byteLevel = usesByteLevelDecoder(tokenizer) ? byteLevelTable() : null;
  }

  of(id: number): { text: string; bytes: number[] } {
    let r = this.#cache.get(id);
    if (r) return r;
    const piece = this.tokenizer.idToToken(id) ?? '';
    let bytes: number[] | undefined;
    const fallback = /^<0x([0-9A-Fa-f]{2})>$/.exec(piece);
    if (fallback) bytes = [Number.parseInt(fallback[1]!, 16)];
    else if (this.#byteLevel && !this.tokenizer.isSpecial(id) && piece.length > 0) {
      const out: number[] = [];
      for (const ch of piece) {
        const b = this.#byteLevel.get(ch);
        if (b === undefined) {
          out.length = 0;
          break;
        }
        out.push(b);
      }
      if (out.length > 0) bytes = out;
    }
    const decoded = this.tokenizer.decode([id]);
    bytes ??= [...Buffer.from(decoded, 'utf8')];
    const text = Buffer.from(bytes).toString('utf8');
    r = { text: text.includes('\uFFFD') && !decoded.includes('\uFFFD') ? decoded : text, bytes };
    if (this.#cache.size < 200_000) this.#cache.set(id, r);
    return r;
  }
}
