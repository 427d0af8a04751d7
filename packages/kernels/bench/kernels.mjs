#!/usr/bin/env node
// Kernel benchmark: `pnpm bench` in packages/kernels (root: `pnpm bench:kernels`). Runs the built package (dist/)
// on ONE thread.
//
// 1. Measures this machine's single-thread read bandwidth in the same run: the module's `mk_bw_sum` streams a 1 GiB
//    buffer (far larger than any cache) through eight independent v128 accumulators, reading 1, 2, 4 or 8
//    contiguous parts side by side (the way a matvec streams several weight rows at once); the best of those is
//    the reference figure. It matches a native AVX2 loop of the same kind on this class of machine, so it is the
//    honest ceiling for a wasm kernel (a scalar or Float64Array sum is compute-bound and would understate it).
// 2. Times the kernels: matvec (rows = 1) for f32, f16, bf16, q8 and q4 weights at 4096×4096, 14336×4096 and a
//    shape with ≥ 256 MiB of weights; prefill matmul (rows = 64); attention decode at a few context lengths.
//    Each case is warmed up (V8 tiers hot wasm functions up from Liftoff to TurboFan), then timed several times;
//    the table shows the best and the median time. GB/s counts the bytes of weights (packed + scales + biases for
//    quantized) or K+V cache rows read; % BW compares that with the measured bandwidth.
// 3. GGML block weights (GGUF: Q4_0, Q8_0, Q4_K, Q5_K, Q6_K; `ggmlMatmul`) the same way.
// 4. For q8/q4 and GGML weights, the opt-in int8-activation path (`quantizeActivations` + `matmulQ8a`, dtype column
//    `…+a8`) on the same weights, right after the exact path's row. Its time includes quantizing the input
//    (a backend does that once per input and shares it across the weights that read it).
//
// Environment: BENCH_QUICK=1 runs fewer shapes; BENCH_REPS sets the repetitions of each case; BENCH_CLOCK=cpu
// times with this process's CPU time (process.cpuUsage, µs resolution) instead of the wall clock, which discounts
// the time the thread is descheduled on a busy machine (memory and cache contention still count).
import { readFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GGML_BLOCK_TYPES, ggmlRowBytes, loadKernels, quantizedActivationBytes } from '../dist/index.js';

const here = dirname(fileURLToPath(import.meta.url));
const quick = process.env.BENCH_QUICK === '1';
const MiB = 2 ** 20;
const GiB = 2 ** 30;

const cpuClock = process.env.BENCH_CLOCK === 'cpu';
function now() {
  if (cpuClock) {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1e6;
  }
  return Number(process.hrtime.bigint()) / 1e9;
}

/** Runs `f` until warmed up, then `reps` timed runs; returns [best, median] seconds. */
function time(f, budget = 2.5) {
  for (let i = 0; i < 3; i++) f();
  const t0 = now();
  f();
  const one = Math.max(now() - t0, 1e-6);
  const reps = Number(process.env.BENCH_REPS) || Math.max(5, Math.min(200, Math.floor(budget / one)));
  const ts = [];
  for (let i = 0; i < reps; i++) {
    const s = now();
    f();
    ts.push(now() - s);
  }
  ts.sort((a, b) => a - b);
  return [ts[0], ts[Math.floor(ts.length / 2)]];
}

// ---- data --------------------------------------------------------------------------------------------------

let seed = 12345;
function rand() {
  seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
  return seed / 4294967296;
}

const f32b = new Float32Array(1);
const u32b = new Uint32Array(f32b.buffer);
function toF16(v) {
  f32b[0] = v;
  const x = u32b[0];
  const s = (x >>> 16) & 0x8000;
  const e = ((x >>> 23) & 0xff) - 127 + 15;
  const m = x & 0x7fffff;
  if (e <= 0) {
    if (e < -10) return s;
    return s | ((((m | 0x800000) >>> (1 - e)) + 0x1000) >>> 13);
  }
  return s | (e << 10) | ((m + 0x1000) >>> 13);
}

/** Fills `bytes` at `ptr` by tiling a 4 MiB random pattern of realistic weights (|w| <= 0.05) in `dtype`. */
function fillWeights(k, ptr, bytes, dtype) {
  const patBytes = Math.min(4 * MiB, bytes);
  const pat = new Uint8Array(patBytes);
  if (dtype === 'f32') {
    const f = new Float32Array(pat.buffer);
    for (let i = 0; i < f.length; i++) f[i] = (rand() * 2 - 1) * 0.05;
  } else if (dtype === 'f16' || dtype === 'bf16') {
    const h = new Uint16Array(pat.buffer);
    for (let i = 0; i < h.length; i++) {
      const v = (rand() * 2 - 1) * 0.05;
      if (dtype === 'f16') h[i] = toF16(v);
      else {
        f32b[0] = v;
        h[i] = u32b[0] >>> 16;
      }
    }
  } else {
    const u = new Uint32Array(pat.buffer);
    for (let i = 0; i < u.length; i++) u[i] = (rand() * 4294967296) >>> 0;
  }
  const mem = k.bytes();
  for (let off = 0; off < bytes; off += patBytes)
    mem.set(pat.subarray(0, Math.min(patBytes, bytes - off)), ptr + off);
}

function fillConst16(k, ptr, n, bits) {
  k.u16(ptr, n).fill(bits);
}

// ---- bandwidth ---------------------------------------------------------------------------------------------

async function measureBandwidth() {
  const bytes = readFileSync(join(here, '..', 'wasm', 'mnemo_kernels.wasm'));
  const { instance } = await WebAssembly.instantiate(bytes, {});
  const e = instance.exports;
  const base = Math.ceil(Number(e.__heap_base.value) / 65536) * 65536;
  e.memory.grow(Math.ceil((base + GiB - e.memory.buffer.byteLength) / 65536));
  const f = new Float32Array(e.memory.buffer, base, GiB / 4);
  for (let i = 0; i < f.length; i += 1024) f.fill(1 + (i & 7) / 8, i, i + 1024);
  const rows = [];
  for (const streams of [1, 2, 4, 8]) {
    const [best, med] = time(() => e.mk_bw_sum(base, GiB, streams), 4);
    rows.push({ streams, best: GiB / best / 1e9, med: GiB / med / 1e9 });
  }
  return rows;
}

// ---- cases -------------------------------------------------------------------------------------------------

const table = [];
function row(kernel, shape, type, t, flops, bytes, bw) {
  const [best, med] = t;
  table.push({
    kernel,
    shape,
    type,
    best: `${(best * 1e3).toFixed(3)} ms`,
    median: `${(med * 1e3).toFixed(3)} ms`,
    gflops: flops ? (flops / best / 1e9).toFixed(1) : '',
    gbs: bytes ? (bytes / best / 1e9).toFixed(1) : '',
    pct: bytes ? `${((100 * bytes) / best / 1e9 / bw).toFixed(0)}%` : '',
  });
}

const QUANT = {
  q8g32: [8, 32],
  q8g64: [8, 64],
  q4g32: [4, 32],
  q4g64: [4, 64],
};

/** GGML block types benchmarked (GGUF weights), with the byte offsets of each block's f16 scales. */
const GGML = {
  Q4_0: [0],
  Q8_0: [0],
  Q4_K: [0, 2],
  Q5_K: [0, 2],
  Q6_K: [208],
};

/** Random GGML blocks with small finite f16 scales (random bytes everywhere else). */
function fillGgml(k, ptr, bytes, type) {
  fillWeights(k, ptr, bytes, 'u32');
  const bb = GGML_BLOCK_TYPES[type].blockBytes;
  const mem = k.bytes();
  const d = toF16(type.endsWith('_K') ? 1e-4 : 2e-3);
  for (let b = ptr; b < ptr + bytes; b += bb)
    for (const f of GGML[type]) {
      mem[b + f] = d & 0xff;
      mem[b + f + 1] = d >> 8;
    }
}

function weightBytes(type, out, inDim) {
  if (type in GGML) return out * ggmlRowBytes(type, inDim);
  if (type in QUANT) {
    const [bits, gs] = QUANT[type];
    return (out * inDim * bits) / 8 + 2 * out * (inDim / gs) * 2;
  }
  return out * inDim * (type === 'f32' ? 4 : 2);
}

function matmulCase(k, type, out, inDim, rows, bw, label = 'matvec', int8Act = false) {
  const wb = weightBytes(type, out, inDim);
  const x = k.alloc(rows * inDim * 4);
  const y = k.alloc(rows * out * 4);
  const xs = k.f32(x, rows * inDim);
  for (let i = 0; i < xs.length; i++) xs[i] = rand() * 2 - 1;
  let f;
  let fa;
  const ptrs = [x, y];
  if (type in GGML) {
    const w = k.alloc(wb);
    ptrs.push(w);
    fillGgml(k, w, wb, type);
    f = () => k.ggmlMatmul(y, x, w, rows, inDim, out, type);
    if (int8Act) {
      const xq = k.alloc(quantizedActivationBytes(rows, inDim));
      ptrs.push(xq);
      fa = () => {
        k.quantizeActivations(xq, x, rows, inDim);
        k.ggmlMatmulQ8a(y, xq, w, rows, inDim, out, type);
      };
    }
  } else if (type in QUANT) {
    const [bits, gs] = QUANT[type];
    const packedBytes = (out * inDim * bits) / 8;
    const groups = out * (inDim / gs);
    const packed = k.alloc(packedBytes);
    const scales = k.alloc(groups * 2);
    const biases = k.alloc(groups * 2);
    ptrs.push(packed, scales, biases);
    fillWeights(k, packed, packedBytes, 'u32');
    fillConst16(k, scales, groups, toF16(0.004));
    fillConst16(k, biases, groups, toF16(-0.03));
    f = () => k.matmulQ(y, x, packed, scales, biases, rows, inDim, out, bits, gs, 'f16');
    if (int8Act) {
      const xq = k.alloc(quantizedActivationBytes(rows, inDim));
      ptrs.push(xq);
      fa = () => {
        k.quantizeActivations(xq, x, rows, inDim);
        k.matmulQ8a(y, xq, packed, scales, biases, rows, inDim, out, bits, gs, 'f16');
      };
    }
  } else {
    const w = k.alloc(wb);
    ptrs.push(w);
    fillWeights(k, w, wb, type);
    f = () => k.matmul(y, x, w, rows, inDim, out, type);
  }
  const mb = wb / MiB;
  const shape = `${rows}×${inDim} · ${out}×${inDim}ᵀ (${mb >= 1024 ? `${(mb / 1024).toFixed(2)} GiB` : `${mb.toFixed(0)} MiB`})`;
  for (const [g, dtype] of [
    [f, type],
    [fa, `${type}+a8`],
  ]) {
    if (!g) continue;
    row(label, shape, dtype, time(g, rows > 1 ? 4 : 2.5), 2 * rows * out * inDim, rows === 1 ? wb : 0, bw);
  }
  for (const p of ptrs) k.free(p);
}

function attentionCase(k, ctx, bw) {
  const nHeads = 32;
  const nKv = 8;
  const hd = 128;
  const q = k.alloc(nHeads * hd * 4);
  const out = k.alloc(nHeads * hd * 4);
  const kc = k.alloc(ctx * nKv * hd * 4);
  const vc = k.alloc(ctx * nKv * hd * 4);
  for (const [p, n] of [
    [q, nHeads * hd],
    [kc, ctx * nKv * hd],
    [vc, ctx * nKv * hd],
  ]) {
    const a = k.f32(p, n);
    for (let i = 0; i < a.length; i++) a[i] = rand() * 2 - 1;
  }
  const f = () => k.attention(out, q, kc, vc, 1, ctx - 1, nHeads, nKv, hd, 1 / Math.sqrt(hd), 0);
  const t = time(f);
  const bytes = 2 * ctx * nKv * hd * 4;
  row('attention decode', `ctx ${ctx}, heads 32/8, dim 128`, 'f32', t, 4 * ctx * nHeads * hd, bytes, bw);
  for (const p of [q, out, kc, vc]) k.free(p);
}

// ---- main --------------------------------------------------------------------------------------------------

const cpu = cpus()[0]?.model ?? 'unknown CPU';
console.log(
  `mnemo kernels benchmark — ${cpu}, ${cpus().length} cores, Node ${process.version}, one thread, ${cpuClock ? 'CPU-time' : 'wall'} clock`,
);
console.log(
  `load average at start: ${loadavg()
    .map((v) => v.toFixed(2))
    .join(' ')} (other processes share the machine)\n`,
);

const bwRows = await measureBandwidth();
const bw = Math.max(...bwRows.map((r) => r.best));
console.log('single-thread read bandwidth (wasm SIMD sum over 1 GiB, 8 v128 accumulators):');
for (const r of bwRows)
  console.log(`  ${r.streams} stream(s): best ${r.best.toFixed(1)} GB/s, median ${r.med.toFixed(1)} GB/s`);
console.log(`  → reference bandwidth: ${bw.toFixed(1)} GB/s\n`);

const k = await loadKernels();
const types = ['f32', 'f16', 'bf16', 'q8g32', 'q8g64', 'q4g32', 'q4g64', ...Object.keys(GGML)];
const shapes = quick
  ? [[4096, 4096]]
  : [
      [4096, 4096],
      [14336, 4096],
    ];
for (const type of types) {
  const int8Act = type in QUANT || type in GGML;
  for (const [out, inDim] of shapes) matmulCase(k, type, out, inDim, 1, bw, 'matvec', int8Act);
  if (!quick) {
    // a shape with >= 256 MiB of weights: out rows of 4096
    const perRow = weightBytes(type, 1, 4096);
    const out = Math.ceil((256 * MiB) / perRow / 256) * 256;
    matmulCase(k, type, out, 4096, 1, bw, 'matvec', int8Act);
  }
}
for (const type of ['f32', 'f16', 'bf16', 'q8g64', 'q4g64', 'Q4_K', 'Q6_K'])
  matmulCase(k, type, 4096, 4096, 64, bw, 'prefill', type in QUANT || type in GGML);
for (const ctx of quick ? [1024] : [512, 2048, 8192, 32768]) attentionCase(k, ctx, bw);

const cols = [
  ['kernel', 'kernel'],
  ['shape', 'shape (weights)'],
  ['type', 'dtype'],
  ['best', 'time (best)'],
  ['median', 'time (median)'],
  ['gflops', 'GFLOP/s'],
  ['gbs', 'GB/s'],
  ['pct', '% BW'],
];
const width = cols.map(([key, title]) => Math.max(title.length, ...table.map((r) => String(r[key]).length)));
const line = (cells) => `| ${cells.map((c, i) => String(c).padEnd(width[i])).join(' | ')} |`;
console.log(line(cols.map(([, t]) => t)));
console.log(`|${width.map((w) => '-'.repeat(w + 2)).join('|')}|`);
for (const r of table) console.log(line(cols.map(([key]) => r[key])));
console.log(
  `\nGB/s = weight (or K+V) bytes read per second at the best time; % BW is against ${bw.toFixed(1)} GB/s.`,
);
