/** GGML block weights (the GGUF formats) against the reference: matmul and embedding for every type. */

import type { Backend } from '../backend';
import { numberToF16Bits } from '../convert';
import { GGML_BLOCK_TYPES, type GgmlBlockType, ggmlBlockAffine, ggmlRowBytes } from '../ggml';
import { INT8_ACTIVATION_BLOCK, roundActivationsInt8 } from '../quant';
import { expectClose, scoped, TINY, U } from './compare';
import { nanTensor } from './ops';
import { absF32, floats, ids, Rng } from './random';
import type { ConformanceCase } from './types';

export const GGML_TYPES = Object.keys(GGML_BLOCK_TYPES) as GgmlBlockType[];

/** Byte offsets of each type's f16 scale fields within a block. */
const F16_FIELDS: Readonly<Record<GgmlBlockType, readonly number[]>> = {
  Q4_0: [0],
  Q4_1: [0, 2],
  Q5_0: [0],
  Q5_1: [0, 2],
  Q8_0: [0],
  Q2_K: [80, 82],
  Q3_K: [108],
  Q4_K: [0, 2],
  Q5_K: [0, 2],
  Q6_K: [208],
};

/**
 * Random blocks of `type` for a `[rows, cols]` weight: every byte random (so every code, sub-block scale and high
 * bit pattern occurs), the f16 scales random finite values of either sign between 2^-12 and 2^-4.
 */
export function randomGgml(rng: Rng, type: GgmlBlockType, rows: number, cols: number): Uint8Array {
  const t = GGML_BLOCK_TYPES[type];
  const out = new Uint8Array(rows * ggmlRowBytes(type, cols));
  for (let i = 0; i < out.length; i++) out[i] = rng.int(0, 256);
  for (let b = 0; b < out.length / t.blockBytes; b++)
    for (const f of F16_FIELDS[type]) {
      const h = numberToF16Bits((rng.next() < 0.5 ? -1 : 1) * 2 ** (-12 + 8 * rng.next()));
      out[b * t.blockBytes + f] = h & 0xff;
      out[b * t.blockBytes + f + 1] = h >> 8;
    }
  return out;
}

/** The magnitude of each element as a dense f32 matrix: `|s|·c + |b|` (what bounds a backend's rounding error). */
export function ggmlMagnitudes(
  type: GgmlBlockType,
  rows: number,
  cols: number,
  data: Uint8Array,
): Float32Array {
  const t = GGML_BLOCK_TYPES[type];
  const out = new Float32Array(rows * cols);
  const codes = new Uint8Array(t.blockSize);
  const s = new Float64Array(16);
  const o = new Float64Array(16);
  const rowBytes = ggmlRowBytes(type, cols);
  for (let r = 0; r < rows; r++)
    for (let b = 0; b < cols / t.blockSize; b++) {
      const sub = ggmlBlockAffine(type, data, r * rowBytes + b * t.blockBytes, codes, s, o);
      for (let i = 0; i < t.blockSize; i++) {
        const k = Math.floor(i / sub);
        // rounded up, so the f32 magnitude never understates the exact one
        const m = Math.abs(s[k]!) * codes[i]! + Math.abs(o[k]!);
        out[r * cols + b * t.blockSize + i] = m * (1 + 2 ** -23);
      }
    }
  return out;
}

/** The activations a backend with `int8Activations` gives a GGML matmul: rounded to int8 blocks of 32. */
function seen(backend: Backend, x: Float32Array, rows: number, dim: number): Float32Array {
  return backend.int8Activations === true && dim % INT8_ACTIVATION_BLOCK === 0
    ? roundActivationsInt8(x, rows, dim)
    : x;
}

function matmulCase(type: GgmlBlockType): ConformanceCase {
  return {
    name: `matmul: GGML ${type} weights vs reference`,
    group: 'ops',
    run: (backend, reference) =>
      scoped(backend, reference, (b, r) => {
        const rng = new Rng(2100 + GGML_BLOCK_TYPES[type].id);
        const qk = GGML_BLOCK_TYPES[type].blockSize;
        // [rows, in, out, bias]
        const shapes: [number, number, number, boolean][] = [
          [1, qk, 5, false],
          [3, 2 * qk, 3, true],
          [6, 256, 2, false],
          [2, 3 * qk, 1, true],
        ];
        for (const [rows, inDim, outDim, hasBias] of shapes) {
          const data = randomGgml(rng, type, outDim, inDim);
          const xv = floats(rng, rows * inDim);
          const xr = seen(backend, xv, rows, inDim);
          const bv = floats(rng, outDim);
          const y = nanTensor(b, [rows, outDim]);
          b.backend.matmul(
            y,
            b.f32([rows, inDim], xv),
            b.ggml(type, [outDim, inDim], data),
            hasBias ? b.f32([outDim], bv) : undefined,
          );
          const want = r.alloc('f32', [rows, outDim]);
          r.backend.matmul(
            want,
            r.f32([rows, inDim], xr),
            r.ggml(type, [outDim, inDim], data),
            hasBias ? r.f32([outDim], bv) : undefined,
          );
          const mag = r.alloc('f32', [rows, outDim]);
          r.backend.matmul(
            mag,
            r.f32([rows, inDim], absF32(xr)),
            r.f32([outDim, inDim], ggmlMagnitudes(type, outDim, inDim, data)),
            hasBias ? r.f32([outDim], absF32(bv)) : undefined,
          );
          const tol = Float64Array.from(r.backend.read(mag), (m) => (inDim + 8) * U * m + TINY);
          expectClose(
            `matmul ${type} x[${rows},${inDim}] w[${outDim},${inDim}]${hasBias ? ' +bias' : ''}`,
            b.backend.read(y),
            r.backend.read(want),
            tol,
          );
        }
      }),
  };
}

const embeddingCase: ConformanceCase = {
  name: 'embedding: GGML tables of every type vs reference',
  group: 'ops',
  run: (backend, reference) =>
    scoped(backend, reference, (b, r) => {
      const rng = new Rng(2200);
      for (const type of GGML_TYPES) {
        const vocab = 7;
        const dim = 2 * GGML_BLOCK_TYPES[type].blockSize;
        const data = randomGgml(rng, type, vocab, dim);
        const idv = ids(rng, 4, vocab);
        idv[3] = vocab - 1;
        const out = nanTensor(b, [4, dim]);
        b.backend.embedding(out, b.ggml(type, [vocab, dim], data), idv);
        const want = r.alloc('f32', [4, dim]);
        r.backend.embedding(want, r.ggml(type, [vocab, dim], data), idv);
        const mags = ggmlMagnitudes(type, vocab, dim, data);
        const tol = new Float64Array(4 * dim);
        for (let i = 0; i < 4; i++)
          for (let k = 0; k < dim; k++) tol[i * dim + k] = 4 * U * mags[idv[i]! * dim + k]! + TINY;
        expectClose(`embedding ${type} [${vocab},${dim}]`, b.backend.read(out), r.backend.read(want), tol);
      }
    }),
};

export function ggmlCases(): ConformanceCase[] {
  return [...GGML_TYPES.map(matmulCase), embeddingCase];
}
