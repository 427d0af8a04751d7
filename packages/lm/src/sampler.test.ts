import { describe, expect, it } from 'vitest';
import { logprobsOf } from './logprobs';
import { argmax, makeLogitsProcessors, makeSampler } from './sampler';
import { StopStrings } from './stop';

const logits = Float32Array.from([0.1, 2.5, -1, 2.4, 0.3, 1.9, -3, 0.0]);

describe('samplers', () => {
  it('temperature 0 is argmax (first on ties, never NaN)', () => {
    expect(makeSampler()(logits)).toBe(1);
    expect(argmax(Float32Array.from([1, 3, 3, Number.NaN]))).toBe(1);
  });
  it('the same seed gives the same tokens; another seed others', () => {
    const draw = (seed: number) => {
      const s = makeSampler({ temperature: 1.5, seed });
      return Array.from({ length: 64 }, () => s(logits));
    };
    expect(draw(7)).toEqual(draw(7));
    expect(draw(7)).not.toEqual(draw(8));
    expect(new Set(draw(7)).size).toBeGreaterThan(2);
  });
  it('top-k 1, a tiny top-p and min-p 1 all reduce to greedy', () => {
    for (const opts of [{ topK: 1 }, { topP: 0.01 }, { minP: 1 }]) {
      const s = makeSampler({ temperature: 1, seed: 3, ...opts });
      for (let i = 0; i < 50; i++) expect(s(logits)).toBe(1);
    }
  });
  it('top-k keeps only the k most likely tokens', () => {
    const s = makeSampler({ temperature: 5, seed: 1, topK: 3 });
    const seen = new Set(Array.from({ length: 400 }, () => s(logits)));
    expect([...seen].sort()).toEqual([1, 3, 5]);
  });
  it('min-p drops tokens below min-p × the top probability', () => {
    const s = makeSampler({ temperature: 1, seed: 2, minP: 0.5 });
    const seen = new Set(Array.from({ length: 400 }, () => s(logits)));
    // p(3)/p(1) = e^-0.1 ≈ 0.90, p(5)/p(1) = e^-0.6 ≈ 0.55, p(0)/p(1) = e^-2.4 ≈ 0.09
    expect([...seen].sort()).toEqual([1, 3, 5]);
  });
  it('refuses bad parameters', () => {
    expect(() => makeSampler({ temperature: -1 })).toThrow(/temperature/);
    expect(() => makeSampler({ topP: 1.5 })).toThrow(/top-p/);
    expect(() => makeSampler({ topK: 1.5 })).toThrow(/top-k/);
    expect(() => makeSampler({ seed: -2 })).toThrow(/seed/);
  });
});

describe('logits processors', () => {
  it('repetition penalty lowers recently seen tokens over the whole history window', () => {
    const [p] = makeLogitsProcessors({ repetitionPenalty: 2, repetitionContextSize: 2 });
    const l = Float32Array.from(logits);
    p!([1, 7, 3, 2], l); // window: 3, 2
    expect(l[1]).toBe(logits[1]);
    expect(l[3]).toBeCloseTo(logits[3]! / 2);
    expect(l[2]).toBeCloseTo(logits[2]! * 2);
  });
  it('logit bias adds to the given ids and refuses ids outside the vocabulary', () => {
    const [p] = makeLogitsProcessors({ logitBias: { 6: 10 } });
    const l = Float32Array.from(logits);
    p!([], l);
    expect(argmax(l)).toBe(6);
    const [bad] = makeLogitsProcessors({ logitBias: { 99: 1 } });
    expect(() => bad!([], Float32Array.from(logits))).toThrow(/outside the vocabulary/);
  });
});

describe('logprobs and stop strings', () => {
  it('log-softmax of the raw logits with the top k, most likely first', () => {
    const r = logprobsOf(logits, 3, 3);
    const lse = Math.log([...logits].reduce((a, v) => a + Math.exp(v), 0));
    expect(r.logprob).toBeCloseTo(logits[3]! - lse, 12);
    expect(r.top.map((t) => t.id)).toEqual([1, 3, 5]);
  });
  it('holds back text that may become a stop string and cuts at it', () => {
    const s = new StopStrings(['</end>']);
    expect(s.push('Hello </')).toEqual({ text: 'Hello ', stopped: false });
    expect(s.push('en')).toEqual({ text: '', stopped: false });
    expect(s.push('d> more')).toEqual({ text: '', stopped: true });
    const t = new StopStrings(['</end>']);
    expect(t.push('a </b')).toEqual({ text: 'a </b', stopped: false });
  });
});
