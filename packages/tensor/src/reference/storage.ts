import { bf16BitsToNumber, f16BitsToNumber } from '../convert';
import type { DType } from '../dtype';
import { dequantizeGgmlRow, GgmlTensor } from '../ggml';
import type { StorageBase } from '../owner';
import { quantAt, scaleAt } from '../quant';
import { QuantizedTensor, type Tensor, type Weight } from '../tensor';

/** Storage of the reference backend: one ArrayBuffer per allocation, with a typed view per element type. */
export interface RefStorage extends StorageBase {
  readonly buffer: ArrayBuffer;
  readonly u8: Uint8Array;
  readonly u16: Uint16Array;
  readonly u32: Uint32Array;
  readonly i32: Int32Array;
  readonly f32: Float32Array;
}

export function newStorage(dtype: DType, byteLength: number): RefStorage {
  const buffer = new ArrayBuffer(byteLength);
  return {
    dtype,
    byteLength,
    freed: false,
    buffer,
    u8: new Uint8Array(buffer),
    u16: new Uint16Array(buffer, 0, byteLength >>> 1),
    u32: new Uint32Array(buffer, 0, byteLength >>> 2),
    i32: new Int32Array(buffer, 0, byteLength >>> 2),
    f32: new Float32Array(buffer, 0, byteLength >>> 2),
  };
}

function store(t: Tensor): RefStorage {
  return t.storage as RefStorage;
}

/** The f32 view of `t`'s storage; element i of `t` is at `t.offset + i`. */
export function f32Of(t: Tensor): Float32Array {
  return store(t).f32;
}

/** Element `i` of a dense f32/f16/bf16 tensor as a number (exact). */
export function floatAt(t: Tensor, i: number): number {
  const s = store(t);
  const j = t.offset + i;
  if (t.dtype === 'f32') return s.f32[j]!;
  if (t.dtype === 'f16') return f16BitsToNumber(s.u16[j]!);
  if (t.dtype === 'bf16') return bf16BitsToNumber(s.u16[j]!);
  throw new TypeError(`reference: ${t} is not a float tensor`);
}

/** Row `row` of a weight `[rows, cols]` (dense, quantized or GGML) into `out` as float64, exactly. */
export function weightRow(w: Weight, row: number, out: Float64Array): void {
  const cols = w.shape[1]!;
  if (w instanceof GgmlTensor) {
    const bytes = store(w.blocks).u8.subarray(w.blocks.offset, w.blocks.offset + w.blocks.size);
    dequantizeGgmlRow(w.type, cols, bytes, row, out);
    return;
  }
  if (!(w instanceof QuantizedTensor)) {
    for (let k = 0; k < cols; k++) out[k] = floatAt(w, row * cols + k);
    return;
  }
  const { bits, groupSize, scaleDtype } = w.spec;
  const words = (cols * bits) / 32;
  const groups = cols / groupSize;
  const packed = store(w.packed).u32;
  const sStore = store(w.scales);
  const bStore = store(w.biases);
  const scales = scaleDtype === 'f32' ? sStore.f32 : sStore.u16;
  const biases = scaleDtype === 'f32' ? bStore.f32 : bStore.u16;
  const base = w.packed.offset + row * words;
  for (let k = 0; k < cols; k++) {
    const q = quantAt(packed, base, bits, k);
    const g = Math.floor(k / groupSize);
    const scale = scaleAt(scaleDtype, scales, w.scales.offset + row * groups + g);
    const bias = scaleAt(scaleDtype, biases, w.biases.offset + row * groups + g);
    out[k] = scale * q + bias;
  }
}

/**
 * A reader of KV storage rows (see `KvRows`): `read(row, col, n, out)` puts the f32 values of elements `col ..
 * col + n - 1` of row `row` into `out` — f32 as stored, f16 converted exactly, quantized `fl(fl(scale·q) + bias)`.
 */
export function kvReader(
  t: Tensor | QuantizedTensor,
  width: number,
): (row: number, col: number, n: number, out: Float64Array) => void {
  if (!(t instanceof QuantizedTensor)) {
    if (t.dtype === 'f32') {
      const a = f32Of(t);
      return (row, col, n, out) => {
        const base = t.offset + row * width + col;
        for (let i = 0; i < n; i++) out[i] = a[base + i]!;
      };
    }
    const u16 = store(t).u16;
    return (row, col, n, out) => {
      const base = t.offset + row * width + col;
      for (let i = 0; i < n; i++) out[i] = f16BitsToNumber(u16[base + i]!);
    };
  }
  const { bits, groupSize } = t.spec;
  const words = (width * bits) / 32;
  const groups = width / groupSize;
  const packed = store(t.packed).u32;
  const scales = f32Of(t.scales);
  const biases = f32Of(t.biases);
  const f = Math.fround;
  return (row, col, n, out) => {
    const base = t.packed.offset + row * words;
    for (let i = 0; i < n; i++) {
      const k = col + i;
      const g = row * groups + Math.floor(k / groupSize);
      const q = quantAt(packed, base, bits, k);
      out[i] = f(f(scales[t.scales.offset + g]! * q) + biases[t.biases.offset + g]!);
    }
  };
}
