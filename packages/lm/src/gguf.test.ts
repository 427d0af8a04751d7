import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CacheKindOptions } from '@mnemo/kv-cache';
import { compareWithReference, type ReferenceCase, syntheticGguf } from '@mnemo/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type GenerateOptions, type GenerationResult, LM } from './lm';

// GGUF models through @mnemo/lm: tokenizer and chat template from the metadata, greedy output against the float64
// oracle, and the founding promise — a prompt cache makes generation faster, never different — for a Q4_K_M-style
// file (Q4_K and Q6_K blocks mixed per tensor), exactly as for safetensors checkpoints.
const dir = syntheticGguf();
const file = join(dir, 'llama-q4_k_m.gguf');
const tmp = mkdtempSync(join(tmpdir(), 'mnemo-gguf-lm-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const same = (r: GenerationResult) => ({ prompt: r.promptTokens, tokens: r.tokens, logprobs: r.logprobs });

// On the native backend (GGML blocks decoded into its panels) and on WASM (its GGML block kernels).
for (const backendName of ['native', 'wasm'] as const) {
  describe(`a GGUF model through LM (${backendName})`, () => {
    let lm: LM;
    let cases: ReferenceCase[];
    let long: string;
    beforeAll(async () => {
      lm = await LM.load(file, { backendName, threads: 1 });
      cases = (
        JSON.parse(readFileSync(join(dir, 'llama-q4_k_m.expected.json'), 'utf8')) as {
          cases: ReferenceCase[];
        }
      ).cases;
      long = cases[3]!.prompt;
    });
    afterAll(() => lm?.free());

    it('loads with the tokenizer and chat template of its metadata, and generates the oracle’s tokens', async () => {
      expect(lm.tokenizer.bosId).toBe(256);
      expect(lm.eosIds).toEqual([257]);
      expect(lm.tokenizer.hasChatTemplate).toBe(true);
      expect(lm.config.model_type).toBe('llama');
      expect(lm.loaded.gguf?.fileType).toBe('MOSTLY_Q4_K_M');
      for (const c of cases) {
        const r = await lm.generate(c.prompt, {
          chatTemplate: false,
          temperature: 0,
          maxTokens: c.steps.length,
          ignoreEos: true,
        });
        expect(r.promptTokens).toEqual(c.prompt_tokens);
        const { problems } = compareWithReference(c, {
          tokens: r.tokens,
          logprobs: r.logprobs.map((l) => l.logprob),
        });
        expect(problems).toEqual([]);
      }
    });

    const kinds: Record<string, CacheKindOptions> = {
      standard: {},
      'quantized 8-bit g32': { kvBits: 8, kvGroupSize: 32 },
      rotating: { maxKvSize: 1024 },
    };
    const base = (kind: CacheKindOptions, templated: boolean): GenerateOptions => ({
      temperature: 0,
      maxTokens: 8,
      logprobs: 264,
      chatTemplate: templated,
      cache: kind,
    });

    for (const [name, kind] of Object.entries(kinds))
      for (const templated of [false, true])
        it(`prompt cache, ${name}, ${templated ? 'chat template' : 'raw'}: bitwise the same for every split and step`, async () => {
          const whole = await lm.generate(long, base(kind, templated));
          // one token at a time is slow: once is enough
          for (const step of name === 'standard' && !templated ? [1, 7, 512] : [7, 512])
            expect(
              same(await lm.generate(long, { ...base(kind, templated), prefillStepSize: step })),
            ).toEqual(same(whole));
          for (const chars of [0, 1, 253, 254, 255, 256, 511, 600]) {
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

    it('saves a prompt cache file that continues exactly, and that only this file’s model accepts', async () => {
      const pc = lm.cachePrompt(long.slice(0, 300), { chatTemplate: false });
      const path = join(tmp, `q4km-${backendName}.safetensors`);
      await lm.savePromptCache(path, pc);
      pc.free();
      const loaded = await lm.loadPromptCache(path);
      try {
        const r = await lm.generate(lm.continuation(loaded, long.slice(300)), {
          ...base({}, false),
          promptCache: loaded,
        });
        expect(same(r)).toEqual(same(await lm.generate(long, base({}, false))));
      } finally {
        loaded.free();
      }
      // the same architecture and vocabulary with other weights (another GGUF) refuses it
      const other = await LM.load(join(dir, 'llama-q4_k.gguf'), { backendName, threads: 1 });
      try {
        await expect(other.loadPromptCache(path)).rejects.toMatchObject({ code: 'MODEL_MISMATCH' });
      } finally {
        other.free();
      }
      // a byte-identical copy of the file is the same model
      const copy = join(tmp, `copy-${backendName}.gguf`);
      copyFileSync(file, copy);
      const twin = await LM.load(copy, { backendName, threads: 1 });
      try {
        expect(twin.fingerprint).toBe(lm.fingerprint);
        (await twin.loadPromptCache(path)).free();
      } finally {
        twin.free();
      }
    });

    it('with int8 activations (two threads), every split still gives the uncached result', async () => {
      const q8 = await LM.load(file, { backendName, threads: 2, int8Activations: true });
      try {
        expect(q8.numerics).toBe(backendName === 'native' ? 'native-f32+int8a' : 'wasm+int8a');
        const opts: GenerateOptions = { temperature: 0, maxTokens: 6, logprobs: 32, chatTemplate: false };
        const whole = await q8.generate(long, opts);
        expect(whole.logprobs).not.toEqual((await lm.generate(long, opts)).logprobs);
        for (const chars of [1, 255, 256, 511]) {
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
      } finally {
        q8.free();
      }
    });
  });
}
