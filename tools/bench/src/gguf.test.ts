import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { GgufWriter, readGgufHeader } from './gguf';
import { GGML_TYPE } from './quant';

const dir = mkdtempSync(join(tmpdir(), 'mnemo-bench-gguf-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('GgufWriter', () => {
  it('writes a header llama.cpp can parse: metadata, tensor infos innermost-first, 32-byte aligned data', () => {
    const path = join(dir, 'small.gguf');
    const a = Float32Array.from({ length: 3 }, (_, i) => i + 0.5);
    const b = new Uint8Array(2 * 20).fill(7); // a [2, 32] Q4_1 tensor
    const w = new GgufWriter(
      path,
      [
        ['general.architecture', { type: 'string', value: 'llama' }],
        ['llama.block_count', { type: 'u32', value: 16 }],
        ['llama.rope.freq_base', { type: 'f32', value: 500000 }],
        ['tokenizer.ggml.tokens', { type: 'string[]', value: ['<unk>', '▁w1'] }],
        ['tokenizer.ggml.scores', { type: 'f32[]', value: [0, -1] }],
        ['tokenizer.ggml.token_type', { type: 'i32[]', value: [2, 1] }],
        ['tokenizer.ggml.add_bos_token', { type: 'bool', value: true }],
      ],
      [
        { name: 'a', shape: [3], type: GGML_TYPE.F32 },
        { name: 'b', shape: [2, 32], type: GGML_TYPE.Q4_1 },
      ],
    );
    w.write(new Uint8Array(a.buffer));
    w.write(b.subarray(0, 20));
    w.write(b.subarray(20));
    w.close();

    const h = readGgufHeader(path);
    expect(h.version).toBe(3);
    expect(h.metadata.get('general.architecture')).toBe('llama');
    expect(h.metadata.get('llama.block_count')).toBe(16);
    expect(h.metadata.get('llama.rope.freq_base')).toBe(500000);
    expect(h.metadata.get('tokenizer.ggml.tokens')).toEqual(['<unk>', '▁w1']);
    expect(h.metadata.get('tokenizer.ggml.token_type')).toEqual([2, 1]);
    expect(h.metadata.get('tokenizer.ggml.add_bos_token')).toBe(true);
    expect(h.tensors).toEqual([
      { name: 'a', dims: [3], type: GGML_TYPE.F32, offset: 0 },
      { name: 'b', dims: [32, 2], type: GGML_TYPE.Q4_1, offset: 32 },
    ]);
    expect(h.dataStart % 32).toBe(0);
    const file = readFileSync(path);
    expect(
      new Float32Array(file.buffer.slice(file.byteOffset + h.dataStart, file.byteOffset + h.dataStart + 12)),
    ).toEqual(a);
    expect(file.subarray(h.dataStart + 32, h.dataStart + 72)).toEqual(Buffer.from(b));
    expect(file.length).toBe(h.dataStart + 32 + 64);
  });

  it('refuses to close with a tensor missing', () => {
    const w = new GgufWriter(join(dir, 'short.gguf'), [], [{ name: 'a', shape: [4], type: GGML_TYPE.F32 }]);
    w.write(new Uint8Array(8));
    expect(() => w.close()).toThrow(/not written in full/);
  });
});
