import { beforeAll, describe, expect, it } from 'vitest';
import { attentionScratchBytes, type Kernels, loadKernels } from './index';
import { type Exports, kernelsWasmBytes } from './kernels';
import { expectBitwise, put, randoms } from './testing/ref';

let k: Kernels;
beforeAll(async () => {
  k = await loadKernels();
});

interface Shape {
  nHeads: number;
  nKvHeads: number;
  headDim: number;
  window: number;
}

/** GQA ratios 1/2/3/4/6/8 (head blocks of 4, 2 and 1), head dims that are not multiples of 8, windows. */
const SHAPES: Shape[] = [
  { nHeads: 4, nKvHeads: 4, headDim: 13, window: 0 },
  { nHeads: 8, nKvHeads: 4, headDim: 20, window: 3 },
  { nHeads: 9, nKvHeads: 3, headDim: 7, window: 0 },
  { nHeads: 8, nKvHeads: 2, headDim: 6, window: 0 },
  { nHeads: 12, nKvHeads: 2, headDim: 36, window: 5 },
  { nHeads: 16, nKvHeads: 2, headDim: 64, window: 0 },
  { nHeads: 24, nKvHeads: 3, headDim: 9, window: 2 },
  { nHeads: 6, nKvHeads: 3, headDim: 1, window: 0 },
];

const CASES = [
  [1, 0],
  [1, 17],
  [6, 0],
  [5, 9],
] as const;

/** A NaN with a payload no kernel produces: any write over it shows. */
const SENTINEL = 0x7fa5a5a5;

/** Every way to cut `0..n` into consecutive ranges, up to `limit` of them (plus single heads). */
function splits(n: number): [number, number][][] {
  const out: [number, number][][] = [[[0, n]]];
  out.push(Array.from({ length: n }, (_, i) => [i, i + 1] as [number, number]));
  if (n > 2)
    out.push(
      [
        [0, 1],
        [1, n - 1],
        [n - 1, n],
      ].filter(([a, b]) => a < b) as [number, number][],
    );
  if (n > 1)
    out.push([
      [0, Math.floor(n / 2)],
      [Math.floor(n / 2), n],
    ]);
  return out;
}

function fillSentinel(ptr: number, n: number): void {
  k.u32(ptr, n).fill(SENTINEL);
}

describe('attentionHeads', () => {
  for (const s of SHAPES) {
    const label = `heads ${s.nHeads}/${s.nKvHeads}, headDim ${s.headDim}, window ${s.window}`;
    it(`head ranges concatenate bitwise to attention and write only their own columns: ${label}`, () => {
      const g = s.nHeads / s.nKvHeads;
      const qw = s.nHeads * s.headDim;
      for (const [rows, start] of CASES) {
        const cap = start + rows + 3;
        const kvDim = s.nKvHeads * s.headDim;
        const seed = rows * 7 + start + s.headDim;
        const q = put(k, Float32Array.from(randoms(rows * qw, seed, 2)));
        const kc = put(k, Float32Array.from(randoms(cap * kvDim, seed + 1, 2)));
        const vc = put(k, Float32Array.from(randoms(cap * kvDim, seed + 2)));
        const out = k.alloc(rows * qw * 4);
        const args = [
          rows,
          start,
          s.nHeads,
          s.nKvHeads,
          s.headDim,
          1 / Math.sqrt(s.headDim),
          s.window,
        ] as const;
        k.attention(out, q, kc, vc, ...args);
        const full = k.f32(out, rows * qw).slice();
        expect(full.every(Number.isFinite)).toBe(true);
        for (const split of splits(s.nKvHeads)) {
          fillSentinel(out, rows * qw);
          const done = new Set<number>();
          for (const [a, b] of split) {
            k.attentionHeads(out, q, kc, vc, ...args, a, b);
            for (let h = a * g; h < b * g; h++) done.add(h);
            const bits = k.u32(out, rows * qw);
            for (let r = 0; r < rows; r++) {
              for (let h = 0; h < s.nHeads; h++) {
                if (done.has(h)) continue;
                for (let d = 0; d < s.headDim; d++) {
                  const i = r * qw + h * s.headDim + d;
                  if (bits[i] !== SENTINEL) {
                    throw new Error(`range [${a}, ${b}) wrote row ${r} head ${h} dim ${d} (${label})`);
                  }
                }
              }
            }
          }
          expectBitwise(
            k.f32(out, rows * qw),
            full,
            `split ${JSON.stringify(split)} rows=${rows} start=${start} ${label}`,
          );
        }
        for (const p of [q, kc, vc, out]) k.free(p);
      }
    });
  }

  it('is attention for the full range', () => {
    const s = { nHeads: 8, nKvHeads: 2, headDim: 20 };
    const [rows, start] = [4, 30];
    const q = put(k, Float32Array.from(randoms(rows * 160, 1, 2)));
    const kc = put(k, Float32Array.from(randoms((rows + start) * 40, 2, 2)));
    const vc = put(k, Float32Array.from(randoms((rows + start) * 40, 3)));
    const o1 = k.alloc(rows * 160 * 4);
    const o2 = k.alloc(rows * 160 * 4);
    k.attention(o1, q, kc, vc, rows, start, s.nHeads, s.nKvHeads, s.headDim, 0.3, 0);
    k.attentionHeads(o2, q, kc, vc, rows, start, s.nHeads, s.nKvHeads, s.headDim, 0.3, 0, 0, 2);
    expectBitwise(k.f32(o2, rows * 160), k.f32(o1, rows * 160), 'full range');
    // and a head range with a soft-cap gives the soft-capped attention's heads (which differ from the uncapped)
    const plain = k.f32(o1, rows * 160).slice();
    k.attention(o1, q, kc, vc, rows, start, s.nHeads, s.nKvHeads, s.headDim, 0.3, 0, 1.5);
    k.attentionHeads(o2, q, kc, vc, rows, start, s.nHeads, s.nKvHeads, s.headDim, 0.3, 0, 1, 2, 1.5);
    const capped = k.f32(o1, rows * 160).slice();
    const ranged = k.f32(o2, rows * 160).slice();
    for (let r = 0; r < rows; r++) {
      const cols = (a: Float32Array) => a.subarray(r * 160 + 80, (r + 1) * 160);
      expectBitwise(cols(ranged), cols(capped), `softcap range, row ${r}`);
      expect(cols(capped)).not.toEqual(cols(plain));
    }
    for (const p of [q, kc, vc, o1, o2]) k.free(p);
  });

  it('rejects empty or out-of-range kv head ranges', () => {
    const q = k.alloc(4 * 8 * 4);
    const kc = k.alloc(4 * 4 * 4);
    const vc = k.alloc(4 * 4 * 4);
    const out = k.alloc(4 * 8 * 4);
    const call = (a: number, b: number) => () => k.attentionHeads(out, q, kc, vc, 1, 0, 4, 2, 2, 1, 0, a, b);
    expect(call(0, 2)).not.toThrow();
    expect(call(1, 1)).toThrow(/attentionHeads: kv head range \[1, 1\) must be non-empty/);
    expect(call(0, 3)).toThrow(
      /attentionHeads: kv head range \[0, 3\) must be non-empty and inside \[0, 2\)/,
    );
    expect(call(-1, 1)).toThrow(RangeError);
    expect(call(0, 0)).toThrow(/attentionHeads: kvHead1 must be in/);
    expect(call(0.5, 1)).toThrow(TypeError);
    for (const p of [q, kc, vc, out]) k.free(p);
  });
});

describe('attentionScratchBytes', () => {
  it('equals the scratch the wasm kernels ask for', async () => {
    const { instance } = await WebAssembly.instantiate(kernelsWasmBytes() as BufferSource, {});
    const x = instance.exports as unknown as Exports;
    let n = 0;
    for (const s of SHAPES) {
      for (const [rows, start] of [...CASES, [300, 4000] as const]) {
        const { nHeads: nh, nKvHeads: nkv, headDim: hd, window: w } = s;
        expect(attentionScratchBytes(rows, start, nh, nkv, hd, w)).toBe(
          x.mk_attention_scratch(rows, start, nh, nkv, hd, w),
        );
        for (const split of splits(nkv)) {
          for (const [a, b] of split) {
            expect(attentionScratchBytes(rows, start, nh, nkv, hd, w, a, b)).toBe(
              x.mk_attention_heads_scratch(rows, start, nh, nkv, hd, w, a, b),
            );
            n++;
          }
        }
      }
    }
    expect(n).toBeGreaterThan(100);
  });

  it('validates like the kernels', () => {
    expect(() => attentionScratchBytes(0, 0, 4, 2, 8, 0)).toThrow(/attentionScratchBytes: rows/);
    expect(() => attentionScratchBytes(1, 0, 5, 2, 8, 0)).toThrow(/multiple of nKvHeads/);
    expect(() => attentionScratchBytes(1, 0, 4, 2, 8, 0, 1, 3)).toThrow(/kv head range/);
  });
});
