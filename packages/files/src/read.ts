import { constants, type Stats } from 'node:fs';
import { type FileHandle, open, stat } from 'node:fs/promises';
import { FileAccessError, reasonOf } from './errors';

/**
 * Open flags for reading: read-only, non-blocking (opening a FIFO never waits for a writer, even if it appears between
 * the check and the open), and never becoming the controlling terminal.
 */
const READ_FLAGS = constants.O_RDONLY | (constants.O_NONBLOCK ?? 0) | (constants.O_NOCTTY ?? 0);

/** What a non-regular file is, for messages. */
export function fileKind(st: Stats): string {
  if (st.isFile()) return 'a regular file';
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a named pipe (FIFO)';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isSocket()) return 'a socket';
  if (st.isSymbolicLink()) return 'a symbolic link';
  return 'not a regular file';
}

export interface ReadBound {
  /** Largest size accepted, in bytes; a larger file is refused (`TOO_LARGE`) before anything is allocated. */
  readonly maxBytes?: number;
}

export interface OpenedFile {
  readonly handle: FileHandle;
  /** Size in bytes when opened. */
  readonly size: number;
  readonly stats: Stats;
}

function statError(path: string, err: unknown): FileAccessError {
  const code = (err as { code?: unknown }).code;
  if (code === 'ENOENT' || code === 'ENOTDIR')
    return new FileAccessError('NOT_FOUND', path, 'no such file', err);
  return new FileAccessError('IO', path, `stat failed: ${reasonOf(err)}`, err);
}

function checkStats(path: string, st: Stats, bound: ReadBound): void {
  if (!st.isFile()) {
    throw new FileAccessError('NOT_A_FILE', path, `is ${fileKind(st)}, not a regular file`);
  }
  if (bound.maxBytes !== undefined && st.size > bound.maxBytes) {
    throw new FileAccessError(
      'TOO_LARGE',
      path,
      `is ${st.size} bytes, more than the ${bound.maxBytes} bytes accepted for it`,
    );
  }
}

/**
 * Opens a regular file for reading: `stat` first (symbolic links are followed), refusing anything that is not a
 * regular file (a FIFO, a device, a folder) or is larger than `maxBytes`, then opens it non-blocking and checks that
 * what was opened is the same regular file. Throws FileAccessError. The caller closes `handle`.
 */
export async function openRegularFile(path: string, bound: ReadBound = {}): Promise<OpenedFile> {
  let before: Stats;
  try {
    before = await stat(path);
  } catch (err) {
    throw statError(path, err);
  }
  checkStats(path, before, bound);
  let handle: FileHandle;
  try {
    handle = await open(path, READ_FLAGS);
  } catch (err) {
    const e = statError(path, err);
    throw e.code === 'NOT_FOUND' ? e : new FileAccessError('IO', path, `open failed: ${reasonOf(err)}`, err);
  }
  try {
    let st: Stats;
    try {
      st = await handle.stat();
    } catch (err) {
      throw new FileAccessError('IO', path, `stat failed: ${reasonOf(err)}`, err);
    }
    if (st.dev !== before.dev || st.ino !== before.ino) {
      throw new FileAccessError('CHANGED', path, 'was replaced while it was being opened');
    }
    checkStats(path, st, bound);
    return { handle, size: st.size, stats: st };
  } catch (err) {
    await handle.close().catch(() => {});
    throw err;
  }
}

/**
 * The whole content of a regular file of at most `maxBytes` bytes (see {@link openRegularFile}). Reads exactly the
 * size found when opening; a file that shrinks meanwhile is refused (`CHANGED`).
 */
export async function readRegularFile(path: string, bound: ReadBound = {}): Promise<Buffer> {
  const { handle, size } = await openRegularFile(path, bound);
  try {
    const out = Buffer.alloc(size);
    let done = 0;
    while (done < size) {
      let bytesRead: number;
      try {
        ({ bytesRead } = await handle.read(out, done, Math.min(size - done, 1 << 30), done));
      } catch (err) {
        throw new FileAccessError('IO', path, `read failed: ${reasonOf(err)}`, err);
      }
      if (bytesRead === 0)
        throw new FileAccessError('CHANGED', path, `shrank while it was read (${done} of ${size} bytes)`);
      done += bytesRead;
    }
    return out;
  } finally {
    await handle.close().catch(() => {});
  }
}

/** {@link readRegularFile} decoded as UTF-8 (invalid sequences become U+FFFD, as `readFile(path, 'utf8')`). */
export async function readTextFile(path: string, bound: ReadBound = {}): Promise<string> {
  return (await readRegularFile(path, bound)).toString('utf8');
}

/** {@link readTextFile}, or `null` when nothing exists at `path`. */
export async function readTextFileIfExists(path: string, bound: ReadBound = {}): Promise<string | null> {
  try {
    return await readTextFile(path, bound);
  } catch (err) {
    if (err instanceof FileAccessError && err.code === 'NOT_FOUND') return null;
    throw err;
  }
}
