/** The server's Prometheus metrics (`GET /metrics`), in a registry of its own. */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

export class Metrics {
  readonly registry = new Registry();
  readonly requests = new Counter({
    name: 'mnemo_requests_total',
    help: 'HTTP requests answered, by route and status code',
    labelNames: ['route', 'status'] as const,
    registers: [this.registry],
  });
  readonly promptTokens = new Counter({
    name: 'mnemo_prompt_tokens_total',
    help: 'Prompt tokens of the requests that ran',
    registers: [this.registry],
  });
  readonly generatedTokens = new Counter({
    name: 'mnemo_generated_tokens_total',
    help: 'Tokens generated',
    registers: [this.registry],
  });
  readonly cacheLookups = new Counter({
    name: 'mnemo_cache_lookups_total',
    help: 'Prompts by the tier their cached prefix came from (none: computed from scratch)',
    labelNames: ['tier'] as const,
    registers: [this.registry],
  });
  readonly cachedTokens = new Counter({
    name: 'mnemo_cache_tokens_total',
    help: 'Prompt tokens taken from each cache tier instead of being computed',
    labelNames: ['tier'] as const,
    registers: [this.registry],
  });
  readonly refused = new Counter({
    name: 'mnemo_cache_refused_total',
    help: 'Cached prefixes refused because they failed their checks, by tier and reason',
    labelNames: ['tier', 'code'] as const,
    registers: [this.registry],
  });
  readonly cancelled = new Counter({
    name: 'mnemo_cancelled_total',
    help: 'Requests stopped because their client went away',
    registers: [this.registry],
  });
  readonly cancelSteps = new Histogram({
    name: 'mnemo_cancel_steps',
    help: 'Decode steps or prefill chunks a request still computed after its client went away',
    buckets: [0, 1, 2, 4, 8, 16, 64],
    registers: [this.registry],
  });
  readonly rejected = new Counter({
    name: 'mnemo_rejected_total',
    help: 'Requests refused with 429 because the queue was full',
    registers: [this.registry],
  });
  readonly queueLength = new Gauge({
    name: 'mnemo_queue_length',
    help: 'Requests waiting for the model',
    registers: [this.registry],
  });
  readonly running = new Gauge({
    name: 'mnemo_running',
    help: 'Requests the model is working on (0 or 1)',
    registers: [this.registry],
  });
  readonly ttft = new Histogram({
    name: 'mnemo_time_to_first_token_seconds',
    help: 'Time from the start of a request on the model to its first token, by cache tier',
    labelNames: ['tier'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120],
    registers: [this.registry],
  });
  readonly cacheBytes = new Gauge({
    name: 'mnemo_cache_bytes',
    help: 'Bytes held by each local cache tier',
    labelNames: ['tier'] as const,
    registers: [this.registry],
  });
  readonly cacheEntries = new Gauge({
    name: 'mnemo_cache_entries',
    help: 'Entries held by each local cache tier',
    labelNames: ['tier'] as const,
    registers: [this.registry],
  });
  readonly liveCaches = new Gauge({
    name: 'mnemo_kv_caches_live',
    help: 'Prompt caches alive in the model worker (in the memory tier or in use)',
    registers: [this.registry],
  });
  readonly backendBytes = new Gauge({
    name: 'mnemo_backend_memory_bytes',
    help: 'Bytes the compute backend has allocated (weights, scratch, caches)',
    registers: [this.registry],
  });
  readonly redisUp = new Gauge({
    name: 'mnemo_redis_up',
    help: '1 when the Redis tier is connected, 0 when it is configured but unavailable',
    registers: [this.registry],
  });
  readonly redisErrors = new Counter({
    name: 'mnemo_redis_errors_total',
    help: 'Redis commands that failed or timed out, by operation',
    labelNames: ['op'] as const,
    registers: [this.registry],
  });
  readonly redisStored = new Counter({
    name: 'mnemo_redis_stored_total',
    help: 'Prompt caches stored in Redis',
    registers: [this.registry],
  });
}
