import { execFileSync } from 'node:child_process';
import {
  closeSync,
  cpSync,
  existsSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  unlinkSync,
  utimesSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openCheckpoint } from '@mnemo/safetensors';
import { type Backend, createBackend } from '@mnemo/tensor';
import { syntheticPreset } from '@mnemo/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DigestCache } from './digest-cache';
import { WeightDigest } from './fingerprint';
import { loadModel } from './load';
import { digestingSource } from './weights';

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

  it('a remembered digest is used only for the very file it was computed from, unchanged', async () => {
    const dir = join(tmp, 'remembered');
    cpSync(preset, dir, { recursive: true });
    const weights = join(dir, 'model.safetensors');
    const past = new Date(Date.now() - 60_000);
    utimesSync(weights, past, past); // settled: modified more than 2 s ago
    const cacheDir = join(tmp, 'digests');
    const first = await loadModel(dir, { backend, digestCache: cacheDir });
    first.model.free();
    const stored = readdirSync(cacheDir);
    expect(stored).toHaveLength(1);
    const entry = JSON.parse(readFileSync(join(cacheDir, stored[0]!), 'utf8'));
    expect(entry).toMatchObject({ format: 'mnemo-weight-digests', version: 1, file: weights });
    expect(Object.keys(entry.tensors)).toHaveLength(first.model.numLayers * 9 + 3);
    // the same file again: the same fingerprint, whether remembered or hashed
    const again = await loadModel(dir, { backend, digestCache: cacheDir });
    again.model.free();
    expect(again.fingerprint).toBe(first.fingerprint);
    const hashed = await loadModel(dir, { backend, digestCache: false });
    hashed.model.free();
    expect(hashed.fingerprint).toBe(first.fingerprint);
    // the remembered digests are really used: a (forged) entry for the unchanged file changes the fingerprint
    const forged = { ...entry, tensors: { ...entry.tensors } };
    const key = Object.keys(forged.tensors).find((k) => k.startsWith('model.norm.weight\0'))!;
    forged.tensors[key] = '0'.repeat(64);
    writeFileSync(join(cacheDir, stored[0]!), JSON.stringify(forged));
    const fromForged = await loadModel(dir, { backend, digestCache: cacheDir });
    fromForged.model.free();
    expect(fromForged.fingerprint).not.toBe(first.fingerprint);
    // … but never once the file was written to: a byte changed in place, size and mtime restored, changes ctime
    writeFileSync(join(cacheDir, stored[0]!), JSON.stringify(entry));
    const bytes = readFileSync(weights);
    const ck = await openCheckpoint(weights);
    const at = ck.info('model.embed_tokens.weight').byteOffset + 4106;
    await ck.close();
    bytes[at]! ^= 0x01;
    const fd = openSync(weights, 'r+');
    writeSync(fd, bytes, at, 1, at);
    closeSync(fd);
    utimesSync(weights, past, past);
    const changed = await loadModel(dir, { backend, digestCache: cacheDir });
    changed.model.free();
    expect(changed.fingerprint).not.toBe(first.fingerprint);
    const truth = await loadModel(dir, { backend, digestCache: false });
    truth.model.free();
    expect(changed.fingerprint).toBe(truth.fingerprint);
  });

  it('ignores a damaged entry, and does not remember a file modified moments ago', async () => {
    const dir = join(tmp, 'fresh');
    cpSync(preset, dir, { recursive: true }); // copied now: its mtime is fresh
    const cacheDir = join(tmp, 'digests-fresh');
    const a = await loadModel(dir, { backend, digestCache: cacheDir });
    a.model.free();
    expect(existsSync(cacheDir) ? readdirSync(cacheDir) : []).toEqual([]);
    const past = new Date(Date.now() - 60_000);
    utimesSync(join(dir, 'model.safetensors'), past, past);
    const b = await loadModel(dir, { backend, digestCache: cacheDir });
    b.model.free();
    const [name] = readdirSync(cacheDir);
    writeFileSync(join(cacheDir, name!), '{"format": "mnemo-weight-digests", "tensors": [1, 2');
    const c = await loadModel(dir, { backend, digestCache: cacheDir });
    c.model.free();
    expect(c.fingerprint).toBe(a.fingerprint);
    expect(b.fingerprint).toBe(a.fingerprint);
  });

  it('refuses a load during which a file whose remembered digests were used changed', async () => {
    const id = (ctime: string) => ({ dev: '1', ino: '2', size: '3', mtimeNs: '4', ctimeNs: ctime });
    let ctime = '5';
    const source = {
      names: () => ['t'],
      has: () => true,
      info: () => ({ dtype: 'U8', shape: [1], file: '/f', byteOffset: 8, byteLength: 1 }),
      read: async () => {
        ctime = '6'; // written to while being read
        return new Uint8Array([7]);
      },
      identity: async () => id(ctime),
    };
    const cache = new DigestCache(join(tmp, 'unused'));
    await cache.record('/f', id('5'), DigestCache.tensorKey('t', 'U8', [1], 8, 1), 'a'.repeat(64));
    const s = digestingSource(source, new WeightDigest(), cache);
    await s.read('t');
    await expect(s.finish()).rejects.toThrow('/f changed while the model was being loaded; load it again');
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
