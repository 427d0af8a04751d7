/**
 * `@mnemo/backend-native`: the native CPU backend. Importing it registers the backend as `native` with
 * `@mnemo/tensor`'s `createBackend`, which then prefers it (falling back to WASM when it cannot run here).
 */
import { registerBackend, registeredBackends } from '@mnemo/tensor';
import { createNativeBackend } from './create';

export type { NativeLevel } from './addon';
export type { NativeBackend } from './backend';
export {
  createNativeBackend,
  type NativeBackendOptions,
  nativeLevels,
  nativeUnavailableReason,
} from './create';

/** Registers `native` with `createBackend` (done on import; a second call, or a second copy of the package, is a no-op). */
export function registerNativeBackend(): void {
  if (!registeredBackends().includes('native'))
    registerBackend('native', (opts) => createNativeBackend(opts));
}

registerNativeBackend();
