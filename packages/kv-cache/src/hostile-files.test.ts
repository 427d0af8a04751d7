import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, lstat, mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeSafetensors, encodeSafetensors, type NamedTensorInput } from '@mnemo/safetensors';
import type { Backend } from '@mnemo/tensor';
import { syntheticDir } from '@mnemo/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CacheKindOptions, makeCaches } from './caches';
import type { KVCache } from './contract';
import { metadataDigest } from './digest';
import { PromptCacheError } from './errors';
import { inspectPromptCache, loadPromptCache, savePromptCache } from './prompt-cache';
import { QuantizedKVCache } from './quantized';
import { makeBackend, randomRows } from './testing';

// Prompt-cache files meet the paths and files a careless or hostile user can give: device nodes, FIFOs, symbolic
// links, contradictory metadata. Nothing may hang, replace a non-file, or be accepted when it cannot be right.
const sha = (s: string) => createHash('sha256').update(s).digest('hex');
const H = 2;
const D = 32;
const posix = process.platform !== 'win32';
const isRoot = process.getuid?.() === 0;

let dir: string;
let backend: Backend;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mnemo-kv-hostile-'));
  backend = await makeBackend('js');
});
afterAll(async () => {
  backend.dispose();
  await rm(dir, { recursive: true, force: true });
});

function filled(n: number, kind: CacheKindOptions = {}) {
  const caches = makeCaches(2, { backend, nKvHeads: H, headDim: D, ...kind });
  for (const c of caches) {
    let done = 0;
    while (done < n) {
      const rows = Math.min(n - done, c.maxRowsNextStep());
      const k = randomRows(backend, rows, H * D, done + 1);
      c.updateAndFetch(k.t, k.t);
      backend.free(k.t);
      done += rows;
    }
  }
  return caches;
}

const meta = (n: number) => ({
  modelFingerprint: sha('model'),
  tokenizerFingerprint: sha('tokenizer'),
  tokens: Array.from({ length: n }, (_, i) => i),
  prompt: 'secret prompt',
});

async function save(path: string, caches: KVCache[], n: number): Promise<void> {
  await savePromptCache(path, caches, meta(n));
}

/** The error `p` rejects with. */
async function failure(p: Promise<unknown>): Promise<PromptCacheError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(PromptCacheError);
  return e as PromptCacheError;
}

/** One code, the file named once, no phrase said twice. */
function expectPlainMessage(e: Error, file: string): void {
  expect(e.message.match(/\[[A-Z_]+\]/g)).toHaveLength(1);
  expect(e.message.split(file)).toHaveLength(2);
  expect(e.message).not.toMatch(/(\b\w+ failed\b).*\1/);
}

describe('saving a prompt cache to a hostile path', () => {
  it.skipIf(!isRoot)(
    'refuses a device node (mknod, in a temporary folder) and leaves it a device',
    async () => {
      const dev = join(dir, 'null');
      execFileSync('mknod', [dev, 'c', '1', '3']);
      const caches = filled(3);
      const e = await failure(save(dev, caches, 3));
      expect(e.code).toBe('IO');
      expect(e.message).toBe(
        `${dev}: is a character device, not a regular file: refusing to replace it (nothing was written) [IO]`,
      );
      expect((await stat(dev)).isCharacterDevice()).toBe(true);
      for (const c of caches) c.free();
    },
  );

  it.skipIf(!posix)(
    'refuses a FIFO, writes through a symbolic link and keeps a private file private',
    async () => {
      const caches = filled(3);
      const fifo = join(dir, 'fifo.safetensors');
      execFileSync('mkfifo', [fifo]);
      expect((await failure(save(fifo, caches, 3))).code).toBe('IO');
      expect((await lstat(fifo)).isFIFO()).toBe(true);

      const target = join(dir, 'private.safetensors');
      await save(target, caches, 3);
      expect((await stat(target)).mode & 0o777).toBe(0o600 & ~process.umask());
      await chmod(target, 0o600);
      const link = join(dir, 'link.safetensors');
      await symlink(target, link);
      await save(link, caches, 3);
      expect((await lstat(link)).isSymbolicLink()).toBe(true);
      expect((await stat(target)).mode & 0o777).toBe(0o600);
      expect((await inspectPromptCache(link)).valid).toBe(true);
      for (const c of caches) c.free();
    },
  );

  it('says what failed once: one code, the file once, no repeated phrase', async () => {
    const caches = filled(2);
    const path = join(dir, 'no', 'such', 'folder.safetensors');
    const e = await failure(save(path, caches, 2));
    expect(e.code).toBe('IO');
    expectPlainMessage(e, path);
    const missing = join(dir, 'missing.safetensors');
    const r = await failure(loadPromptCache(missing, { backend }));
    expectPlainMessage(r, missing);
    for (const c of caches) c.free();
  });
});

describe('reading a hostile prompt-cache file', () => {
  it.skipIf(!posix)('a FIFO is refused at once by inspect and load, not waited on', async () => {
    const fifo = join(dir, 'pipe.safetensors');
    execFileSync('mkfifo', [fifo]);
    const inspected = await inspectPromptCache(fifo);
    expect(inspected.valid).toBe(false);
    expect(inspected.error).toEqual({
      code: 'IO',
      message: `${fifo}: cannot read the file: is a named pipe (FIFO), not a regular file [IO]`,
      detail: 'cannot read the file: is a named pipe (FIFO), not a regular file',
    });
    expect((await failure(loadPromptCache(fifo, { backend }))).code).toBe('IO');
  });

  /**
   * Rewrites the `cache` entry of the file `from` with `edit` (re-signing the metadata) into a new file: `edit` gets
   * each layer's parameters (format v2: its meta-state; v1: the layer entry itself).
   */
  async function rewritten(from: string, edit: (params: Record<string, unknown>) => void): Promise<string> {
    const path = join(dir, `q-${Math.random().toString(16).slice(2)}.safetensors`);
    const decoded = decodeSafetensors(await readFile(from));
    const tensors: NamedTensorInput[] = [...decoded.tensors.values()].map((t) => ({ ...t }));
    const m = { ...decoded.metadata };
    const c = JSON.parse(m.cache!) as { layers: Record<string, unknown>[] };
    for (const l of c.layers) edit((l.meta ?? l) as Record<string, unknown>);
    m.cache = JSON.stringify(c);
    m.metadata_checksum = metadataDigest(m, 'metadata_checksum');
    await writeFile(path, encodeSafetensors(tensors, m));
    return path;
  }

  /** Saves a quantized cache (format v2), then rewrites its layers' meta-state with `edit`. */
  async function quantizedWith(edit: (meta: Record<string, unknown>) => void): Promise<string> {
    const path = join(dir, `q-${Math.random().toString(16).slice(2)}.safetensors`);
    const caches = filled(8, { kvBits: 8, kvGroupSize: 32, quantizedKvStart: 2 });
    await save(path, caches, 8);
    for (const c of caches) c.free();
    return rewritten(path, edit);
  }

  it('refuses a quantized cache whose "quantized" flag contradicts offset and start (start 1e15)', async () => {
    const path = await quantizedWith((l) => {
      l.start = 1e15;
    });
    const e = await failure(loadPromptCache(path, { backend }));
    expect(e.code).toBe('CORRUPT');
    expect(e.message).toMatch(/"quantized": true contradicts offset 8 and start 1000000000000000/);
    // exact rows past start + 1 cannot exist either (the update after start converts them)
    const exact = await quantizedWith((l) => {
      l.quantized = false;
    });
    expect((await failure(loadPromptCache(exact, { backend }))).message).toMatch(
      /"quantized": false contradicts offset 8 and start 2/,
    );
    // while exact rows up to start + 1 are what a cache holds before its first conversion
    const early = join(dir, 'early.safetensors');
    const one = filled(1, { kvBits: 8, kvGroupSize: 32, quantizedKvStart: 0 });
    await save(early, one, 1);
    for (const c of one) c.free();
    const loaded = await loadPromptCache(early, { backend });
    for (const c of loaded.caches) c.free();
    expect((await inspectPromptCache(path)).error?.code).toBe('CORRUPT');
    // the cache class refuses such a state too
    const caches = filled(8, { kvBits: 8, kvGroupSize: 32, quantizedKvStart: 2 });
    const state = caches[0]!.exportState();
    expect(() => QuantizedKVCache.fromState(backend, { ...state, start: 1e15 } as never)).toThrow(
      /quantized rows at offset 8 with start 1000000000000000 \(quantized rows need offset > start/,
    );
    for (const c of caches) c.free();
  });

  it('the format-v1 reader refuses the same contradictions', async () => {
    // fixtures/prompt-cache-v1: 41 tokens in exact rows of a 4-bit cache converting after 100
    const v1 = join(syntheticDir, '..', 'prompt-cache-v1', 'quantized-4bit-g32-start100.safetensors');
    expect((await inspectPromptCache(v1)).valid).toBe(true);
    const flagged = await rewritten(v1, (l) => {
      l.quantized = true;
    });
    const e = await failure(loadPromptCache(flagged, { backend }));
    expect(e.code).toBe('CORRUPT');
    expect(e.message).toMatch(/"quantized": true contradicts offset 41 and start 100/);
    const early = await rewritten(v1, (l) => {
      l.start = 5;
    });
    expect((await failure(loadPromptCache(early, { backend }))).message).toMatch(
      /"quantized": false contradicts offset 41 and start 5/,
    );
  });

  it('refuses a cache holding more tokens than the model can (expect.maxTokens)', async () => {
    const path = join(dir, 'long.safetensors');
    const caches = filled(40);
    await save(path, caches, 40);
    for (const c of caches) c.free();
    const expectation = {
      modelFingerprint: sha('model'),
      tokenizerFingerprint: sha('tokenizer'),
      layers: [
        { nKvHeads: H, headDim: D },
        { nKvHeads: H, headDim: D },
      ],
    };
    const e = await failure(loadPromptCache(path, { backend, expect: { ...expectation, maxTokens: 32 } }));
    expect(e.code).toBe('SHAPE_MISMATCH');
    expect(e.message).toBe(
      `${path}: holds 40 tokens, more than the model's context of 32 tokens [SHAPE_MISMATCH]`,
    );
    const ok = await loadPromptCache(path, { backend, expect: { ...expectation, maxTokens: 40 } });
    for (const c of ok.caches) c.free();
  });
});

describe('cache options a user can get wrong', () => {
  it('a rotating cache of 4 tokens or fewer is refused with a clear reason (keep is 4)', () => {
    for (const maxKvSize of [1, 2, 3, 4])
      expect(() => makeCaches(2, { backend, nKvHeads: H, headDim: D, maxKvSize })).toThrow(
        `makeCaches: maxKvSize must be an integer larger than keep (4): a rotating cache keeps the first 4 tokens and at least one recent one, got ${maxKvSize}`,
      );
    for (const c of makeCaches(2, { backend, nKvHeads: H, headDim: D, maxKvSize: 5 })) c.free();
  });
});
