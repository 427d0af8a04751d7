import { constants } from 'node:buffer';
import type { FileHandle } from 'node:fs/promises';
import { GgufError } from './errors';

/** Largest single read request (Node refuses more than 2^31 − 1 bytes per call). */
const CHUNK = 1 << 30;

/**
 * A fresh zeroed byte array of `n` bytes with its own ArrayBuffer. Every allocation sized by file contents goes
 * through here, after `n` was checked against the file size.
 */
export function allocBytes(n: number, file: string, tensor?: string): Uint8Array {
  if (n > constants.MAX_LENGTH)
    throw new GgufError(
      'TOO_LARGE',
      `${n} bytes exceed this runtime's ${constants.MAX_LENGTH}-byte array limit`,
      {
        file,
        tensor,
      },
    );
  return new Uint8Array(n);
}

/** Reads exactly `out.byteLength` bytes at `position`; TRUNCATED if the file ends first. */
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
      const reason = err instanceof Error ? err.message : String(err);
      throw new GgufError('IO', `read failed: ${reason}`, { file, tensor, cause: err });
    }
    if (bytesRead === 0)
      throw new GgufError(
        'TRUNCATED',
        `file ended after ${done} of ${out.byteLength} bytes at offset ${position} (was it changed after opening?)`,
        { file, tensor },
      );
    done += bytesRead;
  }
}
