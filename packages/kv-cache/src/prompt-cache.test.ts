import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeSafetensors, encodeSafetensors, type NamedTensorInput } from '@mnemo/safetensors';
import type { Backend } from '@mnemo/tensor';
import { syntheticDir } from '@mnemo/test-utils';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type CacheKindOptions, makeLayerCaches } from './caches';
import type { KVCache } from './contract';
import { metadataDigest } from './digest';
import { PromptCacheError, type PromptCacheErrorCode } from './errors';
import { exportMlxPromptCache } from './mlx';
import {
  inspectPromptCache,
  loadPromptCache,
  type PromptCacheExpectation,
  type PromptCacheMeta,
  savePromptCache,
  summarizeCache,
} from './prompt-cache';
import { makeBackend, randomRows, statesEqual, testBackends } from './testing';

const H = 2;
const D = 16;
const W = H * D;
const N_LAYERS = 2;
const sha = (s: string) => createHash('sha256').update(s).digest('hex');
const MODEL = sha('model A');
const TOKENIZER = sha('tokenizer A');
const EXPECT: PromptCacheExpectation = {
  modelFingerprint: MODEL,
  tokenizerFingerprint: TOKENIZER,
  layers: Array.from({ length: N_LAYERS }, () => ({ nKvHeads: H, headDim: D })),
};

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mnemo-kv-cache-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

let counter = 0;
const tmpPath = () => join(dir, `cache-${counter++}.safetensors`);

function tokensOf(n: number): number[] {
  return Array.from({ length: n }, (_, i) => (i * 37) % 264);
}

function meta(n: number, extra: Partial<PromptCacheMeta> = {}): PromptCacheMeta {
  return {
    modelFingerprint: MODEL,
    tokenizerFingerprint: TOKENIZER,
    tokens: tokensOf(n),
    prompt: `a prompt of ${n} tokens: héllo ✓`,
    modelConfig: { model_type: 'llama', num_hidden_layers: N_LAYERS },
    chatTemplate: 'chatml',
    createdAt: new Date('2026-11-27T12:00:00Z'),
    ...extra,
  };
}

async function expectRefusal(
  p: Promise<unknown>,
  code: PromptCacheErrorCode,
  message?: RegExp,
): Promise<PromptCacheError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(PromptCacheError);
  const e = err as PromptCacheError;
  expect(e.code, e.message).toBe(code);
  if (message) expect(e.message).toMatch(message);
  return e;
}

/** Rewrites a saved file: `edit` may change tensors and metadata; the metadata checksum is recomputed if `resign`. */
async function rewrite(
  path: string,
  edit: (tensors: NamedTensorInput[], metadata: Record<string, string>) => void,
  resign = true,
): Promise<void> {
  const decoded = decodeSafetensors(await readFile(path));
  const tensors: NamedTensorInput[] = [...decoded.tensors.values()].map((t) => ({ ...t }));
  const metadata = { ...decoded.metadata };
  edit(tensors, metadata);
  if (resign) metadata.metadata_checksum = metadataDigest(metadata, 'metadata_checksum');
  await writeFile(path, encodeSafetensors(tensors, metadata));
}

describe.each(await testBackends())('prompt-cache file v2 (%s backend)', (name) => {
  let backend: Backend;
  beforeEach(async () => {
    backend = await makeBackend(name);
  });
  afterEach(() => backend.dispose());

  /** Caches of `n` tokens; `windows` gives each layer's sliding window (0 = global). */
  function filled(n: number, opts: CacheKindOptions = {}, seed = 1, windows = [0, 0]): KVCache[] {
    const caches = makeLayerCaches(
      windows.map((window) => ({ window, nKvHeads: H, headDim: D })),
      { backend, ...opts },
    );
    caches.forEach((c, L) => {
      let done = 0;
      let step = 0;
      while (done < n) {
        const rows = Math.min(n - done, c.maxRowsNextStep(), 1 + ((step * 7) % 50));
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

  async function saved(n: number, opts: CacheKindOptions = {}, windows = [0, 0]): Promise<string> {
    const path = tmpPath();
    const caches = filled(n, opts, 1, windows);
    await savePromptCache(path, caches, meta(n));
    for (const c of caches) c.free();
    return path;
  }

  const kinds: [string, CacheKindOptions, number, number[]][] = [
    ['standard, 257 tokens', {}, 257, [0, 0]],
    ['standard, 0 tokens', {}, 0, [0, 0]],
    ['standard f16', { kvDtype: 'f16' }, 70, [0, 0]],
    ['rotating within the window', { maxKvSize: 64, keep: 4 }, 50, [0, 0]],
    ['rotating after wrapping', { maxKvSize: 32, keep: 4 }, 100, [0, 0]],
    ['quantized q8g32 before conversion', { kvBits: 8, kvGroupSize: 32, quantizedKvStart: 20 }, 15, [0, 0]],
    ['quantized q4g32 after conversion', { kvBits: 4, kvGroupSize: 32, quantizedKvStart: 5 }, 77, [0, 0]],
    ['mixed: a window-8 ring and a standard layer', {}, 40, [8, 0]],
    ['mixed, 4-bit: a q4 ring and a quantized layer', { kvBits: 4, kvGroupSize: 32 }, 40, [8, 0]],
    ['mixed, f16: two rings and no global layer', { kvDtype: 'f16' }, 30, [5, 12]],
  ];

  it.each(kinds)('round-trips %s bitwise, with its metadata', async (_label, opts, n, windows) => {
    const path = tmpPath();
    const caches = filled(n, opts, 1, windows);
    await savePromptCache(path, caches, meta(n));
    const { caches: loaded, meta: info } = await loadPromptCache(path, { backend, expect: EXPECT });
    expect(loaded.length).toBe(N_LAYERS);
    loaded.forEach((c, L) => {
      expect([c.kind, c.storage, c.offset]).toEqual([caches[L]!.kind, caches[L]!.storage, n]);
      expect(statesEqual(c.exportState(), caches[L]!.exportState())).toBe(true);
    });
    expect(info.formatVersion).toBe('2');
    expect(info.tokens).toEqual(tokensOf(n));
    expect(info.prompt).toBe(meta(n).prompt);
    expect(info.modelConfig).toEqual({ model_type: 'llama', num_hidden_layers: N_LAYERS });
    expect(info.chatTemplate).toBe('chatml');
    expect(info.createdAt).toBe('2026-11-27T12:00:00.000Z');
    expect(info.modelFingerprint).toBe(MODEL);
    expect(info.cache.nLayers).toBe(N_LAYERS);
    info.cache.layers.forEach((d, L) => {
      expect(d.kind).toBe(caches[L]!.kind);
      expect([d.nKvHeads, d.headDim, d.offset]).toEqual([H, D, n]);
    });
    // Loaded caches continue exactly like the originals.
    for (const [i, c] of loaded.entries()) {
      for (const m of [3, 1]) {
        const k = randomRows(backend, m, W, 4242 + m);
        c.updateAndFetch(k.t, k.t);
        caches[i]!.updateAndFetch(k.t, k.t);
      }
      expect(statesEqual(c.exportState(), caches[i]!.exportState())).toBe(true);
    }
    for (const c of [...caches, ...loaded]) c.free();
  });

  it('a ring layer stores at most its window of rows', async () => {
    const path = await saved(300, {}, [16, 0]);
    const info = (await inspectPromptCache(path)).info!;
    expect(info.cache.layers.map((l) => l.rows)).toEqual([16, 300]);
    expect(info.cache.layers[0]!.meta).toEqual({ maxSize: 16, keep: 0, storage: 'f32' });
    const file = decodeSafetensors(await readFile(path));
    expect(file.tensors.get('layers.0.keys')!.shape).toEqual([16, H, D]);
    expect(summarizeCache(info.cache)).toBe(
      '1 × rotating (maxSize 16, keep 0, f32; 2 kv heads × 16) + 1 × standard (f32; 2 kv heads × 16)',
    );
  });

  it('stores only the used rows: a 1-token file is tiny and size grows linearly with tokens', async () => {
    const bytesPerToken = N_LAYERS * 2 * W * 4;
    const sizes: { n: number; size: number; header: number }[] = [];
    for (const n of [1, 100, 200, 400]) {
      const path = await saved(n);
      const bytes = new Uint8Array(await readFile(path));
      const header = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
      sizes.push({ n, size: bytes.length, header });
      expect(bytes.length).toBe(8 + header + n * bytesPerToken);
      const info = await inspectPromptCache(path);
      expect(info.valid).toBe(true);
      expect(info.fileSize).toBe(bytes.length);
    }
    expect(sizes[0]!.size).toBeLessThan(4096);
    // The header grows only by the token list (a few bytes per token).
    for (const s of sizes) expect(s.header - sizes[0]!.header).toBeLessThanOrEqual(5 * (s.n - 1) + 64);
    // 257 tokens in a 512-row allocation still store 257 rows.
    const path = await saved(257);
    expect((await stat(path)).size).toBeLessThan(8 + 4096 + 257 * bytesPerToken);
  });

  it('refuses a truncated file, cut anywhere', async () => {
    const path = await saved(20);
    const bytes = new Uint8Array(await readFile(path));
    const header = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
    const cuts = [
      0,
      4,
      7,
      8,
      100,
      8 + header - 1,
      8 + header,
      8 + header + 1,
      8 + header + 1000,
      bytes.length - 1,
    ];
    for (const cut of cuts) {
      const p = tmpPath();
      await writeFile(p, bytes.subarray(0, cut));
      await expectRefusal(
        loadPromptCache(p, { backend, expect: EXPECT }),
        'TRUNCATED',
        /truncated|too short|ends/,
      );
      const info = await inspectPromptCache(p);
      expect(info.valid).toBe(false);
      expect(info.error?.code).toBe('TRUNCATED');
    }
  });

  it('catches a single flipped data byte (checksum)', async () => {
    const path = await saved(20);
    const bytes = new Uint8Array(await readFile(path));
    const header = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
    for (const at of [8 + header, 8 + header + 1234, bytes.length - 1]) {
      const copy = bytes.slice();
      copy[at]! ^= 0x01;
      const p = tmpPath();
      await writeFile(p, copy);
      // layers are rebuilt while the file is read; a bad checksum at the end must free every one of them
      const before = backend.memoryInUse();
      await expectRefusal(loadPromptCache(p, { backend, expect: EXPECT }), 'CHECKSUM', /checksum mismatch/);
      expect(backend.memoryInUse()).toBe(before);
      expect((await inspectPromptCache(p)).error?.code).toBe('CHECKSUM');
    }
  });

  it('refuses a file with any single header byte flipped', async () => {
    const path = await saved(5);
    const bytes = new Uint8Array(await readFile(path));
    const header = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
    const codes = new Set<string>();
    for (let at = 0; at < 8 + header; at += 3) {
      const copy = bytes.slice();
      copy[at]! ^= 0x04;
      const p = join(dir, 'flip.safetensors');
      await writeFile(p, copy);
      const err = await loadPromptCache(p, { backend, expect: EXPECT }).then(
        (r) => {
          for (const c of r.caches) c.free();
          return new Error(`accepted a file with header byte ${at} flipped`);
        },
        (e: unknown) => e,
      );
      expect(err, String(err)).toBeInstanceOf(PromptCacheError);
      codes.add((err as PromptCacheError).code);
    }
    expect(codes.has('CORRUPT')).toBe(true);
    // A change inside a metadata value that still parses (a token id) is caught by the metadata checksum.
    const text = Buffer.from(bytes.subarray(8, 8 + header)).toString('latin1');
    const at = 8 + text.indexOf('"tokens":"[') + 12;
    const copy = bytes.slice();
    copy[at] = copy[at] === 0x31 ? 0x32 : 0x31;
    const p = tmpPath();
    await writeFile(p, copy);
    await expectRefusal(loadPromptCache(p, { backend }), 'CORRUPT', /metadata checksum mismatch/);
  });

  it('refuses another format or format version', async () => {
    const path = await saved(3);
    await rewrite(path, (_t, m) => {
      m.format_version = '3';
    });
    await expectRefusal(loadPromptCache(path, { backend }), 'UNKNOWN_VERSION', /format_version "3"/);
    expect((await inspectPromptCache(path)).error?.code).toBe('UNKNOWN_VERSION');
    await rewrite(path, (_t, m) => {
      m.format = 'llama.cpp-session';
    });
    await expectRefusal(loadPromptCache(path, { backend }), 'UNKNOWN_FORMAT', /llama\.cpp-session/);
    const mlx = tmpPath();
    const caches = filled(3);
    await exportMlxPromptCache(mlx, caches, { dtype: 'f32' });
    await expectRefusal(loadPromptCache(mlx, { backend }), 'UNKNOWN_FORMAT', /importMlxPromptCache/);
  });

  it('refuses a cache computed with other numerics, and accepts one that records none', async () => {
    const path = tmpPath();
    const caches = filled(3);
    await savePromptCache(path, caches, { ...meta(3), numerics: 'wasm+int8a' });
    for (const c of caches) c.free();
    const e = await expectRefusal(
      loadPromptCache(path, { backend, expect: { ...EXPECT, numerics: 'wasm' } }),
      'NUMERICS_MISMATCH',
      /numerics wasm\+int8a, this model runs with wasm/,
    );
    expect(e.file).toBe(path);
    const same = await loadPromptCache(path, { backend, expect: { ...EXPECT, numerics: 'wasm+int8a' } });
    expect(same.meta.numerics).toBe('wasm+int8a');
    for (const c of same.caches) c.free();
    // a file without the entry (older writers) is accepted under any numerics
    const old = await saved(3);
    const loaded = await loadPromptCache(old, { backend, expect: { ...EXPECT, numerics: 'wasm' } });
    expect(loaded.meta.numerics).toBe('');
    for (const c of loaded.caches) c.free();
  });

  it('refuses a cache made for another model or tokenizer, naming which', async () => {
    const path = await saved(3);
    const other = sha('model B');
    const e = await expectRefusal(
      loadPromptCache(path, { backend, expect: { ...EXPECT, modelFingerprint: other } }),
      'MODEL_MISMATCH',
      /another model/,
    );
    expect(e.message).toContain(MODEL);
    expect(e.message).toContain(other);
    // The file's own fingerprints changed (and the header re-signed): still refused for this model/tokenizer.
    const m2 = await saved(3);
    await rewrite(m2, (_t, m) => {
      m.model_fingerprint = other;
    });
    await expectRefusal(
      loadPromptCache(m2, { backend, expect: EXPECT }),
      'MODEL_MISMATCH',
      new RegExp(other),
    );
    const t2 = await saved(3);
    await rewrite(t2, (_t, m) => {
      m.tokenizer_fingerprint = sha('tokenizer B');
    });
    await expectRefusal(
      loadPromptCache(t2, { backend, expect: EXPECT }),
      'TOKENIZER_MISMATCH',
      /another tokenizer/,
    );
    // Without re-signing, the same edit is a corrupted header.
    const m3 = await saved(3);
    await rewrite(
      m3,
      (_t, m) => {
        m.model_fingerprint = other;
      },
      false,
    );
    await expectRefusal(loadPromptCache(m3, { backend, expect: EXPECT }), 'CORRUPT', /metadata checksum/);
    await expectRefusal(
      loadPromptCache(path, { backend, expect: { ...EXPECT, tokenizerFingerprint: sha('tokenizer B') } }),
      'TOKENIZER_MISMATCH',
      /another tokenizer/,
    );
    const shape = { nKvHeads: H, headDim: D };
    await expectRefusal(
      loadPromptCache(path, { backend, expect: { ...EXPECT, layers: [shape, shape, shape] } }),
      'SHAPE_MISMATCH',
      /2 layers, the model 3/,
    );
    await expectRefusal(
      loadPromptCache(path, { backend, expect: { ...EXPECT, layers: [shape, { nKvHeads: 4, headDim: D }] } }),
      'SHAPE_MISMATCH',
      /layer 1 of the cache has 2 kv heads, the model 4/,
    );
    await expectRefusal(
      loadPromptCache(path, { backend, expect: { ...EXPECT, layers: [{ nKvHeads: H, headDim: 8 }, shape] } }),
      'SHAPE_MISMATCH',
      /head size/,
    );
  });

  it('refuses tensors inconsistent with the metadata', async () => {
    // Token count vs rows.
    const a = await saved(6);
    await rewrite(a, (_t, m) => {
      m.tokens = JSON.stringify(tokensOf(5));
    });
    await expectRefusal(
      loadPromptCache(a, { backend }),
      'SHAPE_MISMATCH',
      /holds 6 tokens but the file lists 5/,
    );
    // Layer count: the metadata describes 3 layers, the file holds 2.
    const b = await saved(6);
    await rewrite(b, (_t, m) => {
      const c = JSON.parse(m.cache!);
      c.nLayers = 3;
      c.layers.push(c.layers[0]);
      m.cache = JSON.stringify(c);
    });
    await expectRefusal(loadPromptCache(b, { backend }), 'SHAPE_MISMATCH', /layers\.2\.keys' is missing/);
    // A tensor with other rows than the metadata says.
    const c = await saved(6);
    await rewrite(c, (tensors) => {
      const t = tensors.find((x) => x.name === 'layers.1.values')!;
      const data = t.data as Uint8Array;
      tensors[tensors.indexOf(t)] = { ...t, shape: [5, H, D], data: data.subarray(0, 5 * W * 4) };
    });
    await expectRefusal(
      loadPromptCache(c, { backend }),
      'SHAPE_MISMATCH',
      /layers\.1\.values' is F32 \[5, 2, 16\]/,
    );
    // An extra tensor.
    const d = await saved(6);
    await rewrite(d, (tensors) => {
      tensors.push({ name: 'layers.2.keys', dtype: 'F32', shape: [0], data: new Float32Array(0) });
    });
    await expectRefusal(
      loadPromptCache(d, { backend }),
      'SHAPE_MISMATCH',
      /unexpected tensor 'layers\.2\.keys'/,
    );
  });

  it('writes atomically: a failed save leaves an existing file intact and no temporary file', async () => {
    const path = tmpPath();
    const good = filled(4);
    await savePromptCache(path, good, meta(4));
    const before = await readFile(path);
    const filesBefore = (await readdir(dir)).sort();
    // Inconsistent: layers at different offsets.
    const bad = filled(4);
    const k = randomRows(backend, 1, W, 1);
    bad[1]!.updateAndFetch(k.t, k.t);
    await expectRefusal(
      savePromptCache(path, bad, meta(4)),
      'BAD_INPUT',
      /layer 1 holds 5 tokens but 4 token ids/,
    );
    // Token count not matching.
    await expectRefusal(savePromptCache(path, good, meta(3)), 'BAD_INPUT', /holds 4 tokens but 3/);
    // Bad fingerprint.
    await expectRefusal(
      savePromptCache(path, good, meta(4, { modelFingerprint: 'abc' })),
      'BAD_INPUT',
      /sha256/,
    );
    // Unwritable destination.
    await expectRefusal(savePromptCache(join(dir, 'no', 'such', 'dir.safetensors'), good, meta(4)), 'IO');
    expect(Buffer.compare(await readFile(path), before)).toBe(0);
    expect((await readdir(dir)).sort()).toEqual(filesBefore);
    const { caches } = await loadPromptCache(path, { backend, expect: EXPECT });
    expect(caches[0]!.offset).toBe(4);
  });

  it('refuses layer descriptions it cannot trust or hold', async () => {
    const edit = async (change: (layer: Record<string, unknown>) => void) => {
      const p = await saved(6, { maxKvSize: 4, keep: 1 });
      await rewrite(p, (_t, m) => {
        const c = JSON.parse(m.cache!);
        change(c.layers[1]);
        m.cache = JSON.stringify(c);
      });
      return loadPromptCache(p, { backend });
    };
    await expectRefusal(
      edit((l) => (l.kind = 'paged')),
      'UNSUPPORTED',
      /cache kind "paged"/,
    );
    await expectRefusal(
      edit((l) => ((l.meta as Record<string, unknown>).storage = 'q3g32')),
      'UNSUPPORTED',
      /storage/,
    );
    await expectRefusal(
      edit((l) => ((l.meta as Record<string, unknown>).keep = 9)),
      'CORRUPT',
      /maxSize\/keep/,
    );
    await expectRefusal(
      edit((l) => ((l.meta as Record<string, unknown>).extra = 1)),
      'CORRUPT',
      /unknown meta-state/,
    );
    await expectRefusal(
      edit((l) => delete (l.meta as Record<string, unknown>).keep),
      'CORRUPT',
      /'keep' is missing/,
    );
    await expectRefusal(
      edit((l) => (l.meta = [])),
      'CORRUPT',
      /meta must be an object/,
    );
    await expectRefusal(
      edit((l) => (l.rows = 5)),
      'SHAPE_MISMATCH',
      /says 5 rows for offset 6, expected 4/,
    );
    await expectRefusal(
      edit((l) => (l.headDim = 8)),
      'SHAPE_MISMATCH',
      /layers\.1\.keys' is F32 \[4, 2, 16\]/,
    );
    await expectRefusal(
      edit((l) => (l.nKvHeads = 0)),
      'CORRUPT',
      /positive integers/,
    );
  });

  it('inspects a file without a backend', async () => {
    const path = await saved(12, { maxKvSize: 8, keep: 2 });
    const info = await inspectPromptCache(path);
    expect(info.valid).toBe(true);
    expect(info.error).toBeUndefined();
    expect(info.info?.tokens.length).toBe(12);
    expect(info.info?.cache.layers[0]).toEqual({
      kind: 'rotating',
      nKvHeads: H,
      headDim: D,
      offset: 12,
      rows: 8,
      meta: { maxSize: 8, keep: 2, storage: 'f32' },
    });
    expect(info.metadata.format).toBe('mnemo-prompt-cache');
    const missing = await inspectPromptCache(join(dir, 'missing.safetensors'));
    expect(missing.valid).toBe(false);
    expect(missing.error?.code).toBe('IO');
  });
});

// Files written by format v1 (fixtures/prompt-cache-v1, made by the v1 code on the synthetic llama-f32: 2 layers of
// 2 kv heads × 16) still load, each layer translated to the v2 kind and parameters.
const V1_DIR = join(syntheticDir, '..', 'prompt-cache-v1');

describe.each(await testBackends())('prompt-cache files of format v1 (%s backend)', (name) => {
  let backend: Backend;
  beforeEach(async () => {
    backend = await makeBackend(name);
  });
  afterEach(() => backend.dispose());
  const v1Expect = { layers: [0, 1].map(() => ({ nKvHeads: 2, headDim: 16 })) };

  it.each([
    ['standard', 'standard', 41, { storage: 'f32' }, 'f32'],
    ['quantized-8bit-g32', 'quantized', 41, { bits: 8, groupSize: 32, start: 0, quantized: true }, 'q8g32'],
    [
      'quantized-4bit-g32-start100',
      'quantized',
      41,
      { bits: 4, groupSize: 32, start: 100, quantized: false },
      'f32',
    ],
    ['rotating-32-wrapped', 'rotating', 32, { maxSize: 32, keep: 4, storage: 'f32' }, 'f32'],
    ['rotating-64', 'rotating', 41, { maxSize: 64, keep: 4, storage: 'f32' }, 'f32'],
  ] as const)('%s.safetensors loads as %s caches', async (file, kind, rows, metaState, storage) => {
    const path = join(V1_DIR, `${file}.safetensors`);
    const inspected = await inspectPromptCache(path);
    expect(inspected.valid, inspected.error?.message).toBe(true);
    expect(inspected.info!.formatVersion).toBe('1');
    const { caches, meta: info } = await loadPromptCache(path, { backend });
    expect(info.tokens.length).toBe(41);
    expect(info.cache.layers.map((l) => [l.kind, l.rows, l.meta])).toEqual([
      [kind, rows, metaState],
      [kind, rows, metaState],
    ]);
    expect(caches.map((c) => [c.kind, c.storage, c.offset])).toEqual([
      [kind, storage, 41],
      [kind, storage, 41],
    ]);
    // the rows are those of the file, bit for bit
    const f = decodeSafetensors(await readFile(path));
    const s = caches[1]!.exportState();
    const keys = s.keys.format === 'quantized' ? s.keys.packed : s.keys.data;
    const stored = f.tensors.get(s.keys.format === 'quantized' ? 'layers.1.keys.packed' : 'layers.1.keys')!;
    expect(
      Buffer.compare(
        Buffer.from(keys.buffer, keys.byteOffset, keys.byteLength),
        Buffer.from(stored.data as Uint8Array),
      ),
    ).toBe(0);
    for (const c of caches) c.free();
    // and the expectation is checked as for v2 files
    await expectRefusal(
      loadPromptCache(path, {
        backend,
        expect: { ...v1Expect, modelFingerprint: MODEL, tokenizerFingerprint: TOKENIZER },
      }),
      'MODEL_MISMATCH',
    );
  });
});
