import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MODEL_ID, metric, startTestServer, type TestServer } from './testing';

// Bad input gets a 4xx with a message that names the problem, in the API's error shape, and the server keeps serving.

let s: TestServer;
let keyed: TestServer;
beforeAll(async () => {
  [s, keyed] = await Promise.all([
    startTestServer({ maxBodyBytes: 64 * 1024, contextLength: 512, maxTokens: 200, cacheDir: null }),
    startTestServer({ apiKey: 'sekret', cacheDir: null }),
  ]);
});
afterAll(async () => {
  await Promise.all([s?.stop(), keyed?.stop()]);
});

const good = { model: MODEL_ID, messages: [{ role: 'user', content: 'hi' }], max_tokens: 3, temperature: 0 };

async function post(path: string, body: unknown, headers: Record<string, string> = {}, server = s) {
  const r = await fetch(`${server.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await r.text();
  let json: {
    error?: { message: string; type: string; code?: string | null; param?: string | null };
    type?: string;
  } = {};
  try {
    json = JSON.parse(text);
  } catch {
    // checked by the caller
  }
  return { status: r.status, json, text, headers: r.headers };
}

const cases: [string, string, unknown, number, RegExp, Record<string, string>?][] = [
  ['malformed JSON', '/v1/chat/completions', '{"model": "llama-f32", "messages": [', 400, /not valid JSON/],
  ['a JSON array', '/v1/chat/completions', '[1, 2]', 400, /invalid request: body must be object/],
  ['messages of the wrong type', '/v1/chat/completions', { ...good, messages: 'hi' }, 400, /messages/],
  [
    'temperature as a string (no coercion)',
    '/v1/chat/completions',
    { ...good, temperature: '0.5' },
    400,
    /temperature/,
  ],
  ['a fractional max_tokens', '/v1/chat/completions', { ...good, max_tokens: 1.5 }, 400, /max_tokens/],
  ['a negative max_tokens', '/v1/chat/completions', { ...good, max_tokens: -5 }, 400, /max_tokens/],
  ['zero max_tokens', '/v1/chat/completions', { ...good, max_tokens: 0 }, 400, /max_tokens/],
  [
    'a huge max_tokens',
    '/v1/chat/completions',
    { ...good, max_tokens: 1e12 },
    400,
    /max_tokens 1000000000000 is over this server's limit of 200/,
  ],
  [
    'max_tokens past the context',
    '/v1/chat/completions',
    { ...good, max_tokens: 200, messages: [{ role: 'user', content: 'y'.repeat(400) }] },
    400,
    /maximum context length is 512 tokens/,
  ],
  [
    'a prompt over the context',
    '/v1/chat/completions',
    { ...good, messages: [{ role: 'user', content: 'x'.repeat(600) }] },
    400,
    /the prompt alone has \d+ tokens/,
  ],
  [
    'prompt text too long to tokenize',
    '/v1/chat/completions',
    { ...good, messages: [{ role: 'user', content: 'x'.repeat(40_000) }] },
    400,
    /the prompt's 40000 bytes of text cannot fit in it/,
  ],
  ['an unknown model', '/v1/chat/completions', { ...good, model: 'gpt-9' }, 404, /'gpt-9' does not exist/],
  [
    'an unknown role',
    '/v1/chat/completions',
    { ...good, messages: [{ role: 'wizard', content: 'hi' }] },
    400,
    /role/,
  ],
  [
    'an image part',
    '/v1/chat/completions',
    { ...good, messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }] },
    400,
    /messages/,
  ],
  ['n = 3', '/v1/chat/completions', { ...good, n: 3 }, 400, /\bn\b/],
  [
    'tools',
    '/v1/chat/completions',
    { ...good, tools: [{ type: 'function', function: { name: 'f' } }] },
    400,
    /tools/,
  ],
  ['five stop strings', '/v1/chat/completions', { ...good, stop: ['a', 'b', 'c', 'd', 'e'] }, 400, /stop/],
  ['an empty stop string', '/v1/chat/completions', { ...good, stop: '' }, 400, /stop/],
  ['a negative seed', '/v1/chat/completions', { ...good, seed: -1 }, 400, /seed/],
  [
    'top_logprobs over 20',
    '/v1/chat/completions',
    { ...good, logprobs: true, top_logprobs: 50 },
    400,
    /top_logprobs/,
  ],
  [
    'token ids outside the vocabulary',
    '/v1/completions',
    { model: MODEL_ID, prompt: [1, 2, 99999] },
    400,
    /token id 99999 is outside the vocabulary/,
  ],
  ['an empty token list', '/v1/completions', { model: MODEL_ID, prompt: [] }, 400, /prompt/],
  [
    'a body over the size limit',
    '/v1/chat/completions',
    { ...good, messages: [{ role: 'user', content: 'z'.repeat(100_000) }] },
    413,
    /larger than this server's limit of 65536 bytes/,
  ],
  [
    'plain text',
    '/v1/chat/completions',
    'hello',
    415,
    /content-type|Content-Type|media type/i,
    { 'content-type': 'text/plain' },
  ],
  [
    'an unknown route',
    '/v1/embeddings',
    { model: MODEL_ID, input: 'x' },
    404,
    /no route for POST \/v1\/embeddings/,
  ],
];

describe('bad input', () => {
  for (const [what, path, body, status, message, headers] of cases) {
    it(`${what} → ${status}`, async () => {
      const r = await post(path, body, headers);
      expect(r.status, r.text).toBe(status);
      expect(r.json.error?.message ?? '', r.text).toMatch(message);
      expect(r.json.error?.type).toBe(status === 404 ? 'not_found_error' : 'invalid_request_error');
    });
  }

  it('answers Anthropic requests with Anthropic-shaped errors', async () => {
    const r = await post('/v1/messages', '{"model": ');
    expect(r.status).toBe(400);
    expect(r.json).toMatchObject({ type: 'error', error: { type: 'invalid_request_error' } });
    const tooBig = await post('/v1/messages', {
      model: MODEL_ID,
      max_tokens: 1,
      messages: [{ role: 'user', content: 'z'.repeat(100_000) }],
    });
    expect(tooBig.status).toBe(413);
    expect(tooBig.json).toMatchObject({ type: 'error', error: { type: 'request_too_large' } });
    const marks = await post('/v1/messages', {
      model: MODEL_ID,
      max_tokens: 1,
      messages: [
        {
          role: 'user',
          content: Array.from({ length: 5 }, () => ({
            type: 'text',
            text: 'x',
            cache_control: { type: 'ephemeral' },
          })),
        },
      ],
    });
    expect(marks.status).toBe(400);
    expect(marks.json).toMatchObject({
      error: { message: 'at most 4 blocks may have cache_control, found 5' },
    });
  });

  it('keeps serving after all of that, and counts it', async () => {
    const r = await post('/v1/chat/completions', good);
    expect(r.status).toBe(200);
    const m = await fetch(`${s.url}/metrics`).then((x) => x.text());
    expect(metric(m, 'mnemo_requests_total', { route: 'chat', status: '400' })).toBeGreaterThanOrEqual(15);
    expect(metric(m, 'mnemo_requests_total', { route: 'chat', status: '200' })).toBe(1);
  });

  it('requires the API key when one is set (Bearer or x-api-key), except for /health', async () => {
    expect((await post('/v1/chat/completions', good, {}, keyed)).status).toBe(401);
    const wrong = await post('/v1/chat/completions', good, { authorization: 'Bearer nope' }, keyed);
    expect(wrong.status).toBe(401);
    expect(wrong.json.error?.type).toBe('authentication_error');
    expect((await post('/v1/chat/completions', good, { authorization: 'Bearer sekret' }, keyed)).status).toBe(
      200,
    );
    expect((await post('/v1/chat/completions', good, { 'x-api-key': 'sekret' }, keyed)).status).toBe(200);
    expect((await fetch(`${keyed.url}/metrics`)).status).toBe(401);
    expect((await fetch(`${keyed.url}/health`)).status).toBe(200);
  });

  it('binds the loopback address unless told otherwise', () => {
    expect(s.host).toBe('127.0.0.1');
    expect(s.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
  });
});

describe('startup', () => {
  it('refuses a model that does not load, naming it, and leaves nothing running', async () => {
    await expect(startTestServer({ model: '/nonexistent/model' })).rejects.toThrow(/nonexistent/);
  });
});
