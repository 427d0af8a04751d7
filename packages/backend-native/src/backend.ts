/**
 * The native backend (`native`): tensors live in buffers of the addon (native memory, no 4 GiB limit), every op is
 * validated here with the same checks as the built-in backends, then runs in C on the addon's thread pool.
 *
 * Weight layout: a 2-D f16/bf16 upload and every quantized upload are stored as panels of 16 rows (see
 * `native/src/mn.h`), the layout the matmul kernels read; a 2-D f32 matrix is converted to panels the first time it is
 * a matmul or embedding weight. Any other use of a panel storage (read, write, copyRows, an elementwise op, a view
 * used as an activation) first converts it back to row-major, in place; a weight that is a view of part of a storage
 * is copied into a temporary panel buffer for that call. Layouts only change speed and memory, never results.
 */
import {
  type AttentionOptions,
  BACKEND_API_VERSION,
  type Backend,
  checkAdd,
  checkArgmax,
  checkAttention,
  checkCopyRows,
  checkEmbedding,
  checkFree,
  checkGeluGlu,
  checkMatmul,
  checkQuantSpec,
  checkRead,
  checkReadBytes,
  checkRmsnorm,
  checkRope,
  checkScale,
  checkShape,
  checkSoftcap,
  checkSoftmax,
  checkSwiglu,
  checkToF32,
  checkUpload,
  checkUploadGgml,
  checkUploadQuantized,
  checkView,
  checkWrite,
  checkWriteKv,
  DTYPE_BYTES,
  type DType,
  type FileRange,
  GGML_BLOCK_TYPES,
  type GgmlBlockType,
  GgmlTensor,
  isDType,
  type KvRows,
  Owner,
  packedRowWords,
  QuantizedTensor,
  type QuantSpec,
  type RopeOptions,
  type StorageBase,
  Tensor,
  type Weight,
  type WriteKvOptions,
  width,
} from '@mnemo/tensor';
import type { NativeContext } from './addon';

/**
 * The panel layout a buffer holds: kind 0 dense (arg = element bytes), 1 affine codes (arg = bits), 2 GGML blocks
 * decoded into codes, scales and offsets (arg = the GGML type id; see `native/src/ggml.c`).
 */
interface Panel {
  readonly kind: 0 | 1 | 2;
  readonly rows: number;
  readonly cols: number;
  readonly arg: number;
}

interface NativeStorage extends StorageBase {
  readonly handle: number;
  /** null while the buffer holds the row-major bytes. */
  panel: Panel | null;
}

/** dtype codes of the addon */
function dtypeCode(d: DType): number {
  return d === 'f32' ? 0 : d === 'f16' ? 1 : 2;
}

function byteOffset(t: Tensor): number {
  return t.offset * DTYPE_BYTES[t.dtype];
}

function handle(t: Tensor): number {
  return (t.storage as NativeStorage).handle;
}

/** The native backend, with what it adds to {@link Backend}. */
export interface NativeBackend extends Backend {
  /** `native-f32`, or `native-f32+int8a` with int8 activations. */
  readonly numerics: string;
  readonly int8Activations: boolean;
  /** Threads computing (the calling thread included). */
  readonly threads: number;
  /** The ISA level the kernels run at (`avx512vnni`, `avx512`, `avx2`, `dotprod`, `neon`, `scalar`). */
  readonly isa: string;
  /** Bytes of native buffers held (panel padding included; scratch excluded). */
  nativeBytes(): number;
  /** `upload` reading the bytes from an open file straight into native memory (`pread`; no JavaScript copy). */
  uploadFromFile(dtype: DType, shape: readonly number[], src: FileRange): Tensor;
  /** `uploadQuantized` with each part read from its file range, packed on the way in a few rows at a time. */
  uploadQuantizedFromFile(
    spec: QuantSpec,
    shape: readonly [rows: number, cols: number],
    packed: FileRange,
    scales: FileRange,
    biases: FileRange,
  ): QuantizedTensor;
  /** `uploadGgml` with the blocks read from a file range and decoded a few rows at a time (no JavaScript copy). */
  uploadGgmlFromFile(
    type: GgmlBlockType,
    shape: readonly [rows: number, cols: number],
    src: FileRange,
  ): GgmlTensor;
}

export class NativeBackendImpl implements NativeBackend {
  readonly apiVersion = BACKEND_API_VERSION;
  readonly name = 'native';
  readonly numerics: string;
  private readonly owner = new Owner<NativeStorage>('native');
  /** Temporary panel buffers of the current op (weights that are views of part of a storage). */
  private readonly temps: number[] = [];
  // the weight arguments of the current matmul / embedding
  private wH = 0;
  private wQuant = 0;
  private wType = 0;
  private wGroup = 0;
  private wSd = 0;
  private wS = 0;
  private wB = 0;

  constructor(
    private readonly ctx: NativeContext,
    readonly int8Activations: boolean,
  ) {
    this.numerics = int8Activations ? 'native-f32+int8a' : 'native-f32';
  }

  get threads(): number {
    return this.ctx.threads;
  }

  get isa(): string {
    return this.ctx.level;
  }

  nativeBytes(): number {
    return this.owner.disposed ? 0 : this.ctx.bytes();
  }

  // ---- memory ----------------------------------------------------------------------------------------------------

  private allocHandle(op: string, bytes: number): number {
    try {
      return this.ctx.alloc(bytes);
    } catch (e) {
      if (e instanceof RangeError)
        throw new RangeError(`${op}: could not allocate ${bytes} bytes of native memory`);
      throw e;
    }
  }

  private newStorage(dtype: DType, byteLength: number, h: number, panel: Panel | null): NativeStorage {
    const s: NativeStorage = { handle: h, panel, byteLength, dtype, freed: false };
    this.owner.add(s);
    return s;
  }

  alloc(dtype: DType, shape: readonly number[]): Tensor {
    this.owner.checkLive('alloc');
    if (!isDType(dtype)) throw new TypeError(`alloc: unknown dtype ${String(dtype)}`);
    const bytes = checkShape('alloc', shape) * DTYPE_BYTES[dtype];
    const s = this.newStorage(dtype, bytes, this.allocHandle('alloc', bytes), null);
    return new Tensor(this.name, dtype, [...shape], s, 0);
  }

  /** A panel buffer for `rows` x `cols` of the given kind, filled from `data` (row-major). */
  private packedHandle(
    op: string,
    data: ArrayBufferView,
    rows: number,
    cols: number,
    kind: 0 | 1,
    arg: number,
  ): number {
    const h = this.allocHandle(op, panelBytes(kind, rows, cols, arg));
    try {
      this.ctx.pack(h, data, rows, cols, kind, arg, 0, rows);
    } catch (e) {
      this.ctx.free(h);
      throw e;
    }
    return h;
  }

  upload(dtype: DType, shape: readonly number[], data: ArrayBufferView): Tensor {
    this.owner.checkLive('upload');
    checkUpload('upload', dtype, shape, data);
    const bytes = data.byteLength;
    if (shape.length === 2 && (dtype === 'f16' || dtype === 'bf16') && shape[0]! > 0 && shape[1]! > 0) {
      const panel: Panel = { kind: 0, rows: shape[0]!, cols: shape[1]!, arg: 2 };
      const h = this.packedHandle('upload', data, panel.rows, panel.cols, 0, 2);
      return new Tensor(this.name, dtype, [...shape], this.newStorage(dtype, bytes, h, panel), 0);
    }
    const t = this.alloc(dtype, shape);
    if (bytes > 0) this.ctx.write(handle(t), 0, data);
    return t;
  }

  uploadFromFile(dtype: DType, shape: readonly number[], src: FileRange): Tensor {
    const op = 'uploadFromFile';
    this.owner.checkLive(op);
    if (!isDType(dtype)) throw new TypeError(`${op}: unknown dtype ${String(dtype)}`);
    const bytes = checkShape(op, shape) * DTYPE_BYTES[dtype];
    checkFileRange(op, 'src', src);
    const panel: Panel | null =
      shape.length === 2 && (dtype === 'f16' || dtype === 'bf16') && shape[0]! > 0 && shape[1]! > 0
        ? { kind: 0, rows: shape[0]!, cols: shape[1]!, arg: 2 }
        : null;
    const h = this.fileHandle(op, src, bytes, panel);
    return new Tensor(this.name, dtype, [...shape], this.newStorage(dtype, bytes, h, panel), 0);
  }

  /** A buffer filled from a file range: packed when `panel` is given, else the bytes as they are. */
  private fileHandle(op: string, src: FileRange, bytes: number, panel: Panel | null): number {
    if (panel?.kind === 2) throw new TypeError(`${op}: GGML blocks are read with uploadGgmlFromFile`);
    const h = this.allocHandle(op, panel ? panelBytes(panel.kind, panel.rows, panel.cols, panel.arg) : bytes);
    try {
      if (panel) this.ctx.packFile(h, src.fd, src.position, panel.rows, panel.cols, panel.kind, panel.arg);
      else if (bytes > 0) this.ctx.readFile(h, 0, src.fd, src.position, bytes);
    } catch (e) {
      this.ctx.free(h);
      if (e instanceof RangeError) throw new RangeError(`${op}: ${e.message}`);
      throw e;
    }
    return h;
  }

  uploadQuantizedFromFile(
    spec: QuantSpec,
    shape: readonly [rows: number, cols: number],
    packed: FileRange,
    scales: FileRange,
    biases: FileRange,
  ): QuantizedTensor {
    const op = 'uploadQuantizedFromFile';
    this.owner.checkLive(op);
    checkQuantShape(op, spec, shape);
    checkFileRange(op, 'packed', packed);
    checkFileRange(op, 'scales', scales);
    checkFileRange(op, 'biases', biases);
    const [rows, cols] = shape;
    const groups = cols / spec.groupSize;
    const es = DTYPE_BYTES[spec.scaleDtype];
    const empty = rows === 0 || cols === 0;
    const made: number[] = [];
    const parts: NativeStorage[] = [];
    const part = (dtype: DType, src: FileRange, bytes: number, panel: Panel | null) => {
      const h = this.fileHandle(op, src, bytes, empty ? null : panel);
      made.push(h);
      parts.push({ handle: h, panel: empty ? null : panel, byteLength: bytes, dtype, freed: false });
    };
    try {
      part('u32', packed, rows * packedRowWords(spec, cols) * 4, { kind: 1, rows, cols, arg: spec.bits });
      part(spec.scaleDtype, scales, rows * groups * es, { kind: 0, rows, cols: groups, arg: es });
      part(spec.scaleDtype, biases, rows * groups * es, { kind: 0, rows, cols: groups, arg: es });
    } catch (e) {
      for (const h of made) this.ctx.free(h);
      throw e;
    }
    for (const s of parts) this.owner.add(s);
    return this.quantizedOf(spec, rows, cols, parts);
  }

  private quantizedOf(spec: QuantSpec, rows: number, cols: number, parts: NativeStorage[]): QuantizedTensor {
    const groups = cols / spec.groupSize;
    return new QuantizedTensor(
      { bits: spec.bits, groupSize: spec.groupSize, scaleDtype: spec.scaleDtype },
      [rows, cols],
      new Tensor(this.name, 'u32', [rows, packedRowWords(spec, cols)], parts[0]!, 0),
      new Tensor(this.name, spec.scaleDtype, [rows, groups], parts[1]!, 0),
      new Tensor(this.name, spec.scaleDtype, [rows, groups], parts[2]!, 0),
    );
  }

  uploadQuantized(
    spec: QuantSpec,
    shape: readonly [rows: number, cols: number],
    packed: ArrayBufferView,
    scales: ArrayBufferView,
    biases: ArrayBufferView,
  ): QuantizedTensor {
    const op = 'uploadQuantized';
    this.owner.checkLive(op);
    checkUploadQuantized(spec, shape, packed, scales, biases);
    const [rows, cols] = shape;
    const { bits, groupSize, scaleDtype } = spec;
    const groups = cols / groupSize;
    const es = DTYPE_BYTES[scaleDtype];
    const made: number[] = [];
    const parts: NativeStorage[] = [];
    try {
      const empty = rows === 0 || cols === 0;
      const part = (dtype: DType, data: ArrayBufferView, kind: 0 | 1, c: number, arg: number): void => {
        let h: number;
        let panel: Panel | null = null;
        if (empty) {
          h = this.allocHandle(op, data.byteLength);
          if (data.byteLength > 0) this.ctx.write(h, 0, data);
        } else {
          h = this.packedHandle(op, data, rows, c, kind, arg);
          panel = { kind, rows, cols: c, arg };
        }
        made.push(h);
        parts.push({ handle: h, panel, byteLength: data.byteLength, dtype, freed: false });
      };
      part('u32', packed, 1, cols, bits);
      part(scaleDtype, scales, 0, groups, es);
      part(scaleDtype, biases, 0, groups, es);
    } catch (e) {
      for (const h of made) this.ctx.free(h);
      throw e;
    }
    for (const s of parts) this.owner.add(s);
    return this.quantizedOf(spec, rows, cols, parts);
  }

  /**
   * GGML blocks are decoded at upload into the affine panel layout (codes, f32 scales and offsets per sub-block): the
   * blocks tensor's storage holds that layout, which only matmul and embedding read; reading the blocks back is an
   * error.
   */
  uploadGgml(
    type: GgmlBlockType,
    shape: readonly [rows: number, cols: number],
    blocks: ArrayBufferView,
  ): GgmlTensor {
    const op = 'uploadGgml';
    this.owner.checkLive(op);
    const rowBytes = checkUploadGgml(type, shape, blocks);
    const [rows, cols] = shape;
    const id = GGML_BLOCK_TYPES[type].id;
    const panel: Panel = { kind: 2, rows, cols, arg: id };
    const h = this.allocHandle(op, this.ggmlBytes(op, id, rows, cols));
    try {
      if (rows > 0 && cols > 0) this.ctx.ggmlPack(h, blocks, id, rows, cols, 0, rows);
    } catch (e) {
      this.ctx.free(h);
      throw e;
    }
    const s = this.newStorage('u8', rows * rowBytes, h, panel);
    return new GgmlTensor(type, [rows, cols], new Tensor(this.name, 'u8', [rows, rowBytes], s, 0));
  }

  /** `uploadGgml` with the blocks read from a file range, decoded a few rows at a time (no JavaScript copy). */
  uploadGgmlFromFile(
    type: GgmlBlockType,
    shape: readonly [rows: number, cols: number],
    src: FileRange,
  ): GgmlTensor {
    const op = 'uploadGgmlFromFile';
    this.owner.checkLive(op);
    checkFileRange(op, 'src', src);
    if (!Array.isArray(shape) || shape.length !== 2)
      throw new RangeError(`${op}: shape must be [rows, cols]`);
    checkShape(op, shape);
    const [rows, cols] = shape;
    const info = GGML_BLOCK_TYPES[type];
    if (info === undefined || !Object.hasOwn(GGML_BLOCK_TYPES, type))
      throw new TypeError(
        `${op}: type must be one of ${Object.keys(GGML_BLOCK_TYPES).join(', ')}, got ${String(type)}`,
      );
    if (cols % info.blockSize !== 0)
      throw new RangeError(
        `${op}: cols ${cols} is not a multiple of the ${type} block size ${info.blockSize}`,
      );
    const rowBytes = (cols / info.blockSize) * info.blockBytes;
    const panel: Panel = { kind: 2, rows, cols, arg: info.id };
    const h = this.allocHandle(op, this.ggmlBytes(op, info.id, rows, cols));
    try {
      if (rows > 0 && cols > 0) this.ctx.ggmlPackFile(h, src.fd, src.position, info.id, rows, cols);
    } catch (e) {
      this.ctx.free(h);
      if (e instanceof RangeError) throw new RangeError(`${op}: ${e.message}`);
      throw e;
    }
    const s = this.newStorage('u8', rows * rowBytes, h, panel);
    return new GgmlTensor(type, [rows, cols], new Tensor(this.name, 'u8', [rows, rowBytes], s, 0));
  }

  private ggmlBytes(op: string, id: number, rows: number, cols: number): number {
    const n = this.ctx.ggmlBytes(id, rows, cols);
    if (n < 0) throw new RangeError(`${op}: a [${rows}, ${cols}] GGML weight is too large`);
    return n;
  }

  view(t: Tensor, shape: readonly number[], offset = 0): Tensor {
    checkView(this.owner, t, shape, offset);
    return new Tensor(this.name, t.dtype, [...shape], t.storage, t.offset + offset);
  }

  write(dst: Tensor, src: ArrayBufferView): void {
    checkWrite(this.owner, dst, src);
    this.plain(dst, 'write');
    if (src.byteLength > 0) this.ctx.write(handle(dst), byteOffset(dst), src);
  }

  read(t: Tensor, out?: Float32Array): Float32Array {
    checkRead(this.owner, t, out);
    this.plain(t, 'read');
    const res = out ?? new Float32Array(t.size);
    if (t.size > 0) this.ctx.read(handle(t), byteOffset(t), res);
    return res;
  }

  readBytes(t: Tensor, out?: Uint8Array): Uint8Array {
    checkReadBytes(this.owner, t, out);
    this.plain(t, 'readBytes');
    const res = out ?? new Uint8Array(t.byteLength);
    if (res.byteLength > 0) this.ctx.read(handle(t), byteOffset(t), res);
    return res;
  }

  private release(s: NativeStorage): void {
    this.owner.release(s);
    this.ctx.free(s.handle);
  }

  free(t: Weight): void {
    checkFree(this.owner, t);
    if (t instanceof QuantizedTensor) {
      this.release(t.packed.storage as NativeStorage);
      this.release(t.scales.storage as NativeStorage);
      this.release(t.biases.storage as NativeStorage);
    } else if (t instanceof GgmlTensor) {
      this.release(t.blocks.storage as NativeStorage);
    } else {
      this.release(t.storage as NativeStorage);
    }
  }

  memoryInUse(): number {
    return this.owner.memoryInUse();
  }

  dispose(): void {
    if (this.owner.disposed) return;
    this.owner.releaseAll();
    this.ctx.dispose();
  }

  // ---- layouts ---------------------------------------------------------------------------------------------------

  /** Makes `t`'s storage row-major (a panel storage is converted back in place). */
  private plain(t: Tensor, op: string): void {
    const s = t.storage as NativeStorage;
    const p = s.panel;
    if (p === null) return;
    if (p.kind === 2)
      throw new TypeError(
        `${op}: ${t} holds the blocks of a GGML weight (decoded at upload on the native backend): it can only be a matmul or embedding weight`,
      );
    this.ctx.repack(s.handle, p.rows, p.cols, p.kind, p.arg, 0);
    s.panel = null;
  }

  /**
   * The handle of a panel buffer holding `t` (`rows` x `cols`) in the given layout: its own storage (converted in place
   * if needed) when `t` is the whole storage and no activation of the op shares it (`shared`), else a temporary copy.
   */
  private panelOf(
    op: string,
    t: Tensor,
    kind: 0 | 1,
    rows: number,
    cols: number,
    arg: number,
    shared: boolean,
  ): number {
    const s = t.storage as NativeStorage;
    if (!shared && t.offset === 0 && t.byteLength === s.byteLength) {
      const p = s.panel;
      if (p !== null && p.kind === kind && p.rows === rows && p.cols === cols && p.arg === arg)
        return s.handle;
      if (p !== null) this.plain(t, op);
      this.ctx.repack(s.handle, rows, cols, kind, arg, 1);
      s.panel = { kind, rows, cols, arg };
      return s.handle;
    }
    this.plain(t, op);
    const bytes = t.byteLength;
    const h = this.allocHandle(op, bytes);
    this.temps.push(h);
    this.ctx.copy(h, 0, s.handle, byteOffset(t), bytes);
    this.ctx.repack(h, rows, cols, kind, arg, 1);
    return h;
  }

  /** Sets the weight arguments (wH ...) for `w` as panels; `a`, `b`, `c` are the op's other tensors. */
  private weightArgs(op: string, w: Weight, a: Tensor, b: Tensor | undefined, c: Tensor | undefined): void {
    const rows = w.shape[0];
    const cols = w.shape[1];
    if (w instanceof QuantizedTensor) {
      const { bits, groupSize, scaleDtype } = w.spec;
      const es = DTYPE_BYTES[scaleDtype];
      this.wQuant = 1;
      this.wType = bits;
      this.wGroup = groupSize;
      this.wSd = dtypeCode(scaleDtype);
      this.wH = this.panelOf(op, w.packed, 1, rows, cols, bits, shares(w.packed, a, b, c));
      this.wS = this.panelOf(op, w.scales, 0, rows, cols / groupSize, es, shares(w.scales, a, b, c));
      this.wB = this.panelOf(op, w.biases, 0, rows, cols / groupSize, es, shares(w.biases, a, b, c));
    } else if (w instanceof GgmlTensor) {
      this.wQuant = 2;
      this.wType = GGML_BLOCK_TYPES[w.type].id;
      this.wGroup = 0;
      this.wSd = 0;
      this.wS = 0;
      this.wB = 0;
      this.wH = this.ggmlPanelOf(op, w, rows, cols);
    } else {
      this.wQuant = 0;
      this.wType = dtypeCode(w.dtype);
      this.wGroup = 0;
      this.wSd = 0;
      this.wS = 0;
      this.wB = 0;
      this.wH = this.panelOf(op, w, 0, rows, cols, DTYPE_BYTES[w.dtype], shares(w, a, b, c));
    }
  }

  /**
   * The handle of the decoded panel of GGML weight `w`: its blocks' storage when it was uploaded as this type and shape,
   * else a temporary decoded from raw blocks (a u8 tensor of this backend holding them as a GGUF file does).
   */
  private ggmlPanelOf(op: string, w: GgmlTensor, rows: number, cols: number): number {
    const b = w.blocks;
    const s = b.storage as NativeStorage;
    const p = s.panel;
    const id = GGML_BLOCK_TYPES[w.type].id;
    if (p !== null && p.kind === 2) {
      if (p.arg !== id || p.rows !== rows || p.cols !== cols || b.offset !== 0)
        throw new TypeError(
          `${op}: ${w} is not the GGML weight its blocks were uploaded as (type id ${p.arg}, [${p.rows}, ${p.cols}])`,
        );
      return s.handle;
    }
    this.plain(b, op);
    const h = this.allocHandle(op, this.ggmlBytes(op, id, rows, cols));
    this.temps.push(h);
    this.ctx.ggmlPackBuf(h, s.handle, byteOffset(b), id, rows, cols);
    return h;
  }

  private freeTemps(): void {
    while (this.temps.length > 0) this.ctx.free(this.temps.pop()!);
  }

  // ---- ops -------------------------------------------------------------------------------------------------------

  copyRows(dst: Tensor, dstRow: number, src: Tensor, srcRow: number, rows: number): void {
    checkCopyRows(this.owner, dst, dstRow, src, srcRow, rows);
    this.plain(dst, 'copyRows');
    this.plain(src, 'copyRows');
    const rowBytes = width(dst) * DTYPE_BYTES[dst.dtype];
    if (rows === 0 || rowBytes === 0) return;
    this.ctx.copy(
      handle(dst),
      byteOffset(dst) + dstRow * rowBytes,
      handle(src),
      byteOffset(src) + srcRow * rowBytes,
      rows * rowBytes,
    );
  }

  toF32(out: Tensor, src: Tensor): void {
    checkToF32(this.owner, out, src);
    this.plain(out, 'toF32');
    this.plain(src, 'toF32');
    if (out.size === 0) return;
    this.ctx.toF32(
      handle(out),
      byteOffset(out),
      handle(src),
      byteOffset(src),
      out.size,
      dtypeCode(src.dtype),
    );
  }

  matmul(y: Tensor, x: Tensor, w: Weight, bias?: Tensor): void {
    checkMatmul(this.owner, y, x, w, bias);
    this.plain(y, 'matmul');
    this.plain(x, 'matmul');
    if (bias !== undefined) this.plain(bias, 'matmul');
    const rows = x.shape[0]!;
    const outDim = w.shape[0];
    if (rows === 0 || outDim === 0) return;
    try {
      this.weightArgs('matmul', w, y, x, bias);
      this.ctx.matmul(
        handle(y),
        byteOffset(y),
        handle(x),
        byteOffset(x),
        rows,
        width(x),
        outDim,
        bias === undefined ? -1 : handle(bias),
        bias === undefined ? 0 : byteOffset(bias),
        this.wH,
        this.wQuant,
        this.wType,
        this.wGroup,
        this.wSd,
        this.wS,
        this.wB,
        this.int8Activations ? 1 : 0,
      );
    } finally {
      if (this.temps.length > 0) this.freeTemps();
    }
  }

  embedding(out: Tensor, table: Weight, ids: Int32Array): void {
    checkEmbedding(this.owner, out, table, ids);
    this.plain(out, 'embedding');
    const dim = table.shape[1];
    if (ids.length === 0 || dim === 0) return;
    try {
      this.weightArgs('embedding', table, out, undefined, undefined);
      this.ctx.embedding(
        handle(out),
        byteOffset(out),
        ids,
        table.shape[0],
        dim,
        this.wH,
        this.wQuant,
        this.wType,
        this.wGroup,
        this.wSd,
        this.wS,
        this.wB,
      );
    } finally {
      if (this.temps.length > 0) this.freeTemps();
    }
  }

  rmsnorm(out: Tensor, x: Tensor, weight: Tensor, eps: number): void {
    checkRmsnorm(this.owner, out, x, weight, eps);
    this.plain(out, 'rmsnorm');
    this.plain(x, 'rmsnorm');
    this.plain(weight, 'rmsnorm');
    if (out.size === 0) return;
    this.ctx.rmsnorm(
      handle(out),
      byteOffset(out),
      handle(x),
      byteOffset(x),
      handle(weight),
      byteOffset(weight),
      x.shape[0]!,
      width(x),
      eps,
    );
  }

  rope(x: Tensor, cos: Tensor, sin: Tensor, opts: RopeOptions): void {
    checkRope(this.owner, x, cos, sin, opts);
    this.plain(x, 'rope');
    this.plain(cos, 'rope');
    this.plain(sin, 'rope');
    const rows = x.shape[0]!;
    const half = cos.shape[1]!;
    if (rows === 0 || half === 0) return;
    this.ctx.rope(
      handle(x),
      byteOffset(x),
      handle(cos),
      byteOffset(cos),
      handle(sin),
      byteOffset(sin),
      rows,
      opts.nHeads,
      opts.headDim,
      half,
      opts.layout === 'half' ? 0 : 1,
    );
  }

  swiglu(out: Tensor, gate: Tensor, up: Tensor): void {
    checkSwiglu(this.owner, out, gate, up);
    this.plain(out, 'swiglu');
    this.plain(gate, 'swiglu');
    this.plain(up, 'swiglu');
    if (out.size === 0) return;
    this.ctx.swiglu(
      handle(out),
      byteOffset(out),
      handle(gate),
      byteOffset(gate),
      handle(up),
      byteOffset(up),
      out.size,
    );
  }

  geluGlu(out: Tensor, gate: Tensor, up: Tensor): void {
    checkGeluGlu(this.owner, out, gate, up);
    this.plain(out, 'geluGlu');
    this.plain(gate, 'geluGlu');
    this.plain(up, 'geluGlu');
    if (out.size === 0) return;
    this.ctx.geluGlu(
      handle(out),
      byteOffset(out),
      handle(gate),
      byteOffset(gate),
      handle(up),
      byteOffset(up),
      out.size,
    );
  }

  softcap(x: Tensor, cap: number): void {
    checkSoftcap(this.owner, x, cap);
    this.plain(x, 'softcap');
    if (x.size === 0) return;
    this.ctx.softcap(handle(x), byteOffset(x), x.size, cap);
  }

  scale(out: Tensor, x: Tensor, s: number): void {
    checkScale(this.owner, out, x, s);
    this.plain(out, 'scale');
    this.plain(x, 'scale');
    if (out.size === 0) return;
    this.ctx.scale(handle(out), byteOffset(out), handle(x), byteOffset(x), out.size, s);
  }

  add(out: Tensor, a: Tensor, b: Tensor): void {
    checkAdd(this.owner, out, a, b);
    this.plain(out, 'add');
    this.plain(a, 'add');
    this.plain(b, 'add');
    if (out.size === 0) return;
    this.ctx.add(handle(out), byteOffset(out), handle(a), byteOffset(a), handle(b), byteOffset(b), out.size);
  }

  softmax(x: Tensor): void {
    checkSoftmax(this.owner, x);
    this.plain(x, 'softmax');
    if (x.size === 0) return;
    this.ctx.softmax(handle(x), byteOffset(x), x.shape[0]!, width(x));
  }

  argmax(x: Tensor, row = 0): number {
    checkArgmax(this.owner, x, row);
    this.plain(x, 'argmax');
    const n = width(x);
    return this.ctx.argmax(handle(x), byteOffset(x) + row * n * 4, n);
  }

  attention(out: Tensor, q: Tensor, k: KvRows, v: KvRows, opts: AttentionOptions): void {
    checkAttention(this.owner, out, q, k, v, opts);
    this.plain(out, 'attention');
    this.plain(q, 'attention');
    this.kvPlain(k, 'attention');
    this.kvPlain(v, 'attention');
    const rows = q.shape[0]!;
    if (rows === 0) return;
    const a = this.kvArgs;
    this.kvSide(a, 0, k);
    this.kvSide(a, 9, v);
    this.ctx.attention(
      handle(out),
      byteOffset(out),
      handle(q),
      byteOffset(q),
      rows,
      opts.startPos,
      opts.nHeads,
      opts.nKvHeads,
      opts.headDim,
      opts.scale,
      opts.window ?? 0,
      k.shape[0],
      opts.softcap ?? 0,
      opts.keep ?? 0,
      a[0]!,
      a[1]!,
      a[2]!,
      a[3]!,
      a[4]!,
      a[5]!,
      a[6]!,
      a[7]!,
      a[8]!,
      a[9]!,
      a[10]!,
      a[11]!,
      a[12]!,
      a[13]!,
      a[14]!,
      a[15]!,
      a[16]!,
      a[17]!,
    );
  }

  writeKv(dst: KvRows, src: Tensor, opts: WriteKvOptions): void {
    checkWriteKv(this.owner, dst, src, opts);
    this.plain(src, 'writeKv');
    this.kvPlain(dst, 'writeKv');
    const rows = src.shape[0]!;
    if (rows === 0) return;
    const a = this.kvArgs;
    this.kvSide(a, 0, dst);
    this.ctx.writeKv(
      handle(src),
      byteOffset(src),
      rows,
      width(src),
      opts.startPos,
      dst.shape[0],
      opts.keep ?? 0,
      a[0]!,
      a[1]!,
      a[2]!,
      a[3]!,
      a[4]!,
      a[5]!,
      a[6]!,
      a[7]!,
      a[8]!,
    );
  }

  /** The addon's arguments for one side of KV storage (reused: no allocation per call). */
  private readonly kvArgs: number[] = new Array<number>(18).fill(0);

  private kvPlain(s: KvRows, op: string): void {
    if (s instanceof QuantizedTensor) {
      this.plain(s.packed, op);
      this.plain(s.scales, op);
      this.plain(s.biases, op);
    } else this.plain(s, op);
  }

  /** (fmt, bits, group, h, off, scalesH, scalesOff, biasesH, biasesOff) of `s` into `a` at `i`. */
  private kvSide(a: number[], i: number, s: KvRows): void {
    if (s instanceof QuantizedTensor) {
      a[i] = 2;
      a[i + 1] = s.spec.bits;
      a[i + 2] = s.spec.groupSize;
      a[i + 3] = handle(s.packed);
      a[i + 4] = byteOffset(s.packed);
      a[i + 5] = handle(s.scales);
      a[i + 6] = byteOffset(s.scales);
      a[i + 7] = handle(s.biases);
      a[i + 8] = byteOffset(s.biases);
    } else {
      a[i] = s.dtype === 'f16' ? 1 : 0;
      a[i + 1] = 0;
      a[i + 2] = 0;
      a[i + 3] = handle(s);
      a[i + 4] = byteOffset(s);
      a[i + 5] = 0;
      a[i + 6] = 0;
      a[i + 7] = 0;
      a[i + 8] = 0;
    }
  }
}

function checkFileRange(op: string, what: string, r: FileRange): void {
  if (typeof r !== 'object' || r === null) throw new TypeError(`${op}: ${what} must be { fd, position }`);
  if (!Number.isSafeInteger(r.fd) || r.fd < 0)
    throw new RangeError(`${op}: ${what}.fd must be a file descriptor, got ${r.fd}`);
  if (!Number.isSafeInteger(r.position) || r.position < 0)
    throw new RangeError(`${op}: ${what}.position must be an integer >= 0, got ${r.position}`);
}

/** The checks of uploadQuantized that do not concern the data (shape and spec). */
function checkQuantShape(op: string, spec: QuantSpec, shape: readonly [number, number]): void {
  if (!Array.isArray(shape) || shape.length !== 2) throw new RangeError(`${op}: shape must be [rows, cols]`);
  checkShape(op, shape);
  checkQuantSpec(op, spec, shape[1]);
}

/** Whether `t` shares its storage with one of the tensors an op also uses as activations. */
function shares(t: Tensor, a: Tensor, b: Tensor | undefined, c: Tensor | undefined): boolean {
  const s = t.storage;
  return a.storage === s || b?.storage === s || c?.storage === s;
}

/** Bytes of a panel buffer (see native/src/mn.h). */
export function panelBytes(kind: 0 | 1, rows: number, cols: number, arg: number): number {
  const padded = Math.ceil(rows / 16) * 16;
  return kind === 0 ? padded * cols * arg : (padded * cols * arg) / 8;
}
