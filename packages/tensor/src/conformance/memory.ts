/** Memory conformance: round trips, views, and the steady-state allocation check of a decode-like loop. */
import type { AttentionOptions, Backend, KvRows, RopeOptions, WriteKvOptions } from '../backend';
import { ropeTable } from '../convert';
import { DTYPE_BYTES, DTYPES } from '../dtype';
import { QuantizedTensor, type Tensor, type Weight } from '../tensor';
import { ConformanceError, expectBitwise, expectBytes, expectEqual, scoped } from './compare';
import { invFreq } from './ops';
import { floats, Rng } from './random';
import { measureSteadyState, type SteadyStateOptions, type SteadyStateReport } from './steady-state';
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

export type { SteadyStateOptions, SteadyStateReport } from './steady-state';

/**
 * Checks that a decode-like step (write from an array, matmul with one row, scale, rmsnorm, rope, attention with and
 * without a soft-cap, swiglu, geluGlu, add, softcap, argmax, read into a preallocated array) allocates nothing on the JS heap once warm: throws a {@link ConformanceError} when the heap grows
 * with the number of steps — by more than `budget` bytes per `iterations` steps (default 8 bytes per step, so one
 * small object per call of any op fails) — in most of `rounds` pairs of windows of n and 2n steps. One-off heap
 * growth (V8 compiling or deoptimizing hot code, garbage collection) does not count: see {@link measureSteadyState}.
 * Returns the measured growth per `iterations` steps (the median over the pairs; about 0 for a backend that passes).
 */
export function checkSteadyStateMemory(backend: Backend, opts: SteadyStateOptions): number {
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
  const made: Tensor[] = [];
  const keep = (t: Tensor) => {
    made.push(t);
    return t;
  };
  try {
    const x = keep(b.upload('f32', [1, dim], floats(rng, dim)));
    const xn = keep(b.alloc('f32', [1, dim]));
    const normW = keep(b.upload('f32', [dim], floats(rng, dim)));
    const wq = keep(b.upload('f32', [dim, dim], floats(rng, dim * dim, 0.1)));
    const q = keep(b.alloc('f32', [1, dim]));
    const kc = keep(b.upload('f32', [capacity, kvWidth], floats(rng, capacity * kvWidth)));
    const vc = keep(b.upload('f32', [capacity, kvWidth], floats(rng, capacity * kvWidth)));
    const att = keep(b.alloc('f32', [1, dim]));
    const wg = keep(b.upload('f32', [hidden, dim], floats(rng, hidden * dim, 0.1)));
    const wu = keep(b.upload('f32', [hidden, dim], floats(rng, hidden * dim, 0.1)));
    const gate = keep(b.alloc('f32', [1, hidden]));
    const up = keep(b.alloc('f32', [1, hidden]));
    const act = keep(b.alloc('f32', [1, hidden]));
    const head = keep(b.upload('f32', [vocab, dim], floats(rng, vocab * dim, 0.1)));
    const logits = keep(b.alloc('f32', [1, vocab]));
    const half = headDim / 2;
    const cv = new Float32Array(half);
    const sv = new Float32Array(half);
    ropeTable(invFreq(headDim), 3, 1, cv, sv);
    const cos = keep(b.upload('f32', [1, half], cv));
    const sin = keep(b.upload('f32', [1, half], sv));
    const ropeOpts: RopeOptions = { nHeads, headDim, layout: 'half' };
    const attOpts: { -readonly [K in keyof AttentionOptions]: AttentionOptions[K] } = {
      startPos: 0,
      nHeads,
      nKvHeads,
      headDim,
      // V8 stores a field created with a fractional number unboxed, and boxes it afresh (16 bytes) each time optimized
      // code reads it and passes it on to a call it did not inline — a backend reading `opts.scale` for its kernels
      // does. That cost comes with the caller's objects and V8's inlining, not with what the backend's code
      // allocates, so this loop keeps its fractional numbers in fields that first held a non-number: V8 then stores
      // one boxed number, which every call passes on.
      scale: null as unknown as number,
    };
    attOpts.scale = 1 / Math.sqrt(headDim);
    const cappedOpts: { -readonly [K in keyof AttentionOptions]: AttentionOptions[K] } = {
      startPos: 0,
      nHeads,
      nKvHeads,
      headDim,
      scale: null as unknown as number, // as above
      window: 16,
      softcap: 50,
    };
    cappedOpts.scale = attOpts.scale;
    const logitsOut = new Float32Array(vocab);
    let checksum = 0;
    const step = (i: number) => {
      b.write(cos, cv); // a decoder writes this step's rope tables (or positions, or ids) every step
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
    const r = measureSteadyState(step, opts);
    if (!Number.isFinite(checksum)) throw new ConformanceError('steady-state memory: bad argmax');
    if (r.leaks) throw new ConformanceError(describeLeak(r));
    return r.growth;
  } finally {
    for (const t of made) b.free(t);
  }
}

/** The error message of a leaking {@link SteadyStateReport}. */
export function describeLeak(r: SteadyStateReport): string {
  const n = r.iterations;
  const kept = Number.isNaN(r.retained) ? '' : `, and kept ${r.retained} bytes reachable per ${n} steps`;
  return (
    `steady-state memory: in ${r.leakingPairs} of ${r.pairs} pairs of windows the JS heap grew with the number of ` +
    `decode steps (budget ${r.budget} bytes per ${n} steps): a median ${r.growth} bytes more over ${2 * n} steps ` +
    `than over ${n}; over ${n} steps it grew by ${r.windowGrowth} bytes in all${kept}; an op allocates per call`
  );
}

/**
 * The steady-state check of KV-cache storage (Backend API v3): a decode-like step writes one key and one value row
 * (`writeKv`) into ring storage of every format (f32, f16, 4-bit and 8-bit, 10 rows with 2 pinned, wrapped after a few
 * steps) and runs attention over each (window 8, the pinned positions visible); throws a {@link ConformanceError}
 * when the JS heap grows with the number of steps, measured as {@link checkSteadyStateMemory} does (see
 * {@link measureSteadyState}). Returns the measured growth per `iterations` steps.
 */
export function checkSteadyStateKvMemory(backend: Backend, opts: SteadyStateOptions): number {
  const b = backend;
  const rng = new Rng(2600);
  const nHeads = 4;
  const nKvHeads = 2;
  const headDim = 16;
  const kvWidth = nKvHeads * headDim;
  const ringRows = 10;
  const made: Weight[] = [];
  try {
    const q = b.upload('f32', [1, nHeads * headDim], floats(rng, nHeads * headDim));
    made.push(q);
    const out = b.alloc('f32', [1, nHeads * headDim]);
    made.push(out);
    const row = b.upload('f32', [1, kvWidth], floats(rng, kvWidth));
    made.push(row);
    const rings: KvRows[] = [];
    for (const spec of ['f32', 'f16', { bits: 4, groupSize: 32 }, { bits: 8, groupSize: 32 }] as const)
      for (let side = 0; side < 2; side++) {
        let t: KvRows;
        if (spec === 'f32' || spec === 'f16') t = b.alloc(spec, [ringRows, kvWidth]);
        else
          t = new QuantizedTensor(
            { ...spec, scaleDtype: 'f32' },
            [ringRows, kvWidth],
            b.alloc('u32', [ringRows, (kvWidth * spec.bits) / 32]),
            b.alloc('f32', [ringRows, kvWidth / 32]),
            b.alloc('f32', [ringRows, kvWidth / 32]),
          );
        rings.push(t);
        made.push(t);
      }
    const writeOpts: { -readonly [K in keyof WriteKvOptions]: WriteKvOptions[K] } = { startPos: 0, keep: 2 };
    const attOpts: { -readonly [K in keyof AttentionOptions]: AttentionOptions[K] } = {
      startPos: 0,
      nHeads,
      nKvHeads,
      headDim,
      scale: null as unknown as number, // a boxed field, as in checkSteadyStateMemory
      window: 8,
      keep: 2,
    };
    attOpts.scale = 1 / Math.sqrt(headDim);
    // a flag, not a float sum: adding floats into a captured variable would box a number per step here
    let finite = true;
    const result = new Float32Array(nHeads * headDim);
    const step = (i: number) => {
      writeOpts.startPos = i;
      attOpts.startPos = i;
      for (let r = 0; r < rings.length; r += 2) {
        b.writeKv(rings[r]!, row, writeOpts);
        b.writeKv(rings[r + 1]!, row, writeOpts);
        b.attention(out, q, rings[r]!, rings[r + 1]!, attOpts);
      }
      b.read(out, result);
      if (!Number.isFinite(result[0]!)) finite = false;
    };
    const r = measureSteadyState(step, opts);
    if (!finite) throw new ConformanceError('steady-state KV memory: attention gave non-finite output');
    if (r.leaks)
      throw new ConformanceError(
        `${describeLeak(r)} (writeKv and attention over ring storage of every format)`,
      );
    return r.growth;
  } finally {
    for (const t of made) b.free(t);
  }
}

export function memoryCases(): ConformanceCase[] {
  return [roundTripCase, viewCase];
}
