/**
 * How weight rows are split across wasm instances, and how many threads a set of weights needs when one instance is
 * capped (wasm32: 4 GiB).
 */

/**
 * Inner shard boundaries are multiples of this many rows. The kernels' per-row arithmetic does not depend on where a
 * block of rows starts, but aligned boundaries keep every row in the same position within its block either way.
 */
export const SHARD_ALIGN = 16;

/** Most threads a backend accepts. */
export const MAX_THREADS = 64;

/**
 * Row boundaries of `rows` rows over `parts` instances: `b[0] = 0 <= b[1] <= ... <= b[parts] = rows`, inner boundaries
 * multiples of {@link SHARD_ALIGN}, shards as even as the alignment allows (instance 0 never gets more than the rest).
 */
export function splitRows(rows: number, parts: number): number[] {
  const units = Math.ceil(rows / SHARD_ALIGN);
  const b = new Array<number>(parts + 1);
  for (let i = 0; i <= parts; i++) b[i] = Math.min(rows, Math.floor((i * units) / parts) * SHARD_ALIGN);
  b[parts] = rows;
  return b;
}

/** Number of instances with a non-empty shard. */
export function nonEmptyShards(bounds: readonly number[]): number {
  let n = 0;
  for (let i = 0; i + 1 < bounds.length; i++) if (bounds[i + 1]! > bounds[i]!) n++;
  return n;
}

/** A weight as the capacity planner sees it. */
export interface PlannedWeight {
  readonly rows: number;
  /** Bytes per row (all parts of a quantized weight together). */
  readonly rowBytes: number;
  /** Whether the backend shards it when it has more than one thread (else it stays whole on the calling thread). */
  readonly shardable: boolean;
}

/**
 * The smallest thread count in `(current, MAX_THREADS]` at which `weights` fit: every instance holds at most
 * `capacity` bytes, the calling thread's instance also `fixedMain` bytes of other data (activations, caches, small
 * tensors). `null` when no thread count is enough (the calling thread's part alone is too large).
 */
export function neededThreads(
  weights: readonly PlannedWeight[],
  fixedMain: number,
  capacity: number,
  current: number,
): number | null {
  for (let t = Math.max(1, current + 1); t <= MAX_THREADS; t++) {
    const load = new Float64Array(t);
    load[0] = fixedMain;
    for (const w of weights) {
      const b = w.shardable && t > 1 ? splitRows(w.rows, t) : [0, w.rows];
      for (let i = 0; i + 1 < b.length; i++) load[i] = load[i]! + (b[i + 1]! - b[i]!) * w.rowBytes;
    }
    if (load.every((x) => x <= capacity)) return t;
  }
  return null;
}
