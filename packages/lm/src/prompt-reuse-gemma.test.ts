import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { CacheKindOptions } from '@mnemo/kv-cache';
import { readReference, syntheticPreset } from '@mnemo/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type GenerateOptions, type GenerationResult, LM } from './lm';

// The founding promise on models whose layers differ, in memory (the full matrix; apps/cli's
// prompt-cache-gemma.test.ts runs a covering subset of it through the CLI): Gemma 2 (window 8 on alternate layers,
// soft-caps) and Gemma 3 (window 16 on 5 of 6 layers, two RoPE bases). Their sliding layers get ring caches of the
// window, read in place by attention; the global ones full caches. For f32, f16, 8-bit and 4-bit caches, every prefill
// step size and every split — before, at and after a window boundary, at 1/255/256/257 tokens, and long after the
// rings have wrapped — gives exactly the uncached tokens and full log-softmax.
const kinds: Record<string, CacheKindOptions> = {
  'standard (f32)': {},
  f16: { kvDtype: 'f16' },
  '8-bit g64': { kvBits: 8, kvGroupSize: 64 },
  '4-bit g32': { kvBits: 4, kvGroupSize: 32 },
};
const same = (r: GenerationResult) => ({ prompt: r.promptTokens, tokens: r.tokens, logprobs: r.logprobs });

for (const preset of ['gemma2-f32', 'gemma3-bf16'] as const) {
  describe(`${preset}: prompt reuse in memory`, () => {
    const dir = syntheticPreset(preset);
    const window = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')).sliding_window as number;
    // 629 ASCII characters, one token each after BOS
    const long = readReference(dir).cases[3]!.prompt;
    let lm: LM;
    beforeAll(async () => {
      lm = await LM.load(dir, { backendName: 'wasm' });
    });
    afterAll(() => lm?.free());
    const base = (kind: CacheKindOptions): GenerateOptions => ({
      temperature: 0,
      maxTokens: 8,
      logprobs: 264,
      chatTemplate: false,
      cache: kind,
    });

    it('sliding layers get ring caches of the window, the others full caches', () => {
      const pc = lm.makePromptCache({ kvBits: 4, kvGroupSize: 32 });
      try {
        const sliding = lm.model.attentionLayers.map((l) => l.window > 0);
        expect(sliding).toContain(true);
        expect(sliding).toContain(false);
        expect(lm.model.attentionLayers.filter((l) => l.window > 0).map((l) => l.window)).toEqual(
          Array(sliding.filter(Boolean).length).fill(window),
        );
        pc.caches.forEach((c, i) => {
          if (sliding[i])
            expect(c).toMatchObject({ kind: 'rotating', maxSize: window, keep: 0, storage: 'q4g32' });
          else expect(c.kind).toBe('quantized');
        });
      } finally {
        pc.free();
      }
    });

    for (const [name, kind] of Object.entries(kinds))
      it(`${name} caches: every prefill step size, every split`, async () => {
        const whole = await lm.generate(long, base(kind));
        expect(whole.promptTokens).toHaveLength(long.length + 1);
        for (const step of [1, 7, 512]) {
          const r = await lm.generate(long, { ...base(kind), prefillStepSize: step });
          expect(same(r), `prefill step ${step}`).toEqual(same(whole));
        }
        // cached prefixes of n tokens (BOS + n - 1 characters)
        const prefixes = [
          1,
          2,
          window - 1,
          window,
          window + 1,
          2 * window,
          2 * window + 1,
          255,
          256,
          257,
          600,
        ];
        for (const [i, n] of prefixes.entries()) {
          const chars = n - 1;
          const pc = lm.cachePrompt(long.slice(0, chars), {
            chatTemplate: false,
            cache: kind,
            prefillStepSize: [1, 7, 512][i % 3]!,
          });
          try {
            const r = await lm.generate(lm.continuation(pc, long.slice(chars)), {
              ...base(kind),
              promptCache: pc,
              prefillStepSize: [7, 512, 1][i % 3]!,
            });
            expect(same(r), `split after ${n} tokens`).toEqual(same(whole));
            expect(r.stats.cachedTokens).toBeGreaterThanOrEqual(n - 1);
          } finally {
            pc.free();
          }
        }
      });
  });
}
