import { describe, expect, it } from 'vitest';
import { DecodeProbes, PROBE_EVERY } from './job';

describe('decode clock', () => {
  it('probes before the first timed token and after every PROBE_EVERY tokens, leaving the probes out', () => {
    // a fake clock: each token takes 10 ms, each probe 1000 ms
    let t = 0;
    const probes = new DecodeProbes('unused');
    const taken: [number, number, number][] = [];
    probes.take = (run, tokens, ms) => {
      taken.push([run, tokens, ms]);
      t += 1000;
    };
    const clock = probes.clock(3, () => t);
    clock.begin();
    const n = 2 * PROBE_EVERY + 5;
    for (let i = 0; i < n; i++) {
      t += 10;
      clock.token();
    }
    expect(clock.end()).toBe(10 * n);
    expect(taken).toEqual([
      [3, 0, 0],
      [3, PROBE_EVERY, 10 * PROBE_EVERY],
      [3, PROBE_EVERY, 10 * PROBE_EVERY],
      [3, 5, 50],
    ]);
  });

  it('times a decode without probes as plain wall time', () => {
    let t = 5;
    const clock = new DecodeProbes(undefined).clock(0, () => t);
    clock.begin();
    for (let i = 0; i < 40; i++) {
      t += 7;
      clock.token();
    }
    expect(clock.end()).toBe(280);
  });
});
