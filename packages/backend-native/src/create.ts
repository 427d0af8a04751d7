/** Creating native backends: ISA level, threads and int8 activations from the options or the environment. */
import {
  type BackendOptions,
  BackendUnavailableError,
  envInt8Activations,
  hardwareThreads,
  resolveThreads,
} from '@mnemo/tensor';
import { loadAddon, type NativeLevel } from './addon';
import { type NativeBackend, NativeBackendImpl } from './backend';

export interface NativeBackendOptions extends BackendOptions {
  /**
   * ISA level to run the kernels at: `avx512vnni`, `avx512`, `avx2` or `scalar` on x86-64; `dotprod`, `neon` or `scalar`
   * on arm64. Default: the `MNEMO_NATIVE_ISA` environment variable, else the best level this CPU runs. Every level
   * gives bitwise the same results (only speed differs); a level the CPU cannot run is a `RangeError`.
   */
  readonly isa?: string;
  /**
   * How long (nanoseconds) an idle worker spins before it sleeps. Default 50 µs when every thread has a core of its
   * own, else 0.
   */
  readonly spinNs?: number;
}

function envIsa(): string | undefined {
  const v = process.env.MNEMO_NATIVE_ISA?.trim();
  return v ? v : undefined;
}

/** The ISA levels of this build (lowest first) and whether this CPU runs each; empty when the addon cannot load. */
export function nativeLevels(): NativeLevel[] {
  try {
    return loadAddon().levels();
  } catch {
    return [];
  }
}

/** Why the native backend cannot run here, or null when it can (the addon loads and the CPU has a SIMD level). */
export function nativeUnavailableReason(): string | null {
  try {
    pickLevel(undefined, 'native');
    return null;
  } catch (e) {
    return (e as Error).message;
  }
}

function pickLevel(requested: string | undefined, op: string): string {
  const levels = loadAddon().levels();
  if (requested !== undefined) {
    const l = levels.find((x) => x.name === requested);
    if (!l)
      throw new RangeError(
        `${op}: unknown ISA level "${requested}" (MNEMO_NATIVE_ISA / isa); this build has ${levels.map((x) => x.name).join(', ')}`,
      );
    if (!l.supported)
      throw new RangeError(
        `${op}: this CPU cannot run ISA level "${requested}"; it runs ${levels
          .filter((x) => x.supported)
          .map((x) => x.name)
          .join(', ')}`,
      );
    return l.name;
  }
  const best = [...levels].reverse().find((x) => x.supported)!;
  if (best.name === 'scalar' && levels.length > 1)
    throw new BackendUnavailableError(
      `this CPU has none of the SIMD levels the native kernels need (${levels
        .slice(1)
        .map((x) => x.name)
        .join(', ')})`,
    );
  return best.name;
}

/**
 * Creates a native backend (`name: 'native'`). Throws a `BackendUnavailableError` when the addon has no binary for
 * this platform or the CPU lacks the SIMD it needs; `createBackend()` then falls back to WASM.
 */
export async function createNativeBackend(opts: NativeBackendOptions = {}): Promise<NativeBackend> {
  const op = 'createNativeBackend';
  const addon = loadAddon();
  const level = pickLevel(opts.isa ?? envIsa(), op);
  const threads = await resolveThreads(op, opts.threads);
  const int8 = opts.int8Activations ?? envInt8Activations(op) ?? false;
  if (typeof int8 !== 'boolean')
    throw new TypeError(`${op}: int8Activations must be a boolean, got ${String(opts.int8Activations)}`);
  const spin = opts.spinNs ?? (threads <= (await hardwareThreads()) ? 50_000 : 0);
  if (!Number.isSafeInteger(spin) || spin < 0)
    throw new RangeError(`${op}: spinNs must be an integer >= 0, got ${String(opts.spinNs)}`);
  return new NativeBackendImpl(addon.createContext(level, threads, spin), int8);
}
