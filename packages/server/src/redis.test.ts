import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  MODEL_ID,
  metric,
  redisServerBinary,
  startRedisServer,
  startTestServer,
  type TestRedis,
  type TestServer,
} from './testing';

// The Redis tier in process, against a real redis-server: what is stored (keys, TTL, bounds), and that an entry
// that fails its checks is refused, deleted and reported, never used. (Two server processes sharing one Redis are
// tested through `mnemo serve` in apps/cli.)

const bin = redisServerBinary();

const SYSTEM = 'A system prompt that both servers share through Redis, long enough to be stored there.';

async function ask(s: TestServer, user: string) {
  const r = await fetch(`${s.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      model: MODEL_ID,
      messages: [
        { role: 'system', content: SYSTEM },
        { role: 'user', content: user },
      ],
      max_tokens: 8,
      temperature: 0,
      logprobs: true,
      top_logprobs: 4,
    }),
  });
  const j = (await r.json()) as { choices: { message: { content: string }; logprobs: unknown }[] };
  return {
    status: r.status,
    cache: r.headers.get('x-mnemo-cache') ?? '',
    notes: r.headers.get('x-mnemo-cache-notes') ?? '',
    same: { content: j.choices[0]!.message.content, logprobs: j.choices[0]!.logprobs },
  };
}

/** Waits until `s` has finished with its requests, storing in Redis included (an event, not a deadline). */
async function storedCount(s: TestServer): Promise<number> {
  await s.settled();
  return metric(await (await fetch(`${s.url}/metrics`)).text(), 'mnemo_redis_stored_total');
}

describe.skipIf(!bin)('the Redis tier', () => {
  let redis: TestRedis;
  let client: Redis;
  let a: TestServer;
  let b: TestServer;
  let reference: TestServer;
  beforeAll(async () => {
    redis = await startRedisServer(bin!);
    client = new Redis(redis.url);
    [a, b, reference] = await Promise.all([
      startTestServer({ cacheRedis: redis.url, cacheRedisTtl: 600, cacheMemory: 0 }),
      startTestServer({ cacheRedis: redis.url, cacheRedisTtl: 600, cacheMemory: 0 }),
      startTestServer({ cacheMemory: 0, cacheDir: null }),
    ]);
  });
  afterAll(async () => {
    client?.disconnect();
    await Promise.all([a?.stop(), b?.stop(), reference?.stop()]);
    await redis?.stop();
  });

  it('stores each conversation with its prefix names, all with the TTL', async () => {
    await ask(a, 'What is stored?');
    expect(await storedCount(a)).toBe(1);
    const entries = await client.keys('mnemo:*:e:*');
    const names = await client.keys('mnemo:*:b:*');
    expect(entries).toHaveLength(1);
    expect(entries[0]).toMatch(/^mnemo:[0-9a-f]{32}:e:[0-9a-f]{64}$/); // hashes only: no prompt text in keys
    expect(names.length).toBeGreaterThanOrEqual(5); // one per 16-token block
    for (const k of [...entries, ...names]) {
      const ttl = await client.ttl(k);
      expect(ttl).toBeGreaterThan(0);
      expect(ttl).toBeLessThanOrEqual(600);
    }
    const id = entries[0]!.split(':').at(-1);
    for (const k of names) expect(await client.get(k)).toBe(id);
  });

  it('refuses, deletes and reports an entry that fails its checks, and answers as without it', async () => {
    const [key] = await client.keys('mnemo:*:e:*');
    const len = await client.strlen(key!);
    await client.setrange(key!, len - 50, 'X'); // damage the cached values
    const damaged = (await client.getBuffer(key!))!;
    const r = await ask(b, 'What is stored?');
    expect(r.status).toBe(200);
    expect(r.cache).toMatch(/^tier=none; cached=0;/);
    expect(r.notes).toMatch(/redis: a \d+-token prefix was refused: CHECKSUM/);
    expect(r.same).toEqual((await ask(reference, 'What is stored?')).same);
    // The damaged entry was deleted; B has since stored its own (valid) copy of the same conversation.
    await b.settled();
    const now = await client.getBuffer(key!);
    expect(now?.equals(damaged)).not.toBe(true);
    const m = await (await fetch(`${b.url}/metrics`)).text();
    expect(metric(m, 'mnemo_redis_stored_total')).toBe(1);
    expect(metric(m, 'mnemo_cache_refused_total', { tier: 'redis', code: 'CHECKSUM' })).toBe(1);
  });

  it('does not store entries over the size bound', async () => {
    const small = await startTestServer({ cacheRedis: redis.url, cacheRedisMaxEntry: 1000, cacheDir: null });
    try {
      const before = (await client.keys('mnemo:*:e:*')).length;
      expect((await ask(small, 'Too big for this Redis bound?')).status).toBe(200);
      await small.settled(); // its attempt to store the conversation has been made
      const m = await (await fetch(`${small.url}/metrics`)).text();
      expect(metric(m, 'mnemo_redis_errors_total', { op: 'put' })).toBe(1);
      expect(metric(m, 'mnemo_redis_stored_total')).toBe(0);
      expect((await client.keys('mnemo:*:e:*')).length).toBe(before);
    } finally {
      await small.stop();
    }
  });
});
