/**
 * How each cache kind owns its serialization, in the style of mlx-lm's `cache.py` (`state`, `meta_state`,
 * `from_state`): a {@link CacheCodec} turns an exported {@link LayerState} into tensors plus a meta-state (a small JSON
 * object of the kind's parameters), and back. The prompt-cache file keeps only the container, fingerprints, token ids,
 * numerics and checksums; what a layer's tensors are and mean is the codec's business.
 */
import type { Backend } from '@mnemo/tensor';
import type { CacheShape, KVCache, LayerState, RowData } from './contract';
import { CacheStateError } from './state-check';
import { isKvStorage, type KvStorage, quantOf } from './storage';

/** A JSON scalar of a meta-state. */
export type MetaValue = string | number | boolean;
/** A kind's parameters, as written in the file: a flat JSON object. */
export type MetaState = Readonly<Record<string, MetaValue>>;

/** safetensors dtypes a state's tensors use. */
export type StateDType = 'F32' | 'F16' | 'U32';

/** What a layer's tensor must be: its name relative to the layer (`keys`, `values.packed`, ...), dtype and shape. */
export interface TensorSpec {
  readonly name: string;
  readonly dtype: StateDType;
  readonly shape: readonly number[];
}

/** A tensor of a state, with its data (little-endian elements of `dtype`). */
export interface StateTensor extends TensorSpec {
  readonly data: Float32Array | Uint16Array | Uint32Array;
}

/** A layer whose meta-state was read and checked: the tensors it implies, and how to build its state from them. */
export interface ParsedLayer<S extends LayerState = LayerState> {
  /** Rows each of its tensors holds (the first dimension). */
  readonly rows: number;
  readonly tensors: readonly TensorSpec[];
  /** The state from the tensors' bytes, by name (each already checked against `tensors`). */
  state(data: ReadonlyMap<string, Uint8Array>): S;
}

export interface CacheCodec<S extends LayerState = LayerState> {
  readonly kind: S['kind'];
  /** The kind's parameters (mlx-lm's `meta_state`): what rebuilding needs besides shape, offset and tensors. */
  metaState(state: S): MetaState;
  /** The state's tensors (mlx-lm's `state`), in file order, named relative to the layer. */
  state(state: S): StateTensor[];
  /**
   * Checks a meta-state read from a file (untrusted JSON) for a layer of `shape` holding `offset` tokens and says which
   * tensors the layer has. Throws a {@link CacheStateError} naming what is wrong (an `UnsupportedCacheError` for a
   * parameter this version cannot hold).
   */
  parse(meta: unknown, shape: CacheShape, offset: number): ParsedLayer<S>;
  /** Rebuilds a cache from a state without replaying tokens (mlx-lm's `from_state`). */
  fromState(backend: Backend, state: S): KVCache;
}

/** A parameter a file asks for that this version cannot hold (a kind, bits, group size, storage). */
export class UnsupportedCacheError extends CacheStateError {}

// ---- helpers shared by the codecs -----------------------------------------------------------------------------

export function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

export function isCount(x: unknown, min = 0): x is number {
  return typeof x === 'number' && Number.isSafeInteger(x) && x >= min;
}

/** The storage format of row data. */
export function storageOfRows(d: RowData): KvStorage {
  if (d.format === 'quantized') return `q${d.bits}g${d.groupSize}` as KvStorage;
  return d.format;
}

/** Tensors of one side (`keys` or `values`) of a state. */
export function rowTensors(side: 'keys' | 'values', d: RowData, shape: CacheShape): StateTensor[] {
  const { nKvHeads, headDim } = shape;
  if (d.format === 'f32')
    return [{ name: side, dtype: 'F32', shape: [d.rows, nKvHeads, headDim], data: d.data }];
  if (d.format === 'f16')
    return [{ name: side, dtype: 'F16', shape: [d.rows, nKvHeads, headDim], data: d.data }];
  const width = nKvHeads * headDim;
  const groups = width / d.groupSize;
  return [
    { name: `${side}.packed`, dtype: 'U32', shape: [d.rows, (width * d.bits) / 32], data: d.packed },
    { name: `${side}.scales`, dtype: 'F32', shape: [d.rows, groups], data: d.scales },
    { name: `${side}.biases`, dtype: 'F32', shape: [d.rows, groups], data: d.biases },
  ];
}

/** What the tensors of one side stored in `storage` with `rows` rows must be. */
export function rowSpecs(
  side: 'keys' | 'values',
  storage: KvStorage,
  rows: number,
  shape: CacheShape,
): TensorSpec[] {
  const { nKvHeads, headDim } = shape;
  const q = quantOf(storage);
  if (q === null)
    return [{ name: side, dtype: storage === 'f32' ? 'F32' : 'F16', shape: [rows, nKvHeads, headDim] }];
  const width = nKvHeads * headDim;
  const groups = width / q.groupSize;
  return [
    { name: `${side}.packed`, dtype: 'U32', shape: [rows, (width * q.bits) / 32] },
    { name: `${side}.scales`, dtype: 'F32', shape: [rows, groups] },
    { name: `${side}.biases`, dtype: 'F32', shape: [rows, groups] },
  ];
}

/** Row data of one side from its tensors' bytes (checked against {@link rowSpecs}). */
export function rowData(
  side: 'keys' | 'values',
  storage: KvStorage,
  rows: number,
  data: ReadonlyMap<string, Uint8Array>,
): RowData {
  const bytes = (name: string) => {
    const b = data.get(name);
    if (b === undefined) throw new CacheStateError(`tensor '${name}' is missing`);
    // a copy when unaligned: typed arrays need their element alignment
    return b.byteOffset % 4 === 0 ? b : b.slice();
  };
  const q = quantOf(storage);
  if (q === null) {
    const b = bytes(side);
    if (storage === 'f32')
      return { format: 'f32', rows, data: new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4) };
    return { format: 'f16', rows, data: new Uint16Array(b.buffer, b.byteOffset, b.byteLength / 2) };
  }
  const p = bytes(`${side}.packed`);
  const s = bytes(`${side}.scales`);
  const b = bytes(`${side}.biases`);
  return {
    format: 'quantized',
    rows,
    bits: q.bits,
    groupSize: q.groupSize,
    packed: new Uint32Array(p.buffer, p.byteOffset, p.byteLength / 4),
    scales: new Float32Array(s.buffer, s.byteOffset, s.byteLength / 4),
    biases: new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4),
  };
}

/** A storage parameter of a meta-state, checked (unsupported → {@link UnsupportedCacheError}). */
export function parseStorage(kind: string, v: unknown, allowed: (s: KvStorage) => boolean): KvStorage {
  if (!isKvStorage(v) || !allowed(v))
    throw new UnsupportedCacheError(`${kind} cache: storage ${JSON.stringify(v)} is not supported`);
  return v;
}

/** Throws unless `meta` is an object holding exactly `keys`. */
export function checkMetaKeys(kind: string, meta: unknown, keys: readonly string[]): Record<string, unknown> {
  if (!isObject(meta)) throw new CacheStateError(`${kind} cache: meta-state is not an object`);
  for (const k of Object.keys(meta))
    if (!keys.includes(k)) throw new CacheStateError(`${kind} cache: unknown meta-state entry '${k}'`);
  for (const k of keys)
    if (!(k in meta)) throw new CacheStateError(`${kind} cache: meta-state entry '${k}' is missing`);
  return meta;
}
