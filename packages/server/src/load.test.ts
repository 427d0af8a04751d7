import { readdirSync } from 'node:fs';
import { request } from 'node:http';
import { rng } from '@mnemo/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MODEL_ID, metric, startTestServer, type TestServer, waitFor } from './testing';

// A bounded load test: 64 concurrent streaming requests, a quarter of whose clients go away at random points, then
// 500 sequential requests. Nothing may crash or leak (prompt caches, backend memory, connections), and every
// response that completes is identical (text, every logprob) to the same request run alone without any cache.

const SYSTEMS = [
  'You answer questions about caches. Be short.',
  'You are a helpful assistant that speaks in riddles, always in one line, never more.',
  'A third persona: terse, exact, and fond of numbers. Every answer must contain a digit.',
];
const QUESTIONS = ['What is a prefix?', 'Why cache?', 'How long is a token?', 'Which tier is fastest?'];

interface Req {
  readonly body: Record<string, unknown>;
}

const requests: Req[] = [];
for (const [i, system] of SYSTEMS.entries())
  for (const [j, q] of QUESTIONS.entries())
    requests.push({
      body: {
        model: MODEL_ID,
        messages: [
          { role: 'system', content: system },
          { role: 'user', content: q },
        ],
        max_tokens: 6 + ((i * 4 + j) % 5) * 3,
        logprobs: true,
        top_logprobs: 2,
        ...((i + j) % 2 === 0 ? { temperature: 0 } : { temperature: 0.8, seed: 100 + i * 10 + j }),
      },
    });

interface Outcome {
  status: number;
  content: string;
  logprobs: unknown[];
}

/** One request on its own connection (closed after it); `abortAfter` chunks (-1: right after sending) or never. */
function send(
  url: string,
  body: Record<string, unknown>,
  stream: boolean,
  abortAfter?: number,
): Promise<Outcome | null> {
  return new Promise((resolve, reject) => {
    const u = new URL('/v1/chat/completions', url);
    const req = request(u, {
      method: 'POST',
      agent: false,
      headers: { 'content-type': 'application/json', connection: 'close' },
    });
    req.on('error', (e) => (abortAfter !== undefined ? resolve(null) : reject(e)));
    req.on('response', (res) => {
      let text = '';
      let chunks = 0;
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        text += d;
        chunks++;
        if (abortAfter !== undefined && chunks > abortAfter) {
          req.destroy();
          resolve(null);
        }
      });
      res.on('error', () => resolve(null));
      res.on('end', () => {
        if (res.statusCode !== 200)
          return resolve({ status: res.statusCode ?? 0, content: text, logprobs: [] });
        if (!stream) {
          const j = JSON.parse(text) as {
            choices: { message: { content: string }; logprobs: { content: unknown[] } }[];
          };
          return resolve({
            status: 200,
            content: j.choices[0]!.message.content,
            logprobs: j.choices[0]!.logprobs.content,
          });
        }
        let content = '';
        const logprobs: unknown[] = [];
        for (const line of text.split('\n')) {
          if (!line.startsWith('data: ') || line === 'data: [DONE]') continue;
          const c = JSON.parse(line.slice(6)) as {
            choices: { delta: { content?: string }; logprobs: { content: unknown[] } | null }[];
          };
          content += c.choices[0]?.delta.content ?? '';
          logprobs.push(...(c.choices[0]?.logprobs?.content ?? []));
        }
        resolve({ status: 200, content, logprobs });
      });
    });
    req.end(JSON.stringify({ ...body, stream }));
    if (abortAfter === -1) {
      setImmediate(() => req.destroy());
      resolve(null);
    }
  });
}

const openFds = () => {
  try {
    return readdirSync('/proc/self/fd').length;
  } catch {
    return -1; // not Linux: no descriptor count
  }
};

let server: TestServer;
let reference: TestServer;
const solo: Outcome[] = [];
const MEMORY_BUDGET = 1 << 20;
beforeAll(async () => {
  [server, reference] = await Promise.all([
    startTestServer({ maxQueue: 64, cacheMemory: MEMORY_BUDGET, cacheDisk: 2 << 20 }),
    startTestServer({ cacheMemory: 0, cacheDir: null }),
  ]);
  for (const r of requests) solo.push((await send(reference.url, r.body, false))!);
});
afterAll(async () => {
  await Promise.all([server?.stop(), reference?.stop()]);
});

async function metrics() {
  return (await fetch(`${server.url}/metrics`)).text();
}

describe('load', () => {
  it('64 concurrent streams with random disconnects, then 500 sequential requests: no crash, no leak, same answers', async () => {
    const next = rng(13);
    const fds0 = openFds();
    const rss0 = process.memoryUsage().rss;

    const concurrent = Array.from({ length: 64 }, (_, i) => {
      const k = i % requests.length;
      const abort = next() < 0.25 ? Math.floor(next() * 5) - 1 : undefined;
      return send(server.url, requests[k]!.body, true, abort).then((o) => ({ k, o, abort }));
    });
    const results = await Promise.all(concurrent);
    let completed = 0;
    for (const { k, o, abort } of results) {
      if (o === null) {
        expect(abort).toBeDefined();
        continue;
      }
      completed++;
      expect(o.status).toBe(200);
      expect({ content: o.content, logprobs: o.logprobs }).toEqual({
        content: solo[k]!.content,
        logprobs: solo[k]!.logprobs,
      });
    }
    expect(completed).toBeGreaterThanOrEqual(results.filter((r) => r.abort === undefined).length);
    let m = await metrics();
    const afterBurst = metric(m, 'mnemo_backend_memory_bytes');

    for (let i = 0; i < 500; i++) {
      const k = Math.floor(next() * requests.length);
      const o = await send(server.url, requests[k]!.body, i % 5 === 0);
      expect(o!.status).toBe(200);
      if (
        o!.content !== solo[k]!.content ||
        JSON.stringify(o!.logprobs) !== JSON.stringify(solo[k]!.logprobs)
      )
        expect({ i, k, content: o!.content, logprobs: o!.logprobs }).toEqual({ i, k, ...solo[k]! });
    }

    // The last answer is sent before the worker finishes with its request (it persists the conversation after).
    await server.settled();
    const h = await (await fetch(`${server.url}/health`)).json();
    expect(h).toMatchObject({ status: 'ok', running: false, phase: 'idle', queue: 0 });
    m = await metrics();
    // Every prompt cache alive is one the memory tier holds, within its budget.
    expect(metric(m, 'mnemo_kv_caches_live')).toBe(metric(m, 'mnemo_cache_entries', { tier: 'memory' }));
    expect(metric(m, 'mnemo_cache_bytes', { tier: 'memory' })).toBeLessThanOrEqual(MEMORY_BUDGET);
    expect(metric(m, 'mnemo_cache_bytes', { tier: 'disk' })).toBeLessThanOrEqual(2 << 20);
    // Backend memory did not grow with the request count (at most the memory tier's budget, twice for capacity slack).
    expect(metric(m, 'mnemo_backend_memory_bytes')).toBeLessThanOrEqual(afterBurst + 2 * MEMORY_BUDGET);
    // Every request was answered (200) or stopped for its client (499); a client may go away after its answer was
    // sent, and one that hung up right after sending may have been gone before its request was read.
    const ok = metric(m, 'mnemo_requests_total', { route: 'chat', status: '200' });
    const answered = ok + metric(m, 'mnemo_requests_total', { route: 'chat', status: '499' });
    const early = results.filter((r) => r.abort === -1).length;
    expect(ok).toBeGreaterThanOrEqual(completed + 500);
    expect(answered).toBeLessThanOrEqual(64 + 500);
    expect(answered).toBeGreaterThanOrEqual(64 + 500 - early);
    // Every connection was closed again (polled: sockets close asynchronously).
    if (fds0 >= 0) await waitFor(`open descriptors back to ${fds0} + 4`, () => openFds() <= fds0 + 4, 50);
    const rss1 = process.memoryUsage().rss;
    console.log(
      `load: ${completed}/64 streams completed, ${64 - completed} dropped by their clients; 500 sequential OK; ` +
        `RSS ${(rss0 / 2 ** 20).toFixed(0)} -> ${(rss1 / 2 ** 20).toFixed(0)} MiB (test process, server included)`,
    );
  }, 300_000);
});
