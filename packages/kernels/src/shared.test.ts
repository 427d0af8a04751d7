import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  attachKernels,
  attentionKvScratchBytes,
  attentionScratchBytes,
  KERNELS_STACK_BYTES,
  type Kernels,
  type KernelsView,
  loadKernels,
  loadSharedKernels,
  MIN_KERNELS_STACK_BYTES,
} from './index';
import type { Exports } from './kernels';
import { sharedKernelsWasmBytes } from './shared';
import { expectBitwise, put, randomQuantized, randoms } from './testing/ref';
import { type AttachedWorker, startAttachedWorker } from './testing/worker';

/** The shared module's layout constants (globals of the module, the same in every instance). */
interface Layout {
  stackTop: number;
  dataEnd: number;
  heapBase: number;
}

async function layout(memory: WebAssembly.Memory): Promise<Layout> {
  const module = await WebAssembly.compile(sharedKernelsWasmBytes() as BufferSource);
  const { exports } = await WebAssembly.instantiate(module, { env: { memory } });
  const x = exports as unknown as Exports & {
    __stack_pointer: WebAssembly.Global;
    __data_end: WebAssembly.Global;
  };
  return {
    stackTop: Number(x.__stack_pointer.value),
    dataEnd: Number(x.__data_end.value),
    heapBase: Number(x.__heap_base.value),
  };
}

let priv: Kernels;
let shared: Kernels;
let lay: Layout;

beforeAll(async () => {
  priv = await loadKernels();
  shared = await loadSharedKernels();
  lay = await layout(shared.memory);
});

/** A NaN with a payload no kernel produces: any write over it shows. */
const SENTINEL = 0x7fa5a5a5;

interface AttentionCase {
  rows: number;
  start: number;
  nHeads: number;
  nKvHeads: number;
  headDim: number;
  window: number;
}

/** q, k, v and an output filled with the sentinel, in `k`'s memory. */
function attentionInputs(k: Kernels, c: AttentionCase, seed: number) {
  const qw = c.nHeads * c.headDim;
  const kvw = c.nKvHeads * c.headDim;
  const cap = c.start + c.rows;
  const p = {
    q: put(k, Float32Array.from(randoms(c.rows * qw, seed, 2))),
    k: put(k, Float32Array.from(randoms(cap * kvw, seed + 1, 2))),
    v: put(k, Float32Array.from(randoms(cap * kvw, seed + 2))),
    out: k.alloc(c.rows * qw * 4),
  };
  k.u32(p.out, c.rows * qw).fill(SENTINEL);
  const args = (out: number) =>
    [
      out,
      p.q,
      p.k,
      p.v,
      c.rows,
      c.start,
      c.nHeads,
      c.nKvHeads,
      c.headDim,
      1 / Math.sqrt(c.headDim),
      c.window,
    ] as const;
  const free = () => {
    for (const v of Object.values(p)) k.free(v);
  };
  return { p, args, free, n: c.rows * qw };
}

/** Bytes of `[lo, hi)` that no longer hold `fill` counted from `lo` up: how deep a downward stack was used. */
function stackUse(k: Kernels, lo: number, hi: number, fill: number): number {
  const b = k.bytes();
  let i = lo;
  while (i < hi && b[i] === fill) i++;
  return hi - i;
}

const CASES: AttentionCase[] = [
  { rows: 1, start: 0, nHeads: 4, nKvHeads: 4, headDim: 13, window: 0 },
  { rows: 1, start: 40, nHeads: 8, nKvHeads: 4, headDim: 20, window: 0 },
  { rows: 7, start: 3, nHeads: 8, nKvHeads: 2, headDim: 6, window: 4 },
  { rows: 5, start: 60, nHeads: 16, nKvHeads: 2, headDim: 64, window: 0 },
  { rows: 3, start: 9, nHeads: 24, nKvHeads: 3, headDim: 9, window: 2 },
];

describe('loadSharedKernels', () => {
  it('runs on a shared memory with the stack and data below the heap', () => {
    expect(shared.memory.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(priv.memory.buffer).not.toBeInstanceOf(SharedArrayBuffer);
    // stack first: [0, stackTop) is the instance's stack, then the data, then (after the init flag) the heap
    expect(lay.stackTop).toBeGreaterThanOrEqual(64 * 1024);
    expect(lay.dataEnd).toBeGreaterThan(lay.stackTop);
    expect(lay.heapBase).toBeGreaterThanOrEqual(lay.dataEnd);
    const ptrs = [shared.alloc(1), shared.alloc(5 << 20), shared.alloc(64)];
    for (const p of ptrs) expect(p).toBeGreaterThanOrEqual(lay.heapBase);
    for (const p of ptrs) shared.free(p);
  });

  it('refreshes views after memory.grow (the SharedArrayBuffer is replaced, not detached)', () => {
    const a = shared.alloc(64);
    const before = shared.bytes();
    const oldLength = shared.memory.buffer.byteLength;
    const big = shared.alloc(oldLength + (1 << 20)); // forces growth
    const after = shared.bytes();
    expect(shared.memory.buffer.byteLength).toBeGreaterThan(oldLength);
    expect(after === before).toBe(false); // (not `not.toBe`: that deep-compares the arrays)
    expect(after.length).toBe(shared.memory.buffer.byteLength);
    expect(before.length).toBe(oldLength); // the old view keeps its length and still aliases the memory
    before[a] = 77;
    expect(after[a]).toBe(77);
    const tail = shared.f32(big + oldLength, 4); // beyond the old end
    tail.set([1, 2, 3, 4]);
    expect(Array.from(shared.f32(big + oldLength, 4))).toEqual([1, 2, 3, 4]);
    shared.free(big);
    shared.free(a);
  });

  it('computes bitwise what the private build computes (matmul, matmulQ, matmulQ8a, attention)', () => {
    const rows = 3;
    const inDim = 128;
    const outDim = 37;
    const x = Float32Array.from(randoms(rows * inDim, 1));
    const w = Float32Array.from(randoms(outDim * inDim, 2));
    const wq = randomQuantized(outDim, inDim, 4, 64, 'f16', 3);
    for (const k of [priv, shared]) k.free(k.alloc(1)); // both allocators in use
    const outputs = [priv, shared].map((k) => {
      const px = put(k, x);
      const pw = put(k, w);
      const packed = put(k, wq.packed);
      const scales = put(k, wq.scales);
      const biases = put(k, wq.biases);
      const y = k.alloc(rows * outDim * 4);
      const res: Float32Array[] = [];
      k.matmul(y, px, pw, rows, inDim, outDim, 'f32');
      res.push(k.f32(y, rows * outDim).slice());
      k.matmulQ(y, px, packed, scales, biases, rows, inDim, outDim, 4, 64, 'f16');
      res.push(k.f32(y, rows * outDim).slice());
      const xq = k.alloc(rows * (inDim + 8 * (inDim / 32)));
      k.quantizeActivations(xq, px, rows, inDim);
      k.matmulQ8a(y, xq, packed, scales, biases, rows, inDim, outDim, 4, 64, 'f16');
      res.push(k.f32(y, rows * outDim).slice());
      for (const p of [px, pw, packed, scales, biases, y, xq]) k.free(p);
      for (const c of CASES) {
        const t = attentionInputs(k, c, c.start + c.headDim);
        k.attention(...t.args(t.p.out));
        res.push(k.f32(t.p.out, t.n).slice());
        t.free();
      }
      return res;
    });
    expect(outputs[0]!.length).toBe(3 + CASES.length);
    outputs[0]!.forEach((want, i) => {
      expect(want.every(Number.isFinite)).toBe(true);
      expectBitwise(outputs[1]![i]!, want, `result ${i}`);
    });
  });

  it('keeps every kernel within a small part of its stack', () => {
    // instance 0's stack is [0, stackTop): fill it, run kernels, see how deep they went
    const fill = 0xa7;
    shared.bytes().fill(fill, 0, lay.stackTop);
    const inDim = 256;
    const outDim = 19;
    const px = put(shared, Float32Array.from(randoms(9 * inDim, 4)));
    const y = shared.alloc(9 * outDim * 4);
    const xq = shared.alloc(9 * (inDim + 8 * (inDim / 32)));
    const ids = put(shared, [3, 0, 18], 'i32');
    const e = shared.alloc(3 * inDim * 4);
    for (const bits of [2, 3, 4, 5, 6, 8]) {
      for (const gs of [32, 64, 128]) {
        const w = randomQuantized(outDim, inDim, bits, gs, 'bf16', bits * gs);
        const q = [put(shared, w.packed), put(shared, w.scales), put(shared, w.biases)] as const;
        for (const rows of [1, 2, 5, 9]) {
          shared.matmulQ(y, px, ...q, rows, inDim, outDim, bits, gs, 'bf16');
          if (bits === 4 || bits === 8) {
            shared.quantizeActivations(xq, px, rows, inDim);
            shared.matmulQ8a(y, xq, ...q, rows, inDim, outDim, bits, gs, 'bf16');
          }
        }
        shared.embeddingQ(e, ...q, ids, 3, outDim, inDim, bits, gs, 'bf16');
        for (const p of q) shared.free(p);
      }
    }
    const w = put(shared, Float32Array.from(randoms(outDim * inDim, 5)));
    for (const rows of [1, 2, 5, 9]) shared.matmul(y, px, w, rows, inDim, outDim, 'f32');
    for (const c of CASES) {
      const t = attentionInputs(shared, c, 8);
      shared.attention(...t.args(t.p.out));
      t.free();
    }
    const weight = put(shared, Float32Array.from(randoms(inDim, 9)));
    shared.rmsnorm(px, px, weight, 9, inDim, 1e-5);
    shared.softmax(px, 9, inDim);
    const used = stackUse(shared, 0, lay.stackTop, fill);
    console.log(
      `deepest shadow-stack use of instance 0 over matmul, matmulQ, matmulQ8a, embeddingQ, attention: ${used} bytes`,
    );
    expect(used).toBeGreaterThan(0); // the measurement sees the quantized kernels' frames
    expect(used).toBeLessThanOrEqual(MIN_KERNELS_STACK_BYTES / 4);
    for (const p of [px, y, xq, ids, e, w, weight]) shared.free(p);
  });
});

describe('attachKernels (same thread)', () => {
  let stack: number;
  let view: KernelsView;
  beforeAll(async () => {
    stack = shared.alloc(KERNELS_STACK_BYTES);
    view = await attachKernels(shared.memory, stack + KERNELS_STACK_BYTES, KERNELS_STACK_BYTES);
  });

  it('does not re-initialize the memory (data, heap) when instantiated again', async () => {
    const p = shared.alloc(256);
    shared.u8(p, 256).fill(0x5c);
    // overwrite the first bytes of the module's data: a second memory.init would restore them
    const saved = shared.bytes().slice(lay.stackTop, lay.heapBase);
    shared.bytes().fill(0xee, lay.stackTop, lay.stackTop + 8);
    const s2 = shared.alloc(KERNELS_STACK_BYTES);
    const snapshot = shared.bytes().slice();
    const v2 = await attachKernels(shared.memory, s2 + KERNELS_STACK_BYTES, KERNELS_STACK_BYTES);
    expect(v2.stackTop).toBe(s2 + KERNELS_STACK_BYTES);
    expect(Buffer.compare(shared.bytes(), snapshot)).toBe(0);
    expect(shared.bytes()[lay.stackTop]).toBe(0xee);
    expect(Array.from(shared.u8(p, 4))).toEqual([0x5c, 0x5c, 0x5c, 0x5c]);
    shared.bytes().set(saved, lay.stackTop);
    shared.free(s2);
    shared.free(p);
  });

  it('computes every head range bitwise like attention, on its own stack', () => {
    const fill = 0x3c;
    shared.u8(stack, KERNELS_STACK_BYTES).fill(fill);
    for (const c of CASES) {
      const t = attentionInputs(shared, c, 5 * c.rows + c.nHeads);
      const full = shared.alloc(t.n * 4);
      shared.attention(...t.args(full));
      const want = shared.f32(full, t.n).slice();
      const mid = Math.max(1, Math.floor(c.nKvHeads / 2));
      for (const [a, b] of [
        [0, mid],
        [mid, c.nKvHeads],
      ] as const) {
        if (a >= b) continue;
        const bytes = attentionScratchBytes(c.rows, c.start, c.nHeads, c.nKvHeads, c.headDim, c.window, a, b);
        const scratch = shared.alloc(bytes);
        view.attentionHeads(...t.args(t.p.out), a, b, scratch, bytes);
        shared.free(scratch);
      }
      expectBitwise(shared.f32(t.p.out, t.n), want, `view halves ${JSON.stringify(c)}`);
      shared.free(full);
      t.free();
    }
    const used = stackUse(shared, stack, stack + KERNELS_STACK_BYTES, fill);
    console.log(`shadow-stack use of an attached instance's attentionHeads: ${used} bytes`);
    expect(used).toBeLessThanOrEqual(MIN_KERNELS_STACK_BYTES / 4);
  });

  it('attentionKv: every head range bitwise like the calling instance, for each storage format and a wrapped ring', () => {
    const nHeads = 8;
    const nKvHeads = 4;
    const headDim = 16;
    const width = nKvHeads * headDim;
    const capacity = 10;
    for (const format of ['f32', 'f16', 'q4', 'q8'] as const) {
      const layout = { capacity, keep: 2, format, groupSize: 32 };
      const bytes = format === 'f32' ? 4 : format === 'f16' ? 2 : format === 'q4' ? 0.5 : 1;
      const side = () => ({
        data: shared.alloc(capacity * width * bytes),
        scales: shared.alloc((capacity * width * 4) / 32),
        biases: shared.alloc((capacity * width * 4) / 32),
      });
      const ks = side();
      const vs = side();
      const src = put(shared, Float32Array.from(randoms(30 * width, 61)));
      for (const st of [ks, vs]) {
        shared.writeKv(st, src, { ...layout, rows: 2, startPos: 0, width });
        shared.writeKv(st, src + 2 * width * 4, { ...layout, rows: 8, startPos: 22, width });
      }
      const rows = 3;
      const n = rows * nHeads * headDim;
      const q = put(shared, Float32Array.from(randoms(n, 62)));
      const a = { ...layout, rows, startPos: 27, nHeads, nKvHeads, headDim, scale: 0.25, window: 4 };
      const full = shared.alloc(n * 4);
      const out = shared.alloc(n * 4);
      shared.attentionKv(full, q, ks, vs, a);
      for (const [h0, h1] of [
        [0, 1],
        [1, 4],
      ] as const) {
        const need = attentionKvScratchBytes(a, h0, h1);
        const scratch = shared.alloc(need);
        view.attentionKv(out, q, ks, vs, a, h0, h1, scratch, need);
        expect(() => view.attentionKv(out, q, ks, vs, a, h0, h1, scratch, need - 4)).toThrow(/less than/);
        shared.free(scratch);
      }
      expectBitwise(shared.f32(out, n), shared.f32(full, n).slice(), `${format}: view head ranges`);
      for (const p of [ks.data, ks.scales, ks.biases, vs.data, vs.scales, vs.biases, src, q, full, out])
        shared.free(p);
    }
  });

  it('rejects bad stacks with a clear RangeError', async () => {
    const S = KERNELS_STACK_BYTES;
    const size = shared.memory.buffer.byteLength;
    await expect(attachKernels(shared.memory, lay.heapBase + 16, S)).rejects.toThrow(
      /attachKernels: stack \[\d+, \d+\) must lie in the heap/,
    );
    await expect(attachKernels(shared.memory, 4096 + S, S)).rejects.toThrow(RangeError); // instance 0's stack
    await expect(attachKernels(shared.memory, size + S, S)).rejects.toThrow(/must lie in the heap/);
    await expect(attachKernels(shared.memory, stack + S - 8, S)).rejects.toThrow(/multiples of 16/);
    await expect(attachKernels(shared.memory, stack + 1024, 1024)).rejects.toThrow(/at least 4096/);
    await expect(attachKernels(shared.memory, 0, S)).rejects.toThrow(/stackTop must be in/);
    await expect(attachKernels(priv.memory, stack + S, S)).rejects.toThrow(TypeError);
  });

  it('validates every attentionHeads argument, scratch and stack included', () => {
    const c = CASES[2]!;
    const t = attentionInputs(shared, c, 3);
    const bytes = attentionScratchBytes(c.rows, c.start, c.nHeads, c.nKvHeads, c.headDim, c.window, 0, 1);
    const scratch = shared.alloc(bytes + 64);
    const call = (over: Partial<Record<'out' | 'q' | 'scratch' | 'scratchBytes' | 'kv1', number>>) => () =>
      view.attentionHeads(
        ...t.args(over.out ?? t.p.out),
        0,
        over.kv1 ?? 1,
        over.scratch ?? scratch,
        over.scratchBytes ?? bytes,
      );
    expect(call({})).not.toThrow();
    expect(call({ scratchBytes: bytes - 1 })).toThrow(
      /scratchBytes \(\d+\) is less than the \d+ bytes needed/,
    );
    expect(call({ scratch: scratch + 4 })).toThrow(/scratch \(\d+\) must be 16-byte aligned/);
    expect(call({ scratch: t.p.out })).toThrow(/scratch .* overlaps out/);
    expect(call({ scratch: stack + 1024 })).toThrow(/scratch .* overlaps the stack/);
    expect(call({ out: stack })).toThrow(/out .* overlaps the stack/);
    expect(call({ out: 1024 })).toThrow(/out \[1024, \d+\) must lie in the heap/);
    expect(call({ out: t.p.q })).toThrow(/out .* overlaps q/);
    expect(call({ scratch: shared.memory.buffer.byteLength - 16 })).toThrow(/must lie in the heap/);
    expect(call({ kv1: 5 })).toThrow(/kv head range/);
    shared.free(scratch);
    t.free();
  });
});

describe('attachKernels in a worker thread', () => {
  let stack: number;
  let worker: AttachedWorker;
  beforeAll(async () => {
    stack = shared.alloc(KERNELS_STACK_BYTES);
    worker = await startAttachedWorker({
      memory: shared.memory,
      stackTop: stack + KERNELS_STACK_BYTES,
      stackBytes: KERNELS_STACK_BYTES,
    });
  });
  afterAll(async () => {
    await worker?.close();
  });

  it('splits attention heads with the main thread, bitwise equal to single-thread attention', async () => {
    // grow the memory after the worker attached: its regions then lie beyond the size it first saw
    const grown = shared.alloc(shared.memory.buffer.byteLength);
    const cases: AttentionCase[] = [
      ...CASES,
      { rows: 1, start: 700, nHeads: 32, nKvHeads: 8, headDim: 64, window: 0 },
      { rows: 48, start: 0, nHeads: 8, nKvHeads: 4, headDim: 36, window: 0 },
    ];
    for (const [i, c] of cases.entries()) {
      const t = attentionInputs(shared, c, 11 * i);
      const ref = attentionInputs(priv, c, 11 * i); // same inputs, private build, one thread
      priv.attention(...ref.args(ref.p.out));
      const want = priv.f32(ref.p.out, ref.n).slice();
      const cut = Math.max(1, c.nKvHeads >> 1);
      const kv = c.nKvHeads;
      const ws = attentionScratchBytes(c.rows, c.start, c.nHeads, kv, c.headDim, c.window, cut, kv);
      const scratch = shared.alloc(Math.max(ws, 16));
      const done = cut < kv ? worker.run([...t.args(t.p.out), cut, kv, scratch, ws]) : Promise.resolve();
      shared.attentionHeads(...t.args(t.p.out), 0, cut); // meanwhile, on the main thread
      await done;
      expectBitwise(
        shared.f32(t.p.out, t.n),
        want,
        `main [0, ${cut}) + worker [${cut}, ${kv}) ${JSON.stringify(c)}`,
      );
      shared.free(scratch);
      t.free();
      ref.free();
    }
    shared.free(grown);
  });

  it('reports bad arguments as RangeErrors from the worker', async () => {
    const c = CASES[1]!;
    const t = attentionInputs(shared, c, 2);
    const ws = attentionScratchBytes(c.rows, c.start, c.nHeads, c.nKvHeads, c.headDim, c.window, 2, 4);
    const scratch = shared.alloc(ws);
    await expect(worker.run([...t.args(t.p.out), 2, 4, scratch, ws - 16])).rejects.toThrow(
      /attentionHeads: scratchBytes .* is less than/,
    );
    await expect(worker.run([...t.args(t.p.out), 2, 4, stack, ws])).rejects.toThrow(
      /attentionHeads: scratch .* overlaps the stack/,
    );
    await expect(worker.run([...t.args(t.p.out), 2, 4, scratch, ws])).resolves.toBeUndefined();
    shared.free(scratch);
    t.free();
  });

  it('rejects a bad stack in the worker with a RangeError', async () => {
    await expect(
      startAttachedWorker({ memory: shared.memory, stackTop: lay.stackTop, stackBytes: KERNELS_STACK_BYTES }),
    ).rejects.toThrow(/attachKernels: stack .* must lie in the heap/);
  });
});
