// Test-only worker entry (bundled by src/testing/worker.ts): attaches to the shared memory it is given and runs
// `attentionHeads` jobs, replying `{ id, ok }` or `{ id, ok: false, name, message }`.
import { parentPort, workerData } from 'node:worker_threads';
import { attachKernels, type KernelsView } from '../shared';

export interface AttachInit {
  memory: WebAssembly.Memory;
  stackTop: number;
  stackBytes: number;
}

/** The 15 arguments of `KernelsView.attentionHeads`. */
export type AttentionHeadsArgs = Parameters<KernelsView['attentionHeads']>;

export type Reply = { id: number; ok: true } | { id: number; ok: false; name: string; message: string };

const port = parentPort!;
const init = workerData as AttachInit;

function fail(id: number, e: unknown): Reply {
  return e instanceof Error
    ? { id, ok: false, name: e.name, message: e.message }
    : { id, ok: false, name: 'Error', message: String(e) };
}

attachKernels(init.memory, init.stackTop, init.stackBytes).then(
  (view) => {
    port.on('message', (m: { id: number; args: AttentionHeadsArgs }) => {
      try {
        view.attentionHeads(...m.args);
        port.postMessage({ id: m.id, ok: true } satisfies Reply);
      } catch (e) {
        port.postMessage(fail(m.id, e));
      }
    });
    port.postMessage({ id: 0, ok: true } satisfies Reply);
  },
  (e: unknown) => port.postMessage(fail(0, e)),
);
