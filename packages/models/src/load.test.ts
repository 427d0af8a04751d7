import { closeSync, cpSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openCheckpoint } from '@mnemo/safetensors';
import { syntheticGguf, syntheticPreset } from '@mnemo/test-utils';
import { afterAll, describe, expect, it } from 'vitest';
import { tensorDigest, WeightDigest } from './fingerprint';
import { loadModel } from './load';
import { digestingSource } from './weights';

// The native backend reads weights straight from the files (uploadFromFile, uploadQuantizedFromFile,
// uploadGgmlFromFile), the WASM backend through JavaScript buffers: the model's fingerprint (which prompt caches
// record) must not depend on that, and must still cover every byte (the outputs are checked against the float64
// references on both backends by @mnemo/lm).
const tmp = mkdtempSync(join(tmpdir(), 'mnemo-load-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('loading through file ranges', () => {
  for (const preset of ['llama-q4g32', 'llama3-f16-tied', 'llama-bf16-headdim', 'gemma3-q4g32'] as const)
    it(`${preset}: the same fingerprint and weights on native (from the file) as on wasm (from buffers)`, async () => {
      const dir = syntheticPreset(preset);
      for (const digestCache of [false, join(tmp, `cache-${preset}`)] as const) {
        const native = await loadModel(dir, { backendName: 'native', digestCache });
        const wasm = await loadModel(dir, { backendName: 'wasm', digestCache: false });
        try {
          expect(native.backend.name).toBe('native');
          expect(native.fingerprint).toBe(wasm.fingerprint);
        } finally {
          native.backend.dispose();
          wasm.backend.dispose();
        }
      }
    });

  it('GGUF files (GGML blocks decoded straight from the file): the same fingerprint on native as on wasm', async () => {
    for (const name of ['llama-q4_k_m.gguf', 'qwen2-q8_0.gguf']) {
      const file = syntheticGguf(name);
      const native = await loadModel(file, { backendName: 'native', digestCache: false });
      const wasm = await loadModel(file, { backendName: 'wasm', digestCache: false });
      try {
        expect(native.fingerprint, name).toBe(wasm.fingerprint);
      } finally {
        native.backend.dispose();
        wasm.backend.dispose();
      }
    }
  });

  it('on native, a change to any byte of a tensor read straight from the file changes the fingerprint', async () => {
    const preset = syntheticPreset('llama3-f16-tied');
    const base = await loadModel(preset, { backendName: 'native', digestCache: false });
    base.backend.dispose();
    const file = join(preset, 'model.safetensors');
    const ck = await openCheckpoint(file);
    const info = ck.info('model.layers.0.mlp.down_proj.weight');
    await ck.close();
    for (const at of [0, 4106, info.byteLength - 1]) {
      const dir = join(tmp, `changed-${at}`);
      cpSync(preset, dir, { recursive: true });
      const bytes = readFileSync(join(dir, 'model.safetensors'));
      bytes[info.byteOffset + at]! ^= 0x01;
      writeFileSync(join(dir, 'model.safetensors'), bytes);
      const changed = await loadModel(dir, { backendName: 'native', digestCache: false });
      changed.backend.dispose();
      expect(changed.fingerprint, `byte ${at}`).not.toBe(base.fingerprint);
    }
  });

  it('locate() hashes every byte from the file, and a file changed before finish() is refused, cache or not', async () => {
    const path = join(tmp, 'raw.bin');
    const bytes = new Uint8Array(9_000_123).map((_, i) => (i * 2654435761) >>> 24);
    writeFileSync(path, Buffer.concat([Buffer.alloc(17), Buffer.from(bytes)]));
    const fd = openSync(path, 'r');
    try {
      let ctime = '5';
      const source = {
        names: () => ['t'],
        has: () => true,
        info: () => ({
          dtype: 'U8',
          shape: [bytes.length],
          file: path,
          byteOffset: 17,
          byteLength: bytes.length,
        }),
        read: async () => bytes,
        identity: async () => ({ dev: '1', ino: '2', size: '3', mtimeNs: '4', ctimeNs: ctime }),
        fileRange: () => ({ fd, position: 17, byteLength: bytes.length }),
      };
      const digest = new WeightDigest();
      const s = digestingSource(source, digest);
      expect(await s.locate('t')).toEqual({ fd, position: 17, byteLength: bytes.length });
      const whole = new WeightDigest();
      whole.set('t', tensorDigest('t', 'U8', [bytes.length], bytes));
      expect(digest.digest()).toBe(whole.digest());
      await s.finish();
      ctime = '6'; // written to after the bytes were hashed, before the backend's own read was known to be done
      await expect(s.finish()).rejects.toThrow(
        `${path} changed while the model was being loaded; load it again`,
      );
    } finally {
      closeSync(fd);
    }
  });
});
