import { isSafetensorsDType, type SafetensorsDType } from './dtype';
import { MEMORY_SOURCE, quoteName, SafetensorsError } from './errors';
import {
  checkHeaderLength,
  encodeHeader,
  formatShape,
  LENGTH_PREFIX_BYTES,
  parseHeader,
  tensorByteSize,
} from './header';
import { allocBytes } from './io';

/** A tensor to store. `data` is its raw little-endian bytes (any typed array or DataView; its bytes are used as is). */
export interface TensorInput {
  readonly dtype: SafetensorsDType;
  readonly shape: readonly number[];
  readonly data: ArrayBufferView;
}

export interface NamedTensorInput extends TensorInput {
  readonly name: string;
}

/** Tensors to store: a list (kept in order), a Map or a plain object (in insertion order). */
export type TensorsInput =
  | readonly NamedTensorInput[]
  | ReadonlyMap<string, TensorInput>
  | Readonly<Record<string, TensorInput>>;

/** A validated tensor ready to be laid out: `bytes` views the caller's data. */
export interface PreparedTensor {
  readonly name: string;
  readonly dtype: SafetensorsDType;
  readonly shape: readonly number[];
  readonly byteLength: number;
  readonly bytes: Uint8Array;
}

const METADATA_KEY = '__metadata__';

/**
 * Checks every tensor (name, dtype, shape, data length = dtype size × element count) and the metadata before
 * anything is laid out or written. Throws SafetensorsError naming `file` and the tensor.
 */
export function prepareTensors(input: TensorsInput, file: string): PreparedTensor[] {
  return checkTensors(input, file, (t, where) => {
    const { data } = t;
    if (!ArrayBuffer.isView(data))
      throw new SafetensorsError('BAD_TENSOR', 'data is not a typed array or DataView', where);
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    return { byteLength: bytes.byteLength, bytes };
  });
}

/** A tensor to store whose bytes are produced only when it is written (see `writeSafetensorsStreaming`). */
export interface LazyTensorInput {
  readonly name: string;
  readonly dtype: SafetensorsDType;
  readonly shape: readonly number[];
  /** Its bytes, asked for once, when the tensor is written; must hold exactly what dtype and shape imply. */
  readonly data: () => ArrayBufferView | Promise<ArrayBufferView>;
}

/** A validated lazy tensor: `byteLength` is what dtype and shape imply. */
export interface PreparedLazyTensor {
  readonly name: string;
  readonly dtype: SafetensorsDType;
  readonly shape: readonly number[];
  readonly byteLength: number;
  readonly data: () => ArrayBufferView | Promise<ArrayBufferView>;
}

/** {@link prepareTensors} for lazy tensors: the same checks, the byte length taken from dtype and shape. */
export function prepareLazyTensors(input: readonly LazyTensorInput[], file: string): PreparedLazyTensor[] {
  if (!Array.isArray(input))
    throw new SafetensorsError('BAD_TENSOR', 'lazy tensors must be an array', { file });
  return checkTensors(input, file, (t, where) => {
    if (typeof t.data !== 'function')
      throw new SafetensorsError('BAD_TENSOR', 'data is not a function', where);
    const size = tensorByteSize(t.dtype as SafetensorsDType, t.shape as number[], Number.MAX_SAFE_INTEGER);
    if (size.kind !== 'bytes')
      throw new SafetensorsError(
        'SIZE_MISMATCH',
        `${String(t.dtype)} [${formatShape(t.shape as number[])}] does not fill whole bytes`,
        where,
      );
    return { byteLength: size.bytes, data: t.data as () => ArrayBufferView };
  }).map(({ name, dtype, shape, byteLength, data }) => ({ name, dtype, shape, byteLength, data }));
}

function checkTensors<E extends { byteLength: number }>(
  input: unknown,
  file: string,
  payload: (t: Record<string, unknown>, where: { file: string; tensor: string }) => E,
): (E & { name: string; dtype: SafetensorsDType; shape: readonly number[] })[] {
  let entries: [unknown, unknown][];
  if (Array.isArray(input)) {
    entries = input.map((t: unknown) => [isObject(t) ? t.name : undefined, t]);
  } else if (input instanceof Map) {
    entries = [...input.entries()];
  } else if (isObject(input)) {
    entries = Object.entries(input);
  } else {
    throw new SafetensorsError('BAD_TENSOR', 'tensors must be an array, a Map or an object', { file });
  }
  const seen = new Set<string>();
  const out: (E & { name: string; dtype: SafetensorsDType; shape: readonly number[] })[] = [];
  let total = 0;
  for (const [name, t] of entries) {
    if (typeof name !== 'string') {
      throw new SafetensorsError('BAD_NAME', `tensor #${out.length} has no string name`, { file });
    }
    const where = { file, tensor: name };
    if (name === METADATA_KEY)
      throw new SafetensorsError('BAD_NAME', `${METADATA_KEY} is reserved for metadata`, where);
    if (seen.has(name)) throw new SafetensorsError('DUPLICATE', 'tensor name given twice', where);
    seen.add(name);
    if (!isObject(t)) throw new SafetensorsError('BAD_TENSOR', 'tensor is not an object', where);
    const { dtype, shape } = t;
    if (!isSafetensorsDType(dtype)) {
      throw new SafetensorsError(
        'BAD_DTYPE',
        `unknown dtype ${JSON.stringify(String(dtype).slice(0, 64))}`,
        where,
      );
    }
    if (!Array.isArray(shape)) throw new SafetensorsError('BAD_SHAPE', 'shape is not an array', where);
    shape.forEach((d: unknown, i) => {
      if (!(typeof d === 'number' && Number.isSafeInteger(d) && d >= 0)) {
        throw new SafetensorsError(
          'BAD_SHAPE',
          `shape[${i}] = ${String(d)} is not a non-negative safe integer`,
          where,
        );
      }
    });
    const p = payload(t, where);
    const size = tensorByteSize(dtype, shape, p.byteLength);
    if (size.kind !== 'bytes' || size.bytes !== p.byteLength) {
      const needs =
        size.kind === 'bytes'
          ? `${size.bytes} bytes`
          : size.kind === 'over'
            ? 'more bytes'
            : 'a partial byte';
      throw new SafetensorsError(
        'SIZE_MISMATCH',
        `${dtype} [${formatShape(shape)}] needs ${needs} but data holds ${p.byteLength}`,
        where,
      );
    }
    total += p.byteLength;
    if (!Number.isSafeInteger(total))
      throw new SafetensorsError('TOO_LARGE', 'total data size is not a safe integer', { file });
    out.push({ ...p, name, dtype, shape: [...shape] });
  }
  return out;
}

/** Checks that metadata is undefined or an object of strings; returns a plain copy. */
export function checkMetadata(metadata: unknown, file: string): Record<string, string> | undefined {
  if (metadata === undefined) return undefined;
  if (!isObject(metadata) || Array.isArray(metadata) || metadata instanceof Map) {
    throw new SafetensorsError('BAD_METADATA', 'metadata must be a plain object of strings', { file });
  }
  const entries = Object.entries(metadata);
  for (const [k, v] of entries) {
    if (typeof v !== 'string') {
      throw new SafetensorsError('BAD_METADATA', `metadata value of ${quoteName(k)} is not a string`, {
        file,
      });
    }
  }
  return Object.fromEntries(entries) as Record<string, string>;
}

/**
 * Serializes tensors into one safetensors byte array: header padded with spaces to a multiple of 8, then the data
 * of each tensor in the given order. Throws SafetensorsError for invalid input.
 */
export function encodeSafetensors(
  tensors: TensorsInput,
  metadata?: Readonly<Record<string, string>>,
): Uint8Array {
  const prepared = prepareTensors(tensors, MEMORY_SOURCE);
  const meta = checkMetadata(metadata, MEMORY_SOURCE);
  const header = encodeHeader(prepared, meta, MEMORY_SOURCE);
  const dataLength = prepared.reduce((s, t) => s + t.byteLength, 0);
  const total = header.byteLength + dataLength;
  const out = allocBytes(total, MEMORY_SOURCE);
  out.set(header, 0);
  let at = header.byteLength;
  for (const t of prepared) {
    out.set(t.bytes, at);
    at += t.byteLength;
  }
  return out;
}

export interface DecodedTensor {
  readonly name: string;
  readonly dtype: SafetensorsDType;
  readonly shape: readonly number[];
  readonly data: Uint8Array;
}

export interface DecodedSafetensors {
  /** In header order. */
  readonly tensors: ReadonlyMap<string, DecodedTensor>;
  readonly metadata: Readonly<Record<string, string>>;
}

export interface DecodeOptions {
  /**
   * true (default): each tensor's `data` is a copy in its own ArrayBuffer, aligned for any typed view.
   * false: `data` views `bytes` without copying (alignment then depends on `bytes` and the layout).
   */
  readonly copy?: boolean;
  /** Name used in error messages (default `<memory>`). */
  readonly source?: string;
}

/** Parses a whole safetensors file held in memory, with the same validation as {@link openSafetensors}. */
export function decodeSafetensors(
  bytes: Uint8Array | ArrayBufferLike,
  options: DecodeOptions = {},
): DecodedSafetensors {
  const file = options.source ?? MEMORY_SOURCE;
  const buf = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  const n = checkHeaderLength(buf.subarray(0, LENGTH_PREFIX_BYTES), buf.byteLength, file);
  const dataOffset = LENGTH_PREFIX_BYTES + n;
  const header = parseHeader(
    buf.subarray(LENGTH_PREFIX_BYTES, dataOffset),
    buf.byteLength - dataOffset,
    file,
    dataOffset,
  );
  const copy = options.copy ?? true;
  const tensors = new Map<string, DecodedTensor>();
  for (const t of header.tensors.values()) {
    const begin = t.byteOffset;
    const end = begin + t.byteLength;
    tensors.set(t.name, {
      name: t.name,
      dtype: t.dtype,
      shape: t.shape,
      data: copy ? copyBytes(buf, begin, end, file, t.name) : buf.subarray(begin, end),
    });
  }
  return { tensors, metadata: Object.freeze({ ...header.metadata }) };
}

function copyBytes(buf: Uint8Array, begin: number, end: number, file: string, tensor: string): Uint8Array {
  const out = allocBytes(end - begin, file, tensor);
  out.set(buf.subarray(begin, end));
  return out;
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null;
}
