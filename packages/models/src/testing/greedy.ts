/**
 * Test helpers: greedy runs and teacher-forced log-probabilities of a model, straight through `forward`, with the
 * caches the model builds (ring caches of the window on sliding layers).
 */
import type { Backend } from '@mnemo/tensor';
import type { Model } from '../model';

/** log-softmax of one row of logits, in float64. */
export function logSoftmax(logits: Float32Array): Float64Array {
  let max = -Infinity;
  for (const v of logits) max = Math.max(max, v);
  let sum = 0;
  for (const v of logits) sum += Math.exp(v - max);
  const lse = max + Math.log(sum);
  return Float64Array.from(logits, (v) => v - lse);
}

/** Greedy continuation of `prompt` for `steps` tokens: ids and each chosen token's logprob (prefill in one call). */
export function greedy(
  backend: Backend,
  model: Model,
  prompt: readonly number[],
  steps: number,
): { tokens: number[]; logprobs: number[] } {
  const caches = model.makeCaches();
  try {
    const tokens: number[] = [];
    const logprobs: number[] = [];
    let logits = backend.read(model.forward(Int32Array.from(prompt), caches));
    for (let s = 0; s < steps; s++) {
      const lp = logSoftmax(logits);
      let best = 0;
      for (let i = 1; i < lp.length; i++) if (lp[i]! > lp[best]!) best = i;
      tokens.push(best);
      logprobs.push(lp[best]!);
      if (s + 1 < steps) logits = backend.read(model.forward(Int32Array.of(best), caches));
    }
    return { tokens, logprobs };
  } finally {
    for (const c of caches) c.free();
  }
}

/** Log-probabilities after every position of `ids` (one forward over all of them). */
export function teacherForced(backend: Backend, model: Model, ids: readonly number[]): Float64Array[] {
  const caches = model.makeCaches();
  try {
    const all = backend.read(model.forward(Int32Array.from(ids), caches, { allLogits: true }));
    const v = model.vocabSize;
    return ids.map((_, p) => logSoftmax(all.subarray(p * v, (p + 1) * v)));
  } finally {
    for (const c of caches) c.free();
  }
}
