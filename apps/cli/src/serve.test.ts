import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { connect, createServer as createNetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { syntheticPreset } from '@mnemo/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// `mnemo serve` as separate processes sharing a real redis-server (Debian's package; scripts/setup.sh installs it in
// CI): replica B answers from what replica A stored, a restarted A finds its disk tier again, and when Redis stops or
// stalls both keep answering from their local tiers. Every answer is compared exactly with a server that has no cache.

const cli = join(import.meta.dirname, '..', 'dist', 'mnemo.js');
const MODEL = syntheticPreset('llama-f32');

function findRedis(): string | null {
  for (const p of ['/usr/bin/redis-server', '/usr/local/bin/redis-server']) if (existsSync(p)) return p;
  const r = spawnSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' });
  return r.status === 0 && r.stdout.trim() ? r.stdout.trim() : null;
}
const redisBin = findRedis();
if (!redisBin) {
  if (process.env.CI)
    throw new Error("redis-server is not installed: scripts/setup.sh installs Debian's redis-server package");
  process.stderr.write(
    '[mnemo tests] skipping mnemo serve + Redis: no redis-server binary (apt-get install redis-server)\n',
  );
}
if (!existsSync(cli))
  process.stderr.write(`[mnemo tests] skipping mnemo serve: ${cli} is not built (pnpm build)\n`);

const tmp = mkdtempSync(join(tmpdir(), 'mnemo-serve-'));
const children = new Set<ChildProcess>();

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createNetServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** Sends one inline Redis command and resolves with the first reply line (or rejects on error). */
function redisCommand(port: number, command: string, wait = true): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = connect(port, '127.0.0.1');
    sock.setEncoding('utf8');
    sock.once('error', reject);
    sock.once('connect', () => {
      sock.write(`${command}\r\n`);
      if (!wait) {
        sock.end();
        resolve('');
      }
    });
    sock.once('data', (d: string) => {
      sock.destroy();
      resolve(d.split('\r\n')[0]!);
    });
  });
}

interface Redis {
  port: number;
  proc: ChildProcess;
}

async function startRedis(port: number): Promise<Redis> {
  const dir = mkdtempSync(join(tmp, 'redis-'));
  const proc = spawn(
    redisBin!,
    [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      'no',
      '--dir',
      dir,
      '--enable-debug-command',
      'yes',
    ],
    { stdio: 'ignore' },
  );
  children.add(proc);
  proc.once('exit', () => children.delete(proc));
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      if ((await redisCommand(port, 'PING')) === '+PONG') return { port, proc };
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) throw new Error('redis-server did not start');
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function stop(proc: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  proc.kill(signal);
  await exited;
}

interface Serve {
  url: string;
  proc: ChildProcess;
  log: () => string;
}

async function serve(args: string[]): Promise<Serve> {
  const proc = spawn(
    process.execPath,
    [
      cli,
      'serve',
      '--model',
      MODEL,
      '--port',
      '0',
      '--threads',
      '1',
      '--backend',
      'wasm',
      '--cache-min-tokens',
      '16',
      ...args,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  children.add(proc);
  proc.once('exit', () => children.delete(proc));
  let out = '';
  let err = '';
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => {
    err += d;
  });
  const url = await new Promise<string>((resolve, reject) => {
    proc.stdout!.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      const m = /listening on (http:\/\/[\d.]+:\d+)/.exec(out);
      if (m) resolve(m[1]!);
    });
    proc.once('exit', (code) => reject(new Error(`mnemo serve exited (${code}): ${err}`)));
  });
  return { url, proc, log: () => err };
}

const SYSTEM =
  'You are the shared assistant of every replica. This system prompt is long enough to be worth sharing through ' +
  'Redis between server processes.';

interface Answer {
  status: number;
  cache: string;
  notes: string;
  cached: number;
  same: { content: string; logprobs: unknown };
}

async function ask(s: Serve, user: string): Promise<Answer> {
  const r = await fetch(`${s.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      model: 'llama-f32',
      messages: [
        { role: 'system', content: SYSTEM },
        { role: 'user', content: user },
      ],
      max_tokens: 10,
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
    same: { content: j.choices[0]!.message.content, logprobs: j.choices[0]!.logprobs },
  };
}

/** A metric's value, summed over its labels. */
async function metric(s: Serve, name: string): Promise<number> {
  const text = await (await fetch(`${s.url}/metrics`)).text();
  return text
    .split('\n')
    .filter((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`))
    .reduce((sum, l) => sum + Number(l.split(' ').at(-1)), 0);
}

/** Polls until `f` holds (bounded). */
async function until(what: string, f: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (!(await f())) {
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe.skipIf(!redisBin || !existsSync(cli))('mnemo serve with Redis, two replicas', () => {
  let redis: Redis;
  let a: Serve;
  let b: Serve;
  let reference: Serve;
  const dirA = join(tmp, 'a');
  const dirB = join(tmp, 'b');
  let redisUrl: string;
  beforeAll(async () => {
    redis = await startRedis(await freePort());
    redisUrl = `redis://127.0.0.1:${redis.port}`;
    const common = ['--cache-redis', redisUrl, '--cache-redis-timeout', '500'];
    [a, b, reference] = await Promise.all([
      serve(['--cache-dir', dirA, ...common]),
      serve(['--cache-dir', dirB, ...common]),
      serve(['--no-cache-disk', '--cache-memory', '0']),
    ]);
    await until(
      'both replicas connected to Redis',
      async () => (await metric(a, 'mnemo_redis_up')) === 1 && (await metric(b, 'mnemo_redis_up')) === 1,
    );
  }, 120_000);
  afterAll(async () => {
    await Promise.all([...children].map((c) => stop(c)));
    rmSync(tmp, { recursive: true, force: true });
  });

  it('replica B answers a conversation replica A cached, from Redis, bitwise as a cold run', async () => {
    const cold = await ask(reference, 'What do replicas share?');
    const first = await ask(a, 'What do replicas share?');
    expect(first.cache).toMatch(/^tier=none; cached=0;/);
    expect(first.same).toEqual(cold.same);
    await until(
      'A stored its conversation in Redis',
      async () => (await metric(a, 'mnemo_redis_stored_total')) >= 1,
    );

    const fromRedis = await ask(b, 'What do replicas share?');
    expect(fromRedis.cache).toMatch(/^tier=redis; /);
    expect(fromRedis.cached).toBeGreaterThan(SYSTEM.length);
    expect(fromRedis.same).toEqual(cold.same);
    // Nothing of this prompt was on B's own disk before: it came from the other process.
    expect(fromRedis.cache).toMatch(/; memory=0; disk=0; redis=\d+$/);

    // Another question with the same system prompt: B's memory now holds the shared prefix.
    const other = await ask(b, 'And what do they keep?');
    expect(other.cached).toBeGreaterThan(SYSTEM.length);
    expect(other.same).toEqual((await ask(reference, 'And what do they keep?')).same);
  });

  it('a restarted replica reuses its disk tier', async () => {
    const cold = await ask(reference, 'Will you remember this after a restart?');
    expect((await ask(a, 'Will you remember this after a restart?')).same).toEqual(cold.same);
    await stop(a.proc);
    expect(readdirSync(dirA).filter((f) => f.endsWith('.safetensors')).length).toBeGreaterThanOrEqual(2);
    a = await serve(['--cache-dir', dirA, '--cache-redis', redisUrl, '--cache-redis-timeout', '500']);
    const again = await ask(a, 'Will you remember this after a restart?');
    expect(again.cache).toMatch(/^tier=disk; /);
    expect(again.same).toEqual(cold.same);
  });

  it('keeps answering from the local tiers when Redis stalls or stops, and says so', async () => {
    await until('A reconnected to Redis', async () => (await metric(a, 'mnemo_redis_up')) === 1);
    // A stalled Redis: commands time out after --cache-redis-timeout; the request is answered without it.
    // (Redis runs the command as soon as it reads it; the pause only makes sure it has read it before the request.)
    await redisCommand(redis.port, 'DEBUG SLEEP 10', false);
    await new Promise((r) => setTimeout(r, 100));
    const stalled = await ask(b, 'Is Redis slow today?');
    expect(stalled.status).toBe(200);
    expect(stalled.notes).toMatch(/redis: unavailable/);
    expect(stalled.same).toEqual((await ask(reference, 'Is Redis slow today?')).same);

    // A stopped Redis.
    await stop(redis.proc, 'SIGKILL');
    for (const s of [a, b]) {
      const user = `Still there without Redis? (${s === a ? 'A' : 'B'})`;
      const r = await ask(s, user);
      expect(r.status).toBe(200);
      expect(r.same).toEqual((await ask(reference, user)).same);
    }
    await until(
      'both replicas report Redis down',
      async () => (await metric(a, 'mnemo_redis_up')) === 0 && (await metric(b, 'mnemo_redis_up')) === 0,
    );
    const down = await ask(a, 'What happened to Redis?');
    expect(down.status).toBe(200);
    expect(down.notes).toMatch(/redis: unavailable/);
    expect(a.log()).toMatch(/redis tier: unavailable, serving from the local tiers/);
    expect(await metric(b, 'mnemo_redis_errors_total')).toBeGreaterThanOrEqual(1); // the stalled lookup at least

    // Redis comes back on the same port: the replicas reconnect by themselves.
    redis = await startRedis(redis.port);
    await until(
      'both replicas reconnected',
      async () => (await metric(a, 'mnemo_redis_up')) === 1 && (await metric(b, 'mnemo_redis_up')) === 1,
    );
    expect((await ask(b, 'Back again?')).status).toBe(200);
  });
});
