#!/usr/bin/env node
// Kernel speed of the native backend (prints a table; not a test). Run after `pnpm build`:
//   node bench/kernels.mjs [--threads N] [--isa LEVEL] [--int8]
import { createNativeBackend } from '../dist/index.js';

const args = process.argv.slice(2);
const opt = (name, d) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : d;
};
const threads = Number(opt('--threads', '2'));
const isa = opt('--isa', undefined);
const int8 = args.includes('--int8');
const b = await createNativeBackend({ threads, int8Activations: int8, ...(isa ? { isa } : {}) });
console.log(`isa ${b.isa}, threads ${b.threads}, numerics ${b.numerics}`);

function rnd(n, scale = 1) {
  const a = new Float32Array(n);
  let s = 12345;
  for (let i = 0; i < n; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    a[i] = ((s / 4294967296) * 2 - 1) * scale;
  }
  return a;
}
function f16bits(n) {
  const a = new Uint16Array(n);
  for (let i = 0; i < n; i++) a[i] = 0x2000 + ((i * 7919) & 0x0fff) + (i & 1 ? 0x8000 : 0);
  return a;
}
function weight(kind, out, inp) {
  if (kind === 'f16') return { w: b.upload('f16', [out, inp], f16bits(out * inp)), bytes: out * inp * 2 };
  const [bits, group] = kind === 'q4' ? [4, 32] : [8, 64];
  const packed = new Uint32Array((out * inp * bits) / 32).map((_, i) => (i * 2654435761) >>> 0);
  const g = (out * inp) / group;
  const w = b.uploadQuantized(
    { bits, groupSize: group, scaleDtype: 'f16' },
    [out, inp],
    packed,
    f16bits(g),
    f16bits(g),
  );
  return { w, bytes: (out * inp * bits) / 8 + g * 4 };
}
const cpuTime = args.includes('--cpu');
/** Median ms per call: wall time, or with --cpu the process's CPU time divided by the threads (a busy machine). */
function time(fn, minMs = 300) {
  fn();
  const ts = [];
  const t0 = performance.now();
  while (performance.now() - t0 < minMs || ts.length < 5) {
    const a = performance.now();
    const c = process.cpuUsage();
    fn();
    const d = process.cpuUsage(c);
    ts.push(cpuTime ? (d.user + d.system) / 1000 / threads : performance.now() - a);
  }
  ts.sort((x, y) => x - y);
  return ts[Math.floor(ts.length / 2)];
}

const shapes = [
  [2048, 2048],
  [8192, 2048],
  [2048, 8192],
];
console.log('| weights | shape [out, in] | rows | ms | GB/s (weights) | GFLOP/s |');
console.log('|---|---|---:|---:|---:|---:|');
for (const kind of ['q4', 'q8', 'f16']) {
  for (const [out, inp] of shapes) {
    const { w, bytes } = weight(kind, out, inp);
    for (const rows of [1, 128]) {
      const x = b.upload('f32', [rows, inp], rnd(rows * inp));
      const y = b.alloc('f32', [rows, out]);
      const ms = time(() => b.matmul(y, x, w));
      const gbs = (bytes / (ms / 1000) / 1e9).toFixed(1);
      const gf = ((2 * rows * out * inp) / (ms / 1000) / 1e9).toFixed(1);
      console.log(
        `| ${kind} | [${out}, ${inp}] | ${rows} | ${ms.toFixed(3)} | ${rows === 1 ? gbs : ''} | ${gf} |`,
      );
      b.free(x);
      b.free(y);
    }
    b.free(w);
  }
}
// attention: 32 heads / 8 kv heads, head size 64
for (const [rows, ctx] of [
  [1, 600],
  [1, 2000],
  [128, 512],
]) {
  const cap = ctx + rows;
  const q = b.upload('f32', [rows, 2048], rnd(rows * 2048));
  const k = b.upload('f32', [cap, 512], rnd(cap * 512));
  const v = b.upload('f32', [cap, 512], rnd(cap * 512));
  const o = b.alloc('f32', [rows, 2048]);
  const opts = { startPos: ctx, nHeads: 32, nKvHeads: 8, headDim: 64, scale: 0.125 };
  const ms = time(() => b.attention(o, q, k, v, opts));
  console.log(`attention 32/8 x 64, ${rows} rows after ${ctx} positions: ${ms.toFixed(3)} ms`);
}
b.dispose();
