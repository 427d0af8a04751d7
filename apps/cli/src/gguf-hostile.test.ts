import { execFileSync, spawnSync } from 'node:child_process';
import {
  closeSync,
  copyFileSync,
  existsSync,
  lstatSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  utimesSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openGguf } from '@mnemo/gguf';
import { decodeSafetensors } from '@mnemo/safetensors';
import { syntheticGguf } from '@mnemo/test-utils';
import { afterAll, describe, expect, it } from 'vitest';

/** Longest one CLI run may take before it is killed: generous, since CI shares 2 cores with other work. */
const CLI_TIMEOUT_MS = 300_000;

// Issue 10's hostile paths with GGUF models, through the bundled CLI: a FIFO or a device given as the model is refused
// at once (never opened, never waited on), a symbolic link is followed, and a prompt cache made before one tensor byte
// of the GGUF changed — where the old sampled fingerprint never looked — is refused with MODEL_MISMATCH.
const cli = join(import.meta.dirname, '..', 'dist', 'mnemo.js');
const fixture = syntheticGguf('llama-q8_0.gguf');
const tmp = mkdtempSync(join(tmpdir(), 'mnemo-cli-gguf-hostile-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const posix = process.platform !== 'win32';
const isRoot = process.getuid?.() === 0;

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}
function mnemo(args: string[]): Run {
  const r = spawnSync(process.execPath, [cli, ...args], {
    encoding: 'utf8',
    timeout: CLI_TIMEOUT_MS,
    input: '',
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Ends with status 1 and exactly one line `mnemo: …` matching `pattern`. */
function expectRefusal(r: Run, pattern: RegExp): void {
  expect(r.status, r.stderr).toBe(1);
  const lines = r.stderr.trimEnd().split('\n');
  expect(lines, r.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(/^mnemo: /);
  expect(lines[0]).toMatch(pattern);
}

const RAW = ['--ignore-chat-template', '--temp', '0', '--max-tokens', '3', '--json'];

describe.skipIf(!existsSync(cli))('mnemo with hostile GGUF model paths (needs `pnpm build`)', () => {
  it.skipIf(!posix)('a FIFO named model.gguf is refused at once, for generate and cache-prompt', () => {
    const fifo = join(tmp, 'model.gguf');
    execFileSync('mkfifo', [fifo]);
    expectRefusal(
      mnemo(['generate', '--model', fifo, '--prompt', 'Hi', ...RAW]),
      /model\.gguf is a named pipe \(FIFO\), not a model file or folder/,
    );
    expectRefusal(
      mnemo([
        'cache-prompt',
        '--model',
        fifo,
        '--prompt',
        'Hi',
        '--prompt-cache-file',
        join(tmp, 'x.safetensors'),
      ]),
      /is a named pipe \(FIFO\)/,
    );
    expect(lstatSync(fifo).isFIFO()).toBe(true);
    expect(existsSync(join(tmp, 'x.safetensors'))).toBe(false);
  });

  it.skipIf(!isRoot)('a device node (mknod, in a temporary folder) named model.gguf is never read', () => {
    const dev = join(tmp, 'zero.gguf');
    execFileSync('mknod', [dev, 'c', '1', '5']); // like /dev/zero
    expectRefusal(
      mnemo(['generate', '--model', dev, '--prompt', 'Hi', ...RAW]),
      /zero\.gguf is a character device, not a model file or folder/,
    );
    expect(statSync(dev).isCharacterDevice()).toBe(true);
  });

  it('a symbolic link to a GGUF file runs the file, and a cache made through it records the link', () => {
    const target = join(tmp, 'real.gguf');
    copyFileSync(fixture!, target);
    const link = join(tmp, 'link.gguf');
    symlinkSync(target, link);
    const viaLink = JSON.parse(mnemo(['generate', '--model', link, '--prompt', 'Hi', ...RAW]).stdout);
    const direct = JSON.parse(mnemo(['generate', '--model', target, '--prompt', 'Hi', ...RAW]).stdout);
    expect(viaLink.tokens).toEqual(direct.tokens);
    const pc = join(tmp, 'via-link.safetensors');
    expect(
      mnemo([
        'cache-prompt',
        '--model',
        link,
        '--prompt',
        'Hi',
        '--prompt-cache-file',
        pc,
        '--ignore-chat-template',
      ]).status,
    ).toBe(0);
    expect(decodeSafetensors(readFileSync(pc)).metadata.model).toBe(link);
    // without --model, the cache's own (absolute, local) GGUF path is used: no consent needed
    const again = mnemo(['generate', '--prompt-cache-file', pc, '--prompt', ' there', ...RAW]);
    expect(again.status, again.stderr).toBe(0);
  });

  it('refuses a prompt cache made before one tensor byte of the GGUF changed (MODEL_MISMATCH)', async () => {
    const model = join(tmp, 'changed.gguf');
    copyFileSync(fixture!, model);
    const past = new Date(Date.now() - 60_000);
    utimesSync(model, past, past); // settled: the first load remembers its tensor digests
    const pc = join(tmp, 'before-change.safetensors');
    const made = mnemo([
      'cache-prompt',
      '--model',
      model,
      '--prompt',
      'Hello',
      '--prompt-cache-file',
      pc,
      '--ignore-chat-template',
    ]);
    expect(made.status, made.stderr).toBe(0);
    expect(
      mnemo(['generate', '--model', model, '--prompt-cache-file', pc, '--prompt', ' there', ...RAW]).status,
    ).toBe(0);
    // token_embd.weight is 71,808 bytes; the old fingerprint hashed 16 × 4 KiB windows 4,514 bytes apart, so byte
    // 4,100 of it was never looked at. Change it in place and put the size and modification time back.
    const g = await openGguf(model);
    const at = g.info('token_embd.weight').byteOffset + 4100;
    await g.close();
    const fd = openSync(model, 'r+');
    writeSync(fd, Buffer.from([readFileSync(model)[at]! ^ 0x01]), 0, 1, at);
    closeSync(fd);
    utimesSync(model, past, past);
    expectRefusal(
      mnemo(['generate', '--model', model, '--prompt-cache-file', pc, '--prompt', ' there', ...RAW]),
      /before-change\.safetensors.*MODEL_MISMATCH/,
    );
    expectRefusal(
      mnemo(['generate', '--prompt-cache-file', pc, '--prompt', ' there', ...RAW]),
      /MODEL_MISMATCH/,
    );
  });
});
