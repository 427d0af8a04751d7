/**
 * mlx-lm prompt-cache interop: the layout of mlx-lm's `save_prompt_cache` / `load_prompt_cache`.
 *
 * mlx-lm flattens `[cache states, metadata, class names]` with `tree_flatten` (keys joined by '.'): tensors `"{L}.0"`
 * (keys) and `"{L}.1"` (values) shaped `[1, kv_heads, T, head_dim]`, or for a quantized layer `"{L}.0.0"`, `"{L}.0.1"`,
 * `"{L}.0.2"` (packed uint32, scales, biases) and likewise `"{L}.1.*"`; string metadata `"0.{L}"` (the meta state:
 * `""` for KVCache) or `"0.{L}.{i}"` (the i-th string of a tuple meta state), `"1.<key>"` user metadata and `"2.{L}"`
 * the class name. No token ids are stored: the caller supplies and checks the prompt.
 */
import {
  type NamedTensorInput,
  openSafetensors,
  SafetensorsError,
  type SafetensorsFile,
  writeSafetensors,
} from '@mnemo/safetensors';
import type { Backend } from '@mnemo/tensor';
import { freeCaches, importState } from './caches';
import type { CacheShape, DenseRows, KVCache, LayerState, QuantizedRows, RowData } from './contract';
import { PromptCacheError } from './errors';
import { f32ToStorage, rowsToF32, storageToF32 } from './floats';

export type MlxDType = 'f16' | 'bf16' | 'f32';

export interface ExportMlxOptions {
  /** Storage dtype of keys/values (and of quantized scales/biases). f32 is exact; f16/bf16 round to nearest even. */
  readonly dtype: MlxDType;
  /** User metadata, written as `"1.<key>"` (mlx-lm's `metadata` argument). Keys may not contain '.'. */
  readonly metadata?: Readonly<Record<string, string>>;
}

export interface ImportMlxOptions {
  readonly backend: Backend;
  /** The model's layers: their count and each one's cache shape (kv heads, head size). */
  readonly layers: readonly CacheShape[];
  /** `start` of imported quantized caches (mlx files do not record it; default 0). */
  readonly quantizedKvStart?: number;
}

export interface ImportedMlxPromptCache {
  readonly caches: KVCache[];
  /** Tokens the file holds (its caches' offset): the caller checks its prompt against this. */
  readonly tokenCount: number;
  /** The `"1.<key>"` user metadata. */
  readonly metadata: Readonly<Record<string, string>>;
  /** mlx-lm class name of each layer. */
  readonly classes: readonly string[];
}

const ST_DTYPE = { f32: 'F32', f16: 'F16', bf16: 'BF16' } as const;

/**
 * Moves per-row groups between mnemo's `[T, H * n]` and mlx's `[H, T, n]` layouts (`n` elements per head per row).
 */
function toHeadMajor<A extends Float32Array | Uint32Array>(
  src: A,
  T: number,
  H: number,
  n: number,
  out: A,
): A {
  for (let t = 0; t < T; t++)
    for (let h = 0; h < H; h++) out.set(src.subarray((t * H + h) * n, (t * H + h + 1) * n), (h * T + t) * n);
  return out;
}

function toRowMajor<A extends Float32Array | Uint32Array>(
  src: A,
  T: number,
  H: number,
  n: number,
  out: A,
): A {
  for (let h = 0; h < H; h++)
    for (let t = 0; t < T; t++) out.set(src.subarray((h * T + t) * n, (h * T + t + 1) * n), (t * H + h) * n);
  return out;
}

// ---- export ---------------------------------------------------------------------------------------------------

function mlxClass(s: LayerState): string {
  if (s.kind === 'rotating') return 'RotatingKVCache';
  if (s.kind === 'quantized' && s.keys.format === 'quantized') return 'QuantizedKVCache';
  return 'KVCache';
}

/** mlx-lm's meta state of one layer, as flattened metadata entries. */
function mlxMetaState(L: number, s: LayerState): Record<string, string> {
  if (s.kind === 'rotating') {
    // (keep, max_size, offset, _idx): rows are written in time order, so the next write index is the row count.
    return {
      [`0.${L}.0`]: `${s.keep}`,
      [`0.${L}.1`]: `${s.maxSize}`,
      [`0.${L}.2`]: `${s.offset}`,
      [`0.${L}.3`]: `${s.keys.rows}`,
    };
  }
  if (s.kind === 'quantized' && s.keys.format === 'quantized')
    return { [`0.${L}.0`]: `${s.offset}`, [`0.${L}.1`]: `${s.groupSize}`, [`0.${L}.2`]: `${s.bits}` };
  return { [`0.${L}`]: '' };
}

function exportRows(
  name: string,
  d: RowData,
  H: number,
  D: number,
  dtype: MlxDType,
  asFloats: boolean,
): NamedTensorInput[] {
  const T = d.rows;
  if (d.format !== 'quantized' || asFloats) {
    const f = rowsToF32(d, H * D);
    const hm = toHeadMajor(f, T, H, D, new Float32Array(f.length));
    return [{ name, dtype: ST_DTYPE[dtype], shape: [1, H, T, D], data: f32ToStorage(dtype, hm) }];
  }
  const words = (D * d.bits) / 32;
  const groups = D / d.groupSize;
  const packed = toHeadMajor(d.packed, T, H, words, new Uint32Array(d.packed.length));
  const scales = toHeadMajor(d.scales, T, H, groups, new Float32Array(d.scales.length));
  const biases = toHeadMajor(d.biases, T, H, groups, new Float32Array(d.biases.length));
  return [
    { name: `${name}.0`, dtype: 'U32', shape: [1, H, T, words], data: packed },
    {
      name: `${name}.1`,
      dtype: ST_DTYPE[dtype],
      shape: [1, H, T, groups],
      data: f32ToStorage(dtype, scales),
    },
    {
      name: `${name}.2`,
      dtype: ST_DTYPE[dtype],
      shape: [1, H, T, groups],
      data: f32ToStorage(dtype, biases),
    },
  ];
}

/**
 * Writes `caches` in mlx-lm's `save_prompt_cache` layout (atomically), so `mlx_lm.models.cache.load_prompt_cache`
 * can read it; layers of different kinds mix freely (as mlx-lm saves Gemma 3: `RotatingKVCache` on sliding layers,
 * `KVCache` on global ones). Standard caches (f32 or f16 rows, and quantized caches not yet converted) become
 * `KVCache`, rotating caches `RotatingKVCache` (rows in time order; quantized rows as the float values attention
 * reads, since mlx-lm has no quantized rotating cache), converted quantized caches `QuantizedKVCache` (needs
 * `headDim` to be a multiple of the group size, since mlx quantizes each head's vector).
 */
export async function exportMlxPromptCache(
  path: string,
  caches: readonly KVCache[],
  opts: ExportMlxOptions,
): Promise<void> {
  const bad = (msg: string) => new PromptCacheError('BAD_INPUT', msg, { file: path });
  if (!Array.isArray(caches) || caches.length === 0) throw bad('no caches to export');
  if (opts.dtype !== 'f16' && opts.dtype !== 'bf16' && opts.dtype !== 'f32')
    throw bad(`dtype must be f16, bf16 or f32, got ${String(opts.dtype)}`);
  const offset = caches[0]!.offset;
  if (offset === 0) throw bad('the caches are empty: mlx-lm cannot save an empty cache');
  const tensors: NamedTensorInput[] = [];
  const metadata: Record<string, string> = {};
  caches.forEach((c, L) => {
    if (c.offset !== offset) throw bad(`layer ${L} holds ${c.offset} tokens, layer 0 ${offset}`);
    const s = c.exportState();
    const { nKvHeads: H, headDim: D } = s.shape;
    const asFloats = s.kind === 'rotating';
    if (s.keys.format === 'quantized' && !asFloats && D % s.keys.groupSize !== 0)
      throw bad(
        `layer ${L}: head size ${D} is not a multiple of the group size ${s.keys.groupSize}; mlx quantizes per head`,
      );
    tensors.push(
      ...exportRows(`${L}.0`, s.keys, H, D, opts.dtype, asFloats),
      ...exportRows(`${L}.1`, s.values, H, D, opts.dtype, asFloats),
    );
    Object.assign(metadata, mlxMetaState(L, s));
    metadata[`2.${L}`] = mlxClass(s);
  });
  for (const [k, v] of Object.entries(opts.metadata ?? {})) {
    if (k === '' || k.includes('.'))
      throw bad(`metadata key ${JSON.stringify(k)} must be non-empty without '.'`);
    if (typeof v !== 'string') throw bad(`metadata value of ${JSON.stringify(k)} is not a string`);
    metadata[`1.${k}`] = v;
  }
  try {
    await writeSafetensors(path, tensors, metadata);
  } catch (err) {
    const detail =
      err instanceof SafetensorsError
        ? err.detail
        : `writing failed: ${err instanceof Error ? err.message : String(err)}`;
    throw new PromptCacheError('IO', detail, { file: path, cause: err });
  }
}

// ---- import ---------------------------------------------------------------------------------------------------

interface Ctx {
  readonly path: string;
  readonly file: SafetensorsFile;
  /** Shape of the layer being read. */
  H: number;
  D: number;
  readonly used: Set<string>;
}

function mismatch(ctx: Ctx, msg: string): PromptCacheError {
  return new PromptCacheError('SHAPE_MISMATCH', msg, { file: ctx.path });
}

/** Reads a `[1, H, T, n]` tensor, checking batch and heads; returns the data in mnemo's row layout and T. */
async function readHeadMajor(ctx: Ctx, name: string, kind: 'float' | 'u32', n: number | null, what: string) {
  const info = ctx.file.tensors.get(name);
  if (!info)
    throw new PromptCacheError('CORRUPT', `tensor '${name}' (${what}) is missing`, { file: ctx.path });
  ctx.used.add(name);
  const s = info.shape;
  if (s.length !== 4)
    throw mismatch(
      ctx,
      `tensor '${name}' (${what}) has shape [${s.join(', ')}], expected [1, kv_heads, T, n]`,
    );
  if (s[0] !== 1)
    throw mismatch(ctx, `tensor '${name}' (${what}) has batch size ${s[0]}, only 1 is supported`);
  if (s[1] !== ctx.H)
    throw mismatch(ctx, `tensor '${name}' (${what}) has ${s[1]} kv heads, the model ${ctx.H}`);
  if (n !== null && s[3] !== n)
    throw mismatch(ctx, `tensor '${name}' (${what}) has last dimension ${s[3]}, the model needs ${n}`);
  const T = s[2]!;
  const last = s[3]!;
  const bytes = await ctx.file.read(name);
  if (kind === 'u32') {
    if (info.dtype !== 'U32')
      throw mismatch(ctx, `tensor '${name}' (${what}) is ${info.dtype}, expected U32`);
    const src = new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
    return { T, last, u32: toRowMajor(src, T, ctx.H, last, new Uint32Array(src.length)), f32: undefined };
  }
  const dtype =
    info.dtype === 'F32' ? 'f32' : info.dtype === 'F16' ? 'f16' : info.dtype === 'BF16' ? 'bf16' : undefined;
  if (!dtype)
    throw new PromptCacheError('UNSUPPORTED', `tensor '${name}' (${what}) has dtype ${info.dtype}`, {
      file: ctx.path,
    });
  const src = storageToF32(dtype, bytes);
  return { T, last, f32: toRowMajor(src, T, ctx.H, last, new Float32Array(src.length)), u32: undefined };
}

async function readDense(ctx: Ctx, L: number): Promise<{ T: number; keys: DenseRows; values: DenseRows }> {
  const k = await readHeadMajor(ctx, `${L}.0`, 'float', ctx.D, `layer ${L} keys`);
  const v = await readHeadMajor(ctx, `${L}.1`, 'float', ctx.D, `layer ${L} values`);
  if (k.T !== v.T) throw mismatch(ctx, `layer ${L}: keys hold ${k.T} tokens, values ${v.T}`);
  return {
    T: k.T,
    keys: { format: 'f32', rows: k.T, data: k.f32! },
    values: { format: 'f32', rows: v.T, data: v.f32! },
  };
}

function intMeta(ctx: Ctx, m: Readonly<Record<string, string>>, key: string, what: string): number {
  const s = m[key];
  if (s === undefined || !/^\d+$/.test(s) || !Number.isSafeInteger(Number(s)))
    throw new PromptCacheError(
      'CORRUPT',
      `metadata '${key}' (${what}) is ${s === undefined ? 'missing' : JSON.stringify(s)}`,
      {
        file: ctx.path,
      },
    );
  return Number(s);
}

/** mlx-lm's `_temporal_order` on rows `[T, W]`, then only the rows a rotating cache holds. */
function rotatingRows(
  data: Float32Array,
  W: number,
  T: number,
  idx: number,
  offset: number,
  keep: number,
  maxSize: number,
) {
  let ordered: Float32Array;
  if (idx === T) ordered = data;
  else if (idx < offset) {
    ordered = new Float32Array(data.length);
    ordered.set(data.subarray(0, keep * W), 0);
    ordered.set(data.subarray(idx * W, T * W), keep * W);
    ordered.set(data.subarray(keep * W, idx * W), (keep + T - idx) * W);
  } else ordered = data.subarray(0, idx * W);
  const rows = ordered.length / W;
  const held = Math.min(offset, maxSize);
  if (rows <= held) return { rows, data: ordered };
  const out = new Float32Array(held * W);
  out.set(ordered.subarray(0, keep * W), 0);
  out.set(ordered.subarray((rows - (held - keep)) * W), keep * W);
  return { rows: held, data: out };
}

async function importLayer(
  ctx: Ctx,
  L: number,
  cls: string,
  m: Readonly<Record<string, string>>,
  start: number,
) {
  const shape = { nKvHeads: ctx.H, headDim: ctx.D };
  const W = ctx.H * ctx.D;
  if (cls === 'KVCache') {
    const { T, keys, values } = await readDense(ctx, L);
    return { kind: 'standard', shape, offset: T, keys, values } satisfies LayerState;
  }
  if (cls === 'RotatingKVCache') {
    const keep = intMeta(ctx, m, `0.${L}.0`, 'keep');
    const maxSize = intMeta(ctx, m, `0.${L}.1`, 'max_size');
    const offset = intMeta(ctx, m, `0.${L}.2`, 'offset');
    const idx = intMeta(ctx, m, `0.${L}.3`, '_idx');
    if (maxSize < 1 || keep >= maxSize)
      throw new PromptCacheError(
        'CORRUPT',
        `layer ${L}: keep ${keep} / max_size ${maxSize} are inconsistent`,
        { file: ctx.path },
      );
    const { T, keys, values } = await readDense(ctx, L);
    if (idx > T || (idx < offset && idx < keep))
      throw new PromptCacheError('CORRUPT', `layer ${L}: _idx ${idx} does not fit ${T} rows (keep ${keep})`, {
        file: ctx.path,
      });
    const k = rotatingRows(keys.data, W, T, idx, offset, keep, maxSize);
    const v = rotatingRows(values.data, W, T, idx, offset, keep, maxSize);
    if (k.rows !== Math.min(offset, maxSize))
      throw mismatch(
        ctx,
        `layer ${L}: ${k.rows} rows for offset ${offset} (max_size ${maxSize}), expected ${Math.min(offset, maxSize)}`,
      );
    return {
      kind: 'rotating',
      shape,
      offset,
      maxSize,
      keep,
      keys: { format: 'f32', rows: k.rows, data: k.data },
      values: { format: 'f32', rows: v.rows, data: v.data },
    } satisfies LayerState;
  }
  if (cls === 'QuantizedKVCache') {
    const offset = intMeta(ctx, m, `0.${L}.0`, 'offset');
    const groupSize = intMeta(ctx, m, `0.${L}.1`, 'group_size');
    const bits = intMeta(ctx, m, `0.${L}.2`, 'bits');
    if ((bits !== 4 && bits !== 8) || (groupSize !== 32 && groupSize !== 64))
      throw new PromptCacheError(
        'UNSUPPORTED',
        `layer ${L}: ${bits}-bit group-${groupSize} KV quantization is not supported (4/8 bits, groups 32/64)`,
        {
          file: ctx.path,
        },
      );
    if (ctx.D % groupSize !== 0)
      throw mismatch(
        ctx,
        `layer ${L}: the model's head size ${ctx.D} is not a multiple of the group size ${groupSize}`,
      );
    const side = async (i: 0 | 1, what: string): Promise<QuantizedRows> => {
      const p = await readHeadMajor(ctx, `${L}.${i}.0`, 'u32', (ctx.D * bits) / 32, `${what} packed`);
      const s = await readHeadMajor(ctx, `${L}.${i}.1`, 'float', ctx.D / groupSize, `${what} scales`);
      const b = await readHeadMajor(ctx, `${L}.${i}.2`, 'float', ctx.D / groupSize, `${what} biases`);
      if (p.T !== offset || s.T !== offset || b.T !== offset)
        throw mismatch(ctx, `layer ${L} ${what}: ${p.T}/${s.T}/${b.T} rows, but offset is ${offset}`);
      return {
        format: 'quantized',
        rows: offset,
        bits,
        groupSize,
        packed: p.u32!,
        scales: s.f32!,
        biases: b.f32!,
      };
    };
    const keys = await side(0, `layer ${L} keys`);
    const values = await side(1, `layer ${L} values`);
    return { kind: 'quantized', shape, offset, bits, groupSize, start, keys, values } satisfies LayerState;
  }
  throw new PromptCacheError('UNSUPPORTED', `layer ${L} is an mlx-lm ${cls}, which mnemo cannot load`, {
    file: ctx.path,
  });
}

/**
 * Reads a file written by mlx-lm's `save_prompt_cache` (or {@link exportMlxPromptCache}) into caches for a model whose
 * layers have the cache shapes `layers` (kv heads, head size), checking every shape and naming any mismatch. Each
 * layer keeps its class: `KVCache` → standard (f32 rows), `RotatingKVCache` → rotating (its `max_size`, `keep`, rows
 * put back in time order), `QuantizedKVCache` → quantized. mlx files carry no token ids: compare `tokenCount` with
 * the prompt you mean to continue.
 */
export async function importMlxPromptCache(
  path: string,
  opts: ImportMlxOptions,
): Promise<ImportedMlxPromptCache> {
  let file: SafetensorsFile;
  try {
    file = await openSafetensors(path);
  } catch (err) {
    throw safetensorsFailure(path, err);
  }
  const caches: KVCache[] = [];
  try {
    const m = file.metadata;
    const classes: string[] = [];
    while (m[`2.${classes.length}`] !== undefined) classes.push(m[`2.${classes.length}`]!);
    if (classes.length === 0)
      throw new PromptCacheError('UNKNOWN_FORMAT', "not an mlx-lm prompt cache: no '2.0' class-name entry", {
        file: path,
      });
    if (classes.length !== opts.layers.length)
      throw new PromptCacheError(
        'SHAPE_MISMATCH',
        `the file holds ${classes.length} layers, the model has ${opts.layers.length}`,
        {
          file: path,
        },
      );
    const ctx: Ctx = { path, file, H: 0, D: 0, used: new Set() };
    const states: LayerState[] = [];
    for (let L = 0; L < classes.length; L++) {
      ctx.H = opts.layers[L]!.nKvHeads;
      ctx.D = opts.layers[L]!.headDim;
      states.push(await importLayer(ctx, L, classes[L]!, m, opts.quantizedKvStart ?? 0));
    }
    for (const name of file.tensors.keys())
      if (!ctx.used.has(name))
        throw new PromptCacheError('CORRUPT', `unexpected tensor '${name}'`, { file: path });
    const tokenCount = states[0]!.offset;
    states.forEach((s, L) => {
      if (s.offset !== tokenCount)
        throw new PromptCacheError(
          'SHAPE_MISMATCH',
          `layer ${L} holds ${s.offset} tokens, layer 0 ${tokenCount}`,
          { file: path },
        );
    });
    for (const s of states) caches.push(importState(opts.backend, s));
    const metadata: Record<string, string> = {};
    for (const [k, v] of Object.entries(m)) if (k.startsWith('1.')) metadata[k.slice(2)] = v;
    return { caches, tokenCount, metadata, classes };
  } catch (err) {
    freeCaches(caches);
    throw safetensorsFailure(path, err);
  } finally {
    await file.close();
  }
}

function safetensorsFailure(path: string, err: unknown): PromptCacheError {
  if (err instanceof PromptCacheError) return err;
  if (err instanceof SafetensorsError) {
    const code =
      err.code === 'IO'
        ? 'IO'
        : err.code === 'TRUNCATED' || err.code === 'OUT_OF_BOUNDS'
          ? 'TRUNCATED'
          : 'CORRUPT';
    return new PromptCacheError(code, err.detail, { file: path, cause: err });
  }
  return new PromptCacheError('CORRUPT', err instanceof Error ? err.message : String(err), {
    file: path,
    cause: err,
  });
}
