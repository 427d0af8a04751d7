export {
  defaultCacheRoot,
  parseBytes,
  type ResolvedOptions,
  resolveOptions,
  type ServerOptions,
} from './options';
export type { CacheReport, ModelInfo, Tier } from './protocol';
export { createServer, type MnemoServer } from './server';
