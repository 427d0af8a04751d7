import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openSafetensors } from '@mnemo/safetensors';
import { loadTokenizer } from '@mnemo/tokenizer';
import { afterAll, describe, expect, it } from 'vitest';
import { ensureCheckpoint } from './checkpoint';
import { readGgufHeader } from './gguf';
import { GGML_TYPE, hfRowOfGgufRow, type MlxQuantized, q4_1FromMlxRow } from './quant';
import { llama3RopeFactors, TINY } from './spec';

const dir = mkdtempSync(join(tmpdir(), 'mnemo-bench-ckpt-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('synthetic checkpoint (tiny, q4)', () => {
  it('writes the same weights for both runtimes, Q and K rows permuted for llama.cpp', async () => {
    const ck = await ensureCheckpoint(TINY, 'q4', dir);
    expect(ck.generated).toBe(true);

    // mnemo's side: config, tokenizer, MLX tensors.
    const config = JSON.parse(readFileSync(join(ck.dir, 'config.json'), 'utf8'));
    expect(config.quantization).toEqual({ group_size: 32, bits: 4 });
    expect(config.rope_scaling.rope_type).toBe('llama3');
    const tok = await loadTokenizer(ck.dir);
    expect(tok.vocabSize).toBe(TINY.vocab);
    expect(tok.bosId).toBe(TINY.vocab - 256);
    const st = await openSafetensors(join(ck.dir, 'model.safetensors'));
    const q = st.info('model.layers.0.self_attn.q_proj.weight');
    expect(q.dtype).toBe('U32');
    expect(q.shape).toEqual([TINY.heads * TINY.headDim, TINY.hidden / 8]);
    expect(st.info('model.embed_tokens.scales').dtype).toBe('F16');
    expect(st.has('lm_head.weight')).toBe(false); // tied

    // llama.cpp's side: metadata and tensor infos.
    const h = readGgufHeader(ck.gguf);
    expect(h.metadata.get('general.architecture')).toBe('llama');
    expect(h.metadata.get('llama.block_count')).toBe(TINY.layers);
    expect(h.metadata.get('llama.attention.head_count_kv')).toBe(TINY.kvHeads);
    expect(h.metadata.get('llama.rope.dimension_count')).toBe(TINY.headDim);
    expect(h.metadata.get('tokenizer.ggml.model')).toBe('llama');
    expect((h.metadata.get('tokenizer.ggml.tokens') as string[]).length).toBe(TINY.vocab);
    expect(h.metadata.get('tokenizer.ggml.bos_token_id')).toBe(tok.bosId);
    const names = h.tensors.map((t) => t.name);
    expect(names.slice(0, 3)).toEqual(['rope_freqs.weight', 'token_embd.weight', 'blk.0.attn_norm.weight']);
    expect(names).not.toContain('output.weight');
    expect(names[names.length - 1]).toBe('output_norm.weight');
    const attnQ = h.tensors.find((t) => t.name === 'blk.0.attn_q.weight')!;
    expect(attnQ.dims).toEqual([TINY.hidden, TINY.heads * TINY.headDim]);
    expect(attnQ.type).toBe(GGML_TYPE.Q4_1);
    expect(h.tensors.find((t) => t.name === 'blk.0.attn_norm.weight')!.type).toBe(GGML_TYPE.F32);

    const file = readFileSync(ck.gguf);
    const freqs = h.tensors[0]!;
    expect(
      new Float32Array(
        file.buffer.slice(
          file.byteOffset + h.dataStart + freqs.offset,
          file.byteOffset + h.dataStart + freqs.offset + TINY.headDim * 2,
        ),
      ),
    ).toEqual(llama3RopeFactors(TINY));

    // Row r of the GGUF q_proj / k_proj is Q4_1 of HF row hfRowOfGgufRow(r); v_proj is not permuted.
    for (const [hf, gg, heads] of [
      ['model.layers.1.self_attn.q_proj', 'blk.1.attn_q.weight', TINY.heads],
      ['model.layers.1.self_attn.k_proj', 'blk.1.attn_k.weight', TINY.kvHeads],
      ['model.layers.1.self_attn.v_proj', 'blk.1.attn_v.weight', undefined],
    ] as const) {
      const info = st.info(`${hf}.weight`);
      const rows = info.shape[0]!;
      const m: MlxQuantized = {
        bits: 4,
        groupSize: 32,
        rows,
        cols: TINY.hidden,
        packed: new Uint32Array((await st.read(`${hf}.weight`)).buffer),
        scales: new Uint16Array((await st.read(`${hf}.scales`)).buffer),
        biases: new Uint16Array((await st.read(`${hf}.biases`)).buffer),
      };
      const t = h.tensors.find((x) => x.name === gg)!;
      const rowBytes = (TINY.hidden / 32) * 20;
      const start = h.dataStart + t.offset;
      const expected = new Uint8Array(rowBytes);
      for (let r = 0; r < rows; r++) {
        q4_1FromMlxRow(m, hfRowOfGgufRow(r, rows, heads), expected, 0);
        expect(file.subarray(start + r * rowBytes, start + (r + 1) * rowBytes)).toEqual(
          Buffer.from(expected),
        );
      }
    }
    await st.close();

    // A second call reuses what is there.
    expect((await ensureCheckpoint(TINY, 'q4', dir)).generated).toBe(false);
  });
});
