import { beforeAll, describe, expect, it } from 'vitest';
import { type Kernels, type KvAttention, type KvFormat, type KvPtrs, loadKernels } from './index';
import { expectBitwise, f32s, numberToF16, randoms } from './testing/ref';

// attentionKv reads KV storage as stored (f32, f16, quantized 4/8-bit) and as a ring; writeKv fills it. Oracle: the
// legacy `attention` kernel (checked against float64 elsewhere) over f32 rows in position order holding exactly the
// values the storage defines — attentionKv must give the same bits.

let k: Kernels;
beforeAll(async () => {
  k = await loadKernels();
});

/** The documented f32 → f16 rounding (nearest even; as `f32BitsToF16Bits` of @mnemo/tensor). */
function f16Bits(x: number): number {
  const f = new Float32Array([x]);
  const b = new Uint32Array(f.buffer)[0]!;
  if (Number.isNaN(x)) return ((b >>> 16) & 0x8000) | 0x7e00 | ((b & 0x7fffff) >>> 13);
  return numberToF16(f[0]!);
}

function roundEven(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** The documented quantizer of one row: packed words, scales, biases (as `quantize` of @mnemo/tensor, f32 scales). */
function quantizeRow(x: Float32Array, bits: number, gs: number) {
  const width = x.length;
  const maxQ = 2 ** bits - 1;
  const packed = new Uint32Array((width * bits) / 32);
  const scales = new Float32Array(width / gs);
  const biases = new Float32Array(width / gs);
  for (let g = 0; g < width / gs; g++) {
    let min = Infinity;
    let max = -Infinity;
    for (let i = g * gs; i < (g + 1) * gs; i++) {
      if (x[i]! < min) min = x[i]!;
      if (x[i]! > max) max = x[i]!;
    }
    scales[g] = Math.fround(Math.fround(max - min) / maxQ);
    biases[g] = min;
    const s = scales[g]!;
    const b = biases[g]!;
    for (let i = g * gs; i < (g + 1) * gs; i++) {
      const q = Math.min(maxQ, Math.max(0, s === 0 ? 0 : roundEven((x[i]! - b) / s))) || 0;
      const bit = i * bits;
      packed[bit >>> 5] = (packed[bit >>> 5]! | (q << (bit & 31))) >>> 0;
    }
  }
  return { packed, scales, biases };
}

/** Values of a quantized row as the storage defines them: `fl(fl(scale·q) + bias)`. */
function dequantizeRow(
  q: ReturnType<typeof quantizeRow>,
  width: number,
  bits: number,
  gs: number,
): Float32Array {
  const out = new Float32Array(width);
  const f = Math.fround;
  for (let i = 0; i < width; i++) {
    const bit = i * bits;
    const code = (q.packed[bit >>> 5]! >>> (bit & 31)) & (2 ** bits - 1);
    const g = Math.floor(i / gs);
    out[i] = f(f(q.scales[g]! * code) + q.biases[g]!);
  }
  return out;
}

interface Storage {
  ptrs: KvPtrs;
  free(): void;
}

/** Allocates storage of `capacity` rows of `width` in `format`, filled with garbage. */
function allocStorage(format: KvFormat, capacity: number, width: number, gs: number, seed: number): Storage {
  const bytes =
    format === 'f32' ? 4 * width : format === 'f16' ? 2 * width : (width * (format === 'q4' ? 4 : 8)) / 8;
  const data = k.alloc(capacity * bytes);
  k.u8(data, capacity * bytes).set(Uint8Array.from(randoms(capacity * bytes, seed), (v) => (v + 1) * 127));
  let scales = 0;
  let biases = 0;
  if (format === 'q4' || format === 'q8') {
    const n = (capacity * width) / gs;
    scales = k.alloc(n * 4);
    biases = k.alloc(n * 4);
    k.f32(scales, n).fill(Number.NaN);
    k.f32(biases, n).fill(1e30);
  }
  return {
    ptrs: { data, scales, biases },
    free() {
      k.free(data);
      if (scales) k.free(scales);
      if (biases) k.free(biases);
    },
  };
}

/** Row of position j (the documented ring mapping). */
function rowOf(j: number, capacity: number, keep: number): number {
  return j < keep || j < capacity ? j : keep + ((j - keep) % (capacity - keep));
}

/** What a stored row reads back as (the values attention uses). */
function stored(format: KvFormat, x: Float32Array, gs: number): Float32Array {
  if (format === 'f32') return Float32Array.from(x);
  if (format === 'f16') {
    const h = new Uint16Array(x.length);
    for (let i = 0; i < x.length; i++) h[i] = f16Bits(x[i]!);
    // exact f16 → f32 via the kernels' own conversion is checked by toF32's tests; here use float math
    return Float32Array.from(h, (b) => {
      const s = b & 0x8000 ? -1 : 1;
      const e = (b >> 10) & 0x1f;
      const m = b & 0x3ff;
      if (e === 0) return s * m * 2 ** -24;
      if (e === 31) return m ? Number.NaN : s * Infinity;
      return s * (1 + m / 1024) * 2 ** (e - 15);
    });
  }
  const bits = format === 'q4' ? 4 : 8;
  return dequantizeRow(quantizeRow(x, bits, gs), x.length, bits, gs);
}

interface Case {
  format: KvFormat;
  gs: number;
  nHeads: number;
  nKvHeads: number;
  headDim: number;
  window: number;
  keep: number;
  capacity: number;
  T: number;
  chunks: number[];
  softcap?: number;
}

const SHAPES: Omit<Case, 'format' | 'gs'>[] = [
  // linear, all positions seen
  { nHeads: 4, nKvHeads: 2, headDim: 32, window: 0, keep: 0, capacity: 40, T: 33, chunks: [5, 1, 20, 7] },
  // sliding window over a ring of window + step - 1 rows, wrapped several times
  {
    nHeads: 8,
    nKvHeads: 2,
    headDim: 16,
    window: 6,
    keep: 0,
    softcap: 1.5,
    capacity: 9,
    T: 40,
    chunks: [4, 4, 1, 3, 4, 4, 4, 4, 4, 4, 4],
  },
  // mlx-lm style: keep 3 sinks + 5 recent, ring of 10
  {
    nHeads: 2,
    nKvHeads: 1,
    headDim: 64,
    window: 5,
    keep: 3,
    capacity: 10,
    T: 31,
    chunks: [8, 1, 1, 3, 3, 3, 3, 3, 3, 3],
  },
];
const CASES: Case[] = [];
for (const format of ['f32', 'f16', 'q8', 'q4'] as const)
  for (const s of SHAPES) {
    const width = s.nKvHeads * s.headDim;
    CASES.push({ ...s, format, gs: format === 'q8' && width % 64 === 0 ? 64 : 32 });
  }

describe('attentionKv over stored formats and rings', () => {
  for (const c of CASES) {
    it(`${c.format} heads ${c.nHeads}/${c.nKvHeads}×${c.headDim} window ${c.window} keep ${c.keep} capacity ${c.capacity} softcap ${c.softcap ?? 0}`, () => {
      const width = c.nKvHeads * c.headDim;
      const qw = c.nHeads * c.headDim;
      const kx = Float32Array.from(randoms(c.T * width, 11, 2));
      const vx = Float32Array.from(randoms(c.T * width, 12, 3));
      const qx = Float32Array.from(randoms(c.T * qw, 13, 1));
      const ks = allocStorage(c.format, c.capacity, width, c.gs, 21);
      const vs = allocStorage(c.format, c.capacity, width, c.gs, 22);
      const src = k.alloc(c.T * width * 4);
      const q = k.alloc(c.T * qw * 4);
      const out = k.alloc(c.T * qw * 4);
      k.f32(q, c.T * qw).set(qx);
      const layout = { capacity: c.capacity, keep: c.keep, format: c.format, groupSize: c.gs };
      const got = new Float32Array(c.T * qw);
      let start = 0;
      for (const n of c.chunks) {
        for (const [st, x] of [
          [ks, kx],
          [vs, vx],
        ] as const) {
          k.f32(src, n * width).set(x.subarray(start * width, (start + n) * width));
          k.writeKv(st.ptrs, src, { ...layout, rows: n, startPos: start, width });
        }
        const a: KvAttention = {
          ...layout,
          rows: n,
          startPos: start,
          nHeads: c.nHeads,
          nKvHeads: c.nKvHeads,
          headDim: c.headDim,
          scale: 1 / Math.sqrt(c.headDim),
          window: c.window,
          softcap: c.softcap ?? 0,
        };
        k.attentionKv(out + start * qw * 4, q + start * qw * 4, ks.ptrs, vs.ptrs, a);
        got.set(k.f32(out + start * qw * 4, n * qw), start * qw);
        start += n;
      }
      expect(start).toBe(c.T);
      // the stored bytes of the rows still held are those the documented conversion gives
      for (let j = Math.max(0, c.T - (c.capacity - c.keep)); j < c.T; j++) {
        const row = rowOf(j, c.capacity, c.keep);
        const x = kx.subarray(j * width, (j + 1) * width);
        if (c.format === 'f16') {
          const h = k.u16(ks.ptrs.data + row * width * 2, width);
          for (let i = 0; i < width; i++) expect(h[i], `f16 row of position ${j}`).toBe(f16Bits(x[i]!));
        } else if (c.format !== 'f32') {
          const bits = c.format === 'q4' ? 4 : 8;
          const want = quantizeRow(x, bits, c.gs);
          const words = (width * bits) / 32;
          const groups = width / c.gs;
          expect(Array.from(k.u32(ks.ptrs.data + row * words * 4, words))).toEqual(Array.from(want.packed));
          expectBitwise(k.f32(ks.ptrs.scales + row * groups * 4, groups).slice(), want.scales, 'scales');
          expectBitwise(k.f32(ks.ptrs.biases + row * groups * 4, groups).slice(), want.biases, 'biases');
        }
      }
      // oracle: the legacy kernel over f32 rows in position order holding the stored values, per query row (its
      // own visible set), with the sinks of `keep` placed before the window
      const kf = k.alloc(c.T * width * 4);
      const vf = k.alloc(c.T * width * 4);
      const o1 = k.alloc(qw * 4);
      const want = new Float32Array(c.T * qw);
      const storedK = new Float32Array(c.T * width);
      const storedV = new Float32Array(c.T * width);
      for (let j = 0; j < c.T; j++) {
        storedK.set(stored(c.format, kx.subarray(j * width, (j + 1) * width), c.gs), j * width);
        storedV.set(stored(c.format, vx.subarray(j * width, (j + 1) * width), c.gs), j * width);
      }
      for (let p = 0; p < c.T; p++) {
        const lo = c.window > 0 ? Math.max(0, p - c.window + 1) : 0;
        const seen: number[] = [];
        for (let j = 0; j < Math.min(c.keep, lo); j++) seen.push(j);
        for (let j = lo; j <= p; j++) seen.push(j);
        seen.forEach((j, i) => {
          k.f32(kf + i * width * 4, width).set(storedK.subarray(j * width, (j + 1) * width));
          k.f32(vf + i * width * 4, width).set(storedV.subarray(j * width, (j + 1) * width));
        });
        k.attention(
          o1,
          q + p * qw * 4,
          kf,
          vf,
          1,
          seen.length - 1,
          c.nHeads,
          c.nKvHeads,
          c.headDim,
          1 / Math.sqrt(c.headDim),
          0,
          c.softcap ?? 0,
        );
        want.set(k.f32(o1, qw), p * qw);
      }
      expectBitwise(got, want, 'attentionKv vs attention over the stored values in position order');
      for (const p of [ks, vs]) p.free();
      for (const p of [kf, vf, o1, src, q, out]) k.free(p);
    });
  }

  it('computes each kv head range bitwise as the whole, in every format', () => {
    for (const format of ['f32', 'f16', 'q8', 'q4'] as const) {
      const nHeads = 8;
      const nKvHeads = 4;
      const headDim = 16;
      const width = nKvHeads * headDim;
      const capacity = 12;
      const layout = { capacity, keep: 1, format, groupSize: 32 };
      const ks = allocStorage(format, capacity, width, 32, 31);
      const vs = allocStorage(format, capacity, width, 32, 32);
      const src = k.alloc(capacity * width * 4);
      k.f32(src, capacity * width).set(f32s(randoms(capacity * width, 33)));
      for (const [st, seed] of [
        [ks, 0],
        [vs, 1],
      ] as const) {
        k.writeKv(st.ptrs, src + seed * width * 4, { ...layout, rows: 1, startPos: 0, width });
        k.writeKv(st.ptrs, src + seed * width * 4, { ...layout, rows: capacity - 1, startPos: 20, width });
      }
      const rows = 3;
      const q = k.alloc(rows * nHeads * headDim * 4);
      k.f32(q, rows * nHeads * headDim).set(f32s(randoms(rows * nHeads * headDim, 35)));
      const a: KvAttention = {
        ...layout,
        rows,
        startPos: 28,
        nHeads,
        nKvHeads,
        headDim,
        scale: 0.3,
        window: 7,
      };
      const whole = k.alloc(rows * nHeads * headDim * 4);
      const parts = k.alloc(rows * nHeads * headDim * 4);
      k.attentionKv(whole, q, ks.ptrs, vs.ptrs, a);
      k.f32(parts, rows * nHeads * headDim).fill(Number.NaN);
      for (const [h0, h1] of [
        [0, 1],
        [1, 3],
        [3, 4],
      ] as const)
        k.attentionKv(parts, q, ks.ptrs, vs.ptrs, a, h0, h1);
      expectBitwise(
        k.f32(parts, rows * nHeads * headDim).slice(),
        k.f32(whole, rows * nHeads * headDim).slice(),
        `${format}: head ranges`,
      );
      for (const p of [ks, vs]) p.free();
      for (const p of [src, q, whole, parts]) k.free(p);
    }
  });

  it('writeKv: f16 rounding edge cases, and quantizing constant, NaN and inf groups as documented', () => {
    const width = 32;
    const x = new Float32Array(width);
    x.set([65504, 65520, 1e-8, -1e-8, 5.96e-8, 2.98e-8, Number.NaN, -Infinity, 1 / 3, -0, 0.1, 70000]);
    const h = allocStorage('f16', 1, width, 32, 41);
    const src = k.alloc(width * 4);
    k.f32(src, width).set(x);
    k.writeKv(h.ptrs, src, {
      capacity: 1,
      keep: 0,
      format: 'f16',
      groupSize: 32,
      rows: 1,
      startPos: 0,
      width,
    });
    expect(Array.from(k.u16(h.ptrs.data, width))).toEqual(Array.from(x, f16Bits));
    for (const fill of [7.5, Number.NaN, Infinity]) {
      const y = new Float32Array(width).fill(fill);
      y[3] = 1;
      for (const format of ['q4', 'q8'] as const) {
        const bits = format === 'q4' ? 4 : 8;
        const s = allocStorage(format, 1, width, 32, 42);
        k.f32(src, width).set(y);
        k.writeKv(s.ptrs, src, { capacity: 1, keep: 0, format, groupSize: 32, rows: 1, startPos: 0, width });
        const want = quantizeRow(y, bits, 32);
        expect(Array.from(k.u32(s.ptrs.data, (width * bits) / 32)), `${format} fill ${fill}`).toEqual(
          Array.from(want.packed),
        );
        expectBitwise(k.f32(s.ptrs.scales, 1).slice(), want.scales, 'scale');
        expectBitwise(k.f32(s.ptrs.biases, 1).slice(), want.biases, 'bias');
        s.free();
      }
    }
    h.free();
    k.free(src);
  });

  it('validates: formats, keep, rows the ring no longer holds, overlapping writes, ranges', () => {
    const width = 16;
    const s = allocStorage('q8', 8, width, 32, 51);
    const src = k.alloc(9 * width * 4);
    const layout = { capacity: 8, keep: 0, format: 'q8' as const, groupSize: 32 };
    expect(() => k.writeKv(s.ptrs, src, { ...layout, rows: 1, startPos: 0, width })).toThrow(
      /width \(16\) must be a multiple of groupSize/,
    );
    const f = allocStorage('f32', 8, width, 32, 52);
    const fl = { capacity: 8, keep: 2, format: 'f32' as const, groupSize: 32 };
    expect(() => k.writeKv(f.ptrs, src, { ...fl, rows: 7, startPos: 5, width })).toThrow(
      /land on each other/,
    );
    k.writeKv(f.ptrs, src, { ...fl, rows: 6, startPos: 5, width });
    expect(() =>
      k.writeKv(f.ptrs, src, { ...fl, format: 'bf16' as unknown as KvFormat, rows: 1, startPos: 0, width }),
    ).toThrow(/format must be/);
    expect(() => k.writeKv(f.ptrs, src, { ...fl, keep: 9, rows: 1, startPos: 0, width })).toThrow(/keep/);
    const q = k.alloc(4 * 2 * 8 * 4);
    const out = k.alloc(4 * 2 * 8 * 4);
    const a: KvAttention = {
      ...fl,
      rows: 4,
      startPos: 10,
      nHeads: 2,
      nKvHeads: 2,
      headDim: 8,
      scale: 1,
      window: 3,
    };
    k.attentionKv(out, q, f.ptrs, f.ptrs, a); // positions 8..13 seen: 6 rows of the 6-row ring
    expect(() => k.attentionKv(out, q, f.ptrs, f.ptrs, { ...a, window: 4 })).toThrow(
      /cannot hold positions 7\.\.13/,
    );
    expect(() => k.attentionKv(out, q, f.ptrs, f.ptrs, { ...a, window: 0 })).toThrow(/cannot hold/);
    expect(() => k.attentionKv(out, out, f.ptrs, f.ptrs, a)).toThrow(/overlaps/);
    expect(() => k.attentionKv(out, q, { data: f.ptrs.data + 4, scales: 0, biases: 0 }, f.ptrs, a)).toThrow(
      /not inside a live allocation/,
    );
    const q8 = allocStorage('q8', 8, 16, 32, 53);
    expect(() =>
      k.attentionKv(out, q, q8.ptrs, q8.ptrs, {
        ...a,
        format: 'q8',
        keep: 0,
        nKvHeads: 1,
        nHeads: 1,
        headDim: 16,
      }),
    ).toThrow(/multiple of groupSize/);
    for (const p of [s, f, q8]) p.free();
    for (const p of [src, q, out]) k.free(p);
  });
});
