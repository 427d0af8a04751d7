import OpenAI from 'openai';
import type { ChatCompletionCreateParamsNonStreaming } from 'openai/resources/chat/completions';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MODEL_ID, metric, startTestServer, type TestServer } from './testing';

// The official `openai` client drives the server: answers, streams, logprobs, usage and errors. Every comparison of
// answers is exact: content, every token's logprob and its top alternatives.

const SYSTEM =
  'You are a terse assistant for a synthetic test model. Answer in one short line. The rules: be brief, be exact, ' +
  'never repeat the question.';

const client = (s: TestServer) => new OpenAI({ baseURL: `${s.url}/v1`, apiKey: 'unused', maxRetries: 0 });

function chat(user: string, extra: Partial<ChatCompletionCreateParamsNonStreaming> = {}) {
  return {
    model: MODEL_ID,
    messages: [
      { role: 'system' as const, content: SYSTEM },
      { role: 'user' as const, content: user },
    ],
    max_tokens: 12,
    temperature: 0,
    logprobs: true,
    top_logprobs: 3,
    ...extra,
  } satisfies ChatCompletionCreateParamsNonStreaming;
}

/** What must be identical between two runs of a request. */
function answer(c: OpenAI.Chat.Completions.ChatCompletion) {
  const ch = c.choices[0]!;
  return { content: ch.message.content, finish: ch.finish_reason, logprobs: ch.logprobs?.content };
}

let server: TestServer;
/** No cache at all: every answer is computed from scratch. */
let reference: TestServer;
beforeAll(async () => {
  [server, reference] = await Promise.all([
    startTestServer(),
    startTestServer({ cacheMemory: 0, cacheDir: null }),
  ]);
});
afterAll(async () => {
  await Promise.all([server?.stop(), reference?.stop()]);
});

describe('the openai client', () => {
  it('lists the model', async () => {
    const models = await client(server).models.list();
    expect(models.data.map((m) => m.id)).toEqual([MODEL_ID]);
  });

  it('gets a chat completion with logprobs, usage and the cache headers', async () => {
    const { data, response } = await client(server)
      .chat.completions.create(chat('Hello, who are you?'))
      .withResponse();
    expect(data.object).toBe('chat.completion');
    expect(data.model).toBe(MODEL_ID);
    const ch = data.choices[0]!;
    expect(ch.message.role).toBe('assistant');
    expect(['stop', 'length']).toContain(ch.finish_reason);
    const lp = ch.logprobs!.content!;
    expect(lp.length).toBeGreaterThan(0);
    for (const t of lp) {
      expect(t.logprob).toBeLessThanOrEqual(0);
      expect(t.top_logprobs).toHaveLength(3);
      expect(t.top_logprobs[0]!.logprob).toBeGreaterThanOrEqual(t.top_logprobs[1]!.logprob);
      // Greedy: the chosen token is the most likely one.
      expect(t.logprob).toBe(t.top_logprobs[0]!.logprob);
      expect(Array.isArray(t.bytes)).toBe(true);
    }
    expect(data.usage!.prompt_tokens).toBeGreaterThan(100);
    expect(data.usage!.completion_tokens).toBe(
      ch.finish_reason === 'length' ? 12 : data.usage!.completion_tokens,
    );
    expect(data.usage!.total_tokens).toBe(data.usage!.prompt_tokens + data.usage!.completion_tokens);
    expect(data.usage!.prompt_tokens_details!.cached_tokens).toBe(0);
    expect(response.headers.get('x-mnemo-cache')).toMatch(
      /^tier=none; cached=0; prompt=\d+; memory=0; disk=0; redis=-$/,
    );
  });

  it('streams the same answer as a whole response, with usage in the last chunk', async () => {
    const body = chat('Tell me about streams.');
    const whole = await client(reference).chat.completions.create(body);
    const stream = await client(server).chat.completions.create({
      ...body,
      stream: true,
      stream_options: { include_usage: true },
    });
    let content = '';
    const logprobs: OpenAI.Chat.Completions.ChatCompletionTokenLogprob[] = [];
    let finish: string | null = null;
    let usage: OpenAI.Completions.CompletionUsage | null | undefined;
    let chunks = 0;
    for await (const c of stream) {
      chunks++;
      if (c.usage) usage = c.usage;
      const ch = c.choices[0];
      if (!ch) continue;
      content += ch.delta.content ?? '';
      logprobs.push(...(ch.logprobs?.content ?? []));
      finish = ch.finish_reason ?? finish;
    }
    expect(chunks).toBeGreaterThan(2);
    expect({ content, finish, logprobs }).toEqual({
      content: whole.choices[0]!.message.content,
      finish: whole.choices[0]!.finish_reason,
      logprobs: whole.choices[0]!.logprobs!.content,
    });
    expect(usage).toMatchObject({
      prompt_tokens: whole.usage!.prompt_tokens,
      completion_tokens: whole.usage!.completion_tokens,
    });
  });

  it('reuses a shared prefix from memory or disk and answers bitwise as without any cache (greedy and seeded sampling)', async () => {
    const c = client(server);
    for (const sampling of [{ temperature: 0 }, { temperature: 0.9, top_p: 0.95, seed: 1234 }]) {
      for (const user of ['What is a cache?', 'What is a cache for?', 'Why is the sky blue?']) {
        const body = chat(user, sampling);
        const cold = await client(reference).chat.completions.create(body);
        expect(cold.usage!.prompt_tokens_details!.cached_tokens).toBe(0);
        const { data, response } = await c.chat.completions.create(body).withResponse();
        expect(answer(data)).toEqual(answer(cold));
        // The system prompt (and more) came from a local tier: every earlier conversation shares it (the disk tier
        // keeps conversations the memory tier already reused for another prompt).
        expect(data.usage!.prompt_tokens_details!.cached_tokens).toBeGreaterThan(SYSTEM.length);
        expect(response.headers.get('x-mnemo-cache')).toMatch(/^tier=(memory|disk); /);
        // The same request again: everything but the last prompt token is cached; still the same answer.
        const again = await c.chat.completions.create(body);
        expect(again.usage!.prompt_tokens_details!.cached_tokens).toBe(data.usage!.prompt_tokens - 1);
        expect(answer(again)).toEqual(answer(cold));
      }
    }
  });

  it('gets a legacy completion (text and token ids), streamed and not, with logprobs', async () => {
    const c = client(server);
    const body = { model: MODEL_ID, prompt: 'Once upon a time', max_tokens: 6, temperature: 0, logprobs: 2 };
    const whole = await c.completions.create(body);
    expect(whole.object).toBe('text_completion');
    const ch = whole.choices[0]!;
    expect(ch.logprobs!.tokens!.length).toBe(ch.logprobs!.token_logprobs!.length);
    expect(Object.keys(ch.logprobs!.top_logprobs![0]!).length).toBeGreaterThan(0);
    let text = '';
    for await (const part of await c.completions.create({ ...body, stream: true }))
      text += part.choices[0]?.text ?? '';
    expect(text).toBe(ch.text);
    // The same prompt as token ids: BOS (256) then one id per byte for this tokenizer.
    const ids = [256, ...Buffer.from('Once upon a time')];
    const byIds = await client(reference).completions.create({ ...body, prompt: ids });
    expect(byIds.choices[0]!.text).toBe(ch.text);
    expect(byIds.choices[0]!.logprobs!.token_logprobs).toEqual(ch.logprobs!.token_logprobs);
  });

  it('stops at a stop string and says why', async () => {
    const c = client(reference);
    const free = await c.completions.create({
      model: MODEL_ID,
      prompt: 'abc',
      max_tokens: 8,
      temperature: 0,
    });
    const text = free.choices[0]!.text;
    expect(text.length).toBeGreaterThan(2);
    const stop = text.slice(2, 3);
    const stopped = await c.completions.create({
      model: MODEL_ID,
      prompt: 'abc',
      max_tokens: 8,
      temperature: 0,
      stop: [stop],
    });
    expect(stopped.choices[0]!.finish_reason).toBe('stop');
    expect(stopped.choices[0]!.text).toBe(text.slice(0, text.indexOf(stop)));
  });

  it('answers errors in OpenAI shape that the client turns into typed errors', async () => {
    const c = client(server);
    const notFound = await c.chat.completions
      .create({ ...chat('hi'), model: 'gpt-4o' })
      .catch((e: unknown) => e);
    expect(notFound).toBeInstanceOf(OpenAI.NotFoundError);
    expect((notFound as InstanceType<typeof OpenAI.NotFoundError>).code).toBe('model_not_found');
    expect((notFound as Error).message).toContain("'gpt-4o' does not exist");
    const bad = await c.chat.completions.create({ ...chat('hi'), max_tokens: -1 }).catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(OpenAI.BadRequestError);
    expect((bad as Error).message).toMatch(/max_tokens/);
    const n = await c.chat.completions.create({ ...chat('hi'), n: 2 }).catch((e: unknown) => e);
    expect(n).toBeInstanceOf(OpenAI.BadRequestError);
    // A streaming request refused before it starts gets a plain error response, which the client raises too.
    const long = await c.chat.completions
      .create({ ...chat('x'.repeat(5000)), stream: true })
      .catch((e: unknown) => e);
    expect(long).toBeInstanceOf(OpenAI.BadRequestError);
    expect((long as InstanceType<typeof OpenAI.BadRequestError>).code).toBe('context_length_exceeded');
    const metrics = await fetch(`${server.url}/metrics`).then((r) => r.text());
    expect(metric(metrics, 'mnemo_requests_total', { route: 'chat', status: '404' })).toBe(1);
    expect(metric(metrics, 'mnemo_requests_total', { route: 'chat', status: '400' })).toBe(3);
  });
});
