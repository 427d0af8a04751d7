/**
 * Validation: malformed arguments throw a TypeError or RangeError naming the op, never trap or write, and leave the
 * output untouched (arguments are checked before memory is touched).
 */
import type { AttentionOptions, Backend, RopeOptions } from '../backend';
import type { DType } from '../dtype';
import { type GgmlBlockType, GgmlTensor } from '../ggml';
import { QuantizedTensor, Tensor } from '../tensor';
import { ConformanceError, expectBytes, expectRejects, type Scope, scoped } from './compare';
import { randomGgml } from './ggml';
import { randomQuantized } from './quantized';
import { floats, Rng } from './random';
import type { ConformanceCase } from './types';

/** `fn` must be rejected by `op` and leave `watch` (an output) byte-for-byte unchanged. */
function rejects(b: Backend, what: string, op: string, fn: () => unknown, watch?: Tensor): void {
  const before = watch ? b.readBytes(watch) : undefined;
  expectRejects(what, op, fn);
  if (watch && before)
    expectBytes(`${what}: output changed by the rejected call`, b.readBytes(watch), before);
}

function f32(s: Scope, shape: number[], rng: Rng): Tensor {
  return s.f32(
    shape,
    floats(
      rng,
      shape.reduce((a, c) => a * c, 1),
    ),
  );
}

const memoryValidation: ConformanceCase = {
  name: 'validation: alloc, upload, view, read, write, free',
  group: 'validation',
  run: (backend) =>
    scoped(backend, backend, (s) => {
      const b = s.backend;
      const rng = new Rng(1800);
      rejects(b, 'unknown dtype', 'alloc', () => b.alloc('f64' as DType, [2]));
      rejects(b, 'negative dimension', 'alloc', () => b.alloc('f32', [2, -1]));
      rejects(b, 'fractional dimension', 'alloc', () => b.alloc('f32', [2.5]));
      rejects(b, 'data too short', 'upload', () => b.upload('f32', [2, 3], new Float32Array(5)));
      rejects(b, 'Float64Array for f32', 'upload', () => b.upload('f32', [2], new Float64Array(2)));
      rejects(b, 'Float32Array for f16', 'upload', () => b.upload('f16', [2], new Float32Array(1)));
      rejects(b, 'not a typed array', 'upload', () => b.upload('f32', [1], [1] as unknown as Float32Array));
      rejects(b, 'cols not a multiple of the group', 'uploadQuantized', () =>
        b.uploadQuantized(
          { bits: 4, groupSize: 32, scaleDtype: 'f16' },
          [2, 48],
          new Uint32Array(12),
          new Uint16Array(4),
          new Uint16Array(4),
        ),
      );
      rejects(b, 'bits 7', 'uploadQuantized', () =>
        b.uploadQuantized(
          { bits: 7 as 4, groupSize: 32, scaleDtype: 'f16' },
          [1, 32],
          new Uint32Array(7),
          new Uint16Array(1),
          new Uint16Array(1),
        ),
      );
      rejects(b, 'packed too short', 'uploadQuantized', () =>
        b.uploadQuantized(
          { bits: 4, groupSize: 32, scaleDtype: 'f16' },
          [2, 32],
          new Uint32Array(4 * 2 - 1),
          new Uint16Array(2),
          new Uint16Array(2),
        ),
      );
      const t = f32(s, [4, 6], rng);
      rejects(b, 'view past the end', 'view', () => b.view(t, [2, 6], 13));
      rejects(b, 'view with negative offset', 'view', () => b.view(t, [1], -1));
      rejects(b, 'view with fractional offset', 'view', () => b.view(t, [1], 0.5));
      rejects(b, 'view larger than the tensor', 'view', () => b.view(t, [5, 6]));
      const forged = new Tensor(t.backendName, 'f32', [1000], t.storage, 0);
      rejects(b, 'forged tensor past its storage', 'read', () => b.read(forged));
      const retyped = new Tensor(t.backendName, 'u32', [4], t.storage, 0);
      rejects(b, 'forged tensor with another dtype', 'readBytes', () => b.readBytes(retyped));
      const bogus = new Tensor(t.backendName, 'f32', [1], {}, 0);
      rejects(b, 'tensor with a made-up storage', 'read', () => b.read(bogus));
      rejects(b, 'read into a short array', 'read', () => b.read(t, new Float32Array(23)));
      rejects(b, 'read of an f16 tensor', 'read', () => b.read(s.upload('f16', [2], new Uint16Array(2))));
      rejects(b, 'readBytes into a short array', 'readBytes', () => b.readBytes(t, new Uint8Array(95)));
      rejects(b, 'write of the wrong length', 'write', () => b.write(t, new Float32Array(25)), t);
      rejects(b, 'write of a Float64Array', 'write', () => b.write(t, new Float64Array(24)), t);
      const v = b.view(t, [6], 6);
      const gone = s.alloc('f32', [3]);
      s.free(gone);
      rejects(b, 'read after free', 'read', () => b.read(gone));
      rejects(b, 'double free', 'free', () => b.free(gone));
      rejects(b, 'view of a freed tensor', 'view', () => b.view(gone, [1]));
      s.free(t);
      rejects(b, 'read of a view whose storage was freed', 'read', () => b.read(v));
      rejects(b, 'free through a view of a freed tensor', 'free', () => b.free(v));
    }),
};

const foreignValidation: ConformanceCase = {
  name: 'validation: tensors of another backend or another instance are refused',
  group: 'validation',
  run: async (backend, reference, other) => {
    const rng = new Rng(1900);
    const outsiders: [string, Backend][] = [[`the ${reference.name} backend`, reference]];
    if (other) outsiders.push(['another instance of this backend', other]);
    for (const [who, ob] of outsiders) {
      if (ob === backend) continue;
      await scoped(backend, ob, (s, o) => {
        const b = s.backend;
        const y = f32(s, [2, 3], rng);
        const x = f32(s, [2, 4], rng);
        const w = f32(s, [3, 4], rng);
        const foreignX = f32(o, [2, 4], rng);
        const foreignW = f32(o, [3, 4], rng);
        rejects(b, `x from ${who}`, 'matmul', () => b.matmul(y, foreignX, w), y);
        rejects(b, `w from ${who}`, 'matmul', () => b.matmul(y, x, foreignW), y);
        rejects(b, `read of a tensor from ${who}`, 'read', () => b.read(foreignX));
        rejects(b, `free of a tensor from ${who}`, 'free', () => b.free(foreignX));
        rejects(b, `view of a tensor from ${who}`, 'view', () => b.view(foreignX, [1]));
        rejects(b, `write to a tensor from ${who}`, 'write', () => b.write(foreignX, new Float32Array(8)));
        const spec = { bits: 4, groupSize: 32, scaleDtype: 'f16' } as const;
        const q = o.quantized(spec, [3, 32], randomQuantized(rng, spec, 3, 32, false));
        rejects(b, `quantized weight from ${who}`, 'matmul', () => b.matmul(y, f32(s, [2, 32], rng), q), y);
        // A weight whose parts mix backends.
        const mine = s.quantized(spec, [3, 32], randomQuantized(rng, spec, 3, 32, false));
        const mixed = new QuantizedTensor(spec, [3, 32], mine.packed, q.scales, mine.biases);
        rejects(
          b,
          `quantized weight with scales from ${who}`,
          'matmul',
          () => b.matmul(y, f32(s, [2, 32], rng), mixed),
          y,
        );
        const out = f32(s, [1, 4], rng);
        rejects(
          b,
          `embedding table from ${who}`,
          'embedding',
          () => b.embedding(out, foreignW, new Int32Array([0])),
          out,
        );
      });
    }
  },
};

const opsValidation: ConformanceCase = {
  name: 'validation: ops reject bad shapes, dtypes, ids, options and overlaps without touching memory',
  group: 'validation',
  run: (backend) =>
    scoped(backend, backend, (s) => {
      const b = s.backend;
      const rng = new Rng(2000);
      // matmul
      const y = f32(s, [2, 3], rng);
      const x = f32(s, [2, 4], rng);
      const w = f32(s, [3, 4], rng);
      rejects(b, 'x columns ≠ w columns', 'matmul', () => b.matmul(y, f32(s, [2, 5], rng), w), y);
      rejects(b, 'y rows ≠ x rows', 'matmul', () => b.matmul(f32(s, [3, 3], rng), x, w));
      rejects(b, 'y columns ≠ w rows', 'matmul', () => b.matmul(f32(s, [2, 4], rng), x, w));
      rejects(
        b,
        'x of dtype f16',
        'matmul',
        () => b.matmul(y, s.upload('f16', [2, 4], new Uint16Array(8)), w),
        y,
      );
      rejects(b, 'y of dtype bf16', 'matmul', () => b.matmul(s.alloc('bf16', [2, 3]), x, w));
      rejects(
        b,
        'w of dtype u32',
        'matmul',
        () => b.matmul(y, x, s.upload('u32', [3, 4], new Uint32Array(12))),
        y,
      );
      rejects(b, 'w 3-D', 'matmul', () => b.matmul(y, x, f32(s, [3, 2, 2], rng)), y);
      rejects(b, '1-D x', 'matmul', () => b.matmul(f32(s, [4, 3], rng), f32(s, [4], rng), w));
      rejects(b, 'bias of the wrong size', 'matmul', () => b.matmul(y, x, w, f32(s, [4], rng)), y);
      rejects(
        b,
        'bias of dtype f16',
        'matmul',
        () => b.matmul(y, x, w, s.upload('f16', [3], new Uint16Array(3))),
        y,
      );
      const xy = f32(s, [2, 8], rng);
      rejects(
        b,
        'y overlapping x',
        'matmul',
        () => b.matmul(b.view(xy, [2, 3], 1), b.view(xy, [2, 4]), w),
        xy,
      );
      const spec = { bits: 4, groupSize: 32, scaleDtype: 'f16' } as const;
      const q = s.quantized(spec, [3, 32], randomQuantized(rng, spec, 3, 32, false));
      const x32 = f32(s, [2, 32], rng);
      const badScales = new QuantizedTensor(
        spec,
        [3, 32],
        q.packed,
        s.upload('bf16', [3, 1], new Uint16Array(3)),
        q.biases,
      );
      rejects(b, 'quantized scales of the wrong dtype', 'matmul', () => b.matmul(y, x32, badScales), y);
      const badPacked = new QuantizedTensor(
        spec,
        [3, 32],
        s.upload('u32', [3, 3], new Uint32Array(9)),
        q.scales,
        q.biases,
      );
      rejects(b, 'quantized packed of the wrong shape', 'matmul', () => b.matmul(y, x32, badPacked), y);
      const badShape = new QuantizedTensor(spec, [3, 64], q.packed, q.scales, q.biases);
      rejects(
        b,
        'quantized shape inconsistent with its parts',
        'matmul',
        () => b.matmul(y, f32(s, [2, 64], rng), badShape),
        y,
      );
      // embedding
      const table = f32(s, [5, 4], rng);
      const out = f32(s, [3, 4], rng);
      rejects(b, 'id -1', 'embedding', () => b.embedding(out, table, new Int32Array([0, -1, 2])), out);
      rejects(
        b,
        'id = vocab (last)',
        'embedding',
        () => b.embedding(out, table, new Int32Array([0, 1, 5])),
        out,
      );
      rejects(
        b,
        'huge id',
        'embedding',
        () => b.embedding(out, table, new Int32Array([2 ** 31 - 1, 0, 0])),
        out,
      );
      rejects(
        b,
        'ids as a plain array',
        'embedding',
        () => b.embedding(out, table, [0, 1, 2] as unknown as Int32Array),
        out,
      );
      rejects(
        b,
        'ids count ≠ out rows',
        'embedding',
        () => b.embedding(out, table, new Int32Array([0, 1])),
        out,
      );
      rejects(b, 'out width ≠ dim', 'embedding', () =>
        b.embedding(f32(s, [3, 5], rng), table, new Int32Array(3)),
      );
      rejects(
        b,
        'table of dtype u8',
        'embedding',
        () => b.embedding(out, s.upload('u8', [5, 4], new Uint8Array(20)), new Int32Array(3)),
        out,
      );
      const qOut = f32(s, [1, 32], rng);
      rejects(
        b,
        'quantized id out of range',
        'embedding',
        () => b.embedding(qOut, q, new Int32Array([3])),
        qOut,
      );
      // rmsnorm
      const xn = f32(s, [2, 4], rng);
      const on = f32(s, [2, 4], rng);
      rejects(b, 'weight size ≠ dim', 'rmsnorm', () => b.rmsnorm(on, xn, f32(s, [5], rng), 1e-5), on);
      rejects(b, 'out shape ≠ x shape', 'rmsnorm', () =>
        b.rmsnorm(f32(s, [2, 5], rng), xn, f32(s, [4], rng), 1e-5),
      );
      rejects(b, 'negative eps', 'rmsnorm', () => b.rmsnorm(on, xn, f32(s, [4], rng), -1), on);
      rejects(b, 'NaN eps', 'rmsnorm', () => b.rmsnorm(on, xn, f32(s, [4], rng), Number.NaN), on);
      const xo = f32(s, [3, 4], rng);
      rejects(
        b,
        'out partly overlapping x',
        'rmsnorm',
        () => b.rmsnorm(b.view(xo, [2, 4], 4), b.view(xo, [2, 4]), f32(s, [4], rng), 1e-5),
        xo,
      );
      rejects(
        b,
        'out overlapping weight',
        'rmsnorm',
        () => b.rmsnorm(b.view(xo, [1, 4]), f32(s, [1, 4], rng), b.view(xo, [4]), 1e-5),
        xo,
      );
      // rope
      const xr = f32(s, [2, 16], rng);
      const cs = f32(s, [2, 4], rng);
      const sn = f32(s, [2, 4], rng);
      const ro: RopeOptions = { nHeads: 2, headDim: 8, layout: 'half' };
      rejects(b, 'width ≠ nHeads·headDim', 'rope', () => b.rope(xr, cs, sn, { ...ro, nHeads: 3 }), xr);
      rejects(
        b,
        'rotDim > headDim',
        'rope',
        () => b.rope(xr, f32(s, [2, 5], rng), f32(s, [2, 5], rng), ro),
        xr,
      );
      rejects(
        b,
        'cos rows ≠ x rows',
        'rope',
        () => b.rope(xr, f32(s, [3, 4], rng), f32(s, [3, 4], rng), ro),
        xr,
      );
      rejects(b, 'cos shape ≠ sin shape', 'rope', () => b.rope(xr, cs, f32(s, [2, 3], rng), ro), xr);
      rejects(b, "layout 'neox'", 'rope', () => b.rope(xr, cs, sn, { ...ro, layout: 'neox' as 'half' }), xr);
      rejects(b, 'nHeads 0', 'rope', () => b.rope(xr, cs, sn, { ...ro, nHeads: 0 }), xr);
      // swiglu, geluGlu, softcap, scale, add, toF32, softmax, argmax
      const a = f32(s, [2, 5], rng);
      const o = f32(s, [2, 5], rng);
      rejects(b, 'swiglu shape mismatch', 'swiglu', () => b.swiglu(o, a, f32(s, [5, 2], rng)), o);
      const sg = f32(s, [11], rng);
      rejects(
        b,
        'swiglu out partly overlapping gate',
        'swiglu',
        () => b.swiglu(b.view(sg, [10], 1), b.view(sg, [10]), f32(s, [10], rng)),
        sg,
      );
      rejects(b, 'geluGlu shape mismatch', 'geluGlu', () => b.geluGlu(o, a, f32(s, [5, 2], rng)), o);
      const gg = f32(s, [11], rng);
      rejects(
        b,
        'geluGlu out partly overlapping up',
        'geluGlu',
        () => b.geluGlu(b.view(gg, [10], 1), f32(s, [10], rng), b.view(gg, [10])),
        gg,
      );
      rejects(
        b,
        'geluGlu of f16',
        'geluGlu',
        () => b.geluGlu(o, s.upload('f16', [2, 5], new Uint16Array(10)), a),
        o,
      );
      for (const cap of [0, -1, Number.NaN, Number.POSITIVE_INFINITY])
        rejects(b, `softcap ${cap}`, 'softcap', () => b.softcap(o, cap), o);
      rejects(b, 'softcap of u32', 'softcap', () => b.softcap(s.upload('u32', [2], new Uint32Array(2)), 1));
      rejects(b, 'scale shape mismatch', 'scale', () => b.scale(o, f32(s, [5, 2], rng), 2), o);
      rejects(b, 'scale by NaN', 'scale', () => b.scale(o, a, Number.NaN), o);
      rejects(b, 'scale by infinity', 'scale', () => b.scale(o, a, Number.POSITIVE_INFINITY), o);
      const sc = f32(s, [11], rng);
      rejects(
        b,
        'scale out partly overlapping x',
        'scale',
        () => b.scale(b.view(sc, [10], 1), b.view(sc, [10]), 2),
        sc,
      );
      rejects(b, 'add shape mismatch', 'add', () => b.add(o, a, f32(s, [10], rng)), o);
      const ac = f32(s, [11], rng);
      rejects(
        b,
        'add partial overlap',
        'add',
        () => b.add(b.view(ac, [10], 1), b.view(ac, [10]), f32(s, [10], rng)),
        ac,
      );
      rejects(
        b,
        'toF32 size mismatch',
        'toF32',
        () => b.toF32(o, s.upload('f16', [9], new Uint16Array(9))),
        o,
      );
      rejects(b, 'toF32 from u32', 'toF32', () => b.toF32(o, s.upload('u32', [10], new Uint32Array(10))), o);
      rejects(b, 'softmax of a 1-D tensor', 'softmax', () => b.softmax(f32(s, [5], rng)));
      rejects(b, 'softmax of f16', 'softmax', () => b.softmax(s.upload('f16', [1, 2], new Uint16Array(2))));
      rejects(b, 'argmax row out of range', 'argmax', () => b.argmax(a, 2));
      rejects(b, 'argmax negative row', 'argmax', () => b.argmax(a, -1));
      rejects(b, 'argmax of empty rows', 'argmax', () => b.argmax(s.alloc('f32', [2, 0])));
      // copyRows
      const t = f32(s, [6, 3], rng);
      rejects(b, 'overlapping ranges', 'copyRows', () => b.copyRows(t, 1, t, 0, 2), t);
      rejects(b, 'rows past the end', 'copyRows', () => b.copyRows(t, 5, f32(s, [6, 3], rng), 0, 2), t);
      rejects(
        b,
        'dtype mismatch',
        'copyRows',
        () => b.copyRows(t, 0, s.upload('u32', [6, 3], new Uint32Array(18)), 0, 1),
        t,
      );
      rejects(b, 'width mismatch', 'copyRows', () => b.copyRows(t, 0, f32(s, [6, 4], rng), 0, 1), t);
      rejects(b, 'negative row', 'copyRows', () => b.copyRows(t, -1, f32(s, [6, 3], rng), 0, 1), t);
    }),
};

const attentionValidation: ConformanceCase = {
  name: 'validation: attention rejects positions past the cache, bad heads and shapes',
  group: 'validation',
  run: (backend) =>
    scoped(backend, backend, (s) => {
      const b = s.backend;
      const rng = new Rng(2100);
      const q = f32(s, [3, 16], rng);
      const k = f32(s, [8, 8], rng);
      const v = f32(s, [8, 8], rng);
      const out = f32(s, [3, 16], rng);
      const o: AttentionOptions = { startPos: 0, nHeads: 4, nKvHeads: 2, headDim: 4, scale: 0.5 };
      b.attention(out, q, k, v, o); // valid
      rejects(
        b,
        'positions past the capacity',
        'attention',
        () => b.attention(out, q, k, v, { ...o, startPos: 6 }),
        out,
      );
      rejects(
        b,
        'nHeads not a multiple of nKvHeads',
        'attention',
        () => b.attention(out, q, k, v, { ...o, nKvHeads: 3 }),
        out,
      );
      rejects(
        b,
        'q width ≠ nHeads·headDim',
        'attention',
        () => b.attention(out, q, k, v, { ...o, nHeads: 2 }),
        out,
      );
      rejects(
        b,
        'k and v shapes differ',
        'attention',
        () => b.attention(out, q, k, f32(s, [9, 8], rng), o),
        out,
      );
      rejects(b, 'out shape ≠ q shape', 'attention', () => b.attention(f32(s, [2, 16], rng), q, k, v, o));
      rejects(b, 'negative window', 'attention', () => b.attention(out, q, k, v, { ...o, window: -1 }), out);
      rejects(
        b,
        'fractional startPos',
        'attention',
        () => b.attention(out, q, k, v, { ...o, startPos: 0.5 }),
        out,
      );
      rejects(b, 'NaN scale', 'attention', () => b.attention(out, q, k, v, { ...o, scale: Number.NaN }), out);
      for (const softcap of [-1, Number.NaN, Number.POSITIVE_INFINITY])
        rejects(
          b,
          `softcap ${softcap}`,
          'attention',
          () => b.attention(out, q, k, v, { ...o, softcap }),
          out,
        );
      b.attention(out, q, k, v, { ...o, softcap: 0 }); // 0 = none: valid
      rejects(b, 'out aliasing q', 'attention', () => b.attention(q, q, k, v, o), q);
      rejects(
        b,
        'k of dtype f16',
        'attention',
        () => b.attention(out, q, s.upload('f16', [8, 8], new Uint16Array(64)), v, o),
        out,
      );
    }),
};

const ggmlValidation: ConformanceCase = {
  name: 'validation: GGML weights (uploadGgml, foreign and inconsistent parts, use after free)',
  group: 'validation',
  run: async (backend, reference, other) => {
    const rng = new Rng(2300);
    await scoped(backend, backend, (s) => {
      const b = s.backend;
      rejects(b, 'unknown type', 'uploadGgml', () =>
        b.uploadGgml('Q4_2' as GgmlBlockType, [1, 32], new Uint8Array(18)),
      );
      rejects(b, 'cols not a multiple of the block', 'uploadGgml', () =>
        b.uploadGgml('Q4_K', [1, 128], new Uint8Array(72)),
      );
      rejects(b, 'blocks too short', 'uploadGgml', () => b.uploadGgml('Q8_0', [2, 64], new Uint8Array(135)));
      rejects(b, 'blocks too long', 'uploadGgml', () => b.uploadGgml('Q8_0', [2, 64], new Uint8Array(137)));
      rejects(b, 'shape not 2-D', 'uploadGgml', () =>
        b.uploadGgml('Q8_0', [64] as unknown as [number, number], new Uint8Array(34)),
      );
      const w = s.ggml('Q4_0', [3, 64], randomGgml(rng, 'Q4_0', 3, 64));
      const y = f32(s, [2, 3], rng);
      rejects(
        b,
        'GGML weight with the wrong in dimension',
        'matmul',
        () => b.matmul(y, f32(s, [2, 32], rng), w),
        y,
      );
      const wrongType = new GgmlTensor('Q8_0', [3, 64], w.blocks);
      rejects(
        b,
        'GGML blocks of another type’s size',
        'matmul',
        () => b.matmul(y, f32(s, [2, 64], rng), wrongType),
        y,
      );
      const out = f32(s, [1, 64], rng);
      rejects(
        b,
        'GGML embedding id out of range',
        'embedding',
        () => b.embedding(out, w, new Int32Array([3])),
        out,
      );
      const gone = s.ggml('Q6_K', [2, 256], randomGgml(rng, 'Q6_K', 2, 256));
      s.free(gone);
      rejects(b, 'GGML weight after free', 'matmul', () =>
        b.matmul(f32(s, [1, 2], rng), f32(s, [1, 256], rng), gone),
      );
      rejects(b, 'GGML weight freed twice', 'free', () => b.free(gone));
    });
    const outsiders: Backend[] = [reference, ...(other ? [other] : [])].filter((o) => o !== backend);
    for (const ob of outsiders)
      await scoped(backend, ob, (s, o) => {
        const foreign = o.ggml('Q8_0', [3, 32], randomGgml(rng, 'Q8_0', 3, 32));
        const y = f32(s, [1, 3], rng);
        rejects(
          s.backend,
          `GGML weight of ${ob.name}`,
          'matmul',
          () => s.backend.matmul(y, f32(s, [1, 32], rng), foreign),
          y,
        );
      });
  },
};

const accountingCase: ConformanceCase = {
  name: 'memory: memoryInUse counts allocations (not views) and free/dispose-level accounting',
  group: 'memory',
  run: (backend) => {
    const b = backend;
    const base = b.memoryInUse();
    const t = b.alloc('f32', [3, 5]);
    const afterAlloc = b.memoryInUse();
    if (afterAlloc < base + 60)
      throw new ConformanceError(`memoryInUse grew by ${afterAlloc - base} for 60 bytes`);
    b.view(t, [5], 5);
    if (b.memoryInUse() !== afterAlloc)
      throw new ConformanceError('memoryInUse changed when a view was made');
    const spec = { bits: 4, groupSize: 32, scaleDtype: 'bf16' } as const;
    const rng = new Rng(2200);
    const p = randomQuantized(rng, spec, 2, 64, false);
    const q = b.uploadQuantized(spec, [2, 64], p.packed, p.scales, p.biases);
    const g = b.uploadGgml('Q4_K', [2, 256], new Uint8Array(288));
    if (b.memoryInUse() < afterAlloc + 288)
      throw new ConformanceError('memoryInUse does not count a GGML weight');
    b.free(t);
    b.free(q);
    b.free(g);
    if (b.memoryInUse() !== base)
      throw new ConformanceError(`memoryInUse is ${b.memoryInUse()} after freeing everything, was ${base}`);
  },
};

export function validationCases(): ConformanceCase[] {
  return [
    memoryValidation,
    foreignValidation,
    opsValidation,
    attentionValidation,
    ggmlValidation,
    accountingCase,
  ];
}
