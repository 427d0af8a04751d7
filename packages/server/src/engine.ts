/**
 * The HTTP side's handle on the model worker: starts it, keeps the FIFO queue of requests (bounded: a full queue
 * refuses with QueueFullError), sends one job at a time, routes the worker's messages to each job, and raises the
 * cancel mark in the shared control block when a client goes away (the worker stops at its next prefill chunk or
 * decode step). The model never runs on this thread.
 */
import { Worker } from 'node:worker_threads';
import { WORKER_SOURCE } from './generated/worker-source';
import {
  type CacheReport,
  CTL,
  type FromWorker,
  type JobParams,
  type JobResult,
  type ModelInfo,
  PHASE_NAMES,
  type Tier,
  type TokenOut,
  type ToWorker,
  type WorkerInit,
  type WorkerStats,
} from './protocol';

export interface JobEvents {
  onStart(report: CacheReport): void;
  onChunk(text: string, token: TokenOut | null): void;
  onDone(result: JobResult): void;
  /** 499: cancelled; 4xx: the request could not run as asked; 5xx: the server failed. */
  onFail(status: number, code: string, message: string): void;
}

export class Job {
  state: 'queued' | 'running' | 'finished' = 'queued';
  readonly queuedAt = performance.now();
  /** The worker's progress when the cancel mark was raised. */
  cancelMark: { generated: number; prefillDone: number } | undefined;
  constructor(
    readonly id: number,
    readonly tokens: readonly number[],
    readonly params: JobParams,
    readonly events: JobEvents,
  ) {}
}

/** Thrown by `submit` when the queue is full. */
export class QueueFullError extends Error {
  override readonly name = 'QueueFullError';
  constructor(
    readonly retryAfterSeconds: number,
    limit: number,
  ) {
    super(
      `the server is busy: ${limit} requests are already running or waiting; retry in ${retryAfterSeconds} s`,
    );
  }
}

/** What the engine asks of the rest of the server. */
export interface EngineHooks {
  redisGet(boundaries: readonly { hash: string; length: number }[]): Promise<{
    found: { bytes: Uint8Array; length: number; entryId: string } | null;
    note: string | null;
  }>;
  redisPut(entryId: string, hashes: readonly string[], bytes: Uint8Array): void;
  redisDel(entryId: string): void;
  log(level: 'debug' | 'info' | 'warn' | 'error', msg: string, data?: Record<string, unknown>): void;
  refused(tier: Tier, code: string): void;
  /** A running job stopped after the cancel mark: how many decode steps or prefill chunks it still computed. */
  cancelled(steps: number): void;
  stats(s: WorkerStats): void;
  /** The worker died: every request fails from now on. */
  fatal(message: string): void;
}

export interface Progress {
  readonly running: number;
  readonly phase: (typeof PHASE_NAMES)[number];
  readonly prefillDone: number;
  readonly prefillTotal: number;
  readonly generated: number;
}

export class Engine {
  readonly #queue: Job[] = [];
  #running: Job | undefined;
  /** The worker finished its last job's work (persisting included) and can take the next one. */
  #free = true;
  #nextId = 1;
  #dead: string | undefined;
  #closing = false;
  readonly #ctl: Int32Array;
  readonly #durations: number[] = [];
  /** Callers of `idle()` waiting for the worker to be free with nothing queued. */
  #idleWaiters: (() => void)[] = [];
  stats: WorkerStats;

  private constructor(
    private readonly worker: Worker,
    ctl: SharedArrayBuffer,
    readonly info: ModelInfo,
    stats: WorkerStats,
    private readonly maxQueue: number,
    private readonly hooks: EngineHooks,
    private readonly prefillStepSize: number,
  ) {
    this.#ctl = new Int32Array(ctl);
    this.stats = stats;
    worker.on('message', (m: FromWorker) => this.#onMessage(m));
    worker.on('error', (e) => this.#die(`the model worker failed: ${e.message}`));
    worker.on('exit', (code) => {
      if (!this.#closing) this.#die(`the model worker exited (code ${code})`);
    });
  }

  /** Starts the worker and waits until the model is loaded. */
  static async start(init: Omit<WorkerInit, 'ctl'>, maxQueue: number, hooks: EngineHooks): Promise<Engine> {
    const ctl = new SharedArrayBuffer(CTL.SIZE * 4);
    const worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { ...init, ctl } satisfies WorkerInit,
      name: 'mnemo-model',
    });
    const ready = await new Promise<Extract<FromWorker, { type: 'ready' }>>((resolve, reject) => {
      const onMessage = (m: FromWorker) => {
        if (m.type === 'ready') done(() => resolve(m));
        else if (m.type === 'fatal') done(() => reject(new Error(m.message)));
        else if (m.type === 'log') hooks.log(m.level, m.msg, m.data);
      };
      const onError = (e: Error) => done(() => reject(e));
      const onExit = (code: number) =>
        done(() => reject(new Error(`the model worker exited (code ${code}) while loading`)));
      const done = (f: () => void) => {
        worker.off('message', onMessage);
        worker.off('error', onError);
        worker.off('exit', onExit);
        f();
      };
      worker.on('message', onMessage);
      worker.on('error', onError);
      worker.on('exit', onExit);
    }).catch(async (e: unknown) => {
      await worker.terminate();
      throw e;
    });
    return new Engine(worker, ctl, ready.info, ready.stats, maxQueue, hooks, init.prefillStepSize);
  }

  get queueLength(): number {
    return this.#queue.length;
  }
  get busy(): boolean {
    return this.#running !== undefined;
  }
  get dead(): string | undefined {
    return this.#dead;
  }

  /**
   * Resolves once no request is queued or running and the worker has finished its last job's work (persisting
   * included), or the worker is gone. An event, not a poll: tests wait on it instead of guessing a delay.
   */
  idle(): Promise<void> {
    if (this.#isIdle()) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  #isIdle(): boolean {
    return this.#dead !== undefined || (this.#free && !this.#running && this.#queue.length === 0);
  }

  #wakeIdle(): void {
    if (!this.#isIdle()) return;
    for (const w of this.#idleWaiters.splice(0)) w();
  }

  /** What the worker is doing, read from the control block (never waits for the worker). */
  progress(): Progress {
    return {
      running: Atomics.load(this.#ctl, CTL.RUNNING),
      phase: PHASE_NAMES[Atomics.load(this.#ctl, CTL.PHASE)] ?? 'idle',
      prefillDone: Atomics.load(this.#ctl, CTL.PREFILL_DONE),
      prefillTotal: Atomics.load(this.#ctl, CTL.PREFILL_TOTAL),
      generated: Atomics.load(this.#ctl, CTL.GENERATED),
    };
  }

  /** Queues a request; throws QueueFullError when `maxQueue` requests are already running or waiting. */
  submit(tokens: readonly number[], params: JobParams, events: JobEvents): Job {
    if (this.#dead !== undefined) throw new Error(this.#dead);
    const admitted = this.#queue.length + (this.#running ? 1 : 0);
    if (admitted >= this.maxQueue) throw new QueueFullError(this.#retryAfter(), this.maxQueue);
    const job = new Job(this.#nextId++, tokens, params, events);
    this.#queue.push(job);
    this.#dispatch();
    return job;
  }

  /** Stops a request: dropped from the queue, or told to stop at the worker's next chunk or step. */
  cancel(job: Job): void {
    if (job.state === 'queued') {
      const i = this.#queue.indexOf(job);
      if (i >= 0) this.#queue.splice(i, 1);
      job.state = 'finished';
      job.events.onFail(499, 'cancelled', 'the client went away');
      this.#wakeIdle();
    } else if (job.state === 'running' && job.cancelMark === undefined) {
      // The mark first, then the progress: the worker checks the mark after each chunk or step, so at most one more
      // completes after this read. (Read first, the worker could finish a chunk and start another in between.)
      Atomics.store(this.#ctl, CTL.CANCEL, job.id);
      const p = this.progress();
      job.cancelMark = { generated: p.generated, prefillDone: p.prefillDone };
    }
  }

  #retryAfter(): number {
    const d = this.#durations;
    const avg = d.length ? d.reduce((a, b) => a + b, 0) / d.length : 1000;
    return Math.max(1, Math.min(600, Math.ceil((avg * (this.#queue.length + 1)) / 1000)));
  }

  #dispatch(): void {
    if (!this.#free || this.#running || this.#dead !== undefined) return;
    const job = this.#queue.shift();
    if (!job) return;
    job.state = 'running';
    this.#running = job;
    this.#free = false;
    this.#post({ type: 'job', id: job.id, tokens: job.tokens, params: job.params });
  }

  #post(m: ToWorker, transfer: ArrayBuffer[] = []): void {
    this.worker.postMessage(m, transfer);
  }

  #finish(job: Job): void {
    job.state = 'finished';
    if (this.#running === job) this.#running = undefined;
    this.#durations.push(performance.now() - job.queuedAt);
    if (this.#durations.length > 32) this.#durations.shift();
  }

  #onMessage(m: FromWorker): void {
    const job = 'id' in m && this.#running?.id === m.id ? this.#running : undefined;
    switch (m.type) {
      case 'start':
        job?.events.onStart(m.report);
        break;
      case 'chunk':
        job?.events.onChunk(m.text, m.token);
        break;
      case 'done':
        if (job) {
          this.#finish(job);
          job.events.onDone(m.result);
        }
        break;
      case 'failed':
        if (job) {
          if (m.status === 499 && job.cancelMark) {
            // The control block still holds this job's final progress: the next job starts only after `free`.
            const p = this.progress();
            const decode = p.generated - job.cancelMark.generated;
            const chunks = Math.ceil(
              Math.max(0, p.prefillDone - job.cancelMark.prefillDone) / this.prefillStepSize,
            );
            this.hooks.cancelled(Math.max(0, decode, chunks));
          }
          this.#finish(job);
          job.events.onFail(m.status, m.code, m.message);
        }
        break;
      case 'free':
        this.stats = m.stats;
        this.hooks.stats(m.stats);
        this.#free = true;
        Atomics.store(this.#ctl, CTL.CANCEL, 0);
        this.#dispatch();
        this.#wakeIdle();
        break;
      case 'redis-get': {
        const id = m.id;
        this.hooks
          .redisGet(m.boundaries)
          .catch((e: Error) => ({ found: null, note: `unavailable (${e.message})` }))
          .then((r) => {
            const transfer = r.found ? [copyOut(r.found)] : [];
            this.#post({ type: 'redis-reply', id, found: r.found, note: r.note }, transfer);
          });
        break;
      }
      case 'redis-put':
        this.hooks.redisPut(m.entryId, m.hashes, m.bytes);
        break;
      case 'redis-del':
        this.hooks.redisDel(m.entryId);
        break;
      case 'log':
        this.hooks.log(m.level, m.msg, m.data);
        break;
      case 'refused':
        this.hooks.refused(m.tier, m.code);
        break;
      case 'ready':
      case 'fatal':
        break;
    }
  }

  #die(message: string): void {
    if (this.#dead !== undefined) return;
    this.#dead = message;
    this.hooks.log('error', message);
    const jobs = [...(this.#running ? [this.#running] : []), ...this.#queue.splice(0)];
    this.#running = undefined;
    for (const j of jobs) {
      j.state = 'finished';
      j.events.onFail(503, 'worker_failed', message);
    }
    this.hooks.fatal(message);
    this.#wakeIdle();
  }

  /** Fails what is waiting, stops the running job, lets the worker free the model, and ends it. */
  async close(): Promise<void> {
    if (this.#closing) return;
    this.#closing = true;
    for (const j of this.#queue.splice(0)) {
      j.state = 'finished';
      j.events.onFail(503, 'shutting_down', 'the server is shutting down');
    }
    if (this.#running) Atomics.store(this.#ctl, CTL.CANCEL, this.#running.id);
    if (this.#dead === undefined) {
      const exited = new Promise<void>((r) => this.worker.once('exit', () => r()));
      this.#post({ type: 'stop' });
      const timeout = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 10_000).unref());
      if ((await Promise.race([exited, timeout])) === 'timeout') await this.worker.terminate();
    } else await this.worker.terminate();
    for (const w of this.#idleWaiters.splice(0)) w();
  }
}

/** A transferable copy of Redis bytes (a Buffer from ioredis may share a larger pool). */
function copyOut(found: { bytes: Uint8Array }): ArrayBuffer {
  const copy = new Uint8Array(found.bytes.byteLength);
  copy.set(found.bytes);
  found.bytes = copy;
  return copy.buffer;
}
