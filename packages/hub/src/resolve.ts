/** `resolveModel`: a local model directory as is, or a Hub repo id downloaded into (or found in) the cache. */
import { stat } from 'node:fs/promises';
import { isAbsolute, resolve } from 'node:path';
import { downloadModel, type HubOptions } from './download';
import { expandHome } from './env';
import { ModelIdError } from './errors';
import { parseRepoId } from './repo-id';

/** Options of `resolveModel` (the same as `downloadModel`'s). */
export type ResolveOptions = HubOptions;

/** Written as a path: `.`, `..`, `./x`, `../x`, `/abs`, `~`, `~/x` (or a Windows absolute path). */
function looksLikePath(s: string): boolean {
  return (
    s === '.' ||
    s === '..' ||
    s === '~' ||
    /^(\.{1,2}|~)[/\\]/.test(s) ||
    isAbsolute(s) ||
    /^[A-Za-z]:[/\\]/.test(s)
  );
}

/** Where a model comes from: its local folder, and whether it was given as a local path or a Hub repo id. */
export interface ModelSource {
  /** The local folder (for a repo id: its snapshot in the Hugging Face cache). */
  readonly dir: string;
  /** The absolute local folder as given (`~` expanded), or the repo id (`owner/name[@revision]`) as given. */
  readonly ref: string;
  readonly kind: 'local' | 'hub';
}

/**
 * The local directory of a model.
 * - A path to an existing directory (`./x`, `/abs`, `~/x`, or any relative path that exists) is returned
 *   without any network access, made absolute (`~` expanded).
 * - Otherwise `idOrPath` must be a repo id `owner/name` or `owner/name@revision`; its files are downloaded into
 *   the Hugging Face cache (or found there) and the snapshot folder is returned. See `downloadModel`.
 */
export async function resolveModel(idOrPath: string, opts: ResolveOptions = {}): Promise<string> {
  return (await resolveModelSource(idOrPath, opts)).dir;
}

/** {@link resolveModel}, also saying whether `idOrPath` was a local folder or a repo id (a stable reference to it). */
export async function resolveModelSource(idOrPath: string, opts: ResolveOptions = {}): Promise<ModelSource> {
  const trimmed = idOrPath.trim();
  if (trimmed === '') throw new ModelIdError('Empty model id or path.');
  const local = resolve(expandHome(trimmed));
  const st = await stat(local).catch(() => null);
  if (st?.isDirectory()) return { dir: local, ref: local, kind: 'local' };
  if (looksLikePath(trimmed) || (st && !parseRepoId(trimmed))) {
    throw new ModelIdError(
      st
        ? `"${idOrPath}" is a file, not a model directory (${local}).`
        : `Local model directory "${idOrPath}" does not exist (${local}).`,
    );
  }
  if (!parseRepoId(trimmed)) {
    throw new ModelIdError(
      `"${idOrPath}" is neither an existing local directory nor a Hugging Face repo id ` +
        '(owner/name or owner/name@revision).',
    );
  }
  return { dir: (await downloadModel(trimmed, opts)).dir, ref: trimmed, kind: 'hub' };
}
