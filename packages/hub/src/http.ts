/**
 * The one `fetch` every Hub request goes through, ours and `@huggingface/hub`'s alike. It
 * - adds `Authorization: Bearer <token>` to requests for the Hub's origin (so tokens that do not start with `hf_`,
 *   which the library refuses, still work, and a token never goes to another origin);
 * - turns network failures into `HubConnectionError`;
 * - turns 401/403/404 answers into typed errors (repo not found, gated, unauthorized, revision or file not found),
 *   read from the Hub's `X-Error-Code` header and JSON `error` message. Throwing here, rather than after the
 *   library's own `HubApiError`, keeps that header, which the library drops.
 * Other statuses (206, 416, 5xx...) are returned as they are for the caller to handle.
 */
import {
  EntryNotFoundError,
  GatedRepoError,
  HubConnectionError,
  HubError,
  RepoNotFoundError,
  RevisionNotFoundError,
  UnauthorizedError,
} from './errors';

export type FetchLike = (input: string | URL | Request, init?: RequestInit) => Promise<Response>;

export interface HubFetchContext {
  /** Hub base URL, no trailing slash. */
  endpoint: string;
  /** `owner/name`, for messages. */
  repo: string;
  /** The revision asked for, for messages. */
  revision: string;
  token?: string;
  /** Added to every request that has no signal of its own. */
  signal?: AbortSignal;
}

const USER_AGENT = `mnemo-hub/0; node/${process.versions.node}`;

/** Wraps `base` (the global `fetch` by default) for requests about one repo. */
export function createHubFetch(ctx: HubFetchContext, base: FetchLike = fetch): typeof fetch {
  const hubOrigin = new URL(ctx.endpoint).origin;
  const hubFetch = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const url = input instanceof Request ? input.url : String(input);
    let nextInit = init;
    if (!(input instanceof Request)) {
      const headers = new Headers(init?.headers);
      if (ctx.token && !headers.has('authorization') && new URL(url).origin === hubOrigin) {
        headers.set('authorization', `Bearer ${ctx.token}`);
      }
      if (!headers.has('user-agent')) headers.set('user-agent', USER_AGENT);
      nextInit = { ...init, headers, signal: init?.signal ?? ctx.signal };
    }
    let res: Response;
    try {
      res = await base(input, nextInit);
    } catch (err) {
      if (err instanceof HubError || nextInit?.signal?.aborted) throw err;
      throw new HubConnectionError(
        `Could not reach the Hugging Face Hub at ${ctx.endpoint}: ${describe(err)}`,
        {
          cause: err,
        },
      );
    }
    if (res.status === 401 || res.status === 403 || res.status === 404) throw await httpError(res, url, ctx);
    return res;
  };
  return hubFetch as typeof fetch;
}

/** The innermost message of a fetch failure (`fetch failed` hides the useful `ECONNREFUSED ...` in `cause`). */
export function describe(err: unknown): string {
  let e: unknown = err;
  const parts: string[] = [];
  for (let i = 0; i < 4 && e instanceof Error; i++) {
    parts.push(e.message);
    e = e.cause;
  }
  return parts.filter((p, i) => p && parts.indexOf(p) === i).join(': ') || String(err);
}

async function serverMessage(res: Response): Promise<string> {
  try {
    const text = await res.text();
    if ((res.headers.get('content-type') ?? '').includes('json')) {
      const json = JSON.parse(text) as { error?: unknown; message?: unknown };
      const m = json.error ?? json.message;
      if (typeof m === 'string') return m;
    }
    return text.trim().slice(0, 200);
  } catch {
    return '';
  }
}

/** Repo path and revision of a `/resolve/<rev>/<path>` URL, for messages. */
function resolvedFile(url: string): { revision: string; file: string } | null {
  const m = /\/resolve\/([^/]+)\/(.+)$/.exec(new URL(url).pathname);
  return m
    ? { revision: decodeURIComponent(m[1]!), file: m[2]!.split('/').map(decodeURIComponent).join('/') }
    : null;
}

async function httpError(res: Response, url: string, ctx: HubFetchContext): Promise<HubError> {
  const code = res.headers.get('x-error-code') ?? '';
  const msg = await serverMessage(res);
  const status = res.status;
  const detail = `(HTTP ${status}${code ? ` ${code}` : ''}${msg ? `: ${msg}` : ''})`;
  const { repo, endpoint } = ctx;
  const tokenHint = ctx.token
    ? 'the access token in use (HF_TOKEN or $HF_HOME/token) does not give access to it'
    : 'no access token is set (HF_TOKEN or $HF_HOME/token)';

  if (code === 'GatedRepo' || (!code && /\bgated\b/i.test(msg))) {
    return new GatedRepoError(
      `"${repo}" is a gated model and ${tokenHint}. Accept its terms at ${endpoint}/${repo} and use a token of ` +
        `that account ${detail}.`,
      repo,
      status,
    );
  }
  if (code === 'RevisionNotFound') {
    return new RevisionNotFoundError(
      `Revision "${ctx.revision}" not found in "${repo}" on ${endpoint} ${detail}.`,
      repo,
      ctx.revision,
    );
  }
  if (code === 'EntryNotFound') {
    const f = resolvedFile(url);
    return new EntryNotFoundError(
      `File "${f?.file ?? url}" not found in "${repo}" at revision ${f?.revision ?? ctx.revision} ${detail}.`,
      repo,
      f?.file ?? url,
    );
  }
  if (code === 'RepoNotFound' || (status === 404 && !code)) {
    return new RepoNotFoundError(
      `Repository "${repo}" not found on ${endpoint} ${detail}. Check the id; if the repo is private, ` +
        (ctx.token
          ? 'check that your access token can read it.'
          : 'set HF_TOKEN to an access token that can read it.'),
      repo,
      status,
    );
  }
  return new UnauthorizedError(
    `The Hub refused access to "${repo}" ${detail}: ` +
      (ctx.token
        ? 'the access token in use (HF_TOKEN or $HF_HOME/token) is invalid, expired or lacks permission.'
        : 'set HF_TOKEN to an access token.'),
    repo,
    status,
  );
}
