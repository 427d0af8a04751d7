import { describe, expect, it } from 'vitest';
import { kernelsWasmBytes } from './kernels';
import { inspectWasm, reachable } from './testing/wasm-inspect';

/** Exported compute kernels: each must execute SIMD128 instructions inside loops. */
const COMPUTE = [
  'mk_matmul',
  'mk_matmul_q',
  'mk_to_f32',
  'mk_embedding',
  'mk_embedding_q',
  'mk_rmsnorm',
  'mk_rope',
  'mk_swiglu',
  'mk_add',
  'mk_softmax',
  'mk_argmax',
  'mk_attention',
] as const;

describe('SIMD128 in the built module', () => {
  const stats = inspectWasm(kernelsWasmBytes());

  it('exports every kernel', () => {
    for (const name of [...COMPUTE, 'mk_copy', 'mk_matmul_q_scratch', 'mk_attention_scratch']) {
      expect(stats.exports.has(name), name).toBe(true);
    }
  });

  it.each(COMPUTE)('%s runs v128 instructions inside its loops', (name) => {
    const r = reachable(stats, stats.exports.get(name)!);
    // printed for the record: total v128 ops reachable, and how many sit in loop bodies
    console.log(
      `${name}: ${r.simd} v128 ops (${r.simdInLoops} inside loops) over ${r.functions} function(s)`,
    );
    expect(r.simd).toBeGreaterThan(0);
    expect(r.simdInLoops).toBeGreaterThan(0);
  });

  it('has heavily vectorized hot paths for matmul, matmulQ and attention', () => {
    for (const [name, min] of [
      ['mk_matmul', 100],
      ['mk_matmul_q', 200],
      ['mk_attention', 20],
    ] as const) {
      expect(reachable(stats, stats.exports.get(name)!).simdInLoops, name).toBeGreaterThan(min);
    }
  });
});
