// The shared-memory build: instance 0 (`loadSharedKernels`) owns a shared WebAssembly.Memory and its allocator;
// other threads attach a second instance of the same module to that memory (`attachKernels`) and run kernels on
// regions instance 0 allocated for them: their own stack, their own scratch.
import { MAX_PAGES } from './allocator';
import { WASM_SHARED_BASE64, WASM_SHARED_MEMORY_PAGES } from './generated/wasm-shared';
import {
  type AttentionShape,
  attentionShape,
  checkDisjoint,
  checkInt,
  checkSoftcap,
  decodeBase64,
  describe,
  type Exports,
  K_NAMES,
  type Kernels,
  type KvAttention,
  type KvBytes,
  type KvNames,
  type KvPtrs,
  kvAttentionShape,
  kvBytes,
  V_NAMES,
  WasmKernels,
} from './kernels';

/**
 * Recommended stack bytes for an attached instance (`attachKernels`). The kernels keep almost everything in wasm
 * locals: the deepest shadow-stack use measured over every kernel is a few hundred bytes (attention uses none),
 * so this leaves a wide margin.
 */
export const KERNELS_STACK_BYTES = 64 * 1024;

/** Smallest stack `attachKernels` accepts. */
export const MIN_KERNELS_STACK_BYTES = 4 * 1024;

/** The alignment of an attached instance's stack top, stack size and scratch. */
const STACK_ALIGN = 16;

/** The embedded shared-memory module's bytes. */
export function sharedKernelsWasmBytes(): Uint8Array {
  return decodeBase64(WASM_SHARED_BASE64);
}

let compiled: Promise<WebAssembly.Module> | undefined;

function sharedModule(): Promise<WebAssembly.Module> {
  compiled ??= WebAssembly.compile(sharedKernelsWasmBytes() as BufferSource);
  return compiled;
}

async function instantiate(
  memory: WebAssembly.Memory,
): Promise<Exports & { __stack_pointer: WebAssembly.Global }> {
  const instance = await WebAssembly.instantiate(await sharedModule(), { env: { memory } });
  return instance.exports as unknown as Exports & { __stack_pointer: WebAssembly.Global };
}

/**
 * Like `loadKernels()` (same `Kernels`, same allocator), but the instance's memory is a shared
 * `WebAssembly.Memory` (maximum 65536 pages) that other threads can attach to with `attachKernels`:
 * `kernels.memory.buffer` is a SharedArrayBuffer. The instance runs on the stack below its data, under
 * `__heap_base`; the allocator hands out memory above it only. Growth replaces `memory.buffer` with a longer
 * SharedArrayBuffer; views fetched earlier stay valid but cover only the old length, so fetch views again after
 * growth as with `loadKernels()`.
 */
export async function loadSharedKernels(): Promise<Kernels> {
  const memory = new WebAssembly.Memory({
    initial: WASM_SHARED_MEMORY_PAGES,
    maximum: MAX_PAGES,
    shared: true,
  });
  return new WasmKernels(await instantiate(memory), memory);
}

/**
 * Kernels of a second instance on another instance's shared memory (see `attachKernels`). No allocator: the caller
 * passes every region, including the scratch, and all must lie in the heap (above `__heap_base`, allocated by
 * instance 0) and outside this view's stack.
 */
export interface KernelsView {
  readonly memory: WebAssembly.Memory;
  /** This instance's stack is `[stackTop - stackBytes, stackTop)` (it grows down). */
  readonly stackTop: number;
  readonly stackBytes: number;
  /**
   * `Kernels.attentionHeads` (same arguments, same validation, bitwise the same output), with a caller-owned
   * scratch region: `scratch` 16-byte aligned, `scratchBytes >= attentionScratchBytes(rows, startPos, nHeads,
   * nKvHeads, headDim, window, kvHead0, kvHead1)`, disjoint from every other argument. `softcap` as in
   * `Kernels.attention` (default 0 = none).
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
    scratch: number,
    scratchBytes: number,
    softcap?: number,
  ): void;
  /**
   * `Kernels.attentionKv` (same arguments, same validation, bitwise the same output) for kv heads `kvHead0 ..<
   * kvHead1`, with a caller-owned scratch region: `scratch` 16-byte aligned, `scratchBytes >=
   * attentionKvScratchBytes(a, kvHead0, kvHead1)`, disjoint from every other argument.
   */
  attentionKv(
    out: number,
    q: number,
    k: KvPtrs,
    v: KvPtrs,
    a: KvAttention,
    kvHead0: number,
    kvHead1: number,
    scratch: number,
    scratchBytes: number,
  ): void;
}

/**
 * Instantiates the shared-memory module a second time on `memory` (the `memory` of a `loadSharedKernels()`
 * instance, e.g. posted to a worker) and returns a view of its kernels running on the stack
 * `[stackTop - stackBytes, stackTop)`, a region the caller allocated with instance 0's `alloc` (16-byte aligned,
 * `stackBytes` a multiple of 16 and at least {@link MIN_KERNELS_STACK_BYTES}; {@link KERNELS_STACK_BYTES} is
 * plenty) and uses for nothing else. Memory contents are left as they are (the module's data is initialized once,
 * by the first instance). Call once per thread; every thread needs its own stack.
 */
export async function attachKernels(
  memory: WebAssembly.Memory,
  stackTop: number,
  stackBytes: number,
): Promise<KernelsView> {
  const fn = 'attachKernels';
  if (!(memory instanceof WebAssembly.Memory) || !(memory.buffer instanceof SharedArrayBuffer)) {
    throw new TypeError(`${fn}: memory must be a shared WebAssembly.Memory (from loadSharedKernels())`);
  }
  checkInt(fn, 'stackTop', stackTop);
  checkInt(fn, 'stackBytes', stackBytes);
  if (stackTop % STACK_ALIGN !== 0 || stackBytes % STACK_ALIGN !== 0) {
    throw new RangeError(
      `${fn}: stackTop (${stackTop}) and stackBytes (${stackBytes}) must be multiples of ${STACK_ALIGN}`,
    );
  }
  if (stackBytes < MIN_KERNELS_STACK_BYTES) {
    throw new RangeError(`${fn}: stackBytes (${stackBytes}) must be at least ${MIN_KERNELS_STACK_BYTES}`);
  }
  const x = await instantiate(memory);
  const view = new View(x, memory, stackTop, stackBytes);
  view.inHeap(fn, 'stack', stackTop - stackBytes, stackBytes);
  return view;
}

class View implements KernelsView {
  private readonly heapBase: number;
  /** Filled in place by every call (a worker's hot path allocates nothing). */
  private readonly shape: AttentionShape = { qBytes: 0, kvBytes: 0, scratchBytes: 0 };

  constructor(
    private readonly x: Exports & { __stack_pointer: WebAssembly.Global },
    readonly memory: WebAssembly.Memory,
    readonly stackTop: number,
    readonly stackBytes: number,
  ) {
    this.heapBase = Number(x.__heap_base.value);
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
    scratch: number,
    scratchBytes: number,
    softcap = 0,
  ): void {
    const kn = 'attentionHeads';
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
      this.shape,
    );
    checkSoftcap(kn, softcap, true);
    checkInt(kn, 'scratchBytes', scratchBytes);
    if (scratchBytes < a.scratchBytes) {
      throw new RangeError(
        `${kn}: scratchBytes (${scratchBytes}) is less than the ${a.scratchBytes} bytes needed`,
      );
    }
    this.range(kn, 'q', q, a.qBytes, 4);
    this.range(kn, 'k', k, a.kvBytes, 4);
    this.range(kn, 'v', v, a.kvBytes, 4);
    this.range(kn, 'out', out, a.qBytes, 4);
    this.range(kn, 'scratch', scratch, scratchBytes, STACK_ALIGN);
    checkDisjoint(kn, 'out', out, a.qBytes, 'q', q, a.qBytes);
    checkDisjoint(kn, 'out', out, a.qBytes, 'k', k, a.kvBytes);
    checkDisjoint(kn, 'out', out, a.qBytes, 'v', v, a.kvBytes);
    checkDisjoint(kn, 'scratch', scratch, scratchBytes, 'out', out, a.qBytes);
    checkDisjoint(kn, 'scratch', scratch, scratchBytes, 'q', q, a.qBytes);
    checkDisjoint(kn, 'scratch', scratch, scratchBytes, 'k', k, a.kvBytes);
    checkDisjoint(kn, 'scratch', scratch, scratchBytes, 'v', v, a.kvBytes);
    this.x.__stack_pointer.value = this.stackTop; // also undoes a call that trapped halfway
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

  /** Sizes of the current attentionKv call (filled in place: no allocation per call). */
  private readonly kvInfo = kvBytes();
  /** A float view of the memory (rebuilt when it grows), to write a call's float parameters. */
  private buf: ArrayBufferLike | null = null;
  private f32All = new Float32Array(0);

  attentionKv(
    out: number,
    q: number,
    k: KvPtrs,
    v: KvPtrs,
    a: KvAttention,
    kvHead0: number,
    kvHead1: number,
    scratch: number,
    scratchBytes: number,
  ): void {
    const kn = 'attentionKv';
    const s = kvAttentionShape(kn, a, kvHead0, kvHead1, this.kvInfo);
    checkInt(kn, 'scratchBytes', scratchBytes);
    if (scratchBytes < s.scratchBytes) {
      throw new RangeError(
        `${kn}: scratchBytes (${scratchBytes}) is less than the ${s.scratchBytes} bytes needed`,
      );
    }
    this.range(kn, 'q', q, s.qBytes, 4);
    this.range(kn, 'out', out, s.qBytes, 4);
    this.range(kn, 'scratch', scratch, scratchBytes, STACK_ALIGN);
    this.kvRange(kn, K_NAMES, k, s);
    this.kvRange(kn, V_NAMES, v, s);
    checkDisjoint(kn, 'out', out, s.qBytes, 'q', q, s.qBytes);
    checkDisjoint(kn, 'scratch', scratch, scratchBytes, 'out', out, s.qBytes);
    checkDisjoint(kn, 'scratch', scratch, scratchBytes, 'q', q, s.qBytes);
    this.kvDisjoint(kn, 'out', out, s.qBytes, K_NAMES, k, s);
    this.kvDisjoint(kn, 'out', out, s.qBytes, V_NAMES, v, s);
    this.kvDisjoint(kn, 'scratch', scratch, scratchBytes, K_NAMES, k, s);
    this.kvDisjoint(kn, 'scratch', scratch, scratchBytes, V_NAMES, v, s);
    const quant = s.code >= 4;
    // the float parameters go through the scratch (see `Kernels.attentionKv`)
    const b = this.memory.buffer;
    if (b !== this.buf) {
      this.buf = b;
      this.f32All = new Float32Array(b, 0, Math.floor(b.byteLength / 4));
    }
    this.f32All[scratch >>> 2] = a.scale;
    this.f32All[(scratch >>> 2) + 1] = a.softcap ?? 0;
    this.x.__stack_pointer.value = this.stackTop; // also undoes a call that trapped halfway
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
    checkDisjoint(kn, an, a, aBytes, names[0], p.data, s.dataBytes);
    if (s.code >= 4) {
      checkDisjoint(kn, an, a, aBytes, names[1], p.scales, s.groupBytes);
      checkDisjoint(kn, an, a, aBytes, names[2], p.biases, s.groupBytes);
    }
  }

  /** `[ptr, ptr + bytes)` lies in the heap: above `__heap_base` (instance 0's stack and data) and inside memory. */
  inHeap(fn: string, name: string, ptr: number, bytes: number): void {
    const size = this.memory.buffer.byteLength;
    if (ptr < this.heapBase || ptr + bytes > size) {
      throw new RangeError(
        `${fn}: ${name} [${ptr}, ${ptr + bytes}) must lie in the heap [${this.heapBase}, ${size}) ` +
          '(allocate it with the kernels of loadSharedKernels())',
      );
    }
  }

  /** An aligned range in the heap, outside this view's stack. */
  private range(fn: string, name: string, ptr: number, bytes: number, align: number): void {
    if (typeof ptr !== 'number' || !Number.isInteger(ptr) || ptr < 0) {
      throw new TypeError(`${fn}: ${name} must be a non-negative integer pointer, got ${describe(ptr)}`);
    }
    if (ptr % align !== 0) throw new RangeError(`${fn}: ${name} (${ptr}) must be ${align}-byte aligned`);
    this.inHeap(fn, name, ptr, bytes);
    checkDisjoint(fn, name, ptr, bytes, 'the stack', this.stackTop - this.stackBytes, this.stackBytes);
  }
}
