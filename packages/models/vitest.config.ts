import { defineConfig, mergeConfig } from 'vitest/config';
import shared from '../../vitest.shared.ts';

// --expose-gc lets the decode steady-state test collect garbage before measuring the heap.
export default mergeConfig(shared, defineConfig({ test: { execArgv: ['--expose-gc'] } }));
