import { getHeapStatistics } from 'node:v8';
import { describe, expect, it } from 'vitest';
import { checkSteadyStateMemory } from '../conformance/memory';
import { createReferenceBackend } from '../reference/backend';
import { createWasmBackend } from './backend';

const gc = (globalThis as { gc?: () => void }).gc;
const heapUsed = () => getHeapStatistics().used_heap_size;

describe('steady-state memory', () => {
  it('a decode-like loop of 2000 steps on the wasm backend allocates (almost) nothing on the JS heap', async () => {
    if (!gc)
      process.stderr.write('[mnemo tests] --expose-gc unavailable: measuring the heap without a forced gc\n');
    const b = await createWasmBackend({ threads: 1 });
    const grew = checkSteadyStateMemory(b, { heapUsed, gc, iterations: 2000, budget: 200_000 });
    expect(grew).toBeLessThan(200_000);
    expect(b.memoryInUse()).toBe(0);
  });

  it('so does the same loop with two threads and every weight split across them', async () => {
    const b = await createWasmBackend({ threads: 2, shardMinBytes: 0 });
    const grew = checkSteadyStateMemory(b, { heapUsed, gc, iterations: 2000, budget: 200_000 });
    expect(grew).toBeLessThan(200_000);
    expect(b.memoryInUse()).toBe(0);
    b.dispose();
  });

  it('the same check fails on the reference backend, which allocates scratch arrays per op', async () => {
    const b = await createReferenceBackend();
    expect(() => checkSteadyStateMemory(b, { heapUsed, gc, iterations: 2000 })).toThrow(
      /an op allocates per call/,
    );
  });
});
