import { isSafetensorsDType, SAFETENSORS_DTYPE_BITS, type SafetensorsDType } from './dtype';
import { quoteName, SafetensorsError } from './errors';
import { JsonFloat, JsonParseError, type JsonValue, parseJsonObjectEntries } from './json';

/** Largest header accepted (the reference implementation's limit). */
export const MAX_HEADER_SIZE = 100_000_000;

/** Bytes of the little-endian u64 header length that opens every file. */
export const LENGTH_PREFIX_BYTES = 8;

/**
 * One tensor as described by a validated header (the same fields as a file's `TensorInfo`). Frozen, shape included.
 */
export interface HeaderTensor {
  readonly name: string;
  readonly dtype: SafetensorsDType;
  readonly shape: readonly number[];
  /** Offset of the tensor's first byte: the `dataOffset` given to {@link parseHeader} plus its begin offset. */
  readonly byteOffset: number;
  readonly byteLength: number;
}

export interface ParsedHeader {
  /** By name, in header order. */
  readonly tensors: ReadonlyMap<string, HeaderTensor>;
  readonly metadata: Readonly<Record<string, string>>;
}

const METADATA_KEY = '__metadata__';

/**
 * Reads the u64 header length from the first 8 bytes and checks it against the limit and the total size, before
 * anything is allocated from it. Returns the length as a safe number.
 */
export function checkHeaderLength(prefix: Uint8Array, totalSize: number, file: string): number {
  if (totalSize < LENGTH_PREFIX_BYTES || prefix.byteLength < LENGTH_PREFIX_BYTES) {
    throw new SafetensorsError('TRUNCATED', `${totalSize} bytes is too short for the 8-byte header length`, {
      file,
    });
  }
  const n = new DataView(prefix.buffer, prefix.byteOffset, LENGTH_PREFIX_BYTES).getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_SIZE)) {
    const detail = `header length ${n} exceeds the ${MAX_HEADER_SIZE}-byte limit`;
    throw new SafetensorsError('HEADER_TOO_LARGE', detail, { file });
  }
  const len = Number(n);
  if (len > totalSize - LENGTH_PREFIX_BYTES) {
    throw new SafetensorsError(
      'TRUNCATED',
      `header length ${len} exceeds the ${totalSize - LENGTH_PREFIX_BYTES} bytes after the length prefix`,
      { file },
    );
  }
  return len;
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * Parses and validates a header (the N bytes after the length prefix) for a data region of `dataLength` bytes that
 * starts at `dataOffset` (added to every tensor's offset). Follows the reference implementation: tensors sorted by
 * offset must tile the data region exactly, each one's length equal to dtype size × element count. Every violation is
 * a SafetensorsError naming `file` and the tensor.
 *
 * Memory stays a small multiple of the header size: the JSON is parsed entry by entry, each tensor is kept as one
 * frozen record and nothing of the JSON tree survives its entry.
 */
export function parseHeader(
  bytes: Uint8Array,
  dataLength: number,
  file: string,
  dataOffset = 0,
): ParsedHeader {
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch (err) {
    throw new SafetensorsError('BAD_JSON', 'header is not valid UTF-8', { file, cause: err });
  }
  if (!text.startsWith('{')) {
    throw new SafetensorsError('BAD_JSON', "header does not start with '{'", { file });
  }
  let metadata: Record<string, string> | undefined;
  const tensors = new Map<string, HeaderTensor>();
  try {
    parseJsonObjectEntries(text, (name, entry) => {
      if (name === METADATA_KEY) {
        if (metadata !== undefined) throw duplicateEntry(name, file);
        metadata = parseMetadata(entry, file);
      } else {
        if (tensors.has(name)) throw duplicateEntry(name, file);
        tensors.set(name, parseTensor(name, entry, dataLength, dataOffset, file));
      }
    });
  } catch (err) {
    if (err instanceof JsonParseError) {
      if (err.kind === 'duplicate') {
        const where = `key ${quoteName(err.key ?? '')} in ${quoteName(err.path?.join('.') ?? '')}`;
        const tensor = err.path?.[0];
        throw new SafetensorsError('DUPLICATE', `header repeats ${where}`, {
          file,
          tensor: tensor === METADATA_KEY ? undefined : tensor,
          cause: err,
        });
      }
      throw new SafetensorsError('BAD_JSON', `header is not valid JSON: ${err.message}`, {
        file,
        cause: err,
      });
    }
    throw err;
  }
  checkTiling(tensors, dataLength, dataOffset, file);
  return { tensors, metadata: metadata ?? {} };
}

function duplicateEntry(name: string, file: string): SafetensorsError {
  return new SafetensorsError('DUPLICATE', 'header repeats tensor name', {
    file,
    tensor: name === METADATA_KEY ? undefined : name,
  });
}

function parseMetadata(entry: JsonValue, file: string): Record<string, string> {
  // The reference reads `__metadata__` as an optional map, so `null` means none.
  if (entry === null) return {};
  if (!(entry instanceof Map)) {
    throw new SafetensorsError('BAD_METADATA', '__metadata__ is not an object', { file });
  }
  const out: [string, string][] = [];
  for (const [k, v] of entry) {
    if (typeof v !== 'string') {
      const detail = `__metadata__ value of ${quoteName(k)} is not a string`;
      throw new SafetensorsError('BAD_METADATA', detail, { file });
    }
    out.push([k, v]);
  }
  return Object.fromEntries(out);
}

function parseTensor(
  name: string,
  entry: JsonValue,
  dataLength: number,
  dataOffset: number,
  file: string,
): HeaderTensor {
  const where = { file, tensor: name };
  if (!(entry instanceof Map)) throw new SafetensorsError('BAD_TENSOR', 'entry is not an object', where);
  const dtype = entry.get('dtype');
  const shape = entry.get('shape');
  const offsets = entry.get('data_offsets');
  if (typeof dtype !== 'string')
    throw new SafetensorsError('BAD_TENSOR', '"dtype" is missing or not a string', where);
  if (!Array.isArray(shape))
    throw new SafetensorsError('BAD_TENSOR', '"shape" is missing or not an array', where);
  if (!Array.isArray(offsets)) {
    throw new SafetensorsError('BAD_TENSOR', '"data_offsets" is missing or not an array', where);
  }
  if (!isSafetensorsDType(dtype)) {
    throw new SafetensorsError('BAD_DTYPE', `unknown dtype ${JSON.stringify(dtype.slice(0, 64))}`, where);
  }
  const dims = shape.map((d, i) => {
    const v = asIndex(d);
    if (v === undefined) {
      throw new SafetensorsError(
        'BAD_SHAPE',
        `shape[${i}] = ${describeJson(d)} is not a non-negative safe integer`,
        where,
      );
    }
    return v;
  });
  if (offsets.length !== 2) {
    throw new SafetensorsError('BAD_OFFSETS', `data_offsets has ${offsets.length} entries, not 2`, where);
  }
  const begin = asIndex(offsets[0]);
  const end = asIndex(offsets[1]);
  if (begin === undefined || end === undefined) {
    throw new SafetensorsError(
      'BAD_OFFSETS',
      `data_offsets [${describeJson(offsets[0])}, ${describeJson(offsets[1])}] are not non-negative safe integers`,
      where,
    );
  }
  if (end < begin)
    throw new SafetensorsError('BAD_OFFSETS', `data_offsets [${begin}, ${end}] end before they begin`, where);
  if (end > dataLength) {
    throw new SafetensorsError(
      'OUT_OF_BOUNDS',
      `data_offsets [${begin}, ${end}] reach past the ${dataLength}-byte data region (file truncated?)`,
      where,
    );
  }
  const byteLength = end - begin;
  const size = tensorByteSize(dtype, dims, byteLength);
  if (size.kind !== 'bytes' || size.bytes !== byteLength) {
    const needs =
      size.kind === 'bytes'
        ? `${size.bytes} bytes`
        : size.kind === 'over'
          ? 'more bytes'
          : 'a partial byte (packed elements must fill whole bytes)';
    throw new SafetensorsError(
      'SIZE_MISMATCH',
      `${dtype} [${formatShape(dims)}] needs ${needs} but data_offsets [${begin}, ${end}] span ${byteLength}`,
      where,
    );
  }
  return Object.freeze({
    name,
    dtype,
    shape: Object.freeze(dims),
    byteOffset: dataOffset + begin,
    byteLength,
  });
}

/** Size of a tensor: exact bytes, `'over'` a limit, or `'partial'` when packed sub-byte elements leave a partial byte. */
export type ByteSize =
  | { readonly kind: 'bytes'; readonly bytes: number }
  | { readonly kind: 'over' | 'partial' };

/**
 * Bytes of a tensor of `dtype` and safe-integer `shape`, or `'over'` once the size passes `limit` (the product stops
 * there, so huge shapes cost nothing and nothing overflows).
 */
export function tensorByteSize(dtype: SafetensorsDType, shape: readonly number[], limit: number): ByteSize {
  if (shape.includes(0)) return { kind: 'bytes', bytes: 0 };
  const cap = BigInt(limit) * 8n;
  let bits = BigInt(SAFETENSORS_DTYPE_BITS[dtype]);
  for (const d of shape) {
    bits *= BigInt(d);
    if (bits > cap) return { kind: 'over' };
  }
  if (bits % 8n !== 0n) return { kind: 'partial' };
  return { kind: 'bytes', bytes: Number(bits / 8n) };
}

/** Sorted by offset, tensors must start at 0, follow each other without gap or overlap, and end at `dataLength`. */
function checkTiling(
  tensors: ReadonlyMap<string, HeaderTensor>,
  dataLength: number,
  dataOffset: number,
  file: string,
): void {
  const sorted = [...tensors.values()].sort(
    (a, b) => a.byteOffset - b.byteOffset || a.byteLength - b.byteLength,
  );
  let cursor = 0;
  let previous: HeaderTensor | undefined;
  for (const t of sorted) {
    const begin = t.byteOffset - dataOffset;
    if (begin < cursor) {
      throw new SafetensorsError(
        'OVERLAP',
        `bytes [${begin}, ${begin + t.byteLength}) overlap tensor ${quoteName(previous?.name ?? '')} ending at ${cursor}`,
        { file, tensor: t.name },
      );
    }
    if (begin > cursor) {
      throw new SafetensorsError(
        'GAP',
        `starts at ${begin} but the previous tensor ends at ${cursor}: bytes in between belong to no tensor`,
        { file, tensor: t.name },
      );
    }
    cursor = begin + t.byteLength;
    previous = t;
  }
  if (cursor !== dataLength) {
    throw new SafetensorsError(
      'TRAILING_DATA',
      `tensors cover ${cursor} bytes but the data region holds ${dataLength}`,
      previous ? { file, tensor: previous.name } : { file },
    );
  }
}

/** Shape for messages, shortened when long. */
export function formatShape(shape: readonly unknown[]): string {
  const head = shape.slice(0, 8).map(String).join(', ');
  return shape.length > 8 ? `${head}, … (${shape.length} dims)` : head;
}

function asIndex(v: JsonValue | undefined): number | undefined {
  // Integer literals within the safe range parse to numbers; floats (JsonFloat) and larger integers never qualify.
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : undefined;
}

/** A short description of a JSON value for messages. */
export function describeJson(v: JsonValue | undefined): string {
  if (v === undefined) return 'missing';
  if (typeof v === 'bigint' || typeof v === 'number' || v instanceof JsonFloat) {
    const s = v instanceof JsonFloat ? v.text : String(v);
    return s.length > 32 ? `${s.slice(0, 32)}…` : s;
  }
  if (typeof v === 'string') return JSON.stringify(v.length > 32 ? `${v.slice(0, 32)}…` : v);
  if (v === null || typeof v === 'boolean') return String(v);
  return Array.isArray(v) ? 'an array' : 'an object';
}

export interface EncodableTensor {
  readonly name: string;
  readonly dtype: SafetensorsDType;
  readonly shape: readonly number[];
  readonly byteLength: number;
}

/**
 * The header bytes (length prefix + JSON + space padding) for tensors laid out back to back in the given order,
 * padded with spaces so the data region starts at a multiple of 8 bytes.
 */
export function encodeHeader(
  tensors: readonly EncodableTensor[],
  metadata: Readonly<Record<string, string>> | undefined,
  file: string,
): Uint8Array {
  const parts: string[] = [];
  if (metadata !== undefined) {
    const entries = Object.entries(metadata).map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`);
    parts.push(`${JSON.stringify(METADATA_KEY)}:{${entries.join(',')}}`);
  }
  let offset = 0;
  for (const t of tensors) {
    const end = offset + t.byteLength;
    parts.push(
      `${JSON.stringify(t.name)}:{"dtype":${JSON.stringify(t.dtype)},"shape":[${t.shape.join(',')}],"data_offsets":[${offset},${end}]}`,
    );
    offset = end;
  }
  const json = new TextEncoder().encode(`{${parts.join(',')}}`);
  const padded = Math.ceil(json.byteLength / 8) * 8;
  if (padded > MAX_HEADER_SIZE) {
    const detail = `header of ${padded} bytes exceeds the ${MAX_HEADER_SIZE}-byte limit`;
    throw new SafetensorsError('HEADER_TOO_LARGE', detail, { file });
  }
  const out = new Uint8Array(LENGTH_PREFIX_BYTES + padded);
  new DataView(out.buffer).setBigUint64(0, BigInt(padded), true);
  out.set(json, LENGTH_PREFIX_BYTES);
  out.fill(0x20, LENGTH_PREFIX_BYTES + json.byteLength);
  return out;
}
