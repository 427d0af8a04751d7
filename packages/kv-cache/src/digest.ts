import { createHash } from 'node:crypto';

const utf8 = new TextEncoder();

/** sha256 of `parts` concatenated, as lowercase hex. */
export function sha256Hex(parts: Iterable<Uint8Array>): string {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest('hex');
}

/** Whether `s` is a sha256 digest written as 64 lowercase hex digits. */
export function isSha256Hex(s: unknown): s is string {
  return typeof s === 'string' && /^[0-9a-f]{64}$/.test(s);
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}

/**
 * The metadata digest of the prompt-cache format: sha256 over every entry except `skip`, sorted by the UTF-8 bytes of
 * the key, each written as `<key bytes>:<key>,<value bytes>:<value>,` (lengths in decimal ASCII, UTF-8 throughout).
 */
export function metadataDigest(metadata: Readonly<Record<string, string>>, skip: string): string {
  const entries = Object.entries(metadata)
    .filter(([k]) => k !== skip)
    .map(([k, v]) => [utf8.encode(k), utf8.encode(v)] as const)
    .sort((a, b) => compareBytes(a[0], b[0]));
  const parts: Uint8Array[] = [];
  for (const [k, v] of entries) {
    parts.push(utf8.encode(`${k.length}:`), k, utf8.encode(`,${v.length}:`), v, utf8.encode(','));
  }
  return sha256Hex(parts);
}
