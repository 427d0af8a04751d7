/**
 * The JS reference backend (`js`): plain loops over typed arrays, accumulating in float64 and storing f32. It is the
 * oracle of the conformance suite, so it favours being obviously right over being fast.
 */
import {
  type AttentionOptions,
  BACKEND_API_VERSION,
  type Backend,
  type KvRows,
  kvRow,
  type RopeOptions,
  type WriteKvOptions,
} from '../backend';
import { f32Bits, f32BitsToF16Bits } from '../convert';
import { DTYPE_BYTES, type DType, isDType, type QuantSpec } from '../dtype';
import { type GgmlBlockType, GgmlTensor } from '../ggml';
import { Owner, width } from '../owner';
import { packedRowWords, quantize } from '../quant';
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
import { f32Of, floatAt, kvReader, newStorage, type RefStorage, weightRow } from './storage';

function bytesOf(data: ArrayBufferView): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

class ReferenceBackend implements Backend {
  readonly apiVersion = BACKEND_API_VERSION;
  readonly name = 'js';
  private readonly owner = new Owner<RefStorage>('js');

  // ---- memory ----------------------------------------------------------------------------------------------------

  alloc(dtype: DType, shape: readonly number[]): Tensor {
    this.owner.checkLive('alloc');
    if (!isDType(dtype)) throw new TypeError(`alloc: unknown dtype ${String(dtype)}`);
    const n = checkShape('alloc', shape);
    const s = newStorage(dtype, n * DTYPE_BYTES[dtype]);
    this.owner.add(s);
    return new Tensor(this.name, dtype, [...shape], s, 0);
  }

  upload(dtype: DType, shape: readonly number[], data: ArrayBufferView): Tensor {
    this.owner.checkLive('upload');
    checkUpload('upload', dtype, shape, data);
    const t = this.alloc(dtype, shape);
    (t.storage as RefStorage).u8.set(bytesOf(data));
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

  uploadGgml(
    type: GgmlBlockType,
    shape: readonly [rows: number, cols: number],
    blocks: ArrayBufferView,
  ): GgmlTensor {
    this.owner.checkLive('uploadGgml');
    const rowBytes = checkUploadGgml(type, shape, blocks);
    const [rows, cols] = shape;
    return new GgmlTensor(type, [rows, cols], this.upload('u8', [rows, rowBytes], blocks));
  }

  view(t: Tensor, shape: readonly number[], offset = 0): Tensor {
    checkView(this.owner, t, shape, offset);
    return new Tensor(this.name, t.dtype, [...shape], t.storage, t.offset + offset);
  }

  write(dst: Tensor, src: ArrayBufferView): void {
    checkWrite(this.owner, dst, src);
    (dst.storage as RefStorage).u8.set(bytesOf(src), dst.offset * DTYPE_BYTES[dst.dtype]);
  }

  read(t: Tensor, out?: Float32Array): Float32Array {
    checkRead(this.owner, t, out);
    const res = out ?? new Float32Array(t.size);
    res.set(f32Of(t).subarray(t.offset, t.offset + t.size));
    return res;
  }

  readBytes(t: Tensor, out?: Uint8Array): Uint8Array {
    checkReadBytes(this.owner, t, out);
    const res = out ?? new Uint8Array(t.byteLength);
    const start = t.offset * DTYPE_BYTES[t.dtype];
    res.set((t.storage as RefStorage).u8.subarray(start, start + t.byteLength));
    return res;
  }

  free(t: Weight): void {
    checkFree(this.owner, t);
    if (t instanceof QuantizedTensor) {
      this.owner.release(t.packed.storage as RefStorage);
      this.owner.release(t.scales.storage as RefStorage);
      this.owner.release(t.biases.storage as RefStorage);
    } else if (t instanceof GgmlTensor) {
      this.owner.release(t.blocks.storage as RefStorage);
    } else {
      this.owner.release(t.storage as RefStorage);
    }
  }

  memoryInUse(): number {
    return this.owner.memoryInUse();
  }

  dispose(): void {
    this.owner.releaseAll();
  }

  // ---- ops -------------------------------------------------------------------------------------------------------

  copyRows(dst: Tensor, dstRow: number, src: Tensor, srcRow: number, rows: number): void {
    checkCopyRows(this.owner, dst, dstRow, src, srcRow, rows);
    const eb = DTYPE_BYTES[dst.dtype];
    const rowBytes = width(dst) * eb;
    const from = src.offset * eb + srcRow * rowBytes;
    const bytes = (src.storage as RefStorage).u8.slice(from, from + rows * rowBytes);
    (dst.storage as RefStorage).u8.set(bytes, dst.offset * eb + dstRow * rowBytes);
  }

  toF32(out: Tensor, src: Tensor): void {
    checkToF32(this.owner, out, src);
    const o = f32Of(out);
    for (let i = 0; i < out.size; i++) o[out.offset + i] = floatAt(src, i);
  }

  matmul(y: Tensor, x: Tensor, w: Weight, bias?: Tensor): void {
    checkMatmul(this.owner, y, x, w, bias);
    const rows = x.shape[0]!;
    const inDim = width(x);
    const outDim = w.shape[0]!;
    const xs = f32Of(x);
    const ys = f32Of(y);
    const wRow = new Float64Array(inDim);
    for (let o = 0; o < outDim; o++) {
      weightRow(w, o, wRow);
      const b = bias === undefined ? 0 : floatAt(bias, o);
      for (let r = 0; r < rows; r++) {
        let sum = 0;
        for (let i = 0; i < inDim; i++) sum += xs[x.offset + r * inDim + i]! * wRow[i]!;
        ys[y.offset + r * outDim + o] = sum + b;
      }
    }
  }

  embedding(out: Tensor, table: Weight, ids: Int32Array): void {
    checkEmbedding(this.owner, out, table, ids);
    const dim = table.shape[1]!;
    const os = f32Of(out);
    const row = new Float64Array(dim);
    for (let r = 0; r < ids.length; r++) {
      weightRow(table, ids[r]!, row);
      for (let i = 0; i < dim; i++) os[out.offset + r * dim + i] = row[i]!;
    }
  }

  rmsnorm(out: Tensor, x: Tensor, weight: Tensor, eps: number): void {
    checkRmsnorm(this.owner, out, x, weight, eps);
    const rows = x.shape[0]!;
    const dim = width(x);
    const xs = f32Of(x);
    const os = f32Of(out);
    const ws = f32Of(weight);
    for (let r = 0; r < rows; r++) {
      let ss = 0;
      for (let i = 0; i < dim; i++) ss += xs[x.offset + r * dim + i]! ** 2;
      const inv = 1 / Math.sqrt(ss / dim + eps);
      for (let i = 0; i < dim; i++)
        os[out.offset + r * dim + i] = xs[x.offset + r * dim + i]! * inv * ws[weight.offset + i]!;
    }
  }

  rope(x: Tensor, cos: Tensor, sin: Tensor, opts: RopeOptions): void {
    checkRope(this.owner, x, cos, sin, opts);
    const rows = x.shape[0]!;
    const { nHeads, headDim, layout } = opts;
    const half = cos.shape[1]!;
    const xs = f32Of(x);
    const cs = f32Of(cos);
    const ss = f32Of(sin);
    for (let r = 0; r < rows; r++) {
      for (let h = 0; h < nHeads; h++) {
        const base = x.offset + r * nHeads * headDim + h * headDim;
        for (let i = 0; i < half; i++) {
          const c = cs[cos.offset + r * half + i]!;
          const s = ss[sin.offset + r * half + i]!;
          const ia = layout === 'half' ? base + i : base + 2 * i;
          const ib = layout === 'half' ? base + i + half : base + 2 * i + 1;
          const a = xs[ia]!;
          const b = xs[ib]!;
          xs[ia] = a * c - b * s;
          xs[ib] = a * s + b * c;
        }
      }
    }
  }

  swiglu(out: Tensor, gate: Tensor, up: Tensor): void {
    checkSwiglu(this.owner, out, gate, up);
    const os = f32Of(out);
    const gs = f32Of(gate);
    const us = f32Of(up);
    for (let i = 0; i < out.size; i++) {
      const g = gs[gate.offset + i]!;
      os[out.offset + i] = (g / (1 + Math.exp(-g))) * us[up.offset + i]!;
    }
  }

  geluGlu(out: Tensor, gate: Tensor, up: Tensor): void {
    checkGeluGlu(this.owner, out, gate, up);
    const os = f32Of(out);
    const gs = f32Of(gate);
    const us = f32Of(up);
    for (let i = 0; i < out.size; i++)
      os[out.offset + i] = geluTanh(gs[gate.offset + i]!) * us[up.offset + i]!;
  }

  softcap(x: Tensor, cap: number): void {
    checkSoftcap(this.owner, x, cap);
    const xs = f32Of(x);
    for (let i = 0; i < x.size; i++) xs[x.offset + i] = cap * Math.tanh(xs[x.offset + i]! / cap);
  }

  scale(out: Tensor, x: Tensor, s: number): void {
    checkScale(this.owner, out, x, s);
    const os = f32Of(out);
    const xs = f32Of(x);
    const f = Math.fround(s);
    for (let i = 0; i < out.size; i++) os[out.offset + i] = xs[x.offset + i]! * f;
  }

  add(out: Tensor, a: Tensor, b: Tensor): void {
    checkAdd(this.owner, out, a, b);
    const os = f32Of(out);
    const as = f32Of(a);
    const bs = f32Of(b);
    for (let i = 0; i < out.size; i++) os[out.offset + i] = as[a.offset + i]! + bs[b.offset + i]!;
  }

  softmax(x: Tensor): void {
    checkSoftmax(this.owner, x);
    const rows = x.shape[0]!;
    const n = width(x);
    const xs = f32Of(x);
    const e = new Float64Array(n);
    for (let r = 0; r < rows; r++) {
      const base = x.offset + r * n;
      let max = -Infinity;
      for (let i = 0; i < n; i++) max = Math.max(max, xs[base + i]!);
      let sum = 0;
      for (let i = 0; i < n; i++) {
        e[i] = Math.exp(xs[base + i]! - max);
        sum += e[i]!;
      }
      for (let i = 0; i < n; i++) xs[base + i] = e[i]! / sum;
    }
  }

  argmax(x: Tensor, row = 0): number {
    checkArgmax(this.owner, x, row);
    const n = width(x);
    const xs = f32Of(x);
    const base = x.offset + row * n;
    let best = 0;
    for (let i = 1; i < n; i++) if (xs[base + i]! > xs[base + best]!) best = i;
    return best;
  }

  attention(out: Tensor, q: Tensor, k: KvRows, v: KvRows, opts: AttentionOptions): void {
    checkAttention(this.owner, out, q, k, v, opts);
    const rows = q.shape[0]!;
    const { startPos, nHeads, nKvHeads, headDim, scale } = opts;
    const window = opts.window ?? 0;
    const cap = opts.softcap ?? 0;
    const keep = opts.keep ?? 0;
    const capacity = k.shape[0]!;
    const group = nHeads / nKvHeads;
    const qs = f32Of(q);
    const os = f32Of(out);
    const qWidth = nHeads * headDim;
    const kvWidth = nKvHeads * headDim;
    const keys = kvReader(k, kvWidth);
    const values = kvReader(v, kvWidth);
    const seen: number[] = []; // the rows of V(p), positions ascending
    const weights = new Float64Array(startPos + rows);
    const kRow = new Float64Array(headDim);
    for (let r = 0; r < rows; r++) {
      const p = startPos + r;
      const lo = window > 0 ? Math.max(0, p - window + 1) : 0;
      seen.length = 0;
      for (let j = 0; j < Math.min(keep, lo); j++) seen.push(kvRow(j, capacity, keep));
      for (let j = lo; j <= p; j++) seen.push(kvRow(j, capacity, keep));
      for (let h = 0; h < nHeads; h++) {
        const kvh = Math.floor(h / group);
        const qBase = q.offset + r * qWidth + h * headDim;
        let max = -Infinity;
        for (let i = 0; i < seen.length; i++) {
          keys(seen[i]!, kvh * headDim, headDim, kRow);
          let dot = 0;
          for (let d = 0; d < headDim; d++) dot += qs[qBase + d]! * kRow[d]!;
          const sc = dot * scale;
          weights[i] = cap > 0 ? cap * Math.tanh(sc / cap) : sc;
          max = Math.max(max, weights[i]!);
        }
        let sum = 0;
        for (let i = 0; i < seen.length; i++) {
          weights[i] = Math.exp(weights[i]! - max);
          sum += weights[i]!;
        }
        const acc = new Float64Array(headDim);
        for (let i = 0; i < seen.length; i++) {
          values(seen[i]!, kvh * headDim, headDim, kRow);
          for (let d = 0; d < headDim; d++) acc[d] = acc[d]! + weights[i]! * kRow[d]!;
        }
        for (let d = 0; d < headDim; d++) os[out.offset + r * qWidth + h * headDim + d] = acc[d]! / sum;
      }
    }
  }

  writeKv(dst: KvRows, src: Tensor, opts: WriteKvOptions): void {
    checkWriteKv(this.owner, dst, src, opts);
    const rows = src.shape[0]!;
    const w = width(src);
    const capacity = dst.shape[0]!;
    const keep = opts.keep ?? 0;
    const xs = f32Of(src);
    for (let r = 0; r < rows; r++) {
      const row = kvRow(opts.startPos + r, capacity, keep);
      const x = xs.subarray(src.offset + r * w, src.offset + (r + 1) * w);
      if (dst instanceof QuantizedTensor) {
        const qd = quantize(dst.spec, 1, w, x);
        const words = packedRowWords(dst.spec, w);
        const groups = w / dst.spec.groupSize;
        (dst.packed.storage as RefStorage).u32.set(qd.packed, dst.packed.offset + row * words);
        f32Of(dst.scales).set(qd.scales, dst.scales.offset + row * groups);
        f32Of(dst.biases).set(qd.biases, dst.biases.offset + row * groups);
      } else if (dst.dtype === 'f32') {
        f32Of(dst).set(x, dst.offset + row * w);
      } else {
        const u16 = (dst.storage as RefStorage).u16;
        for (let i = 0; i < w; i++) u16[dst.offset + row * w + i] = f32BitsToF16Bits(f32Bits(x[i]!));
      }
    }
  }
}

/** `gelu_tanh(g)` in float64, as `g / (1 + e^(−2u))` (no cancellation); `−∞` gives −0. */
function geluTanh(g: number): number {
  if (g === Number.NEGATIVE_INFINITY) return -0;
  const u = Math.sqrt(2 / Math.PI) * (g + 0.044715 * g * g * g);
  return g / (1 + Math.exp(-2 * u));
}

/** Creates a JS reference backend (`name: 'js'`). */
export async function createReferenceBackend(): Promise<Backend> {
  return new ReferenceBackend();
}
