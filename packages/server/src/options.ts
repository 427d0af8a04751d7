import { homedir } from 'node:os';
import { basename, join, resolve } from 'node:path';

/** Options of {@link createServer}. Sizes are bytes. */
export interface ServerOptions {
  /** Local checkpoint folder or Hugging Face repo id. */
  readonly model: string;
  /** Name clients use for the model (`model` in requests, `/v1/models`); default: the folder's or repo's last part. */
  readonly modelId?: string;
  /** Address to listen on (default 127.0.0.1: this machine only). */
  readonly host?: string;
  /** Port (default 8080; 0 picks a free one). */
  readonly port?: number;
  /** When set, every /v1 route and /metrics need `Authorization: Bearer <key>` or `x-api-key: <key>`. */
  readonly apiKey?: string;

  /** Compute: backend name, threads, int8 activations (as `LM.load`). */
  readonly backendName?: string;
  readonly threads?: number;
  readonly int8Activations?: boolean;
  /** Prompt tokens per forward call while prefilling (default 512); cancellation takes effect between chunks. */
  readonly prefillStepSize?: number;

  /** Byte budget of the memory tier (default 1 GiB). */
  readonly cacheMemory?: number;
  /** Folder of the disk tier (default `$XDG_CACHE_HOME/mnemo/prompt-caches` or `~/.cache/mnemo/prompt-caches`); null turns the tier off. */
  readonly cacheDir?: string | null;
  /** Byte budget of the disk tier (default 10 GiB). */
  readonly cacheDisk?: number;
  /** `redis://…` URL of a Redis shared by replicas; unset: no Redis tier. */
  readonly cacheRedis?: string;
  /** Seconds a Redis entry lives (default 86400). */
  readonly cacheRedisTtl?: number;
  /** Largest entry stored in Redis (default 256 MiB). */
  readonly cacheRedisMaxEntry?: number;
  /** Milliseconds a Redis command may take before the server goes on without it (default 2000). */
  readonly cacheRedisTimeout?: number;
  /** Key prefix in Redis (default `mnemo`). */
  readonly cacheRedisPrefix?: string;
  /** Conversations shorter than this many tokens stay in memory only (default 64). */
  readonly cacheMinTokens?: number;

  /** Requests admitted at once, running and waiting (default 64); more get 429. */
  readonly maxQueue?: number;
  /** Largest request body (default 4 MiB); larger gets 413. */
  readonly maxBodyBytes?: number;
  /** Longest context (prompt + completion) in tokens (default: the model's `max_position_embeddings`). */
  readonly contextLength?: number;
  /** Largest `max_tokens` accepted (default 4096), also the default when the request gives none. */
  readonly maxTokens?: number;

  /** Log level (`fatal` … `trace`, or `silent`; default `info`). Cache diagnostics are logged at `debug`. */
  readonly logLevel?: string;
  /** Where log lines go (default standard error). */
  readonly logStream?: NodeJS.WritableStream;
  /** Called once if the model worker dies (the server then answers 503 until closed). */
  readonly onFatal?: (message: string) => void;
  /**
   * For tests: a counter of permits (an Int32Array's first slot on this buffer). The worker takes one after each prefill
   * chunk and each decode step, and waits while there is none (a cancelled request stops waiting), so a test can hold
   * a request at a known point instead of racing it. Unset: no gate.
   */
  readonly stepGate?: SharedArrayBuffer;
}

/** The user's cache folder for mnemo: `$XDG_CACHE_HOME/mnemo` or `~/.cache/mnemo`. */
export function defaultCacheRoot(env: NodeJS.ProcessEnv = process.env): string {
  const xdg = env.XDG_CACHE_HOME;
  return join(xdg?.startsWith('/') ? xdg : join(homedir(), '.cache'), 'mnemo');
}

export interface ResolvedOptions {
  readonly model: string;
  readonly modelId: string;
  readonly host: string;
  readonly port: number;
  readonly apiKey: string | undefined;
  readonly backendName: string | undefined;
  readonly threads: number | undefined;
  readonly int8Activations: boolean;
  readonly prefillStepSize: number;
  readonly cacheMemory: number;
  readonly cacheDir: string | null;
  readonly cacheDisk: number;
  readonly cacheRedis: string | undefined;
  readonly cacheRedisTtl: number;
  readonly cacheRedisMaxEntry: number;
  readonly cacheRedisTimeout: number;
  readonly cacheRedisPrefix: string;
  readonly cacheMinTokens: number;
  readonly maxQueue: number;
  readonly maxBodyBytes: number;
  readonly contextLength: number | undefined;
  readonly maxTokens: number;
  readonly logLevel: string;
  readonly logStream: NodeJS.WritableStream | undefined;
}

function int(
  name: string,
  v: number | undefined,
  def: number,
  min: number,
  max = Number.MAX_SAFE_INTEGER,
): number {
  const n = v ?? def;
  if (!Number.isSafeInteger(n) || n < min || n > max)
    throw new RangeError(`${name} must be an integer from ${min} to ${max}, got ${v}`);
  return n;
}

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

/** Checks the options and fills in the defaults. */
export function resolveOptions(o: ServerOptions): ResolvedOptions {
  if (typeof o.model !== 'string' || o.model === '') throw new TypeError('model must name a checkpoint');
  const trimmed = o.model.replace(/[/\\]+$/, '');
  const modelId = o.modelId ?? (basename(trimmed) || trimmed);
  if (o.apiKey !== undefined && o.apiKey.length === 0) throw new RangeError('apiKey must not be empty');
  if (o.cacheRedis !== undefined && !/^rediss?:\/\//.test(o.cacheRedis))
    throw new RangeError(
      `cacheRedis must be a redis:// or rediss:// URL, got ${JSON.stringify(o.cacheRedis)}`,
    );
  const levels = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];
  const logLevel = o.logLevel ?? 'info';
  if (!levels.includes(logLevel)) throw new RangeError(`logLevel must be one of ${levels.join(', ')}`);
  return {
    model: o.model,
    modelId,
    host: o.host ?? '127.0.0.1',
    port: int('port', o.port, 8080, 0, 65535),
    apiKey: o.apiKey,
    backendName: o.backendName,
    threads: o.threads === undefined ? undefined : int('threads', o.threads, 1, 1, 256),
    int8Activations: o.int8Activations ?? false,
    prefillStepSize: int('prefillStepSize', o.prefillStepSize, 512, 1, 1 << 20),
    cacheMemory: int('cacheMemory', o.cacheMemory, GiB, 0),
    cacheDir: o.cacheDir === null ? null : resolve(o.cacheDir ?? join(defaultCacheRoot(), 'prompt-caches')),
    cacheDisk: int('cacheDisk', o.cacheDisk, 10 * GiB, 0),
    cacheRedis: o.cacheRedis,
    cacheRedisTtl: int('cacheRedisTtl', o.cacheRedisTtl, 86_400, 1, 365 * 86_400),
    cacheRedisMaxEntry: int('cacheRedisMaxEntry', o.cacheRedisMaxEntry, 256 * MiB, 1, 512 * MiB),
    cacheRedisTimeout: int('cacheRedisTimeout', o.cacheRedisTimeout, 2000, 1, 600_000),
    cacheRedisPrefix: o.cacheRedisPrefix ?? 'mnemo',
    cacheMinTokens: int('cacheMinTokens', o.cacheMinTokens, 64, 1),
    maxQueue: int('maxQueue', o.maxQueue, 64, 1, 100_000),
    maxBodyBytes: int('maxBodyBytes', o.maxBodyBytes, 4 * MiB, 1024, 1024 * MiB),
    contextLength: o.contextLength === undefined ? undefined : int('contextLength', o.contextLength, 0, 2),
    maxTokens: int('maxTokens', o.maxTokens, 4096, 1),
    logLevel,
    logStream: o.logStream,
  };
}

/** Parses a size like `512m`, `10g`, `4096` (bytes), `1.5GiB`. */
export function parseBytes(s: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?\s*$/i.exec(s);
  if (!m) throw new RangeError(`not a size: ${JSON.stringify(s)} (use e.g. 512m, 10g or a number of bytes)`);
  const unit = { '': 1, k: 1024, m: MiB, g: GiB, t: 1024 * GiB }[
    m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g' | 't'
  ];
  const n = Math.floor(Number(m[1]) * unit);
  if (!Number.isSafeInteger(n)) throw new RangeError(`size too large: ${s}`);
  return n;
}
