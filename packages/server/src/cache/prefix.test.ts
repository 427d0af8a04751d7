import { describe, expect, it } from 'vitest';
import { chainHashes, commonPrefix, entryId, isEntryId, scopeOf } from './prefix';

describe('prefix names', () => {
  const a = Array.from({ length: 70 }, (_, i) => i);
  it('name each block boundary; prompts share a hash exactly where they share the tokens', () => {
    const h = chainHashes(a, a.length, 16);
    expect(h).toHaveLength(4); // 16, 32, 48, 64
    const b = [...a];
    b[40] = 999;
    const hb = chainHashes(b, b.length, 16);
    expect(hb.slice(0, 2)).toEqual(h.slice(0, 2));
    expect(hb[2]).not.toBe(h[2]);
    expect(hb[3]).not.toBe(h[3]);
    expect(chainHashes(a, 47, 16)).toEqual(h.slice(0, 2));
  });

  it('give entries an id from scope and tokens only, safe as a file name', () => {
    const scope = scopeOf({
      modelFingerprint: 'm',
      tokenizerFingerprint: 't',
      numerics: 'wasm',
      cacheKind: 'standard',
    });
    const other = scopeOf({
      modelFingerprint: 'm',
      tokenizerFingerprint: 't',
      numerics: 'wasm+int8a',
      cacheKind: 'standard',
    });
    expect(scope).not.toBe(other);
    const id = entryId(scope, a);
    expect(isEntryId(id)).toBe(true);
    expect(entryId(scope, a)).toBe(id);
    expect(entryId(other, a)).not.toBe(id);
    expect(entryId(scope, a.slice(0, 69))).not.toBe(id);
    expect(isEntryId('../../etc/passwd')).toBe(false);
  });

  it('measure common prefixes with a cap', () => {
    expect(commonPrefix([1, 2, 3], [1, 2, 4])).toBe(2);
    expect(commonPrefix([1, 2, 3], [1, 2, 3], 2)).toBe(2);
    expect(commonPrefix([], [1])).toBe(0);
  });
});
