import { execFileSync } from 'node:child_process';
import {
  closeSync,
  copyFileSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { isAbsolute, join, relative } from 'node:path';
import { openGguf } from '@mnemo/gguf';
import { type Backend, createBackend } from '@mnemo/tensor';
import { syntheticGguf } from '@mnemo/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel, resolveGgufFile } from './load';

// Issue 10's guarantees for GGUF models: a model path is only ever opened when it is a regular file (a FIFO never
// hangs, a device is never read), and the fingerprint covers every byte of every tensor the model reads and the whole
// header (metadata, tokenizer included), also when its digests are remembered across loads.
const fixture = join(syntheticGguf(), 'llama-q8_0.gguf');
const tmp = mkdtempSync(join(tmpdir(), 'mnemo-gguf-hostile-'));
const isRoot = process.getuid?.() === 0;
const canFifo = process.platform !== 'win32';
let backend: Backend;
beforeAll(async () => {
  backend = await createBackend({ backend: 'js' });
});
afterAll(() => {
  backend?.dispose();
  rmSync(tmp, { recursive: true, force: true });
});

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

/** A private copy of the fixture, last modified a minute ago (settled: its digests may be remembered). */
function settledCopy(name: string): string {
  const dir = join(tmp, name);
  mkdirSync(dir, { recursive: true });
  const file = join(dir, 'model.gguf');
  copyFileSync(fixture, file);
  const past = new Date(Date.now() - 60_000);
  utimesSync(file, past, past);
  return file;
}

/** Changes byte `at` of `file` in place (XOR 1), then puts its size and modification time back as they were. */
function changeByteInPlace(file: string, at: number): void {
  const before = statSync(file);
  const fd = openSync(file, 'r+');
  try {
    const b = Buffer.from([readFileSync(file)[at]! ^ 0x01]);
    writeSync(fd, b, 0, 1, at);
  } finally {
    closeSync(fd);
  }
  utimesSync(file, before.atime, before.mtime);
  expect(statSync(file).size).toBe(before.size);
  expect(statSync(file).mtimeMs).toBe(before.mtimeMs);
}

async function fingerprintOf(path: string, digestCache: string | false): Promise<string> {
  const m = await loadModel(path, { backend, digestCache });
  m.model.free();
  return m.fingerprint;
}

describe('GGUF model paths that are not regular files', () => {
  it.skipIf(!canFifo)('a FIFO named model.gguf is refused at once instead of hanging', async () => {
    const fifo = join(tmp, 'fifo.gguf');
    execFileSync('mkfifo', [fifo]);
    await expect(within(loadModel(fifo, { backend }))).rejects.toThrow(
      `${fifo} is a named pipe (FIFO), not a model file or folder`,
    );
    await expect(within(resolveGgufFile(fifo))).rejects.toThrow('named pipe (FIFO)');
    // the reader itself refuses it too, before opening it
    await expect(within(openGguf(fifo))).rejects.toMatchObject({
      code: 'IO',
      message: `${fifo}: is a named pipe (FIFO), not a regular file [IO]`,
    });
    expect(lstatSync(fifo).isFIFO()).toBe(true);
  });

  it.skipIf(!isRoot)(
    'a device node (mknod, in a temporary folder) named model.gguf is never read',
    async () => {
      const dev = join(tmp, 'zero.gguf');
      execFileSync('mknod', [dev, 'c', '1', '5']); // like /dev/zero: endless bytes if it were read
      await expect(within(loadModel(dev, { backend }))).rejects.toThrow(
        `${dev} is a character device, not a model file or folder`,
      );
      await expect(within(openGguf(dev))).rejects.toMatchObject({
        code: 'IO',
        message: `${dev}: is a character device, not a regular file [IO]`,
      });
      expect(lstatSync(dev).isCharacterDevice()).toBe(true);
    },
  );

  it('a symbolic link to a GGUF file loads the file it points to, and is recorded as given', async () => {
    const target = settledCopy('linked');
    const link = join(tmp, 'link.gguf');
    symlinkSync(target, link);
    const viaLink = await loadModel(link, { backend, digestCache: false });
    viaLink.model.free();
    expect(viaLink.source).toBe(link);
    expect(viaLink.fingerprint).toBe(await fingerprintOf(target, false));
    // a link to a FIFO is refused like the FIFO
    if (canFifo) {
      const fifo = join(tmp, 'linked-fifo');
      execFileSync('mkfifo', [fifo]);
      symlinkSync(fifo, join(tmp, 'fifo-link.gguf'));
      await expect(within(loadModel(join(tmp, 'fifo-link.gguf'), { backend }))).rejects.toThrow(
        'named pipe (FIFO)',
      );
    }
  });

  it('records a relative GGUF path as the absolute file', async () => {
    const file = settledCopy('relative');
    const rel = relative(process.cwd(), file);
    expect(isAbsolute(rel)).toBe(false);
    const m = await loadModel(rel, { backend, digestCache: false });
    m.model.free();
    expect(m.source).toBe(file);
    expect(m.dir).toBe(join(tmp, 'relative'));
  });
});

describe('the fingerprint of a GGUF model', () => {
  // token_embd.weight of llama-q8_0.gguf: 71,808 bytes. The old fingerprint sampled 16 windows of 4,096 bytes,
  // 4,514 bytes apart: byte 4,100 of the tensor (a quant of token 15's row) lay between the first two.
  const EMBD_BYTE = 4100;

  it('changes with one tensor byte the old samples never looked at, and with one metadata byte', async () => {
    const base = await fingerprintOf(fixture, false);
    const f = await openGguf(fixture);
    const embd = f.info('token_embd.weight');
    const down = f.info('blk.1.ffn_down.weight');
    const header = f.dataOffset;
    await f.close();
    expect(embd.byteLength).toBe(71_808);
    const cases: [string, number][] = [
      ['token_embd.weight byte 4100', embd.byteOffset + EMBD_BYTE],
      ['the last byte of blk.1.ffn_down.weight', down.byteOffset + down.byteLength - 1],
    ];
    // a byte of a tokenizer string in the metadata: "general.name" or a token text, found in the header
    const bytes = readFileSync(fixture).subarray(0, header);
    const token = bytes.indexOf(Buffer.from('tokenizer.ggml.tokens'));
    expect(token).toBeGreaterThan(0);
    // key, then type (4), item type (4), count (8), first string's length (8), then its first byte
    const firstTokenByte = token + 'tokenizer.ggml.tokens'.length + 4 + 4 + 8 + 8;
    cases.push(['the first byte of the first token text', firstTokenByte]);
    for (const [what, at] of cases) {
      const file = settledCopy(`changed-${at}`);
      changeByteInPlace(file, at);
      expect(await fingerprintOf(file, false), what).not.toBe(base);
    }
    expect(await fingerprintOf(fixture, false)).toBe(base);
  });

  it('remembers tensor digests keyed by the file identity, and hashes again after a byte changed in place', async () => {
    const file = settledCopy('remembered');
    const cacheDir = join(tmp, 'digests');
    const first = await fingerprintOf(file, cacheDir);
    const stored = readdirSync(cacheDir);
    expect(stored).toHaveLength(1);
    const entry = JSON.parse(readFileSync(join(cacheDir, stored[0]!), 'utf8'));
    expect(entry).toMatchObject({ format: 'mnemo-weight-digests', version: 1, file });
    const f = await openGguf(file);
    const embd = f.info('token_embd.weight');
    const tensorCount = f.tensors.size;
    await f.close();
    expect(Object.keys(entry.tensors)).toHaveLength(tensorCount);
    // the same file again: the same fingerprint from the remembered digests
    expect(await fingerprintOf(file, cacheDir)).toBe(first);
    // the remembered digests are really used: a forged one (for the unchanged file) changes the fingerprint
    const forged = { ...entry, tensors: { ...entry.tensors } };
    const key = Object.keys(forged.tensors).find((k) => k.startsWith('model.embed_tokens.weight\0'))!;
    forged.tensors[key] = '0'.repeat(64);
    writeFileSync(join(cacheDir, stored[0]!), JSON.stringify(forged));
    expect(await fingerprintOf(file, cacheDir)).not.toBe(first);
    writeFileSync(join(cacheDir, stored[0]!), JSON.stringify(entry));
    // one byte changed in place, size and modification time put back: the ctime changed, so every tensor is hashed
    changeByteInPlace(file, embd.byteOffset + EMBD_BYTE);
    const changed = await fingerprintOf(file, cacheDir);
    expect(changed).not.toBe(first);
    expect(changed).toBe(await fingerprintOf(file, false));
  });
});
