/** Why a prompt-cache file was refused (or could not be written), as a stable machine-readable code. */
export type PromptCacheErrorCode =
  /** The file could not be opened, read or written (`cause` holds the system error). */
  | 'IO'
  /** The file ends before its header or its tensor data do. */
  | 'TRUNCATED'
  /** The file is damaged or inconsistent: bad header JSON, bad or missing entries, metadata checksum mismatch. */
  | 'CORRUPT'
  /** The tensor data's sha256 differs from the `checksum` entry. */
  | 'CHECKSUM'
  /** Not a mnemo prompt cache (`format` is not `mnemo-prompt-cache`). */
  | 'UNKNOWN_FORMAT'
  /** A `format_version` this reader does not know. */
  | 'UNKNOWN_VERSION'
  /** Made for another model (fingerprint mismatch). */
  | 'MODEL_MISMATCH'
  /** Made with another tokenizer (fingerprint mismatch). */
  | 'TOKENIZER_MISMATCH'
  /** Computed with other arithmetic than the loader's (`numerics`, e.g. int8 activations on one side only). */
  | 'NUMERICS_MISMATCH'
  /** Tensor shapes do not fit the metadata or the model (layers, heads, head size, token count vs rows). */
  | 'SHAPE_MISMATCH'
  /** A cache kind or layout this version cannot hold (e.g. an mlx-lm cache class or quantization it lacks). */
  | 'UNSUPPORTED'
  /** Saving was asked with caches or metadata that cannot make a valid file (nothing is written). */
  | 'BAD_INPUT';

/** Every refusal of the prompt-cache file functions. The message names the file and the reason. */
export class PromptCacheError extends Error {
  override readonly name = 'PromptCacheError';
  readonly code: PromptCacheErrorCode;
  readonly file: string | undefined;
  /** The reason alone, without the file and the code (for callers that wrap it). */
  readonly detail: string;

  constructor(code: PromptCacheErrorCode, message: string, opts: { file?: string; cause?: unknown } = {}) {
    super(
      `${opts.file ? `${opts.file}: ` : ''}${message} [${code}]`,
      opts.cause === undefined ? {} : { cause: opts.cause },
    );
    this.code = code;
    this.file = opts.file;
    this.detail = message;
  }
}
