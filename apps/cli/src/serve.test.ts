import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
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
/**
 * How long a test waits for something that must happen before it gives up: a hang guard, never a speed check (CI
 * runs on 2 cores shared with other work). Also the Redis command timeout of the replicas that must not see their
 * local Redis as unavailable on a loaded machine; only the replica of the stall test has a short one.
 */
const HANG_GUARD_MS = 240_000;
const RELIABLE_REDIS = ['--cache-redis-timeout', String(HANG_GUARD_MS)];
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

/**
 * Sends one inline Redis command and resolves with its reply (the first line, or everything up to `until` when given),
 * or rejects on error.
 */
function redisCommand(port: number, command: string, wait = true, complete?: RegExp): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = connect(port, '127.0.0.1');
    let text = '';
    sock.setEncoding('utf8');
    // A silent holder of the port: this try fails (callers poll again; not a speed check).
    sock.setTimeout(1000, () => sock.destroy(new Error('no answer')));
    sock.once('error', reject);
    sock.once('close', () => reject(new Error('connection closed')));
    sock.once('connect', () => {
      sock.write(`${command}\r\n`);
      if (!wait) {
        sock.end();
        resolve('');
      }
    });
    sock.on('data', (d: string) => {
      text += d;
      if (complete && !complete.test(text) && !text.startsWith('-')) return;
      sock.destroy();
      resolve(complete ? text : text.split('\r\n')[0]!);
    });
  });
}

interface Redis {
  port: number;
  proc: ChildProcess;
}

/** Starts redis-server on `port`; null when it exited at once (another process took the port: pick another). */
async function startRedis(port: number): Promise<Redis | null> {
  const dir = mkdtempSync(join(tmp, 'redis-'));
  const proc = spawn(
    redisBin!,
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir],
    { stdio: 'ignore' },
  );
  children.add(proc);
  proc.once('exit', () => children.delete(proc));
  const exited = () => proc.exitCode !== null || proc.signalCode !== null;
  // Answered by this redis-server (its process id), not by another one holding the port.
  const ours = async () => {
    try {
      const info = await redisCommand(port, 'INFO server', true, /process_id:(\d+)\r\n/);
      return Number(/process_id:(\d+)\r\n/.exec(info)?.[1]) === proc.pid;
    } catch {
      return false; // not up yet
    }
  };
  await until('redis-server to answer', async () => exited() || (await ours()));
  return exited() ? null : { port, proc };
}

async function startRedisOnFreePort(): Promise<Redis> {
  for (let attempt = 1; attempt <= 5; attempt++) {
    const r = await startRedis(await freePort());
    if (r) return r;
  }
  throw new Error('redis-server exited at start on 5 different ports');
}

/** The state letter of a Linux process (`T`: stopped). */
function processState(pid: number): string {
  return /^\d+ \(.*\) (\S)/.exec(readFileSync(`/proc/${pid}/stat`, 'utf8'))?.[1] ?? '?';
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

/** Polls until `f` holds; fails only past the hang guard. */
async function until(what: string, f: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + HANG_GUARD_MS;
  while (!(await f())) {
    if (Date.now() > deadline) throw new Error(`gave up waiting (${HANG_GUARD_MS / 1000} s) for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Waits until a replica has finished its requests, writing their prompt caches included. */
async function idle(s: Serve): Promise<void> {
  await until('the replica to be idle', async () => {
    const h = (await (await fetch(`${s.url}/health`)).json()) as {
      running: boolean;
      phase: string;
      queue: number;
    };
    return !h.running && h.phase === 'idle' && h.queue === 0;
  });
}

describe.skipIf(!redisBin || !existsSync(cli))('mnemo serve with Redis, two replicas', () => {
  let redis: Redis;
  let a: Serve;
  let b: Serve;
  /** The replica of the stall test: a short Redis command timeout. */
  let c: Serve;
  let reference: Serve;
  const dirA = join(tmp, 'a');
  const dirB = join(tmp, 'b');
  const dirC = join(tmp, 'c');
  let redisUrl: string;
  beforeAll(async () => {
    redis = await startRedisOnFreePort();
    redisUrl = `redis://127.0.0.1:${redis.port}`;
    [a, b, c, reference] = await Promise.all([
      serve(['--cache-dir', dirA, '--cache-redis', redisUrl, ...RELIABLE_REDIS]),
      serve(['--cache-dir', dirB, '--cache-redis', redisUrl, ...RELIABLE_REDIS]),
      serve(['--cache-dir', dirC, '--cache-redis', redisUrl, '--cache-redis-timeout', '500']),
      serve(['--no-cache-disk', '--cache-memory', '0']),
    ]);
    await until(
      'the replicas connected to Redis',
      async () =>
        (await metric(a, 'mnemo_redis_up')) === 1 &&
        (await metric(b, 'mnemo_redis_up')) === 1 &&
        (await metric(c, 'mnemo_redis_up')) === 1,
    );
  });
  afterAll(async () => {
    await Promise.all([...children].map((p) => stop(p, p === redis?.proc ? 'SIGKILL' : 'SIGTERM')));
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
    // The answer is sent before the conversation is written: stop A once it has been (a stopping server gives a busy
    // worker only a bounded grace period).
    await idle(a);
    await stop(a.proc);
    expect(readdirSync(dirA).filter((f) => f.endsWith('.safetensors')).length).toBeGreaterThanOrEqual(2);
    a = await serve(['--cache-dir', dirA, '--cache-redis', redisUrl, ...RELIABLE_REDIS]);
    const again = await ask(a, 'Will you remember this after a restart?');
    expect(again.cache).toMatch(/^tier=disk; /);
    expect(again.same).toEqual(cold.same);
  });

  it('keeps answering from the local tiers when Redis stalls or stops, and says so', async () => {
    await until('A reconnected to Redis', async () => (await metric(a, 'mnemo_redis_up')) === 1);
    // A stalled Redis: stopped (SIGSTOP) until told to go on, so every command of C times out after its
    // --cache-redis-timeout, however slow the machine; the request is answered without it.
    redis.proc.kill('SIGSTOP');
    await until('redis-server stopped', async () => processState(redis.proc.pid!) === 'T');
    const stalled = await ask(c, 'Is Redis slow today?');
    expect(stalled.status).toBe(200);
    expect(stalled.notes).toMatch(/redis: unavailable \(Command timed out\)/);
    expect(stalled.same).toEqual((await ask(reference, 'Is Redis slow today?')).same);
    expect(await metric(c, 'mnemo_redis_errors_total')).toBeGreaterThanOrEqual(1); // the stalled lookup at least

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

    // Redis comes back on the same port: the replicas reconnect by themselves.
    const back = await startRedis(redis.port);
    if (!back)
      throw new Error(`redis-server could not listen on port ${redis.port} again (another process took it)`);
    redis = back;
    await until(
      'both replicas reconnected',
      async () => (await metric(a, 'mnemo_redis_up')) === 1 && (await metric(b, 'mnemo_redis_up')) === 1,
    );
    expect((await ask(b, 'Back again?')).status).toBe(200);
  });
});
