import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeSafetensors, type NamedTensorInput } from '@mnemo/safetensors';
import type { Backend } from '@mnemo/tensor';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type CacheKindOptions, makeLayerCaches } from './caches';
import { type KVCache, type LayerState, type RowData, StateBuffers } from './contract';
import { metadataDigest, sha256Hex } from './digest';
import { PromptCacheError } from './errors';
import {
  layerTensorNames,
  MNEMO_VERSION,
  PROMPT_CACHE_FORMAT,
  PROMPT_CACHE_FORMAT_VERSION,
  type PromptCacheMeta,
  savePromptCache,
} from './prompt-cache';
import { makeBackend, randomRows, statesEqual, testBackends } from './testing';

const H = 2;
const D = 32;
const W = H * D;
const N_LAYERS = 3;
const sha = (s: string) => createHash('sha256').update(s).digest('hex');

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mnemo-kv-streaming-save-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});
let counter = 0;
const tmpPath = () => join(dir, `cache-${counter++}.safetensors`);

function meta(n: number): PromptCacheMeta {
  return {
    modelFingerprint: sha('model'),
    tokenizerFingerprint: sha('tokenizer'),
    tokens: Array.from({ length: n }, (_, i) => (i * 31) % 500),
    prompt: `prompt ${n} ✓`,
    modelConfig: { model_type: 'llama' },
    chatTemplate: 'chatml',
    model: 'some/model',
    numerics: 'js',
    createdAt: new Date('2026-11-28T01:02:03Z'),
  };
}

// ---- the previous implementation (one export of every layer, then one write), kept as the reference -------------

/** The v2 layer description of a state, spelled out here (independent of the writer's code). */
function refDescribe(s: LayerState) {
  const storage = (d: RowData) => (d.format === 'quantized' ? `q${d.bits}g${d.groupSize}` : d.format);
  const meta =
    s.kind === 'standard'
      ? { storage: storage(s.keys) }
      : s.kind === 'rotating'
        ? { maxSize: s.maxSize, keep: s.keep, storage: storage(s.keys) }
        : { bits: s.bits, groupSize: s.groupSize, start: s.start, quantized: s.keys.format === 'quantized' };
  return { kind: s.kind, nKvHeads: H, headDim: D, offset: s.offset, rows: s.keys.rows, meta };
}

function refLayerTensors(L: number, side: 'keys' | 'values', data: RowData): NamedTensorInput[] {
  if (data.format === 'f32' || data.format === 'f16') {
    const [name] = layerTensorNames(L, side, false);
    return [
      {
        name: name!,
        dtype: data.format === 'f32' ? 'F32' : 'F16',
        shape: [data.rows, H, D],
        data: data.data,
      },
    ];
  }
  const [p, s, b] = layerTensorNames(L, side, true);
  return [
    { name: p!, dtype: 'U32', shape: [data.rows, (W * data.bits) / 32], data: data.packed },
    { name: s!, dtype: 'F32', shape: [data.rows, W / data.groupSize], data: data.scales },
    { name: b!, dtype: 'F32', shape: [data.rows, W / data.groupSize], data: data.biases },
  ];
}

function referenceFile(caches: readonly KVCache[], m: PromptCacheMeta): Uint8Array {
  const states = caches.map((c) => c.exportState());
  const tensors: NamedTensorInput[] = [];
  const layers = states.map((s, L) => {
    for (const side of ['keys', 'values'] as const) tensors.push(...refLayerTensors(L, side, s[side]));
    return refDescribe(s);
  });
  const metadata: Record<string, string> = {
    format: PROMPT_CACHE_FORMAT,
    format_version: PROMPT_CACHE_FORMAT_VERSION,
    mnemo_version: m.mnemoVersion ?? MNEMO_VERSION,
    model_fingerprint: m.modelFingerprint,
    model_config: JSON.stringify(m.modelConfig),
    model: m.model ?? '',
    tokenizer_fingerprint: m.tokenizerFingerprint,
    numerics: m.numerics ?? '',
    chat_template: m.chatTemplate ?? '',
    tokens: JSON.stringify(m.tokens),
    prompt: m.prompt ?? '',
    cache: JSON.stringify({ nLayers: caches.length, layers }),
    checksum: sha256Hex(
      tensors.map((t) => new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength)),
    ),
    created_at: m.createdAt!.toISOString(),
  };
  metadata.metadata_checksum = metadataDigest(metadata, 'metadata_checksum');
  return encodeSafetensors(tensors, metadata);
}

// ---------------------------------------------------------------------------------------------------------------

describe('StateBuffers', () => {
  it('hands out views of exactly the asked length, reusing a slot until it must grow', () => {
    const b = new StateBuffers();
    const a = b.f32('keys', 10);
    expect(a.length).toBe(10);
    const c = b.f32('keys', 4);
    expect(c.length).toBe(4);
    expect(c.buffer).toBe(a.buffer);
    const u = b.u32('keys', 10);
    expect(u).toBeInstanceOf(Uint32Array);
    expect(u.buffer).toBe(a.buffer);
    expect(b.f32('values', 3).buffer).not.toBe(a.buffer);
    const grown = b.f32('keys', 11);
    expect(grown.length).toBe(11);
    expect(grown.buffer).not.toBe(a.buffer);
    expect(b.byteLength).toBe(11 * 4 + 3 * 4);
    expect(b.f32('empty', 0).length).toBe(0);
    b.clear();
    expect(b.byteLength).toBe(0);
    expect(() => b.f32('keys', -1)).toThrow(RangeError);
  });
});

describe.each(await testBackends())('exporting into buffers and streaming saves (%s backend)', (name) => {
  let backend: Backend;
  beforeEach(async () => {
    backend = await makeBackend(name);
  });
  afterEach(() => backend.dispose());

  function filled(n: number, opts: CacheKindOptions = {}, seed = 7, windows = [0, 0, 0]): KVCache[] {
    const caches = makeLayerCaches(
      windows.map((window) => ({ window, nKvHeads: H, headDim: D })),
      { backend, ...opts },
    );
    caches.forEach((c, L) => {
      let done = 0;
      let step = 0;
      while (done < n) {
        const rows = Math.min(n - done, c.maxRowsNextStep(), 1 + ((step * 11) % 40));
        const k = randomRows(backend, rows, W, seed * 1000 + L * 100 + step);
        const v = randomRows(backend, rows, W, seed * 1000 + L * 100 + step + 50);
        c.updateAndFetch(k.t, v.t);
        backend.free(k.t);
        backend.free(v.t);
        done += rows;
        step++;
      }
    });
    return caches;
  }

  const kinds: [string, CacheKindOptions, number][] = [
    ['standard f16, 100 tokens', { kvDtype: 'f16' }, 100],
    ['rotating q4g32 after wrapping', { maxKvSize: 24, keep: 0, kvBits: 4, kvGroupSize: 32 }, 61],
    ['standard, 0 tokens', {}, 0],
    ['standard, 1 token', {}, 1],
    ['standard, 257 tokens', {}, 257],
    ['rotating within the window', { maxKvSize: 64, keep: 4 }, 50],
    ['rotating, window just full', { maxKvSize: 32, keep: 4 }, 32],
    ['rotating after wrapping', { maxKvSize: 32, keep: 4 }, 100],
    ['rotating after wrapping, keep 0', { maxKvSize: 24, keep: 0 }, 61],
    ['quantized q8g32 before conversion', { kvBits: 8, kvGroupSize: 32, quantizedKvStart: 20 }, 15],
    ['quantized q8g64 after conversion', { kvBits: 8, kvGroupSize: 64, quantizedKvStart: 5 }, 90],
    ['quantized q4g64 before conversion', { kvBits: 4, kvGroupSize: 64, quantizedKvStart: 40 }, 33],
    ['quantized q4g32 after conversion', { kvBits: 4, kvGroupSize: 32, quantizedKvStart: 5 }, 77],
    ['quantized q4g32 converted at 0', { kvBits: 4, kvGroupSize: 32 }, 3],
  ];

  it.each(kinds)('writes %s byte-identical to the one-shot writer', async (_label, opts, n) => {
    const caches = filled(n, opts);
    const path = tmpPath();
    await savePromptCache(path, caches, meta(n));
    const got = await readFile(path);
    const want = referenceFile(caches, meta(n));
    expect(got.byteLength).toBe(want.byteLength);
    expect(Buffer.compare(got, want)).toBe(0);
    for (const c of caches) c.free();
  });

  it.each(kinds)('exportState(buffers) of %s equals exportState() and reuses the buffers', (_l, opts, n) => {
    const caches = filled(n, opts);
    const buffers = new StateBuffers();
    const arrays = (s: LayerState): ArrayBufferView[] =>
      [s.keys, s.values].flatMap((r): ArrayBufferView[] =>
        r.format === 'quantized' ? [r.packed, r.scales, r.biases] : [r.data],
      );
    const first = caches[0]!.exportState(buffers);
    expect(statesEqual(first, caches[0]!.exportState())).toBe(true);
    const firstBuffers = arrays(first).map((a) => a.buffer);
    const held = buffers.byteLength;
    for (const c of caches.slice(1)) {
      const s = c.exportState(buffers);
      expect(statesEqual(s, c.exportState())).toBe(true);
      // Same sizes: the same ArrayBuffers, nothing new allocated.
      const now = arrays(s);
      expect(now.length).toBe(firstBuffers.length);
      for (const [i, a] of now.entries()) expect(a.buffer).toBe(firstBuffers[i]);
      expect(buffers.byteLength).toBe(held);
    }
    // The keys and values of one export never share memory.
    const [k, v] = arrays(first);
    if (n > 0) expect(k!.buffer).not.toBe(v!.buffer);
    // Without buffers: fresh arrays every time.
    expect(arrays(caches[0]!.exportState())[0]!.buffer).not.toBe(arrays(caches[0]!.exportState())[0]!.buffer);
    for (const c of caches) c.free();
  });

  it('grows the buffers with the cache and reuses them after a trim', () => {
    const [c] = filled(10);
    const buffers = new StateBuffers();
    const a = c!.exportState(buffers);
    expect(a.keys.format === 'f32' && a.keys.data.length).toBe(10 * W);
    const k = randomRows(backend, 5, W, 99);
    c!.updateAndFetch(k.t, k.t);
    const b = c!.exportState(buffers);
    expect(statesEqual(b, c!.exportState())).toBe(true);
    expect(buffers.byteLength).toBe(2 * 15 * W * 4);
    c!.trim(7);
    const t = c!.exportState(buffers);
    expect(statesEqual(t, c!.exportState())).toBe(true);
    expect(t.keys.format === 'f32' && t.keys.data.buffer).toBe(b.keys.format === 'f32' && b.keys.data.buffer);
    expect(buffers.byteLength).toBe(2 * 15 * W * 4);
    c!.free();
  });

  /**
   * A cache that runs `onExport(call, buffers)` before each of its exports (e.g. to change it in the middle of a save)
   * and `onState(state)` after.
   */
  function watched(
    inner: KVCache,
    onExport: (call: number, buffers: StateBuffers | undefined) => void,
    onState: (s: LayerState) => void = () => {},
  ): KVCache {
    let calls = 0;
    return {
      get kind() {
        return inner.kind;
      },
      get shape() {
        return inner.shape;
      },
      get offset() {
        return inner.offset;
      },
      get storage() {
        return inner.storage;
      },
      get byteLength() {
        return inner.byteLength;
      },
      get stateByteLength() {
        return inner.stateByteLength;
      },
      get isTrimmable() {
        return inner.isTrimmable;
      },
      trimmable: () => inner.trimmable(),
      makeEmpty: () => inner.makeEmpty(),
      updateAndFetch: (k, v) => inner.updateAndFetch(k, v),
      trim: (n) => inner.trim(n),
      free: () => inner.free(),
      maxRowsNextStep: () => inner.maxRowsNextStep(),
      exportState: (b) => {
        onExport(++calls, b);
        const s = inner.exportState(b);
        onState(s);
        return s;
      },
    };
  }

  it('exports each layer exactly twice, into one set of reused buffers', async () => {
    const caches = filled(40);
    let calls = 0;
    const given = new Set<StateBuffers | undefined>();
    const seen = new Set<ArrayBufferLike>();
    const spied = caches.map((c) =>
      watched(
        c,
        (_call, b) => {
          calls++;
          given.add(b);
        },
        (s) => {
          if (s.keys.format === 'f32') seen.add(s.keys.data.buffer);
        },
      ),
    );
    const path = tmpPath();
    await savePromptCache(path, spied, meta(40));
    expect(calls).toBe(2 * N_LAYERS);
    expect(given.size).toBe(1);
    expect([...given][0]).toBeInstanceOf(StateBuffers);
    expect(seen.size).toBe(1);
    expect(Buffer.compare(await readFile(path), referenceFile(caches, meta(40)))).toBe(0);
    for (const c of caches) c.free();
  });

  it.each([
    ['trimmed', (c: KVCache) => c.trim(1)],
    [
      'grown',
      (c: KVCache, b: Backend) => {
        const k = randomRows(b, 1, W, 5);
        c.updateAndFetch(k.t, k.t);
      },
    ],
  ] as const)(
    'refuses a layer %s during the save, leaving an existing file intact and no file behind',
    async (_l, change) => {
      const path = tmpPath();
      const good = filled(12);
      await savePromptCache(path, good, meta(12));
      const before = await readFile(path);
      const filesBefore = (await readdir(dir)).sort();
      const caches = filled(12, {}, 9);
      const flaky = caches.map((c, L) =>
        L === 1 ? watched(c, (call) => (call === 2 ? change(c, backend) : undefined)) : c,
      );
      const err = await savePromptCache(path, flaky, meta(12)).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(PromptCacheError);
      expect((err as PromptCacheError).code).toBe('BAD_INPUT');
      expect((err as PromptCacheError).message).toMatch(/layer 1 changed while it was being saved/);
      expect(Buffer.compare(await readFile(path), before)).toBe(0);
      expect((await readdir(dir)).sort()).toEqual(filesBefore);
      // The same with no file at the destination: nothing is created.
      const fresh = tmpPath();
      const again = filled(12, {}, 9);
      const flaky2 = again.map((c, L) =>
        L === 2 ? watched(c, (call) => (call === 2 ? change(c, backend) : undefined)) : c,
      );
      await expect(savePromptCache(fresh, flaky2, meta(12))).rejects.toBeInstanceOf(PromptCacheError);
      expect((await readdir(dir)).sort()).toEqual(filesBefore);
      for (const c of [...good, ...caches, ...again]) c.free();
    },
  );
});
