import { randomBytes } from 'node:crypto';
import { type FileHandle, open, rename, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import {
  checkMetadata,
  type LazyTensorInput,
  prepareLazyTensors,
  prepareTensors,
  type TensorsInput,
} from './codec';
import { ioError, SafetensorsError } from './errors';
import { encodeHeader } from './header';

export interface WriteOptions {
  /** fsync the file before the rename and the folder after it (default true). */
  readonly fsync?: boolean;
}

const CHUNK = 1 << 30;

/**
 * Writes a safetensors file atomically: every tensor is validated first (nothing is written if one is bad), then
 * header and data go to `<path>.tmp-<pid>-<random>` in the same folder, which is fsynced and renamed over `path`.
 * On any failure the temporary file is removed and an existing file at `path` is left untouched.
 * Data is laid out in the given order; the header is padded with spaces so the data starts 8-byte aligned.
 */
export async function writeSafetensors(
  path: string,
  tensors: TensorsInput,
  metadata?: Readonly<Record<string, string>>,
  options: WriteOptions = {},
): Promise<void> {
  const prepared = prepareTensors(tensors, path);
  const meta = checkMetadata(metadata, path);
  const header = encodeHeader(prepared, meta, path);
  await writeAtomically(path, header, prepared, (t) => t.bytes, options);
}

/**
 * {@link writeSafetensors} for tensors whose bytes are produced one at a time, in order, while the file is written
 * (each tensor's `data()` is called once, after the previous tensor's bytes were written): a large file can be saved
 * without holding all of its data at once. Names, dtypes, shapes and metadata are checked before anything is written;
 * a `data()` result of the wrong length, or a throwing `data()`, fails the write like an I/O error (nothing is left at
 * `path`, an existing file stays untouched).
 */
export async function writeSafetensorsStreaming(
  path: string,
  tensors: readonly LazyTensorInput[],
  metadata?: Readonly<Record<string, string>>,
  options: WriteOptions = {},
): Promise<void> {
  const prepared = prepareLazyTensors(tensors, path);
  const meta = checkMetadata(metadata, path);
  const header = encodeHeader(prepared, meta, path);
  await writeAtomically(
    path,
    header,
    prepared,
    async (t) => {
      const d = await t.data();
      if (!ArrayBuffer.isView(d))
        throw new SafetensorsError('BAD_TENSOR', 'data() did not return a typed array or DataView', {
          file: path,
          tensor: t.name,
        });
      if (d.byteLength !== t.byteLength)
        throw new SafetensorsError(
          'SIZE_MISMATCH',
          `data() returned ${d.byteLength} bytes, the dtype and shape need ${t.byteLength}`,
          { file: path, tensor: t.name },
        );
      return new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
    },
    options,
  );
}

async function writeAtomically<T>(
  path: string,
  header: Uint8Array,
  tensors: readonly T[],
  bytesOf: (t: T) => Uint8Array | Promise<Uint8Array>,
  options: WriteOptions,
): Promise<void> {
  const fsync = options.fsync ?? true;

  const tmp = `${path}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
  let fh: FileHandle | undefined;
  let stage = 'creating the temporary file';
  try {
    fh = await open(tmp, 'wx');
    stage = 'writing';
    let position = await writeAll(fh, header, 0);
    for (const t of tensors) position = await writeAll(fh, await bytesOf(t), position);
    if (fsync) {
      stage = 'fsync';
      await fh.sync();
    }
    stage = 'closing';
    const closing = fh;
    fh = undefined;
    await closing.close();
    stage = 'renaming the temporary file';
    await rename(tmp, path);
  } catch (err) {
    if (fh !== undefined) await fh.close().catch(() => {});
    await unlink(tmp).catch(() => {});
    throw ioError(path, stage, err);
  }
  if (fsync) await syncFolder(dirname(path));
}

async function writeAll(fh: FileHandle, bytes: Uint8Array, position: number): Promise<number> {
  let done = 0;
  while (done < bytes.byteLength) {
    const { bytesWritten } = await fh.write(
      bytes,
      done,
      Math.min(CHUNK, bytes.byteLength - done),
      position + done,
    );
    if (bytesWritten <= 0) throw new Error('write made no progress');
    done += bytesWritten;
  }
  return position + done;
}

/** Makes the rename durable where the platform allows fsync on a folder (not on Windows); best effort. */
async function syncFolder(folder: string): Promise<void> {
  let dir: FileHandle | undefined;
  try {
    dir = await open(folder, 'r');
    await dir.sync();
  } catch {
    // Not supported here; the rename itself is still atomic.
  } finally {
    await dir?.close().catch(() => {});
  }
}
