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
    // A timeout is a safety net against a hung test, not a speed check: CI runs on 2 cores shared with other work,
    // where the slowest tests (the plain-TypeScript backend on the deep preset, the CLI's prompt-cache round trips,
    // 10-40 s when the machine is idle) ran 2 minutes under load, past the former 60 s.
    testTimeout: 300_000,
    hookTimeout: 300_000,
    // Remembered weight digests (and any other mnemo cache) of test runs go to a temporary folder, never the home
    // folder's ~/.cache/mnemo; CLI runs spawned by the tests inherit it.
    env: { MNEMO_CACHE_DIR: process.env.MNEMO_CACHE_DIR ?? join(tmpdir(), 'mnemo-tests-cache') },
  },
});
