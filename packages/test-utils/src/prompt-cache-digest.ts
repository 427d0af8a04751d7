import { createHash } from 'node:crypto';

/**
 * `metadata_checksum` of a prompt-cache file as docs/prompt-cache-format.md (section 4) specifies it, written from the
 * spec so that tests can craft files (change an entry, sign the metadata again) without the package's own code.
 */
export function promptCacheMetadataDigest(metadata: Readonly<Record<string, string>>): string {
  const entries = Object.entries(metadata)
    .filter(([k]) => k !== 'metadata_checksum')
    .map(([k, v]) => [Buffer.from(k, 'utf8'), Buffer.from(v, 'utf8')] as const)
    .sort((a, b) => Buffer.compare(a[0], b[0]));
  const h = createHash('sha256');
  for (const [k, v] of entries) {
    h.update(`${k.length}:`);
    h.update(k);
    h.update(`,${v.length}:`);
    h.update(v);
    h.update(',');
  }
  return h.digest('hex');
}
