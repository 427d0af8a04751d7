/** A tokenizer file is missing, unreadable or holds something this package cannot use. Names the file concerned. */
export class TokenizerLoadError extends Error {
  override readonly name = 'TokenizerLoadError';
  /** Path (or name) of the file concerned. */
  readonly file: string;
  constructor(file: string, message: string, options?: { cause?: unknown }) {
    super(`${file}: ${message}`, options);
    this.file = file;
  }
}

/** A chat template is missing, cannot be chosen, fails to parse, or raised an exception while rendering. */
export class ChatTemplateError extends Error {
  override readonly name = 'ChatTemplateError';
  /** Name of the template concerned (`default`, `tool_use`, ...), when known. */
  readonly templateName: string | null;
  constructor(templateName: string | null, message: string, options?: { cause?: unknown }) {
    super(templateName === null ? message : `chat template "${templateName}": ${message}`, options);
    this.templateName = templateName;
  }
}
