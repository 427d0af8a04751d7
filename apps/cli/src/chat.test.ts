import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { syntheticPreset } from '@mnemo/test-utils';
import { afterAll, describe, expect, it } from 'vitest';

/** Longest one CLI run may take before it is killed: generous, since CI shares 2 cores with other work. */
const CLI_TIMEOUT_MS = 300_000;

const cli = join(import.meta.dirname, '..', 'dist', 'mnemo.js');
const model = syntheticPreset('llama-q4g32');
const tmp = mkdtempSync(join(tmpdir(), 'mnemo-chat-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Runs `mnemo chat` with `lines` on stdin; returns the replies (text after each `>> ` prompt). */
function chat(lines: string[], extra: string[] = []): string[] {
  const r = spawnSync(process.execPath, [cli, 'chat', '--model', model, '--max-tokens', '12', ...extra], {
    input: `${lines.join('\n')}\n`,
    encoding: 'utf8',
    timeout: CLI_TIMEOUT_MS,
  });
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  return r.stdout
    .split('>> ')
    .slice(1)
    .map((s) => s.replace(/\n$/, ''));
}

describe.skipIf(!existsSync(cli))('mnemo chat', () => {
  it('a conversation saved with /save and continued after /load answers exactly as one uninterrupted session', () => {
    const file = join(tmp, 'conversation.safetensors');
    const whole = chat(['Hi!', 'What next?', 'And then?']);
    const first = chat(['Hi!', 'What next?', `/save ${file}`]);
    expect(first.slice(0, 2)).toEqual(whole.slice(0, 2));
    expect(first[2]).toMatch(/^\[saved \d+ cached tokens and 4 messages/);
    const resumed = chat([`/load ${file}`, 'And then?']);
    expect(resumed[0]).toMatch(/^\[loaded \d+ cached tokens and 4 messages/);
    expect(resumed[1]).toBe(whole[2]);
    // the same through --prompt-cache-file
    const viaFlag = chat(['And then?'], ['--prompt-cache-file', file]);
    expect(viaFlag[0]).toBe(whole[2]);
  });

  it('keeps going after a bad command and says what is wrong', () => {
    const r = spawnSync(process.execPath, [cli, 'chat', '--model', model, '--max-tokens', '3'], {
      input: `/load ${join(tmp, 'missing.safetensors')}\n/frobnicate\nHi!\n`,
      encoding: 'utf8',
      timeout: CLI_TIMEOUT_MS,
    });
    expect(r.status).toBe(0);
    expect(r.stderr).toMatch(/^mnemo: .*missing\.safetensors/);
    expect(r.stdout).toMatch(/unknown command \/frobnicate/);
  });
});
