import { describe, it } from 'vitest';
import { createReferenceBackend } from '../reference/backend';
import { createWasmBackend } from '../wasm/backend';
import { createFakeKernels } from '../wasm/fake-kernels';
import { defineConformanceTests } from './index';

defineConformanceTests({ describe, it }, 'conformance: js (reference)', createReferenceBackend);
defineConformanceTests({ describe, it }, 'conformance: wasm on @mnemo/kernels, 1 thread', () =>
  createWasmBackend({ threads: 1 }),
);
// Two threads with every weight matrix (of at least 17 rows) split between the calling thread and a worker.
defineConformanceTests(
  { describe, it },
  'conformance: wasm on @mnemo/kernels, 2 threads, weights sharded',
  () => createWasmBackend({ threads: 2, shardMinBytes: 0 }),
);
// The opt-in int8-activation path (4-/8-bit quantized matmuls checked against the reference on the rounded inputs;
// every invariance case unchanged), single-threaded and with every weight split.
defineConformanceTests({ describe, it }, 'conformance: wasm, int8 activations, 1 thread', () =>
  createWasmBackend({ threads: 1, int8Activations: true }),
);
defineConformanceTests(
  { describe, it },
  'conformance: wasm, int8 activations, 2 threads, weights sharded',
  () => createWasmBackend({ threads: 2, shardMinBytes: 0, int8Activations: true }),
);
// The same backend on a JS double of the kernels whose memory grows at every allocation: checks the backend's
// pointer arithmetic and heap-view refresh independently of the Rust kernels.
defineConformanceTests(
  { describe, it },
  'conformance: wasm on fake kernels (memory grows on every alloc)',
  () => createWasmBackend(createFakeKernels({ growOnAlloc: true })),
);
