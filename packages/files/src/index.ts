export { FileAccessError, type FileAccessErrorCode, reasonOf } from './errors';
export { type FileIdentity, identityAt, identityOf, sameIdentity } from './identity';
export {
  fileKind,
  type OpenedFile,
  openRegularFile,
  type ReadBound,
  readRegularFile,
  readTextFile,
  readTextFileIfExists,
} from './read';
export { liveTemps, removeStaleTemps, tempWriterPid } from './temp';
export { type AtomicWriteOptions, resolveWriteTarget, type WriteTarget, writeFileAtomic } from './write';
