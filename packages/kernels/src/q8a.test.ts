import { rng } from '@mnemo/test-utils';
import { beforeAll, describe, expect, it } from 'vitest';
import { type Kernels, loadKernels, quantizedActivationBytes, type WeightDType } from './index';
import {
  activationErrorBound,
  bf16ToNumber,
  expectBitwise,
  expectClose,
  f16ToNumber,
  f32s,
  get,
  put,
  type Quantized,
  randomQuantized,
  randoms,
  refMatmul,
  refQuantizeActivations,
} from './testing/ref';

let k: Kernels;
beforeAll(async () => {
  k = await loadKernels();
});

const GROUPS = [32, 64, 128] as const;
const SCALE_DTYPES: WeightDType[] = ['f32', 'f16', 'bf16'];

/** Activations like a transformer's after a norm: mostly N(0, 1)-ish, a few outliers up to ±`outlier`. */
function activations(n: number, seed: number, outlier = 0): Float64Array {
  const r = rng(seed);
  const x = randoms(n, seed);
  if (outlier > 0) for (let i = 0; i < n; i += 97) x[i] = (r() < 0.5 ? -1 : 1) * outlier * (0.5 + r());
  return f32s(x);
}

/** Quantizes `x` in kernel memory; returns the buffer pointer and the kernel's bytes split into their parts. */
function quantize(x: Float64Array, rows: number, n: number) {
  const px = put(k, Float32Array.from(x));
  const bytes = quantizedActivationBytes(rows, n);
  const pq = k.alloc(bytes);
  k.quantizeActivations(pq, px, rows, n);
  const raw = k.u8(pq, bytes).slice();
  const nb = n / 32;
  const rb = bytes / rows;
  const q = new Int8Array(rows * n);
  const d = new Float32Array(rows * nb);
  const s = new Float32Array(rows * nb);
  for (let r = 0; r < rows; r++) {
    const row = raw.subarray(r * rb, (r + 1) * rb);
    q.set(new Int8Array(row.buffer, row.byteOffset, n), r * n);
    const f = new Float32Array(row.slice(n).buffer);
    d.set(f.subarray(0, nb), r * nb);
    s.set(f.subarray(nb), r * nb);
  }
  k.free(px);
  return { pq, q, d, s };
}

function setup(
  rows: number,
  n: number,
  m: number,
  bits: number,
  gs: number,
  sdt: WeightDType,
  seed: number,
  withBias: boolean,
  outlier = 0,
) {
  const w = randomQuantized(m, n, bits, gs, sdt, seed);
  const x = activations(rows * n, seed + 1, outlier);
  const bias = withBias ? f32s(randoms(m, seed + 2)) : undefined;
  const xq = quantize(x, rows, n);
  const p = {
    xq: xq.pq,
    packed: put(k, w.packed),
    scales: put(k, w.scales),
    biases: put(k, w.biases),
    bias: bias ? put(k, Float32Array.from(bias)) : undefined,
    y: k.alloc(rows * m * 4),
  };
  const ref = refQuantizeActivations(x, rows, n);
  const free = () => {
    for (const v of Object.values(p)) if (v !== undefined) k.free(v);
  };
  const rowBytes = quantizedActivationBytes(1, n);
  /** matmulQ8a over `r` rows starting at quantized row `r0`. */
  const run = (y: number, r0: number, r: number) =>
    k.matmulQ8a(y, p.xq + r0 * rowBytes, p.packed, p.scales, p.biases, r, n, m, bits, gs, sdt, p.bias);
  return { p, w, x, xq, ref, bias, free, run };
}

interface Measured {
  /** Worst |y − y(x)| / bound. */
  ofBound: number;
  /** Worst |y − y(x)| / Σ|w·x|. */
  ofMag: number;
}

/**
 * Checks one result two ways: against float64 `x̂ · Wᵀ` (the quantized activations, so only the kernel's own f32
 * rounding remains: 2e-6 of Σ|w·x̂|), and against float64 `x · Wᵀ` with the original activations, within the
 * activation-rounding bound plus that f32 slack.
 */
function check(
  s: ReturnType<typeof setup>,
  y: Float32Array,
  rows: number,
  n: number,
  m: number,
  what: string,
): Measured {
  const viaXhat = refMatmul(s.ref.xhat, s.w.deq, rows, n, m, s.bias);
  expectClose(y, viaXhat.y, viaXhat.mag, 2e-6, `${what} vs x̂·Wᵀ`);
  const exact = refMatmul(s.x, s.w.deq, rows, n, m, s.bias);
  const bound = activationErrorBound(s.ref.d, s.w.deq, rows, n, m);
  let ofBound = 0;
  let ofMag = 0;
  for (let i = 0; i < y.length; i++) {
    const err = Math.abs(y[i]! - exact.y[i]!);
    const allowed = bound[i]! + 2e-6 * exact.mag[i]!;
    if (!(err <= allowed)) {
      throw new Error(`${what}: |y − x·Wᵀ| = ${err} exceeds the bound ${allowed} at ${i}`);
    }
    ofBound = Math.max(ofBound, err / bound[i]!);
    ofMag = Math.max(ofMag, err / exact.mag[i]!);
  }
  return { ofBound, ofMag };
}

describe('quantizeActivations', () => {
  it('matches the documented quantization bit for bit (values, scales, sums; rows independent)', () => {
    const rows = 6;
    const n = 256;
    const x = activations(rows * n, 11, 40);
    // special blocks: row 1 block 0 all zero, row 1 block 1 tiny (flushed), row 2 block 3 tiny but normal
    for (let i = 0; i < 32; i++) {
      x[n + i] = 0;
      x[n + 32 + i] = Math.fround((i - 16) * 1e-38);
      x[2 * n + 96 + i] = Math.fround((i - 16) * 1e-30);
    }
    // ties: amax = 127 makes the step exactly 1, so x.5 values round to even
    const ties = [127, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.5, -126.5, 126.5];
    ties.forEach((v, i) => {
      x[3 * n + i] = v;
    });
    const got = quantize(x, rows, n);
    const want = refQuantizeActivations(x, rows, n);
    expect(Array.from(got.q)).toEqual(Array.from(want.q));
    expectBitwise(got.d, want.d, 'block scales');
    expectBitwise(got.s, want.s, 'block sums');
    expect(Array.from(got.q.subarray(3 * n, 3 * n + ties.length))).toEqual([
      127, 0, 2, 2, 0, -2, -2, 4, -126, 126,
    ]);
    expect(got.d[(n / 32) * 1 + 0]).toBe(0);
    expect(got.d[(n / 32) * 1 + 1]).toBe(0); // max|x| 1.6e-37: scale below the smallest normal → zeros
    expect(got.d[(n / 32) * 2 + 3]).toBeGreaterThan(0);
    expect(Math.max(...Array.from(got.q).map(Math.abs))).toBe(127);
    // one row at a time gives the same bytes
    const rb = quantizedActivationBytes(1, n);
    const all = k.u8(got.pq, rows * rb).slice();
    for (let r = 0; r < rows; r++) {
      const one = quantize(x.subarray(r * n, (r + 1) * n), 1, n);
      expect(k.u8(one.pq, rb).slice()).toEqual(all.subarray(r * rb, (r + 1) * rb));
      k.free(one.pq);
    }
    k.free(got.pq);
  });

  it('marks blocks with inf or NaN (scale and sum NaN, values 0)', () => {
    const n = 64;
    const x = activations(n, 3);
    x[5] = Number.NaN;
    x[40] = Number.NEGATIVE_INFINITY;
    const got = quantize(x, 1, n);
    expect(Number.isNaN(got.d[0]!) && Number.isNaN(got.s[0]!)).toBe(true);
    expect(Number.isNaN(got.d[1]!) && Number.isNaN(got.s[1]!)).toBe(true);
    expect(Array.from(got.q).every((v) => v === 0)).toBe(true);
    k.free(got.pq);
  });
});

describe('matmulQ8a accuracy', () => {
  const record: string[] = [];
  for (const bits of [4, 8]) {
    for (const gs of GROUPS) {
      for (const sdt of SCALE_DTYPES) {
        it(`bits=${bits} group=${gs} scales=${sdt}: within the activation-rounding bound (1 row, 5 rows + bias, odd out)`, () => {
          const n = Math.max(gs * 3, 256);
          const m = 7;
          for (const [rows, withBias] of [
            [1, false],
            [5, true],
          ] as const) {
            const s = setup(rows, n, m, bits, gs, sdt, bits * 1000 + gs + rows, withBias, 8);
            s.run(s.p.y, 0, rows);
            check(s, get(k, s.p.y, rows * m), rows, n, m, `q${bits} g${gs} ${sdt} rows=${rows}`);
            s.free();
          }
        });
      }
    }
  }

  it('realistic shapes: in = 4096 (+ outliers), measured error against the bound and against Σ|w·x|', () => {
    for (const bits of [4, 8]) {
      for (const gs of GROUPS) {
        for (const outlier of [0, 20]) {
          const n = 4096;
          const m = 33;
          const rows = 3;
          const s = setup(rows, n, m, bits, gs, 'f16', 31 + bits + gs + outlier, true, outlier);
          s.run(s.p.y, 0, rows);
          const y = get(k, s.p.y, rows * m);
          const r = check(s, y, rows, n, m, `q${bits} g${gs} outliers=${outlier}`);
          // relative RMS error against the exact result (what a model sees)
          const exact = refMatmul(s.x, s.w.deq, rows, n, m, s.bias);
          let e2 = 0;
          let y2 = 0;
          for (let i = 0; i < y.length; i++) {
            e2 += (y[i]! - exact.y[i]!) ** 2;
            y2 += exact.y[i]! ** 2;
          }
          record.push(
            `q${bits} g${gs} outliers ${outlier ? `±${outlier}` : 'none'}: worst error ${(100 * r.ofBound).toFixed(1)}% of the bound, ` +
              `${r.ofMag.toExponential(2)} of Σ|w·x|; RMS error / RMS y = ${Math.sqrt(e2 / y2).toExponential(2)}`,
          );
          s.free();
        }
      }
    }
    console.log(`matmulQ8a vs float64 x·Wᵀ (in = 4096, out = 33, 3 rows):\n  ${record.join('\n  ')}`);
  });

  it('an all-zero row gives exactly the bias; a NaN or inf in a row makes exactly that row NaN', () => {
    const n = 128;
    const m = 5;
    for (const bits of [4, 8]) {
      const s = setup(3, n, m, bits, 64, 'f16', 900 + bits, true);
      const x = Float64Array.from(s.x);
      x.fill(0, 0, n);
      x[n + 70] = Number.NaN;
      x[2 * n + 3] = Number.POSITIVE_INFINITY;
      const xq = quantize(x, 3, n);
      k.matmulQ8a(s.p.y, xq.pq, s.p.packed, s.p.scales, s.p.biases, 3, n, m, bits, 64, 'f16', s.p.bias);
      const y = get(k, s.p.y, 3 * m);
      expectBitwise(y.subarray(0, m), Float32Array.from(s.bias!), `q${bits} zero row`);
      expect(Array.from(y.subarray(m)).every(Number.isNaN), `q${bits} NaN/inf rows`).toBe(true);
      k.free(xq.pq);
      s.free();
    }
  });
});

/** The weight integers and the exact f32 scales/biases of a `randomQuantized` matrix. */
function decodeWeights(w: Quantized, m: number, n: number, bits: number, gs: number, sdt: WeightDType) {
  const qw = new Uint8Array(m * n);
  const wpr = (n * bits) / 32;
  for (let o = 0; o < m; o++) {
    for (let i = 0; i < n; i++) {
      const bit = i * bits;
      qw[o * n + i] = (w.packed[o * wpr + (bit >>> 5)]! >>> (bit & 31)) & ((1 << bits) - 1);
    }
  }
  const ng = (m * n) / gs;
  const value = (bytes: Uint8Array, i: number) => {
    if (sdt === 'f32') return new Float32Array(bytes.buffer, bytes.byteOffset, ng)[i]!;
    const h = new Uint16Array(bytes.buffer, bytes.byteOffset, ng)[i]!;
    return sdt === 'f16' ? f16ToNumber(h) : bf16ToNumber(h);
  };
  const sc = Float64Array.from({ length: ng }, (_, i) => value(w.scales, i));
  const bi = Float64Array.from({ length: ng }, (_, i) => value(w.biases, i));
  return { qw, sc, bi };
}

/**
 * A scalar model of `matmulQ8a`'s documented f32 sequence (the README's formula with its lane layout): per block,
 * four exact integer lane partials `I_j` (4-bit: elements 8j..8j+7 of the block, times 256; 8-bit: elements
 * 4j..4j+3 and 16+4j..16+4j+3), `ga_j = Σ_b f32(I_j·d_b)` (first assigned), `acc_j += ga_j·s_g`, then
 * `((acc_0 + acc_1) + (acc_2 + acc_3))·2^-k + Σ_quads(b·X) (+ bias)`, every step rounded to f32.
 */
function modelQ8a(
  xq: { q: Int8Array; d: Float32Array; s: Float32Array },
  wd: ReturnType<typeof decodeWeights>,
  rows: number,
  n: number,
  m: number,
  bits: number,
  gs: number,
  bias?: ArrayLike<number>,
): Float32Array {
  const f = Math.fround;
  const nb = n / 32;
  const ng = n / gs;
  const bpg = gs / 32;
  const ngp = Math.ceil(ng / 4) * 4;
  const lane = (i: number) => (bits === 4 ? i >> 3 : (i & 15) >> 2);
  const y = new Float32Array(rows * m);
  for (let r = 0; r < rows; r++) {
    const X = new Float64Array(ngp);
    for (let g = 0; g < ng; g++) {
      let t = xq.s[r * nb + g * bpg]!;
      for (let j = 1; j < bpg; j++) t = f(t + xq.s[r * nb + g * bpg + j]!);
      X[g] = t;
    }
    for (let o = 0; o < m; o++) {
      const acc = [0, 0, 0, 0];
      for (let g = 0; g < ng; g++) {
        const ga = [0, 0, 0, 0];
        for (let j = 0; j < bpg; j++) {
          const b = g * bpg + j;
          const I = [0, 0, 0, 0];
          for (let i = 0; i < 32; i++) {
            const e = b * 32 + i;
            I[lane(i)]! += wd.qw[o * n + e]! * xq.q[r * n + e]! * (bits === 4 ? 256 : 1);
          }
          for (let l = 0; l < 4; l++) {
            const p = f(I[l]! * xq.d[r * nb + b]!);
            ga[l] = j === 0 ? p : f(ga[l]! + p);
          }
        }
        for (let l = 0; l < 4; l++) acc[l] = f(acc[l]! + f(ga[l]! * wd.sc[o * ng + g]!));
      }
      const t = [0, 0, 0, 0];
      for (let g = 0; g < ngp; g++) {
        const bg = g < ng ? wd.bi[o * ng + g]! : 0;
        t[g % 4] = f(t[g % 4]! + f(bg * X[g]!));
      }
      const h = f(f(acc[0]! + acc[1]!) + f(acc[2]! + acc[3]!));
      let v = f(f(h * (bits === 4 ? 1 / 256 : 1)) + f(f(t[0]! + t[1]!) + f(t[2]! + t[3]!)));
      if (bias) v = f(v + bias[o]!);
      y[r * m + o] = v;
    }
  }
  return y;
}

describe('matmulQ8a numerics', () => {
  it('equals a scalar model of the documented f32 sequence bit for bit (bits × groups × scale dtypes)', () => {
    for (const bits of [4, 8]) {
      for (const gs of GROUPS) {
        for (const sdt of SCALE_DTYPES) {
          const rows = 5; // decode (1 row) and prefill (5 rows: a quad plus a padded one) both checked
          const n = gs * 3;
          const m = 9;
          const s = setup(rows, n, m, bits, gs, sdt, 300 + bits + gs, true, 6);
          const want = modelQ8a(s.xq, decodeWeights(s.w, m, n, bits, gs, sdt), rows, n, m, bits, gs, s.bias);
          s.run(s.p.y, 0, rows);
          expectBitwise(get(k, s.p.y, rows * m), want, `q${bits} g${gs} ${sdt} rows=${rows}`);
          s.run(s.p.y, 2, 1);
          expectBitwise(get(k, s.p.y, m), want.subarray(2 * m, 3 * m), `q${bits} g${gs} ${sdt} row 2 alone`);
          s.free();
        }
      }
    }
  });
});

describe('matmulQ8a batch invariance', () => {
  it('is bitwise row-invariant (rows=1 vs all rows vs uneven chunks)', () => {
    for (const bits of [4, 8]) {
      for (const [gs, sdt] of [
        [32, 'f16'],
        [64, 'bf16'],
        [128, 'f32'],
      ] as const) {
        const rows = 23;
        const n = gs * 5;
        const m = 11;
        const s = setup(rows, n, m, bits, gs, sdt, 2000 + bits + gs, true, 5);
        s.run(s.p.y, 0, rows);
        const all = get(k, s.p.y, rows * m);
        const one = new Float32Array(rows * m);
        const y1 = k.alloc(m * 4);
        for (let r = 0; r < rows; r++) {
          s.run(y1, r, 1);
          one.set(get(k, y1, m), r * m);
        }
        expectBitwise(one, all, `q${bits} g${gs} rows=1 vs rows=${rows}`);
        const chunked = new Float32Array(rows * m);
        let r0 = 0;
        for (const c of [2, 5, 3, 4, 8, 1]) {
          const yc = k.alloc(c * m * 4);
          s.run(yc, r0, c);
          chunked.set(get(k, yc, c * m), r0 * m);
          k.free(yc);
          r0 += c;
        }
        expect(r0).toBe(rows);
        expectBitwise(chunked, all, `q${bits} g${gs} chunks vs rows=${rows}`);
        k.free(y1);
        s.free();
      }
    }
  });

  it('is bitwise row-invariant across prefill row tiles (70 rows; in = 32768, 8-row tiles)', () => {
    for (const [rows, n, m, bits, gs] of [
      [70, 96, 5, 4, 32],
      [70, 128, 3, 8, 64],
      [11, 32768, 3, 4, 128],
      [11, 32768, 2, 8, 64],
    ] as const) {
      const s = setup(rows, n, m, bits, gs, 'f16', 7000 + rows + n, true, 10);
      s.run(s.p.y, 0, rows);
      const all = get(k, s.p.y, rows * m);
      check(s, all, rows, n, m, `q${bits} rows=${rows} in=${n}`);
      const y1 = k.alloc(m * 4);
      const one = new Float32Array(rows * m);
      for (let r = 0; r < rows; r++) {
        s.run(y1, r, 1);
        one.set(get(k, y1, m), r * m);
      }
      expectBitwise(one, all, `q${bits} in=${n}: rows=1 vs rows=${rows}`);
      k.free(y1);
      s.free();
    }
  });

  it('does not depend on how the input was quantized together (one quantize call per row vs one for all)', () => {
    const rows = 9;
    const n = 192;
    const m = 6;
    const s = setup(rows, n, m, 4, 64, 'bf16', 4242, false);
    s.run(s.p.y, 0, rows);
    const all = get(k, s.p.y, rows * m);
    const y1 = k.alloc(m * 4);
    for (let r = 0; r < rows; r++) {
      const xq = quantize(s.x.subarray(r * n, (r + 1) * n), 1, n);
      k.matmulQ8a(y1, xq.pq, s.p.packed, s.p.scales, s.p.biases, 1, n, m, 4, 64, 'bf16');
      expectBitwise(get(k, y1, m), all.subarray(r * m, (r + 1) * m), `row ${r}`);
      k.free(xq.pq);
    }
    k.free(y1);
    s.free();
  });
});
