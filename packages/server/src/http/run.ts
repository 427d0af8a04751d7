/**
 * Runs one request on the engine and answers it: as one JSON body, or as server-sent events while tokens arrive. The
 * cache report goes into response headers (`x-mnemo-cache`, `x-mnemo-cache-notes`) and the debug log; a client
 * that goes away cancels its request.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { type Engine, type Job, QueueFullError } from '../engine';
import type { Metrics } from '../metrics';
import type { CacheReport, JobParams, JobResult, TokenOut } from '../protocol';
import { errorBody } from './errors';

/** How one API shapes its answers. */
export interface Responder {
  /** SSE frames sent once the prompt's cache is found, before any token. */
  begin(report: CacheReport): string[];
  chunk(text: string, token: TokenOut | null): string[];
  end(result: JobResult): string[];
  /** An SSE frame reporting an error after the stream began. */
  error(status: number, message: string): string;
  /** The whole answer as one JSON value. */
  body(text: string, tokens: readonly TokenOut[], result: JobResult): unknown;
}

export interface RunContext {
  readonly counted: WeakSet<object>;
  readonly engine: Engine;
  readonly metrics: Metrics;
}

export interface RunSpec {
  readonly route: string;
  readonly tokens: readonly number[];
  readonly params: JobParams;
  readonly stream: boolean;
  readonly responder: Responder;
}

const SSE_HEADERS = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-cache',
  connection: 'keep-alive',
  'x-accel-buffering': 'no',
};

function ascii(s: string): string {
  return s.replace(/[^\x20-\x7e]/g, '?');
}

/** The cache report as response headers. */
export function cacheHeaders(r: CacheReport): Record<string, string> {
  const o = r.offered;
  const h: Record<string, string> = {
    'x-mnemo-cache': `tier=${r.tier}; cached=${r.cachedTokens}; prompt=${r.promptTokens}; memory=${o.memory}; disk=${o.disk ?? '-'}; redis=${o.redis ?? '-'}`,
  };
  if (r.notes.length > 0) h['x-mnemo-cache-notes'] = ascii(r.notes.join(' | ')).slice(0, 4000);
  return h;
}

export function runRequest(
  ctx: RunContext,
  req: FastifyRequest,
  reply: FastifyReply,
  spec: RunSpec,
): Promise<void> {
  const { metrics } = ctx;
  const res = reply.raw;
  return new Promise<void>((resolve) => {
    let report: CacheReport | undefined;
    let text = '';
    const tokens: TokenOut[] = [];
    let finished = false;
    let streaming = false;
    let hijacked = false;
    const write = (frames: readonly string[]) => {
      if (res.writableEnded || res.destroyed) return;
      for (const f of frames) res.write(f);
    };
    const finish = (status: number) => {
      finished = true;
      ctx.counted.add(req);
      metrics.requests.inc({ route: spec.route, status: String(status) });
      resolve();
    };
    const fail = (
      status: number,
      message: string,
      code: string | null,
      headers: Record<string, string> = {},
    ) => {
      const body = errorBody(req.url, status, message, code);
      if (streaming) {
        write([spec.responder.error(status, message)]);
        res.end();
      } else if (hijacked) {
        if (!res.destroyed && !res.headersSent) {
          res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', ...headers });
          res.end(JSON.stringify(body));
        }
      } else void reply.code(status).headers(headers).send(body);
      finish(status);
    };
    let job: Job;
    try {
      job = ctx.engine.submit(spec.tokens, spec.params, {
        onStart(r) {
          report = r;
          req.log.debug({ cache: r }, 'prompt cache');
          metrics.cacheLookups.inc({ tier: r.tier });
          if (r.tier !== 'none') metrics.cachedTokens.inc({ tier: r.tier }, r.cachedTokens);
          if (spec.stream && !res.destroyed) {
            res.writeHead(200, { ...SSE_HEADERS, ...cacheHeaders(r) });
            streaming = true;
            write(spec.responder.begin(r));
          }
        },
        onChunk(t, token) {
          text += t;
          if (token) tokens.push(token);
          if (streaming) write(spec.responder.chunk(t, token));
        },
        onDone(result) {
          metrics.promptTokens.inc(result.promptTokens);
          metrics.generatedTokens.inc(result.completionTokens);
          metrics.ttft.observe({ tier: report?.tier ?? 'none' }, result.timeToFirstTokenMs / 1000);
          if (streaming) {
            write(spec.responder.end(result));
            res.end();
          } else if (!hijacked) {
            void reply
              .code(200)
              .headers(report ? cacheHeaders(report) : {})
              .send(spec.responder.body(text, tokens, result));
          }
          finish(200);
        },
        onFail(status, code, message) {
          if (status === 499) {
            metrics.cancelled.inc();
            if (!res.writableEnded) res.destroy();
            finish(499);
            return;
          }
          fail(status, message, code);
        },
      });
    } catch (e) {
      if (e instanceof QueueFullError) {
        metrics.rejected.inc();
        fail(429, e.message, 'rate_limit_exceeded', { 'retry-after': String(e.retryAfterSeconds) });
      } else fail(503, (e as Error).message, 'unavailable');
      return;
    }
    if (spec.stream) {
      void reply.hijack();
      hijacked = true;
    }
    res.on('close', () => {
      if (!finished) ctx.engine.cancel(job);
    });
  });
}
