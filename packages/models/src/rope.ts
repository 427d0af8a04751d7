import type { RawConfig } from './config';
import { ModelLoadError } from './errors';

/**
 * Inverse frequencies `θ^(-2i/rotDim)` for i < rotDim/2, with the config's `rope_scaling` applied (none, `linear`,
 * `llama3`, or `freq_factors`: per-frequency divisors, GGUF's `rope_freqs`). Computed in float64; the rotation tables are built from them per position (see `fillRopeTables`).
 */
export function ropeInvFreq(
  rotDim: number,
  theta: number,
  scaling: RawConfig | undefined,
  source = 'config.json',
): Float64Array {
  const half = rotDim / 2;
  const freqs = new Float64Array(half);
  for (let i = 0; i < half; i++) freqs[i] = 1 / theta ** ((2 * i) / rotDim);
  const type = scaling ? (scaling.rope_type ?? scaling.type ?? 'default') : 'default';
  const num = (key: string, fallback?: number): number => {
    const v = scaling?.[key] ?? fallback;
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
      throw new ModelLoadError(
        `${source}: rope_scaling.${key} must be a positive number, got ${JSON.stringify(v)}`,
      );
    }
    return v;
  };
  switch (type) {
    case 'default':
      break;
    case 'linear': {
      const factor = num('factor');
      for (let i = 0; i < half; i++) freqs[i]! /= factor;
      break;
    }
    case 'llama3': {
      const factor = num('factor');
      const low = num('low_freq_factor', 1);
      const high = num('high_freq_factor', 4);
      const oldLen = num('original_max_position_embeddings', 8192);
      if (high <= low)
        throw new ModelLoadError(`${source}: rope_scaling.high_freq_factor must exceed low_freq_factor`);
      const lowWavelen = oldLen / low;
      const highWavelen = oldLen / high;
      for (let i = 0; i < half; i++) {
        const f = freqs[i]!;
        const wavelen = (2 * Math.PI) / f;
        if (wavelen < highWavelen) continue;
        if (wavelen > lowWavelen) {
          freqs[i] = f / factor;
        } else {
          const smooth = (oldLen / wavelen - low) / (high - low);
          freqs[i] = (1 - smooth) * (f / factor) + smooth * f;
        }
      }
      break;
    }
    case 'freq_factors': {
      // GGUF's rope_freqs tensor (llama3 scaling as llama.cpp stores it): one divisor per frequency
      const f = scaling?.freq_factors;
      if (!Array.isArray(f) || f.length !== half || !f.every((v) => typeof v === 'number' && v > 0))
        throw new ModelLoadError(
          `${source}: rope_scaling.freq_factors must be ${half} positive numbers (one per rotated pair)`,
        );
      for (let i = 0; i < half; i++) freqs[i]! /= f[i] as number;
      break;
    }
    default:
      throw new ModelLoadError(
        `${source}: rope_scaling type ${JSON.stringify(type)} is not supported (supported: default, linear, llama3, freq_factors)`,
      );
  }
  return freqs;
}

/**
 * Fills `cos`/`sin` (f32 `[rows, invFreq.length]`) for positions `startPos .. startPos + rows - 1`. Angles are computed
 * in float64 from float64 frequencies, so tables are exact to f32 rounding at any position, and a position's entries
 * never depend on which other positions are computed with it.
 */
export function fillRopeTables(
  invFreq: Float64Array,
  startPos: number,
  rows: number,
  cos: Float32Array,
  sin: Float32Array,
): void {
  const half = invFreq.length;
  for (let r = 0; r < rows; r++) {
    const pos = startPos + r;
    const base = r * half;
    for (let i = 0; i < half; i++) {
      const a = pos * invFreq[i]!;
      cos[base + i] = Math.cos(a);
      sin[base + i] = Math.sin(a);
    }
  }
}
