import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readReference, syntheticPreset } from '@mnemo/test-utils';
import { afterAll, describe, expect, it } from 'vitest';

/** Longest one CLI run may take before it is killed: generous, since CI shares 2 cores with other work. */
const CLI_TIMEOUT_MS = 300_000;

// The founding promise, through the CLI: `cache-prompt A` then `generate B --prompt-cache-file` gives exactly the
// prompt ids, tokens and logprobs of `generate A+B` — for prefixes around the 256-row growth steps, several character
// splits, raw and templated prompts, standard (f32, f16), quantized and rotating caches (one that wraps before the end
// of the prompt), and any prefill step size.
const cli = join(import.meta.dirname, '..', 'dist', 'mnemo.js');
const model = syntheticPreset('llama-f32');
const long = readReference(model).cases[3]!.prompt; // 629 ASCII characters: one token per character
const tmp = mkdtempSync(join(tmpdir(), 'mnemo-pc-'));
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
const GEN = ['--temp', '0', '--json', '--logprobs', '5', '--max-tokens', '6'];
const comparable = (o: Out) => ({ prompt_tokens: o.prompt_tokens, tokens: o.tokens, logprobs: o.logprobs });

const kinds: Record<string, string[]> = {
  standard: [],
  f16: ['--kv-dtype', 'f16'],
  'quantized 8-bit g32': ['--kv-bits', '8', '--kv-group-size', '32'],
  'quantized 4-bit g32': ['--kv-bits', '4', '--kv-group-size', '32'],
  'rotating 300, wrapped': ['--max-kv-size', '300'],
};
// BOS (+ <|user|> with the template) counts as prompt tokens: a prefix of n tokens is the first n-1 (n-2) characters.
const PREFIXES = [1, 255, 256, 257, 511, 512, 513];

describe.skipIf(!existsSync(cli))(
  'cache-prompt then generate --prompt-cache-file equals generate of the whole',
  () => {
    for (const [kindName, kindFlags] of Object.entries(kinds)) {
      for (const templated of [false, true]) {
        const mode = templated ? ['--system-prompt', 'Be brief.'] : ['--ignore-chat-template'];
        const overhead = templated ? 3 : 1; // BOS, <|system|>…</s><|user|> are counted below from a real run
        it(`${kindName}, ${templated ? 'chat template' : 'raw'}`, () => {
          const whole = JSON.parse(
            mnemo(['generate', '--model', model, '--prompt', long, ...mode, ...kindFlags, ...GEN]),
          ) as Out;
          expect(whole.stats.cached_tokens).toBe(0);
          // --prefill-step-size 1, 7 and 512 give the same result
          for (const step of ['1', '7']) {
            const o = JSON.parse(
              mnemo([
                'generate',
                '--model',
                model,
                '--prompt',
                long,
                ...mode,
                ...kindFlags,
                ...GEN,
                '--prefill-step-size',
                step,
              ]),
            ) as Out;
            expect(comparable(o)).toEqual(comparable(whole));
          }
          const lead = templated ? whole.prompt_tokens.indexOf(long.charCodeAt(0)) : overhead;
          const splits = [
            ...PREFIXES.map((n) => Math.max(0, n - lead)),
            long.indexOf(' fox') + 1, // mid-sentence, after a space
            long.indexOf('quick') + 2, // mid-word
          ];
          for (const chars of splits) {
            const a = long.slice(0, chars);
            const b = long.slice(chars);
            const file = join(tmp, `c-${kindName.replace(/\W/g, '')}-${templated}-${chars}.safetensors`);
            mnemo([
              'cache-prompt',
              '--model',
              model,
              '--prompt',
              a,
              '--prompt-cache-file',
              file,
              ...mode,
              ...kindFlags,
            ]);
            const step = chars % 2 === 0 ? '7' : '512';
            const cached = JSON.parse(
              mnemo([
                'generate',
                '--prompt-cache-file',
                file,
                '--prompt',
                b,
                ...GEN,
                '--prefill-step-size',
                step,
              ]),
            ) as Out;
            expect(comparable(cached), `split at ${chars} characters`).toEqual(comparable(whole));
            // the cache was used: all of A's tokens but at most a boundary token were reused
            expect(cached.stats.cached_tokens).toBeGreaterThanOrEqual(lead + chars - 1);
          }
        });
      }
    }

    it('the founding case: "Hi! " then "What are you up to?" with the chat template', () => {
      const file = join(tmp, 'hi.safetensors');
      mnemo(['cache-prompt', '--model', model, '--prompt', 'Hi! ', '--prompt-cache-file', file]);
      const cached = JSON.parse(
        mnemo(['generate', '--prompt-cache-file', file, '--prompt', 'What are you up to?', ...GEN]),
      ) as Out;
      const whole = JSON.parse(
        mnemo(['generate', '--model', model, '--prompt', 'Hi! What are you up to?', ...GEN]),
      ) as Out;
      expect(comparable(cached)).toEqual(comparable(whole));
      expect(cached.stats.cached_tokens).toBeGreaterThan(2);
    });

    it('a cache file holds used rows only: its size grows with the cached tokens, and a 1-token cache is tiny', () => {
      const size = (chars: number) => {
        const file = join(tmp, `size-${chars}.safetensors`);
        mnemo([
          'cache-prompt',
          '--model',
          model,
          '--prompt',
          long.slice(0, chars),
          '--prompt-cache-file',
          file,
          '--ignore-chat-template',
        ]);
        return statSync(file).size;
      };
      const one = size(0 + 1) - 0; // BOS + 1 character = 2 tokens
      const s100 = size(100);
      const s300 = size(300);
      // per token: 2 layers × (keys + values) × 2 kv heads × 16 × 4 bytes = 512 bytes
      expect(s300 - s100).toBeGreaterThanOrEqual(200 * 512);
      expect(s300 - s100).toBeLessThan(200 * 512 + 2000); // metadata grows with the token list and the prompt text
      expect(one).toBeLessThan(8 * 1024);
    });
  },
);

describe.skipIf(!existsSync(cli))('convert-cache', () => {
  it('mnemo → mlx-lm layout → mnemo, then continuing gives the uncached result', () => {
    const a = join(tmp, 'conv-a.safetensors');
    const mlx = join(tmp, 'conv-mlx.safetensors');
    const b = join(tmp, 'conv-b.safetensors');
    mnemo(['cache-prompt', '--model', model, '--prompt', 'Hi! ', '--prompt-cache-file', a]);
    mnemo(['convert-cache', a, mlx, '--to', 'mlx']);
    mnemo(['convert-cache', mlx, b, '--to', 'mnemo', '--model', model, '--prompt', 'Hi! ']);
    const viaMlx = JSON.parse(
      mnemo(['generate', '--prompt-cache-file', b, '--prompt', 'What are you up to?', ...GEN]),
    ) as Out;
    const whole = JSON.parse(
      mnemo(['generate', '--model', model, '--prompt', 'Hi! What are you up to?', ...GEN]),
    ) as Out;
    expect(comparable(viaMlx)).toEqual(comparable(whole));
    expect(viaMlx.stats.cached_tokens).toBeGreaterThan(2);
  });
});

describe.skipIf(!existsSync(cli))(
  'a prompt cache file it cannot trust is refused, each reason with its own message',
  () => {
    const run = (args: string[]) =>
      spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', timeout: CLI_TIMEOUT_MS });
    const good = join(tmp, 'trust.safetensors');
    const variant = (name: string, change: (b: Buffer) => Buffer) => {
      const p = join(tmp, name);
      writeFileSync(p, change(readFileSync(good)));
      return p;
    };
    const refuse = (args: string[], pattern: RegExp) => {
      const r = run(args);
      expect(r.status).not.toBe(0);
      expect(r.stdout).toBe('');
      expect(r.stderr).toMatch(/^mnemo: /);
      expect(r.stderr).toMatch(pattern);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    };
    const gen = (file: string, m = model) => [
      'generate',
      '--model',
      m,
      '--prompt-cache-file',
      file,
      '--prompt',
      'x',
      ...GEN,
    ];

    it('truncated, flipped data byte, unknown version, wrong model, wrong tokenizer', () => {
      mnemo(['cache-prompt', '--model', model, '--prompt', 'Hi! ', '--prompt-cache-file', good]);
      refuse(
        gen(variant('truncated.safetensors', (b) => b.subarray(0, b.length - 100))),
        /\[TRUNCATED\]|truncated/i,
      );
      refuse(
        gen(
          variant('flipped.safetensors', (b) => {
            const c = Buffer.from(b);
            c[c.length - 10] ^= 0x01;
            return c;
          }),
        ),
        /\[CHECKSUM\]/,
      );
      refuse(
        gen(
          variant('v3.safetensors', (b) =>
            Buffer.from(
              b.toString('latin1').replace('"format_version":"2"', '"format_version":"3"'),
              'latin1',
            ),
          ),
        ),
        /\[UNKNOWN_VERSION\]|\[CORRUPT\]/,
      );
      refuse(gen(good, syntheticPreset('llama-q4g32')), /\[MODEL_MISMATCH\]/);
      // same weights, another tokenizer: a copy of the model whose last reserved token is renamed
      const other = join(tmp, 'other-tokenizer');
      cpSync(model, other, { recursive: true });
      const tj = JSON.parse(readFileSync(join(other, 'tokenizer.json'), 'utf8')) as {
        added_tokens: { id: number; content: string }[];
      };
      tj.added_tokens.find((t) => t.id === 263)!.content = '<|other|>';
      writeFileSync(join(other, 'tokenizer.json'), JSON.stringify(tj));
      refuse(gen(good, other), /\[TOKENIZER_MISMATCH\]/);
      // and the file itself says what is wrong
      const r = run(['inspect-cache', join(tmp, 'flipped.safetensors')]);
      expect(r.status).toBe(1);
      expect(r.stdout).toMatch(/verdict: INVALID/);
    });
  },
);
