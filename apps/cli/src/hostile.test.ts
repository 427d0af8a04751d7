import { execFile, execFileSync, spawnSync } from 'node:child_process';
import {
  chmodSync,
  cpSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { type FakeHub, repoFromDirectory, startFakeHub } from '@mnemo/hub/testing';
import { decodeSafetensors, encodeSafetensors } from '@mnemo/safetensors';
import { promptCacheMetadataDigest, syntheticPreset } from '@mnemo/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/** Longest one CLI run may take before it is killed: generous, since CI shares 2 cores with other work. */
const CLI_TIMEOUT_MS = 300_000;

// The audit's hostile paths and files, through the bundled CLI as users run it. Every run has a timeout: a FIFO or a
// looping template used to hang or crash, here each must end quickly with one clear `mnemo:` line.
const cli = join(import.meta.dirname, '..', 'dist', 'mnemo.js');
const preset = syntheticPreset('llama-f32');
const tmp = mkdtempSync(join(tmpdir(), 'mnemo-cli-hostile-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const posix = process.platform !== 'win32';
const isRoot = process.getuid?.() === 0;

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}
function mnemo(args: string[], opts: { input?: string; cwd?: string; env?: NodeJS.ProcessEnv } = {}): Run {
  const r = spawnSync(process.execPath, [cli, ...args], {
    encoding: 'utf8',
    timeout: CLI_TIMEOUT_MS,
    input: opts.input ?? '',
    ...(opts.cwd ? { cwd: opts.cwd } : {}),
    ...(opts.env ? { env: opts.env } : {}),
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** {@link mnemo} without blocking this process (needed while a server of this process answers the CLI). */
async function mnemoAsync(args: string[], env: NodeJS.ProcessEnv): Promise<Run> {
  return new Promise((resolve) => {
    const child = execFile(
      process.execPath,
      [cli, ...args],
      { env, timeout: CLI_TIMEOUT_MS },
      (err, stdout, stderr) =>
        resolve({ status: err ? (typeof err.code === 'number' ? err.code : null) : 0, stdout, stderr }),
    );
    child.stdin?.end();
  });
}

/** Ends with status 1 and exactly one line `mnemo: …` matching `pattern`, naming one error code at most once. */
function expectRefusal(r: Run, pattern: RegExp): void {
  expect(r.status, r.stderr).toBe(1);
  const lines = r.stderr.trimEnd().split('\n');
  expect(lines, r.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(/^mnemo: /);
  expect(lines[0]).toMatch(pattern);
  expect((lines[0]!.match(/\[[A-Z_]+\]/g) ?? []).length).toBeLessThanOrEqual(1);
}

let n = 0;
function modelCopy(edit?: (dir: string) => void): string {
  const dir = join(tmp, `model-${n++}`);
  cpSync(preset, dir, { recursive: true });
  edit?.(dir);
  return dir;
}
const file = (name: string) => join(tmp, name);
const cache = (path: string, extra: string[] = []) =>
  mnemo(['cache-prompt', '--model', preset, '--prompt', 'Hi! ', '--prompt-cache-file', path, ...extra]);

describe.skipIf(!existsSync(cli))('mnemo against hostile paths and files (needs `pnpm build`)', () => {
  describe('1. writing never replaces a non-file', () => {
    it.skipIf(!isRoot)(
      'a device node (made with mknod in a temporary folder) is refused and stays a device',
      () => {
        const dev = file('null-device');
        execFileSync('mknod', [dev, 'c', '1', '3']);
        expectRefusal(cache(dev), /is a character device, not a regular file: refusing to replace it/);
        expect(statSync(dev).isCharacterDevice()).toBe(true);
        const good = file('good.safetensors');
        expect(cache(good).status).toBe(0);
        expectRefusal(mnemo(['convert-cache', good, dev, '--to', 'mlx']), /is a character device/);
        expect(statSync(dev).isCharacterDevice()).toBe(true);
        const chat = mnemo(['chat', '--model', preset, '--max-tokens', '2'], { input: `Hi\n/save ${dev}\n` });
        expect(chat.stderr).toMatch(/is a character device, not a regular file/);
        expect(statSync(dev).isCharacterDevice()).toBe(true);
        expect(readdirSync(tmp).filter((f) => f.includes('.tmp-'))).toEqual([]);
      },
    );

    it.skipIf(!posix)('a FIFO is refused, a symbolic link is written through, modes are kept', () => {
      const fifo = file('out.fifo');
      execFileSync('mkfifo', [fifo]);
      expectRefusal(cache(fifo), /is a named pipe \(FIFO\), not a regular file/);
      expect(lstatSync(fifo).isFIFO()).toBe(true);
      const target = file('private.safetensors');
      expect(cache(target).status).toBe(0);
      expect(statSync(target).mode & 0o777).toBe(0o600 & ~process.umask()); // it holds the prompt
      chmodSync(target, 0o640);
      const link = file('link.safetensors');
      symlinkSync(target, link);
      expect(cache(link).status).toBe(0);
      expect(lstatSync(link).isSymbolicLink()).toBe(true);
      expect(statSync(target).mode & 0o777).toBe(0o640);
      expect(mnemo(['inspect-cache', link]).stdout).toMatch(/verdict: valid/);
    });
  });

  it('6. temporary files of killed writers are removed by the next write to their folder', () => {
    const folder = join(tmp, 'killed');
    mkdirSync(folder);
    const dead = spawnSync(process.execPath, ['-e', '0']).pid!; // a writer that no longer exists
    const stale = join(folder, `cache.safetensors.tmp-${dead}-0123456789ab`);
    writeFileSync(stale, Buffer.alloc(1 << 20));
    expect(cache(join(folder, 'cache.safetensors')).status).toBe(0);
    expect(readdirSync(folder)).toEqual(['cache.safetensors']);
  });

  describe('3. a FIFO never hangs a reader', () => {
    it.skipIf(!posix)('as the cache file of inspect-cache, generate, convert-cache and chat /load', () => {
      const fifo = file('in.fifo');
      execFileSync('mkfifo', [fifo]);
      const named = /in\.fifo: cannot read the file: is a named pipe \(FIFO\), not a regular file \[IO\]/;
      const inspect = mnemo(['inspect-cache', fifo]);
      expect(inspect.status).toBe(1);
      expect(inspect.stdout).toMatch(named);
      expectRefusal(
        mnemo(['generate', '--model', preset, '--prompt', 'x', '--prompt-cache-file', fifo]),
        named,
      );
      expectRefusal(mnemo(['generate', '--prompt', 'x', '--prompt-cache-file', fifo]), named);
      expectRefusal(mnemo(['convert-cache', fifo, file('x.safetensors'), '--to', 'mlx']), named);
      const chat = mnemo(['chat', '--model', preset, '--max-tokens', '2'], { input: `/load ${fifo}\nHi\n` });
      expect(chat.status).toBe(0);
      expect(chat.stderr).toMatch(named);
    });

    it.skipIf(!posix)("as a model's config.json or model.safetensors", () => {
      for (const name of ['config.json', 'model.safetensors']) {
        const dir = modelCopy((d) => {
          unlinkSync(join(d, name));
          execFileSync('mkfifo', [join(d, name)]);
        });
        expectRefusal(
          mnemo(['generate', '--model', dir, '--prompt', 'x']),
          /is a named pipe \(FIFO\), not a regular file/,
        );
      }
    });
  });

  it('2. a cache made before a weight byte changed where the old fingerprint never looked is refused', () => {
    const dir = modelCopy();
    const path = file('before-change.safetensors');
    expect(
      mnemo(['cache-prompt', '--model', dir, '--prompt', 'Hi! ', '--prompt-cache-file', path]).status,
    ).toBe(0);
    // byte 4,106 of the embedding lies between the first two of the 16 x 4 KiB windows the fingerprint sampled
    const weights = join(dir, 'model.safetensors');
    const bytes = readFileSync(weights);
    const header = JSON.parse(bytes.subarray(8, 8 + Number(bytes.readBigUInt64LE(0))).toString());
    const begin = 8 + Number(bytes.readBigUInt64LE(0)) + header['model.embed_tokens.weight'].data_offsets[0];
    bytes[begin + 4106]! ^= 1;
    writeFileSync(weights, bytes);
    expectRefusal(
      mnemo(['generate', '--model', dir, '--prompt', 'What?', '--prompt-cache-file', path]),
      /made for another model: model_fingerprint [0-9a-f]{64}, this model is [0-9a-f]{64} \[MODEL_MISMATCH\]/,
    );
  });

  it('4. a looping chat template stops quickly with an error naming the template', () => {
    const dir = modelCopy((d) => {
      const c = JSON.parse(readFileSync(join(d, 'tokenizer_config.json'), 'utf8'));
      c.chat_template =
        '{% for i in range(100000000) %}x{% endfor %}{% for i in range(9999) %}{% for j in range(9999) %}y{% endfor %}{% endfor %}';
      writeFileSync(join(d, 'tokenizer_config.json'), JSON.stringify(c));
    });
    expectRefusal(
      mnemo(['generate', '--model', dir, '--prompt', 'Hi']),
      /^mnemo: chat template "default": rendering stopped: range\(\) of 100000000 numbers is more than the 100000 a render may make$/,
    );
  });

  it("5. a cache file's huge prompt entry is refused before it is used", () => {
    const path = file('huge-prompt.safetensors');
    expect(cache(path, ['--ignore-chat-template']).status).toBe(0);
    const d = decodeSafetensors(readFileSync(path));
    const m: Record<string, string> = { ...d.metadata, prompt: 'x'.repeat(20_000_000) };
    m.metadata_checksum = promptCacheMetadataDigest(m);
    writeFileSync(path, encodeSafetensors([...d.tensors.values()], m));
    expect(mnemo(['inspect-cache', path]).status).toBe(0); // the file itself is consistent
    expectRefusal(
      mnemo(['generate', '--prompt', 'What?', '--prompt-cache-file', path]),
      /its prompt and messages hold 20000000 characters, more than its 5 cached tokens can spell \(at most \d+\) \[CORRUPT\]/,
    );
  });

  it('7. a failed chat turn leaves the conversation as it was (a template that needs alternating roles)', () => {
    const dir = modelCopy((d) => {
      const c = JSON.parse(readFileSync(join(d, 'tokenizer_config.json'), 'utf8'));
      c.chat_template =
        "{% for m in messages %}{% if (m['role'] == 'user') != (loop.index0 % 2 == 0) %}" +
        "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}" +
        "{% if 'FAIL' in m['content'] %}{{ raise_exception('this template refuses FAIL') }}{% endif %}" +
        "<|{{ m['role'] }}|>{{ m['content'] }}</s>{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}";
      writeFileSync(join(d, 'tokenizer_config.json'), JSON.stringify(c));
    });
    const chat = (lines: string[]) =>
      mnemo(['chat', '--model', dir, '--max-tokens', '6'], { input: `${lines.join('\n')}\n` });
    const plain = chat(['Hi!', 'And then?']);
    expect(plain.stderr).toBe('');
    const failed = chat(['FAIL please', 'Hi!', 'And then?']);
    expect(failed.status).toBe(0);
    expect(failed.stderr).toBe(
      'mnemo: chat template "default": raise_exception: this template refuses FAIL\n',
    );
    const replies = (r: Run) => r.stdout.split('>> ').filter((s) => s.trim() !== '');
    expect(replies(failed)).toEqual(replies(plain));
  });

  describe('8. the cache file never chooses what to download', () => {
    let hub: FakeHub;
    const hfCache = join(tmp, 'hf-cache');
    beforeAll(async () => {
      hub = await startFakeHub({ repos: [repoFromDirectory('acme/llama-f32', preset)] });
    });
    afterAll(async () => {
      await hub?.close();
    });
    const env = () => ({ ...process.env, HF_ENDPOINT: hub.url, HF_HUB_CACHE: hfCache, HF_HUB_OFFLINE: '' });

    it('a Hub id in the file is used only with --trust-cache-model; nothing is contacted before', async () => {
      const path = file('from-hub.safetensors');
      const made = await mnemoAsync(
        ['cache-prompt', '--model', 'acme/llama-f32', '--prompt', 'Hi! ', '--prompt-cache-file', path],
        env(),
      );
      expect(made.status, made.stderr).toBe(0);
      expect(decodeSafetensors(readFileSync(path)).metadata.model).toBe('acme/llama-f32');
      hub.resetRequests();
      const refused = await mnemoAsync(['generate', '--prompt', 'What?', '--prompt-cache-file', path], env());
      expectRefusal(
        refused,
        /from-hub\.safetensors names the model "acme\/llama-f32", which is not a local folder or file \(a Hugging Face repo id\?\): a cache file does not choose what is downloaded\. Pass --model acme\/llama-f32 to use it, or --trust-cache-model$/,
      );
      expect(hub.requests).toHaveLength(0);
      // a crafted entry naming another repository: still nothing contacted
      const d = decodeSafetensors(readFileSync(path));
      const m: Record<string, string> = { ...d.metadata, model: 'evil/exfiltrate' };
      m.metadata_checksum = promptCacheMetadataDigest(m);
      const crafted = file('crafted-model.safetensors');
      writeFileSync(crafted, encodeSafetensors([...d.tensors.values()], m));
      expectRefusal(
        await mnemoAsync(['generate', '--prompt', 'x', '--prompt-cache-file', crafted], env()),
        /evil\/exfiltrate/,
      );
      expect(hub.requests).toHaveLength(0);
      const trusted = await mnemoAsync(
        [
          'generate',
          '--prompt',
          'What?',
          '--prompt-cache-file',
          path,
          '--trust-cache-model',
          '--json',
          '--max-tokens',
          '2',
        ],
        env(),
      );
      expect(trusted.stderr).toBe('');
      expect(JSON.parse(trusted.stdout).stats.cached_tokens).toBeGreaterThan(0);
    });

    it('a relative --model is stored as an absolute folder, so the file works from anywhere', () => {
      const work = join(tmp, 'work');
      mkdirSync(work);
      const path = join(work, 'rel.safetensors');
      const made = mnemo(
        [
          'cache-prompt',
          '--model',
          relative(work, preset),
          '--prompt',
          'Hi! ',
          '--prompt-cache-file',
          'rel.safetensors',
        ],
        { cwd: work },
      );
      expect(made.status, made.stderr).toBe(0);
      expect(decodeSafetensors(readFileSync(path)).metadata.model).toBe(preset);
      const r = mnemo(
        ['generate', '--prompt', 'What?', '--prompt-cache-file', path, '--json', '--max-tokens', '2'],
        { cwd: tmpdir() },
      );
      expect(r.stderr).toBe('');
    });
  });

  describe('9. the smaller items', () => {
    /** A flag refused by the command-line parser: its own `error: option …` line, then the usage hint. */
    const expectFlagError = (r: Run, pattern: RegExp) => {
      expect(r.status).toBe(1);
      expect(r.stderr.split('\n')[0]).toMatch(pattern);
      expect(r.stdout).toBe('');
    };

    it('--max-kv-size below 5 is refused by the flag check with the reason', () => {
      for (const v of ['1', '4'])
        expectFlagError(
          mnemo(['generate', '--model', preset, '--prompt', 'x', '--max-kv-size', v]),
          new RegExp(
            `^error: option '--max-kv-size <n>' argument '${v}' is invalid\\. It must be at least 5: a rotating cache keeps the first 4 tokens and at least one recent one\\.$`,
          ),
        );
    });

    it("--prompt-cache-file '' is refused instead of running without a cache", () => {
      const empty =
        /^error: option '--prompt-cache-file <file>' argument '' is invalid\. A file name is needed\.$/;
      expectFlagError(
        mnemo(['generate', '--model', preset, '--prompt', 'x', '--prompt-cache-file', '']),
        empty,
      );
      expectFlagError(
        mnemo(['cache-prompt', '--model', preset, '--prompt', 'x', '--prompt-cache-file', '']),
        empty,
      );
      expectFlagError(mnemo(['chat', '--model', preset, '--prompt-cache-file', '']), empty);
    });

    it('/save and /load without a file say how to use them', () => {
      const r = mnemo(['chat', '--model', preset, '--max-tokens', '2'], { input: '/save\n/load  \n' });
      expect(r.stdout).toMatch(/usage: \/save FILE/);
      expect(r.stdout).toMatch(/usage: \/load FILE/);
      expect(r.stdout).not.toMatch(/unknown command/);
    });

    it('an error names its code once and says what failed once', () => {
      const r = cache(join(tmp, 'no', 'such', 'folder', 'c.safetensors'));
      expectRefusal(
        r,
        /c\.safetensors: creating the temporary file failed: ENOENT: no such file or directory \[IO\]$/,
      );
      expect(r.stderr.match(/failed/g)).toHaveLength(1);
    });

    it("a prompt past the model's context is refused unless --ignore-context-limit", () => {
      const dir = modelCopy((d) => {
        const c = JSON.parse(readFileSync(join(d, 'config.json'), 'utf8'));
        writeFileSync(join(d, 'config.json'), JSON.stringify({ ...c, max_position_embeddings: 16 }));
      });
      const args = [
        'generate',
        '--model',
        dir,
        '--prompt',
        'x'.repeat(20),
        '--ignore-chat-template',
        '--json',
        '--max-tokens',
        '2',
      ];
      expectRefusal(
        mnemo(args),
        /the prompt has 21 tokens; with one token generated that is 22 positions, more than the model's context of 16/,
      );
      const r = mnemo([...args, '--ignore-context-limit']);
      expect(r.stderr).toBe('');
      expect(JSON.parse(r.stdout).tokens).toHaveLength(2);
    });
  });
});
