import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openRegularFile, readRegularFile, readTextFile, readTextFileIfExists } from './index';

const dir = mkdtempSync(join(tmpdir(), 'mnemo-files-read-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const isRoot = process.getuid?.() === 0;
const canFifo = process.platform !== 'win32';

/** Fails the test instead of hanging when `p` does not settle within `ms` (a hang guard, not a speed check). */
async function within<T>(p: Promise<T>, ms = 240_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`did not settle within ${ms} ms (it blocked)`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

describe('openRegularFile / readRegularFile', () => {
  it('reads a regular file, also through a symbolic link', async () => {
    const f = join(dir, 'a.json');
    writeFileSync(f, '{"x":1}');
    symlinkSync(f, join(dir, 'link.json'));
    expect(await readTextFile(f)).toBe('{"x":1}');
    expect(await readTextFile(join(dir, 'link.json'))).toBe('{"x":1}');
    const o = await openRegularFile(f);
    expect(o.size).toBe(7);
    await o.handle.close();
  });

  it.skipIf(!canFifo)('refuses a FIFO at once instead of blocking on it (also behind a link)', async () => {
    const fifo = join(dir, 'config.json');
    execFileSync('mkfifo', [fifo]);
    symlinkSync(fifo, join(dir, 'fifo-link'));
    for (const p of [fifo, join(dir, 'fifo-link')]) {
      await expect(within(readTextFile(p))).rejects.toMatchObject({
        name: 'FileAccessError',
        code: 'NOT_A_FILE',
        message: expect.stringContaining('named pipe (FIFO)'),
      });
      await expect(within(openRegularFile(p))).rejects.toMatchObject({ code: 'NOT_A_FILE' });
    }
  });

  it.skipIf(!isRoot)('refuses a character device made with mknod in a temporary folder', async () => {
    const dev = join(dir, 'null-device');
    execFileSync('mknod', [dev, 'c', '1', '3']); // the same device as /dev/null, in our own folder
    await expect(within(readRegularFile(dev))).rejects.toMatchObject({
      code: 'NOT_A_FILE',
      message: `${dev}: is a character device, not a regular file`,
    });
  });

  it('refuses a folder, a missing file and a file over the bound, before reading it', async () => {
    const sub = join(dir, 'sub');
    mkdirSync(sub);
    await expect(readRegularFile(sub)).rejects.toMatchObject({ code: 'NOT_A_FILE' });
    await expect(readRegularFile(join(dir, 'missing'))).rejects.toMatchObject({
      code: 'NOT_FOUND',
      errno: 'ENOENT',
    });
    expect(await readTextFileIfExists(join(dir, 'missing'))).toBeNull();
    const big = join(dir, 'big.json');
    writeFileSync(big, Buffer.alloc(1000, 0x20));
    await expect(readRegularFile(big, { maxBytes: 999 })).rejects.toMatchObject({
      code: 'TOO_LARGE',
      message: `${big}: is 1000 bytes, more than the 999 bytes accepted for it`,
    });
    expect((await readRegularFile(big, { maxBytes: 1000 })).length).toBe(1000);
  });
});
