/**
 * A fake Hugging Face Hub on a loopback port, for tests: serves in-memory model repos through the routes
 * `@huggingface/hub` and `@mnemo/hub` use, records every request, and injects faults (dropped connections,
 * corrupt or short bodies, ignored Range headers, error statuses).
 *
 * Routes (repo `acme/tiny`):
 *   GET  /api/models/acme/tiny[/revision/{rev}]             model info JSON (`sha` is the commit)
 *   GET  /api/models/acme/tiny/tree/{rev}[/{dir}]?recursive  [{type, path, size, oid, lfs?}], paged by `Link`
 *   POST /api/models/acme/tiny/paths-info/{rev}              {paths, expand} → entries with lastCommit
 *   GET  /acme/tiny/resolve/{rev}/{path}                     bytes, Range → 206, ETag / X-Linked-Etag;
 *                                                            LFS files answer 302 to /cdn/... (same origin)
 *   GET  /cdn/acme/tiny/{sha256}                             LFS bytes, Range → 206
 * Errors follow the Hub: 401/404 `X-Error-Code: RepoNotFound`, 401/403 `GatedRepo`, 404 `RevisionNotFound` and
 * `EntryNotFound`, 401 without code for an unknown token.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { join } from 'node:path';

export interface FakeHubFile {
  /** Repo path, `/`-separated. */
  path: string;
  content: Uint8Array | string;
  /** Stored in LFS (served through the CDN redirect, sha256 oid). Default: weights and other binary formats. */
  lfs?: boolean;
}

export interface FakeHubRepo {
  /** `owner/name`. */
  id: string;
  files: FakeHubFile[];
  /** Needs a valid token for everything. */
  private?: boolean;
  /** Info and tree are public; downloads need a token listed in `grantedTokens`. */
  gated?: boolean;
  grantedTokens?: string[];
  /** Extra branch or tag names pointing at this content's commit (`main` always does). */
  refs?: string[];
}

export interface FakeHubOptions {
  repos?: FakeHubRepo[];
  /** Tokens the hub accepts; a request with any other `Authorization` gets 401. */
  tokens?: string[];
  /** LFS downloads answer 302 to `/cdn/...` (default true), as the real Hub redirects to its CDN. */
  redirectLfs?: boolean;
  /** Page the tree listing with `Link: <...>; rel="next"` after this many entries. */
  treePageSize?: number;
}

export interface FakeHubFault {
  /**
   * Send the headers for the full body, then this many body bytes, then hold the connection until
   * {@link FakeHub.dropHeld} destroys it. Call that once the client has the bytes (from a progress callback, say):
   * a client still reading when the connection drops loses what it had not read yet, so a drop after a delay would
   * leave a test at the mercy of the machine's load.
   */
  dropAfterBytes?: number;
  /** Send wrong bytes of the right length. */
  corrupt?: boolean;
  /** End the body cleanly (chunked, no Content-Length) after this many bytes. */
  truncateAfterBytes?: number;
  /** Answer 200 with the whole file whatever the Range header says. */
  ignoreRange?: boolean;
  /** Answer with this status and no body. */
  status?: number;
  /** Apply to this many more content requests, then stop (default: all). */
  times?: number;
}

export type FakeHubRequestKind = 'model-info' | 'tree' | 'paths-info' | 'resolve' | 'cdn' | 'unknown';

export interface FakeHubRequest {
  method: string;
  /** Path and query as received. */
  url: string;
  kind: FakeHubRequestKind;
  repo?: string;
  /** Repo path, for resolve and cdn requests. */
  file?: string;
  range?: string;
  authorization?: string;
  /** Status sent (0 until the answer started). */
  status: number;
  /** Body bytes written. */
  bytesSent: number;
}

export interface FakeHub {
  /** `http://127.0.0.1:<port>`, to use as `HF_ENDPOINT` / `endpoint`. */
  url: string;
  /** Every request received, in order. */
  requests: FakeHubRequest[];
  /** Requests that sent file content (200/206 from resolve or cdn), excluding the `bytes=0-0` probes. */
  contentRequests(): FakeHubRequest[];
  /** Adds a repo, or replaces its content with a new commit (`main` moves; older commits stay served). */
  setRepo(repo: FakeHubRepo): string;
  /** Commit sha `main` of a repo points at. */
  sha(repoId: string): string;
  /** Current content of a file. */
  file(repoId: string, path: string): Uint8Array;
  /** Injects a fault into content requests for `path` (any repo). */
  fault(path: string, fault: FakeHubFault): void;
  clearFaults(): void;
  /** Destroys the connections held by a `dropAfterBytes` fault; returns how many. */
  dropHeld(): number;
  resetRequests(): void;
  close(): Promise<void>;
}

interface StoredFile {
  path: string;
  bytes: Uint8Array;
  lfs: boolean;
  /** Git blob sha1 of the content, or of the LFS pointer. */
  oid: string;
  sha256: string;
  pointerSize: number;
}

interface StoredRepo {
  spec: FakeHubRepo;
  commits: Map<string, StoredFile[]>;
  refs: Map<string, string>;
}

const enc = new TextEncoder();

export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** Git's blob id: sha1 of `blob <size>\0<content>`. */
export function gitBlobSha1(bytes: Uint8Array): string {
  return createHash('sha1').update(`blob ${bytes.length}\0`).update(bytes).digest('hex');
}

const LFS_DEFAULT = /\.(safetensors|bin|pt|pth|gguf|onnx|h5|msgpack|ot|model)$/;

function store(file: FakeHubFile): StoredFile {
  const bytes = typeof file.content === 'string' ? enc.encode(file.content) : file.content;
  const lfs = file.lfs ?? LFS_DEFAULT.test(file.path);
  const sha256 = sha256Hex(bytes);
  const pointer = enc.encode(
    `version https://git-lfs.github.com/spec/v1\noid sha256:${sha256}\nsize ${bytes.length}\n`,
  );
  return {
    path: file.path,
    bytes,
    lfs,
    oid: gitBlobSha1(lfs ? pointer : bytes),
    sha256,
    pointerSize: pointer.length,
  };
}

function commitSha(id: string, files: StoredFile[]): string {
  const h = createHash('sha1').update(id);
  for (const f of [...files].sort((a, b) => (a.path < b.path ? -1 : 1))) h.update(`${f.path}\0${f.oid}\0`);
  return h.digest('hex');
}

/** A minimal valid safetensors file: one f32 tensor `w` of `n` deterministic values. */
export function tinySafetensors(n = 1024): Uint8Array {
  const header = enc.encode(JSON.stringify({ w: { dtype: 'F32', shape: [n], data_offsets: [0, n * 4] } }));
  const padded = (header.length + 7) & ~7;
  const out = new Uint8Array(8 + padded + n * 4);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(padded), true);
  out.set(header, 8);
  out.fill(0x20, 8 + header.length, 8 + padded);
  for (let i = 0; i < n; i++) view.setFloat32(8 + padded + i * 4, Math.sin(i) * 0.5, true);
  return out;
}

/**
 * A small model repo: `config.json`, `tokenizer.json`, `tokenizer_config.json`, a 4 KB `model.safetensors` (LFS),
 * `README.md`, `pytorch_model.bin` (LFS, skipped by default) and `original/params.json` (skipped by default).
 */
export function tinyRepo(id = 'acme/tiny', extra: Partial<FakeHubRepo> = {}): FakeHubRepo {
  return {
    id,
    files: [
      {
        path: 'config.json',
        content: JSON.stringify({
          model_type: 'llama',
          hidden_size: 32,
          num_hidden_layers: 1,
          vocab_size: 16,
        }),
      },
      {
        path: 'tokenizer.json',
        content: JSON.stringify({ version: '1.0', model: { type: 'BPE', vocab: {} } }),
      },
      { path: 'tokenizer_config.json', content: JSON.stringify({ bos_token: '<s>', eos_token: '</s>' }) },
      { path: 'model.safetensors', content: tinySafetensors(1024) },
      { path: 'README.md', content: '# tiny\n\nA test model.\n' },
      { path: 'pytorch_model.bin', content: new Uint8Array(2048).fill(7) },
      { path: 'original/params.json', content: JSON.stringify({ dim: 32 }) },
    ],
    ...extra,
  };
}

/**
 * A repo made of the files in a local folder (subfolders included), e.g. a synthetic checkpoint, so a CLI test
 * can "download" a real model.
 */
export function repoFromDirectory(id: string, dir: string, extra: Partial<FakeHubRepo> = {}): FakeHubRepo {
  const files: FakeHubFile[] = [];
  const walk = (sub: string) => {
    for (const name of readdirSync(join(dir, sub)).sort()) {
      const rel = sub ? `${sub}/${name}` : name;
      if (statSync(join(dir, rel)).isDirectory()) walk(rel);
      else files.push({ path: rel, content: new Uint8Array(readFileSync(join(dir, rel))) });
    }
  };
  walk('');
  return { id, files, ...extra };
}

function parseRange(header: string | undefined, size: number): [number, number] | 'invalid' | null {
  if (!header) return null;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return 'invalid';
  let start: number;
  let end: number;
  if (m[1] === '') {
    start = Math.max(0, size - Number(m[2]));
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  }
  return start > end || start >= size ? 'invalid' : [start, end];
}

/** Starts the fake hub on 127.0.0.1 with a free port. Default content: `tinyRepo()`. */
export async function startFakeHub(options: FakeHubOptions = {}): Promise<FakeHub> {
  const repos = new Map<string, StoredRepo>();
  const tokens = new Set(options.tokens ?? []);
  const redirectLfs = options.redirectLfs ?? true;
  const faults = new Map<string, FakeHubFault>();
  const requests: FakeHubRequest[] = [];
  const sockets = new Set<Socket>();
  /** Responses of `dropAfterBytes` faults, waiting for dropHeld(). */
  const held = new Set<ServerResponse>();

  const setRepo = (spec: FakeHubRepo): string => {
    const files = spec.files.map(store);
    const sha = commitSha(spec.id, files);
    const repo = repos.get(spec.id) ?? { spec, commits: new Map(), refs: new Map() };
    repo.spec = spec;
    repo.commits.set(sha, files);
    repo.refs.set('main', sha);
    for (const r of spec.refs ?? []) repo.refs.set(r, sha);
    repos.set(spec.id, repo);
    return sha;
  };
  for (const r of options.repos ?? [tinyRepo()]) setRepo(r);

  const records = new WeakMap<ServerResponse, FakeHubRequest>();
  /** `writeHead` that also records the status. */
  const head = (res: ServerResponse, status: number, headers: Record<string, string>) => {
    const rec = records.get(res);
    if (rec) rec.status = status;
    res.writeHead(status, headers);
  };

  const json = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
    head(res, status, { 'content-type': 'application/json; charset=utf-8', ...headers });
    res.end(JSON.stringify(body));
  };
  const hubError = (res: ServerResponse, status: number, code: string | null, message: string) =>
    json(res, status, { error: message }, code ? { 'x-error-code': code } : {});

  /** `null` when no Authorization header, `false` when the token is unknown. */
  const tokenOf = (req: IncomingMessage): string | null | false => {
    const h = req.headers.authorization;
    if (!h) return null;
    const t = /^Bearer (.+)$/.exec(h)?.[1];
    return t && tokens.has(t) ? t : false;
  };

  /** Answers the auth/repo/revision checks; returns the files of the commit, or null once it answered. */
  const access = (
    req: IncomingMessage,
    res: ServerResponse,
    repoId: string,
    rev: string | null,
    download: boolean,
  ): { repo: StoredRepo; sha: string; files: StoredFile[] } | null => {
    const token = tokenOf(req);
    if (token === false) {
      hubError(res, 401, null, 'Invalid credentials in Authorization header');
      return null;
    }
    const repo = repos.get(repoId);
    if (!repo || (repo.spec.private && !token)) {
      hubError(
        res,
        token ? 404 : 401,
        'RepoNotFound',
        'Repository Not Found for url. Please make sure you specified the correct `repo_id` and `repo_type`. ' +
          'If you are trying to access a private or gated repo, make sure you are authenticated.',
      );
      return null;
    }
    if (download && repo.spec.gated && !(token && repo.spec.grantedTokens?.includes(token))) {
      hubError(
        res,
        token ? 403 : 401,
        'GatedRepo',
        token
          ? `Access to model ${repoId} is restricted and you are not in the authorized list. Visit ${hub.url}/${repoId} to ask for access.`
          : `Access to model ${repoId} is restricted. You must have access to it and be authenticated to access it. Please log in.`,
      );
      return null;
    }
    const wanted = rev === null || rev === 'HEAD' ? 'main' : rev;
    const sha = repo.refs.get(wanted) ?? (repo.commits.has(wanted) ? wanted : undefined);
    if (!sha) {
      hubError(res, 404, 'RevisionNotFound', `Invalid rev id: ${wanted}`);
      return null;
    }
    return { repo, sha, files: repo.commits.get(sha)! };
  };

  const treeEntry = (f: StoredFile) => ({
    type: 'file' as const,
    oid: f.oid,
    size: f.bytes.length,
    path: f.path,
    ...(f.lfs ? { lfs: { oid: f.sha256, size: f.bytes.length, pointerSize: f.pointerSize } } : {}),
  });

  const directories = (files: StoredFile[]): string[] => {
    const dirs = new Set<string>();
    for (const f of files) {
      const parts = f.path.split('/');
      for (let i = 1; i < parts.length; i++) dirs.add(parts.slice(0, i).join('/'));
    }
    return [...dirs].sort();
  };

  const sendContent = (
    req: IncomingMessage,
    res: ServerResponse,
    rec: FakeHubRequest,
    file: StoredFile,
    etag: string,
  ) => {
    const size = file.bytes.length;
    const isProbe = req.headers.range === 'bytes=0-0';
    const fault = isProbe ? undefined : faults.get(file.path);
    if (fault) {
      if (fault.times !== undefined && --fault.times <= 0) faults.delete(file.path);
    }
    const common = {
      etag: `"${etag}"`,
      'accept-ranges': 'bytes',
      'content-type': 'application/octet-stream',
    };
    if (fault?.status) {
      head(res, fault.status, common);
      res.end();
      return;
    }
    const range = fault?.ignoreRange ? null : parseRange(req.headers.range, size);
    if (range === 'invalid') {
      head(res, 416, { ...common, 'content-range': `bytes */${size}` });
      res.end();
      return;
    }
    const [start, end] = range ?? [0, size - 1];
    let body = file.bytes.subarray(start, end + 1);
    if (fault?.corrupt) body = body.map((b) => b ^ 0xff);
    const status = range ? 206 : 200;
    const headers: Record<string, string> = { ...common };
    if (range) headers['content-range'] = `bytes ${start}-${end}/${size}`;
    if (fault?.truncateAfterBytes !== undefined) {
      head(res, status, headers); // no Content-Length: chunked, so ending early is a clean end
      const part = body.subarray(0, fault.truncateAfterBytes);
      rec.bytesSent = part.length;
      res.end(part);
      return;
    }
    headers['content-length'] = String(body.length);
    head(res, status, headers);
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    if (fault?.dropAfterBytes !== undefined) {
      const part = body.subarray(0, fault.dropAfterBytes);
      rec.bytesSent = part.length;
      held.add(res);
      res.on('close', () => held.delete(res));
      res.write(part);
      return;
    }
    rec.bytesSent = body.length;
    res.end(body);
  };

  const handle = async (req: IncomingMessage, res: ServerResponse, rec: FakeHubRequest): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://fake');
    const segs = url.pathname.split('/').slice(1).map(decodeURIComponent);

    if (segs[0] === 'api' && segs[1] === 'models' && segs.length >= 4) {
      const repoId = `${segs[2]}/${segs[3]}`;
      rec.repo = repoId;
      const op = segs[4];
      if (op === undefined || op === 'revision') {
        rec.kind = 'model-info';
        const got = access(req, res, repoId, op ? (segs[5] ?? null) : null, false);
        if (!got) return;
        json(res, 200, {
          _id: `id-${repoId}`,
          id: repoId,
          sha: got.sha,
          private: !!got.repo.spec.private,
          gated: got.repo.spec.gated ? 'auto' : false,
          pipeline_tag: 'text-generation',
          downloads: 0,
          likes: 0,
          lastModified: '2026-11-27T00:00:00.000Z',
          siblings: got.files.map((f) => ({ rfilename: f.path })),
        });
        return;
      }
      if (op === 'tree' && segs[5] !== undefined) {
        rec.kind = 'tree';
        const got = access(req, res, repoId, segs[5], false);
        if (!got) return;
        const dir = segs.slice(6).join('/');
        const prefix = dir ? `${dir}/` : '';
        const recursive = url.searchParams.get('recursive') === 'true';
        const inScope = (p: string) =>
          p.startsWith(prefix) && (recursive || !p.slice(prefix.length).includes('/'));
        const entries = [
          ...directories(got.files)
            .filter(inScope)
            .map((path) => ({
              type: 'directory' as const,
              oid: gitBlobSha1(enc.encode(path)),
              size: 0,
              path,
            })),
          ...got.files.filter((f) => inScope(f.path)).map(treeEntry),
        ];
        const pageSize = options.treePageSize ?? Number.POSITIVE_INFINITY;
        const cursor = Number(url.searchParams.get('cursor') ?? 0);
        const page = entries.slice(cursor, cursor + pageSize);
        const headers: Record<string, string> = {};
        if (cursor + pageSize < entries.length) {
          const next = new URL(url.pathname + url.search, hub.url);
          next.searchParams.set('cursor', String(cursor + pageSize));
          headers.link = `<${next.href}>; rel="next"`;
        }
        json(res, 200, page, headers);
        return;
      }
      if (op === 'paths-info' && segs[5] !== undefined && req.method === 'POST') {
        rec.kind = 'paths-info';
        const got = access(req, res, repoId, segs[5], false);
        if (!got) return;
        const chunks: Buffer[] = [];
        for await (const c of req) chunks.push(c as Buffer);
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as {
          paths?: string[];
          expand?: boolean;
        };
        const out = got.files
          .filter((f) => body.paths?.includes(f.path))
          .map((f) => ({
            ...treeEntry(f),
            ...(body.expand
              ? { lastCommit: { id: got.sha, title: 'Upload', date: '2026-11-27T00:00:00.000Z' } }
              : {}),
          }));
        json(res, 200, out);
        return;
      }
    }

    if (segs[0] === 'cdn' && segs.length === 4) {
      rec.kind = 'cdn';
      const repoId = `${segs[1]}/${segs[2]}`;
      rec.repo = repoId;
      const file = [...(repos.get(repoId)?.commits.values() ?? [])].flat().find((f) => f.sha256 === segs[3]);
      if (!file) {
        head(res, 404, { 'content-type': 'text/plain' });
        res.end('NoSuchKey');
        return;
      }
      rec.file = file.path;
      sendContent(req, res, rec, file, file.sha256);
      return;
    }

    if (segs.length >= 5 && segs[2] === 'resolve') {
      rec.kind = 'resolve';
      const repoId = `${segs[0]}/${segs[1]}`;
      const path = segs.slice(4).join('/');
      rec.repo = repoId;
      rec.file = path;
      const got = access(req, res, repoId, segs[3]!, true);
      if (!got) return;
      const file = got.files.find((f) => f.path === path);
      if (!file) {
        hubError(res, 404, 'EntryNotFound', `Entry not found`);
        return;
      }
      if (file.lfs && redirectLfs) {
        head(res, 302, {
          location: `/cdn/${repoId}/${file.sha256}`,
          'x-linked-etag': `"${file.sha256}"`,
          'x-linked-size': String(file.bytes.length),
          'x-repo-commit': got.sha,
          etag: `"${file.oid}"`,
        });
        res.end();
        return;
      }
      res.setHeader('x-repo-commit', got.sha);
      sendContent(req, res, rec, file, file.lfs ? file.sha256 : file.oid);
      return;
    }

    rec.kind = 'unknown';
    head(res, 404, { 'content-type': 'text/plain' });
    res.end('Not Found');
  };

  const server: Server = createServer((req, res) => {
    const auth = req.headers.authorization;
    const range = req.headers.range;
    const rec: FakeHubRequest = {
      method: req.method ?? 'GET',
      url: req.url ?? '/',
      kind: 'unknown',
      ...(range ? { range } : {}),
      ...(auth ? { authorization: auth } : {}),
      status: 0,
      bytesSent: 0,
    };
    requests.push(rec);
    records.set(res, rec);
    handle(req, res, rec).catch((err: unknown) => {
      if (!res.headersSent) {
        head(res, 500, { 'content-type': 'text/plain' });
        res.end(String(err));
      } else res.destroy();
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  const hub: FakeHub = {
    url: `http://127.0.0.1:${port}`,
    requests,
    contentRequests: () =>
      requests.filter(
        (r) =>
          (r.kind === 'resolve' || r.kind === 'cdn') &&
          (r.status === 200 || r.status === 206) &&
          r.range !== 'bytes=0-0',
      ),
    setRepo,
    sha: (repoId) => {
      const sha = repos.get(repoId)?.refs.get('main');
      if (!sha) throw new Error(`fake hub: no repo ${repoId}`);
      return sha;
    },
    file: (repoId, path) => {
      const sha = hub.sha(repoId);
      const f = repos
        .get(repoId)!
        .commits.get(sha)!
        .find((x) => x.path === path);
      if (!f) throw new Error(`fake hub: no file ${path} in ${repoId}`);
      return f.bytes;
    },
    fault: (path, fault) => {
      faults.set(path, { ...fault });
    },
    clearFaults: () => faults.clear(),
    dropHeld: () => {
      const n = held.size;
      for (const res of held) res.socket?.destroy();
      held.clear();
      return n;
    },
    resetRequests: () => {
      requests.length = 0;
    },
    close: () =>
      new Promise<void>((resolve, reject) => {
        for (const s of sockets) s.destroy();
        server.close((err) => (err ? reject(err) : resolve()));
      }),
  };
  return hub;
}
