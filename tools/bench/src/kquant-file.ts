/**
 * `pnpm bench --make-q4km [--model 1b|8b|tiny]`: writes a Q4_K_M-style GGUF file in the shapes of the chosen model,
 * with random blocks (codes and sub-block scales random, f16 super-block scales small and finite), tensor types as
 * llama-quantize chooses them for Q4_K_M (output, and attn_v / ffn_down of its "more bits" layers, in Q6_K; every other
 * matrix, the embedding included, in Q4_K; norms F32) and the llama3 `rope_freqs`. Speed does not depend on the values;
 * both runtimes then load the same file with `pnpm bench --gguf FILE`.
 */
import { randomFillSync } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { numberToF16Bits } from '@mnemo/tensor';
import { type GgufTensorInfo, type GgufValue, GgufWriter } from './gguf';
import { GGML_TYPE, type GgmlType, ggmlBytes } from './quant';
import { llama3RopeFactors, type ModelSpec, type TensorDef, tensorDefs } from './spec';
import { makeVocab } from './vocab';

/** llama-quantize's `use_more_bits`: the first and last eighth of the layers and every third one between. */
function moreBits(layer: number, layers: number): boolean {
  return layer < layers / 8 || layer >= (7 * layers) / 8 || (layer - Math.floor(layers / 8)) % 3 === 2;
}

function typeOf(d: TensorDef, layers: number): GgmlType {
  if (d.kind === 'norm') return GGML_TYPE.F32;
  if (d.ggufName === 'output.weight') return GGML_TYPE.Q6_K;
  const m = /^blk\.(\d+)\.(attn_v|ffn_down)\./.exec(d.ggufName);
  if (m && moreBits(Number(m[1]), layers)) return GGML_TYPE.Q6_K;
  return GGML_TYPE.Q4_K;
}

/** Random blocks of `type` (`count` of them) into `out`, scales small enough that activations stay finite. */
function fillBlocks(out: Uint8Array, type: GgmlType): void {
  randomFillSync(out);
  const size = type === GGML_TYPE.Q4_K ? 144 : 210;
  const d = numberToF16Bits(type === GGML_TYPE.Q4_K ? 2e-4 : 4e-5);
  const dmin = numberToF16Bits(1e-4);
  for (let b = 0; b < out.length; b += size) {
    if (type === GGML_TYPE.Q4_K) {
      out[b] = d & 0xff;
      out[b + 1] = d >> 8;
      out[b + 2] = dmin & 0xff;
      out[b + 3] = dmin >> 8;
    } else {
      out[b + 208] = d & 0xff;
      out[b + 209] = d >> 8;
    }
  }
}

/** Writes the file (unless it exists with the expected size) and returns its path and tensor bytes by type. */
export function makeQ4KMFile(
  spec: ModelSpec,
  path: string,
  log: (msg: string) => void,
): { path: string; bytes: number } {
  const defs = tensorDefs(spec);
  const factors = llama3RopeFactors(spec);
  const tensors: GgufTensorInfo[] = [
    { name: 'rope_freqs.weight', shape: [factors.length], type: GGML_TYPE.F32 },
    ...defs.map((d) => ({
      name: d.ggufName,
      shape: d.kind === 'norm' ? [d.cols] : [d.rows, d.cols],
      type: typeOf(d, spec.layers),
    })),
  ];
  const bytes = tensors.reduce(
    (n, t) => n + ggmlBytes(t.type, t.shape.length === 1 ? 1 : t.shape[0]!, t.shape[t.shape.length - 1]!),
    0,
  );
  if (existsSync(path) && statSync(path).size >= bytes) {
    log(`reusing ${path}`);
    return { path, bytes };
  }
  const v = makeVocab(spec.vocab);
  const meta: [string, GgufValue][] = [
    ['general.architecture', { type: 'string', value: 'llama' }],
    ['general.name', { type: 'string', value: `${spec.label} synthetic Q4_K_M` }],
    ['general.file_type', { type: 'u32', value: 15 }],
    ['general.quantization_version', { type: 'u32', value: 2 }],
    ['llama.vocab_size', { type: 'u32', value: spec.vocab }],
    ['llama.context_length', { type: 'u32', value: spec.maxPositions }],
    ['llama.embedding_length', { type: 'u32', value: spec.hidden }],
    ['llama.block_count', { type: 'u32', value: spec.layers }],
    ['llama.feed_forward_length', { type: 'u32', value: spec.ffn }],
    ['llama.attention.head_count', { type: 'u32', value: spec.heads }],
    ['llama.attention.head_count_kv', { type: 'u32', value: spec.kvHeads }],
    ['llama.attention.key_length', { type: 'u32', value: spec.headDim }],
    ['llama.attention.value_length', { type: 'u32', value: spec.headDim }],
    ['llama.rope.freq_base', { type: 'f32', value: spec.ropeTheta }],
    ['llama.rope.dimension_count', { type: 'u32', value: spec.headDim }],
    ['llama.attention.layer_norm_rms_epsilon', { type: 'f32', value: spec.rmsEps }],
    ['tokenizer.ggml.model', { type: 'string', value: 'llama' }],
    ['tokenizer.ggml.pre', { type: 'string', value: 'default' }],
    ['tokenizer.ggml.tokens', { type: 'string[]', value: v.pieces }],
    ['tokenizer.ggml.scores', { type: 'f32[]', value: v.scores }],
    ['tokenizer.ggml.token_type', { type: 'i32[]', value: v.types }],
    ['tokenizer.ggml.bos_token_id', { type: 'u32', value: v.bosId }],
    ['tokenizer.ggml.eos_token_id', { type: 'u32', value: v.eosId }],
    ['tokenizer.ggml.unknown_token_id', { type: 'u32', value: v.unkId }],
    ['tokenizer.ggml.add_bos_token', { type: 'bool', value: true }],
    ['tokenizer.ggml.add_eos_token', { type: 'bool', value: false }],
  ];
  log(`writing ${path} (${(bytes / 2 ** 30).toFixed(2)} GiB, Q4_K_M-style random blocks)`);
  const w = new GgufWriter(path, meta, tensors);
  try {
    w.write(new Uint8Array(factors.buffer));
    for (const t of tensors.slice(1)) {
      if (t.type === GGML_TYPE.F32) {
        w.write(new Uint8Array(new Float32Array(t.shape[0]!).fill(1).buffer));
        continue;
      }
      const rows = t.shape[0]!;
      const rowBytes = ggmlBytes(t.type, 1, t.shape[1]!);
      const chunkRows = Math.max(1, Math.floor((64 << 20) / rowBytes));
      for (let r = 0; r < rows; r += chunkRows) {
        const part = new Uint8Array(Math.min(chunkRows, rows - r) * rowBytes);
        fillBlocks(part, t.type);
        w.write(part);
      }
    }
  } finally {
    w.close();
  }
  return { path, bytes };
}
