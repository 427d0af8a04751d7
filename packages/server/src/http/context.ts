import type { Tokenizer } from '@mnemo/tokenizer';
import type { Engine } from '../engine';
import type { Metrics } from '../metrics';
import { HttpError } from './errors';
import type { TokenText } from './token-text';

/** What the routes share. */
export interface RouteContext {
  /** Requests whose metrics the route counted itself (streams bypass fastify's response hooks). */
  readonly counted: WeakSet<object>;
  readonly engine: Engine;
  readonly metrics: Metrics;
  readonly tokenizer: Tokenizer;
  readonly tokenText: TokenText;
  readonly modelId: string;
  /** Longest prompt + completion, in tokens. */
  readonly contextLength: number;
  /** Largest max_tokens (also the default). */
  readonly maxTokens: number;
  readonly systemFingerprint: string;
  /** A disk or Redis tier is on: explicitly marked prefixes are persisted. */
  readonly persistent: boolean;
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
