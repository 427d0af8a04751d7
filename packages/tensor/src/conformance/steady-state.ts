/**
 * Whether a loop allocates on the JS heap per step, told apart from the heap noise of a healthy one.
 *
 * The JS heap of a loop that allocates nothing still moves: V8 finishes compiling a hot function (tens of KB; a new
 * code page shows up as a jump of about 256 KiB), deoptimizes one when a branch first taken late (a worker thread
 * slowed down by a busy machine) runs its callers unoptimized for a few hundred steps, and garbage collection makes
 * it shrink. These are one-off events, and on a loaded machine they keep coming for many thousand steps, because the
 * compiler's background thread gets little CPU. An allocation per step is different: every stretch of steps grows
 * the heap in proportion to its length.
 *
 * So the loop runs in pairs of windows of n and 2n steps, each split into {@link SAMPLES} equal parts whose heap
 * growth is read (the same number of `heapUsed()` calls in both windows, so that their own cost cancels). A pair
 * shows a leak when:
 * - the median part of the 2n-step window grew more than the median part of the n-step window, by more than `budget`
 *   per n steps in all (a one-off event, or a collection, changes one part, not the median);
 * - or, with `gc`, the windows left more reachable than `budget` per n steps, in the median of their
 *   {@link SEGMENTS} segments each (the heap right after a full collection at the segments' ends): objects kept per
 *   step are soon allocated straight in the old generation, whose size moves in blocks of many kilobytes rather
 *   than per object, which can hide them from the parts — while compiled code, which also stays reachable, comes in
 *   one-off lumps that change one segment, not the median;
 * - or both windows grew by more than {@link LARGE} × `budget` per n steps (4 MB per 1000 steps with the default
 *   budget), summed over the parts in which the heap did not
 *   shrink: large allocations make the collector run in most parts, which blurs the medians.
 *
 * Each pair votes and most pairs decide; the first majority ends the measurement.
 */

/** How {@link measureSteadyState} measures. */
export interface SteadyStateOptions {
  /** Current JS heap usage in bytes, e.g. `() => v8.getHeapStatistics().used_heap_size`. */
  heapUsed(): number;
  /**
   * Forces a full garbage collection (`globalThis.gc` under `--expose-gc`): before each window, and to measure what
   * the loop keeps reachable. Without it, objects kept per step can go unnoticed.
   */
  gc?: () => void;
  /** Steps of the shorter window of a pair, n (default 1000; at least 100). */
  iterations?: number;
  /**
   * Largest allowed growth per `iterations` steps, in bytes (default 8 per step: 8000 for 1000 steps). One small
   * object per step (16 bytes or more) exceeds it.
   */
  budget?: number;
  /** Pairs of windows measured at most; the verdict of most of them counts (default 5; an even count is raised by 1). */
  rounds?: number;
  /**
   * Steps run before measuring (default 2000). Then windows of n steps run until two in a row grow alike (at most
   * {@link MAX_SETTLE} more), so that the measurement starts once the heap has settled.
   */
  warmup?: number;
}

/** What {@link measureSteadyState} found. */
export interface SteadyStateReport {
  /** Whether most pairs of windows showed an allocation per step. */
  readonly leaks: boolean;
  /**
   * Median over the pairs of how much more the heap grew over 2n steps than over n steps (from the median parts),
   * in bytes: the loop's allocation per n steps (0 or a few bytes either side for a loop that allocates nothing).
   */
  readonly growth: number;
  /**
   * With `gc`: median over the pairs of what their segments left reachable, in bytes per n steps (the median segment
   * of each pair); NaN without `gc`.
   */
  readonly retained: number;
  /** Median over the pairs of the n-step window's growth summed over its parts, in bytes (includes measuring). */
  readonly windowGrowth: number;
  /** Pairs measured (fewer than `rounds` once most agreed). */
  readonly pairs: number;
  /** Pairs that showed a leak. */
  readonly leakingPairs: number;
  readonly iterations: number;
  readonly budget: number;
}

/** Parts of a window whose heap growth is read (the same count for both lengths). */
export const SAMPLES = 12;
/** With `gc`: segments of a window after each of which a full collection measures what stays reachable. */
export const SEGMENTS = 3;
/** Windows of n steps run after the warm-up, at most, until two in a row grow alike. */
export const MAX_SETTLE = 4;
/**
 * A window that grows by more than this many times `budget` per n steps in its parts counts as leaking. The sum over
 * the parts that grew also counts garbage the collector later took back, and on a loaded machine a healthy loop's
 * window collects a few hundred KB of it (V8's own work, the test runner's messages): 16 × budget (128 KB per 1000
 * steps) failed an intact backend about once in ten CI runs. Allocations of a few KB per step or less are caught by
 * the medians; this criterion is for the large ones (32 KB per step sums to several MB), where collections in most
 * parts blur the medians.
 */
export const LARGE = 512;

function positiveInt(what: string, v: unknown, min: number): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min)
    throw new RangeError(`checkSteadyStateMemory: ${what} must be an integer >= ${min}, got ${String(v)}`);
  return v;
}

function median(xs: ArrayLike<number>): number {
  const s = Array.from(xs).sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** One window's measurements. */
interface Window {
  /** SAMPLES × the median part's growth: the window's growth without one-off events. */
  readonly typical: number;
  /** Growth summed over the parts in which the heap did not shrink. */
  readonly summed: number;
}

/**
 * Runs `step(i)` (i counts up from 0 across the whole measurement) in a warm-up and then in pairs of windows, and
 * reports whether the JS heap grows with the number of steps (see the module comment). Throws only on bad options.
 */
export function measureSteadyState(step: (i: number) => void, opts: SteadyStateOptions): SteadyStateReport {
  if (typeof opts?.heapUsed !== 'function')
    throw new TypeError(
      'checkSteadyStateMemory: opts.heapUsed must be a function returning the heap size in bytes',
    );
  const n = positiveInt('iterations', opts.iterations ?? 1000, 100);
  const budget = opts.budget ?? 8 * n;
  if (typeof budget !== 'number' || !(budget > 0) || !Number.isFinite(budget))
    throw new RangeError(
      `checkSteadyStateMemory: budget must be a positive number of bytes, got ${String(budget)}`,
    );
  const rounds = positiveInt('rounds', opts.rounds ?? 5, 1) | 1;
  const warmup = positiveInt('warmup', opts.warmup ?? 2000, 0);
  const heapUsed = opts.heapUsed;
  const gc = opts.gc;

  let at = 0;
  const parts = new Float64Array(SAMPLES);
  const perSegment = SAMPLES / SEGMENTS;
  /** The heap right after the latest full collection (NaN without gc). */
  let live = Number.NaN;
  const collect = (): void => {
    if (!gc) return;
    gc();
    live = heapUsed();
  };
  /**
   * Runs `steps` steps and measures them; with gc, a full collection ends each segment, and what each left reachable
   * goes to `kept` (in bytes per n steps).
   */
  const window = (steps: number, kept: number[] | null): Window => {
    let part = 0;
    let mark = Math.round(steps / SAMPLES);
    let segmentStart = 0;
    let last = heapUsed();
    for (let i = 1; i <= steps; i++) {
      step(at++);
      if (i === mark) {
        const now = heapUsed();
        parts[part++] = now - last;
        last = now;
        mark = Math.round(((part + 1) * steps) / SAMPLES);
        if (gc && part % perSegment === 0) {
          const before = live;
          collect();
          kept?.push(((live - before) * n) / (i - segmentStart));
          segmentStart = i;
          last = heapUsed();
        }
      }
    }
    let summed = 0;
    for (let p = 0; p < SAMPLES; p++) if (parts[p]! > 0) summed += parts[p]!;
    return { typical: SAMPLES * median(parts), summed };
  };

  for (let i = 0; i < warmup; i++) step(at++);
  collect();
  let previous = window(n, null).summed;
  for (let w = 0; w < MAX_SETTLE; w++) {
    const g = window(n, null).summed;
    const settled = Math.abs(g - previous) <= budget;
    previous = g;
    if (settled) break;
  }

  const majority = (rounds >> 1) + 1;
  const growth: number[] = [];
  const retained: number[] = [];
  const summed: number[] = [];
  let leaking = 0;
  while (leaking < majority && growth.length - leaking < majority) {
    // alternate which length comes first, so that neither always runs right after the other
    let short: Window;
    let long: Window;
    const kept: number[] = [];
    if (growth.length % 2 === 0) {
      short = window(n, kept);
      long = window(2 * n, kept);
    } else {
      long = window(2 * n, kept);
      short = window(n, kept);
    }
    const keptRate = gc ? median(kept) : Number.NaN;
    growth.push(long.typical - short.typical);
    retained.push(keptRate);
    summed.push(short.summed);
    const grows = long.typical - short.typical > budget;
    const keeps = keptRate > budget;
    const large = short.summed > LARGE * budget && long.summed > 2 * LARGE * budget;
    if (grows || keeps || large) leaking++;
  }
  return {
    leaks: leaking >= majority,
    growth: median(growth),
    retained: gc ? Math.round(median(retained)) : Number.NaN,
    windowGrowth: median(summed),
    pairs: growth.length,
    leakingPairs: leaking,
    iterations: n,
    budget,
  };
}
