import { describe, expect, it } from 'vitest';
import { kernelsWasmBytes } from './kernels';
import { sharedKernelsWasmBytes } from './shared';
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
  'mk_attention_heads',
  'mk_attention_kv',
  'mk_quantize_act',
  'mk_matmul_q8a',
  'mk_ggml_matmul',
  'mk_ggml_matmul_q8a',
  'mk_ggml_embedding',
] as const;

/** SIMD128 sub-opcodes (after the 0xFD prefix) the int8-activation path must run inside its loops. */
const OP = {
  'i32x4.dot_i16x8_s': 0xba,
  'f32x4.convert_i32x4_s': 0xfa,
  'f32x4.nearest': 0x6a,
  'i32x4.trunc_sat_f32x4_s': 0xf8,
  'i8x16.narrow_i16x8_s': 0x65,
  'i8x16.shuffle': 0x0d,
} as const;

describe.each([
  ['private', kernelsWasmBytes()],
  ['shared-memory', sharedKernelsWasmBytes()],
])('SIMD128 in the %s build', (_build, bytes) => {
  const stats = inspectWasm(bytes);

  it('exports every kernel', () => {
    for (const name of [
      ...COMPUTE,
      'mk_copy',
      'mk_matmul_q_scratch',
      'mk_attention_scratch',
      'mk_attention_heads_scratch',
      'mk_attention_kv_scratch',
      'mk_kv_write',
      'mk_matmul_q8a_scratch',
      'mk_ggml_matmul_scratch',
      'mk_ggml_matmul_q8a_scratch',
    ]) {
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
      ['mk_attention_heads', 20],
      ['mk_attention_kv', 40],
      ['mk_matmul_q8a', 100],
      ['mk_ggml_matmul', 200],
      ['mk_ggml_matmul_q8a', 200],
    ] as const) {
      expect(reachable(stats, stats.exports.get(name)!).simdInLoops, name).toBeGreaterThan(min);
    }
  });

  it('runs integer dot products in the int8-activation matmul and vector rounding in its quantizer', () => {
    const mm = reachable(stats, stats.exports.get('mk_matmul_q8a')!).opsInLoops;
    const qa = reachable(stats, stats.exports.get('mk_quantize_act')!).opsInLoops;
    const count = (m: Map<number, number>, op: keyof typeof OP) => m.get(OP[op]) ?? 0;
    console.log(
      `mk_matmul_q8a: ${count(mm, 'i32x4.dot_i16x8_s')} i32x4.dot_i16x8_s and ${count(mm, 'f32x4.convert_i32x4_s')} f32x4.convert_i32x4_s in loops`,
    );
    // every (bits, rows × outputs) block variant carries its own unrolled dots
    expect(count(mm, 'i32x4.dot_i16x8_s')).toBeGreaterThanOrEqual(16);
    expect(count(mm, 'f32x4.convert_i32x4_s')).toBeGreaterThan(0);
    expect(count(mm, 'i8x16.shuffle')).toBeGreaterThan(0); // activation re-layout
    for (const op of ['f32x4.nearest', 'i32x4.trunc_sat_f32x4_s', 'i8x16.narrow_i16x8_s'] as const) {
      expect(count(qa, op), op).toBeGreaterThan(0);
    }
  });

  it('runs integer dot products in the GGML int8-activation matmul and exact conversions in the exact one', () => {
    const q8a = reachable(stats, stats.exports.get('mk_ggml_matmul_q8a')!).opsInLoops;
    const exact = reachable(stats, stats.exports.get('mk_ggml_matmul')!).opsInLoops;
    const count = (m: Map<number, number>, op: keyof typeof OP) => m.get(OP[op]) ?? 0;
    console.log(
      `mk_ggml_matmul_q8a: ${count(q8a, 'i32x4.dot_i16x8_s')} i32x4.dot_i16x8_s; mk_ggml_matmul: ${count(exact, 'f32x4.convert_i32x4_s')} f32x4.convert_i32x4_s in loops`,
    );
    // ten formats, each with its decode and prefill block variants
    expect(count(q8a, 'i32x4.dot_i16x8_s')).toBeGreaterThanOrEqual(30);
    expect(count(exact, 'f32x4.convert_i32x4_s')).toBeGreaterThanOrEqual(40);
  });
});
