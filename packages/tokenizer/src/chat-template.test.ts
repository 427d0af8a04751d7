import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { syntheticPreset } from '@mnemo/test-utils';
import { beforeAll, describe, expect, it } from 'vitest';
import { type ChatMessage, ChatTemplate, chatTemplateFromConfig, strftime } from './chat-template';
import { ChatTemplateError } from './errors';
import { loadTokenizer } from './load';
import { realTokenizerDir } from './test-texts';
import { createTokenizer, type Tokenizer } from './tokenizer';
import type { TokenizerConfig, TokenizerJson } from './types';

const PIRATE: ChatMessage[] = [
  { role: 'system', content: 'You are a friendly chatbot who always responds in the style of a pirate' },
  { role: 'user', content: 'How many helicopters can a human eat in one sitting?' },
];

describe.skipIf(!realTokenizerDir('tinyllama-1.1b-chat-v1.0'))(
  'TinyLlama chat template (Zephyr style)',
  () => {
    let tok: Tokenizer;
    beforeAll(async () => {
      tok = await loadTokenizer(realTokenizerDir('tinyllama-1.1b-chat-v1.0')!);
    });

    it('renders what transformers renders', () => {
      // The template puts a newline after every {{ ... }}; trim_blocks removes the one after each {% ... %}.
      // This is the prompt shown on the TinyLlama-1.1B-Chat-v1.0 model card.
      expect(tok.hasChatTemplate).toBe(true);
      expect(tok.chatTemplateNames).toEqual(['default']);
      expect(tok.applyChatTemplate(PIRATE, { addGenerationPrompt: true })).toBe(
        '<|system|>\nYou are a friendly chatbot who always responds in the style of a pirate</s>\n' +
          '<|user|>\nHow many helicopters can a human eat in one sitting?</s>\n' +
          '<|assistant|>\n',
      );
      expect(tok.applyChatTemplate(PIRATE)).toBe(
        '<|system|>\nYou are a friendly chatbot who always responds in the style of a pirate</s>\n' +
          '<|user|>\nHow many helicopters can a human eat in one sitting?</s>\n',
      );
      expect(
        tok.applyChatTemplate([
          { role: 'user', content: 'Hi' },
          { role: 'assistant', content: 'Arr!' },
        ]),
      ).toBe('<|user|>\nHi</s>\n<|assistant|>\nArr!</s>\n');
    });

    it('encodes the rendered chat without adding BOS unless asked, and never twice', () => {
      const rendered = tok.applyChatTemplate(PIRATE, { addGenerationPrompt: true });
      const ids = tok.encodeChat(PIRATE, { addGenerationPrompt: true });
      expect(ids).toEqual(tok.encode(rendered, { addSpecialTokens: false }));
      expect(ids[0]).not.toBe(1);
      expect(ids.filter((id) => id === 2)).toHaveLength(2); // each </s> is one special token
      const withBos = tok.encodeChat(PIRATE, { addGenerationPrompt: true, addSpecialTokens: true });
      expect(withBos).toEqual([1, ...ids]);
      expect(tok.encode(`<s>${rendered}`)).toEqual(withBos);
    });

    it('continueFinalMessage leaves the last message open', () => {
      const text = tok.applyChatTemplate([...PIRATE, { role: 'assistant', content: 'Arr, matey' }], {
        continueFinalMessage: true,
      });
      expect(text.endsWith('<|assistant|>\nArr, matey')).toBe(true);
      expect(() =>
        tok.applyChatTemplate(PIRATE, { continueFinalMessage: true, addGenerationPrompt: true }),
      ).toThrow(ChatTemplateError);
    });
  },
);

describe.skipIf(!realTokenizerDir('phi-3-mini-4k-instruct'))('Phi-3-mini chat template', () => {
  it('renders and encodes to single chat-token ids', async () => {
    const tok = await loadTokenizer(realTokenizerDir('phi-3-mini-4k-instruct')!);
    const chat = [{ role: 'user', content: 'Hello' }];
    expect(tok.applyChatTemplate(chat, { addGenerationPrompt: true })).toBe(
      '<|user|>\nHello<|end|>\n<|assistant|>\n',
    );
    expect(tok.applyChatTemplate(chat)).toBe('<|user|>\nHello<|end|>\n<|endoftext|>');
    // <|user|>, <|end|> and <|assistant|> have rstrip: the newlines after them are absorbed
    expect(tok.encodeChat(chat, { addGenerationPrompt: true })).toEqual([32010, 15043, 32007, 32001]);
  });
});

const WEATHER_TOOL = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Get the weather',
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
  },
};

const QWEN_TOOLS_HEADER =
  '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.\n\n# Tools\n\n' +
  'You may call one or more functions to assist with the user query.\n\n' +
  'You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n' +
  '{"type": "function", "function": {"name": "get_weather", "description": "Get the weather", "parameters": ' +
  '{"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}\n</tools>\n\n' +
  'For each function call, return a json object with function name and arguments within <tool_call></tool_call> ' +
  'XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n';

describe.skipIf(!realTokenizerDir('qwen2.5-instruct'))(
  'Qwen2.5 ChatML + tools template (tokenizer_config.json only)',
  () => {
    let config: TokenizerConfig;
    let template: ChatTemplate;
    beforeAll(async () => {
      const path = join(realTokenizerDir('qwen2.5-instruct')!, 'tokenizer_config.json');
      config = JSON.parse(await readFile(path, 'utf8'));
      template = chatTemplateFromConfig(config)!;
    });

    it('passes the special tokens as transformers does (bos_token null is left out)', () => {
      expect(template.specialTokens.eos_token).toBe('<|im_end|>');
      expect(template.specialTokens.pad_token).toBe('<|endoftext|>');
      expect('bos_token' in template.specialTokens).toBe(false);
      expect(template.specialTokens.additional_special_tokens).toContain('<|im_start|>');
    });

    it('renders the default system prompt without tools', () => {
      expect(template.render([{ role: 'user', content: 'Hi' }], { addGenerationPrompt: true })).toBe(
        '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' +
          '<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n',
      );
      expect(
        template.render([
          { role: 'system', content: 'Be brief.' },
          { role: 'user', content: 'Hi' },
        ]),
      ).toBe('<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n');
    });

    it('renders tools (tojson with Python separators), tool calls and tool responses', () => {
      const messages: ChatMessage[] = [
        { role: 'user', content: "What's the weather in Paris?" },
        {
          role: 'assistant',
          content: '',
          tool_calls: [{ type: 'function', function: { name: 'get_weather', arguments: { city: 'Paris' } } }],
        },
        { role: 'tool', content: '{"temp": 20}' },
        { role: 'tool', content: '{"sky": "clear"}' },
      ];
      expect(template.render(messages, { tools: [WEATHER_TOOL], addGenerationPrompt: true })).toBe(
        QWEN_TOOLS_HEADER +
          "<|im_start|>user\nWhat's the weather in Paris?<|im_end|>\n" +
          '<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>\n' +
          '<|im_start|>user\n<tool_response>\n{"temp": 20}\n</tool_response>\n<tool_response>\n{"sky": "clear"}\n</tool_response><|im_end|>\n' +
          '<|im_start|>assistant\n',
      );
    });

    it('chooses named templates as transformers does', () => {
      const named = new ChatTemplate(
        [
          { name: 'default', template: 'DEFAULT{% for m in messages %}|{{ m.content }}{% endfor %}' },
          { name: 'tool_use', template: config.chat_template as string },
        ],
        { eos_token: '<|im_end|>' },
      );
      const chat = [{ role: 'user', content: 'Hi' }];
      expect(named.names).toEqual(['default', 'tool_use']);
      expect(named.render(chat)).toBe('DEFAULT|Hi');
      expect(named.render(chat, { tools: [WEATHER_TOOL] }).startsWith(QWEN_TOOLS_HEADER)).toBe(true);
      expect(named.render(chat, { templateName: 'default', tools: [WEATHER_TOOL] })).toBe('DEFAULT|Hi');
      expect(named.render(chat, { templateName: 'tool_use' })).toContain('You are Qwen');
      expect(() => named.render(chat, { templateName: 'rag' })).toThrow(/no template with this name/);
      const noDefault = new ChatTemplate([{ name: 'tool_use', template: 'x' }]);
      expect(() => noDefault.render(chat)).toThrow(/none is named "default"/);
      expect(noDefault.render(chat, { tools: [] })).toBe('x');
    });
  },
);

describe('chat templates on a synthetic tokenizer', () => {
  let tok: Tokenizer;
  let tokenizerJson: TokenizerJson;
  beforeAll(async () => {
    tok = await loadTokenizer(syntheticPreset('llama-f32'));
    tokenizerJson = JSON.parse(await readFile(join(syntheticPreset('llama-f32'), 'tokenizer.json'), 'utf8'));
  });

  it('a template that writes {{ bos_token }} gives exactly one BOS', () => {
    const chat = [{ role: 'user', content: 'Hi' }];
    expect(tok.applyChatTemplate(chat, { addGenerationPrompt: true })).toBe('<s><|user|>Hi</s><|assistant|>');
    expect(tok.encodeChat(chat, { addGenerationPrompt: true })).toEqual([256, 259, 72, 105, 257, 260]);
    expect(tok.encodeChat(chat, { addGenerationPrompt: true, addSpecialTokens: true })).toEqual([
      256, 259, 72, 105, 257, 260,
    ]);
  });

  it('passes extra variables, raise_exception and strftime_now', () => {
    const t = createTokenizer({
      tokenizerJson,
      tokenizerConfig: {
        bos_token: '<s>',
        eos_token: '</s>',
        chat_template: [
          {
            name: 'default',
            template:
              "{% if messages[0]['role'] != 'user' %}{{ raise_exception('Conversation roles must start with user!') }}{% endif %}" +
              '{{ bos_token }}{{ greeting }}{{ variables_too }}{% for m in messages %}{{ m.content }}{{ eos_token }}{% endfor %}',
          },
          { name: 'date', template: "{{ strftime_now('%Y') }}" },
          { name: 'broken', template: '{% for m in messages %}' },
        ],
      },
    });
    expect(t.chatTemplateNames).toEqual(['default', 'date', 'broken']);
    const chat = [{ role: 'user', content: 'x' }];
    expect(t.applyChatTemplate(chat, { greeting: 'Ahoy ', variables: { variables_too: '! ' } })).toBe(
      '<s>Ahoy ! x</s>',
    );
    const err = (() => {
      try {
        t.applyChatTemplate([{ role: 'assistant', content: 'x' }]);
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(ChatTemplateError);
    expect((err as ChatTemplateError).message).toMatch(
      /raise_exception: Conversation roles must start with user!/,
    );
    expect((err as ChatTemplateError).templateName).toBe('default');
    expect(t.applyChatTemplate(chat, { templateName: 'date' })).toMatch(/^20\d\d$/);
    expect(() => t.applyChatTemplate(chat, { templateName: 'broken' })).toThrow(ChatTemplateError);
  });

  it('strftime_now formats as Python does in the C locale', () => {
    const d = new Date(2024, 6, 26, 14, 5, 9);
    expect(strftime(d, '%d %b %Y %H:%M:%S %A %a %B %j %I%p %y %m %e %%')).toBe(
      '26 Jul 2024 14:05:09 Friday Fri July 208 02PM 24 07 26 %',
    );
  });

  it('says so when there is no chat template', () => {
    const t = createTokenizer({ tokenizerJson, tokenizerConfig: { bos_token: '<s>' } });
    expect(t.hasChatTemplate).toBe(false);
    expect(t.chatTemplateNames).toEqual([]);
    expect(() => t.applyChatTemplate([{ role: 'user', content: 'x' }])).toThrow(/has no chat template/);
  });
});
