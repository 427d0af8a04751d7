import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { writeSafetensors } from './index';

// Simulated disk failures: the file handles the writer opens for its temporary file ('wx') fail after a byte budget
// (ENOSPC) or at fsync (EIO).
const failure = vi.hoisted(() => ({ writeBudget: -1, failSync: false }));

vi.mock('node:fs/promises', async (importOriginal) => {
  const actual = await importOriginal<typeof import('node:fs/promises')>();
  const open: typeof actual.open = async (path, flags, mode) => {
    const fh = await actual.open(path, flags, mode);
    if (flags !== 'wx') return fh;
    let written = 0;
    const write = fh.write.bind(fh) as (
      b: Uint8Array,
      o: number,
      l: number,
      p: number,
    ) => Promise<{ bytesWritten: number }>;
    Object.assign(fh, {
      write: async (buf: Uint8Array, offset: number, length: number, position: number) => {
        if (failure.writeBudget >= 0 && written + length > failure.writeBudget) {
          const part = failure.writeBudget - written;
          if (part > 0) await write(buf, offset, part, position);
          written += Math.max(part, 0);
          throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
        }
        written += length;
        return write(buf, offset, length, position);
      },
      sync: async () => {
        if (failure.failSync) throw Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' });
      },
    });
    return fh;
  };
  return { ...actual, open, default: { ...actual, open } };
});

describe('writeSafetensors under disk failures', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mnemo-st-fail-'));
    failure.writeBudget = -1;
    failure.failSync = false;
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const big = (seed: number) => ({
    name: 'w',
    dtype: 'U8' as const,
    shape: [4096],
    data: new Uint8Array(4096).fill(seed),
  });

  it('keeps the existing file and removes the temporary one when a write fails midway', async () => {
    const path = join(dir, 'model.safetensors');
    await writeSafetensors(path, [big(1)]);
    const before = await readFile(path);
    for (const budget of [0, 7, 100, 2000]) {
      failure.writeBudget = budget;
      await expect(writeSafetensors(path, [big(2)])).rejects.toMatchObject({
        name: 'SafetensorsError',
        code: 'IO',
        file: path,
        message: expect.stringContaining('ENOSPC'),
      });
      expect((await readFile(path)).equals(before)).toBe(true);
      expect(await readdir(dir)).toEqual(['model.safetensors']);
    }
  });

  it('keeps the existing file when fsync fails', async () => {
    const path = join(dir, 'model.safetensors');
    await writeSafetensors(path, [big(1)]);
    const before = await readFile(path);
    failure.failSync = true;
    await expect(writeSafetensors(path, [big(3)])).rejects.toMatchObject({
      code: 'IO',
      message: expect.stringContaining('fsync'),
    });
    expect((await readFile(path)).equals(before)).toBe(true);
    expect(await readdir(dir)).toEqual(['model.safetensors']);
  });

  it('leaves no file at all when there was none', async () => {
    failure.writeBudget = 10;
    await expect(writeSafetensors(join(dir, 'new.safetensors'), [big(4)])).rejects.toMatchObject({
      code: 'IO',
    });
    expect(await readdir(dir)).toEqual([]);
  });
});
