/**
 * A fingerprint of a kernels build: a few small matmuls (dense f32/f16/bf16, quantized 4-bit on the fast path and
 * 3-bit on the generic one, one and five rows) on fixed data. The calling thread and every worker compute it; a
 * threaded backend refuses to start unless all results agree bit for bit, so a worker bundle built from other kernels
 * than the caller's (a stale build) cannot silently make results depend on the thread count.
 */
import type { Kernels } from '../kernels';

/** Deterministic pseudo-random floats in [-1, 1) (an LCG; no allocation beyond `out`). */
function fill(out: Float32Array, seed: number): void {
  let s = seed >>> 0;
  for (let i = 0; i < out.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s / 2 ** 31 - 1) * 0.75;
  }
}

function fillWords(out: Uint32Array, seed: number): void {
  let s = seed >>> 0;
  for (let i = 0; i < out.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s ^ (s >>> 13);
  }
}

/** f16 bit patterns of small values (exact: values are multiples of 2^-10 below 1). */
function halfBits(n: number, seed: number): Uint16Array {
  const out = new Uint16Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    // sign, exponent 12..14 (2^-3 .. 2^-1), random mantissa
    out[i] = ((s >>> 31) << 15) | ((12 + (s % 3)) << 10) | ((s >>> 8) & 0x3ff);
  }
  return out;
}

/** Runs the probe on `k` (allocating and freeing its own buffers) and returns every result. */
export function kernelsProbe(k: Kernels): Float32Array {
  const inDim = 64;
  const outDim = 21;
  const rows = 5;
  const results: number[] = [];
  const ptrs: number[] = [];
  const put = (bytes: Uint8Array): number => {
    const p = k.alloc(bytes.byteLength);
    ptrs.push(p);
    new Uint8Array(k.memory.buffer).set(bytes, p);
    return p;
  };
  const u8 = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  try {
    const xv = new Float32Array(rows * inDim);
    fill(xv, 7);
    const x = put(u8(xv));
    const y = k.alloc(rows * outDim * 4);
    ptrs.push(y);
    const collect = (n: number) => {
      const f = new Float32Array(k.memory.buffer, y, n);
      for (let i = 0; i < n; i++) results.push(f[i]!);
    };
    const wf = new Float32Array(outDim * inDim);
    fill(wf, 11);
    const w32 = put(u8(wf));
    const w16 = put(u8(halfBits(outDim * inDim, 13)));
    for (const r of [1, rows]) {
      k.matmul(y, x, w32, r, inDim, outDim, 'f32');
      collect(r * outDim);
      k.matmul(y, x, w16, r, inDim, outDim, 'f16');
      collect(r * outDim);
      k.matmul(y, x, w16, r, inDim, outDim, 'bf16');
      collect(r * outDim);
    }
    for (const bits of [4, 3]) {
      const words = new Uint32Array((outDim * inDim * bits) / 32);
      fillWords(words, 17 + bits);
      const groups = outDim * (inDim / 32);
      const packed = put(u8(words));
      const scales = put(u8(halfBits(groups, 19)));
      const biases = put(u8(halfBits(groups, 23)));
      for (const r of [1, rows]) {
        k.matmulQ(y, x, packed, scales, biases, r, inDim, outDim, bits, 32, 'f16');
        collect(r * outDim);
      }
    }
  } finally {
    for (const p of ptrs) k.free(p);
  }
  return Float32Array.from(results);
}

/** Whether two probe results are identical bit for bit. */
export function sameProbe(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < ua.length; i++) if (ua[i] !== ub[i]) return false;
  return true;
}
