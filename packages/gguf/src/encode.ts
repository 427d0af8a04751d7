/**
 * A small GGUF writer (v3, little-endian) for tests and tools: metadata of every value type and tensors given as raw
 * bytes in their GGML type. It writes what it is given; callers that want a hostile file can pass inconsistent parts.
 */
import { GGUF_VALUE_MIN_BYTES, type GgufArray, type GgufValue, GgufValueType, ggmlType } from './types';

export interface EncodeTensor {
  readonly name: string;
  /** GGML type id. */
  readonly type: number;
  /** GGML order: `dims[0]` is the row length. */
  readonly dims: readonly number[];
  readonly data: Uint8Array;
}

export interface EncodeOptions {
  /** Default 32; also written as `general.alignment` when not 32 and the metadata does not set it. */
  readonly alignment?: number;
  /** Default 3. */
  readonly version?: number;
}

const enc = new TextEncoder();

/** Helpers making typed metadata values. */
export const GgufValues = {
  u8: (value: number): GgufValue => ({ type: GgufValueType.UINT8, value }),
  i8: (value: number): GgufValue => ({ type: GgufValueType.INT8, value }),
  u16: (value: number): GgufValue => ({ type: GgufValueType.UINT16, value }),
  i16: (value: number): GgufValue => ({ type: GgufValueType.INT16, value }),
  u32: (value: number): GgufValue => ({ type: GgufValueType.UINT32, value }),
  i32: (value: number): GgufValue => ({ type: GgufValueType.INT32, value }),
  f32: (value: number): GgufValue => ({ type: GgufValueType.FLOAT32, value }),
  f64: (value: number): GgufValue => ({ type: GgufValueType.FLOAT64, value }),
  u64: (value: bigint | number): GgufValue => ({ type: GgufValueType.UINT64, value: BigInt(value) }),
  i64: (value: bigint | number): GgufValue => ({ type: GgufValueType.INT64, value: BigInt(value) }),
  bool: (value: boolean): GgufValue => ({ type: GgufValueType.BOOL, value }),
  string: (value: string): GgufValue => ({ type: GgufValueType.STRING, value }),
  strings: (items: readonly string[]): GgufValue => ({
    type: GgufValueType.ARRAY,
    value: { itemType: GgufValueType.STRING, items: [...items] },
  }),
  f32s: (items: ArrayLike<number>): GgufValue => ({
    type: GgufValueType.ARRAY,
    value: { itemType: GgufValueType.FLOAT32, items: Float32Array.from(items) },
  }),
  i32s: (items: ArrayLike<number>): GgufValue => ({
    type: GgufValueType.ARRAY,
    value: { itemType: GgufValueType.INT32, items: Int32Array.from(items) },
  }),
  array: (value: GgufArray): GgufValue => ({ type: GgufValueType.ARRAY, value }),
};

class Out {
  private chunks: Uint8Array[] = [];
  length = 0;
  bytes(b: Uint8Array): void {
    this.chunks.push(b);
    this.length += b.byteLength;
  }
  num(size: number, write: (v: DataView) => void): void {
    const b = new Uint8Array(size);
    write(new DataView(b.buffer));
    this.bytes(b);
  }
  u32(v: number): void {
    this.num(4, (d) => d.setUint32(0, v >>> 0, true));
  }
  u64(v: number | bigint): void {
    this.num(8, (d) => d.setBigUint64(0, BigInt(v), true));
  }
  string(s: string): void {
    const b = enc.encode(s);
    this.u64(b.byteLength);
    this.bytes(b);
  }
  pad(to: number): void {
    const n = (to - (this.length % to)) % to;
    if (n > 0) this.bytes(new Uint8Array(n));
  }
  concat(): Uint8Array {
    const out = new Uint8Array(this.length);
    let o = 0;
    for (const c of this.chunks) {
      out.set(c, o);
      o += c.byteLength;
    }
    return out;
  }
}

function scalar(o: Out, type: GgufValueType, v: number | bigint | boolean | string): void {
  switch (type) {
    case GgufValueType.UINT8:
      o.num(1, (d) => d.setUint8(0, v as number));
      return;
    case GgufValueType.INT8:
      o.num(1, (d) => d.setInt8(0, v as number));
      return;
    case GgufValueType.UINT16:
      o.num(2, (d) => d.setUint16(0, v as number, true));
      return;
    case GgufValueType.INT16:
      o.num(2, (d) => d.setInt16(0, v as number, true));
      return;
    case GgufValueType.UINT32:
      o.num(4, (d) => d.setUint32(0, v as number, true));
      return;
    case GgufValueType.INT32:
      o.num(4, (d) => d.setInt32(0, v as number, true));
      return;
    case GgufValueType.FLOAT32:
      o.num(4, (d) => d.setFloat32(0, v as number, true));
      return;
    case GgufValueType.FLOAT64:
      o.num(8, (d) => d.setFloat64(0, v as number, true));
      return;
    case GgufValueType.UINT64:
      o.num(8, (d) => d.setBigUint64(0, BigInt(v as bigint), true));
      return;
    case GgufValueType.INT64:
      o.num(8, (d) => d.setBigInt64(0, BigInt(v as bigint), true));
      return;
    case GgufValueType.BOOL:
      o.num(1, (d) => d.setUint8(0, v ? 1 : 0));
      return;
    case GgufValueType.STRING:
      o.string(v as string);
      return;
    default:
      throw new TypeError(`encodeGguf: ${type} is not a scalar type`);
  }
}

function array(o: Out, a: GgufArray): void {
  o.u32(a.itemType);
  o.u64(a.items.length);
  if (ArrayBuffer.isView(a.items)) {
    const view = a.items as ArrayBufferView;
    if (view.byteLength === a.items.length * GGUF_VALUE_MIN_BYTES[a.itemType]) {
      o.bytes(new Uint8Array(view.buffer, view.byteOffset, view.byteLength).slice());
      return;
    }
  }
  const items = a.items as ArrayLike<unknown>;
  for (let i = 0; i < items.length; i++) {
    if (a.itemType === GgufValueType.ARRAY) array(o, items[i] as GgufArray);
    else scalar(o, a.itemType, items[i] as number);
  }
}

function value(o: Out, v: GgufValue): void {
  o.u32(v.type);
  if (v.type === GgufValueType.ARRAY) array(o, v.value);
  else scalar(o, v.type, v.value);
}

/** Row-major byte length of a tensor of GGML type `type` with GGML `dims` (throws for an unknown type). */
export function ggmlByteLength(type: number, dims: readonly number[]): number {
  const info = ggmlType(type);
  if (!info) throw new RangeError(`unknown GGML type ${type}`);
  const n = dims.reduce((a, b) => a * b, 1);
  return (n / info.blockSize) * info.typeSize;
}

/**
 * Encodes a GGUF file: header, metadata (in the given order), tensor infos, then each tensor's bytes at the next
 * multiple of the alignment.
 */
export function encodeGguf(
  metadata: Iterable<readonly [string, GgufValue]>,
  tensors: readonly EncodeTensor[],
  opts: EncodeOptions = {},
): Uint8Array {
  const alignment = opts.alignment ?? 32;
  const entries = [...metadata];
  if (alignment !== 32 && !entries.some(([k]) => k === 'general.alignment'))
    entries.push(['general.alignment', GgufValues.u32(alignment)]);
  const o = new Out();
  o.bytes(enc.encode('GGUF'));
  o.u32(opts.version ?? 3);
  o.u64(tensors.length);
  o.u64(entries.length);
  for (const [k, v] of entries) {
    o.string(k);
    value(o, v);
  }
  let offset = 0;
  const offsets: number[] = [];
  for (const t of tensors) {
    offsets.push(offset);
    offset += Math.ceil(t.data.byteLength / alignment) * alignment;
  }
  tensors.forEach((t, i) => {
    o.string(t.name);
    o.u32(t.dims.length);
    for (const d of t.dims) o.u64(d);
    o.u32(t.type);
    o.u64(offsets[i]!);
  });
  o.pad(alignment);
  for (const t of tensors) {
    o.bytes(t.data);
    o.pad(alignment);
  }
  return o.concat();
}
