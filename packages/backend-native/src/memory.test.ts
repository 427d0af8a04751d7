import { getHeapStatistics } from 'node:v8';
import { checkSteadyStateMemory } from '@mnemo/tensor/conformance';
import { describe, expect, it } from 'vitest';
import { createNativeBackend } from './index';

// In a file of its own (a fresh worker): after the heavy suites V8 is still compiling in the background, which the
// heap measurement would count.
const heapUsed = () => getHeapStatistics().used_heap_size;
const gc = (globalThis as { gc?: () => void }).gc;

describe('native: steady-state memory', () => {
  for (const int8Activations of [false, true])
    it(`allocates nothing on the JS heap in a decode-like loop${int8Activations ? ' (int8 activations)' : ''}`, async () => {
      const b = await createNativeBackend({ threads: 2, int8Activations });
      try {
        const grew = checkSteadyStateMemory(b, { heapUsed, ...(gc ? { gc } : {}), rounds: 5 });
        expect(grew).toBeLessThanOrEqual(200_000);
      } finally {
        b.dispose();
      }
    });
});
