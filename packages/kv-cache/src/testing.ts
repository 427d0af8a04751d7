/** Test helpers (not exported from the package). */
import { type Backend, createBackend, type Tensor } from '@mnemo/tensor';
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
