import { createHash } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import { type FileIdentity, identityOf, openRegularFile } from '@mnemo/files';
import { GgufError, ioError, MEMORY_SOURCE } from './errors';
import { type GgufTensorInfo, NeedMore, type ParsedHeader, parseHeader } from './header';
import { allocBytes, readFully } from './io';
import { GgufMetadata } from './metadata';

/** What every GGUF source (a file, a buffer) describes. */
export interface GgufHeader {
  /** File path, or `<memory>`. */
  readonly path: string;
  /** Size in bytes. */
  readonly size: number;
  /** 2 or 3. */
  readonly version: number;
  /** `general.alignment` (default 32). */
  readonly alignment: number;
  /** Absolute offset of the data section. */
  readonly dataOffset: number;
  /**
   * sha256 (hex) of the header proper (magic, version, every metadata entry and tensor info, without the padding
   * after them): together with the tensor bytes, what identifies the file's content.
   */
  readonly headerSha256: string;
  readonly metadata: GgufMetadata;
  /** Tensors in file order. */
  readonly tensors: ReadonlyMap<string, GgufTensorInfo>;
  names(): string[];
  has(name: string): boolean;
  /** The tensor's description; throws NOT_FOUND. */
  info(name: string): GgufTensorInfo;
}

/** An open GGUF file: header parsed and validated, tensor bytes read on demand. */
export interface GgufFile extends GgufHeader {
  readonly closed: boolean;
  /** Exactly the tensor's bytes, in a fresh ArrayBuffer (offset 0, so any typed view of matching size fits). */
  read(name: string): Promise<Uint8Array>;
  /** Reads the tensor's bytes into `out`, whose length must equal the tensor's byte length. */
  readInto(name: string, out: Uint8Array): Promise<void>;
  /**
   * The identity (device, inode, size, mtime and ctime in ns) of the open file, now: unchanged exactly when the file
   * was not written to since it was opened (see `FileIdentity` of `@mnemo/files`).
   */
  identity(): Promise<FileIdentity>;
  /**
   * Where the tensor's bytes lie in the open file: its descriptor (valid until `close()`), absolute position and
   * length, for readers that copy straight from the file (e.g. a native backend). Throws NOT_FOUND / CLOSED.
   */
  fileRange(name: string): { readonly fd: number; readonly position: number; readonly byteLength: number };
  /** Closes the file handle; further reads throw CLOSED. Safe to call twice. */
  close(): Promise<void>;
}

/** An in-memory GGUF (see {@link decodeGguf}): tensor bytes are views of the buffer. */
export interface DecodedGguf extends GgufHeader {
  /** The tensor's bytes (a view of the buffer, not a copy). */
  data(name: string): Uint8Array;
}

/** Bytes read for the header at first; doubled (at most to the file size) while the header is longer. */
const FIRST_READ = 1 << 20;

/**
 * Largest header (metadata and tensor infos) {@link openGguf} reads: 256 MiB. Real headers are a few MB (the largest
 * vocabularies with their merges stay under 30 MB); a file announcing more is refused (`TOO_LARGE`) before the memory
 * is allocated.
 */
export const MAX_HEADER_BYTES = 256 * 1024 * 1024;

class Header implements GgufHeader {
  readonly tensors: ReadonlyMap<string, GgufTensorInfo>;
  readonly metadata: GgufMetadata;
  readonly version: number;
  readonly alignment: number;
  readonly dataOffset: number;
  readonly headerSha256: string;

  constructor(
    readonly path: string,
    readonly size: number,
    h: ParsedHeader,
    header: Uint8Array,
  ) {
    this.headerSha256 = createHash('sha256').update(header.subarray(0, h.headerLength)).digest('hex');
    this.tensors = new Map(h.tensors.map((t) => [t.name, t]));
    this.metadata = new GgufMetadata(h.metadata, path);
    this.version = h.version;
    this.alignment = h.alignment;
    this.dataOffset = h.dataOffset;
  }

  names(): string[] {
    return [...this.tensors.keys()];
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  info(name: string): GgufTensorInfo {
    const t = this.tensors.get(name);
    if (t === undefined)
      throw new GgufError('NOT_FOUND', 'no such tensor in this file', { file: this.path, tensor: name });
    return t;
  }
}

/**
 * Parses a whole GGUF file held in memory (tests, fuzzing, small files). The header is validated completely; tensor
 * data is not copied. Throws GgufError.
 */
export function decodeGguf(bytes: Uint8Array, source = MEMORY_SOURCE): DecodedGguf {
  let h: ParsedHeader;
  try {
    h = parseHeader(bytes, bytes.byteLength, source);
  } catch (e) {
    // Unreachable: the prefix is the whole file.
    if (e instanceof NeedMore) throw new GgufError('TRUNCATED', 'the header is incomplete', { file: source });
    throw e;
  }
  const header = new Header(source, bytes.byteLength, h, bytes);
  return Object.assign(header, {
    data(name: string): Uint8Array {
      const t = header.info(name);
      return bytes.subarray(t.byteOffset, t.byteOffset + t.byteLength);
    },
  });
}

/**
 * Opens a GGUF file, reading only its header (in growing chunks, never more than the file holds nor
 * {@link MAX_HEADER_BYTES}), and validates it completely: magic, version (2 or 3, little-endian), every metadata value,
 * every tensor's dimensions, type, size, alignment and bounds, and that no two tensors overlap. Tensor bytes are read
 * on demand. Only a regular file is opened (through `@mnemo/files`: `stat` first, then a non-blocking open), so a
 * FIFO, a device or a folder is refused (`IO`) without being read or waited on. Throws GgufError.
 */
export async function openGguf(path: string): Promise<GgufFile> {
  let fh: FileHandle;
  let size: number;
  try {
    ({ handle: fh, size } = await openRegularFile(path));
  } catch (err) {
    throw ioError(path, 'open', err);
  }
  try {
    let prefix = allocBytes(Math.min(size, FIRST_READ), path);
    await readFully(fh, prefix, 0, path);
    let h: ParsedHeader;
    for (;;) {
      try {
        h = parseHeader(prefix, size, path);
        break;
      } catch (e) {
        if (!(e instanceof NeedMore)) throw e;
        if (e.bytes > MAX_HEADER_BYTES)
          throw new GgufError(
            'TOO_LARGE',
            `the header needs more than ${e.bytes - 1} bytes, over the ${MAX_HEADER_BYTES}-byte limit`,
            { file: path },
          );
        const longer = allocBytes(
          Math.min(size, MAX_HEADER_BYTES, Math.max(2 * prefix.byteLength, e.bytes + FIRST_READ)),
          path,
        );
        longer.set(prefix);
        await readFully(fh, longer.subarray(prefix.byteLength), prefix.byteLength, path);
        prefix = longer;
      }
    }
    return new OpenFile(fh, path, size, h, prefix);
  } catch (err) {
    await fh.close().catch(() => {});
    throw err;
  }
}

class OpenFile extends Header implements GgufFile {
  #fh: FileHandle | null;

  constructor(fh: FileHandle, path: string, size: number, h: ParsedHeader, header: Uint8Array) {
    super(path, size, h, header);
    this.#fh = fh;
  }

  get closed(): boolean {
    return this.#fh === null;
  }

  async read(name: string): Promise<Uint8Array> {
    const t = this.info(name);
    const fh = this.#handle(name);
    const out = allocBytes(t.byteLength, this.path, name);
    await readFully(fh, out, t.byteOffset, this.path, name);
    return out;
  }

  async readInto(name: string, out: Uint8Array): Promise<void> {
    const t = this.info(name);
    if (!(out instanceof Uint8Array) || out.byteLength !== t.byteLength)
      throw new RangeError(
        `readInto: ${this.path}: tensor ${JSON.stringify(name)} has ${t.byteLength} bytes, the target ${out?.byteLength}`,
      );
    await readFully(this.#handle(name), out, t.byteOffset, this.path, name);
  }

  fileRange(name: string): { readonly fd: number; readonly position: number; readonly byteLength: number } {
    const t = this.info(name);
    return { fd: this.#handle(name).fd, position: t.byteOffset, byteLength: t.byteLength };
  }

  async identity(): Promise<FileIdentity> {
    if (this.#fh === null) throw new GgufError('CLOSED', 'file is closed', { file: this.path });
    try {
      return await identityOf(this.#fh);
    } catch (err) {
      throw ioError(this.path, 'stat', err);
    }
  }

  async close(): Promise<void> {
    const fh = this.#fh;
    this.#fh = null;
    if (fh !== null) {
      try {
        await fh.close();
      } catch (err) {
        throw ioError(this.path, 'close', err);
      }
    }
  }

  #handle(name: string): FileHandle {
    if (this.#fh === null) throw new GgufError('CLOSED', 'file is closed', { file: this.path, tensor: name });
    return this.#fh;
  }
}
