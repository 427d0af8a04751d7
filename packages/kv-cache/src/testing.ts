/** Test helpers (not exported from the package). */
import {
  type Backend,
  createBackend,
  f16ToF32,
  f32ToF16,
  type KvRows,
  QuantizedTensor,
  quantize,
  type Tensor,
} from '@mnemo/tensor';
import { randomF32 } from '@mnemo/test-utils';
import type { LayerState, RowData } from './contract';

/** Names of the backends to run the tests on: `js` always, `wasm` when it can be created here. */
export async function testBackends(): Promise<string[]> {
  const names = ['js'];
  try {
    const b = await createBackend({ backend: 'wasm' });
    b.dispose();
    names.push('wasm');
  } catch {
    // wasm kernels not built in this checkout
  }
  return names;
}

export function makeBackend(name: string): Promise<Backend> {
  return createBackend({ backend: name });
}

/** `rows` random rows of `width` as a backend tensor, plus the host copy. */
export function randomRows(
  backend: Backend,
  rows: number,
  width: number,
  seed: number,
): { t: Tensor; host: Float32Array } {
  const host = randomF32(rows * width, seed);
  return { t: backend.upload('f32', [rows, width], host), host };
}

/** Rows `[row, row + rows)` of a `[capacity, width]` tensor. */
export function readRows(backend: Backend, t: Tensor, row: number, rows: number): Float32Array {
  const width = t.shape[1]!;
  if (rows === 0) return new Float32Array(0);
  return backend.read(backend.view(t, [rows, width], row * width));
}

/** The f32 values attention reads from row `row` of KV storage (f16 exact; quantized `fl(fl(s·q) + b)`). */
export function storedRow(backend: Backend, t: KvRows, row: number): Float32Array {
  const width = t.shape[1]!;
  if (!(t instanceof QuantizedTensor)) {
    const bytes = backend.readBytes(backend.view(t, [1, width], row * width));
    if (t.dtype === 'f32') return new Float32Array(bytes.buffer, 0, width).slice();
    return f16ToF32(new Uint16Array(bytes.buffer, 0, width));
  }
  const { bits, groupSize } = t.spec;
  const words = (width * bits) / 32;
  const groups = width / groupSize;
  const packed = new Uint32Array(backend.readBytes(backend.view(t.packed, [1, words], row * words)).buffer);
  const scales = backend.read(backend.view(t.scales, [1, groups], row * groups));
  const biases = backend.read(backend.view(t.biases, [1, groups], row * groups));
  const out = new Float32Array(width);
  const f = Math.fround;
  for (let k = 0; k < width; k++) {
    const q = (packed[(bits * k) >>> 5]! >>> ((bits * k) & 31)) & ((1 << bits) - 1);
    const g = Math.floor(k / groupSize);
    out[k] = f(f(scales[g]! * q) + biases[g]!);
  }
  return out;
}

/** What a row of f32 values reads back as once stored as `storage` (the documented conversions, in TypeScript). */
export function asStored(storage: string, x: Float32Array): Float32Array {
  if (storage === 'f32') return x.slice();
  if (storage === 'f16') return f16ToF32(f32ToF16(x));
  const bits = storage[1] === '4' ? 4 : 8;
  const groupSize = storage.endsWith('32') ? 32 : 64;
  const q = quantize({ bits, groupSize, scaleDtype: 'f32' }, 1, x.length, x);
  const out = new Float32Array(x.length);
  const f = Math.fround;
  const s = q.scales as Float32Array;
  const b = q.biases as Float32Array;
  for (let k = 0; k < x.length; k++) {
    const code = (q.packed[(bits * k) >>> 5]! >>> ((bits * k) & 31)) & ((1 << bits) - 1);
    const g = Math.floor(k / groupSize);
    out[k] = f(f(s[g]! * code) + b[g]!);
  }
  return out;
}

/** Byte-level equality of two float arrays (distinguishes -0/+0 and NaN payloads). */
export function bitsEqual(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

function rowsEqual(a: RowData, b: RowData): boolean {
  if (a.format !== b.format || a.rows !== b.rows) return false;
  if (a.format === 'f32' && b.format === 'f32') return bitsEqual(a.data, b.data);
  if (a.format === 'f16' && b.format === 'f16')
    return a.data.length === b.data.length && a.data.every((x, i) => x === b.data[i]);
  if (a.format === 'quantized' && b.format === 'quantized')
    return (
      a.bits === b.bits &&
      a.groupSize === b.groupSize &&
      bitsEqual(
        new Float32Array(a.packed.buffer, a.packed.byteOffset, a.packed.length),
        new Float32Array(b.packed.buffer, b.packed.byteOffset, b.packed.length),
      ) &&
      bitsEqual(a.scales, b.scales) &&
      bitsEqual(a.biases, b.biases)
    );
  return false;
}

/** Bitwise equality of two exported states (metadata and rows). */
export function statesEqual(a: LayerState, b: LayerState): boolean {
  const { keys: ak, values: av, ...am } = a;
  const { keys: bk, values: bv, ...bm } = b;
  return JSON.stringify(am) === JSON.stringify(bm) && rowsEqual(ak, bk) && rowsEqual(av, bv);
}
