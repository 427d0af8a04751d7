import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { nativeLevels } from '@mnemo/backend-native';
import { readReference, syntheticGguf, syntheticPreset } from '@mnemo/test-utils';
import { afterAll, describe, expect, it } from 'vitest';

// The native backend through the CLI: chosen by default here, results bitwise independent of the thread count and of
// the ISA level (MNEMO_NATIVE_ISA), prompt caches exact across splits, and clear errors when it is forced wrongly.
const cli = join(import.meta.dirname, '..', 'dist', 'mnemo.js');
const f32 = syntheticPreset('llama-f32');
const q4 = syntheticPreset('llama-q4g32');
/** GGML Q4_K and Q6_K blocks mixed per tensor (groups of 32 and of 16; int8 kernels and rounded activations). */
const q4km = syntheticGguf('llama-q4_k_m.gguf');
const long = readReference(f32).cases[3]!.prompt; // 629 characters, one token each
const tmp = mkdtempSync(join(tmpdir(), 'mnemo-native-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const levels = nativeLevels()
  .filter((l) => l.supported)
  .map((l) => l.name);

function run(args: string[], env: Record<string, string> = {}) {
  return spawnSync(process.execPath, [cli, ...args], {
    encoding: 'utf8',
    timeout: 180_000,
    env: { ...process.env, MNEMO_BACKEND: '', MNEMO_NATIVE_ISA: '', MNEMO_THREADS: '', ...env },
  });
}
function mnemo(args: string[], env: Record<string, string> = {}): string {
  const r = run(args, env);
  if (r.status !== 0) throw new Error(`mnemo ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return r.stdout;
}
interface Out {
  prompt_tokens: number[];
  tokens: number[];
  logprobs: unknown[];
  stats: { cached_tokens: number };
}
const GEN = ['--temp', '0', '--json', '--logprobs', '5', '--ignore-chat-template'];
const comparable = (o: Out) => ({ prompt_tokens: o.prompt_tokens, tokens: o.tokens, logprobs: o.logprobs });
const gen = (model: string, prompt: string, extra: string[] = [], env: Record<string, string> = {}) =>
  JSON.parse(mnemo(['generate', '--model', model, '--prompt', prompt, ...GEN, ...extra], env)) as Out;

describe.skipIf(!existsSync(cli) || levels.length < 2)('the native backend through the CLI', () => {
  it('is the default here, and --verbose names it', () => {
    for (const model of [q4, q4km]) {
      const r = run(['generate', '--model', model, '--prompt', 'Hi', '--max-tokens', '2', '--verbose']);
      expect(r.status).toBe(0);
      expect(r.stderr).toMatch(/Backend: native \(\w+, \d+ threads?, numerics native-f32\)/);
    }
    const w = run([
      'generate',
      '--model',
      q4,
      '--prompt',
      'Hi',
      '--max-tokens',
      '2',
      '--verbose',
      '--backend',
      'wasm',
    ]);
    expect(w.stderr).toMatch(/Backend: wasm/);
  });

  it('--threads 1, 2 and 3 give bitwise the same generation (exact and int8 activations)', () => {
    for (const [model, extra] of [
      [f32, []],
      [q4, []],
      [q4, ['--int8-activations']],
      [q4km, []],
      [q4km, ['--int8-activations']],
    ] as const) {
      const outs = ['1', '2', '3'].map((t) =>
        comparable(gen(model, long.slice(0, 300), ['--max-tokens', '24', '--threads', t, ...extra])),
      );
      expect(outs[1]).toEqual(outs[0]);
      expect(outs[2]).toEqual(outs[0]);
    }
  });

  it(`every ISA level (${levels.join(', ')}) gives bitwise the same whole generation`, () => {
    for (const [model, extra] of [
      [f32, []],
      [q4, []],
      [q4, ['--int8-activations']],
      [q4km, []],
      [q4km, ['--int8-activations']],
    ] as const) {
      const outs = levels.map((isa) =>
        comparable(
          gen(model, long.slice(0, 200), ['--max-tokens', '32', ...extra], { MNEMO_NATIVE_ISA: isa }),
        ),
      );
      for (let i = 1; i < outs.length; i++) expect(outs[i], `${levels[i]} vs ${levels[0]}`).toEqual(outs[0]);
    }
  });

  it('cache-prompt then generate --prompt-cache-file equals the whole prompt, for splits 1/255/256/257/511/512/513', () => {
    for (const [model, extra] of [
      [f32, []],
      [q4, ['--int8-activations']],
    ] as const) {
      const whole = gen(model, long, ['--max-tokens', '6', '--backend', 'native', ...extra]);
      for (const n of [1, 255, 256, 257, 511, 512, 513]) {
        const chars = n - 1; // BOS is the first prompt token
        const file = join(tmp, `split-${n}-${extra.length}.safetensors`);
        mnemo([
          'cache-prompt',
          '--model',
          model,
          '--prompt',
          long.slice(0, chars),
          '--prompt-cache-file',
          file,
          '--ignore-chat-template',
          '--backend',
          'native',
          ...extra,
        ]);
        const cached = JSON.parse(
          mnemo([
            'generate',
            '--prompt-cache-file',
            file,
            '--prompt',
            long.slice(chars),
            ...GEN,
            '--max-tokens',
            '6',
            '--backend',
            'native',
            ...extra,
          ]),
        ) as Out;
        expect(comparable(cached), `split at ${n} tokens`).toEqual(comparable(whole));
        expect(cached.stats.cached_tokens).toBeGreaterThanOrEqual(n - 1);
      }
    }
  });

  it('refuses a prompt cache computed by another backend (numerics)', () => {
    const file = join(tmp, 'wasm.safetensors');
    mnemo([
      'cache-prompt',
      '--model',
      q4,
      '--prompt',
      'Hi! ',
      '--prompt-cache-file',
      file,
      '--backend',
      'wasm',
    ]);
    const r = run(['generate', '--prompt-cache-file', file, '--prompt', 'x', ...GEN, '--backend', 'native']);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/numerics wasm, this model runs with native-f32.*\[NUMERICS_MISMATCH\]/);
  });

  it('forcing an ISA level or a backend that cannot run is a clear error', () => {
    const bad = run(['generate', '--model', q4, '--prompt', 'Hi', '--max-tokens', '1'], {
      MNEMO_NATIVE_ISA: 'avx9',
    });
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toMatch(/^mnemo: .*unknown ISA level "avx9"/);
    expect(bad.stderr).not.toMatch(/\n\s+at /);
    const nope = run([
      'generate',
      '--model',
      q4,
      '--prompt',
      'Hi',
      '--max-tokens',
      '1',
      '--backend',
      'metal',
    ]);
    expect(nope.status).not.toBe(0);
    expect(nope.stderr).toMatch(/unknown backend "metal".*known backends: .*native/);
  });
});
