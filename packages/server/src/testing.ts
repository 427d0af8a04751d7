/** Helpers for this package's tests (not exported). */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer as createNetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { syntheticPreset } from '@mnemo/test-utils';
import type { ServerOptions } from './options';
import { createServer, type MnemoServer } from './server';

export const MODEL_DIR = syntheticPreset('llama-f32');
export const MODEL_ID = 'llama-f32';

export interface TestServer extends MnemoServer {
  readonly cacheDir: string;
  /** Closes the server and removes its cache folder. */
  stop(): Promise<void>;
}

/**
 * A hang guard, never a speed check: how long a test waits for something that must happen before it gives up. CI runs
 * on 2 cores shared with other work, where what takes milliseconds alone can take seconds.
 */
export const HANG_GUARD_MS = 240_000;

/** Polls `ok` until it holds; throws (naming `what`) only past the hang guard. */
export async function waitFor(
  what: string,
  ok: () => Promise<boolean> | boolean,
  everyMs = 10,
): Promise<void> {
  const deadline = Date.now() + HANG_GUARD_MS;
  while (!(await ok())) {
    if (Date.now() > deadline) throw new Error(`gave up waiting (${HANG_GUARD_MS / 1000} s) for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/**
 * A server on a free loopback port with the small synthetic Llama, one thread, and a fresh cache folder. With a Redis
 * tier it returns once that tier is connected, and its command timeout is a hang guard (a loaded machine must not
 * make a local Redis look unavailable); tests of a slow Redis pass their own `cacheRedisTimeout`.
 */
export async function startTestServer(opts: Partial<ServerOptions> = {}): Promise<TestServer> {
  const cacheDir = mkdtempSync(join(tmpdir(), 'mnemo-server-test-'));
  const server = await createServer({
    model: MODEL_DIR,
    port: 0,
    threads: 1,
    backendName: 'wasm',
    logLevel: 'silent',
    cacheDir: join(cacheDir, 'prompts'),
    cacheMinTokens: 16,
    ...(opts.cacheRedis ? { cacheRedisTimeout: HANG_GUARD_MS } : {}),
    ...opts,
  }).catch((e: unknown) => {
    rmSync(cacheDir, { recursive: true, force: true });
    throw e;
  });
  if (opts.cacheRedis)
    await waitFor('the Redis tier to connect', async () => {
      const h = (await (await fetch(`${server.url}/health`)).json()) as { redis: string };
      return h.redis === 'up';
    }).catch(async (e: unknown) => {
      await server.close();
      rmSync(cacheDir, { recursive: true, force: true });
      throw e;
    });
  return Object.assign(Object.create(server) as MnemoServer, server, {
    cacheDir,
    stop: async () => {
      await server.close();
      rmSync(cacheDir, { recursive: true, force: true });
    },
  }) as TestServer;
}

/** Reads one Prometheus sample (`name{labels}`) from /metrics text; 0 when absent. */
export function metric(text: string, name: string, labels: Record<string, string> = {}): number {
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(\{([^}]*)\})?\s+(\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = (m[3] ?? '').split(',').filter(Boolean);
    if (want.every((w) => have.includes(w)) && (want.length > 0 || have.length === 0)) return Number(m[4]);
  }
  return 0;
}

/** The redis-server binary, or null (tests then skip with a message; under CI a missing binary is an error). */
export function redisServerBinary(): string | null {
  for (const p of ['/usr/bin/redis-server', '/usr/local/bin/redis-server']) if (existsSync(p)) return p;
  const r = spawnSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' });
  const found = r.status === 0 && r.stdout.trim() ? r.stdout.trim() : null;
  if (!found) {
    if (process.env.CI)
      throw new Error(
        "redis-server is not installed: scripts/setup.sh installs Debian's redis-server package",
      );
    process.stderr.write(
      '[mnemo tests] skipping Redis tier tests: no redis-server binary (apt-get install redis-server)\n',
    );
  }
  return found;
}

export interface TestRedis {
  readonly url: string;
  readonly port: number;
  stop(): Promise<void>;
}

/** A loopback port free at the time of asking (another process may take it before it is used: callers retry). */
async function freePort(): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const s = createNetServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
}

/**
 * Starts a private redis-server on a free loopback port (no persistence) and waits until it answers. A port taken by
 * another process between choosing and binding it makes redis-server exit at once: it then tries another port.
 */
export async function startRedisServer(bin: string): Promise<TestRedis> {
  for (let attempt = 1; ; attempt++) {
    const r = await startRedisOn(bin, await freePort());
    if (r !== 'exited') return r;
    if (attempt === 5) throw new Error('redis-server exited at start on 5 different ports');
  }
}

async function startRedisOn(bin: string, port: number): Promise<TestRedis | 'exited'> {
  const dir = mkdtempSync(join(tmpdir(), 'mnemo-redis-'));
  const proc = spawn(
    bin,
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir],
    { stdio: 'ignore' },
  );
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      const exited = new Promise<void>((r) => proc.once('exit', () => r()));
      proc.kill('SIGKILL');
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  };
  // Answered by this redis-server (its process id), not by another one that holds the port.
  const ours = () =>
    new Promise<boolean>((resolve) => {
      const sock = connect(port, '127.0.0.1');
      let text = '';
      // A silent holder of the port: give up on this try (the loop asks again; not a speed check).
      sock.setTimeout(1000, () => sock.destroy());
      sock.once('error', () => resolve(false));
      sock.once('connect', () => sock.write('INFO server\r\n'));
      sock.on('data', (d) => {
        text += String(d);
        const m = /process_id:(\d+)\r\n/.exec(text);
        if (m || text.startsWith('-')) {
          sock.destroy();
          resolve(m !== null && Number(m[1]) === proc.pid);
        }
      });
      sock.once('close', () => resolve(false));
    });
  try {
    await waitFor(
      'redis-server to answer',
      async () => {
        if (proc.exitCode !== null || proc.signalCode !== null) return true;
        return ours();
      },
      50,
    );
  } catch (e) {
    await stop();
    throw e;
  }
  if (proc.exitCode !== null || proc.signalCode !== null) {
    await stop();
    return 'exited';
  }
  return { url: `redis://127.0.0.1:${port}`, port, stop };
}
