/**
 * Entry of the model worker thread (bundled into `generated/worker-source.ts` by scripts/build-worker.mjs): loads the
 * model, opens the disk tier, then runs the jobs the HTTP side sends, one at a time.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { LM } from '@mnemo/lm';
import { BLOCK_TOKENS, scopeOf } from '../cache/prefix';
import type { FromWorker, ModelInfo, ToWorker, WorkerInit } from '../protocol';
import { DiskTier } from './disk-tier';
import { MemoryTier } from './memory-tier';
import { Runner } from './runner';

const port = parentPort!;
const post = (m: FromWorker, transfer?: ArrayBuffer[]) => port.postMessage(m, transfer ?? []);

async function main(init: WorkerInit): Promise<void> {
  const lm = await LM.load(init.model, {
    ...(init.load.backendName ? { backendName: init.load.backendName } : {}),
    ...(init.load.threads !== undefined ? { threads: init.load.threads } : {}),
    ...(init.load.int8Activations ? { int8Activations: true } : {}),
  });
  const info: ModelInfo = {
    dir: lm.loaded.dir,
    fingerprint: lm.fingerprint,
    tokenizerFingerprint: lm.tokenizerFingerprint,
    numerics: lm.numerics,
    scope: scopeOf({
      modelFingerprint: lm.fingerprint,
      tokenizerFingerprint: lm.tokenizerFingerprint,
      numerics: lm.numerics,
      cacheKind: 'standard',
    }),
    vocabSize: lm.model.vocabSize,
    maxPositionEmbeddings: lm.model.maxPositionEmbeddings,
    numLayers: lm.model.numLayers,
    weightBytes: lm.model.weightBytes,
    modelType: lm.model.modelType,
  };
  const block = init.cache.blockTokens || BLOCK_TOKENS;
  const log = (level: 'debug' | 'info' | 'warn', msg: string, data?: Record<string, unknown>) =>
    post({ type: 'log', level, msg, ...(data ? { data } : {}) });
  const disk =
    init.cache.dir === null ? null : await DiskTier.open(init.cache.dir, init.cache.diskBytes, block, log);
  const memory = new MemoryTier(init.cache.memoryBytes, block);
  const runner = new Runner(lm, init, info, memory, disk, post);

  // Jobs run strictly one after another; the HTTP side sends the next one only after `free`, but a queue here keeps
  // that true whatever arrives.
  const jobs: Extract<ToWorker, { type: 'job' }>[] = [];
  let busy = false;
  const pump = async () => {
    if (busy) return;
    busy = true;
    try {
      for (let j = jobs.shift(); j; j = jobs.shift()) await runner.run(j.id, j.tokens, j.params);
    } finally {
      busy = false;
    }
  };
  port.on('message', (m: ToWorker) => {
    if (m.type === 'job') {
      jobs.push(m);
      void pump();
    } else if (m.type === 'redis-reply') runner.redisReply(m);
    else if (m.type === 'stop') {
      const wait = async () => {
        while (busy) await new Promise((r) => setTimeout(r, 5));
        memory.clear();
        lm.free();
        port.close();
      };
      void wait();
    }
  });
  post({ type: 'ready', info, stats: runner.stats() });
}

main(workerData as WorkerInit).catch((e: unknown) => {
  post({ type: 'fatal', message: e instanceof Error ? e.message : String(e) });
});
