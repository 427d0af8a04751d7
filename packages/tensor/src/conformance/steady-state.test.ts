/**
 * The steady-state measurement on synthetic loops: one small object per step is a leak, with or without a forced
 * collection before each window, and so are large allocations; a loop that allocates nothing passes even when one
 * window sees a one-off jump (a new code page) or a few hundred steps that allocate (a function running
 * unoptimized after a deoptimization).
 */
import { getHeapStatistics } from 'node:v8';
import { describe, expect, it } from 'vitest';
import { measureSteadyState } from './steady-state';

const gc = (globalThis as { gc?: () => void }).gc;
const heapUsed = () => getHeapStatistics().used_heap_size;

/** Where a loop's allocations go, so that the compiler cannot leave them out. */
const sink: { last: unknown; kept: unknown[] } = { last: null, kept: [] };

// With the defaults the measurement starts after 2000 warm-up steps and 2 to 5 windows of 1000 steps; the first pair
// is then [4000, 5000) + [5000, 7000) when the heap settles at once, as it does for these loops.
const IN_FIRST_PAIR = 5500;

describe('measureSteadyState', () => {
  it('passes a loop that allocates nothing', () => {
    const r = measureSteadyState(
      (i) => {
        sink.last = i;
      },
      { heapUsed, gc },
    );
    expect(r.leaks).toBe(false);
  });

  it('fails a loop that allocates one small object per step', () => {
    const r = measureSteadyState(
      (i) => {
        sink.last = { i };
      },
      { heapUsed, gc },
    );
    expect(r.leaks).toBe(true);
    expect(r.growth).toBeGreaterThanOrEqual(16 * r.iterations);
  });

  it('fails it without a forced collection too', () => {
    const r = measureSteadyState(
      (i) => {
        sink.last = { i };
      },
      { heapUsed },
    );
    expect(r.leaks).toBe(true);
  });

  it('fails a loop that keeps one small object per step', () => {
    sink.kept = [];
    const r = measureSteadyState(
      (i) => {
        sink.kept.push({ i });
      },
      { heapUsed, gc },
    );
    sink.kept = [];
    expect(r.leaks).toBe(true);
    if (gc) expect(r.retained).toBeGreaterThanOrEqual(16 * r.iterations);
  });

  it('fails a loop that allocates a lot per step, however often the collector runs', () => {
    for (const collect of [gc, undefined]) {
      const r = measureSteadyState(
        (i) => {
          sink.last = new Float64Array(4096 + (i % 7));
        },
        { heapUsed, gc: collect, iterations: 200, warmup: 200 },
      );
      expect(r.leaks).toBe(true);
    }
  });

  it('passes a loop whose heap jumps once (a new code page)', () => {
    const r = measureSteadyState(
      (i) => {
        if (i === IN_FIRST_PAIR) sink.kept = [new Array(40_000).fill(i)];
        sink.last = i;
      },
      { heapUsed, gc },
    );
    sink.kept = [];
    expect(r.leaks).toBe(false);
  });

  it('passes a loop that allocates for a few hundred steps once (code running unoptimized for a while)', () => {
    const r = measureSteadyState(
      (i) => {
        sink.last = i >= IN_FIRST_PAIR && i < IN_FIRST_PAIR + 700 ? new Float64Array(60) : i;
      },
      { heapUsed, gc },
    );
    expect(r.leaks).toBe(false);
  });

  it('passes a loop that keeps a lump now and then (compiled code stays reachable)', () => {
    sink.kept = [];
    const r = measureSteadyState(
      (i) => {
        if (i % 1700 === 0) sink.kept.push(new Float64Array(3000));
        sink.last = i;
      },
      { heapUsed, gc },
    );
    sink.kept = [];
    expect(r.leaks).toBe(false);
  });

  it('stops at the first majority and measures at most `rounds` pairs', () => {
    const clean = measureSteadyState(() => {}, { heapUsed, gc, rounds: 5 });
    expect(clean.pairs).toBe(3);
    const leaky = measureSteadyState(
      (i) => {
        sink.last = { i };
      },
      { heapUsed, gc, rounds: 4 },
    );
    expect(leaky.pairs).toBe(3); // 4 is raised to 5 pairs, of which 3 decide
  });

  it('rejects bad options', () => {
    expect(() => measureSteadyState(() => {}, { heapUsed, iterations: 10 })).toThrow(RangeError);
    expect(() => measureSteadyState(() => {}, { heapUsed, budget: 0 })).toThrow(RangeError);
    expect(() => measureSteadyState(() => {}, { heapUsed, rounds: 0 })).toThrow(RangeError);
    expect(() => measureSteadyState(() => {}, { heapUsed: 5 as unknown as () => number })).toThrow(TypeError);
  });
});
