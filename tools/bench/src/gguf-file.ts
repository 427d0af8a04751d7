/**
 * `pnpm bench --gguf FILE`: the model's shape, the bytes a decoded token reads and the prompt ids, from one GGUF file
 * that both runtimes then load as it is.
 */
import { basename } from 'node:path';
import { openGguf } from '@mnemo/gguf';
import { Rng } from './prng';
import type { ModelSpec } from './spec';

const FILE_TYPES: Readonly<Record<number, string>> = {
  0: 'F32',
  1: 'F16',
  2: 'Q4_0',
  3: 'Q4_1',
  7: 'Q8_0',
  8: 'Q5_0',
  9: 'Q5_1',
  10: 'Q2_K',
  11: 'Q3_K_S',
  12: 'Q3_K_M',
  13: 'Q3_K_L',
  14: 'Q4_K_S',
  15: 'Q4_K_M',
  16: 'Q5_K_S',
  17: 'Q5_K_M',
  18: 'Q6_K',
  32: 'BF16',
};

export interface GgufBenchModel {
  readonly spec: ModelSpec;
  /** `general.file_type` by llama.cpp's name (`Q4_K_M`), or the dominant tensor type. */
  readonly fileType: string;
  /** Bytes of all tensors. */
  readonly weightBytes: number;
  /** Weight bytes read per decoded token: every tensor, but one row of the embedding unless it is the head. */
  readonly weightBytesPerToken: number;
  /** GGML type → bytes, for the report. */
  readonly typeBytes: Readonly<Record<string, number>>;
  readonly bosId: number | null;
  /** Ids prompts are drawn from (NORMAL tokens). */
  readonly normalIds: readonly number[];
}

export async function ggufBenchModel(path: string): Promise<GgufBenchModel> {
  const f = await openGguf(path);
  await f.close();
  const m = f.metadata;
  const arch = m.string('general.architecture');
  const k = (key: string) => `${arch}.${key}`;
  const embd = f.info('token_embd.weight');
  const heads = m.int(k('attention.head_count'));
  const hidden = m.int(k('embedding_length'));
  const tied = !f.has('output.weight');
  const stem = basename(path).replace(/\.gguf$/i, '');
  const typeBytes: Record<string, number> = {};
  let weightBytes = 0;
  for (const t of f.tensors.values()) {
    weightBytes += t.byteLength;
    typeBytes[t.typeName] = (typeBytes[t.typeName] ?? 0) + t.byteLength;
  }
  const weightBytesPerToken = tied
    ? weightBytes
    : weightBytes - embd.byteLength + embd.byteLength / embd.shape[0]!;
  const ft = m.has('general.file_type') ? m.int('general.file_type') : -1;
  const dominant = Object.entries(typeBytes).sort((a, b) => b[1] - a[1])[0]![0];
  const fileType = FILE_TYPES[ft] ?? dominant;
  const types = m.numbers('tokenizer.ggml.token_type');
  const vocab = embd.shape[0]!;
  const normalIds: number[] = [];
  for (let i = 0; i < vocab; i++) if (!types || types[i] === 1) normalIds.push(i);
  const spec: ModelSpec = {
    name: `${stem}-gguf`,
    label: `${basename(path)} (${arch}, ${fileType})`,
    hidden,
    layers: m.int(k('block_count')),
    heads,
    kvHeads: m.int(k('attention.head_count_kv'), heads),
    headDim: m.int(k('attention.key_length'), hidden / heads),
    ffn: m.int(k('feed_forward_length')),
    vocab,
    tied,
    ropeTheta: m.number(k('rope.freq_base'), 10000),
    ropeScaling: { factor: 1, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8192 },
    rmsEps: m.number(k('attention.layer_norm_rms_epsilon'), 1e-5),
    maxPositions: m.int(k('context_length'), 4096),
  };
  return {
    spec,
    fileType,
    weightBytes,
    weightBytesPerToken,
    typeBytes,
    bosId: m.has('tokenizer.ggml.bos_token_id') ? m.int('tokenizer.ggml.bos_token_id') : null,
    normalIds,
  };
}

/** Seeded prompts of `n` tokens: BOS (when the vocabulary has one), then normal tokens. */
export function ggufPrompts(
  g: GgufBenchModel,
  prefill: number,
  ttft: number,
): { prefill: number[]; ttft: number[] } {
  const rng = new Rng(7, 'prompt');
  const draw = (n: number) => {
    const out = g.bosId === null ? [] : [g.bosId];
    while (out.length < n) out.push(g.normalIds[rng.int(0, g.normalIds.length)]!);
    return out;
  };
  return { prefill: draw(prefill), ttft: draw(ttft) };
}
