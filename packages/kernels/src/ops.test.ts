import { beforeAll, describe, expect, it } from 'vitest';
import { type Kernels, loadKernels } from './index';
import { kernelsWasmBytes } from './kernels';
import { expectBitwise, expectClose, f32s, get, put, randoms } from './testing/ref';

let k: Kernels;
beforeAll(async () => {
  k = await loadKernels();
});

function ulpDistance(a: number, b: number): number {
  const fa = new Float32Array([a, b]);
  const ia = new Int32Array(fa.buffer);
  const toOrdered = (i: number) => (i < 0 ? -2147483648 - i : i);
  return Math.abs(toOrdered(ia[0]!) - toOrdered(ia[1]!));
}

describe('exp (raw mk_exp export)', () => {
  it('is within 2 ulp of the correctly rounded value over [-104, 89] and handles the edges', async () => {
    const { instance } = await WebAssembly.instantiate(kernelsWasmBytes() as BufferSource, {});
    const e = instance.exports as unknown as {
      memory: WebAssembly.Memory;
      __heap_base: WebAssembly.Global;
      mk_exp(out: number, x: number, n: number): void;
    };
    const n = 400_001;
    const base = Number(e.__heap_base.value);
    e.memory.grow(Math.ceil((base + n * 8) / 65536));
    const xs = new Float32Array(e.memory.buffer, base, n);
    for (let i = 0; i < n; i++) xs[i] = -104 + (193 * i) / (n - 1);
    e.mk_exp(base + n * 4, base, n);
    const ys = new Float32Array(e.memory.buffer, base + n * 4, n);
    let worst = 0;
    for (let i = 0; i < n; i++) {
      const want = Math.fround(Math.exp(xs[i]!));
      const got = ys[i]!;
      // subnormal results: absolute error within one subnormal step
      const d = Math.abs(want) < 1.2e-38 ? Math.abs(got - want) / 2 ** -149 : ulpDistance(got, want);
      if (d > worst) worst = d;
    }
    expect(worst).toBeLessThanOrEqual(2);
    const edges = [
      Number.NEGATIVE_INFINITY,
      -1e30,
      -200,
      -104,
      0,
      -0,
      1,
      88.72,
      88.8,
      100,
      Infinity,
      Number.NaN,
    ];
    xs.set(edges);
    e.mk_exp(base + n * 4, base, edges.length);
    const out = Array.from(new Float32Array(e.memory.buffer, base + n * 4, edges.length));
    expect(out.slice(0, 4)).toEqual([0, 0, 0, 0]);
    expect(out[4]).toBe(1);
    expect(out[5]).toBe(1);
    expect(ulpDistance(out[6]!, Math.fround(Math.E))).toBeLessThanOrEqual(1);
    expect(Number.isFinite(out[7]!)).toBe(true);
    expect(out.slice(8, 11)).toEqual([Infinity, Infinity, Infinity]);
    expect(Number.isNaN(out[11]!)).toBe(true);
  });
});

describe('tanh (raw mk_tanh export)', () => {
  it('is within 2 ulp of the correctly rounded value and handles the edges', async () => {
    const { instance } = await WebAssembly.instantiate(kernelsWasmBytes() as BufferSource, {});
    const e = instance.exports as unknown as {
      memory: WebAssembly.Memory;
      __heap_base: WebAssembly.Global;
      mk_tanh(out: number, x: number, n: number): void;
    };
    const n = 400_001;
    const base = Number(e.__heap_base.value);
    e.memory.grow(Math.ceil((base + n * 8) / 65536));
    const xs = new Float32Array(e.memory.buffer, base, n);
    let worst = 0;
    // dense around the polynomial/exp switch at 0.625, then wide, then tiny values
    for (const [lo, hi] of [
      [-1.5, 1.5],
      [-12, 12],
      [-1e-3, 1e-3],
    ] as const) {
      for (let i = 0; i < n; i++) xs[i] = lo + ((hi - lo) * i) / (n - 1);
      e.mk_tanh(base + n * 4, base, n);
      const ys = new Float32Array(e.memory.buffer, base + n * 4, n);
      for (let i = 0; i < n; i++)
        worst = Math.max(worst, ulpDistance(ys[i]!, Math.fround(Math.tanh(xs[i]!))));
    }
    expect(worst).toBeLessThanOrEqual(2);
    const edges = [Number.NEGATIVE_INFINITY, -100, -0, 0, 1e-30, 100, Infinity, Number.NaN];
    xs.set(edges);
    e.mk_tanh(base + n * 4, base, edges.length);
    const out = Array.from(new Float32Array(e.memory.buffer, base + n * 4, edges.length));
    expect(out.slice(0, 2)).toEqual([-1, -1]);
    expect(Object.is(out[2], -0)).toBe(true);
    expect(Object.is(out[3], 0)).toBe(true);
    expect(out[4]).toBe(Math.fround(1e-30));
    expect(out.slice(5, 7)).toEqual([1, 1]);
    expect(Number.isNaN(out[7]!)).toBe(true);
  });
});

describe('rmsnorm', () => {
  it('matches float64 at odd dims, in place too', () => {
    for (const [rows, dim] of [
      [1, 1],
      [3, 7],
      [2, 64],
      [5, 133],
    ] as const) {
      const x = f32s(randoms(rows * dim, dim, 3));
      const w = f32s(randoms(dim, dim + 1));
      const eps = 1e-5;
      const px = put(k, Float32Array.from(x));
      const pw = put(k, Float32Array.from(w));
      const po = k.alloc(rows * dim * 4);
      k.rmsnorm(po, px, pw, rows, dim, eps);
      const want = new Float64Array(rows * dim);
      for (let r = 0; r < rows; r++) {
        let ss = 0;
        for (let i = 0; i < dim; i++) ss += x[r * dim + i]! ** 2;
        const inv = 1 / Math.sqrt(ss / dim + eps);
        for (let i = 0; i < dim; i++) want[r * dim + i] = x[r * dim + i]! * inv * w[i]!;
      }
      const mag = want.map((v) => Math.abs(v) + 1e-30);
      expectClose(get(k, po, rows * dim), want, mag, 1e-6, `rmsnorm ${rows}x${dim}`);
      const out = get(k, po, rows * dim);
      k.rmsnorm(px, px, pw, rows, dim, eps);
      expectBitwise(get(k, px, rows * dim), out, 'in place');
      for (const p of [px, pw, po]) k.free(p);
    }
  });
});

describe('rope', () => {
  for (const layout of ['half', 'pair'] as const) {
    it(`${layout}: matches float64, leaves dims >= rotDim untouched`, () => {
      for (const [rows, nHeads, headDim, rotDim] of [
        [1, 1, 2, 2],
        [3, 2, 16, 16],
        [2, 3, 20, 12],
        [4, 2, 64, 34],
        [1, 4, 128, 128],
      ] as const) {
        const half = rotDim / 2;
        const x = f32s(randoms(rows * nHeads * headDim, headDim));
        const ang = randoms(rows * half, rotDim, 3);
        const cos = f32s(ang.map(Math.cos));
        const sin = f32s(ang.map(Math.sin));
        const px = put(k, Float32Array.from(x));
        const pc = put(k, Float32Array.from(cos));
        const ps = put(k, Float32Array.from(sin));
        k.rope(px, pc, ps, rows, nHeads, headDim, rotDim, layout);
        const got = get(k, px, x.length);
        const want = Float64Array.from(x);
        for (let r = 0; r < rows; r++) {
          for (let h = 0; h < nHeads; h++) {
            const b = (r * nHeads + h) * headDim;
            for (let i = 0; i < half; i++) {
              const [ia, ib] = layout === 'half' ? [b + i, b + i + half] : [b + 2 * i, b + 2 * i + 1];
              const c = cos[r * half + i]!;
              const s = sin[r * half + i]!;
              want[ia] = x[ia]! * c - x[ib]! * s;
              want[ib] = x[ib]! * c + x[ia]! * s;
            }
          }
        }
        expectClose(got, want, 1, 4e-7, `rope ${layout} ${rows}/${nHeads}/${headDim}/${rotDim}`);
        for (let r = 0; r < rows; r++) {
          for (let h = 0; h < nHeads; h++) {
            for (let d = rotDim; d < headDim; d++) {
              const i = (r * nHeads + h) * headDim + d;
              expect(got[i]).toBe(x[i]);
            }
          }
        }
        for (const p of [px, pc, ps]) k.free(p);
      }
    });
  }
});

describe('elementwise', () => {
  it('swiglu and add match float64; results do not depend on n or position', () => {
    for (const n of [1, 3, 4, 9, 1027]) {
      const g = f32s(randoms(n, n, 12));
      const u = f32s(randoms(n, n + 1, 2));
      const pg = put(k, Float32Array.from(g));
      const pu = put(k, Float32Array.from(u));
      const po = k.alloc(n * 4);
      k.swiglu(po, pg, pu, n);
      const want = g.map((v, i) => (v / (1 + Math.exp(-v))) * u[i]!);
      expectClose(
        get(k, po, n),
        want,
        want.map((v) => Math.abs(v) + 1e-30),
        1e-6,
        `swiglu n=${n}`,
      );
      // the same element via a different n / offset gives the same bits
      if (n > 5) {
        const po2 = k.alloc(3 * 4);
        k.swiglu(po2, pg + 8, pu + 8, 3);
        expectBitwise(get(k, po2, 3), get(k, po, n).subarray(2, 5), 'swiglu offset');
        k.free(po2);
      }
      k.add(po, pg, pu, n);
      expect(Array.from(get(k, po, n))).toEqual(Array.from(g.map((v, i) => Math.fround(v + u[i]!))));
      k.add(pg, pg, pu, n); // aliasing out = a
      expect(Array.from(get(k, pg, n))).toEqual(Array.from(g.map((v, i) => Math.fround(v + u[i]!))));
      for (const p of [pg, pu, po]) k.free(p);
    }
  });

  it('swiglu limits: large |gate|, infinities', () => {
    const g = [-200, -90, 90, 200, Number.NEGATIVE_INFINITY, Infinity, 0];
    const pg = put(k, g);
    const pu = put(k, [1, 1, 1, 1, 1, 1, 1]);
    const po = k.alloc(g.length * 4);
    k.swiglu(po, pg, pu, g.length);
    const out = Array.from(get(k, po, g.length));
    expect(out[0]).toBeCloseTo(0, 30);
    expect(out[2]).toBe(90);
    expect(out[3]).toBe(200);
    expect(Object.is(out[4], -0) || out[4] === 0).toBe(true);
    expect(out[5]).toBe(Infinity);
    expect(out[6]).toBe(0);
    for (const p of [pg, pu, po]) k.free(p);
  });
});

describe('geluGlu, softcap, scale', () => {
  const gelu = (g: number) => {
    const u = Math.sqrt(2 / Math.PI) * (g + 0.044715 * g ** 3);
    return g / (1 + Math.exp(-2 * u));
  };

  it('geluGlu matches float64 (relative to its conditioning); results do not depend on n or position', () => {
    for (const n of [1, 3, 4, 9, 1027]) {
      const g = f32s(randoms(n, 3 * n, 8));
      const u = f32s(randoms(n, 3 * n + 1, 2));
      const pg = put(k, Float32Array.from(g));
      const pu = put(k, Float32Array.from(u));
      const po = k.alloc(n * 4);
      k.geluGlu(po, pg, pu, n);
      const want = g.map((v, i) => gelu(v) * u[i]!);
      // the exponent 2u carries a few roundings of |2u|: relative error about |2u|·(1 − σ(2u))·ulp
      const mag = g.map((v, i) => {
        const t = 2 * Math.sqrt(2 / Math.PI) * (Math.abs(v) + 0.044715 * Math.abs(v) ** 3);
        const sig = 1 / (1 + Math.exp(-2 * Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)));
        return Math.abs(want[i]!) * (1 + t * (1 - sig)) + 1e-30;
      });
      expectClose(get(k, po, n), want, mag, 1e-6, `geluGlu n=${n}`);
      if (n > 5) {
        const po2 = k.alloc(3 * 4);
        k.geluGlu(po2, pg + 8, pu + 8, 3);
        expectBitwise(get(k, po2, 3), get(k, po, n).subarray(2, 5), 'geluGlu offset');
        k.free(po2);
      }
      const out = get(k, po, n);
      k.geluGlu(pg, pg, pu, n); // out = gate
      expectBitwise(get(k, pg, n), out, 'geluGlu in place');
      for (const p of [pg, pu, po]) k.free(p);
    }
  });

  it('geluGlu limits: large |gate|, infinities, NaN', () => {
    const g = [-30, -10, 10, 1e20, Number.NEGATIVE_INFINITY, Infinity, 0, -0, Number.NaN];
    const pg = put(k, g);
    const pu = put(
      k,
      g.map(() => 1),
    );
    const po = k.alloc(g.length * 4);
    k.geluGlu(po, pg, pu, g.length);
    const out = Array.from(get(k, po, g.length));
    expect(Object.is(out[0], -0)).toBe(true);
    expect(Math.abs(out[1]!)).toBeLessThan(1e-30);
    expect(out[2]).toBe(10);
    expect(out[3]).toBe(Math.fround(1e20));
    expect(Object.is(out[4], -0)).toBe(true);
    expect(out[5]).toBe(Infinity);
    expect(Object.is(out[6], 0)).toBe(true);
    expect(Object.is(out[7], -0)).toBe(true); // −0 · σ(0)
    expect(Number.isNaN(out[8]!)).toBe(true);
    for (const p of [pg, pu, po]) k.free(p);
  });

  it('softcap matches cap·tanh(x/cap) in float64, in place, any n', () => {
    for (const cap of [0.001, 1, 10, 30]) {
      for (const n of [1, 5, 264, 1001]) {
        const x = f32s(randoms(n, n + Math.round(cap * 7), 4 * cap));
        x[0] = 1e30;
        if (n > 1) x[1] = -1e30;
        const px = put(k, Float32Array.from(x));
        k.softcap(px, n, cap);
        const c = Math.fround(cap);
        const want = x.map((v) => c * Math.tanh(Math.fround(v / c)));
        expectClose(
          get(k, px, n),
          want,
          want.map((v) => Math.abs(v) + 1e-30),
          1e-6,
          `softcap ${cap} n=${n}`,
        );
        k.free(px);
      }
    }
    const p = put(k, [1]);
    for (const bad of [0, -1, Number.NaN, Infinity])
      expect(() => k.softcap(p, 1, bad), String(bad)).toThrow(/softcap: softcap/);
    k.free(p);
  });

  it('scale is one f32 rounding of x·s (s rounded to f32), in place too', () => {
    for (const n of [1, 7, 100]) {
      const x = f32s(randoms(n, n, 50));
      const s = Math.sqrt(96);
      const px = put(k, Float32Array.from(x));
      const po = k.alloc(n * 4);
      k.scale(po, px, n, s);
      const want = Float32Array.from(x, (v) => Math.fround(v * Math.fround(s)));
      expectBitwise(get(k, po, n), want, `scale n=${n}`);
      k.scale(px, px, n, s);
      expectBitwise(get(k, px, n), want, `scale in place n=${n}`);
      for (const p of [px, po]) k.free(p);
    }
  });
});

describe('softmax', () => {
  it('matches float64 row-wise, with -inf entries', () => {
    for (const [rows, n] of [
      [1, 1],
      [2, 5],
      [3, 64],
      [2, 1001],
    ] as const) {
      const x = f32s(randoms(rows * n, n, 20));
      if (n > 3) x[1] = Number.NEGATIVE_INFINITY;
      const px = put(k, Float32Array.from(x));
      k.softmax(px, rows, n);
      const want = new Float64Array(rows * n);
      for (let r = 0; r < rows; r++) {
        const row = x.subarray(r * n, (r + 1) * n);
        const m = Math.max(...row);
        const e = row.map((v) => Math.exp(v - m));
        const s = e.reduce((a, b) => a + b, 0);
        for (let i = 0; i < n; i++) want[r * n + i] = e[i]! / s;
      }
      expectClose(
        get(k, px, rows * n),
        want,
        want.map((v) => v + 1e-30),
        1e-5,
        `softmax ${rows}x${n}`,
      );
      k.free(px);
    }
  });
});

describe('argmax', () => {
  it('returns the first index of the maximum, skipping NaN', () => {
    const cases: [number[], number][] = [
      [[1], 0],
      [[1, 3, 3, 2], 1],
      [[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9], 9],
      [[Number.NaN, 2, 5, Number.NaN, 5], 2],
      [[Number.NaN, Number.NaN, Number.NaN], 0],
      [[Number.NEGATIVE_INFINITY, Number.NEGATIVE_INFINITY], 0],
      [
        [Number.NaN, Number.NEGATIVE_INFINITY, Number.NaN, Number.NaN, Number.NaN, Number.NEGATIVE_INFINITY],
        1,
      ],
      [[-0, 0], 0],
      [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 100], 17],
      [[5, 1, 1, 1, 1, 1, 1, 5, 1, 5], 0],
      [[1, 1, 1, 1, 1, 1, 1, 5, 1, 5, 5, 5], 7],
    ];
    for (const [xs, want] of cases) {
      const p = put(k, xs);
      expect(k.argmax(p, xs.length), JSON.stringify(xs)).toBe(want);
      k.free(p);
    }
    const big = f32s(randoms(50_001, 3));
    big[31_337] = 2;
    big[40_000] = 2;
    const p = put(k, Float32Array.from(big));
    expect(k.argmax(p, big.length)).toBe(31_337);
    k.free(p);
  });
});

describe('copy', () => {
  it('copies with memmove semantics (overlapping both ways)', () => {
    const p = k.alloc(64);
    const init = Uint8Array.from({ length: 64 }, (_, i) => i);
    k.u8(p, 64).set(init);
    k.copy(p + 8, p, 40);
    const want = Array.from(init);
    want.splice(8, 40, ...init.slice(0, 40));
    expect(Array.from(k.u8(p, 64))).toEqual(want);
    k.u8(p, 64).set(init);
    k.copy(p, p + 8, 40);
    const want2 = Array.from(init);
    want2.splice(0, 40, ...init.slice(8, 48));
    expect(Array.from(k.u8(p, 64))).toEqual(want2);
    k.copy(p, p + 3, 0);
    k.free(p);
  });
});
