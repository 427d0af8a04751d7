import { readdir, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { FileAccessError, type FileIdentity, readRegularFile } from '@mnemo/files';
import { ioError, quoteName, SafetensorsError } from './errors';
import { openSafetensors, type SafetensorsFile, type TensorInfo } from './file';
import { describeJson, MAX_HEADER_SIZE } from './header';
import { JsonParseError, type JsonValue, parseJson } from './json';

/** Name of the Hugging Face shard index. */
export const INDEX_FILE = 'model.safetensors.index.json';

/** A tensor of a checkpoint and the shard holding it. */
export interface CheckpointTensorInfo extends TensorInfo {
  /** Path of the shard file. */
  readonly file: string;
}

/** A tensor found in a shard although the index does not map it there. */
export interface UnmappedTensor {
  readonly name: string;
  readonly file: string;
}

/** One or more safetensors files seen as one set of tensors. */
export interface Checkpoint {
  /** The folder (or, for a single file, its path). */
  readonly path: string;
  /** Shard paths, each opened once. */
  readonly files: readonly string[];
  /** Path of `model.safetensors.index.json` when the checkpoint is sharded through one, else null. */
  readonly indexFile: string | null;
  /** `__metadata__` of the first shard. */
  readonly metadata: Readonly<Record<string, string>>;
  /** With `strict: false`: tensors present in shards but not mapped to them by the index (not exposed). */
  readonly unmapped: readonly UnmappedTensor[];
  /** Tensor names, in index order (or file and header order without an index). */
  names(): string[];
  has(name: string): boolean;
  /** Throws NOT_FOUND. */
  info(name: string): CheckpointTensorInfo;
  read(name: string): Promise<Uint8Array>;
  readSync(name: string): Uint8Array;
  readInto(name: string, out: Uint8Array): Promise<void>;
  /** The identity of shard `file` (a path of `files`), now, from its open handle (see `SafetensorsFile.identity`). */
  identity(file: string): Promise<FileIdentity>;
  /** The tensor's file descriptor (valid until `close()`), absolute position and length. Throws NOT_FOUND / CLOSED. */
  fileRange(name: string): { readonly fd: number; readonly position: number; readonly byteLength: number };
  close(): Promise<void>;
}

export interface OpenCheckpointOptions {
  /**
   * true (default): a tensor that sits in a shard but is not mapped to it by the index is an error
   * (UNMAPPED_TENSOR, or DUPLICATE when it is mapped to another shard). false: such tensors are ignored and
   * listed in `unmapped`.
   */
  readonly strict?: boolean;
}

/**
 * Opens a checkpoint folder: through `model.safetensors.index.json` when present (every shard opened once, every
 * mapped tensor checked to exist in its shard), else every `*.safetensors` file in the folder (a tensor name in two
 * files is an error). A path to a single `.safetensors` file opens just that file.
 */
export async function openCheckpoint(path: string, options: OpenCheckpointOptions = {}): Promise<Checkpoint> {
  let isDir: boolean;
  try {
    isDir = (await stat(path)).isDirectory();
  } catch (err) {
    throw ioError(path, 'stat', err);
  }
  if (!isDir) return fromFiles(path, [path]);

  const indexPath = join(path, INDEX_FILE);
  const index = await readIndex(indexPath);
  if (index !== null) return fromIndex(path, indexPath, index, options.strict ?? true);

  let entries: string[];
  try {
    entries = await readdir(path);
  } catch (err) {
    throw ioError(path, 'readdir', err);
  }
  const files = entries.filter((f) => f.endsWith('.safetensors')).sort();
  if (files.length === 0)
    throw new SafetensorsError('NOT_FOUND', `no *.safetensors file and no ${INDEX_FILE}`, { file: path });
  return fromFiles(
    path,
    files.map((f) => join(path, f)),
  );
}

/** weight_map of the index (in file order), or null when there is no index file. */
async function readIndex(indexPath: string): Promise<Map<string, string> | null> {
  let bytes: Uint8Array;
  try {
    bytes = await readRegularFile(indexPath, { maxBytes: MAX_HEADER_SIZE });
  } catch (err) {
    if (err instanceof FileAccessError && err.code === 'NOT_FOUND') return null;
    if (err instanceof FileAccessError && err.code === 'TOO_LARGE') {
      throw new SafetensorsError('BAD_INDEX', `index ${err.detail}`, { file: indexPath, cause: err });
    }
    throw ioError(indexPath, 'read', err);
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch (err) {
    throw new SafetensorsError('BAD_INDEX', 'not valid UTF-8', { file: indexPath, cause: err });
  }
  let root: JsonValue;
  try {
    root = parseJson(text);
  } catch (err) {
    if (err instanceof JsonParseError && err.kind === 'duplicate') {
      throw new SafetensorsError('DUPLICATE', `index repeats key ${quoteName(err.key ?? '')}`, {
        file: indexPath,
        tensor: err.path?.[0] === 'weight_map' && err.path.length === 1 ? err.key : undefined,
        cause: err,
      });
    }
    if (err instanceof JsonParseError) {
      throw new SafetensorsError('BAD_INDEX', `not valid JSON: ${err.message}`, {
        file: indexPath,
        cause: err,
      });
    }
    throw err;
  }
  const weightMap = root instanceof Map ? root.get('weight_map') : undefined;
  if (!(weightMap instanceof Map)) {
    throw new SafetensorsError('BAD_INDEX', 'no "weight_map" object', { file: indexPath });
  }
  const out = new Map<string, string>();
  for (const [name, shard] of weightMap) {
    if (typeof shard !== 'string' || !isPlainFileName(shard)) {
      throw new SafetensorsError(
        'BAD_INDEX',
        `weight_map value ${describeJson(shard)} is not a file name in the checkpoint folder`,
        { file: indexPath, tensor: name },
      );
    }
    out.set(name, shard);
  }
  if (out.size === 0) throw new SafetensorsError('BAD_INDEX', '"weight_map" is empty', { file: indexPath });
  return out;
}

function isPlainFileName(name: string): boolean {
  return name !== '' && name !== '.' && name !== '..' && !/[/\\\0]/.test(name) && basename(name) === name;
}

async function openAll(
  paths: readonly string[],
  onMissing?: (path: string) => SafetensorsError,
): Promise<SafetensorsFile[]> {
  const results = await Promise.allSettled(paths.map((p) => openSafetensors(p)));
  const opened = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const failed = results.findIndex((r) => r.status === 'rejected');
  if (failed >= 0) {
    await Promise.all(opened.map((f) => f.close().catch(() => {})));
    const reason = (results[failed] as PromiseRejectedResult).reason;
    if (
      onMissing &&
      reason instanceof SafetensorsError &&
      reason.cause instanceof FileAccessError &&
      reason.cause.code === 'NOT_FOUND'
    ) {
      throw onMissing(paths[failed]!);
    }
    throw reason;
  }
  return opened;
}

async function fromIndex(
  dir: string,
  indexPath: string,
  weightMap: ReadonlyMap<string, string>,
  strict: boolean,
): Promise<Checkpoint> {
  const shardNames = [...new Set(weightMap.values())].sort();
  const shardPaths = shardNames.map((s) => join(dir, s));
  const files = await openAll(shardPaths, (p) => {
    return new SafetensorsError(
      'MISSING_SHARD',
      `index lists shard ${quoteName(basename(p))}, which does not exist`,
      {
        file: indexPath,
      },
    );
  });
  try {
    const byShard = new Map(shardNames.map((s, i) => [s, files[i]!]));
    const tensors = new Map<string, SafetensorsFile>();
    for (const [name, shard] of weightMap) {
      const f = byShard.get(shard)!;
      if (!f.has(name)) {
        throw new SafetensorsError(
          'MISSING_TENSOR',
          `${INDEX_FILE} maps the tensor to this shard, which does not hold it`,
          {
            file: f.path,
            tensor: name,
          },
        );
      }
      tensors.set(name, f);
    }
    const unmapped: UnmappedTensor[] = [];
    for (const [shard, f] of byShard) {
      for (const name of f.tensors.keys()) {
        const mapped = weightMap.get(name);
        if (mapped === shard) continue;
        if (strict) {
          throw mapped === undefined
            ? new SafetensorsError('UNMAPPED_TENSOR', `shard holds a tensor ${INDEX_FILE} does not list`, {
                file: f.path,
                tensor: name,
              })
            : new SafetensorsError(
                'DUPLICATE',
                `tensor is in this shard and in ${quoteName(mapped)}, where ${INDEX_FILE} maps it`,
                { file: f.path, tensor: name },
              );
        }
        unmapped.push({ name, file: f.path });
      }
    }
    return new MergedCheckpoint(dir, files, indexPath, tensors, unmapped);
  } catch (err) {
    await Promise.all(files.map((f) => f.close().catch(() => {})));
    throw err;
  }
}

async function fromFiles(path: string, paths: readonly string[]): Promise<Checkpoint> {
  const files = await openAll(paths);
  const tensors = new Map<string, SafetensorsFile>();
  for (const f of files) {
    for (const name of f.tensors.keys()) {
      const other = tensors.get(name);
      if (other !== undefined) {
        await Promise.all(files.map((x) => x.close().catch(() => {})));
        throw new SafetensorsError('DUPLICATE', `tensor is also in ${other.path}`, {
          file: f.path,
          tensor: name,
        });
      }
      tensors.set(name, f);
    }
  }
  return new MergedCheckpoint(path, files, null, tensors, []);
}

class MergedCheckpoint implements Checkpoint {
  readonly files: readonly string[];
  readonly metadata: Readonly<Record<string, string>>;

  constructor(
    readonly path: string,
    private readonly opened: readonly SafetensorsFile[],
    readonly indexFile: string | null,
    private readonly tensors: ReadonlyMap<string, SafetensorsFile>,
    readonly unmapped: readonly UnmappedTensor[],
  ) {
    this.files = opened.map((f) => f.path);
    this.metadata = opened[0]?.metadata ?? {};
  }

  names(): string[] {
    return [...this.tensors.keys()];
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  info(name: string): CheckpointTensorInfo {
    return { ...this.#file(name).info(name), file: this.#file(name).path };
  }

  async read(name: string): Promise<Uint8Array> {
    return this.#file(name).read(name);
  }

  readSync(name: string): Uint8Array {
    return this.#file(name).readSync(name);
  }

  async readInto(name: string, out: Uint8Array): Promise<void> {
    return this.#file(name).readInto(name, out);
  }

  async identity(file: string): Promise<FileIdentity> {
    const f = this.opened.find((x) => x.path === file);
    if (f === undefined)
      throw new SafetensorsError('NOT_FOUND', 'not a file of this checkpoint', {
        file: this.path,
        tensor: file,
      });
    return f.identity();
  }

  fileRange(name: string): { readonly fd: number; readonly position: number; readonly byteLength: number } {
    return this.#file(name).fileRange(name);
  }

  async close(): Promise<void> {
    const results = await Promise.allSettled(this.opened.map((f) => f.close()));
    const failed = results.find((r) => r.status === 'rejected');
    if (failed) throw (failed as PromiseRejectedResult).reason;
  }

  #file(name: string): SafetensorsFile {
    const f = this.tensors.get(name);
    if (f === undefined) {
      throw new SafetensorsError('NOT_FOUND', 'no such tensor in this checkpoint', {
        file: this.path,
        tensor: name,
      });
    }
    return f;
  }
}
