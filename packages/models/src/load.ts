import { join } from 'node:path';
import { FileAccessError, readTextFile } from '@mnemo/files';
import { type ResolveOptions, resolveModelSource } from '@mnemo/hub';
import { openCheckpoint } from '@mnemo/safetensors';
import { type Backend, createBackend } from '@mnemo/tensor';
import type { RawConfig } from './config';
import { DigestCache, defaultDigestCacheDir } from './digest-cache';
import { ModelLoadError } from './errors';
import { modelFingerprint, WeightDigest } from './fingerprint';
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
  /** Local directory of the checkpoint (a Hub snapshot folder for repo ids). */
  readonly dir: string;
  /**
   * Where the model came from, as a stable reference: the absolute local folder, or the Hub repo id as given
   * (`owner/name[@revision]`). Recorded in prompt-cache files.
   */
  readonly source: string;
  readonly config: RawConfig;
  /** `generation_config.json`, when present. */
  readonly generationConfig: RawConfig | undefined;
  /** sha256 hex of the architecture config and the weights' identity. */
  readonly fingerprint: string;
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

/**
 * Loads a model from a local directory or a Hugging Face repo id (`owner/name[@revision]`, downloaded into the standard
 * HF cache): reads config.json, picks the architecture by `model_type`, loads and checks every weight.
 */
export async function loadModel(pathOrRepo: string, opts: LoadModelOptions = {}): Promise<LoadedModel> {
  const { dir, ref: source } = await resolveModelSource(pathOrRepo, opts.hub);
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
