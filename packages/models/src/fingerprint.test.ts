import { execFileSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openCheckpoint } from '@mnemo/safetensors';
import { type Backend, createBackend } from '@mnemo/tensor';
import { syntheticPreset } from '@mnemo/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ParallelWeightHasher, sharedBytes, WeightDigest } from './fingerprint';
import { loadModel } from './load';

const tmp = mkdtempSync(join(tmpdir(), 'mnemo-fingerprint-'));
let backend: Backend;
beforeAll(async () => {
  backend = await createBackend({ backend: 'js' });
});
afterAll(() => {
  backend?.dispose();
  rmSync(tmp, { recursive: true, force: true });
});

/** A copy of a preset whose tensor `name` has byte `at` (within the tensor) changed. */
async function withChangedByte(preset: string, name: string, at: number): Promise<string> {
  const dir = join(tmp, `${name}-${at}`);
  cpSync(preset, dir, { recursive: true });
  const file = join(dir, 'model.safetensors');
  const ck = await openCheckpoint(file);
  const info = ck.info(name);
  await ck.close();
  expect(at).toBeLessThan(info.byteLength);
  const bytes = readFileSync(file);
  bytes[info.byteOffset + at]! ^= 0x01; // the lowest mantissa bit of one f32 weight
  writeFileSync(file, bytes);
  return dir;
}

describe('model fingerprint', () => {
  const preset = syntheticPreset('llama-f32');

  it('changes when any byte of any tensor changes, also where the old 16 x 4 KiB samples never looked', async () => {
    const base = await loadModel(preset, { backend });
    base.model.free();
    // The embedding (264 x 64 f32 = 67,584 bytes) was sampled as 16 windows of 4,096 bytes, 4,232 bytes apart: byte
    // 4,106 lies between the first two windows. Also the last byte of a layer's weight and a norm weight's first.
    for (const [name, at] of [
      ['model.embed_tokens.weight', 4106],
      ['model.layers.1.mlp.down_proj.weight', 64 * 172 * 4 - 1],
      ['model.norm.weight', 0],
    ] as const) {
      const changed = await loadModel(await withChangedByte(preset, name, at), { backend });
      changed.model.free();
      expect(changed.fingerprint, `${name} byte ${at}`).not.toBe(base.fingerprint);
    }
    // and it is a pure function of the bytes: the same files give the same fingerprint
    const again = await loadModel(preset, { backend });
    again.model.free();
    expect(again.fingerprint).toBe(base.fingerprint);
  });

  it('hashing on the worker thread gives exactly the digests of hashing in place', async () => {
    const ck = await openCheckpoint(preset);
    const inPlace = new WeightDigest();
    const parallel = new WeightDigest();
    const hasher = new ParallelWeightHasher(parallel);
    for (const name of ck.names()) {
      const info = ck.info(name);
      const bytes = await ck.read(name);
      inPlace.add(name, info.dtype, info.shape, bytes);
      const shared = sharedBytes(info.byteLength);
      await ck.readInto(name, shared);
      await hasher.add(name, info.dtype, info.shape, shared);
    }
    await ck.close();
    await hasher.finish();
    expect(parallel.size).toBe(inPlace.size);
    expect(parallel.digest()).toBe(inPlace.digest());
  });

  it.skipIf(process.platform === 'win32')(
    'a FIFO as config.json or model.safetensors is refused at once instead of hanging',
    async () => {
      for (const file of ['config.json', 'model.safetensors']) {
        const dir = join(tmp, `fifo-${file}`);
        cpSync(preset, dir, { recursive: true });
        unlinkSync(join(dir, file));
        execFileSync('mkfifo', [join(dir, file)]);
        await expect(loadModel(dir, { backend })).rejects.toThrow(
          `${join(dir, file)}: is a named pipe (FIFO), not a regular file`,
        );
      }
    },
  );
});
