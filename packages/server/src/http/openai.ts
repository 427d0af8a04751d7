/** OpenAI routes: POST /v1/chat/completions, POST /v1/completions, GET /v1/models. */
import { randomBytes } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import type { JobParams, JobResult, TokenOut } from '../protocol';
import { type TextContent, textOf } from '../tokenize/prompt';
import { checkModel, checkPromptText, completionBudget, type RouteContext, stopList } from './context';
import { type Responder, runRequest } from './run';
import { chatCompletionSchema, completionSchema } from './schemas';

interface Sampling {
  temperature?: number | null;
  top_p?: number | null;
  seed?: number | null;
  stop?: string | string[] | null;
  stream?: boolean | null;
  stream_options?: { include_usage?: boolean } | null;
}

interface ChatBody extends Sampling {
  model: string;
  messages: { role: string; content?: TextContent; name?: string }[];
  max_tokens?: number | null;
  max_completion_tokens?: number | null;
  logprobs?: boolean | null;
  top_logprobs?: number | null;
}

interface CompletionBody extends Sampling {
  model: string;
  prompt: string | string[] | number[] | number[][];
  max_tokens?: number | null;
  logprobs?: number | null;
}

const sse = (v: unknown) => `data: ${JSON.stringify(v)}\n\n`;
const newId = (prefix: string) => `${prefix}-${randomBytes(12).toString('hex')}`;

function usage(r: JobResult) {
  return {
    prompt_tokens: r.promptTokens,
    completion_tokens: r.completionTokens,
    total_tokens: r.promptTokens + r.completionTokens,
    prompt_tokens_details: { cached_tokens: r.cachedTokens },
    completion_tokens_details: { reasoning_tokens: 0 },
  };
}

function finishReason(r: JobResult): 'stop' | 'length' {
  return r.reason === 'length' ? 'length' : 'stop';
}

function params(b: Sampling, maxTokens: number, logprobs: number | null): JobParams {
  return {
    maxTokens,
    temperature: b.temperature ?? 1,
    topP: b.top_p ?? 1,
    topK: 0,
    seed: b.seed ?? undefined,
    stop: stopList(b.stop),
    logprobs,
    persistAt: [],
  };
}

function chatResponder(ctx: RouteContext, b: ChatBody, logprobs: boolean): Responder {
  const id = newId('chatcmpl');
  const created = Math.floor(Date.now() / 1000);
  const includeUsage = b.stream_options?.include_usage === true;
  const base = {
    id,
    object: 'chat.completion.chunk',
    created,
    model: ctx.modelId,
    system_fingerprint: ctx.systemFingerprint,
  };
  const entry = (t: TokenOut) => {
    const s = ctx.tokenText.of(t.id);
    return {
      token: s.text,
      logprob: t.logprob,
      bytes: s.bytes,
      top_logprobs: t.top.map((a) => {
        const o = ctx.tokenText.of(a.id);
        return { token: o.text, logprob: a.logprob, bytes: o.bytes };
      }),
    };
  };
  const chunk = (choice: Record<string, unknown>) =>
    sse({
      ...base,
      choices: [{ index: 0, logprobs: null, finish_reason: null, ...choice }],
      ...(includeUsage ? { usage: null } : {}),
    });
  return {
    begin: () => [chunk({ delta: { role: 'assistant', content: '' } })],
    chunk: (text, token) =>
      token || text
        ? [
            chunk({
              delta: { content: text },
              logprobs: logprobs && token ? { content: [entry(token)], refusal: null } : null,
            }),
          ]
        : [],
    end: (r) => [
      chunk({ delta: {}, finish_reason: finishReason(r) }),
      ...(includeUsage ? [sse({ ...base, choices: [], usage: usage(r) })] : []),
      'data: [DONE]\n\n',
    ],
    error: (status, message) =>
      sse({
        error: {
          message,
          type: status >= 500 ? 'server_error' : 'invalid_request_error',
          param: null,
          code: null,
        },
      }),
    body: (text, tokens, r) => ({
      id,
      object: 'chat.completion',
      created,
      model: ctx.modelId,
      system_fingerprint: ctx.systemFingerprint,
      choices: [
        {
          index: 0,
          message: { role: 'assistant', content: text, refusal: null },
          logprobs: logprobs ? { content: tokens.map(entry), refusal: null } : null,
          finish_reason: finishReason(r),
        },
      ],
      usage: usage(r),
    }),
  };
}

function completionResponder(ctx: RouteContext, b: CompletionBody, logprobs: number | null): Responder {
  const id = newId('cmpl');
  const created = Math.floor(Date.now() / 1000);
  const includeUsage = b.stream_options?.include_usage === true;
  const base = {
    id,
    object: 'text_completion',
    created,
    model: ctx.modelId,
    system_fingerprint: ctx.systemFingerprint,
  };
  const legacy = (tokens: readonly TokenOut[], offset0: number) => {
    let offset = offset0;
    const out = {
      tokens: [] as string[],
      token_logprobs: [] as number[],
      top_logprobs: [] as Record<string, number>[],
      text_offset: [] as number[],
    };
    for (const t of tokens) {
      const s = ctx.tokenText.of(t.id).text;
      out.tokens.push(s);
      out.token_logprobs.push(t.logprob);
      out.top_logprobs.push(Object.fromEntries(t.top.map((a) => [ctx.tokenText.of(a.id).text, a.logprob])));
      out.text_offset.push(offset);
      offset += s.length;
    }
    return out;
  };
  let streamed = 0;
  const chunk = (choice: Record<string, unknown>) =>
    sse({
      ...base,
      choices: [{ index: 0, text: '', logprobs: null, finish_reason: null, ...choice }],
      ...(includeUsage ? { usage: null } : {}),
    });
  return {
    begin: () => [],
    chunk: (text, token) => {
      if (!token && !text) return [];
      const lp = logprobs !== null && token ? legacy([token], streamed) : null;
      streamed += text.length;
      return [chunk({ text, logprobs: lp })];
    },
    end: (r) => [
      chunk({ finish_reason: finishReason(r) }),
      ...(includeUsage ? [sse({ ...base, choices: [], usage: usage(r) })] : []),
      'data: [DONE]\n\n',
    ],
    error: (status, message) =>
      sse({
        error: {
          message,
          type: status >= 500 ? 'server_error' : 'invalid_request_error',
          param: null,
          code: null,
        },
      }),
    body: (text, tokens, r) => ({
      ...base,
      choices: [
        {
          index: 0,
          text,
          logprobs: logprobs !== null ? legacy(tokens, 0) : null,
          finish_reason: finishReason(r),
        },
      ],
      usage: usage(r),
    }),
  };
}

export function registerOpenAI(app: FastifyInstance, ctx: RouteContext): void {
  app.get('/v1/models', async () => ({
    object: 'list',
    data: [{ id: ctx.modelId, object: 'model', created: 0, owned_by: 'mnemo' }],
  }));

  app.post<{ Body: ChatBody }>(
    '/v1/chat/completions',
    { schema: { body: chatCompletionSchema } },
    async (req, reply) => {
      const b = req.body;
      checkModel(ctx, b.model);
      checkPromptText(
        ctx,
        b.messages.map((m) => textOf(m.content)),
      );
      const { tokens } = await ctx.tokenize.tokenize({ op: 'chat', messages: b.messages });
      const requested = b.max_completion_tokens ?? b.max_tokens;
      const maxTokens = completionBudget(
        ctx,
        tokens.length,
        requested,
        b.max_completion_tokens != null ? 'max_completion_tokens' : 'max_tokens',
      );
      const logprobs = b.logprobs === true;
      await runRequest(ctx, req, reply, {
        route: 'chat',
        tokens,
        params: params(b, maxTokens, logprobs ? (b.top_logprobs ?? 0) : null),
        stream: b.stream === true,
        responder: chatResponder(ctx, b, logprobs),
      });
      return reply;
    },
  );

  app.post<{ Body: CompletionBody }>(
    '/v1/completions',
    { schema: { body: completionSchema } },
    async (req, reply) => {
      const b = req.body;
      checkModel(ctx, b.model);
      if (typeof b.prompt === 'string') checkPromptText(ctx, [b.prompt]);
      else if (typeof b.prompt[0] === 'string') checkPromptText(ctx, b.prompt as string[]);
      const { tokens } = await ctx.tokenize.tokenize({
        op: 'completion',
        prompt: b.prompt,
        vocabSize: ctx.engine.info.vocabSize,
      });
      const maxTokens = completionBudget(ctx, tokens.length, b.max_tokens ?? 16);
      const logprobs = b.logprobs ?? null;
      await runRequest(ctx, req, reply, {
        route: 'completions',
        tokens,
        params: params(b, maxTokens, logprobs),
        stream: b.stream === true,
        responder: completionResponder(ctx, b, logprobs),
      });
      return reply;
    },
  );
}
