export {
  type CachedSnapshot,
  findCachedSnapshot,
  type RepoCachePaths,
  repoCachePaths,
} from './cache';
export {
  type DownloadProgress,
  type DownloadResult,
  downloadModel,
  type HubOptions,
} from './download';
export {
  DEFAULT_ENDPOINT,
  type HubEnv,
  hfHome,
  hubCacheDir,
  hubEndpoint,
  hubToken,
  isOffline,
} from './env';
export {
  DownloadInterruptedError,
  EntryNotFoundError,
  GatedRepoError,
  HubConnectionError,
  HubError,
  HubHttpError,
  IntegrityError,
  ModelIdError,
  NotInCacheError,
  RepoNotFoundError,
  RevisionNotFoundError,
  UnauthorizedError,
} from './errors';
export { downloadGgufFile, type GgufRef, parseGgufRef, pickGgufFile } from './gguf';
export type { FetchLike } from './http';
export {
  DEFAULT_ALLOW_PATTERNS,
  DEFAULT_IGNORE_PATTERNS,
  type FileSelection,
  isSelected,
  matchesPattern,
} from './patterns';
export {
  createProgressBar,
  formatBytes,
  formatDuration,
  type ProgressBar,
  type ProgressBarOptions,
  type ProgressStream,
} from './progress-bar';
export { isCommitHash, parseRepoId, type RepoRef, repoFolderName } from './repo-id';
export { type ModelSource, type ResolveOptions, resolveModel, resolveModelSource } from './resolve';
