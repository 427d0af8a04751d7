import { DTYPE_BYTES, type DType, QUANT_BITS, QUANT_GROUP_SIZES } from './dtype';
import { GGML_BLOCK_TYPES, GgmlTensor, isGgmlBlockType } from './ggml';
import { QuantizedTensor, Tensor, type Weight } from './tensor';

/** What every backend's storage handle carries. */
export interface StorageBase {
  readonly dtype: DType;
  readonly byteLength: number;
  freed: boolean;
}

function describe(t: unknown): string {
  return t instanceof Tensor || t instanceof QuantizedTensor || t instanceof GgmlTensor
    ? String(t)
    : typeof t;
}

/**
 * The storages one backend instance owns, and the argument checks every op runs before touching memory. Shared by the
 * reference and WASM backends so both reject exactly the same calls. Checks allocate nothing unless they throw.
 */
export class Owner<S extends StorageBase> {
  private readonly live = new Set<S>();
  private readonly dead = new WeakSet<object>();
  private bytesInUse = 0;
  disposed = false;

  constructor(readonly backendName: string) {}

  add(s: S): void {
    this.live.add(s);
    this.bytesInUse += s.byteLength;
  }

  release(s: S): void {
    if (!this.live.delete(s)) return;
    s.freed = true;
    this.dead.add(s);
    this.bytesInUse -= s.byteLength;
  }

  /** Marks everything freed and returns what was live. */
  releaseAll(): S[] {
    const all = [...this.live];
    for (const s of all) this.release(s);
    this.disposed = true;
    return all;
  }

  memoryInUse(): number {
    return this.bytesInUse;
  }

  checkLive(op: string): void {
    if (this.disposed) throw new TypeError(`${op}: the ${this.backendName} backend was disposed`);
  }

  /** The storage of `t` after checking it is a live tensor of this instance whose range fits its storage. */
  storage(op: string, arg: string, t: Tensor, part = ''): S {
    if (!(t instanceof Tensor))
      throw new TypeError(`${op}: ${arg}${part} must be a Tensor, got ${describe(t)}`);
    const s = t.storage as S;
    if (!this.live.has(s)) {
      if (this.dead.has(s)) throw new TypeError(`${op}: ${arg}${part} ${t} was freed`);
      if (this.disposed) throw new TypeError(`${op}: the ${this.backendName} backend was disposed`);
      const other = t.backendName === this.backendName ? 'another instance of this backend' : t.backendName;
      throw new TypeError(
        `${op}: ${arg}${part} ${t} belongs to ${other}, not this ${this.backendName} backend`,
      );
    }
    if (t.dtype !== s.dtype)
      throw new TypeError(`${op}: ${arg}${part} ${t} has dtype ${t.dtype} but its storage holds ${s.dtype}`);
    const bytes = DTYPE_BYTES[t.dtype];
    if (!Number.isSafeInteger(t.offset) || t.offset < 0 || (t.offset + t.size) * bytes > s.byteLength)
      throw new RangeError(
        `${op}: ${arg}${part} ${t} at offset ${t.offset} runs past its storage (${s.byteLength / bytes} elements)`,
      );
    return s;
  }

  /** Checks `t` is live and of `dtype`. */
  tensor(op: string, arg: string, t: Tensor, dtype: DType, part = ''): S {
    const s = this.storage(op, arg, t, part);
    if (t.dtype !== dtype) throw new TypeError(`${op}: ${arg}${part} must be ${dtype}, got ${t}`);
    return s;
  }

  /** Checks `t` is a live `dtype` matrix (2 or more dimensions: `[rows, ...]`). */
  matrix(op: string, arg: string, t: Tensor, dtype: DType): S {
    const s = this.tensor(op, arg, t, dtype);
    if (t.shape.length < 2) throw new RangeError(`${op}: ${arg} must be a matrix [rows, n], got ${t}`);
    return s;
  }

  /** Checks a dense (f32/f16/bf16 `[rows, cols]`), quantized or GGML weight and all of its parts. */
  weight(op: string, arg: string, w: Weight): void {
    if (w instanceof QuantizedTensor) {
      this.quantized(op, arg, w);
      return;
    }
    if (w instanceof GgmlTensor) {
      this.ggml(op, arg, w);
      return;
    }
    this.storage(op, arg, w);
    if (w.dtype !== 'f32' && w.dtype !== 'f16' && w.dtype !== 'bf16')
      throw new TypeError(`${op}: ${arg} must be f32, f16, bf16 or quantized, got ${w}`);
    if (w.shape.length !== 2) throw new RangeError(`${op}: ${arg} must be 2-D [rows, cols], got ${w}`);
  }

  ggml(op: string, arg: string, w: GgmlTensor): void {
    checkGgml(this, op, arg, w);
  }

  quantized(op: string, arg: string, w: QuantizedTensor): void {
    if (!(w instanceof QuantizedTensor)) throw new TypeError(`${op}: ${arg} must be a QuantizedTensor`);
    const { spec, shape } = w;
    if (!QUANT_BITS.includes(spec.bits) || !QUANT_GROUP_SIZES.includes(spec.groupSize))
      throw new RangeError(`${op}: ${arg} ${w} has an unsupported quantization`);
    const rows = shape[0];
    const cols = shape[1];
    if (!Number.isSafeInteger(rows) || !Number.isSafeInteger(cols) || rows < 0 || cols % spec.groupSize !== 0)
      throw new RangeError(`${op}: ${arg} ${w}: cols must be a multiple of the group size`);
    // The part names are passed separately: building `${arg}.packed` on every call would allocate per op.
    this.tensor(op, arg, w.packed, 'u32', '.packed');
    this.tensor(op, arg, w.scales, spec.scaleDtype, '.scales');
    this.tensor(op, arg, w.biases, spec.scaleDtype, '.biases');
    const words = (cols * spec.bits) / 32;
    const groups = cols / spec.groupSize;
    if (!hasShape2(w.packed, rows, words))
      throw new RangeError(`${op}: ${arg}.packed must be [${rows}, ${words}], got ${w.packed}`);
    if (!hasShape2(w.scales, rows, groups) || !hasShape2(w.biases, rows, groups))
      throw new RangeError(
        `${op}: ${arg}.scales/biases must be [${rows}, ${groups}], got ${w.scales} / ${w.biases}`,
      );
  }
}

/** Checks a GGML weight: a known type, cols whole blocks, and `blocks` a live u8 `[rows, rowBytes]`. */
export function checkGgml(o: Owner<StorageBase>, op: string, arg: string, w: GgmlTensor): void {
  if (!(w instanceof GgmlTensor)) throw new TypeError(`${op}: ${arg} must be a GgmlTensor`);
  if (!isGgmlBlockType(w.type))
    throw new TypeError(`${op}: ${arg} has an unknown GGML type ${String(w.type)}`);
  const t = GGML_BLOCK_TYPES[w.type];
  const rows = w.shape[0];
  const cols = w.shape[1];
  if (
    !Number.isSafeInteger(rows) ||
    !Number.isSafeInteger(cols) ||
    rows < 0 ||
    cols < 0 ||
    cols % t.blockSize !== 0
  )
    throw new RangeError(
      `${op}: ${arg} ${w}: cols must be a multiple of the ${w.type} block size ${t.blockSize}`,
    );
  o.tensor(op, arg, w.blocks, 'u8', '.blocks');
  const rowBytes = (cols / t.blockSize) * t.blockBytes;
  if (!hasShape2(w.blocks, rows, rowBytes))
    throw new RangeError(`${op}: ${arg}.blocks must be [${rows}, ${rowBytes}], got ${w.blocks}`);
}

function hasShape2(t: Tensor, rows: number, cols: number): boolean {
  return t.shape.length === 2 && t.shape[0] === rows && t.shape[1] === cols;
}

/** Rows and columns of a weight. */
export function weightRows(w: Weight): number {
  return w.shape[0]!;
}
export function weightCols(w: Weight): number {
  return w.shape[1]!;
}

/** Product of all dimensions but the first (the row width of a matrix). */
export function width(t: Tensor): number {
  let n = 1;
  for (let i = 1; i < t.shape.length; i++) n *= t.shape[i]!;
  return n;
}

export function sameShape(a: Tensor, b: Tensor): boolean {
  if (a.shape.length !== b.shape.length) return false;
  for (let i = 0; i < a.shape.length; i++) if (a.shape[i] !== b.shape[i]) return false;
  return true;
}

/** Throws unless `a` and `b` have the same shape. */
export function checkSameShape(op: string, aName: string, a: Tensor, bName: string, b: Tensor): void {
  if (!sameShape(a, b))
    throw new RangeError(`${op}: ${aName} ${a} and ${bName} ${b} must have the same shape`);
}

/** Whether two tensors of one backend share any byte. */
export function overlaps(a: Tensor, b: Tensor): boolean {
  if (a.storage !== b.storage || a.size === 0 || b.size === 0) return false;
  const ea = DTYPE_BYTES[a.dtype];
  const eb = DTYPE_BYTES[b.dtype];
  return a.offset * ea < (b.offset + b.size) * eb && b.offset * eb < (a.offset + a.size) * ea;
}

/** Throws if output `out` shares memory with input `inp`. */
export function checkNoOverlap(op: string, outName: string, out: Tensor, inName: string, inp: Tensor): void {
  if (overlaps(out, inp)) throw new RangeError(`${op}: ${outName} must not overlap ${inName}`);
}

/** Throws unless `v` is an integer in `[min, max]`. */
export function checkInt(op: string, name: string, v: number, min: number, max: number): void {
  if (!Number.isSafeInteger(v) || v < min || v > max)
    throw new RangeError(`${op}: ${name} must be an integer in [${min}, ${max}], got ${v}`);
}
