import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MODEL_ID, metric, startTestServer, type TestServer } from './testing';

// The model runs in a worker thread: the HTTP side answers while a prefill runs, a client that goes away stops its
// request at the next prefill chunk or decode step, and a full queue refuses with 429. None of these checks depend
// on timing: "still running" is read from the worker's own progress counters, which /health reports.

interface Health {
  status: string;
  queue: number;
  running: boolean;
  phase: string;
  prefill: { done: number; total: number };
  generated: number;
}

// One token per byte with this tokenizer: 3,900 prompt tokens. At one token per forward call (prefillStepSize 1)
// the prefill takes thousands of forward calls (seconds), however fast the machine. Each test starts its prompts
// with another letter, so none finds another's prefix in the memory tier.
const long = (c: string) => c.repeat(3900);

let s: TestServer;
beforeAll(async () => {
  s = await startTestServer({ prefillStepSize: 1, maxQueue: 2, cacheDir: null });
});
afterAll(async () => {
  await s?.stop();
});

const health = async (): Promise<Health> => (await fetch(`${s.url}/health`)).json() as Promise<Health>;
const metrics = async () => (await fetch(`${s.url}/metrics`)).text();

function complete(prompt: string, extra: Record<string, unknown> = {}, signal?: AbortSignal) {
  return fetch(`${s.url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: MODEL_ID, prompt, max_tokens: 1, temperature: 0, ...extra }),
    ...(signal ? { signal } : {}),
  });
}

/** Polls /health until `ok` holds (bounded: fails after 60 s). */
async function until(ok: (h: Health) => boolean): Promise<Health> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const h = await health();
    if (ok(h)) return h;
    if (Date.now() > deadline) throw new Error(`gave up waiting; last /health: ${JSON.stringify(h)}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

const inPrefill = (h: Health) =>
  h.running && h.phase === 'prefill' && h.prefill.done > 0 && h.prefill.done < h.prefill.total;

describe('responsiveness', () => {
  it('answers /health while a long prefill is provably still running', async () => {
    const req = complete(long('a'));
    const during: { ms: number; done: number }[] = [];
    let settled = false;
    void req.then(() => {
      settled = true;
    });
    while (!settled && during.length < 50) {
      const t0 = performance.now();
      const h = await health();
      const ms = performance.now() - t0;
      if (inPrefill(h)) during.push({ ms, done: h.prefill.done });
      else await new Promise((r) => setTimeout(r, 1));
    }
    const r = await req;
    expect(r.status).toBe(200);
    // Several answers came while the worker was mid-prefill, and it advanced between them: the HTTP side never waited
    // for the model.
    expect(during.length).toBeGreaterThanOrEqual(2);
    expect(new Set(during.map((d) => d.done)).size).toBeGreaterThanOrEqual(2);
    const ms = during.map((d) => d.ms).sort((a, b) => a - b);
    console.log(
      `/health during prefill: ${ms.length} answers, median ${ms[ms.length >> 1]!.toFixed(2)} ms, max ${ms.at(-1)!.toFixed(2)} ms`,
    );
  });

  it('stops a prefill at the next chunk when the client goes away, and keeps what it computed', async () => {
    const ac = new AbortController();
    const req = complete(long('b'), { stream: true, max_tokens: 5 }, ac.signal).catch((e: Error) => e);
    await until(inPrefill);
    ac.abort();
    await req;
    const h = await until((x) => !x.running);
    // It stopped mid-prefill (the counters keep the stopped job's progress until the next job starts).
    expect(h.prefill.done).toBeLessThan(h.prefill.total);
    const m = await metrics();
    expect(metric(m, 'mnemo_cancelled_total')).toBe(1);
    // At most one more chunk was computed after the cancel mark was raised.
    expect(metric(m, 'mnemo_cancel_steps_bucket', { le: '1' })).toBe(metric(m, 'mnemo_cancel_steps_count'));
    // The computed part stays in the memory tier: the same prompt now starts from it.
    const again = await complete(long('b'));
    const j = (await again.json()) as { usage: { prompt_tokens_details: { cached_tokens: number } } };
    expect(j.usage.prompt_tokens_details.cached_tokens).toBeGreaterThanOrEqual(h.prefill.done);
  });

  it('stops decoding within a step when the client goes away', async () => {
    const ac = new AbortController();
    // Greedy from this prompt runs to its length limit: about a thousand decode steps of a few ms each.
    const r = await complete('a'.repeat(3000), { stream: true, max_tokens: 1000 }, ac.signal);
    const reader = r.body!.getReader();
    let chunks = 0;
    while (chunks < 3) {
      const { value, done } = await reader.read();
      if (done) break;
      chunks += new TextDecoder().decode(value).split('data: ').length - 1;
    }
    ac.abort();
    const h = await until((x) => !x.running);
    expect(h.generated).toBeGreaterThanOrEqual(3);
    expect(h.generated).toBeLessThan(1000);
    const m = await metrics();
    expect(metric(m, 'mnemo_cancelled_total')).toBe(2);
    expect(metric(m, 'mnemo_cancel_steps_bucket', { le: '1' })).toBe(metric(m, 'mnemo_cancel_steps_count'));
  });

  it('refuses with 429 and Retry-After when the queue is full, and serves again afterwards', async () => {
    const running = new AbortController();
    const waiting = new AbortController();
    const a = complete(long('c'), {}, running.signal).catch((e: Error) => e);
    await until(inPrefill);
    const b = complete(long('d'), {}, waiting.signal).catch((e: Error) => e);
    await until((h) => h.queue === 1);
    const c = await complete('refused?');
    expect(c.status).toBe(429);
    expect(Number(c.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    const body = (await c.json()) as { error: { type: string; message: string } };
    expect(body.error.type).toBe('rate_limit_error');
    expect(body.error.message).toMatch(/busy/);
    waiting.abort();
    running.abort();
    await Promise.all([a, b]);
    await until((h) => !h.running && h.queue === 0);
    expect((await complete('served?')).status).toBe(200);
    expect(metric(await metrics(), 'mnemo_rejected_total')).toBe(1);
  });
});
