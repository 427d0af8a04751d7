/**
 * The native backend is optional: `@mnemo/backend-native` registers `native` with `createBackend` when it is
 * installed, and `createBackend()` then prefers it (falling back to WASM with one warning when it cannot run here).
 * When the package itself is missing, `native` is registered as unavailable, so that the default falls back to WASM
 * with the reason and `--backend native` / `MNEMO_BACKEND=native` give a clear error.
 */
import { BackendUnavailableError, registerBackend, registeredBackends } from '@mnemo/tensor';

let loading: Promise<void> | undefined;

/** Imports `@mnemo/backend-native` once (registering `native`), or registers `native` as unavailable. */
export function loadNativeBackend(): Promise<void> {
  loading ??= (async () => {
    try {
      await import('@mnemo/backend-native');
    } catch (e) {
      if (registeredBackends().includes('native')) return;
      const why =
        (e as { code?: string })?.code === 'ERR_MODULE_NOT_FOUND'
          ? 'the @mnemo/backend-native package is not installed'
          : `@mnemo/backend-native failed to load: ${(e as Error)?.message ?? String(e)}`;
      registerBackend('native', async () => {
        throw new BackendUnavailableError(why);
      });
    }
  })();
  return loading;
}
