import { defineConfig, mergeConfig } from 'vitest/config';
import shared from '../../vitest.shared.ts';

// --expose-gc lets the steady-state memory test collect garbage before measuring the heap.
export default mergeConfig(shared, defineConfig({ test: { execArgv: ['--expose-gc'] } }));
