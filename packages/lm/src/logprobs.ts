export interface TokenLogprob {
  readonly id: number;
  readonly logprob: number;
}

export interface StepLogprobs extends TokenLogprob {
  /** The `k` most likely tokens, most likely first (ties: lower id first). */
  readonly top: TokenLogprob[];
}

/** log(Σ exp(x)) in float64, stable. */
export function logSumExp(x: Float32Array): number {
  let max = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < x.length; i++) if (x[i] > max) max = x[i];
  if (max === Number.NEGATIVE_INFINITY) return max;
  let s = 0;
  for (let i = 0; i < x.length; i++) s += Math.exp(x[i] - max);
  return max + Math.log(s);
}

/** Log-softmax of `logits` at `id` and the top `k` entries (k ≥ 0). */
export function logprobsOf(logits: Float32Array, id: number, k: number): StepLogprobs {
  const lse = logSumExp(logits);
  const top: TokenLogprob[] = [];
  if (k > 0) {
    // Keep a small sorted list of the k best (k is small; vocabularies are large).
    const ids: number[] = [];
    for (let i = 0; i < logits.length; i++) {
      const v = logits[i];
      if (ids.length === k && !(v > logits[ids[k - 1]])) continue;
      let j = ids.length < k ? ids.length : k - 1;
      if (ids.length < k) ids.push(i);
      while (j > 0 && v > logits[ids[j - 1]]) {
        ids[j] = ids[j - 1];
        j--;
      }
      ids[j] = i;
    }
    for (const t of ids) top.push({ id: t, logprob: logits[t] - lse });
  }
  return { id, logprob: logits[id] - lse, top };
}
