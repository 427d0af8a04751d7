/**
 * Entry point of a WASM backend worker thread. Not imported by the package: `scripts/build-worker.mjs` bundles it (with
 * `@mnemo/kernels`) into one CommonJS string, `src/wasm/generated/worker-source.ts`, which the backend starts with
 * `new Worker(source, { eval: true })` — so the worker loads the same way from sources (vitest), from `dist/` and from
 * inside a single-file bundle such as the CLI.
 *
 * The worker owns a private kernels instance holding its row shards of the weights. Once it has set `READY` it never
 * returns to the event loop: it serves ops from its control block (see `protocol.ts`) until told to exit.
 */

import { receiveMessageOnPort, workerData } from 'node:worker_threads';
import {
  attachKernels,
  type KernelsView,
  type KvAttention,
  type KvFormat,
  type KvPtrs,
  loadKernels,
  quantizedActivationBytes,
} from '@mnemo/kernels';
import type { WeightDType } from '../kernels';
import { kernelsProbe } from './probe';
import * as P from './protocol';

const DTYPES: readonly WeightDType[] = P.DTYPE_CODES;
const KV_FORMATS: readonly (KvFormat | undefined)[] = [
  'f32',
  'f16',
  undefined,
  undefined,
  'q4',
  undefined,
  undefined,
  undefined,
  'q8',
];

type Mutable<T> = { -readonly [K in keyof T]: T[K] };
/** Arguments of the current attention round, filled in place. */
const kp: Mutable<KvPtrs> = { data: 0, scales: 0, biases: 0 };
const vp: Mutable<KvPtrs> = { data: 0, scales: 0, biases: 0 };
const att: Mutable<KvAttention> = {
  rows: 0,
  startPos: 0,
  nHeads: 1,
  nKvHeads: 1,
  headDim: 1,
  scale: 1,
  window: 0,
  keep: 0,
  capacity: 1,
  format: 'f32',
  groupSize: 32,
  softcap: 0,
};

const init = workerData as P.WorkerInit;
const ctl = new Int32Array(init.ctl);
const u32 = new Uint32Array(init.ctl);
const f32 = new Float32Array(init.ctl);
const f64 = new Float64Array(init.ctl);
const msg = new Uint16Array(init.ctl, P.MSG_OFFSET, P.MSG_CHARS);

/** Writes `e`'s message into the message area; returns its status code. */
function fail(e: unknown): number {
  const text = e instanceof Error ? e.message : String(e);
  const n = Math.min(text.length, P.MSG_CHARS);
  for (let i = 0; i < n; i++) msg[i] = text.charCodeAt(i);
  ctl[P.MSG_LEN] = n;
  return e instanceof RangeError ? P.FAIL_RANGE : e instanceof TypeError ? P.FAIL_TYPE : P.FAIL_ERROR;
}

async function main(): Promise<void> {
  const k = await loadKernels();
  const probe = kernelsProbe(k);
  // instance 0's shared memory, for ops computed in place there (attention)
  const view: KernelsView | null = init.shared
    ? await attachKernels(init.shared.memory, init.shared.stackTop, init.shared.stackBytes)
    : null;
  const spin = init.spin;

  // staging buffers (replaced by OP_BUFFERS)
  let inF32 = new Float32Array(init.input);
  let inI32 = new Int32Array(init.input);
  let inU8 = new Uint8Array(init.input);
  let outF32 = new Float32Array(init.output);
  let outU8 = new Uint8Array(init.output);
  /** Length-exact views of the start of `input`, by length (so copies allocate nothing once warm). */
  const inViews = new Map<number, Float32Array>();

  // views of the wasm memory (rebuilt after it grows)
  let buf = k.memory.buffer;
  let heapF32 = new Float32Array(buf);
  let heapU8 = new Uint8Array(buf);
  let heapI32 = new Int32Array(buf);
  const heapViews = new Map<number, Float32Array>();
  const heap = () => {
    if (k.memory.buffer === buf) return;
    buf = k.memory.buffer;
    heapF32 = new Float32Array(buf);
    heapU8 = new Uint8Array(buf);
    heapI32 = new Int32Array(buf);
    heapViews.clear();
  };

  // scratch in wasm memory, grown by doubling
  interface Scratch {
    ptr: number;
    cap: number;
  }
  const xs: Scratch = { ptr: 0, cap: 0 };
  const ys: Scratch = { ptr: 0, cap: 0 };
  const bs: Scratch = { ptr: 0, cap: 0 };
  const is: Scratch = { ptr: 0, cap: 0 };
  const ensure = (s: Scratch, bytes: number): number => {
    if (bytes > s.cap) {
      const next = Math.max(bytes, 2 * s.cap, 4096);
      const p = k.alloc(next);
      if (s.ptr !== 0) k.free(s.ptr);
      s.ptr = p;
      s.cap = next;
    }
    return s.ptr;
  };

  const inView = (n: number): Float32Array => {
    let v = inViews.get(n);
    if (v === undefined) {
      if (inViews.size > 64) inViews.clear();
      v = inF32.subarray(0, n);
      inViews.set(n, v);
    }
    return v;
  };
  const heapView = (ptr: number, n: number): Float32Array => {
    let v = heapViews.get(ptr);
    if (v === undefined || v.length !== n) {
      if (heapViews.size > 64) heapViews.clear();
      v = heapF32.subarray(ptr >>> 2, (ptr >>> 2) + n);
      heapViews.set(ptr, v);
    }
    return v;
  };

  /** Copies x (rows·inDim floats at input 0) and the bias slice into scratch; returns the bias address or undefined. */
  const stageIn = (len: number, hasBias: number, biasOff: number, n: number): number | undefined => {
    const x = ensure(xs, len * 4);
    const b = hasBias ? ensure(bs, n * 4) : 0;
    heap();
    heapF32.set(inView(len), x >>> 2);
    if (!hasBias) return undefined;
    const bi = b >>> 2;
    for (let i = 0; i < n; i++) heapF32[bi + i] = inF32[biasOff + i]!;
    return b;
  };
  const stageOut = (y: number, n: number) => {
    heap();
    outF32.set(heapView(y, n));
  };
  const stageIds = (off: number, n: number): number => {
    const p = ensure(is, n * 4);
    heap();
    const base = p >>> 2;
    for (let i = 0; i < n; i++) heapI32[base + i] = inI32[off + i]!;
    return p;
  };

  const run = (op: number): void => {
    const a = P.ARG;
    switch (op) {
      case P.OP_BUFFERS: {
        const m = receiveMessageOnPort(init.port);
        if (!m) throw new Error('worker: OP_BUFFERS without a message');
        const { input, output } = m.message as { input: SharedArrayBuffer; output: SharedArrayBuffer };
        inF32 = new Float32Array(input);
        inI32 = new Int32Array(input);
        inU8 = new Uint8Array(input);
        outF32 = new Float32Array(output);
        outU8 = new Uint8Array(output);
        inViews.clear();
        return;
      }
      case P.OP_ALLOC: {
        const bytes = u32[a]!;
        u32[P.RESULT] = bytes === 0 ? 0 : k.alloc(bytes);
        return;
      }
      case P.OP_FREE:
        k.free(u32[a]!);
        return;
      case P.OP_WRITE: {
        const ptr = u32[a]!;
        const n = u32[a + 1]!;
        heap();
        heapU8.set(inU8.subarray(0, n), ptr);
        return;
      }
      case P.OP_READ: {
        const ptr = u32[a]!;
        const n = u32[a + 1]!;
        heap();
        outU8.set(heapU8.subarray(ptr, ptr + n));
        return;
      }
      case P.OP_MATMUL: {
        const rows = u32[a + 1]!;
        const inDim = u32[a + 2]!;
        const n = u32[a + 3]!;
        const bias = stageIn(rows * inDim, u32[a + 5]!, u32[a + 6]!, n);
        const y = ensure(ys, rows * n * 4);
        k.matmul(y, xs.ptr, u32[a]!, rows, inDim, n, DTYPES[u32[a + 4]!]!, bias);
        stageOut(y, rows * n);
        return;
      }
      case P.OP_MATMUL_Q:
      case P.OP_MATMUL_Q8A: {
        const rows = u32[a + 3]!;
        const inDim = u32[a + 4]!;
        const n = u32[a + 5]!;
        const q8a = op === P.OP_MATMUL_Q8A;
        const xLen = q8a ? quantizedActivationBytes(rows, inDim) >>> 2 : rows * inDim;
        const bias = stageIn(xLen, u32[a + 9]!, u32[a + 10]!, n);
        const y = ensure(ys, rows * n * 4);
        (q8a ? k.matmulQ8a : k.matmulQ).call(
          k,
          y,
          xs.ptr,
          u32[a]!,
          u32[a + 1]!,
          u32[a + 2]!,
          rows,
          inDim,
          n,
          u32[a + 6]!,
          u32[a + 7]!,
          DTYPES[u32[a + 8]!]!,
          bias,
        );
        stageOut(y, rows * n);
        return;
      }
      case P.OP_MATMUL_G: {
        const rows = u32[a + 1]!;
        const inDim = u32[a + 2]!;
        const n = u32[a + 3]!;
        const q8a = u32[a + 7] === 1;
        const xLen = q8a ? quantizedActivationBytes(rows, inDim) >>> 2 : rows * inDim;
        const bias = stageIn(xLen, u32[a + 5]!, u32[a + 6]!, n);
        const y = ensure(ys, rows * n * 4);
        const type = P.ggmlTypeOf(u32[a + 4]!);
        if (q8a) k.ggmlMatmulQ8a(y, xs.ptr, u32[a]!, rows, inDim, n, type, bias);
        else k.ggmlMatmul(y, xs.ptr, u32[a]!, rows, inDim, n, type, bias);
        stageOut(y, rows * n);
        return;
      }
      case P.OP_EMBED_G: {
        const nIds = u32[a + 1]!;
        const dim = u32[a + 3]!;
        const ids = stageIds(u32[a + 5]!, nIds);
        const y = ensure(ys, nIds * dim * 4);
        k.ggmlEmbedding(y, u32[a]!, ids, nIds, u32[a + 2]!, dim, P.ggmlTypeOf(u32[a + 4]!));
        stageOut(y, nIds * dim);
        return;
      }
      case P.OP_EMBED: {
        const nIds = u32[a + 1]!;
        const dim = u32[a + 3]!;
        const ids = stageIds(u32[a + 5]!, nIds);
        const y = ensure(ys, nIds * dim * 4);
        k.embedding(y, u32[a]!, ids, nIds, u32[a + 2]!, dim, DTYPES[u32[a + 4]!]!);
        stageOut(y, nIds * dim);
        return;
      }
      case P.OP_EMBED_Q: {
        const nIds = u32[a + 3]!;
        const dim = u32[a + 5]!;
        const ids = stageIds(u32[a + 9]!, nIds);
        const y = ensure(ys, nIds * dim * 4);
        k.embeddingQ(
          y,
          u32[a]!,
          u32[a + 1]!,
          u32[a + 2]!,
          ids,
          nIds,
          u32[a + 4]!,
          dim,
          u32[a + 6]!,
          u32[a + 7]!,
          DTYPES[u32[a + 8]!]!,
        );
        stageOut(y, nIds * dim);
        return;
      }
      case P.OP_ATTENTION: {
        if (view === null) throw new Error('worker: OP_ATTENTION without a shared instance-0 memory');
        kp.data = u32[a + 2]!;
        kp.scales = u32[a + 3]!;
        kp.biases = u32[a + 4]!;
        vp.data = u32[a + 5]!;
        vp.scales = u32[a + 6]!;
        vp.biases = u32[a + 7]!;
        att.rows = u32[a + 8]!;
        att.startPos = u32[a + 9]!;
        att.nHeads = u32[a + 10]!;
        att.nKvHeads = u32[a + 11]!;
        att.headDim = u32[a + 12]!;
        att.scale = f32[a + 13]!;
        att.window = u32[a + 14]!;
        att.keep = u32[a + 15]!;
        att.capacity = u32[a + 16]!;
        const format = KV_FORMATS[u32[a + 17]!];
        if (format === undefined) throw new RangeError(`worker: bad KV format code ${u32[a + 17]}`);
        att.format = format;
        att.groupSize = u32[a + 18]!;
        att.softcap = f32[a + 23]!;
        view.attentionKv(
          u32[a]!,
          u32[a + 1]!,
          kp,
          vp,
          att,
          u32[a + 19]!,
          u32[a + 20]!,
          u32[a + 21]!,
          u32[a + 22]!,
        );
        return;
      }
      case P.OP_STATS:
        f64[P.F64_RESULT] = k.allocatedBytes();
        f64[P.F64_RESULT + 1] = k.memory.buffer.byteLength;
        return;
      default:
        throw new Error(`worker: unknown op ${op}`);
    }
  };

  // Read the generation before reporting ready: a round posted right after `ready` must not be missed.
  let last = Atomics.load(ctl, P.GEN);
  outF32.set(probe);
  u32[P.RESULT] = probe.length;
  Atomics.store(ctl, P.READY, 1);
  Atomics.notify(ctl, P.READY);
  // Adaptive spin budget, as on the calling side: doubles when spinning caught the next round, halves when not.
  let budget = spin;
  for (;;) {
    let g = Atomics.load(ctl, P.GEN);
    let i = 0;
    while (g === last && i < budget) {
      g = Atomics.load(ctl, P.GEN);
      i++;
    }
    if (g !== last) {
      if (i > 0 && budget < spin) budget = Math.min(spin, 2 * budget);
    } else if (spin > 0) budget = Math.max(P.MIN_SPIN, budget >> 1);
    while (g === last) {
      Atomics.wait(ctl, P.GEN, last);
      g = Atomics.load(ctl, P.GEN);
    }
    last = g;
    const op = ctl[P.OP]!;
    let status = P.OK;
    if (op !== P.OP_EXIT) {
      try {
        run(op);
      } catch (e) {
        status = fail(e);
      }
    }
    ctl[P.STATUS] = status;
    Atomics.store(ctl, P.DONE, g);
    Atomics.notify(ctl, P.DONE);
    if (op === P.OP_EXIT) break;
  }
  init.port.close();
}

process.on('exit', () => {
  Atomics.store(ctl, P.EXITED, 1);
  Atomics.notify(ctl, P.DONE);
  Atomics.notify(ctl, P.READY);
});
main().catch((e: unknown) => {
  fail(e instanceof Error ? new Error(e.stack ?? e.message) : e);
  Atomics.store(ctl, P.READY, 2);
  Atomics.notify(ctl, P.READY);
});
