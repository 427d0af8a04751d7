import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compareWithReference, readReference, SYNTHETIC_PRESETS, syntheticPreset } from '@mnemo/test-utils';
import { afterAll, describe, expect, it } from 'vitest';

/** Longest one CLI run may take before it is killed: generous, since CI shares 2 cores with other work. */
const CLI_TIMEOUT_MS = 300_000;

// These tests run the bundled single-file CLI, as users do (`pnpm build` makes it; turbo builds before testing).
const cli = join(import.meta.dirname, '..', 'dist', 'mnemo.js');

function mnemo(args: string[], input?: string) {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', input, timeout: CLI_TIMEOUT_MS });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

interface JsonOut {
  prompt_tokens: number[];
  tokens: number[];
  text: string;
  finish_reason: 'stop' | 'length';
  logprobs: { id: number; logprob: number; top: { id: number; logprob: number }[] }[];
  stats: Record<string, number>;
}

describe.skipIf(!existsSync(cli))('mnemo generate against the float64 references', () => {
  describe.each(SYNTHETIC_PRESETS)('%s', (preset) => {
    const dir = syntheticPreset(preset);
    const ref = readReference(dir);
    it.each(ref.cases.map((c, i) => [i, c.prompt.slice(0, 24)] as const))('case %i (%s…)', (i) => {
      const c = ref.cases[i]!;
      const args = [
        'generate',
        '--model',
        dir,
        '--prompt',
        c.prompt,
        '--ignore-chat-template',
        '--temp',
        '0',
      ];
      const r = mnemo([...args, '--json', '--logprobs', '5', '--max-tokens', String(c.steps.length)]);
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      const lines = r.stdout.trim().split('\n');
      expect(lines).toHaveLength(1); // exactly one JSON object and nothing else
      const out = JSON.parse(lines[0]!) as JsonOut;
      expect(Object.keys(out)).toEqual([
        'prompt_tokens',
        'tokens',
        'text',
        'finish_reason',
        'logprobs',
        'stats',
      ]);
      expect(out.prompt_tokens).toEqual(c.prompt_tokens);
      expect(out.logprobs).toHaveLength(out.tokens.length);
      for (const l of out.logprobs) expect(l.top).toHaveLength(5);
      const { problems } = compareWithReference(
        c,
        { tokens: out.tokens, logprobs: out.logprobs.map((l) => l.logprob) },
        2e-3,
        [257],
      );
      expect(problems).toEqual([]);
      // a stop token is not included in `tokens`
      expect(out.tokens).not.toContain(257);
      if (out.tokens.length < c.steps.length) expect(out.finish_reason).toBe('stop');
    });
  });

  it('prints [] for logprobs without --logprobs and reads the prompt from stdin with "-"', () => {
    const dir = syntheticPreset('llama-f32');
    const r = mnemo(
      ['generate', '--model', dir, '--prompt', '-', '--ignore-chat-template', '--json', '--max-tokens', '2'],
      'Hi! What are you up to?',
    );
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout) as JsonOut;
    expect(out.logprobs).toEqual([]);
    expect(out.prompt_tokens).toEqual(readReference(dir).cases[0]!.prompt_tokens);
  });
});

describe.skipIf(!existsSync(cli))('mnemo generate --threads and --int8-activations', () => {
  it('computes the same with 1 and 2 threads, and close to (not the same as) that with int8 activations', () => {
    const dir = syntheticPreset('llama-q4g32');
    const c = readReference(dir).cases[0]!;
    const run = (flags: string[]) => {
      const args = [
        'generate',
        '--model',
        dir,
        '--prompt',
        c.prompt,
        '--ignore-chat-template',
        '--temp',
        '0',
      ];
      const r = mnemo([...args, '--json', '--logprobs', '3', '--max-tokens', '4', ...flags]);
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      return JSON.parse(r.stdout) as JsonOut;
    };
    const one = run(['--threads', '1']);
    const two = run(['--threads', '2']);
    expect(two.tokens).toEqual(one.tokens);
    expect(two.logprobs).toEqual(one.logprobs);
    const int8 = run(['--threads', '2', '--int8-activations']);
    expect(int8.logprobs.map((l) => l.logprob)).not.toEqual(one.logprobs.map((l) => l.logprob));
    expect(int8.tokens[0]).toBe(one.tokens[0]);
    // activation rounding moves this tiny random model's log-probabilities by a few hundredths
    expect(Math.abs(int8.logprobs[0]!.logprob - one.logprobs[0]!.logprob)).toBeLessThan(0.2);
    expect(run(['--threads', '1', '--int8-activations']).logprobs).toEqual(int8.logprobs);
  });

  it('refuses a bad thread count', () => {
    const r = mnemo([
      'generate',
      '--model',
      syntheticPreset('llama-q4g32'),
      '--prompt',
      'Hi',
      '--threads',
      '0',
    ]);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/option '--threads/);
  });
});

describe.skipIf(!existsSync(cli))('mnemo generate refuses bad input with one clear line', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'mnemo-cli-'));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  function brokenCopy(name: string, change: (dir: string) => void): string {
    const dir = join(tmp, name);
    cpSync(syntheticPreset('llama-f32'), dir, { recursive: true });
    change(dir);
    return dir;
  }
  function editConfig(dir: string, edit: (c: Record<string, unknown>) => void): void {
    const p = join(dir, 'config.json');
    const c = JSON.parse(readFileSync(p, 'utf8')) as Record<string, unknown>;
    edit(c);
    writeFileSync(p, JSON.stringify(c));
  }
  function expectFailure(dir: string, pattern: RegExp): void {
    const r = mnemo(['generate', '--model', dir, '--prompt', 'Hi', '--max-tokens', '2']);
    expect(r.status).not.toBe(0);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^mnemo: /);
    expect(r.stderr).toMatch(pattern);
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
  }

  it('a truncated safetensors file', () => {
    const dir = brokenCopy('truncated', (d) => truncateSync(join(d, 'model.safetensors'), 5000));
    expectFailure(dir, /model\.safetensors/);
  });
  it('a missing tensor', () => {
    const dir = brokenCopy('missing', (d) => editConfig(d, (c) => (c.num_hidden_layers = 3)));
    expectFailure(dir, /missing tensor "model\.layers\.2\./);
  });
  it('a tensor of the wrong shape', () => {
    const dir = brokenCopy('shape', (d) => editConfig(d, (c) => (c.intermediate_size = 100)));
    expectFailure(dir, /shape \[172, 64\]; expected \[100, 64\]/);
  });
  it('an unknown model type', () => {
    const dir = brokenCopy('type', (d) => editConfig(d, (c) => (c.model_type = 'gpt-neo-x')));
    expectFailure(dir, /unknown model_type "gpt-neo-x"/);
  });
  it('a bad quantization config', () => {
    const dir = join(tmp, 'quant');
    cpSync(syntheticPreset('llama-q4g32'), dir, { recursive: true });
    editConfig(dir, (c) => (c.quantization = { group_size: 32, bits: 7 }));
    expectFailure(dir, /bits must be one of 2, 3, 4, 5, 6, 8, got 7/);
    editConfig(dir, (c) => (c.quantization = { group_size: 64, bits: 4 }));
    expectFailure(dir, /shape \[\d+, 2\]; expected \[\d+, 1\]|scales/);
  });
  it('a directory that is not a model', () => {
    expectFailure(tmp, /config\.json does not exist/);
  });
  it('bad flags', () => {
    const dir = syntheticPreset('llama-f32');
    for (const flags of [
      ['--temp', 'hot'],
      ['--max-tokens', '-3'],
      ['--top-p', '2'],
      ['--logprobs', '1e9'],
      ['--seed', '1.5'],
      ['--kv-dtype', 'bf16'],
      ['--kv-bits', '3'],
    ]) {
      const r = mnemo(['generate', '--model', dir, '--prompt', 'Hi', ...flags]);
      expect(r.status).not.toBe(0);
      expect(r.stderr).toMatch(new RegExp(`option '${flags[0]}`));
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
    // contradicting cache flags: a clear message, no stack
    const r = mnemo(['generate', '--model', dir, '--prompt', 'Hi', '--kv-dtype', 'f16', '--kv-bits', '4']);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/^mnemo: .*quantized cache \(kvBits 4\) cannot also be stored as f16/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });
});
