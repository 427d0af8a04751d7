import { closeSync, mkdtempSync, openSync, rmSync, utimesSync, writeFileSync, writeSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { identityAt, identityOf, sameIdentity } from './index';

const dir = mkdtempSync(join(tmpdir(), 'mnemo-files-identity-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('file identity', () => {
  it('stays while nothing writes to the file, and changes with any write, even with size and mtime restored', async () => {
    const f = join(dir, 'weights.bin');
    writeFileSync(f, Buffer.alloc(4096, 7));
    const past = new Date(Date.now() - 60_000);
    utimesSync(f, past, past);
    const a = await identityAt(f);
    const fh = await open(f, 'r');
    expect(sameIdentity(await identityOf(fh), a)).toBe(true);
    expect(sameIdentity(await identityAt(f), a)).toBe(true);
    const fd = openSync(f, 'r+');
    writeSync(fd, Buffer.from([8]), 0, 1, 100); // one byte, in place
    closeSync(fd);
    utimesSync(f, past, past); // mtime put back; ctime cannot be
    const b = await identityOf(fh);
    await fh.close();
    expect(b.size).toBe(a.size);
    expect(b.mtimeNs).toBe(a.mtimeNs);
    expect(sameIdentity(b, a)).toBe(false);
  });
});
