import { execFileSync } from 'node:child_process';
import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { entryId } from '../cache/prefix';
import { DiskTier } from './disk-tier';

// The disk tier's files on their own (no model): what a previous run left behind is cleaned up once stale, an index
// record that is not a regular file is moved aside without being opened, and records are written privately.
const root = mkdtempSync(join(tmpdir(), 'mnemo-disk-tier-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const quiet = () => {};
const hoursAgo = (h: number) => new Date(Date.now() - h * 3_600_000);

describe('the disk tier folder', () => {
  it('removes stale leftovers of killed writers and keeps fresh ones', async () => {
    const dir = join(root, 'leftovers');
    mkdirSync(dir);
    const id = entryId('scope', [1, 2, 3]);
    // the private folder of a Redis entry passing through a file, whose process died
    const oldPc = join(dir, 'mnemo-pc-old');
    mkdirSync(oldPc);
    writeFileSync(join(oldPc, 'cache.safetensors'), 'x');
    utimesSync(oldPc, hoursAgo(2), hoursAgo(2));
    const freshPc = join(dir, 'mnemo-pc-fresh');
    mkdirSync(freshPc);
    // a temporary file of the atomic writer, and a cache without its record
    const oldTmp = join(dir, `${id}.json.tmp-999999-abcdef`);
    writeFileSync(oldTmp, '{');
    utimesSync(oldTmp, hoursAgo(2), hoursAgo(2));
    const orphan = join(dir, `${id}.safetensors`);
    writeFileSync(orphan, 'x');
    utimesSync(orphan, hoursAgo(2), hoursAgo(2));
    const t = await DiskTier.open(dir, 1e9, 16, quiet);
    expect(t.size).toBe(0);
    expect(existsSync(oldPc)).toBe(false);
    expect(existsSync(oldTmp)).toBe(false);
    expect(existsSync(orphan)).toBe(false);
    expect(lstatSync(freshPc).isDirectory()).toBe(true);
  });

  it.skipIf(process.platform === 'win32')(
    'moves an index record that is a FIFO aside without opening it',
    async () => {
      const dir = join(root, 'fifo');
      mkdirSync(dir);
      const id = entryId('scope', [4, 5, 6]);
      execFileSync('mkfifo', [join(dir, `${id}.json`)]);
      const t = await DiskTier.open(dir, 1e9, 16, quiet);
      expect(t.size).toBe(0);
      expect(existsSync(join(dir, `${id}.json`))).toBe(false);
      const moved = readdirSync(join(dir, 'refused'));
      expect(moved).toHaveLength(1);
      expect(lstatSync(join(dir, 'refused', moved[0]!)).isFIFO()).toBe(true);
    },
  );

  it('writes a record atomically and privately, and finds it again', async () => {
    const dir = join(root, 'records');
    const t = await DiskTier.open(dir, 1e9, 16, quiet);
    const tokens = [7, 8, 9];
    const e = await t.add({ scope: 's', modelFingerprint: 'f', numerics: 'n', tokens }, 10, async (path) =>
      writeFileSync(path, 'cache bytes'),
    );
    expect(e?.id).toBe(entryId('s', tokens));
    const names = readdirSync(dir).sort();
    expect(names).toEqual([`${e!.id}.json`, `${e!.id}.safetensors`]); // no temporary file left
    if (process.platform !== 'win32') expect(statSync(join(dir, `${e!.id}.json`)).mode & 0o777).toBe(0o600);
    const again = await DiskTier.open(dir, 1e9, 16, quiet);
    expect(again.has(e!.id)).toBe(true);
  });
});
