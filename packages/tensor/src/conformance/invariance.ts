/**
 * Row invariance, checked bitwise: each output row of a row-wise op must be the same whether N rows are computed in
 * one call, one row at a time, or in chunks of 3 or 7 (so chunk boundaries and row addresses differ). A backend whose
 * reduction order depends on the row count (or on alignment of a row within a batch) fails here even when it is
 * within tolerance of the reference.
 */
import type { Backend } from '../backend';
import { ropeTable } from '../convert';
import type { QuantSpec, ScaleDType } from '../dtype';
import type { GgmlBlockType } from '../ggml';
import type { Tensor, Weight } from '../tensor';
import { expectBitwise, type Scope, scoped } from './compare';
import { randomGgml } from './ggml';
import { invFreq } from './ops';
import { randomQuantized } from './quantized';
import { encode, floats, ids, Rng, wideFloats } from './random';
import type { ConformanceCase } from './types';

const N = 13;
const CHUNKS = [1, 3, 7];

/** Views of rows `[start, start + len)` of a matrix. */
function rows(b: Backend, t: Tensor, start: number, len: number): Tensor {
  const w = t.size / t.shape[0]!;
  return b.view(t, [len, ...t.shape.slice(1)], start * w);
}

/**
 * Computes `op` over all N rows at once into a fresh output, then again chunk by chunk for each chunk size, and
 * compares every run with the first bitwise. `make` returns fresh inputs/outputs for a run; `op` runs on row views.
 */
function checkChunks(
  label: string,
  s: Scope,
  make: () => { out: Tensor; op: (start: number, len: number) => void },
): void {
  const b = s.backend;
  const whole = make();
  whole.op(0, N);
  const expected = b.read(whole.out);
  for (const chunk of CHUNKS) {
    const run = make();
    for (let start = 0; start < N; start += chunk) run.op(start, Math.min(chunk, N - start));
    expectBitwise(`${label}: ${N} rows in chunks of ${chunk} vs all at once`, b.read(run.out), expected);
  }
  const prefix = make();
  prefix.op(0, 5);
  expectBitwise(
    `${label}: first 5 rows alone vs all ${N} at once`,
    b.read(prefix.out).subarray(0, (5 * whole.out.size) / N),
    expected.subarray(0, (5 * whole.out.size) / N),
  );
}

function nan(s: Scope, shape: number[]): Tensor {
  return s.f32(shape, new Float32Array(shape.reduce((a, c) => a * c, 1)).fill(Number.NaN));
}

function matmulInvariance(
  name: string,
  makeWeight: (s: Scope, rng: Rng) => Weight,
  inDim: number,
): ConformanceCase {
  return {
    name: `matmul row invariance: ${name}`,
    group: 'invariance',
    run: (backend) =>
      scoped(backend, backend, (s) => {
        const rng = new Rng(1500);
        const w = makeWeight(s, rng);
        const outDim = w.shape[0]!;
        const x = s.f32([N, inDim], wideFloats(rng, N * inDim, 4));
        for (const bias of [undefined, s.f32([outDim], floats(rng, outDim))])
          checkChunks(`matmul ${name}${bias ? ' +bias' : ''}`, s, () => {
            const out = nan(s, [N, outDim]);
            return {
              out,
              op: (st, len) =>
                backend.matmul(rows(backend, out, st, len), rows(backend, x, st, len), w, bias),
            };
          });
      }),
  };
}

function denseWeight(dtype: ScaleDType, outDim: number, inDim: number) {
  return (s: Scope, rng: Rng) =>
    s.upload(dtype, [outDim, inDim], encode(dtype, floats(rng, outDim * inDim)).data);
}

function quantWeight(spec: QuantSpec, outDim: number, inDim: number) {
  return (s: Scope, rng: Rng) =>
    s.quantized(spec, [outDim, inDim], randomQuantized(rng, spec, outDim, inDim, spec.bits === 4));
}

function ggmlWeight(type: GgmlBlockType, outDim: number, inDim: number) {
  return (s: Scope, rng: Rng) => s.ggml(type, [outDim, inDim], randomGgml(rng, type, outDim, inDim));
}

const rowwiseCase: ConformanceCase = {
  name: 'row invariance: rmsnorm, rope, swiglu, geluGlu, add, scale, softcap, softmax, toF32',
  group: 'invariance',
  run: (backend) =>
    scoped(backend, backend, (s) => {
      const rng = new Rng(1600);
      for (const dim of [37, 64, 300]) {
        const x = s.f32([N, dim], wideFloats(rng, N * dim, 4));
        const wt = s.f32([dim], floats(rng, dim, 2));
        checkChunks(`rmsnorm dim ${dim}`, s, () => {
          const out = nan(s, [N, dim]);
          return {
            out,
            op: (st, len) =>
              backend.rmsnorm(rows(backend, out, st, len), rows(backend, x, st, len), wt, 1e-5),
          };
        });
        const g = s.f32([N, dim], floats(rng, N * dim, 8));
        const u = s.f32([N, dim], floats(rng, N * dim, 2));
        checkChunks(`swiglu dim ${dim}`, s, () => {
          const out = nan(s, [N, dim]);
          return {
            out,
            op: (st, len) =>
              backend.swiglu(
                rows(backend, out, st, len),
                rows(backend, g, st, len),
                rows(backend, u, st, len),
              ),
          };
        });
        checkChunks(`geluGlu dim ${dim}`, s, () => {
          const out = nan(s, [N, dim]);
          return {
            out,
            op: (st, len) =>
              backend.geluGlu(
                rows(backend, out, st, len),
                rows(backend, g, st, len),
                rows(backend, u, st, len),
              ),
          };
        });
        checkChunks(`scale dim ${dim}`, s, () => {
          const out = nan(s, [N, dim]);
          return {
            out,
            op: (st, len) => backend.scale(rows(backend, out, st, len), rows(backend, g, st, len), 9.8125),
          };
        });
        const capped = floats(rng, N * dim, 60);
        checkChunks(`softcap dim ${dim}`, s, () => {
          const out = s.f32([N, dim], capped);
          return { out, op: (st, len) => backend.softcap(rows(backend, out, st, len), 30) };
        });
        checkChunks(`add dim ${dim}`, s, () => {
          const out = nan(s, [N, dim]);
          return {
            out,
            op: (st, len) =>
              backend.add(rows(backend, out, st, len), rows(backend, g, st, len), rows(backend, u, st, len)),
          };
        });
        const logits = floats(rng, N * dim, 20);
        checkChunks(`softmax n ${dim}`, s, () => {
          const out = s.f32([N, dim], logits);
          return { out, op: (st, len) => backend.softmax(rows(backend, out, st, len)) };
        });
        for (const dtype of ['f16', 'bf16'] as const) {
          const src = s.upload(dtype, [N, dim], encode(dtype, wideFloats(rng, N * dim)).data);
          checkChunks(`toF32 ${dtype} dim ${dim}`, s, () => {
            const out = nan(s, [N, dim]);
            return {
              out,
              op: (st, len) => backend.toF32(rows(backend, out, st, len), rows(backend, src, st, len)),
            };
          });
        }
      }
      for (const layout of ['half', 'pair'] as const)
        for (const [nHeads, headDim, rotDim] of [
          [4, 16, 16],
          [3, 12, 8],
          [2, 64, 32],
        ] as const) {
          const half = rotDim / 2;
          const cv = new Float32Array(N * half);
          const sv = new Float32Array(N * half);
          ropeTable(invFreq(rotDim), 17, N, cv, sv);
          const cos = s.f32([N, half], cv);
          const sin = s.f32([N, half], sv);
          const xv = floats(rng, N * nHeads * headDim, 3);
          checkChunks(`rope ${layout} ${nHeads}×${headDim} rotDim ${rotDim}`, s, () => {
            const out = s.f32([N, nHeads * headDim], xv);
            return {
              out,
              op: (st, len) =>
                backend.rope(
                  rows(backend, out, st, len),
                  rows(backend, cos, st, len),
                  rows(backend, sin, st, len),
                  {
                    nHeads,
                    headDim,
                    layout,
                  },
                ),
            };
          });
        }
    }),
};

const embeddingInvariance: ConformanceCase = {
  name: 'row invariance: embedding (dense and quantized)',
  group: 'invariance',
  run: (backend) =>
    scoped(backend, backend, (s) => {
      const rng = new Rng(1700);
      const vocab = 29;
      const tables: [string, Weight, number][] = [
        ['f32', denseWeight('f32', vocab, 37)(s, rng), 37],
        ['f16', denseWeight('f16', vocab, 33)(s, rng), 33],
        ['bf16', denseWeight('bf16', vocab, 64)(s, rng), 64],
        ['q4 g32 f16', quantWeight({ bits: 4, groupSize: 32, scaleDtype: 'f16' }, vocab, 96)(s, rng), 96],
        ['q3 g64 bf16', quantWeight({ bits: 3, groupSize: 64, scaleDtype: 'bf16' }, vocab, 64)(s, rng), 64],
        ['GGML Q5_1', ggmlWeight('Q5_1', vocab, 64)(s, rng), 64],
        ['GGML Q6_K', ggmlWeight('Q6_K', vocab, 256)(s, rng), 256],
      ];
      const idv = ids(rng, N, vocab);
      for (const [name, table, dim] of tables)
        checkChunks(`embedding ${name}`, s, () => {
          const out = nan(s, [N, dim]);
          return {
            out,
            op: (st, len) =>
              backend.embedding(rows(backend, out, st, len), table, idv.subarray(st, st + len)),
          };
        });
    }),
};

export function invarianceCases(): ConformanceCase[] {
  return [
    matmulInvariance('f32 weights, in 37', denseWeight('f32', 19, 37), 37),
    matmulInvariance('f16 weights, in 33', denseWeight('f16', 11, 33), 33),
    matmulInvariance('bf16 weights, in 130', denseWeight('bf16', 7, 130), 130),
    matmulInvariance('q4 g32 f16', quantWeight({ bits: 4, groupSize: 32, scaleDtype: 'f16' }, 9, 96), 96),
    matmulInvariance('q3 g64 bf16', quantWeight({ bits: 3, groupSize: 64, scaleDtype: 'bf16' }, 5, 128), 128),
    matmulInvariance('q6 g128 f32', quantWeight({ bits: 6, groupSize: 128, scaleDtype: 'f32' }, 3, 256), 256),
    matmulInvariance('q8 g64 f16', quantWeight({ bits: 8, groupSize: 64, scaleDtype: 'f16' }, 6, 64), 64),
    matmulInvariance('GGML Q4_0', ggmlWeight('Q4_0', 9, 96), 96),
    matmulInvariance('GGML Q8_0', ggmlWeight('Q8_0', 5, 64), 64),
    matmulInvariance('GGML Q5_1', ggmlWeight('Q5_1', 4, 128), 128),
    matmulInvariance('GGML Q2_K', ggmlWeight('Q2_K', 3, 256), 256),
    matmulInvariance('GGML Q3_K', ggmlWeight('Q3_K', 3, 256), 256),
    matmulInvariance('GGML Q4_K', ggmlWeight('Q4_K', 7, 512), 512),
    matmulInvariance('GGML Q5_K', ggmlWeight('Q5_K', 2, 256), 256),
    matmulInvariance('GGML Q6_K', ggmlWeight('Q6_K', 5, 256), 256),
    rowwiseCase,
    embeddingInvariance,
  ];
}
