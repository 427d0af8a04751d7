import { type KVCache, maxStepRows } from '@mnemo/kv-cache';
import type { Model } from '@mnemo/models';
import type { Backend, Tensor } from '@mnemo/tensor';
import type { LogitsProcessor, Sampler } from './sampler';

export const DEFAULT_PREFILL_STEP_SIZE = 512;

export interface PrefillOptions {
  /** Prompt tokens per forward call (default 512). Any value gives bitwise-identical results. */
  readonly prefillStepSize?: number;
  /** Called after each chunk with tokens processed so far and the total to process. */
  readonly onPrefill?: (done: number, total: number) => void;
}

export interface StepOptions extends PrefillOptions {
  readonly sampler: Sampler;
  readonly processors?: readonly LogitsProcessor[];
}

/** One generated token with the raw logits it was sampled from (valid until the next step). */
export interface Step {
  readonly token: number;
  readonly logits: Float32Array;
}

/**
 * Runs the tokens the caches do not hold yet (`tokens[offset ..]`) through the model in chunks and returns the logits
 * of the last one. Chunks never exceed what the caches accept in one step (see `maxStepRows`).
 */
export function prefill(
  model: Model,
  tokens: readonly number[],
  caches: readonly KVCache[],
  opts: PrefillOptions = {},
): Tensor {
  const step = opts.prefillStepSize ?? DEFAULT_PREFILL_STEP_SIZE;
  if (!Number.isSafeInteger(step) || step < 1) {
    throw new RangeError(`prefill step size must be a positive integer, got ${step}`);
  }
  if (tokens.length === 0) throw new RangeError('the prompt has no tokens');
  const start = caches.length > 0 ? caches[0]!.offset : 0;
  if (start >= tokens.length) {
    throw new RangeError(
      `the cache holds ${start} tokens but the prompt has ${tokens.length}; trim it first`,
    );
  }
  for (const t of tokens) {
    if (!Number.isSafeInteger(t) || t < 0 || t >= model.vocabSize) {
      throw new RangeError(`token id ${t} is outside the vocabulary (${model.vocabSize})`);
    }
  }
  const total = tokens.length - start;
  let pos = start;
  let logits: Tensor | undefined;
  while (pos < tokens.length) {
    // Some cache kinds only stay split-invariant when a step does not cross a boundary of theirs (a rotating cache
    // filling up, a quantized cache converting): they say how many rows the next step may take.
    const n = Math.max(1, Math.min(step, tokens.length - pos, maxStepRows(caches)));
    logits = model.forward(Int32Array.from(tokens.slice(pos, pos + n)), caches);
    pos += n;
    opts.onPrefill?.(pos - start, total);
  }
  return logits!;
}

/**
 * The engine loop. `tokens` is the whole prompt; the caches may already hold a prefix of it (their offset), which is
 * not recomputed — at least one prompt token always is, to produce logits. Prefills the rest in chunks, then yields
 * one sampled token per step, feeding each back. `tokens` grows with every token fed back (prompt + generated), so
 * it always names exactly what the caches hold while the generator is paused, and logits processors see the whole
 * history. Runs until the caller stops it.
 */
export function* generateStep(
  model: Model,
  backend: Backend,
  tokens: number[],
  caches: readonly KVCache[],
  opts: StepOptions,
): Generator<Step, void, undefined> {
  const raw = new Float32Array(model.vocabSize);
  const processed = opts.processors && opts.processors.length > 0 ? new Float32Array(model.vocabSize) : raw;
  const one = new Int32Array(1);
  let logits = prefill(model, tokens, caches, opts);
  for (;;) {
    backend.read(logits, raw);
    checkFinite(raw, tokens.length);
    if (processed !== raw) {
      processed.set(raw);
      for (const p of opts.processors!) p(tokens, processed);
    }
    const token = opts.sampler(processed);
    yield { token, logits: raw };
    tokens.push(token);
    one[0] = token;
    logits = model.forward(one, caches);
  }
}

/**
 * Refuses logits holding NaN or +∞ (a model with non-finite weights, a cache holding non-finite values): sampling them
 * would pick an arbitrary token (argmax of NaN is token 0) and report a NaN log-probability.
 */
function checkFinite(logits: Float32Array, position: number): void {
  for (let i = 0; i < logits.length; i++) {
    const v = logits[i]!;
    if (!(v < Number.POSITIVE_INFINITY)) {
      throw new RangeError(
        `the model computed a non-finite logit (${v} for token ${i}) after ${position} tokens: its weights or the prompt cache hold non-finite values, so nothing can be sampled`,
      );
    }
  }
}
