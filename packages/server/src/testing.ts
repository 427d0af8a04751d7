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

/** A server on a free loopback port with the small synthetic Llama, one thread, and a fresh cache folder. */
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
    ...opts,
  }).catch((e: unknown) => {
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

/** Starts a private redis-server on a free loopback port (no persistence) and waits until it answers. */
export async function startRedisServer(bin: string): Promise<TestRedis> {
  const port = await new Promise<number>((resolve, reject) => {
    const s = createNetServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
  const dir = mkdtempSync(join(tmpdir(), 'mnemo-redis-'));
  const proc = spawn(
    bin,
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir],
    {
      stdio: 'ignore',
    },
  );
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      const exited = new Promise<void>((r) => proc.once('exit', () => r()));
      proc.kill('SIGKILL');
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 20_000;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const sock = connect(port, '127.0.0.1');
      sock.once('error', () => resolve(false));
      sock.once('connect', () => sock.write('PING\r\n'));
      sock.once('data', (d) => {
        sock.destroy();
        resolve(String(d).startsWith('+PONG'));
      });
    });
    if (ok) return { url: `redis://127.0.0.1:${port}`, port, stop };
    if (Date.now() > deadline) {
      await stop();
      throw new Error('redis-server did not start');
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}
