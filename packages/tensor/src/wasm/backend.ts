/**
 * The WASM backend (`wasm`): tensors live in the kernels' linear memory, ops validate at the tensor level and then
 * call one `@mnemo/kernels` export each. In steady state no op allocates on the JS heap: pointers are plain numbers,
 * embedding ids go through a preallocated (growable) i32 staging buffer, and `read`/`write` use cached whole-heap views
 * (rebuilt only after the memory grows).
 */
import { loadKernels } from '@mnemo/kernels';
import { type AttentionOptions, BACKEND_API_VERSION, type Backend, type RopeOptions } from '../backend';
import { DTYPE_BYTES, type DType, isDType, type QuantSpec } from '../dtype';
import { Owner, type StorageBase, width } from '../owner';
import { packedRowWords } from '../quant';
import { QuantizedTensor, Tensor, type Weight } from '../tensor';
import {
  checkAdd,
  checkArgmax,
  checkAttention,
  checkCopyRows,
  checkEmbedding,
  checkFree,
  checkMatmul,
  checkRead,
  checkReadBytes,
  checkRmsnorm,
  checkRope,
  checkShape,
  checkSoftmax,
  checkSwiglu,
  checkToF32,
  checkUpload,
  checkUploadQuantized,
  checkView,
  checkWrite,
} from '../validate';
import type { Kernels, WeightDType } from './kernels';

/** A wasm allocation; every view of it shares this handle. */
interface WasmStorage extends StorageBase {
  readonly ptr: number;
}

/** Byte address of element 0 of `t`. */
function addr(t: Tensor): number {
  return (t.storage as WasmStorage).ptr + t.offset * DTYPE_BYTES[t.dtype];
}

class WasmBackend implements Backend {
  readonly apiVersion = BACKEND_API_VERSION;
  readonly name = 'wasm';
  private readonly owner = new Owner<WasmStorage>('wasm');
  private buffer: ArrayBuffer;
  private u8: Uint8Array;
  private u16: Uint16Array;
  private u32: Uint32Array;
  private i32: Int32Array;
  private f32: Float32Array;
  /** Staging buffer for embedding ids. */
  private idsPtr = 0;
  private idsCapacity = 0;

  constructor(private readonly k: Kernels) {
    this.buffer = k.memory.buffer;
    this.u8 = new Uint8Array(this.buffer);
    this.u16 = new Uint16Array(this.buffer);
    this.u32 = new Uint32Array(this.buffer);
    this.i32 = new Int32Array(this.buffer);
    this.f32 = new Float32Array(this.buffer);
  }

  /** Rebuilds the cached heap views if the memory grew (which detaches the old buffer). */
  private heap(): void {
    const b = this.k.memory.buffer;
    if (b === this.buffer) return;
    this.buffer = b;
    this.u8 = new Uint8Array(b);
    this.u16 = new Uint16Array(b);
    this.u32 = new Uint32Array(b);
    this.i32 = new Int32Array(b);
    this.f32 = new Float32Array(b);
  }

  private allocBytes(op: string, bytes: number): number {
    if (bytes === 0) return 0;
    const ptr = this.k.alloc(bytes);
    if (!ptr) throw new RangeError(`${op}: the wasm heap could not allocate ${bytes} bytes`);
    if (ptr % 8 !== 0) throw new Error(`${op}: kernels.alloc returned a misaligned pointer ${ptr}`);
    return ptr;
  }

  // ---- memory ----------------------------------------------------------------------------------------------------

  alloc(dtype: DType, shape: readonly number[]): Tensor {
    this.owner.checkLive('alloc');
    if (!isDType(dtype)) throw new TypeError(`alloc: unknown dtype ${String(dtype)}`);
    const byteLength = checkShape('alloc', shape) * DTYPE_BYTES[dtype];
    const s: WasmStorage = { ptr: this.allocBytes('alloc', byteLength), byteLength, dtype, freed: false };
    this.owner.add(s);
    return new Tensor(this.name, dtype, [...shape], s, 0);
  }

  upload(dtype: DType, shape: readonly number[], data: ArrayBufferView): Tensor {
    this.owner.checkLive('upload');
    checkUpload('upload', dtype, shape, data);
    const t = this.alloc(dtype, shape);
    this.copyIn(addr(t), data);
    return t;
  }

  uploadQuantized(
    spec: QuantSpec,
    shape: readonly [rows: number, cols: number],
    packed: ArrayBufferView,
    scales: ArrayBufferView,
    biases: ArrayBufferView,
  ): QuantizedTensor {
    this.owner.checkLive('uploadQuantized');
    checkUploadQuantized(spec, shape, packed, scales, biases);
    const [rows, cols] = shape;
    const groups = cols / spec.groupSize;
    return new QuantizedTensor(
      { bits: spec.bits, groupSize: spec.groupSize, scaleDtype: spec.scaleDtype },
      [rows, cols],
      this.upload('u32', [rows, packedRowWords(spec, cols)], packed),
      this.upload(spec.scaleDtype, [rows, groups], scales),
      this.upload(spec.scaleDtype, [rows, groups], biases),
    );
  }

  view(t: Tensor, shape: readonly number[], offset = 0): Tensor {
    checkView(this.owner, t, shape, offset);
    return new Tensor(this.name, t.dtype, [...shape], t.storage, t.offset + offset);
  }

  /** Copies `data` to byte address `at` (already validated); allocation-free for typed arrays. */
  private copyIn(at: number, data: ArrayBufferView): void {
    if (data.byteLength === 0) return;
    this.heap();
    if (data instanceof Uint8Array) this.u8.set(data, at);
    else if (data instanceof Float32Array) this.f32.set(data, at >>> 2);
    else if (data instanceof Uint16Array) this.u16.set(data, at >>> 1);
    else if (data instanceof Uint32Array) this.u32.set(data, at >>> 2);
    else if (data instanceof Int32Array) this.i32.set(data, at >>> 2);
    else this.u8.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), at);
  }

  write(dst: Tensor, src: ArrayBufferView): void {
    checkWrite(this.owner, dst, src);
    this.copyIn(addr(dst), src);
  }

  read(t: Tensor, out?: Float32Array): Float32Array {
    checkRead(this.owner, t, out);
    this.heap();
    const start = addr(t) >>> 2;
    const n = t.size;
    if (out === undefined) return n === 0 ? new Float32Array(0) : this.f32.slice(start, start + n);
    const heap = this.f32;
    for (let i = 0; i < n; i++) out[i] = heap[start + i]!;
    return out;
  }

  readBytes(t: Tensor, out?: Uint8Array): Uint8Array {
    checkReadBytes(this.owner, t, out);
    this.heap();
    const start = addr(t);
    const n = t.byteLength;
    if (out === undefined) return n === 0 ? new Uint8Array(0) : this.u8.slice(start, start + n);
    const heap = this.u8;
    for (let i = 0; i < n; i++) out[i] = heap[start + i]!;
    return out;
  }

  private release(s: WasmStorage): void {
    this.owner.release(s);
    if (s.ptr !== 0) this.k.free(s.ptr);
  }

  free(t: Weight): void {
    checkFree(this.owner, t);
    if (t instanceof QuantizedTensor) {
      this.release(t.packed.storage as WasmStorage);
      this.release(t.scales.storage as WasmStorage);
      this.release(t.biases.storage as WasmStorage);
    } else {
      this.release(t.storage as WasmStorage);
    }
  }

  memoryInUse(): number {
    return this.owner.memoryInUse();
  }

  dispose(): void {
    if (this.owner.disposed) return;
    for (const s of this.owner.releaseAll()) if (s.ptr !== 0) this.k.free(s.ptr);
    if (this.idsPtr !== 0) this.k.free(this.idsPtr);
    this.idsPtr = 0;
    this.idsCapacity = 0;
  }

  // ---- ops -------------------------------------------------------------------------------------------------------

  copyRows(dst: Tensor, dstRow: number, src: Tensor, srcRow: number, rows: number): void {
    checkCopyRows(this.owner, dst, dstRow, src, srcRow, rows);
    const rowBytes = width(dst) * DTYPE_BYTES[dst.dtype];
    if (rows === 0 || rowBytes === 0) return;
    this.k.copy(addr(dst) + dstRow * rowBytes, addr(src) + srcRow * rowBytes, rows * rowBytes);
  }

  toF32(out: Tensor, src: Tensor): void {
    checkToF32(this.owner, out, src);
    if (out.size === 0) return;
    this.k.toF32(addr(out), addr(src), out.size, src.dtype as WeightDType);
  }

  matmul(y: Tensor, x: Tensor, w: Weight, bias?: Tensor): void {
    checkMatmul(this.owner, y, x, w, bias);
    const rows = x.shape[0]!;
    const inDim = width(x);
    const outDim = w.shape[0]!;
    if (rows === 0 || outDim === 0) return;
    if (inDim === 0) {
      this.fillBias(y, bias);
      return;
    }
    const b = bias === undefined ? undefined : addr(bias);
    if (w instanceof QuantizedTensor) {
      const { bits, groupSize, scaleDtype } = w.spec;
      this.k.matmulQ(
        addr(y),
        addr(x),
        addr(w.packed),
        addr(w.scales),
        addr(w.biases),
        rows,
        inDim,
        outDim,
        bits,
        groupSize,
        scaleDtype,
        b,
      );
    } else {
      this.k.matmul(addr(y), addr(x), addr(w), rows, inDim, outDim, w.dtype as WeightDType, b);
    }
  }

  /** `y[r] = bias` (or 0): a matmul with an empty inner dimension. */
  private fillBias(y: Tensor, bias: Tensor | undefined): void {
    this.heap();
    const outDim = width(y);
    const ys = addr(y) >>> 2;
    for (let r = 0; r < y.shape[0]!; r++)
      for (let o = 0; o < outDim; o++)
        this.f32[ys + r * outDim + o] = bias === undefined ? 0 : this.f32[(addr(bias) >>> 2) + o]!;
  }

  embedding(out: Tensor, table: Weight, ids: Int32Array): void {
    checkEmbedding(this.owner, out, table, ids);
    const n = ids.length;
    const vocab = table.shape[0]!;
    const dim = table.shape[1]!;
    if (n === 0 || dim === 0) return;
    const idsPtr = this.stageIds(ids);
    if (table instanceof QuantizedTensor) {
      const { bits, groupSize, scaleDtype } = table.spec;
      this.k.embeddingQ(
        addr(out),
        addr(table.packed),
        addr(table.scales),
        addr(table.biases),
        idsPtr,
        n,
        vocab,
        dim,
        bits,
        groupSize,
        scaleDtype,
      );
    } else {
      this.k.embedding(addr(out), addr(table), idsPtr, n, vocab, dim, table.dtype as WeightDType);
    }
  }

  /** Copies `ids` into the staging buffer (grown by doubling when too small) and returns its address. */
  private stageIds(ids: Int32Array): number {
    if (ids.length > this.idsCapacity) {
      const capacity = Math.max(ids.length, 2 * this.idsCapacity, 256);
      const ptr = this.allocBytes('embedding', capacity * 4);
      if (this.idsPtr !== 0) this.k.free(this.idsPtr);
      this.idsPtr = ptr;
      this.idsCapacity = capacity;
    }
    this.heap();
    this.i32.set(ids, this.idsPtr >>> 2);
    return this.idsPtr;
  }

  rmsnorm(out: Tensor, x: Tensor, weight: Tensor, eps: number): void {
    checkRmsnorm(this.owner, out, x, weight, eps);
    if (out.size === 0) return;
    this.k.rmsnorm(addr(out), addr(x), addr(weight), x.shape[0]!, width(x), eps);
  }

  rope(x: Tensor, cos: Tensor, sin: Tensor, opts: RopeOptions): void {
    checkRope(this.owner, x, cos, sin, opts);
    const rows = x.shape[0]!;
    const rotDim = 2 * cos.shape[1]!;
    if (rows === 0 || rotDim === 0) return;
    this.k.rope(addr(x), addr(cos), addr(sin), rows, opts.nHeads, opts.headDim, rotDim, opts.layout);
  }

  swiglu(out: Tensor, gate: Tensor, up: Tensor): void {
    checkSwiglu(this.owner, out, gate, up);
    if (out.size === 0) return;
    this.k.swiglu(addr(out), addr(gate), addr(up), out.size);
  }

  add(out: Tensor, a: Tensor, b: Tensor): void {
    checkAdd(this.owner, out, a, b);
    if (out.size === 0) return;
    this.k.add(addr(out), addr(a), addr(b), out.size);
  }

  softmax(x: Tensor): void {
    checkSoftmax(this.owner, x);
    if (x.size === 0) return;
    this.k.softmax(addr(x), x.shape[0]!, width(x));
  }

  argmax(x: Tensor, row = 0): number {
    checkArgmax(this.owner, x, row);
    const n = width(x);
    return this.k.argmax(addr(x) + row * n * 4, n);
  }

  attention(out: Tensor, q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions): void {
    checkAttention(this.owner, out, q, k, v, opts);
    const rows = q.shape[0]!;
    if (rows === 0) return;
    this.k.attention(
      addr(out),
      addr(q),
      addr(k),
      addr(v),
      rows,
      opts.startPos,
      opts.nHeads,
      opts.nKvHeads,
      opts.headDim,
      opts.scale,
      opts.window ?? 0,
    );
  }
}

/**
 * Creates a WASM backend (`name: 'wasm'`) on a fresh `@mnemo/kernels` instance, or on `kernels` when given (anything
 * implementing the {@link Kernels} shape). Each instance owns its tensors; tensors of another instance are refused.
 */
export async function createWasmBackend(kernels?: Kernels): Promise<Backend> {
  const k = kernels ?? (await loadDefaultKernels());
  return new WasmBackend(k);
}

async function loadDefaultKernels(): Promise<Kernels> {
  return loadKernels();
}
