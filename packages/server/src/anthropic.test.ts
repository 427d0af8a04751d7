import Anthropic from '@anthropic-ai/sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MODEL_ID, startTestServer, type TestServer } from './testing';

// The official Anthropic SDK drives POST /v1/messages: text answers, streaming, cache_control breakpoints and the
// cache usage fields, and errors.

const SYSTEM =
  'You are the assistant of a synthetic test model. Everything you say is noise, but it is always the same noise ' +
  'for the same conversation, whatever was cached.';

const client = (s: TestServer) => new Anthropic({ baseURL: s.url, apiKey: 'unused', maxRetries: 0 });

/** The request, with the sampling fields older API versions define (this SDK's types no longer list them). */
type Request = Anthropic.MessageCreateParamsNonStreaming & { temperature?: number };

function request(user: string, mark = true): Request {
  return {
    model: MODEL_ID,
    max_tokens: 10,
    temperature: 0,
    system: [
      { type: 'text', text: SYSTEM, ...(mark ? { cache_control: { type: 'ephemeral' as const } } : {}) },
    ],
    messages: [{ role: 'user', content: user }],
  };
}

let server: TestServer;
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

describe('the anthropic client', () => {
  it('persists a marked system prompt, then reads it for another question, with the same answers as no cache', async () => {
    const c = client(server);
    const first = await c.messages.create(request('What is mnemo?'));
    expect(first.type).toBe('message');
    expect(first.role).toBe('assistant');
    expect(first.content[0]!.type).toBe('text');
    expect(['end_turn', 'max_tokens', 'stop_sequence']).toContain(first.stop_reason);
    const u = first.usage;
    // Nothing was cached; the marked prefix (BOS, the system header and text) was computed and persisted.
    expect(u.cache_read_input_tokens).toBe(0);
    expect(u.cache_creation_input_tokens).toBeGreaterThan(SYSTEM.length);
    expect(u.cache_creation_input_tokens).toBeLessThan(SYSTEM.length + 4);
    expect(u.input_tokens).toBeGreaterThan(0);
    const promptTokens = u.input_tokens + u.cache_creation_input_tokens! + u.cache_read_input_tokens!;
    const cold = await client(reference).messages.create(request('What is mnemo?'));
    expect(first.content).toEqual(cold.content);
    expect(cold.usage.input_tokens).toBe(promptTokens); // nothing to persist without a disk or Redis tier

    const second = await c.messages.create(request('Why is the sky blue?'));
    expect(second.usage.cache_read_input_tokens).toBeGreaterThanOrEqual(u.cache_creation_input_tokens!);
    expect(second.usage.cache_creation_input_tokens).toBe(0);
    expect(second.content).toEqual(
      (await client(reference).messages.create(request('Why is the sky blue?'))).content,
    );
  });

  it('streams the same text as a whole response, with usage', async () => {
    const body = request('Tell me a story about caches.');
    const whole = await client(reference).messages.create(body);
    const stream = client(server).messages.stream(body);
    const events: string[] = [];
    stream.on('streamEvent', (e) => events.push(e.type));
    const msg = await stream.finalMessage();
    expect(msg.content).toEqual(whole.content);
    expect(msg.stop_reason).toBe(whole.stop_reason);
    expect(msg.usage.output_tokens).toBe(whole.usage.output_tokens);
    expect(msg.usage.cache_read_input_tokens).toBeGreaterThan(SYSTEM.length);
    expect(events[0]).toBe('message_start');
    expect(events).toContain('content_block_delta');
    expect(events.at(-1)).toBe('message_stop');
  });

  it('stops at a stop sequence and names it', async () => {
    const c = client(reference);
    const free = await c.messages.create({ ...request('abc', false), max_tokens: 8 });
    const text = (free.content[0] as Anthropic.TextBlock).text;
    expect(text.length).toBeGreaterThan(2);
    const stop = text.slice(2, 3);
    const stopped = await c.messages.create({
      ...request('abc', false),
      max_tokens: 8,
      stop_sequences: [stop],
    });
    expect(stopped.stop_reason).toBe('stop_sequence');
    expect(stopped.stop_sequence).toBe(stop);
    expect((stopped.content[0] as Anthropic.TextBlock).text).toBe(text.slice(0, text.indexOf(stop)));
  });

  it('answers errors in Anthropic shape that the SDK turns into typed errors', async () => {
    const c = client(server);
    const notFound = await c.messages
      .create({ ...request('hi'), model: 'claude-x' })
      .catch((e: unknown) => e);
    expect(notFound).toBeInstanceOf(Anthropic.NotFoundError);
    expect((notFound as InstanceType<typeof Anthropic.NotFoundError>).error).toMatchObject({
      type: 'error',
      error: { type: 'not_found_error' },
    });
    const noMax = await c.messages
      .create({
        ...request('hi'),
        max_tokens: undefined,
      } as unknown as Anthropic.MessageCreateParamsNonStreaming)
      .catch((e: unknown) => e);
    expect(noMax).toBeInstanceOf(Anthropic.BadRequestError);
    expect((noMax as Error).message).toMatch(/max_tokens/);
    const image = await c.messages
      .create({
        ...request('hi'),
        messages: [{ role: 'user', content: [{ type: 'image', source: { type: 'url', url: 'x' } }] }],
      } as unknown as Anthropic.MessageCreateParamsNonStreaming)
      .catch((e: unknown) => e);
    expect(image).toBeInstanceOf(Anthropic.BadRequestError);
  });
});
