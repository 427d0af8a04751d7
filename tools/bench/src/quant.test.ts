import { dequantize, quantize } from '@mnemo/tensor';
import { describe, expect, it } from 'vitest';
import { Rng } from './prng';
import {
  allocMlx,
  dequantQ4_1,
  dequantQ8_0,
  hfRowOfGgufRow,
  mlxCode,
  q4_1FromMlxRow,
  q8_0Row,
  quantizeMlxRows,
} from './quant';

function randomRows(rows: number, cols: number, seed: number): Float32Array {
  const rng = new Rng(seed, 'test');
  const v = new Float32Array(rows * cols);
  rng.fillNormal(v, 0, 0.02);
  // Some groups with other scales, a constant group and an outlier, to exercise the edges.
  for (let i = 0; i < 32; i++) v[i] = 0.5;
  for (let i = 32; i < 64; i++) v[i] = v[i]! * 100;
  v[100] = 3;
  return v;
}

const bitsOf = (a: Float32Array) => new Uint32Array(a.buffer, a.byteOffset, a.length);

describe('MLX quantization', () => {
  for (const [bits, groupSize] of [
    [4, 32],
    [8, 64],
  ] as const) {
    it(`${bits}-bit group ${groupSize} matches @mnemo/tensor's quantize bit for bit`, () => {
      const rows = 24;
      const cols = 256;
      const v = randomRows(rows, cols, bits);
      const ours = allocMlx(bits, groupSize, rows, cols);
      // In two chunks, as the generator does.
      quantizeMlxRows(ours, 0, v.subarray(0, 8 * cols));
      quantizeMlxRows(ours, 8, v.subarray(8 * cols));
      const ref = quantize({ bits, groupSize, scaleDtype: 'f16' }, rows, cols, v);
      expect(ours.packed).toEqual(ref.packed);
      expect(ours.scales).toEqual(ref.scales);
      expect(ours.biases).toEqual(ref.biases);
    });
  }
});

describe('GGUF Q4_1 from MLX 4-bit group 32', () => {
  it('dequantizes to exactly the same f32 values as the MLX packing', () => {
    const rows = 16;
    const cols = 128;
    const v = randomRows(rows, cols, 7);
    const m = allocMlx(4, 32, rows, cols);
    quantizeMlxRows(m, 0, v);
    const rowBytes = (cols / 32) * 20;
    const q41 = new Uint8Array(rows * rowBytes);
    for (let r = 0; r < rows; r++) q4_1FromMlxRow(m, r, q41, r * rowBytes);
    const fromGguf = dequantQ4_1(q41, rows * cols);
    const fromMlx = dequantize(
      { bits: 4, groupSize: 32, scaleDtype: 'f16' },
      [rows, cols],
      m.packed,
      m.scales,
      m.biases,
    );
    expect(bitsOf(fromGguf)).toEqual(bitsOf(fromMlx));
    // And ggml's own f32 formula (x * d + m, each step rounded to f32) gives the same bits.
    const ggml = new Float32Array(rows * cols);
    for (let b = 0; b < (rows * cols) / 32; b++) {
      const o = b * 20;
      const view = new DataView(q41.buffer, o, 4);
      const d = f16(view.getUint16(0, true));
      const mm = f16(view.getUint16(2, true));
      for (let j = 0; j < 16; j++) {
        ggml[b * 32 + j] = Math.fround(Math.fround((q41[o + 4 + j]! & 15) * d) + mm);
        ggml[b * 32 + j + 16] = Math.fround(Math.fround((q41[o + 4 + j]! >>> 4) * d) + mm);
      }
    }
    expect(bitsOf(ggml)).toEqual(bitsOf(fromMlx));
  });

  it('puts element j in the low nibble and element j + 16 in the high nibble of byte j', () => {
    const m = allocMlx(4, 32, 1, 32);
    quantizeMlxRows(
      m,
      0,
      Float32Array.from({ length: 32 }, (_, k) => k % 16),
    );
    const out = new Uint8Array(20);
    q4_1FromMlxRow(m, 0, out, 0);
    for (let j = 0; j < 16; j++) {
      expect(out[4 + j]! & 15).toBe(mlxCode(m, 0, j));
      expect(out[4 + j]! >>> 4).toBe(mlxCode(m, 0, j + 16));
    }
  });
});

describe('Q8_0', () => {
  it('round-trips within half a step', () => {
    const v = randomRows(4, 64, 3);
    const out = new Uint8Array(4 * 2 * 34);
    for (let r = 0; r < 4; r++) q8_0Row(v.subarray(r * 64, (r + 1) * 64), out, r * 2 * 34);
    const back = dequantQ8_0(out, v.length);
    for (let b = 0; b < v.length / 32; b++) {
      let amax = 0;
      for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(v[b * 32 + j]!));
      for (let j = 0; j < 32; j++)
        expect(Math.abs(back[b * 32 + j]! - v[b * 32 + j]!)).toBeLessThanOrEqual((amax / 127) * 0.51 + 1e-6);
    }
  });
});

describe('rotate-half → adjacent-pair row permutation', () => {
  it("matches the converter's reshape(n_head, 2, D/2).swapaxes(1, 2)", () => {
    for (const [heads, d] of [
      [4, 8],
      [2, 64],
    ] as const) {
      const rows = heads * d;
      // permuted[h][i][s] = original[h][s][i]; flattened, permuted row h*d + 2i + s is original row h*d + s*d/2 + i.
      const expected: number[] = [];
      for (let h = 0; h < heads; h++)
        for (let i = 0; i < d / 2; i++) for (let s = 0; s < 2; s++) expected.push(h * d + s * (d / 2) + i);
      expect(Array.from({ length: rows }, (_, r) => hfRowOfGgufRow(r, rows, heads))).toEqual(expected);
    }
    expect(hfRowOfGgufRow(5, 10, undefined)).toBe(5);
  });
});

const scratch = new DataView(new ArrayBuffer(4));
function f16(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >>> 10) & 31;
  const m = h & 1023;
  if (e === 0) return sign * m * 2 ** -24;
  if (e === 31) return m ? Number.NaN : sign * Infinity;
  scratch.setFloat32(0, sign * (1 + m / 1024) * 2 ** (e - 15));
  return scratch.getFloat32(0);
}
