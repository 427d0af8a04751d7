import { constants } from 'node:buffer';
import { readSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { reasonOf } from '@mnemo/files';
import { SafetensorsError } from './errors';

/** Largest single read/write request (Node refuses more than 2^31 − 1 bytes per call). */
const CHUNK = 1 << 30;

/**
 * A fresh zeroed byte array of `n` bytes with its own ArrayBuffer (so it starts at offset 0 and any typed view of a
 * matching length fits). Every allocation sized by file contents goes through here, after `n` was checked against
 * the file size.
 */
export function allocBytes(n: number, file: string, tensor?: string): Uint8Array {
  if (n > constants.MAX_LENGTH) {
    throw new SafetensorsError(
      'TOO_LARGE',
      `${n} bytes exceed this runtime's ${constants.MAX_LENGTH}-byte array limit`,
      {
        file,
        tensor,
      },
    );
  }
  return new Uint8Array(n);
}

/** Reads exactly `out.byteLength` bytes at `position`; fails with TRUNCATED if the file ends first. */
export async function readFully(
  fh: FileHandle,
  out: Uint8Array,
  position: number,
  file: string,
  tensor?: string,
): Promise<void> {
  let done = 0;
  while (done < out.byteLength) {
    const want = Math.min(CHUNK, out.byteLength - done);
    let bytesRead: number;
    try {
      ({ bytesRead } = await fh.read(out, done, want, position + done));
    } catch (err) {
      throw ioReadError(file, tensor, err);
    }
    if (bytesRead === 0) throw shortRead(file, tensor, position, out.byteLength, done);
    done += bytesRead;
  }
}

/** Synchronous {@link readFully} on a file descriptor. */
export function readFullySync(
  fd: number,
  out: Uint8Array,
  position: number,
  file: string,
  tensor?: string,
): void {
  let done = 0;
  while (done < out.byteLength) {
    const want = Math.min(CHUNK, out.byteLength - done);
    let bytesRead: number;
    try {
      bytesRead = readSync(fd, out, done, want, position + done);
    } catch (err) {
      throw ioReadError(file, tensor, err);
    }
    if (bytesRead === 0) throw shortRead(file, tensor, position, out.byteLength, done);
    done += bytesRead;
  }
}

function shortRead(file: string, tensor: string | undefined, position: number, want: number, got: number) {
  return new SafetensorsError(
    'TRUNCATED',
    `file ended after ${got} of ${want} bytes at offset ${position} (was it changed after opening?)`,
    { file, tensor },
  );
}

function ioReadError(file: string, tensor: string | undefined, err: unknown) {
  return new SafetensorsError('IO', `read failed: ${reasonOf(err)}`, { file, tensor, cause: err });
}
