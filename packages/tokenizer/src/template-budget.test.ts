import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { syntheticPreset } from '@mnemo/test-utils';
import { describe, expect, it } from 'vitest';
import { ChatTemplate } from './chat-template';
import { ChatTemplateError } from './errors';
import { loadTokenizer } from './load';
import { DEFAULT_TEMPLATE_LIMITS } from './template-budget';

// Chat templates ship with models and run on the user's machine: a looping or exploding one must stop with a clear
// error naming the template, quickly, never hang or take the process's memory.
const USER = [{ role: 'user', content: 'Hi!' }];

function failure(source: string, limits = {}): ChatTemplateError {
  const t = new ChatTemplate(source);
  let err: unknown;
  try {
    t.render(USER, { limits });
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(ChatTemplateError);
  return err as ChatTemplateError;
}

describe('chat template budget', () => {
  it('refuses range(100000000) at once (it ran ~50 s and died at the heap limit)', () => {
    const e = failure('{% for i in range(100000000) %}x{% endfor %}');
    expect(e.templateName).toBe('default');
    expect(e.message).toBe(
      'chat template "default": rendering stopped: range() of 100000000 numbers is more than the 100000 a render may make',
    );
  });

  it('stops nested loops at the time budget', () => {
    const e = failure(
      '{% for i in range(100000) %}{% for j in range(100000) %}{{ i }}{% endfor %}{% endfor %}',
      { timeMs: 200 },
    );
    expect(e.message).toMatch(
      /^chat template "default": rendering stopped: it ran longer than its 200 ms budget \(\d+ steps; a loop that does not end\?\)$/,
    );
  });

  it('stops a string that doubles, an indent, a join and a replace that would be too long, before making them', () => {
    const doubling =
      "{% set ns = namespace(s='x') %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}{% set n = (ns.s | upper) | length %}{% endfor %}";
    expect(failure(doubling).message).toMatch(
      /it made a string of \d+ characters, more than its budget of 4194304/,
    );
    expect(failure('{{ "a\\nb\\nc" | indent(100000000) }}').message).toMatch(
      /it made `indent` result of 300000005 characters/,
    );
    expect(
      failure('{% set s = range(100000) | join %}{% set t = s ~ s ~ s %}{{ [t, t, t, t] | join(t) }}')
        .message,
    ).toMatch(/it made `join` result of 10266690 characters/);
    const replacing =
      "{% set ns = namespace(s='xx') %}{% for i in range(60) %}{% set ns.s = ns.s.replace('x', 'xx') %}{% endfor %}";
    expect(failure(replacing).message).toMatch(/`replace` would make more than 100000 pieces/);
    const replaceFilter =
      "{% set ns = namespace(s='xx') %}{% for i in range(60) %}{% set ns.s = ns.s | replace('x', 'xx') %}{% endfor %}";
    expect(failure(replaceFilter).message).toMatch(/`replace` would make more than 100000 pieces/);
    expect(failure("{% set big = range(20000) | join %}{{ big.replace('1', big) }}").message).toMatch(
      /it made `replace` result of \d+ characters, more than its budget of 4194304/,
    );
    const splitting =
      "{% set ns = namespace(s='a b ') %}{% for i in range(20) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s.split() | length }}";
    expect(failure(splitting).message).toMatch(/`split` would make more than 100000 pieces/);
    expect(
      failure(
        "{% set ns = namespace(s='\n') %}{% for i in range(20) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s | indent }}",
      ).message,
    ).toMatch(/`indent` would make more than 100000 pieces/);
  });

  it('stops a render that keeps taking memory', () => {
    // 2,000 distinct flat strings of 1 Mi characters each would hold 2 GiB.
    const source =
      "{% set ns = namespace(s='x', l=[]) %}{% for i in range(20) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}" +
      '{% for i in range(2000) %}{% set ns.l = ns.l + [(ns.s ~ i) | upper] %}{% endfor %}{{ ns.l | length }}';
    expect(failure(source, { maxMemoryBytes: 64 * 2 ** 20 }).message).toMatch(
      /it took \d+ MiB of memory, more than its 64 MiB budget/,
    );
  });

  it('stops too many items with a clear message', () => {
    expect(
      failure(
        '{% set ns = namespace(l=[]) %}{% for i in range(100) %}{% set ns.l = ns.l + range(1000) %}{% endfor %}',
        { maxItems: 50_000 },
      ).message,
    ).toMatch(/it made a list or mapping of \d+ items, more than its budget of 50000/);
  });

  it('renders ordinary templates as before, and a template file with a loop bomb fails when applied', async () => {
    const t = new ChatTemplate(
      "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] | trim }}</s>{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}",
    );
    expect(t.render(USER, { addGenerationPrompt: true })).toBe('<|user|>Hi!</s><|assistant|>');
    expect(t.limits).toEqual(DEFAULT_TEMPLATE_LIMITS);
    expect(() => new ChatTemplate('x', {}, { limits: { timeMs: 0 } })).toThrow(RangeError);

    const dir = mkdtempSync(join(tmpdir(), 'mnemo-template-bomb-'));
    try {
      cpSync(syntheticPreset('llama-f32'), dir, { recursive: true });
      const config = JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8'));
      config.chat_template = '{% for i in range(100000000) %}x{% endfor %}';
      writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(config));
      const tok = await loadTokenizer(dir);
      expect(() => tok.encodeChat(USER)).toThrow(/chat template "default": rendering stopped: range\(\)/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
