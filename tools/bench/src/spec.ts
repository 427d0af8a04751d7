/** Shapes of the models the benchmark generates (the real Llama checkpoints' configs, random weights). */
export interface RopeScaling {
  readonly factor: number;
  readonly lowFreqFactor: number;
  readonly highFreqFactor: number;
  readonly originalMaxPositions: number;
}

export interface ModelSpec {
  /** Folder-name stem, e.g. `llama-3.2-1b`. */
  readonly name: string;
  /** Human name for tables. */
  readonly label: string;
  readonly hidden: number;
  readonly layers: number;
  readonly heads: number;
  readonly kvHeads: number;
  readonly headDim: number;
  readonly ffn: number;
  readonly vocab: number;
  readonly tied: boolean;
  readonly ropeTheta: number;
  readonly ropeScaling: RopeScaling;
  readonly rmsEps: number;
  readonly maxPositions: number;
}

export const LLAMA_3_2_1B: ModelSpec = {
  name: 'llama-3.2-1b',
  label: 'Llama-3.2-1B',
  hidden: 2048,
  layers: 16,
  heads: 32,
  kvHeads: 8,
  headDim: 64,
  ffn: 8192,
  vocab: 128256,
  tied: true,
  ropeTheta: 500000,
  ropeScaling: { factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8192 },
  rmsEps: 1e-5,
  maxPositions: 131072,
};

export const LLAMA_3_1_8B: ModelSpec = {
  name: 'llama-3.1-8b',
  label: 'Llama-3.1-8B',
  hidden: 4096,
  layers: 32,
  heads: 32,
  kvHeads: 8,
  headDim: 128,
  ffn: 14336,
  vocab: 128256,
  tied: false,
  ropeTheta: 500000,
  ropeScaling: { factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8192 },
  rmsEps: 1e-5,
  maxPositions: 131072,
};

/** A small model of the same family, for smoke tests of the whole pipeline (`--model tiny`). */
export const TINY: ModelSpec = {
  name: 'tiny',
  label: 'tiny (smoke test)',
  hidden: 256,
  layers: 2,
  heads: 4,
  kvHeads: 2,
  headDim: 64,
  ffn: 512,
  vocab: 4096,
  tied: true,
  ropeTheta: 500000,
  ropeScaling: { factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8192 },
  rmsEps: 1e-5,
  maxPositions: 8192,
};

export const MODEL_SPECS: Readonly<Record<string, ModelSpec>> = {
  '1b': LLAMA_3_2_1B,
  '8b': LLAMA_3_1_8B,
  tiny: TINY,
};

/** How a tensor's values are drawn. */
export type TensorKind = 'embed' | 'linear' | 'norm';

export interface TensorDef {
  /** Hugging Face name without the `.weight` suffix (e.g. `model.layers.0.self_attn.q_proj`). */
  readonly hfPrefix: string;
  /** GGUF name (e.g. `blk.0.attn_q.weight`). */
  readonly ggufName: string;
  readonly kind: TensorKind;
  /** `[rows, cols]` (`[out, in]` for linear layers); norms are `[1, n]`. */
  readonly rows: number;
  readonly cols: number;
  /** For q_proj / k_proj: the head count whose rows llama.cpp's converter permutes (rotate-half → adjacent pairs). */
  readonly permuteHeads?: number;
}

/** Every weight tensor, in file order. */
export function tensorDefs(s: ModelSpec): TensorDef[] {
  const out: TensorDef[] = [
    {
      hfPrefix: 'model.embed_tokens',
      ggufName: 'token_embd.weight',
      kind: 'embed',
      rows: s.vocab,
      cols: s.hidden,
    },
  ];
  const q = s.heads * s.headDim;
  const kv = s.kvHeads * s.headDim;
  for (let l = 0; l < s.layers; l++) {
    const p = `model.layers.${l}`;
    const b = `blk.${l}`;
    out.push(
      {
        hfPrefix: `${p}.input_layernorm`,
        ggufName: `${b}.attn_norm.weight`,
        kind: 'norm',
        rows: 1,
        cols: s.hidden,
      },
      {
        hfPrefix: `${p}.self_attn.q_proj`,
        ggufName: `${b}.attn_q.weight`,
        kind: 'linear',
        rows: q,
        cols: s.hidden,
        permuteHeads: s.heads,
      },
      {
        hfPrefix: `${p}.self_attn.k_proj`,
        ggufName: `${b}.attn_k.weight`,
        kind: 'linear',
        rows: kv,
        cols: s.hidden,
        permuteHeads: s.kvHeads,
      },
      {
        hfPrefix: `${p}.self_attn.v_proj`,
        ggufName: `${b}.attn_v.weight`,
        kind: 'linear',
        rows: kv,
        cols: s.hidden,
      },
      {
        hfPrefix: `${p}.self_attn.o_proj`,
        ggufName: `${b}.attn_output.weight`,
        kind: 'linear',
        rows: s.hidden,
        cols: q,
      },
      {
        hfPrefix: `${p}.post_attention_layernorm`,
        ggufName: `${b}.ffn_norm.weight`,
        kind: 'norm',
        rows: 1,
        cols: s.hidden,
      },
      {
        hfPrefix: `${p}.mlp.gate_proj`,
        ggufName: `${b}.ffn_gate.weight`,
        kind: 'linear',
        rows: s.ffn,
        cols: s.hidden,
      },
      {
        hfPrefix: `${p}.mlp.up_proj`,
        ggufName: `${b}.ffn_up.weight`,
        kind: 'linear',
        rows: s.ffn,
        cols: s.hidden,
      },
      {
        hfPrefix: `${p}.mlp.down_proj`,
        ggufName: `${b}.ffn_down.weight`,
        kind: 'linear',
        rows: s.hidden,
        cols: s.ffn,
      },
    );
  }
  out.push({ hfPrefix: 'model.norm', ggufName: 'output_norm.weight', kind: 'norm', rows: 1, cols: s.hidden });
  if (!s.tied)
    out.push({
      hfPrefix: 'lm_head',
      ggufName: 'output.weight',
      kind: 'linear',
      rows: s.vocab,
      cols: s.hidden,
    });
  return out;
}

/** Parameters (weights) of the model, the tied embedding counted once. */
export function parameterCount(s: ModelSpec): number {
  return tensorDefs(s).reduce((n, t) => n + t.rows * t.cols, 0);
}

/**
 * Weights read from memory per decoded token: every matrix once (the embedding as the tied LM head; the embedding
 * lookup itself reads one row) and the norms.
 */
export function weightsReadPerToken(s: ModelSpec): number {
  return tensorDefs(s).reduce(
    (n, t) => n + (t.kind === 'embed' ? (s.tied ? t.rows * t.cols : t.cols) : t.rows * t.cols),
    0,
  );
}

/** KV-cache elements per token of context (keys and values of every layer). */
export function kvElementsPerToken(s: ModelSpec): number {
  return 2 * s.layers * s.kvHeads * s.headDim;
}

/** llama.cpp's llama3 rope factors (the `rope_freqs` tensor): frequency i is divided by factor i. */
export function llama3RopeFactors(s: ModelSpec): Float32Array {
  const { factor, lowFreqFactor: low, highFreqFactor: high, originalMaxPositions: oldLen } = s.ropeScaling;
  const half = s.headDim / 2;
  const out = new Float32Array(half);
  const lowWavelen = oldLen / low;
  const highWavelen = oldLen / high;
  for (let i = 0; i < half; i++) {
    // As the reference converter: the base frequency in f32, the factor in double.
    const freq = Math.fround(1 / Math.fround(s.ropeTheta ** Math.fround((2 * i) / s.headDim)));
    const wavelen = (2 * Math.PI) / freq;
    if (wavelen < highWavelen) out[i] = 1;
    else if (wavelen > lowWavelen) out[i] = factor;
    else {
      const smooth = (oldLen / wavelen - low) / (high - low);
      out[i] = 1 / ((1 - smooth) / factor + smooth);
    }
  }
  return out;
}
