import type { Stats } from 'node:fs';
import { stat } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { FileAccessError, fileKind, openRegularFile, readTextFile } from '@mnemo/files';
import { downloadGgufFile, parseGgufRef, type ResolveOptions, resolveModelSource } from '@mnemo/hub';
import { openCheckpoint } from '@mnemo/safetensors';
import { type Backend, createBackend } from '@mnemo/tensor';
import type { RawConfig } from './config';
import { DigestCache, defaultDigestCacheDir } from './digest-cache';
import { ModelLoadError } from './errors';
import { modelFingerprint, WeightDigest } from './fingerprint';
import { type GgufModelInfo, openGgufModel } from './gguf';
import type { Model } from './model';
import { loadNativeBackend } from './native';
import { QuantizationConfig } from './quantization';
import { type ArchitectureRegistry, defaultRegistry } from './registry';
import { digestingSource, Weights } from './weights';

export interface LoadModelOptions {
  /** Backend to load into; by default `createBackend({ backend: backendName })`. */
  readonly backend?: Backend;
  /**
   * Backend name when `backend` is absent (`native`, `wasm`, `js`, ...; default from `MNEMO_BACKEND`, else `native`
   * when it can run here, else `wasm`).
   */
  readonly backendName?: string;
  /**
   * Threads of the backend made when `backend` is absent (WASM: the calling thread plus `threads - 1` workers; default
   * `MNEMO_THREADS`, else every core). Results do not depend on it.
   */
  readonly threads?: number;
  /**
   * Opt-in, when `backend` is absent: quantized (4-/8-bit) matmuls round their activations to int8 — faster, within
   * the activation rounding of the exact results, not bit-compatible with them (see `BackendOptions.int8Activations`).
   */
  readonly int8Activations?: boolean;
  /** Registry to look architectures up in (default: built-ins plus registered plugins). */
  readonly registry?: ArchitectureRegistry;
  /** Options for resolving a Hugging Face repo id (revision, cache dir, token, offline, progress). */
  readonly hub?: ResolveOptions;
  /**
   * Folder of remembered tensor digests (see `DigestCache`), or `false` to hash every byte at every load. Default:
   * `defaultDigestCacheDir()` (`$MNEMO_CACHE_DIR/weight-digests`, `~/.cache/mnemo/weight-digests`, off with
   * `MNEMO_DIGEST_CACHE=0`).
   */
  readonly digestCache?: string | false;
}

export interface LoadedModel {
  readonly model: Model;
  readonly backend: Backend;
  /** Local directory of the checkpoint (a Hub snapshot folder for repo ids; the folder of a GGUF file). */
  readonly dir: string;
  /**
   * Where the model came from, as a stable reference: the absolute local folder or GGUF file, or the Hub reference as
   * given (`owner/name[@revision]`, `owner/name:QUANT`, `owner/name/file.gguf`). Recorded in prompt-cache files.
   */
  readonly source: string;
  readonly config: RawConfig;
  /** `generation_config.json`, when present. */
  readonly generationConfig: RawConfig | undefined;
  /** sha256 hex of the architecture config and the weights' identity. */
  readonly fingerprint: string;
  /** Set when the model came from a GGUF file: its path, metadata (the tokenizer is in it) and tensor types. */
  readonly gguf?: GgufModelInfo;
}

/** Largest `config.json` / `generation_config.json` accepted (real ones are a few KB). */
export const MAX_CONFIG_BYTES = 16 * 1024 * 1024;

/** Reads and parses an optional JSON file of a model directory; `undefined` when absent. */
export async function readJsonFile(
  dir: string,
  name: string,
  required: boolean,
): Promise<RawConfig | undefined> {
  const path = join(dir, name);
  let text: string;
  try {
    // Only a regular file of bounded size is read: a FIFO or device named config.json is refused, never waited on.
    text = await readTextFile(path, { maxBytes: MAX_CONFIG_BYTES });
  } catch (e) {
    if (e instanceof FileAccessError && e.code === 'NOT_FOUND') {
      if (required) throw new ModelLoadError(`${path} does not exist — is this a model directory?`);
      return undefined;
    }
    throw new ModelLoadError(e instanceof FileAccessError ? e.message : `cannot read ${path}: ${String(e)}`, {
      cause: e,
    });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new ModelLoadError(`${path} is not valid JSON: ${(e as Error).message}`);
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new ModelLoadError(`${path} must hold a JSON object`);
  }
  return parsed as RawConfig;
}

/** Bytes of the GGUF magic. */
const GGUF_MAGIC = 'GGUF';

/**
 * What the local path `local` is as a model: `true` for a GGUF file, `false` for anything else a model can be (a
 * folder, another regular file), `null` when nothing is there. Anything that is not a regular file or a folder (a
 * FIFO, a device, a socket) is refused without being opened, and a file is opened non-blocking through
 * `@mnemo/files`, so no path can make this wait or read a device.
 */
async function isGgufAt(local: string): Promise<boolean | null> {
  let st: Stats;
  try {
    st = await stat(local);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return null;
    throw new ModelLoadError(`cannot read ${local}: ${(e as Error).message}`, { cause: e });
  }
  if (st.isDirectory()) return false;
  if (!st.isFile()) throw new ModelLoadError(`${local} is ${fileKind(st)}, not a model file or folder`);
  let opened: Awaited<ReturnType<typeof openRegularFile>>;
  try {
    opened = await openRegularFile(local);
  } catch (e) {
    throw new ModelLoadError(
      e instanceof FileAccessError ? e.message : `cannot read ${local}: ${String(e)}`,
      {
        cause: e,
      },
    );
  }
  try {
    const b = Buffer.alloc(4);
    const { bytesRead } = await opened.handle.read(b, 0, 4, 0);
    return bytesRead === 4 && b.toString('latin1') === GGUF_MAGIC;
  } catch (e) {
    throw new ModelLoadError(`cannot read ${local}: ${(e as Error).message}`, { cause: e });
  } finally {
    await opened.handle.close().catch(() => {});
  }
}

/** A GGUF file to load, and the stable reference prompt caches record for it. */
export interface GgufFileSource {
  /** The local file (for a Hub reference: its copy in the Hugging Face cache). */
  readonly path: string;
  /** The absolute local path as given (`~` expanded), or the Hub reference as given (`owner/name:QUANT`, ...). */
  readonly source: string;
}

/**
 * The local GGUF file `pathOrRepo` names, downloading it for a Hub reference (`owner/name:QUANT`,
 * `owner/name/file.gguf`); null when it names no GGUF file (a model directory or a repo id). A path to something that
 * is neither a regular file nor a folder (a FIFO, a device) is refused (ModelLoadError) without being opened.
 */
export async function resolveGgufFile(
  pathOrRepo: string,
  hub?: ResolveOptions,
): Promise<GgufFileSource | null> {
  const s = pathOrRepo.trim();
  if (s === '') return null;
  const local = resolve(s === '~' || s.startsWith('~/') ? join(homedir(), s.slice(1)) : s);
  const gguf = await isGgufAt(local);
  if (gguf === true) return { path: local, source: local };
  if (gguf === false) {
    if (/\.gguf$/i.test(s))
      throw new ModelLoadError(`${local} is not a GGUF file (it does not start with "GGUF")`);
    return null;
  }
  if (/\.gguf$/i.test(s) && (/^(\.{1,2}|~)?[/\\]/.test(s) || s.split('/').length < 3))
    throw new ModelLoadError(`GGUF file ${local} does not exist`);
  if (!parseGgufRef(s)) return null;
  return { path: (await downloadGgufFile(s, hub)).path, source: s };
}

/**
 * Loads a model from a local directory, a GGUF file, or the Hugging Face Hub (`owner/name[@revision]` for a
 * safetensors checkpoint, `owner/name:QUANT` or `owner/name/file.gguf` for one GGUF file; downloaded into the
 * standard HF cache): reads the config (config.json, or the GGUF metadata), picks the architecture by `model_type`,
 * loads and checks every weight.
 */
export async function loadModel(pathOrRepo: string, opts: LoadModelOptions = {}): Promise<LoadedModel> {
  const gguf = await resolveGgufFile(pathOrRepo, opts.hub);
  if (gguf !== null) return loadGguf(gguf.path, gguf.source, opts);
  const { dir, ref: source } = await resolveModelSource(pathOrRepo, opts.hub);
  const config = (await readJsonFile(dir, 'config.json', true))!;
  const generationConfig = await readJsonFile(dir, 'generation_config.json', false);
  const modelType = config.model_type;
  if (typeof modelType !== 'string')
    throw new ModelLoadError(`${join(dir, 'config.json')}: missing "model_type"`);
  const plugin = (opts.registry ?? defaultRegistry).get(modelType);
  const quantization = QuantizationConfig.parse(config);
  const backend = opts.backend ?? (await makeBackend(opts));
  const checkpoint = await openCheckpoint(dir);
  const digest = new WeightDigest();
  const cacheDir = opts.digestCache === undefined ? defaultDigestCacheDir() : opts.digestCache;
  // Every byte of every tensor the model reads is hashed, or taken from a remembered digest of an unchanged file.
  const weightsSource = digestingSource(checkpoint, digest, cacheDir ? new DigestCache(cacheDir) : undefined);
  try {
    const weights = new Weights(weightsSource, backend, quantization);
    const model = await plugin.create(config, weights, backend);
    try {
      await weightsSource.finish();
    } catch (e) {
      model.free();
      throw e;
    }
    return {
      model,
      backend,
      dir,
      source,
      config,
      generationConfig,
      fingerprint: modelFingerprint(config, digest),
    };
  } catch (e) {
    // Weights loaded before the failure must not stay behind in a backend nobody else holds.
    if (!opts.backend) backend.dispose();
    throw e;
  } finally {
    await checkpoint.close();
  }
}

/** The backend a load makes: `native` is registered first (or registered as unavailable, with the reason). */
async function makeBackend(opts: LoadModelOptions): Promise<Backend> {
  await loadNativeBackend();
  return createBackend({
    ...(opts.backendName ? { backend: opts.backendName } : {}),
    ...(opts.threads === undefined ? {} : { threads: opts.threads }),
    ...(opts.int8Activations === undefined ? {} : { int8Activations: opts.int8Activations }),
  });
}

/**
 * Loads a model from a local GGUF file: config from the metadata, tensors read one at a time by offset (GGML blocks
 * uploaded as they are), tokenizer metadata kept in `gguf` for the caller. As for safetensors, the fingerprint covers
 * the config (with the sha256 of the GGUF header: every metadata entry, the tokenizer's included) and every byte of
 * every tensor the model reads, hashed or taken from a remembered digest of the unchanged file (`digestCache`).
 */
export async function loadGgufModel(path: string, opts: LoadModelOptions = {}): Promise<LoadedModel> {
  const local = resolve(path);
  return loadGguf(local, local, opts);
}

async function loadGguf(path: string, ref: string, opts: LoadModelOptions): Promise<LoadedModel> {
  const { file, config, source, info } = await openGgufModel(path);
  try {
    const plugin = (opts.registry ?? defaultRegistry).get(config.model_type as string);
    const backend = opts.backend ?? (await makeBackend(opts));
    try {
      const digest = new WeightDigest();
      const cacheDir = opts.digestCache === undefined ? defaultDigestCacheDir() : opts.digestCache;
      const weightsSource = digestingSource(source, digest, cacheDir ? new DigestCache(cacheDir) : undefined);
      const weights = new Weights(weightsSource, backend, undefined);
      const model = await plugin.create(config, weights, backend);
      try {
        await weightsSource.finish();
      } catch (e) {
        model.free();
        throw e;
      }
      return {
        model,
        backend,
        dir: dirname(path),
        source: ref,
        config,
        generationConfig: undefined,
        fingerprint: modelFingerprint(config, digest),
        gguf: info,
      };
    } catch (e) {
      if (!opts.backend) backend.dispose();
      throw e;
    }
  } finally {
    await file.close();
  }
}
