/**
 * Backend registry and selection. Built in: `js` (reference) and `wasm`. Native or third-party backends plug in with
 * {@link registerBackend}; `@mnemo/backend-native` registers `native`, which the default prefers when it can run.
 */
import { BACKEND_API_VERSION, type Backend, type BackendFactory, type BackendOptions } from './backend';
import { createReferenceBackend } from './reference/backend';
import { createWasmBackend } from './wasm/backend';

/** The backend used when neither the option nor `MNEMO_BACKEND` names one and `native` is not registered or cannot run. */
export const DEFAULT_BACKEND = 'wasm';
/** Preferred over {@link DEFAULT_BACKEND} by default when registered (by `@mnemo/backend-native`) and able to run. */
export const PREFERRED_BACKEND = 'native';

/**
 * A backend factory cannot give a backend on this machine (no binary for the platform, a missing CPU feature, ...).
 * Thrown by factories; by default {@link createBackend} then falls back to the WASM backend with one warning line.
 */
export class BackendUnavailableError extends Error {
  override name = 'BackendUnavailableError';
}

/** No backend is registered under the requested name. */
export class UnknownBackendError extends Error {
  override name = 'UnknownBackendError';
}

/** A backend implements a different version of the Backend interface than this package. */
export class BackendVersionError extends Error {
  override name = 'BackendVersionError';
}

const factories = new Map<string, BackendFactory>([
  ['js', createReferenceBackend],
  [
    'wasm',
    (opts) =>
      createWasmBackend({
        ...(opts?.threads === undefined ? {} : { threads: opts.threads }),
        ...(opts?.int8Activations === undefined ? {} : { int8Activations: opts.int8Activations }),
      }),
  ],
]);

/**
 * Registers (or, with `replace`, replaces) a backend factory under `name`. The factory's backend must declare
 * `apiVersion === BACKEND_API_VERSION`; {@link createBackend} refuses it otherwise.
 */
export function registerBackend(
  name: string,
  factory: BackendFactory,
  opts: { replace?: boolean } = {},
): void {
  if (typeof name !== 'string' || !/^[a-z0-9][a-z0-9_-]*$/.test(name))
    throw new TypeError(
      `registerBackend: name must be lowercase letters, digits, '-' or '_', got ${String(name)}`,
    );
  if (typeof factory !== 'function')
    throw new TypeError(`registerBackend: factory for "${name}" is not a function`);
  if (factories.has(name) && !opts.replace)
    throw new TypeError(
      `registerBackend: a backend named "${name}" is already registered (pass { replace: true })`,
    );
  factories.set(name, factory);
}

/** Names of the registered backends. */
export function registeredBackends(): string[] {
  return [...factories.keys()];
}

function envBackend(): string | undefined {
  const env = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env;
  const v = env?.MNEMO_BACKEND?.trim();
  return v ? v : undefined;
}

let warnedFallback = false;
let warn: (message: string) => void = (m) => console.warn(m);

/**
 * Where {@link createBackend} writes its fallback warning (default: `console.warn`), at most once per process (per
 * call of this function); `null` restores the default.
 */
export function setBackendWarningHandler(fn: ((message: string) => void) | null): void {
  warn = fn ?? ((m) => console.warn(m));
  warnedFallback = false;
}

/**
 * Creates a backend chosen by, in order: `opts.backend`, the environment variable `MNEMO_BACKEND`, then `native` when
 * it is registered (importing `@mnemo/backend-native` registers it) and can run here, else `wasm` (after one warning
 * line saying why native could not run). `opts.threads` and `opts.int8Activations` go to the backend's factory (the
 * built-in backends default to `MNEMO_THREADS`, else every core, and to `MNEMO_INT8_ACTIVATIONS`, else off).
 * Throws {@link UnknownBackendError} (listing the known names) for an unregistered name,
 * {@link BackendUnavailableError} when the backend named by the option or `MNEMO_BACKEND` cannot run here, and
 * {@link BackendVersionError} for a backend built against another Backend interface version.
 */
export async function createBackend(opts: { backend?: string } & BackendOptions = {}): Promise<Backend> {
  const named = opts.backend ?? envBackend();
  if (named === undefined && factories.has(PREFERRED_BACKEND)) {
    try {
      return await create(PREFERRED_BACKEND, 'default', opts);
    } catch (e) {
      if (!(e instanceof BackendUnavailableError)) throw e;
      if (!warnedFallback) {
        warnedFallback = true;
        warn(`mnemo: ${PREFERRED_BACKEND} backend unavailable (${e.message}): using ${DEFAULT_BACKEND}`);
      }
    }
  }
  const source = opts.backend !== undefined ? 'option' : named !== undefined ? 'MNEMO_BACKEND' : 'default';
  return create(named ?? DEFAULT_BACKEND, source, opts);
}

async function create(name: string, source: string, opts: BackendOptions): Promise<Backend> {
  const factory = factories.get(name);
  if (!factory)
    throw new UnknownBackendError(
      `createBackend: unknown backend "${name}" (from ${source}); known backends: ${registeredBackends().join(', ')}`,
    );
  let backend: Backend;
  try {
    backend = await factory({
      ...(opts.threads === undefined ? {} : { threads: opts.threads }),
      ...(opts.int8Activations === undefined ? {} : { int8Activations: opts.int8Activations }),
    });
  } catch (e) {
    if (e instanceof BackendUnavailableError && source !== 'default')
      throw new BackendUnavailableError(
        `createBackend: backend "${name}" (from ${source}) cannot run here: ${e.message}`,
      );
    throw e;
  }
  const version: unknown = (backend as { apiVersion?: unknown } | undefined)?.apiVersion;
  if (version !== BACKEND_API_VERSION) {
    try {
      backend?.dispose?.();
    } catch {
      // The refused backend's cleanup failing must not hide the version error.
    }
    throw new BackendVersionError(
      `createBackend: backend "${name}" implements Backend API version ${String(version)}, but @mnemo/tensor requires version ${BACKEND_API_VERSION}; rebuild it against this @mnemo/tensor`,
    );
  }
  return backend;
}
