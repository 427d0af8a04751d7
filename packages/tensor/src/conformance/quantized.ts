/** Quantized matmul and embedding against the reference: every bits × group size × scale dtype. */

import type { Backend } from '../backend';
import { QUANT_BITS, QUANT_GROUP_SIZES, type QuantBits, type QuantSpec, type ScaleDType } from '../dtype';
import {
  INT8_ACTIVATION_BLOCK,
  packedRowWords,
  type QuantizedData,
  quantize,
  roundActivationsInt8,
} from '../quant';
import { expectClose, scoped, TINY, U } from './compare';
import { nanTensor } from './ops';
import { absData, absF32, encode, floats, ids, Rng } from './random';
import type { ConformanceCase } from './types';

const SCALE_DTYPES: readonly ScaleDType[] = ['f16', 'bf16', 'f32'];

/**
 * Quantized parts of a `[rows, cols]` matrix: either uniformly random codes with random scales and biases (every code
 * value, including the extremes, appears), or `quantize()` of random values (realistic scales and biases).
 */
export function randomQuantized(
  rng: Rng,
  spec: QuantSpec,
  rows: number,
  cols: number,
  viaQuantize: boolean,
): QuantizedData {
  if (viaQuantize) return quantize(spec, rows, cols, floats(rng, rows * cols, 0.5));
  const packed = new Uint32Array(rows * packedRowWords(spec, cols)).map(() => rng.u32());
  const groups = rows * (cols / spec.groupSize);
  const scales = encode(spec.scaleDtype, floats(rng, groups, 0.05)).data;
  const biases = encode(spec.scaleDtype, floats(rng, groups, 0.2)).data;
  return { packed, scales, biases };
}

/** The same codes with |scale| and |bias|: dequantizes to `|scale|·q + |bias|`, the magnitude of each weight. */
export function magnitudeParts(d: QuantizedData): QuantizedData {
  return { packed: d.packed, scales: absData(d.scales), biases: absData(d.biases) };
}

/**
 * A backend with `int8Activations` rounds the input rows of 4-/8-bit quantized matmuls to int8 blocks (when the width
 * is a multiple of 32): the reference then multiplies those rounded values ({@link roundActivationsInt8}).
 */
function seenActivations(
  backend: Backend,
  bits: QuantBits,
  x: Float32Array,
  rows: number,
  dim: number,
): Float32Array {
  const rounds =
    backend.int8Activations === true && (bits === 4 || bits === 8) && dim % INT8_ACTIVATION_BLOCK === 0;
  return rounds ? roundActivationsInt8(x, rows, dim) : x;
}

function matmulQCase(bits: QuantBits): ConformanceCase {
  return {
    name: `matmul: quantized ${bits}-bit, groups 32/64/128 × scales f16/bf16/f32 vs reference`,
    group: 'ops',
    run: (backend, reference) =>
      scoped(backend, reference, (b, r) => {
        const rng = new Rng(1100 + bits);
        for (const groupSize of QUANT_GROUP_SIZES)
          for (const scaleDtype of SCALE_DTYPES) {
            const spec: QuantSpec = { bits, groupSize, scaleDtype };
            // [rows, in, out, bias, via quantize()]
            const shapes: [number, number, number, boolean, boolean][] = [
              [1, groupSize, 5, false, false],
              [3, 2 * groupSize, 3, true, true],
              [2, 3 * groupSize, 1, false, true],
            ];
            for (const [rows, inDim, outDim, hasBias, viaQuantize] of shapes) {
              const parts = randomQuantized(rng, spec, outDim, inDim, viaQuantize);
              const xv = floats(rng, rows * inDim);
              const xr = seenActivations(backend, bits, xv, rows, inDim);
              const bv = floats(rng, outDim);
              const y = nanTensor(b, [rows, outDim]);
              b.backend.matmul(
                y,
                b.f32([rows, inDim], xv),
                b.quantized(spec, [outDim, inDim], parts),
                hasBias ? b.f32([outDim], bv) : undefined,
              );
              const want = r.alloc('f32', [rows, outDim]);
              r.backend.matmul(
                want,
                r.f32([rows, inDim], xr),
                r.quantized(spec, [outDim, inDim], parts),
                hasBias ? r.f32([outDim], bv) : undefined,
              );
              const mag = r.alloc('f32', [rows, outDim]);
              r.backend.matmul(
                mag,
                r.f32([rows, inDim], absF32(xr)),
                r.quantized(spec, [outDim, inDim], magnitudeParts(parts)),
                hasBias ? r.f32([outDim], absF32(bv)) : undefined,
              );
              const tol = Float64Array.from(r.backend.read(mag), (m) => (inDim + 8) * U * m + TINY);
              expectClose(
                `matmul q${bits} g${groupSize} ${scaleDtype} x[${rows},${inDim}] w[${outDim},${inDim}]${hasBias ? ' +bias' : ''}`,
                b.backend.read(y),
                r.backend.read(want),
                tol,
              );
            }
          }
      }),
  };
}

const embeddingQCase: ConformanceCase = {
  name: 'embedding: quantized tables, all bits × groups × scale dtypes vs reference',
  group: 'ops',
  run: (backend, reference) =>
    scoped(backend, reference, (b, r) => {
      const rng = new Rng(1200);
      for (const bits of QUANT_BITS)
        for (const groupSize of QUANT_GROUP_SIZES)
          for (const scaleDtype of SCALE_DTYPES) {
            const spec: QuantSpec = { bits, groupSize, scaleDtype };
            const vocab = 9;
            const dim = groupSize * (1 + (bits % 2));
            const parts = randomQuantized(rng, spec, vocab, dim, bits === 4);
            const idv = ids(rng, 4, vocab);
            idv[3] = vocab - 1;
            const out = nanTensor(b, [4, dim]);
            b.backend.embedding(out, b.quantized(spec, [vocab, dim], parts), idv);
            const want = r.alloc('f32', [4, dim]);
            r.backend.embedding(want, r.quantized(spec, [vocab, dim], parts), idv);
            const mag = r.alloc('f32', [4, dim]);
            r.backend.embedding(mag, r.quantized(spec, [vocab, dim], magnitudeParts(parts)), idv);
            const tol = Float64Array.from(r.backend.read(mag), (m) => 4 * U * m + TINY);
            expectClose(
              `embedding q${bits} g${groupSize} ${scaleDtype} [${vocab},${dim}]`,
              b.backend.read(out),
              r.backend.read(want),
              tol,
            );
          }
    }),
};

export function quantizedCases(): ConformanceCase[] {
  return [...QUANT_BITS.map(matmulQCase), embeddingQCase];
}
