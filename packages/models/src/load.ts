import { open, readFile, stat } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { downloadGgufFile, parseGgufRef, type ResolveOptions, resolveModel } from '@mnemo/hub';
import { openCheckpoint } from '@mnemo/safetensors';
import { type Backend, createBackend } from '@mnemo/tensor';
import type { RawConfig } from './config';
import { ModelLoadError } from './errors';
import { modelFingerprint, WeightDigest } from './fingerprint';
import { type GgufModelInfo, openGgufModel } from './gguf';
import type { Model } from './model';
import { QuantizationConfig } from './quantization';
import { type ArchitectureRegistry, defaultRegistry } from './registry';
import { digestingSource, Weights } from './weights';

export interface LoadModelOptions {
  /** Backend to load into; by default `createBackend({ backend: backendName })`. */
  readonly backend?: Backend;
  /** Backend name when `backend` is absent (`wasm`, `js`, ...; default from `MNEMO_BACKEND`, else `wasm`). */
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
}

export interface LoadedModel {
  readonly model: Model;
  readonly backend: Backend;
  /** Local directory of the checkpoint (a Hub snapshot folder for repo ids). */
  readonly dir: string;
  readonly config: RawConfig;
  /** `generation_config.json`, when present. */
  readonly generationConfig: RawConfig | undefined;
  /** sha256 hex of the architecture config and the weights' identity. */
  readonly fingerprint: string;
  /** Set when the model came from a GGUF file: its path, metadata (the tokenizer is in it) and tensor types. */
  readonly gguf?: GgufModelInfo;
}

/** Reads and parses an optional JSON file of a model directory; `undefined` when absent. */
export async function readJsonFile(
  dir: string,
  name: string,
  required: boolean,
): Promise<RawConfig | undefined> {
  const path = join(dir, name);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
      if (required) throw new ModelLoadError(`${path} does not exist — is this a model directory?`);
      return undefined;
    }
    throw new ModelLoadError(`cannot read ${path}: ${(e as Error).message}`);
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

/** Whether `path` is a regular file that starts with the GGUF magic. */
async function isGgufFile(path: string): Promise<boolean> {
  const st = await stat(path).catch(() => null);
  if (!st?.isFile()) return false;
  const fh = await open(path, 'r');
  try {
    const b = Buffer.alloc(4);
    const { bytesRead } = await fh.read(b, 0, 4, 0);
    return bytesRead === 4 && b.toString('latin1') === 'GGUF';
  } finally {
    await fh.close();
  }
}

/**
 * The local GGUF file `pathOrRepo` names, downloading it for a Hub reference (`owner/name:QUANT`,
 * `owner/name/file.gguf`); null when it names no GGUF file (a model directory or a repo id).
 */
export async function resolveGgufFile(pathOrRepo: string, hub?: ResolveOptions): Promise<string | null> {
  const s = pathOrRepo.trim();
  const local = resolve(s === '~' || s.startsWith('~/') ? join(homedir(), s.slice(1)) : s);
  if (await isGgufFile(local)) return local;
  const exists = (await stat(local).catch(() => null)) !== null;
  if (exists) {
    if (/\.gguf$/i.test(s))
      throw new ModelLoadError(`${local} is not a GGUF file (it does not start with "GGUF")`);
    return null;
  }
  if (/\.gguf$/i.test(s) && (/^(\.{1,2}|~)?[/\\]/.test(s) || s.split('/').length < 3))
    throw new ModelLoadError(`GGUF file ${local} does not exist`);
  if (!parseGgufRef(s)) return null;
  return (await downloadGgufFile(s, hub)).path;
}

/**
 * Loads a model from a local directory, a GGUF file, or the Hugging Face Hub (`owner/name[@revision]` for a
 * safetensors checkpoint, `owner/name:QUANT` or `owner/name/file.gguf` for one GGUF file; downloaded into the
 * standard HF cache): reads the config (config.json, or the GGUF metadata), picks the architecture by `model_type`,
 * loads and checks every weight.
 */
export async function loadModel(pathOrRepo: string, opts: LoadModelOptions = {}): Promise<LoadedModel> {
  const gguf = await resolveGgufFile(pathOrRepo, opts.hub);
  if (gguf !== null) return loadGgufModel(gguf, opts);
  const dir = await resolveModel(pathOrRepo, opts.hub);
  const config = (await readJsonFile(dir, 'config.json', true))!;
  const generationConfig = await readJsonFile(dir, 'generation_config.json', false);
  const modelType = config.model_type;
  if (typeof modelType !== 'string')
    throw new ModelLoadError(`${join(dir, 'config.json')}: missing "model_type"`);
  const plugin = (opts.registry ?? defaultRegistry).get(modelType);
  const quantization = QuantizationConfig.parse(config);
  const backend =
    opts.backend ??
    (await createBackend({
      ...(opts.backendName ? { backend: opts.backendName } : {}),
      ...(opts.threads === undefined ? {} : { threads: opts.threads }),
      ...(opts.int8Activations === undefined ? {} : { int8Activations: opts.int8Activations }),
    }));
  const checkpoint = await openCheckpoint(dir);
  try {
    const digest = new WeightDigest();
    const weights = new Weights(digestingSource(checkpoint, digest), backend, quantization);
    const model = await plugin.create(config, weights, backend);
    return {
      model,
      backend,
      dir,
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

function makeBackend(opts: LoadModelOptions): Promise<Backend> {
  return createBackend({
    ...(opts.backendName ? { backend: opts.backendName } : {}),
    ...(opts.threads === undefined ? {} : { threads: opts.threads }),
    ...(opts.int8Activations === undefined ? {} : { int8Activations: opts.int8Activations }),
  });
}

/**
 * Loads a model from a local GGUF file: config from the metadata, tensors read one at a time by offset (GGML blocks
 * uploaded as they are), tokenizer metadata kept in `gguf` for the caller.
 */
export async function loadGgufModel(path: string, opts: LoadModelOptions = {}): Promise<LoadedModel> {
  const { file, config, source, info } = await openGgufModel(path);
  try {
    const plugin = (opts.registry ?? defaultRegistry).get(config.model_type as string);
    const backend = opts.backend ?? (await makeBackend(opts));
    try {
      const digest = new WeightDigest();
      const weights = new Weights(digestingSource(source, digest), backend, undefined);
      const model = await plugin.create(config, weights, backend);
      return {
        model,
        backend,
        dir: dirname(path),
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
