import type { Stats } from 'node:fs';
import { type FileHandle, lstat, open, readlink, rename, unlink } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { FileAccessError, reasonOf } from './errors';
import { fileKind } from './read';
import { registerTemp, removeStaleTemps, tempPathFor, unregisterTemp } from './temp';

export interface AtomicWriteOptions {
  /** fsync the file before the rename and the folder after it (default true). */
  readonly fsync?: boolean;
  /** Permissions of a new file, before the umask (default 0o600: only the owner may read it). */
  readonly newFileMode?: number;
}

/** Most symbolic links followed to reach the file to write (as Linux's limit). */
const MAX_LINKS = 40;

/** Where writing `path` lands: the file itself, or the final target of a chain of symbolic links. */
export interface WriteTarget {
  /** Absolute path of the file that will be replaced or created. */
  readonly target: string;
  /** What is there now (after following links), or null when nothing is. */
  readonly existing: Stats | null;
}

/**
 * Follows `path` through symbolic links (relative ones are relative to the link's folder; a dangling link leads to
 * the file it names, which will be created) and refuses a destination that exists and is not a regular file.
 */
export async function resolveWriteTarget(path: string): Promise<WriteTarget> {
  let p = resolve(path);
  for (let hops = 0; hops <= MAX_LINKS; hops++) {
    let st: Stats;
    try {
      st = await lstat(p);
    } catch (err) {
      if ((err as { code?: unknown }).code === 'ENOENT') return { target: p, existing: null };
      throw new FileAccessError('IO', path, `stat failed: ${reasonOf(err)}`, err);
    }
    if (st.isSymbolicLink()) {
      let link: string;
      try {
        link = await readlink(p);
      } catch (err) {
        throw new FileAccessError('IO', path, `readlink failed: ${reasonOf(err)}`, err);
      }
      p = resolve(dirname(p), link);
      continue;
    }
    if (!st.isFile()) {
      const via = p === resolve(path) ? '' : ` (the link leads to ${p})`;
      throw new FileAccessError(
        'NOT_A_FILE',
        path,
        `is ${fileKind(st)}${via}, not a regular file: refusing to replace it (nothing was written)`,
      );
    }
    return { target: p, existing: st };
  }
  throw new FileAccessError('IO', path, `more than ${MAX_LINKS} symbolic links to follow`);
}

/**
 * Writes a file atomically: `write` fills a new temporary file beside the destination, which is then fsynced and
 * renamed over it, so readers see either the old file or the complete new one, never a part.
 *
 * - A destination that exists and is not a regular file (a device such as /dev/null, a FIFO, a folder) is refused with
 *   `NOT_A_FILE` before anything is created.
 * - A symbolic link is written through: its final target is replaced atomically (the temporary file is created in the
 *   target's folder) and the link stays a link, as editors do.
 * - An existing file keeps its permission bits (and, when running as root, its owner); a new file gets
 *   `newFileMode` (0o600) minus the umask.
 * - On any failure, and when the process is interrupted (SIGINT, SIGTERM, SIGHUP) or exits meanwhile, the temporary
 *   file is removed and the destination is untouched. Temporary files of writers that were killed outright (SIGKILL)
 *   are removed by the next atomic write to the same folder.
 *
 * Errors thrown by `write` are rethrown as they are; the writer's own failures are FileAccessErrors naming the step.
 * Returns the path of the file written (the link's target for a symbolic link).
 */
export async function writeFileAtomic(
  path: string,
  write: (handle: FileHandle) => Promise<void>,
  options: AtomicWriteOptions = {},
): Promise<string> {
  const fsync = options.fsync ?? true;
  const { target, existing } = await resolveWriteTarget(path);
  const folder = dirname(target);
  await removeStaleTemps(folder);

  const tmp = tempPathFor(target);
  registerTemp(tmp);
  let fh: FileHandle | undefined;
  let stage = 'creating the temporary file';
  try {
    fh = await open(tmp, 'wx', options.newFileMode ?? 0o600);
    stage = 'writing';
    try {
      await write(fh);
    } catch (err) {
      throw new WrappedCallbackError(err);
    }
    if (existing !== null) {
      stage = 'setting the permissions';
      await fh.chmod(existing.mode & 0o777);
      if (process.getuid?.() === 0 && (existing.uid !== 0 || existing.gid !== 0))
        await fh.chown(existing.uid, existing.gid).catch(() => {});
    }
    if (fsync) {
      stage = 'fsync';
      await fh.sync();
    }
    stage = 'closing';
    const closing = fh;
    fh = undefined;
    await closing.close();
    stage = 'renaming the temporary file';
    await rename(tmp, target);
  } catch (err) {
    if (fh !== undefined) await fh.close().catch(() => {});
    await unlink(tmp).catch(() => {});
    unregisterTemp(tmp);
    if (err instanceof WrappedCallbackError) throw err.inner;
    throw new FileAccessError('IO', path, `${stage} failed: ${reasonOf(err)}`, err);
  }
  unregisterTemp(tmp);
  if (fsync) await syncFolder(folder);
  return target;
}

/** Carries an error of the caller's `write` through the cleanup, so it is rethrown unchanged. */
class WrappedCallbackError {
  constructor(readonly inner: unknown) {}
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
