import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Root of the mnemo repository. */
export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');

/** Folder of the synthetic checkpoints copied into the repo (`fixtures/synthetic`). */
export const syntheticDir = join(repoRoot, 'fixtures', 'synthetic');

/** Names of the synthetic presets. */
export const SYNTHETIC_PRESETS = [
  'llama-f32',
  'llama3-f16-tied',
  'llama-bf16-headdim',
  'qwen2-bias-f32',
  'llama-q4g32',
  'llama-q8g64',
  'llama-q4g64-deep',
  'gemma-f32',
  'gemma2-f32',
  'gemma3-bf16',
  'gemma3-q4g32',
] as const;
export type SyntheticPreset = (typeof SYNTHETIC_PRESETS)[number];

export function syntheticPreset(name: SyntheticPreset): string {
  return join(syntheticDir, name);
}

/** The shared real fixtures (`../shared/fixtures/real` beside the repo); they are read in place, never copied. */
export const realFixturesDir = resolve(repoRoot, '..', 'shared', 'fixtures', 'real');

/**
 * Path of a real fixture, or `null` (with a one-line note on stderr) where the shared folder does not exist, so the
 * caller can skip: `const dir = realFixture('stories260K-hf'); describe.skipIf(!dir)(...)`.
 */
export function realFixture(relative: string): string | null {
  const p = join(realFixturesDir, relative);
  if (existsSync(p)) return p;
  process.stderr.write(
    `[mnemo tests] skipping: real fixture folder ${p} does not exist (outside the shared workplace)\n`,
  );
  return null;
}

/**
 * The synthetic GGUF weight fixtures (random weights, one file per GGML weight type, a Q4_K_M-style mix and a qwen2
 * file, each with its float64 `expected.json`), copied verbatim from the shared fixtures into `fixtures/gguf`.
 */
export const syntheticGgufDir = join(repoRoot, 'fixtures', 'gguf');

/** Path of a synthetic GGUF fixture in the repo (`llama-q4_k.gguf`, `llama-q4_k.expected.json`, ...), or the folder. */
export function syntheticGguf(name = ''): string {
  return join(syntheticGgufDir, name);
}

/**
 * The shared GGUF fixtures (`../shared/fixtures/gguf` beside the repo), read in place: the two files carrying real
 * tokenizers (`tok-*.gguf`) exist only there.
 */
export const ggufFixturesDir = resolve(repoRoot, '..', 'shared', 'fixtures', 'gguf');

/**
 * Path of a shared GGUF fixture file or of the folder (`ggufFixture()`), or `null` (with a one-line note on stderr)
 * where it does not exist, so the caller can skip.
 */
export function ggufFixture(name = ''): string | null {
  const p = join(ggufFixturesDir, name);
  if (existsSync(p)) return p;
  process.stderr.write(
    `[mnemo tests] skipping: GGUF fixture ${p} does not exist (outside the shared workplace)\n`,
  );
  return null;
}

/** Small deterministic PRNG (mulberry32) for test data. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Float32Array of n values uniform in [-scale, scale). */
export function randomF32(n: number, seed: number, scale = 1): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (r() * 2 - 1) * scale;
  return out;
}

export { type RefConfig, type RefWeights, referenceLogits } from './forward';
export { promptCacheMetadataDigest } from './prompt-cache-digest';
export {
  compareWithReference,
  type Produced,
  type Reference,
  type ReferenceCase,
  type ReferenceStep,
  readReference,
} from './reference';
