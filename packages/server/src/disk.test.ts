import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { syntheticPreset } from '@mnemo/test-utils';
import { afterAll, describe, expect, it } from 'vitest';
import { MODEL_ID, metric, startTestServer, type TestServer } from './testing';

// The disk tier: prompt-cache files found again after a restart, refused (and moved aside) when damaged, kept under
// their byte budget, and the diagnostics that say why a cached prefix was not used.

const started: TestServer[] = [];
afterAll(async () => {
  await Promise.all(started.map((s) => s.stop()));
});

async function start(opts: Parameters<typeof startTestServer>[0] = {}): Promise<TestServer> {
  const s = await startTestServer(opts);
  started.push(s);
  return s;
}

interface Answer {
  status: number;
  cache: string;
  notes: string;
  cached: number;
  body: { content: string; logprobs: unknown };
}

async function ask(s: TestServer, system: string, user: string, model = MODEL_ID): Promise<Answer> {
  const r = await fetch(`${s.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      model,
      messages: [
        { role: 'system', content: system },
        { role: 'user', content: user },
      ],
      max_tokens: 8,
      temperature: 0,
      logprobs: true,
      top_logprobs: 5,
    }),
  });
  const j = (await r.json()) as {
    choices: { message: { content: string }; logprobs: unknown }[];
    usage: { prompt_tokens_details: { cached_tokens: number } };
  };
  return {
    status: r.status,
    cache: r.headers.get('x-mnemo-cache') ?? '',
    notes: r.headers.get('x-mnemo-cache-notes') ?? '',
    cached: j.usage.prompt_tokens_details.cached_tokens,
    body: { content: j.choices[0]!.message.content, logprobs: j.choices[0]!.logprobs },
  };
}

const SYSTEM = 'A long enough system prompt for the disk tier to keep what follows it. '.repeat(2);

describe('the disk tier', () => {
  it('is found again after a restart, gives the same answer, and refuses a damaged file', async () => {
    const a = await start();
    const dir = a.options.cacheDir!;
    const cold = await ask(a, SYSTEM, 'First question?');
    expect(cold.cache).toMatch(/^tier=none; cached=0;/);
    // The answer is sent before the conversation is written; close() gives a busy worker only a bounded grace period.
    await a.settled();
    await a.close();
    const files = readdirSync(dir).filter((f) => f.endsWith('.safetensors'));
    expect(files).toHaveLength(1);
    expect(files[0]).toMatch(/^[0-9a-f]{64}\.safetensors$/); // named by a hash of the tokens, never by the prompt

    const b = await start({ cacheDir: dir });
    const warm = await ask(b, SYSTEM, 'First question?');
    expect(warm.cache).toMatch(/^tier=disk; /);
    expect(warm.cached).toBeGreaterThan(SYSTEM.length);
    expect(warm.body).toEqual(cold.body);
    await b.settled();
    await b.close();

    // Damage one byte of the cached keys: the file fails its checksum, is moved aside and reported, never used.
    const file = join(dir, files[0]!);
    const bytes = readFileSync(file);
    bytes[bytes.length - 100]! ^= 0x01;
    writeFileSync(file, bytes);
    const c = await start({ cacheDir: dir });
    const after = await ask(c, SYSTEM, 'First question?');
    expect(after.cache).toMatch(/^tier=none; cached=0;/);
    expect(after.notes).toMatch(/disk: a \d+-token prefix was refused: CHECKSUM/);
    expect(after.body).toEqual(cold.body);
    expect(readdirSync(join(dir, 'refused')).some((f) => f.includes('.CHECKSUM.'))).toBe(true);
    const m = await fetch(`${c.url}/metrics`).then((r) => r.text());
    expect(metric(m, 'mnemo_cache_refused_total', { tier: 'disk', code: 'CHECKSUM' })).toBe(1);
  });

  it('names another model’s cached prefix instead of using it', async () => {
    const a = await start();
    await ask(a, SYSTEM, 'Shared between models?');
    await a.settled();
    await a.close();
    // Another checkpoint with the same tokenizer: its prompt has the same token ids, but its cache is not reusable.
    const other = await start({
      cacheDir: a.options.cacheDir!,
      model: syntheticPreset('llama-q4g32'),
      modelId: 'q4',
    });
    const r = await ask(other, SYSTEM, 'Shared between models?', 'q4');
    expect(r.status).toBe(200);
    expect(r.cache).toMatch(/^tier=none; cached=0;/);
    expect(r.notes).toMatch(/disk: a \d+-token prefix is cached for another model or numerics/);
  });

  it('stays within its byte budget, evicting the least recently used, and says so', async () => {
    // One conversation of this model (512 bytes a token) is about 90 KB on disk: the budget holds one.
    const a = await start({ cacheDisk: 120_000, cacheMemory: 0 });
    const first = await ask(a, SYSTEM, 'Evicted later?');
    await ask(a, `Another system prompt, unrelated. ${SYSTEM}`, 'Kept?');
    await a.settled();
    let m = await fetch(`${a.url}/metrics`).then((r) => r.text());
    expect(metric(m, 'mnemo_cache_entries', { tier: 'disk' })).toBe(1);
    expect(metric(m, 'mnemo_cache_bytes', { tier: 'disk' })).toBeLessThanOrEqual(120_000);
    const again = await ask(a, SYSTEM, 'Evicted later?');
    expect(again.cache).toMatch(/^tier=none; cached=0;/);
    expect(again.notes).toMatch(/a \d+-token prefix was evicted from the cache \(LRU\)/);
    expect(again.body).toEqual(first.body);
    await a.settled();
    m = await fetch(`${a.url}/metrics`).then((r) => r.text());
    expect(metric(m, 'mnemo_kv_caches_live')).toBe(0); // memory budget 0: every cache was freed
  });
});
