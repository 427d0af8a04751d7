/**
 * A plain float64 forward pass of a Llama-family decoder, written from the published formulas independently of the
 * engine (no mnemo kernels, no shared helpers), for tests of the architecture variants that have no reference
 * fixtures: qk-norm (qwen3), fused projections with partial rotary (phi3), sliding windows (mistral), adjacent-pair
 * RoPE and linear RoPE scaling.
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
}

/** Weights by Hugging Face name as float64 (unfused). */
export type RefWeights = (name: string) => Float64Array;

function rmsnorm(x: Float64Array, w: Float64Array, eps: number): Float64Array {
  let ss = 0;
  for (const v of x) ss += v * v;
  const s = 1 / Math.sqrt(ss / x.length + eps);
  return x.map((v, i) => v * s * w[i]!);
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

function rope(v: Float64Array, pos: number, c: RefConfig): void {
  const half = c.rotDim / 2;
  for (let i = 0; i < half; i++) {
    const angle = (pos / c.linearFactor) * c.theta ** ((-2 * i) / c.rotDim);
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
  let h: Float64Array[] = ids.map((id) => emb.slice(id * c.hidden, (id + 1) * c.hidden));
  for (let l = 0; l < c.layers; l++) {
    const p = `model.layers.${l}`;
    const bias = (n: string) => (c.bias ? W(`${p}.self_attn.${n}.bias`) : undefined);
    const keys: Float64Array[][] = [];
    const vals: Float64Array[][] = [];
    const qs: Float64Array[][] = [];
    for (let t = 0; t < T; t++) {
      const x = rmsnorm(h[t]!, W(`${p}.input_layernorm.weight`), c.eps);
      const q = linear(x, W(`${p}.self_attn.q_proj.weight`), c.heads * hd, bias('q_proj'));
      const k = linear(x, W(`${p}.self_attn.k_proj.weight`), c.kvHeads * hd, bias('k_proj'));
      const v = linear(x, W(`${p}.self_attn.v_proj.weight`), c.kvHeads * hd, bias('v_proj'));
      const split = (a: Float64Array, n: number) =>
        Array.from({ length: n }, (_, i) => a.slice(i * hd, (i + 1) * hd));
      let qh: Float64Array[] = split(q, c.heads);
      let kh: Float64Array[] = split(k, c.kvHeads);
      if (c.qkNorm) {
        qh = qh.map((a) => rmsnorm(a, W(`${p}.self_attn.q_norm.weight`), c.eps));
        kh = kh.map((a) => rmsnorm(a, W(`${p}.self_attn.k_norm.weight`), c.eps));
      }
      for (const a of qh) rope(a, t, c);
      for (const a of kh) rope(a, t, c);
      qs.push(qh);
      keys.push(kh);
      vals.push(split(v, c.kvHeads));
    }
    const next: Float64Array[] = [];
    for (let t = 0; t < T; t++) {
      const att = new Float64Array(c.heads * hd);
      for (let hh = 0; hh < c.heads; hh++) {
        const g = Math.floor(hh / (c.heads / c.kvHeads));
        const lo = c.window > 0 ? Math.max(0, t - c.window + 1) : 0;
        const scores: number[] = [];
        for (let j = lo; j <= t; j++) {
          let s = 0;
          for (let d = 0; d < hd; d++) s += qs[t]![hh]![d]! * keys[j]![g]![d]!;
          scores.push(s / Math.sqrt(hd));
        }
        const m = Math.max(...scores);
        const e = scores.map((s) => Math.exp(s - m));
        const z = e.reduce((a, b) => a + b, 0);
        for (let j = lo; j <= t; j++) {
          const w = e[j - lo]! / z;
          for (let d = 0; d < hd; d++) att[hh * hd + d]! += w * vals[j]![g]![d]!;
        }
      }
      const o = linear(att, W(`${p}.self_attn.o_proj.weight`), c.hidden);
      const h1 = h[t]!.map((v, i) => v + o[i]!);
      const x = rmsnorm(h1, W(`${p}.post_attention_layernorm.weight`), c.eps);
      const gate = linear(x, W(`${p}.mlp.gate_proj.weight`), c.ffn);
      const up = linear(x, W(`${p}.mlp.up_proj.weight`), c.ffn);
      const act = gate.map((g, i) => (g / (1 + Math.exp(-g))) * up[i]!);
      const down = linear(act, W(`${p}.mlp.down_proj.weight`), c.hidden);
      next.push(h1.map((v, i) => v + down[i]!));
    }
    h = next;
  }
  const head = c.tied ? emb : W('lm_head.weight');
  return h.map((x) => linear(rmsnorm(x, W('model.norm.weight'), c.eps), head, c.vocab));
}
