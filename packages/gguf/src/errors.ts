import { FileAccessError, reasonOf } from '@mnemo/files';

/** What went wrong, as a stable machine-readable code. */
export type GgufErrorCode =
  /** An operating-system error (open, stat, read); `cause` holds the original error. */
  | 'IO'
  /** The file ends before the header, a value or a tensor it announces. */
  | 'TRUNCATED'
  /** The file does not start with `GGUF`. */
  | 'BAD_MAGIC'
  /** A version other than 2 or 3 (version 1, a big-endian file, or garbage). */
  | 'BAD_VERSION'
  /** A metadata value type that does not exist, or a value of the wrong type for a key the format defines. */
  | 'BAD_VALUE'
  /** A string (key, value or tensor name) that is not valid UTF-8. */
  | 'BAD_STRING'
  /** Arrays nested deeper than {@link MAX_ARRAY_DEPTH}. */
  | 'TOO_DEEP'
  /** A key or tensor name that occurs twice. */
  | 'DUPLICATE'
  /** A tensor info with a bad dimension count, dimension, unknown type, or a row that is not whole blocks. */
  | 'BAD_TENSOR'
  /** `general.alignment` that is not a power of two, or a tensor offset that is not a multiple of it. */
  | 'BAD_ALIGNMENT'
  /** A tensor's data ends past the end of the file. */
  | 'OUT_OF_BOUNDS'
  /** Two tensors share bytes. */
  | 'OVERLAP'
  /** A count, size or offset larger than this runtime can address (beyond 2^53, or one typed array). */
  | 'TOO_LARGE'
  /** No tensor or key of that name. */
  | 'NOT_FOUND'
  /** The file was closed. */
  | 'CLOSED';

export interface GgufErrorDetails {
  /** File concerned (or `<memory>` for in-memory buffers). */
  readonly file?: string;
  /** Tensor or metadata key concerned, when there is one. */
  readonly tensor?: string;
  readonly key?: string;
  readonly cause?: unknown;
}

/** Every failure of this package, from a bad header byte to a failed read. */
export class GgufError extends Error {
  override readonly name = 'GgufError';
  readonly code: GgufErrorCode;
  readonly file: string | undefined;
  readonly tensor: string | undefined;
  readonly key: string | undefined;

  constructor(code: GgufErrorCode, detail: string, where: GgufErrorDetails = {}) {
    const prefix = [
      where.file,
      where.key === undefined ? undefined : `key ${quoteName(where.key)}`,
      where.tensor === undefined ? undefined : `tensor ${quoteName(where.tensor)}`,
    ]
      .filter((s) => s !== undefined)
      .join(': ');
    super(
      `${prefix ? `${prefix}: ` : ''}${detail} [${code}]`,
      where.cause === undefined ? {} : { cause: where.cause },
    );
    this.code = code;
    this.file = where.file;
    this.tensor = where.tensor;
    this.key = where.key;
  }
}

/** A name for messages, quoted and shortened when very long. */
export function quoteName(name: string): string {
  return JSON.stringify(name.length > 200 ? `${name.slice(0, 200)}…` : name);
}

/** Label used in messages for data that does not come from a file. */
export const MEMORY_SOURCE = '<memory>';

/**
 * Wraps a Node fs error (or a refusal of `@mnemo/files`: not a regular file, not found) as an `IO` GgufError naming
 * the file; passes GgufErrors through.
 */
export function ioError(file: string, action: string, err: unknown): GgufError {
  if (err instanceof GgufError) return err;
  if (err instanceof FileAccessError) return new GgufError('IO', err.detail, { file, cause: err });
  const reason = reasonOf(err);
  return new GgufError('IO', `${action} failed: ${reason}`, { file, cause: err });
}
