// Test-only: starts src/testing/attach-worker.ts in a real worker thread (bundled with tsup, as
// packages/tensor does for its workers, since a worker cannot load TypeScript sources).
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { build } from 'tsup';
import type { AttachInit, AttentionHeadsArgs, Reply } from './attach-worker';

let source: Promise<string> | undefined;

async function bundle(): Promise<string> {
  const here = dirname(fileURLToPath(import.meta.url));
  const tmp = mkdtempSync(join(tmpdir(), 'mnemo-kernels-worker-'));
  try {
    await build({
      config: false,
      silent: true,
      entry: { worker: join(here, 'attach-worker.ts') },
      outDir: tmp,
      format: ['cjs'],
      platform: 'node',
      target: 'node20',
      bundle: true,
      dts: false,
      sourcemap: false,
    });
    return readFileSync(join(tmp, 'worker.cjs'), 'utf8');
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

/** A worker attached to `init.memory`; `run` resolves when its `attentionHeads` call returns. */
export interface AttachedWorker {
  run(args: AttentionHeadsArgs): Promise<void>;
  close(): Promise<void>;
}

function toError(r: Reply & { ok: false }): Error {
  const E = r.name === 'RangeError' ? RangeError : r.name === 'TypeError' ? TypeError : Error;
  return new E(r.message);
}

/** Starts a worker and waits until it has attached (rejects with the worker's error if attaching throws). */
export async function startAttachedWorker(init: AttachInit): Promise<AttachedWorker> {
  source ??= bundle();
  const worker = new Worker(await source, { eval: true, workerData: init });
  const pending = new Map<number, { resolve: () => void; reject: (e: Error) => void }>();
  let next = 1;
  worker.on('message', (r: Reply) => {
    const p = pending.get(r.id);
    pending.delete(r.id);
    if (r.ok) p?.resolve();
    else p?.reject(toError(r));
  });
  worker.on('error', (e) => {
    for (const p of pending.values()) p.reject(e);
    pending.clear();
  });
  const call = (id: number) => new Promise<void>((resolve, reject) => pending.set(id, { resolve, reject }));
  try {
    await call(0);
  } catch (e) {
    await worker.terminate();
    throw e;
  }
  return {
    run(args) {
      const id = next++;
      const done = call(id);
      worker.postMessage({ id, args });
      return done;
    },
    async close() {
      await worker.terminate();
    },
  };
}
