/**
 * The control block shared by the calling thread and one worker (a SharedArrayBuffer of {@link CTL_BYTES} bytes),
 * read through an Int32Array (`ctl`), a Uint32Array (`u32`) and a Float64Array (`f64`) over the same buffer.
 *
 * One round: the caller writes `OP` and the arguments, then stores `GEN + 1` into `GEN` (Atomics, which publishes the
 * plain writes before it) and notifies; the worker runs the op, writes `STATUS` (and a message on failure) and stores
 * the generation it ran into `DONE`. Both sides spin on an Atomics.load for a while before blocking in Atomics.wait.
 * Bulk data goes through two plain SharedArrayBuffers: `input` (caller → workers, shared by all workers: x rows, bias,
 * ids, upload chunks) and one `output` per worker (worker → caller: y rows, embedding rows, read chunks).
 */
import type { MessagePort } from 'node:worker_threads';
import { GGML_BLOCK_TYPES, type GgmlBlockType } from '@mnemo/kernels';

/** Int32 slots. */
export const GEN = 0;
export const DONE = 1;
export const OP = 2;
export const STATUS = 3;
/** Set to 1 by the worker when it exits (so a caller waiting for it does not wait forever). */
export const EXITED = 4;
/** Length in UTF-16 units of the error message in the message area. */
export const MSG_LEN = 5;
/** Uint32 slot of a result (a pointer; at startup, the length of the probe in `output`). */
export const RESULT = 6;
/** Set by the worker once started: 1 ready (probe in `output`), 2 failed (message in the message area). */
export const READY = 7;
/** First Uint32 argument slot; op arguments are `ARG + i`. */
export const ARG = 8;
export const MAX_ARGS = 24;
/** Float64 result slots (indices into the Float64Array view). */
export const F64_RESULT = 4;
/** Byte offset and length (in UTF-16 units) of the error message area. */
export const MSG_OFFSET = 256;
export const MSG_CHARS = 1920;
export const CTL_BYTES = MSG_OFFSET + 2 * MSG_CHARS;

/** Smallest adaptive spin budget (polls) of a waiting side, when spinning at all. */
export const MIN_SPIN = 64;

/** Op codes. */
export const OP_EXIT = 1;
/** Receive new `{ input, output }` buffers from the message port (`receiveMessageOnPort`). */
export const OP_BUFFERS = 2;
/** `RESULT = alloc(ARG0 bytes)` (0 for 0 bytes). */
export const OP_ALLOC = 3;
/** `free(ARG0)`. */
export const OP_FREE = 4;
/** Copies input bytes `[0, ARG1)` to address ARG0. */
export const OP_WRITE = 5;
/** Copies `ARG1` bytes at address ARG0 to output bytes `[0, ARG1)`. */
export const OP_READ = 6;
/**
 * Dense matmul of the worker's shard: w ARG0, rows ARG1, inDim ARG2, shard rows (outputs) ARG3, dtype code ARG4,
 * has bias ARG5, bias offset in input floats ARG6. x is input floats `[0, rows·inDim)`; y goes to output floats
 * `[0, rows·n)` (row-major `[rows, n]`).
 */
export const OP_MATMUL = 7;
/**
 * Quantized matmul: packed ARG0, scales ARG1, biases ARG2, rows ARG3, inDim ARG4, n ARG5, bits ARG6, group size ARG7,
 * scale dtype code ARG8, has bias ARG9, bias offset ARG10. Same staging as {@link OP_MATMUL}.
 */
export const OP_MATMUL_Q = 8;
/** Dense embedding: table ARG0, ids ARG1, shard vocab ARG2, dim ARG3, dtype ARG4, ids offset (input int32s) ARG5. */
export const OP_EMBED = 9;
/**
 * Quantized embedding: packed ARG0, scales ARG1, biases ARG2, ids ARG3, shard vocab ARG4, dim ARG5, bits ARG6,
 * group size ARG7, scale dtype ARG8, ids offset ARG9.
 */
export const OP_EMBED_Q = 10;
/** `f64[F64_RESULT] = allocatedBytes()`, `f64[F64_RESULT + 1] = memory bytes`. */
export const OP_STATS = 11;
/**
 * Quantized matmul from int8-rounded activations (`matmulQ8a`): arguments as {@link OP_MATMUL_Q}; the input holds the
 * `quantizedActivationBytes(rows, inDim)` bytes of the rounded x instead of x (the bias offset counts floats after it).
 */
export const OP_MATMUL_Q8A = 12;
/**
 * Attention (`attentionKv`) of the query heads of kv heads `[ARG19, ARG20)`, computed in place in instance 0's shared
 * memory by the worker's attached kernels: out ARG0, q ARG1, keys data/scales/biases ARG2..4, values data/scales/
 * biases ARG5..7 (instance-0 addresses), rows ARG8, start position ARG9, heads ARG10, kv heads ARG11, head size ARG12,
 * scale ARG13 (f32 bits), window ARG14, keep ARG15, storage rows ARG16, format code ARG17 (0 f32, 1 f16, 4 q4, 8 q8),
 * group size ARG18, scratch ARG21 and its bytes ARG22 (in instance 0, this worker's own), soft-cap ARG23 (f32
 * bits, 0 = none). Nothing is staged.
 */
export const OP_ATTENTION = 13;

/**
 * GGML block matmul of the worker's shard: w ARG0, rows ARG1, inDim ARG2, shard rows ARG3, GGML type id ARG4, has
 * bias ARG5, bias offset ARG6, int8 activations ARG7 (1: the input holds the rounded x, as for
 * {@link OP_MATMUL_Q8A}). Same staging as {@link OP_MATMUL}.
 */
export const OP_MATMUL_G = 14;
/** GGML block embedding: as {@link OP_EMBED} with the GGML type id in ARG4 instead of the dtype. */
export const OP_EMBED_G = 15;

/** Status codes: which Error class the worker's failure had. */
export const OK = 0;
export const FAIL_ERROR = 1;
export const FAIL_TYPE = 2;
export const FAIL_RANGE = 3;

/** Dense dtype codes (the order of the kernels' own codes). */
export const DTYPE_CODES = ['f32', 'f16', 'bf16'] as const;
export type DenseCode = 0 | 1 | 2;

export function dtypeCode(d: 'f32' | 'f16' | 'bf16'): DenseCode {
  return d === 'f32' ? 0 : d === 'f16' ? 1 : 2;
}

/** `workerData` of a worker. */
export interface WorkerInit {
  readonly ctl: SharedArrayBuffer;
  /** Carries new staging buffers (read synchronously with `receiveMessageOnPort` during {@link OP_BUFFERS}). */
  readonly port: MessagePort;
  readonly index: number;
  /** Atomics.load polls before blocking in Atomics.wait. */
  readonly spin: number;
  /** The first staging buffers. */
  readonly input: SharedArrayBuffer;
  /**
   * Instance 0's memory when it is shared (more than one thread): the worker attaches a second kernels instance to
   * it, with its stack at `[stackTop - stackBytes, stackTop)` (allocated in instance 0), for ops computed in place.
   */
  readonly shared?: {
    readonly memory: WebAssembly.Memory;
    readonly stackTop: number;
    readonly stackBytes: number;
  };
  readonly output: SharedArrayBuffer;
}

/** GGML types by their GGUF id (the code passed to workers). */
const GGML_BY_ID = new Map(
  (Object.keys(GGML_BLOCK_TYPES) as GgmlBlockType[]).map((t) => [GGML_BLOCK_TYPES[t].id, t]),
);

export function ggmlTypeOf(id: number): GgmlBlockType {
  const t = GGML_BY_ID.get(id);
  if (t === undefined) throw new RangeError(`worker: unknown GGML type id ${id}`);
  return t;
}
