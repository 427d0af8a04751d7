import { execFileSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { syntheticPreset } from '@mnemo/test-utils';
import { afterAll, describe, expect, it } from 'vitest';
import { TokenizerLoadError } from './errors';
import { loadTokenizer } from './load';

const tmp = mkdtempSync(join(tmpdir(), 'mnemo-tok-hostile-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const preset = syntheticPreset('llama-f32');
let n = 0;
function copy(): string {
  const dir = join(tmp, `m${n++}`);
  cpSync(preset, dir, { recursive: true });
  return dir;
}

describe('loading a tokenizer from hostile files', () => {
  it.skipIf(process.platform === 'win32')(
    'a FIFO as tokenizer.json, tokenizer_config.json or chat_template.jinja is refused at once',
    async () => {
      for (const file of ['tokenizer.json', 'tokenizer_config.json', 'chat_template.jinja']) {
        const dir = copy();
        if (file !== 'chat_template.jinja') unlinkSync(join(dir, file));
        execFileSync('mkfifo', [join(dir, file)]);
        await expect(loadTokenizer(dir)).rejects.toThrow(
          new TokenizerLoadError(join(dir, file), 'is a named pipe (FIFO), not a regular file'),
        );
      }
    },
  );

  it('refuses a token id far beyond the vocabulary (an added token with id 1e9 took 53 s to load)', async () => {
    const dir = copy();
    const tj = JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8'));
    tj.added_tokens.push({ id: 1e9, content: '<evil>', special: true, normalized: false });
    writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(tj));
    await expect(loadTokenizer(dir)).rejects.toThrow(
      `${join(dir, 'tokenizer.json')}: added token "<evil>" has id 1000000000: ids must be integers from 0 to 1554 for a vocabulary of this size`,
    );
    tj.added_tokens.pop();
    tj.model.vocab.a = -3;
    writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(tj));
    await expect(loadTokenizer(dir)).rejects.toThrow(/token "a" has id -3/);
  });

  it('knows how long a token can be ("<|reserved_0|>" is the longest here)', async () => {
    const tok = await loadTokenizer(preset);
    expect(tok.vocabSize).toBe(264);
    expect(tok.maxTokenChars).toBe('<|reserved_0|>'.length + 1);
  });
});
