/**
 * GGML block types the kernels compute with (the formats of GGUF files). Each row of a `[rows, cols]` weight is
 * `cols / blockSize` blocks of `blockBytes` bytes, rows back to back; the block layouts are documented in
 * `@mnemo/tensor`'s `ggml.ts` (and in `rust/src/ggml.rs`).
 */

/** Names of the GGML block types with kernels, as llama.cpp prints them. */
export type GgmlBlockType =
  | 'Q4_0'
  | 'Q4_1'
  | 'Q5_0'
  | 'Q5_1'
  | 'Q8_0'
  | 'Q2_K'
  | 'Q3_K'
  | 'Q4_K'
  | 'Q5_K'
  | 'Q6_K';

export interface GgmlBlockInfo {
  /** The type's number in GGUF files (and the kernels' type code). */
  readonly id: number;
  /** Elements per block. */
  readonly blockSize: number;
  /** Bytes per block. */
  readonly blockBytes: number;
}

export const GGML_BLOCK_TYPES: Readonly<Record<GgmlBlockType, GgmlBlockInfo>> = {
  Q4_0: { id: 2, blockSize: 32, blockBytes: 18 },
  Q4_1: { id: 3, blockSize: 32, blockBytes: 20 },
  Q5_0: { id: 6, blockSize: 32, blockBytes: 22 },
  Q5_1: { id: 7, blockSize: 32, blockBytes: 24 },
  Q8_0: { id: 8, blockSize: 32, blockBytes: 34 },
  Q2_K: { id: 10, blockSize: 256, blockBytes: 84 },
  Q3_K: { id: 11, blockSize: 256, blockBytes: 110 },
  Q4_K: { id: 12, blockSize: 256, blockBytes: 144 },
  Q5_K: { id: 13, blockSize: 256, blockBytes: 176 },
  Q6_K: { id: 14, blockSize: 256, blockBytes: 210 },
};

export function isGgmlBlockType(v: unknown): v is GgmlBlockType {
  return typeof v === 'string' && Object.hasOwn(GGML_BLOCK_TYPES, v);
}

/** Bytes of one row of `cols` elements of `type` (`cols` a multiple of the block size). */
export function ggmlRowBytes(type: GgmlBlockType, cols: number): number {
  const t = GGML_BLOCK_TYPES[type];
  return (cols / t.blockSize) * t.blockBytes;
}

/** Checks a GGML kernel call's type and row length and returns the bytes of a row (no allocation). */
export function ggmlShape(kernel: string, dimName: string, dim: number, type: GgmlBlockType): number {
  if (!isGgmlBlockType(type))
    throw new TypeError(
      `${kernel}: type must be one of ${Object.keys(GGML_BLOCK_TYPES).join(', ')}, got ${typeof type === 'string' ? JSON.stringify(type) : String(type)}`,
    );
  const t = GGML_BLOCK_TYPES[type];
  if (dim % t.blockSize !== 0)
    throw new RangeError(
      `${kernel}: ${dimName} (${dim}) must be a multiple of the ${type} block size (${t.blockSize})`,
    );
  return (dim / t.blockSize) * t.blockBytes;
}

function f16(b: Uint8Array, at: number): number {
  const h = b[at]! | (b[at + 1]! << 8);
  const e = (h >> 10) & 31;
  const m = h & 1023;
  const s = h & 0x8000 ? -1 : 1;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? Number.NaN : s * Number.POSITIVE_INFINITY;
  return s * (1024 + m) * 2 ** (e - 25);
}

/**
 * The affine form of one block of `type` at `b[at ..]`: for each element `i` of the block its unsigned code
 * (`codes[i]`) and its sub-block's scale and offset (`s[i / sub]`, `o[i / sub]`), so that the element's value is
 * exactly `s · code + o` (as the kernels read it; see `rust/src/ggml.rs`). Returns the sub-block size.
 */
export function ggmlBlockAffine(
  type: GgmlBlockType,
  b: Uint8Array,
  at: number,
  codes: Uint8Array,
  s: Float64Array,
  o: Float64Array,
): number {
  const u = (i: number) => b[at + i]!;
  const d = (i: number) => f16(b, at + i);
  switch (type) {
    case 'Q4_0':
    case 'Q4_1':
    case 'Q5_0':
    case 'Q5_1': {
      const five = type === 'Q5_0' || type === 'Q5_1';
      const one = type === 'Q4_1' || type === 'Q5_1';
      const qs = (one ? 4 : 2) + (five ? 4 : 0);
      const qh = five ? u(qs - 4) | (u(qs - 3) << 8) | (u(qs - 2) << 16) | (u(qs - 1) << 24) : 0;
      for (let j = 0; j < 16; j++) {
        codes[j] = (u(qs + j) & 15) | (five ? ((qh >>> j) & 1) << 4 : 0);
        codes[j + 16] = (u(qs + j) >> 4) | (five ? ((qh >>> (j + 16)) & 1) << 4 : 0);
      }
      s[0] = d(0);
      o[0] = one ? d(2) : -(five ? 16 : 8) * d(0);
      return 32;
    }
    case 'Q8_0':
      for (let j = 0; j < 32; j++) codes[j] = u(2 + j) ^ 0x80;
      s[0] = d(0);
      o[0] = -128 * d(0);
      return 32;
    case 'Q2_K':
      for (let n = 0; n < 2; n++)
        for (let j = 0; j < 4; j++)
          for (let h = 0; h < 2; h++)
            for (let l = 0; l < 16; l++)
              codes[128 * n + 32 * j + 16 * h + l] = (u(16 + 32 * n + 16 * h + l) >> (2 * j)) & 3;
      for (let i = 0; i < 16; i++) {
        s[i] = d(80) * (u(i) & 15);
        o[i] = -d(82) * (u(i) >> 4);
      }
      return 16;
    case 'Q3_K': {
      for (let n = 0; n < 2; n++)
        for (let j = 0; j < 4; j++)
          for (let h = 0; h < 2; h++)
            for (let l = 0; l < 16; l++)
              codes[128 * n + 32 * j + 16 * h + l] =
                ((u(32 + 32 * n + 16 * h + l) >> (2 * j)) & 3) | (((u(16 * h + l) >> (4 * n + j)) & 1) << 2);
      for (let k = 0; k < 4; k++) {
        const hi = u(104 + k);
        const sc = [
          (u(96 + k) & 15) | ((hi & 3) << 4),
          (u(100 + k) & 15) | (((hi >> 2) & 3) << 4),
          (u(96 + k) >> 4) | (((hi >> 4) & 3) << 4),
          (u(100 + k) >> 4) | ((hi >> 6) << 4),
        ];
        for (let q = 0; q < 4; q++) {
          s[4 * q + k] = d(108) * (sc[q]! - 32);
          o[4 * q + k] = -4 * s[4 * q + k]!;
        }
      }
      return 16;
    }
    case 'Q4_K':
    case 'Q5_K': {
      const five = type === 'Q5_K';
      const qs = five ? 48 : 16;
      for (let j = 0; j < 4; j++)
        for (let l = 0; l < 32; l++) {
          const q = u(qs + 32 * j + l);
          const h = five ? u(16 + l) : 0;
          codes[64 * j + l] = (q & 15) | (((h >> (2 * j)) & 1) << 4);
          codes[64 * j + 32 + l] = (q >> 4) | (((h >> (2 * j + 1)) & 1) << 4);
        }
      for (let j = 0; j < 8; j++) {
        const sc = j < 4 ? u(4 + j) & 63 : (u(8 + j) & 15) | ((u(j) >> 6) << 4);
        const m = j < 4 ? u(8 + j) & 63 : (u(8 + j) >> 4) | ((u(4 + j) >> 6) << 4);
        s[j] = d(0) * sc;
        o[j] = -d(2) * m;
      }
      return 32;
    }
    case 'Q6_K':
      for (let n = 0; n < 2; n++)
        for (let l = 0; l < 32; l++) {
          const h = u(128 + 32 * n + l);
          const a = u(64 * n + l);
          const c = u(64 * n + 32 + l);
          codes[128 * n + l] = (a & 15) | ((h & 3) << 4);
          codes[128 * n + 32 + l] = (c & 15) | (((h >> 2) & 3) << 4);
          codes[128 * n + 64 + l] = (a >> 4) | (((h >> 4) & 3) << 4);
          codes[128 * n + 96 + l] = (c >> 4) | (((h >> 6) & 3) << 4);
        }
      for (let i = 0; i < 16; i++) {
        const sc = (u(192 + i) << 24) >> 24;
        s[i] = d(208) * sc;
        o[i] = -32 * s[i]!;
      }
      return 16;
  }
}

/**
 * Row `row` of a `[rows, cols]` matrix of `type` blocks (`data`: whole rows back to back) dequantized exactly (as
 * float64) into `out[outOffset ..]`: the reference decoder every backend is compared with.
 */
export function dequantizeGgmlRow(
  type: GgmlBlockType,
  cols: number,
  data: Uint8Array,
  row: number,
  out: Float64Array | Float32Array,
  outOffset = 0,
): void {
  const t = GGML_BLOCK_TYPES[type];
  const rowBytes = ggmlRowBytes(type, cols);
  if (cols % t.blockSize !== 0 || data.byteLength < (row + 1) * rowBytes)
    throw new RangeError(`dequantizeGgmlRow: ${type} row ${row} of ${cols} columns is not inside the data`);
  const codes = new Uint8Array(t.blockSize);
  const s = new Float64Array(16);
  const o = new Float64Array(16);
  for (let b = 0; b < cols / t.blockSize; b++) {
    const sub = ggmlBlockAffine(type, data, row * rowBytes + b * t.blockBytes, codes, s, o);
    for (let i = 0; i < t.blockSize; i++)
      out[outOffset + b * t.blockSize + i] = s[Math.floor(i / sub)]! * codes[i]! + o[Math.floor(i / sub)]!;
  }
}
