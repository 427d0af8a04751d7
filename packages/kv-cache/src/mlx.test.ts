import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeSafetensors, encodeSafetensors, type NamedTensorInput } from '@mnemo/safetensors';
import type { Backend } from '@mnemo/tensor';
import { randomF32 } from '@mnemo/test-utils';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type CacheKindOptions, importState, makeCaches, makeLayerCaches } from './caches';
import type { KVCache } from './contract';
import { PromptCacheError, type PromptCacheErrorCode } from './errors';
import { f32ToStorage, rowsToF32, storageToF32 } from './floats';
import { exportMlxPromptCache, importMlxPromptCache } from './mlx';
import { bitsEqual, makeBackend, statesEqual, testBackends } from './testing';

const H = 2;
const D = 32;
const W = H * D;

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mnemo-kv-mlx-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});
let counter = 0;
const tmpPath = () => join(dir, `mlx-${counter++}.safetensors`);

async function refusal(p: Promise<unknown>, code: PromptCacheErrorCode, message: RegExp): Promise<void> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(PromptCacheError);
  expect((err as PromptCacheError).code, (err as Error).message).toBe(code);
  expect((err as Error).message).toMatch(message);
}

/** Values exactly representable in `dtype`. */
function representable(n: number, seed: number, dtype: 'f16' | 'bf16' | 'f32'): Float32Array {
  const x = randomF32(n, seed, 4);
  if (dtype === 'f32') return x;
  const s = f32ToStorage(dtype, x);
  return storageToF32(dtype, new Uint8Array(s.buffer, s.byteOffset, s.byteLength));
}

/** `n` layers of one cache shape. */
function layersOf(n: number, nKvHeads: number, headDim: number) {
  return Array.from({ length: n }, () => ({ nKvHeads, headDim }));
}

describe.each(await testBackends())('mlx-lm prompt-cache interop (%s backend)', (name) => {
  let backend: Backend;
  beforeEach(async () => {
    backend = await makeBackend(name);
  });
  afterEach(() => backend.dispose());

  function filled(
    nLayers: number,
    n: number,
    opts: CacheKindOptions,
    dtype: 'f16' | 'bf16' | 'f32' = 'f32',
    windows: number[] = Array(nLayers).fill(0),
  ): KVCache[] {
    const caches = makeLayerCaches(
      windows.map((window) => ({ window, nKvHeads: H, headDim: D })),
      { backend, ...opts },
    );
    caches.forEach((c, L) => {
      let step = 0;
      while (c.offset < n) {
        const rows = Math.min(n - c.offset, c.maxRowsNextStep(), 1 + ((step * 5) % 23));
        const k = backend.upload('f32', [rows, W], representable(rows * W, L * 1000 + step, dtype));
        const v = backend.upload('f32', [rows, W], representable(rows * W, L * 1000 + step + 500, dtype));
        c.updateAndFetch(k, v);
        backend.free(k);
        backend.free(v);
        step++;
      }
    });
    return caches;
  }

  it('writes exactly mlx-lm save_prompt_cache layout: names, shapes, [1, kv_heads, T, head_dim], metadata', async () => {
    const path = tmpPath();
    const caches = filled(2, 3, {});
    await exportMlxPromptCache(path, caches, {
      dtype: 'f32',
      metadata: { model: 'tiny', chat_template: 'x' },
    });
    const f = decodeSafetensors(await readFile(path));
    expect([...f.tensors.keys()].sort()).toEqual(['0.0', '0.1', '1.0', '1.1']);
    expect(f.metadata).toEqual({
      '0.0': '',
      '0.1': '',
      '1.model': 'tiny',
      '1.chat_template': 'x',
      '2.0': 'KVCache',
      '2.1': 'KVCache',
    });
    const t = f.tensors.get('1.1')!;
    expect(t.dtype).toBe('F32');
    expect(t.shape).toEqual([1, H, 3, D]);
    // Element [0, h, t, d] is row t, column h * D + d of ours.
    const state = caches[1]!.exportState();
    const mlx = new Float32Array(t.data.buffer, t.data.byteOffset, t.data.byteLength / 4);
    for (let h = 0; h < H; h++)
      for (let r = 0; r < 3; r++)
        for (let d = 0; d < D; d++) {
          if (state.values.format !== 'f32') throw new Error('dense expected');
          expect(mlx[(h * 3 + r) * D + d]).toBe(state.values.data[r * W + h * D + d]);
        }
  });

  it('writes RotatingKVCache and QuantizedKVCache meta states as mlx-lm flattens them', async () => {
    const rot = tmpPath();
    await exportMlxPromptCache(rot, filled(1, 40, { maxKvSize: 16, keep: 4 }), { dtype: 'f16' });
    const r = decodeSafetensors(await readFile(rot));
    expect(r.metadata).toEqual({
      '0.0.0': '4',
      '0.0.1': '16',
      '0.0.2': '40',
      '0.0.3': '16',
      '2.0': 'RotatingKVCache',
    });
    expect(r.tensors.get('0.0')!.shape).toEqual([1, H, 16, D]);
    expect(r.tensors.get('0.0')!.dtype).toBe('F16');

    const q = tmpPath();
    await exportMlxPromptCache(q, filled(1, 9, { kvBits: 4, kvGroupSize: 32 }), { dtype: 'bf16' });
    const m = decodeSafetensors(await readFile(q));
    expect(m.metadata).toEqual({ '0.0.0': '9', '0.0.1': '32', '0.0.2': '4', '2.0': 'QuantizedKVCache' });
    expect([...m.tensors.keys()].sort()).toEqual(['0.0.0', '0.0.1', '0.0.2', '0.1.0', '0.1.1', '0.1.2']);
    expect(m.tensors.get('0.0.0')!.dtype).toBe('U32');
    expect(m.tensors.get('0.0.0')!.shape).toEqual([1, H, 9, (D * 4) / 32]);
    expect(m.tensors.get('0.1.2')!.shape).toEqual([1, H, 9, D / 32]);
    expect(m.tensors.get('0.1.2')!.dtype).toBe('BF16');
  });

  const cases: [string, CacheKindOptions, number][] = [
    ['standard', {}, 300],
    ['rotating (wrapped)', { maxKvSize: 20, keep: 4 }, 57],
    ['rotating (within the window)', { maxKvSize: 64, keep: 4 }, 30],
    ['quantized q8g32 (converted)', { kvBits: 8, kvGroupSize: 32, quantizedKvStart: 3 }, 40],
    ['quantized q4g32 (converted)', { kvBits: 4, kvGroupSize: 32, quantizedKvStart: 0 }, 21],
  ];

  it.each(cases)('round-trips %s through the mlx layout as f32, bitwise', async (_label, opts, n) => {
    const path = tmpPath();
    const caches = filled(3, n, opts);
    await exportMlxPromptCache(path, caches, { dtype: 'f32', metadata: { model: 'm' } });
    const got = await importMlxPromptCache(path, {
      backend,
      layers: layersOf(3, H, D),
      quantizedKvStart: opts.quantizedKvStart ?? 0,
    });
    expect(got.tokenCount).toBe(n);
    expect(got.metadata).toEqual({ model: 'm' });
    for (const [L, c] of got.caches.entries())
      expect(statesEqual(c.exportState(), caches[L]!.exportState())).toBe(true);
    for (const c of [...caches, ...got.caches]) c.free();
  });

  it.each(['f16', 'bf16'] as const)('round-trips %s-representable values exactly', async (dtype) => {
    for (const [, opts, n] of cases.slice(0, 3)) {
      const path = tmpPath();
      const caches = filled(2, n, opts, dtype);
      await exportMlxPromptCache(path, caches, { dtype });
      const got = await importMlxPromptCache(path, { backend, layers: layersOf(2, H, D) });
      for (const [L, c] of got.caches.entries())
        expect(statesEqual(c.exportState(), caches[L]!.exportState())).toBe(true);
    }
  });

  it('exports a quantized cache not yet converted as a KVCache, as mlx-lm would hold it', async () => {
    const path = tmpPath();
    const caches = filled(1, 5, { kvBits: 8, quantizedKvStart: 10 });
    await exportMlxPromptCache(path, caches, { dtype: 'f32' });
    const got = await importMlxPromptCache(path, { backend, layers: layersOf(1, H, D) });
    expect(got.classes).toEqual(['KVCache']);
    const a = got.caches[0]!.exportState();
    const b = caches[0]!.exportState();
    if (a.keys.format !== 'f32' || b.keys.format !== 'f32') throw new Error('dense expected');
    expect(bitsEqual(a.keys.data, b.keys.data)).toBe(true);
  });

  /** Writes an mlx-style file by hand: one layer of the given class, keys = values = `rows` in mlx layout. */
  async function handMade(
    cls: string,
    meta: Record<string, string>,
    T: number,
    rows: Float32Array,
  ): Promise<string> {
    const hm = new Float32Array(rows.length);
    for (let t = 0; t < T; t++)
      for (let h = 0; h < H; h++) hm.set(rows.subarray(t * W + h * D, t * W + (h + 1) * D), (h * T + t) * D);
    const tensors: NamedTensorInput[] = [
      { name: '0.0', dtype: 'F32', shape: [1, H, T, D], data: hm },
      { name: '0.1', dtype: 'F32', shape: [1, H, T, D], data: hm },
    ];
    const path = tmpPath();
    await writeFile(path, encodeSafetensors(tensors, { ...meta, '2.0': cls }));
    return path;
  }

  function rowsOf(positions: number[], all: Float32Array): Float32Array {
    const out = new Float32Array(positions.length * W);
    positions.forEach((p, i) => {
      out.set(all.subarray(p * W, (p + 1) * W), i * W);
    });
    return out;
  }

  it('imports an mlx-lm RotatingKVCache saved in ring order (_idx < offset) in time order', async () => {
    // One token at a time with max_size 8, keep 2: positions 0..7 fill slots 0..7, then 8..12 overwrite slots 2..6
    // (the write index wraps to keep), so at offset 13 the ring holds [0, 1, 8, 9, 10, 11, 12, 7] and _idx = 7.
    const all = randomF32(13 * W, 3);
    const ring = rowsOf([0, 1, 8, 9, 10, 11, 12, 7], all);
    const path = await handMade(
      'RotatingKVCache',
      { '0.0.0': '2', '0.0.1': '8', '0.0.2': '13', '0.0.3': '7' },
      8,
      ring,
    );
    const got = await importMlxPromptCache(path, { backend, layers: layersOf(1, H, D) });
    const s = got.caches[0]!.exportState();
    if (s.kind !== 'rotating' || s.keys.format !== 'f32') throw new Error('rotating expected');
    expect(s.offset).toBe(13);
    expect(s.keep).toBe(2);
    expect(s.maxSize).toBe(8);
    // Time order: sinks 0, 1, then the most recent 7 .. 12.
    expect(bitsEqual(s.keys.data, rowsOf([0, 1, 7, 8, 9, 10, 11, 12], all))).toBe(true);
  });

  it('imports an mlx-lm RotatingKVCache longer than max_size (after a multi-token step) keeping sinks + most recent', async () => {
    // max_size 6, keep 1: a 4-token step at offset 8 keeps keep + (max_size - 1 - keep) old rows in time order and
    // appends the new ones: [0, 4, 5, 6, 7, 8, 9, 10, 11] with _idx = 9 and offset 12.
    const all = randomF32(12 * W, 4);
    const buffer = rowsOf([0, 4, 5, 6, 7, 8, 9, 10, 11], all);
    const path = await handMade(
      'RotatingKVCache',
      { '0.0.0': '1', '0.0.1': '6', '0.0.2': '12', '0.0.3': '9' },
      9,
      buffer,
    );
    const got = await importMlxPromptCache(path, { backend, layers: layersOf(1, H, D) });
    const s = got.caches[0]!.exportState();
    if (s.keys.format !== 'f32') throw new Error('dense expected');
    expect(s.keys.rows).toBe(6);
    expect(bitsEqual(s.keys.data, rowsOf([0, 7, 8, 9, 10, 11], all))).toBe(true);
    // It continues as a rotating cache that has wrapped.
    expect(got.caches[0]!.trimmable()).toBe(0);
    const copy = importState(backend, s);
    expect(copy.offset).toBe(12);
  });

  it('writes and reads mixed layers as mlx-lm saves Gemma 3: RotatingKVCache on sliding layers, KVCache on global ones', async () => {
    // 5 sliding layers of window 8, then a global one (the Gemma 3 pattern), 30 tokens: every ring has wrapped
    const windows = [8, 8, 8, 8, 8, 0];
    const caches = filled(6, 30, {}, 'f32', windows);
    const path = tmpPath();
    await exportMlxPromptCache(path, caches, { dtype: 'f32' });
    const f = decodeSafetensors(await readFile(path));
    expect([0, 1, 2, 3, 4, 5].map((L) => f.metadata[`2.${L}`])).toEqual([
      ...Array(5).fill('RotatingKVCache'),
      'KVCache',
    ]);
    // mlx-lm's meta_state of a RotatingKVCache: (keep, max_size, offset, _idx)
    expect([0, 1, 2, 3].map((i) => f.metadata[`0.0.${i}`])).toEqual(['0', '8', '30', '8']);
    expect(f.metadata['0.5']).toBe('');
    expect(f.tensors.get('0.0')!.shape).toEqual([1, H, 8, D]);
    expect(f.tensors.get('5.1')!.shape).toEqual([1, H, 30, D]);
    const got = await importMlxPromptCache(path, { backend, layers: layersOf(6, H, D) });
    expect(got.caches.map((c) => c.kind)).toEqual([...Array(5).fill('rotating'), 'standard']);
    for (const [L, c] of got.caches.entries())
      expect(statesEqual(c.exportState(), caches[L]!.exportState())).toBe(true);
    for (const c of [...caches, ...got.caches]) c.free();
  });

  it('exports f16 and quantized rings as the float values attention reads, so an f32 round trip keeps them', async () => {
    for (const opts of [{ kvDtype: 'f16' }, { kvBits: 4, kvGroupSize: 32 }] as const) {
      const caches = filled(2, 20, opts, 'f32', [6, 0]);
      const path = tmpPath();
      await exportMlxPromptCache(path, caches, { dtype: 'f32' });
      const f = decodeSafetensors(await readFile(path));
      expect(f.metadata['2.0']).toBe('RotatingKVCache');
      const got = await importMlxPromptCache(path, { backend, layers: layersOf(2, H, D) });
      const a = got.caches[0]!.exportState();
      const b = caches[0]!.exportState();
      if (a.keys.format !== 'f32') throw new Error('f32 rows expected');
      expect(bitsEqual(a.keys.data, rowsToF32(b.keys, W))).toBe(true);
      if (a.values.format !== 'f32') throw new Error('f32 rows expected');
      expect(bitsEqual(a.values.data, rowsToF32(b.values, W))).toBe(true);
      for (const c of [...caches, ...got.caches]) c.free();
    }
  });

  it('refuses files that do not fit the model, naming the mismatch', async () => {
    const path = tmpPath();
    await exportMlxPromptCache(path, filled(2, 4, {}), { dtype: 'f16' });
    await refusal(
      importMlxPromptCache(path, { backend, layers: layersOf(3, H, D) }),
      'SHAPE_MISMATCH',
      /2 layers, the model has 3/,
    );
    await refusal(
      importMlxPromptCache(path, { backend, layers: layersOf(2, 4, D) }),
      'SHAPE_MISMATCH',
      /'0\.0' \(layer 0 keys\) has 2 kv heads, the model 4/,
    );
    await refusal(
      importMlxPromptCache(path, { backend, layers: layersOf(2, H, 64) }),
      'SHAPE_MISMATCH',
      /last dimension 32, the model needs 64/,
    );
    const batch = tmpPath();
    await writeFile(
      batch,
      encodeSafetensors(
        [
          { name: '0.0', dtype: 'F32', shape: [2, H, 1, D], data: new Float32Array(2 * W) },
          { name: '0.1', dtype: 'F32', shape: [2, H, 1, D], data: new Float32Array(2 * W) },
        ],
        { '0.0': '', '2.0': 'KVCache' },
      ),
    );
    await refusal(
      importMlxPromptCache(batch, { backend, layers: layersOf(1, H, D) }),
      'SHAPE_MISMATCH',
      /batch size 2/,
    );
    const chunked = await handMade('ChunkedKVCache', { '0.0.0': '4', '0.0.1': '0' }, 1, new Float32Array(W));
    await refusal(
      importMlxPromptCache(chunked, { backend, layers: layersOf(1, H, D) }),
      'UNSUPPORTED',
      /ChunkedKVCache/,
    );
    const q2 = await handMade(
      'QuantizedKVCache',
      { '0.0.0': '1', '0.0.1': '64', '0.0.2': '2' },
      1,
      new Float32Array(W),
    );
    await refusal(
      importMlxPromptCache(q2, { backend, layers: layersOf(1, H, D) }),
      'UNSUPPORTED',
      /2-bit group-64/,
    );
    const notMlx = tmpPath();
    await writeFile(notMlx, encodeSafetensors([], { format: 'pt' }));
    await refusal(
      importMlxPromptCache(notMlx, { backend, layers: layersOf(1, H, D) }),
      'UNKNOWN_FORMAT',
      /not an mlx-lm prompt cache/,
    );
  });

  it('refuses to export what mlx-lm cannot hold', async () => {
    await refusal(exportMlxPromptCache(tmpPath(), filled(1, 0, {}), { dtype: 'f32' }), 'BAD_INPUT', /empty/);
    const narrow = makeCaches(1, { backend, nKvHeads: 4, headDim: 16, kvBits: 8, kvGroupSize: 32 });
    const k = backend.upload('f32', [2, 64], randomF32(128, 1));
    narrow[0]!.updateAndFetch(k, k);
    narrow[0]!.updateAndFetch(k, k);
    await refusal(
      exportMlxPromptCache(tmpPath(), narrow, { dtype: 'f32' }),
      'BAD_INPUT',
      /head size 16 is not a multiple of the group size 32/,
    );
    await refusal(
      exportMlxPromptCache(tmpPath(), filled(1, 2, {}), { dtype: 'f32', metadata: { 'a.b': 'x' } }),
      'BAD_INPUT',
      /without '\.'/,
    );
  });
});
