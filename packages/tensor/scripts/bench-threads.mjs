#!/usr/bin/env node
// Decode matvec timings of the WASM backend by thread count: y[1, n] = x[1, n] · W[n, n]ᵀ for f32, f16 and MLX q4
// (group 64, f16 scales) weights, plus a 32-row prefill matmul, and attention split by kv heads over a long cache.
// Checks that every thread count gives the same bits.
// Usage: pnpm --filter @mnemo/tensor build && node packages/tensor/scripts/bench-threads.mjs [--n 4096] [--threads 1,2]
//        [--rounds 5] [--seconds 0.4]
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';
import { createWasmBackend, f32ToF16, quantize } from '../dist/index.js';

const { values } = parseArgs({
  options: {
    n: { type: 'string', default: '4096' },
    threads: { type: 'string', default: `1,${Math.max(2, availableParallelism())}` },
    seconds: { type: 'string', default: '0.4' },
    rounds: { type: 'string', default: '5' },
    'no-prefill': { type: 'boolean', default: false },
  },
});
const n = Number(values.n);
const threadCounts = values.threads.split(',').map(Number);
const budget = Number(values.seconds) * 1000;

function rand(len, seed, scale = 1) {
  const a = new Float32Array(len);
  let s = seed >>> 0;
  for (let i = 0; i < len; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = (s / 2 ** 31 - 1) * scale;
  }
  return a;
}

/**
 * How much faster two independent threads finish two equal CPU-bound loops than one thread finishes one, right now
 * (2 on two idle cores; other processes on the machine bring it down, and no thread split can beat it).
 */
async function parallelHeadroom() {
  const code =
    "const { parentPort } = require('node:worker_threads'); parentPort.on('message', (n) => { let x = 0; " +
    'for (let i = 0; i < n; i++) x = (Math.imul(x, 1664525) + 1013904223) | 0; parentPort.postMessage(x); });';
  const ws = [new Worker(code, { eval: true }), new Worker(code, { eval: true })];
  const run = (w, k) =>
    new Promise((r) => {
      w.once('message', r);
      w.postMessage(k);
    });
  const k = 1e8;
  await Promise.all(ws.map((w) => run(w, 1e6)));
  let best = 0;
  for (let i = 0; i < 3; i++) {
    let t = performance.now();
    await run(ws[0], k);
    const one = performance.now() - t;
    t = performance.now();
    await Promise.all(ws.map((w) => run(w, k)));
    best = Math.max(best, (2 * one) / (performance.now() - t));
  }
  for (const w of ws) await w.terminate();
  return best;
}
const headroom = await parallelHeadroom();
process.stdout.write(`parallel headroom of this machine now: ×${headroom.toFixed(2)} (two idle cores: ×2)\n`);

const wf = rand(n * n, 1, 0.05);
const wh = f32ToF16(wf);
const spec = { bits: 4, groupSize: 64, scaleDtype: 'f16' };
const wq = quantize(spec, n, n, wf);
const xv = rand(32 * n, 2);

/** Median ms per call of `fn` over about `ms` milliseconds (after a warm-up). */
function time(fn, ms) {
  for (let i = 0; i < 3; i++) fn();
  const samples = [];
  const t0 = performance.now();
  while (performance.now() - t0 < ms || samples.length < 5) {
    const a = performance.now();
    fn();
    samples.push(performance.now() - a);
  }
  samples.sort((a, b) => a - b);
  return samples[samples.length >> 1];
}

// One backend per thread count, holding the same weights; configurations are timed in alternation, several rounds,
// and the best round's median counts (other processes on the machine slow some rounds down).
const rounds = Number(values.rounds);
const setups = [];
for (const threads of threadCounts) {
  const b = await createWasmBackend({ threads });
  const weights = {
    f32: b.upload('f32', [n, n], wf),
    f16: b.upload('f16', [n, n], wh),
    q4g64: b.uploadQuantized(spec, [n, n], wq.packed, wq.scales, wq.biases),
  };
  const x1 = b.alloc('f32', [1, n]);
  b.write(x1, xv.subarray(0, n));
  const x32 = b.alloc('f32', [32, n]);
  b.write(x32, xv);
  const y1 = b.alloc('f32', [1, n]);
  const y32 = b.alloc('f32', [32, n]);
  setups.push({ threads, b, weights, x1, x32, y1, y32 });
}
const names = ['f32', 'f16', 'q4g64'];
const bytesOf = { f32: 4 * n * n, f16: 2 * n * n, q4g64: n * n * 0.5 + 4 * n * (n / 64) };
const best = new Map();
const keep = (key, v) => best.set(key, Math.min(best.get(key) ?? Number.POSITIVE_INFINITY, v));
for (let r = 0; r < rounds; r++)
  for (const name of names)
    for (const s of setups) {
      const w = s.weights[name];
      keep(
        `${name}/${s.threads}/mv`,
        time(() => s.b.matmul(s.y1, s.x1, w), budget),
      );
      if (!values['no-prefill'])
        keep(
          `${name}/${s.threads}/pf`,
          time(() => s.b.matmul(s.y32, s.x32, w), budget / 2),
        );
    }
for (const name of names) {
  let ref;
  for (const s of setups) {
    s.b.matmul(s.y32, s.x32, s.weights[name]);
    const out = new Uint32Array(s.b.read(s.y32).buffer);
    if (ref === undefined) ref = out;
    else if (!out.every((v, i) => v === ref[i])) throw new Error(`${name}: ${s.threads} threads differ`);
    const mv = best.get(`${name}/${s.threads}/mv`);
    const pf = best.get(`${name}/${s.threads}/pf`);
    const prefill =
      pf === undefined
        ? ''
        : `  32-row matmul ${pf.toFixed(2)} ms (${((2 * 32 * n * n) / (pf * 1e6)).toFixed(1)} GFLOP/s)`;
    process.stdout.write(
      `${name.padEnd(6)} threads ${s.threads}: matvec ${mv.toFixed(3)} ms (${(bytesOf[name] / (mv * 1e6)).toFixed(1)} GB/s)${prefill}\n`,
    );
  }
}
if (setups.length > 1) {
  const [a, z] = [setups[0].threads, setups[setups.length - 1].threads];
  for (const name of names) {
    const g = (t, k) => best.get(`${name}/${t}/${k}`);
    const pf = g(a, 'pf') === undefined ? '' : `, 32 rows ×${(g(a, 'pf') / g(z, 'pf')).toFixed(2)}`;
    process.stdout.write(
      `${name.padEnd(6)} speed-up ${a}→${z} threads: matvec ×${(g(a, 'mv') / g(z, 'mv')).toFixed(2)}${pf}\n`,
    );
  }
  process.stdout.write('bitwise identical across thread counts: yes\n');
}
// Attention split by kv heads (Llama-3 shapes: 32 heads, 8 kv heads, head size 64) over a long cache: one query
// (decode) and 64 queries (a prefill chunk). The workers are running (the weights above started them).
const attn = [
  [1, 2000],
  [64, 1936],
];
const attnBest = new Map();
const attnSetups = setups.map((s) => {
  const b = s.b;
  const [nH, nKv, hd] = [32, 8, 64];
  return attn.map(([rows, start]) => {
    const cap = start + rows;
    const q = b.alloc('f32', [rows, nH * hd]);
    b.write(q, rand(rows * nH * hd, 3));
    const k = b.alloc('f32', [cap, nKv * hd]);
    b.write(k, rand(cap * nKv * hd, 4));
    const v = b.alloc('f32', [cap, nKv * hd]);
    b.write(v, rand(cap * nKv * hd, 5));
    const o = b.alloc('f32', [rows, nH * hd]);
    const opts = { startPos: start, nHeads: nH, nKvHeads: nKv, headDim: hd, scale: 1 / Math.sqrt(hd) };
    return { run: () => b.attention(o, q, k, v, opts), out: () => new Uint32Array(b.read(o).buffer) };
  });
});
for (let r = 0; r < rounds; r++)
  for (let si = 0; si < setups.length; si++)
    for (let ai = 0; ai < attn.length; ai++) {
      const key = `${setups[si].threads}/${ai}`;
      attnBest.set(
        key,
        Math.min(attnBest.get(key) ?? Number.POSITIVE_INFINITY, time(attnSetups[si][ai].run, budget)),
      );
    }
attn.forEach(([rows, start], ai) => {
  const ref = attnSetups[0][ai].out();
  const times = setups.map((s, si) => {
    if (!attnSetups[si][ai].out().every((x, i) => x === ref[i]))
      throw new Error(`attention: ${s.threads} threads differ`);
    return `${s.threads} threads ${attnBest.get(`${s.threads}/${ai}`).toFixed(3)} ms`;
  });
  const a = attnBest.get(`${setups[0].threads}/${ai}`);
  const z = attnBest.get(`${setups[setups.length - 1].threads}/${ai}`);
  process.stdout.write(
    `attention 32/8 heads d64, ${rows} rows over ${start + rows} keys: ${times.join(', ')}${setups.length > 1 ? ` (×${(a / z).toFixed(2)}, bitwise identical)` : ''}\n`,
  );
});
for (const s of setups) s.b.dispose();
