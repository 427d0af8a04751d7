import { getHeapStatistics } from 'node:v8';
import { describe, expect, it } from 'vitest';
import { checkSteadyStateKvMemory, checkSteadyStateMemory } from '../conformance/memory';
import { createReferenceBackend } from '../reference/backend';
import { createWasmBackend } from './backend';

const gc = (globalThis as { gc?: () => void }).gc;
const heapUsed = () => getHeapStatistics().used_heap_size;

// The check itself tells a per-call allocation from V8's one-off heap noise (see conformance/steady-state.ts); the
// backends that allocate a little per call and must fail it are in conformance/broken.test.ts.
describe('steady-state memory', () => {
  it('a decode-like loop on the wasm backend allocates nothing on the JS heap', async () => {
    if (!gc)
      process.stderr.write('[mnemo tests] --expose-gc unavailable: measuring the heap without a forced gc\n');
    const b = await createWasmBackend({ threads: 1 });
    checkSteadyStateMemory(b, { heapUsed, gc });
    expect(b.memoryInUse()).toBe(0);
  });

  it('so does the same loop with two threads and every weight split across them', async () => {
    const b = await createWasmBackend({ threads: 2, shardMinBytes: 0 });
    try {
      checkSteadyStateMemory(b, { heapUsed, gc });
      expect(b.memoryInUse()).toBe(0);
    } finally {
      b.dispose();
    }
  });

  it('so do writeKv and attention over KV storage of every format (rings), with one thread and with two', async () => {
    for (const threads of [1, 2]) {
      const b = await createWasmBackend({ threads, shardMinBytes: 0 });
      try {
        checkSteadyStateKvMemory(b, { heapUsed, gc });
        expect(b.memoryInUse()).toBe(0);
      } finally {
        b.dispose();
      }
    }
  });

  it('the same check fails on the reference backend, which allocates scratch arrays per op', async () => {
    const b = await createReferenceBackend();
    // about 1 KB per step: shorter windows are plenty (and this backend is slow)
    expect(() => checkSteadyStateMemory(b, { heapUsed, gc, iterations: 250, warmup: 500 })).toThrow(
      /an op allocates per call/,
    );
    expect(() => checkSteadyStateKvMemory(b, { heapUsed, gc, iterations: 250, warmup: 500 })).toThrow(
      /an op allocates per call/,
    );
  });
});
