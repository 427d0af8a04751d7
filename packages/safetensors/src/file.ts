import type { FileHandle } from 'node:fs/promises';
import { type FileIdentity, identityOf, openRegularFile } from '@mnemo/files';
import type { SafetensorsDType } from './dtype';
import { ioError, SafetensorsError } from './errors';
import { checkHeaderLength, LENGTH_PREFIX_BYTES, parseHeader } from './header';
import { allocBytes, readFully, readFullySync } from './io';

/** Where one tensor lives in a file. */
export interface TensorInfo {
  readonly name: string;
  readonly dtype: SafetensorsDType;
  readonly shape: readonly number[];
  /** Absolute offset of the tensor's first byte in the file. */
  readonly byteOffset: number;
  readonly byteLength: number;
}

/** An open safetensors file: header parsed and validated, tensor bytes read on demand. */
export interface SafetensorsFile {
  readonly path: string;
  /** File size in bytes. */
  readonly size: number;
  /** Length N of the JSON header (padding included); the data region starts at 8 + N. */
  readonly headerLength: number;
  /** Tensors in header order. */
  readonly tensors: ReadonlyMap<string, TensorInfo>;
  /** `__metadata__` (empty when absent). */
  readonly metadata: Readonly<Record<string, string>>;
  readonly closed: boolean;
  names(): string[];
  has(name: string): boolean;
  /** The tensor's description; throws NOT_FOUND. */
  info(name: string): TensorInfo;
  /** Exactly the tensor's bytes, in a fresh ArrayBuffer (offset 0, so any typed view of matching size fits). */
  read(name: string): Promise<Uint8Array>;
  readSync(name: string): Uint8Array;
  /** Reads the tensor's bytes into `out`, whose length must equal the tensor's byte length. */
  readInto(name: string, out: Uint8Array): Promise<void>;
  /**
   * The identity (device, inode, size, mtime and ctime in ns) of the open file, now: unchanged exactly when the file
   * was not written to since it was opened (see `FileIdentity` of `@mnemo/files`).
   */
  identity(): Promise<FileIdentity>;
  /**
   * Where the tensor's bytes lie in the open file: its descriptor (valid until `close()`) and absolute position, for
   * readers that copy straight from the file (e.g. a native backend's `uploadFromFile`). Throws NOT_FOUND / CLOSED.
   */
  fileRange(name: string): { readonly fd: number; readonly position: number; readonly byteLength: number };
  /** Closes the file handle; further reads throw CLOSED. Safe to call twice. */
  close(): Promise<void>;
}

/**
 * Opens a safetensors file, reading only the 8-byte length and the header, and validates the header completely
 * (see {@link SafetensorsErrorCode} for what is checked). Throws SafetensorsError.
 */
export async function openSafetensors(path: string): Promise<SafetensorsFile> {
  let fh: FileHandle;
  let size: number;
  try {
    // Only a regular file is opened (a FIFO or a device is refused before it could block or be read).
    ({ handle: fh, size } = await openRegularFile(path));
  } catch (err) {
    throw ioError(path, 'open', err);
  }
  try {
    const prefix = allocBytes(Math.min(LENGTH_PREFIX_BYTES, size), path);
    await readFully(fh, prefix, 0, path);
    const n = checkHeaderLength(prefix, size, path);
    const headerBytes = allocBytes(n, path);
    await readFully(fh, headerBytes, LENGTH_PREFIX_BYTES, path);
    const dataOffset = LENGTH_PREFIX_BYTES + n;
    const header = parseHeader(headerBytes, size - dataOffset, path, dataOffset);
    return new OpenFile(fh, path, size, n, header.tensors, Object.freeze({ ...header.metadata }));
  } catch (err) {
    await fh.close().catch(() => {});
    throw err;
  }
}

class OpenFile implements SafetensorsFile {
  #fh: FileHandle | null;

  constructor(
    fh: FileHandle,
    readonly path: string,
    readonly size: number,
    readonly headerLength: number,
    readonly tensors: ReadonlyMap<string, TensorInfo>,
    readonly metadata: Readonly<Record<string, string>>,
  ) {
    this.#fh = fh;
  }

  get closed(): boolean {
    return this.#fh === null;
  }

  names(): string[] {
    return [...this.tensors.keys()];
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  info(name: string): TensorInfo {
    const t = this.tensors.get(name);
    if (t === undefined)
      throw new SafetensorsError('NOT_FOUND', 'no such tensor in this file', {
        file: this.path,
        tensor: name,
      });
    return t;
  }

  async read(name: string): Promise<Uint8Array> {
    const t = this.info(name);
    const fh = this.#handle(name);
    const out = allocBytes(t.byteLength, this.path, name);
    await readFully(fh, out, t.byteOffset, this.path, name);
    return out;
  }

  fileRange(name: string): { readonly fd: number; readonly position: number; readonly byteLength: number } {
    const t = this.info(name);
    return { fd: this.#handle(name).fd, position: t.byteOffset, byteLength: t.byteLength };
  }

  readSync(name: string): Uint8Array {
    const t = this.info(name);
    const fh = this.#handle(name);
    const out = allocBytes(t.byteLength, this.path, name);
    readFullySync(fh.fd, out, t.byteOffset, this.path, name);
    return out;
  }

  async readInto(name: string, out: Uint8Array): Promise<void> {
    const t = this.info(name);
    if (out.byteLength !== t.byteLength) {
      throw new SafetensorsError(
        'SIZE_MISMATCH',
        `readInto target holds ${out.byteLength} bytes, the tensor ${t.byteLength}`,
        { file: this.path, tensor: name },
      );
    }
    await readFully(this.#handle(name), out, t.byteOffset, this.path, name);
  }

  async identity(): Promise<FileIdentity> {
    if (this.#fh === null) throw new SafetensorsError('CLOSED', 'file is closed', { file: this.path });
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
    if (this.#fh === null)
      throw new SafetensorsError('CLOSED', 'file is closed', { file: this.path, tensor: name });
    return this.#fh;
  }
}
