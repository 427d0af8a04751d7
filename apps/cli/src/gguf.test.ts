import { execFile, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { type FakeHub, startFakeHub } from '@mnemo/hub/testing';
import { syntheticGguf } from '@mnemo/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/** Longest one CLI run may take before it is killed: generous, since CI shares 2 cores with other work. */
const CLI_TIMEOUT_MS = 300_000;

// `mnemo` with GGUF files: a local path, and a Hub file by quant tag through a loopback stand-in for the Hub; and the
// founding promise through the CLI: `cache-prompt A` then `generate B --prompt-cache-file` equals `generate A+B`.
const cli = join(import.meta.dirname, '..', 'dist', 'mnemo.js');
const model = syntheticGguf('llama-q4_k_m.gguf');
const run = promisify(execFile);
const tmp = mkdtempSync(join(tmpdir(), 'mnemo-cli-gguf-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function mnemo(args: string[], env?: NodeJS.ProcessEnv): string {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', timeout: CLI_TIMEOUT_MS, env });
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

describe.skipIf(!existsSync(cli))('mnemo with a GGUF file', () => {
  const long = model
    ? (
        JSON.parse(readFileSync(model.replace(/\.gguf$/, '.expected.json'), 'utf8')) as {
          cases: { prompt: string }[];
        }
      ).cases[3]!.prompt
    : '';

  for (const templated of [false, true]) {
    it(`cache-prompt then generate --prompt-cache-file equals generate of the whole (${templated ? 'chat template' : 'raw'})`, () => {
      const mode = templated ? ['--system-prompt', 'Be brief.'] : ['--ignore-chat-template'];
      const whole = JSON.parse(
        mnemo(['generate', '--model', model, '--prompt', long, ...mode, ...GEN]),
      ) as Out;
      for (const chars of [1, 254, 511]) {
        const file = join(tmp, `c-${templated}-${chars}.safetensors`);
        mnemo([
          'cache-prompt',
          '--model',
          model,
          '--prompt',
          long.slice(0, chars),
          '--prompt-cache-file',
          file,
          ...mode,
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
            '7',
          ]),
        ) as Out;
        expect(comparable(cached), `split at ${chars}`).toEqual(comparable(whole));
        expect(cached.stats.cached_tokens).toBeGreaterThanOrEqual(chars);
      }
    });
  }

  it('says clearly when a .gguf path does not exist or is not GGUF', () => {
    const notGguf = join(tmp, 'text.gguf');
    writeFileSync(notGguf, 'not a model');
    for (const [path, pattern] of [
      [join(tmp, 'missing.gguf'), /GGUF file .*missing\.gguf does not exist/],
      [notGguf, /text\.gguf is not a GGUF file/],
    ] as const) {
      const r = spawnSync(process.execPath, [cli, 'generate', '--model', path, '--prompt', 'x'], {
        encoding: 'utf8',
      });
      expect(r.status).not.toBe(0);
      expect(r.stderr).toMatch(pattern);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
  });

  describe('from the Hub by quant tag', () => {
    let hub: FakeHub;
    const cache = mkdtempSync(join(tmpdir(), 'mnemo-hub-gguf-'));
    beforeAll(async () => {
      hub = await startFakeHub({
        repos: [
          {
            id: 'acme/tiny-GGUF',
            files: [
              { path: 'README.md', content: '# tiny' },
              { path: 'tiny-Q4_K_M.gguf', content: new Uint8Array(readFileSync(model)), lfs: true },
              {
                path: 'tiny-Q8_0.gguf',
                content: new Uint8Array(readFileSync(model.replace('q4_k_m', 'q8_0'))),
                lfs: true,
              },
            ],
          },
        ],
      });
    });
    afterAll(async () => {
      await hub?.close();
      rmSync(cache, { recursive: true, force: true });
    });

    it('downloads only that file, then generates exactly as from the local file', async () => {
      const env = { ...process.env, HF_ENDPOINT: hub.url, HF_HUB_CACHE: cache, HF_HUB_OFFLINE: '' };
      const args = ['generate', '--prompt', 'Hi! What are you up to?', '--ignore-chat-template', ...GEN];
      const remote = await run(process.execPath, [cli, ...args, '--model', 'acme/tiny-GGUF:Q4_K_M'], { env });
      const local = await run(process.execPath, [cli, ...args, '--model', model]);
      expect(comparable(JSON.parse(remote.stdout) as Out)).toEqual(
        comparable(JSON.parse(local.stdout) as Out),
      );
      expect(hub.contentRequests().some((q) => (q.file ?? '').includes('Q8_0'))).toBe(false);
      const none = await run(process.execPath, [cli, ...args, '--model', 'acme/tiny-GGUF:Q5_K_M'], {
        env,
      }).catch((e: { code: number; stderr: string }) => e);
      expect((none as { stderr: string }).stderr).toMatch(
        /^mnemo: .*no GGUF file for quant "Q5_K_M".*tiny-Q4_K_M\.gguf/,
      );
    });
  });
});
