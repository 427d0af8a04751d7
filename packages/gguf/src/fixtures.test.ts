import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ggufFixture, syntheticGguf } from '@mnemo/test-utils';
import { describe, expect, it } from 'vitest';
import { openGguf } from './index';

// The twelve synthetic weight files are copied into the repo (fixtures/gguf); the two carrying real tokenizers are
// read in place from the shared fixtures and skipped where that folder does not exist.
const shared = ggufFixture();
const files = [
  ...readdirSync(syntheticGguf())
    .filter((n) => n.endsWith('.gguf'))
    .map((n) => ({ name: n, dir: syntheticGguf() })),
  ...(shared
    ? readdirSync(shared)
        .filter((n) => n.startsWith('tok-') && n.endsWith('.gguf'))
        .map((n) => ({ name: n, dir: shared }))
    : []),
];

describe('the GGUF fixtures', () => {
  it('are all there', () => {
    expect(files.filter((f) => !f.name.startsWith('tok-')).length).toBe(12);
    if (shared) expect(files.length).toBe(14);
  });

  for (const { name, dir } of files) {
    it(`${name}: header, tensor types and sizes as expected.json lists them`, async () => {
      const expected = JSON.parse(
        readFileSync(join(dir, name.replace(/\.gguf$/, '.expected.json')), 'utf8'),
      ) as {
        gguf_bytes: number;
        tensor_types: Record<string, string>;
        config: { hidden_size: number; vocab_size: number };
      };
      const f = await openGguf(join(dir, name));
      try {
        expect(f.size).toBe(expected.gguf_bytes);
        expect(f.version).toBe(3);
        expect(Object.fromEntries([...f.tensors.values()].map((t) => [t.name, t.typeName]))).toEqual(
          expected.tensor_types,
        );
        expect(f.names()).toEqual(Object.keys(expected.tensor_types));
        const embd = f.info('token_embd.weight');
        expect(embd.shape).toEqual([expected.config.vocab_size, expected.config.hidden_size]);
        const arch = f.metadata.string('general.architecture');
        expect(f.metadata.int(`${arch}.embedding_length`)).toBe(expected.config.hidden_size);
        expect(f.metadata.strings('tokenizer.ggml.tokens')!.length).toBe(expected.config.vocab_size);
        // the data section ends where the file does, give or take the last tensor's padding
        const end = Math.max(...[...f.tensors.values()].map((t) => t.byteOffset + t.byteLength));
        expect(f.size - end).toBeLessThan(f.alignment);
        expect((await f.read('token_embd.weight')).byteLength).toBe(embd.byteLength);
      } finally {
        await f.close();
      }
    });
  }
});
