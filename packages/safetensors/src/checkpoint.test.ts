import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { INDEX_FILE, openCheckpoint, SafetensorsError, writeSafetensors } from './index';

const u8 = (name: string, ...values: number[]) => ({
  name,
  dtype: 'U8' as const,
  shape: [values.length],
  data: new Uint8Array(values),
});

async function expectError(
  p: Promise<unknown>,
  code: string,
  ...inMessage: string[]
): Promise<SafetensorsError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(SafetensorsError);
  expect((err as SafetensorsError).code).toBe(code);
  for (const s of inMessage) expect((err as Error).message).toContain(s);
  return err as SafetensorsError;
}

describe('openCheckpoint', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mnemo-ckpt-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const index = (weightMap: Record<string, string> | string | Uint8Array) =>
    writeFile(
      join(dir, INDEX_FILE),
      typeof weightMap === 'string' || weightMap instanceof Uint8Array
        ? weightMap
        : JSON.stringify({ metadata: { total_size: 3 }, weight_map: weightMap }),
    );

  async function twoShards() {
    await writeSafetensors(join(dir, 's1.safetensors'), [u8('a', 1), u8('b', 2, 3)], { shard: '1' });
    await writeSafetensors(join(dir, 's2.safetensors'), [u8('c', 4)], { shard: '2' });
  }

  it('reads a sharded checkpoint through its index', async () => {
    await twoShards();
    await writeSafetensors(join(dir, 'consolidated.safetensors'), [u8('other', 9)]); // ignored: not in the index
    await index({ c: 's2.safetensors', a: 's1.safetensors', b: 's1.safetensors' });
    const ck = await openCheckpoint(dir);
    expect(ck.names()).toEqual(['c', 'a', 'b']);
    expect(ck.files).toEqual([join(dir, 's1.safetensors'), join(dir, 's2.safetensors')]);
    expect(ck.metadata).toEqual({ shard: '1' });
    expect(ck.info('c')).toMatchObject({
      dtype: 'U8',
      shape: [1],
      file: join(dir, 's2.safetensors'),
      byteLength: 1,
    });
    expect([...(await ck.read('b'))]).toEqual([2, 3]);
    expect([...ck.readSync('c')]).toEqual([4]);
    expect(ck.has('other')).toBe(false);
    await expectError(ck.read('other'), 'NOT_FOUND', '"other"', dir);
    expect(() => ck.info('zzz')).toThrow(SafetensorsError);
    await ck.close();
    await expectError(ck.read('a'), 'CLOSED');
  });

  it('reads every *.safetensors file without an index, and a single file path', async () => {
    await twoShards();
    const ck = await openCheckpoint(dir);
    expect(ck.indexFile).toBeNull();
    expect(ck.names()).toEqual(['a', 'b', 'c']);
    await ck.close();
    const one = await openCheckpoint(join(dir, 's2.safetensors'));
    expect(one.names()).toEqual(['c']);
    await one.close();
  });

  it('names a shard the index lists but that does not exist', async () => {
    await twoShards();
    await index({ a: 's1.safetensors', b: 's1.safetensors', c: 's2.safetensors', d: 's3.safetensors' });
    await expectError(openCheckpoint(dir), 'MISSING_SHARD', INDEX_FILE, 's3.safetensors');
  });

  it('names a mapped tensor missing from its shard', async () => {
    await twoShards();
    await index({ a: 's1.safetensors', b: 's1.safetensors', c: 's1.safetensors' });
    const err = await expectError(openCheckpoint(dir), 'MISSING_TENSOR', 's1.safetensors', '"c"');
    expect(err.tensor).toBe('c');
  });

  it('reports shard tensors the index does not map', async () => {
    await twoShards();
    await index({ a: 's1.safetensors', c: 's2.safetensors' });
    await expectError(openCheckpoint(dir), 'UNMAPPED_TENSOR', 's1.safetensors', '"b"');
    const lax = await openCheckpoint(dir, { strict: false });
    expect(lax.names()).toEqual(['a', 'c']);
    expect(lax.unmapped).toEqual([{ name: 'b', file: join(dir, 's1.safetensors') }]);
    await lax.close();
  });

  it('reports a tensor held by two shards', async () => {
    await twoShards();
    await writeSafetensors(join(dir, 's2.safetensors'), [u8('c', 4), u8('a', 5)]);
    await index({ a: 's1.safetensors', b: 's1.safetensors', c: 's2.safetensors' });
    await expectError(openCheckpoint(dir), 'DUPLICATE', 's2.safetensors', '"a"');
    await rm(join(dir, INDEX_FILE));
    await expectError(openCheckpoint(dir), 'DUPLICATE', 's1.safetensors', 's2.safetensors', '"a"');
  });

  it('refuses malformed indexes', async () => {
    await twoShards();
    await index('{"weight_map": {"a": "s1.safetensors", "a": "s2.safetensors"}}');
    await expectError(openCheckpoint(dir), 'DUPLICATE', '"a"', INDEX_FILE);
    for (const bad of [
      '{"weight_map": {"a": "../s1.safetensors"}}',
      '{"weight_map": {"a": "/etc/passwd"}}',
      '{"weight_map": {"a": 3}}',
      '{"weight_map": {}}',
      '{"weight_map": []}',
      '{"metadata": {}}',
      '[1, 2]',
      '{"weight_map": {"a": "s1.safetensors"}',
      new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]), // not UTF-8
    ]) {
      await index(bad);
      await expectError(openCheckpoint(dir), 'BAD_INDEX', INDEX_FILE);
    }
  });

  it('propagates a corrupt shard error naming the shard', async () => {
    await twoShards();
    await writeFile(join(dir, 's2.safetensors'), new Uint8Array([200, 0, 0, 0, 0, 0, 0, 0, 123, 125]));
    await index({ a: 's1.safetensors', b: 's1.safetensors', c: 's2.safetensors' });
    await expectError(openCheckpoint(dir), 'TRUNCATED', 's2.safetensors');
  });

  it('reports an empty folder and a missing path', async () => {
    await expectError(openCheckpoint(dir), 'NOT_FOUND', dir);
    await expectError(openCheckpoint(join(dir, 'nope')), 'IO', 'nope');
    await mkdir(join(dir, 'x.safetensors'));
    await expectError(openCheckpoint(dir), 'IO', 'x.safetensors');
  });
});
