import { execFileSync } from 'node:child_process';
import { lstatSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  encodeGguf,
  MAX_BOOL_ITEMS,
  MAX_ENTRIES,
  MAX_HEADER_BYTES,
  openGguf,
  GgufValues as V,
} from './index';

// Paths and files a careless or hostile user can hand the reader: it opens only regular files (stat first, then a
// non-blocking open, through @mnemo/files), so nothing blocks on a FIFO or reads a device, and it never allocates
// more than MAX_HEADER_BYTES for a header, whatever the file announces.
const dir = mkdtempSync(join(tmpdir(), 'mnemo-gguf-hostile-'));
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

const small = () =>
  encodeGguf(
    [['general.architecture', V.string('llama')]],
    [{ name: 'w', type: 0, dims: [4], data: new Uint8Array(16).fill(1) }], // type 0: F32
  );

describe('openGguf on paths that are not regular files', () => {
  it.skipIf(!canFifo)('refuses a FIFO at once instead of blocking on it (also behind a link)', async () => {
    const fifo = join(dir, 'model.gguf');
    execFileSync('mkfifo', [fifo]);
    symlinkSync(fifo, join(dir, 'fifo-link.gguf'));
    for (const p of [fifo, join(dir, 'fifo-link.gguf')])
      await expect(within(openGguf(p))).rejects.toMatchObject({
        name: 'GgufError',
        code: 'IO',
        message: `${p}: is a named pipe (FIFO), not a regular file [IO]`,
      });
    expect(lstatSync(fifo).isFIFO()).toBe(true);
  });

  it.skipIf(!isRoot)(
    'refuses a device node (made with mknod in a temporary folder) without reading it',
    async () => {
      const dev = join(dir, 'zero.gguf');
      execFileSync('mknod', [dev, 'c', '1', '5']); // like /dev/zero
      await expect(within(openGguf(dev))).rejects.toMatchObject({
        code: 'IO',
        message: `${dev}: is a character device, not a regular file [IO]`,
      });
      expect(lstatSync(dev).isCharacterDevice()).toBe(true);
    },
  );

  it('reads through a symbolic link, and knows the identity of the file it opened', async () => {
    const file = join(dir, 'real.gguf');
    writeFileSync(file, small());
    symlinkSync(file, join(dir, 'link.gguf'));
    const f = await openGguf(join(dir, 'link.gguf'));
    try {
      expect(await f.read('w')).toEqual(new Uint8Array(16).fill(1));
      const id = await f.identity();
      const st = lstatSync(file, { bigint: true });
      expect(id).toEqual({
        dev: st.dev.toString(),
        ino: st.ino.toString(),
        size: st.size.toString(),
        mtimeNs: st.mtimeNs.toString(),
        ctimeNs: st.ctimeNs.toString(),
      });
    } finally {
      await f.close();
    }
    await expect(f.identity()).rejects.toMatchObject({ code: 'CLOSED' });
  });
});

describe('openGguf header size bound', () => {
  it(`refuses a header longer than ${MAX_HEADER_BYTES} bytes before allocating it`, async () => {
    // A (sparse) file of 300 MB whose one metadata string announces 290 MB: the file could hold it, the bound refuses.
    const file = join(dir, 'long-header.gguf');
    const head = Buffer.alloc(24 + 8 + 1 + 4 + 8);
    let p = 0;
    head.write('GGUF', p, 'latin1');
    p += 4;
    head.writeUInt32LE(3, p);
    p += 4;
    head.writeBigUInt64LE(0n, p); // tensors
    p += 8;
    head.writeBigUInt64LE(1n, p); // metadata entries
    p += 8;
    head.writeBigUInt64LE(1n, p); // key length
    p += 8;
    head.write('k', p, 'latin1');
    p += 1;
    head.writeUInt32LE(8, p); // STRING
    p += 4;
    head.writeBigUInt64LE(290_000_000n, p);
    const fh = await open(file, 'w');
    await fh.write(head, 0, head.length, 0);
    await fh.truncate(300_000_000);
    await fh.close();
    await expect(openGguf(file)).rejects.toMatchObject({
      code: 'TOO_LARGE',
      message: expect.stringContaining(`over the ${MAX_HEADER_BYTES}-byte limit`),
    });
  });
});

describe('parsing memory: counts that would each become a JavaScript object are capped', () => {
  const u32 = (v: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v);
    return b;
  };
  const u64 = (v: number) => {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(v));
    return b;
  };
  const str = (s: string) => Buffer.concat([u64(Buffer.byteLength(s)), Buffer.from(s)]);
  const header = (tensors: number, kvs: number) => [Buffer.from('GGUF'), u32(3), u64(tensors), u64(kvs)];

  it(`refuses more than ${MAX_ENTRIES} tensors, metadata entries or nested arrays, and more than ${MAX_BOOL_ITEMS} bools`, async () => {
    const n = MAX_ENTRIES + 1;
    // 65,537 empty tensors (the file holds them all: 25 bytes each)
    const emptyTensor = (i: number) => Buffer.concat([str(i.toString(36)), u32(1), u64(0), u32(0), u64(0)]);
    const files: [string, Buffer[], string][] = [
      ['tensors', [...header(n, 0), ...Array.from({ length: n }, (_, i) => emptyTensor(i))], `${n} tensors`],
      [
        'keys',
        [
          ...header(0, n),
          ...Array.from({ length: n }, (_, i) => Buffer.concat([str(`k${i}`), u32(0), Buffer.from([1])])),
        ],
        `${n} metadata entries`,
      ],
      [
        'nested',
        [
          ...header(0, 1),
          str('k'),
          u32(9),
          u32(9),
          u64(n),
          ...Array.from({ length: n }, () => Buffer.concat([u32(4), u64(0)])),
        ],
        `more than ${MAX_ENTRIES} arrays nested in arrays`,
      ],
      [
        'bools',
        [
          ...header(0, 1),
          str('k'),
          u32(9),
          u32(7),
          u64(MAX_BOOL_ITEMS + 1),
          Buffer.alloc(MAX_BOOL_ITEMS + 1, 1),
        ],
        `more than ${MAX_BOOL_ITEMS} items in bool arrays`,
      ],
    ];
    for (const [name, parts, message] of files) {
      const file = join(dir, `${name}.gguf`);
      writeFileSync(file, Buffer.concat(parts));
      await expect(openGguf(file), name).rejects.toMatchObject({
        code: 'TOO_LARGE',
        message: expect.stringContaining(message),
      });
    }
    // and exactly at the caps, they are read
    const atCap = join(dir, 'at-cap.gguf');
    writeFileSync(
      atCap,
      Buffer.concat([
        ...header(MAX_ENTRIES, 0),
        ...Array.from({ length: MAX_ENTRIES }, (_, i) => emptyTensor(i)),
      ]),
    );
    const f = await openGguf(atCap);
    expect(f.tensors.size).toBe(MAX_ENTRIES);
    await f.close();
  });
});
