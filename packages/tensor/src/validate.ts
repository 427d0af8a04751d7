/**
 * Argument checks of every Backend op, shared by the reference and WASM backends (and usable by native ones). Each
 * throws a TypeError or RangeError naming the op and the problem; none allocates unless it throws.
 */
import type { AttentionOptions, KvRows, RopeOptions, WriteKvOptions } from './backend';
import { DTYPE_BYTES, type DType, isDType, type QuantSpec } from './dtype';
import { GGML_BLOCK_TYPES, type GgmlBlockType, GgmlTensor, isGgmlBlockType } from './ggml';
import {
  checkInt,
  checkNoOverlap,
  checkSameShape,
  type Owner,
  overlaps,
  type StorageBase,
  width,
} from './owner';
import { checkQuantSpec, packedRowWords } from './quant';
import { QuantizedTensor, type Tensor, type Weight } from './tensor';

type O = Owner<StorageBase>;
const MAX = Number.MAX_SAFE_INTEGER;

/** Checks a shape and returns its element count. */
export function checkShape(op: string, shape: readonly number[]): number {
  if (!Array.isArray(shape)) throw new TypeError(`${op}: shape must be an array of dimensions`);
  let n = 1;
  for (const d of shape) {
    if (!Number.isSafeInteger(d) || d < 0)
      throw new RangeError(`${op}: bad dimension ${d} in shape [${shape}]`);
    n *= d;
  }
  if (!Number.isSafeInteger(n)) throw new RangeError(`${op}: shape [${shape}] is too large`);
  return n;
}

/** The typed array classes that may carry elements of each dtype (raw bytes are always accepted). */
function typedArrayFits(dtype: DType, data: ArrayBufferView): boolean {
  if (data instanceof Uint8Array || data instanceof DataView) return true;
  switch (dtype) {
    case 'f32':
      return data instanceof Float32Array;
    case 'f16':
    case 'bf16':
      return data instanceof Uint16Array;
    case 'u32':
      return data instanceof Uint32Array;
    case 'i32':
      return data instanceof Int32Array;
    default:
      return false;
  }
}

/** Checks that `data` can fill `byteLength` bytes of `dtype` elements. */
export function checkData(
  op: string,
  dtype: DType,
  data: ArrayBufferView,
  byteLength: number,
  what = 'data',
): void {
  if (!ArrayBuffer.isView(data))
    throw new TypeError(`${op}: ${what} must be a typed array or raw bytes (Uint8Array), got ${typeof data}`);
  if (!typedArrayFits(dtype, data))
    throw new TypeError(
      `${op}: a ${data.constructor.name} cannot hold ${dtype} elements; pass raw bytes (Uint8Array) or the matching typed array`,
    );
  if (data.byteLength !== byteLength)
    throw new RangeError(`${op}: ${what} has ${data.byteLength} bytes, expected ${byteLength}`);
}

export function checkUpload(op: string, dtype: DType, shape: readonly number[], data: ArrayBufferView): void {
  if (!isDType(dtype)) throw new TypeError(`${op}: unknown dtype ${String(dtype)}`);
  const n = checkShape(op, shape);
  checkData(op, dtype, data, n * DTYPE_BYTES[dtype]);
}

export function checkUploadQuantized(
  spec: QuantSpec,
  shape: readonly [number, number],
  packed: ArrayBufferView,
  scales: ArrayBufferView,
  biases: ArrayBufferView,
): void {
  const op = 'uploadQuantized';
  if (!Array.isArray(shape) || shape.length !== 2) throw new RangeError(`${op}: shape must be [rows, cols]`);
  checkShape(op, shape);
  const [rows, cols] = shape;
  checkQuantSpec(op, spec, cols);
  const groups = rows * (cols / spec.groupSize);
  checkData(op, 'u32', packed, rows * packedRowWords(spec, cols) * 4, 'packed');
  checkData(op, spec.scaleDtype, scales, groups * DTYPE_BYTES[spec.scaleDtype], 'scales');
  checkData(op, spec.scaleDtype, biases, groups * DTYPE_BYTES[spec.scaleDtype], 'biases');
}

/** Checks `uploadGgml`'s arguments and returns the bytes of one row. */
export function checkUploadGgml(
  type: GgmlBlockType,
  shape: readonly [number, number],
  blocks: ArrayBufferView,
): number {
  const op = 'uploadGgml';
  if (!isGgmlBlockType(type))
    throw new TypeError(
      `${op}: type must be one of ${Object.keys(GGML_BLOCK_TYPES).join(', ')}, got ${String(type)}`,
    );
  if (!Array.isArray(shape) || shape.length !== 2) throw new RangeError(`${op}: shape must be [rows, cols]`);
  checkShape(op, shape);
  const [rows, cols] = shape;
  const t = GGML_BLOCK_TYPES[type];
  if (cols % t.blockSize !== 0)
    throw new RangeError(`${op}: cols ${cols} is not a multiple of the ${type} block size ${t.blockSize}`);
  const rowBytes = (cols / t.blockSize) * t.blockBytes;
  if (!ArrayBuffer.isView(blocks)) throw new TypeError(`${op}: blocks must be raw bytes (a Uint8Array)`);
  if (blocks.byteLength !== rows * rowBytes)
    throw new RangeError(
      `${op}: ${type} [${rows}, ${cols}] takes ${rows * rowBytes} bytes of blocks, got ${blocks.byteLength}`,
    );
  return rowBytes;
}

export function checkView(o: O, t: Tensor, shape: readonly number[], offset: number): void {
  o.storage('view', 't', t);
  const n = checkShape('view', shape);
  checkInt('view', 'offset', offset, 0, MAX);
  if (offset + n > t.size)
    throw new RangeError(`view: [${shape}] at offset ${offset} does not fit in ${t} (${t.size} elements)`);
}

export function checkWrite(o: O, dst: Tensor, src: ArrayBufferView): void {
  o.storage('write', 'dst', dst);
  checkData('write', dst.dtype, src, dst.byteLength, 'src');
}

export function checkRead(o: O, t: Tensor, out: Float32Array | undefined): void {
  o.tensor('read', 't', t, 'f32');
  if (out !== undefined && (!(out instanceof Float32Array) || out.length !== t.size))
    throw new RangeError(`read: out must be a Float32Array of ${t.size} elements`);
}

export function checkReadBytes(o: O, t: Tensor, out: Uint8Array | undefined): void {
  o.storage('readBytes', 't', t);
  if (out !== undefined && (!(out instanceof Uint8Array) || out.length !== t.byteLength))
    throw new RangeError(`readBytes: out must be a Uint8Array of ${t.byteLength} bytes`);
}

/** Checks every part of `w` is a live tensor of this backend. */
export function checkFree(o: O, w: Weight): void {
  if (w instanceof QuantizedTensor) {
    o.storage('free', 'w.packed', w.packed);
    o.storage('free', 'w.scales', w.scales);
    o.storage('free', 'w.biases', w.biases);
  } else if (w instanceof GgmlTensor) {
    o.storage('free', 'w.blocks', w.blocks);
  } else {
    o.storage('free', 't', w);
  }
}

export function checkCopyRows(
  o: O,
  dst: Tensor,
  dstRow: number,
  src: Tensor,
  srcRow: number,
  rows: number,
): void {
  const op = 'copyRows';
  o.checkLive(op);
  o.storage(op, 'dst', dst);
  o.storage(op, 'src', src);
  if (dst.dtype !== src.dtype) throw new TypeError(`${op}: dst ${dst} and src ${src} differ in dtype`);
  if (dst.shape.length < 1 || src.shape.length < 1)
    throw new RangeError(`${op}: dst and src need a row dimension`);
  if (width(dst) !== width(src)) throw new RangeError(`${op}: dst ${dst} and src ${src} differ in row width`);
  checkInt(op, 'rows', rows, 0, MAX);
  checkInt(op, 'dstRow', dstRow, 0, dst.shape[0]! - rows);
  checkInt(op, 'srcRow', srcRow, 0, src.shape[0]! - rows);
  if (dst.storage === src.storage && rows > 0) {
    const w = width(dst);
    const a = dst.offset + dstRow * w;
    const b = src.offset + srcRow * w;
    if (a < b + rows * w && b < a + rows * w)
      throw new RangeError(`${op}: source and destination rows overlap`);
  }
}

export function checkToF32(o: O, out: Tensor, src: Tensor): void {
  const op = 'toF32';
  o.checkLive(op);
  o.tensor(op, 'out', out, 'f32');
  o.storage(op, 'src', src);
  if (src.dtype !== 'f32' && src.dtype !== 'f16' && src.dtype !== 'bf16')
    throw new TypeError(`${op}: src must be f32, f16 or bf16, got ${src}`);
  if (out.size !== src.size) throw new RangeError(`${op}: out ${out} and src ${src} differ in size`);
  checkNoOverlap(op, 'out', out, 'src', src);
}

function checkNoOverlapWeight(op: string, outName: string, out: Tensor, w: Weight): void {
  if (w instanceof QuantizedTensor) {
    checkNoOverlap(op, outName, out, 'w.packed', w.packed);
    checkNoOverlap(op, outName, out, 'w.scales', w.scales);
    checkNoOverlap(op, outName, out, 'w.biases', w.biases);
  } else if (w instanceof GgmlTensor) {
    checkNoOverlap(op, outName, out, 'w.blocks', w.blocks);
  } else {
    checkNoOverlap(op, outName, out, 'the weight', w);
  }
}

export function checkMatmul(o: O, y: Tensor, x: Tensor, w: Weight, bias: Tensor | undefined): void {
  const op = 'matmul';
  o.checkLive(op);
  o.matrix(op, 'y', y, 'f32');
  o.matrix(op, 'x', x, 'f32');
  o.weight(op, 'w', w);
  const rows = x.shape[0]!;
  const inDim = width(x);
  const outDim = w.shape[0]!;
  if (w.shape[1] !== inDim)
    throw new RangeError(`${op}: x ${x} has ${inDim} columns but w ${w} has ${w.shape[1]} (w is [out, in])`);
  if (y.shape[0] !== rows || width(y) !== outDim)
    throw new RangeError(`${op}: y must be [${rows}, ${outDim}] for x ${x} and w ${w}, got ${y}`);
  if (bias !== undefined) {
    o.tensor(op, 'bias', bias, 'f32');
    if (bias.shape.length !== 1 || bias.shape[0] !== outDim)
      throw new RangeError(`${op}: bias must be [${outDim}], got ${bias}`);
    checkNoOverlap(op, 'y', y, 'bias', bias);
  }
  checkNoOverlap(op, 'y', y, 'x', x);
  checkNoOverlapWeight(op, 'y', y, w);
}

export function checkEmbedding(o: O, out: Tensor, table: Weight, ids: Int32Array): void {
  const op = 'embedding';
  o.checkLive(op);
  o.matrix(op, 'out', out, 'f32');
  o.weight(op, 'table', table);
  if (!(ids instanceof Int32Array)) throw new TypeError(`${op}: ids must be an Int32Array`);
  const vocab = table.shape[0]!;
  const dim = table.shape[1]!;
  if (out.shape[0] !== ids.length || width(out) !== dim)
    throw new RangeError(`${op}: out must be [${ids.length}, ${dim}] for ${ids.length} ids, got ${out}`);
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i]!;
    if (id < 0 || id >= vocab)
      throw new RangeError(`${op}: ids[${i}] = ${id} is outside the vocabulary [0, ${vocab})`);
  }
  checkNoOverlapWeight(op, 'out', out, table);
}

export function checkRmsnorm(o: O, out: Tensor, x: Tensor, weight: Tensor, eps: number): void {
  const op = 'rmsnorm';
  o.checkLive(op);
  o.matrix(op, 'out', out, 'f32');
  o.matrix(op, 'x', x, 'f32');
  o.tensor(op, 'weight', weight, 'f32');
  checkSameShape(op, 'out', out, 'x', x);
  const dim = width(x);
  if (weight.shape.length !== 1 || weight.shape[0] !== dim)
    throw new RangeError(`${op}: weight must be [${dim}] for x ${x}, got ${weight}`);
  if (typeof eps !== 'number' || !Number.isFinite(eps) || eps < 0)
    throw new RangeError(`${op}: eps must be a finite number >= 0, got ${eps}`);
  checkAliasOrDisjoint(op, 'out', out, 'x', x);
  checkNoOverlap(op, 'out', out, 'weight', weight);
}

export function checkRope(o: O, x: Tensor, cos: Tensor, sin: Tensor, opts: RopeOptions): void {
  const op = 'rope';
  o.checkLive(op);
  o.matrix(op, 'x', x, 'f32');
  o.matrix(op, 'cos', cos, 'f32');
  o.matrix(op, 'sin', sin, 'f32');
  if (typeof opts !== 'object' || opts === null) throw new TypeError(`${op}: missing options`);
  checkInt(op, 'nHeads', opts.nHeads, 1, MAX);
  checkInt(op, 'headDim', opts.headDim, 1, MAX);
  if (opts.layout !== 'half' && opts.layout !== 'pair')
    throw new TypeError(`${op}: layout must be 'half' or 'pair', got ${String(opts.layout)}`);
  if (width(x) !== opts.nHeads * opts.headDim)
    throw new RangeError(`${op}: x ${x} must have nHeads * headDim = ${opts.nHeads * opts.headDim} columns`);
  checkSameShape(op, 'cos', cos, 'sin', sin);
  if (cos.shape.length !== 2 || cos.shape[0] !== x.shape[0])
    throw new RangeError(`${op}: cos/sin must be [${x.shape[0]}, rotDim / 2] for x ${x}, got ${cos}`);
  if (2 * cos.shape[1]! > opts.headDim)
    throw new RangeError(`${op}: rotDim = 2 * ${cos.shape[1]} exceeds headDim ${opts.headDim}`);
  checkNoOverlap(op, 'x', x, 'cos', cos);
  checkNoOverlap(op, 'x', x, 'sin', sin);
}

export function checkSwiglu(o: O, out: Tensor, gate: Tensor, up: Tensor): void {
  checkGatedUnit('swiglu', o, out, gate, up);
}

export function checkGeluGlu(o: O, out: Tensor, gate: Tensor, up: Tensor): void {
  checkGatedUnit('geluGlu', o, out, gate, up);
}

/** Gated activations (`swiglu`, `geluGlu`): same-shape f32 tensors, `out` may be `gate` or `up` exactly. */
function checkGatedUnit(op: string, o: O, out: Tensor, gate: Tensor, up: Tensor): void {
  o.checkLive(op);
  o.tensor(op, 'out', out, 'f32');
  o.tensor(op, 'gate', gate, 'f32');
  o.tensor(op, 'up', up, 'f32');
  checkSameShape(op, 'out', out, 'gate', gate);
  checkSameShape(op, 'out', out, 'up', up);
  checkAliasOrDisjoint(op, 'out', out, 'gate', gate);
  checkAliasOrDisjoint(op, 'out', out, 'up', up);
}

/** A soft-cap: a finite number > 0 (or, where `zeroMeansNone`, 0 for none). */
export function checkSoftcapValue(op: string, cap: unknown, zeroMeansNone: boolean): void {
  if (typeof cap !== 'number' || !Number.isFinite(cap) || cap < 0 || (cap === 0 && !zeroMeansNone))
    throw new RangeError(
      `${op}: softcap must be a finite number > 0${zeroMeansNone ? ' (or 0 for none)' : ''}, got ${String(cap)}`,
    );
}

export function checkSoftcap(o: O, x: Tensor, cap: number): void {
  const op = 'softcap';
  o.checkLive(op);
  o.tensor(op, 'x', x, 'f32');
  checkSoftcapValue(op, cap, false);
}

export function checkScale(o: O, out: Tensor, x: Tensor, s: number): void {
  const op = 'scale';
  o.checkLive(op);
  o.tensor(op, 'out', out, 'f32');
  o.tensor(op, 'x', x, 'f32');
  checkSameShape(op, 'out', out, 'x', x);
  if (typeof s !== 'number' || !Number.isFinite(s))
    throw new RangeError(`${op}: s must be a finite number, got ${String(s)}`);
  checkAliasOrDisjoint(op, 'out', out, 'x', x);
}

export function checkAdd(o: O, out: Tensor, a: Tensor, b: Tensor): void {
  const op = 'add';
  o.checkLive(op);
  o.tensor(op, 'out', out, 'f32');
  o.tensor(op, 'a', a, 'f32');
  o.tensor(op, 'b', b, 'f32');
  checkSameShape(op, 'out', out, 'a', a);
  checkSameShape(op, 'out', out, 'b', b);
  checkAliasOrDisjoint(op, 'out', out, 'a', a);
  checkAliasOrDisjoint(op, 'out', out, 'b', b);
}

/** Same-shape `out` and `inp` must be the very same range or not overlap at all. */
function checkAliasOrDisjoint(op: string, outName: string, out: Tensor, inName: string, inp: Tensor): void {
  if (overlaps(out, inp) && out.offset !== inp.offset)
    throw new RangeError(`${op}: ${outName} may be ${inName} exactly but must not partly overlap it`);
}

export function checkSoftmax(o: O, x: Tensor): void {
  o.checkLive('softmax');
  o.matrix('softmax', 'x', x, 'f32');
}

export function checkArgmax(o: O, x: Tensor, row: number): void {
  const op = 'argmax';
  o.checkLive(op);
  o.matrix(op, 'x', x, 'f32');
  if (width(x) === 0) throw new RangeError(`${op}: x ${x} has empty rows`);
  checkInt(op, 'row', row, 0, x.shape[0]! - 1);
}

/** Storage formats of KV rows (see `KvRows`): the kernels' codes. */
export const KV_F32 = 0;
export const KV_F16 = 1;
export const KV_Q4 = 4;
export const KV_Q8 = 8;

/**
 * Checks KV storage `t` (`[C, width]` f32 / f16 / quantized 4|8-bit g32|64 with f32 scales) and returns its format code
 * ({@link KV_F32}, {@link KV_F16}, {@link KV_Q4}, {@link KV_Q8}). Allocates nothing unless it throws.
 */
export function checkKvRows(
  o: O,
  op: string,
  name: string,
  t: KvRows,
  cols: number,
  headDim?: number,
): number {
  if (t instanceof QuantizedTensor) {
    o.quantized(op, name, t);
    const { bits, groupSize, scaleDtype } = t.spec;
    if ((bits !== 4 && bits !== 8) || (groupSize !== 32 && groupSize !== 64) || scaleDtype !== 'f32')
      throw new RangeError(
        `${op}: ${name} ${t} is not a KV storage format (quantized rows are 4 or 8 bits, groups of 32 or 64, f32 scales)`,
      );
    if (t.shape[1] !== cols)
      throw new RangeError(`${op}: ${name} ${t} must have nKvHeads * headDim = ${cols} columns`);
    if (headDim !== undefined && headDim % 8 !== 0)
      throw new RangeError(`${op}: quantized ${name} needs headDim to be a multiple of 8, got ${headDim}`);
    return bits === 4 ? KV_Q4 : KV_Q8;
  }
  o.storage(op, name, t);
  if (t.dtype !== 'f32' && t.dtype !== 'f16')
    throw new TypeError(`${op}: ${name} must be f32, f16 or quantized KV rows, got ${t}`);
  if (t.shape.length < 2) throw new RangeError(`${op}: ${name} must be a matrix [rows, n], got ${t}`);
  if (width(t) !== cols)
    throw new RangeError(`${op}: ${name} ${t} must have nKvHeads * headDim = ${cols} columns`);
  return t.dtype === 'f32' ? KV_F32 : KV_F16;
}

/** Rows of KV storage. */
export function kvCapacity(t: KvRows): number {
  return t.shape[0]!;
}

/** Throws if `out` shares memory with any part of KV storage `t`. */
export function checkNoOverlapKv(op: string, outName: string, out: Tensor, name: string, t: KvRows): void {
  if (t instanceof QuantizedTensor) {
    if (overlaps(out, t.packed) || overlaps(out, t.scales) || overlaps(out, t.biases))
      throw new RangeError(`${op}: ${outName} must not overlap ${name}`);
  } else checkNoOverlap(op, outName, out, name, t);
}

function sameKvFormat(a: KvRows, b: KvRows): boolean {
  if (a instanceof QuantizedTensor)
    return (
      b instanceof QuantizedTensor && a.spec.bits === b.spec.bits && a.spec.groupSize === b.spec.groupSize
    );
  return !(b instanceof QuantizedTensor) && a.dtype === b.dtype;
}

/** Checks the arguments of `attention`; returns the storage format code (see {@link checkKvRows}). */
export function checkAttention(
  o: O,
  out: Tensor,
  q: Tensor,
  k: KvRows,
  v: KvRows,
  opts: AttentionOptions,
): number {
  const op = 'attention';
  o.checkLive(op);
  o.matrix(op, 'out', out, 'f32');
  o.matrix(op, 'q', q, 'f32');
  if (typeof opts !== 'object' || opts === null) throw new TypeError(`${op}: missing options`);
  checkInt(op, 'nHeads', opts.nHeads, 1, MAX);
  checkInt(op, 'nKvHeads', opts.nKvHeads, 1, opts.nHeads);
  checkInt(op, 'headDim', opts.headDim, 1, MAX);
  if (opts.nHeads % opts.nKvHeads !== 0)
    throw new RangeError(`${op}: nHeads ${opts.nHeads} is not a multiple of nKvHeads ${opts.nKvHeads}`);
  if (typeof opts.scale !== 'number' || !Number.isFinite(opts.scale))
    throw new RangeError(`${op}: scale must be a finite number, got ${opts.scale}`);
  if (opts.window !== undefined) checkInt(op, 'window', opts.window, 0, MAX);
  // checked here rather than passed to checkSoftcapValue: passing a float to a call V8 does not inline boxes it
  const softcap = opts.softcap;
  if (softcap !== undefined && !(typeof softcap === 'number' && softcap >= 0 && Number.isFinite(softcap)))
    checkSoftcapValue(op, softcap, true); // throws, naming the problem
  const kvWidth = opts.nKvHeads * opts.headDim;
  const format = checkKvRows(o, op, 'k', k, kvWidth, opts.headDim);
  checkKvRows(o, op, 'v', v, kvWidth, opts.headDim);
  if (!sameKvFormat(k, v)) throw new TypeError(`${op}: k ${k} and v ${v} must have the same storage format`);
  checkSameShape(op, 'out', out, 'q', q);
  if (width(q) !== opts.nHeads * opts.headDim)
    throw new RangeError(`${op}: q ${q} must have nHeads * headDim = ${opts.nHeads * opts.headDim} columns`);
  const capacity = kvCapacity(k);
  if (kvCapacity(v) !== capacity) throw new RangeError(`${op}: k ${k} and v ${v} differ in rows`);
  checkInt(op, 'startPos', opts.startPos, 0, MAX);
  const keep = opts.keep ?? 0;
  checkInt(op, 'keep', keep, 0, capacity);
  const window = opts.window ?? 0;
  const last = opts.startPos + q.shape[0]! - 1;
  const lo = Math.max(keep, window > 0 ? opts.startPos - window + 1 : 0);
  if (lo <= last && last - lo >= capacity - keep)
    throw new RangeError(
      `${op}: the cache's ${capacity} rows (keep ${keep}) cannot hold positions ${lo}..${last}, which queries at ${opts.startPos}..${last} see`,
    );
  checkNoOverlap(op, 'out', out, 'q', q);
  checkNoOverlapKv(op, 'out', out, 'k', k);
  checkNoOverlapKv(op, 'out', out, 'v', v);
  return format;
}

/** Checks the arguments of `writeKv`; returns the storage format code (see {@link checkKvRows}). */
export function checkWriteKv(o: O, dst: KvRows, src: Tensor, opts: WriteKvOptions): number {
  const op = 'writeKv';
  o.checkLive(op);
  o.matrix(op, 'src', src, 'f32');
  if (typeof opts !== 'object' || opts === null) throw new TypeError(`${op}: missing options`);
  const w = width(src);
  const format = checkKvRows(o, op, 'dst', dst, w);
  const capacity = kvCapacity(dst);
  checkInt(op, 'startPos', opts.startPos, 0, MAX);
  const keep = opts.keep ?? 0;
  checkInt(op, 'keep', keep, 0, capacity);
  const rows = src.shape[0]!;
  const ringed = opts.startPos + rows - Math.max(keep, opts.startPos);
  if (rows > 0 && ringed > capacity - keep)
    throw new RangeError(
      `${op}: ${rows} rows from position ${opts.startPos} would land on each other in ${capacity} rows (keep ${keep})`,
    );
  checkNoOverlapKv(op, 'src', src, 'dst', dst);
  return format;
}
