/**
 * A strict JSON parser for untrusted headers. Unlike `JSON.parse` it
 * - refuses duplicate object keys (JSON.parse silently keeps the last one),
 * - keeps integer literals exact: a safe integer is a `number`, a larger one (up to 21 characters) a `bigint`, so offsets
 *   past 2^53 cannot round into range; longer integer literals become (imprecise, never safe) numbers,
 * - marks literals with a fraction or exponent as {@link JsonFloat}, so `2.0` is not taken for the integer 2,
 * - stops at a nesting depth limit instead of recursing without bound,
 * - stores objects as `Map`s, so keys such as `__proto__` are plain data.
 * It runs in time linear in the text.
 */

export type JsonValue = null | boolean | number | bigint | JsonFloat | string | JsonValue[] | JsonObject;
export type JsonObject = Map<string, JsonValue>;

export type JsonErrorKind = 'syntax' | 'duplicate' | 'depth';

export class JsonParseError extends Error {
  constructor(
    readonly kind: JsonErrorKind,
    message: string,
    /** Position in the text (UTF-16 units). */
    readonly position: number,
    /** For `duplicate`: the repeated key, and the path of the object holding it (empty at top level). */
    readonly key?: string,
    readonly path?: readonly string[],
  ) {
    super(message);
  }
}

export const DEFAULT_MAX_DEPTH = 128;

/** Longest integer literal kept exact (u64 max has 20 digits); longer ones become (imprecise) numbers. */
const MAX_EXACT_INT_CHARS = 21;
const MAX_SAFE_BIG = BigInt(Number.MAX_SAFE_INTEGER);
const MINUS = 0x2d;
const ZERO = 0x30;
const DOT = 0x2e;

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

/** A number written with a fraction or an exponent (so never a valid size, offset or index). */
export class JsonFloat {
  constructor(
    readonly value: number,
    /** The literal as written. */
    readonly text: string,
  ) {}
}

const SPACE = 0x20;
const TAB = 0x09;
const LF = 0x0a;
const CR = 0x0d;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;

export function parseJson(text: string, maxDepth = DEFAULT_MAX_DEPTH): JsonValue {
  const p = new Parser(text, maxDepth);
  p.skipWs();
  const value = p.value();
  p.skipWs();
  if (p.pos !== text.length) p.fail('unexpected text after the JSON value');
  return value;
}

/**
 * Parses `text`, which must hold one JSON object, member by member: `onEntry(key, value)` is called as soon as each
 * member's value is parsed, and nothing of it is kept afterwards, so memory stays proportional to what the caller
 * keeps rather than to a tree of the whole text. Unlike {@link parseJson}, repeated keys at the top level are not
 * detected here (the caller, which keeps the keys it needs, does that); nested ones are, with `path` starting at the
 * member's key.
 */
export function parseJsonObjectEntries(
  text: string,
  onEntry: (key: string, value: JsonValue, position: number) => void,
  maxDepth = DEFAULT_MAX_DEPTH,
): void {
  const p = new Parser(text, maxDepth);
  p.skipWs();
  if (text[p.pos] !== '{') p.fail("expected '{'");
  p.objectEntries(onEntry);
  p.skipWs();
  if (p.pos !== text.length) p.fail('unexpected text after the JSON value');
}

class Parser {
  pos = 0;
  private depth = 0;
  private readonly path: string[] = [];

  constructor(
    private readonly text: string,
    private readonly maxDepth: number,
  ) {}

  fail(what: string): never {
    const near = JSON.stringify(this.text.slice(this.pos, this.pos + 16));
    throw new JsonParseError('syntax', `${what} at position ${this.pos} (near ${near})`, this.pos);
  }

  skipWs(): void {
    const t = this.text;
    let i = this.pos;
    for (;;) {
      const c = t.charCodeAt(i);
      if (c === SPACE || c === LF || c === CR || c === TAB) i++;
      else break;
    }
    this.pos = i;
  }

  value(): JsonValue {
    const c = this.text[this.pos];
    switch (c) {
      case '{':
        return this.object();
      case '[':
        return this.array();
      case '"':
        return this.string();
      case 't':
        return this.literal('true', true);
      case 'f':
        return this.literal('false', false);
      case 'n':
        return this.literal('null', null);
      case undefined:
        return this.fail('unexpected end of JSON');
      default:
        if (c === '-' || (c >= '0' && c <= '9')) return this.number();
        return this.fail(`unexpected character ${JSON.stringify(c)}`);
    }
  }

  private enter(): void {
    if (++this.depth > this.maxDepth) {
      throw new JsonParseError('depth', `JSON nested deeper than ${this.maxDepth} levels`, this.pos);
    }
  }

  private object(): JsonObject {
    this.enter();
    const map: JsonObject = new Map();
    this.pos++; // {
    this.skipWs();
    if (this.text[this.pos] === '}') {
      this.pos++;
      this.depth--;
      return map;
    }
    for (;;) {
      if (this.text.charCodeAt(this.pos) !== QUOTE) this.fail('expected a string key');
      const keyAt = this.pos;
      const key = this.string();
      if (map.has(key)) {
        throw new JsonParseError(
          'duplicate',
          `duplicate key ${JSON.stringify(key.length > 200 ? `${key.slice(0, 200)}…` : key)} at position ${keyAt}`,
          keyAt,
          key,
          [...this.path],
        );
      }
      this.skipWs();
      if (this.text[this.pos] !== ':') this.fail("expected ':'");
      this.pos++;
      this.skipWs();
      this.path.push(key);
      map.set(key, this.value());
      this.path.pop();
      this.skipWs();
      const c = this.text[this.pos];
      if (c === ',') {
        this.pos++;
        this.skipWs();
      } else if (c === '}') {
        this.pos++;
        break;
      } else {
        this.fail("expected ',' or '}'");
      }
    }
    this.depth--;
    return map;
  }

  /** The members of the object at `pos`, handed to `onEntry` one at a time (top-level duplicates not checked). */
  objectEntries(onEntry: (key: string, value: JsonValue, position: number) => void): void {
    this.enter();
    this.pos++; // {
    this.skipWs();
    if (this.text[this.pos] === '}') {
      this.pos++;
      this.depth--;
      return;
    }
    for (;;) {
      if (this.text.charCodeAt(this.pos) !== QUOTE) this.fail('expected a string key');
      const keyAt = this.pos;
      const key = this.string();
      this.skipWs();
      if (this.text[this.pos] !== ':') this.fail("expected ':'");
      this.pos++;
      this.skipWs();
      this.path.push(key);
      const value = this.value();
      this.path.pop();
      onEntry(key, value, keyAt);
      this.skipWs();
      const c = this.text[this.pos];
      if (c === ',') {
        this.pos++;
        this.skipWs();
      } else if (c === '}') {
        this.pos++;
        break;
      } else {
        this.fail("expected ',' or '}'");
      }
    }
    this.depth--;
  }

  private array(): JsonValue[] {
    this.enter();
    const out: JsonValue[] = [];
    this.pos++; // [
    this.skipWs();
    if (this.text[this.pos] === ']') {
      this.pos++;
      this.depth--;
      return out;
    }
    for (;;) {
      out.push(this.value());
      this.skipWs();
      const c = this.text[this.pos];
      if (c === ',') {
        this.pos++;
        this.skipWs();
      } else if (c === ']') {
        this.pos++;
        break;
      } else {
        this.fail("expected ',' or ']'");
      }
    }
    this.depth--;
    return out;
  }

  private string(): string {
    const t = this.text;
    const start = this.pos;
    let i = start + 1;
    let escaped = false;
    for (;;) {
      const c = t.charCodeAt(i);
      if (c === QUOTE) break;
      if (Number.isNaN(c)) {
        this.pos = start;
        this.fail('unterminated string');
      }
      if (c < 0x20) {
        this.pos = i;
        this.fail('control character in string');
      }
      if (c === BACKSLASH) {
        escaped = true;
        i += 2;
      } else {
        i++;
      }
    }
    this.pos = i + 1;
    if (!escaped) return t.slice(start + 1, i);
    try {
      // The token is delimited and free of raw control characters; JSON.parse checks and decodes its escapes.
      return JSON.parse(t.slice(start, i + 1)) as string;
    } catch {
      this.pos = start;
      return this.fail('bad escape in string');
    }
  }

  private number(): number | bigint | JsonFloat {
    const t = this.text;
    const start = this.pos;
    let i = start;
    if (t.charCodeAt(i) === MINUS) i++;
    const intStart = i;
    if (t.charCodeAt(i) === ZERO) i++;
    else while (isDigit(t.charCodeAt(i))) i++;
    if (i === intStart) return this.fail('bad number');
    let integer = true;
    if (t.charCodeAt(i) === DOT) {
      integer = false;
      const fracStart = ++i;
      while (isDigit(t.charCodeAt(i))) i++;
      if (i === fracStart) return this.fail('bad number');
    }
    const e = t.charCodeAt(i);
    if (e === 0x65 || e === 0x45) {
      integer = false;
      i++;
      const sign = t.charCodeAt(i);
      if (sign === 0x2b || sign === MINUS) i++;
      const expStart = i;
      while (isDigit(t.charCodeAt(i))) i++;
      if (i === expStart) return this.fail('bad number');
    }
    this.pos = i;
    const raw = t.slice(start, i);
    if (!integer) return new JsonFloat(Number(raw), raw);
    // Up to 15 digits every integer is exact as a number; longer ones are kept exact as bigint up to u64 range.
    if (i - intStart <= 15) return Number(raw) + 0; // + 0 turns -0 into 0
    if (raw.length <= MAX_EXACT_INT_CHARS) {
      const big = BigInt(raw);
      return big >= -MAX_SAFE_BIG && big <= MAX_SAFE_BIG ? Number(big) : big;
    }
    return Number(raw);
  }

  private literal<T>(word: string, value: T): T {
    if (!this.text.startsWith(word, this.pos)) this.fail('unexpected token');
    this.pos += word.length;
    return value;
  }
}
