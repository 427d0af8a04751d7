import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  decodeGguf,
  encodeGguf,
  type GgufError,
  type GgufValue,
  GgufValueType,
  ggmlByteLength,
  ggmlTypeByName,
  openGguf,
  GgufValues as V,
} from './index';

const bytes = (n: number, seed: number) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff);

/** Metadata of every value type, nested arrays and unicode included. */
const METADATA: [string, GgufValue][] = [
  ['general.architecture', V.string('llama')],
  ['u8', V.u8(250)],
  ['i8', V.i8(-7)],
  ['u16', V.u16(65535)],
  ['i16', V.i16(-32768)],
  ['u32', V.u32(4294967295)],
  ['i32', V.i32(-2147483648)],
  ['f32', V.f32(1.5)],
  ['f64', V.f64(Math.PI)],
  ['u64', V.u64(2n ** 64n - 1n)],
  ['i64', V.i64(-(2n ** 63n))],
  ['safe.u64', V.u64(123456789012345)],
  ['yes', V.bool(true)],
  ['no', V.bool(false)],
  ['unicode ✓ key', V.string('héllo 🙂 \u0000 end')],
  ['empty', V.string('')],
  ['strings', V.strings(['a', '', 'Ġthe', '<0x0A>', '▁', '日本'])],
  ['floats', V.f32s([0, -1.25, 3e-8])],
  ['ints', V.i32s([1, -2, 3])],
  ['u64s', V.array({ itemType: GgufValueType.UINT64, items: new BigUint64Array([1n, 2n ** 60n]) })],
  ['bools', V.array({ itemType: GgufValueType.BOOL, items: [true, false, true] })],
  ['empty.array', V.array({ itemType: GgufValueType.FLOAT64, items: new Float64Array(0) })],
  [
    'nested',
    V.array({
      itemType: GgufValueType.ARRAY,
      items: [
        { itemType: GgufValueType.INT16, items: new Int16Array([1, -1]) },
        { itemType: GgufValueType.STRING, items: ['x'] },
        { itemType: GgufValueType.ARRAY, items: [] },
      ],
    }),
  ],
];

const T = (name: string, type: string, dims: number[], seed = 1) => {
  const id = ggmlTypeByName(type)!.id;
  return { name, type: id, dims, data: bytes(ggmlByteLength(id, dims), seed) };
};
const TENSORS = [
  T('token_embd.weight', 'Q4_K', [256, 3]),
  T('blk.0.attn_norm.weight', 'F32', [7], 2),
  T('a.f16', 'F16', [5, 2, 3], 3),
  T('q8', 'Q8_0', [64, 2], 4),
  T('scalar', 'F32', [], 5),
  T('empty', 'Q6_K', [256, 0], 6),
  T('bf16', 'BF16', [3], 7),
];

describe('GGUF reader', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mnemo-gguf-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  for (const [alignment, version] of [
    [32, 3],
    [1, 3],
    [64, 2],
  ] as const) {
    it(`round-trips every value type and tensor layout (alignment ${alignment}, version ${version})`, async () => {
      const file = encodeGguf(METADATA, TENSORS, { alignment, version });
      const path = join(dir, `rt-${alignment}.gguf`);
      await writeFile(path, file);
      const f = await openGguf(path);
      const d = decodeGguf(file);
      try {
        for (const g of [f, d]) {
          expect(g.version).toBe(version);
          expect(g.alignment).toBe(alignment);
          expect(g.dataOffset % alignment).toBe(0);
          expect(g.headerSha256).toMatch(/^[0-9a-f]{64}$/);
          const keys = METADATA.map(([k]) => k);
          if (alignment !== 32) keys.push('general.alignment');
          expect(g.metadata.keys()).toEqual(keys);
          for (const [k, v] of METADATA) expect(g.metadata.get(k), k).toEqual(v);
          expect(g.names()).toEqual(TENSORS.map((t) => t.name));
          for (const t of TENSORS) {
            const info = g.info(t.name);
            expect(info.dims).toEqual(t.dims);
            expect(info.shape).toEqual([...t.dims].reverse());
            expect(info.byteLength).toBe(t.data.byteLength);
            expect(info.byteOffset % alignment).toBe(0);
          }
        }
        for (const t of TENSORS) {
          expect(d.data(t.name)).toEqual(t.data);
          const got = await f.read(t.name);
          expect(got).toEqual(t.data);
          expect(got.byteOffset).toBe(0);
          const into = new Uint8Array(t.data.byteLength);
          await f.readInto(t.name, into);
          expect(into).toEqual(t.data);
        }
        expect(f.headerSha256).toBe(d.headerSha256);
        expect(
          decodeGguf(encodeGguf([...METADATA, ['x', V.u8(1)]], TENSORS, { alignment, version })).headerSha256,
        ).not.toBe(d.headerSha256);
        expect(f.info('token_embd.weight').typeName).toBe('Q4_K');
        expect(f.info('scalar').elements).toBe(1);
        expect(f.info('empty').byteLength).toBe(0);
      } finally {
        await f.close();
      }
    });
  }

  it('has typed metadata readers that name the key on a type mismatch', () => {
    const m = decodeGguf(encodeGguf(METADATA, []), 'm.gguf').metadata;
    expect(m.string('general.architecture')).toBe('llama');
    expect(m.int('u32')).toBe(4294967295);
    expect(m.int('i8')).toBe(-7);
    expect(m.int('safe.u64')).toBe(123456789012345);
    expect(m.number('f64')).toBe(Math.PI);
    expect(m.number('u16')).toBe(65535);
    expect(m.bool('yes')).toBe(true);
    expect(m.strings('strings')).toEqual(['a', '', 'Ġthe', '<0x0A>', '▁', '日本']);
    expect(Array.from(m.numbers('floats')!)).toEqual([0, -1.25, Math.fround(3e-8)]);
    expect(m.int('missing', 5)).toBe(5);
    expect(m.strings('missing')).toBeUndefined();
    const err = (fn: () => unknown) => {
      try {
        fn();
      } catch (e) {
        return e as GgufError;
      }
      throw new Error('no error');
    };
    expect(err(() => m.int('u64')).code).toBe('TOO_LARGE');
    expect(err(() => m.string('u8')).message).toMatch(/m\.gguf: key "u8": must be a string, got a uint8/);
    expect(err(() => m.int('f32')).code).toBe('BAD_VALUE');
    expect(err(() => m.strings('floats')).code).toBe('BAD_VALUE');
    expect(err(() => m.string('missing')).code).toBe('NOT_FOUND');
  });

  it('reads a header longer than its first read (a 3 MB vocabulary)', async () => {
    const vocab = Array.from({ length: 200_000 }, (_, i) => `token-${i}-${'x'.repeat(i % 7)}`);
    const file = encodeGguf([['tokenizer.ggml.tokens', V.strings(vocab)]], [T('w', 'Q8_0', [32, 4])]);
    expect(file.byteLength).toBeGreaterThan(3 * 2 ** 20);
    const path = join(dir, 'long.gguf');
    await writeFile(path, file);
    const f = await openGguf(path);
    expect(f.metadata.strings('tokenizer.ggml.tokens')).toEqual(vocab);
    expect(await f.read('w')).toEqual(TENSORS[3]!.data.subarray(0, 136).map((_, i) => (i * 31 + 1) & 0xff));
    await f.close();
  });

  it('refuses use after close, unknown tensors and bad readInto targets', async () => {
    const path = join(dir, 'c.gguf');
    await writeFile(path, encodeGguf(METADATA, TENSORS));
    const f = await openGguf(path);
    await expect(f.read('nope')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(f.readInto('q8', new Uint8Array(3))).rejects.toThrow(RangeError);
    await f.close();
    await f.close();
    expect(f.closed).toBe(true);
    await expect(f.read('q8')).rejects.toMatchObject({ code: 'CLOSED' });
    await expect(openGguf(join(dir, 'missing.gguf'))).rejects.toMatchObject({ code: 'IO' });
    await expect(openGguf(dir)).rejects.toMatchObject({ code: 'IO' });
  });
});
