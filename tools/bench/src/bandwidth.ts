/**
 * Measures this machine's memory read bandwidth in the same run as the benchmark, on 1 and 2 threads: a small C
 * program (gcc -O3 -mavx2, AVX2 loads into eight independent accumulators, 1 GiB buffer, median of 15 passes) when
 * gcc is there, else a JavaScript fallback (Float64Array reduction in worker threads; lower — it is compute-bound —
 * and reported as such). The same program also measures 2 threads alone between slices of each decode
 * (`probeTwoThreads`): on a virtual machine the bandwidth it gets can double or halve within seconds, so
 * decode is compared with what the memory gave while it ran, not minutes earlier.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';

/** 2 threads only, measured next to a decode. */
export interface TwoThreadBandwidth {
  /** GB/s, median of the passes, and the fastest pass. */
  readonly twoThreadGBs: number;
  readonly twoThreadBestGBs: number;
}

export interface Bandwidth {
  /** GB/s (1e9 bytes per second), median of the passes. */
  readonly oneThreadGBs: number;
  readonly twoThreadGBs: number;
  /** The fastest pass (closest to what the machine can do when other work slows some passes down). */
  readonly oneThreadBestGBs: number;
  readonly twoThreadBestGBs: number;
  readonly method: string;
  readonly bufferBytes: number;
  readonly passes: number;
}

const C_SOURCE = String.raw`
#define _GNU_SOURCE
#include <immintrin.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static size_t BYTES;
static int PASSES;
static char *buf;
static volatile uint64_t sink;
static pthread_barrier_t start_b, end_b;

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }

static uint64_t sum_range(const char *p, size_t n) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
  for (size_t i = 0; i < n; i += 256) {
    a0 = _mm256_add_epi64(a0, _mm256_load_si256((const __m256i *)(p + i)));
    a1 = _mm256_add_epi64(a1, _mm256_load_si256((const __m256i *)(p + i + 32)));
    a2 = _mm256_add_epi64(a2, _mm256_load_si256((const __m256i *)(p + i + 64)));
    a3 = _mm256_add_epi64(a3, _mm256_load_si256((const __m256i *)(p + i + 96)));
    a4 = _mm256_add_epi64(a4, _mm256_load_si256((const __m256i *)(p + i + 128)));
    a5 = _mm256_add_epi64(a5, _mm256_load_si256((const __m256i *)(p + i + 160)));
    a6 = _mm256_add_epi64(a6, _mm256_load_si256((const __m256i *)(p + i + 192)));
    a7 = _mm256_add_epi64(a7, _mm256_load_si256((const __m256i *)(p + i + 224)));
  }
  __m256i s = _mm256_add_epi64(_mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3)),
                               _mm256_add_epi64(_mm256_add_epi64(a4, a5), _mm256_add_epi64(a6, a7)));
  uint64_t out[4];
  _mm256_storeu_si256((__m256i *)out, s);
  return out[0] + out[1] + out[2] + out[3];
}

struct job { size_t off, len; };
static void *worker(void *arg) {
  struct job *j = arg;
  for (int p = 0; p < PASSES; p++) {
    pthread_barrier_wait(&start_b);
    sink += sum_range(buf + j->off, j->len);
    pthread_barrier_wait(&end_b);
  }
  return NULL;
}

static int cmp(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return x < y ? -1 : x > y; }

static double best_gbs;
static double run(int threads) {
  pthread_t t[8];
  struct job jobs[8];
  double times[64];
  pthread_barrier_init(&start_b, NULL, threads + 1);
  pthread_barrier_init(&end_b, NULL, threads + 1);
  size_t part = BYTES / threads;
  for (int i = 0; i < threads; i++) { jobs[i].off = i * part; jobs[i].len = part; pthread_create(&t[i], NULL, worker, &jobs[i]); }
  for (int p = 0; p < PASSES; p++) {
    pthread_barrier_wait(&start_b);
    double t0 = now();
    pthread_barrier_wait(&end_b);
    times[p] = now() - t0;
  }
  for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
  pthread_barrier_destroy(&start_b);
  pthread_barrier_destroy(&end_b);
  qsort(times, PASSES, sizeof(double), cmp);
  best_gbs = BYTES / times[0] / 1e9;
  return BYTES / times[PASSES / 2] / 1e9;
}

int main(int argc, char **argv) {
  if (argc < 3) return 2;
  BYTES = (size_t)atoll(argv[1]);
  PASSES = atoi(argv[2]);
  if (PASSES > 64) PASSES = 64;
  if (PASSES < 1) PASSES = 1;
  buf = aligned_alloc(4096, BYTES);
  if (!buf) return 1;
  memset(buf, 1, BYTES);
  if (argc > 3 && strcmp(argv[3], "two") == 0) { /* 2 threads only */
    double two = run(2);
    printf("{\"two\": %.3f, \"twoBest\": %.3f, \"sink\": %llu}\n", two, best_gbs, (unsigned long long)(sink & 1));
    return 0;
  }
  run(1); /* warm-up */
  double one = run(1);
  double one_best = best_gbs;
  double two = run(2);
  double two_best = best_gbs;
  printf("{\"one\": %.3f, \"two\": %.3f, \"oneBest\": %.3f, \"twoBest\": %.3f, \"sink\": %llu}\n", one, two, one_best,
         two_best, (unsigned long long)(sink & 1));
  return 0;
}
`;

const BYTES = 1 << 30;
const PASSES = 15;
/**
 * The 2-thread probe during a decode: a smaller buffer (still 16 times a 32 MiB L3) and fewer passes, since it runs
 * about nine times per decode (a third of a second each, the buffer's first touch included).
 */
export const PROBE_BYTES = 1 << 29;
export const PROBE_PASSES = 7;

/**
 * Compiles the C probe into `dir` (which the caller removes) and returns the executable's path, or undefined without
 * gcc or on another architecture (the probe is x86-64 AVX2).
 */
export function buildProbe(dir: string): string | undefined {
  if (process.arch !== 'x64') return undefined;
  const gcc = spawnSync('gcc', ['--version'], { encoding: 'utf8' });
  if (gcc.status !== 0) return undefined;
  const src = join(dir, 'bw.c');
  const exe = join(dir, 'bw');
  writeFileSync(src, C_SOURCE);
  const cc = spawnSync('gcc', ['-O3', '-mavx2', '-pthread', '-o', exe, src], { encoding: 'utf8' });
  return cc.status === 0 ? exe : undefined;
}

/** 2-thread read bandwidth now (the caller's own threads idle meanwhile); null when the probe fails. */
export function probeTwoThreads(exe: string): TwoThreadBandwidth | null {
  const r = spawnSync(exe, [String(PROBE_BYTES), String(PROBE_PASSES), 'two'], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  if (r.status !== 0) return null;
  try {
    const out = JSON.parse(r.stdout) as { two: number; twoBest: number };
    return { twoThreadGBs: out.two, twoThreadBestGBs: out.twoBest };
  } catch {
    return null;
  }
}

function measureC(probe?: string): Bandwidth | undefined {
  const dir = probe ? undefined : mkdtempSync(join(tmpdir(), 'mnemo-bench-bw-'));
  try {
    const exe = probe ?? buildProbe(dir!);
    if (!exe) return undefined;
    const r = spawnSync(exe, [String(BYTES), String(PASSES)], { encoding: 'utf8', timeout: 300_000 });
    if (r.status !== 0) return undefined;
    const out = JSON.parse(r.stdout) as { one: number; two: number; oneBest: number; twoBest: number };
    return {
      oneThreadGBs: out.one,
      twoThreadGBs: out.two,
      oneThreadBestGBs: out.oneBest,
      twoThreadBestGBs: out.twoBest,
      method: `C, gcc -O3 -mavx2, AVX2 loads into 8 accumulators, ${BYTES / 2 ** 30} GiB, median of ${PASSES}`,
      bufferBytes: BYTES,
      passes: PASSES,
    };
  } catch {
    return undefined;
  } finally {
    if (dir) rmSync(dir, { recursive: true, force: true });
  }
}

const JS_WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const { sab, off, len, passes, ctl } = workerData;
const a = new Float64Array(sab, off, len);
const flag = new Int32Array(ctl);
let sink = 0;
for (let p = 0; p < passes; p++) {
  Atomics.wait(flag, 0, p);
  let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  for (let i = 0; i < len; i += 4) { s0 += a[i]; s1 += a[i + 1]; s2 += a[i + 2]; s3 += a[i + 3]; }
  sink += s0 + s1 + s2 + s3;
  Atomics.add(flag, 1, 1);
  Atomics.notify(flag, 1);
}
parentPort.postMessage(sink);
`;

async function measureJsThreads(
  sab: SharedArrayBuffer,
  threads: number,
): Promise<[median: number, best: number]> {
  const passes = 7;
  const ctl = new SharedArrayBuffer(8);
  const flag = new Int32Array(ctl);
  const n = sab.byteLength / 8;
  const part = n / threads;
  const workers = Array.from(
    { length: threads },
    (_, i) =>
      new Worker(JS_WORKER, { eval: true, workerData: { sab, off: i * part * 8, len: part, passes, ctl } }),
  );
  const done = workers.map((w) => new Promise((res) => w.once('message', res)));
  await new Promise((r) => setTimeout(r, 200));
  const times: number[] = [];
  for (let p = 0; p < passes; p++) {
    Atomics.store(flag, 1, 0);
    const t0 = performance.now();
    Atomics.store(flag, 0, p + 1);
    Atomics.notify(flag, 0);
    while (Atomics.load(flag, 1) < threads) await new Promise((r) => setImmediate(r));
    times.push(performance.now() - t0);
  }
  await Promise.all(done);
  await Promise.all(workers.map((w) => w.terminate()));
  times.sort((a, b) => a - b);
  const gbs = (ms: number) => sab.byteLength / (ms / 1000) / 1e9;
  return [gbs(times[Math.floor(passes / 2)]!), gbs(times[0]!)];
}

async function measureJs(): Promise<Bandwidth> {
  const bytes = 1 << 29;
  const sab = new SharedArrayBuffer(bytes);
  new Float64Array(sab).fill(1);
  const one = await measureJsThreads(sab, 1);
  const two = await measureJsThreads(sab, 2);
  return {
    oneThreadGBs: one[0],
    twoThreadGBs: two[0],
    oneThreadBestGBs: one[1],
    twoThreadBestGBs: two[1],
    method:
      'JavaScript fallback (no gcc): Float64Array reduction in worker threads, 512 MiB, median of 7 — compute-bound, a lower bound',
    bufferBytes: bytes,
    passes: 7,
  };
}

/** `probe`: an executable from `buildProbe`, else one is compiled for this measurement. */
export async function measureBandwidth(probe?: string): Promise<Bandwidth> {
  return measureC(probe) ?? (await measureJs());
}

/** One line for the log. */
export function describeBandwidth(b: Bandwidth): string {
  return `${b.oneThreadGBs.toFixed(1)} GB/s on 1 thread, ${b.twoThreadGBs.toFixed(1)} GB/s on 2 (fastest pass ${b.oneThreadBestGBs.toFixed(1)} / ${b.twoThreadBestGBs.toFixed(1)}; ${b.method})`;
}
