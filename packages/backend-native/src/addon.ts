/// <reference path="./node-gyp-build.d.ts" />
/**
 * Loading the compiled addon: `build/Release/mnemo_native.node` (built by `pnpm build`) or a prebuilt binary in
 * `prebuilds/<platform>-<arch>/` (the node-gyp-build / prebuildify layout), found by `node-gyp-build`.
 */
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BackendUnavailableError } from '@mnemo/tensor';
import nodeGypBuild from 'node-gyp-build';

/** Handles are numbers; byte offsets and sizes are integers. See `native/src/addon.c`. */
export interface NativeContext {
  readonly level: string;
  readonly threads: number;
  alloc(bytes: number): number;
  free(h: number): void;
  write(h: number, byteOffset: number, src: ArrayBufferView): void;
  read(h: number, byteOffset: number, dst: ArrayBufferView): void;
  copy(dst: number, dstOffset: number, src: number, srcOffset: number, bytes: number): void;
  fill(h: number, byteOffset: number, bytes: number, value: number): void;
  /** Rows r0..r1 of a row-major matrix (`src` holds exactly those rows) into the panel buffer `dst`. kind 0: dense (arg = element bytes), 1: affine codes (arg = bits). */
  pack(
    dst: number,
    src: ArrayBufferView,
    rows: number,
    cols: number,
    kind: number,
    arg: number,
    r0: number,
    r1: number,
  ): void;
  /** Converts buffer h in place between row-major (toPanel 0) and panels (1). */
  repack(h: number, rows: number, cols: number, kind: number, arg: number, toPanel: number): void;
  readFile(h: number, byteOffset: number, fd: number, position: number, bytes: number): void;
  /** A row-major matrix read from a file, packed into the panel buffer `dst` a few rows at a time. */
  packFile(
    dst: number,
    fd: number,
    position: number,
    rows: number,
    cols: number,
    kind: number,
    arg: number,
  ): void;
  /** Bytes of the decoded panel of a `[rows, cols]` GGML weight of type `type` (GGUF id); -1 when impossible. */
  ggmlBytes(type: number, rows: number, cols: number): number;
  /** Raw GGML blocks of rows r0..r1 (`src` holds exactly those) decoded into the panel buffer `dst`. */
  ggmlPack(
    dst: number,
    src: ArrayBufferView,
    type: number,
    rows: number,
    cols: number,
    r0: number,
    r1: number,
  ): void;
  /** All rows of raw GGML blocks in buffer `src` at `srcOff` decoded into `dst`. */
  ggmlPackBuf(dst: number, src: number, srcOff: number, type: number, rows: number, cols: number): void;
  /** All rows of raw GGML blocks read from a file, decoded into `dst` a few rows at a time. */
  ggmlPackFile(dst: number, fd: number, position: number, type: number, rows: number, cols: number): void;
  toF32(out: number, outOff: number, src: number, srcOff: number, n: number, dtype: number): void;
  matmul(
    y: number,
    yOff: number,
    x: number,
    xOff: number,
    rows: number,
    k: number,
    n: number,
    bias: number,
    biasOff: number,
    w: number,
    quant: number,
    dtypeOrBits: number,
    group: number,
    scaleDtype: number,
    scales: number,
    biases: number,
    int8a: number,
  ): void;
  embedding(
    out: number,
    outOff: number,
    ids: Int32Array,
    vocab: number,
    k: number,
    w: number,
    quant: number,
    dtypeOrBits: number,
    group: number,
    scaleDtype: number,
    scales: number,
    biases: number,
  ): void;
  rmsnorm(
    out: number,
    outOff: number,
    x: number,
    xOff: number,
    w: number,
    wOff: number,
    rows: number,
    dim: number,
    eps: number,
  ): void;
  rope(
    x: number,
    xOff: number,
    cos: number,
    cosOff: number,
    sin: number,
    sinOff: number,
    rows: number,
    nHeads: number,
    headDim: number,
    half: number,
    layout: number,
  ): void;
  add(out: number, outOff: number, a: number, aOff: number, b: number, bOff: number, n: number): void;
  swiglu(out: number, outOff: number, g: number, gOff: number, u: number, uOff: number, n: number): void;
  geluGlu(out: number, outOff: number, g: number, gOff: number, u: number, uOff: number, n: number): void;
  softcap(x: number, xOff: number, n: number, cap: number): void;
  scale(out: number, outOff: number, x: number, xOff: number, n: number, s: number): void;
  softmax(x: number, xOff: number, rows: number, n: number): void;
  argmax(x: number, xOff: number, n: number): number;
  /** See native/src/addon.c: the KV sides are (fmt, bits, group, h, off, scalesH, scalesOff, biasesH, biasesOff). */
  attention(
    out: number,
    outOff: number,
    q: number,
    qOff: number,
    rows: number,
    start: number,
    nHeads: number,
    nKvHeads: number,
    headDim: number,
    scale: number,
    window: number,
    capacity: number,
    softcap: number,
    keep: number,
    ...kv: number[]
  ): void;
  writeKv(
    src: number,
    srcOff: number,
    rows: number,
    width: number,
    start: number,
    capacity: number,
    keep: number,
    ...dst: number[]
  ): void;
  exp(out: number, outOff: number, x: number, xOff: number, n: number): void;
  tanh(out: number, outOff: number, x: number, xOff: number, n: number): void;
  /** Bytes of live native buffers. */
  bytes(): number;
  /** V8's count of external memory: what this process has reported with napi_adjust_external_memory (tests). */
  external(): number;
  /** Bytes this context has told V8 of (its successful napi_adjust_external_memory calls; tests). */
  reported(): number;
  dispose(): void;
}

/** An ISA level this build has, and whether this CPU runs it. */
export interface NativeLevel {
  readonly name: string;
  readonly supported: boolean;
}

export interface NativeAddon {
  readonly abi: string;
  levels(): NativeLevel[];
  createContext(level: string, threads: number, spinNs: number): NativeContext;
}

let loaded: NativeAddon | BackendUnavailableError | undefined;

/**
 * The package's root folder (holding `build/` and `prebuilds/`): resolved by name, so that it is found from a bundle
 * that includes this module (the CLI) as well as from the package's own files.
 */
function packageRoot(): string {
  try {
    return dirname(createRequire(import.meta.url).resolve('@mnemo/backend-native/package.json'));
  } catch {
    return fileURLToPath(new URL('..', import.meta.url));
  }
}

/**
 * The addon, loaded once per process. Throws a {@link BackendUnavailableError} saying why when there is no binary
 * for this platform (none prebuilt and none built) or it cannot load.
 */
export function loadAddon(): NativeAddon {
  if (loaded === undefined) {
    try {
      const addon = nodeGypBuild(packageRoot()) as NativeAddon;
      if (typeof addon?.createContext !== 'function' || addon.abi !== '1')
        throw new Error('the binary is not this version of the mnemo addon (rebuild with pnpm build)');
      loaded = addon;
    } catch (e) {
      const msg = (e as Error)?.message ?? String(e);
      const reason = msg.startsWith('No native build was found')
        ? `no prebuilt binary for ${process.platform}-${process.arch} and none was built (${msg.split('\n')[0]})`
        : `the addon failed to load: ${msg.split('\n')[0]}`;
      loaded = new BackendUnavailableError(reason);
    }
  }
  if (loaded instanceof BackendUnavailableError) throw loaded;
  return loaded;
}
