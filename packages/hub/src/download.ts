/**
 * `downloadModel`: the files a model needs, at one commit, into the Hugging Face cache.
 *
 * `@huggingface/hub` answers the API questions (`modelInfo` → commit sha, `listFiles` → tree with sizes and
 * oids, following `Link` paging); the bytes are fetched by `downloadBlob` (resumable, verified) into the same
 * layout the library and `huggingface_hub` write, so a snapshot written by any of them is reused by the others.
 */
import { join } from 'node:path';
import { HubApiError, type ListFileEntry, listFiles, modelInfo } from '@huggingface/hub';
import { downloadBlob } from './blob';
import { findCachedSnapshot, linkIntoSnapshot, repoCachePaths, sizeOf, writeRef } from './cache';
import { type HubEnv, hubCacheDir, hubEndpoint, hubToken, isOffline } from './env';
import {
  HubConnectionError,
  HubError,
  HubHttpError,
  IntegrityError,
  ModelIdError,
  NotInCacheError,
} from './errors';
import { createHubFetch, type FetchLike } from './http';
import { type FileSelection, isSelected } from './patterns';
import { isCommitHash, parseRepoId } from './repo-id';

export interface DownloadProgress {
  /** Repo path of the file being downloaded. */
  file: string;
  /** Bytes of this file on disk (a resumed download starts above 0). */
  downloaded: number;
  /** Size of this file. */
  total: number;
  /** Bytes on disk across all files this call downloads. */
  overallDownloaded: number;
  /** Size of all files this call downloads (files already cached are not counted). */
  overallTotal: number;
  /** 0-based index of the file among the `fileCount` this call downloads. */
  fileIndex: number;
  fileCount: number;
}

export interface HubOptions extends FileSelection {
  /** Branch, tag or commit. Default: the `@revision` of the id, else `main`. */
  revision?: string;
  /** Default: `hubCacheDir(env)`. */
  cacheDir?: string;
  /** Hub URL. Default: `HF_ENDPOINT`, else https://huggingface.co. */
  endpoint?: string;
  /** Access token. Default: `HF_TOKEN`, else the token file `$HF_HOME/token`. */
  token?: string;
  /** Never touch the network; use the cache only. Default: `HF_HUB_OFFLINE`. */
  offline?: boolean;
  onProgress?: (progress: DownloadProgress) => void;
  /** Replaces the global `fetch` (proxies, tests). */
  fetch?: FetchLike;
  /** Environment to read the `HF_*` variables from. Default: `process.env`. */
  env?: HubEnv;
  /** Further attempts per file after a dropped connection or a 5xx answer (default 3); each resumes. */
  retries?: number;
  /** Delay before the first retry, doubled each time (default 500 ms). */
  retryDelayMs?: number;
  signal?: AbortSignal;
  /**
   * Narrows the files selected by the patterns to the ones returned (repo paths); called with the selected paths of
   * the tree listing, or of the cached snapshot when offline. Throw to refuse (a `HubError` naming what is there).
   */
  pick?: (paths: string[]) => string[];
}

export interface DownloadResult {
  /** `owner/name`. */
  repo: string;
  /** The revision asked for. */
  revision: string;
  /** The commit it resolved to. */
  sha: string;
  /** `{cacheDir}/models--owner--name/snapshots/{sha}`: the model directory. */
  dir: string;
  /** Repo paths of the selected files, all present in `dir`. */
  files: string[];
  /** Repo paths fetched by this call (the others were cached, or fetched by a concurrent call). */
  downloaded: string[];
  /** True when the Hub was not asked at all (offline mode, or the Hub was unreachable and the cache had it). */
  fromCache: boolean;
}

/** Files of one process being downloaded right now, so concurrent calls share one download per blob. */
const inflight = new Map<string, Promise<void>>();

function validRepoPath(path: string): boolean {
  const parts = path.replace(/\\/g, '/').split('/');
  return !path.startsWith('/') && !/^[A-Za-z]:/.test(path) && !parts.includes('..') && !parts.includes('');
}

/**
 * Downloads (or finds in the cache) the files of `repo` (`owner/name`, optionally `@revision`) selected by
 * `allowPatterns` / `ignorePatterns`, and returns where they are.
 */
export async function downloadModel(repo: string, opts: HubOptions = {}): Promise<DownloadResult> {
  const ref = parseRepoId(repo);
  if (!ref)
    throw new ModelIdError(`"${repo}" is not a Hugging Face repo id (owner/name or owner/name@revision).`);
  const revision = opts.revision ?? ref.revision ?? 'main';
  const env = opts.env ?? process.env;
  const cacheDir = opts.cacheDir ?? hubCacheDir(env);
  const label = `"${ref.repo}"${revision === 'main' ? '' : ` (revision ${revision})`}`;

  if (opts.offline ?? isOffline(env)) {
    const cached = await findCachedSnapshot(cacheDir, ref.repo, revision, opts);
    if (cached.ok) return cachedResult(ref.repo, revision, picked(cached, opts));
    throw new NotInCacheError(
      `${label} is not in the cache at ${cacheDir}, and offline mode is on (HF_HUB_OFFLINE=1): ${cached.reason}. ` +
        'Download it once with network access (unset HF_HUB_OFFLINE), or point HF_HUB_CACHE at a cache that has it.',
      ref.repo,
      revision,
      cacheDir,
    );
  }

  const endpoint = (opts.endpoint ?? hubEndpoint(env)).replace(/\/+$/, '');
  const token = opts.token ?? hubToken(env);
  const hubFetch = createHubFetch(
    { endpoint, repo: ref.repo, revision, token, signal: opts.signal },
    opts.fetch,
  );
  // The library refuses tokens without the `hf_` prefix; those are sent by `hubFetch` instead.
  const lib = {
    hubUrl: endpoint,
    fetch: hubFetch,
    accessToken: token?.startsWith('hf_') ? token : undefined,
  };

  let sha: string;
  const entries: ListFileEntry[] = [];
  try {
    const info = await modelInfo({ name: ref.repo, revision, additionalFields: ['sha'], ...lib });
    if (typeof info.sha !== 'string' || !isCommitHash(info.sha)) {
      throw new HubError(
        `The Hub at ${endpoint} gave no commit sha for ${label} (got ${JSON.stringify(info.sha)}).`,
      );
    }
    sha = info.sha;
    for await (const entry of listFiles({ repo: ref.repo, revision: sha, recursive: true, ...lib })) {
      entries.push(entry);
    }
  } catch (err) {
    if (err instanceof HubConnectionError) {
      // Like huggingface_hub: an unreachable Hub is not fatal when the cache has the revision.
      const cached = await findCachedSnapshot(cacheDir, ref.repo, revision, opts);
      if (cached.ok) return cachedResult(ref.repo, revision, picked(cached, opts));
      throw new HubConnectionError(
        `${err.message}; and ${label} is not in the cache at ${cacheDir}: ${cached.reason}.`,
        {
          cause: err,
        },
      );
    }
    if (err instanceof HubApiError) {
      throw new HubHttpError(
        `The Hub at ${endpoint} failed for ${label}: ${err.message}`,
        err.statusCode,
        err.url,
      );
    }
    throw err;
  }

  const paths = repoCachePaths(cacheDir, ref.repo);
  const dir = join(paths.snapshots, sha);
  let selected = entries.filter((e) => e.type === 'file' && isSelected(e.path, opts));
  if (opts.pick && selected.length > 0) {
    const chosen = new Set(opts.pick(selected.map((e) => e.path)));
    selected = selected.filter((e) => chosen.has(e.path));
  }
  if (selected.length === 0) {
    const all = entries.filter((e) => e.type === 'file').map((e) => e.path);
    throw new HubError(
      `${label} has no files a model needs (selected by ${JSON.stringify(opts.allowPatterns ?? 'the default patterns')}); ` +
        `it has: ${all.slice(0, 12).join(', ')}${all.length > 12 ? ', ...' : ''}. Pass allowPatterns to choose files.`,
    );
  }
  const todo: { entry: ListFileEntry; size: number; blobPath: string; target: string }[] = [];
  for (const entry of selected) {
    if (!validRepoPath(entry.path)) {
      throw new HubError(
        `Refusing the file name "${entry.path}" of ${label}: it would escape the cache folder.`,
      );
    }
    const etag = entry.lfs?.oid ?? entry.xetHash ?? entry.oid;
    if (!etag || !/^[0-9A-Za-z._-]+$/.test(etag)) {
      throw new HubError(`The tree listing of ${label} gives no usable oid for "${entry.path}".`);
    }
    const size = entry.lfs?.size ?? entry.size;
    const target = join(dir, entry.path);
    if ((await sizeOf(target)) === size) continue;
    const blobPath = join(paths.blobs, etag);
    if ((await sizeOf(blobPath)) === size) {
      await linkIntoSnapshot(blobPath, target);
      continue;
    }
    todo.push({ entry, size, blobPath, target });
  }

  const overallTotal = todo.reduce((n, t) => n + t.size, 0);
  let done = 0;
  const fetched: string[] = [];
  for (const [fileIndex, { entry, size, blobPath, target }] of todo.entries()) {
    const file = entry.path;
    const url = `${endpoint}/${ref.repo}/resolve/${sha}/${file.split('/').map(encodeURIComponent).join('/')}`;
    const report = (downloaded: number) =>
      opts.onProgress?.({
        file,
        downloaded,
        total: size,
        overallDownloaded: done + downloaded,
        overallTotal,
        fileIndex,
        fileCount: todo.length,
      });
    // Another call of this process may have fetched the blob since the plan was made, or be fetching it now.
    // (No `await` between the `get` and the `set` below, so two calls never start the same blob.)
    const already = (await sizeOf(blobPath)) === size;
    let pending = already ? undefined : inflight.get(blobPath);
    const shared = already || pending !== undefined;
    if (!shared) {
      fetched.push(file);
      pending = downloadBlob(
        { url, file, blobPath, size, sha256: entry.lfs?.oid, gitSha1: entry.lfs ? undefined : entry.oid },
        {
          fetch: hubFetch,
          retries: opts.retries ?? 3,
          retryDelayMs: opts.retryDelayMs ?? 500,
          signal: opts.signal,
          onBytes: report,
        },
      ).finally(() => inflight.delete(blobPath));
      inflight.set(blobPath, pending);
    }
    await pending;
    if (shared) report(size);
    if ((await sizeOf(blobPath)) !== size) {
      throw new IntegrityError(`"${file}" of ${label} has the wrong size in the cache after download.`, file);
    }
    await linkIntoSnapshot(blobPath, target);
    done += size;
  }

  // The ref is written last, so an interrupted download never makes `main` point at an incomplete snapshot.
  if (revision !== sha) await writeRef(paths, revision, sha);
  return {
    repo: ref.repo,
    revision,
    sha,
    dir,
    files: selected.map((e) => e.path).sort(),
    downloaded: fetched,
    fromCache: false,
  };
}

function picked(
  cached: { sha: string; dir: string; files: string[] },
  opts: HubOptions,
): { sha: string; dir: string; files: string[] } {
  if (!opts.pick) return cached;
  const chosen = new Set(opts.pick(cached.files));
  return { ...cached, files: cached.files.filter((f) => chosen.has(f)) };
}

function cachedResult(
  repo: string,
  revision: string,
  cached: { sha: string; dir: string; files: string[] },
): DownloadResult {
  return {
    repo,
    revision,
    sha: cached.sha,
    dir: cached.dir,
    files: cached.files,
    downloaded: [],
    fromCache: true,
  };
}
