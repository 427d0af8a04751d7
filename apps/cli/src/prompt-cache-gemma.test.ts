import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readReference, syntheticPreset } from '@mnemo/test-utils';
import { afterAll, describe, expect, it } from 'vitest';

/** Longest one CLI run may take before it is killed: generous, since CI shares 2 cores with other work. */
const CLI_TIMEOUT_MS = 300_000;

// The founding promise on models whose layers differ, through the CLI: Gemma 2 (sliding window 8 on alternate layers,
// attention and final soft-caps) and Gemma 3 (window 16 on 5 of 6 layers, two RoPE bases, q/k norms). Their sliding
// layers get ring caches of the window (read in place by attention) and the global ones full caches. `cache-prompt A`
// then `generate B --prompt-cache-file` gives exactly the prompt ids, tokens and logprobs of `generate A+B`.
//
// Every CLI run is a process (about 0.7 s), so this file runs a covering subset of the matrix: for each model and each
// of f32, f16, 8-bit and 4-bit caches, the whole prompt with the default step (512) and with step 1 or 7, and three
// splits; across the four kinds each model gets every split (1, 2, window - 1, window, window + 1, 2 × window,
// 255, 256, 257), each kind a split near a window boundary and one around the 256-row growth step, and the cache-prompt
// and generate runs take prefill steps 1, 7 and 512 in turn. The full cross product (every kind × every split × every
// step) runs in memory in packages/lm/src/prompt-reuse-gemma.test.ts.
const cli = join(import.meta.dirname, '..', 'dist', 'mnemo.js');
const tmp = mkdtempSync(join(tmpdir(), 'mnemo-pc-gemma-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function mnemo(args: string[]): string {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', timeout: CLI_TIMEOUT_MS });
  if (r.status !== 0) throw new Error(`mnemo ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return r.stdout;
}

interface Out {
  prompt_tokens: number[];
  tokens: number[];
  logprobs: unknown[];
  stats: { cached_tokens: number };
}
const GEN = ['--temp', '0', '--json', '--logprobs', '5', '--max-tokens', '6', '--ignore-chat-template'];
const comparable = (o: Out) => ({ prompt_tokens: o.prompt_tokens, tokens: o.tokens, logprobs: o.logprobs });

describe.skipIf(!existsSync(cli))('gemma: cache-prompt then generate equals generate of the whole', () => {
  for (const [p, preset] of (['gemma2-f32', 'gemma3-bf16'] as const).entries()) {
    const model = syntheticPreset(preset);
    const w = JSON.parse(readFileSync(join(model, 'config.json'), 'utf8')).sliding_window as number;
    const long = readReference(model).cases[3]!.prompt; // 629 ASCII characters: one token per character

    const kinds: [string, string[]][] = [
      ['standard (f32) caches', []],
      ['f16 caches', ['--kv-dtype', 'f16']],
      ['8-bit caches', ['--kv-bits', '8', '--kv-group-size', '64']],
      ['4-bit caches', ['--kv-bits', '4', '--kv-group-size', '32']],
    ];
    // cached prefixes of n tokens (BOS + n - 1 characters); each row covers a window boundary and the 256-row step,
    // and the rows together every split; the second model shifts the rows by two kinds
    const splits = [
      [1, w - 1, 256],
      [2, w, 257],
      [w + 1, 255, 2 * w],
      [w, 256, 2 * w + 1],
    ];
    for (const [k, [kindName, kind]] of kinds.entries())
      it(`${preset} (window ${w}), ${kindName}`, () => {
        const run = (prompt: string, extra: string[]) =>
          JSON.parse(
            mnemo(['generate', '--model', model, '--prompt', prompt, ...GEN, ...kind, ...extra]),
          ) as Out;
        const whole = run(long, []);
        expect(whole.stats.cached_tokens).toBe(0);
        expect(whole.prompt_tokens).toHaveLength(long.length + 1);
        const step = k % 2 === 0 ? '1' : '7';
        expect(comparable(run(long, ['--prefill-step-size', step])), `--prefill-step-size ${step}`).toEqual(
          comparable(whole),
        );
        for (const [i, n] of splits[(k + 2 * p) % 4]!.entries()) {
          const chars = n - 1;
          const file = join(tmp, `${preset}-${kindName.split(' ')[0]}-${n}.safetensors`);
          mnemo([
            'cache-prompt',
            '--model',
            model,
            '--prompt',
            long.slice(0, chars),
            '--prompt-cache-file',
            file,
            '--ignore-chat-template',
            ...kind,
            '--prefill-step-size',
            ['1', '7', '512'][(i + k) % 3]!,
          ]);
          const cached = JSON.parse(
            mnemo([
              'generate',
              '--prompt-cache-file',
              file,
              '--prompt',
              long.slice(chars),
              ...GEN,
              '--prefill-step-size',
              ['7', '512', '1'][(i + k) % 3]!,
            ]),
          ) as Out;
          expect(comparable(cached), `split after ${n} tokens`).toEqual(comparable(whole));
          expect(cached.stats.cached_tokens).toBeGreaterThanOrEqual(n - 1);
        }
      });
  }
});

describe.skipIf(!existsSync(cli))('gemma 3: a saved conversation', () => {
  it('stores at most the window on each sliding layer, and continues exactly', () => {
    const model = syntheticPreset('gemma3-bf16');
    const config = JSON.parse(readFileSync(join(model, 'config.json'), 'utf8')) as {
      sliding_window: number;
      layer_types: string[];
    };
    const file = join(tmp, 'gemma3-conversation.safetensors');
    const chat = (lines: string[]) => {
      const r = spawnSync(process.execPath, [cli, 'chat', '--model', model, '--max-tokens', '20'], {
        input: `${lines.join('\n')}\n`,
        encoding: 'utf8',
        timeout: CLI_TIMEOUT_MS,
      });
      expect(r.stderr).toBe('');
      return r.stdout.split('>> ').slice(1);
    };
    const long = readReference(model).cases[3]!.prompt.slice(0, 120);
    const whole = chat([long, 'And then?', 'Go on.']);
    const saved = chat([long, 'And then?', `/save ${file}`]);
    expect(saved.slice(0, 2)).toEqual(whole.slice(0, 2));
    const info = JSON.parse(mnemo(['inspect-cache', file, '--json'])) as {
      valid: boolean;
      cached_tokens: number;
      cache: { layers: { kind: string; rows: number; meta: Record<string, unknown> }[] };
    };
    expect(info.valid).toBe(true);
    expect(info.cached_tokens).toBeGreaterThan(3 * config.sliding_window);
    info.cache.layers.forEach((l, i) => {
      if (config.layer_types[i] === 'sliding_attention') {
        expect(l.kind, `layer ${i}`).toBe('rotating');
        expect(l.meta.maxSize).toBe(config.sliding_window);
        expect(l.rows, `layer ${i}`).toBeLessThanOrEqual(config.sliding_window);
      } else {
        expect(l.kind, `layer ${i}`).toBe('standard');
        expect(l.rows).toBe(info.cached_tokens);
      }
    });
    // loading it continues exactly where the uninterrupted session went
    const resumed = chat([`/load ${file}`, 'Go on.']);
    expect(resumed[1]).toBe(whole[2]);
  });
});
