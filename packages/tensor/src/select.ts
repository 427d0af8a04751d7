/**
 * Backend registry and selection. Built in: `js` (reference) and `wasm` (default). Native or third-party backends
 * (e.g. a macOS Metal addon) plug in with {@link registerBackend}.
 */
import { BACKEND_API_VERSION, type Backend, type BackendFactory, type BackendOptions } from './backend';
import { createReferenceBackend } from './reference/backend';
import { createWasmBackend } from './wasm/backend';

/** The backend name used when neither the option nor `MNEMO_BACKEND` names one. */
export const DEFAULT_BACKEND = 'wasm';

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

/**
 * Creates a backend chosen by, in order: `opts.backend`, the environment variable `MNEMO_BACKEND`, then `'wasm'`.
 * `opts.threads` and `opts.int8Activations` go to the backend's factory (the WASM backend defaults to `MNEMO_THREADS`, else every core, and to `MNEMO_INT8_ACTIVATIONS`, else off).
 * Throws {@link UnknownBackendError} (listing the known names) for an unregistered name, and
 * {@link BackendVersionError} for a backend built against another Backend interface version.
 */
export async function createBackend(opts: { backend?: string } & BackendOptions = {}): Promise<Backend> {
  const name = opts.backend ?? envBackend() ?? DEFAULT_BACKEND;
  const source =
    opts.backend !== undefined ? 'option' : envBackend() !== undefined ? 'MNEMO_BACKEND' : 'default';
  const factory = factories.get(name);
  if (!factory)
    throw new UnknownBackendError(
      `createBackend: unknown backend "${name}" (from ${source}); known backends: ${registeredBackends().join(', ')}`,
    );
  const backend = await factory({
    ...(opts.threads === undefined ? {} : { threads: opts.threads }),
    ...(opts.int8Activations === undefined ? {} : { int8Activations: opts.int8Activations }),
  });
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
