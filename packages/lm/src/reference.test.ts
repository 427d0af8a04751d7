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
for (const backendName of ['wasm', 'js'] as const) {
  describe.each(SYNTHETIC_PRESETS)(`%s on the ${backendName} backend`, (preset) => {
    const dir = syntheticPreset(preset);
    const ref = readReference(dir);
    let lm: LM;
    beforeAll(async () => {
      lm = await LM.load(dir, { backendName });
    });
    afterAll(() => lm?.free());

    it.each(ref.cases.map((c, i) => [i, c.prompt.slice(0, 24)] as const))('case %i (%s…)', async (i) => {
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
  it('continues "Once upon a time" with the ids llama2.c prints and stops on its EOS list', async () => {
    const lm = await LM.load(stories!, { backendName: 'wasm' });
    try {
      const ref = readReference(stories!);
      const c = ref.cases.find((x) => x.prompt === 'Once upon a time')!;
      const r = await lm.generate(c.prompt, { chatTemplate: false, temperature: 0, maxTokens: 512 });
      expect(r.promptTokens).toEqual([1, 403, 407, 261, 378]);
      expect(r.tokens).toEqual(c.steps.map((s) => s.token));
      expect(r.finishReason).toBe('stop');
      expect(lm.eosIds).toEqual([1, 2]);
    } finally {
      lm.free();
    }
  });
});
