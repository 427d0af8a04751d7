import { describe, expect, it } from 'vitest';
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
