import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { liveTemps, removeStaleTemps, resolveWriteTarget, tempWriterPid, writeFileAtomic } from './index';

const root = mkdtempSync(join(tmpdir(), 'mnemo-files-write-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let dir: string;
let n = 0;
beforeEach(() => {
  dir = join(root, `t${n++}`);
  mkdirSync(dir);
});

const isRoot = process.getuid?.() === 0;
const posix = process.platform !== 'win32';

const put = (text: string) => async (fh: import('node:fs/promises').FileHandle) => {
  await fh.writeFile(text);
};

describe('writeFileAtomic', () => {
  it('writes a new file with mode 0600 (minus the umask) and leaves nothing else', async () => {
    const p = join(dir, 'cache.safetensors');
    expect(await writeFileAtomic(p, put('hello'))).toBe(p);
    expect(readFileSync(p, 'utf8')).toBe('hello');
    if (posix) expect(statSync(p).mode & 0o777).toBe(0o600 & ~process.umask());
    expect(readdirSync(dir)).toEqual(['cache.safetensors']);
  });

  it.skipIf(!posix)('keeps the mode of the file it replaces (0600 stays 0600, 0644 stays 0644)', async () => {
    for (const mode of [0o600, 0o640, 0o644]) {
      const p = join(dir, `m${mode.toString(8)}`);
      writeFileSync(p, 'old');
      chmodSync(p, mode);
      await writeFileAtomic(p, put('new'));
      expect(readFileSync(p, 'utf8')).toBe('new');
      expect(statSync(p).mode & 0o777).toBe(mode);
    }
  });

  it.skipIf(!isRoot)('refuses to replace a device node and leaves it as it was', async () => {
    const dev = join(dir, 'null');
    execFileSync('mknod', [dev, 'c', '1', '3']); // a /dev/null of our own, in a temporary folder
    await expect(writeFileAtomic(dev, put('x'))).rejects.toMatchObject({
      name: 'FileAccessError',
      code: 'NOT_A_FILE',
      message: `${dev}: is a character device, not a regular file: refusing to replace it (nothing was written)`,
    });
    expect(statSync(dev).isCharacterDevice()).toBe(true);
    expect(readdirSync(dir)).toEqual(['null']);
    // also behind a symbolic link
    symlinkSync(dev, join(dir, 'link'));
    await expect(writeFileAtomic(join(dir, 'link'), put('x'))).rejects.toMatchObject({ code: 'NOT_A_FILE' });
    expect(statSync(dev).isCharacterDevice()).toBe(true);
  });

  it.skipIf(!posix)('refuses a FIFO and a folder', async () => {
    const fifo = join(dir, 'fifo');
    execFileSync('mkfifo', [fifo]);
    await expect(writeFileAtomic(fifo, put('x'))).rejects.toMatchObject({
      code: 'NOT_A_FILE',
      message: expect.stringContaining('named pipe (FIFO)'),
    });
    expect(lstatSync(fifo).isFIFO()).toBe(true);
    mkdirSync(join(dir, 'sub'));
    await expect(writeFileAtomic(join(dir, 'sub'), put('x'))).rejects.toMatchObject({
      code: 'NOT_A_FILE',
      message: expect.stringContaining('is a directory'),
    });
    expect(readdirSync(dir).sort()).toEqual(['fifo', 'sub']);
  });

  it.skipIf(!posix)(
    'writes through a symbolic link: the target is replaced atomically, the link stays a link',
    async () => {
      const other = join(dir, 'elsewhere');
      mkdirSync(other);
      const target = join(other, 'real.safetensors');
      writeFileSync(target, 'old');
      chmodSync(target, 0o600);
      symlinkSync('elsewhere/real.safetensors', join(dir, 'sub-link')); // relative, resolved from the link's folder
      mkdirSync(join(dir, 'links'));
      const link = join(dir, 'links', 'cache.safetensors');
      symlinkSync(join(dir, 'sub-link'), link); // a chain of two links
      expect(await writeFileAtomic(link, put('new'))).toBe(target);
      expect(lstatSync(link).isSymbolicLink()).toBe(true);
      expect(readlinkSync(link)).toBe(join(dir, 'sub-link'));
      expect(readFileSync(target, 'utf8')).toBe('new');
      expect(statSync(target).mode & 0o777).toBe(0o600);
      expect(readdirSync(other)).toEqual(['real.safetensors']);
      expect(readdirSync(join(dir, 'links'))).toEqual(['cache.safetensors']);
      // a dangling link creates the file it names
      symlinkSync(join(other, 'new.bin'), join(dir, 'dangling'));
      await writeFileAtomic(join(dir, 'dangling'), put('made'));
      expect(readFileSync(join(other, 'new.bin'), 'utf8')).toBe('made');
      expect(lstatSync(join(dir, 'dangling')).isSymbolicLink()).toBe(true);
      // a loop of links is an error, not a hang
      symlinkSync(join(dir, 'loop-b'), join(dir, 'loop-a'));
      symlinkSync(join(dir, 'loop-a'), join(dir, 'loop-b'));
      await expect(resolveWriteTarget(join(dir, 'loop-a'))).rejects.toMatchObject({
        code: 'IO',
        message: expect.stringContaining('symbolic links'),
      });
    },
  );

  it('rethrows the callback error unchanged, removes the temporary file, keeps the old file', async () => {
    const p = join(dir, 'x');
    writeFileSync(p, 'old');
    const boom = new TypeError('boom');
    await expect(
      writeFileAtomic(p, async (fh) => {
        await fh.writeFile('partial');
        throw boom;
      }),
    ).rejects.toBe(boom);
    expect(readFileSync(p, 'utf8')).toBe('old');
    expect(readdirSync(dir)).toEqual(['x']);
    expect(liveTemps()).toEqual([]);
  });
});

describe('temporary files left by killed writers', () => {
  it('removes those of a dead process on the next write to the folder, keeps those of running ones', async () => {
    const dead = spawnSync(process.execPath, ['-e', '0']).pid!; // a process id that just ended
    const stale = join(dir, `model.safetensors.tmp-${dead}-0123456789ab`);
    const running = join(dir, `model.safetensors.tmp-${process.pid}-0123456789ab`);
    const other = join(dir, 'notes.tmp-12-0123456789ab.txt'); // not a temporary file of ours
    for (const p of [stale, running, other]) writeFileSync(p, 'x');
    expect(tempWriterPid(`a.tmp-${dead}-0123456789ab`)).toBe(dead);
    await writeFileAtomic(join(dir, 'cache.safetensors'), put('new'));
    expect(existsSync(stale)).toBe(false);
    expect(existsSync(running)).toBe(true);
    expect(existsSync(other)).toBe(true);
    expect(await removeStaleTemps(join(dir, 'missing-folder'))).toEqual([]);
  });
});

const child = join(import.meta.dirname, '..', 'test', 'writer-child.mjs');
const built = existsSync(join(import.meta.dirname, '..', 'dist', 'index.js'));

/** Starts a writer that stops halfway through writing `path`; resolves with it and its temporary file. */
function stuckWriter(path: string): Promise<{ proc: ChildProcess; tmp: string }> {
  const proc = spawn(process.execPath, [child, path], { stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    proc.stderr!.on('data', (d) => {
      err += d;
    });
    proc.stdout!.on('data', (d) => {
      out += d;
      const m = /ready (\S+)\n/.exec(out);
      if (m) resolve({ proc, tmp: m[1]! });
    });
    proc.on('exit', (code) => reject(new Error(`writer exited (${code}) before it was ready: ${err}`)));
  });
}

function exited(proc: ChildProcess): Promise<NodeJS.Signals | null> {
  return new Promise((resolve) => {
    if (proc.exitCode !== null || proc.signalCode !== null) resolve(proc.signalCode);
    else proc.on('exit', (_code, signal) => resolve(signal));
  });
}

describe.skipIf(!built || !posix)('a writer interrupted in a child process (needs `pnpm build`)', () => {
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    it(`${signal}: the temporary file is removed, the destination kept, the writer dies of the signal`, async () => {
      const p = join(dir, 'cache.safetensors');
      writeFileSync(p, 'old');
      const { proc, tmp } = await stuckWriter(p);
      expect(existsSync(tmp)).toBe(true);
      expect(statSync(tmp).size).toBe(1 << 20);
      proc.kill(signal);
      expect(await exited(proc)).toBe(signal);
      expect(readdirSync(dir)).toEqual(['cache.safetensors']);
      expect(readFileSync(p, 'utf8')).toBe('old');
    });
  }

  it('SIGKILL: the temporary file stays until the next write to the folder removes it', async () => {
    const p = join(dir, 'cache.safetensors');
    writeFileSync(p, 'old');
    const { proc, tmp } = await stuckWriter(p);
    proc.kill('SIGKILL');
    expect(await exited(proc)).toBe('SIGKILL');
    expect(existsSync(tmp)).toBe(true);
    expect(readFileSync(p, 'utf8')).toBe('old');
    await writeFileAtomic(join(dir, 'other.safetensors'), put('x'));
    expect(readdirSync(dir).sort()).toEqual(['cache.safetensors', 'other.safetensors']);
  });
});
