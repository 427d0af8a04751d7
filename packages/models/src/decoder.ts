import type { KVCache } from '@mnemo/kv-cache';
import type { Backend, RopeLayout, Tensor, Weight } from '@mnemo/tensor';
import type { ForwardOptions, Model } from './model';
import { fillRopeTables } from './rope';

/** Weights of one pre-norm decoder layer. Optional parts are used when present. */
export interface DecoderLayer {
  readonly inputNorm: Tensor; // [hidden]
  readonly wq: Weight; // [nHeads * headDim, hidden]
  readonly wk: Weight; // [nKvHeads * headDim, hidden]
  readonly wv: Weight; // [nKvHeads * headDim, hidden]
  readonly wo: Weight; // [hidden, nHeads * headDim]
  readonly bq?: Tensor | undefined; // [nHeads * headDim]
  readonly bk?: Tensor | undefined; // [nKvHeads * headDim]
  readonly bv?: Tensor | undefined; // [nKvHeads * headDim]
  readonly bo?: Tensor | undefined; // [hidden]
  readonly qNorm?: Tensor | undefined; // [headDim] (qwen3)
  readonly kNorm?: Tensor | undefined; // [headDim] (qwen3)
  readonly postNorm: Tensor; // [hidden]
  readonly gate: Weight; // [ffn, hidden]
  readonly up: Weight; // [ffn, hidden]
  readonly down: Weight; // [hidden, ffn]
}

export interface DecoderWeights {
  readonly embed: Weight; // [vocab, hidden]
  readonly layers: readonly DecoderLayer[];
  readonly norm: Tensor; // [hidden]
  readonly head: Weight; // [vocab, hidden] (the embedding when tied)
}

export interface DecoderDims {
  readonly modelType: string;
  readonly hidden: number;
  readonly nHeads: number;
  readonly nKvHeads: number;
  readonly headDim: number;
  readonly ffn: number;
  readonly vocab: number;
  readonly eps: number;
  /** Sliding attention window, 0 for none. */
  readonly window: number;
  readonly ropeLayout: RopeLayout;
  /** Inverse frequencies for the rotated dimensions (length rotDim / 2). */
  readonly invFreq: Float64Array;
  /** Multiplier of q·k, usually 1/sqrt(headDim). */
  readonly attnScale: number;
  readonly maxPositionEmbeddings: number;
}

/** Default bytes of one `[rows, ffn]` MLP scratch buffer during prefill (see {@link DecoderOptions.mlpChunkRows}). */
export const MLP_CHUNK_BYTES = 4 * 2 ** 20;

export interface DecoderOptions {
  /**
   * Rows the MLP computes per matmul call while prefilling (default: as many as fit {@link MLP_CHUNK_BYTES} in one
   * `[rows, ffn]` f32 buffer, a multiple of 64 and at least 64). The MLP is row-wise and every kernel batch-invariant,
   * so results are bitwise the same for any value; bounding it bounds the `[rows, ffn]` scratch (and the backend's own
   * staging of those rows), which would otherwise grow with the prefill step size.
   */
  readonly mlpChunkRows?: number;
}

/** One chunk of rows of the MLP: input rows of x, gate/up scratch (gate also holds the activation), output rows of o. */
interface MlpChunk {
  readonly x: Tensor;
  readonly gate: Tensor;
  readonly up: Tensor;
  readonly o: Tensor;
}

/** Scratch views for one row count, made once and reused (decode never allocates). */
interface Views {
  readonly rows: number;
  readonly h: Tensor;
  readonly x: Tensor;
  readonly q: Tensor;
  readonly k: Tensor;
  readonly v: Tensor;
  readonly qHeads: Tensor; // q as [rows * nHeads, headDim]
  readonly kHeads: Tensor; // k as [rows * nKvHeads, headDim]
  readonly att: Tensor;
  readonly o: Tensor;
  readonly mlp: readonly MlpChunk[];
  readonly cos: Tensor;
  readonly sin: Tensor;
  readonly cosHost: Float32Array;
  readonly sinHost: Float32Array;
  readonly lastX: Tensor; // last row of x
  logitsAll: Tensor | null; // made on the first allLogits call for this row count
  readonly logitsLast: Tensor;
  readonly ids: Int32Array;
}

/**
 * The Llama-family pre-norm decoder loop shared by the built-in architectures:
 * embed → N × (rmsnorm → attention with RoPE over the KV cache → residual → rmsnorm → SwiGLU MLP → residual)
 * → rmsnorm → head. Scratch buffers are allocated for the largest row count seen and reused. Only the last row's
 * logits are computed unless `allLogits` is asked for, so the `[rows, vocab]` logits buffer (hundreds of MB for a
 * 128k vocabulary and a 512-token prefill step) exists only for callers that want it.
 */
export class Decoder implements Model {
  readonly modelType: string;
  readonly numLayers: number;
  readonly vocabSize: number;
  readonly cacheShape: { readonly nKvHeads: number; readonly headDim: number };
  readonly slidingWindow: number;
  readonly maxPositionEmbeddings: number;
  readonly weightBytes: number;
  /** Rows the MLP computes per call (see {@link DecoderOptions.mlpChunkRows}). */
  readonly mlpChunkRows: number;
  private capacity = 0;
  private base: Record<string, Tensor> = {};
  /** `[allCapacity, vocab]` logits for `allLogits` calls, allocated on the first one. */
  private allBase: Tensor | null = null;
  private allCapacity = 0;
  private views = new Map<number, Views>();
  private readonly ropeOpts;
  private readonly kRopeOpts;
  private readonly attnOpts: {
    startPos: number;
    nHeads: number;
    nKvHeads: number;
    headDim: number;
    scale: number;
    window: number;
  };

  constructor(
    private readonly backend: Backend,
    readonly dims: DecoderDims,
    readonly w: DecoderWeights,
    weightBytes: number,
    opts: DecoderOptions = {},
  ) {
    const chunk = opts.mlpChunkRows ?? Math.max(64, Math.floor(MLP_CHUNK_BYTES / (4 * dims.ffn) / 64) * 64);
    if (!Number.isSafeInteger(chunk) || chunk < 1)
      throw new RangeError(`Decoder: mlpChunkRows must be a positive integer, got ${chunk}`);
    this.mlpChunkRows = chunk;
    this.modelType = dims.modelType;
    this.numLayers = w.layers.length;
    this.vocabSize = dims.vocab;
    this.cacheShape = { nKvHeads: dims.nKvHeads, headDim: dims.headDim };
    this.slidingWindow = dims.window;
    this.maxPositionEmbeddings = dims.maxPositionEmbeddings;
    this.weightBytes = weightBytes;
    this.ropeOpts = { nHeads: dims.nHeads, headDim: dims.headDim, layout: dims.ropeLayout };
    this.kRopeOpts = { nHeads: dims.nKvHeads, headDim: dims.headDim, layout: dims.ropeLayout };
    this.attnOpts = {
      startPos: 0,
      nHeads: dims.nHeads,
      nKvHeads: dims.nKvHeads,
      headDim: dims.headDim,
      scale: dims.attnScale,
      window: dims.window,
    };
  }

  forward(tokens: Int32Array, caches: readonly KVCache[], opts?: ForwardOptions): Tensor {
    const rows = tokens.length;
    if (rows === 0) throw new RangeError('forward: no tokens');
    if (caches.length !== this.numLayers) {
      throw new RangeError(`forward: got ${caches.length} caches for a model with ${this.numLayers} layers`);
    }
    const be = this.backend;
    const d = this.dims;
    const s = this.scratch(rows);
    const startPos = caches[0]!.offset;
    s.ids.set(tokens);
    be.embedding(s.h, this.w.embed, s.ids);
    fillRopeTables(d.invFreq, startPos, rows, s.cosHost, s.sinHost);
    be.write(s.cos, s.cosHost);
    be.write(s.sin, s.sinHost);
    for (let l = 0; l < this.numLayers; l++) {
      const L = this.w.layers[l]!;
      const cache = caches[l]!;
      if (cache.offset !== startPos) {
        throw new RangeError(
          `forward: cache of layer ${l} holds ${cache.offset} tokens, layer 0 holds ${startPos}`,
        );
      }
      // attention
      be.rmsnorm(s.x, s.h, L.inputNorm, d.eps);
      be.matmul(s.q, s.x, L.wq, L.bq);
      be.matmul(s.k, s.x, L.wk, L.bk);
      be.matmul(s.v, s.x, L.wv, L.bv);
      if (L.qNorm) be.rmsnorm(s.qHeads, s.qHeads, L.qNorm, d.eps);
      if (L.kNorm) be.rmsnorm(s.kHeads, s.kHeads, L.kNorm, d.eps);
      be.rope(s.q, s.cos, s.sin, this.ropeOpts);
      be.rope(s.k, s.cos, s.sin, this.kRopeOpts);
      const kv = cache.updateAndFetch(s.k, s.v);
      this.attnOpts.startPos = kv.startPos;
      be.attention(s.att, s.q, kv.keys, kv.values, this.attnOpts);
      be.matmul(s.o, s.att, L.wo, L.bo);
      be.add(s.h, s.h, s.o);
      // mlp
      be.rmsnorm(s.x, s.h, L.postNorm, d.eps);
      for (let c = 0; c < s.mlp.length; c++) {
        const m = s.mlp[c]!;
        be.matmul(m.gate, m.x, L.gate);
        be.matmul(m.up, m.x, L.up);
        be.swiglu(m.gate, m.gate, m.up);
        be.matmul(m.o, m.gate, L.down);
      }
      be.add(s.h, s.h, s.o);
    }
    be.rmsnorm(s.x, s.h, this.w.norm, d.eps);
    if (opts?.allLogits) {
      const all = s.logitsAll ?? this.makeLogitsAll(s);
      be.matmul(all, s.x, this.w.head);
      return all;
    }
    be.matmul(s.logitsLast, s.lastX, this.w.head);
    return s.logitsLast;
  }

  free(): void {
    this.freeScratch();
    const seen = new Set<Weight>();
    const release = (t: Weight | undefined) => {
      if (t && !seen.has(t)) {
        seen.add(t);
        this.backend.free(t);
      }
    };
    release(this.w.embed);
    release(this.w.head);
    release(this.w.norm);
    for (const L of this.w.layers) {
      for (const t of [
        L.inputNorm,
        L.wq,
        L.wk,
        L.wv,
        L.wo,
        L.bq,
        L.bk,
        L.bv,
        L.bo,
        L.qNorm,
        L.kNorm,
        L.postNorm,
        L.gate,
        L.up,
        L.down,
      ]) {
        release(t);
      }
    }
  }

  private freeScratch(): void {
    for (const t of Object.values(this.base)) this.backend.free(t);
    this.base = {};
    if (this.allBase) this.backend.free(this.allBase);
    this.allBase = null;
    this.allCapacity = 0;
    this.views.clear();
    this.capacity = 0;
  }

  private scratch(rows: number): Views {
    const hit = this.views.get(rows);
    if (hit) return hit;
    if (rows > this.capacity) this.grow(rows);
    if (this.views.size >= 32) this.views.clear();
    const v = this.makeViews(rows);
    this.views.set(rows, v);
    return v;
  }

  private grow(rows: number): void {
    this.freeScratch();
    const d = this.dims;
    const be = this.backend;
    const qw = d.nHeads * d.headDim;
    const kw = d.nKvHeads * d.headDim;
    const half = d.invFreq.length;
    const mlpRows = Math.min(rows, this.mlpChunkRows);
    const shapes: Record<string, [number, number]> = {
      h: [rows, d.hidden],
      x: [rows, d.hidden],
      q: [rows, qw],
      k: [rows, kw],
      v: [rows, kw],
      att: [rows, qw],
      o: [rows, d.hidden],
      gate: [mlpRows, d.ffn],
      up: [mlpRows, d.ffn],
      cos: [rows, half],
      sin: [rows, half],
      logits: [1, d.vocab],
    };
    for (const [name, shape] of Object.entries(shapes)) this.base[name] = be.alloc('f32', shape);
    this.capacity = rows;
  }

  /** The `[rows, vocab]` logits view of `s`, allocating (or growing) the allLogits buffer. */
  private makeLogitsAll(s: Views): Tensor {
    if (s.rows > this.allCapacity) {
      if (this.allBase) this.backend.free(this.allBase);
      this.allBase = null;
      for (const v of this.views.values()) v.logitsAll = null;
      this.allBase = this.backend.alloc('f32', [this.capacity, this.dims.vocab]);
      this.allCapacity = this.capacity;
    }
    s.logitsAll = this.backend.view(this.allBase!, [s.rows, this.dims.vocab]);
    return s.logitsAll;
  }

  private makeViews(rows: number): Views {
    const d = this.dims;
    const be = this.backend;
    const b = this.base;
    const view = (name: string, shape: number[], offset = 0) => be.view(b[name]!, shape, offset);
    const qw = d.nHeads * d.headDim;
    const kw = d.nKvHeads * d.headDim;
    const half = d.invFreq.length;
    const q = view('q', [rows, qw]);
    const k = view('k', [rows, kw]);
    const x = view('x', [rows, d.hidden]);
    const o = view('o', [rows, d.hidden]);
    const mlp: MlpChunk[] = [];
    for (let r0 = 0; r0 < rows; r0 += this.mlpChunkRows) {
      const n = Math.min(this.mlpChunkRows, rows - r0);
      const whole = n === rows;
      mlp.push({
        x: whole ? x : view('x', [n, d.hidden], r0 * d.hidden),
        gate: view('gate', [n, d.ffn]),
        up: view('up', [n, d.ffn]),
        o: whole ? o : view('o', [n, d.hidden], r0 * d.hidden),
      });
    }
    return {
      rows,
      h: view('h', [rows, d.hidden]),
      x,
      q,
      k,
      v: view('v', [rows, kw]),
      qHeads: be.view(q, [rows * d.nHeads, d.headDim]),
      kHeads: be.view(k, [rows * d.nKvHeads, d.headDim]),
      att: view('att', [rows, qw]),
      o,
      mlp,
      cos: view('cos', [rows, half]),
      sin: view('sin', [rows, half]),
      cosHost: new Float32Array(rows * half),
      sinHost: new Float32Array(rows * half),
      lastX: view('x', [1, d.hidden], (rows - 1) * d.hidden),
      logitsAll: null,
      logitsLast: view('logits', [1, d.vocab]),
      ids: new Int32Array(rows),
    };
  }
}
