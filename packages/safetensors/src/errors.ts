import { FileAccessError, reasonOf } from '@mnemo/files';

/** What went wrong, as a stable machine-readable code. */
export type SafetensorsErrorCode =
  /** An operating-system error (open, stat, read, write, rename); `cause` holds the original error. */
  | 'IO'
  /** The file (or buffer) ends before the 8-byte length, the header, or a tensor it announces. */
  | 'TRUNCATED'
  /** The header length exceeds {@link MAX_HEADER_SIZE} (100 MB). */
  | 'HEADER_TOO_LARGE'
  /** The header is not UTF-8, not JSON, not an object, or nested too deeply. */
  | 'BAD_JSON'
  /** A tensor entry is not an object or lacks `dtype`, `shape` or `data_offsets` of the right JSON type. */
  | 'BAD_TENSOR'
  /** Unknown dtype name. */
  | 'BAD_DTYPE'
  /** A shape entry is not a non-negative safe integer. */
  | 'BAD_SHAPE'
  /** `data_offsets` is not a pair of non-negative safe integers with begin ≤ end. */
  | 'BAD_OFFSETS'
  /** dtype size × element count differs from the data length (or from `data_offsets`). */
  | 'SIZE_MISMATCH'
  /** A tensor's data ends past the end of the data region. */
  | 'OUT_OF_BOUNDS'
  /** Two tensors share bytes. */
  | 'OVERLAP'
  /** Bytes between two tensors (or before the first) belong to no tensor; the reference implementation refuses this. */
  | 'GAP'
  /** The data region is longer than the tensors it holds; the reference implementation refuses this. */
  | 'TRAILING_DATA'
  /** A name (tensor, JSON key, or a tensor found in two shards) occurs twice. */
  | 'DUPLICATE'
  /** `__metadata__` is not an object of strings. */
  | 'BAD_METADATA'
  /** A tensor name the writer cannot store (`__metadata__`). */
  | 'BAD_NAME'
  /** No tensor of that name, or no safetensors file in a folder. */
  | 'NOT_FOUND'
  /** The file or checkpoint was closed. */
  | 'CLOSED'
  /** `model.safetensors.index.json` is malformed. */
  | 'BAD_INDEX'
  /** The index names a shard that does not exist. */
  | 'MISSING_SHARD'
  /** The index maps a tensor to a shard that does not hold it. */
  | 'MISSING_TENSOR'
  /** A shard holds a tensor the index does not map to it. */
  | 'UNMAPPED_TENSOR'
  /** Larger than this runtime can hold in one typed array. */
  | 'TOO_LARGE';

export interface SafetensorsErrorDetails {
  /** File concerned (or `<memory>` for in-memory buffers). */
  readonly file?: string;
  /** Tensor concerned, when there is one. */
  readonly tensor?: string;
  readonly cause?: unknown;
}

/** Every failure of this package, from a bad header byte to a failed rename. */
export class SafetensorsError extends Error {
  override readonly name = 'SafetensorsError';
  readonly code: SafetensorsErrorCode;
  readonly file: string | undefined;
  readonly tensor: string | undefined;
  /** The reason alone, without the file, the tensor and the code (for callers that wrap it in their own error). */
  readonly detail: string;

  constructor(code: SafetensorsErrorCode, detail: string, where: SafetensorsErrorDetails = {}) {
    const prefix = [where.file, where.tensor === undefined ? undefined : `tensor ${quoteName(where.tensor)}`]
      .filter((s) => s !== undefined)
      .join(': ');
    super(
      `${prefix ? `${prefix}: ` : ''}${detail} [${code}]`,
      where.cause === undefined ? {} : { cause: where.cause },
    );
    this.code = code;
    this.file = where.file;
    this.tensor = where.tensor;
    this.detail = where.tensor === undefined ? detail : `tensor ${quoteName(where.tensor)}: ${detail}`;
  }
}

/** A name for messages, quoted and shortened when very long. */
export function quoteName(name: string): string {
  return JSON.stringify(name.length > 200 ? `${name.slice(0, 200)}…` : name);
}

/** Label used in messages for data that does not come from a file. */
export const MEMORY_SOURCE = '<memory>';

/**
 * Wraps a Node fs error (or a refusal of `@mnemo/files`) as an `IO` SafetensorsError naming the file; passes
 * SafetensorsErrors through.
 */
export function ioError(file: string, action: string, err: unknown): SafetensorsError {
  if (err instanceof SafetensorsError) return err;
  if (err instanceof FileAccessError) return new SafetensorsError('IO', err.detail, { file, cause: err });
  return new SafetensorsError('IO', `${action} failed: ${reasonOf(err)}`, { file, cause: err });
}
