import { type KVCache, maxStepRows } from '@mnemo/kv-cache';
import type { Model } from '@mnemo/models';
import type { Backend } from '@mnemo/tensor';
import type { LogitsProcessor, Sampler } from './sampler';

export interface StepOptions {
  readonly sampler: Sampler;
  readonly processors?: readonly LogitsProcessor[];
  /** Prompt tokens per forward call while prefilling (default 512). Any value gives bitwise-identical results. */
  readonly prefillStepSize?: number;
  /** Called after each prefill chunk with tokens processed so far and the total to process. */
  readonly onPrefill?: (done: number, total: number) => void;
}

/** One generated token with the raw logits it was sampled from (valid until the next step). */
export interface Step {
  readonly token: number;
  readonly logits: Float32Array;
}

export const DEFAULT_PREFILL_STEP_SIZE = 512;

/**
 * The engine loop. `tokens` is the whole prompt; the caches may already hold a prefix of it (their offset), which is
 * not recomputed — at least one prompt token always is, to produce logits. Prefills the rest in chunks, then yields
 * one sampled token per step, feeding each back. `tokens` grows with every token fed back (prompt + generated), so
 * logits processors see the whole history. Runs forever: the caller stops it.
 */
export function* generateStep(
  model: Model,
  backend: Backend,
  tokens: number[],
  caches: readonly KVCache[],
  opts: StepOptions,
): Generator<Step, void, undefined> {
  const step = opts.prefillStepSize ?? DEFAULT_PREFILL_STEP_SIZE;
  if (!Number.isSafeInteger(step) || step < 1)
    throw new RangeError(`prefill step size must be a positive integer, got ${step}`);
  const start = caches.length > 0 ? caches[0]!.offset : 0;
  if (tokens.length === 0) throw new RangeError('generate: the prompt has no tokens');
  if (start >= tokens.length) {
    throw new RangeError(
      `generate: the cache holds ${start} tokens but the prompt has ${tokens.length}; trim it first`,
    );
  }
  for (const t of tokens) {
    if (!Number.isSafeInteger(t) || t < 0 || t >= model.vocabSize) {
      throw new RangeError(`generate: token id ${t} is outside the vocabulary (${model.vocabSize})`);
    }
  }
  const raw = new Float32Array(model.vocabSize);
  const processed = opts.processors && opts.processors.length > 0 ? new Float32Array(model.vocabSize) : raw;
  const one = new Int32Array(1);
  const total = tokens.length - start;
  let pos = start;
  let logitsT = undefined as ReturnType<Model['forward']> | undefined;
  while (pos < tokens.length) {
    // Some cache kinds only stay split-invariant when a step does not cross a boundary of theirs (a rotating cache
    // filling up, a quantized cache converting): they say how many rows the next step may take.
    const n = Math.max(1, Math.min(step, tokens.length - pos, maxStepRows(caches)));
    logitsT = model.forward(Int32Array.from(tokens.slice(pos, pos + n)), caches);
    pos += n;
    opts.onPrefill?.(pos - start, total);
  }
  for (;;) {
    backend.read(logitsT!, raw);
    if (processed !== raw) {
      processed.set(raw);
      for (const p of opts.processors!) p(tokens, processed);
    }
    const token = opts.sampler(processed);
    yield { token, logits: raw };
    tokens.push(token);
    one[0] = token;
    logitsT = model.forward(one, caches);
  }
}
