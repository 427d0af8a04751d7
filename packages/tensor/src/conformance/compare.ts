/** Comparisons and tensor bookkeeping for the conformance suite; failures throw {@link ConformanceError}. */
import type { Backend } from '../backend';
import type { DType, QuantSpec } from '../dtype';
import type { GgmlBlockType, GgmlTensor } from '../ggml';
import type { QuantizedTensor, Tensor, Weight } from '../tensor';

/** A backend does not conform: the message says which case, op, element and values. */
export class ConformanceError extends Error {
  override name = 'ConformanceError';
}

/** Unit roundoff of f32 (half an ulp of 1). */
export const U = 2 ** -24;
/**
 * Relative error allowed for an f32 `exp` (about 64 ulp): kernels may use a polynomial approximation, but not a
 * coarse one (a bit-trick exp with ~1e-3 error fails).
 */
export const EXP_REL = 2 ** -17;
/** Absolute slack for results that underflow to (or near) zero. */
export const TINY = 1e-30;

function fmt(x: number): string {
  return Number.isNaN(x) ? 'NaN' : x.toPrecision(9);
}

/**
 * Checks `|actual[i] - expected[i]| <= tol[i]` for every i (NaN must match NaN). The error lists the first few
 * mismatches with their tolerances.
 */
export function expectClose(
  what: string,
  actual: Float32Array,
  expected: Float32Array,
  tol: Float64Array | number,
): void {
  if (actual.length !== expected.length)
    throw new ConformanceError(`${what}: ${actual.length} values, expected ${expected.length}`);
  const bad: string[] = [];
  let count = 0;
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i]!;
    const e = expected[i]!;
    const t = typeof tol === 'number' ? tol : tol[i]!;
    const ok = Number.isNaN(e) ? Number.isNaN(a) : Math.abs(a - e) <= t || a === e;
    if (!ok) {
      count++;
      if (bad.length < 4)
        bad.push(`[${i}] got ${fmt(a)}, expected ${fmt(e)} (tolerance ${t.toExponential(2)})`);
    }
  }
  if (count > 0)
    throw new ConformanceError(
      `${what}: ${count} of ${actual.length} values out of tolerance: ${bad.join('; ')}`,
    );
}

/** Checks two results are bit-for-bit identical (compared as f32 bit patterns). */
export function expectBitwise(what: string, actual: Float32Array, expected: Float32Array): void {
  if (actual.length !== expected.length)
    throw new ConformanceError(`${what}: ${actual.length} values, expected ${expected.length}`);
  const a = new Uint32Array(actual.buffer, actual.byteOffset, actual.length);
  const e = new Uint32Array(expected.buffer, expected.byteOffset, expected.length);
  let count = 0;
  let first = -1;
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== e[i]) {
      count++;
      if (first < 0) first = i;
    }
  }
  if (count > 0)
    throw new ConformanceError(
      `${what}: not bitwise identical: ${count} of ${a.length} values differ, first at [${first}]: ${fmt(actual[first]!)} vs ${fmt(expected[first]!)}`,
    );
}

export function expectBytes(what: string, actual: Uint8Array, expected: Uint8Array): void {
  if (actual.length !== expected.length)
    throw new ConformanceError(`${what}: ${actual.length} bytes, expected ${expected.length}`);
  for (let i = 0; i < actual.length; i++)
    if (actual[i] !== expected[i])
      throw new ConformanceError(`${what}: byte ${i} is ${actual[i]}, expected ${expected[i]}`);
}

export function expectEqual<T>(what: string, actual: T, expected: T): void {
  if (actual !== expected)
    throw new ConformanceError(`${what}: got ${String(actual)}, expected ${String(expected)}`);
}

/**
 * Checks `fn` throws a TypeError or RangeError whose message names `op` (not a wasm trap, not silence).
 */
export function expectRejects(what: string, op: string, fn: () => unknown): void {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  if (err === undefined) throw new ConformanceError(`${what}: expected ${op} to throw, but it returned`);
  if (!(err instanceof TypeError || err instanceof RangeError))
    throw new ConformanceError(
      `${what}: expected a TypeError or RangeError from ${op}, got ${(err as Error)?.constructor?.name}: ${(err as Error)?.message}`,
    );
  if (!err.message.includes(op))
    throw new ConformanceError(`${what}: the error does not name the op "${op}": ${err.message}`);
}

/** Tracks the tensors a case makes on one backend and frees them at the end. */
export class Scope {
  private readonly owned = new Set<Weight>();
  constructor(readonly backend: Backend) {}

  keep<T extends Weight>(t: T): T {
    this.owned.add(t);
    return t;
  }
  alloc(dtype: DType, shape: readonly number[]): Tensor {
    return this.keep(this.backend.alloc(dtype, shape));
  }
  upload(dtype: DType, shape: readonly number[], data: ArrayBufferView): Tensor {
    return this.keep(this.backend.upload(dtype, shape, data));
  }
  f32(shape: readonly number[], data: Float32Array): Tensor {
    return this.upload('f32', shape, data);
  }
  quantized(
    spec: QuantSpec,
    shape: readonly [number, number],
    parts: { packed: ArrayBufferView; scales: ArrayBufferView; biases: ArrayBufferView },
  ): QuantizedTensor {
    return this.keep(this.backend.uploadQuantized(spec, shape, parts.packed, parts.scales, parts.biases));
  }
  ggml(type: GgmlBlockType, shape: readonly [number, number], blocks: Uint8Array): GgmlTensor {
    return this.keep(this.backend.uploadGgml(type, shape, blocks));
  }
  /** Frees `t` now. */
  free(t: Weight): void {
    this.owned.delete(t);
    this.backend.free(t);
  }
  /** Forgets `t` (already freed by the case). */
  forget(t: Weight): void {
    this.owned.delete(t);
  }
  close(): void {
    for (const t of this.owned) this.backend.free(t);
    this.owned.clear();
  }
}

/** Runs `fn` with a scope on each backend, freeing everything afterwards. */
export async function scoped(
  backend: Backend,
  reference: Backend,
  fn: (b: Scope, r: Scope) => void | Promise<void>,
): Promise<void> {
  const b = new Scope(backend);
  const r = new Scope(reference);
  try {
    await fn(b, r);
  } finally {
    b.close();
    r.close();
  }
}
