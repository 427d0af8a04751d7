/**
 * Anthropic Messages (text only): POST /v1/messages. A `cache_control: {type: "ephemeral"}` block marks a prefix to
 * persist: the server computes it (if no tier already had it) and writes it to the disk and Redis tiers before
 * generating. Usage is honest: `cache_read_input_tokens` are prompt tokens taken from any cache tier,
 * `cache_creation_input_tokens` the tokens of marked prefixes this request computed and persisted, and
 * `input_tokens` the rest.
 */
import { randomBytes } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import type { CacheReport, JobResult } from '../protocol';
import { checkModel, checkPromptText, completionBudget, type RouteContext } from './context';
import { type Responder, runRequest } from './run';
import { messagesSchema } from './schemas';

type Block = { type: 'text'; text: string; cache_control?: { type: 'ephemeral' } };

interface MessagesBody {
  model: string;
  max_tokens: number;
  system?: string | Block[];
  messages: { role: 'user' | 'assistant'; content: string | Block[] }[];
  stop_sequences?: string[];
  temperature?: number;
  top_p?: number;
  top_k?: number;
  stream?: boolean;
}

const event = (name: string, data: unknown) => `event: ${name}\ndata: ${JSON.stringify(data)}\n\n`;

function stopReason(r: JobResult): 'end_turn' | 'max_tokens' | 'stop_sequence' {
  return r.reason === 'length' ? 'max_tokens' : r.reason === 'stop' ? 'stop_sequence' : 'end_turn';
}

function usageOf(promptTokens: number, read: number, created: number, output: number) {
  return {
    input_tokens: promptTokens - read - created,
    output_tokens: output,
    cache_creation_input_tokens: created,
    cache_read_input_tokens: read,
  };
}

function responder(ctx: RouteContext, breakpoints: readonly number[], promptTokens: number): Responder {
  const id = `msg_${randomBytes(12).toString('hex')}`;
  const message = { id, type: 'message', role: 'assistant', model: ctx.modelId };
  // What `begin` can tell before generating: marked prefixes longer than the cached part will be computed and persisted.
  const expectedCreation = (r: CacheReport) => {
    const marks = ctx.persistent ? breakpoints.filter((n) => n < promptTokens) : [];
    return marks.length > 0 ? Math.max(0, Math.max(...marks) - r.cachedTokens) : 0;
  };
  return {
    begin: (r) => [
      event('message_start', {
        type: 'message_start',
        message: {
          ...message,
          content: [],
          stop_reason: null,
          stop_sequence: null,
          usage: usageOf(promptTokens, r.cachedTokens, expectedCreation(r), 0),
        },
      }),
      event('content_block_start', {
        type: 'content_block_start',
        index: 0,
        content_block: { type: 'text', text: '' },
      }),
      event('ping', { type: 'ping' }),
    ],
    chunk: (text) =>
      text
        ? [
            event('content_block_delta', {
              type: 'content_block_delta',
              index: 0,
              delta: { type: 'text_delta', text },
            }),
          ]
        : [],
    end: (r) => [
      event('content_block_stop', { type: 'content_block_stop', index: 0 }),
      event('message_delta', {
        type: 'message_delta',
        delta: { stop_reason: stopReason(r), stop_sequence: r.stopSequence },
        usage: usageOf(r.promptTokens, r.cachedTokens, r.persistedTokens, r.completionTokens),
      }),
      event('message_stop', { type: 'message_stop' }),
    ],
    error: (status, msg) =>
      event('error', {
        type: 'error',
        error: { type: status >= 500 ? 'api_error' : 'invalid_request_error', message: msg },
      }),
    body: (text, _tokens, r) => ({
      ...message,
      content: [{ type: 'text', text }],
      stop_reason: stopReason(r),
      stop_sequence: r.stopSequence,
      usage: usageOf(r.promptTokens, r.cachedTokens, r.persistedTokens, r.completionTokens),
    }),
  };
}

export function registerAnthropic(app: FastifyInstance, ctx: RouteContext): void {
  app.post<{ Body: MessagesBody }>(
    '/v1/messages',
    { schema: { body: messagesSchema } },
    async (req, reply) => {
      const b = req.body;
      checkModel(ctx, b.model);
      const texts = (c: string | Block[] | undefined) =>
        c === undefined ? [] : typeof c === 'string' ? [c] : c.map((x) => x.text);
      checkPromptText(ctx, [...texts(b.system), ...b.messages.flatMap((m) => texts(m.content))]);
      const { tokens, breakpoints } = await ctx.tokenize.tokenize({
        op: 'anthropic',
        system: b.system,
        messages: b.messages,
      });
      const maxTokens = completionBudget(ctx, tokens.length, b.max_tokens);
      await runRequest(ctx, req, reply, {
        route: 'messages',
        tokens,
        params: {
          maxTokens,
          temperature: b.temperature ?? 1,
          topP: b.top_p ?? 1,
          topK: b.top_k ?? 0,
          seed: undefined,
          stop: b.stop_sequences ?? [],
          logprobs: null,
          persistAt: breakpoints,
        },
        stream: b.stream === true,
        responder: responder(ctx, breakpoints, tokens.length),
      });
      return reply;
    },
  );
}
