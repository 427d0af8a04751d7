import { loadKernels } from '@mnemo/kernels';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { checkThreadInvariance } from '../conformance/threads';
import { f32ToF16 } from '../convert';
import type { QuantSpec } from '../dtype';
import { quantize } from '../quant';
import { createBackend } from '../select';
import type { Weight } from '../tensor';
import { createWasmBackend, type WasmBackend, WasmCapacityError } from './backend';
import { createFakeKernels } from './fake-kernels';
import { hardwareThreads } from './threads/options';
import { WorkerPool } from './threads/pool';
import { splitRows } from './threads/shard';

function rand(n: number, seed: number, scale = 1): Float32Array {
  const a = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = (s / 2 ** 31 - 1) * scale;
  }
  return a;
}

const bits = (a: Float32Array) => Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length));

describe('wasm backend threads', () => {
  afterEach(() => {
    vi.unstubAllEnvs();
  });

  it('gives bitwise identical results for 1, 2 and 3 threads (every weight sharded)', async () => {
    const compared = await checkThreadInvariance((threads) =>
      createWasmBackend({ threads, shardMinBytes: 0 }),
    );
    expect(compared).toBeGreaterThan(200);
  });

  it('gives bitwise identical results for 1, 2 and 3 threads with int8 activations', async () => {
    const compared = await checkThreadInvariance((threads) =>
      createWasmBackend({ threads, shardMinBytes: 0, int8Activations: true }),
    );
    expect(compared).toBeGreaterThan(200);
  });

  it('splits weight rows on 16-row boundaries, the calling thread taking the smaller share', () => {
    expect(splitRows(4096, 2)).toEqual([0, 2048, 4096]);
    expect(splitRows(264, 2)).toEqual([0, 128, 264]);
    expect(splitRows(264, 3)).toEqual([0, 80, 176, 264]);
    expect(splitRows(17, 2)).toEqual([0, 16, 17]);
    expect(splitRows(33, 2)).toEqual([0, 16, 33]);
    for (const [rows, parts] of [
      [1000, 3],
      [11008, 2],
      [32000, 5],
    ] as const) {
      const b = splitRows(rows, parts);
      for (let i = 1; i < parts; i++) expect(b[i]! % 16).toBe(0);
      expect(b[parts]).toBe(rows);
    }
  });

  it('places shards in every instance and frees them everywhere', async () => {
    const b = await createWasmBackend({ threads: 2, shardMinBytes: 1024 });
    expect(b.threads).toBe(2);
    const before = b.instanceMemory();
    expect(before.map((m) => m.instance)).toEqual([0, 1]);
    const w = b.upload('f16', [256, 64], f32ToF16(rand(256 * 64, 1)));
    const small = b.upload('f32', [8, 16], rand(128, 2)); // below shardMinBytes: whole on the calling thread
    const spec: QuantSpec = { bits: 4, groupSize: 32, scaleDtype: 'f16' };
    const qd = quantize(spec, 64, 64, rand(64 * 64, 3));
    const q = b.uploadQuantized(spec, [64, 64], qd.packed, qd.scales, qd.biases);
    const mid = b.instanceMemory();
    expect(mid[0]!.weightBytes).toBe(128 * 64 * 2 + 8 * 16 * 4 + 32 * (32 + 2 * 2 * 2));
    expect(mid[1]!.weightBytes).toBe(128 * 64 * 2 + 32 * (32 + 2 * 2 * 2));
    expect(mid[1]!.allocatedBytes).toBeGreaterThan(before[1]!.allocatedBytes);
    expect(b.memoryInUse()).toBe(256 * 64 * 2 + 8 * 16 * 4 + 64 * (32 + 8));
    for (const t of [w, small, q] as Weight[]) b.free(t);
    const after = b.instanceMemory();
    expect(after[1]!.allocatedBytes).toBe(before[1]!.allocatedBytes);
    expect(after.map((m) => m.weightBytes)).toEqual([0, 0]);
    expect(b.memoryInUse()).toBe(0);
    b.dispose();
    b.dispose();
    expect(() => b.alloc('f32', [1])).toThrow(/disposed/);
  });

  it('reads, writes and gathers sharded weights like any tensor', async () => {
    const b = await createWasmBackend({ threads: 2, shardMinBytes: 0 });
    const v = rand(64 * 40, 4);
    const w = b.upload('f32', [64, 40], v);
    expect(bits(b.read(w))).toEqual(bits(v));
    const bytes = new Uint8Array(v.buffer);
    expect(b.readBytes(w)).toEqual(bytes);
    const v2 = rand(64 * 40, 5);
    b.write(w, v2);
    expect(bits(b.read(w, new Float32Array(64 * 40)))).toEqual(bits(v2));
    // a row range across the shard boundary (rows 16..: the calling thread holds rows 0..31)
    const part = b.view(w, [20, 40], 20 * 40); // gathers the weight back into the calling thread's instance
    expect(bits(b.read(part))).toEqual(bits(v2.subarray(800, 1600)));
    expect(b.instanceMemory()[1]!.weightBytes).toBe(0);
    const y = b.alloc('f32', [1, 64]);
    const x = b.alloc('f32', [1, 40]);
    b.write(x, rand(40, 6));
    b.matmul(y, x, w);
    b.dispose();
  });

  it('starts its workers only with the first weight large enough to split', async () => {
    vi.stubEnv('MNEMO_SHARD_MIN_BYTES', '');
    const b = await createWasmBackend({ threads: 2 });
    b.upload('f32', [64, 64], rand(64 * 64, 8)); // 16 KiB: below the default 256 KiB
    expect(b.instanceMemory()[1]!.memoryBytes).toBe(0);
    b.upload('f16', [512, 512], f32ToF16(rand(512 * 512, 9))); // 512 KiB
    expect(b.instanceMemory()[1]!.weightBytes).toBe(256 * 512 * 2);
    b.dispose();
    vi.stubEnv('MNEMO_SHARD_MIN_BYTES', '0');
    const c = await createWasmBackend({ threads: 2 });
    c.upload('f32', [64, 64], rand(64 * 64, 8));
    expect(c.instanceMemory()[1]!.weightBytes).toBe(32 * 64 * 4);
    c.dispose();
    vi.stubEnv('MNEMO_SHARD_MIN_BYTES', '1e6');
    await expect(createWasmBackend({ threads: 2 })).rejects.toThrow(
      /MNEMO_SHARD_MIN_BYTES must be a byte count/,
    );
  });

  it('threads: 1 is the single-instance backend (no workers)', async () => {
    const b = await createWasmBackend({ threads: 1, shardMinBytes: 0 });
    expect(b.threads).toBe(1);
    b.upload('f32', [64, 64], rand(64 * 64, 7));
    expect(b.instanceMemory()).toHaveLength(1);
    b.dispose();
  });

  it('takes the thread count from the option, then MNEMO_THREADS, then the cores', async () => {
    vi.stubEnv('MNEMO_THREADS', '');
    const cores = await hardwareThreads();
    const d = (await createBackend({ backend: 'wasm' })) as WasmBackend;
    expect(d.threads).toBe(cores);
    d.dispose();
    vi.stubEnv('MNEMO_THREADS', '3');
    const e = (await createBackend({ backend: 'wasm' })) as WasmBackend;
    expect(e.threads).toBe(3);
    e.dispose();
    const o = (await createBackend({ backend: 'wasm', threads: 1 })) as WasmBackend;
    expect(o.threads).toBe(1);
    o.dispose();
    vi.stubEnv('MNEMO_THREADS', 'many');
    await expect(createWasmBackend()).rejects.toThrow(/MNEMO_THREADS must be a positive integer, got "many"/);
    await expect(createWasmBackend({ threads: 0 })).rejects.toThrow(
      /threads must be an integer in \[1, 64\]/,
    );
    await expect(createWasmBackend({ threads: 1.5 })).rejects.toThrow(RangeError);
    expect((await createBackend({ backend: 'js', threads: 4 })).name).toBe('js');
  });

  it('runs custom kernels single-threaded only', async () => {
    vi.stubEnv('MNEMO_THREADS', '2');
    const b = await createWasmBackend(createFakeKernels());
    expect(b.threads).toBe(1);
    await expect(createWasmBackend({ kernels: createFakeKernels(), threads: 2 })).rejects.toThrow(
      /custom kernels run single-threaded/,
    );
    await expect(createWasmBackend({ maxInstanceBytes: 2 ** 33 })).rejects.toThrow(/maxInstanceBytes/);
  });

  it('reports a worker failure as the error it threw, and keeps working', async () => {
    const pool = WorkerPool.start(1, 1000, await loadKernels());
    const l = pool.links[0]!;
    expect(() => pool.call(l, 99)).toThrow(/wasm backend worker 1: worker: unknown op 99/);
    l.u32[8] = 12345;
    expect(() => pool.call(l, 4)).toThrow(/not a live allocation/);
    const p = pool.alloc(l, 64);
    pool.write(l, p, new Uint8Array([1, 2, 3]));
    const out = new Uint8Array(3);
    pool.read(l, p, out);
    expect([...out]).toEqual([1, 2, 3]);
    pool.free(l, p);
    pool.dispose();
    pool.dispose();
  });
});

describe('weights larger than one instance', () => {
  // Four f16 [256, 512] matrices (256 KiB each) and a q4 one: 1.1 MiB of weights, with instances capped at 768 KiB.
  const cap = 768 * 1024;
  const spec: QuantSpec = { bits: 4, groupSize: 64, scaleDtype: 'bf16' };
  const dense = [0, 1, 2, 3].map((i) => f32ToF16(rand(256 * 512, 10 + i, 0.1)));
  const qd = quantize(spec, 512, 256, rand(512 * 256, 20, 0.1));
  const xv = rand(3 * 512, 30);

  /** Loads the weights and runs a chain of matmuls; returns every output. */
  function run(b: WasmBackend): Float32Array[] {
    const ws: Weight[] = dense.map((d) => b.upload('f16', [256, 512], d));
    ws.push(b.uploadQuantized(spec, [512, 256], qd.packed, qd.scales, qd.biases));
    const x = b.alloc('f32', [3, 512]);
    b.write(x, xv);
    const h = b.alloc('f32', [3, 256]);
    const outs: Float32Array[] = [];
    for (let i = 0; i < 4; i++) {
      b.matmul(h, x, ws[i]!);
      outs.push(b.read(h));
      b.matmul(x, h, ws[4]!);
      outs.push(b.read(x));
    }
    return outs;
  }

  it('load and compute sharded over 2 threads, bitwise as one uncapped instance', async () => {
    const one = await createWasmBackend({ threads: 1 });
    const want = run(one);
    one.dispose();
    const two = await createWasmBackend({ threads: 2, maxInstanceBytes: cap });
    const got = run(two);
    const mem = two.instanceMemory();
    expect(mem.every((m) => m.allocatedBytes <= cap)).toBe(true);
    expect(mem[0]!.weightBytes + mem[1]!.weightBytes).toBe(4 * 256 * 512 * 2 + 512 * (128 + 2 * 4 * 2));
    two.dispose();
    expect(got.map(bits)).toEqual(want.map(bits));
  });

  it('with too few threads, fail with an error naming the thread count needed', async () => {
    const one = await createWasmBackend({ threads: 1, maxInstanceBytes: cap });
    let err: unknown;
    try {
      run(one);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(WasmCapacityError);
    expect(err).toBeInstanceOf(RangeError);
    expect((err as WasmCapacityError).neededThreads).toBe(2);
    expect((err as Error).message).toMatch(
      /^upload: a f16 \[256,512\] matrix \(256\.00 KiB\) does not fit in the calling thread’s kernels instance \(.*\); each kernels instance holds at most 768\.00 KiB; the weights uploaded so far \(1\.00 MiB\) need at least 2 threads, this backend has 1 thread: use createBackend\(\{ threads: 2 \}\) or MNEMO_THREADS=2/,
    );
    // nothing of the failed upload stays behind
    expect(one.memoryInUse()).toBe(3 * 256 * 512 * 2);
    one.dispose();

    // capped at 448 KiB, two instances hold three of the dense matrices; the fourth needs a third thread
    const two = await createWasmBackend({ threads: 2, maxInstanceBytes: 448 * 1024 });
    expect(() => run(two)).toThrow(/need at least 3 threads, this backend has 2 threads/);
    two.dispose();
    const three = await createWasmBackend({ threads: 3, maxInstanceBytes: 448 * 1024 });
    run(three);
    three.dispose();
  });
});
