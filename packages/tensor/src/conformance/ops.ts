/** Every dense op against the reference backend, at many shapes, with tolerances scaled to the values' magnitudes. */
import { ropeTable } from '../convert';
import type { ScaleDType } from '../dtype';
import type { Tensor } from '../tensor';
import {
  ConformanceError,
  EXP_REL,
  expectBitwise,
  expectClose,
  expectEqual,
  type Scope,
  scoped,
  TINY,
  U,
} from './compare';
import { absData, absF32, encode, floats, ids, Rng, wideFloats } from './random';
import type { ConformanceCase } from './types';

const FLOAT_DTYPES: readonly ScaleDType[] = ['f32', 'f16', 'bf16'];

/** An f32 output tensor pre-filled with NaN, so an element the op forgets to write shows up. */
export function nanTensor(s: Scope, shape: readonly number[]): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  return s.f32(shape, new Float32Array(n).fill(Number.NaN));
}

function matmulCase(dtype: ScaleDType): ConformanceCase {
  // [rows, in, out, bias]: odd sizes, sizes not multiples of 4, one row and many rows.
  const shapes: [number, number, number, boolean][] = [
    [1, 1, 1, false],
    [1, 7, 3, true],
    [2, 16, 5, false],
    [3, 33, 17, true],
    [1, 64, 40, false],
    [5, 100, 9, true],
    [4, 257, 6, false],
    [7, 8, 1, true],
    [16, 19, 23, false],
  ];
  return {
    name: `matmul: dense ${dtype} weights vs reference`,
    group: 'ops',
    run: (backend, reference) =>
      scoped(backend, reference, (b, r) => {
        const rng = new Rng(101);
        for (const [rows, inDim, outDim, hasBias] of shapes) {
          for (const wide of [false, true]) {
            const xv = wide ? wideFloats(rng, rows * inDim) : floats(rng, rows * inDim);
            const w = encode(
              dtype,
              wide ? wideFloats(rng, outDim * inDim, 4) : floats(rng, outDim * inDim, 0.5),
            );
            const bv = floats(rng, outDim, 2);
            const label = `matmul ${dtype} x[${rows},${inDim}] w[${outDim},${inDim}]${hasBias ? ' +bias' : ''}${wide ? ' wide-range' : ''}`;
            const y = nanTensor(b, [rows, outDim]);
            b.backend.matmul(
              y,
              b.f32([rows, inDim], xv),
              b.upload(dtype, [outDim, inDim], w.data),
              hasBias ? b.f32([outDim], bv) : undefined,
            );
            const want = r.alloc('f32', [rows, outDim]);
            r.backend.matmul(
              want,
              r.f32([rows, inDim], xv),
              r.upload(dtype, [outDim, inDim], w.data),
              hasBias ? r.f32([outDim], bv) : undefined,
            );
            const mag = r.alloc('f32', [rows, outDim]);
            r.backend.matmul(
              mag,
              r.f32([rows, inDim], absF32(xv)),
              r.upload(dtype, [outDim, inDim], absData(w.data)),
              hasBias ? r.f32([outDim], absF32(bv)) : undefined,
            );
            const tol = Float64Array.from(r.backend.read(mag), (m) => (inDim + 8) * U * m + TINY);
            expectClose(label, b.backend.read(y), r.backend.read(want), tol);
          }
        }
      }),
  };
}

const embeddingCase: ConformanceCase = {
  name: 'embedding: dense f32/f16/bf16 tables, exact',
  group: 'ops',
  run: (backend, reference) =>
    scoped(backend, reference, (b, r) => {
      const rng = new Rng(202);
      for (const dtype of FLOAT_DTYPES)
        for (const dim of [1, 7, 64, 33])
          for (const n of [1, 5, 12]) {
            const vocab = 37;
            const table = encode(dtype, wideFloats(rng, vocab * dim));
            const idv = ids(rng, n, vocab);
            idv[0] = vocab - 1;
            const out = nanTensor(b, [n, dim]);
            b.backend.embedding(out, b.upload(dtype, [vocab, dim], table.data), idv);
            const want = r.alloc('f32', [n, dim]);
            r.backend.embedding(want, r.upload(dtype, [vocab, dim], table.data), idv);
            expectBitwise(
              `embedding ${dtype} [${vocab},${dim}] × ${n} ids`,
              b.backend.read(out),
              r.backend.read(want),
            );
          }
    }),
};

const toF32Case: ConformanceCase = {
  name: 'toF32: f32/f16/bf16 including inf, NaN, -0 and subnormals, exact',
  group: 'ops',
  run: (backend, reference) =>
    scoped(backend, reference, (b, r) => {
      const rng = new Rng(303);
      const specials = [0, -0, 1, -1, Infinity, -Infinity, Number.NaN, 65504, 6e-8, -3e-5, 1e-40, 3e38, -2.5];
      for (const dtype of FLOAT_DTYPES)
        for (const n of [1, 3, 8, 13, 100, 1027]) {
          const values = wideFloats(rng, n, 12);
          for (let i = 0; i < Math.min(n, specials.length); i++) values[i] = specials[i]!;
          const src = encode(dtype, values);
          const out = nanTensor(b, [n]);
          b.backend.toF32(out, b.upload(dtype, [n], src.data));
          const want = r.alloc('f32', [n]);
          r.backend.toF32(want, r.upload(dtype, [n], src.data));
          expectClose(`toF32 ${dtype} [${n}]`, b.backend.read(out), r.backend.read(want), 0);
          const got = b.backend.read(out);
          for (let i = 0; i < n; i++)
            if (Object.is(src.values[i], -0) && !Object.is(got[i], -0))
              throw new ConformanceError(`toF32 ${dtype}: -0 at [${i}] lost its sign`);
        }
    }),
};

const rmsnormCase: ConformanceCase = {
  name: 'rmsnorm vs reference (and in place)',
  group: 'ops',
  run: (backend, reference) =>
    scoped(backend, reference, (b, r) => {
      const rng = new Rng(404);
      for (const rows of [1, 3, 8])
        for (const dim of [1, 7, 64, 100, 333])
          for (const eps of [1e-5, 1e-6]) {
            const xv = rng.next() < 0.5 ? floats(rng, rows * dim, 3) : wideFloats(rng, rows * dim, 5);
            if (rows > 1) xv.fill(0, dim, 2 * dim); // an all-zero row
            const wv = floats(rng, dim, 2);
            const out = nanTensor(b, [rows, dim]);
            b.backend.rmsnorm(out, b.f32([rows, dim], xv), b.f32([dim], wv), eps);
            const want = r.alloc('f32', [rows, dim]);
            r.backend.rmsnorm(want, r.f32([rows, dim], xv), r.f32([dim], wv), eps);
            const w = r.backend.read(want);
            const tol = Float64Array.from(w, (v) => (dim + 16) * U * Math.abs(v) + TINY);
            const got = b.backend.read(out);
            expectClose(`rmsnorm [${rows},${dim}] eps ${eps}`, got, w, tol);
            const inPlace = b.f32([rows, dim], xv);
            b.backend.rmsnorm(inPlace, inPlace, b.f32([dim], wv), eps);
            expectBitwise(
              `rmsnorm [${rows},${dim}] in place (out = x) vs out of place`,
              b.backend.read(inPlace),
              got,
            );
          }
    }),
};

/** `theta^(-2i / rotDim)` for i < rotDim / 2. */
export function invFreq(rotDim: number, theta = 10000): Float32Array {
  return Float32Array.from({ length: rotDim / 2 }, (_, i) => theta ** (-(2 * i) / rotDim));
}

function ropeCase(layout: 'half' | 'pair'): ConformanceCase {
  // [rows, nHeads, headDim, rotDim]
  const shapes = [
    [1, 1, 2, 2],
    [3, 2, 8, 8],
    [2, 3, 64, 64],
    [4, 2, 16, 8],
    [2, 1, 6, 2],
    [5, 4, 12, 12],
    [1, 8, 32, 16],
  ] as const;
  return {
    name: `rope: ${layout} layout vs reference (rotDim ≤ headDim)`,
    group: 'ops',
    run: (backend, reference) =>
      scoped(backend, reference, (b, r) => {
        const rng = new Rng(layout === 'half' ? 505 : 506);
        for (const [rows, nHeads, headDim, rotDim] of shapes) {
          const startPos = rng.int(0, 2000);
          const half = rotDim / 2;
          const cos = new Float32Array(rows * half);
          const sin = new Float32Array(rows * half);
          ropeTable(invFreq(rotDim), startPos, rows, cos, sin);
          const xv = floats(rng, rows * nHeads * headDim, 4);
          const opts = { nHeads, headDim, layout };
          const x = b.f32([rows, nHeads * headDim], xv);
          b.backend.rope(x, b.f32([rows, half], cos), b.f32([rows, half], sin), opts);
          const want = r.f32([rows, nHeads * headDim], xv);
          r.backend.rope(want, r.f32([rows, half], cos), r.f32([rows, half], sin), opts);
          // Each output mixes a pair (a, b) with |cos|, |sin| <= 1; untouched dims must come back exactly.
          const tol = new Float64Array(xv.length);
          for (let row = 0; row < rows * nHeads; row++)
            for (let i = 0; i < headDim; i++) {
              const j = row * headDim + i;
              if (i >= rotDim) continue;
              const mate = layout === 'half' ? (i < half ? i + half : i - half) : i ^ 1;
              tol[j] = 4 * U * (Math.abs(xv[j]!) + Math.abs(xv[row * headDim + mate]!)) + TINY;
            }
          expectClose(
            `rope ${layout} [${rows}, ${nHeads}×${headDim}] rotDim ${rotDim} at ${startPos}`,
            b.backend.read(x),
            r.backend.read(want),
            tol,
          );
        }
      }),
  };
}

const swigluCase: ConformanceCase = {
  name: 'swiglu vs reference (including large |gate|, and in place)',
  group: 'ops',
  run: (backend, reference) =>
    scoped(backend, reference, (b, r) => {
      const rng = new Rng(606);
      for (const shape of [
        [1, 1],
        [1, 7],
        [3, 64],
        [2, 1000],
        [5, 13],
      ]) {
        const n = shape[0]! * shape[1]!;
        const g = floats(rng, n, 10);
        const specials = [0, -0, 100, -100, -20, 20, 1e-6, 88.5, -88.5, -104];
        for (let i = 0; i < Math.min(n, specials.length); i++) g[(i * 7) % n] = specials[i]!;
        const u = wideFloats(rng, n, 3);
        const out = nanTensor(b, shape);
        b.backend.swiglu(out, b.f32(shape, g), b.f32(shape, u));
        const want = r.alloc('f32', shape);
        r.backend.swiglu(want, r.f32(shape, g), r.f32(shape, u));
        const w = r.backend.read(want);
        const tol = Float64Array.from(w, (v) => (2 * EXP_REL + 8 * U) * Math.abs(v) + TINY);
        const got = b.backend.read(out);
        expectClose(`swiglu [${shape}]`, got, w, tol);
        const g2 = b.f32(shape, g);
        b.backend.swiglu(g2, g2, b.f32(shape, u));
        expectBitwise(`swiglu [${shape}] with out = gate`, b.backend.read(g2), got);
        const u2 = b.f32(shape, u);
        b.backend.swiglu(u2, b.f32(shape, g), u2);
        expectBitwise(`swiglu [${shape}] with out = up`, b.backend.read(u2), got);
      }
    }),
};

/** `gelu_tanh(g)` in float64 and `2u` (its exponent), for tolerances. */
function geluParts(g: number): { value: number; t: number } {
  if (g === Number.NEGATIVE_INFINITY) return { value: -0, t: Number.NEGATIVE_INFINITY };
  const t = 2 * Math.sqrt(2 / Math.PI) * (g + 0.044715 * g * g * g);
  return { value: g / (1 + Math.exp(-t)), t };
}

const geluGluCase: ConformanceCase = {
  name: 'geluGlu vs reference (including large |gate|, infinities, and in place)',
  group: 'ops',
  run: (backend, reference) =>
    scoped(backend, reference, (b, r) => {
      const rng = new Rng(611);
      for (const shape of [
        [1, 1],
        [1, 7],
        [3, 64],
        [2, 1000],
        [5, 13],
      ]) {
        const n = shape[0]! * shape[1]!;
        const g = floats(rng, n, 8);
        const specials = [0, -0, 30, -30, -5, 5, 1e-6, -1e-3, 1e20, -1e20, Infinity, -Infinity, -10.5];
        for (let i = 0; i < Math.min(n, specials.length); i++) g[(i * 7) % n] = specials[i]!;
        const u = wideFloats(rng, n, 3);
        const out = nanTensor(b, shape);
        b.backend.geluGlu(out, b.f32(shape, g), b.f32(shape, u));
        const want = r.alloc('f32', shape);
        r.backend.geluGlu(want, r.f32(shape, g), r.f32(shape, u));
        const w = r.backend.read(want);
        // g·σ(t) with t = 2u: the f32 evaluation of t (g³ and a few products) moves σ by about |t|·(1 − σ(t))·ulp
        const tol = Float64Array.from(w, (v, i) => {
          const { t } = geluParts(g[i]!);
          const cond = Number.isFinite(t) ? Math.abs(t) / (1 + Math.exp(t)) : 0;
          return (2 * EXP_REL + 8 * U + 8 * U * cond) * Math.abs(v) + TINY;
        });
        const got = b.backend.read(out);
        expectClose(`geluGlu [${shape}]`, got, w, tol);
        for (let i = 0; i < n; i++)
          if (Object.is(g[i], -0) && !Object.is(got[i], -0 * u[i]!))
            throw new ConformanceError(`geluGlu: gelu(-0) · ${u[i]} must be ${-0 * u[i]!}, got ${got[i]}`);
        const g2 = b.f32(shape, g);
        b.backend.geluGlu(g2, g2, b.f32(shape, u));
        expectBitwise(`geluGlu [${shape}] with out = gate`, b.backend.read(g2), got);
        const u2 = b.f32(shape, u);
        b.backend.geluGlu(u2, b.f32(shape, g), u2);
        expectBitwise(`geluGlu [${shape}] with out = up`, b.backend.read(u2), got);
      }
    }),
};

const softcapCase: ConformanceCase = {
  name: 'softcap vs reference (caps 0.01 to 50, huge and infinite values)',
  group: 'ops',
  run: (backend, reference) =>
    scoped(backend, reference, (b, r) => {
      const rng = new Rng(612);
      for (const cap of [0.01, 1, 10, 30, 50])
        for (const shape of [
          [1, 1],
          [1, 264],
          [3, 33],
          [2, 1000],
        ]) {
          const n = shape[0]! * shape[1]!;
          const xv = floats(rng, n, 4 * cap);
          const specials = [0, -0, 1e30, -1e30, Infinity, -Infinity, cap * 1e-4, -cap * 0.6, cap * 0.7];
          for (let i = 0; i < Math.min(n, specials.length); i++) xv[(i * 5) % n] = specials[i]!;
          const x = b.f32(shape, xv);
          b.backend.softcap(x, cap);
          const want = r.f32(shape, xv);
          r.backend.softcap(want, cap);
          const w = r.backend.read(want);
          const tol = Float64Array.from(w, (v) => (2 * EXP_REL + 8 * U) * Math.abs(v) + TINY);
          const got = b.backend.read(x);
          expectClose(`softcap ${cap} [${shape}]`, got, w, tol);
          for (let i = 0; i < n; i++)
            if (Object.is(xv[i], -0) !== Object.is(got[i], -0))
              throw new ConformanceError(`softcap ${cap}: the sign of zero at [${i}] was not kept`);
        }
    }),
};

const scaleCase: ConformanceCase = {
  name: 'scale: exact (one f32 rounding of x · f32(s)), including out = x',
  group: 'ops',
  run: (backend, reference) =>
    scoped(backend, reference, (b, r) => {
      const rng = new Rng(613);
      for (const s of [Math.sqrt(96), 9.8125, -0.5, 1e-3, 3e30, 0])
        for (const shape of [
          [1, 1],
          [1, 7],
          [3, 64],
          [2, 1001],
        ]) {
          const n = shape[0]! * shape[1]!;
          const xv = wideFloats(rng, n, 20);
          const want = r.alloc('f32', shape);
          r.backend.scale(want, r.f32(shape, xv), s);
          const expected = r.backend.read(want);
          const out = nanTensor(b, shape);
          b.backend.scale(out, b.f32(shape, xv), s);
          expectBitwise(`scale ${s} [${shape}]`, b.backend.read(out), expected);
          const x2 = b.f32(shape, xv);
          b.backend.scale(x2, x2, s);
          expectBitwise(`scale ${s} [${shape}] with out = x`, b.backend.read(x2), expected);
        }
    }),
};

const addCase: ConformanceCase = {
  name: 'add: exact, including out aliasing a or b',
  group: 'ops',
  run: (backend, reference) =>
    scoped(backend, reference, (b, r) => {
      const rng = new Rng(707);
      for (const shape of [
        [1, 1],
        [1, 7],
        [3, 64],
        [2, 1001],
      ]) {
        const n = shape[0]! * shape[1]!;
        const av = wideFloats(rng, n, 20);
        const bv = wideFloats(rng, n, 20);
        const want = r.alloc('f32', shape);
        r.backend.add(want, r.f32(shape, av), r.f32(shape, bv));
        const expected = r.backend.read(want);
        const out = nanTensor(b, shape);
        b.backend.add(out, b.f32(shape, av), b.f32(shape, bv));
        expectBitwise(`add [${shape}]`, b.backend.read(out), expected);
        const a2 = b.f32(shape, av);
        b.backend.add(a2, a2, b.f32(shape, bv));
        expectBitwise(`add [${shape}] with out = a`, b.backend.read(a2), expected);
        const b2 = b.f32(shape, bv);
        b.backend.add(b2, b.f32(shape, av), b2);
        expectBitwise(`add [${shape}] with out = b`, b.backend.read(b2), expected);
      }
    }),
};

const softmaxCase: ConformanceCase = {
  name: 'softmax vs reference (large logits, -inf entries)',
  group: 'ops',
  run: (backend, reference) =>
    scoped(backend, reference, (b, r) => {
      const rng = new Rng(808);
      for (const [rows, n] of [
        [1, 1],
        [1, 7],
        [3, 100],
        [2, 1000],
        [4, 33],
      ] as const) {
        const xv = floats(rng, rows * n, rng.next() < 0.5 ? 5 : 50);
        if (n > 2) xv[1] = Number.NEGATIVE_INFINITY;
        const x = b.f32([rows, n], xv);
        b.backend.softmax(x);
        const want = r.f32([rows, n], xv);
        r.backend.softmax(want);
        const w = r.backend.read(want);
        const tol = new Float64Array(w.length);
        for (let row = 0; row < rows; row++) {
          let max = -Infinity;
          let min = Infinity;
          for (let i = 0; i < n; i++) {
            const v = xv[row * n + i]!;
            max = Math.max(max, v);
            if (v > -Infinity) min = Math.min(min, v);
          }
          const rel = 2 * EXP_REL + 2 * (n + 4) * U + 2 * U * (max - min);
          for (let i = 0; i < n; i++) tol[row * n + i] = rel * w[row * n + i]! + TINY;
        }
        expectClose(`softmax [${rows},${n}]`, b.backend.read(x), w, tol);
      }
    }),
};

const argmaxCase: ConformanceCase = {
  name: 'argmax: exact, first index on ties, any row',
  group: 'ops',
  run: (backend, reference) =>
    scoped(backend, reference, (b, r) => {
      const rng = new Rng(909);
      for (const [rows, n] of [
        [1, 1],
        [1, 5],
        [3, 17],
        [2, 1000],
        [4, 32003],
      ] as const) {
        const xv = wideFloats(rng, rows * n, 8);
        if (n > 4) {
          xv[2] = 1e9; // tie in row 0: the first of the two wins
          xv[n - 1] = 1e9;
          xv[0] = Number.NEGATIVE_INFINITY;
        }
        const x = b.f32([rows, n], xv);
        const xr = r.f32([rows, n], xv);
        for (let row = 0; row < rows; row++)
          expectEqual(
            `argmax [${rows},${n}] row ${row}`,
            b.backend.argmax(x, row),
            r.backend.argmax(xr, row),
          );
        expectEqual(`argmax [${rows},${n}] default row`, b.backend.argmax(x), r.backend.argmax(xr));
      }
    }),
};

const copyRowsCase: ConformanceCase = {
  name: 'copyRows: within and across tensors, several dtypes, exact',
  group: 'ops',
  run: (backend) =>
    scoped(backend, backend, (b) => {
      const rng = new Rng(1010);
      for (const [dtype, elem] of [
        ['f32', 4],
        ['f16', 2],
        ['u32', 4],
        ['u8', 1],
      ] as const) {
        for (const cols of [1, 3, 7, 16]) {
          const rows = 10;
          const bytes = new Uint8Array(rows * cols * elem).map(() => rng.int(0, 256));
          const other = new Uint8Array(rows * cols * elem).map(() => rng.int(0, 256));
          const t = b.upload(dtype, [rows, cols], bytes);
          const u = b.upload(dtype, [rows, cols], other);
          b.backend.copyRows(t, 6, t, 1, 4); // same tensor, disjoint ranges
          b.backend.copyRows(u, 0, t, 7, 3); // across tensors
          b.backend.copyRows(u, 9, t, 0, 0); // nothing
          const rowBytes = cols * elem;
          const e1 = bytes.slice();
          e1.copyWithin(6 * rowBytes, 1 * rowBytes, 5 * rowBytes);
          const e2 = other.slice();
          e2.set(e1.subarray(7 * rowBytes, 10 * rowBytes), 0);
          const got1 = b.backend.readBytes(t);
          const got2 = b.backend.readBytes(u);
          for (let i = 0; i < e1.length; i++)
            if (got1[i] !== e1[i] || got2[i] !== e2[i])
              throw new ConformanceError(`copyRows ${dtype} [${rows},${cols}]: byte ${i} differs`);
        }
      }
    }),
};

export function opsCases(): ConformanceCase[] {
  return [
    toF32Case,
    copyRowsCase,
    ...FLOAT_DTYPES.map(matmulCase),
    embeddingCase,
    rmsnormCase,
    ropeCase('half'),
    ropeCase('pair'),
    swigluCase,
    geluGluCase,
    softcapCase,
    scaleCase,
    addCase,
    softmaxCase,
    argmaxCase,
  ];
}
