/** Error bodies: OpenAI's `{error: {message, type, param, code}}` and Anthropic's `{type: 'error', error: {type, message}}`. */

/** An error a route answers with: status, message, and the OpenAI `code`/`param` when there is one. */
export class HttpError extends Error {
  override readonly name = 'HttpError';
  constructor(
    readonly status: number,
    message: string,
    readonly code: string | null = null,
    readonly param: string | null = null,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

function openaiType(status: number): string {
  if (status === 401) return 'authentication_error';
  if (status === 403) return 'permission_error';
  if (status === 404) return 'not_found_error';
  if (status === 429) return 'rate_limit_error';
  if (status >= 500) return 'server_error';
  return 'invalid_request_error';
}

export function openaiErrorBody(
  status: number,
  message: string,
  code: string | null = null,
  param: string | null = null,
) {
  return { error: { message, type: openaiType(status), param, code } };
}

function anthropicType(status: number): string {
  if (status === 401) return 'authentication_error';
  if (status === 403) return 'permission_error';
  if (status === 404) return 'not_found_error';
  if (status === 413) return 'request_too_large';
  if (status === 429) return 'rate_limit_error';
  if (status === 503) return 'overloaded_error';
  if (status >= 500) return 'api_error';
  return 'invalid_request_error';
}

export function anthropicErrorBody(status: number, message: string) {
  return { type: 'error', error: { type: anthropicType(status), message } };
}

/** The body for an error on `url`: Anthropic's shape under /v1/messages, OpenAI's elsewhere. */
export function errorBody(
  url: string,
  status: number,
  message: string,
  code: string | null = null,
  param: string | null = null,
) {
  return url.startsWith('/v1/messages')
    ? anthropicErrorBody(status, message)
    : openaiErrorBody(status, message, code, param);
}
