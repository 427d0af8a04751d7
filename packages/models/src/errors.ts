/** A checkpoint or config that cannot be loaded; the message names the file, tensor or key at fault. */
export class ModelLoadError extends Error {
  override readonly name = 'ModelLoadError';
}
