/** Repo ids (`owner/name[@revision]`), commit hashes and the cache folder name of a model repo. */

export interface RepoRef {
  /** `owner/name`. */
  repo: string;
  /** The part after `@`, when given. */
  revision?: string;
}

// Hub rules: letters, digits, `-`, `_`, `.`; no leading/trailing `-` or `.`; no `--` or `..`; at most 96 characters.
const PART = /^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?$/;

function validPart(part: string): boolean {
  return PART.test(part) && !part.includes('--') && !part.includes('..');
}

/** `owner/name` or `owner/name@revision`; `null` when the string is not shaped like that. */
export function parseRepoId(id: string): RepoRef | null {
  const at = id.indexOf('@');
  const repo = at < 0 ? id : id.slice(0, at);
  const revision = at < 0 ? undefined : id.slice(at + 1);
  const parts = repo.split('/');
  if (parts.length !== 2 || !parts.every(validPart)) return null;
  if (
    revision !== undefined &&
    (revision === '' || /\s/.test(revision) || revision.split('/').includes('..'))
  ) {
    return null;
  }
  return revision === undefined ? { repo } : { repo, revision };
}

/** A full 40-hex git commit hash. */
export function isCommitHash(revision: string): boolean {
  return /^[0-9a-f]{40}$/.test(revision);
}

/** `models--owner--name`, the folder of a model repo in the hub cache (same as both HF libraries). */
export function repoFolderName(repo: string): string {
  return ['models', ...repo.split('/')].join('--');
}
