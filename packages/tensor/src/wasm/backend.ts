/**
 * The WASM backend (`wasm`): tensors live in the kernels' linear memory, ops validate at the tensor level and then
 * call one `@mnemo/kernels` export each. In steady state no op allocates on the JS heap: pointers are plain numbers,
 * embedding ids go through a preallocated (growable) i32 staging buffer, and `read`/`write` use cached whole-heap views
 * (rebuilt only after the memory grows).
 *
 * Threads (`threads` > 1): the calling thread's kernels instance ("instance 0") holds every activation, cache and small
 * tensor; each worker thread has its own kernels instance. Weight matrices (2-D f32/f16/bf16 uploads and quantized
 * uploads of at least `shardMinBytes`) are split by rows — output features — into one shard per instance, boundaries
 * on multiples of 16 rows. A matmul stages x once in a SharedArrayBuffer, every worker computes its rows while the
 * calling thread computes its own, and the calling thread copies the workers' rows into y. Each output element is
 * computed by the same kernel code over the same inputs whatever the split, so results are bitwise identical for every
 * thread count. Embedding reads each id's row from the instance that holds it. Other ops run on the calling thread;
 * a sharded tensor passed to one of them (or viewed) is first gathered back into instance 0, so every tensor keeps
 * working with every op. Because a wasm32 instance addresses at most 4 GiB, sharding is also what lets weights larger
 * than that load at all.
 */
import {
  ACTIVATION_BLOCK,
  attentionKvScratchBytes,
  type KvAttention,
  type KvFormat,
  type KvPtrs,
  type KvWrite,
  loadKernels,
  loadSharedKernels,
  MIN_KERNELS_STACK_BYTES,
  quantizedActivationBytes,
} from '@mnemo/kernels';
import {
  type AttentionOptions,
  BACKEND_API_VERSION,
  type Backend,
  type KvRows,
  type RopeOptions,
  type WriteKvOptions,
} from '../backend';
import { DTYPE_BYTES, type DType, isDType, type QuantSpec } from '../dtype';
import { GGML_BLOCK_TYPES, type GgmlBlockType, GgmlTensor } from '../ggml';
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
  checkGeluGlu,
  checkMatmul,
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
} from '../validate';
import type { Kernels, WeightDType } from './kernels';
import { envInt8Activations, envShardMinBytes, hardwareThreads, resolveThreads } from './threads/options';
import type { Link, WorkerPool } from './threads/pool';
import * as P from './threads/protocol';
import { MAX_THREADS, neededThreads, nonEmptyShards, type PlannedWeight, splitRows } from './threads/shard';

/** One wasm32 instance addresses at most this many bytes. */
export const WASM32_MAX_BYTES = 2 ** 32;
/** Stack of a worker's kernels instance attached to instance 0's memory. */
const WORKER_STACK_BYTES = 4 * MIN_KERNELS_STACK_BYTES;
/** Attention splits across the threads from about this many multiply-adds (rows × keys × heads × head size). */
const ATTENTION_SPLIT_MIN_WORK = 2 ** 17;
/** Default of {@link WasmBackendOptions.shardMinBytes}. */
export const DEFAULT_SHARD_MIN_BYTES = 256 * 1024;

export interface WasmBackendOptions {
  /**
   * Threads computing matmuls: the calling thread plus `threads - 1` workers, each with its own kernels instance.
   * Default: the `MNEMO_THREADS` environment variable, else every core (`os.availableParallelism()`). 1 is the
   * single-instance backend with no workers. Results do not depend on it. The workers start with the first weight
   * large enough to split (see `shardMinBytes`).
   */
  readonly threads?: number;
  /**
   * Most bytes one kernels instance may hold (default and maximum 4 GiB, the wasm32 limit). Lower it to exercise the
   * sharding of weights that do not fit one instance without gigabytes of data.
   */
  readonly maxInstanceBytes?: number;
  /**
   * Weights (2-D f32/f16/bf16 uploads, quantized uploads) of at least this many bytes are split across the threads;
   * smaller ones stay whole on the calling thread, where a matmul with them runs without a round trip. Default: the
   * `MNEMO_SHARD_MIN_BYTES` environment variable, else 256 KiB (about where splitting a matrix-vector product starts to
   * pay for the synchronisation on an idle machine). 0 splits every weight of 17 rows or more.
   */
  readonly shardMinBytes?: number;
  /** Kernels to run on (a test double, another build); single-threaded only. Default: a fresh `@mnemo/kernels` instance. */
  readonly kernels?: Kernels;
  /**
   * Opt-in: matmuls with 4- and 8-bit MLX-quantized weights and with GGML block weights (every GGML type) round each
   * input row to int8 in blocks of 32 (one f32 scale per block; `roundActivationsInt8` is the JS reference) and use
   * the kernels' integer dot products — up to about twice as fast, not bit-compatible with the exact path (results
   * still do not depend on the thread count or on how many rows a call has). Other weights, and inputs whose width is
   * not a multiple of 32, take the exact path. Default: the `MNEMO_INT8_ACTIVATIONS` environment variable, else false.
   */
  readonly int8Activations?: boolean;
}

/** Memory of one kernels instance of a WASM backend. */
export interface InstanceMemory {
  /** 0 = the calling thread, 1.. = workers. */
  readonly instance: number;
  /** Bytes of live allocations in the instance (tensors, shards, staging). */
  readonly allocatedBytes: number;
  /** Size of the instance's linear memory. */
  readonly memoryBytes: number;
  /** Bytes of weight matrices (whole or shards) held by the instance. */
  readonly weightBytes: number;
}

/** The WASM backend, with what it adds to {@link Backend}. */
export interface WasmBackend extends Backend {
  /** Threads computing matmuls (1 = no workers). */
  readonly threads: number;
  /** `wasm`, or `wasm+int8a` with {@link WasmBackendOptions.int8Activations}. */
  readonly numerics: string;
  readonly int8Activations: boolean;
  /** Memory of each kernels instance (the calling thread's first). */
  instanceMemory(): InstanceMemory[];
}

/**
 * A weight (or, with one thread, any allocation) does not fit the memory one kernels instance may hold. The message
 * names the bytes involved and, when more threads would help, how many are needed ({@link neededThreads}).
 */
export class WasmCapacityError extends RangeError {
  override name = 'WasmCapacityError';
  constructor(
    message: string,
    /** The smallest thread count at which the weights uploaded so far fit, or null if none would. */
    readonly neededThreads: number | null,
  ) {
    super(message);
  }
}

/** Row shards of one storage: instance i holds rows `[bounds[i], bounds[i + 1])` at `ptrs[i]` (0 when empty). */
interface Shards {
  readonly bounds: readonly number[];
  readonly rowBytes: number;
  readonly ptrs: number[];
}

/** A wasm allocation; every view of it shares this handle. */
interface WasmStorage extends StorageBase {
  /** Address in instance 0 (of shard 0 when sharded). */
  ptr: number;
  /** Non-null while the storage is split across instances. */
  shards: Shards | null;
}

/** A weight matrix as the capacity planner tracks it. */
interface WeightRecord extends PlannedWeight {
  /** Bytes of it in each instance. */
  readonly perInstance: number[];
}

/** Byte address of element 0 of `t` (in instance 0). */
function addr(t: Tensor): number {
  return (t.storage as WasmStorage).ptr + t.offset * DTYPE_BYTES[t.dtype];
}

function formatBytes(n: number): string {
  if (n >= 2 ** 30) return `${(n / 2 ** 30).toFixed(2)} GiB`;
  if (n >= 2 ** 20) return `${(n / 2 ** 20).toFixed(2)} MiB`;
  if (n >= 2 ** 10) return `${(n / 2 ** 10).toFixed(2)} KiB`;
  return `${n} B`;
}

function isWeightDtype(d: DType): d is WeightDType {
  return d === 'f32' || d === 'f16' || d === 'bf16';
}

function u8Of(data: ArrayBufferView): Uint8Array {
  return data instanceof Uint8Array ? data : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/** The instance holding row `row` of a sharded matrix. */
function ownerOf(bounds: readonly number[], row: number): number {
  let i = bounds.length - 2;
  while (bounds[i]! > row) i--;
  return i;
}

/** Internal: an instance refused an allocation (converted to a {@link WasmCapacityError} by the caller). */
class InstanceFull extends RangeError {
  constructor(
    readonly instance: number,
    readonly bytes: number,
    readonly reason: string,
  ) {
    super(reason);
  }
}

class WasmBackendImpl implements WasmBackend {
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
  // ---- threads ----
  /** Instances: 1 + workers (the workers start with the first weight to split). */
  private readonly instances: number;
  private pool: WorkerPool | null = null;
  /** Bytes each worker's instance holds in shards. */
  private readonly workerBytes: number[];
  /** Weight matrices by storage (the packed part's for quantized ones). */
  private readonly weights = new Map<WasmStorage, WeightRecord>();
  /** Length-checked views of the heap by start index (so staging copies allocate nothing once warm). */
  private readonly heapViews = new Map<number, Float32Array>();
  /** Scratch in instance 0 for the calling thread's shard of a many-row matmul. */
  private tmpPtr = 0;
  private tmpCapacity = 0;
  /** Per-instance counters of an embedding call. */
  private readonly counts: Int32Array;
  /** Per worker (index = instance): its attention scratch in instance 0 and the bytes of it. */
  private readonly attnPtr: number[];
  private readonly attnCap: number[];
  /** Instance 0's memory is shared: workers can compute attention in place. */
  private readonly sharedMemory: boolean;
  /** Scratch in instance 0 for int8-rounded activations. */
  private xqPtr = 0;
  private xqCapacity = 0;
  readonly numerics: string;

  constructor(
    private readonly k: Kernels,
    threads: number,
    /** Starts `threads - 1` workers (null with one thread). */
    private readonly startPool: (() => WorkerPool) | null,
    private readonly maxInstanceBytes: number,
    private readonly shardMinBytes: number,
    readonly int8Activations: boolean,
  ) {
    this.numerics = int8Activations ? 'wasm+int8a' : 'wasm';
    this.buffer = k.memory.buffer;
    this.u8 = new Uint8Array(this.buffer);
    this.u16 = new Uint16Array(this.buffer);
    this.u32 = new Uint32Array(this.buffer);
    this.i32 = new Int32Array(this.buffer);
    this.f32 = new Float32Array(this.buffer);
    this.instances = threads;
    this.workerBytes = new Array<number>(this.instances).fill(0);
    this.counts = new Int32Array(this.instances);
    this.attnPtr = new Array<number>(this.instances).fill(0);
    this.attnCap = new Array<number>(this.instances).fill(0);
    this.sharedMemory =
      typeof SharedArrayBuffer !== 'undefined' &&
      (k.memory.buffer as ArrayBufferLike) instanceof SharedArrayBuffer;
  }

  get threads(): number {
    return this.instances;
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
    this.heapViews.clear();
  }

  /** `n` floats of the heap from element `start`, as a cached view (call {@link heap} first). */
  private heapView(start: number, n: number): Float32Array {
    let v = this.heapViews.get(start);
    if (v === undefined || v.length !== n) {
      if (this.heapViews.size > 64) this.heapViews.clear();
      v = this.f32.subarray(start, start + n);
      this.heapViews.set(start, v);
    }
    return v;
  }

  private allocBytes(op: string, bytes: number): number {
    if (bytes === 0) return 0;
    // Below the wasm32 limit the cap is ours to enforce; at it, the kernels' allocator enforces it.
    if (this.maxInstanceBytes < WASM32_MAX_BYTES && this.k.allocatedBytes() + bytes > this.maxInstanceBytes)
      throw new InstanceFull(
        0,
        bytes,
        `${formatBytes(bytes)} more would exceed its ${formatBytes(this.maxInstanceBytes)} (${formatBytes(this.k.allocatedBytes())} allocated)`,
      );
    let ptr: number;
    try {
      ptr = this.k.alloc(bytes);
    } catch (e) {
      if (e instanceof RangeError) throw new InstanceFull(0, bytes, e.message);
      throw e;
    }
    if (!ptr) throw new RangeError(`${op}: the wasm heap could not allocate ${bytes} bytes`);
    if (ptr % 8 !== 0) throw new Error(`${op}: kernels.alloc returned a misaligned pointer ${ptr}`);
    return ptr;
  }

  /** Allocates `bytes` in instance `inst` (0 = here). */
  private allocIn(op: string, inst: number, bytes: number): number {
    if (inst === 0) return this.allocBytes(op, bytes);
    if (bytes === 0) return 0;
    const used = this.workerBytes[inst]!;
    if (used + bytes > this.maxInstanceBytes)
      throw new InstanceFull(
        inst,
        bytes,
        `${formatBytes(bytes)} more would exceed its ${formatBytes(this.maxInstanceBytes)} (${formatBytes(used)} in weights)`,
      );
    let ptr: number;
    try {
      ptr = this.pool!.alloc(this.link(inst), bytes);
    } catch (e) {
      if (e instanceof RangeError) throw new InstanceFull(inst, bytes, e.message);
      throw e;
    }
    this.workerBytes[inst] = used + bytes;
    return ptr;
  }

  private freeIn(inst: number, ptr: number, bytes: number): void {
    if (ptr === 0) return;
    if (inst === 0) {
      this.k.free(ptr);
      return;
    }
    this.pool!.free(this.link(inst), ptr);
    this.workerBytes[inst] = this.workerBytes[inst]! - bytes;
  }

  private link(inst: number): Link {
    return this.pool!.links[inst - 1]!;
  }

  /**
   * Turns an instance's refusal into an error naming the weights' size, the per-instance capacity and the thread
   * count they need: the weights uploaded so far plus `pending` (a weight being uploaded), with `pendingMain` more
   * bytes of other data on the calling thread.
   */
  private capacityError(
    op: string,
    what: string,
    e: InstanceFull,
    pending: PlannedWeight | null,
    pendingMain = 0,
  ): WasmCapacityError {
    const planned: PlannedWeight[] = [...this.weights.values()];
    if (pending) planned.push(pending);
    let weightBytes = 0;
    let mainWeights = 0;
    for (const w of this.weights.values()) {
      weightBytes += w.rows * w.rowBytes;
      mainWeights += w.perInstance[0]!;
    }
    if (pending) weightBytes += pending.rows * pending.rowBytes;
    const fixedMain = Math.max(0, this.k.allocatedBytes() - mainWeights) + pendingMain;
    const cap = this.maxInstanceBytes;
    const need = neededThreads(planned, fixedMain, cap, this.instances);
    const where =
      e.instance === 0 ? 'the calling thread’s kernels instance' : `worker ${e.instance}’s kernels instance`;
    const limit = `each kernels instance holds at most ${formatBytes(cap)}${cap === WASM32_MAX_BYTES ? ' (the wasm32 limit)' : ''}`;
    const have = `${this.instances} thread${this.instances > 1 ? 's' : ''}`;
    const advice =
      need !== null
        ? `the weights uploaded so far (${formatBytes(weightBytes)}) need at least ${need} threads, this backend has ${have}: ` +
          `use createBackend({ threads: ${need} }) or MNEMO_THREADS=${need} (more if more weights follow)`
        : `no thread count up to ${MAX_THREADS} is enough: besides ${formatBytes(weightBytes)} of weights, the calling ` +
          `thread’s instance holds ${formatBytes(fixedMain)} of activations, caches and unsplittable tensors`;
    return new WasmCapacityError(
      `${op}: ${what} does not fit in ${where} (${e.reason}); ${limit}; ${advice}`,
      need,
    );
  }

  // ---- memory ----------------------------------------------------------------------------------------------------

  private newStorage(dtype: DType, byteLength: number, ptr: number, shards: Shards | null): WasmStorage {
    const s: WasmStorage = { ptr, shards, byteLength, dtype, freed: false };
    this.owner.add(s);
    return s;
  }

  alloc(dtype: DType, shape: readonly number[]): Tensor {
    this.owner.checkLive('alloc');
    if (!isDType(dtype)) throw new TypeError(`alloc: unknown dtype ${String(dtype)}`);
    const byteLength = checkShape('alloc', shape) * DTYPE_BYTES[dtype];
    let ptr: number;
    try {
      ptr = this.allocBytes('alloc', byteLength);
    } catch (e) {
      if (e instanceof InstanceFull)
        throw this.capacityError('alloc', `a ${dtype} [${shape}] tensor`, e, null, byteLength);
      throw e;
    }
    return new Tensor(this.name, dtype, [...shape], this.newStorage(dtype, byteLength, ptr, null), 0);
  }

  /**
   * The row split of a new weight `[rows, ·]` of `bytes` bytes, or null to keep it whole in instance 0. The workers
   * start with the first weight to split, so a backend that never holds a large weight never starts a thread.
   */
  private planFor(rows: number, bytes: number): readonly number[] | null {
    if (this.startPool === null || bytes === 0 || bytes < this.shardMinBytes) return null;
    const bounds = splitRows(rows, this.instances);
    if (nonEmptyShards(bounds) < 2) return null;
    if (this.pool === null) {
      this.pool = this.startPool();
      poolReaper.register(this, this.pool, this.pool);
    }
    return bounds;
  }

  /** Allocates one part's shards (instance i: rows `bounds[i]..bounds[i+1]` of `rowBytes`); frees them on failure. */
  private allocShards(op: string, bounds: readonly number[], rowBytes: number): number[] {
    const ptrs: number[] = [];
    try {
      for (let i = 0; i + 1 < bounds.length; i++)
        ptrs.push(this.allocIn(op, i, (bounds[i + 1]! - bounds[i]!) * rowBytes));
    } catch (e) {
      for (let i = 0; i < ptrs.length; i++)
        this.freeIn(i, ptrs[i]!, (bounds[i + 1]! - bounds[i]!) * rowBytes);
      throw e;
    }
    return ptrs;
  }

  /** Copies `src` (rows × rowBytes) into its shards. */
  private fillShards(sh: Shards, src: Uint8Array): void {
    const { bounds, rowBytes, ptrs } = sh;
    for (let i = 0; i + 1 < bounds.length; i++) {
      const part = src.subarray(bounds[i]! * rowBytes, bounds[i + 1]! * rowBytes);
      if (part.byteLength === 0) continue;
      if (i === 0) {
        this.heap();
        this.u8.set(part, ptrs[0]!);
      } else this.pool!.write(this.link(i), ptrs[i]!, part);
    }
  }

  /** Frees the storages' memory in every instance (already released from the owner). */
  private freeStorageMemory(s: WasmStorage): void {
    const sh = s.shards;
    if (sh === null) {
      if (s.ptr !== 0) this.k.free(s.ptr);
      return;
    }
    for (let i = 0; i < sh.ptrs.length; i++)
      this.freeIn(i, sh.ptrs[i]!, (sh.bounds[i + 1]! - sh.bounds[i]!) * sh.rowBytes);
  }

  /** Places a `[rows, ·]` weight's parts (whole in instance 0, or sharded by `bounds`) and copies their data in. */
  private placeWeight(
    op: string,
    what: string,
    rows: number,
    parts: readonly { dtype: DType; rowBytes: number; data: ArrayBufferView }[],
    shardable: boolean,
  ): WasmStorage[] {
    let rowBytes = 0;
    for (const p of parts) rowBytes += p.rowBytes;
    const bounds = shardable ? this.planFor(rows, rows * rowBytes) : null;
    const made: { s: WasmStorage; sh: Shards | null }[] = [];
    try {
      for (const p of parts) {
        if (bounds === null) {
          const ptr = this.allocBytes(op, rows * p.rowBytes);
          made.push({
            s: { ptr, shards: null, byteLength: rows * p.rowBytes, dtype: p.dtype, freed: false },
            sh: null,
          });
        } else {
          const ptrs = this.allocShards(op, bounds, p.rowBytes);
          const sh: Shards = { bounds, rowBytes: p.rowBytes, ptrs };
          made.push({
            s: { ptr: ptrs[0]!, shards: sh, byteLength: rows * p.rowBytes, dtype: p.dtype, freed: false },
            sh,
          });
        }
      }
    } catch (e) {
      for (const m of made) this.freeStorageMemory(m.s);
      if (e instanceof InstanceFull) throw this.capacityError(op, what, e, { rows, rowBytes, shardable });
      throw e;
    }
    for (let j = 0; j < parts.length; j++) {
      const { s, sh } = made[j]!;
      const src = u8Of(parts[j]!.data);
      if (sh === null) this.copyIn(s.ptr, src);
      else this.fillShards(sh, src);
      this.owner.add(s);
    }
    const perInstance = new Array<number>(this.instances).fill(0);
    if (bounds === null) perInstance[0] = rows * rowBytes;
    else for (let i = 0; i < this.instances; i++) perInstance[i] = (bounds[i + 1]! - bounds[i]!) * rowBytes;
    this.weights.set(made[0]!.s, { rows, rowBytes, shardable, perInstance });
    return made.map((m) => m.s);
  }

  upload(dtype: DType, shape: readonly number[], data: ArrayBufferView): Tensor {
    this.owner.checkLive('upload');
    checkUpload('upload', dtype, shape, data);
    if (shape.length === 2 && isWeightDtype(dtype) && shape[0]! > 0) {
      const rows = shape[0]!;
      const rowBytes = shape[1]! * DTYPE_BYTES[dtype];
      const bytes = rows * rowBytes;
      const [s] = this.placeWeight(
        'upload',
        `a ${dtype} [${shape}] matrix (${formatBytes(bytes)})`,
        rows,
        [{ dtype, rowBytes, data }],
        bytes >= this.shardMinBytes,
      );
      return new Tensor(this.name, dtype, [...shape], s!, 0);
    }
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
    const words = packedRowWords(spec, cols);
    const sb = groups * DTYPE_BYTES[spec.scaleDtype];
    const bytes = rows * (words * 4 + 2 * sb);
    const [p, sc, bi] = this.placeWeight(
      'uploadQuantized',
      `a q${spec.bits} [${rows}, ${cols}] matrix (${formatBytes(bytes)})`,
      rows,
      [
        { dtype: 'u32', rowBytes: words * 4, data: packed },
        { dtype: spec.scaleDtype, rowBytes: sb, data: scales },
        { dtype: spec.scaleDtype, rowBytes: sb, data: biases },
      ],
      rows > 0 && bytes >= this.shardMinBytes,
    );
    return new QuantizedTensor(
      { bits: spec.bits, groupSize: spec.groupSize, scaleDtype: spec.scaleDtype },
      [rows, cols],
      new Tensor(this.name, 'u32', [rows, words], p!, 0),
      new Tensor(this.name, spec.scaleDtype, [rows, groups], sc!, 0),
      new Tensor(this.name, spec.scaleDtype, [rows, groups], bi!, 0),
    );
  }

  uploadGgml(
    type: GgmlBlockType,
    shape: readonly [rows: number, cols: number],
    blocks: ArrayBufferView,
  ): GgmlTensor {
    this.owner.checkLive('uploadGgml');
    const rowBytes = checkUploadGgml(type, shape, blocks);
    if (this.k.ggmlMatmul === undefined || this.k.ggmlEmbedding === undefined)
      throw new TypeError('uploadGgml: these kernels have no GGML block kernels (ggmlMatmul, ggmlEmbedding)');
    const [rows, cols] = shape;
    const bytes = rows * rowBytes;
    const [s] = this.placeWeight(
      'uploadGgml',
      `a ${type} [${rows}, ${cols}] matrix (${formatBytes(bytes)})`,
      rows,
      [{ dtype: 'u8', rowBytes, data: blocks }],
      rows > 0 && bytes >= this.shardMinBytes,
    );
    return new GgmlTensor(type, [rows, cols], new Tensor(this.name, 'u8', [rows, rowBytes], s!, 0));
  }

  view(t: Tensor, shape: readonly number[], offset = 0): Tensor {
    checkView(this.owner, t, shape, offset);
    this.plain('view', t);
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

  /**
   * Visits the parts of bytes `[start, start + length)` of a sharded storage: `fn(instance, address there, offset
   * of the part within the range, bytes)`.
   */
  private eachPart(
    sh: Shards,
    start: number,
    length: number,
    fn: (inst: number, at: number, off: number, n: number) => void,
  ): void {
    const end = start + length;
    for (let i = 0; i + 1 < sh.bounds.length; i++) {
      const lo = Math.max(start, sh.bounds[i]! * sh.rowBytes);
      const hi = Math.min(end, sh.bounds[i + 1]! * sh.rowBytes);
      if (hi > lo) fn(i, sh.ptrs[i]! + lo - sh.bounds[i]! * sh.rowBytes, lo - start, hi - lo);
    }
  }

  /** Copies bytes `[start, start + dst.length)` of a sharded storage into `dst`. */
  private gather(sh: Shards, start: number, dst: Uint8Array): void {
    this.eachPart(sh, start, dst.byteLength, (inst, at, off, n) => {
      if (inst === 0) {
        this.heap();
        dst.set(this.u8.subarray(at, at + n), off);
      } else this.pool!.read(this.link(inst), at, dst.subarray(off, off + n));
    });
  }

  write(dst: Tensor, src: ArrayBufferView): void {
    checkWrite(this.owner, dst, src);
    const sh = (dst.storage as WasmStorage).shards;
    if (sh === null) this.copyIn(addr(dst), src);
    else this.writeSharded(dst, src, sh);
  }

  /**
   * {@link write} into a sharded storage. A method of its own: the closure below captures a variable, and V8 allocates
   * the scope holding it on every call of the function that declares it, whichever path that call takes.
   */
  private writeSharded(dst: Tensor, src: ArrayBufferView, sh: Shards): void {
    const bytes = u8Of(src);
    this.eachPart(sh, dst.offset * DTYPE_BYTES[dst.dtype], bytes.byteLength, (inst, at, off, n) => {
      if (inst === 0) {
        this.heap();
        this.u8.set(bytes.subarray(off, off + n), at);
      } else this.pool!.write(this.link(inst), at, bytes.subarray(off, off + n));
    });
  }

  read(t: Tensor, out?: Float32Array): Float32Array {
    checkRead(this.owner, t, out);
    const n = t.size;
    const sh = (t.storage as WasmStorage).shards;
    if (sh !== null) {
      const res = out ?? new Float32Array(n);
      this.gather(sh, t.offset * 4, new Uint8Array(res.buffer, res.byteOffset, res.byteLength));
      return res;
    }
    this.heap();
    const start = addr(t) >>> 2;
    if (out === undefined) return n === 0 ? new Float32Array(0) : this.f32.slice(start, start + n);
    out.set(this.heapView(start, n)); // a cached view: no allocation once warm
    return out;
  }

  readBytes(t: Tensor, out?: Uint8Array): Uint8Array {
    checkReadBytes(this.owner, t, out);
    const n = t.byteLength;
    const sh = (t.storage as WasmStorage).shards;
    if (sh !== null) {
      const res = out ?? new Uint8Array(n);
      this.gather(sh, t.offset * DTYPE_BYTES[t.dtype], res);
      return res;
    }
    this.heap();
    const start = addr(t);
    if (out === undefined) return n === 0 ? new Uint8Array(0) : this.u8.slice(start, start + n);
    const heap = this.u8;
    if (n >= 1024) out.set(heap.subarray(start, start + n));
    else for (let i = 0; i < n; i++) out[i] = heap[start + i]!;
    return out;
  }

  /** Makes `t`'s storage whole in instance 0 if it is sharded (ops other than matmul and embedding need that). */
  private plain(op: string, t: Tensor): void {
    const s = t.storage as WasmStorage;
    if (s.shards !== null) this.unshard(op, s);
  }

  private unshard(op: string, s: WasmStorage): void {
    const sh = s.shards!;
    let ptr: number;
    try {
      ptr = this.allocBytes(op, s.byteLength);
    } catch (e) {
      if (e instanceof InstanceFull)
        throw this.capacityError(
          op,
          `gathering a sharded ${s.dtype} weight (${formatBytes(s.byteLength)}) to use it as an activation`,
          e,
          null,
          s.byteLength,
        );
      throw e;
    }
    this.heap();
    this.gather(sh, 0, this.u8.subarray(ptr, ptr + s.byteLength));
    this.freeStorageMemory(s);
    s.ptr = ptr;
    s.shards = null;
    const rec = this.weights.get(s);
    if (rec) {
      rec.perInstance.fill(0);
      rec.perInstance[0] = s.byteLength;
    }
  }

  private release(s: WasmStorage): void {
    this.owner.release(s);
    this.freeStorageMemory(s);
    this.weights.delete(s);
  }

  free(t: Weight): void {
    checkFree(this.owner, t);
    if (t instanceof QuantizedTensor) {
      this.release(t.packed.storage as WasmStorage);
      this.release(t.scales.storage as WasmStorage);
      this.release(t.biases.storage as WasmStorage);
    } else if (t instanceof GgmlTensor) {
      this.release(t.blocks.storage as WasmStorage);
    } else {
      this.release(t.storage as WasmStorage);
    }
  }

  memoryInUse(): number {
    return this.owner.memoryInUse();
  }

  instanceMemory(): InstanceMemory[] {
    const weightBytes = new Array<number>(this.instances).fill(0);
    for (const w of this.weights.values())
      for (let i = 0; i < this.instances; i++) weightBytes[i] = weightBytes[i]! + w.perInstance[i]!;
    const out: InstanceMemory[] = [
      {
        instance: 0,
        allocatedBytes: this.k.allocatedBytes(),
        memoryBytes: this.k.memory.buffer.byteLength,
        weightBytes: weightBytes[0]!,
      },
    ];
    for (let i = 1; i < this.instances; i++) {
      const stats =
        this.pool && !this.owner.disposed
          ? this.pool.stats(this.link(i))
          : { allocatedBytes: 0, memoryBytes: 0 }; // not started (or stopped)
      out.push({ instance: i, ...stats, weightBytes: weightBytes[i]! });
    }
    return out;
  }

  dispose(): void {
    if (this.owner.disposed) return;
    // Shards in workers go with the workers' memories when the pool stops.
    for (const s of this.owner.releaseAll()) if (s.ptr !== 0) this.k.free(s.ptr);
    this.weights.clear();
    if (this.idsPtr !== 0) this.k.free(this.idsPtr);
    this.idsPtr = 0;
    this.idsCapacity = 0;
    if (this.tmpPtr !== 0) this.k.free(this.tmpPtr);
    this.tmpPtr = 0;
    this.tmpCapacity = 0;
    if (this.xqPtr !== 0) this.k.free(this.xqPtr);
    this.xqPtr = 0;
    this.xqCapacity = 0;
    for (let i = 0; i < this.instances; i++) {
      if (this.attnPtr[i] !== 0) this.k.free(this.attnPtr[i]!);
      this.attnPtr[i] = 0;
      this.attnCap[i] = 0;
    }
    if (this.pool) {
      poolReaper.unregister(this.pool);
      this.pool.dispose();
    }
  }

  // ---- ops -------------------------------------------------------------------------------------------------------

  copyRows(dst: Tensor, dstRow: number, src: Tensor, srcRow: number, rows: number): void {
    checkCopyRows(this.owner, dst, dstRow, src, srcRow, rows);
    this.plain('copyRows', dst);
    this.plain('copyRows', src);
    const rowBytes = width(dst) * DTYPE_BYTES[dst.dtype];
    if (rows === 0 || rowBytes === 0) return;
    this.k.copy(addr(dst) + dstRow * rowBytes, addr(src) + srcRow * rowBytes, rows * rowBytes);
  }

  toF32(out: Tensor, src: Tensor): void {
    checkToF32(this.owner, out, src);
    this.plain('toF32', out);
    this.plain('toF32', src);
    if (out.size === 0) return;
    this.k.toF32(addr(out), addr(src), out.size, src.dtype as WeightDType);
  }

  /**
   * The shards of weight `w` when it is split across instances and usable as is; null when it is whole in instance 0
   * (a partly sharded quantized weight, or a forged view of a sharded one, is gathered first).
   */
  private weightShards(op: string, w: Weight): Shards | null {
    if (w instanceof QuantizedTensor) {
      const p = w.packed.storage as WasmStorage;
      const s = w.scales.storage as WasmStorage;
      const b = w.biases.storage as WasmStorage;
      if (p.shards === null && s.shards === null && b.shards === null) return null;
      if (
        p.shards !== null &&
        s.shards !== null &&
        b.shards !== null &&
        s.shards.bounds === p.shards.bounds &&
        b.shards.bounds === p.shards.bounds &&
        w.packed.offset === 0 &&
        w.scales.offset === 0 &&
        w.biases.offset === 0
      )
        return p.shards;
      this.plain(op, w.packed);
      this.plain(op, w.scales);
      this.plain(op, w.biases);
      return null;
    }
    if (w instanceof GgmlTensor) return this.weightShards(op, w.blocks);
    const s = w.storage as WasmStorage;
    if (s.shards === null) return null;
    if (w.offset === 0 && w.byteLength === s.byteLength) return s.shards;
    this.unshard(op, s);
    return null;
  }

  matmul(y: Tensor, x: Tensor, w: Weight, bias?: Tensor): void {
    checkMatmul(this.owner, y, x, w, bias);
    this.plain('matmul', y);
    this.plain('matmul', x);
    if (bias !== undefined) this.plain('matmul', bias);
    const rows = x.shape[0]!;
    const inDim = width(x);
    const outDim = w.shape[0]!;
    if (rows === 0 || outDim === 0) return;
    const sh = this.weightShards('matmul', w);
    if (inDim === 0) {
      this.fillBias(y, bias);
      return;
    }
    // the int8-activation path: x rounded once here, for every instance
    const xq = this.int8Input(x, w, rows, inDim);
    if (sh !== null) {
      this.matmulSharded(y, x, w, bias, sh, rows, inDim, outDim, xq);
      return;
    }
    const b = bias === undefined ? undefined : addr(bias);
    if (w instanceof QuantizedTensor) {
      const { bits, groupSize, scaleDtype } = w.spec;
      const py = addr(y);
      const pp = addr(w.packed);
      const ps = addr(w.scales);
      const pb = addr(w.biases);
      if (xq !== 0)
        this.k.matmulQ8a!(py, xq, pp, ps, pb, rows, inDim, outDim, bits, groupSize, scaleDtype, b);
      else this.k.matmulQ(py, addr(x), pp, ps, pb, rows, inDim, outDim, bits, groupSize, scaleDtype, b);
    } else if (w instanceof GgmlTensor) {
      if (xq !== 0) this.k.ggmlMatmulQ8a!(addr(y), xq, addr(w.blocks), rows, inDim, outDim, w.type, b);
      else this.k.ggmlMatmul!(addr(y), addr(x), addr(w.blocks), rows, inDim, outDim, w.type, b);
    } else {
      this.k.matmul(addr(y), addr(x), addr(w), rows, inDim, outDim, w.dtype as WeightDType, b);
    }
  }

  /**
   * With int8 activations and a 4-/8-bit quantized or a GGML `w` (and `inDim` a multiple of 32): `x` rounded to int8
   * blocks in scratch, its address. Otherwise 0 (the exact path).
   */
  private int8Input(x: Tensor, w: Weight, rows: number, inDim: number): number {
    if (!this.int8Activations || inDim % ACTIVATION_BLOCK !== 0) return 0;
    if (w instanceof QuantizedTensor) {
      if (w.spec.bits !== 4 && w.spec.bits !== 8) return 0;
    } else if (!(w instanceof GgmlTensor && this.k.ggmlMatmulQ8a !== undefined)) return 0;
    const bytes = quantizedActivationBytes(rows, inDim);
    if (bytes > this.xqCapacity) {
      const capacity = Math.max(bytes, 2 * this.xqCapacity, 4096);
      const ptr = this.allocBytes('matmul', capacity);
      if (this.xqPtr !== 0) this.k.free(this.xqPtr);
      this.xqPtr = ptr;
      this.xqCapacity = capacity;
    }
    this.k.quantizeActivations!(this.xqPtr, addr(x), rows, inDim);
    return this.xqPtr;
  }

  /** Scratch of at least `bytes` in instance 0 (grown by doubling). */
  private temp(bytes: number): number {
    if (bytes > this.tmpCapacity) {
      const capacity = Math.max(bytes, 2 * this.tmpCapacity, 4096);
      const ptr = this.allocBytes('matmul', capacity);
      if (this.tmpPtr !== 0) this.k.free(this.tmpPtr);
      this.tmpPtr = ptr;
      this.tmpCapacity = capacity;
    }
    return this.tmpPtr;
  }

  /**
   * A matmul with a sharded weight: x (and bias) staged once for all workers, each instance computes its rows of w
   * (its columns of y), the calling thread its own in place, then the workers' columns are copied into y.
   */
  private matmulSharded(
    y: Tensor,
    x: Tensor,
    w: Weight,
    bias: Tensor | undefined,
    sh: Shards,
    rows: number,
    inDim: number,
    outDim: number,
    /** int8-rounded x (0: the exact path). */
    xq: number,
  ): void {
    const pool = this.pool!;
    const bounds = sh.bounds;
    // staged input, in floats: x, or its int8 rounding (a multiple of 4 bytes)
    const xLen = xq === 0 ? rows * inDim : quantizedActivationBytes(rows, inDim) >>> 2;
    const hasBias = bias === undefined ? 0 : 1;
    pool.ensureInput((xLen + hasBias * outDim) * 4);
    this.heap();
    pool.inF32.set(this.heapView((xq === 0 ? addr(x) : xq) >>> 2, xLen));
    if (bias !== undefined) pool.inF32.set(this.heapView(addr(bias) >>> 2, outDim), xLen);
    const q = w instanceof QuantizedTensor ? w : null;
    const g = w instanceof GgmlTensor ? w : null;
    const qs = q === null ? null : (q.scales.storage as WasmStorage).shards!;
    const qb = q === null ? null : (q.biases.storage as WasmStorage).shards!;
    for (let i = 1; i < this.instances; i++) {
      const n = bounds[i + 1]! - bounds[i]!;
      if (n === 0) continue;
      const l = this.link(i);
      pool.ensureOutput(l, rows * n * 4);
      const a = l.u32;
      if (g !== null) {
        a[P.ARG] = sh.ptrs[i]!;
        a[P.ARG + 1] = rows;
        a[P.ARG + 2] = inDim;
        a[P.ARG + 3] = n;
        a[P.ARG + 4] = GGML_BLOCK_TYPES[g.type].id;
        a[P.ARG + 5] = hasBias;
        a[P.ARG + 6] = xLen + bounds[i]!;
        a[P.ARG + 7] = xq === 0 ? 0 : 1;
        pool.post(l, P.OP_MATMUL_G);
      } else if (q === null) {
        a[P.ARG] = sh.ptrs[i]!;
        a[P.ARG + 1] = rows;
        a[P.ARG + 2] = inDim;
        a[P.ARG + 3] = n;
        a[P.ARG + 4] = P.dtypeCode((w as Tensor).dtype as WeightDType);
        a[P.ARG + 5] = hasBias;
        a[P.ARG + 6] = xLen + bounds[i]!;
        pool.post(l, P.OP_MATMUL);
      } else {
        a[P.ARG] = sh.ptrs[i]!;
        a[P.ARG + 1] = qs!.ptrs[i]!;
        a[P.ARG + 2] = qb!.ptrs[i]!;
        a[P.ARG + 3] = rows;
        a[P.ARG + 4] = inDim;
        a[P.ARG + 5] = n;
        a[P.ARG + 6] = q.spec.bits;
        a[P.ARG + 7] = q.spec.groupSize;
        a[P.ARG + 8] = P.dtypeCode(q.spec.scaleDtype);
        a[P.ARG + 9] = hasBias;
        a[P.ARG + 10] = xLen + bounds[i]!;
        pool.post(l, xq === 0 ? P.OP_MATMUL_Q : P.OP_MATMUL_Q8A);
      }
    }
    let failure: unknown;
    const n0 = bounds[1]!;
    if (n0 > 0) {
      try {
        const out = rows === 1 ? addr(y) : this.temp(rows * n0 * 4);
        const b = bias === undefined ? undefined : addr(bias);
        if (g !== null) {
          if (xq !== 0) this.k.ggmlMatmulQ8a!(out, xq, sh.ptrs[0]!, rows, inDim, n0, g.type, b);
          else this.k.ggmlMatmul!(out, addr(x), sh.ptrs[0]!, rows, inDim, n0, g.type, b);
        } else if (q === null)
          this.k.matmul(out, addr(x), sh.ptrs[0]!, rows, inDim, n0, (w as Tensor).dtype as WeightDType, b);
        else {
          const { bits, groupSize, scaleDtype } = q.spec;
          const pp = sh.ptrs[0]!;
          const ps = qs!.ptrs[0]!;
          const pb = qb!.ptrs[0]!;
          if (xq !== 0)
            this.k.matmulQ8a!(out, xq, pp, ps, pb, rows, inDim, n0, bits, groupSize, scaleDtype, b);
          else this.k.matmulQ(out, addr(x), pp, ps, pb, rows, inDim, n0, bits, groupSize, scaleDtype, b);
        }
        if (rows > 1) {
          this.heap();
          const ys = addr(y) >>> 2;
          const ts = out >>> 2;
          for (let r = 0; r < rows; r++) this.f32.copyWithin(ys + r * outDim, ts + r * n0, ts + (r + 1) * n0);
        }
      } catch (e) {
        failure = e;
      }
    }
    joinWorkers(pool, failure);
    this.heap();
    const ys = addr(y) >>> 2;
    for (let i = 1; i < this.instances; i++) {
      const c0 = bounds[i]!;
      const n = bounds[i + 1]! - c0;
      if (n === 0) continue;
      const l = this.link(i);
      if (rows === 1) this.f32.set(l.outView(n), ys + c0);
      else
        for (let r = 0; r < rows; r++)
          this.f32.set(l.outF32.subarray(r * n, (r + 1) * n), ys + r * outDim + c0);
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
    this.plain('embedding', out);
    const n = ids.length;
    const vocab = table.shape[0]!;
    const dim = table.shape[1]!;
    if (n === 0 || dim === 0) return;
    const sh = this.weightShards('embedding', table);
    if (sh !== null) {
      this.embeddingSharded(out, table, ids, sh, dim);
      return;
    }
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
    } else if (table instanceof GgmlTensor) {
      this.k.ggmlEmbedding!(addr(out), addr(table.blocks), idsPtr, n, vocab, dim, table.type);
    } else {
      this.k.embedding(addr(out), addr(table), idsPtr, n, vocab, dim, table.dtype as WeightDType);
    }
  }

  /** Embedding from a sharded table: each id's row comes from the instance holding it. */
  private embeddingSharded(out: Tensor, table: Weight, ids: Int32Array, sh: Shards, dim: number): void {
    const pool = this.pool!;
    const bounds = sh.bounds;
    const n = ids.length;
    const counts = this.counts;
    counts.fill(0);
    for (let r = 0; r < n; r++) {
      const o = ownerOf(bounds, ids[r]!);
      counts[o] = counts[o]! + 1;
    }
    // worker i's ids (rebased to its shard) at input int32s [offset_i, offset_i + counts[i])
    pool.ensureInput(n * 4);
    const q = table instanceof QuantizedTensor ? table : null;
    const g = table instanceof GgmlTensor ? table : null;
    const qs = q === null ? null : (q.scales.storage as WasmStorage).shards!;
    const qb = q === null ? null : (q.biases.storage as WasmStorage).shards!;
    let offset = 0;
    for (let i = 1; i < this.instances; i++) {
      const c = counts[i]!;
      if (c === 0) continue;
      const base = bounds[i]!;
      let k = offset;
      for (let r = 0; r < n; r++) {
        const id = ids[r]!;
        if (ownerOf(bounds, id) === i) pool.inI32[k++] = id - base;
      }
      const l = this.link(i);
      pool.ensureOutput(l, c * dim * 4);
      const a = l.u32;
      const vocab = bounds[i + 1]! - base;
      if (q === null) {
        a[P.ARG] = sh.ptrs[i]!;
        a[P.ARG + 1] = c;
        a[P.ARG + 2] = vocab;
        a[P.ARG + 3] = dim;
        a[P.ARG + 4] =
          g !== null ? GGML_BLOCK_TYPES[g.type].id : P.dtypeCode((table as Tensor).dtype as WeightDType);
        a[P.ARG + 5] = offset;
        pool.post(l, g !== null ? P.OP_EMBED_G : P.OP_EMBED);
      } else {
        a[P.ARG] = sh.ptrs[i]!;
        a[P.ARG + 1] = qs!.ptrs[i]!;
        a[P.ARG + 2] = qb!.ptrs[i]!;
        a[P.ARG + 3] = c;
        a[P.ARG + 4] = vocab;
        a[P.ARG + 5] = dim;
        a[P.ARG + 6] = q.spec.bits;
        a[P.ARG + 7] = q.spec.groupSize;
        a[P.ARG + 8] = P.dtypeCode(q.spec.scaleDtype);
        a[P.ARG + 9] = offset;
        pool.post(l, P.OP_EMBED_Q);
      }
      offset += c;
    }
    let failure: unknown;
    if (counts[0]! > 0) {
      try {
        const idsPtr = this.stageIds(ids);
        const vocab0 = bounds[1]!;
        const o = addr(out);
        for (let r = 0; r < n; r++) {
          if (ids[r]! >= vocab0) continue;
          if (g !== null)
            this.k.ggmlEmbedding!(o + r * dim * 4, sh.ptrs[0]!, idsPtr + r * 4, 1, vocab0, dim, g.type);
          else if (q === null)
            this.k.embedding(
              o + r * dim * 4,
              sh.ptrs[0]!,
              idsPtr + r * 4,
              1,
              vocab0,
              dim,
              (table as Tensor).dtype as WeightDType,
            );
          else
            this.k.embeddingQ(
              o + r * dim * 4,
              sh.ptrs[0]!,
              qs!.ptrs[0]!,
              qb!.ptrs[0]!,
              idsPtr + r * 4,
              1,
              vocab0,
              dim,
              q.spec.bits,
              q.spec.groupSize,
              q.spec.scaleDtype,
            );
        }
      } catch (e) {
        failure = e;
      }
    }
    joinWorkers(pool, failure);
    this.heap();
    const os = addr(out) >>> 2;
    for (let i = 1; i < this.instances; i++) {
      if (counts[i] === 0) continue;
      const l = this.link(i);
      let k = 0;
      for (let r = 0; r < n; r++) {
        if (ownerOf(bounds, ids[r]!) !== i) continue;
        if (k === 0) this.f32.set(l.outView(dim), os + r * dim);
        else this.f32.set(l.outF32.subarray(k * dim, (k + 1) * dim), os + r * dim);
        k++;
      }
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
    this.plain('rmsnorm', out);
    this.plain('rmsnorm', x);
    this.plain('rmsnorm', weight);
    if (out.size === 0) return;
    this.k.rmsnorm(addr(out), addr(x), addr(weight), x.shape[0]!, width(x), eps);
  }

  rope(x: Tensor, cos: Tensor, sin: Tensor, opts: RopeOptions): void {
    checkRope(this.owner, x, cos, sin, opts);
    this.plain('rope', x);
    this.plain('rope', cos);
    this.plain('rope', sin);
    const rows = x.shape[0]!;
    const rotDim = 2 * cos.shape[1]!;
    if (rows === 0 || rotDim === 0) return;
    this.k.rope(addr(x), addr(cos), addr(sin), rows, opts.nHeads, opts.headDim, rotDim, opts.layout);
  }

  swiglu(out: Tensor, gate: Tensor, up: Tensor): void {
    checkSwiglu(this.owner, out, gate, up);
    this.plain('swiglu', out);
    this.plain('swiglu', gate);
    this.plain('swiglu', up);
    if (out.size === 0) return;
    this.k.swiglu(addr(out), addr(gate), addr(up), out.size);
  }

  geluGlu(out: Tensor, gate: Tensor, up: Tensor): void {
    checkGeluGlu(this.owner, out, gate, up);
    this.plain('geluGlu', out);
    this.plain('geluGlu', gate);
    this.plain('geluGlu', up);
    if (out.size === 0) return;
    this.k.geluGlu(addr(out), addr(gate), addr(up), out.size);
  }

  softcap(x: Tensor, cap: number): void {
    checkSoftcap(this.owner, x, cap);
    this.plain('softcap', x);
    if (x.size === 0) return;
    this.k.softcap(addr(x), x.size, cap);
  }

  scale(out: Tensor, x: Tensor, s: number): void {
    checkScale(this.owner, out, x, s);
    this.plain('scale', out);
    this.plain('scale', x);
    if (out.size === 0) return;
    this.k.scale(addr(out), addr(x), out.size, s);
  }

  add(out: Tensor, a: Tensor, b: Tensor): void {
    checkAdd(this.owner, out, a, b);
    this.plain('add', out);
    this.plain('add', a);
    this.plain('add', b);
    if (out.size === 0) return;
    this.k.add(addr(out), addr(a), addr(b), out.size);
  }

  softmax(x: Tensor): void {
    checkSoftmax(this.owner, x);
    this.plain('softmax', x);
    if (x.size === 0) return;
    this.k.softmax(addr(x), x.shape[0]!, width(x));
  }

  argmax(x: Tensor, row = 0): number {
    checkArgmax(this.owner, x, row);
    this.plain('argmax', x);
    const n = width(x);
    return this.k.argmax(addr(x) + row * n * 4, n);
  }

  attention(out: Tensor, q: Tensor, k: KvRows, v: KvRows, opts: AttentionOptions): void {
    const code = checkAttention(this.owner, out, q, k, v, opts);
    this.plain('attention', out);
    this.plain('attention', q);
    this.plainKv('attention', k);
    this.plainKv('attention', v);
    const rows = q.shape[0]!;
    if (rows === 0) return;
    const a = this.kvArgs;
    a.rows = rows;
    a.startPos = opts.startPos;
    a.nHeads = opts.nHeads;
    a.nKvHeads = opts.nKvHeads;
    a.headDim = opts.headDim;
    a.scale = opts.scale;
    a.window = opts.window ?? 0;
    a.keep = opts.keep ?? 0;
    a.capacity = k.shape[0]!;
    a.format = KV_FORMATS[code]!;
    a.groupSize = k instanceof QuantizedTensor ? k.spec.groupSize : 32;
    a.softcap = opts.softcap ?? 0;
    kvPtrs(this.kPtrs, k);
    kvPtrs(this.vPtrs, v);
    const parts = this.attentionParts(a);
    if (parts > 1) {
      this.attentionSplit(addr(out), addr(q), a, code, parts);
      return;
    }
    this.k.attentionKv(addr(out), addr(q), this.kPtrs, this.vPtrs, a);
  }

  writeKv(dst: KvRows, src: Tensor, opts: WriteKvOptions): void {
    const code = checkWriteKv(this.owner, dst, src, opts);
    this.plainKv('writeKv', dst);
    this.plain('writeKv', src);
    const a = this.writeArgs;
    a.rows = src.shape[0]!;
    a.startPos = opts.startPos;
    a.width = width(src);
    a.keep = opts.keep ?? 0;
    a.capacity = dst.shape[0]!;
    a.format = KV_FORMATS[code]!;
    a.groupSize = dst instanceof QuantizedTensor ? dst.spec.groupSize : 32;
    if (a.rows === 0 || a.width === 0) return;
    kvPtrs(this.kPtrs, dst);
    this.k.writeKv(this.kPtrs, addr(src), a);
  }

  /** Every part of KV storage whole in instance 0. */
  private plainKv(op: string, t: KvRows): void {
    if (t instanceof QuantizedTensor) {
      this.plain(op, t.packed);
      this.plain(op, t.scales);
      this.plain(op, t.biases);
    } else this.plain(op, t);
  }

  /** Arguments of the current attention / writeKv call, filled in place (no allocation per call). */
  private readonly kvArgs: Mutable<Required<KvAttention>> = {
    rows: 0,
    startPos: 0,
    nHeads: 1,
    nKvHeads: 1,
    headDim: 1,
    scale: 1,
    window: 0,
    keep: 0,
    capacity: 1,
    format: 'f32',
    groupSize: 32,
    softcap: 0,
  };
  private readonly writeArgs: Mutable<KvWrite> = {
    rows: 0,
    startPos: 0,
    width: 1,
    keep: 0,
    capacity: 1,
    format: 'f32',
    groupSize: 32,
  };
  private readonly kPtrs: Mutable<KvPtrs> = { data: 0, scales: 0, biases: 0 };
  private readonly vPtrs: Mutable<KvPtrs> = { data: 0, scales: 0, biases: 0 };

  /**
   * Into how many kv-head ranges an attention is split across the threads: 1 (the calling thread alone) unless the
   * workers are running, instance 0's memory is shared and the work is worth a round (about 2^17 multiply-adds). Each
   * head's output is computed by the same code whatever the range, so this only changes the speed.
   */
  private attentionParts(a: KvAttention): number {
    if (this.pool === null || !this.sharedMemory || a.nKvHeads < 2) return 1;
    const last = a.startPos + a.rows;
    const keys = a.window ? Math.min(a.window + a.keep, last) : last;
    if (a.rows * keys * a.nHeads * a.headDim < ATTENTION_SPLIT_MIN_WORK) return 1;
    return Math.min(this.instances, a.nKvHeads);
  }

  /** Attention with kv heads split into `parts` ranges: workers compute theirs in place in instance 0's memory. */
  private attentionSplit(po: number, pq: number, a: KvAttention, code: number, parts: number): void {
    const pool = this.pool!;
    const nKvHeads = a.nKvHeads;
    for (let i = 1; i < parts; i++) {
      const kv0 = Math.floor((i * nKvHeads) / parts);
      const kv1 = Math.floor(((i + 1) * nKvHeads) / parts);
      const bytes = attentionKvScratchBytes(a, kv0, kv1);
      if (bytes > this.attnCap[i]!) {
        const capacity = Math.max(bytes, 2 * this.attnCap[i]!, 4096);
        const ptr = this.allocBytes('attention', capacity);
        if (this.attnPtr[i] !== 0) this.k.free(this.attnPtr[i]!);
        this.attnPtr[i] = ptr;
        this.attnCap[i] = capacity;
      }
      const l = this.link(i);
      const u = l.u32;
      const A = P.ARG;
      u[A] = po;
      u[A + 1] = pq;
      u[A + 2] = this.kPtrs.data;
      u[A + 3] = this.kPtrs.scales;
      u[A + 4] = this.kPtrs.biases;
      u[A + 5] = this.vPtrs.data;
      u[A + 6] = this.vPtrs.scales;
      u[A + 7] = this.vPtrs.biases;
      u[A + 8] = a.rows;
      u[A + 9] = a.startPos;
      u[A + 10] = a.nHeads;
      u[A + 11] = nKvHeads;
      u[A + 12] = a.headDim;
      l.f32[A + 13] = a.scale;
      u[A + 14] = a.window;
      u[A + 15] = a.keep;
      u[A + 16] = a.capacity;
      u[A + 17] = code;
      u[A + 18] = a.groupSize;
      u[A + 19] = kv0;
      u[A + 20] = kv1;
      u[A + 21] = this.attnPtr[i]!;
      u[A + 22] = this.attnCap[i]!;
      l.f32[A + 23] = a.softcap ?? 0;
      pool.post(l, P.OP_ATTENTION);
    }
    let failure: unknown;
    try {
      this.k.attentionKv(po, pq, this.kPtrs, this.vPtrs, a, 0, Math.floor(nKvHeads / parts));
    } catch (e) {
      failure = e;
    }
    joinWorkers(pool, failure);
  }
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/** KV storage formats by the code `checkAttention` / `checkWriteKv` return. */
const KV_FORMATS: readonly (KvFormat | undefined)[] = [
  'f32',
  'f16',
  undefined,
  undefined,
  'q4',
  undefined,
  undefined,
  undefined,
  'q8',
];

/** Fills `p` with the addresses of KV storage `t`'s parts. */
function kvPtrs(p: Mutable<KvPtrs>, t: KvRows): void {
  if (t instanceof QuantizedTensor) {
    p.data = addr(t.packed);
    p.scales = addr(t.scales);
    p.biases = addr(t.biases);
  } else {
    p.data = addr(t);
    p.scales = 0;
    p.biases = 0;
  }
}

/** Stops the workers of a backend that was garbage-collected without `dispose()`. */
const poolReaper = new FinalizationRegistry<WorkerPool>((pool) => pool.dispose());

function isKernels(v: unknown): v is Kernels {
  return typeof v === 'object' && v !== null && typeof (v as Kernels).alloc === 'function' && 'memory' in v;
}

/**
 * Creates a WASM backend (`name: 'wasm'`). `opts.threads` (default: `MNEMO_THREADS`, else every core) sets how many
 * threads compute matmuls; see {@link WasmBackendOptions}. Passing a {@link Kernels} object (or `opts.kernels`) runs
 * the backend single-threaded on it. Each backend owns its tensors; tensors of another backend are refused.
 */
export async function createWasmBackend(opts?: WasmBackendOptions | Kernels): Promise<WasmBackend> {
  const o: WasmBackendOptions = isKernels(opts) ? { kernels: opts } : (opts ?? {});
  const op = 'createWasmBackend';
  const cap = o.maxInstanceBytes ?? WASM32_MAX_BYTES;
  if (typeof cap !== 'number' || !Number.isInteger(cap) || cap < 1 || cap > WASM32_MAX_BYTES)
    throw new RangeError(
      `${op}: maxInstanceBytes must be an integer in [1, 2^32], got ${String(o.maxInstanceBytes)}`,
    );
  const shardMin = o.shardMinBytes ?? envShardMinBytes(op) ?? DEFAULT_SHARD_MIN_BYTES;
  if (typeof shardMin !== 'number' || Number.isNaN(shardMin) || shardMin < 0)
    throw new RangeError(`${op}: shardMinBytes must be a number >= 0, got ${String(o.shardMinBytes)}`);
  let threads: number;
  if (o.kernels !== undefined) {
    threads = o.threads === undefined ? 1 : await resolveThreads(op, o.threads);
    if (threads !== 1)
      throw new TypeError(
        `${op}: custom kernels run single-threaded (workers load their own @mnemo/kernels instances); got threads ${threads}`,
      );
  } else threads = await resolveThreads(op, o.threads);
  const int8 = o.int8Activations ?? envInt8Activations(op) ?? false;
  if (typeof int8 !== 'boolean')
    throw new TypeError(`${op}: int8Activations must be a boolean, got ${String(o.int8Activations)}`);
  // With workers, instance 0's memory is shared so that they can compute attention in place in it.
  const k = o.kernels ?? (threads > 1 ? await loadSharedKernels() : await loadKernels());
  if (int8 && (k.quantizeActivations === undefined || k.matmulQ8a === undefined))
    throw new TypeError(`${op}: int8Activations needs kernels with quantizeActivations and matmulQ8a`);
  let startPool: (() => WorkerPool) | null = null;
  if (threads > 1) {
    // Loaded now (module loading is async), started with the first weight to split (synchronously).
    const { WorkerPool } = await import('./threads/pool');
    // Spinning waits pay off only while every thread has a core of its own.
    const spin = threads <= (await hardwareThreads()) ? 100_000 : 0;
    const memory = (k as { memory: unknown }).memory;
    const shared =
      memory instanceof WebAssembly.Memory && memory.buffer instanceof SharedArrayBuffer ? memory : null;
    startPool = () => {
      if (shared === null) return WorkerPool.start(threads - 1, spin, k);
      // One stack per worker in instance 0, for its attached kernels instance (kept for the backend's lifetime). The
      // attached instance runs only attention, which uses no shadow stack (the kernels' deepest use is ~200 bytes).
      const stackTops = Array.from(
        { length: threads - 1 },
        () => k.alloc(WORKER_STACK_BYTES) + WORKER_STACK_BYTES,
      );
      return WorkerPool.start(threads - 1, spin, k, {
        memory: shared,
        stackTops,
        stackBytes: WORKER_STACK_BYTES,
      });
    };
  }
  return new WasmBackendImpl(k, threads, startPool, cap, shardMin, int8);
}

/**
 * Waits for every worker of a round, even after the calling thread's own share failed (a worker must never be left
 * running), then rethrows the first failure: the calling thread's, else a worker's.
 */
function joinWorkers(pool: { waitAll(): void }, failure: unknown): void {
  try {
    pool.waitAll();
  } catch (e) {
    failure ??= e;
  }
  if (failure !== undefined) throw failure;
}
