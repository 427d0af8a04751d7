/**
 * The GGUF header parser: magic, version, metadata key/value pairs of every type, tensor infos, alignment. It works on
 * a prefix of the file (`bytes`) and the file's total size: every length, count and offset is checked against the
 * bytes that remain in the file before anything is allocated from it, so no value can make it allocate more than the
 * file holds. When the prefix is too short for what the file does hold, it throws {@link NeedMore} and the caller
 * reads a longer prefix and parses again.
 */
import { isUtf8 } from 'node:buffer';
import { GgufError } from './errors';
import { allocBytes } from './io';
import {
  GGUF_VALUE_MIN_BYTES,
  GGUF_VALUE_TYPE_NAMES,
  type GgufArray,
  type GgufArrayItems,
  type GgufValue,
  GgufValueType,
  ggmlType,
  isGgufValueType,
} from './types';

/** Bytes of `GGUF`, the version and the two counts. */
export const FIXED_HEADER_BYTES = 24;
/** `general.alignment` when the file does not set it. */
export const DEFAULT_ALIGNMENT = 32;
/** Most dimensions of a tensor (GGML_MAX_DIMS). */
export const MAX_DIMS = 4;
/** Deepest nesting of arrays in arrays accepted. */
export const MAX_ARRAY_DEPTH = 8;
/**
 * Most tensors, metadata entries, and arrays nested in arrays (all of them together) one file may hold: 65,536 each.
 * Published models have at most a few thousand tensors and a hundred entries, and llama.cpp writes no nested arrays.
 * Each of these becomes a JavaScript object of a few hundred bytes for a few dozen bytes of file, so without a cap a
 * crafted header of 87 MB made of millions of tiny ones would take 1–3 GB to parse; with it, parsing any header
 * costs at most about eight times its size plus some 200 MB (`TOO_LARGE` beyond).
 */
export const MAX_ENTRIES = 65_536;
/**
 * Most items of bool arrays, all of them together, one file may hold: 1,048,576 (llama.cpp stores at most one per
 * layer). Each becomes an 8-byte JavaScript value for one byte of file.
 */
export const MAX_BOOL_ITEMS = 1 << 20;

/** One tensor of a GGUF file. */
export interface GgufTensorInfo {
  readonly name: string;
  /** GGML type id (see `GGML_TYPES`). */
  readonly type: number;
  /** Its name: `F32`, `Q4_K`, ... */
  readonly typeName: string;
  /** Dimensions in GGML order: `dims[0]` (ne0) is the fastest-varying one, the row length of a matrix. */
  readonly dims: readonly number[];
  /** Dimensions in row-major order (`dims` reversed): a matrix is `[rows, cols]`. */
  readonly shape: readonly number[];
  readonly elements: number;
  /** Absolute offset of the tensor's first byte in the file. */
  readonly byteOffset: number;
  readonly byteLength: number;
}

export interface ParsedHeader {
  readonly version: number;
  readonly alignment: number;
  /** Metadata in file order. */
  readonly metadata: ReadonlyMap<string, GgufValue>;
  /** Tensors in file order. */
  readonly tensors: readonly GgufTensorInfo[];
  /** Absolute offset of the data section (the end of the tensor infos, padded to the alignment). */
  readonly dataOffset: number;
  /** Bytes of the header proper: magic, counts, metadata and tensor infos (without the padding after them). */
  readonly headerLength: number;
}

/** Internal: the prefix ends before `bytes` bytes that the file does have. */
export class NeedMore extends Error {
  constructor(readonly bytes: number) {
    super(`need ${bytes} bytes of the header`);
  }
}

const MAX = Number.MAX_SAFE_INTEGER;
const NOWHERE = {};
const MAX_TYPED_ARRAY_BYTES = 2 ** 31 - 1;

class Cursor {
  pos = 0;
  /** Arrays nested in arrays read so far (bounded by {@link MAX_ENTRIES}). */
  nestedArrays = 0;
  /** Items of bool arrays read so far (bounded by {@link MAX_BOOL_ITEMS}). */
  boolItems = 0;
  private readonly view: DataView;
  private readonly buf: Buffer;
  constructor(
    readonly bytes: Uint8Array,
    readonly fileSize: number,
    readonly file: string,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  /** Bytes left in the file from the cursor. */
  get left(): number {
    return this.fileSize - this.pos;
  }

  /** Makes sure `n` more bytes exist (else TRUNCATED) and are in the prefix (else NeedMore). */
  need(n: number, what: string, where: { key?: string; tensor?: string } = {}): void {
    if (n > this.left)
      throw new GgufError(
        'TRUNCATED',
        `the file ends ${this.left} bytes after offset ${this.pos}, inside ${what} (${n} bytes)`,
        { file: this.file, ...where },
      );
    if (this.pos + n > this.bytes.byteLength) throw new NeedMore(this.pos + n);
  }

  u8(): number {
    return this.view.getUint8(this.pos++);
  }
  u32(): number {
    const v = this.view.getUint32(this.pos, true);
    this.pos += 4;
    return v;
  }
  /** A u64 as a number; `TOO_LARGE` beyond 2^53 − 1. */
  u64(what: string, where: { key?: string; tensor?: string } = {}): number {
    const lo = this.view.getUint32(this.pos, true);
    const hi = this.view.getUint32(this.pos + 4, true);
    this.pos += 8;
    if (hi > 0x1fffff)
      throw new GgufError(
        'TOO_LARGE',
        `${what} ${(BigInt(hi) << 32n) | BigInt(lo)} is larger than 2^53 − 1`,
        {
          file: this.file,
          ...where,
        },
      );
    return hi * 2 ** 32 + lo;
  }

  scalar(type: GgufValueType): GgufValue {
    const v = this.view;
    const p = this.pos;
    switch (type) {
      case GgufValueType.UINT8:
        this.pos += 1;
        return { type, value: v.getUint8(p) };
      case GgufValueType.INT8:
        this.pos += 1;
        return { type, value: v.getInt8(p) };
      case GgufValueType.UINT16:
        this.pos += 2;
        return { type, value: v.getUint16(p, true) };
      case GgufValueType.INT16:
        this.pos += 2;
        return { type, value: v.getInt16(p, true) };
      case GgufValueType.UINT32:
        this.pos += 4;
        return { type, value: v.getUint32(p, true) };
      case GgufValueType.INT32:
        this.pos += 4;
        return { type, value: v.getInt32(p, true) };
      case GgufValueType.FLOAT32:
        this.pos += 4;
        return { type, value: v.getFloat32(p, true) };
      case GgufValueType.FLOAT64:
        this.pos += 8;
        return { type, value: v.getFloat64(p, true) };
      case GgufValueType.UINT64:
        this.pos += 8;
        return { type, value: v.getBigUint64(p, true) };
      case GgufValueType.INT64:
        this.pos += 8;
        return { type, value: v.getBigInt64(p, true) };
      case GgufValueType.BOOL:
        this.pos += 1;
        return { type, value: v.getUint8(p) !== 0 };
      default:
        throw new Error(`scalar: ${type} is not a scalar type`);
    }
  }

  /** A GGUF string: u64 length, then that many bytes of UTF-8. `what` names it in errors. */
  string(what: string | (() => string), where: { key?: string; tensor?: string } = NOWHERE): string {
    const name = () => (typeof what === 'string' ? what : what());
    if (this.pos + 8 > this.bytes.byteLength) this.need(8, `the length of ${name()}`, where);
    const n = this.u64Fast();
    if (n < 0)
      throw new GgufError('TOO_LARGE', `the length of ${name()} is larger than 2^53 − 1`, {
        file: this.file,
        ...where,
      });
    if (this.pos + n > this.bytes.byteLength) this.need(n, name(), where);
    const start = this.pos;
    this.pos += n;
    const s = decodeUtf8(this.buf, start, n);
    if (s === null)
      throw new GgufError('BAD_STRING', `${name()} is not valid UTF-8`, { file: this.file, ...where });
    return s;
  }

  /** A u64 as a number, or -1 beyond 2^53 − 1 (no allocation on the fast path). */
  private u64Fast(): number {
    const lo = this.view.getUint32(this.pos, true);
    const hi = this.view.getUint32(this.pos + 4, true);
    this.pos += 8;
    return hi > 0x1fffff ? -1 : hi * 2 ** 32 + lo;
  }
}

/** UTF-8 → string: Node's native decoder after a validity check (much faster than TextDecoder on short strings). */
function decodeUtf8(buf: Buffer, start: number, n: number): string | null {
  const end = start + n;
  for (let i = start; i < end; i++) {
    if (buf[i]! >= 0x80) return isUtf8(buf.subarray(start, end)) ? buf.toString('utf8', start, end) : null;
  }
  return buf.toString('latin1', start, end);
}

const TYPED: Partial<
  Record<GgufValueType, { bytes: number; make: (b: ArrayBuffer, n: number) => GgufArrayItems }>
> = {
  [GgufValueType.UINT8]: { bytes: 1, make: (b, n) => new Uint8Array(b, 0, n) },
  [GgufValueType.INT8]: { bytes: 1, make: (b, n) => new Int8Array(b, 0, n) },
  [GgufValueType.UINT16]: { bytes: 2, make: (b, n) => new Uint16Array(b, 0, n) },
  [GgufValueType.INT16]: { bytes: 2, make: (b, n) => new Int16Array(b, 0, n) },
  [GgufValueType.UINT32]: { bytes: 4, make: (b, n) => new Uint32Array(b, 0, n) },
  [GgufValueType.INT32]: { bytes: 4, make: (b, n) => new Int32Array(b, 0, n) },
  [GgufValueType.FLOAT32]: { bytes: 4, make: (b, n) => new Float32Array(b, 0, n) },
  [GgufValueType.FLOAT64]: { bytes: 8, make: (b, n) => new Float64Array(b, 0, n) },
  [GgufValueType.UINT64]: { bytes: 8, make: (b, n) => new BigUint64Array(b, 0, n) },
  [GgufValueType.INT64]: { bytes: 8, make: (b, n) => new BigInt64Array(b, 0, n) },
};

function readArray(c: Cursor, key: string, depth: number): GgufArray {
  const where = { key };
  if (depth > MAX_ARRAY_DEPTH)
    throw new GgufError('TOO_DEEP', `arrays are nested more than ${MAX_ARRAY_DEPTH} deep`, {
      file: c.file,
      key,
    });
  c.need(12, 'an array header', where);
  const itemType = c.u32();
  if (!isGgufValueType(itemType))
    throw new GgufError('BAD_VALUE', `unknown array item type ${itemType}`, { file: c.file, key });
  const count = c.u64('the array length', where);
  const min = GGUF_VALUE_MIN_BYTES[itemType];
  // Every item takes at least `min` bytes of the file: a count the file cannot hold is refused before any allocation.
  if (count > Math.floor(c.left / min))
    throw new GgufError(
      'TRUNCATED',
      `an array of ${count} ${GGUF_VALUE_TYPE_NAMES[itemType]} values needs at least ${count * min} bytes, the file has ${c.left} left`,
      { file: c.file, key },
    );
  const typed = TYPED[itemType];
  if (typed) {
    const n = count * typed.bytes;
    if (n > MAX_TYPED_ARRAY_BYTES)
      throw new GgufError('TOO_LARGE', `an array of ${n} bytes is larger than one typed array can be`, {
        file: c.file,
        key,
      });
    c.need(n, 'the array items', where);
    const copy = allocBytes(n, c.file); // a copy: typed views need an aligned buffer of their own
    copy.set(c.bytes.subarray(c.pos, c.pos + n));
    c.pos += n;
    return { itemType, items: typed.make(copy.buffer as ArrayBuffer, count) };
  }
  if (itemType === GgufValueType.BOOL) {
    if (count > MAX_BOOL_ITEMS - c.boolItems)
      throw new GgufError(
        'TOO_LARGE',
        `more than ${MAX_BOOL_ITEMS} items in bool arrays (this one holds ${count})`,
        { file: c.file, key },
      );
    c.boolItems += count;
    c.need(count, 'the array items', where);
    const items: boolean[] = new Array<boolean>(count);
    for (let i = 0; i < count; i++) items[i] = c.bytes[c.pos + i] !== 0;
    c.pos += count;
    return { itemType, items };
  }
  if (itemType === GgufValueType.STRING) {
    const items: string[] = [];
    for (let i = 0; i < count; i++) items.push(c.string(() => `string ${i} of the array`, where));
    return { itemType, items };
  }
  if (count > MAX_ENTRIES - c.nestedArrays)
    throw new GgufError(
      'TOO_LARGE',
      `more than ${MAX_ENTRIES} arrays nested in arrays (this one holds ${count})`,
      { file: c.file, key },
    );
  c.nestedArrays += count;
  const items: GgufArray[] = [];
  for (let i = 0; i < count; i++) items.push(readArray(c, key, depth + 1));
  return { itemType, items };
}

function readValue(c: Cursor, type: GgufValueType, key: string): GgufValue {
  if (type === GgufValueType.STRING) return { type, value: c.string('the value', { key }) };
  if (type === GgufValueType.ARRAY) return { type, value: readArray(c, key, 1) };
  c.need(GGUF_VALUE_MIN_BYTES[type], 'the value', { key });
  return c.scalar(type);
}

function alignUp(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}

/**
 * Parses the header of a GGUF file from `bytes`, its first `bytes.byteLength` bytes, knowing the file has `fileSize`
 * bytes in all. Throws a GgufError naming `file` (and the key or tensor) for any violation, or {@link NeedMore} when
 * `bytes` is shorter than the header.
 */
export function parseHeader(bytes: Uint8Array, fileSize: number, file: string): ParsedHeader {
  const c = new Cursor(bytes, fileSize, file);
  c.need(4, 'the magic');
  if (!(bytes[0] === 0x47 && bytes[1] === 0x47 && bytes[2] === 0x55 && bytes[3] === 0x46)) {
    const seen = Array.from(bytes.subarray(0, 4), (b) =>
      b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : '.',
    ).join('');
    throw new GgufError('BAD_MAGIC', `not a GGUF file: it starts with "${seen}", not "GGUF"`, { file });
  }
  c.pos = 4;
  c.need(4, 'the version');
  const version = c.u32();
  if (version !== 2 && version !== 3) {
    const swapped =
      ((version & 0xff) << 24) |
      (((version >>> 8) & 0xff) << 16) |
      (((version >>> 16) & 0xff) << 8) |
      (version >>> 24);
    const detail =
      swapped === 2 || swapped === 3
        ? `a big-endian GGUF file (version ${swapped}); only little-endian files are supported`
        : version === 1
          ? 'GGUF version 1 is not supported (versions 2 and 3 are; convert the file again with a current llama.cpp)'
          : `unknown GGUF version ${version} (versions 2 and 3 are supported)`;
    throw new GgufError('BAD_VERSION', detail, { file });
  }
  c.need(16, 'the tensor and metadata counts');
  const tensorCount = c.u64('the tensor count');
  const kvCount = c.u64('the metadata count');
  // A key/value pair takes at least 13 bytes (empty key, type, 1-byte value); a tensor info at least 24.
  if (kvCount > Math.floor(c.left / 13))
    throw new GgufError(
      'TRUNCATED',
      `the header announces ${kvCount} metadata entries, more than the ${c.left} bytes left can hold`,
      { file },
    );
  if (kvCount > MAX_ENTRIES)
    throw new GgufError('TOO_LARGE', `${kvCount} metadata entries (at most ${MAX_ENTRIES} are accepted)`, {
      file,
    });

  const metadata = new Map<string, GgufValue>();
  for (let i = 0; i < kvCount; i++) {
    const key = c.string(`the name of metadata entry ${i}`);
    if (metadata.has(key)) throw new GgufError('DUPLICATE', 'the key occurs twice', { file, key });
    c.need(4, 'the value type', { key });
    const type = c.u32();
    if (!isGgufValueType(type)) throw new GgufError('BAD_VALUE', `unknown value type ${type}`, { file, key });
    metadata.set(key, readValue(c, type, key));
  }

  let alignment = DEFAULT_ALIGNMENT;
  const a = metadata.get('general.alignment');
  if (a !== undefined) {
    if (a.type !== GgufValueType.UINT32)
      throw new GgufError('BAD_ALIGNMENT', `must be a uint32, got a ${GGUF_VALUE_TYPE_NAMES[a.type]}`, {
        file,
        key: 'general.alignment',
      });
    alignment = a.value;
    if (alignment === 0 || (alignment & (alignment - 1)) !== 0)
      throw new GgufError('BAD_ALIGNMENT', `${alignment} is not a power of two`, {
        file,
        key: 'general.alignment',
      });
  }

  if (tensorCount > Math.floor(c.left / 24))
    throw new GgufError(
      'TRUNCATED',
      `the header announces ${tensorCount} tensors, more than the ${c.left} bytes left can hold`,
      { file },
    );
  if (tensorCount > MAX_ENTRIES)
    throw new GgufError('TOO_LARGE', `${tensorCount} tensors (at most ${MAX_ENTRIES} are accepted)`, {
      file,
    });
  const raw: { name: string; type: number; dims: number[]; offset: number }[] = [];
  const names = new Set<string>();
  for (let i = 0; i < tensorCount; i++) {
    const name = c.string(`the name of tensor ${i}`);
    const where = { tensor: name };
    if (names.has(name)) throw new GgufError('DUPLICATE', 'the tensor name occurs twice', { file, ...where });
    names.add(name);
    c.need(4, 'the dimension count', where);
    const nDims = c.u32();
    if (nDims > MAX_DIMS)
      throw new GgufError('BAD_TENSOR', `${nDims} dimensions (at most ${MAX_DIMS})`, { file, ...where });
    c.need(8 * nDims + 12, 'the dimensions, type and offset', where);
    const dims: number[] = [];
    for (let d = 0; d < nDims; d++) dims.push(c.u64(`dimension ${d}`, where));
    const type = c.u32();
    const offset = c.u64('the offset', where);
    raw.push({ name, type, dims, offset });
  }
  const headerLength = c.pos;
  const dataOffset = alignUp(headerLength, alignment);

  const tensors: GgufTensorInfo[] = [];
  for (const t of raw) {
    const where = { file, tensor: t.name };
    const info = ggmlType(t.type);
    if (!info) throw new GgufError('BAD_TENSOR', `unknown GGML type ${t.type}`, where);
    let elements = 1;
    for (const d of t.dims) {
      if (d !== 0 && elements > Math.floor(MAX / d))
        throw new GgufError(
          'TOO_LARGE',
          `dimensions [${t.dims.join(', ')}] hold more than 2^53 elements`,
          where,
        );
      elements *= d;
    }
    const rowLength = t.dims.length > 0 ? t.dims[0]! : 1;
    if (rowLength % info.blockSize !== 0)
      throw new GgufError(
        'BAD_TENSOR',
        `${info.name} rows are blocks of ${info.blockSize} elements, but dimension 0 is ${rowLength}`,
        where,
      );
    const blocks = elements / info.blockSize;
    if (blocks > Math.floor(MAX / info.typeSize))
      throw new GgufError('TOO_LARGE', `${blocks} blocks of ${info.typeSize} bytes exceed 2^53 bytes`, where);
    const byteLength = blocks * info.typeSize;
    if (t.offset % alignment !== 0)
      throw new GgufError(
        'BAD_ALIGNMENT',
        `offset ${t.offset} is not a multiple of the alignment ${alignment}`,
        where,
      );
    const byteOffset = dataOffset + t.offset;
    if (byteLength > 0 && (byteOffset > fileSize || byteLength > fileSize - byteOffset))
      throw new GgufError(
        'OUT_OF_BOUNDS',
        `data [${byteOffset}, ${byteOffset + byteLength}) ends past the end of the file (${fileSize} bytes)`,
        where,
      );
    tensors.push(
      Object.freeze({
        name: t.name,
        type: t.type,
        typeName: info.name,
        dims: Object.freeze([...t.dims]),
        shape: Object.freeze([...t.dims].reverse()),
        elements,
        byteOffset,
        byteLength,
      }),
    );
  }
  const sorted = tensors.filter((t) => t.byteLength > 0).sort((x, y) => x.byteOffset - y.byteOffset);
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1]!;
    const t = sorted[i]!;
    if (t.byteOffset < prev.byteOffset + prev.byteLength)
      throw new GgufError(
        'OVERLAP',
        `data [${t.byteOffset}, ${t.byteOffset + t.byteLength}) overlaps tensor ${JSON.stringify(prev.name)} [${prev.byteOffset}, ${prev.byteOffset + prev.byteLength})`,
        { file, tensor: t.name },
      );
  }
  return { version, alignment, metadata, tensors, dataOffset, headerLength };
}
