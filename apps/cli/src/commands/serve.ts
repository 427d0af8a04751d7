import { createServer, type MnemoServer, parseBytes } from '@mnemo/server';
import { type Command, InvalidArgumentError } from 'commander';
import { action, CliError } from '../errors';
import { addComputeFlags, type ComputeFlags } from '../load';
import { intArg } from '../options';

interface ServeFlags extends ComputeFlags {
  model?: string;
  modelId?: string;
  host: string;
  port: number;
  apiKey?: string;
  cacheMemory?: number;
  cacheDir?: string;
  cacheDisk?: number | false;
  cacheRedis?: string;
  cacheRedisTtl?: number;
  cacheRedisTimeout?: number;
  cacheMinTokens?: number;
  maxQueue?: number;
  maxBody?: number;
  context?: number;
  maxTokens?: number;
  prefillStepSize?: number;
  logLevel: string;
}

function sizeArg(value: string): number {
  try {
    return parseBytes(value);
  } catch (e) {
    throw new InvalidArgumentError((e as Error).message);
  }
}

export function registerServe(program: Command): void {
  const cmd = program
    .command('serve')
    .description(
      'serve the model over HTTP: OpenAI-compatible /v1/chat/completions and /v1/completions, Anthropic /v1/messages, ' +
        'with a prompt cache in memory, on disk and optionally in Redis (shared by replicas)',
    )
    .option('-m, --model <dir|repo>', 'model directory or Hugging Face repo id')
    .option('--model-id <name>', 'name clients use for the model (default: the folder or repo name)')
    .option('--host <address>', 'address to listen on (127.0.0.1: this machine only)', '127.0.0.1')
    .option('--port <n>', 'port (0 picks a free one)', intArg(0, 65535), 8080)
    .option('--api-key <key>', 'require this key (Authorization: Bearer or x-api-key); default MNEMO_API_KEY')
    .option('--cache-memory <size>', 'memory tier budget, e.g. 512m, 2g (default 1g)', sizeArg)
    .option(
      '--cache-dir <dir>',
      'disk tier folder (default $XDG_CACHE_HOME/mnemo/prompt-caches or ~/.cache/mnemo/prompt-caches)',
    )
    .option('--cache-disk <size>', 'disk tier budget (default 10g)', sizeArg)
    .option('--no-cache-disk', 'no disk tier')
    .option('--cache-redis <url>', 'Redis shared by replicas, e.g. redis://127.0.0.1:6379')
    .option(
      '--cache-redis-ttl <seconds>',
      'seconds a Redis entry lives (default 86400)',
      intArg(1, 365 * 86400),
    )
    .option(
      '--cache-redis-timeout <ms>',
      'milliseconds before a slow Redis is skipped (default 2000)',
      intArg(1, 600_000),
    )
    .option(
      '--cache-min-tokens <n>',
      'conversations shorter than this stay in memory only (default 64)',
      intArg(1),
    )
    .option(
      '--max-queue <n>',
      'requests running or waiting at once; more get 429 (default 64)',
      intArg(1, 100_000),
    )
    .option('--max-body <size>', 'largest request body (default 4m)', sizeArg)
    .option(
      '--context <n>',
      "longest prompt + completion (default: the model's max_position_embeddings)",
      intArg(2),
    )
    .option(
      '--max-tokens <n>',
      'largest max_tokens a request may ask for, and the default (default 4096)',
      intArg(1),
    )
    .option('--prefill-step-size <n>', 'prompt tokens per forward pass (default 512)', intArg(1, 65536))
    .option(
      '--log-level <level>',
      'fatal, error, warn, info, debug (cache diagnostics), trace or silent',
      'info',
    );
  addComputeFlags(cmd).action(
    action(async (f: ServeFlags) => {
      if (!f.model) throw new CliError('--model is required');
      const apiKey = f.apiKey ?? process.env.MNEMO_API_KEY;
      let server: MnemoServer | undefined;
      let stopping = false;
      const stop = async (code: number) => {
        if (stopping) return;
        stopping = true;
        await server?.close();
        process.exit(code);
      };
      server = await createServer({
        model: f.model,
        ...(f.modelId ? { modelId: f.modelId } : {}),
        host: f.host,
        port: f.port,
        ...(apiKey ? { apiKey } : {}),
        ...(f.backend ? { backendName: f.backend } : {}),
        ...(f.threads !== undefined ? { threads: f.threads } : {}),
        ...(f.int8Activations ? { int8Activations: true } : {}),
        ...(f.prefillStepSize !== undefined ? { prefillStepSize: f.prefillStepSize } : {}),
        ...(f.cacheMemory !== undefined ? { cacheMemory: f.cacheMemory } : {}),
        cacheDir: f.cacheDisk === false ? null : (f.cacheDir ?? undefined),
        ...(typeof f.cacheDisk === 'number' ? { cacheDisk: f.cacheDisk } : {}),
        ...(f.cacheRedis ? { cacheRedis: f.cacheRedis } : {}),
        ...(f.cacheRedisTtl !== undefined ? { cacheRedisTtl: f.cacheRedisTtl } : {}),
        ...(f.cacheRedisTimeout !== undefined ? { cacheRedisTimeout: f.cacheRedisTimeout } : {}),
        ...(f.cacheMinTokens !== undefined ? { cacheMinTokens: f.cacheMinTokens } : {}),
        ...(f.maxQueue !== undefined ? { maxQueue: f.maxQueue } : {}),
        ...(f.maxBody !== undefined ? { maxBodyBytes: f.maxBody } : {}),
        ...(f.context !== undefined ? { contextLength: f.context } : {}),
        ...(f.maxTokens !== undefined ? { maxTokens: f.maxTokens } : {}),
        logLevel: f.logLevel,
        logStream: process.stderr, // standard output carries only the "listening on" line
        onFatal: () => void stop(1),
      });
      process.stdout.write(`mnemo serve: listening on ${server.url} (model ${server.modelId})\n`);
      process.once('SIGINT', () => void stop(0));
      process.once('SIGTERM', () => void stop(0));
    }),
  );
}
