import { afterEach, describe, expect, it, vi } from 'vitest';
import { BACKEND_API_VERSION, type Backend } from './backend';
import { createReferenceBackend } from './reference/backend';
import {
  BackendUnavailableError,
  BackendVersionError,
  createBackend,
  registerBackend,
  registeredBackends,
  setBackendWarningHandler,
  UnknownBackendError,
} from './select';

/** A stand-in backend: the reference under another name. */
async function named(name: string, apiVersion: number = BACKEND_API_VERSION): Promise<Backend> {
  const b = await createReferenceBackend();
  return Object.assign(Object.create(b) as Backend, { name, apiVersion });
}

describe('createBackend', () => {
  afterEach(() => {
    vi.unstubAllEnvs();
  });

  it('knows js and wasm, and defaults to wasm', async () => {
    expect(registeredBackends()).toEqual(expect.arrayContaining(['js', 'wasm']));
    vi.stubEnv('MNEMO_BACKEND', '');
    registerBackend('wasm', () => named('wasm-stand-in'), { replace: true });
    expect((await createBackend()).name).toBe('wasm-stand-in');
  });

  it('takes the backend from MNEMO_BACKEND, and the option over the environment', async () => {
    vi.stubEnv('MNEMO_BACKEND', 'js');
    expect((await createBackend()).name).toBe('js');
    registerBackend('env-test', () => named('env-test'));
    expect((await createBackend({ backend: 'env-test' })).name).toBe('env-test');
  });

  it('names the known backends when the name is unknown', async () => {
    await expect(createBackend({ backend: 'metal-nope' })).rejects.toThrow(UnknownBackendError);
    await expect(createBackend({ backend: 'metal-nope' })).rejects.toThrow(
      /unknown backend "metal-nope" \(from option\); known backends: js, wasm/,
    );
    vi.stubEnv('MNEMO_BACKEND', 'cuda');
    await expect(createBackend()).rejects.toThrow(/"cuda" \(from MNEMO_BACKEND\)/);
  });

  it('refuses a backend built against another interface version, and disposes it', async () => {
    const dispose = vi.fn();
    const future = BACKEND_API_VERSION + 1;
    registerBackend('future', async () => Object.assign(await named('future', future), { dispose }));
    await expect(createBackend({ backend: 'future' })).rejects.toThrow(BackendVersionError);
    await expect(createBackend({ backend: 'future' })).rejects.toThrow(
      new RegExp(
        `backend "future" implements Backend API version ${future}, but @mnemo/tensor requires version ${BACKEND_API_VERSION}`,
      ),
    );
    expect(dispose).toHaveBeenCalled();
  });

  it('lets third-party backends register, but not silently replace one', async () => {
    registerBackend('metal-test', () => named('metal-test'));
    expect(registeredBackends()).toContain('metal-test');
    expect(() => registerBackend('metal-test', () => named('x'))).toThrow(/already registered/);
    expect(() => registerBackend('Bad Name', () => named('x'))).toThrow(TypeError);
    registerBackend('metal-test', () => named('metal-test-2'), { replace: true });
    expect((await createBackend({ backend: 'metal-test' })).name).toBe('metal-test-2');
  });

  // Last: these register `native`, which the default then prefers.
  it('prefers a registered native backend by default, and falls back to wasm with one warning when it cannot run', async () => {
    vi.stubEnv('MNEMO_BACKEND', '');
    registerBackend('wasm', () => named('wasm-stand-in'), { replace: true });
    const warnings: string[] = [];
    setBackendWarningHandler((m) => warnings.push(m));
    try {
      registerBackend('native', () => named('native'));
      expect((await createBackend()).name).toBe('native');
      registerBackend(
        'native',
        async () => {
          throw new BackendUnavailableError('no prebuilt binary for this platform and the build failed');
        },
        { replace: true },
      );
      expect((await createBackend()).name).toBe('wasm-stand-in');
      expect((await createBackend()).name).toBe('wasm-stand-in');
      expect(warnings).toEqual([
        'mnemo: native backend unavailable (no prebuilt binary for this platform and the build failed): using wasm',
      ]);
      // forced: a clear error, no fallback
      await expect(createBackend({ backend: 'native' })).rejects.toThrow(BackendUnavailableError);
      await expect(createBackend({ backend: 'native' })).rejects.toThrow(
        /backend "native" \(from option\) cannot run here: no prebuilt binary/,
      );
      vi.stubEnv('MNEMO_BACKEND', 'native');
      await expect(createBackend()).rejects.toThrow(/\(from MNEMO_BACKEND\) cannot run here/);
      // other failures are not hidden by the fallback
      vi.stubEnv('MNEMO_BACKEND', '');
      registerBackend(
        'native',
        async () => {
          throw new RangeError('createNativeBackend: threads must be an integer in [1, 64], got 0');
        },
        { replace: true },
      );
      await expect(createBackend()).rejects.toThrow(RangeError);
    } finally {
      setBackendWarningHandler(null);
    }
  });
});
