import {
  compareWithReference,
  readReference,
  realFixture,
  SYNTHETIC_PRESETS,
  syntheticPreset,
} from '@mnemo/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LM } from './lm';

// Every synthetic preset, greedy, against its float64 reference: prompt ids exact, each generated token's logprob within
// 2e-3 (where the reference margin is below that, either token is fine and the comparison ends there).
for (const backendName of ['native', 'wasm', 'js'] as const) {
  describe.each(SYNTHETIC_PRESETS)(`%s on the ${backendName} backend`, (preset) => {
    const dir = syntheticPreset(preset);
    const ref = readReference(dir);
    let lm: LM;
    beforeAll(async () => {
      lm = await LM.load(dir, { backendName });
    });
    afterAll(() => lm?.free());

    // The plain-TypeScript reference backend is slow: it runs the short prompts only (the others run all).
    const cases = ref.cases
      .map((c, i) => [i, c.prompt.slice(0, 24)] as const)
      .filter(([i]) => backendName !== 'js' || ref.cases[i]!.prompt.length < 100);
    it.each(cases)('case %i (%s…)', async (i) => {
      const c = ref.cases[i]!;
      const r = await lm.generate(c.prompt, {
        chatTemplate: false,
        temperature: 0,
        maxTokens: c.steps.length,
        ignoreEos: true,
      });
      expect(r.promptTokens).toEqual(c.prompt_tokens);
      const { problems, compared } = compareWithReference(c, {
        tokens: r.tokens,
        logprobs: r.logprobs.map((l) => l.logprob),
      });
      expect(problems).toEqual([]);
      expect(compared).toBeGreaterThan(0);
    });
  });
}

const stories = realFixture('stories260K-hf');
describe.skipIf(!stories)('stories260K (real checkpoint)', () => {
  it.each(['native', 'wasm'])(
    'continues "Once upon a time" with the ids llama2.c prints and stops on its EOS list (%s)',
    async (backendName) => {
      const lm = await LM.load(stories!, { backendName });
      expect(lm.backend.name).toBe(backendName);
      try {
        const ref = readReference(stories!);
        const c = ref.cases.find((x) => x.prompt === 'Once upon a time')!;
        // The reference ran llama2.c for 64 positions (60 generated tokens); run on until the model ends the story.
        const r = await lm.generate(c.prompt, { chatTemplate: false, temperature: 0, maxTokens: 1000 });
        expect(r.promptTokens).toEqual([1, 403, 407, 261, 378]);
        const want = c.steps.map((s) => s.token);
        expect(r.tokens.slice(0, want.length)).toEqual(want);
        const printed = (c as unknown as { llama2c_stdout: string }).llama2c_stdout;
        expect(`${lm.tokenizer.decode([...r.promptTokens, ...want], { skipSpecialTokens: true })}\n`).toBe(
          printed,
        );
        // It stops on an id of generation_config.json's eos_token_id list [2, 1], which is not part of the output.
        expect(lm.eosIds).toEqual([1, 2]);
        expect(r.finishReason).toBe('stop');
        expect(r.tokens.length).toBeLessThan(1000);
        expect(r.tokens.some((t) => t === 1 || t === 2)).toBe(false);
      } finally {
        lm.free();
      }
    },
  );
});
