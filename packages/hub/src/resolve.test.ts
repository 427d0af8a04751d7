import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ModelIdError } from './errors';
import type { FetchLike } from './http';
import { isCommitHash, parseRepoId, repoFolderName } from './repo-id';
import { resolveModel } from './resolve';
import { startFakeHub } from './testing';

let tmp: string;
let modelDir: string;
const calls: string[] = [];
/** Fails the test if anything touches the network. */
const noNetwork: FetchLike = async (input) => {
  calls.push(String(input));
  throw new Error('network used');
};

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'mnemo-hub-resolve-'));
  modelDir = join(tmp, 'my-model');
  await mkdir(modelDir);
  await writeFile(join(modelDir, 'config.json'), '{}');
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('resolveModel: local paths', () => {
  it('returns existing directories without touching the network', async () => {
    const opts = { fetch: noNetwork, env: {} };
    expect(await resolveModel(modelDir, opts)).toBe(modelDir);
    const rel = relative(process.cwd(), modelDir);
    expect(rel.startsWith('../')).toBe(true);
    expect(await resolveModel(rel, opts)).toBe(modelDir);
    expect(await resolveModel(`${modelDir}/`, opts)).toBe(modelDir);
    expect(await resolveModel('~', opts)).toBe(homedir());
    expect(await resolveModel('.', opts)).toBe(process.cwd());
    expect(calls).toEqual([]);
  });

  it('says so when a path does not exist or is a file', async () => {
    const opts = { fetch: noNetwork, env: {} };
    await expect(resolveModel('./no/such/dir', opts)).rejects.toThrow(
      /Local model directory "\.\/no\/such\/dir" does not exist/,
    );
    await expect(resolveModel('~/no-such-mnemo-dir', opts)).rejects.toThrow(ModelIdError);
    await expect(resolveModel(join(modelDir, 'config.json'), opts)).rejects.toThrow(
      /is a file, not a model directory/,
    );
    expect(calls).toEqual([]);
  });

  it('refuses what is neither a directory nor a repo id', async () => {
    const opts = { fetch: noNetwork, env: {} };
    for (const bad of ['gpt2', 'a/b/c', 'owner/na me', '', 'owner/name@', '-x/y']) {
      await expect(resolveModel(bad, opts), bad).rejects.toBeInstanceOf(ModelIdError);
    }
    await expect(resolveModel('gpt2', opts)).rejects.toThrow(
      /neither an existing local directory nor a Hugging Face repo id \(owner\/name or owner\/name@revision\)/,
    );
    expect(calls).toEqual([]);
  });

  it('downloads a repo id and returns its snapshot folder', async () => {
    const hub = await startFakeHub();
    try {
      const dir = await resolveModel('acme/tiny', { env: { HF_HOME: tmp, HF_ENDPOINT: hub.url } });
      expect(dir).toBe(join(tmp, 'hub', 'models--acme--tiny', 'snapshots', hub.sha('acme/tiny')));
    } finally {
      await hub.close();
    }
  });
});

describe('repo ids', () => {
  it('parses owner/name[@revision]', () => {
    expect(parseRepoId('acme/tiny')).toEqual({ repo: 'acme/tiny' });
    expect(parseRepoId('Qwen/Qwen2.5-0.5B-Instruct@main')).toEqual({
      repo: 'Qwen/Qwen2.5-0.5B-Instruct',
      revision: 'main',
    });
    expect(parseRepoId('acme/tiny@refs/pr/1')).toEqual({ repo: 'acme/tiny', revision: 'refs/pr/1' });
    for (const bad of [
      'acme',
      'acme/',
      '/tiny',
      'a/b/c',
      'acme/ti--ny',
      'acme/tiny.',
      'acme/tiny@',
      'acme/tiny@../x',
    ]) {
      expect(parseRepoId(bad), bad).toBeNull();
    }
  });

  it('names cache folders and recognises commit hashes', () => {
    expect(repoFolderName('acme/tiny')).toBe('models--acme--tiny');
    expect(isCommitHash('a'.repeat(40))).toBe(true);
    expect(isCommitHash('main')).toBe(false);
    expect(isCommitHash('A'.repeat(40))).toBe(false);
  });
});
