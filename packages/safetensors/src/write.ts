import type { FileHandle } from 'node:fs/promises';
import { writeFileAtomic } from '@mnemo/files';
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
 * header and data go to `<name>.tmp-<pid>-<random>` in the destination's folder, which is fsynced and renamed over it.
 * On any failure (and on SIGINT/SIGTERM) the temporary file is removed and an existing file at `path` is untouched.
 * A destination that is not a regular file (a device, a FIFO, a folder) is refused (`IO`); a symbolic link is written
 * through to its target; an existing file keeps its permissions, a new one gets 0600 minus the umask (see
 * `writeFileAtomic` of `@mnemo/files`). Data is laid out in the given order; the header is padded with spaces so the
 * data starts 8-byte aligned.
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
  try {
    await writeFileAtomic(
      path,
      async (fh) => {
        let position = await writeAll(fh, header, 0);
        for (const t of tensors) position = await writeAll(fh, await bytesOf(t), position);
      },
      { fsync: options.fsync ?? true },
    );
  } catch (err) {
    throw ioError(path, 'writing', err);
  }
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
