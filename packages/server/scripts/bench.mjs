#!/usr/bin/env node
// Benchmark of `@mnemo/server` (not a test: it prints a table). On the deterministic synthetic Llama of the demo
// (tools/demo/make-model.mjs: hidden 512, 8 layers, f32), it measures from the client side:
//   - time to first token for a 2,000-token shared system prompt: cold, from the memory tier, from the disk tier
//     (after a restart), and from Redis (on a second replica), each the median of a few runs with fresh questions;
//   - requests/s for short prompts, one at a time and 8 at a time;
//   - /health latency while a long prefill runs.
// Each measured request starts once the previous one is fully done (the worker idle after persisting its
// conversation, and a second for the HTTP side to hand it to Redis): a request that arrives during a persist waits
// for it, which the "persisting" line reports separately.
// Needs `pnpm build` first; the Redis row needs a redis-server binary (it starts its own on a free loopback port).
// Usage: node scripts/bench.mjs [--threads N] [--runs N]
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer as createNetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..', '..');
const { values } = parseArgs({
  options: { threads: { type: 'string', default: '2' }, runs: { type: 'string', default: '3' } },
});
const threads = Number(values.threads);
const runs = Number(values.runs);

const { createServer } = await import(join(here, '..', 'dist', 'index.js'));
const { makeDemoModel } = await import(join(root, 'tools', 'demo', 'make-model.mjs'));
const model = await makeDemoModel(join(root, 'tools', 'demo', '.model'));

const tmp = mkdtempSync(join(tmpdir(), 'mnemo-server-bench-'));
const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const pct = (xs, p) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))];

async function freePort() {
  return new Promise((resolve) => {
    const s = createNetServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function startRedis() {
  const bin =
    ['/usr/bin/redis-server', '/usr/local/bin/redis-server'].find((p) => existsSync(p)) ??
    (spawnSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' }).stdout.trim() || null);
  if (!bin) return null;
  const port = await freePort();
  const proc = spawn(
    bin,
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', tmp],
    {
      stdio: 'ignore',
    },
  );
  for (let i = 0; i < 200; i++) {
    const ok = await new Promise((resolve) => {
      const s = connect(port, '127.0.0.1');
      s.once('error', () => resolve(false));
      s.once('connect', () => s.write('PING\r\n'));
      s.once('data', (d) => {
        s.destroy();
        resolve(String(d).startsWith('+PONG'));
      });
    });
    if (ok) return { url: `redis://127.0.0.1:${port}`, proc };
    await new Promise((r) => setTimeout(r, 50));
  }
  proc.kill();
  return null;
}

const start = (opts) =>
  createServer({ model, modelId: 'demo', port: 0, threads, logLevel: 'warn', cacheMinTokens: 16, ...opts });

// About 2,000 tokens with this byte-level tokenizer (one token per byte).
const words = 'cache prefix token replica memory disk redis shared system prompt exact bitwise answer'.split(
  ' ',
);
const system = (seed) => {
  let s = `System ${seed}: `;
  let i = seed;
  while (s.length < 1990) {
    i = (i * 7 + 3) % words.length;
    s += `${words[i]} `;
  }
  return s.slice(0, 1990);
};

/** Streams one chat request; returns ms to the first generated token, the cache header and the total time. */
async function ttft(url, sys, user, maxTokens = 4) {
  const t0 = performance.now();
  const r = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      model: 'demo',
      messages: [
        { role: 'system', content: sys },
        { role: 'user', content: user },
      ],
      max_tokens: maxTokens,
      temperature: 0,
      logprobs: true,
      stream: true,
    }),
  });
  const cache = r.headers.get('x-mnemo-cache');
  const dec = new TextDecoder();
  let first = 0;
  let buf = '';
  for await (const chunk of r.body) {
    buf += dec.decode(chunk, { stream: true });
    if (!first && /"logprobs":\{"content":\[\{/.test(buf)) first = performance.now() - t0;
  }
  return { ms: first, cache, total: performance.now() - t0 };
}

/** Waits until the server's worker is idle (done persisting the previous conversation); returns the ms waited. */
async function idle(url) {
  const t0 = performance.now();
  for (;;) {
    const h = await (await fetch(`${url}/health`)).json();
    if (!h.running && h.phase === 'idle' && h.queue === 0) return performance.now() - t0;
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Idle, then a second more for the HTTP side to finish sending the last conversation to Redis. */
async function settle(url) {
  await idle(url);
  await new Promise((r) => setTimeout(r, 1000));
}

const rows = [];
const persist = [];
const redis = await startRedis();
const dirA = join(tmp, 'a');
let a = await start({ cacheDir: dirA, ...(redis ? { cacheRedis: redis.url } : {}) });

// Cold, with /health polled during each prefill.
const cold = [];
const health = [];
for (let i = 0; i < runs; i++) {
  const req = ttft(a.url, system(i), 'Question zero?');
  let done = false;
  req.then(() => {
    done = true;
  });
  while (!done) {
    const t0 = performance.now();
    const h = await (await fetch(`${a.url}/health`)).json();
    if (h.phase === 'prefill') health.push(performance.now() - t0);
    await new Promise((r) => setTimeout(r, 20));
  }
  cold.push(await req);
  persist.push(await idle(a.url));
}
rows.push(['cold (nothing cached)', cold]);
const mem = [];
for (let i = 0; i < runs; i++) {
  await settle(a.url);
  mem.push(await ttft(a.url, system(i), `Another question ${i}?`));
  await idle(a.url);
}
rows.push(['memory tier (same server)', mem]);
// Wait until A's conversations are in Redis before restarting it.
if (redis) {
  for (let i = 0; i < 400; i++) {
    const m = await (await fetch(`${a.url}/metrics`)).text();
    const stored = Number(/^mnemo_redis_stored_total (\d+)/m.exec(m)?.[1] ?? 0);
    if (stored >= 2 * runs) break;
    await new Promise((r) => setTimeout(r, 50));
  }
}
await a.close();
a = await start({ cacheDir: dirA });
const disk = [];
for (let i = 0; i < runs; i++) {
  await settle(a.url);
  disk.push(await ttft(a.url, system(i), `A third question ${i}?`));
  await idle(a.url);
}
rows.push(['disk tier (after a restart)', disk]);
if (redis) {
  const b = await start({ cacheDir: join(tmp, 'b'), cacheRedis: redis.url });
  for (let i = 0; i < 200 && !(await (await fetch(`${b.url}/health`)).json()).redis.startsWith('up'); i++)
    await new Promise((r) => setTimeout(r, 50));
  const red = [];
  for (let i = 0; i < runs; i++) {
    await settle(b.url);
    red.push(await ttft(b.url, system(i), `A fourth question ${i}?`));
    await idle(b.url);
  }
  rows.push(['Redis tier (another replica)', red]);
  await b.close();
}

// Requests/s with short prompts (too short to be persisted), on the demo model and on the tiny test fixture (whose
// compute is negligible, so its figure is about the server's own overhead).
async function throughput(server) {
  const short = async (i) => {
    const r = await fetch(`${server.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        model: 'demo',
        messages: [{ role: 'user', content: `Hi ${i}` }],
        max_tokens: 8,
        temperature: 0,
      }),
    });
    await r.json();
  };
  for (let i = 0; i < 5; i++) await short(i);
  const n = 100;
  let t0 = performance.now();
  for (let i = 0; i < n; i++) await short(i);
  const seq = n / ((performance.now() - t0) / 1000);
  t0 = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (next < n) await short(next++);
    }),
  );
  return { seq, conc: n / ((performance.now() - t0) / 1000) };
}
const demoRate = await throughput(a);
await a.close();
const tiny = await start({
  model: join(root, 'fixtures', 'synthetic', 'llama-f32'),
  cacheDir: join(tmp, 'tiny'),
});
const tinyRate = await throughput(tiny);
await tiny.close();
redis?.proc.kill();
rmSync(tmp, { recursive: true, force: true });

const coldMs = median(cold.map((r) => r.ms));
console.log(
  `\n@mnemo/server benchmark — demo model (hidden 512, 8 layers, f32), ${threads} thread(s), median of ${runs}\n`,
);
console.log(
  '| prefix from | TTFT, 2,000-token shared system prompt | vs cold | cache header of the last run |',
);
console.log('|---|---:|---:|---|');
for (const [name, rs] of rows) {
  const ms = median(rs.map((r) => r.ms));
  console.log(
    `| ${name} | ${ms.toFixed(1)} ms | ${((ms / coldMs) * 100).toFixed(1)}% | \`${rs.at(-1).cache}\` |`,
  );
}
if (!redis) console.log('| Redis tier | not measured: no redis-server binary | | |');
console.log(
  `\npersisting a 2,000-token conversation after its response (disk file + Redis): median ${median(persist).toFixed(0)} ms (the next request waits for it)`,
);
console.log(
  `short prompts, 8 tokens out: demo model ${demoRate.seq.toFixed(1)} requests/s one at a time, ${demoRate.conc.toFixed(1)} 8 at a time; ` +
    `tiny fixture (server overhead) ${tinyRate.seq.toFixed(1)} / ${tinyRate.conc.toFixed(1)} requests/s`,
);
console.log(
  `/health during prefill: ${health.length} answers, median ${median(health).toFixed(2)} ms, p99 ${pct(health, 0.99).toFixed(2)} ms, max ${Math.max(...health).toFixed(2)} ms`,
);
