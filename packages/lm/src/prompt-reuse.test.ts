import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type CacheKindOptions, loadPromptCache } from '@mnemo/kv-cache';
import { readReference, syntheticDir, syntheticPreset } from '@mnemo/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type GenerateOptions, type GenerationResult, LM } from './lm';
import { PromptCache } from './prompt-cache';

// In memory, through @mnemo/lm: a prompt cache makes generation faster, never different. Every comparison is exact:
// the full log-softmax over the vocabulary at each step (so the logits up to their shared offset), and the tokens.
const kinds: Record<string, CacheKindOptions> = {
  standard: {},
  f16: { kvDtype: 'f16' },
  'quantized 8-bit g32': { kvBits: 8, kvGroupSize: 32 },
  'quantized 4-bit g32': { kvBits: 4, kvGroupSize: 32 },
  rotating: { maxKvSize: 1024 },
  'rotating 64, wrapped': { maxKvSize: 64, keep: 4 },
  'rotating 64, 4-bit, wrapped': { maxKvSize: 64, keep: 0, kvBits: 4, kvGroupSize: 32 },
};

let lm: LM;
let long: string;
const tmp = mkdtempSync(join(tmpdir(), 'mnemo-reuse-'));
beforeAll(async () => {
  const dir = syntheticPreset('llama-f32');
  lm = await LM.load(dir, { backendName: 'wasm' });
  long = readReference(dir).cases[3]!.prompt;
});
afterAll(() => {
  lm?.free();
  rmSync(tmp, { recursive: true, force: true });
});

const base = (kind: CacheKindOptions, templated: boolean): GenerateOptions => ({
  temperature: 0,
  maxTokens: 8,
  logprobs: 264,
  chatTemplate: templated,
  cache: kind,
});
const same = (r: GenerationResult) => ({ prompt: r.promptTokens, tokens: r.tokens, logprobs: r.logprobs });

describe('prompt reuse in memory', () => {
  for (const [name, kind] of Object.entries(kinds)) {
    for (const templated of [false, true]) {
      it(`${name}, ${templated ? 'chat template' : 'raw'}: every split, every prefill step size`, async () => {
        const whole = await lm.generate(long, base(kind, templated));
        for (const step of [1, 7, 512]) {
          const r = await lm.generate(long, { ...base(kind, templated), prefillStepSize: step });
          expect(same(r)).toEqual(same(whole));
        }
        // prefixes of 1, 255, 256, 257, 511, 512 tokens and around the 64-token window, plus others
        for (const chars of [0, 1, 62, 63, 64, 253, 254, 255, 256, 509, 510, 511, 17, 600]) {
          const pc = lm.cachePrompt(long.slice(0, chars), {
            chatTemplate: templated,
            cache: kind,
            prefillStepSize: 100,
          });
          try {
            const r = await lm.generate(lm.continuation(pc, long.slice(chars)), {
              ...base(kind, templated),
              promptCache: pc,
              prefillStepSize: 7,
            });
            expect(same(r), `split at ${chars}`).toEqual(same(whole));
            expect(r.stats.cachedTokens).toBeGreaterThanOrEqual(chars);
          } finally {
            pc.free();
          }
        }
      });
    }
  }

  it('reuses a cache across turns, including tokens the model generated', async () => {
    const opts = base({}, true);
    const pc = lm.makePromptCache();
    try {
      const turn1 = await lm.generate(
        { messages: [{ role: 'user', content: 'Hi! What are you up to?' }] },
        { ...opts, promptCache: pc },
      );
      const reply = lm.tokenizer.decode(turn1.tokens);
      const messages = [
        { role: 'user', content: 'Hi! What are you up to?' },
        { role: 'assistant', content: reply },
        { role: 'user', content: 'Tell me more.' },
      ];
      const warm = await lm.generate({ messages }, { ...opts, promptCache: pc });
      const cold = await lm.generate({ messages }, opts);
      expect(same(warm)).toEqual(same(cold));
      // the first turn's prompt and generated tokens were found in the cache (beyond the first prompt alone)
      expect(warm.stats.cachedTokens).toBeGreaterThan(turn1.promptTokens.length);
    } finally {
      pc.free();
    }
  });

  it('trims a cache that holds more than the new prompt shares', async () => {
    const pc = lm.cachePrompt(long.slice(0, 300), { chatTemplate: false });
    try {
      const r = await lm.generate(`${long.slice(0, 120)}!!`, { ...base({}, false), promptCache: pc });
      const cold = await lm.generate(`${long.slice(0, 120)}!!`, base({}, false));
      expect(same(r)).toEqual(same(cold));
      expect(r.stats.cachedTokens).toBe(121);
    } finally {
      pc.free();
    }
  });

  it('recomputes the last token when the whole prompt is cached', async () => {
    const pc = lm.cachePrompt(long.slice(0, 50), { chatTemplate: false });
    try {
      const r = await lm.generate(long.slice(0, 50), { ...base({}, false), promptCache: pc });
      const cold = await lm.generate(long.slice(0, 50), base({}, false));
      expect(same(r)).toEqual(same(cold));
      expect(r.stats.cachedTokens).toBe(50);
    } finally {
      pc.free();
    }
  });

  it('a rotating cache that has wrapped is never reused wrongly: it is recomputed', async () => {
    const kind = { maxKvSize: 64, keep: 4 };
    // cached in 16-token steps: the ring holds 64 + 15 rows, so only the last 15 tokens can be given back
    const pc = lm.cachePrompt(long.slice(0, 200), { chatTemplate: false, cache: kind, prefillStepSize: 16 });
    try {
      const r = await lm.generate(long.slice(0, 100), { ...base(kind, false), promptCache: pc });
      const cold = await lm.generate(long.slice(0, 100), base(kind, false));
      expect(same(r)).toEqual(same(cold));
      expect(r.stats.cachedTokens).toBe(0);
    } finally {
      pc.free();
    }
  });

  it('a rotating cache gives back tokens its spare rows still hold, exactly', async () => {
    const kind = { maxKvSize: 64, keep: 4 };
    const pc = lm.cachePrompt(long.slice(0, 200), { chatTemplate: false, cache: kind, prefillStepSize: 16 });
    try {
      const text = `${long.slice(0, 190)}!!`;
      const r = await lm.generate(text, { ...base(kind, false), promptCache: pc });
      expect(same(r)).toEqual(same(await lm.generate(text, base(kind, false))));
      expect(r.stats.cachedTokens).toBe(191);
    } finally {
      pc.free();
    }
  });

  it('saves and loads a prompt cache file with the same result', async () => {
    for (const [name, kind] of Object.entries(kinds)) {
      const pc = lm.cachePrompt('Hi! ', { cache: kind });
      const file = join(tmp, `${name.replace(/\W/g, '')}.safetensors`);
      await lm.savePromptCache(file, pc);
      pc.free();
      const loaded = await lm.loadPromptCache(file);
      try {
        expect(loaded.prompt).toBe('Hi! ');
        expect(loaded.template.applied).toBe(true);
        const r = await lm.generate(lm.continuation(loaded, 'What are you up to?'), {
          ...base(kind, true),
          promptCache: loaded,
        });
        const cold = await lm.generate('Hi! What are you up to?', base(kind, true));
        expect(same(r), name).toEqual(same(cold));
      } finally {
        loaded.free();
      }
    }
  });
});

describe('prompt caches as bytes', () => {
  it('are the bytes of the file, load back with the same result, and damaged bytes are refused', async () => {
    const pc = lm.cachePrompt('Hi! ');
    const file = join(tmp, 'bytes.safetensors');
    let bytes: Uint8Array;
    try {
      bytes = await lm.savePromptCacheToBytes(pc, { tmpDir: tmp });
      await lm.savePromptCache(file, pc);
    } finally {
      pc.free();
    }
    // Same layout as the file (created_at differs, so compare sizes and the data region's tail).
    const fileBytes = new Uint8Array(readFileSync(file));
    expect(bytes.length).toBe(fileBytes.length);
    expect(
      Buffer.from(bytes.subarray(bytes.length - 256)).equals(
        Buffer.from(fileBytes.subarray(fileBytes.length - 256)),
      ),
    ).toBe(true);
    const loaded = await lm.loadPromptCacheFromBytes(bytes, { tmpDir: tmp });
    try {
      expect(loaded.prompt).toBe('Hi! ');
      const r = await lm.generate(lm.continuation(loaded, 'What are you up to?'), {
        ...base({}, true),
        promptCache: loaded,
      });
      const cold = await lm.generate('Hi! What are you up to?', base({}, true));
      expect(r.stats.cachedTokens).toBeGreaterThan(0);
      expect(same(r)).toEqual(same(cold));
    } finally {
      loaded.free();
    }
    const damaged = bytes.slice();
    damaged[damaged.length - 5]! ^= 0x40;
    const refused = await lm.loadPromptCacheFromBytes(damaged, { tmpDir: tmp }).catch((e: unknown) => e);
    expect(refused).toMatchObject({ name: 'PromptCacheError', code: 'CHECKSUM', file: undefined });
    expect((refused as Error).message).not.toContain('mnemo-pc-'); // the temporary file is not the user's concern
    await expect(lm.loadPromptCacheFromBytes(bytes.subarray(0, 100), { tmpDir: tmp })).rejects.toMatchObject({
      name: 'PromptCacheError',
    });
    // Nothing is left behind in the temporary folder.
    expect(readdirSync(tmp).filter((f) => f.startsWith('mnemo-pc-'))).toEqual([]);
  });
});

describe('mlx-lm prompt cache interop', () => {
  it('mnemo → mlx-lm layout (f32) → mnemo keeps every value: continuing gives the uncached result', async () => {
    const file = join(tmp, 'mlx.safetensors');
    const pc = lm.cachePrompt('Hi! ');
    await lm.exportMlxPromptCache(file, pc, { dtype: 'f32' });
    const before = pc.caches.map((c) => c.exportState());
    pc.free();
    const back = await lm.importMlxPromptCache(file, 'Hi! ');
    try {
      expect(back.caches.map((c) => c.exportState())).toEqual(before);
      const r = await lm.generate(lm.continuation(back, 'What are you up to?'), {
        ...base({}, true),
        promptCache: back,
      });
      const cold = await lm.generate('Hi! What are you up to?', base({}, true));
      expect(same(r)).toEqual(same(cold));
    } finally {
      back.free();
    }
    await expect(lm.importMlxPromptCache(file, 'Hello there! ')).rejects.toThrow(
      /prompt gives \d+ tokens but the file holds \d+/,
    );
  });
});

// The opt-in int8-activation path changes the arithmetic, not the guarantee: under it a prompt cache still gives
// exactly the uncached results, and its files record the numerics so an exact-path model refuses them.
describe('prompt reuse with int8 activations', () => {
  let q8: LM;
  let exact: LM;
  beforeAll(async () => {
    const dir = syntheticPreset('llama-q4g32');
    q8 = await LM.load(dir, { backendName: 'wasm', int8Activations: true, threads: 2 });
    exact = await LM.load(dir, { backendName: 'wasm', threads: 1 });
  });
  afterAll(() => {
    q8?.free();
    exact?.free();
  });
  const opts: GenerateOptions = { temperature: 0, maxTokens: 6, logprobs: 32, chatTemplate: false };

  it('every split gives the uncached result; the numerics differ from the exact path', async () => {
    expect(q8.numerics).toBe('wasm+int8a');
    expect(exact.numerics).toBe('wasm');
    const whole = await q8.generate(long, opts);
    const plain = await exact.generate(long, opts);
    expect(whole.logprobs).not.toEqual(plain.logprobs);
    for (const step of [1, 7, 512])
      expect(same(await q8.generate(long, { ...opts, prefillStepSize: step }))).toEqual(same(whole));
    for (const chars of [1, 100, 255, 256, 511]) {
      const pc = q8.cachePrompt(long.slice(0, chars), { chatTemplate: false, prefillStepSize: 33 });
      try {
        const r = await q8.generate(q8.continuation(pc, long.slice(chars)), {
          ...opts,
          promptCache: pc,
          prefillStepSize: 7,
        });
        expect(same(r), `split at ${chars}`).toEqual(same(whole));
      } finally {
        pc.free();
      }
    }
  });

  it('a file records the numerics: same result when loaded with them, NUMERICS_MISMATCH without', async () => {
    const pc = q8.cachePrompt(long.slice(0, 200), { chatTemplate: false });
    const file = join(tmp, 'int8.safetensors');
    await q8.savePromptCache(file, pc);
    pc.free();
    const loaded = await q8.loadPromptCache(file);
    try {
      const r = await q8.generate(q8.continuation(loaded, long.slice(200)), { ...opts, promptCache: loaded });
      expect(same(r)).toEqual(same(await q8.generate(long, opts)));
    } finally {
      loaded.free();
    }
    await expect(exact.loadPromptCache(file)).rejects.toMatchObject({ code: 'NUMERICS_MISMATCH' });
  });
});

// Prompt-cache files of format v1, written by the v1 code (fixtures/prompt-cache-v1), still load and continue. Their
// caches were computed with the same arithmetic as today's f32 caches, so continuing a standard or rotating one gives
// bitwise what v1 printed and what an uncached run gives now; quantized v1 rows were computed with an f32 mirror
// rounded differently (one rounding of scale·q + bias instead of two), so those continue closely, not bitwise.
describe('prompt-cache files of format v1', () => {
  const dir = join(syntheticDir, '..', 'prompt-cache-v1');
  const v1 = JSON.parse(readFileSync(join(dir, 'continuations-v1.json'), 'utf8')) as Record<
    string,
    { prompt_tokens: number[]; tokens: number[]; logprobs: { id: number; logprob: number }[] }
  >;
  const files: [string, CacheKindOptions, boolean][] = [
    ['standard', {}, true],
    ['rotating-32-wrapped', { maxKvSize: 32, keep: 4 }, true],
    ['rotating-64', { maxKvSize: 64, keep: 4 }, true],
    ['quantized-4bit-g32-start100', { kvBits: 4, kvGroupSize: 32, quantizedKvStart: 100 }, true],
    ['quantized-8bit-g32', { kvBits: 8, kvGroupSize: 32 }, false],
  ];
  it.each(files)('%s continues as v1 did', async (file, kind, exact) => {
    // loaded without an expectation: the fixtures record the model fingerprint of the code that wrote them
    const { caches, meta } = await loadPromptCache(join(dir, `${file}.safetensors`), { backend: lm.backend });
    const pc = new PromptCache(caches, [...meta.tokens], lm.fingerprint);
    pc.prompt = meta.prompt;
    const opts = { temperature: 0, maxTokens: 5, logprobs: 3, chatTemplate: false } as const;
    try {
      const r = await lm.generate(lm.continuation(pc, 'dog. Then'), { ...opts, promptCache: pc });
      expect(r.stats.cachedTokens).toBe(41);
      const want = v1[file]!;
      expect(r.promptTokens).toEqual(want.prompt_tokens);
      expect(r.tokens).toEqual(want.tokens);
      const cold = await lm.generate(`${meta.prompt}dog. Then`, { ...opts, cache: kind });
      if (exact) {
        expect(r.logprobs.map((l) => l.logprob)).toEqual(want.logprobs.map((l) => l.logprob));
        expect(same(r)).toEqual(same(cold));
      } else {
        r.logprobs.forEach((l, i) => {
          expect(Math.abs(l.logprob - want.logprobs[i]!.logprob)).toBeLessThan(1e-3);
        });
        expect(r.tokens).toEqual(cold.tokens);
      }
    } finally {
      pc.free();
    }
  });
});
