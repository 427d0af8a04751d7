/**
 * Test double of `@mnemo/kernels`: the same C-like API over a real `WebAssembly.Memory`, computed in plain TypeScript
 * with f32 arithmetic (every sum and product rounded with Math.fround, left to right). It lets the WASM backend's
 * plumbing (pointers, views, staging, memory growth) be tested without the Rust build. With `growOnAlloc`, every
 * allocation grows the memory, detaching every view the backend holds.
 */
import type { KvPtrs } from '@mnemo/kernels';
import { bf16BitsToNumber, f16BitsToNumber, f32Bits, f32BitsToF16Bits } from '../convert';
import type { QuantSpec } from '../dtype';
import { dequantizeGgmlRow, type GgmlBlockType, ggmlRowBytes } from '../ggml';
import { quantize } from '../quant';
import type { Kernels, WeightDType } from './kernels';

const f = Math.fround;

/** `WebAssembly.Memory`, typed here because this package compiles without the DOM/WebAssembly lib types. */
interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}
const WasmMemoryCtor = (
  globalThis as unknown as {
    WebAssembly: { Memory: new (d: { initial: number; maximum: number }) => WasmMemory };
  }
).WebAssembly.Memory;

export function createFakeKernels(opts: { growOnAlloc?: boolean } = {}): Kernels {
  const memory = new WasmMemoryCtor({ initial: 2, maximum: 16384 });
  let top = 1024;
  let allocated = 0;
  const sizes = new Map<number, number>();
  const freeLists = new Map<number, number[]>();
  const heap = () => ({
    u8: new Uint8Array(memory.buffer),
    u16: new Uint16Array(memory.buffer),
    u32: new Uint32Array(memory.buffer),
    i32: new Int32Array(memory.buffer),
    f32: new Float32Array(memory.buffer),
  });

  const weightAt = (dtype: WeightDType, ptr: number, i: number): number => {
    const h = heap();
    if (dtype === 'f32') return h.f32[(ptr >>> 2) + i]!;
    const bits = h.u16[(ptr >>> 1) + i]!;
    return dtype === 'f16' ? f16BitsToNumber(bits) : bf16BitsToNumber(bits);
  };
  const quantAt = (packed: number, rowWords: number, row: number, bits: number, k: number): number => {
    const u32 = heap().u32;
    const bit = bits * k;
    const word = (packed >>> 2) + row * rowWords + (bit >>> 5);
    const shift = bit & 31;
    let v = u32[word]! >>> shift;
    if (shift + bits > 32) v |= u32[word + 1]! << (32 - shift);
    return v & ((1 << bits) - 1);
  };
  const qWeight = (
    packed: number,
    scales: number,
    biases: number,
    cols: number,
    bits: number,
    groupSize: number,
    sd: WeightDType,
    row: number,
    k: number,
  ): number => {
    const g = row * (cols / groupSize) + Math.floor(k / groupSize);
    const q = quantAt(packed, (cols * bits) / 32, row, bits, k);
    return f(f(weightAt(sd, scales, g) * q) + weightAt(sd, biases, g));
  };
  const expf = (x: number) => f(Math.exp(x));
  /** Row `row` of a GGML weight at `w`, dequantized to f32. */
  const ggmlRow = (type: GgmlBlockType, w: number, cols: number, row: number): Float32Array => {
    const rb = ggmlRowBytes(type, cols);
    const out = new Float32Array(cols);
    dequantizeGgmlRow(type, cols, heap().u8.subarray(w + row * rb, w + (row + 1) * rb), 0, out);
    return out;
  };

  return {
    memory,
    alloc(bytes) {
      const size = Math.ceil(bytes / 16) * 16;
      let ptr = freeLists.get(size)?.pop();
      if (ptr === undefined) {
        ptr = top;
        top += size;
        const need = top - memory.buffer.byteLength;
        if (need > 0) memory.grow(Math.ceil(need / 65536));
        else if (opts.growOnAlloc) memory.grow(1);
      } else if (opts.growOnAlloc) memory.grow(1);
      sizes.set(ptr, size);
      allocated += size;
      return ptr;
    },
    free(ptr) {
      const size = sizes.get(ptr);
      if (size === undefined) throw new Error(`fake kernels: free of unknown pointer ${ptr}`);
      sizes.delete(ptr);
      allocated -= size;
      const list = freeLists.get(size) ?? [];
      list.push(ptr);
      freeLists.set(size, list);
    },
    allocatedBytes: () => allocated,
    matmul(y, x, w, rows, inDim, outDim, wDtype, bias) {
      const h = heap();
      for (let r = 0; r < rows; r++)
        for (let o = 0; o < outDim; o++) {
          let s = 0;
          for (let i = 0; i < inDim; i++)
            s = f(s + f(h.f32[(x >>> 2) + r * inDim + i]! * weightAt(wDtype, w, o * inDim + i)));
          h.f32[(y >>> 2) + r * outDim + o] = bias === undefined ? s : f(s + h.f32[(bias >>> 2) + o]!);
        }
    },
    matmulQ(y, x, packed, scales, biases, rows, inDim, outDim, bits, groupSize, sd, bias) {
      const h = heap();
      for (let r = 0; r < rows; r++)
        for (let o = 0; o < outDim; o++) {
          let s = 0;
          for (let i = 0; i < inDim; i++) {
            const w = qWeight(packed, scales, biases, inDim, bits, groupSize, sd, o, i);
            s = f(s + f(h.f32[(x >>> 2) + r * inDim + i]! * w));
          }
          h.f32[(y >>> 2) + r * outDim + o] = bias === undefined ? s : f(s + h.f32[(bias >>> 2) + o]!);
        }
    },
    ggmlMatmul(y, x, w, rows, inDim, outDim, type, bias) {
      for (let o = 0; o < outDim; o++) {
        const wr = ggmlRow(type, w, inDim, o);
        const h = heap();
        for (let r = 0; r < rows; r++) {
          let s = 0;
          for (let i = 0; i < inDim; i++) s = f(s + f(h.f32[(x >>> 2) + r * inDim + i]! * wr[i]!));
          h.f32[(y >>> 2) + r * outDim + o] = bias === undefined ? s : f(s + h.f32[(bias >>> 2) + o]!);
        }
      }
    },
    ggmlEmbedding(out, table, ids, nIds, _vocab, dim, type) {
      for (let r = 0; r < nIds; r++) {
        const row = ggmlRow(type, table, dim, heap().i32[(ids >>> 2) + r]!);
        heap().f32.set(row, (out >>> 2) + r * dim);
      }
    },
    toF32(out, src, n, dtype) {
      const h = heap();
      for (let i = 0; i < n; i++) {
        if (dtype === 'f32') h.u32[(out >>> 2) + i] = h.u32[(src >>> 2) + i]!;
        else h.f32[(out >>> 2) + i] = weightAt(dtype, src, i);
      }
    },
    embedding(out, table, ids, nIds, _vocab, dim, dtype) {
      const h = heap();
      for (let r = 0; r < nIds; r++) {
        const id = h.i32[(ids >>> 2) + r]!;
        for (let i = 0; i < dim; i++) h.f32[(out >>> 2) + r * dim + i] = weightAt(dtype, table, id * dim + i);
      }
    },
    embeddingQ(out, packed, scales, biases, ids, nIds, _vocab, dim, bits, groupSize, sd) {
      const h = heap();
      for (let r = 0; r < nIds; r++) {
        const id = h.i32[(ids >>> 2) + r]!;
        for (let i = 0; i < dim; i++)
          h.f32[(out >>> 2) + r * dim + i] = qWeight(packed, scales, biases, dim, bits, groupSize, sd, id, i);
      }
    },
    rmsnorm(out, x, weight, rows, dim, eps) {
      const h = heap();
      for (let r = 0; r < rows; r++) {
        let ss = 0;
        for (let i = 0; i < dim; i++) {
          const v = h.f32[(x >>> 2) + r * dim + i]!;
          ss = f(ss + f(v * v));
        }
        const inv = f(1 / f(Math.sqrt(f(f(ss / dim) + eps))));
        for (let i = 0; i < dim; i++)
          h.f32[(out >>> 2) + r * dim + i] = f(
            f(h.f32[(x >>> 2) + r * dim + i]! * inv) * h.f32[(weight >>> 2) + i]!,
          );
      }
    },
    rope(x, cos, sin, rows, nHeads, headDim, rotDim, layout) {
      const h = heap();
      const half = rotDim / 2;
      for (let r = 0; r < rows; r++)
        for (let hd = 0; hd < nHeads; hd++) {
          const base = (x >>> 2) + (r * nHeads + hd) * headDim;
          for (let i = 0; i < half; i++) {
            const c = h.f32[(cos >>> 2) + r * half + i]!;
            const s = h.f32[(sin >>> 2) + r * half + i]!;
            const ia = layout === 'half' ? base + i : base + 2 * i;
            const ib = layout === 'half' ? base + i + half : base + 2 * i + 1;
            const a = h.f32[ia]!;
            const b = h.f32[ib]!;
            h.f32[ia] = f(f(a * c) - f(b * s));
            h.f32[ib] = f(f(a * s) + f(b * c));
          }
        }
    },
    swiglu(out, gate, up, n) {
      const h = heap();
      for (let i = 0; i < n; i++) {
        const g = h.f32[(gate >>> 2) + i]!;
        h.f32[(out >>> 2) + i] = f(f(g / f(1 + expf(-g))) * h.f32[(up >>> 2) + i]!);
      }
    },
    geluGlu(out, gate, up, n) {
      const h = heap();
      for (let i = 0; i < n; i++) {
        const g = Math.max(h.f32[(gate >>> 2) + i]!, -20);
        const inner = f(g + f(0.044715 * f(f(g * g) * g)));
        const e = expf(f(-1.5957691 * inner));
        h.f32[(out >>> 2) + i] = f(f(g / f(1 + e)) * h.f32[(up >>> 2) + i]!);
      }
    },
    softcap(x, n, cap) {
      const h = heap();
      const c = f(cap);
      for (let i = 0; i < n; i++) h.f32[(x >>> 2) + i] = f(c * f(Math.tanh(f(h.f32[(x >>> 2) + i]! / c))));
    },
    scale(out, x, n, s) {
      const h = heap();
      const v = f(s);
      for (let i = 0; i < n; i++) h.f32[(out >>> 2) + i] = f(h.f32[(x >>> 2) + i]! * v);
    },
    add(out, a, b, n) {
      const h = heap();
      for (let i = 0; i < n; i++) h.f32[(out >>> 2) + i] = f(h.f32[(a >>> 2) + i]! + h.f32[(b >>> 2) + i]!);
    },
    softmax(x, rows, n) {
      const h = heap();
      for (let r = 0; r < rows; r++) {
        const base = (x >>> 2) + r * n;
        let max = -Infinity;
        for (let i = 0; i < n; i++) max = Math.max(max, h.f32[base + i]!);
        let sum = 0;
        for (let i = 0; i < n; i++) {
          h.f32[base + i] = expf(f(h.f32[base + i]! - max));
          sum = f(sum + h.f32[base + i]!);
        }
        for (let i = 0; i < n; i++) h.f32[base + i] = f(h.f32[base + i]! / sum);
      }
    },
    argmax(x, n) {
      const h = heap();
      let best = 0;
      for (let i = 1; i < n; i++) if (h.f32[(x >>> 2) + i]! > h.f32[(x >>> 2) + best]!) best = i;
      return best;
    },
    copy(dst, src, bytes) {
      heap().u8.copyWithin(dst, src, src + bytes);
    },
    attentionKv(out, q, k, v, a, kvHead0 = 0, kvHead1 = a.nKvHeads) {
      const h = heap();
      const { rows, startPos, nHeads, nKvHeads, headDim, scale, window, keep, capacity } = a;
      const softcap = a.softcap ?? 0;
      const group = nHeads / nKvHeads;
      const qw = nHeads * headDim;
      const kw = nKvHeads * headDim;
      // every row read is converted once per call (f32 values, exactly as the format defines them)
      const rowsOf = (p: KvPtrs) => {
        const cache = new Map<number, Float32Array>();
        return (row: number): Float32Array => {
          let r = cache.get(row);
          if (r !== undefined) return r;
          r = new Float32Array(kw);
          for (let i = 0; i < kw; i++) {
            if (a.format === 'f32') r[i] = h.f32[(p.data >>> 2) + row * kw + i]!;
            else if (a.format === 'f16') r[i] = f16BitsToNumber(h.u16[(p.data >>> 1) + row * kw + i]!);
            else {
              const bits = a.format === 'q4' ? 4 : 8;
              const g = row * (kw / a.groupSize) + Math.floor(i / a.groupSize);
              const code = quantAt(p.data, (kw * bits) / 32, row, bits, i);
              r[i] = f(f(h.f32[(p.scales >>> 2) + g]! * code) + h.f32[(p.biases >>> 2) + g]!);
            }
          }
          cache.set(row, r);
          return r;
        };
      };
      const keyRow = rowsOf(k);
      const valueRow = rowsOf(v);
      const value = (which: 'k' | 'v', row: number, i: number): number =>
        (which === 'k' ? keyRow : valueRow)(row)[i]!;
      const rowOf = (j: number) => (j < keep || j < capacity ? j : keep + ((j - keep) % (capacity - keep)));
      for (let r = 0; r < rows; r++) {
        const p = startPos + r;
        const lo = window > 0 ? Math.max(0, p - window + 1) : 0;
        const seen: number[] = [];
        for (let j = 0; j < Math.min(keep, lo); j++) seen.push(rowOf(j));
        for (let j = lo; j <= p; j++) seen.push(rowOf(j));
        const w = new Float32Array(seen.length);
        for (let hd = kvHead0 * group; hd < kvHead1 * group; hd++) {
          const kvh = Math.floor(hd / group);
          let max = -Infinity;
          seen.forEach((row, i) => {
            let dot = 0;
            for (let d = 0; d < headDim; d++)
              dot = f(
                dot + f(h.f32[(q >>> 2) + r * qw + hd * headDim + d]! * value('k', row, kvh * headDim + d)),
              );
            const sc = f(dot * scale);
            w[i] = softcap > 0 ? f(softcap * f(Math.tanh(f(sc / softcap)))) : sc;
            max = Math.max(max, w[i]!);
          });
          let sum = 0;
          for (let i = 0; i < seen.length; i++) {
            w[i] = expf(f(w[i]! - max));
            sum = f(sum + w[i]!);
          }
          for (let d = 0; d < headDim; d++) {
            let acc = 0;
            seen.forEach((row, i) => {
              acc = f(acc + f(w[i]! * value('v', row, kvh * headDim + d)));
            });
            h.f32[(out >>> 2) + r * qw + hd * headDim + d] = f(acc / sum);
          }
        }
      }
    },
    writeKv(dst, src, a) {
      const h = heap();
      const { rows, startPos, width, keep, capacity } = a;
      const rowOf = (j: number) => (j < keep || j < capacity ? j : keep + ((j - keep) % (capacity - keep)));
      for (let r = 0; r < rows; r++) {
        const row = rowOf(startPos + r);
        const x = h.f32.subarray((src >>> 2) + r * width, (src >>> 2) + (r + 1) * width);
        if (a.format === 'f32') h.f32.set(x, (dst.data >>> 2) + row * width);
        else if (a.format === 'f16')
          for (let i = 0; i < width; i++)
            h.u16[(dst.data >>> 1) + row * width + i] = f32BitsToF16Bits(f32Bits(x[i]!));
        else {
          const spec = {
            bits: a.format === 'q4' ? 4 : 8,
            groupSize: a.groupSize,
            scaleDtype: 'f32',
          } as const;
          const qd = quantize(spec as QuantSpec, 1, width, Float32Array.from(x));
          const words = (width * spec.bits) / 32;
          const groups = width / a.groupSize;
          h.u32.set(qd.packed, (dst.data >>> 2) + row * words);
          h.f32.set(qd.scales as Float32Array, (dst.scales >>> 2) + row * groups);
          h.f32.set(qd.biases as Float32Array, (dst.biases >>> 2) + row * groups);
        }
      }
    },
  };
}
