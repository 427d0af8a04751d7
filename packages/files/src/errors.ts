/** Why a file could not be read or written safely, as a stable machine-readable code. */
export type FileAccessErrorCode =
  /** Nothing exists at the path (or a folder on the way is missing). */
  | 'NOT_FOUND'
  /** The path names a folder, FIFO, device, socket: something that is not a regular file. */
  | 'NOT_A_FILE'
  /** The file is larger than the caller's bound; nothing was read. */
  | 'TOO_LARGE'
  /** The file was replaced or shrank between the checks and the read. */
  | 'CHANGED'
  /** Any other operating-system error (`errno` and `cause` hold it). */
  | 'IO';

/**
 * A refused or failed file access. `message` is `<path>: <detail>`; `detail` alone is the reason, for callers that put
 * the path and their own error code around it (so that no message repeats the path or a code).
 */
export class FileAccessError extends Error {
  override readonly name = 'FileAccessError';
  readonly code: FileAccessErrorCode;
  /** The path as the caller gave it. */
  readonly path: string;
  /** The reason, without the path. */
  readonly detail: string;
  /** The system error code (`ENOENT`, `EACCES`, ...) when an operating-system call failed. */
  readonly errno: string | undefined;

  constructor(code: FileAccessErrorCode, path: string, detail: string, cause?: unknown) {
    super(`${path}: ${detail}`, cause === undefined ? {} : { cause });
    this.code = code;
    this.path = path;
    this.detail = detail;
    const errno = (cause as { code?: unknown } | undefined)?.code;
    this.errno = typeof errno === 'string' ? errno : undefined;
  }
}

/**
 * The message of a system error for a detail: Node's `ECODE: description, syscall '/the/path'` without the syscall
 * and path (the caller names the file once itself), e.g. `ENOENT: no such file or directory`.
 */
export function reasonOf(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  const syscall = (err as { syscall?: unknown } | undefined)?.syscall;
  if (typeof syscall !== 'string') return message;
  const cut = message.indexOf(`, ${syscall} '`);
  return cut > 0 ? message.slice(0, cut) : message;
}
