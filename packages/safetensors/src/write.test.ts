import { execFileSync } from 'node:child_process';
import {
  chmod,
  lstat,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rm,
  stat,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomF32, rng } from '@mnemo/test-utils';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  decodeSafetensors,
  encodeSafetensors,
  fromMnemoDType,
  type NamedTensorInput,
  openSafetensors,
  SAFETENSORS_DTYPE_BITS,
  SAFETENSORS_DTYPES,
  SafetensorsError,
  toMnemoDType,
  writeSafetensors,
  writeSafetensorsStreaming,
} from './index';

const f32Bytes = (values: number[]) => new Uint8Array(new Float32Array(values).buffer);

describe('encodeSafetensors', () => {
  it('matches the reference serialization byte for byte', () => {
    // Expected bytes from the format's reference test suite (one F32 [1, 2, 3] tensor, then an empty file).
    const out = encodeSafetensors([
      { name: 'attn.0', dtype: 'F32', shape: [1, 2, 3], data: f32Bytes([0, 1, 2, 3, 4, 5]) },
    ]);
    const header = '{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}';
    expect(header.length).toBe(64);
    expect(Buffer.from(out.subarray(0, 8)).readBigUInt64LE(0)).toBe(64n);
    expect(Buffer.from(out.subarray(8, 72)).toString()).toBe(header);
    expect(out.subarray(72)).toEqual(f32Bytes([0, 1, 2, 3, 4, 5]));

    expect([...encodeSafetensors([])]).toEqual([8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32]);
    const withMeta = encodeSafetensors([], { framework: 'pt' });
    expect(Buffer.from(withMeta).toString('latin1', 8)).toBe('{"__metadata__":{"framework":"pt"}}     ');
    expect(withMeta[0]).toBe(40);
  });

  it('pads the header with spaces so data starts 8-byte aligned', () => {
    for (let len = 1; len < 20; len++) {
      const out = encodeSafetensors({
        ['x'.repeat(len)]: { dtype: 'U8', shape: [3], data: new Uint8Array([1, 2, 3]) },
      });
      const n = Number(Buffer.from(out).readBigUInt64LE(0));
      expect((8 + n) % 8).toBe(0);
      expect(out[8]).toBe(0x7b);
      const json = Buffer.from(out.subarray(8, 8 + n)).toString();
      expect(json.trimEnd().endsWith('}')).toBe(true);
      expect(/^ *$/.test(json.slice(json.trimEnd().length))).toBe(true);
    }
  });

  it('round-trips every dtype, shape kind, input form and odd names', () => {
    const r = rng(7);
    const tensors: NamedTensorInput[] = [];
    for (const [i, dtype] of SAFETENSORS_DTYPES.entries()) {
      const bits = SAFETENSORS_DTYPE_BITS[dtype];
      // Sub-byte dtypes need element counts that fill whole bytes.
      const shape = bits < 8 ? [2, 4] : [1 + Math.floor(r() * 4), 1 + Math.floor(r() * 3)];
      const bytes = (shape[0]! * shape[1]! * bits) / 8;
      const data = new Uint8Array(bytes).map(() => Math.floor(r() * 256));
      tensors.push({ name: `t${i}.${dtype}`, dtype, shape, data });
    }
    tensors.push({ name: 'scalar', dtype: 'F64', shape: [], data: new Float64Array([Math.PI]) });
    tensors.push({ name: 'empty', dtype: 'F32', shape: [0, 5], data: new Uint8Array(0) });
    tensors.push({ name: '__proto__', dtype: 'I8', shape: [1], data: new Int8Array([-1]) });
    tensors.push({
      name: 'ünïcødé "quoted" \\ \u2028 \ud800',
      dtype: 'U8',
      shape: [1],
      data: new Uint8Array([9]),
    });
    const metadata = { format: 'pt', __proto__x: 'y', é: '\n"', empty: '' };
    const viaArray = encodeSafetensors(tensors, metadata);
    const viaMap = encodeSafetensors(new Map(tensors.map((t) => [t.name, t])), metadata);
    expect(viaMap).toEqual(viaArray);
    const decoded = decodeSafetensors(viaArray);
    expect(decoded.metadata).toEqual(metadata);
    expect([...decoded.tensors.keys()]).toEqual(tensors.map((t) => t.name));
    for (const t of tensors) {
      const d = decoded.tensors.get(t.name)!;
      expect(d.dtype).toBe(t.dtype);
      expect(d.shape).toEqual(t.shape);
      expect(d.data).toEqual(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
      expect(d.data.byteOffset).toBe(0); // copies by default
    }
    const views = decodeSafetensors(viaArray.buffer, { copy: false });
    const v = views.tensors.get('scalar')!;
    expect(v.data.buffer).toBe(viaArray.buffer);
    expect(new Float64Array(v.data.slice().buffer)[0]).toBe(Math.PI);
  });

  it('refuses invalid tensors with typed errors', () => {
    const ok = { dtype: 'F32' as const, shape: [2], data: f32Bytes([1, 2]) };
    const cases: [unknown, string][] = [
      [[{ ...ok, name: 'a', data: new Uint8Array(7) }], 'SIZE_MISMATCH'],
      [[{ ...ok, name: 'a', shape: [2, 1e300] }], 'BAD_SHAPE'],
      [[{ ...ok, name: 'a', shape: [2 ** 40, 2 ** 40] }], 'SIZE_MISMATCH'],
      [[{ ...ok, name: 'a', shape: [-2] }], 'BAD_SHAPE'],
      [[{ ...ok, name: 'a', shape: [1.5] }], 'BAD_SHAPE'],
      [[{ ...ok, name: 'a', shape: 2 }], 'BAD_SHAPE'],
      [[{ ...ok, name: 'a', dtype: 'f32' }], 'BAD_DTYPE'],
      [[{ ...ok, name: 'a', data: [1, 2] }], 'BAD_TENSOR'],
      [[{ ...ok, name: '__metadata__' }], 'BAD_NAME'],
      [[{ ...ok }], 'BAD_NAME'],
      [
        [
          { ...ok, name: 'a' },
          { ...ok, name: 'a' },
        ],
        'DUPLICATE',
      ],
      [[{ name: 'a', dtype: 'F4', shape: [3], data: new Uint8Array(2) }], 'SIZE_MISMATCH'],
      [null, 'BAD_TENSOR'],
    ];
    for (const [input, code] of cases) {
      let caught: unknown;
      try {
        encodeSafetensors(input as NamedTensorInput[]);
      } catch (err) {
        caught = err;
      }
      expect(caught, JSON.stringify(input)).toBeInstanceOf(SafetensorsError);
      expect((caught as SafetensorsError).code).toBe(code);
    }
    expect(() => encodeSafetensors([], { a: 1 } as unknown as Record<string, string>)).toThrow(
      /BAD_METADATA/,
    );
    expect(() => encodeSafetensors([{ ...ok, name: 'named' }], { a: 1 } as never)).toThrow(SafetensorsError);
    try {
      encodeSafetensors([{ ...ok, name: 'w.0', data: new Uint8Array(3) }]);
    } catch (err) {
      expect((err as Error).message).toContain('tensor "w.0"');
      expect((err as Error).message).toContain('<memory>');
    }
  });
});

describe('dtype mapping', () => {
  it('maps to mnemo dtypes and back', () => {
    expect(toMnemoDType('F32')).toBe('f32');
    expect(toMnemoDType('BF16')).toBe('bf16');
    expect(toMnemoDType('U8')).toBe('u8');
    expect(toMnemoDType('I64')).toBeUndefined();
    expect(toMnemoDType('BOOL')).toBeUndefined();
    expect(toMnemoDType('nope')).toBeUndefined();
    expect(toMnemoDType('toString')).toBeUndefined();
    for (const d of ['f32', 'f16', 'bf16', 'u32', 'i32', 'u8'] as const)
      expect(toMnemoDType(fromMnemoDType(d))).toBe(d);
  });
});

describe('writeSafetensors', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mnemo-st-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('writes a file openSafetensors reads back', async () => {
    const path = join(dir, 'out.safetensors');
    const w = randomF32(12, 3);
    await writeSafetensors(
      path,
      {
        'w.weight': { dtype: 'F32', shape: [3, 4], data: w },
        'b.bias': { dtype: 'BF16', shape: [3], data: new Uint16Array([1, 2, 3]) },
        ids: { dtype: 'U8', shape: [5], data: new Uint8Array([1, 2, 3, 4, 5]) },
      },
      { kind: 'test' },
    );
    const bytes = await readFile(path);
    const decoded = decodeSafetensors(bytes);
    expect(bytes.equals(encodeSafetensors(decoded.tensors, decoded.metadata))).toBe(true);
    const f = await openSafetensors(path);
    try {
      expect(f.metadata).toEqual({ kind: 'test' });
      expect(f.names()).toEqual(['w.weight', 'b.bias', 'ids']);
      expect(new Float32Array((await f.read('w.weight')).buffer)).toEqual(w);
      expect(new Uint16Array(f.readSync('b.bias').buffer)).toEqual(new Uint16Array([1, 2, 3]));
      expect((8 + f.headerLength) % 8).toBe(0);
      expect(f.info('w.weight').byteOffset).toBe(8 + f.headerLength);
    } finally {
      await f.close();
    }
    expect(await readdir(dir)).toEqual(['out.safetensors']);
  });

  it('refuses invalid input before touching the disk, leaving an existing file intact', async () => {
    const path = join(dir, 'model.safetensors');
    await writeSafetensors(path, [{ name: 'a', dtype: 'F32', shape: [2], data: f32Bytes([1, 2]) }]);
    const before = await readFile(path);
    await expect(
      writeSafetensors(path, [
        { name: 'a', dtype: 'F32', shape: [2], data: f32Bytes([3, 4]) },
        { name: 'b', dtype: 'F32', shape: [3], data: f32Bytes([1, 2]) },
      ]),
    ).rejects.toMatchObject({ name: 'SafetensorsError', code: 'SIZE_MISMATCH', tensor: 'b', file: path });
    expect((await readFile(path)).equals(before)).toBe(true);
    expect(await readdir(dir)).toEqual(['model.safetensors']);
  });

  it('removes the temporary file when the rename fails', async () => {
    // While the data is written, a non-empty folder takes the destination's place, so the final rename fails.
    const path = join(dir, 'busy');
    const err = await writeSafetensorsStreaming(path, [
      {
        name: 'a',
        dtype: 'U8',
        shape: [1],
        data: async () => {
          await mkdir(path);
          await writeFile(join(path, 'keep'), 'x');
          return new Uint8Array(1);
        },
      },
    ]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SafetensorsError);
    expect((err as SafetensorsError).code).toBe('IO');
    expect((err as Error).message).toContain('renaming');
    expect(await readdir(dir)).toEqual(['busy']);
    expect(await readdir(path)).toEqual(['keep']);
  });

  it('refuses a folder, FIFO or device as destination before writing anything', async () => {
    const one = [{ name: 'a', dtype: 'U8' as const, shape: [1], data: new Uint8Array(1) }];
    const path = join(dir, 'busy');
    await mkdir(path);
    await expect(writeSafetensors(path, one)).rejects.toMatchObject({
      name: 'SafetensorsError',
      code: 'IO',
      message: `${path}: is a directory, not a regular file: refusing to replace it (nothing was written) [IO]`,
    });
    const fifo = join(dir, 'fifo');
    execFileSync('mkfifo', [fifo]);
    await expect(writeSafetensors(fifo, one)).rejects.toMatchObject({ code: 'IO' });
    expect((await lstat(fifo)).isFIFO()).toBe(true);
    if (process.getuid?.() === 0) {
      const dev = join(dir, 'null');
      execFileSync('mknod', [dev, 'c', '1', '3']); // a /dev/null of our own, in the test's folder
      await expect(writeSafetensors(dev, one)).rejects.toMatchObject({
        code: 'IO',
        message: expect.stringContaining('is a character device, not a regular file'),
      });
      expect((await lstat(dev)).isCharacterDevice()).toBe(true);
    }
    expect((await readdir(dir)).filter((n) => n.includes('.tmp-'))).toEqual([]);
  });

  it('opening a FIFO or a device as a safetensors file fails at once instead of blocking', async () => {
    const fifo = join(dir, 'model.safetensors');
    execFileSync('mkfifo', [fifo]);
    await expect(openSafetensors(fifo)).rejects.toMatchObject({
      code: 'IO',
      message: `${fifo}: is a named pipe (FIFO), not a regular file [IO]`,
    });
    if (process.getuid?.() === 0) {
      const dev = join(dir, 'zero');
      execFileSync('mknod', [dev, 'c', '1', '5']); // like /dev/zero: endless zeros if it were read
      await expect(openSafetensors(dev)).rejects.toMatchObject({
        message: `${dev}: is a character device, not a regular file [IO]`,
      });
    }
  });

  it('writes through a symbolic link and keeps the mode of the file it replaces', async () => {
    const target = join(dir, 'real.safetensors');
    const link = join(dir, 'link.safetensors');
    await writeSafetensors(target, [{ name: 'a', dtype: 'U8', shape: [1], data: new Uint8Array([1]) }]);
    await chmod(target, 0o640);
    await symlink(target, link);
    await writeSafetensors(link, [{ name: 'b', dtype: 'U8', shape: [2], data: new Uint8Array([2, 3]) }]);
    expect((await lstat(link)).isSymbolicLink()).toBe(true);
    const f = await openSafetensors(target);
    expect(f.names()).toEqual(['b']);
    await f.close();
    expect((await stat(target)).mode & 0o777).toBe(0o640);
    const fresh = join(dir, 'fresh.safetensors');
    await writeSafetensors(fresh, []);
    expect((await stat(fresh)).mode & 0o777).toBe(0o600 & ~process.umask());
  });

  it('reports a missing folder as IO without leaving anything behind', async () => {
    await expect(
      writeSafetensors(join(dir, 'no', 'such', 'x.safetensors'), [
        { name: 'a', dtype: 'U8', shape: [1], data: new Uint8Array(1) },
      ]),
    ).rejects.toMatchObject({ code: 'IO' });
    expect(await readdir(dir)).toEqual([]);
  });

  it('overwrites an existing file atomically', async () => {
    const path = join(dir, 'm.safetensors');
    await writeSafetensors(path, [{ name: 'a', dtype: 'U8', shape: [1], data: new Uint8Array([1]) }]);
    await writeSafetensors(
      path,
      [{ name: 'b', dtype: 'U8', shape: [2], data: new Uint8Array([2, 3]) }],
      undefined,
      {
        fsync: false,
      },
    );
    const f = await openSafetensors(path);
    expect(f.names()).toEqual(['b']);
    await f.close();
    expect(await readdir(dir)).toEqual(['m.safetensors']);
  });
});

describe('writeSafetensorsStreaming', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'st-stream-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('writes the same bytes as encodeSafetensors, asking for each tensor once, in order', async () => {
    const tensors: NamedTensorInput[] = [
      { name: 'b', dtype: 'F32', shape: [3, 5], data: randomF32(15, 1) },
      { name: 'a', dtype: 'U8', shape: [7], data: new Uint8Array([1, 2, 3, 4, 5, 6, 7]) },
      { name: 'e', dtype: 'F16', shape: [0, 4], data: new Uint8Array(0) },
    ];
    const asked: string[] = [];
    const path = join(dir, 'x.safetensors');
    await writeSafetensorsStreaming(
      path,
      tensors.map((t) => ({
        name: t.name,
        dtype: t.dtype,
        shape: t.shape,
        data: async () => {
          asked.push(t.name);
          return t.data;
        },
      })),
      { k: 'v' },
    );
    expect(asked).toEqual(['b', 'a', 'e']);
    expect(new Uint8Array(await readFile(path))).toEqual(encodeSafetensors(tensors, { k: 'v' }));
  });

  it('fails on data of the wrong length, leaving no file and an existing one untouched', async () => {
    const path = join(dir, 'x.safetensors');
    await writeFile(path, 'old');
    const err = await writeSafetensorsStreaming(path, [
      { name: 'a', dtype: 'F32', shape: [2], data: () => new Float32Array(3) },
    ]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SafetensorsError);
    expect((err as SafetensorsError).code).toBe('SIZE_MISMATCH');
    expect(await readFile(path, 'utf8')).toBe('old');
    expect(await readdir(dir)).toEqual(['x.safetensors']);
  });

  it('checks names, dtypes and shapes before writing anything', async () => {
    const path = join(dir, 'x.safetensors');
    const err = await writeSafetensorsStreaming(path, [
      { name: 'a', dtype: 'F32', shape: [2], data: () => new Float32Array(2) },
      { name: 'a', dtype: 'F32', shape: [2], data: () => new Float32Array(2) },
    ]).catch((e: unknown) => e);
    expect((err as SafetensorsError).code).toBe('DUPLICATE');
    expect(await readdir(dir)).toEqual([]);
  });
});
