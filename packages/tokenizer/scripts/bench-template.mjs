#!/usr/bin/env node
// Prints what the chat-template budget costs on ordinary renders: the same templates rendered with the plain
// @huggingface/jinja interpreter and with mnemo's BoundedInterpreter (time, output-size and memory checks at every
// step), median of many renders each. Needs `pnpm --filter @mnemo/tokenizer build`. Not a test: timings vary.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Environment, Interpreter, Template } from '@huggingface/jinja';
import { BoundedInterpreter, DEFAULT_TEMPLATE_LIMITS } from '../dist/index.js';

const real = join(import.meta.dirname, '..', '..', '..', '..', 'shared', 'fixtures', 'real', 'tokenizers');
const templates = [];
for (const name of ['tinyllama-1.1b-chat-v1.0', 'phi-3-mini-4k-instruct', 'qwen2.5-instruct']) {
  try {
    const c = JSON.parse(readFileSync(join(real, name, 'tokenizer_config.json'), 'utf8'));
    if (typeof c.chat_template === 'string') templates.push([name, c.chat_template]);
  } catch {
    // fixture not here
  }
}
templates.push([
  'synthetic',
  "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] | trim }}</s>{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}",
]);

function messages(n) {
  const out = [{ role: 'system', content: 'You are a helpful assistant.' }];
  for (let i = 0; i < n; i++)
    out.push({
      role: i % 2 ? 'assistant' : 'user',
      content: `Message ${i}: ${'lorem ipsum dolor sit amet '.repeat(20)}`,
    });
  return out;
}

function time(fn, reps) {
  const t = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    fn();
    t.push(performance.now() - t0);
  }
  t.sort((a, b) => a - b);
  return t[Math.floor(t.length / 2)];
}

const rows = [['template', 'messages', 'output chars', 'plain ms', 'bounded ms', 'overhead']];
for (const [name, source] of templates) {
  const parsed = new Template(source).parsed;
  for (const n of [2, 20, 200]) {
    const vars = {
      messages: messages(n),
      add_generation_prompt: true,
      bos_token: '<s>',
      eos_token: '</s>',
      tools: null,
    };
    const env = () => {
      const e = new Environment();
      for (const [k, v] of Object.entries(vars)) e.set(k, v);
      return e;
    };
    const out = new Interpreter(env()).run(parsed).value;
    const reps = n >= 200 ? 41 : 201;
    // warm both up, then alternate to share out the machine's noise
    time(() => new Interpreter(env()).run(parsed), 20);
    time(() => new BoundedInterpreter(env(), DEFAULT_TEMPLATE_LIMITS).run(parsed), 20);
    const plain = time(() => new Interpreter(env()).run(parsed), reps);
    const bounded = time(() => new BoundedInterpreter(env(), DEFAULT_TEMPLATE_LIMITS).run(parsed), reps);
    rows.push([
      name,
      n,
      out.length,
      plain.toFixed(3),
      bounded.toFixed(3),
      `${((bounded / plain - 1) * 100).toFixed(0)}%`,
    ]);
  }
}
for (const r of rows) console.log(`| ${r.join(' | ')} |`);
