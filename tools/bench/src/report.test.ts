import { describe, expect, it } from 'vitest';
import type { Bandwidth } from './bandwidth';
import type { ChildResult, DecodeProbe } from './job';
import { type BenchConfig, decodeTimeBandwidth, figures, targets } from './report';
import { MODEL_SPECS } from './spec';

const spec = MODEL_SPECS['1b']!;
const config: BenchConfig = {
  runs: 1,
  threads: 2,
  prefillTokens: 512,
  decodeTokens: 128,
  ttftTokens: 2000,
  agreeTokens: 32,
  contextSize: 2304,
};
const run: Bandwidth = {
  oneThreadGBs: 25,
  twoThreadGBs: 40,
  oneThreadBestGBs: 27,
  twoThreadBestGBs: 60,
  method: 'test',
  bufferBytes: 1 << 30,
  passes: 15,
};

function child(decodeTps: number, decodeProbes?: DecodeProbe[]): ChildResult {
  return {
    runtime: 'mnemo',
    version: 'test',
    loadMs: 1,
    runs: [{ prefillTps: 50, decodeTps, prefillCores: 2, decodeCores: 2, tokens: [1] }],
    ttftUncachedMs: [1000],
    ttftCachedMs: [10],
    cacheNote: '',
    cacheFileBytes: 1,
    cachedSameToken: true,
    peakRssBytes: 2 ** 30,
    threadsRequested: 2,
    threadsReported: 2,
    threadsNote: '',
    kvBytesPerToken: 32768,
    ...(decodeProbes ? { decodeProbes } : {}),
    notes: [],
  };
}

const fig = (raw: ChildResult) => figures(spec, 'f16', raw, config, run, 2.5e9, 32768, 2304, [0, 0]);

describe('decode bandwidth share', () => {
  it('is a share of the bandwidth measured during the decode, each slice weighted by its time', () => {
    const p = (run: number, tokens: number, ms: number, two: number): DecodeProbe => ({
      run,
      tokens,
      ms,
      twoThreadGBs: two,
      twoThreadBestGBs: two + 20,
    });
    // run 0: slices of 1000 ms between 30 and 50 GB/s (40), and 3000 ms between 50 and 30 (40);
    // run 1: one slice of 4000 ms between 80 and 100 (90). Medians only: the best passes are left out.
    const probes = [
      p(0, 0, 0, 30),
      p(0, 16, 1000, 50),
      p(0, 16, 3000, 30),
      p(1, 0, 0, 80),
      p(1, 16, 4000, 100),
    ];
    const f = fig(child(10, probes));
    expect(f.decodeBandwidthAdjacent).toBe(true);
    expect(f.decodeBandwidthRefGBs).toBeCloseTo((40 * 1000 + 40 * 3000 + 90 * 4000) / 8000, 10);
    expect(f.decodeBandwidthPct).toBeCloseTo((100 * f.decodeGBs) / f.decodeBandwidthRefGBs, 10);
    expect(f.decodeBandwidthPctOfRun).toBeCloseTo((100 * f.decodeGBs) / 60, 10);
    const t = targets(spec, 'f16', 'native', f, null).find((x) => x.name === 'decode bandwidth')!;
    expect(t.value).toContain('65.0 GB/s measured during the decode');
    expect(t.met).toBe(f.decodeBandwidthPct >= 70);
    // a probe that failed leaves its neighbours paired across the gap, with the later slice's time
    expect(decodeTimeBandwidth(child(10, [p(0, 0, 0, 30), p(0, 16, 500, 50)]))).toBe(40);
    // a lone probe (a decode of one token) gives nothing to compare with
    expect(decodeTimeBandwidth(child(10, [p(0, 0, 0, 30)]))).toBeUndefined();
  });

  it("falls back to the run's fastest pass without probes", () => {
    for (const raw of [child(10), child(10, [])]) {
      const f = fig(raw);
      expect(f.decodeBandwidthAdjacent).toBe(false);
      expect(f.decodeBandwidthRefGBs).toBe(60);
      expect(f.decodeBandwidthPct).toBe(f.decodeBandwidthPctOfRun);
      const t = targets(spec, 'f16', 'native', f, null).find((x) => x.name === 'decode bandwidth')!;
      expect(t.value).toContain("of the run's fastest pass");
    }
  });

  it('counts the bytes read per token at the mean decode context', () => {
    // f16 weights of the 1B shapes (about 2.47 GB; the tied embedding read once, as the head) + KV at 576 tokens.
    const f = fig(child(10));
    expect(f.decodeGBs).toBeGreaterThan(24);
    expect(f.decodeGBs).toBeLessThan(26);
  });
});
