import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { downloadModel } from './download';
import { DownloadInterruptedError, IntegrityError } from './errors';
import { type FakeHub, gitBlobSha1, sha256Hex, startFakeHub } from './testing';

let hub: FakeHub;
let tmp: string;
let env: Record<string, string>;
const opts = () => ({ env, retryDelayMs: 5 });

beforeEach(async () => {
  hub = await startFakeHub();
  tmp = await mkdtemp(join(tmpdir(), 'mnemo-hub-resume-'));
  env = { HF_HOME: tmp, HF_ENDPOINT: hub.url };
});

afterEach(async () => {
  await hub.close();
  await rm(tmp, { recursive: true, force: true });
});

const blobs = () => join(tmp, 'hub', 'models--acme--tiny', 'blobs');
const weights = () => hub.file('acme/tiny', 'model.safetensors');
const weightsBlob = () => join(blobs(), sha256Hex(weights()));

describe('resume after a dropped connection', () => {
  it('keeps the partial file, and a rerun resumes with Range: bytes=N-', async () => {
    hub.fault('model.safetensors', { dropAfterBytes: 1000, times: 1 });
    const err = await downloadModel('acme/tiny', {
      ...opts(),
      retries: 0,
      // the connection drops once the client has written the 1000 bytes it was sent
      onProgress: (p) => p.file === 'model.safetensors' && p.downloaded === 1000 && hub.dropHeld(),
    }).catch((e) => e);
    expect(err).toBeInstanceOf(DownloadInterruptedError);
    expect(err.message).toMatch(
      /Download of "model\.safetensors" interrupted .* 1000 of \d+ bytes are kept in .*\.incomplete; run again to resume/,
    );
    expect((await stat(`${weightsBlob()}.incomplete`)).size).toBe(1000);
    await expect(stat(weightsBlob())).rejects.toThrow();
    // No ref yet: offline use must not see a half-downloaded snapshot.
    await expect(readdir(join(tmp, 'hub', 'models--acme--tiny', 'refs'))).rejects.toThrow();

    hub.resetRequests();
    const { dir, downloaded } = await downloadModel('acme/tiny', opts());
    expect(downloaded).toEqual(['model.safetensors']);
    const cdn = hub.contentRequests();
    expect(cdn).toHaveLength(1);
    expect(cdn[0]).toMatchObject({
      kind: 'cdn',
      range: 'bytes=1000-',
      status: 206,
      bytesSent: weights().length - 1000,
    });
    // The Range header survived the 302 from resolve to the CDN.
    expect(hub.requests.find((r) => r.kind === 'resolve')?.range).toBe('bytes=1000-');
    expect(new Uint8Array(await readFile(join(dir, 'model.safetensors')))).toEqual(weights());
    expect((await readdir(blobs())).some((f) => f.endsWith('.incomplete'))).toBe(false);
  });

  it('retries and resumes within the same call by default', async () => {
    hub.fault('model.safetensors', { dropAfterBytes: 1500, times: 2 });
    const progress: number[] = [];
    const { dir } = await downloadModel('acme/tiny', {
      ...opts(),
      onProgress: (p) => {
        if (p.file !== 'model.safetensors') return;
        progress.push(p.downloaded);
        if (p.downloaded === 1500 || p.downloaded === 3000) hub.dropHeld();
      },
    });
    const ranges = hub
      .contentRequests()
      .filter((r) => r.file === 'model.safetensors')
      .map((r) => r.range);
    expect(ranges).toEqual([undefined, 'bytes=1500-', 'bytes=3000-']);
    expect(new Uint8Array(await readFile(join(dir, 'model.safetensors')))).toEqual(weights());
    expect(progress.at(-1)).toBe(weights().length);
  });

  it('resumes a clean but short body', async () => {
    hub.fault('tokenizer.json', { truncateAfterBytes: 10, times: 1 });
    const { dir } = await downloadModel('acme/tiny', opts());
    const reqs = hub.contentRequests().filter((r) => r.file === 'tokenizer.json');
    expect(reqs.map((r) => r.range)).toEqual([undefined, 'bytes=10-']);
    expect(new Uint8Array(await readFile(join(dir, 'tokenizer.json')))).toEqual(
      hub.file('acme/tiny', 'tokenizer.json'),
    );
  });

  it('starts over when the server ignores Range', async () => {
    await mkdir(blobs(), { recursive: true });
    await writeFile(`${weightsBlob()}.incomplete`, weights().subarray(0, 700));
    hub.fault('model.safetensors', { ignoreRange: true });
    const { dir } = await downloadModel('acme/tiny', opts());
    const req = hub.contentRequests().find((r) => r.file === 'model.safetensors')!;
    expect(req).toMatchObject({ range: 'bytes=700-', status: 200 });
    expect(new Uint8Array(await readFile(join(dir, 'model.safetensors')))).toEqual(weights());
  });

  it('resumes a partial file left by @huggingface/hub, and retries a 503', async () => {
    await mkdir(blobs(), { recursive: true });
    await writeFile(`${weightsBlob()}.incomplete`, weights().subarray(0, 2048));
    hub.fault('model.safetensors', { status: 503, times: 1 });
    const { dir } = await downloadModel('acme/tiny', opts());
    const reqs = hub.requests.filter((r) => r.kind === 'cdn');
    expect(reqs.map((r) => [r.range, r.status])).toEqual([
      ['bytes=2048-', 503],
      ['bytes=2048-', 206],
    ]);
    expect(new Uint8Array(await readFile(join(dir, 'model.safetensors')))).toEqual(weights());
  });
});

describe('integrity', () => {
  it('refuses a corrupt LFS body (right length, wrong bytes): sha256 mismatch, nothing kept', async () => {
    hub.fault('model.safetensors', { corrupt: true });
    const err = await downloadModel('acme/tiny', opts()).catch((e) => e);
    expect(err).toBeInstanceOf(IntegrityError);
    expect(err.message).toMatch(
      new RegExp(
        `"model\\.safetensors" is corrupt \\(sha256 mismatch: expected ${sha256Hex(weights())}, got [0-9a-f]{64}\\)`,
      ),
    );
    expect(err.message).toMatch(/deleted, not kept/);
    const files = await readdir(blobs());
    expect(files.some((f) => f.startsWith(sha256Hex(weights())))).toBe(false);
    const snapshot = join(tmp, 'hub', 'models--acme--tiny', 'snapshots', hub.sha('acme/tiny'));
    await expect(stat(join(snapshot, 'model.safetensors'))).rejects.toThrow();

    hub.clearFaults();
    const { dir } = await downloadModel('acme/tiny', opts());
    expect(new Uint8Array(await readFile(join(dir, 'model.safetensors')))).toEqual(weights());
  });

  it('refuses a corrupt regular file: git blob sha1 mismatch', async () => {
    hub.fault('config.json', { corrupt: true });
    const err = await downloadModel('acme/tiny', opts()).catch((e) => e);
    expect(err).toBeInstanceOf(IntegrityError);
    const oid = gitBlobSha1(hub.file('acme/tiny', 'config.json'));
    expect(err.message).toMatch(`git blob sha1 mismatch: expected ${oid}`);
    expect((await readdir(blobs())).some((f) => f.startsWith(oid))).toBe(false);
  });

  it('refetches from byte 0 when a resumed file turns out corrupt', async () => {
    await mkdir(blobs(), { recursive: true });
    await writeFile(`${weightsBlob()}.incomplete`, new Uint8Array(1200).fill(0xab));
    const { dir } = await downloadModel('acme/tiny', opts());
    const ranges = hub
      .contentRequests()
      .filter((r) => r.file === 'model.safetensors')
      .map((r) => r.range);
    expect(ranges).toEqual(['bytes=1200-', undefined]);
    expect(new Uint8Array(await readFile(join(dir, 'model.safetensors')))).toEqual(weights());
  });

  it('refuses a blob longer than the listing says', async () => {
    const repo = hub.file('acme/tiny', 'model.safetensors');
    await mkdir(blobs(), { recursive: true });
    // A partial file larger than the expected size is discarded, and the download restarts from 0.
    await writeFile(`${weightsBlob()}.incomplete`, new Uint8Array(repo.length + 10));
    const { dir } = await downloadModel('acme/tiny', opts());
    expect(new Uint8Array(await readFile(join(dir, 'model.safetensors')))).toEqual(repo);
    expect(hub.contentRequests().find((r) => r.file === 'model.safetensors')?.range).toBeUndefined();
  });
});
