import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SYNTHETIC_PRESETS, syntheticPreset } from '@mnemo/test-utils';
import { describe, expect, it } from 'vitest';
import {
  INDEX_FILE,
  openCheckpoint,
  openSafetensors,
  SAFETENSORS_DTYPE_BITS,
  type SafetensorsDType,
  toMnemoDType,
} from './index';

/** An independent, deliberately naive reading of a whole file (fine for test-sized fixtures). */
function naiveParse(path: string) {
  const bytes = readFileSync(path);
  const n = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8')) as Record<
    string,
    { dtype: SafetensorsDType; shape: number[]; data_offsets: [number, number] }
  >;
  const { __metadata__: _meta, ...tensors } = header;
  return { bytes, dataStart: 8 + n, tensors };
}

describe('synthetic fixtures', () => {
  for (const preset of SYNTHETIC_PRESETS) {
    it(`${preset}: opens and reads every tensor`, async () => {
      const dir = syntheticPreset(preset);
      const ckpt = await openCheckpoint(dir);
      try {
        expect(ckpt.names().length).toBeGreaterThan(0);
        let count = 0;
        for (const file of ckpt.files) {
          const ref = naiveParse(file);
          for (const [name, t] of Object.entries(ref.tensors)) {
            count++;
            const info = ckpt.info(name);
            expect(info.file).toBe(file);
            expect(info.dtype).toBe(t.dtype);
            expect(info.shape).toEqual(t.shape);
            const elements = t.shape.reduce((a, b) => a * b, 1);
            expect(info.byteLength).toBe((elements * SAFETENSORS_DTYPE_BITS[t.dtype]) / 8);
            expect(info.byteOffset).toBe(ref.dataStart + t.data_offsets[0]);
            const data = await ckpt.read(name);
            expect(data.byteLength).toBe(info.byteLength);
            expect(data.byteOffset).toBe(0);
            expect(data.buffer.byteLength).toBe(info.byteLength);
            expect(
              Buffer.from(data).equals(
                ref.bytes.subarray(info.byteOffset, info.byteOffset + info.byteLength),
              ),
            ).toBe(true);
            expect(Buffer.from(ckpt.readSync(name)).equals(data)).toBe(true);
            // Typed views of the right element size fit.
            const bits = SAFETENSORS_DTYPE_BITS[info.dtype];
            if (bits === 32) expect(new Float32Array(data.buffer).length).toBe(elements);
            if (bits === 16) expect(new Uint16Array(data.buffer).length).toBe(elements);
            expect(toMnemoDType(info.dtype)).toBeDefined();
          }
        }
        expect(ckpt.names().length).toBe(count);
      } finally {
        await ckpt.close();
      }
    });
  }

  it('llama-bf16-headdim is sharded through its index', async () => {
    const dir = syntheticPreset('llama-bf16-headdim');
    const index = JSON.parse(readFileSync(join(dir, INDEX_FILE), 'utf8')) as {
      weight_map: Record<string, string>;
    };
    const ckpt = await openCheckpoint(dir);
    try {
      expect(ckpt.indexFile).toBe(join(dir, INDEX_FILE));
      expect(ckpt.files.map((f) => f.slice(dir.length + 1))).toEqual([
        'model-00001-of-00002.safetensors',
        'model-00002-of-00002.safetensors',
      ]);
      expect(ckpt.names().sort()).toEqual(Object.keys(index.weight_map).sort());
      for (const [name, shard] of Object.entries(index.weight_map))
        expect(ckpt.info(name).file).toBe(join(dir, shard));
      expect(ckpt.unmapped).toEqual([]);
    } finally {
      await ckpt.close();
    }
  });

  it('a single file opens lazily and closes', async () => {
    const f = await openSafetensors(join(syntheticPreset('llama-f32'), 'model.safetensors'));
    expect(f.closed).toBe(false);
    const name = f.names()[0]!;
    expect(f.has(name)).toBe(true);
    const out = new Uint8Array(f.info(name).byteLength);
    await f.readInto(name, out);
    expect(Buffer.from(out).equals(await f.read(name))).toBe(true);
    await f.close();
    await f.close();
    expect(f.closed).toBe(true);
    await expect(f.read(name)).rejects.toMatchObject({ code: 'CLOSED' });
    expect(() => f.readSync(name)).toThrow(/closed/);
  });
});
