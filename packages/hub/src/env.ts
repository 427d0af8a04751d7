/**
 * The Hugging Face environment variables, read the way `huggingface_hub` (Python) reads them. `@huggingface/hub`
 * ignores all of them, so every value found here is passed to it explicitly.
 */
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

/** An environment: `process.env` by default; tests pass a plain object. */
export type HubEnv = Readonly<Record<string, string | undefined>>;

export const DEFAULT_ENDPOINT = 'https://huggingface.co';

function get(env: HubEnv, name: string): string | undefined {
  const v = env[name];
  return v === undefined || v.trim() === '' ? undefined : v.trim();
}

/** `~` and `~/x` expand to the home directory (like Python's `expanduser`); other paths are returned as is. */
export function expandHome(path: string): string {
  if (path === '~') return homedir();
  if (path.startsWith('~/')) return join(homedir(), path.slice(2));
  return path;
}

/** `$HF_HOME`, else `$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface`. */
export function hfHome(env: HubEnv = process.env): string {
  const home = get(env, 'HF_HOME');
  if (home) return expandHome(home);
  const xdg = get(env, 'XDG_CACHE_HOME');
  return join(xdg ? expandHome(xdg) : join(homedir(), '.cache'), 'huggingface');
}

/**
 * The hub cache directory: `HF_HUB_CACHE`, else `HUGGINGFACE_HUB_CACHE`, else `$HF_HOME/hub`, else
 * `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`.
 */
export function hubCacheDir(env: HubEnv = process.env): string {
  const explicit = get(env, 'HF_HUB_CACHE') ?? get(env, 'HUGGINGFACE_HUB_CACHE');
  if (explicit) return expandHome(explicit);
  return join(hfHome(env), 'hub');
}

/** `HF_ENDPOINT` without a trailing slash, else `https://huggingface.co`. */
export function hubEndpoint(env: HubEnv = process.env): string {
  return (get(env, 'HF_ENDPOINT') ?? DEFAULT_ENDPOINT).replace(/\/+$/, '');
}

/**
 * The access token: `HF_TOKEN`, else the legacy `HUGGING_FACE_HUB_TOKEN`, else the first line of the token file
 * (`HF_TOKEN_PATH`, else `$HF_HOME/token`, where `huggingface-cli login` writes it). `undefined` when none.
 */
export function hubToken(env: HubEnv = process.env): string | undefined {
  const fromEnv = get(env, 'HF_TOKEN') ?? get(env, 'HUGGING_FACE_HUB_TOKEN');
  if (fromEnv) return fromEnv;
  const file = get(env, 'HF_TOKEN_PATH') ?? join(hfHome(env), 'token');
  try {
    const token = readFileSync(expandHome(file), 'utf8').split(/\r?\n/)[0]!.trim();
    return token === '' ? undefined : token;
  } catch {
    return undefined;
  }
}

/** `HF_HUB_OFFLINE` (or the older `TRANSFORMERS_OFFLINE`) set to 1/true/yes/on, in any case. */
export function isOffline(env: HubEnv = process.env): boolean {
  const v = get(env, 'HF_HUB_OFFLINE') ?? get(env, 'TRANSFORMERS_OFFLINE');
  return v !== undefined && ['1', 'ON', 'YES', 'TRUE'].includes(v.toUpperCase());
}
