import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodeGguf, encodeGguf, type GgufValue, openGguf, GgufValues as V } from '@mnemo/gguf';
import { ggufFixture, realFixture, repoRoot } from '@mnemo/test-utils';
import { describe, expect, it } from 'vitest';
import { ggufTokenizerParts, tokenizerFromGguf } from './gguf';
import { Tokenizer } from './tokenizer';

const dir = ggufFixture();

interface TokCase {
  readonly text: string;
  readonly ids: number[];
  readonly ids_special: number[];
  readonly detok: string;
  readonly detok_special: string;
}
interface Expected {
  readonly tokenizer_cases: TokCase[];
  readonly cases: { prompt: string; prompt_tokens: number[] }[];
  readonly chat: { messages: { role: string; content: string }[]; rendered: string };
}

async function load(name: string): Promise<{ tok: Tokenizer; expected: Expected }> {
  const f = await openGguf(join(dir!, `${name}.gguf`));
  await f.close();
  const expected = JSON.parse(readFileSync(join(dir!, `${name}.expected.json`), 'utf8')) as Expected;
  return { tok: tokenizerFromGguf(f.metadata, f.path), expected };
}

describe.skipIf(!dir)('tokenizers from GGUF metadata give llama.cpp’s ids', () => {
  for (const name of ['tok-llama-spm', 'tok-gpt2-bpe']) {
    it(`${name}: every tricky string, with and without parsing special tokens, and back`, async () => {
      const { tok, expected } = await load(name);
      const bad: string[] = [];
      for (const c of expected.tokenizer_cases) {
        const ids = tok.encode(c.text, { addSpecialTokens: false, parseSpecial: false });
        const special = tok.encode(c.text, { addSpecialTokens: false });
        if (JSON.stringify(ids) !== JSON.stringify(c.ids))
          bad.push(
            `${JSON.stringify(c.text.slice(0, 40))}: ${JSON.stringify(ids)} vs llama.cpp ${JSON.stringify(c.ids)}`,
          );
        if (JSON.stringify(special) !== JSON.stringify(c.ids_special))
          bad.push(
            `${JSON.stringify(c.text.slice(0, 40))} (special): ${JSON.stringify(special)} vs llama.cpp ${JSON.stringify(c.ids_special)}`,
          );
        // and back: llama_detokenize of the same ids
        if (tok.decode(c.ids) !== c.detok) bad.push(`${JSON.stringify(c.text.slice(0, 40))}: decode`);
        if (tok.decode(c.ids_special) !== c.detok_special)
          bad.push(`${JSON.stringify(c.text.slice(0, 40))}: decode (special)`);
      }
      expect(bad).toEqual([]);
      expect(expected.tokenizer_cases.length).toBe(28);
    });

    it(`${name}: prompts (BOS as the file says) and the chat template as llama.cpp renders and encodes them`, async () => {
      const { tok, expected } = await load(name);
      const [hi, once, chat] = expected.cases;
      expect(tok.encode(hi!.prompt)).toEqual(hi!.prompt_tokens);
      expect(tok.encode(once!.prompt)).toEqual(once!.prompt_tokens);
      const rendered = tok.applyChatTemplate(expected.chat.messages, { addGenerationPrompt: true });
      expect(rendered).toBe(expected.chat.rendered);
      expect(chat!.prompt).toBe(expected.chat.rendered);
      expect(tok.encodeChat(expected.chat.messages, { addGenerationPrompt: true })).toEqual(
        chat!.prompt_tokens,
      );
    });
  }
});

/** Metadata of a small byte-level BPE vocabulary (GPT-2 byte spelling) with a few merges and special tokens. */
function bpeMeta(extra: [string, GgufValue][] = []) {
  const bytes: string[] = [];
  // GPT-2's bytes_to_unicode for printable ASCII is the identity; enough for these tests
  for (let c = 33; c < 127; c++) bytes.push(String.fromCharCode(c));
  const tokens = [...bytes, 'Ġ', 'Ġh', 'Ġhi', 'hi', '<|im_start|>', '<|im_end|>', '<tool>', '<|eot_id|>'];
  const types = tokens.map((t) => (t.startsWith('<|') ? 3 : t === '<tool>' ? 4 : 1));
  const entries: [string, GgufValue][] = [
    ['tokenizer.ggml.model', V.string('gpt2')],
    ['tokenizer.ggml.pre', V.string('qwen2')],
    ['tokenizer.ggml.tokens', V.strings(tokens)],
    ['tokenizer.ggml.token_type', V.i32s(types)],
    ['tokenizer.ggml.merges', V.strings(['Ġ h', 'Ġh i', 'h i'])],
    ['tokenizer.ggml.eos_token_id', V.u32(tokens.indexOf('<|im_end|>'))],
    [
      'tokenizer.chat_template',
      V.string('{% for m in messages %}<|im_start|>{{ m.content }}<|im_end|>{% endfor %}'),
    ],
    ['tokenizer.chat_template.tool_use', V.string('<tool>{{ messages[0].content }}')],
  ];
  const merged = new Map([...entries, ...extra]);
  return { meta: decodeGguf(encodeGguf(merged, []), 'bpe.gguf').metadata, tokens };
}

describe('tokenizers from GGUF metadata: rules', () => {
  it("leaves the caller's tokenizer.json object as it was, and builds the unparsed-special tokenizer from the text", () => {
    const { meta, tokens } = bpeMeta();
    const parts = ggufTokenizerParts(meta);
    const tj = parts.tokenizerJson;
    const vocab = tj.model.vocab;
    const tok = new Tokenizer({
      tokenizerJson: tj,
      tokenizerConfig: parts.tokenizerConfig,
      source: 'bpe.gguf',
    });
    // the tokenizer drops the vocabulary object from its own copy only (the library keeps a map of it)
    expect(tj.model.vocab).toBe(vocab);
    // the caller may drop or change its object: nothing the tokenizer does later reads it
    delete (tj.model as { vocab?: unknown }).vocab;
    tj.added_tokens = [];
    const id = (t: string) => tokens.indexOf(t);
    expect(tok.encode('hi<|im_end|>')).toEqual([id('hi'), id('<|im_end|>')]);
    expect(tok.encode('<|im_end|>', { parseSpecial: false })).not.toContain(id('<|im_end|>'));
    expect(tok.decode([id('hi'), id('<|im_end|>')])).toBe('hi<|im_end|>');
  });

  it('merges, special and user-defined tokens, end-of-generation ids and named templates', () => {
    const { meta, tokens } = bpeMeta();
    const tok = tokenizerFromGguf(meta, 'bpe.gguf');
    const id = (t: string) => tokens.indexOf(t);
    expect(tok.encode(' hi hi')).toEqual([id('Ġhi'), id('Ġhi')]);
    expect(tok.encode('hi<|im_end|>')).toEqual([id('hi'), id('<|im_end|>')]);
    // unparsed, the special token's text is text; a user-defined token is matched either way (as llama.cpp does)
    expect(tok.encode('<|im_end|>', { parseSpecial: false })).not.toContain(id('<|im_end|>'));
    expect(tok.encode('<tool>', { parseSpecial: false })).toEqual([id('<tool>')]);
    expect(tok.addBosToken).toBe(false);
    // EOS, plus the control tokens llama.cpp ends generation at by their text
    expect([...tok.eosIds].sort((a, b) => a - b)).toEqual([id('<|im_end|>'), id('<|eot_id|>')]);
    expect(tok.chatTemplateNames).toEqual(['default', 'tool_use']);
    expect(tok.applyChatTemplate([{ role: 'user', content: 'hi' }])).toBe('<|im_start|>hi<|im_end|>');
    expect(ggufTokenizerParts(meta).tokenizerJson.model.ignore_merges).toBe(false);
    const llama3 = ggufTokenizerParts(bpeMeta([['tokenizer.ggml.pre', V.string('llama-bpe')]]).meta);
    expect(llama3.tokenizerJson.model.ignore_merges).toBe(true);
  });

  it('refuses what it cannot reproduce, naming the key', () => {
    const cases: [[string, GgufValue][], RegExp][] = [
      [
        [['tokenizer.ggml.pre', V.string('tekken')]],
        /tokenizer\.ggml\.pre "tekken" is not supported \(supported: default, gpt-2/,
      ],
      [[['tokenizer.ggml.model', V.string('bert')]], /tokenizer\.ggml\.model "bert" is not supported/],
      [[['tokenizer.ggml.token_type', V.i32s([1, 1])]], /token_type has 2 entries/],
      [[['tokenizer.ggml.merges', V.strings(['Ġh'])]], /merges\[0\] is not "left right"/],
    ];
    for (const [extra, message] of cases)
      expect(() => tokenizerFromGguf(bpeMeta(extra).meta, 'bad.gguf')).toThrow(message);
    const empty = decodeGguf(encodeGguf([['tokenizer.ggml.model', V.string('llama')]], [])).metadata;
    expect(() => tokenizerFromGguf(empty, 'x.gguf')).toThrow(/x\.gguf.*no tokenizer\.ggml\.tokens/);
  });
});

const gpt2 = realFixture('tokenizers/gpt2');
describe.skipIf(!gpt2)(
  'BPE pre-tokenizers against llama.cpp (GPT-2 vocabulary under each tokenizer.ggml.pre)',
  () => {
    for (const pre of ['llama-bpe', 'qwen2', 'default', 'starcoder']) {
      it(`${pre}: llama.cpp's ids for every string`, () => {
        const file = join(repoRoot, 'fixtures', 'gguf-tokenizers', `gpt2-vocab-${pre}.json`);
        const expected = JSON.parse(readFileSync(file, 'utf8')) as { cases: TokCase[] };
        const vocab = JSON.parse(readFileSync(join(gpt2!, 'vocab.json'), 'utf8')) as Record<string, number>;
        const tokens: string[] = [];
        for (const [t, i] of Object.entries(vocab)) tokens[i] = t;
        const merges = readFileSync(join(gpt2!, 'merges.txt'), 'utf8')
          .split('\n')
          .filter((l, i) => l !== '' && !(i === 0 && l.startsWith('#version')));
        const meta = decodeGguf(
          encodeGguf(
            [
              ['tokenizer.ggml.model', V.string('gpt2')],
              ['tokenizer.ggml.pre', V.string(pre)],
              ['tokenizer.ggml.tokens', V.strings(tokens)],
              ['tokenizer.ggml.token_type', V.i32s(tokens.map((t) => (t === '<|endoftext|>' ? 3 : 1)))],
              ['tokenizer.ggml.merges', V.strings(merges)],
              ['tokenizer.ggml.bos_token_id', V.u32(50256)],
              ['tokenizer.ggml.eos_token_id', V.u32(50256)],
            ],
            [],
          ),
        ).metadata;
        const tok = tokenizerFromGguf(meta, `${pre}.gguf`);
        const bad: string[] = [];
        for (const c of expected.cases) {
          const ids = tok.encode(c.text, { addSpecialTokens: false, parseSpecial: false });
          const special = tok.encode(c.text, { addSpecialTokens: false });
          if (JSON.stringify(ids) !== JSON.stringify(c.ids))
            bad.push(
              `${JSON.stringify(c.text.slice(0, 40))}: ${JSON.stringify(ids)} vs ${JSON.stringify(c.ids)}`,
            );
          if (JSON.stringify(special) !== JSON.stringify(c.ids_special))
            bad.push(
              `${JSON.stringify(c.text.slice(0, 40))} (special): ${JSON.stringify(special)} vs ${JSON.stringify(c.ids_special)}`,
            );
        }
        expect(bad).toEqual([]);
        expect(expected.cases.length).toBeGreaterThanOrEqual(34);
      });
    }
  },
);
