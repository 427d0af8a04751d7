import type { Tokenizer } from '@mnemo/tokenizer';
import type { Engine } from '../engine';
import type { Metrics } from '../metrics';
import type { TokenizerWorker } from '../tokenize/client';
import { HttpError } from './errors';
import type { TokenText } from './token-text';

/** What the routes share. */
export interface RouteContext {
  /** Requests whose metrics the route counted itself (streams bypass fastify's response hooks). */
  readonly counted: WeakSet<object>;
  readonly engine: Engine;
  readonly metrics: Metrics;
  /** Renders and tokenizes prompts off the HTTP thread. */
  readonly tokenize: TokenizerWorker;
  readonly tokenText: TokenText;
  readonly modelId: string;
  /** Longest prompt + completion, in tokens. */
  readonly contextLength: number;
  /** Largest max_tokens (also the default). */
  readonly maxTokens: number;
  readonly systemFingerprint: string;
  /** A disk or Redis tier is on: explicitly marked prefixes are persisted. */
  readonly persistent: boolean;
  /**
   * Bytes of text that certainly make more tokens than the context holds (context × the longest token's bytes × 4,
   * the 4 for normalizers that shrink text): longer prompts are refused before they are tokenized, so a huge body
   * never keeps the HTTP thread busy tokenizing.
   */
  readonly maxPromptBytes: number;
}

/** Refuses prompt text that cannot fit in the context, before tokenizing it. */
export function checkPromptText(ctx: RouteContext, texts: readonly string[]): void {
  let bytes = 0;
  for (const t of texts) bytes += Buffer.byteLength(t, 'utf8');
  if (bytes > ctx.maxPromptBytes)
    throw new HttpError(
      400,
      `This model's maximum context length is ${ctx.contextLength} tokens, and the prompt's ${bytes} bytes of text cannot fit in it.`,
      'context_length_exceeded',
      'messages',
    );
}

/** The longest token of the vocabulary, in UTF-8 bytes of its text (at least 1). */
export function longestTokenBytes(tokenizer: Tokenizer, vocabSize: number): number {
  let max = 1;
  for (let id = 0; id < vocabSize; id++) {
    const piece = tokenizer.idToToken(id);
    if (piece === undefined) continue;
    max = Math.max(max, Buffer.byteLength(piece, 'utf8'), Buffer.byteLength(tokenizer.decode([id]), 'utf8'));
  }
  return max;
}

export function checkModel(ctx: RouteContext, model: string): void {
  if (model !== ctx.modelId)
    throw new HttpError(
      404,
      `The model '${model}' does not exist: this server serves '${ctx.modelId}'`,
      'model_not_found',
      'model',
    );
}

/** The completion budget of a request: what it asked for, checked against the limits and the context. */
export function completionBudget(
  ctx: RouteContext,
  promptTokens: number,
  requested: number | null | undefined,
  param = 'max_tokens',
): number {
  const context = ctx.contextLength;
  if (promptTokens === 0) throw new HttpError(400, 'the prompt has no tokens', 'invalid_prompt', 'prompt');
  if (promptTokens >= context)
    throw new HttpError(
      400,
      `This model's maximum context length is ${context} tokens, and the prompt alone has ${promptTokens} tokens.`,
      'context_length_exceeded',
      'messages',
    );
  if (requested === null || requested === undefined) return Math.min(ctx.maxTokens, context - promptTokens);
  if (requested > ctx.maxTokens)
    throw new HttpError(
      400,
      `${param} ${requested} is over this server's limit of ${ctx.maxTokens}`,
      'invalid_value',
      param,
    );
  if (promptTokens + requested > context)
    throw new HttpError(
      400,
      `This model's maximum context length is ${context} tokens. However, you requested ${promptTokens + requested} tokens (${promptTokens} in the prompt, ${requested} for the completion). Please reduce the prompt or the completion length.`,
      'context_length_exceeded',
      param,
    );
  return requested;
}

export function stopList(stop: string | readonly string[] | null | undefined): string[] {
  if (stop === null || stop === undefined) return [];
  return typeof stop === 'string' ? [stop] : [...stop];
}
