import { rng } from '@mnemo/test-utils';
import { describe, expect, it } from 'vitest';
import { JsonFloat, JsonParseError, type JsonValue, parseJson } from './json';

/** Converts the parser's output to what JSON.parse would give (Maps → objects, bigints → numbers). */
function plain(v: JsonValue): unknown {
  if (typeof v === 'bigint') return Number(v);
  if (v instanceof JsonFloat) return v.value;
  if (Array.isArray(v)) return v.map(plain);
  if (v instanceof Map) {
    const o: Record<string, unknown> = {};
    for (const [k, x] of v)
      Object.defineProperty(o, k, { value: plain(x), enumerable: true, writable: true });
    return o;
  }
  return v;
}

function same(a: unknown, b: unknown): boolean {
  if (typeof a === 'number' && typeof b === 'number') return a === b || (Number.isNaN(a) && Number.isNaN(b));
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => same(x, b[i]));
  if (a && b && typeof a === 'object' && typeof b === 'object') {
    const ka = Object.keys(a);
    const kb = Object.keys(b);
    return (
      ka.length === kb.length &&
      ka.every(
        (k, i) => k === kb[i] && same((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]),
      )
    );
  }
  return a === b;
}

function randomValue(r: () => number, depth: number): unknown {
  const pick = Math.floor(r() * (depth > 4 ? 5 : 8));
  const strings = ['', 'a', 'dtype', '__proto__', 'é"\\/\n\t\u0001', '\u2028', '\ud83d\ude00', 'constructor'];
  switch (pick) {
    case 0:
      return null;
    case 1:
      return r() < 0.5;
    case 2:
      return [0, -1, 1.5, 1e21, -0, 2 ** 53 + 1, 123456789, 1e-7, 2 ** 64][Math.floor(r() * 9)];
    case 3:
    case 4:
      return strings[Math.floor(r() * strings.length)];
    case 5:
      return Array.from({ length: Math.floor(r() * 4) }, () => randomValue(r, depth + 1));
    default: {
      const o: Record<string, unknown> = {};
      for (let i = Math.floor(r() * 4); i > 0; i--) {
        Object.defineProperty(o, strings[Math.floor(r() * strings.length)]! + i, {
          value: randomValue(r, depth + 1),
          enumerable: true,
          writable: true,
        });
      }
      return o;
    }
  }
}

describe('parseJson', () => {
  it('agrees with JSON.parse on valid documents', () => {
    const r = rng(11);
    for (let i = 0; i < 2000; i++) {
      const v = randomValue(r, 0);
      const text = JSON.stringify(v, null, r() < 0.3 ? 2 : undefined);
      expect(same(plain(parseJson(text)), JSON.parse(text)), text).toBe(true);
    }
  });

  it('agrees with JSON.parse on mutated documents (except duplicates, which it refuses)', () => {
    const r = rng(12);
    const alphabet = '{}[]",:0123456789-+.eE \\untrfalse\n';
    for (let i = 0; i < 5000; i++) {
      const chars = [...JSON.stringify(randomValue(r, 0))];
      for (let k = 1 + Math.floor(r() * 3); k > 0; k--) {
        const at = Math.floor(r() * (chars.length + 1));
        const c = alphabet[Math.floor(r() * alphabet.length)]!;
        const op = r();
        if (op < 0.4) chars[at] = c;
        else if (op < 0.7) chars.splice(at, 0, c);
        else chars.splice(at, 1);
      }
      const text = chars.join('');
      let expected: unknown;
      let ok = true;
      try {
        expected = JSON.parse(text);
      } catch {
        ok = false;
      }
      let got: unknown;
      let err: unknown;
      try {
        got = plain(parseJson(text));
      } catch (e) {
        err = e;
      }
      if (err !== undefined) {
        expect(err, text).toBeInstanceOf(JsonParseError);
        if (ok) expect((err as JsonParseError).kind, text).toBe('duplicate');
      } else {
        expect(ok, text).toBe(true);
        expect(same(got, expected), text).toBe(true);
      }
    }
  });

  it('keeps integers exact and marks duplicates with their path', () => {
    expect(parseJson('[18446744073709551615, 9007199254740993, 9007199254740991, 123, -0, -7]')).toEqual([
      18446744073709551615n,
      9007199254740993n,
      9007199254740991,
      123,
      0,
      -7,
    ]);
    expect(Object.is(parseJson('-0'), 0)).toBe(true);
    expect(parseJson('[1.0, 1e2, -2.5E-1]')).toEqual([
      new JsonFloat(1, '1.0'),
      new JsonFloat(100, '1e2'),
      new JsonFloat(-0.25, '-2.5E-1'),
    ]);
    expect(parseJson('123456789012345678901234567890')).toBe(1.2345678901234568e29);
    const err = (() => {
      try {
        parseJson('{"a": {"b": 1, "b": 2}}');
      } catch (e) {
        return e as JsonParseError;
      }
    })();
    expect(err?.kind).toBe('duplicate');
    expect(err?.key).toBe('b');
    expect(err?.path).toEqual(['a']);
    const proto = parseJson('{"__proto__": {"polluted": true}}') as Map<string, JsonValue>;
    expect(proto.get('__proto__')).toBeInstanceOf(Map);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('stops deep nesting with a depth error, not a stack overflow', () => {
    const deep = `${'['.repeat(1_000_000)}${']'.repeat(1_000_000)}`;
    expect(() => parseJson(deep)).toThrow(JsonParseError);
    expect(() => parseJson(`{"a":${'{"a":'.repeat(200)}1${'}'.repeat(201)}`)).toThrow(/nested deeper/);
    expect(parseJson(`${'['.repeat(100)}${']'.repeat(100)}`)).toBeDefined();
  });
});
