import { Random } from './random';

export interface SamplerOptions {
  /** 0 (default) = greedy argmax. */
  readonly temperature?: number;
  /** Keep the k most likely tokens (0 = off). */
  readonly topK?: number;
  /** Keep the smallest set of most likely tokens whose probability reaches p (1 = off). */
  readonly topP?: number;
  /** Keep tokens whose probability is at least minP × the top probability (0 = off). */
  readonly minP?: number;
  /** Seed of the sampler's own generator: the same seed gives the same tokens. */
  readonly seed?: number;
}

/** Picks the next token from (processed) logits. Owns its random state; never touches the model. */
export type Sampler = (logits: Float32Array) => number;

/** Index of the largest value (the first on ties); NaN is never chosen over a number. */
export function argmax(x: Float32Array): number {
  let best = 0;
  let bestV = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < x.length; i++) {
    const v = x[i];
    if (v > bestV) {
      bestV = v;
      best = i;
    }
  }
  return best;
}

function checkRange(name: string, v: number, lo: number, hi: number): void {
  if (!Number.isFinite(v) || v < lo || v > hi)
    throw new RangeError(`${name} must be in [${lo}, ${hi}], got ${v}`);
}

/**
 * Builds a sampler. With temperature 0 it is argmax. Otherwise the logits are divided by the temperature, turned into
 * probabilities, filtered by top-k, then top-p, then min-p (each relative to what survives), renormalised, and one
 * token is drawn with the seeded generator.
 */
export function makeSampler(opts: SamplerOptions = {}): Sampler {
  const temperature = opts.temperature ?? 0;
  const topK = opts.topK ?? 0;
  const topP = opts.topP ?? 1;
  const minP = opts.minP ?? 0;
  checkRange('temperature', temperature, 0, 100);
  checkRange('top-p', topP, 0, 1);
  checkRange('min-p', minP, 0, 1);
  if (!Number.isSafeInteger(topK) || topK < 0)
    throw new RangeError(`top-k must be a non-negative integer, got ${topK}`);
  if (opts.seed !== undefined && (!Number.isSafeInteger(opts.seed) || opts.seed < 0)) {
    throw new RangeError(`seed must be a non-negative integer, got ${opts.seed}`);
  }
  if (temperature === 0) return argmax;
  const rng = new Random(opts.seed);
  let probs = new Float64Array(0);
  let order = new Int32Array(0);
  return (logits) => {
    const n = logits.length;
    if (probs.length !== n) {
      probs = new Float64Array(n);
      order = new Int32Array(n);
    }
    let max = Number.NEGATIVE_INFINITY;
    for (let i = 0; i < n; i++) if (logits[i] > max) max = logits[i];
    let sum = 0;
    for (let i = 0; i < n; i++) {
      const p = Math.exp((logits[i] - max) / temperature);
      probs[i] = p;
      sum += p;
    }
    for (let i = 0; i < n; i++) probs[i] /= sum;
    let count = n;
    if (topK > 0 || topP < 1 || minP > 0) {
      for (let i = 0; i < n; i++) order[i] = i;
      const sorted = order.subarray(0, n).sort((a, b) => probs[b] - probs[a] || a - b);
      count = topK > 0 ? Math.min(topK, n) : n;
      if (topP < 1) {
        let mass = 0;
        for (let i = 0; i < count; i++) mass += probs[sorted[i]];
        let cum = 0;
        for (let i = 0; i < count; i++) {
          cum += probs[sorted[i]];
          if (cum >= topP * mass) {
            count = i + 1;
            break;
          }
        }
      }
      if (minP > 0) {
        const floor = minP * probs[sorted[0]];
        let keep = 0;
        while (keep < count && probs[sorted[keep]] >= floor) keep++;
        count = Math.max(1, keep);
      }
      let kept = 0;
      for (let i = 0; i < count; i++) kept += probs[sorted[i]];
      let u = rng.next() * kept;
      for (let i = 0; i < count; i++) {
        u -= probs[sorted[i]];
        if (u < 0) return sorted[i];
      }
      return sorted[count - 1];
    }
    let u = rng.next();
    for (let i = 0; i < n; i++) {
      u -= probs[i];
      if (u < 0) return i;
    }
    return argmax(logits);
  };
}

export interface LogitsProcessorOptions {
  /** Penalty > 1 discourages tokens seen in the last `repetitionContextSize` tokens (prompt included). */
  readonly repetitionPenalty?: number;
  /** How many recent tokens the repetition penalty looks at (default 20). */
  readonly repetitionContextSize?: number;
  /** Added to the logits of the given token ids. */
  readonly logitBias?: Readonly<Record<number, number>>;
}

/** Changes logits in place before sampling, given every token so far (prompt and generated). */
export type LogitsProcessor = (tokens: ArrayLike<number>, logits: Float32Array) => void;

/**
 * The processors for the options, in the order they run: logit bias, then repetition penalty. The penalty looks at the
 * whole token history (prompt and generated), so it is the same whether or not part of the prompt came from a cache.
 */
export function makeLogitsProcessors(opts: LogitsProcessorOptions = {}): LogitsProcessor[] {
  const out: LogitsProcessor[] = [];
  if (opts.logitBias && Object.keys(opts.logitBias).length > 0) {
    const entries = Object.entries(opts.logitBias).map(([k, v]) => {
      const id = Number(k);
      if (!Number.isSafeInteger(id) || id < 0 || !Number.isFinite(v))
        throw new RangeError(`bad logit bias ${k}: ${v}`);
      return [id, v] as const;
    });
    out.push((_tokens, logits) => {
      for (const [id, v] of entries) {
        if (id >= logits.length)
          throw new RangeError(`logit bias token id ${id} is outside the vocabulary (${logits.length})`);
        logits[id] += v;
      }
    });
  }
  const penalty = opts.repetitionPenalty ?? 1;
  if (!Number.isFinite(penalty) || penalty <= 0)
    throw new RangeError(`repetition penalty must be positive, got ${penalty}`);
  if (penalty !== 1) {
    const ctx = opts.repetitionContextSize ?? 20;
    if (!Number.isSafeInteger(ctx) || ctx < 1)
      throw new RangeError(`repetition context size must be ≥ 1, got ${ctx}`);
    const seen = new Set<number>();
    out.push((tokens, logits) => {
      seen.clear();
      for (let i = Math.max(0, tokens.length - ctx); i < tokens.length; i++) seen.add(tokens[i]);
      for (const id of seen) {
        if (id < 0 || id >= logits.length) continue;
        const l = logits[id];
        logits[id] = l < 0 ? l * penalty : l / penalty;
      }
    });
  }
  return out;
}
