import type { DType, QuantSpec } from './dtype';
import type { GgmlBlockType, GgmlTensor } from './ggml';
import type { QuantizedTensor, Tensor, Weight } from './tensor';

/**
 * Version of the {@link Backend} interface. A backend declares the version it implements; the runtime refuses a
 * backend whose major version differs. Additive changes (new optional ops) keep the version; anything else bumps it.
 *
 * - 1: the first interface.
 * - 2: required ops `geluGlu`, `softcap` and `scale`, and {@link AttentionOptions.softcap} (Gemma); GGML block
 *   weights (`uploadGgml`, {@link GgmlTensor}), which `matmul`, `embedding` and `free` take like any other weight.
 * - 3: `attention` reads KV-cache storage as it is stored ({@link KvRows}: f32, f16 or MLX-affine 4/8-bit rows) and as
 *   a ring ({@link AttentionOptions.keep}, rows mapped to positions by {@link kvRow}), and the new required op
 *   `writeKv` writes (converts, quantizes) new key/value rows into such storage.
 */
export const BACKEND_API_VERSION = 3 as const;

/**
 * RoPE layouts, within each head's first `rotDim` dimensions (d = rotDim, i < d/2, angle from column i of cos/sin):
 * `half` rotates element i with i + d/2 (HF / rotate-half); `pair` rotates 2i with 2i+1 (GPT-J / llama2.c /
 * `rope_traditional`). For a pair (a, b): a' = a·cos − b·sin, b' = a·sin + b·cos.
 */
export type RopeLayout = 'half' | 'pair';

/**
 * One side (keys or values) of a KV cache as attention reads it and `writeKv` writes it: `C` rows ("capacity") of
 * `width = nKvHeads * headDim` values, in one of three storage formats.
 *
 * - `Tensor` f32 `[C, width]`: the value is the stored float.
 * - `Tensor` f16 `[C, width]`: the value is the half converted exactly to f32 (subnormals, ±inf and NaN included).
 * - `QuantizedTensor` `[C, width]` with spec `{ bits: 4 | 8, groupSize: 32 | 64, scaleDtype: 'f32' }`: MLX affine
 *   quantization along each row (see {@link QuantSpec}: `packed` u32 `[C, width * bits / 32]`, element k of a row at
 *   bit `bits * k` of the row's little-endian bit stream; `scales`, `biases` f32 `[C, width / groupSize]`); groups
 *   run along the whole row and may span kv heads. `headDim` must be a multiple of 8. The value of element k with code
 *   q in group g is `fl(fl(scales[g] · q) + biases[g])`: an f32 product, rounded, then an f32 sum, rounded (no fused
 *   multiply-add). Every backend computes exactly these values.
 *
 * Keys and values of one attention call have the same format (and spec) and the same `C`. A storage holds the rows of
 * positions through the ring mapping {@link kvRow}; rows that hold no position a query may see are garbage (anything,
 * NaN included) and never read.
 */
export type KvRows = Tensor | QuantizedTensor;

/**
 * Row of KV storage that holds absolute position `j`, for storage of `capacity` rows whose first `keep` rows are
 * pinned: `j` itself when `j < keep` or `j < capacity` (an unwrapped cache is simply "row j = position j"), else
 * `keep + (j - keep) mod (capacity - keep)`. A row therefore holds the latest position written to it: after positions
 * up to `last` were written, position `j >= keep` is still held when `last - j < capacity - keep`.
 */
export function kvRow(j: number, capacity: number, keep = 0): number {
  return j < keep ? j : keep + ((j - keep) % (capacity - keep));
}

export interface AttentionOptions {
  /** Absolute position of query row 0; query row r is at position `startPos + r`. */
  readonly startPos: number;
  readonly nHeads: number;
  readonly nKvHeads: number;
  readonly headDim: number;
  /** Multiplier of q·k, usually `1 / sqrt(headDim)`. */
  readonly scale: number;
  /** Sliding window: a query at position p sees keys at positions `p - window < j <= p`. 0 or absent = unlimited. */
  readonly window?: number;
  /**
   * Soft-cap of the attention logits (Gemma 2's `attn_logit_softcapping`): each scaled score `s = scale · (q·k)` is
   * replaced by `softcap · tanh(s / softcap)` before the softmax (and so before masking, which only ever drops keys
   * outside the causal window). 0 or absent = none; otherwise a finite number > 0. The capped score's own error may
   * add `(2^-16 + 2^-21)·|capped score|` to the usual score error; the cap never amplifies the score's error (its slope
   * is at most 1).
   */
  readonly softcap?: number;
  /**
   * Leading positions pinned in the storage and always visible (attention sinks, mlx-lm's `keep`): a query at p also
   * sees every `j < keep` (j <= p) beyond its window, and these positions sit in rows `0 .. keep - 1` of the ring
   * ({@link kvRow}). 0 or absent = none. At most the storage's row count.
   */
  readonly keep?: number;
}

/** Options of `writeKv`. */
export interface WriteKvOptions {
  /** Absolute position of source row 0; source row r is written at the row of position `startPos + r`. */
  readonly startPos: number;
  /** The storage's pinned leading rows (as {@link AttentionOptions.keep}); 0 or absent = none. */
  readonly keep?: number;
}

/** Where a tensor's bytes lie in an open file: a descriptor the caller keeps open during the call, and a byte position. */
export interface FileRange {
  readonly fd: number;
  readonly position: number;
}

export interface RopeOptions {
  readonly nHeads: number;
  readonly headDim: number;
  readonly layout: RopeLayout;
}

/**
 * The compute seam. The JS reference backend, the WASM SIMD backend and native backends (Metal) implement it; every
 * implementation must pass the conformance suite (`@mnemo/tensor/conformance`).
 *
 * Rules every op follows:
 * - Outputs are passed in, preallocated; ops allocate nothing on the JS heap in steady state.
 * - Matrices are row-major 2-D tensors (or views); the row count of an op is the first dimension of its input.
 * - Compute and accumulation are f32. Each output row depends only on its own input row (and, for attention, on the
 *   cache rows at or before its position), with a reduction order fixed by the row's content and absolute positions
 *   only: never by how many rows are computed together, where a chunk boundary falls, or what unused cache rows hold.
 * - Bad arguments (shape mismatch, wrong dtype, foreign tensors, out-of-range sizes) throw a `TypeError` or
 *   `RangeError` naming the op and the problem, before any memory is touched.
 * - An output may not share memory with an input, except where an op says so (`add`, `swiglu`, `geluGlu`, `scale` and
 *   `rmsnorm` accept an output that is exactly one of their inputs; `rope`, `softmax` and `softcap` work in place); any
 *   other overlap throws a `RangeError`. Matrix arguments have at least 2 dimensions: `[rows, ...]`, the row width
 *   being the product of the rest.
 */
export interface Backend {
  readonly apiVersion: typeof BACKEND_API_VERSION;
  /** Short unique name: `js`, `wasm`, `metal`, ... */
  readonly name: string;
  /**
   * Names the arithmetic, when it differs from the defaults of `name` (e.g. `wasm+int8a`): two backends with the same
   * `numerics ?? name` give bitwise-identical results for the same inputs, so state computed under one (a prompt
   * cache) continues exactly under the other. Thread counts never change it.
   */
  readonly numerics?: string;
  /**
   * True when matmuls with 4- and 8-bit MLX-quantized weights and with GGML block weights first round each input row
   * to int8 in blocks of 32 (opt-in via {@link BackendOptions.int8Activations}; faster, not bit-compatible with the
   * exact path). Absent: false.
   */
  readonly int8Activations?: boolean;

  // ---- memory -------------------------------------------------------------------------------------------------
  /** A new tensor with unspecified contents. */
  alloc(dtype: DType, shape: readonly number[]): Tensor;
  /** A new tensor holding a copy of `data` (raw little-endian bytes or a typed array of the same element type). */
  upload(dtype: DType, shape: readonly number[], data: ArrayBufferView): Tensor;
  /** A quantized weight from its three raw parts (see {@link QuantSpec} for shapes and layout). */
  uploadQuantized(
    spec: QuantSpec,
    shape: readonly [rows: number, cols: number],
    packed: ArrayBufferView,
    scales: ArrayBufferView,
    biases: ArrayBufferView,
  ): QuantizedTensor;
  /**
   * A weight `[rows, cols]` in a GGML block format, from its raw blocks exactly as a GGUF file stores them: `rows`
   * rows of `cols / blockSize` blocks of `type`, back to back (`blocks.byteLength = rows · cols / blockSize ·
   * blockBytes`; `cols` a multiple of the block size). The layouts and the value of every element are specified in
   * `ggml.ts` (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K; `dequantizeGgmlRow` is the reference).
   * `matmul` computes with the decoded values as with any weight (f32 accumulation, within the usual tolerance of
   * the float64 result), and `embedding` returns rows of them.
   */
  uploadGgml(
    type: GgmlBlockType,
    shape: readonly [rows: number, cols: number],
    blocks: ArrayBufferView,
  ): GgmlTensor;
  /**
   * Optional: `upload` with the bytes read from `src` straight into the backend's memory, with no JavaScript copy of
   * the tensor. Same result as `upload(dtype, shape, bytes read from the file)`; a short file is a `RangeError`.
   */
  uploadFromFile?(dtype: DType, shape: readonly number[], src: FileRange): Tensor;
  /** Optional: `uploadQuantized` with each part read from its file range (see {@link Backend.uploadFromFile}). */
  uploadQuantizedFromFile?(
    spec: QuantSpec,
    shape: readonly [rows: number, cols: number],
    packed: FileRange,
    scales: FileRange,
    biases: FileRange,
  ): QuantizedTensor;
  /** A tensor sharing `t`'s storage: elements `[offset, offset + prod(shape))` of `t` under `shape`. */
  view(t: Tensor, shape: readonly number[], offset?: number): Tensor;
  /** Copies `src`'s elements into `dst` (same dtype and size). */
  write(dst: Tensor, src: ArrayBufferView): void;
  /** Copies `t` (f32) into `out` (exactly `t.size` long; a new array if absent) and returns it. */
  read(t: Tensor, out?: Float32Array): Float32Array;
  /** Copies raw bytes of `t` into `out` (exactly `t.byteLength` long; a new array if absent) and returns it. */
  readBytes(t: Tensor, out?: Uint8Array): Uint8Array;
  /** Releases the storage of `t` (and of every view on it). Using it afterwards (freeing it again included) throws. */
  free(t: Weight): void;
  /** Bytes currently held by live tensors. */
  memoryInUse(): number;
  /** Releases everything the backend holds. */
  dispose(): void;

  // ---- ops ----------------------------------------------------------------------------------------------------
  /** `dst[dstRow + i] = src[srcRow + i]` for `rows` rows; same row width and dtype; ranges may not overlap. */
  copyRows(dst: Tensor, dstRow: number, src: Tensor, srcRow: number, rows: number): void;
  /** Converts `src` (f32, f16 or bf16) to f32 into `out` (same size). */
  toF32(out: Tensor, src: Tensor): void;
  /** `y[r, o] = Σ_i x[r, i] · w[o, i] (+ bias[o])`. `x` f32 `[rows, in]`, `w` `[out, in]`, `y` f32 `[rows, out]`, bias f32 `[out]`. */
  matmul(y: Tensor, x: Tensor, w: Weight, bias?: Tensor): void;
  /** `out[r] = table[ids[r]]` as f32. `table` `[vocab, dim]` (dense or quantized), `out` f32 `[ids.length, dim]`. */
  embedding(out: Tensor, table: Weight, ids: Int32Array): void;
  /** Row-wise `out = x / sqrt(mean(x²) + eps) · weight`. `x`, `out` f32 `[rows, dim]` (`out` may be `x`), `weight` f32 `[dim]`. */
  rmsnorm(out: Tensor, x: Tensor, weight: Tensor, eps: number): void;
  /**
   * In-place rotary embedding of `x` f32 `[rows, nHeads * headDim]`. `cos`/`sin` are f32 `[rows, rotDim / 2]` for the
   * rows' positions (rotDim ≤ headDim; dimensions past rotDim are left as they are).
   */
  rope(x: Tensor, cos: Tensor, sin: Tensor, opts: RopeOptions): void;
  /** `out = silu(gate) · up`, elementwise, f32, same shapes (`out` may be `gate` or `up` exactly). */
  swiglu(out: Tensor, gate: Tensor, up: Tensor): void;
  /**
   * `out = gelu_tanh(gate) · up`, elementwise, f32, same shapes and aliasing rules as {@link Backend.swiglu} (`out` may
   * be `gate` or `up` exactly, nothing else may overlap). `gelu_tanh(g) = 0.5·g·(1 + tanh(sqrt(2/π)·(g + 0.044715·g³)))`
   * (PyTorch's `gelu(approximate='tanh')`, HF `gelu_pytorch_tanh`), which equals `g / (1 + e^(−2u))` with
   * `u = sqrt(2/π)·(g + 0.044715·g³)`: a backend may evaluate either form (the second has no cancellation) with its own
   * exp/tanh approximation. Accuracy (the conformance suite's check against the float64 value v):
   * `|out − v| ≤ (2^-16 + 2^-21 + 2^-21·|2u|/(1 + e^(2u)))·|v| + 1e-30` — the last term allows for the rounding of the
   * exponent 2u, which matters only where gelu is in its tail. Each element's result depends on its own inputs only
   * (not on its index or on how many elements are computed together). Limits: `gelu_tanh(−∞) = −0`,
   * `gelu_tanh(+∞) = +∞`, `gelu_tanh(±0) = ±0`, NaN stays NaN.
   */
  geluGlu(out: Tensor, gate: Tensor, up: Tensor): void;
  /**
   * In place, elementwise: `x = cap · tanh(x / cap)` (f32 tensor of any shape; Gemma 2's final-logit soft-capping).
   * `cap` is a finite number > 0. Accuracy: `|x' − v| ≤ (2^-16 + 2^-21)·|v| + 1e-30` against the float64 value v;
   * each element's result depends on its own value only; ±∞ → ±cap, ±0 → ±0, NaN stays NaN.
   */
  softcap(x: Tensor, cap: number): void;
  /**
   * `out = x · s`, elementwise, f32, same shapes (`out` may be `x` exactly, not partly overlap it). `s` is a finite
   * number, rounded to f32 first; each element is the correctly rounded f32 product (exact: bitwise equal on every
   * backend).
   */
  scale(out: Tensor, x: Tensor, s: number): void;
  /** `out = a + b`, elementwise, f32, same shapes (`out` may alias `a` or `b` exactly, not partly overlap them). */
  add(out: Tensor, a: Tensor, b: Tensor): void;
  /** In-place row-wise softmax of f32 `[rows, n]`. */
  softmax(x: Tensor): void;
  /** Index of the largest element of row `row` (default 0) of f32 `[rows, n]`; the first on ties. */
  argmax(x: Tensor, row?: number): number;
  /**
   * Causal grouped-query attention over KV storage ({@link KvRows}). `q`, `out` f32 `[rows, nHeads * headDim]`; `k`,
   * `v` `[C, nKvHeads * headDim]` in one storage format, position j at row `kvRow(j, C, keep)`. Query head h uses kv
   * head `h / (nHeads / nKvHeads)`.
   *
   * Query row r sits at position `p = startPos + r` and sees the positions
   * `V(p) = { j : 0 <= j <= p and (window = 0 or p - j < window or j < keep) }`, in ascending order, with key and value
   * `K_j`, `V_j` = the f32 values of row `kvRow(j, C, keep)` ({@link KvRows} defines them per format). Per head:
   * `s_j = (q · K_j) · scale`, soft-capped to `softcap · tanh(s_j / softcap)` when `opts.softcap` is set,
   * `w_j = exp(s_j - max s)`, `out = Σ w_j V_j / Σ w_j` (j over V(p)).
   *
   * - No other row is read: a row holding no position of any V(p) may hold anything (NaN, inf, another position).
   * - The storage must still hold every position seen: with `last = startPos + rows - 1` and
   *   `lo = max(keep, window > 0 ? startPos - window + 1 : 0)`, `keep <= C` and, when `lo <= last`,
   *   `last - lo < C - keep` (else RangeError). The caller writes positions `0 .. last` (those seen) before the call.
   * - Reduction order per query row is a fixed function of V(p), i.e. of absolute positions only: keys in ascending
   *   position order whatever rows they sit in, never the row count of the call, chunking, the ring's rotation, `C`,
   *   or other rows' contents. So a position's output is bitwise the same computed in a prefill, chunked, one row at a
   *   time, after the ring wrapped, or with other garbage in unseen rows.
   * - Storage-transparent: the output is bitwise what the same backend gives for f32 storage holding the values
   *   `K_j`, `V_j` (a format only changes how values are stored, never the arithmetic on them).
   * - `out` may not overlap `q` or any part of `k`/`v`.
   */
  attention(out: Tensor, q: Tensor, k: KvRows, v: KvRows, opts: AttentionOptions): void;
  /**
   * Writes f32 rows into KV storage: source row r (`src` f32 `[rows, width]`) goes to row `kvRow(startPos + r, C,
   * keep)` of `dst` ({@link KvRows}, `[C, width]`), converted to its format; other rows are untouched.
   *
   * - f32: copied bitwise. f16: rounded to nearest even (overflow to ±inf; NaN stays NaN, as `f32ToF16`).
   * - Quantized (4/8 bits, groups 32/64, f32 scales): per group of the row, with the f32 values x_i: `min`, `max`
   *   (first-to-last scan, comparisons `x < min` / `x > max`, so NaNs are skipped), `scale = fl32(fl32(max - min) /
   *   (2^bits - 1))`, `bias = min`, and each code `q = scale == 0 ? 0 : clamp(roundHalfEven((x - bias) / scale), 0,
   *   2^bits - 1)` with the subtraction and division done in float64 (as `quantize` of `@mnemo/tensor` with f32
   *   scales); a NaN code is 0. The stored bytes are therefore bitwise identical on every backend.
   * - Each row is converted on its own (a row's bytes never depend on the other rows of the call). The rows written
   *   may not land on each other: `keep <= C`, and at most `C - keep` of the positions written may be `>= keep`
   *   (RangeError otherwise).
   * - `src` may not overlap any part of `dst`.
   */
  writeKv(dst: KvRows, src: Tensor, opts: WriteKvOptions): void;
}

/** Options {@link createBackend} passes on to a backend factory; a backend ignores what does not apply to it. */
export interface BackendOptions {
  /**
   * Threads a backend may compute with (the WASM backend: the calling thread plus `threads - 1` workers). Results
   * must not depend on it. Default: the backend's choice (WASM: `MNEMO_THREADS`, else every core).
   */
  readonly threads?: number;
  /**
   * Lets matmuls with 4- and 8-bit MLX-quantized weights and with GGML block weights round their input rows to int8
   * (blocks of 32, one f32 scale each, as llama.cpp's Q8 activations; `roundActivationsInt8` is the rule) and run
   * integer dot products: up to about twice as fast on the WASM backend, within the activation rounding of the exact
   * result, and not bit-compatible with it. Default false (or `MNEMO_INT8_ACTIVATIONS=1` for the WASM backend).
   * Backends without such a path ignore it.
   */
  readonly int8Activations?: boolean;
}

/** Creates a backend; async because compiling WebAssembly or loading a native addon is. */
export type BackendFactory = (opts?: BackendOptions) => Promise<Backend>;
