import { describe, expect, it, vi } from 'vitest';
import { quantize, roundActivationsInt8 } from '../quant';
import { createWasmBackend } from './backend';
import { createFakeKernels } from './fake-kernels';
import type { Kernels } from './kernels';

/** Fake kernels that count calls of each export. */
function counted(k: Kernels): { kernels: Kernels; calls: Map<string, number> } {
  const calls = new Map<string, number>();
  const kernels = new Proxy(k, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver);
      if (typeof v !== 'function') return v;
      return (...args: unknown[]) => {
        calls.set(String(prop), (calls.get(String(prop)) ?? 0) + 1);
        return (v as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
  return { kernels, calls };
}

describe('wasm backend plumbing (on fake kernels)', () => {
  it('stages ids in a growable buffer and keeps working as memory grows', async () => {
    const b = await createWasmBackend(createFakeKernels({ growOnAlloc: true }));
    const vocab = 50;
    const dim = 3;
    const table = Float32Array.from({ length: vocab * dim }, (_, i) => i);
    const t = b.upload('f32', [vocab, dim], table);
    for (const n of [1, 300, 5, 1000]) {
      const ids = Int32Array.from({ length: n }, (_, i) => (i * 7) % vocab);
      const out = b.alloc('f32', [n, dim]);
      b.embedding(out, t, ids);
      const got = b.read(out);
      for (let r = 0; r < n; r++)
        for (let i = 0; i < dim; i++) expect(got[r * dim + i]).toBe(table[ids[r]! * dim + i]);
      b.free(out);
    }
  });

  it('calls no kernel when validation fails', async () => {
    const { kernels, calls } = counted(createFakeKernels());
    const b = await createWasmBackend(kernels);
    const x = b.upload('f32', [2, 4], new Float32Array(8));
    const w = b.upload('f32', [3, 5], new Float32Array(15));
    const y = b.alloc('f32', [2, 3]);
    expect(() => b.matmul(y, x, w)).toThrow(RangeError);
    expect(() => b.embedding(b.alloc('f32', [1, 5]), w, new Int32Array([3]))).toThrow(
      /outside the vocabulary/,
    );
    expect(() =>
      b.attention(y, y, x, x, { startPos: 0, nHeads: 3, nKvHeads: 2, headDim: 1, scale: 1 }),
    ).toThrow(/attention/);
    expect([...calls.keys()]).toEqual(['alloc']);
  });

  it('dispose returns every allocation, and the backend refuses use afterwards', async () => {
    const k = createFakeKernels();
    const b = await createWasmBackend(k);
    const t = b.upload('f32', [4], new Float32Array(4));
    b.embedding(b.alloc('f32', [1, 4]), b.upload('f32', [2, 4], new Float32Array(8)), new Int32Array([1]));
    expect(k.allocatedBytes()).toBeGreaterThan(0);
    b.dispose();
    expect(k.allocatedBytes()).toBe(0);
    expect(b.memoryInUse()).toBe(0);
    expect(() => b.read(t)).toThrow(/freed/);
    expect(() => b.alloc('f32', [1])).toThrow(/disposed/);
    b.dispose(); // idempotent
  });

  it('reports allocator failures and misaligned pointers', async () => {
    const k = createFakeKernels();
    const failing = await createWasmBackend({ ...k, alloc: () => 0 });
    expect(() => failing.alloc('f32', [4])).toThrow(/could not allocate 16 bytes/);
    const misaligned = await createWasmBackend({ ...k, alloc: (n: number) => k.alloc(n + 8) + 4 });
    expect(() => misaligned.alloc('f32', [4])).toThrow(/misaligned/);
  });

  it('handles empty tensors without calling kernels on them', async () => {
    const { kernels, calls } = counted(createFakeKernels());
    const b = await createWasmBackend(kernels);
    const x = b.alloc('f32', [0, 4]);
    const y = b.alloc('f32', [0, 3]);
    b.matmul(y, x, b.upload('f32', [3, 4], new Float32Array(12)));
    expect(b.read(y)).toEqual(new Float32Array(0));
    const bias = b.upload('f32', [3], new Float32Array([1, 2, 3]));
    const y2 = b.alloc('f32', [2, 3]);
    b.matmul(y2, b.alloc('f32', [2, 0]), b.alloc('f32', [3, 0]), bias);
    expect(Array.from(b.read(y2))).toEqual([1, 2, 3, 1, 2, 3]);
    expect(calls.get('matmul')).toBeUndefined();
  });
});

describe('wasm backend int8 activations (opt-in)', () => {
  const spec = { bits: 4, groupSize: 32, scaleDtype: 'f16' } as const;
  const rows = 3;
  const inDim = 64;
  const outDim = 40;
  const x = Float32Array.from({ length: rows * inDim }, (_, i) => Math.sin(i * 0.37) * (1 + (i % 5)));
  const w = Float32Array.from({ length: outDim * inDim }, (_, i) => Math.cos(i * 0.11) * 0.05);

  async function run(opts: { int8Activations?: boolean; threads?: number }): Promise<Float32Array> {
    const b = await createWasmBackend({ threads: 1, shardMinBytes: 0, ...opts });
    const q = quantize(spec, outDim, inDim, w);
    const wt = b.uploadQuantized(spec, [outDim, inDim], q.packed, q.scales, q.biases);
    const xt = b.upload('f32', [rows, inDim], x);
    const y = b.alloc('f32', [rows, outDim]);
    b.matmul(y, xt, wt);
    const out = b.read(y);
    b.dispose();
    return out;
  }

  it('rounds the activations (results differ from the exact path, equal the rounded inputs run exactly)', async () => {
    const exact = await run({});
    const int8 = await run({ int8Activations: true });
    const b = await createWasmBackend({ threads: 1 });
    expect(b.int8Activations).toBe(false);
    expect(b.numerics).toBe('wasm');
    b.dispose();
    expect(Array.from(int8)).not.toEqual(Array.from(exact));
    // the exact path on the rounded inputs: equal within f32 summation slack
    const rounded = roundActivationsInt8(x, rows, inDim);
    const b2 = await createWasmBackend({ threads: 1 });
    const q = quantize(spec, outDim, inDim, w);
    const wt = b2.uploadQuantized(spec, [outDim, inDim], q.packed, q.scales, q.biases);
    const y = b2.alloc('f32', [rows, outDim]);
    b2.matmul(y, b2.upload('f32', [rows, inDim], rounded), wt);
    const want = b2.read(y);
    b2.dispose();
    for (let i = 0; i < want.length; i++) expect(Math.abs(int8[i]! - want[i]!)).toBeLessThan(1e-5);
  });

  it('is the same with a worker computing half the rows', async () => {
    const one = await run({ int8Activations: true });
    const two = await run({ int8Activations: true, threads: 2 });
    expect(new Uint32Array(two.buffer)).toEqual(new Uint32Array(one.buffer));
  });

  it('reads MNEMO_INT8_ACTIVATIONS and names itself', async () => {
    vi.stubEnv('MNEMO_INT8_ACTIVATIONS', '1');
    const b = await createWasmBackend({ threads: 1 });
    expect(b.int8Activations).toBe(true);
    expect(b.numerics).toBe('wasm+int8a');
    b.dispose();
    vi.stubEnv('MNEMO_INT8_ACTIVATIONS', 'maybe');
    await expect(createWasmBackend({ threads: 1 })).rejects.toThrow(/MNEMO_INT8_ACTIVATIONS/);
    vi.unstubAllEnvs();
  });

  it('refuses int8 activations on kernels without the int8 path', async () => {
    const k = createFakeKernels();
    await expect(createWasmBackend({ kernels: k, int8Activations: true })).rejects.toThrow(
      /quantizeActivations/,
    );
  });
});
