import { checkThreadInvariance, defineConformanceTests } from '@mnemo/tensor/conformance';
import { describe, expect, it } from 'vitest';
import { createNativeBackend, nativeLevels } from './index';

const levels = nativeLevels()
  .filter((l) => l.supported)
  .map((l) => l.name);
const best = levels[levels.length - 1]!;

describe('native addon', () => {
  it('builds and loads here, with a SIMD level this CPU runs', () => {
    expect(levels.length).toBeGreaterThan(1);
  });
});

// The whole suite on every ISA level this CPU runs (2 threads), exact and with int8 activations.
for (const isa of levels) {
  defineConformanceTests({ describe, it }, `conformance: native ${isa}, 2 threads`, () =>
    createNativeBackend({ isa, threads: 2 }),
  );
  defineConformanceTests({ describe, it }, `conformance: native ${isa}, int8 activations, 2 threads`, () =>
    createNativeBackend({ isa, threads: 2, int8Activations: true }),
  );
}
defineConformanceTests({ describe, it }, `conformance: native ${best}, 1 thread`, () =>
  createNativeBackend({ threads: 1 }),
);

describe('native: thread invariance', () => {
  it('gives bitwise the same results with 1, 2 and 3 threads (exact)', async () => {
    const n = await checkThreadInvariance((threads) => createNativeBackend({ threads }));
    expect(n).toBeGreaterThan(50);
  });
  it('gives bitwise the same results with 1, 2 and 3 threads (int8 activations)', async () => {
    await checkThreadInvariance((threads) => createNativeBackend({ threads, int8Activations: true }));
  });
});
