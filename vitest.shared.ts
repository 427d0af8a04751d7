import { tmpdir } from 'node:os';
import { join } from 'node:path';
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
    // Remembered weight digests (and any other mnemo cache) of test runs go to a temporary folder, never the home
    // folder's ~/.cache/mnemo; CLI runs spawned by the tests inherit it.
    env: { MNEMO_CACHE_DIR: process.env.MNEMO_CACHE_DIR ?? join(tmpdir(), 'mnemo-tests-cache') },
  },
});
