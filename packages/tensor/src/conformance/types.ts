import type { Backend } from '../backend';

export type ConformanceGroup = 'memory' | 'ops' | 'invariance' | 'validation';

/**
 * One conformance check. `run` throws a descriptive error on a mismatch. `backend` is under test, `reference` is the
 * JS reference backend, and `other` (when given) is a second instance of the backend under test, used to check that
 * tensors of one instance are refused by another.
 */
export interface ConformanceCase {
  readonly name: string;
  readonly group: ConformanceGroup;
  run(backend: Backend, reference: Backend, other?: Backend): void | Promise<void>;
}
