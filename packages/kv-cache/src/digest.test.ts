import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { metadataDigest } from './digest';

describe('metadataDigest', () => {
  it('hashes entries sorted by UTF-8 key bytes as <len>:<key>,<len>:<value>, (the documented example)', () => {
    const expected = createHash('sha256').update(Buffer.from('1:a,0:,1:b,2:é,', 'utf8')).digest('hex');
    expect(metadataDigest({ b: 'é', a: '' }, 'metadata_checksum')).toBe(expected);
    expect(metadataDigest({ b: 'é', a: '', metadata_checksum: 'x' }, 'metadata_checksum')).toBe(expected);
  });
});
