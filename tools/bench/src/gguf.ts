/**
 * A small GGUF v3 writer (header, metadata, tensor infos, 32-byte aligned data) that streams tensor data to disk in
 * file order, and a reader of the header for tests. Layout (all little-endian): magic `GGUF`, version u32, tensor
 * count u64, metadata count u64, metadata (key string, type u32, value), tensor infos (name, n_dims u32, dims u64
 * innermost first, type u32, offset u64 from the start of the data), padding to the alignment, data.
 */
import { closeSync, openSync, readSync, writeSync } from 'node:fs';
import { type GgmlType, ggmlBytes } from './quant';

export const GGUF_ALIGNMENT = 32;

/** GGUF metadata value types. */
export const GGUF_VALUE = {
  UINT8: 0,
  INT8: 1,
  UINT16: 2,
  INT16: 3,
  UINT32: 4,
  INT32: 5,
  FLOAT32: 6,
  BOOL: 7,
  STRING: 8,
  ARRAY: 9,
  UINT64: 10,
  INT64: 11,
  FLOAT64: 12,
} as const;

export type GgufValue =
  | { readonly type: 'u32'; readonly value: number }
  | { readonly type: 'i32'; readonly value: number }
  | { readonly type: 'f32'; readonly value: number }
  | { readonly type: 'bool'; readonly value: boolean }
  | { readonly type: 'string'; readonly value: string }
  | { readonly type: 'string[]'; readonly value: readonly string[] }
  | { readonly type: 'f32[]'; readonly value: ArrayLike<number> }
  | { readonly type: 'i32[]'; readonly value: ArrayLike<number> };

export interface GgufTensorInfo {
  readonly name: string;
  /** Row-major shape, outermost first (`[rows, cols]`); written innermost first as GGUF wants. */
  readonly shape: readonly number[];
  readonly type: GgmlType;
}

/** Growing byte buffer for the header. */
class Bytes {
  private buf = Buffer.alloc(1 << 16);
  length = 0;
  private ensure(n: number) {
    if (this.length + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.length + n) size *= 2;
    const next = Buffer.alloc(size);
    this.buf.copy(next, 0, 0, this.length);
    this.buf = next;
  }
  u32(v: number) {
    this.ensure(4);
    this.buf.writeUInt32LE(v, this.length);
    this.length += 4;
  }
  i32(v: number) {
    this.ensure(4);
    this.buf.writeInt32LE(v, this.length);
    this.length += 4;
  }
  u64(v: number) {
    this.ensure(8);
    this.buf.writeBigUInt64LE(BigInt(v), this.length);
    this.length += 8;
  }
  f32(v: number) {
    this.ensure(4);
    this.buf.writeFloatLE(v, this.length);
    this.length += 4;
  }
  u8(v: number) {
    this.ensure(1);
    this.buf[this.length++] = v;
  }
  str(s: string) {
    const b = Buffer.from(s, 'utf8');
    this.u64(b.length);
    this.ensure(b.length);
    b.copy(this.buf, this.length);
    this.length += b.length;
  }
  pad(align: number) {
    while (this.length % align !== 0) this.u8(0);
  }
  bytes(): Buffer {
    return this.buf.subarray(0, this.length);
  }
}

function writeValue(b: Bytes, v: GgufValue): void {
  switch (v.type) {
    case 'u32':
      b.u32(GGUF_VALUE.UINT32);
      b.u32(v.value);
      return;
    case 'i32':
      b.u32(GGUF_VALUE.INT32);
      b.i32(v.value);
      return;
    case 'f32':
      b.u32(GGUF_VALUE.FLOAT32);
      b.f32(v.value);
      return;
    case 'bool':
      b.u32(GGUF_VALUE.BOOL);
      b.u8(v.value ? 1 : 0);
      return;
    case 'string':
      b.u32(GGUF_VALUE.STRING);
      b.str(v.value);
      return;
    case 'string[]':
      b.u32(GGUF_VALUE.ARRAY);
      b.u32(GGUF_VALUE.STRING);
      b.u64(v.value.length);
      for (const s of v.value) b.str(s);
      return;
    case 'f32[]':
      b.u32(GGUF_VALUE.ARRAY);
      b.u32(GGUF_VALUE.FLOAT32);
      b.u64(v.value.length);
      for (let i = 0; i < v.value.length; i++) b.f32(v.value[i]!);
      return;
    case 'i32[]':
      b.u32(GGUF_VALUE.ARRAY);
      b.u32(GGUF_VALUE.INT32);
      b.u64(v.value.length);
      for (let i = 0; i < v.value.length; i++) b.i32(v.value[i]!);
      return;
  }
}

function tensorBytes(t: GgufTensorInfo): number {
  const cols = t.shape[t.shape.length - 1]!;
  const rows = t.shape.slice(0, -1).reduce((a, b) => a * b, 1);
  return ggmlBytes(t.type, rows, cols);
}

/**
 * Writes a GGUF file: the header at construction, then each tensor's bytes with {@link GgufWriter.write} in the order
 * of `tensors` (a tensor may be written in several pieces), then {@link GgufWriter.close}, which checks every tensor
 * was written in full.
 */
export class GgufWriter {
  private readonly fd: number;
  private readonly offsets: number[] = [];
  private readonly sizes: number[] = [];
  private readonly dataStart: number;
  private current = 0;
  private written = 0;
  private position: number;

  constructor(
    readonly path: string,
    metadata: ReadonlyArray<readonly [string, GgufValue]>,
    readonly tensors: readonly GgufTensorInfo[],
  ) {
    const b = new Bytes();
    b.u8(0x47);
    b.u8(0x47);
    b.u8(0x55);
    b.u8(0x46); // "GGUF"
    b.u32(3);
    b.u64(tensors.length);
    b.u64(metadata.length);
    for (const [key, value] of metadata) {
      b.str(key);
      writeValue(b, value);
    }
    let offset = 0;
    for (const t of tensors) {
      b.str(t.name);
      b.u32(t.shape.length);
      for (let i = t.shape.length - 1; i >= 0; i--) b.u64(t.shape[i]!);
      b.u32(t.type);
      b.u64(offset);
      const size = tensorBytes(t);
      this.offsets.push(offset);
      this.sizes.push(size);
      offset += Math.ceil(size / GGUF_ALIGNMENT) * GGUF_ALIGNMENT;
    }
    b.pad(GGUF_ALIGNMENT);
    this.dataStart = b.length;
    this.fd = openSync(path, 'w');
    writeAll(this.fd, b.bytes(), 0);
    this.position = this.dataStart;
  }

  /** Appends bytes of the current tensor (moving to the next one when it is complete). */
  write(bytes: Uint8Array): void {
    if (this.current >= this.tensors.length)
      throw new RangeError(`${this.path}: every tensor is already written`);
    const size = this.sizes[this.current]!;
    if (this.written + bytes.byteLength > size) {
      throw new RangeError(
        `${this.path}: tensor ${this.tensors[this.current]!.name} takes ${size} bytes, got ${this.written + bytes.byteLength}`,
      );
    }
    writeAll(this.fd, bytes, this.position);
    this.position += bytes.byteLength;
    this.written += bytes.byteLength;
    if (this.written === size) {
      this.current++;
      this.written = 0;
      if (this.current < this.tensors.length) this.position = this.dataStart + this.offsets[this.current]!;
    }
  }

  close(): void {
    const missing = this.current < this.tensors.length;
    if (!missing) {
      // Pad the file to the end of the last tensor's aligned slot.
      const end =
        this.dataStart + this.offsets[this.offsets.length - 1]! + this.sizes[this.sizes.length - 1]!;
      const padded = Math.ceil(end / GGUF_ALIGNMENT) * GGUF_ALIGNMENT;
      if (padded > end) writeAll(this.fd, new Uint8Array(padded - end), end);
    }
    closeSync(this.fd);
    if (missing)
      throw new Error(`${this.path}: tensor ${this.tensors[this.current]!.name} was not written in full`);
  }
}

function writeAll(fd: number, bytes: Uint8Array, position: number): void {
  let done = 0;
  while (done < bytes.byteLength) {
    const n = writeSync(fd, bytes, done, Math.min(bytes.byteLength - done, 1 << 30), position + done);
    if (n <= 0) throw new Error('write made no progress');
    done += n;
  }
}

// ---- reading (tests and sanity checks) ------------------------------------------------------------------------

export interface GgufHeader {
  readonly version: number;
  readonly metadata: ReadonlyMap<string, unknown>;
  readonly tensors: ReadonlyArray<{ name: string; dims: number[]; type: number; offset: number }>;
  readonly dataStart: number;
}

/** Parses a GGUF file's header (metadata values as JS values; arrays as arrays). */
export function readGgufHeader(path: string, maxBytes = 64 << 20): GgufHeader {
  const fd = openSync(path, 'r');
  let buf: Buffer;
  try {
    buf = Buffer.alloc(maxBytes);
    const n = readSync(fd, buf, 0, maxBytes, 0);
    buf = buf.subarray(0, n);
  } finally {
    closeSync(fd);
  }
  let p = 0;
  const u32 = () => {
    const v = buf.readUInt32LE(p);
    p += 4;
    return v;
  };
  const u64 = () => {
    const v = Number(buf.readBigUInt64LE(p));
    p += 8;
    return v;
  };
  const str = () => {
    const n = u64();
    const s = buf.toString('utf8', p, p + n);
    p += n;
    return s;
  };
  const value = (type: number): unknown => {
    switch (type) {
      case GGUF_VALUE.UINT8:
        return buf[p++];
      case GGUF_VALUE.INT8:
        return buf.readInt8(p++);
      case GGUF_VALUE.UINT16: {
        const v = buf.readUInt16LE(p);
        p += 2;
        return v;
      }
      case GGUF_VALUE.INT16: {
        const v = buf.readInt16LE(p);
        p += 2;
        return v;
      }
      case GGUF_VALUE.UINT32:
        return u32();
      case GGUF_VALUE.INT32: {
        const v = buf.readInt32LE(p);
        p += 4;
        return v;
      }
      case GGUF_VALUE.FLOAT32: {
        const v = buf.readFloatLE(p);
        p += 4;
        return v;
      }
      case GGUF_VALUE.BOOL:
        return buf[p++] !== 0;
      case GGUF_VALUE.STRING:
        return str();
      case GGUF_VALUE.ARRAY: {
        const et = u32();
        const n = u64();
        const out: unknown[] = new Array(n);
        for (let i = 0; i < n; i++) out[i] = value(et);
        return out;
      }
      case GGUF_VALUE.UINT64:
        return u64();
      case GGUF_VALUE.INT64: {
        const v = Number(buf.readBigInt64LE(p));
        p += 8;
        return v;
      }
      case GGUF_VALUE.FLOAT64: {
        const v = buf.readDoubleLE(p);
        p += 8;
        return v;
      }
    }
    throw new Error(`${path}: unknown GGUF value type ${type}`);
  };
  if (buf.toString('latin1', 0, 4) !== 'GGUF') throw new Error(`${path}: not a GGUF file`);
  p = 4;
  const version = u32();
  const nTensors = u64();
  const nKv = u64();
  const metadata = new Map<string, unknown>();
  for (let i = 0; i < nKv; i++) {
    const key = str();
    metadata.set(key, value(u32()));
  }
  const tensors: { name: string; dims: number[]; type: number; offset: number }[] = [];
  for (let i = 0; i < nTensors; i++) {
    const name = str();
    const nd = u32();
    const dims: number[] = [];
    for (let d = 0; d < nd; d++) dims.push(u64());
    const type = u32();
    tensors.push({ name, dims, type, offset: u64() });
  }
  const align = (metadata.get('general.alignment') as number | undefined) ?? GGUF_ALIGNMENT;
  const dataStart = Math.ceil(p / align) * align;
  return { version, metadata, tensors, dataStart };
}
