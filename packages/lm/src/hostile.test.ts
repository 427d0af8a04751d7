import {
  closeSync,
  copyFileSync,
  cpSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  utimesSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { openGguf } from '@mnemo/gguf';
import { PromptCacheError } from '@mnemo/kv-cache';
import { decodeSafetensors, encodeSafetensors, type NamedTensorInput } from '@mnemo/safetensors';
import { promptCacheMetadataDigest, syntheticGguf, syntheticPreset } from '@mnemo/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LM } from './lm';

// What a careless or hostile user (or model folder, or cache file) can throw at @mnemo/lm.
const tmp = mkdtempSync(join(tmpdir(), 'mnemo-lm-hostile-'));
const preset = syntheticPreset('llama-f32');
const CONTEXT = 64;
let lm: LM; // llama-f32 with a 64-position context: raw text is BOS + one token per byte
beforeAll(async () => {
  const dir = join(tmp, 'ctx64');
  cpSync(preset, dir, { recursive: true });
  const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...config, max_position_embeddings: CONTEXT }));
  lm = await LM.load(dir, { backendName: 'js' });
});
afterAll(() => {
  lm?.free();
  rmSync(tmp, { recursive: true, force: true });
});

const raw = { chatTemplate: false, temperature: 0 } as const;
const text = (n: number) => 'abcdefghij'.repeat(10).slice(0, n - 1); // n tokens with BOS

describe('the model context (max_position_embeddings)', () => {
  it('refuses a prompt longer than the context, before computing anything', async () => {
    expect(lm.contextLength).toBe(CONTEXT);
    await expect(lm.generate(text(65), { ...raw, maxTokens: 4 })).rejects.toThrow(
      "the prompt has 65 tokens; with one token generated that is 66 positions, more than the model's context of 64 (max_position_embeddings); shorten it, or allow it explicitly (ignoreContextLimit, mnemo --ignore-context-limit)",
    );
    expect(() => lm.cachePrompt(text(65), raw)).toThrow(
      "the prompt to cache needs 65 positions, more than the model's context of 64",
    );
  });

  it('stops generating when the context is full (finish reason length), unless asked to go on', async () => {
    const r = await lm.generate(text(60), { ...raw, maxTokens: 20, ignoreEos: true });
    expect(r.tokens).toHaveLength(4);
    expect(r.finishReason).toBe('length');
    const past = await lm.generate(text(60), {
      ...raw,
      maxTokens: 20,
      ignoreEos: true,
      ignoreContextLimit: true,
    });
    expect(past.tokens).toHaveLength(20);
    expect(past.tokens.slice(0, 4)).toEqual(r.tokens);
  });

  it('refuses a cache file holding more tokens than the context', async () => {
    const file = join(tmp, 'long.safetensors');
    const pc = lm.cachePrompt(text(70), { ...raw, ignoreContextLimit: true });
    await lm.savePromptCache(file, pc);
    pc.free();
    await expect(lm.loadPromptCache(file)).rejects.toThrow(
      `${file}: holds 70 tokens, more than the model's context of 64 tokens [SHAPE_MISMATCH]`,
    );
    const ok = await lm.loadPromptCache(file, { ignoreContextLimit: true });
    expect(ok.length).toBe(70);
    ok.free();
  });
});

describe('prompt-cache files whose informative entries lie', () => {
  /** A saved cache of `prompt` whose metadata is then changed by `edit` and signed again. */
  async function craft(prompt: string, edit: (m: Record<string, string>) => void): Promise<string> {
    const file = join(tmp, `crafted-${Math.random().toString(16).slice(2)}.safetensors`);
    const pc = lm.cachePrompt(prompt, raw);
    await lm.savePromptCache(file, pc);
    pc.free();
    const d = decodeSafetensors(readFileSync(file));
    const tensors: NamedTensorInput[] = [...d.tensors.values()];
    const m = { ...d.metadata };
    edit(m);
    m.metadata_checksum = promptCacheMetadataDigest(m);
    writeFileSync(file, encodeSafetensors(tensors, m));
    return file;
  }

  it('refuses a huge prompt entry before using it (it crashed generate with 95 MB)', async () => {
    const file = await craft('Hello', (m) => {
      m.prompt = 'x'.repeat(10_000_000);
    });
    const e = await lm.loadPromptCache(file).catch((err: unknown) => err);
    expect(e).toBeInstanceOf(PromptCacheError);
    expect((e as PromptCacheError).code).toBe('CORRUPT');
    expect((e as Error).message).toBe(
      `${file}: its prompt and messages hold 10000000 characters, more than its 6 cached tokens can spell (at most 105) [CORRUPT]`,
    );
    // the same for conversation messages in the chat_template entry
    const chat = await craft('Hello', (m) => {
      m.chat_template = JSON.stringify({
        applied: true,
        messages: [{ role: 'user', content: 'y'.repeat(100_000) }],
      });
    });
    await expect(lm.loadPromptCache(chat)).rejects.toThrow(
      /hold 100005 characters, more than its 6 cached tokens/,
    );
  });

  it('refuses a prompt entry that does not encode to the cached tokens', async () => {
    const file = await craft('Hello', (m) => {
      m.prompt = 'Hellp';
    });
    await expect(lm.loadPromptCache(file)).rejects.toThrow(
      `${file}: its 'prompt' entry encodes to 6 tokens that differ from the 6 cached ones: the entry does not belong to this cache [CORRUPT]`,
    );
    const good = await craft('Hello', () => {});
    const pc = await lm.loadPromptCache(good);
    expect(pc.prompt).toBe('Hello');
    pc.free();
  });

  it('records where the model came from as an absolute folder, whatever path it was loaded with', async () => {
    const rel = relative(process.cwd(), join(tmp, 'ctx64'));
    const other = await LM.load(rel, { backendName: 'js' });
    try {
      expect(other.source).toBe(join(tmp, 'ctx64'));
      const file = join(tmp, 'source.safetensors');
      const pc = other.cachePrompt('Hi', raw);
      await other.savePromptCache(file, pc);
      pc.free();
      expect(decodeSafetensors(readFileSync(file)).metadata.model).toBe(join(tmp, 'ctx64'));
    } finally {
      other.free();
    }
  });
});

describe('generation that fails midway', () => {
  it('leaves a prompt cache whose tokens name exactly what its layers hold, and which still gives the same output', async () => {
    const prompt = text(40);
    const fresh = await lm.generate(prompt, { ...raw, maxTokens: 3, logprobs: 5 });
    const pc = lm.makePromptCache();
    let chunks = 0;
    await expect(
      lm.generate(prompt, {
        ...raw,
        maxTokens: 3,
        promptCache: pc,
        prefillStepSize: 8,
        onPrefill: () => {
          if (++chunks === 2) throw new Error('interrupted');
        },
      }),
    ).rejects.toThrow('interrupted');
    expect(pc.caches[0]!.offset).toBe(16);
    expect(pc.tokens).toHaveLength(16);
    const again = await lm.generate(prompt, { ...raw, maxTokens: 3, logprobs: 5, promptCache: pc });
    expect(again.stats.cachedTokens).toBe(16);
    expect({ t: again.tokens, l: again.logprobs }).toEqual({ t: fresh.tokens, l: fresh.logprobs });
    pc.free();
  });

  it('refuses to sample from non-finite logits (it picked token 0 with a null logprob)', async () => {
    const dir = join(tmp, 'nan');
    cpSync(preset, dir, { recursive: true });
    const d = decodeSafetensors(readFileSync(join(dir, 'model.safetensors')));
    const tensors: NamedTensorInput[] = [...d.tensors.values()].map((t) =>
      t.name === 'model.norm.weight' ? { ...t, data: new Float32Array(64).fill(Number.NaN) } : t,
    );
    writeFileSync(join(dir, 'model.safetensors'), encodeSafetensors(tensors, d.metadata));
    const bad = await LM.load(dir, { backendName: 'js' });
    try {
      await expect(bad.generate('Hi', { ...raw, maxTokens: 2 })).rejects.toThrow(
        /^the model computed a non-finite logit \(NaN for token 0\) after 3 tokens: its weights or the prompt cache hold non-finite values, so nothing can be sampled$/,
      );
    } finally {
      bad.free();
    }
  });
});

describe('GGUF models', () => {
  // token_embd.weight of llama-q8_0.gguf is 71,808 bytes: the old fingerprint hashed 16 windows of 4,096 bytes,
  // 4,514 bytes apart, so byte 4,100 of it (a quant of token 15's embedding row) was never looked at.
  const EMBD_BYTE = 4100;

  it('refuses a prompt cache made before one tensor byte of the GGUF changed (MODEL_MISMATCH)', async () => {
    const dir = join(tmp, 'gguf');
    mkdirSync(dir);
    const file = join(dir, 'model.gguf');
    copyFileSync(join(syntheticGguf(), 'llama-q8_0.gguf'), file);
    const past = new Date(Date.now() - 60_000);
    utimesSync(file, past, past); // settled: its tensor digests are remembered by the first load
    const cacheFile = join(tmp, 'gguf-cache.safetensors');
    const before = await LM.load(file, { backendName: 'js' });
    try {
      expect(before.source).toBe(file);
      const pc = before.cachePrompt('Hello there', raw);
      await before.savePromptCache(cacheFile, pc);
      pc.free();
      expect(decodeSafetensors(readFileSync(cacheFile)).metadata.model).toBe(file);
      (await before.loadPromptCache(cacheFile)).free(); // the same file: accepted
    } finally {
      before.free();
    }
    const g = await openGguf(file);
    const at = g.info('token_embd.weight').byteOffset + EMBD_BYTE;
    await g.close();
    // one byte changed in place; size and modification time put back
    const fd = openSync(file, 'r+');
    writeSync(fd, Buffer.from([readFileSync(file)[at]! ^ 0x01]), 0, 1, at);
    closeSync(fd);
    utimesSync(file, past, past);
    const after = await LM.load(file, { backendName: 'js' });
    try {
      expect(after.fingerprint).not.toBe(before.fingerprint);
      await expect(after.loadPromptCache(cacheFile)).rejects.toMatchObject({
        name: 'PromptCacheError',
        code: 'MODEL_MISMATCH',
      });
    } finally {
      after.free();
    }
  });
});
