import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/** One greedy step of a float64 reference run. */
export interface ReferenceStep {
  readonly token: number;
  /** top1 − top2 logit gap (equal to the logprob gap). */
  readonly margin: number;
  /** The five most likely `[id, logprob]`. */
  readonly top: ReadonlyArray<readonly [number, number]>;
}

export interface ReferenceCase {
  readonly prompt: string;
  readonly prompt_tokens: readonly number[];
  readonly steps: readonly ReferenceStep[];
}

export interface Reference {
  readonly cases: readonly ReferenceCase[];
}

/** Reads `expected.json` of a checkpoint folder. */
export function readReference(dir: string): Reference {
  return JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8')) as Reference;
}

/** What a runtime produced for one case: generated ids and, per step, the logprob of the generated token. */
export interface Produced {
  readonly tokens: readonly number[];
  readonly logprobs: readonly number[];
}

/**
 * Compares a greedy run with the reference: each generated token must be the reference token with its logprob within
 * `tol`, except at a step where the reference margin is below `tol` — there either token is fine, and the comparison
 * ends (the continuations legitimately diverge). Returns the problems found (empty = agreement) and the steps compared.
 */
export function compareWithReference(
  ref: ReferenceCase,
  got: Produced,
  tol = 2e-3,
  /** Ids that end a run: a run that stopped exactly where the reference generated one of them is complete. */
  eosIds: readonly number[] = [],
): { problems: string[]; compared: number } {
  const problems: string[] = [];
  let compared = 0;
  for (let i = 0; i < ref.steps.length; i++) {
    const step = ref.steps[i]!;
    if (i >= got.tokens.length) {
      if (eosIds.includes(step.token)) break;
      problems.push(
        `step ${i}: run stopped after ${got.tokens.length} tokens, reference has ${ref.steps.length}`,
      );
      break;
    }
    compared++;
    const token = got.tokens[i]!;
    const lp = got.logprobs[i]!;
    if (token !== step.token) {
      if (step.margin < tol) {
        const alt = step.top.find(([id]) => id === token);
        if (!alt) problems.push(`step ${i}: token ${token} is not among the reference's top tokens`);
        else if (Math.abs(alt[1] - lp) > tol)
          problems.push(`step ${i}: logprob ${lp} vs reference ${alt[1]} for token ${token}`);
        break;
      }
      problems.push(`step ${i}: token ${token}, reference ${step.token} (margin ${step.margin})`);
      break;
    }
    const want = step.top[0]![1];
    if (!(Math.abs(want - lp) <= tol))
      problems.push(`step ${i}: logprob ${lp} vs reference ${want} (token ${token})`);
  }
  return { problems, compared };
}
