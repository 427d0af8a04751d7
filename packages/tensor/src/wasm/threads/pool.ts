/**
 * The calling thread's side of the WASM backend's worker threads: starting them, the synchronous rounds over each
 * worker's control block (see `protocol.ts`), the staging buffers, and the small memory ops (alloc, free, write, read)
 * used to place weight shards. The backend loads this module (and with it Node's `worker_threads`) only when it has more
 * than one thread, and starts the workers only when the first weight to split arrives.
 */
import { MessageChannel, type MessagePort, Worker } from 'node:worker_threads';
import { WORKER_SOURCE } from '../generated/worker-source';
import type { Kernels } from '../kernels';
import { kernelsProbe, sameProbe } from './probe';
import * as P from './protocol';

const INITIAL_INPUT = 1 << 20;
const INITIAL_OUTPUT = 1 << 18;
/** Uploads and reads move at most this many bytes per round. */
export const CHUNK_BYTES = 1 << 24;

/** Instance 0's shared memory and one stack in it per worker (top addresses), for workers that attach to it. */
export interface SharedAttach {
  readonly memory: WebAssembly.Memory;
  readonly stackTops: readonly number[];
  readonly stackBytes: number;
}

/** One worker: its thread, control block, output staging buffer and round counter. */
export class Link {
  readonly ctl: Int32Array;
  readonly u32: Uint32Array;
  readonly f32: Float32Array;
  readonly f64: Float64Array;
  private readonly msg: Uint16Array;
  gen = 0;
  /** A round is posted and not yet waited for. */
  busy = false;
  output: SharedArrayBuffer;
  outF32: Float32Array;
  outU8: Uint8Array;
  private readonly outViews = new Map<number, Float32Array>();

  constructor(
    readonly index: number,
    readonly worker: Worker,
    readonly port: MessagePort,
    ctl: SharedArrayBuffer,
  ) {
    this.ctl = new Int32Array(ctl);
    this.u32 = new Uint32Array(ctl);
    this.f32 = new Float32Array(ctl);
    this.f64 = new Float64Array(ctl);
    this.msg = new Uint16Array(ctl, P.MSG_OFFSET, P.MSG_CHARS);
    this.output = new SharedArrayBuffer(INITIAL_OUTPUT);
    this.outF32 = new Float32Array(this.output);
    this.outU8 = new Uint8Array(this.output);
  }

  setOutput(output: SharedArrayBuffer): void {
    this.output = output;
    this.outF32 = new Float32Array(output);
    this.outU8 = new Uint8Array(output);
    this.outViews.clear();
  }

  /** The first `n` floats of the output buffer, as a cached view (no allocation once warm). */
  outView(n: number): Float32Array {
    let v = this.outViews.get(n);
    if (v === undefined) {
      if (this.outViews.size > 64) this.outViews.clear();
      v = this.outF32.subarray(0, n);
      this.outViews.set(n, v);
    }
    return v;
  }

  /** The message the worker left in its message area. */
  text(): string {
    const n = this.ctl[P.MSG_LEN]!;
    let text = '';
    for (let i = 0; i < n; i++) text += String.fromCharCode(this.msg[i]!);
    return text;
  }

  /** The worker's failure as the Error class it threw. */
  error(status: number): Error {
    const message = `wasm backend worker ${this.index}: ${this.text()}`;
    return status === P.FAIL_RANGE
      ? new RangeError(message)
      : status === P.FAIL_TYPE
        ? new TypeError(message)
        : new Error(message);
  }
}

/** Longest a worker may take to start. */
const BOOT_TIMEOUT_MS = 60_000;
/** How long a blocked caller sleeps between checks that the worker is still alive. */
const WAIT_SLICE_MS = 1000;

/**
 * The workers of one backend. Every method is synchronous; a round (`post` then `wait`) is a few hundred ns to a few
 * µs when both sides spin, tens of µs when the worker was asleep.
 */
export class WorkerPool {
  input: SharedArrayBuffer;
  inF32: Float32Array;
  inI32: Int32Array;
  inU8: Uint8Array;
  private disposed = false;
  /** Current spin budget of {@link wait} (adapts between `P.MIN_SPIN` and `spin`). */
  private budget: number;

  private constructor(
    readonly links: readonly Link[],
    /** Atomics.load polls of a waiting caller before it blocks. */
    private readonly spin: number,
    input: SharedArrayBuffer,
  ) {
    this.budget = spin;
    this.input = input;
    this.inF32 = new Float32Array(this.input);
    this.inI32 = new Int32Array(this.input);
    this.inU8 = new Uint8Array(this.input);
  }

  /**
   * Starts `count` workers, each with its own kernels instance, and waits for them synchronously (through their
   * control blocks: a backend starts its workers in the middle of an upload). Checks that their kernels compute exactly
   * what `main` computes.
   */
  static start(count: number, spin: number, main: Kernels, shared?: SharedAttach): WorkerPool {
    const expected = kernelsProbe(main);
    const input = new SharedArrayBuffer(Math.max(INITIAL_INPUT, expected.byteLength));
    const links: Link[] = [];
    try {
      for (let i = 0; i < count; i++) {
        const ctl = new SharedArrayBuffer(P.CTL_BYTES);
        const output = new SharedArrayBuffer(Math.max(INITIAL_OUTPUT, expected.byteLength));
        const { port1, port2 } = new MessageChannel();
        const init: P.WorkerInit = {
          ctl,
          port: port2,
          index: i + 1,
          spin,
          input,
          output,
          ...(shared
            ? {
                shared: {
                  memory: shared.memory,
                  stackTop: shared.stackTops[i]!,
                  stackBytes: shared.stackBytes,
                },
              }
            : {}),
        };
        const worker = new Worker(WORKER_SOURCE, {
          eval: true,
          workerData: init,
          transferList: [port2],
          name: `mnemo-wasm-${i + 1}`,
        });
        // A worker blocked in Atomics.wait must not keep the process alive, and its failure must not crash it.
        worker.on('error', () => {});
        worker.unref();
        port1.unref();
        const l = new Link(i + 1, worker, port1, ctl);
        l.setOutput(output);
        links.push(l);
      }
      const deadline = Date.now() + BOOT_TIMEOUT_MS;
      for (const l of links) {
        const c = l.ctl;
        let state = Atomics.load(c, P.READY);
        while (state === 0) {
          if (Atomics.load(c, P.EXITED) !== 0 || Date.now() > deadline)
            throw new Error(`wasm backend: worker ${l.index} did not start (exited or timed out)`);
          Atomics.wait(c, P.READY, 0, 50);
          state = Atomics.load(c, P.READY);
        }
        if (state !== 1) throw new Error(`wasm backend: worker ${l.index} failed to start: ${l.text()}`);
        const probe = l.outF32.subarray(0, l.u32[P.RESULT]!);
        if (!sameProbe(probe, expected))
          throw new Error(
            `wasm backend: worker ${l.index} computes different results than the calling thread's kernels — the ` +
              'bundled worker (src/wasm/generated/worker-source.ts) is stale; rebuild @mnemo/tensor',
          );
      }
    } catch (e) {
      for (const l of links) {
        l.port.close();
        void l.worker.terminate();
      }
      throw e;
    }
    const pool = new WorkerPool(links, spin, input);
    pool.warm();
    return pool;
  }

  get size(): number {
    return this.links.length;
  }

  /** Starts a round of `op` on worker `l` (arguments already written). */
  post(l: Link, op: number): void {
    const c = l.ctl;
    c[P.OP] = op;
    l.gen = (l.gen + 1) | 0;
    l.busy = true;
    Atomics.store(c, P.GEN, l.gen);
    Atomics.notify(c, P.GEN);
  }

  /**
   * Waits for worker `l`'s round to finish; throws what the worker threw. Spins up to the current budget of polls
   * before blocking: the budget doubles (up to `spin`) when spinning was enough and halves when it was not, so a
   * machine whose cores are busy with other work soon stops burning them.
   *
   * Kept small, with the blocking path in {@link block}, and run through both paths at start (see {@link warm}):
   * code on the per-op path must not be deoptimized by the first branch it meets late (a worker slowed down by a
   * loaded machine), since every deoptimization runs its callers unoptimized for a while.
   */
  wait(l: Link): void {
    if (!l.busy) return;
    const c = l.ctl;
    const g = l.gen;
    const budget = this.budget;
    let d = Atomics.load(c, P.DONE);
    let i = 0;
    while (d !== g && i < budget) {
      d = Atomics.load(c, P.DONE);
      i++;
    }
    if (d !== g) this.block(l, d, budget);
    else if (i > 0) this.budget = Math.min(this.spin, 2 * budget);
    l.busy = false;
    const status = c[P.STATUS]!;
    if (status !== P.OK) throw l.error(status);
  }

  /** {@link wait}'s slow path: the round outlasted the spin budget (`d` is the last generation seen done). */
  private block(l: Link, d: number, budget: number): void {
    this.budget = Math.max(Math.min(P.MIN_SPIN, this.spin), budget >> 1);
    const c = l.ctl;
    const g = l.gen;
    while (d !== g) {
      if (Atomics.load(c, P.EXITED) !== 0) {
        l.busy = false;
        throw new Error(`wasm backend: worker ${l.index} exited unexpectedly`);
      }
      Atomics.wait(c, P.DONE, d, WAIT_SLICE_MS);
      d = Atomics.load(c, P.DONE);
    }
  }

  /**
   * Runs a few empty rounds through every branch of {@link wait} (blocking, spinning, budget growth), so that the
   * optimizing compiler sees them all before it compiles the per-op path.
   */
  private warm(): void {
    for (let r = 0; r < 4; r++)
      for (let j = 0; j < this.links.length; j++) {
        const l = this.links[j]!;
        this.budget = r < 2 ? 0 : r === 2 ? Math.min(P.MIN_SPIN, this.spin) : this.spin;
        this.call(l, P.OP_STATS);
      }
    this.budget = this.spin;
  }

  call(l: Link, op: number): void {
    this.post(l, op);
    this.wait(l);
  }

  /** Waits for every posted round; rethrows the first failure after all have finished. */
  waitAll(): void {
    let first: unknown;
    // an index loop: a for-of would allocate an iterator per call whenever this runs unoptimized
    for (let j = 0; j < this.links.length; j++) {
      try {
        this.wait(this.links[j]!);
      } catch (e) {
        first ??= e;
      }
    }
    if (first !== undefined) throw first;
  }

  private sendBuffers(l: Link): void {
    l.port.postMessage({ input: this.input, output: l.output });
    this.call(l, P.OP_BUFFERS);
  }

  /** Makes the input buffer hold at least `bytes` (a new, larger buffer is handed to every worker). */
  ensureInput(bytes: number): void {
    if (bytes <= this.input.byteLength) return;
    const size = Math.max(bytes, 2 * this.input.byteLength);
    this.input = new SharedArrayBuffer(size);
    this.inF32 = new Float32Array(this.input);
    this.inI32 = new Int32Array(this.input);
    this.inU8 = new Uint8Array(this.input);
    for (const l of this.links) this.sendBuffers(l);
  }

  /** Makes worker `l`'s output buffer hold at least `bytes`. */
  ensureOutput(l: Link, bytes: number): void {
    if (bytes <= l.output.byteLength) return;
    l.setOutput(new SharedArrayBuffer(Math.max(bytes, 2 * l.output.byteLength)));
    this.sendBuffers(l);
  }

  /** Allocates `bytes` in worker `l`'s memory (throws the allocator's RangeError when it cannot). */
  alloc(l: Link, bytes: number): number {
    l.u32[P.ARG] = bytes;
    this.call(l, P.OP_ALLOC);
    return l.u32[P.RESULT]!;
  }

  free(l: Link, ptr: number): void {
    if (ptr === 0) return;
    l.u32[P.ARG] = ptr;
    this.call(l, P.OP_FREE);
  }

  /** Copies `src` to address `ptr` of worker `l`, in chunks through the input buffer. */
  write(l: Link, ptr: number, src: Uint8Array): void {
    const chunk = Math.min(src.byteLength, CHUNK_BYTES);
    this.ensureInput(chunk);
    for (let at = 0; at < src.byteLength; at += chunk) {
      const n = Math.min(chunk, src.byteLength - at);
      this.inU8.set(src.subarray(at, at + n));
      l.u32[P.ARG] = ptr + at;
      l.u32[P.ARG + 1] = n;
      this.call(l, P.OP_WRITE);
    }
  }

  /** Copies `dst.byteLength` bytes at address `ptr` of worker `l` into `dst`. */
  read(l: Link, ptr: number, dst: Uint8Array): void {
    const chunk = Math.min(dst.byteLength, CHUNK_BYTES);
    this.ensureOutput(l, chunk);
    for (let at = 0; at < dst.byteLength; at += chunk) {
      const n = Math.min(chunk, dst.byteLength - at);
      l.u32[P.ARG] = ptr + at;
      l.u32[P.ARG + 1] = n;
      this.call(l, P.OP_READ);
      dst.set(l.outU8.subarray(0, n), at);
    }
  }

  /** Live allocated bytes and memory size of worker `l`'s kernels instance. */
  stats(l: Link): { allocatedBytes: number; memoryBytes: number } {
    this.call(l, P.OP_STATS);
    return { allocatedBytes: l.f64[P.F64_RESULT]!, memoryBytes: l.f64[P.F64_RESULT + 1]! };
  }

  /** Stops every worker (their memories go with them). Idempotent. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const l of this.links) {
      try {
        this.wait(l);
        this.post(l, P.OP_EXIT);
      } catch {
        // a worker that already failed is terminated below anyway
      }
    }
    for (const l of this.links) {
      l.port.close();
      void l.worker.terminate();
    }
  }
}
