import { defineConfig } from 'vitest/config';

// Workspace packages export their TypeScript sources under the `mnemo-source` condition, so tests run
// against `src/` of every dependency without building it first.
export default defineConfig({
  resolve: { conditions: ['mnemo-source'] },
  ssr: { resolve: { conditions: ['mnemo-source'] } },
  test: {
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
