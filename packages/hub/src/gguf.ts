/**
 * GGUF files on the Hub: one file of a repo, named by its path (`owner/name/model-Q4_K_M.gguf`) or by a quant tag
 * (`owner/name:Q4_K_M`, as llama.cpp's `-hf` takes it), downloaded into the Hugging Face cache like any other file.
 */
import { join } from 'node:path';
import { type DownloadResult, downloadModel, type HubOptions } from './download';
import { HubError, ModelIdError } from './errors';
import { parseRepoId } from './repo-id';

/** A GGUF file of a Hub repo: by path, or by quant tag. */
export interface GgufRef {
  /** `owner/name`. */
  readonly repo: string;
  readonly revision?: string;
  /** Repo path of the file (ends in `.gguf`). */
  readonly file?: string;
  /** Quant tag such as `Q4_K_M` (matched case-insensitively against the file names). */
  readonly quant?: string;
}

/**
 * `owner/name[@revision]:QUANT` or `owner/name[@revision]/path/to/file.gguf`; `null` for anything else (a plain repo
 * id included).
 */
export function parseGgufRef(spec: string): GgufRef | null {
  const s = spec.trim();
  const colon = s.lastIndexOf(':');
  if (colon > 0 && !s.slice(colon + 1).includes('/')) {
    const quant = s.slice(colon + 1);
    const repo = parseRepoId(s.slice(0, colon));
    if (!repo || !/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(quant)) return null;
    return { ...repo, quant };
  }
  if (!/\.gguf$/i.test(s)) return null;
  const parts = s.split('/');
  if (parts.length < 3) return null;
  const repo = parseRepoId(parts.slice(0, 2).join('/'));
  const file = parts.slice(2).join('/');
  if (!repo || file.split('/').some((p) => p === '' || p === '.' || p === '..')) return null;
  return { ...repo, file };
}

const SPLIT = /-(\d{5})-of-(\d{5})\.gguf$/i;

/** The one GGUF file of `paths` that `ref` names; a HubError listing the candidates otherwise. */
export function pickGgufFile(paths: readonly string[], ref: GgufRef): string {
  const ggufs = paths.filter((p) => /\.gguf$/i.test(p));
  const label = `"${ref.repo}"${ref.revision ? ` (revision ${ref.revision})` : ''}`;
  const list = (xs: readonly string[]) => `${xs.slice(0, 20).join(', ')}${xs.length > 20 ? ', ...' : ''}`;
  let chosen: string[];
  if (ref.file !== undefined) {
    chosen = ggufs.filter((p) => p === ref.file);
    if (chosen.length === 0)
      throw new HubError(`${label} has no file "${ref.file}"; its GGUF files: ${list(ggufs) || 'none'}.`);
  } else {
    const tag = ref.quant!.toLowerCase();
    chosen = ggufs.filter((p) => {
      const base = (p.split('/').pop() ?? p).toLowerCase();
      if (base.startsWith('mmproj')) return false;
      const stem = base.replace(/\.gguf$/, '');
      const i = stem.indexOf(tag);
      if (i < 0) return false;
      const before = stem[i - 1];
      const after = stem[i + tag.length];
      return (
        (before === undefined || !/[a-z0-9_]/.test(before)) &&
        (after === undefined || !/[a-z0-9_]/.test(after))
      );
    });
    // a split model matches once per part: keep its first part, refused below with a clear message
    const whole = chosen.filter((p) => !SPLIT.test(p) || /-00001-of-/i.test(p));
    if (whole.length === 0)
      throw new HubError(
        `${label} has no GGUF file for quant "${ref.quant}"; its GGUF files: ${list(ggufs) || 'none'}. Name one: ${ref.repo}/<file>.gguf.`,
      );
    if (whole.length > 1)
      throw new HubError(
        `${label} has ${whole.length} GGUF files for quant "${ref.quant}" (${list(whole)}); name one: ${ref.repo}/<file>.gguf.`,
      );
    chosen = whole;
  }
  if (SPLIT.test(chosen[0]!))
    throw new HubError(
      `"${chosen[0]}" of ${label} is one part of a split GGUF model; split files are not supported (merge them with llama.cpp's gguf-split --merge).`,
    );
  return chosen[0]!;
}

/**
 * Downloads (or finds in the cache) the GGUF file `spec` names (see {@link parseGgufRef}) and returns its local path
 * with the download result. Throws ModelIdError when `spec` is not a GGUF reference, HubError when the repo has no
 * such file (listing its GGUF files).
 */
export async function downloadGgufFile(
  spec: string,
  opts: HubOptions = {},
): Promise<DownloadResult & { path: string; file: string }> {
  const ref = parseGgufRef(spec);
  if (!ref)
    throw new ModelIdError(
      `"${spec}" names no GGUF file of a Hub repo (owner/name:QUANT or owner/name/path/to/file.gguf).`,
    );
  let file = '';
  const r = await downloadModel(ref.revision ? `${ref.repo}@${ref.revision}` : ref.repo, {
    ...opts,
    allowPatterns: ref.file !== undefined ? [ref.file] : ['*.gguf', '*.GGUF'],
    ignorePatterns: [],
    pick: (paths) => {
      file = pickGgufFile(paths, ref);
      return [file];
    },
  });
  return { ...r, file, path: join(r.dir, file) };
}
