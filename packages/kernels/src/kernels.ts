/// <reference lib="dom" />
// `WebAssembly.*` types live in TypeScript's DOM lib; referencing it here makes them available to every program that
// includes this file (consumers typecheck these sources through the `mnemo-source` condition).
import { Allocator } from './allocator';
import { WASM_BASE64 } from './generated/wasm';
import { GGML_BLOCK_TYPES, type GgmlBlockType, ggmlShape } from './ggml';

/** Storage dtype of dense weights and of quantization scales/biases. Compute is always f32. */
export type WeightDType = 'f32' | 'f16' | 'bf16';

/**
 * One instance of the kernel module: its memory, an allocator over that memory and the kernels. Pointers are byte
 * offsets into `memory`; sizes are element counts unless named `bytes`. Every kernel validates its arguments
 * (integers, sizes, dtypes, and that each range lies inside one live allocation) and throws a `TypeError` or
 * `RangeError` naming the kernel and the argument before touching memory.
 *
 * Memory growth: `alloc` may grow the memory, and so may `matmulQ`, `matmulQ8a` and `attention` the first time they
 * need a larger internal scratch buffer. Growth invalidates typed-array views obtained earlier (`f32()`, `bytes()`,
 * ...): fetch views again after any of these calls. Pointers stay valid.
 */
export interface Kernels {
  readonly memory: WebAssembly.Memory;
  /** A 16-byte aligned block of at least `bytes` bytes (contents unspecified). Grows memory up to 4 GiB. */
  alloc(bytes: number): number;
  /** Releases a block returned by `alloc`; throws on double free or an unknown pointer. */
  free(ptr: number): void;
  /** Bytes requested by live allocations (the kernels' internal scratch excluded). */
  allocatedBytes(): number;
  /** View over the whole memory (cached; refreshed after growth). */
  bytes(): Uint8Array;
  f32(ptr: number, len: number): Float32Array;
  u16(ptr: number, len: number): Uint16Array;
  u32(ptr: number, len: number): Uint32Array;
  i32(ptr: number, len: number): Int32Array;
  u8(ptr: number, len: number): Uint8Array;
  /** `y[rows, outDim] = x[rows, inDim] · w[outDim, inDim]ᵀ (+ bias[outDim])`; x, y, bias f32. */
  matmul(
    y: number,
    x: number,
    w: number,
    rows: number,
    inDim: number,
    outDim: number,
    wDtype: WeightDType,
    bias?: number,
  ): void;
  /**
   * MLX affine-quantized matmul: `packed` uint32 `[outDim, inDim·bits/32]`, `scales`/`biases` `[outDim,
   * inDim/groupSize]` in `scaleDtype`; weight = scale · q + bias.
   */
  matmulQ(
    y: number,
    x: number,
    packed: number,
    scales: number,
    biases: number,
    rows: number,
    inDim: number,
    outDim: number,
    bits: number,
    groupSize: number,
    scaleDtype: WeightDType,
    bias?: number,
  ): void;
  /**
   * Opt-in int8-activation path, step 1 (see the README): quantizes `x` f32 `[rows, dim]` (`dim` a multiple of
   * {@link ACTIVATION_BLOCK}) to int8 in blocks of 32 values. `out` (4-byte aligned) receives
   * {@link quantizedActivationBytes}`(rows, dim)` bytes: per row, `dim` int8 values, then `dim/32` f32 block
   * scales `d = max|x| / 127`, then `dim/32` f32 block sums `d · Σq`; rows back to back (row `r` starts at byte
   * `r · quantizedActivationBytes(1, dim)`). `q = round_half_even(x · 127 / max|x|)`. A block with inf/NaN gets
   * scale and sum NaN; a block with `max|x|` below about 1.5e-36 (all zeros included) is stored as zeros.
   */
  quantizeActivations(out: number, x: number, rows: number, dim: number): void;
  /**
   * Opt-in int8-activation path, step 2: like `matmulQ` (same weight arguments, MLX affine, bits 4 or 8 only;
   * other bits throw a RangeError), but from activations quantized by `quantizeActivations` (`xq`, 4-byte
   * aligned: `rows` rows of `inDim` values; one quantized input serves every weight that reads it, whatever its
   * group size). Integer dot products per 32-value block, then f32 `Σ_g s_g · Σ_b d_b · I_b + Σ_g b_g · X_g`
   * (`X_g` = the group's block sums). Not bit-compatible with `matmulQ` (the activations are rounded to 8 bits);
   * bitwise independent of `rows` and tiling.
   */
  matmulQ8a(
    y: number,
    xq: number,
    packed: number,
    scales: number,
    biases: number,
    rows: number,
    inDim: number,
    outDim: number,
    bits: number,
    groupSize: number,
    scaleDtype: WeightDType,
    bias?: number,
  ): void;
  /** `out[i] = f32(src[i])`, `n` elements. */
  toF32(out: number, src: number, n: number, srcDtype: WeightDType): void;
  /** `out[i, :] = f32(table[ids[i], :])`; `ids` int32 in memory, each in `[0, vocab)`. */
  embedding(
    out: number,
    table: number,
    ids: number,
    nIds: number,
    vocab: number,
    dim: number,
    dtype: WeightDType,
  ): void;
  /** Quantized embedding gather (same layout as `matmulQ` with `[vocab, dim]`). */
  embeddingQ(
    out: number,
    packed: number,
    scales: number,
    biases: number,
    ids: number,
    nIds: number,
    vocab: number,
    dim: number,
    bits: number,
    groupSize: number,
    scaleDtype: WeightDType,
  ): void;
  /**
   * GGML block matmul (exact f32 path): `w` is `outDim` rows of `inDim / blockSize` blocks of `type` (see
   * `GGML_BLOCK_TYPES`), back to back; `y = x · dequant(w)ᵀ (+ bias)`. Bitwise independent of `rows` and tiling.
   */
  ggmlMatmul(
    y: number,
    x: number,
    w: number,
    rows: number,
    inDim: number,
    outDim: number,
    type: GgmlBlockType,
    bias?: number,
  ): void;
  /**
   * GGML block matmul from activations quantized by `quantizeActivations` (the opt-in int8-activation path; every
   * GGML type): integer dot products per sub-block, not bit-compatible with `ggmlMatmul`.
   */
  ggmlMatmulQ8a(
    y: number,
    xq: number,
    w: number,
    rows: number,
    inDim: number,
    outDim: number,
    type: GgmlBlockType,
    bias?: number,
  ): void;
  /** GGML block embedding gather: rows `ids` of a `[vocab, dim]` table of `type`, dequantized to f32. */
  ggmlEmbedding(
    out: number,
    table: number,
    ids: number,
    nIds: number,
    vocab: number,
    dim: number,
    type: GgmlBlockType,
  ): void;
  /** Row-wise `out = x · (1 / sqrt(mean(x²) + eps)) · weight`; `out` may equal `x`. */
  rmsnorm(out: number, x: number, weight: number, rows: number, dim: number, eps: number): void;
  /**
   * In-place rotary embedding of `x` `[rows, nHeads·headDim]` with `cos`/`sin` `[rows, rotDim/2]`. `half`: pairs
   * (i, i + rotDim/2); `pair`: pairs (2i, 2i+1). Dimensions ≥ rotDim are untouched.
   */
  rope(
    x: number,
    cos: number,
    sin: number,
    rows: number,
    nHeads: number,
    headDim: number,
    rotDim: number,
    layout: 'half' | 'pair',
  ): void;
  /** `out = gate / (1 + e^-gate) · up`; `out` may equal an input. */
  swiglu(out: number, gate: number, up: number, n: number): void;
  /**
   * `out = gelu_tanh(gate) · up`, `gelu_tanh(g) = 0.5·g·(1 + tanh(sqrt(2/π)·(g + 0.044715·g³)))` computed as
   * `g / (1 + e^{−2·sqrt(2/π)·(g + 0.044715·g³)})`; `out` may equal an input. −inf → −0, +inf → +inf.
   */
  geluGlu(out: number, gate: number, up: number, n: number): void;
  /** In place `x = cap · tanh(x / cap)` over `n` floats; `cap` finite and > 0. */
  softcap(x: number, n: number, cap: number): void;
  /** `out = x · s` (s rounded to f32 first; one rounding per element); `out` may equal `x`. */
  scale(out: number, x: number, n: number, s: number): void;
  /** `out = a + b`; `out` may equal an input. */
  add(out: number, a: number, b: number, n: number): void;
  /** In-place softmax of each row of `x` `[rows, n]` (max-subtracted). Rows with NaN or all −inf become NaN. */
  softmax(x: number, rows: number, n: number): void;
  /** Index of the first largest of `n` floats; NaNs are never selected; all-NaN gives 0. */
  argmax(x: number, n: number): number;
  /** memmove of `bytes` bytes. */
  copy(dst: number, src: number, bytes: number): void;
  /**
   * Causal GQA. `q`, `out` f32 `[rows, nHeads·headDim]`; `k`, `v` f32 `[capacity, nKvHeads·headDim]` (row j =
   * position j; `capacity ≥ startPos + rows`). Query row r (position p = startPos + r) attends keys
   * `max(0, p − window + 1) ..= p` (window 0 = unlimited) and reads no other cache row. `softcap` > 0 (default 0 =
   * none) replaces each scaled score s by `softcap · tanh(s / softcap)` before the softmax.
   */
  attention(
    out: number,
    q: number,
    k: number,
    v: number,
    rows: number,
    startPos: number,
    nHeads: number,
    nKvHeads: number,
    headDim: number,
    scale: number,
    window: number,
    softcap?: number,
  ): void;
  /**
   * `attention` for the query heads of kv heads `kvHead0 ..< kvHead1` only (query head h belongs to kv head
   * `h / (nHeads / nKvHeads)`); strides are those of the full tensors and other heads' output columns are not
   * written. Each head's output is bitwise the same as from `attention`, whatever the range.
   */
  attentionHeads(
    out: number,
    q: number,
    k: number,
    v: number,
    rows: number,
    startPos: number,
    nHeads: number,
    nKvHeads: number,
    headDim: number,
    scale: number,
    window: number,
    kvHead0: number,
    kvHead1: number,
    softcap?: number,
  ): void;
  /**
   * Causal GQA over KV-cache storage (see {@link KvAttention}): `q`, `out` f32 `[rows, nHeads·headDim]`; `k`, `v`
   * `capacity` rows of `nKvHeads·headDim` values in `a.format`, position j in row `j` when `j < keep` or
   * `j < capacity`, else `keep + (j − keep) mod (capacity − keep)`. Query row r (position p = startPos + r) sees
   * positions `j <= p` with `p − j < window` (window 0 = all) or `j < keep`, keys in ascending position order;
   * quantized and f16 rows are converted to f32 first (quantized: `fl(fl(scale·q) + bias)`), so the output is
   * bitwise that of f32 storage holding those values. Only the query heads of kv heads `kvHead0 ..< kvHead1`
   * (default all) are computed; every head's output is bitwise the same whatever the range.
   */
  attentionKv(
    out: number,
    q: number,
    k: KvPtrs,
    v: KvPtrs,
    a: KvAttention,
    kvHead0?: number,
    kvHead1?: number,
  ): void;
  /**
   * Writes `a.rows` f32 rows of `a.width` from `src` into KV storage `dst` (layout as in `attentionKv`), row r at
   * the row of position `startPos + r`: f32 copied, f16 rounded to nearest even, quantized per group of the row
   * (`scale = (max − min) / (2^bits − 1)` in f32, `bias = min`, codes `round_half_even((x − bias) / scale)` in f64,
   * clamped; as `quantize` of `@mnemo/tensor`). Positions `>= keep` written may number at most `capacity − keep`.
   */
  writeKv(dst: KvPtrs, src: number, a: KvWrite): void;
}

/** Storage formats of KV rows: f32, f16, MLX affine 4-bit / 8-bit with f32 scales and biases. */
export type KvFormat = 'f32' | 'f16' | 'q4' | 'q8';

/** Where one side (keys or values) of KV storage lives: `data` rows (f32/f16, or packed u32 words), scales, biases. */
export interface KvPtrs {
  readonly data: number;
  /** Quantized formats: f32 `[capacity, width / groupSize]`; ignored otherwise (pass 0). */
  readonly scales: number;
  readonly biases: number;
}

/** The layout of KV storage: rows, pinned rows, format and (quantized) group size. */
export interface KvLayout {
  readonly capacity: number;
  /** Leading positions pinned in rows `0 .. keep − 1` (and always visible to attention). */
  readonly keep: number;
  readonly format: KvFormat;
  /** Quantized formats: 32 or 64; ignored otherwise. */
  readonly groupSize: number;
}

/** Shape and layout arguments of `attentionKv`. */
export interface KvAttention extends KvLayout {
  readonly rows: number;
  readonly startPos: number;
  readonly nHeads: number;
  readonly nKvHeads: number;
  readonly headDim: number;
  readonly scale: number;
  /** 0 = unlimited. */
  readonly window: number;
  /** > 0 replaces each scaled score s by `softcap · tanh(s / softcap)` before the softmax; 0 or absent = none. */
  readonly softcap?: number;
}

/** Shape and layout arguments of `writeKv`. */
export interface KvWrite extends KvLayout {
  readonly rows: number;
  readonly startPos: number;
  /** Values per row. */
  readonly width: number;
}

const KV_FORMAT_CODE: Readonly<Record<KvFormat, number>> = { f32: 0, f16: 1, q4: 4, q8: 8 };

/** Argument names of one KV storage's parts in error messages (constants: no string is built per call). */
export type KvNames = readonly [data: string, scales: string, biases: string];
export const K_NAMES: KvNames = ['k', 'k scales', 'k biases'];
export const V_NAMES: KvNames = ['v', 'v scales', 'v biases'];
const DST_NAMES: KvNames = ['dst', 'dst scales', 'dst biases'];

/** Validated sizes of KV storage: format code, bytes of its `data` and of its scales (= biases). Filled in place. */
export interface KvBytes {
  code: number;
  dataBytes: number;
  groupBytes: number;
}

/** Validated attentionKv sizes: those of the storage, of q/out and of the scratch the call needs. Filled in place. */
export interface KvAttentionBytes extends KvBytes {
  qBytes: number;
  scratchBytes: number;
}

/** A fresh {@link KvAttentionBytes} to fill. */
export function kvBytes(): KvAttentionBytes {
  return { code: 0, dataBytes: 0, groupBytes: 0, qBytes: 0, scratchBytes: 0 };
}

/**
 * Validates a KV layout for `capacity` rows of `width` values and fills `out` with its sizes; throws like the
 * kernels. Allocates nothing unless it throws.
 */
export function kvLayoutBytes(fn: string, l: KvLayout, width: number, out: KvBytes): KvBytes {
  if (typeof l !== 'object' || l === null) throw new TypeError(`${fn}: missing KV layout`);
  const code =
    typeof l.format === 'string' && Object.hasOwn(KV_FORMAT_CODE, l.format)
      ? KV_FORMAT_CODE[l.format]
      : undefined;
  if (code === undefined)
    throw new TypeError(`${fn}: format must be 'f32', 'f16', 'q4' or 'q8', got ${describe(l.format)}`);
  checkInt(fn, 'capacity', l.capacity);
  checkInt(fn, 'keep', l.keep, 0);
  if (l.keep > l.capacity) throw new RangeError(`${fn}: keep (${l.keep}) exceeds capacity (${l.capacity})`);
  // sizes by multiplications and shifts only: a division would store a heap number in `out`, and reading it back
  // for a call would box a new one per call
  out.code = code;
  if (code < 4) {
    out.dataBytes = l.capacity * width * (code === 0 ? 4 : 2);
    out.groupBytes = 0;
    return out;
  }
  if (l.groupSize !== 32 && l.groupSize !== 64)
    throw new RangeError(`${fn}: groupSize must be 32 or 64, got ${describe(l.groupSize)}`);
  if (width % l.groupSize !== 0)
    throw new RangeError(`${fn}: row width (${width}) must be a multiple of groupSize (${l.groupSize})`);
  out.dataBytes = l.capacity * ((width * code) >> 3);
  out.groupBytes = l.capacity * (width >> (l.groupSize === 32 ? 5 : 6)) * 4;
  return out;
}

/**
 * Validates the arguments of `attentionKv` (`fn` names the kernel in errors), including that the storage still holds
 * every position the queries see, and fills `out` with the byte sizes. Allocates nothing unless it throws.
 */
export function kvAttentionShape(
  fn: string,
  a: KvAttention,
  kvHead0: number,
  kvHead1: number,
  out: KvAttentionBytes,
): KvAttentionBytes {
  if (typeof a !== 'object' || a === null) throw new TypeError(`${fn}: missing arguments`);
  // The float arguments are checked here, read off `a`, and never passed on to a function: where V8 does not inline
  // that call (a call site that has seen several storage formats), passing one would box a new number per call.
  const scale = a.scale;
  if (typeof scale !== 'number' || !Number.isFinite(scale))
    throw new TypeError(`${fn}: scale must be a finite number, got ${describe(scale)}`);
  const softcap = a.softcap;
  if (softcap !== undefined && (typeof softcap !== 'number' || !(softcap >= 0) || !Number.isFinite(softcap)))
    checkSoftcap(fn, softcap, true); // throws, naming the problem
  checkAttentionArgs(fn, a.rows, a.startPos, a.nHeads, a.nKvHeads, a.headDim, 1, a.window, kvHead0, kvHead1);
  kvLayoutBytes(fn, a, a.nKvHeads * a.headDim, out);
  if (out.code >= 4 && a.headDim % 8 !== 0)
    throw new RangeError(`${fn}: quantized rows need headDim to be a multiple of 8, got ${a.headDim}`);
  const last = a.startPos + a.rows - 1;
  const lo = Math.max(a.keep, a.window > 0 ? a.startPos - a.window + 1 : 0);
  if (lo <= last && last - lo >= a.capacity - a.keep)
    throw new RangeError(
      `${fn}: ${a.capacity} rows (keep ${a.keep}) cannot hold positions ${lo}..${last}, which the queries see`,
    );
  out.qBytes = a.rows * a.nHeads * a.headDim * 4;
  out.scratchBytes = kvScratchBytes(
    a.rows,
    a.startPos,
    (kvHead1 - kvHead0) * (a.nHeads / a.nKvHeads),
    a.headDim,
    a.window,
    a.keep,
  );
  return out;
}

/** Keys per tile of the value pass (`VT` in rust/src/attention.rs). */
const VALUE_TILE = 16;

/** Mirrors `scratch_bytes` in rust/src/attention.rs (in exact arithmetic: no u32 wrap-around). */
function kvScratchBytes(
  rows: number,
  startPos: number,
  heads: number,
  headDim: number,
  window: number,
  keep: number,
): number {
  const last = startPos + rows;
  const lmax = window > 0 ? Math.min(window + keep, last) : last;
  const lines = Math.floor((lmax + 15) / 16);
  const stride = 16 * (lines + 1 - (lines % 2));
  const hdp = headDim + ((4 - (headDim % 4)) % 4);
  return 4 * (4 + heads * (stride + hdp + 1) + hdp * (1 + VALUE_TILE)) + 16;
}

/** Scratch bytes `attentionKv` needs for the query heads of kv heads `kvHead0 ..< kvHead1` (default: all). */
export function attentionKvScratchBytes(a: KvAttention, kvHead0 = 0, kvHead1: number = a.nKvHeads): number {
  return kvAttentionShape('attentionKvScratchBytes', a, kvHead0, kvHead1, kvBytes()).scratchBytes;
}

/** The raw exports of `mnemo_kernels.wasm` (the shared build imports its memory instead of exporting it). */
export interface Exports {
  readonly memory?: WebAssembly.Memory;
  readonly __heap_base: WebAssembly.Global;
  mk_matmul(
    y: number,
    x: number,
    w: number,
    bias: number,
    rows: number,
    n: number,
    m: number,
    dt: number,
  ): void;
  mk_matmul_q(
    y: number,
    x: number,
    packed: number,
    scales: number,
    biases: number,
    bias: number,
    rows: number,
    n: number,
    m: number,
    bits: number,
    gs: number,
    sdt: number,
    scratch: number,
  ): void;
  mk_matmul_q_scratch(rows: number, n: number, gs: number): number;
  mk_quantize_act(out: number, x: number, rows: number, n: number): void;
  mk_matmul_q8a(
    y: number,
    xq: number,
    packed: number,
    scales: number,
    biases: number,
    bias: number,
    rows: number,
    n: number,
    m: number,
    bits: number,
    gs: number,
    sdt: number,
    scratch: number,
  ): void;
  mk_matmul_q8a_scratch(rows: number, n: number, gs: number): number;
  mk_ggml_matmul(
    y: number,
    x: number,
    w: number,
    bias: number,
    rows: number,
    n: number,
    m: number,
    ty: number,
    scratch: number,
  ): void;
  mk_ggml_matmul_scratch(ty: number, rows: number, n: number): number;
  mk_ggml_matmul_q8a(
    y: number,
    xq: number,
    w: number,
    bias: number,
    rows: number,
    n: number,
    m: number,
    ty: number,
    scratch: number,
  ): void;
  mk_ggml_matmul_q8a_scratch(ty: number, rows: number, n: number): number;
  mk_ggml_embedding(out: number, table: number, ids: number, nIds: number, dim: number, ty: number): void;
  mk_to_f32(out: number, src: number, n: number, dt: number): void;
  mk_embedding(out: number, table: number, ids: number, nIds: number, dim: number, dt: number): void;
  mk_embedding_q(
    out: number,
    packed: number,
    scales: number,
    biases: number,
    ids: number,
    nIds: number,
    dim: number,
    bits: number,
    gs: number,
    sdt: number,
  ): void;
  mk_rmsnorm(out: number, x: number, w: number, rows: number, dim: number, eps: number): void;
  mk_rope(
    x: number,
    cos: number,
    sin: number,
    rows: number,
    nh: number,
    hd: number,
    rot: number,
    layout: number,
  ): void;
  mk_swiglu(out: number, gate: number, up: number, n: number): void;
  mk_gelu_glu(out: number, gate: number, up: number, n: number): void;
  mk_softcap(x: number, n: number, cap: number): void;
  mk_scale(out: number, x: number, n: number, s: number): void;
  mk_add(out: number, a: number, b: number, n: number): void;
  mk_softmax(x: number, rows: number, n: number): void;
  mk_argmax(x: number, n: number): number;
  mk_copy(dst: number, src: number, bytes: number): void;
  mk_attention(
    out: number,
    q: number,
    k: number,
    v: number,
    rows: number,
    start: number,
    nh: number,
    nkv: number,
    hd: number,
    scale: number,
    window: number,
    scratch: number,
    cap: number,
  ): void;
  mk_attention_scratch(
    rows: number,
    start: number,
    nh: number,
    nkv: number,
    hd: number,
    window: number,
  ): number;
  mk_attention_heads(
    out: number,
    q: number,
    k: number,
    v: number,
    rows: number,
    start: number,
    nh: number,
    nkv: number,
    hd: number,
    scale: number,
    window: number,
    kv0: number,
    kv1: number,
    scratch: number,
    cap: number,
  ): void;
  mk_attention_heads_scratch(
    rows: number,
    start: number,
    nh: number,
    nkv: number,
    hd: number,
    window: number,
    kv0: number,
    kv1: number,
  ): number;
  mk_attention_kv(
    out: number,
    q: number,
    kd: number,
    ks: number,
    kb: number,
    vd: number,
    vs: number,
    vb: number,
    rows: number,
    start: number,
    nh: number,
    nkv: number,
    hd: number,
    window: number,
    keep: number,
    capacity: number,
    fmt: number,
    gs: number,
    kv0: number,
    kv1: number,
    /** Its first two floats are the scale and the soft-cap (set by the caller). */
    scratch: number,
  ): void;
  mk_kv_write(
    dd: number,
    ds: number,
    db: number,
    src: number,
    rows: number,
    start: number,
    width: number,
    keep: number,
    cap: number,
    fmt: number,
    gs: number,
  ): void;
}

const DTYPE_CODE: Readonly<Record<WeightDType, number>> = { f32: 0, f16: 1, bf16: 2 };
const DTYPE_SIZE: Readonly<Record<WeightDType, number>> = { f32: 4, f16: 2, bf16: 2 };
const BITS = [2, 3, 4, 5, 6, 8] as const;
const GROUP_SIZES = [32, 64, 128] as const;
/** Largest size argument: every size is a u32 in wasm. */
const MAX_U32 = 2 ** 32 - 1;

/** Values per scale in quantized activations (`quantizeActivations`); every weight group size is a multiple. */
export const ACTIVATION_BLOCK = 32;

/**
 * Bytes `quantizeActivations` writes for `rows` rows of `dim` values: `rows · (dim + 8 · dim/32)` (int8 values,
 * then f32 scales and f32 sums, per row). Throws like the kernels on invalid sizes.
 */
export function quantizedActivationBytes(rows: number, dim: number): number {
  const k = 'quantizedActivationBytes';
  checkInt(k, 'rows', rows);
  checkInt(k, 'dim', dim);
  if (dim % ACTIVATION_BLOCK !== 0) {
    throw new RangeError(`${k}: dim (${dim}) must be a multiple of ${ACTIVATION_BLOCK}`);
  }
  return actRowBytes(dim) * rows;
}

/** An integer in `[min, 2^32)`, else TypeError (not an integer) / RangeError (out of range). */
export function checkInt(fn: string, name: string, v: number, min = 1): number {
  if (typeof v !== 'number' || !Number.isInteger(v)) {
    throw new TypeError(`${fn}: ${name} must be an integer, got ${describe(v)}`);
  }
  if (v < min || v > MAX_U32)
    throw new RangeError(`${fn}: ${name} must be in [${min}, ${MAX_U32}], got ${v}`);
  return v;
}

/** Throws a RangeError when `[a, a + aBytes)` and `[b, b + bBytes)` overlap. */
export function checkDisjoint(
  fn: string,
  an: string,
  a: number,
  aBytes: number,
  bn: string,
  b: number,
  bBytes: number,
): void {
  if (a < b + bBytes && b < a + aBytes) {
    throw new RangeError(
      `${fn}: ${an} [${a}, ${a + aBytes}) overlaps ${bn} [${b}, ${b + bBytes}); use separate buffers`,
    );
  }
}

/**
 * A soft-cap must be a finite number > 0 (or exactly 0 = none, where `zeroMeansNone`); else TypeError (not a
 * number) / RangeError.
 */
export function checkSoftcap(fn: string, cap: number, zeroMeansNone: boolean): void {
  if (typeof cap !== 'number' || Number.isNaN(cap)) {
    throw new TypeError(`${fn}: softcap must be a number, got ${describe(cap)}`);
  }
  if (!Number.isFinite(cap) || cap < 0 || (cap === 0 && !zeroMeansNone)) {
    throw new RangeError(
      `${fn}: softcap must be a finite number > 0${zeroMeansNone ? ' (or 0 for none)' : ''}, got ${cap}`,
    );
  }
}

/** Validated attention sizes: byte lengths of q/out and of the k/v rows read, and the scratch the call needs. */
export interface AttentionShape {
  qBytes: number;
  kvBytes: number;
  scratchBytes: number;
}

/**
 * Validates the shape arguments of `attention` / `attentionHeads` (`fn` names the kernel in errors) and returns
 * the byte sizes, in `out` when given (so that a hot caller allocates nothing). `kvHead0`/`kvHead1` default to the
 * full range.
 */
export function attentionShape(
  fn: string,
  rows: number,
  startPos: number,
  nHeads: number,
  nKvHeads: number,
  headDim: number,
  scale: number,
  window: number,
  kvHead0 = 0,
  kvHead1: number = nKvHeads,
  out?: AttentionShape,
): AttentionShape {
  checkAttentionArgs(fn, rows, startPos, nHeads, nKvHeads, headDim, scale, window, kvHead0, kvHead1);
  const last = startPos + rows;
  const heads = (kvHead1 - kvHead0) * (nHeads / nKvHeads);
  const res = out ?? { qBytes: 0, kvBytes: 0, scratchBytes: 0 };
  res.qBytes = rows * nHeads * headDim * 4;
  res.kvBytes = last * nKvHeads * headDim * 4;
  res.scratchBytes = kvScratchBytes(rows, startPos, heads, headDim, window, 0);
  return res;
}

/** The shape checks of `attention` / `attentionHeads` / `attentionKv` (allocates nothing unless it throws). */
function checkAttentionArgs(
  fn: string,
  rows: number,
  startPos: number,
  nHeads: number,
  nKvHeads: number,
  headDim: number,
  scale: number,
  window: number,
  kvHead0: number,
  kvHead1: number,
): void {
  checkInt(fn, 'rows', rows);
  checkInt(fn, 'startPos', startPos, 0);
  checkInt(fn, 'nHeads', nHeads);
  checkInt(fn, 'nKvHeads', nKvHeads);
  checkInt(fn, 'headDim', headDim);
  checkInt(fn, 'window', window, 0);
  if (nHeads % nKvHeads !== 0) {
    throw new RangeError(`${fn}: nHeads (${nHeads}) must be a multiple of nKvHeads (${nKvHeads})`);
  }
  if (typeof scale !== 'number' || !Number.isFinite(scale)) {
    throw new TypeError(`${fn}: scale must be a finite number, got ${describe(scale)}`);
  }
  checkInt(fn, 'kvHead0', kvHead0, 0);
  checkInt(fn, 'kvHead1', kvHead1);
  if (kvHead0 >= kvHead1 || kvHead1 > nKvHeads) {
    throw new RangeError(
      `${fn}: kv head range [${kvHead0}, ${kvHead1}) must be non-empty and inside [0, ${nKvHeads})`,
    );
  }
}

/**
 * Scratch bytes `attentionHeads` needs for the query heads of kv heads `kvHead0 ..< kvHead1` (default: all, i.e.
 * `attention`). Throws like the kernels on invalid shapes.
 */
export function attentionScratchBytes(
  rows: number,
  startPos: number,
  nHeads: number,
  nKvHeads: number,
  headDim: number,
  window: number,
  kvHead0 = 0,
  kvHead1: number = nKvHeads,
): number {
  return attentionShape(
    'attentionScratchBytes',
    rows,
    startPos,
    nHeads,
    nKvHeads,
    headDim,
    1,
    window,
    kvHead0,
    kvHead1,
  ).scratchBytes;
}

function actRowBytes(dim: number): number {
  return dim + 8 * (dim / ACTIVATION_BLOCK);
}

export function decodeBase64(s: string): Uint8Array {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

let compiled: Promise<WebAssembly.Module> | undefined;

/** The embedded kernel module's bytes. */
export function kernelsWasmBytes(): Uint8Array {
  return decodeBase64(WASM_BASE64);
}

/** Compiles the embedded module (once per process) and returns a fresh instance with its own memory. */
export async function loadKernels(): Promise<Kernels> {
  compiled ??= WebAssembly.compile(kernelsWasmBytes() as BufferSource);
  const instance = await WebAssembly.instantiate(await compiled, {});
  const exports = instance.exports as unknown as Exports;
  return new WasmKernels(exports, exports.memory!);
}

export function describe(v: unknown): string {
  return typeof v === 'string' ? JSON.stringify(v) : String(v);
}

/** `Kernels` over one instance's exports and its memory (exported by the private build, imported by the shared). */
export class WasmKernels implements Kernels {
  readonly memory: WebAssembly.Memory;
  private readonly heap: Allocator;
  private readonly x: Exports;
  private buf: ArrayBuffer;
  private u8All: Uint8Array;
  private i32All: Int32Array;
  private f32All: Float32Array;
  private scratchPtr = 0;
  private scratchBytes = 0;

  constructor(exports: Exports, memory: WebAssembly.Memory) {
    this.x = exports;
    this.memory = memory;
    this.heap = new Allocator(this.memory, Number(exports.__heap_base.value));
    this.buf = this.memory.buffer;
    this.u8All = new Uint8Array(this.buf);
    this.i32All = new Int32Array(this.buf, 0, Math.floor(this.buf.byteLength / 4));
    this.f32All = new Float32Array(this.buf, 0, Math.floor(this.buf.byteLength / 4));
  }

  // ---- memory -------------------------------------------------------------------------------------------------

  alloc(bytes: number): number {
    return this.heap.alloc(bytes);
  }

  free(ptr: number): void {
    if (this.scratchBytes > 0 && ptr === this.scratchPtr) {
      throw new Error(`free: ${ptr} is not a live allocation (double free or unknown pointer)`);
    }
    this.heap.free(ptr);
  }

  allocatedBytes(): number {
    return this.heap.allocatedBytes() - this.scratchBytes;
  }

  bytes(): Uint8Array {
    this.refresh();
    return this.u8All;
  }

  f32(ptr: number, len: number): Float32Array {
    this.viewArgs('f32', ptr, len, 4);
    return new Float32Array(this.memory.buffer, ptr, len);
  }

  u16(ptr: number, len: number): Uint16Array {
    this.viewArgs('u16', ptr, len, 2);
    return new Uint16Array(this.memory.buffer, ptr, len);
  }

  u32(ptr: number, len: number): Uint32Array {
    this.viewArgs('u32', ptr, len, 4);
    return new Uint32Array(this.memory.buffer, ptr, len);
  }

  i32(ptr: number, len: number): Int32Array {
    this.viewArgs('i32', ptr, len, 4);
    return new Int32Array(this.memory.buffer, ptr, len);
  }

  u8(ptr: number, len: number): Uint8Array {
    this.viewArgs('u8', ptr, len, 1);
    return new Uint8Array(this.memory.buffer, ptr, len);
  }

  // ---- kernels ------------------------------------------------------------------------------------------------

  matmul(
    y: number,
    x: number,
    w: number,
    rows: number,
    inDim: number,
    outDim: number,
    wDtype: WeightDType,
    bias?: number,
  ): void {
    const k = 'matmul';
    rows = this.int(k, 'rows', rows);
    inDim = this.int(k, 'inDim', inDim);
    outDim = this.int(k, 'outDim', outDim);
    const dt = this.dtype(k, 'wDtype', wDtype);
    const es = DTYPE_SIZE[wDtype];
    this.range(k, 'x', x, rows * inDim * 4, 4);
    this.range(k, 'w', w, outDim * inDim * es, es);
    this.range(k, 'y', y, rows * outDim * 4, 4);
    this.disjoint(k, 'y', y, rows * outDim * 4, 'x', x, rows * inDim * 4);
    this.disjoint(k, 'y', y, rows * outDim * 4, 'w', w, outDim * inDim * es);
    if (bias !== undefined) {
      this.range(k, 'bias', bias, outDim * 4, 4);
      this.disjoint(k, 'y', y, rows * outDim * 4, 'bias', bias, outDim * 4);
    }
    this.x.mk_matmul(y, x, w, bias ?? 0, rows, inDim, outDim, dt);
  }

  matmulQ(
    y: number,
    x: number,
    packed: number,
    scales: number,
    biases: number,
    rows: number,
    inDim: number,
    outDim: number,
    bits: number,
    groupSize: number,
    scaleDtype: WeightDType,
    bias?: number,
  ): void {
    const k = 'matmulQ';
    rows = this.int(k, 'rows', rows);
    inDim = this.int(k, 'inDim', inDim);
    outDim = this.int(k, 'outDim', outDim);
    const q = this.quant(k, 'inDim', inDim, bits, groupSize, scaleDtype);
    const packedBytes = outDim * q.wordsPerRow * 4;
    const groupBytes = outDim * q.groups * q.es;
    const yBytes = rows * outDim * 4;
    this.range(k, 'x', x, rows * inDim * 4, 4);
    this.range(k, 'packed', packed, packedBytes, 4);
    this.range(k, 'scales', scales, groupBytes, q.es);
    this.range(k, 'biases', biases, groupBytes, q.es);
    this.range(k, 'y', y, yBytes, 4);
    this.disjoint(k, 'y', y, yBytes, 'x', x, rows * inDim * 4);
    this.disjoint(k, 'y', y, yBytes, 'packed', packed, packedBytes);
    this.disjoint(k, 'y', y, yBytes, 'scales', scales, groupBytes);
    this.disjoint(k, 'y', y, yBytes, 'biases', biases, groupBytes);
    if (bias !== undefined) {
      this.range(k, 'bias', bias, outDim * 4, 4);
      this.disjoint(k, 'y', y, yBytes, 'bias', bias, outDim * 4);
    }
    const scratch = this.scratch(this.x.mk_matmul_q_scratch(rows, inDim, groupSize));
    this.x.mk_matmul_q(
      y,
      x,
      packed,
      scales,
      biases,
      bias ?? 0,
      rows,
      inDim,
      outDim,
      bits,
      groupSize,
      q.code,
      scratch,
    );
  }

  quantizeActivations(out: number, x: number, rows: number, dim: number): void {
    const k = 'quantizeActivations';
    rows = this.int(k, 'rows', rows);
    dim = this.int(k, 'dim', dim);
    if (dim % ACTIVATION_BLOCK !== 0) {
      throw new RangeError(`${k}: dim (${dim}) must be a multiple of ${ACTIVATION_BLOCK}`);
    }
    const xBytes = rows * dim * 4;
    const outBytes = rows * actRowBytes(dim);
    this.range(k, 'x', x, xBytes, 4);
    this.range(k, 'out', out, outBytes, 4);
    this.disjoint(k, 'out', out, outBytes, 'x', x, xBytes);
    this.x.mk_quantize_act(out, x, rows, dim);
  }

  matmulQ8a(
    y: number,
    xq: number,
    packed: number,
    scales: number,
    biases: number,
    rows: number,
    inDim: number,
    outDim: number,
    bits: number,
    groupSize: number,
    scaleDtype: WeightDType,
    bias?: number,
  ): void {
    const k = 'matmulQ8a';
    rows = this.int(k, 'rows', rows);
    inDim = this.int(k, 'inDim', inDim);
    outDim = this.int(k, 'outDim', outDim);
    const q = this.quant(k, 'inDim', inDim, bits, groupSize, scaleDtype);
    if (bits !== 4 && bits !== 8) {
      throw new RangeError(
        `${k}: bits ${bits} is not supported by the int8-activation path (4 and 8 are); use matmulQ`,
      );
    }
    const xqBytes = rows * actRowBytes(inDim);
    const packedBytes = outDim * q.wordsPerRow * 4;
    const groupBytes = outDim * q.groups * q.es;
    const yBytes = rows * outDim * 4;
    this.range(k, 'xq', xq, xqBytes, 4);
    this.range(k, 'packed', packed, packedBytes, 4);
    this.range(k, 'scales', scales, groupBytes, q.es);
    this.range(k, 'biases', biases, groupBytes, q.es);
    this.range(k, 'y', y, yBytes, 4);
    this.disjoint(k, 'y', y, yBytes, 'xq', xq, xqBytes);
    this.disjoint(k, 'y', y, yBytes, 'packed', packed, packedBytes);
    this.disjoint(k, 'y', y, yBytes, 'scales', scales, groupBytes);
    this.disjoint(k, 'y', y, yBytes, 'biases', biases, groupBytes);
    if (bias !== undefined) {
      this.range(k, 'bias', bias, outDim * 4, 4);
      this.disjoint(k, 'y', y, yBytes, 'bias', bias, outDim * 4);
    }
    const code = q.code;
    const scratch = this.scratch(this.x.mk_matmul_q8a_scratch(rows, inDim, groupSize));
    this.x.mk_matmul_q8a(
      y,
      xq,
      packed,
      scales,
      biases,
      bias ?? 0,
      rows,
      inDim,
      outDim,
      bits,
      groupSize,
      code,
      scratch,
    );
  }

  ggmlMatmul(
    y: number,
    x: number,
    w: number,
    rows: number,
    inDim: number,
    outDim: number,
    type: GgmlBlockType,
    bias?: number,
  ): void {
    this.ggmlCall('ggmlMatmul', y, x, w, rows, inDim, outDim, type, bias);
  }

  ggmlMatmulQ8a(
    y: number,
    xq: number,
    w: number,
    rows: number,
    inDim: number,
    outDim: number,
    type: GgmlBlockType,
    bias?: number,
  ): void {
    this.ggmlCall('ggmlMatmulQ8a', y, xq, w, rows, inDim, outDim, type, bias);
  }

  /** Shared checks and call of the two GGML matmuls (`x`: the input, or its int8 rounding for ggmlMatmulQ8a). */
  private ggmlCall(
    k: 'ggmlMatmul' | 'ggmlMatmulQ8a',
    y: number,
    x: number,
    w: number,
    rows: number,
    inDim: number,
    outDim: number,
    type: GgmlBlockType,
    bias: number | undefined,
  ): void {
    rows = this.int(k, 'rows', rows);
    inDim = this.int(k, 'inDim', inDim);
    outDim = this.int(k, 'outDim', outDim);
    const wBytes = outDim * ggmlShape(k, 'inDim', inDim, type);
    const yBytes = rows * outDim * 4;
    const xBytes = k === 'ggmlMatmul' ? rows * inDim * 4 : rows * actRowBytes(inDim);
    this.range(k, k === 'ggmlMatmul' ? 'x' : 'xq', x, xBytes, 4);
    this.range(k, 'w', w, wBytes, 1);
    this.range(k, 'y', y, yBytes, 4);
    this.disjoint(k, 'y', y, yBytes, 'x', x, xBytes);
    this.disjoint(k, 'y', y, yBytes, 'w', w, wBytes);
    if (bias !== undefined) {
      this.range(k, 'bias', bias, outDim * 4, 4);
      this.disjoint(k, 'y', y, yBytes, 'bias', bias, outDim * 4);
    }
    const id = GGML_BLOCK_TYPES[type].id;
    if (k === 'ggmlMatmul') {
      const scratch = this.scratch(this.x.mk_ggml_matmul_scratch(id, rows, inDim));
      this.x.mk_ggml_matmul(y, x, w, bias ?? 0, rows, inDim, outDim, id, scratch);
    } else {
      const scratch = this.scratch(this.x.mk_ggml_matmul_q8a_scratch(id, rows, inDim));
      this.x.mk_ggml_matmul_q8a(y, x, w, bias ?? 0, rows, inDim, outDim, id, scratch);
    }
  }

  ggmlEmbedding(
    out: number,
    table: number,
    ids: number,
    nIds: number,
    vocab: number,
    dim: number,
    type: GgmlBlockType,
  ): void {
    const k = 'ggmlEmbedding';
    nIds = this.int(k, 'nIds', nIds);
    vocab = this.int(k, 'vocab', vocab);
    dim = this.int(k, 'dim', dim);
    const tableBytes = vocab * ggmlShape(k, 'dim', dim, type);
    const outBytes = nIds * dim * 4;
    this.range(k, 'table', table, tableBytes, 1);
    this.range(k, 'ids', ids, nIds * 4, 4);
    this.range(k, 'out', out, outBytes, 4);
    this.disjoint(k, 'out', out, outBytes, 'table', table, tableBytes);
    this.disjoint(k, 'out', out, outBytes, 'ids', ids, nIds * 4);
    this.ids(k, ids, nIds, vocab);
    this.x.mk_ggml_embedding(out, table, ids, nIds, dim, GGML_BLOCK_TYPES[type].id);
  }

  toF32(out: number, src: number, n: number, srcDtype: WeightDType): void {
    const k = 'toF32';
    n = this.int(k, 'n', n);
    const dt = this.dtype(k, 'srcDtype', srcDtype);
    const es = DTYPE_SIZE[srcDtype];
    this.range(k, 'src', src, n * es, es);
    this.range(k, 'out', out, n * 4, 4);
    if (!(srcDtype === 'f32' && out === src)) this.disjoint(k, 'out', out, n * 4, 'src', src, n * es);
    this.x.mk_to_f32(out, src, n, dt);
  }

  embedding(
    out: number,
    table: number,
    ids: number,
    nIds: number,
    vocab: number,
    dim: number,
    dtype: WeightDType,
  ): void {
    const k = 'embedding';
    nIds = this.int(k, 'nIds', nIds);
    vocab = this.int(k, 'vocab', vocab);
    dim = this.int(k, 'dim', dim);
    const dt = this.dtype(k, 'dtype', dtype);
    const es = DTYPE_SIZE[dtype];
    this.range(k, 'table', table, vocab * dim * es, es);
    this.range(k, 'ids', ids, nIds * 4, 4);
    this.range(k, 'out', out, nIds * dim * 4, 4);
    this.disjoint(k, 'out', out, nIds * dim * 4, 'table', table, vocab * dim * es);
    this.disjoint(k, 'out', out, nIds * dim * 4, 'ids', ids, nIds * 4);
    this.ids(k, ids, nIds, vocab);
    this.x.mk_embedding(out, table, ids, nIds, dim, dt);
  }

  embeddingQ(
    out: number,
    packed: number,
    scales: number,
    biases: number,
    ids: number,
    nIds: number,
    vocab: number,
    dim: number,
    bits: number,
    groupSize: number,
    scaleDtype: WeightDType,
  ): void {
    const k = 'embeddingQ';
    nIds = this.int(k, 'nIds', nIds);
    vocab = this.int(k, 'vocab', vocab);
    dim = this.int(k, 'dim', dim);
    const q = this.quant(k, 'dim', dim, bits, groupSize, scaleDtype);
    const packedBytes = vocab * q.wordsPerRow * 4;
    const groupBytes = vocab * q.groups * q.es;
    const outBytes = nIds * dim * 4;
    this.range(k, 'packed', packed, packedBytes, 4);
    this.range(k, 'scales', scales, groupBytes, q.es);
    this.range(k, 'biases', biases, groupBytes, q.es);
    this.range(k, 'ids', ids, nIds * 4, 4);
    this.range(k, 'out', out, outBytes, 4);
    this.disjoint(k, 'out', out, outBytes, 'packed', packed, packedBytes);
    this.disjoint(k, 'out', out, outBytes, 'scales', scales, groupBytes);
    this.disjoint(k, 'out', out, outBytes, 'biases', biases, groupBytes);
    this.disjoint(k, 'out', out, outBytes, 'ids', ids, nIds * 4);
    this.ids(k, ids, nIds, vocab);
    this.x.mk_embedding_q(out, packed, scales, biases, ids, nIds, dim, bits, groupSize, q.code);
  }

  rmsnorm(out: number, x: number, weight: number, rows: number, dim: number, eps: number): void {
    const k = 'rmsnorm';
    rows = this.int(k, 'rows', rows);
    dim = this.int(k, 'dim', dim);
    if (typeof eps !== 'number' || !Number.isFinite(eps) || eps < 0) {
      throw new RangeError(`${k}: eps must be a finite number >= 0, got ${describe(eps)}`);
    }
    const bytes = rows * dim * 4;
    this.range(k, 'x', x, bytes, 4);
    this.range(k, 'weight', weight, dim * 4, 4);
    this.range(k, 'out', out, bytes, 4);
    this.sameOrDisjoint(k, 'out', out, bytes, 'x', x, bytes);
    this.disjoint(k, 'out', out, bytes, 'weight', weight, dim * 4);
    this.x.mk_rmsnorm(out, x, weight, rows, dim, eps);
  }

  rope(
    x: number,
    cos: number,
    sin: number,
    rows: number,
    nHeads: number,
    headDim: number,
    rotDim: number,
    layout: 'half' | 'pair',
  ): void {
    const k = 'rope';
    rows = this.int(k, 'rows', rows);
    nHeads = this.int(k, 'nHeads', nHeads);
    headDim = this.int(k, 'headDim', headDim);
    rotDim = this.int(k, 'rotDim', rotDim);
    if (rotDim % 2 !== 0 || rotDim > headDim) {
      throw new RangeError(`${k}: rotDim must be even and <= headDim (${headDim}), got ${rotDim}`);
    }
    if (layout !== 'half' && layout !== 'pair') {
      throw new TypeError(`${k}: layout must be 'half' or 'pair', got ${describe(layout)}`);
    }
    const xBytes = rows * nHeads * headDim * 4;
    const csBytes = rows * (rotDim / 2) * 4;
    this.range(k, 'x', x, xBytes, 4);
    this.range(k, 'cos', cos, csBytes, 4);
    this.range(k, 'sin', sin, csBytes, 4);
    this.disjoint(k, 'x', x, xBytes, 'cos', cos, csBytes);
    this.disjoint(k, 'x', x, xBytes, 'sin', sin, csBytes);
    this.x.mk_rope(x, cos, sin, rows, nHeads, headDim, rotDim, layout === 'half' ? 0 : 1);
  }

  swiglu(out: number, gate: number, up: number, n: number): void {
    this.elementwise('swiglu', out, gate, 'gate', up, 'up', n);
    this.x.mk_swiglu(out, gate, up, n);
  }

  geluGlu(out: number, gate: number, up: number, n: number): void {
    this.elementwise('geluGlu', out, gate, 'gate', up, 'up', n);
    this.x.mk_gelu_glu(out, gate, up, n);
  }

  softcap(x: number, n: number, cap: number): void {
    const k = 'softcap';
    n = this.int(k, 'n', n);
    checkSoftcap(k, cap, false);
    this.range(k, 'x', x, n * 4, 4);
    this.x.mk_softcap(x, n, cap);
  }

  scale(out: number, x: number, n: number, s: number): void {
    const k = 'scale';
    n = this.int(k, 'n', n);
    if (typeof s !== 'number' || !Number.isFinite(s)) {
      throw new TypeError(`${k}: s must be a finite number, got ${describe(s)}`);
    }
    const bytes = n * 4;
    this.range(k, 'x', x, bytes, 4);
    this.range(k, 'out', out, bytes, 4);
    this.sameOrDisjoint(k, 'out', out, bytes, 'x', x, bytes);
    this.x.mk_scale(out, x, n, s);
  }

  add(out: number, a: number, b: number, n: number): void {
    this.elementwise('add', out, a, 'a', b, 'b', n);
    this.x.mk_add(out, a, b, n);
  }

  softmax(x: number, rows: number, n: number): void {
    const k = 'softmax';
    rows = this.int(k, 'rows', rows);
    n = this.int(k, 'n', n);
    this.range(k, 'x', x, rows * n * 4, 4);
    this.x.mk_softmax(x, rows, n);
  }

  argmax(x: number, n: number): number {
    const k = 'argmax';
    n = this.int(k, 'n', n);
    this.range(k, 'x', x, n * 4, 4);
    return this.x.mk_argmax(x, n);
  }

  copy(dst: number, src: number, bytes: number): void {
    const k = 'copy';
    bytes = this.int(k, 'bytes', bytes, 0);
    if (bytes === 0) {
      this.ptr(k, 'dst', dst);
      this.ptr(k, 'src', src);
      return;
    }
    this.range(k, 'src', src, bytes, 1);
    this.range(k, 'dst', dst, bytes, 1);
    this.x.mk_copy(dst, src, bytes);
  }

  attention(
    out: number,
    q: number,
    k: number,
    v: number,
    rows: number,
    startPos: number,
    nHeads: number,
    nKvHeads: number,
    headDim: number,
    scale: number,
    window: number,
    softcap = 0,
  ): void {
    this.attend(
      'attention',
      out,
      q,
      k,
      v,
      rows,
      startPos,
      nHeads,
      nKvHeads,
      headDim,
      scale,
      window,
      0,
      nKvHeads,
      softcap,
    );
  }

  attentionHeads(
    out: number,
    q: number,
    k: number,
    v: number,
    rows: number,
    startPos: number,
    nHeads: number,
    nKvHeads: number,
    headDim: number,
    scale: number,
    window: number,
    kvHead0: number,
    kvHead1: number,
    softcap = 0,
  ): void {
    this.attend(
      'attentionHeads',
      out,
      q,
      k,
      v,
      rows,
      startPos,
      nHeads,
      nKvHeads,
      headDim,
      scale,
      window,
      kvHead0,
      kvHead1,
      softcap,
    );
  }

  private attend(
    kn: string,
    out: number,
    q: number,
    k: number,
    v: number,
    rows: number,
    startPos: number,
    nHeads: number,
    nKvHeads: number,
    headDim: number,
    scale: number,
    window: number,
    kvHead0: number,
    kvHead1: number,
    softcap: number,
  ): void {
    const a = attentionShape(
      kn,
      rows,
      startPos,
      nHeads,
      nKvHeads,
      headDim,
      scale,
      window,
      kvHead0,
      kvHead1,
      this.attnShape,
    );
    checkSoftcap(kn, softcap, true);
    this.range(kn, 'q', q, a.qBytes, 4);
    this.range(kn, 'k', k, a.kvBytes, 4);
    this.range(kn, 'v', v, a.kvBytes, 4);
    this.range(kn, 'out', out, a.qBytes, 4);
    this.disjoint(kn, 'out', out, a.qBytes, 'q', q, a.qBytes);
    this.disjoint(kn, 'out', out, a.qBytes, 'k', k, a.kvBytes);
    this.disjoint(kn, 'out', out, a.qBytes, 'v', v, a.kvBytes);
    const scratch = this.scratch(a.scratchBytes);
    this.x.mk_attention_heads(
      out,
      q,
      k,
      v,
      rows,
      startPos,
      nHeads,
      nKvHeads,
      headDim,
      scale,
      window,
      kvHead0,
      kvHead1,
      scratch,
      softcap,
    );
  }

  attentionKv(
    out: number,
    q: number,
    k: KvPtrs,
    v: KvPtrs,
    a: KvAttention,
    kvHead0 = 0,
    kvHead1: number = a?.nKvHeads,
  ): void {
    const kn = 'attentionKv';
    const s = kvAttentionShape(kn, a, kvHead0, kvHead1, this.kvInfo);
    this.range(kn, 'q', q, s.qBytes, 4);
    this.range(kn, 'out', out, s.qBytes, 4);
    this.kvRange(kn, K_NAMES, k, s);
    this.kvRange(kn, V_NAMES, v, s);
    this.disjoint(kn, 'out', out, s.qBytes, 'q', q, s.qBytes);
    this.kvDisjoint(kn, 'out', out, s.qBytes, K_NAMES, k, s);
    this.kvDisjoint(kn, 'out', out, s.qBytes, V_NAMES, v, s);
    const scratch = this.scratch(s.scratchBytes);
    const quant = s.code >= 4;
    // the two float parameters go through the scratch: every argument of the call is then an integer, so calling it
    // never boxes a number, even where V8 cannot inline the call (several kernels instances in one process)
    this.refresh();
    this.f32All[scratch >>> 2] = a.scale;
    this.f32All[(scratch >>> 2) + 1] = a.softcap ?? 0;
    this.x.mk_attention_kv(
      out,
      q,
      k.data,
      quant ? k.scales : 0,
      quant ? k.biases : 0,
      v.data,
      quant ? v.scales : 0,
      quant ? v.biases : 0,
      a.rows,
      a.startPos,
      a.nHeads,
      a.nKvHeads,
      a.headDim,
      a.window,
      a.keep,
      a.capacity,
      s.code,
      quant ? a.groupSize : 32,
      kvHead0,
      kvHead1,
      scratch,
    );
  }

  writeKv(dst: KvPtrs, src: number, a: KvWrite): void {
    const kn = 'writeKv';
    if (typeof a !== 'object' || a === null) throw new TypeError(`${kn}: missing arguments`);
    const rows = this.int(kn, 'rows', a.rows, 0);
    const start = this.int(kn, 'startPos', a.startPos, 0);
    const width = this.int(kn, 'width', a.width);
    const s = kvLayoutBytes(kn, a, width, this.kvInfo);
    if (start + rows - Math.max(a.keep, start) > a.capacity - a.keep)
      throw new RangeError(
        `${kn}: ${rows} rows from position ${start} would land on each other in ${a.capacity} rows (keep ${a.keep})`,
      );
    const srcBytes = rows * width * 4;
    this.kvRange(kn, DST_NAMES, dst, s);
    if (rows === 0) {
      this.ptr(kn, 'src', src);
      return;
    }
    this.range(kn, 'src', src, srcBytes, 4);
    this.kvDisjoint(kn, 'src', src, srcBytes, DST_NAMES, dst, s);
    const quant = s.code >= 4;
    this.x.mk_kv_write(
      dst.data,
      quant ? dst.scales : 0,
      quant ? dst.biases : 0,
      src,
      rows,
      start,
      width,
      a.keep,
      a.capacity,
      s.code,
      quant ? a.groupSize : 32,
    );
  }

  /** Sizes of the current attentionKv / writeKv call (filled in place: no allocation per call). */
  private readonly kvInfo = kvBytes();

  /** The parts of KV storage lie in live allocations (scales/biases only for quantized formats). */
  private kvRange(kn: string, names: KvNames, p: KvPtrs, s: KvBytes): void {
    if (typeof p !== 'object' || p === null)
      throw new TypeError(`${kn}: ${names[0]} must be { data, scales, biases }`);
    this.range(kn, names[0], p.data, s.dataBytes, s.code === 1 ? 2 : 4);
    if (s.code >= 4) {
      this.range(kn, names[1], p.scales, s.groupBytes, 4);
      this.range(kn, names[2], p.biases, s.groupBytes, 4);
    }
  }

  private kvDisjoint(
    kn: string,
    an: string,
    a: number,
    aBytes: number,
    names: KvNames,
    p: KvPtrs,
    s: KvBytes,
  ): void {
    this.disjoint(kn, an, a, aBytes, names[0], p.data, s.dataBytes);
    if (s.code >= 4) {
      this.disjoint(kn, an, a, aBytes, names[1], p.scales, s.groupBytes);
      this.disjoint(kn, an, a, aBytes, names[2], p.biases, s.groupBytes);
    }
  }

  // ---- validation ---------------------------------------------------------------------------------------------

  private refresh(): void {
    const b = this.memory.buffer;
    if (b !== this.buf) {
      this.buf = b;
      this.u8All = new Uint8Array(b);
      this.i32All = new Int32Array(b, 0, Math.floor(b.byteLength / 4));
      this.f32All = new Float32Array(b, 0, Math.floor(b.byteLength / 4));
    }
  }

  /** An integer in `[min, 2^32)`, else TypeError (not an integer) / RangeError (out of range). */
  private int(kernel: string, name: string, v: number, min = 1): number {
    return checkInt(kernel, name, v, min);
  }

  private dtype(kernel: string, name: string, v: WeightDType): number {
    const code = typeof v === 'string' && Object.hasOwn(DTYPE_CODE, v) ? DTYPE_CODE[v] : undefined;
    if (code === undefined) {
      throw new TypeError(`${kernel}: ${name} must be 'f32', 'f16' or 'bf16', got ${describe(v)}`);
    }
    return code;
  }

  private quant(
    kernel: string,
    dimName: string,
    dim: number,
    bits: number,
    groupSize: number,
    scaleDtype: WeightDType,
  ): { code: number; es: number; groups: number; wordsPerRow: number } {
    if (!(BITS as readonly number[]).includes(bits)) {
      throw new RangeError(`${kernel}: bits must be one of ${BITS.join(', ')}, got ${describe(bits)}`);
    }
    if (!(GROUP_SIZES as readonly number[]).includes(groupSize)) {
      throw new RangeError(
        `${kernel}: groupSize must be one of ${GROUP_SIZES.join(', ')}, got ${describe(groupSize)}`,
      );
    }
    const code = this.dtype(kernel, 'scaleDtype', scaleDtype);
    if (dim % groupSize !== 0) {
      throw new RangeError(`${kernel}: ${dimName} (${dim}) must be a multiple of groupSize (${groupSize})`);
    }
    // Filled in place, not allocated: a decode step makes many quantized calls and must not allocate.
    const q = this.quantInfo;
    q.code = code;
    q.es = DTYPE_SIZE[scaleDtype];
    q.groups = dim / groupSize;
    q.wordsPerRow = (dim * bits) / 32;
    return q;
  }

  private readonly quantInfo = { code: 0, es: 0, groups: 0, wordsPerRow: 0 };
  /** Filled in place by every attention call (see `quantInfo`). */
  private readonly attnShape: AttentionShape = { qBytes: 0, kvBytes: 0, scratchBytes: 0 };

  private ptr(kernel: string, name: string, ptr: number): void {
    if (typeof ptr !== 'number' || !Number.isInteger(ptr) || ptr < 0) {
      throw new TypeError(`${kernel}: ${name} must be a non-negative integer pointer, got ${describe(ptr)}`);
    }
  }

  /** `[ptr, ptr + bytes)` is aligned and inside one live allocation (and not the internal scratch). */
  private range(kernel: string, name: string, ptr: number, bytes: number, align: number): void {
    this.ptr(kernel, name, ptr);
    if (ptr % align !== 0) {
      throw new RangeError(`${kernel}: ${name} (${ptr}) must be ${align}-byte aligned`);
    }
    const end = ptr + bytes;
    if (end > this.memory.buffer.byteLength || !this.heap.containing(ptr, bytes)) {
      throw new RangeError(
        `${kernel}: ${name} range [${ptr}, ${end}) (${bytes} bytes) is not inside a live allocation`,
      );
    }
    if (this.scratchBytes > 0 && ptr < this.scratchPtr + this.scratchBytes && this.scratchPtr < end) {
      throw new RangeError(
        `${kernel}: ${name} range [${ptr}, ${end}) overlaps the kernels' internal scratch`,
      );
    }
  }

  private disjoint(
    kernel: string,
    an: string,
    a: number,
    aBytes: number,
    bn: string,
    b: number,
    bBytes: number,
  ): void {
    checkDisjoint(kernel, an, a, aBytes, bn, b, bBytes);
  }

  private sameOrDisjoint(
    kernel: string,
    an: string,
    a: number,
    aBytes: number,
    bn: string,
    b: number,
    bBytes: number,
  ): void {
    if (a !== b) this.disjoint(kernel, an, a, aBytes, bn, b, bBytes);
  }

  private elementwise(kernel: string, out: number, a: number, an: string, b: number, bn: string, n: number) {
    n = this.int(kernel, 'n', n);
    const bytes = n * 4;
    this.range(kernel, an, a, bytes, 4);
    this.range(kernel, bn, b, bytes, 4);
    this.range(kernel, 'out', out, bytes, 4);
    this.sameOrDisjoint(kernel, 'out', out, bytes, an, a, bytes);
    this.sameOrDisjoint(kernel, 'out', out, bytes, bn, b, bytes);
  }

  private ids(kernel: string, ids: number, nIds: number, vocab: number): void {
    this.refresh();
    const a = this.i32All;
    const base = ids >>> 2;
    for (let i = 0; i < nIds; i++) {
      const id = a[base + i];
      if (id === undefined || id < 0 || id >= vocab) {
        throw new RangeError(`${kernel}: ids[${i}] = ${id} is outside the vocabulary [0, ${vocab})`);
      }
    }
  }

  private viewArgs(kind: string, ptr: number, len: number, align: number): void {
    this.ptr(kind, 'ptr', ptr);
    if (typeof len !== 'number' || !Number.isInteger(len) || len < 0) {
      throw new TypeError(`${kind}: len must be a non-negative integer, got ${describe(len)}`);
    }
    if (ptr % align !== 0) throw new RangeError(`${kind}: ptr (${ptr}) must be ${align}-byte aligned`);
    const size = this.memory.buffer.byteLength;
    if (ptr + len * align > size) {
      throw new RangeError(`${kind}: [${ptr}, ${ptr + len * align}) is outside memory (${size} bytes)`);
    }
  }

  /** The internal scratch buffer, grown (geometrically) to at least `bytes`. */
  private scratch(bytes: number): number {
    if (bytes > this.scratchBytes) {
      const previous = this.scratchBytes;
      if (previous > 0) this.heap.free(this.scratchPtr);
      this.scratchBytes = 0;
      // grow geometrically (up to 2 GiB) so a slowly growing context does not reallocate on every call
      const size = Math.max(bytes, 64 * 1024, Math.min(2 * previous, 2 ** 31));
      this.scratchPtr = this.heap.alloc(size);
      this.scratchBytes = size;
    }
    return this.scratchPtr;
  }
}
