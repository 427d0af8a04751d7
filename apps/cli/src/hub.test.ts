import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { type FakeHub, repoFromDirectory, startFakeHub } from '@mnemo/hub/testing';
import { syntheticPreset } from '@mnemo/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// `mnemo generate --model owner/name` downloads through a loopback stand-in for the Hugging Face Hub that this test
// starts (these machines cannot reach the real one), into the standard HF cache layout, and then runs offline.
const cli = join(import.meta.dirname, '..', 'dist', 'mnemo.js');
const run = promisify(execFile);

describe.skipIf(!existsSync(cli))('mnemo with a Hub repo id', () => {
  let hub: FakeHub;
  const cache = mkdtempSync(join(tmpdir(), 'mnemo-hub-'));
  beforeAll(async () => {
    hub = await startFakeHub({ repos: [repoFromDirectory('acme/llama-f32', syntheticPreset('llama-f32'))] });
  });
  afterAll(async () => {
    await hub?.close();
    rmSync(cache, { recursive: true, force: true });
  });
  const env = (extra: Record<string, string> = {}) => ({
    ...process.env,
    HF_ENDPOINT: hub.url,
    HF_HUB_CACHE: cache,
    HF_HUB_OFFLINE: '',
    ...extra,
  });
  const args = [
    'generate',
    '--prompt',
    'Hi! What are you up to?',
    '--ignore-chat-template',
    '--json',
    '--max-tokens',
    '4',
  ];

  it('downloads into the HF cache, then generates exactly as from the local folder', async () => {
    const remote = await run(process.execPath, [cli, ...args, '--model', 'acme/llama-f32'], { env: env() });
    const local = await run(process.execPath, [cli, ...args, '--model', syntheticPreset('llama-f32')]);
    const a = JSON.parse(remote.stdout);
    const b = JSON.parse(local.stdout);
    expect({ p: a.prompt_tokens, t: a.tokens }).toEqual({ p: b.prompt_tokens, t: b.tokens });
    const repoDir = join(cache, 'models--acme--llama-f32');
    expect(readdirSync(repoDir).sort()).toEqual(['blobs', 'refs', 'snapshots']);
    expect(hub.contentRequests().length).toBeGreaterThan(0);
  });

  it('runs offline from the cache with HF_HUB_OFFLINE=1 and says clearly when a model is not cached', async () => {
    hub.resetRequests();
    const r = await run(process.execPath, [cli, ...args, '--model', 'acme/llama-f32'], {
      env: env({ HF_HUB_OFFLINE: '1' }),
    });
    expect(JSON.parse(r.stdout).tokens).toHaveLength(4);
    expect(hub.requests).toHaveLength(0);
    const missing = await run(process.execPath, [cli, ...args, '--model', 'acme/other'], {
      env: env({ HF_HUB_OFFLINE: '1' }),
    }).catch((e: { code: number; stderr: string }) => e);
    expect((missing as { code: number }).code).not.toBe(0);
    expect((missing as { stderr: string }).stderr).toMatch(/^mnemo: .*acme\/other/);
  });

  it('names a repo the Hub does not have', async () => {
    const r = await run(process.execPath, [cli, ...args, '--model', 'acme/nope'], { env: env() }).catch(
      (e: { code: number; stderr: string }) => e,
    );
    expect((r as { code: number }).code).not.toBe(0);
    expect((r as { stderr: string }).stderr).toMatch(/^mnemo: .*acme\/nope/);
    expect((r as { stderr: string }).stderr).not.toMatch(/\n\s+at /);
  });
});
