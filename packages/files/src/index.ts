export { FileAccessError, type FileAccessErrorCode, reasonOf } from './errors';
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
