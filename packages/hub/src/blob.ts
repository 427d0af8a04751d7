/**
 * Downloads one file into `blobs/<etag>`, resumable and verified.
 *
 * Bytes go to `blobs/<etag>.incomplete`. A later attempt (in the same call after a dropped connection, or in a
 * later run) starts with `Range: bytes=<size on disk>-` and appends. Before the file is renamed into place its
 * size must equal the tree listing's, and its hash the one the listing announces: the sha256 (LFS oid) for LFS
 * files, the git blob sha1 (`oid`) for the others. On a mismatch the `.incomplete` file is deleted; if it had
 * been assembled from several requests the file is fetched once more from byte 0, else `IntegrityError` is
 * thrown. A short or corrupt body is therefore never kept as the blob.
 */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, rename, rm, truncate, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { sizeOf } from './cache';
import { DownloadInterruptedError, HubConnectionError, HubHttpError, IntegrityError } from './errors';
import { describe } from './http';

export interface BlobSpec {
  /** The `/resolve/<sha>/<path>` URL. */
  url: string;
  /** Repo path, for messages. */
  file: string;
  /** `blobs/<etag>`. */
  blobPath: string;
  /** Size from the tree listing. */
  size: number;
  /** LFS oid (sha256 of the content), when the file is in LFS. */
  sha256?: string;
  /** Git blob oid (sha1 of `blob <size>\0<content>`), checked for non-LFS files. */
  gitSha1?: string;
}

export interface BlobDownloadOptions {
  fetch: typeof fetch;
  /** Further attempts after a dropped connection, a short body or a 5xx/429 answer. */
  retries: number;
  /** Delay before the first retry; doubled each time. */
  retryDelayMs: number;
  signal?: AbortSignal;
  /** Called with the number of bytes of this file on disk, after every chunk. */
  onBytes?: (bytesOnDisk: number) => void;
}

/** A failure worth another attempt; the bytes written so far stay in `.incomplete`. */
class Retryable extends Error {}

class Verifier {
  private sha256?: Hash;
  private sha1?: Hash;
  constructor(private readonly spec: BlobSpec) {
    this.reset();
  }
  /** Forget the bytes seen so far. */
  reset(): void {
    const { sha256, gitSha1, size } = this.spec;
    if (sha256 && /^[0-9a-f]{64}$/.test(sha256)) this.sha256 = createHash('sha256');
    else if (gitSha1 && /^[0-9a-f]{40}$/.test(gitSha1))
      this.sha1 = createHash('sha1').update(`blob ${size}\0`);
  }
  update(chunk: Uint8Array): void {
    this.sha256?.update(chunk);
    this.sha1?.update(chunk);
  }
  /** An error message, or `null` when the content is right. */
  check(): string | null {
    if (this.sha256) {
      const got = this.sha256.digest('hex');
      return got === this.spec.sha256 ? null : `sha256 mismatch: expected ${this.spec.sha256}, got ${got}`;
    }
    if (this.sha1) {
      const got = this.sha1.digest('hex');
      return got === this.spec.gitSha1
        ? null
        : `git blob sha1 mismatch: expected ${this.spec.gitSha1}, got ${got}`;
    }
    return null;
  }
}

async function hashPrefix(path: string, length: number, verifier: Verifier): Promise<void> {
  if (length === 0) return;
  for await (const chunk of createReadStream(path, { start: 0, end: length - 1 })) {
    verifier.update(chunk as Buffer);
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Downloads `spec` into `spec.blobPath`. Resolves once the verified blob is in place. */
export async function downloadBlob(spec: BlobSpec, opts: BlobDownloadOptions): Promise<void> {
  const part = `${spec.blobPath}.incomplete`;
  await mkdir(dirname(spec.blobPath), { recursive: true });
  let failures = 0;
  let refetchedAfterMismatch = false;
  for (;;) {
    let have = (await sizeOf(part)) ?? 0;
    if (have > spec.size) {
      await truncate(part, 0);
      have = 0;
    }
    const verifier = new Verifier(spec);
    await hashPrefix(part, have, verifier);
    const startedAt = have;
    if (spec.size === 0) await writeFile(part, new Uint8Array(0));
    opts.onBytes?.(have);
    if (have < spec.size) {
      try {
        have = await fetchInto(spec, part, have, verifier, opts);
      } catch (err) {
        if (opts.signal?.aborted) throw opts.signal.reason ?? err;
        if (!(err instanceof Retryable || err instanceof HubConnectionError)) throw err;
        failures++;
        if (failures > opts.retries) {
          const onDisk = (await sizeOf(part)) ?? 0;
          throw new DownloadInterruptedError(
            `Download of "${spec.file}" interrupted after ${failures} attempt(s): ${describe(err)}. ` +
              `${onDisk} of ${spec.size} bytes are kept in ${part}; run again to resume.`,
            spec.file,
            onDisk,
          );
        }
        await sleep(opts.retryDelayMs * 2 ** (failures - 1));
        continue;
      }
    }
    const problem = verifier.check();
    if (problem === null) {
      await rename(part, spec.blobPath);
      return;
    }
    await rm(part, { force: true });
    // Assembled from several requests: a bad earlier part is possible, so fetch the whole file once more.
    if (startedAt > 0 && !refetchedAfterMismatch) {
      refetchedAfterMismatch = true;
      continue;
    }
    throw new IntegrityError(
      `Downloaded "${spec.file}" is corrupt (${problem}); it was deleted, not kept in the cache.`,
      spec.file,
    );
  }
}

/** One request, appending to `part` from `have`; returns the new size on disk. */
async function fetchInto(
  spec: BlobSpec,
  part: string,
  have: number,
  verifier: Verifier,
  opts: BlobDownloadOptions,
): Promise<number> {
  const headers: Record<string, string> = { 'accept-encoding': 'identity' };
  if (have > 0) headers.range = `bytes=${have}-`;
  const res = await opts.fetch(spec.url, { headers, signal: opts.signal, redirect: 'follow' });

  if (res.status === 206) {
    const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(res.headers.get('content-range') ?? '');
    if (!m || Number(m[1]) !== have) {
      await res.body?.cancel();
      await truncate(part, 0);
      throw new Retryable(
        `unexpected Content-Range "${res.headers.get('content-range')}" for bytes=${have}-`,
      );
    }
  } else if (res.status === 200) {
    if (have > 0) {
      // The server ignored the Range header: start over from byte 0.
      await truncate(part, 0);
      verifier.reset();
      have = 0;
    }
  } else if (res.status === 416) {
    await res.body?.cancel();
    await truncate(part, 0);
    throw new Retryable(`HTTP 416 for bytes=${have}- of ${spec.size}`);
  } else {
    await res.body?.cancel();
    const msg = `HTTP ${res.status} ${res.statusText} while downloading "${spec.file}" from ${spec.url}`;
    if (res.status >= 500 || res.status === 429) throw new Retryable(msg);
    throw new HubHttpError(msg, res.status, spec.url);
  }
  if (!res.body) throw new Retryable('empty response body');

  const fh = await open(part, have === 0 ? 'w' : 'a');
  const reader = res.body.getReader();
  try {
    for (;;) {
      let chunk: Awaited<ReturnType<typeof reader.read>>;
      try {
        chunk = await reader.read();
      } catch (err) {
        throw new Retryable(`connection dropped after ${have} bytes (${describe(err)})`);
      }
      if (chunk.done) break;
      const bytes = chunk.value;
      if (have + bytes.length > spec.size) {
        await fh.close();
        await rm(part, { force: true });
        throw new IntegrityError(
          `Downloaded "${spec.file}" is longer than the ${spec.size} bytes the tree listing announced; ` +
            'it was deleted, not kept in the cache.',
          spec.file,
        );
      }
      await fh.write(bytes);
      verifier.update(bytes);
      have += bytes.length;
      opts.onBytes?.(have);
    }
  } catch (err) {
    await reader.cancel().catch(() => {});
    throw err;
  } finally {
    await fh.close().catch(() => {});
  }
  if (have < spec.size) throw new Retryable(`the body ended after ${have} of ${spec.size} bytes`);
  return have;
}
