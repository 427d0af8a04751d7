import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MODEL_ID, metric, startTestServer, type TestServer, waitFor } from './testing';

// The model runs in a worker thread: the HTTP side answers while a prefill runs, a client that goes away stops its
// request at the next prefill chunk or decode step, and a full queue refuses with 429. None of these checks depend
// on timing: the server's step gate holds the worker between prefill chunks and decode steps for as long as a test
// needs (a prefill that cannot finish before the test lets it), "still running" is read from the worker's own
// progress counters, which /health reports, and what a finished request leaves behind is read after `settled()`.

interface Health {
  status: string;
  queue: number;
  running: boolean;
  phase: string;
  prefill: { done: number; total: number };
  generated: number;
}

// One token per byte with this tokenizer: 3,900 prompt tokens, one per forward call (prefillStepSize 1). Each test
// starts its prompts with another letter, so none finds another's prefix in the memory tier.
const long = (c: string) => c.repeat(3900);

/** Permits for the worker's prefill chunks and decode steps (see ServerOptions.stepGate). */
const gate = new Int32Array(new SharedArrayBuffer(4));
const OPEN = 2 ** 30;
const hold = () => Atomics.store(gate, 0, 0);
const allow = (n: number) => {
  Atomics.add(gate, 0, n);
  Atomics.notify(gate, 0);
};
const open = () => {
  Atomics.store(gate, 0, OPEN);
  Atomics.notify(gate, 0);
};

let s: TestServer;
beforeAll(async () => {
  open();
  s = await startTestServer({
    prefillStepSize: 1,
    maxQueue: 2,
    cacheDir: null,
    stepGate: gate.buffer as SharedArrayBuffer,
  });
});
afterAll(async () => {
  open();
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

/** Polls /health until `ok` holds (a hang guard only: fails after minutes). */
async function until(what: string, ok: (h: Health) => boolean): Promise<Health> {
  let last: Health | undefined;
  const poll = async () => {
    last = await health();
    return ok(last);
  };
  await waitFor(what, poll, 2).catch((e: Error) => {
    throw new Error(`${e.message}; last /health: ${JSON.stringify(last)}`);
  });
  return last!;
}

/** The worker holds in its prefill after exactly `n` chunks. */
const heldAt = (n: number) => (h: Health) =>
  h.running && h.phase === 'prefill' && h.prefill.done === n && h.prefill.total > n;

describe('responsiveness', () => {
  it('answers /health while a long prefill is provably still running', async () => {
    hold();
    const req = complete(long('a'));
    // The worker stops after its first chunk for want of a permit: whatever the machine's speed, /health must answer
    // now, from the counters, without waiting for the model. Then one chunk at a time: each answer shows the prefill
    // advanced and still unfinished.
    const seen: number[] = [];
    for (let n = 1; n <= 4; n++) {
      if (n > 1) allow(1);
      const t0 = performance.now();
      const h = await until(`the prefill held after ${n} chunks`, heldAt(n));
      seen.push(h.prefill.done);
      console.log(
        `/health saw the prefill held at ${n}/${h.prefill.total} (${(performance.now() - t0).toFixed(1)} ms)`,
      );
    }
    open();
    const r = await req;
    expect(r.status).toBe(200);
    expect(seen).toEqual([1, 2, 3, 4]);
    const ms: number[] = [];
    for (let i = 0; i < 20; i++) {
      const t0 = performance.now();
      await health();
      ms.push(performance.now() - t0);
    }
    ms.sort((a, b) => a - b);
    console.log(`/health idle: median ${ms[ms.length >> 1]!.toFixed(2)} ms, max ${ms.at(-1)!.toFixed(2)} ms`);
  });

  it('stops a prefill at the next chunk when the client goes away, and keeps what it computed', async () => {
    await s.settled();
    hold();
    allow(9);
    const ac = new AbortController();
    const req = complete(long('b'), { stream: true, max_tokens: 5 }, ac.signal).catch((e: Error) => e);
    await until('the prefill held after 10 chunks', heldAt(10));
    ac.abort();
    await req;
    // The request ends (cancelled) without any further permit: the held worker sees the cancel mark.
    await s.settled();
    const h = await health();
    expect(h.running).toBe(false);
    // It stopped mid-prefill (the counters keep the stopped job's progress until the next job starts).
    expect(h.prefill.done).toBe(10);
    expect(h.prefill.total).toBeGreaterThan(10);
    const m = await metrics();
    expect(metric(m, 'mnemo_cancelled_total')).toBe(1);
    // At most one more chunk was computed after the cancel mark was raised.
    expect(metric(m, 'mnemo_cancel_steps_count')).toBe(1);
    expect(metric(m, 'mnemo_cancel_steps_bucket', { le: '1' })).toBe(1);
    // The computed part stays in the memory tier: the same prompt now starts from it.
    open();
    const again = await complete(long('b'));
    const j = (await again.json()) as { usage: { prompt_tokens_details: { cached_tokens: number } } };
    expect(j.usage.prompt_tokens_details.cached_tokens).toBeGreaterThanOrEqual(10);
  });

  it('stops a running prefill within a chunk when the client goes away', async () => {
    await s.settled();
    hold();
    allow(9);
    const ac = new AbortController();
    const req = complete(long('e'), { stream: true, max_tokens: 5 }, ac.signal).catch((e: Error) => e);
    const held = await until('the prefill held after 10 chunks', heldAt(10));
    // Let it run again, for fewer chunks than the prompt has (so it cannot finish on its own), and go away: the cancel
    // lands while chunks are being computed, one forward call each, and at most one more follows it.
    allow(1000);
    ac.abort();
    await req;
    await s.settled();
    const h = await health();
    expect(h.running).toBe(false);
    expect(h.prefill.done).toBeGreaterThanOrEqual(10);
    expect(h.prefill.done).toBeLessThanOrEqual(1010);
    expect(h.prefill.total).toBe(held.prefill.total);
    const m = await metrics();
    expect(metric(m, 'mnemo_cancelled_total')).toBe(2);
    expect(metric(m, 'mnemo_cancel_steps_count')).toBe(2);
    expect(metric(m, 'mnemo_cancel_steps_bucket', { le: '1' })).toBe(2);
    console.log(`cancelled a running prefill after ${h.prefill.done}/${h.prefill.total} chunks`);
    open();
  });

  it('stops decoding within a step when the client goes away', async () => {
    await s.settled();
    open();
    const ac = new AbortController();
    // Greedy from this prompt runs to its length limit: a thousand decode steps.
    const r = await complete('a'.repeat(3000), { stream: true, max_tokens: 1000 }, ac.signal);
    const reader = r.body!.getReader();
    let chunks = 0;
    while (chunks < 3) {
      const { value, done } = await reader.read();
      if (done) break;
      chunks += new TextDecoder().decode(value).split('data: ').length - 1;
    }
    // From here the worker computes at most one more step before it waits for a permit: the request cannot end by
    // itself before the cancel.
    hold();
    ac.abort();
    await s.settled();
    const h = await health();
    expect(h.running).toBe(false);
    expect(h.generated).toBeGreaterThanOrEqual(3);
    expect(h.generated).toBeLessThan(1000);
    const m = await metrics();
    expect(metric(m, 'mnemo_cancelled_total')).toBe(3);
    expect(metric(m, 'mnemo_cancel_steps_bucket', { le: '1' })).toBe(metric(m, 'mnemo_cancel_steps_count'));
    open();
  });

  it('refuses with 429 and Retry-After when the queue is full, and serves again afterwards', async () => {
    await s.settled();
    hold();
    const running = new AbortController();
    const waiting = new AbortController();
    const a = complete(long('c'), {}, running.signal).catch((e: Error) => e);
    await until('the first request held in its prefill', heldAt(1));
    const b = complete(long('d'), {}, waiting.signal).catch((e: Error) => e);
    await until('the second request queued', (h) => h.queue === 1);
    const c = await complete('refused?');
    expect(c.status).toBe(429);
    expect(Number(c.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    const body = (await c.json()) as { error: { type: string; message: string } };
    expect(body.error.type).toBe('rate_limit_error');
    expect(body.error.message).toMatch(/busy/);
    waiting.abort();
    running.abort();
    await Promise.all([a, b]);
    await s.settled();
    open();
    expect((await complete('served?')).status).toBe(200);
    expect(metric(await metrics(), 'mnemo_rejected_total')).toBe(1);
  });
});
