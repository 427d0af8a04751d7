/**
 * The mnemo prompt-cache file, format v2 (specified in docs/prompt-cache-format.md): a safetensors file holding the
 * rows every layer's cache holds, with the model and tokenizer fingerprints, the cached token ids, the numerics and
 * checksums in its metadata. Each layer records its own kind, shape and parameters (its meta-state); what its tensors
 * are and mean belongs to the kind's codec (`codecFor`). Loading validates everything and refuses, with a
 * PromptCacheError, anything it cannot trust. Files of format v1 (one kind for every layer) still load.
 */

import { createHash } from 'node:crypto';
import {
  type LazyTensorInput,
  openSafetensors,
  SafetensorsError,
  type SafetensorsFile,
  type TensorInfo,
  writeSafetensorsStreaming,
} from '@mnemo/safetensors';
import type { Backend } from '@mnemo/tensor';
import { version as packageVersion } from '../package.json';
import { codecFor, freeCaches } from './caches';
import { type CacheCodec, type MetaState, type ParsedLayer, UnsupportedCacheError } from './codec';
import { type CacheKind, type CacheShape, type KVCache, type LayerState, StateBuffers } from './contract';
import { isSha256Hex, metadataDigest } from './digest';
import { PromptCacheError } from './errors';
import { CacheStateError } from './state-check';

export const PROMPT_CACHE_FORMAT = 'mnemo-prompt-cache';
/** The version this package writes. */
export const PROMPT_CACHE_FORMAT_VERSION = '2';
/** Versions this package reads. */
export const PROMPT_CACHE_READABLE_VERSIONS: readonly string[] = ['1', '2'];
/** Version of this package, written as `mnemo_version` unless the caller gives one. */
export const MNEMO_VERSION: string = packageVersion;

/** Metadata keys every file (v1 and v2) has. */
export const PROMPT_CACHE_KEYS = [
  'format',
  'format_version',
  'mnemo_version',
  'model_fingerprint',
  'model_config',
  'model',
  'tokenizer_fingerprint',
  'chat_template',
  'tokens',
  'prompt',
  'cache',
  'checksum',
  'metadata_checksum',
  'created_at',
] as const;

/** What the caller says about the cached prompt when saving. */
export interface PromptCacheMeta {
  /** sha256 hex (64 lowercase digits) of the model identity: architecture config + weights. */
  readonly modelFingerprint: string;
  /** sha256 hex of the tokenizer identity. */
  readonly tokenizerFingerprint: string;
  /** The cached token ids; their count must equal the caches' offset. */
  readonly tokens: readonly number[];
  /** The prompt text (informative). */
  readonly prompt?: string;
  /** The model config (informative): a JSON-serializable value or a JSON string. */
  readonly modelConfig?: unknown;
  /** Chat-template information (informative, caller-defined, e.g. the template's name or hash). */
  readonly chatTemplate?: string;
  /** Where the model was loaded from: a local path or a Hub repo id (lets a tool reload it from the file alone). */
  readonly model?: string;
  /**
   * The arithmetic the cached keys and values were computed with (`Backend.numerics ?? Backend.name`, e.g. `wasm` or
   * `wasm+int8a`): a loader expecting other numerics refuses the file, since continuing it there would not give the
   * results of an uncached run.
   */
  readonly numerics?: string;
  /** Overrides `mnemo_version` (default: this package's version). */
  readonly mnemoVersion?: string;
  /** Overrides `created_at` (default: now). */
  readonly createdAt?: Date;
}

/** One layer as the `cache` entry describes it (v2; a v1 file's layers are translated to this). */
export interface LayerDescription {
  readonly kind: CacheKind;
  readonly nKvHeads: number;
  readonly headDim: number;
  /** Tokens the layer has seen (the number of token ids). */
  readonly offset: number;
  /** Rows its tensors hold. */
  readonly rows: number;
  /** The kind's parameters (its codec's meta-state), e.g. `{ maxSize, keep, storage }`. */
  readonly meta: MetaState;
}

/** The `cache` metadata entry. */
export interface CacheDescription {
  readonly nLayers: number;
  readonly layers: readonly LayerDescription[];
}

/** A short human-readable summary of a cache description, e.g. `5 × rotating (maxSize 16, keep 0, f32) + 1 × standard (f32)`. */
export function summarizeCache(c: CacheDescription): string {
  const parts: [string, number][] = [];
  for (const l of c.layers) {
    const params = Object.entries(l.meta)
      .map(([k, v]) => (k === 'storage' ? String(v) : `${k} ${String(v)}`))
      .join(', ');
    const name = `${l.kind} (${params}; ${l.nKvHeads} kv heads × ${l.headDim})`;
    const last = parts[parts.length - 1];
    if (last && last[0] === name) last[1]++;
    else parts.push([name, 1]);
  }
  return parts.map(([name, n]) => `${n} × ${name}`).join(' + ');
}

/** A file's metadata, parsed and validated. */
export interface PromptCacheInfo {
  readonly format: string;
  readonly formatVersion: string;
  readonly mnemoVersion: string;
  readonly modelFingerprint: string;
  /** `model_config` parsed (informative). */
  readonly modelConfig: unknown;
  readonly tokenizerFingerprint: string;
  /** The `numerics` entry; `''` when the file has none (written before it existed: unknown). */
  readonly numerics: string;
  readonly chatTemplate: string;
  readonly model: string;
  readonly tokens: readonly number[];
  readonly prompt: string;
  readonly cache: CacheDescription;
  readonly checksum: string;
  readonly createdAt: string;
}

/** What the loader checks the file against; any difference refuses the file. */
export interface PromptCacheExpectation {
  readonly modelFingerprint: string;
  readonly tokenizerFingerprint: string;
  /** The loader's arithmetic; a file recording other numerics is refused (a file recording none is accepted). */
  readonly numerics?: string;
  /** Most tokens the model can hold (its context length): a file holding more is refused (`SHAPE_MISMATCH`). */
  readonly maxTokens?: number;
  /** The model's layers: their count and each one's cache shape. */
  readonly layers: readonly CacheShape[];
}

export interface LoadPromptCacheOptions {
  readonly backend: Backend;
  readonly expect?: PromptCacheExpectation;
}

export interface LoadedPromptCache {
  readonly caches: KVCache[];
  readonly meta: PromptCacheInfo;
}

export interface PromptCacheInspection {
  readonly path: string;
  /** File size in bytes (0 when it could not be read). */
  readonly fileSize: number;
  /** The raw `__metadata__` entries (empty when the header could not be read). */
  readonly metadata: Readonly<Record<string, string>>;
  /** The parsed metadata, when it parses. */
  readonly info: PromptCacheInfo | undefined;
  /** Whether the file passes every check `loadPromptCache` makes without an expectation. */
  readonly valid: boolean;
  /** Why it does not (`detail`: the reason without the file and the code). */
  readonly error:
    | { readonly code: PromptCacheError['code']; readonly message: string; readonly detail: string }
    | undefined;
}

// ---- names and layout -----------------------------------------------------------------------------------------

/** File name of tensor `name` (a codec's name, e.g. `keys.packed`) of layer `layer`. */
export function layerTensorName(layer: number, name: string): string {
  return `layers.${layer}.${name}`;
}

/** Tensor names of layer `layer`'s keys or values in a v1 file: one dense tensor, or packed/scales/biases. */
export function layerTensorNames(layer: number, side: 'keys' | 'values', quantized: boolean): string[] {
  const base = `layers.${layer}.${side}`;
  return quantized ? [`${base}.packed`, `${base}.scales`, `${base}.biases`] : [base];
}

function codecOf(kind: string): CacheCodec {
  const c = codecFor(kind);
  if (c === undefined) throw new CacheStateError(`unknown cache kind '${kind}'`);
  return c;
}

function describe(state: LayerState): LayerDescription {
  const codec = codecOf(state.kind);
  const t = codec.state(state);
  return {
    kind: state.kind,
    nKvHeads: state.shape.nKvHeads,
    headDim: state.shape.headDim,
    offset: state.offset,
    rows: t.length > 0 ? t[0]!.shape[0]! : 0,
    meta: codec.metaState(state),
  };
}

function bytesOf(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

// ---- save -----------------------------------------------------------------------------------------------------

/**
 * Saves `caches` (one per layer, all of one kind and shape, all at offset `meta.tokens.length`) to `path`, atomically:
 * everything is checked first, then written to a temporary file in the same folder, fsynced and renamed over `path`.
 * On any failure nothing is left half-written and an existing file at `path` is untouched.
 *
 * The layers are exported twice, one at a time, into reused host buffers (once to describe and checksum them, once
 * while writing), so about one layer's data is held on the JS heap, never a copy of the whole cache. The caches must
 * not change until the returned promise settles; a layer found with other rows on the second export fails the save
 * (`BAD_INPUT`).
 */
export async function savePromptCache(
  path: string,
  caches: readonly KVCache[],
  meta: PromptCacheMeta,
): Promise<void> {
  const bad = (msg: string): PromptCacheError => new PromptCacheError('BAD_INPUT', msg, { file: path });
  if (!Array.isArray(caches) || caches.length === 0) throw bad('no caches to save');
  if (!isSha256Hex(meta.modelFingerprint))
    throw bad('modelFingerprint must be a sha256 digest (64 lowercase hex digits)');
  if (!isSha256Hex(meta.tokenizerFingerprint))
    throw bad('tokenizerFingerprint must be a sha256 digest (64 lowercase hex digits)');
  if (!Array.isArray(meta.tokens) || !meta.tokens.every((t) => Number.isSafeInteger(t) && t >= 0))
    throw bad('tokens must be an array of non-negative integer token ids');
  caches.forEach((c, i) => {
    if (codecFor(c?.kind) === undefined) throw bad(`layer ${i} is not a cache this format can hold`);
    if (c.offset !== meta.tokens.length)
      throw bad(`layer ${i} holds ${c.offset} tokens but ${meta.tokens.length} token ids were given`);
  });
  let modelConfig: string;
  if (meta.modelConfig === undefined) modelConfig = '{}';
  else if (typeof meta.modelConfig === 'string') {
    try {
      JSON.parse(meta.modelConfig);
    } catch {
      throw bad('modelConfig is a string but not JSON');
    }
    modelConfig = meta.modelConfig;
  } else {
    const s = JSON.stringify(meta.modelConfig);
    if (s === undefined) throw bad('modelConfig is not JSON-serializable');
    modelConfig = s;
  }

  // Layer by layer, twice, through one set of reused host buffers (never more than about one layer's data on the JS
  // heap, and no fresh copy per layer left for the GC): pass 1 describes each layer and hashes its tensors in file
  // order (the header, which holds the checksum, comes first in the file); pass 2 exports each layer again into the
  // same buffers while the file is written, and refuses a layer that changed in between.
  const buffers = new StateBuffers();
  const layers: LayerDescription[] = [];
  const specs: LazyTensorInput[] = [];
  const hash = createHash('sha256');
  caches.forEach((c, L) => {
    const s = c.exportState(buffers);
    layers.push(describe(s));
    for (const t of codecOf(s.kind).state(s)) {
      hash.update(bytesOf(t.data));
      const name = layerTensorName(L, t.name);
      const { dtype, shape } = t; // not `t` itself: its data views a buffer that may be replaced
      specs.push({ name, dtype, shape, data: () => layerData(L, name) });
    }
  });
  let changed: PromptCacheError | undefined;
  let held: { layer: number; data: Map<string, ArrayBufferView> } | undefined;
  const layerData = (L: number, name: string): ArrayBufferView => {
    if (held?.layer !== L) {
      held = undefined;
      const s = caches[L]!.exportState(buffers);
      const was = JSON.stringify(layers[L]);
      const now = JSON.stringify(describe(s));
      if (now !== was) {
        changed = bad(`layer ${L} changed while it was being saved: it was ${was}, it is ${now}`);
        throw changed;
      }
      const data = new Map<string, ArrayBufferView>();
      for (const t of codecOf(s.kind).state(s)) data.set(layerTensorName(L, t.name), t.data);
      held = { layer: L, data };
    }
    return held.data.get(name)!;
  };
  const description: CacheDescription = { nLayers: caches.length, layers };
  const metadata: Record<string, string> = {
    format: PROMPT_CACHE_FORMAT,
    format_version: PROMPT_CACHE_FORMAT_VERSION,
    mnemo_version: meta.mnemoVersion ?? MNEMO_VERSION,
    model_fingerprint: meta.modelFingerprint,
    model_config: modelConfig,
    model: meta.model ?? '',
    tokenizer_fingerprint: meta.tokenizerFingerprint,
    numerics: meta.numerics ?? '',
    chat_template: meta.chatTemplate ?? '',
    tokens: JSON.stringify(meta.tokens),
    prompt: meta.prompt ?? '',
    cache: JSON.stringify(description),
    checksum: hash.digest('hex'),
    created_at: (meta.createdAt ?? new Date()).toISOString(),
  };
  metadata.metadata_checksum = metadataDigest(metadata, 'metadata_checksum');
  try {
    await writeSafetensorsStreaming(path, specs, metadata);
  } catch (err) {
    if (changed !== undefined) throw changed;
    // The writer's message already says what failed (and names no file or code twice once unwrapped).
    const detail =
      err instanceof SafetensorsError
        ? err.detail
        : `writing failed: ${err instanceof Error ? err.message : String(err)}`;
    throw new PromptCacheError('IO', detail, { file: path, cause: err });
  } finally {
    held = undefined;
    buffers.clear();
  }
}

// ---- load -----------------------------------------------------------------------------------------------------

/**
 * Loads a prompt cache saved by {@link savePromptCache}, checking format, version, metadata and data checksums, the
 * expectation (model and tokenizer fingerprints, layer count and shape) and every tensor's shape against the metadata.
 * Throws a PromptCacheError naming the reason; never returns a cache it cannot trust.
 */
export async function loadPromptCache(
  path: string,
  opts: LoadPromptCacheOptions,
): Promise<LoadedPromptCache> {
  // Each layer is rebuilt in the backend as soon as it is read (so its host copy can go): the file's data is never
  // held whole on the JS heap beside the caches. Nothing is returned unless every check, the checksum included, passed.
  const caches: KVCache[] = [];
  try {
    const info = await readPromptCache(path, opts.expect, (L, state) => {
      try {
        caches[L] = codecOf(state.kind).fromState(opts.backend, state);
      } catch (err) {
        if (err instanceof PromptCacheError) throw err;
        throw new PromptCacheError('CORRUPT', `cannot rebuild layer ${L}: ${(err as Error).message}`, {
          file: path,
          cause: err,
        });
      }
    });
    return { caches, meta: info };
  } catch (err) {
    freeCaches(caches.filter((c) => c !== undefined));
    throw err;
  }
}

/** Reads a prompt-cache file's metadata and runs every check `loadPromptCache` makes, without a backend. */
export async function inspectPromptCache(path: string): Promise<PromptCacheInspection> {
  let file: SafetensorsFile;
  try {
    file = await openSafetensors(path);
  } catch (err) {
    const e = fromSafetensorsError(path, err);
    return {
      path,
      fileSize: 0,
      metadata: {},
      info: undefined,
      valid: false,
      error: { code: e.code, message: e.message, detail: e.detail },
    };
  }
  const metadata = file.metadata;
  let info: PromptCacheInfo | undefined;
  try {
    info = parseMetadata(path, metadata);
    await readStates(path, file, info, () => {});
    return { path, fileSize: file.size, metadata, info, valid: true, error: undefined };
  } catch (err) {
    const e = err instanceof PromptCacheError ? err : fromSafetensorsError(path, err);
    return {
      path,
      fileSize: file.size,
      metadata,
      info,
      valid: false,
      error: { code: e.code, message: e.message, detail: e.detail },
    };
  } finally {
    await file.close();
  }
}

async function readPromptCache(
  path: string,
  expect: PromptCacheExpectation | undefined,
  onLayer: (layer: number, state: LayerState) => void,
): Promise<PromptCacheInfo> {
  let file: SafetensorsFile;
  try {
    file = await openSafetensors(path);
  } catch (err) {
    throw fromSafetensorsError(path, err);
  }
  try {
    const info = parseMetadata(path, file.metadata);
    if (expect) checkExpectation(path, info, expect);
    await readStates(path, file, info, onLayer);
    return info;
  } catch (err) {
    throw err instanceof PromptCacheError ? err : fromSafetensorsError(path, err);
  } finally {
    await file.close();
  }
}

function fromSafetensorsError(path: string, err: unknown): PromptCacheError {
  if (err instanceof PromptCacheError) return err;
  if (err instanceof SafetensorsError) {
    const code =
      err.code === 'IO'
        ? 'IO'
        : err.code === 'TRUNCATED' || err.code === 'OUT_OF_BOUNDS'
          ? 'TRUNCATED'
          : 'CORRUPT';
    const what =
      code === 'TRUNCATED'
        ? 'the file ends early (truncated)'
        : code === 'IO'
          ? 'cannot read the file'
          : 'the safetensors container is damaged';
    // `detail`: the reason without the file and the code, which this error adds once.
    return new PromptCacheError(code, `${what}: ${err.detail}`, {
      file: path,
      cause: err,
    });
  }
  return new PromptCacheError(
    'IO',
    `cannot read the file: ${err instanceof Error ? err.message : String(err)}`,
    {
      file: path,
      cause: err,
    },
  );
}

function parseMetadata(path: string, m: Readonly<Record<string, string>>): PromptCacheInfo {
  const corrupt = (msg: string) => new PromptCacheError('CORRUPT', msg, { file: path });
  if (m.format !== PROMPT_CACHE_FORMAT) {
    const hint = Object.keys(m).some((k) => k.startsWith('2.'))
      ? ' (an mlx-lm prompt cache? use importMlxPromptCache)'
      : '';
    throw new PromptCacheError(
      'UNKNOWN_FORMAT',
      m.format === undefined
        ? `not a mnemo prompt cache: no 'format' entry${hint}`
        : `not a mnemo prompt cache: format is ${JSON.stringify(m.format)}, expected "${PROMPT_CACHE_FORMAT}"`,
      { file: path },
    );
  }
  if (typeof m.format_version !== 'string' || !PROMPT_CACHE_READABLE_VERSIONS.includes(m.format_version))
    throw new PromptCacheError(
      'UNKNOWN_VERSION',
      `prompt-cache format_version ${JSON.stringify(m.format_version)} is not supported (this reader knows ${PROMPT_CACHE_READABLE_VERSIONS.map((v) => `"${v}"`).join(' and ')})`,
      { file: path },
    );
  for (const k of PROMPT_CACHE_KEYS)
    if (typeof m[k] !== 'string') throw corrupt(`metadata entry '${k}' is missing`);
  if (metadataDigest(m, 'metadata_checksum') !== m.metadata_checksum)
    throw corrupt('metadata checksum mismatch: the header was altered or damaged');
  if (!isSha256Hex(m.model_fingerprint)) throw corrupt('model_fingerprint is not a sha256 hex digest');
  if (!isSha256Hex(m.tokenizer_fingerprint))
    throw corrupt('tokenizer_fingerprint is not a sha256 hex digest');
  if (!isSha256Hex(m.checksum)) throw corrupt('checksum is not a sha256 hex digest');
  const tokens = parseJsonEntry(path, m, 'tokens');
  if (!Array.isArray(tokens) || !tokens.every((t) => Number.isSafeInteger(t) && t >= 0))
    throw corrupt("'tokens' is not an array of token ids");
  const cacheJson = parseJsonEntry(path, m, 'cache');
  const cache =
    m.format_version === '1'
      ? parseCacheDescriptionV1(path, cacheJson)
      : parseCacheDescription(path, cacheJson);
  return {
    format: m.format,
    formatVersion: m.format_version,
    mnemoVersion: m.mnemo_version!,
    modelFingerprint: m.model_fingerprint!,
    modelConfig: parseJsonEntry(path, m, 'model_config'),
    tokenizerFingerprint: m.tokenizer_fingerprint!,
    numerics: typeof m.numerics === 'string' ? m.numerics : '',
    chatTemplate: m.chat_template!,
    model: m.model!,
    tokens: tokens as number[],
    prompt: m.prompt!,
    cache,
    checksum: m.checksum!,
    createdAt: m.created_at!,
  };
}

function parseJsonEntry(path: string, m: Readonly<Record<string, string>>, key: string): unknown {
  try {
    return JSON.parse(m[key]!);
  } catch {
    throw new PromptCacheError('CORRUPT', `metadata entry '${key}' is not valid JSON`, { file: path });
  }
}

function isObj(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function isCount(x: unknown, min = 0): x is number {
  return typeof x === 'number' && Number.isSafeInteger(x) && x >= min;
}

const MAX_LAYERS = 1 << 16;

/** The v2 `cache` entry: `{ nLayers, layers: [{ kind, nKvHeads, headDim, offset, rows, meta }] }`. */
function parseCacheDescription(path: string, c: unknown): CacheDescription {
  const corrupt = (msg: string) =>
    new PromptCacheError('CORRUPT', `metadata 'cache': ${msg}`, { file: path });
  if (!isObj(c)) throw corrupt('not an object');
  for (const k of Object.keys(c))
    if (k !== 'nLayers' && k !== 'layers') throw corrupt(`unknown entry '${k}'`);
  const { nLayers, layers } = c;
  if (!isCount(nLayers, 1) || nLayers > MAX_LAYERS)
    throw corrupt(`nLayers must be an integer in [1, ${MAX_LAYERS}]`);
  if (!Array.isArray(layers)) throw corrupt('layers is not an array');
  if (layers.length !== nLayers)
    throw new PromptCacheError(
      'SHAPE_MISMATCH',
      `'cache' announces ${nLayers} layers but describes ${layers.length}`,
      { file: path },
    );
  const out = layers.map((l: unknown, i): LayerDescription => {
    if (!isObj(l)) throw corrupt(`layer ${i} is not an object`);
    for (const k of Object.keys(l))
      if (!['kind', 'nKvHeads', 'headDim', 'offset', 'rows', 'meta'].includes(k))
        throw corrupt(`layer ${i}: unknown entry '${k}'`);
    if (typeof l.kind !== 'string') throw corrupt(`layer ${i}: kind is not a string`);
    if (codecFor(l.kind) === undefined)
      throw new PromptCacheError(
        'UNSUPPORTED',
        `layer ${i}: cache kind ${JSON.stringify(l.kind)} is not supported`,
        {
          file: path,
        },
      );
    if (!isCount(l.nKvHeads, 1) || !isCount(l.headDim, 1))
      throw corrupt(`layer ${i}: nKvHeads and headDim must be positive integers`);
    if (!isCount(l.offset) || !isCount(l.rows)) throw corrupt(`layer ${i}: offset and rows must be integers`);
    if (
      !isObj(l.meta) ||
      !Object.values(l.meta).every((v) => ['string', 'number', 'boolean'].includes(typeof v))
    )
      throw corrupt(`layer ${i}: meta must be an object of strings, numbers and booleans`);
    return {
      kind: l.kind as CacheKind,
      nKvHeads: l.nKvHeads,
      headDim: l.headDim,
      offset: l.offset,
      rows: l.rows,
      meta: l.meta as MetaState,
    };
  });
  return { nLayers, layers: out };
}

/**
 * The v1 `cache` entry (`{ kind, nLayers, nKvHeads, headDim, layers: [{ kind, offset, rows, ...params }] }`, one kind
 * and shape for every layer, f32 rows), translated to the v2 description (its tensors have the same names and layout).
 */
function parseCacheDescriptionV1(path: string, c: unknown): CacheDescription {
  const corrupt = (msg: string) =>
    new PromptCacheError('CORRUPT', `metadata 'cache': ${msg}`, { file: path });
  if (!isObj(c)) throw corrupt('not an object');
  const { kind, nLayers, nKvHeads, headDim, layers } = c;
  if (kind !== 'standard' && kind !== 'rotating' && kind !== 'quantized') {
    throw new PromptCacheError('UNSUPPORTED', `cache kind ${JSON.stringify(kind)} is not supported`, {
      file: path,
    });
  }
  if (!isCount(nLayers, 1) || !isCount(nKvHeads, 1) || !isCount(headDim, 1) || nLayers > MAX_LAYERS)
    throw corrupt('nLayers, nKvHeads and headDim must be positive integers');
  if (!Array.isArray(layers)) throw corrupt('layers is not an array');
  if (layers.length !== nLayers)
    throw new PromptCacheError(
      'SHAPE_MISMATCH',
      `'cache' announces ${nLayers} layers but describes ${layers.length}`,
      { file: path },
    );
  const out = layers.map((l: unknown, i): LayerDescription => {
    if (!isObj(l)) throw corrupt(`layer ${i} is not an object`);
    if (l.kind !== kind) throw corrupt(`layer ${i} is '${String(l.kind)}', the cache '${kind}'`);
    if (!isCount(l.offset) || !isCount(l.rows)) throw corrupt(`layer ${i}: offset and rows must be integers`);
    const meta: MetaState =
      kind === 'standard'
        ? { storage: 'f32' }
        : kind === 'rotating'
          ? { maxSize: l.maxSize as number, keep: l.keep as number, storage: 'f32' }
          : {
              bits: l.bits as number,
              groupSize: l.groupSize as number,
              start: l.start as number,
              quantized: l.quantized as boolean,
            };
    return { kind, nKvHeads, headDim, offset: l.offset, rows: l.rows, meta };
  });
  return { nLayers, layers: out };
}

/** Each layer's meta-state checked by its codec: the tensors it implies (throws PromptCacheError). */
function parseLayers(path: string, c: CacheDescription): ParsedLayer[] {
  return c.layers.map((d, L) => {
    let parsed: ParsedLayer;
    try {
      parsed = codecOf(d.kind).parse(d.meta, { nKvHeads: d.nKvHeads, headDim: d.headDim }, d.offset);
    } catch (err) {
      if (!(err instanceof CacheStateError)) throw err;
      throw new PromptCacheError(
        err instanceof UnsupportedCacheError ? 'UNSUPPORTED' : 'CORRUPT',
        `metadata 'cache': layer ${L}: ${err.message}`,
        { file: path },
      );
    }
    if (d.rows !== parsed.rows)
      throw new PromptCacheError(
        'SHAPE_MISMATCH',
        `layer ${L} says ${d.rows} rows for offset ${d.offset}, expected ${parsed.rows}`,
        { file: path },
      );
    return parsed;
  });
}

function checkExpectation(path: string, info: PromptCacheInfo, e: PromptCacheExpectation): void {
  if (info.modelFingerprint !== e.modelFingerprint)
    throw new PromptCacheError(
      'MODEL_MISMATCH',
      `made for another model: model_fingerprint ${info.modelFingerprint}, this model is ${e.modelFingerprint}`,
      { file: path },
    );
  if (info.tokenizerFingerprint !== e.tokenizerFingerprint)
    throw new PromptCacheError(
      'TOKENIZER_MISMATCH',
      `made with another tokenizer: tokenizer_fingerprint ${info.tokenizerFingerprint}, this tokenizer is ${e.tokenizerFingerprint}`,
      { file: path },
    );
  if (e.numerics !== undefined && info.numerics !== '' && info.numerics !== e.numerics)
    throw new PromptCacheError(
      'NUMERICS_MISMATCH',
      `computed with other arithmetic: numerics ${info.numerics}, this model runs with ${e.numerics} (load the model with the same backend options, e.g. int8 activations on or off)`,
      { file: path },
    );
  if (e.maxTokens !== undefined && info.tokens.length > e.maxTokens)
    throw new PromptCacheError(
      'SHAPE_MISMATCH',
      `holds ${info.tokens.length} tokens, more than the model's context of ${e.maxTokens} tokens`,
      { file: path },
    );
  const c = info.cache;
  if (c.nLayers !== e.layers.length)
    throw new PromptCacheError(
      'SHAPE_MISMATCH',
      `the cache has ${c.nLayers} layers, the model ${e.layers.length}`,
      {
        file: path,
      },
    );
  c.layers.forEach((d, L) => {
    const want = e.layers[L]!;
    for (const [what, got, need] of [
      ['kv heads', d.nKvHeads, want.nKvHeads],
      ['head size', d.headDim, want.headDim],
    ] as const) {
      if (got !== need)
        throw new PromptCacheError(
          'SHAPE_MISMATCH',
          `layer ${L} of the cache has ${got} ${what}, the model ${need}`,
          {
            file: path,
          },
        );
    }
  });
}

/**
 * Checks the tensors against the metadata, reads them, hands each layer's state to `onLayer` (in the order the layers
 * complete in the file) and verifies the data checksum (throwing CHECKSUM after the last layer when it does not match).
 */
async function readStates(
  path: string,
  file: SafetensorsFile,
  info: PromptCacheInfo,
  onLayer: (layer: number, state: LayerState) => void,
): Promise<void> {
  const c = info.cache;
  c.layers.forEach((d, L) => {
    if (d.offset !== info.tokens.length)
      throw new PromptCacheError(
        'SHAPE_MISMATCH',
        `layer ${L} holds ${d.offset} tokens but the file lists ${info.tokens.length} token ids`,
        { file: path },
      );
  });
  const parsed = parseLayers(path, c);
  // every tensor the layers imply, by file name: its layer, its name within the layer, dtype and shape
  const expected = new Map<
    string,
    { layer: number; name: string; dtype: string; shape: readonly number[] }
  >();
  const missing = c.layers.map(() => 0);
  parsed.forEach((p, L) => {
    for (const t of p.tensors) {
      expected.set(layerTensorName(L, t.name), { layer: L, name: t.name, dtype: t.dtype, shape: t.shape });
      missing[L]!++;
    }
  });
  for (const name of file.tensors.keys())
    if (!expected.has(name))
      throw new PromptCacheError(
        'SHAPE_MISMATCH',
        `unexpected tensor '${name}' (the metadata describes ${c.nLayers} layers)`,
        { file: path },
      );
  for (const [name, t] of expected) {
    const got: TensorInfo | undefined = file.tensors.get(name);
    if (!got)
      throw new PromptCacheError(
        'SHAPE_MISMATCH',
        `tensor '${name}' is missing (the metadata describes ${c.nLayers} layers)`,
        { file: path },
      );
    if (
      got.dtype !== t.dtype ||
      got.shape.length !== t.shape.length ||
      got.shape.some((n, i) => n !== t.shape[i])
    )
      throw new PromptCacheError(
        'SHAPE_MISMATCH',
        `tensor '${name}' is ${got.dtype} [${got.shape.join(', ')}], the metadata implies ${t.dtype} [${t.shape.join(', ')}]`,
        { file: path },
      );
  }

  // Read in file order, hashing the data region as we go. A layer's state is handed to `onLayer` as soon as all of its
  // tensors are read and its buffers dropped, so only about one layer's data is ever held on the JS heap (the caller
  // rebuilds the cache in the backend meanwhile); the checksum is compared once everything has been read, and the
  // caller discards what it rebuilt when it fails.
  const byOffset = [...file.tensors.values()].sort((a, b) => a.byteOffset - b.byteOffset);
  // The read buffers are reused from layer to layer (every codec copies a state into the backend before `onLayer`
  // returns): a fresh buffer per tensor would leave the layers already loaded as garbage that V8 frees only at its next
  // collection, ~30 MiB at once for a 2,000-token Llama-3.2-1B cache.
  const data = c.layers.map(() => new Map<string, Uint8Array>());
  const spare: Uint8Array[] = [];
  const take = (n: number): Uint8Array => {
    let best = -1;
    spare.forEach((b, i) => {
      if (b.byteLength >= n && (best < 0 || b.byteLength < spare[best]!.byteLength)) best = i;
    });
    const b = best >= 0 ? spare.splice(best, 1)[0]! : new Uint8Array(n);
    return b.subarray(0, n);
  };
  const hash = createHash('sha256');
  for (const t of byOffset) {
    const b = take(t.byteLength);
    await file.readInto(t.name, b);
    hash.update(b);
    const e = expected.get(t.name)!;
    data[e.layer]!.set(e.name, b);
    if (--missing[e.layer]! === 0) {
      let state: LayerState;
      try {
        state = parsed[e.layer]!.state(data[e.layer]!);
      } catch (err) {
        if (!(err instanceof CacheStateError)) throw err;
        throw new PromptCacheError('CORRUPT', `layer ${e.layer}: ${err.message}`, { file: path });
      }
      onLayer(e.layer, state);
      for (const used of data[e.layer]!.values()) spare.push(new Uint8Array(used.buffer));
      data[e.layer]!.clear();
    }
  }
  // layers without tensors (none in the kinds of this version, but a codec may define one)
  missing.forEach((n, L) => {
    if (n === 0 && parsed[L]!.tensors.length === 0) onLayer(L, parsed[L]!.state(new Map()));
  });
  const sum = hash.digest('hex');
  if (sum !== info.checksum)
    throw new PromptCacheError(
      'CHECKSUM',
      `tensor data checksum mismatch: the file says ${info.checksum}, the data hashes to ${sum}`,
      { file: path },
    );
}
