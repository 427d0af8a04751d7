/**
 * A plain float64 forward pass of a Llama-family decoder, written from the published formulas independently of the
 * engine (no mnemo kernels, no shared helpers), for tests of the architecture variants that have no reference
 * fixtures: qk-norm (qwen3), fused projections with partial rotary (phi3), sliding windows (mistral), adjacent-pair
 * RoPE and linear RoPE scaling, and — through the optional fields — the Gemma family (scaled embedding, 1 + w norms,
 * GELU-tanh, pre/post norms, soft-caps, per-layer windows and RoPE bases) and post-norm layers (OLMo 2).
 */
export interface RefConfig {
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  ffn: number;
  vocab: number;
  eps: number;
  theta: number;
  /** Rotated dimensions per head (≤ headDim). */
  rotDim: number;
  /** Adjacent pairs (2i, 2i+1) instead of rotate-half (i, i + rotDim/2). */
  pairs: boolean;
  /** Positions are divided by this (linear RoPE scaling). */
  linearFactor: number;
  /** Sliding window (0 = none). */
  window: number;
  qkNorm: boolean;
  bias: boolean;
  tied: boolean;
  /** Embedding rows are multiplied by this (Gemma: sqrt(hidden) rounded to the dtype). Default 1. */
  embedScale?: number;
  /** Added to every norm weight (Gemma stores `w` and scales by `1 + w`). Default 0. */
  normOffset?: number;
  /** Default `silu`. */
  activation?: 'silu' | 'gelu_tanh';
  /**
   * Where the norms are: `pre` (Llama: input_layernorm, post_attention_layernorm before the MLP), `sandwich` (Gemma 2/3:
   * input_layernorm, post_attention_layernorm after attention, pre_feedforward_layernorm, post_feedforward_layernorm),
   * `post` (OLMo 2: post_attention_layernorm after attention, post_feedforward_layernorm after the MLP). Default `pre`.
   */
  placement?: 'pre' | 'sandwich' | 'post';
  /** Multiplier of q·k. Default 1/sqrt(headDim). */
  attnScale?: number;
  /** Attention-score soft-cap (0 = none). */
  attnSoftcap?: number;
  /** Final-logit soft-cap (0 = none). */
  finalSoftcap?: number;
  /** q/k norm over each head (`head`, default) or over the whole projection (`all`, OLMo 2). */
  qkNormScope?: 'head' | 'all';
  /** Per-layer sliding windows (overrides `window`). */
  windows?: number[];
  /** Per-layer RoPE bases and linear factors (override `theta` / `linearFactor`). */
  thetas?: number[];
  linearFactors?: number[];
}

/** Weights by Hugging Face name as float64 (unfused). */
export type RefWeights = (name: string) => Float64Array;

function rmsnorm(x: Float64Array, w: Float64Array, eps: number, offset = 0): Float64Array {
  let ss = 0;
  for (const v of x) ss += v * v;
  const s = 1 / Math.sqrt(ss / x.length + eps);
  return x.map((v, i) => v * s * (offset + w[i]!));
}

function gelu(x: number): number {
  return 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
}

function softcap(x: number, c: number | undefined): number {
  return c ? c * Math.tanh(x / c) : x;
}

function linear(x: Float64Array, w: Float64Array, out: number, b?: Float64Array): Float64Array {
  const n = x.length;
  const y = new Float64Array(out);
  for (let o = 0; o < out; o++) {
    let acc = b ? b[o]! : 0;
    for (let i = 0; i < n; i++) acc += x[i]! * w[o * n + i]!;
    y[o] = acc;
  }
  return y;
}

function rope(v: Float64Array, pos: number, c: RefConfig, layer: number): void {
  const half = c.rotDim / 2;
  const theta = c.thetas?.[layer] ?? c.theta;
  const factor = c.linearFactors?.[layer] ?? c.linearFactor;
  for (let i = 0; i < half; i++) {
    const angle = (pos / factor) * theta ** ((-2 * i) / c.rotDim);
    const [a, b] = c.pairs ? [2 * i, 2 * i + 1] : [i, i + half];
    const x = v[a]!;
    const y = v[b]!;
    v[a] = x * Math.cos(angle) - y * Math.sin(angle);
    v[b] = x * Math.sin(angle) + y * Math.cos(angle);
  }
}

/** Logits (float64) for every position of `ids`. */
export function referenceLogits(c: RefConfig, W: RefWeights, ids: readonly number[]): Float64Array[] {
  const emb = W('model.embed_tokens.weight');
  const T = ids.length;
  const hd = c.headDim;
  const off = c.normOffset ?? 0;
  const placement = c.placement ?? 'pre';
  const norm = (x: Float64Array, name: string) => rmsnorm(x, W(name), c.eps, off);
  const scale = c.embedScale ?? 1;
  let h: Float64Array[] = ids.map((id) =>
    emb.slice(id * c.hidden, (id + 1) * c.hidden).map((v) => v * scale),
  );
  for (let l = 0; l < c.layers; l++) {
    const p = `model.layers.${l}`;
    const window = c.windows?.[l] ?? c.window;
    const bias = (n: string) => (c.bias ? W(`${p}.self_attn.${n}.bias`) : undefined);
    const keys: Float64Array[][] = [];
    const vals: Float64Array[][] = [];
    const qs: Float64Array[][] = [];
    for (let t = 0; t < T; t++) {
      const x = placement === 'post' ? h[t]! : norm(h[t]!, `${p}.input_layernorm.weight`);
      let q = linear(x, W(`${p}.self_attn.q_proj.weight`), c.heads * hd, bias('q_proj'));
      let k = linear(x, W(`${p}.self_attn.k_proj.weight`), c.kvHeads * hd, bias('k_proj'));
      const v = linear(x, W(`${p}.self_attn.v_proj.weight`), c.kvHeads * hd, bias('v_proj'));
      if (c.qkNorm && c.qkNormScope === 'all') {
        q = norm(q, `${p}.self_attn.q_norm.weight`);
        k = norm(k, `${p}.self_attn.k_norm.weight`);
      }
      const split = (a: Float64Array, n: number) =>
        Array.from({ length: n }, (_, i) => a.slice(i * hd, (i + 1) * hd));
      let qh: Float64Array[] = split(q, c.heads);
      let kh: Float64Array[] = split(k, c.kvHeads);
      if (c.qkNorm && c.qkNormScope !== 'all') {
        qh = qh.map((a) => norm(a, `${p}.self_attn.q_norm.weight`));
        kh = kh.map((a) => norm(a, `${p}.self_attn.k_norm.weight`));
      }
      for (const a of qh) rope(a, t, c, l);
      for (const a of kh) rope(a, t, c, l);
      qs.push(qh);
      keys.push(kh);
      vals.push(split(v, c.kvHeads));
    }
    const next: Float64Array[] = [];
    for (let t = 0; t < T; t++) {
      const att = new Float64Array(c.heads * hd);
      for (let hh = 0; hh < c.heads; hh++) {
        const g = Math.floor(hh / (c.heads / c.kvHeads));
        const lo = window > 0 ? Math.max(0, t - window + 1) : 0;
        const scores: number[] = [];
        for (let j = lo; j <= t; j++) {
          let s = 0;
          for (let d = 0; d < hd; d++) s += qs[t]![hh]![d]! * keys[j]![g]![d]!;
          scores.push(softcap(s * (c.attnScale ?? 1 / Math.sqrt(hd)), c.attnSoftcap));
        }
        const m = Math.max(...scores);
        const e = scores.map((s) => Math.exp(s - m));
        const z = e.reduce((a, b) => a + b, 0);
        for (let j = lo; j <= t; j++) {
          const w = e[j - lo]! / z;
          for (let d = 0; d < hd; d++) att[hh * hd + d]! += w * vals[j]![g]![d]!;
        }
      }
      let o = linear(att, W(`${p}.self_attn.o_proj.weight`), c.hidden);
      if (placement !== 'pre') o = norm(o, `${p}.post_attention_layernorm.weight`);
      const h1 = h[t]!.map((v, i) => v + o[i]!);
      const x =
        placement === 'post'
          ? h1
          : norm(
              h1,
              placement === 'sandwich'
                ? `${p}.pre_feedforward_layernorm.weight`
                : `${p}.post_attention_layernorm.weight`,
            );
      const gate = linear(x, W(`${p}.mlp.gate_proj.weight`), c.ffn);
      const up = linear(x, W(`${p}.mlp.up_proj.weight`), c.ffn);
      const act = gate.map((g, i) =>
        c.activation === 'gelu_tanh' ? gelu(g) * up[i]! : (g / (1 + Math.exp(-g))) * up[i]!,
      );
      let down = linear(act, W(`${p}.mlp.down_proj.weight`), c.hidden);
      if (placement !== 'pre') down = norm(down, `${p}.post_feedforward_layernorm.weight`);
      next.push(h1.map((v, i) => v + down[i]!));
    }
    h = next;
  }
  const head = c.tied ? emb : W('lm_head.weight');
  return h.map((x) =>
    linear(norm(x, 'model.norm.weight'), head, c.vocab).map((v) => softcap(v, c.finalSoftcap)),
  );
}
