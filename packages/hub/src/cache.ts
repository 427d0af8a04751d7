/**
 * The Hugging Face cache layout, shared with `huggingface_hub` (Python) and `@huggingface/hub`:
 *
 *   {cacheDir}/models--{owner}--{name}/
 *     blobs/{etag}                      file bytes; etag = LFS sha256, else xet hash, else git blob sha1
 *     blobs/{etag}.incomplete           a download in progress (resumed from its size)
 *     refs/{revision}                   the commit sha a branch or tag pointed to (no newline)
 *     snapshots/{sha}/{path}            relative symlink to ../../blobs/{etag} (one more ../ per subfolder),
 *                                       or a copy where symlinks are not allowed
 */
import { randomBytes } from 'node:crypto';
import {
  copyFile,
  lstat,
  mkdir,
  readdir,
  readFile,
  rename,
  rm,
  stat,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { type FileSelection, isSelected } from './patterns';
import { isCommitHash, repoFolderName } from './repo-id';

export interface RepoCachePaths {
  /** `{cacheDir}/models--owner--name`. */
  root: string;
  blobs: string;
  refs: string;
  snapshots: string;
}

export function repoCachePaths(cacheDir: string, repo: string): RepoCachePaths {
  const root = join(cacheDir, repoFolderName(repo));
  return { root, blobs: join(root, 'blobs'), refs: join(root, 'refs'), snapshots: join(root, 'snapshots') };
}

/** The commit sha `refs/<revision>` holds, or `null`. */
export async function readRef(paths: RepoCachePaths, revision: string): Promise<string | null> {
  try {
    const sha = (await readFile(join(paths.refs, revision), 'utf8')).trim();
    return isCommitHash(sha) ? sha : null;
  } catch {
    return null;
  }
}

/** Writes `refs/<revision>` (subfolders for names like `refs/pr/1`) unless it already holds `sha`. */
export async function writeRef(paths: RepoCachePaths, revision: string, sha: string): Promise<void> {
  if ((await readRef(paths, revision)) === sha) return;
  const file = join(paths.refs, revision);
  await mkdir(dirname(file), { recursive: true });
  await writeFile(file, sha);
}

/** Size of the file at `path` (following symlinks), or `null` when it or its blob is missing. */
export async function sizeOf(path: string): Promise<number | null> {
  try {
    const s = await stat(path);
    return s.isFile() ? s.size : null;
  } catch {
    return null;
  }
}

/**
 * Points `snapshotFile` at `blobPath` with a relative symlink, replacing whatever was there; copies the blob
 * when the file system refuses symlinks. The link (or copy) is made under a temporary name and renamed into
 * place, so concurrent callers never see a missing or half-written file.
 */
export async function linkIntoSnapshot(blobPath: string, snapshotFile: string): Promise<void> {
  await mkdir(dirname(snapshotFile), { recursive: true });
  const tmp = `${snapshotFile}.${process.pid}-${randomBytes(4).toString('hex')}.tmp`;
  try {
    await symlink(relative(dirname(snapshotFile), blobPath), tmp);
  } catch {
    await copyFile(blobPath, tmp);
  }
  try {
    await rename(tmp, snapshotFile);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

/** Repo paths of the files in a snapshot folder, subfolders included, with `null` size for a dangling link. */
async function listSnapshot(dir: string, prefix = ''): Promise<Map<string, number | null>> {
  const out = new Map<string, number | null>();
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const rel = prefix ? `${prefix}/${entry.name}` : entry.name;
    const full = join(dir, entry.name);
    if (entry.isDirectory()) {
      for (const [k, v] of await listSnapshot(full, rel)) out.set(k, v);
    } else if (entry.isSymbolicLink() || entry.isFile()) {
      out.set(rel, await sizeOf(full));
    }
  }
  return out;
}

export type CachedSnapshot =
  | { ok: true; sha: string; dir: string; files: string[] }
  | { ok: false; reason: string };

/**
 * Finds `revision` of `repo` in the cache without any network access: `refs/<revision>` (or the hash itself)
 * gives the snapshot, whose selected files must all be present. Without the tree listing the complete file list
 * is unknown, so "complete" means: at least one selected file, no dangling link, `config.json` present when it
 * is selected, and every shard named by a selected `*.safetensors.index.json` present.
 */
export async function findCachedSnapshot(
  cacheDir: string,
  repo: string,
  revision: string,
  selection: FileSelection = {},
): Promise<CachedSnapshot> {
  const paths = repoCachePaths(cacheDir, repo);
  try {
    await lstat(paths.root);
  } catch {
    return { ok: false, reason: `nothing of "${repo}" has been downloaded (no ${paths.root})` };
  }
  const sha = isCommitHash(revision) ? revision : await readRef(paths, revision);
  if (!sha) return { ok: false, reason: `no cached commit for revision "${revision}" (no refs/${revision})` };
  const dir = join(paths.snapshots, sha);
  let files: Map<string, number | null>;
  try {
    files = await listSnapshot(dir);
  } catch {
    return { ok: false, reason: `the snapshot folder snapshots/${sha} is missing` };
  }
  const selected = [...files.keys()].filter((f) => isSelected(f, selection)).sort();
  const missing = selected.filter((f) => files.get(f) === null);
  if (selected.length === 0) return { ok: false, reason: `snapshots/${sha} holds none of the files needed` };
  if (isSelected('config.json', selection) && !files.has('config.json')) missing.push('config.json');
  for (const index of selected.filter((f) => f.endsWith('.safetensors.index.json'))) {
    const base = index.includes('/') ? index.slice(0, index.lastIndexOf('/') + 1) : '';
    try {
      const json = JSON.parse(await readFile(join(dir, index), 'utf8')) as {
        weight_map?: Record<string, string>;
      };
      for (const shard of new Set(Object.values(json.weight_map ?? {}))) {
        const f = base + shard;
        if (isSelected(f, selection) && files.get(f) == null && !missing.includes(f)) missing.push(f);
      }
    } catch {
      missing.push(`${index} (unreadable)`);
    }
  }
  if (missing.length > 0) {
    return { ok: false, reason: `snapshots/${sha} lacks ${missing.slice(0, 5).join(', ')}` };
  }
  return { ok: true, sha, dir, files: selected };
}
