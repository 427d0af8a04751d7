import { lstat, mkdtemp, readdir, readFile, readlink, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { downloadFileToCacheDir, snapshotDownload } from '@huggingface/hub';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { type DownloadProgress, downloadModel } from './download';
import {
  GatedRepoError,
  HubConnectionError,
  HubError,
  NotInCacheError,
  RepoNotFoundError,
  RevisionNotFoundError,
  UnauthorizedError,
} from './errors';
import { resolveModel } from './resolve';
import { type FakeHub, gitBlobSha1, sha256Hex, startFakeHub, tinyRepo } from './testing';

const NEEDED = ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json'];

let hub: FakeHub;
let tmp: string;
let cacheDir: string;
/** An isolated environment: HF_HOME in the temp dir (no stray token file), the fake hub as endpoint. */
let env: Record<string, string>;

beforeEach(async () => {
  hub = await startFakeHub({
    tokens: ['hf_good', 'plain-secret', 'hf_granted'],
    repos: [
      tinyRepo('acme/tiny', { refs: ['v1'] }),
      tinyRepo('acme/private', { private: true }),
      tinyRepo('acme/gated', { gated: true, grantedTokens: ['hf_granted'] }),
    ],
  });
  tmp = await mkdtemp(join(tmpdir(), 'mnemo-hub-'));
  cacheDir = join(tmp, 'hub');
  env = { HF_HOME: tmp, HF_ENDPOINT: hub.url };
});

afterEach(async () => {
  await hub.close();
  await rm(tmp, { recursive: true, force: true });
});

const repoDir = () => join(cacheDir, 'models--acme--tiny');

async function listTree(dir: string, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const rel = prefix ? `${prefix}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...(await listTree(join(dir, e.name), rel)));
    else out.push(rel);
  }
  return out.sort();
}

describe('downloadModel: first download', () => {
  it('writes the Hugging Face cache layout: blobs, relative snapshot symlinks, refs/main', async () => {
    const sha = hub.sha('acme/tiny');
    const result = await downloadModel('acme/tiny', { env });

    expect(result).toMatchObject({ repo: 'acme/tiny', revision: 'main', sha, fromCache: false });
    expect(result.dir).toBe(join(repoDir(), 'snapshots', sha));
    expect(result.files).toEqual(NEEDED);
    expect([...result.downloaded].sort()).toEqual(NEEDED);

    expect(await readFile(join(repoDir(), 'refs', 'main'), 'utf8')).toBe(sha);
    expect(await listTree(join(repoDir(), 'snapshots'))).toEqual(NEEDED.map((f) => `${sha}/${f}`));

    const etags: string[] = [];
    for (const f of NEEDED) {
      const bytes = hub.file('acme/tiny', f);
      const etag = f.endsWith('.safetensors') ? sha256Hex(bytes) : gitBlobSha1(bytes);
      etags.push(etag);
      const link = join(result.dir, f);
      expect((await lstat(link)).isSymbolicLink()).toBe(true);
      expect(await readlink(link)).toBe(`../../blobs/${etag}`);
      expect(new Uint8Array(await readFile(link))).toEqual(bytes);
    }
    expect(await readdir(join(repoDir(), 'blobs'))).toEqual(etags.sort());

    // 1 model info + 1 tree + the files; the LFS file goes resolve → 302 → cdn. No probes, no paths-info.
    expect(hub.requests.filter((r) => r.kind === 'model-info')).toHaveLength(1);
    expect(hub.requests.filter((r) => r.kind === 'tree')).toHaveLength(1);
    expect(hub.requests.filter((r) => r.kind === 'paths-info')).toHaveLength(0);
    expect(
      hub
        .contentRequests()
        .map((r) => r.file)
        .sort(),
    ).toEqual(NEEDED);
    expect(hub.requests.some((r) => r.range)).toBe(false);
    expect(hub.requests.find((r) => r.file === 'model.safetensors')?.status).toBe(302);
  });

  it('skips README, *.bin and original/** by default, and fetches what allowPatterns asks for', async () => {
    const result = await downloadModel('acme/tiny', { env, allowPatterns: ['*.json', '*.bin'] });
    expect(result.files).toEqual([
      'config.json',
      'original/params.json',
      'pytorch_model.bin',
      'tokenizer.json',
      'tokenizer_config.json',
    ]);
    // Subfolders are kept, and the link climbs one more level.
    const link = join(result.dir, 'original/params.json');
    const oid = gitBlobSha1(hub.file('acme/tiny', 'original/params.json'));
    expect(await readlink(link)).toBe(`../../../blobs/${oid}`);
    expect(await readFile(link, 'utf8')).toBe(JSON.stringify({ dim: 32 }));

    const ignoring = await downloadModel('acme/tiny', {
      env,
      allowPatterns: ['*.json'],
      ignorePatterns: ['original/'],
    });
    expect(ignoring.files).not.toContain('original/params.json');
  });

  it('reports progress per chunk, ending at the total of each file and of the whole download', async () => {
    const events: DownloadProgress[] = [];
    await downloadModel('acme/tiny', { env, onProgress: (p) => events.push(p) });
    const total = NEEDED.reduce((n, f) => n + hub.file('acme/tiny', f).length, 0);
    for (const f of NEEDED) {
      const last = events.filter((e) => e.file === f).at(-1)!;
      expect(last.downloaded).toBe(last.total);
      expect(last.total).toBe(hub.file('acme/tiny', f).length);
    }
    expect(events.at(-1)).toMatchObject({ overallDownloaded: total, overallTotal: total, fileCount: 4 });
    for (let i = 1; i < events.length; i++) {
      expect(events[i]!.overallDownloaded).toBeGreaterThanOrEqual(events[i - 1]!.overallDownloaded);
    }
  });

  it('follows the paged tree listing (Link: rel="next")', async () => {
    const paged = await startFakeHub({ treePageSize: 2 });
    try {
      const result = await downloadModel('acme/tiny', { env: { ...env, HF_ENDPOINT: paged.url } });
      expect(result.files).toEqual(NEEDED);
      expect(paged.requests.filter((r) => r.kind === 'tree').length).toBeGreaterThan(3);
    } finally {
      await paged.close();
    }
  });
});

describe('downloadModel: cache reuse', () => {
  it('makes no file download on a second call', async () => {
    await downloadModel('acme/tiny', { env });
    hub.resetRequests();
    const again = await downloadModel('acme/tiny', { env });
    expect(again.downloaded).toEqual([]);
    expect(hub.contentRequests()).toHaveLength(0);
    expect(hub.requests.map((r) => r.kind)).toEqual(['model-info', 'tree']);
  });

  it('downloads each file once when calls run concurrently', async () => {
    const results = await Promise.all([1, 2, 3].map(() => downloadModel('acme/tiny', { env })));
    expect(
      hub
        .contentRequests()
        .map((r) => r.file)
        .sort(),
    ).toEqual(NEEDED);
    expect(results.flatMap((r) => r.downloaded).sort()).toEqual(NEEDED);
    for (const r of results) {
      for (const f of NEEDED)
        expect(new Uint8Array(await readFile(join(r.dir, f)))).toEqual(hub.file('acme/tiny', f));
    }
  });

  it('stops on abort, keeping the partial file', async () => {
    const ac = new AbortController();
    hub.fault('model.safetensors', { dropAfterBytes: 100 });
    const err = await downloadModel('acme/tiny', {
      env,
      signal: ac.signal,
      onProgress: (p) => p.file === 'model.safetensors' && p.downloaded > 0 && ac.abort(),
    }).catch((e) => e);
    expect(err.name).toBe('AbortError');
    hub.clearFaults();
    const after = await downloadModel('acme/tiny', { env });
    expect(after.downloaded).toEqual(['model.safetensors']);
    expect(hub.contentRequests().at(-1)?.range).toBe('bytes=100-');
  });

  it('re-links from an existing blob without downloading it', async () => {
    const { dir } = await downloadModel('acme/tiny', { env });
    await unlink(join(dir, 'model.safetensors'));
    hub.resetRequests();
    const again = await downloadModel('acme/tiny', { env });
    expect(again.downloaded).toEqual([]);
    expect(hub.contentRequests()).toHaveLength(0);
    expect((await lstat(join(dir, 'model.safetensors'))).isSymbolicLink()).toBe(true);
  });

  it('moves refs/main when the branch moves, downloading only the changed files', async () => {
    const first = await downloadModel('acme/tiny', { env });
    const repo = tinyRepo('acme/tiny');
    repo.files[0] = {
      path: 'config.json',
      content: JSON.stringify({ model_type: 'llama', hidden_size: 64 }),
    };
    const newSha = hub.setRepo(repo);
    hub.resetRequests();
    const second = await downloadModel('acme/tiny', { env });
    expect(second.sha).toBe(newSha);
    expect(second.sha).not.toBe(first.sha);
    expect(second.downloaded).toEqual(['config.json']);
    expect(await readFile(join(repoDir(), 'refs', 'main'), 'utf8')).toBe(newSha);
    expect(await readFile(join(second.dir, 'config.json'), 'utf8')).toContain('"hidden_size":64');
    // The old snapshot is still complete.
    expect(await readFile(join(first.dir, 'config.json'), 'utf8')).toContain('"hidden_size":32');
  });

  it('writes refs/<tag> for a tag, and no ref for a commit hash', async () => {
    const sha = hub.sha('acme/tiny');
    const tagged = await resolveModel('acme/tiny@v1', { env });
    expect(tagged).toBe(join(repoDir(), 'snapshots', sha));
    expect(await readFile(join(repoDir(), 'refs', 'v1'), 'utf8')).toBe(sha);

    await rm(repoDir(), { recursive: true });
    const byHash = await downloadModel(`acme/tiny@${sha}`, { env });
    expect(byHash.sha).toBe(sha);
    await expect(readdir(join(repoDir(), 'refs'))).rejects.toThrow();
  });

  it('shares the cache with @huggingface/hub in both directions', async () => {
    const debug = vi.spyOn(console, 'debug').mockImplementation(() => {});
    try {
      const sha = hub.sha('acme/tiny');
      const ours = await downloadModel('acme/tiny', { env });
      hub.resetRequests();
      // The library finds our files: 0 requests with a commit hash.
      const path = await downloadFileToCacheDir({
        repo: 'acme/tiny',
        path: 'model.safetensors',
        revision: sha,
        cacheDir,
        hubUrl: hub.url,
      });
      expect(path).toBe(join(ours.dir, 'model.safetensors'));
      expect(hub.requests).toHaveLength(0);

      // And we find the library's: a snapshot it downloaded needs no file download from us.
      const otherCache = join(tmp, 'other');
      await snapshotDownload({ repo: 'acme/tiny', cacheDir: otherCache, hubUrl: hub.url });
      hub.resetRequests();
      const reuse = await downloadModel('acme/tiny', { env, cacheDir: otherCache });
      expect(reuse.downloaded).toEqual([]);
      expect(hub.contentRequests()).toHaveLength(0);
    } finally {
      debug.mockRestore();
    }
  });
});

describe('downloadModel: offline', () => {
  it('works from the cache without any request when HF_HUB_OFFLINE=1', async () => {
    const online = await downloadModel('acme/tiny', { env });
    hub.resetRequests();
    const offline = await downloadModel('acme/tiny', { env: { ...env, HF_HUB_OFFLINE: '1' } });
    expect(offline).toMatchObject({ dir: online.dir, sha: online.sha, fromCache: true, downloaded: [] });
    expect(offline.files).toEqual(NEEDED);
    expect(hub.requests).toHaveLength(0);
    // A tag resolves through its ref, and the option overrides the env.
    await downloadModel('acme/tiny@v1', { env });
    hub.resetRequests();
    expect(await resolveModel('acme/tiny@v1', { env, offline: true })).toBe(online.dir);
    expect(hub.requests).toHaveLength(0);
  });

  it('fails clearly when the model is not in the cache', async () => {
    const err = await downloadModel('acme/tiny', { env: { ...env, HF_HUB_OFFLINE: 'true' } }).catch((e) => e);
    expect(err).toBeInstanceOf(NotInCacheError);
    expect(err.message).toMatch(
      /"acme\/tiny" is not in the cache at .*offline mode is on \(HF_HUB_OFFLINE=1\)/,
    );
    expect(hub.requests).toHaveLength(0);

    await downloadModel('acme/tiny', { env });
    await expect(downloadModel('acme/tiny@v9', { env, offline: true })).rejects.toThrow(/no refs\/v9/);
  });

  it('refuses a snapshot whose blob is missing', async () => {
    const { sha } = await downloadModel('acme/tiny', { env });
    await rm(join(repoDir(), 'blobs', sha256Hex(hub.file('acme/tiny', 'model.safetensors'))));
    await expect(downloadModel('acme/tiny', { env, offline: true })).rejects.toThrow(
      new RegExp(`snapshots/${sha} lacks model.safetensors`),
    );
  });

  it('refuses a sharded snapshot with a missing shard', async () => {
    const { sha, dir } = await downloadModel('acme/tiny', { env });
    await writeFile(
      join(dir, 'model.safetensors.index.json'),
      JSON.stringify({ weight_map: { a: 'model.safetensors', b: 'model-00002-of-00002.safetensors' } }),
    );
    await expect(downloadModel('acme/tiny', { env, offline: true })).rejects.toThrow(
      new RegExp(`snapshots/${sha} lacks model-00002-of-00002.safetensors`),
    );
  });

  it('falls back to the cache when the Hub is unreachable, else says both', async () => {
    await downloadModel('acme/tiny', { env });
    const deadUrl = hub.url;
    await hub.close();
    const cached = await downloadModel('acme/tiny', { env: { ...env, HF_ENDPOINT: deadUrl } });
    expect(cached.fromCache).toBe(true);
    const err = await downloadModel('acme/other', { env: { ...env, HF_ENDPOINT: deadUrl } }).catch((e) => e);
    expect(err).toBeInstanceOf(HubConnectionError);
    expect(err.message).toMatch(
      /Could not reach the Hugging Face Hub at http:\/\/127\.0\.0\.1:\d+: .*ECONNREFUSED/,
    );
    expect(err.message).toMatch(/"acme\/other" is not in the cache/);
    hub = await startFakeHub(); // for afterEach
  });
});

describe('downloadModel: endpoint and token', () => {
  it('sends HF_TOKEN as Authorization: Bearer on every request', async () => {
    await downloadModel('acme/private', { env: { ...env, HF_TOKEN: 'hf_good' } });
    const hubRequests = hub.requests.filter((r) => r.kind !== 'cdn');
    expect(hubRequests.length).toBeGreaterThan(3);
    for (const r of hubRequests) expect(r.authorization).toBe('Bearer hf_good');
  });

  it('sends tokens without the hf_ prefix too (the library refuses them)', async () => {
    await downloadModel('acme/private', { env, token: 'plain-secret' });
    expect(
      hub.requests.filter((r) => r.kind !== 'cdn').every((r) => r.authorization === 'Bearer plain-secret'),
    ).toBe(true);
  });

  it('reads the token file $HF_HOME/token', async () => {
    await writeFile(join(tmp, 'token'), 'hf_good\n');
    await downloadModel('acme/private', { env });
    expect(hub.requests[0]!.authorization).toBe('Bearer hf_good');
  });

  it('uses HF_ENDPOINT, and the endpoint option over it', async () => {
    await downloadModel('acme/tiny', { env });
    expect(hub.requests.length).toBeGreaterThan(0);
    const other = await startFakeHub();
    try {
      await downloadModel('acme/tiny', { env, endpoint: `${other.url}/`, cacheDir: join(tmp, 'c2') });
      expect(other.contentRequests()).toHaveLength(4);
    } finally {
      await other.close();
    }
  });
});

describe('downloadModel: errors', () => {
  it('repo not found', async () => {
    const err = await downloadModel('acme/nope', { env }).catch((e) => e);
    expect(err).toBeInstanceOf(RepoNotFoundError);
    expect(err.message).toMatch(
      /Repository "acme\/nope" not found on http:\/\/127\.0\.0\.1:\d+ \(HTTP 401 RepoNotFound/,
    );
    expect(err.message).toMatch(/set HF_TOKEN/);
    const authed = await downloadModel('acme/nope', { env, token: 'hf_good' }).catch((e) => e);
    expect(authed).toBeInstanceOf(RepoNotFoundError);
    expect(authed.status).toBe(404);
  });

  it('private repo without a token reads as not found', async () => {
    await expect(downloadModel('acme/private', { env })).rejects.toBeInstanceOf(RepoNotFoundError);
  });

  it('unauthorized: an invalid token', async () => {
    const err = await downloadModel('acme/tiny', { env, token: 'hf_wrong' }).catch((e) => e);
    expect(err).toBeInstanceOf(UnauthorizedError);
    expect(err.message).toMatch(/refused access to "acme\/tiny" \(HTTP 401: Invalid credentials/);
    expect(err.message).toMatch(/invalid, expired or lacks permission/);
  });

  it('gated repo: without a token, with a token not granted, and with a granted one', async () => {
    const anon = await downloadModel('acme/gated', { env }).catch((e) => e);
    expect(anon).toBeInstanceOf(GatedRepoError);
    expect(anon.message).toMatch(/"acme\/gated" is a gated model and no access token is set/);
    expect(anon.message).toMatch(/Accept its terms at http:\/\/127\.0\.0\.1:\d+\/acme\/gated/);
    const denied = await downloadModel('acme/gated', { env, token: 'hf_good' }).catch((e) => e);
    expect(denied).toBeInstanceOf(GatedRepoError);
    expect(denied.status).toBe(403);
    const ok = await downloadModel('acme/gated', { env, token: 'hf_granted' });
    expect(ok.files).toEqual(NEEDED);
  });

  it('revision not found', async () => {
    const err = await downloadModel('acme/tiny@nope', { env }).catch((e) => e);
    expect(err).toBeInstanceOf(RevisionNotFoundError);
    expect(err.message).toMatch(/Revision "nope" not found in "acme\/tiny"/);
  });

  it('handles empty files', async () => {
    hub.setRepo({
      id: 'acme/empty',
      files: [
        { path: 'config.json', content: '{}' },
        { path: 'merges.txt', content: '' },
      ],
    });
    const { dir } = await downloadModel('acme/empty', { env });
    expect(await readFile(join(dir, 'merges.txt'), 'utf8')).toBe('');
  });

  it('no file a model needs', async () => {
    hub.setRepo({ id: 'acme/gguf', files: [{ path: 'model.gguf', content: 'GGUF' }] });
    await expect(downloadModel('acme/gguf', { env })).rejects.toThrow(
      /no files a model needs .* it has: model\.gguf/,
    );
  });

  it('refuses file names that escape the cache', async () => {
    hub.setRepo({ id: 'acme/evil', files: [{ path: 'a/../../evil.json', content: '{}' }] });
    const err = await downloadModel('acme/evil', { env }).catch((e) => e);
    expect(err).toBeInstanceOf(HubError);
    expect(err.message).toMatch(/escape the cache/);
  });
});
