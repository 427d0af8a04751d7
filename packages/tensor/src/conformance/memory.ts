/** Memory conformance: round trips, views, and the steady-state allocation check of a decode-like loop. */
import type { AttentionOptions, Backend, RopeOptions } from '../backend';
import { ropeTable } from '../convert';
import { DTYPE_BYTES, DTYPES } from '../dtype';
import { ConformanceError, expectBitwise, expectBytes, expectEqual, scoped } from './compare';
import { invFreq } from './ops';
import { floats, Rng } from './random';
import type { ConformanceCase } from './types';

const roundTripCase: ConformanceCase = {
  name: 'memory: upload/read/readBytes/write round trips for every dtype, raw bytes at any offset',
  group: 'memory',
  run: (backend) =>
    scoped(backend, backend, (s) => {
      const b = s.backend;
      const rng = new Rng(2300);
      for (const dtype of DTYPES)
        for (const n of [0, 1, 3, 17, 1000]) {
          const bytes = new Uint8Array(n * DTYPE_BYTES[dtype] + 1).map(() => rng.int(0, 256)).subarray(1); // odd byteOffset
          const t = s.upload(dtype, [n], bytes);
          expectBytes(`upload/readBytes ${dtype} [${n}]`, b.readBytes(t), bytes);
          const out = new Uint8Array(bytes.length);
          expectEqual(`readBytes ${dtype} returns the given array`, b.readBytes(t, out), out);
          expectBytes(`readBytes ${dtype} [${n}] into an array`, out, bytes);
          const again = new Uint8Array(bytes.length).map(() => rng.int(0, 256));
          b.write(t, again);
          expectBytes(`write/readBytes ${dtype} [${n}]`, b.readBytes(t), again);
          expectEqual(`${dtype} [${n}] byteLength`, t.byteLength, bytes.length);
        }
      const values = floats(rng, 37, 100);
      const t = s.f32([37], values);
      expectBitwise('upload f32 from a Float32Array / read', b.read(t), values);
      const out = new Float32Array(37);
      expectEqual('read returns the given array', b.read(t, out), out);
      expectBitwise('read into an array', out, values);
      const h = new Uint16Array([0x3c00, 0xc000, 0x7bff]);
      expectBytes(
        'upload f16 from a Uint16Array',
        b.readBytes(s.upload('f16', [3], h)),
        new Uint8Array(h.buffer),
      );
      const u = new Uint32Array([1, 0xffffffff, 7]);
      expectBytes(
        'upload u32 from a Uint32Array',
        b.readBytes(s.upload('u32', [3], u)),
        new Uint8Array(u.buffer),
      );
      const i = new Int32Array([-1, 5, -(2 ** 31)]);
      expectBytes(
        'upload i32 from an Int32Array',
        b.readBytes(s.upload('i32', [3], i)),
        new Uint8Array(i.buffer),
      );
      const dv = new DataView(values.buffer, 4, 8);
      expectBitwise('upload f32 from a DataView', b.read(s.upload('f32', [2], dv)), values.subarray(1, 3));
    }),
};

const viewCase: ConformanceCase = {
  name: 'memory: views share storage, compose offsets, and read/write only their range',
  group: 'memory',
  run: (backend) =>
    scoped(backend, backend, (s) => {
      const b = s.backend;
      const rng = new Rng(2400);
      const values = floats(rng, 24);
      const t = s.f32([4, 6], values);
      const v = b.view(t, [2, 6], 6);
      expectEqual('view shape', v.shape.join(','), '2,6');
      expectBitwise('read of a view', b.read(v), values.subarray(6, 18));
      const vv = b.view(v, [3], 4);
      expectBitwise('read of a view of a view', b.read(vv), values.subarray(10, 13));
      b.write(vv, new Float32Array([1, 2, 3]));
      const expected = values.slice();
      expected.set([1, 2, 3], 10);
      expectBitwise('write through a view of a view changes only its range', b.read(t), expected);
      const whole = b.view(t, [24]);
      expectBitwise('a 1-D view of the whole tensor', b.read(whole), expected);
      const empty = b.view(t, [0, 6], 24);
      expectEqual('an empty view at the end', b.read(empty).length, 0);
      const h = s.upload('f16', [4], new Uint16Array([1, 2, 3, 4]));
      expectBytes(
        'readBytes of an f16 view at an odd element offset',
        b.readBytes(b.view(h, [2], 1)),
        new Uint8Array(new Uint16Array([2, 3]).buffer),
      );
    }),
};

/** Options of {@link checkSteadyStateMemory}. */
export interface SteadyStateOptions {
  /** Current JS heap usage in bytes, e.g. `() => v8.getHeapStatistics().used_heap_size`. */
  heapUsed(): number;
  /** Forces a full garbage collection before measuring, when available (`globalThis.gc` under `--expose-gc`). */
  gc?: () => void;
  /** Decode steps to measure (default 2000). */
  iterations?: number;
  /** Largest allowed heap growth over one round of iterations, in bytes (default 200 000: ~100 bytes per step). */
  budget?: number;
  /** Rounds of `iterations` steps measured; the smallest growth counts (default 3). */
  rounds?: number;
}

/**
 * Runs a decode-like step (matmul with one row, scale, rmsnorm, rope, attention with and without a soft-cap, swiglu,
 * geluGlu, add, softcap, argmax, read into a preallocated array) `iterations` times after a warm-up, in `rounds` rounds, and throws if the JS heap grew by more
 * than `budget` bytes in every round (growth summed over batches of 100 steps, without collecting garbage in
 * between): an op that allocated even one small object (a typed-array view, an options copy) per call would exceed
 * it. Returns the smallest growth of a round.
 */
export function checkSteadyStateMemory(backend: Backend, opts: SteadyStateOptions): number {
  const iterations = opts.iterations ?? 2000;
  const budget = opts.budget ?? 200_000;
  const rounds = opts.rounds ?? 3;
  const b = backend;
  const rng = new Rng(2500);
  const dim = 64;
  const hidden = 96;
  const vocab = 300;
  const nHeads = 4;
  const nKvHeads = 2;
  const headDim = dim / nHeads;
  const capacity = 64;
  const kvWidth = nKvHeads * headDim;
  const x = b.upload('f32', [1, dim], floats(rng, dim));
  const xn = b.alloc('f32', [1, dim]);
  const normW = b.upload('f32', [dim], floats(rng, dim));
  const wq = b.upload('f32', [dim, dim], floats(rng, dim * dim, 0.1));
  const q = b.alloc('f32', [1, dim]);
  const kc = b.upload('f32', [capacity, kvWidth], floats(rng, capacity * kvWidth));
  const vc = b.upload('f32', [capacity, kvWidth], floats(rng, capacity * kvWidth));
  const att = b.alloc('f32', [1, dim]);
  const wg = b.upload('f32', [hidden, dim], floats(rng, hidden * dim, 0.1));
  const wu = b.upload('f32', [hidden, dim], floats(rng, hidden * dim, 0.1));
  const gate = b.alloc('f32', [1, hidden]);
  const up = b.alloc('f32', [1, hidden]);
  const act = b.alloc('f32', [1, hidden]);
  const head = b.upload('f32', [vocab, dim], floats(rng, vocab * dim, 0.1));
  const logits = b.alloc('f32', [1, vocab]);
  const half = headDim / 2;
  const cv = new Float32Array(half);
  const sv = new Float32Array(half);
  ropeTable(invFreq(headDim), 3, 1, cv, sv);
  const cos = b.upload('f32', [1, half], cv);
  const sin = b.upload('f32', [1, half], sv);
  const made = [x, xn, normW, wq, q, kc, vc, att, wg, wu, gate, up, act, head, logits, cos, sin];
  const ropeOpts: RopeOptions = { nHeads, headDim, layout: 'half' };
  const attOpts: { -readonly [K in keyof AttentionOptions]: AttentionOptions[K] } = {
    startPos: 0,
    nHeads,
    nKvHeads,
    headDim,
    scale: 1 / Math.sqrt(headDim),
  };
  const cappedOpts: { -readonly [K in keyof AttentionOptions]: AttentionOptions[K] } = {
    ...attOpts,
    window: 16,
    softcap: 50,
  };
  const logitsOut = new Float32Array(vocab);
  let checksum = 0;
  const step = (i: number) => {
    b.scale(xn, x, 8);
    b.rmsnorm(xn, xn, normW, 1e-5);
    b.matmul(q, xn, wq);
    b.rope(q, cos, sin, ropeOpts);
    attOpts.startPos = i % capacity;
    b.attention(att, q, kc, vc, attOpts);
    cappedOpts.startPos = attOpts.startPos;
    b.attention(att, q, kc, vc, cappedOpts);
    b.matmul(gate, att, wg);
    b.matmul(up, att, wu);
    b.swiglu(act, gate, up);
    b.geluGlu(act, gate, up);
    b.add(xn, xn, att);
    b.matmul(logits, xn, head);
    b.softcap(logits, 30);
    checksum += b.argmax(logits);
    b.read(logits, logitsOut);
  };
  try {
    for (let i = 0; i < 2000; i++) step(i);
    // Sum the heap's growth over batches of steps: garbage is not collected within a batch (and a collection that
    // does happen only loses that batch), so this measures allocation, not just what stays reachable. V8 keeps
    // tiering hot functions up for a long time, which allocates a little (compiled code, feedback), so the best of
    // a few rounds counts; an op that allocates per call grows the heap in every round.
    let grew = Number.POSITIVE_INFINITY;
    for (let round = 0; round < rounds; round++) {
      opts.gc?.();
      let sum = 0;
      let last = opts.heapUsed();
      for (let i = 0; i < iterations; i++) {
        step(i);
        if ((i + 1) % 100 === 0 || i === iterations - 1) {
          const now = opts.heapUsed();
          if (now > last) sum += now - last;
          last = now;
        }
      }
      grew = Math.min(grew, sum);
    }
    if (grew > budget)
      throw new ConformanceError(
        `steady-state memory: the JS heap grew by ${grew} bytes over ${iterations} decode steps (budget ${budget}); an op allocates per call`,
      );
    if (!Number.isFinite(checksum)) throw new ConformanceError('steady-state memory: bad argmax');
    return grew;
  } finally {
    for (const t of made) b.free(t);
  }
}

export function memoryCases(): ConformanceCase[] {
  return [roundTripCase, viewCase];
}
