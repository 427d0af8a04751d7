import type { FileHandle } from 'node:fs/promises';
import { stat } from 'node:fs/promises';

/**
 * What identifies a file's content without reading it: device, inode, size, and modification and change times in
 * nanoseconds (as decimal strings). Any write to the file changes its ctime (which user programs cannot set back) and
 * replacing it changes its inode, so an equal identity means the same, unmodified file.
 */
export interface FileIdentity {
  readonly dev: string;
  readonly ino: string;
  readonly size: string;
  readonly mtimeNs: string;
  readonly ctimeNs: string;
}

function fromBigStats(st: {
  dev: bigint;
  ino: bigint;
  size: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
}): FileIdentity {
  return {
    dev: st.dev.toString(),
    ino: st.ino.toString(),
    size: st.size.toString(),
    mtimeNs: st.mtimeNs.toString(),
    ctimeNs: st.ctimeNs.toString(),
  };
}

/** The identity of an open file, now. */
export async function identityOf(handle: FileHandle): Promise<FileIdentity> {
  return fromBigStats(await handle.stat({ bigint: true }));
}

/** The identity of the file at `path` (symbolic links followed), now. */
export async function identityAt(path: string): Promise<FileIdentity> {
  return fromBigStats(await stat(path, { bigint: true }));
}

export function sameIdentity(a: FileIdentity, b: FileIdentity): boolean {
  return (
    a.dev === b.dev &&
    a.ino === b.ino &&
    a.size === b.size &&
    a.mtimeNs === b.mtimeNs &&
    a.ctimeNs === b.ctimeNs
  );
}
