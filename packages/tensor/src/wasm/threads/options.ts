/** Thread count of the WASM backend (the option, else `MNEMO_THREADS`, else every core) and other settings from the environment. */
import { MAX_THREADS } from './shard';

function env(name: string): string | undefined {
  const e = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env;
  const v = e?.[name]?.trim();
  return v ? v : undefined;
}

function isNode(): boolean {
  return (
    typeof (globalThis as { process?: { versions?: { node?: string } } }).process?.versions?.node === 'string'
  );
}

/** Logical cores available to this process (1 outside Node). */
export async function hardwareThreads(): Promise<number> {
  if (!isNode()) return 1;
  const os = await import('node:os');
  const n = typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
  return Math.max(1, n | 0);
}

function checkCount(what: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > MAX_THREADS)
    throw new RangeError(`${what} must be an integer in [1, ${MAX_THREADS}], got ${String(v)}`);
  return v;
}

/**
 * The thread count for `requested` (an explicit option), else the `MNEMO_THREADS` environment variable, else
 * {@link hardwareThreads}. Threads need Node's worker_threads: outside Node the answer is 1 unless asked for.
 */
export async function resolveThreads(op: string, requested: number | undefined): Promise<number> {
  if (requested !== undefined) return checkCount(`${op}: threads`, requested);
  const fromEnv = env('MNEMO_THREADS');
  if (fromEnv !== undefined) {
    if (!/^\d+$/.test(fromEnv))
      throw new RangeError(`${op}: MNEMO_THREADS must be a positive integer, got "${fromEnv}"`);
    return checkCount(`${op}: MNEMO_THREADS`, Number(fromEnv));
  }
  return Math.min(MAX_THREADS, await hardwareThreads());
}

/** `MNEMO_SHARD_MIN_BYTES` (bytes, an integer >= 0), or undefined when unset. */
export function envShardMinBytes(op: string): number | undefined {
  const v = env('MNEMO_SHARD_MIN_BYTES');
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v)) throw new RangeError(`${op}: MNEMO_SHARD_MIN_BYTES must be a byte count, got "${v}"`);
  return Number(v);
}

/** `MNEMO_INT8_ACTIVATIONS` (`1`/`true`/`on` or `0`/`false`/`off`), or undefined when unset. */
export function envInt8Activations(op: string): boolean | undefined {
  const v = env('MNEMO_INT8_ACTIVATIONS')?.toLowerCase();
  if (v === undefined) return undefined;
  if (v === '1' || v === 'true' || v === 'on') return true;
  if (v === '0' || v === 'false' || v === 'off') return false;
  throw new RangeError(`${op}: MNEMO_INT8_ACTIVATIONS must be 1/true/on or 0/false/off, got "${v}"`);
}
