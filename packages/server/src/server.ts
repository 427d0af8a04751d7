/**
 * createServer: the model worker, the Redis tier (when configured), and the HTTP routes on fastify. Fastify was
 * chosen for its built-in JSON-schema validation of request bodies (ajv, compiled per route), its body-size limit and
 * content-type parsing with clear errors, and its logger (pino); see the package README.
 */
import { timingSafeEqual } from 'node:crypto';
import { loadTokenizer } from '@mnemo/tokenizer';
import Fastify, { type FastifyError, type FastifyInstance } from 'fastify';
import { BLOCK_TOKENS } from './cache/prefix';
import { Engine } from './engine';
import { registerAnthropic } from './http/anthropic';
import { longestTokenBytes, type RouteContext } from './http/context';
import { errorBody, HttpError } from './http/errors';
import { registerOpenAI } from './http/openai';
import { TokenText } from './http/token-text';
import { Metrics } from './metrics';
import { type ResolvedOptions, resolveOptions, type ServerOptions } from './options';
import type { ModelInfo } from './protocol';
import { RedisTier } from './redis-tier';
import { TokenizerWorker } from './tokenize/client';

export interface MnemoServer {
  /** `http://host:port` */
  readonly url: string;
  readonly host: string;
  readonly port: number;
  readonly modelId: string;
  readonly model: ModelInfo;
  readonly options: ResolvedOptions;
  /** The fastify instance (for tests and embedding; routes are registered). */
  readonly app: FastifyInstance;
  /**
   * Resolves once the model is idle — no request queued or running, the worker done with its last job's work
   * (persisting to disk included) — and every Redis command that work started has settled. For tests and graceful
   * shutdowns: what a finished request left behind (cache entries, metrics) is then in place.
   */
  settled(): Promise<void>;
  /** Stops listening, fails waiting requests, stops the running one, frees the model and closes Redis. */
  close(): Promise<void>;
}

function keyMatches(given: string | undefined, key: string): boolean {
  if (given === undefined) return false;
  const a = Buffer.from(given);
  const b = Buffer.from(key);
  return a.length === b.length && timingSafeEqual(a, b);
}

export async function createServer(options: ServerOptions): Promise<MnemoServer> {
  const o = resolveOptions(options);
  const metrics = new Metrics();
  const app = Fastify({
    bodyLimit: o.maxBodyBytes,
    forceCloseConnections: true,
    logger: { level: o.logLevel, ...(o.logStream ? { stream: o.logStream } : {}) },
    ajv: {
      customOptions: { coerceTypes: false, removeAdditional: false, useDefaults: false, allErrors: false },
    },
  });
  const log = app.log;
  app.removeContentTypeParser('text/plain'); // request bodies are JSON: anything else is a 415

  let redis: RedisTier | undefined;
  /** Redis commands started for the worker (stores, deletions) and not settled yet. */
  const redisPending = new Set<Promise<unknown>>();
  const track = (p: Promise<unknown>) => {
    redisPending.add(p);
    void p.finally(() => redisPending.delete(p));
  };
  let engine: Engine | undefined;
  let fatal: string | undefined;
  if (o.cacheRedis) {
    metrics.redisUp.set(0);
    redis = new RedisTier({
      url: o.cacheRedis,
      prefix: o.cacheRedisPrefix,
      ttlSeconds: o.cacheRedisTtl,
      maxEntryBytes: o.cacheRedisMaxEntry,
      timeoutMs: o.cacheRedisTimeout,
      onState: (up, why) => {
        metrics.redisUp.set(up ? 1 : 0);
        if (up) log.info({ redis: o.cacheRedis?.replace(/\/\/[^@]*@/, '//***@') }, 'redis tier: connected');
        else log.warn({ reason: why }, 'redis tier: unavailable, serving from the local tiers');
      },
      onError: (op, err) => {
        metrics.redisErrors.inc({ op });
        log.debug({ op, error: err.message }, 'redis tier: command failed');
      },
    });
  }

  try {
    engine = await Engine.start(
      {
        model: o.model,
        load: {
          ...(o.backendName ? { backendName: o.backendName } : {}),
          ...(o.threads !== undefined ? { threads: o.threads } : {}),
          ...(o.int8Activations ? { int8Activations: true } : {}),
        },
        cache: {
          memoryBytes: o.cacheMemory,
          dir: o.cacheDir,
          diskBytes: o.cacheDisk,
          redis: redis !== undefined,
          redisTtlSeconds: o.cacheRedisTtl,
          minPersistTokens: o.cacheMinTokens,
          blockTokens: BLOCK_TOKENS,
        },
        prefillStepSize: o.prefillStepSize,
        ...(options.stepGate ? { stepGate: options.stepGate } : {}),
      },
      o.maxQueue,
      {
        redisGet: async (boundaries) =>
          redis ? redis.get(engine!.info.scope, boundaries) : { found: null, note: null },
        redisPut: (id, hashes, bytes) => {
          if (!redis) return;
          track(
            redis.put(engine!.info.scope, id, hashes, bytes).then((ok) => ok && metrics.redisStored.inc()),
          );
        },
        redisDel: (id) => {
          if (redis) track(redis.del(engine!.info.scope, id));
        },
        log: (level, msg, data) => log[level](data ?? {}, msg),
        refused: (tier, code) => metrics.refused.inc({ tier, code }),
        cancelled: (steps) => metrics.cancelSteps.observe(steps),
        stats: (s) => {
          metrics.cacheBytes.set({ tier: 'memory' }, s.memory.bytes);
          metrics.cacheEntries.set({ tier: 'memory' }, s.memory.entries);
          if (s.disk) {
            metrics.cacheBytes.set({ tier: 'disk' }, s.disk.bytes);
            metrics.cacheEntries.set({ tier: 'disk' }, s.disk.entries);
          }
          metrics.liveCaches.set(s.liveCaches);
          metrics.backendBytes.set(s.backendBytes);
        },
        fatal: (message) => {
          fatal = message;
          options.onFatal?.(message);
        },
      },
    );
  } catch (e) {
    await redis?.close();
    await app.close();
    throw e;
  }
  const info = engine.info;
  const tokenizer = await loadTokenizer(info.dir);
  let tokenize: TokenizerWorker;
  try {
    tokenize = await TokenizerWorker.start(info.dir);
  } catch (e) {
    await engine.close();
    await redis?.close();
    await app.close();
    throw e;
  }
  const contextLength = Math.min(
    o.contextLength ?? info.maxPositionEmbeddings,
    info.maxPositionEmbeddings || Number.MAX_SAFE_INTEGER,
  );
  const counted = new WeakSet<object>();
  const ctx: RouteContext = {
    counted,
    engine,
    metrics,
    tokenize,
    tokenText: new TokenText(tokenizer),
    modelId: o.modelId,
    contextLength,
    maxTokens: o.maxTokens,
    systemFingerprint: `fp_${info.scope.slice(0, 12)}`,
    persistent: o.cacheDir !== null || redis !== undefined,
    maxPromptBytes: contextLength * longestTokenBytes(tokenizer, info.vocabSize) * 4,
  };
  const s = engine.stats;
  metrics.cacheBytes.set({ tier: 'memory' }, s.memory.bytes);
  if (s.disk) metrics.cacheBytes.set({ tier: 'disk' }, s.disk.bytes);
  metrics.backendBytes.set(s.backendBytes);

  app.setErrorHandler((err: FastifyError | HttpError, req, reply) => {
    const url = req.url;
    if (err instanceof HttpError) {
      return reply
        .code(err.status)
        .headers(err.headers)
        .send(errorBody(url, err.status, err.message, err.code, err.param));
    }
    const fe = err as FastifyError;
    if (fe.validation) {
      const first = fe.validation[0];
      const param = first?.instancePath ? first.instancePath.replace(/^\//, '').replace(/\//g, '.') : null;
      return reply
        .code(400)
        .send(errorBody(url, 400, `invalid request: ${fe.message}`, 'invalid_request', param));
    }
    const status = fe.statusCode && fe.statusCode >= 400 && fe.statusCode < 600 ? fe.statusCode : 500;
    if (status >= 500) req.log.error({ err }, 'request failed');
    const message =
      fe.code === 'FST_ERR_CTP_BODY_TOO_LARGE'
        ? `the request body is larger than this server's limit of ${o.maxBodyBytes} bytes`
        : fe.code === 'FST_ERR_CTP_INVALID_JSON_BODY' || (status === 400 && err instanceof SyntaxError)
          ? `the request body is not valid JSON: ${fe.message}`
          : status >= 500
            ? 'internal server error'
            : fe.message;
    return reply.code(status).send(errorBody(url, status, message, fe.code ?? null));
  });
  app.setNotFoundHandler((req, reply) =>
    reply
      .code(404)
      .send(errorBody(req.url, 404, `no route for ${req.method} ${req.url.split('?')[0]}`, 'not_found')),
  );

  app.addHook('onRequest', async (req, reply) => {
    metrics.queueLength.set(engine!.queueLength);
    if (!o.apiKey || req.url === '/health') return;
    const auth = req.headers.authorization;
    const bearer = typeof auth === 'string' && auth.startsWith('Bearer ') ? auth.slice(7) : undefined;
    const xKey = req.headers['x-api-key'];
    if (keyMatches(bearer, o.apiKey) || keyMatches(typeof xKey === 'string' ? xKey : undefined, o.apiKey))
      return;
    return reply
      .code(401)
      .send(
        errorBody(
          req.url,
          401,
          'a valid API key is required (Authorization: Bearer <key>)',
          'invalid_api_key',
        ),
      );
  });
  const routeNames: Record<string, string> = {
    '/v1/chat/completions': 'chat',
    '/v1/completions': 'completions',
    '/v1/messages': 'messages',
  };
  app.addHook('onResponse', async (req, reply) => {
    if (counted.has(req)) return;
    const url = req.routeOptions.url;
    const route = url ? (routeNames[url] ?? url) : 'unmatched';
    metrics.requests.inc({ route, status: String(reply.statusCode) });
  });

  app.get('/health', async (_req, reply) => {
    const p = engine!.progress();
    const status = fatal ? 'error' : 'ok';
    return reply.code(fatal ? 503 : 200).send({
      status,
      ...(fatal ? { error: fatal } : {}),
      model: o.modelId,
      queue: engine!.queueLength,
      running: p.running !== 0,
      phase: p.phase,
      prefill: { done: p.prefillDone, total: p.prefillTotal },
      generated: p.generated,
      redis: redis ? (redis.up ? 'up' : 'down') : 'off',
    });
  });
  app.get('/metrics', async (_req, reply) => {
    metrics.queueLength.set(engine!.queueLength);
    metrics.running.set(engine!.busy ? 1 : 0);
    return reply.header('content-type', metrics.registry.contentType).send(await metrics.registry.metrics());
  });
  registerOpenAI(app, ctx);
  registerAnthropic(app, ctx);

  try {
    await app.listen({ host: o.host, port: o.port });
  } catch (e) {
    await engine.close();
    await tokenize.close();
    await redis?.close();
    await app.close();
    throw e;
  }
  const addr = app.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : o.port;
  const hostForUrl = o.host.includes(':') ? `[${o.host}]` : o.host;
  let closed: Promise<void> | undefined;
  return {
    url: `http://${hostForUrl}:${port}`,
    host: o.host,
    port,
    modelId: o.modelId,
    model: info,
    options: o,
    app,
    settled: async () => {
      await engine!.idle();
      while (redisPending.size > 0) await Promise.allSettled([...redisPending]);
    },
    close: () => {
      closed ??= (async () => {
        await engine!.close();
        await app.close();
        await tokenize.close();
        await redis?.close();
      })();
      return closed;
    },
  };
}
