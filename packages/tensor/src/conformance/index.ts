/**
 * `@mnemo/tensor/conformance`: the backend conformance suite. Every Backend implementation (reference, WASM, Metal,
 * third-party) must pass it. Framework-agnostic: run the cases yourself ({@link conformanceCases},
 * {@link runConformance}) or hand your test framework's `describe`/`it` to {@link defineConformanceTests}. A backend
 * that computes with several threads also runs {@link checkThreadInvariance} (results bitwise independent of the
 * thread count).
 */
import type { Backend, BackendFactory } from '../backend';
import { createReferenceBackend } from '../reference/backend';
import { attentionCases } from './attention';
import { ConformanceError } from './compare';
import { ggmlCases } from './ggml';
import { invarianceCases } from './invariance';
import { kvCases } from './kv';
import { memoryCases } from './memory';
import { opsCases } from './ops';
import { quantizedCases } from './quantized';
import type { ConformanceCase, ConformanceGroup } from './types';
import { validationCases } from './validation';

export { ConformanceError } from './compare';
export { checkSteadyStateKvMemory, checkSteadyStateMemory } from './memory';
export { measureSteadyState, type SteadyStateOptions, type SteadyStateReport } from './steady-state';
export {
  checkThreadInvariance,
  type ThreadedBackendFactory,
  type ThreadInvarianceOptions,
} from './threads';
export type { ConformanceCase, ConformanceGroup } from './types';

/** Wraps a case so that it also fails if it leaves `memoryInUse()` different from where it started. */
function withLeakCheck(c: ConformanceCase): ConformanceCase {
  return {
    name: c.name,
    group: c.group,
    async run(backend, reference, other) {
      const before = backend.memoryInUse();
      await c.run(backend, reference, other);
      const after = backend.memoryInUse();
      if (after !== before)
        throw new ConformanceError(
          `${c.name}: memoryInUse() went from ${before} to ${after} although every tensor was freed`,
        );
    },
  };
}

/** All conformance cases, in a stable order: memory, validation, ops, quantized and GGML ops, attention, KV storage, invariance. */
export function conformanceCases(): ConformanceCase[] {
  return [
    ...memoryCases(),
    ...validationCases(),
    ...opsCases(),
    ...quantizedCases(),
    ...ggmlCases(),
    ...attentionCases(),
    ...kvCases(),
    ...invarianceCases(),
  ].map(withLeakCheck);
}

export interface ConformanceResult {
  readonly name: string;
  readonly group: ConformanceGroup;
  /** Absent when the case passed. */
  readonly error?: Error;
}

/**
 * Runs every case (or those `filter` keeps) on backends from `factory` (two instances: the one under test and a second
 * for the foreign-tensor checks) against the JS reference, and returns one result per case. Disposes what it made.
 */
export async function runConformance(
  factory: BackendFactory,
  opts: { filter?: (c: ConformanceCase) => boolean } = {},
): Promise<ConformanceResult[]> {
  const [backend, other, reference] = await Promise.all([factory(), factory(), createReferenceBackend()]);
  const results: ConformanceResult[] = [];
  try {
    for (const c of conformanceCases()) {
      if (opts.filter && !opts.filter(c)) continue;
      try {
        await c.run(backend, reference, other);
        results.push({ name: c.name, group: c.group });
      } catch (e) {
        results.push({ name: c.name, group: c.group, error: e instanceof Error ? e : new Error(String(e)) });
      }
    }
  } finally {
    backend.dispose();
    other.dispose();
    reference.dispose();
  }
  return results;
}

/** The two functions of a test framework the adapter needs (vitest, jest, mocha and node:test all fit). */
export interface TestApi {
  describe(name: string, fn: () => void): unknown;
  it(name: string, fn: () => Promise<void>): unknown;
}

/**
 * Declares one test per conformance case, grouped by case group, under `describe(title)`. Backends are created on
 * first use: the backend under test and a second instance of it from `factory`, plus a JS reference.
 */
export function defineConformanceTests(
  api: TestApi,
  title: string,
  factory: BackendFactory,
  opts: { filter?: (c: ConformanceCase) => boolean } = {},
): void {
  let backends: Promise<[Backend, Backend, Backend]> | undefined;
  const get = () => {
    backends ??= Promise.all([factory(), factory(), createReferenceBackend()]);
    return backends;
  };
  const cases = conformanceCases().filter((c) => !opts.filter || opts.filter(c));
  const groups = [...new Set(cases.map((c) => c.group))];
  api.describe(title, () => {
    for (const group of groups)
      api.describe(group, () => {
        for (const c of cases.filter((k) => k.group === group))
          api.it(c.name, async () => {
            const [backend, other, reference] = await get();
            await c.run(backend, reference, other);
          });
      });
  });
}
