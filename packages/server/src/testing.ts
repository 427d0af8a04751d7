/** Helpers for this package's tests (not exported). */
import { mkdtempSync, rmSync } from 'node:fs';
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
