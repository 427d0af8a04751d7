import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { realFixture, SYNTHETIC_PRESETS, syntheticPreset } from '@mnemo/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TokenizerLoadError } from './errors';
import { tokenizerFingerprint } from './fingerprint';
import { loadTokenizer } from './load';
import { realTokenizerDir, TEXTS } from './test-texts';
import type { Tokenizer } from './tokenizer';

const utf8 = new TextEncoder();

interface ExpectedCase {
  prompt: string;
  prompt_tokens: number[];
  steps: { token: number }[];
  llama2c_stdout?: string;
}

async function readExpected(dir: string): Promise<{ cases: ExpectedCase[] }> {
  return JSON.parse(await readFile(join(dir, 'expected.json'), 'utf8'));
}

describe('synthetic presets (byte-level BPE without merges)', () => {
  for (const preset of SYNTHETIC_PRESETS) {
    it(`${preset}: prompts encode to [256] + one id per UTF-8 byte, as in expected.json`, async () => {
      const dir = syntheticPreset(preset);
      const tok = await loadTokenizer(dir);
      expect(tok.vocabSize).toBe(264);
      expect(tok.bosId).toBe(256);
      expect(tok.bosToken).toBe('<s>');
      expect(tok.eosIds).toEqual([257]);
      expect(tok.addBosToken).toBe(true);
      expect(tok.addEosToken).toBe(false);
      expect(tok.tokenToId('<|user|>')).toBe(259);
      const expected = await readExpected(dir);
      expect(expected.cases.length).toBeGreaterThan(0);
      for (const c of expected.cases) {
        const ids = tok.encode(c.prompt);
        expect(ids).toEqual(c.prompt_tokens);
        expect(ids).toEqual([256, ...utf8.encode(c.prompt)]);
        expect(tok.decode(ids, { skipSpecialTokens: true })).toBe(c.prompt);
        expect(tok.decode(ids)).toBe(`<s>${c.prompt}`);
      }
      for (const text of TEXTS) {
        expect(tok.encode(text)).toEqual([256, ...utf8.encode(text)]);
        expect(tok.encode(text, { addSpecialTokens: false })).toEqual([...utf8.encode(text)]);
        expect(tok.decode(tok.encode(text), { skipSpecialTokens: true })).toBe(text);
      }
    });
  }

  it('adds BOS only once when the text already starts with <s>', async () => {
    const tok = await loadTokenizer(syntheticPreset('llama-f32'));
    expect(tok.encode('<s>hi')).toEqual([256, 104, 105]);
    expect(tok.encode('<s>hi', { addSpecialTokens: false })).toEqual([256, 104, 105]);
    expect(tok.encode('')).toEqual([256]);
    expect(tok.encode('', { addSpecialTokens: false })).toEqual([]);
    expect(tok.decode([])).toBe('');
    // ids outside the vocabulary are ignored, as the Rust tokenizers library does
    expect(tok.decode([104, 99999, -1, 105])).toBe('hi');
  });
});

describe.skipIf(!realFixture('stories260K-hf'))(
  'stories260K-hf (SentencePiece BPE with byte fallback)',
  () => {
    const dir = realFixture('stories260K-hf')!;
    let tok: Tokenizer;
    beforeAll(async () => {
      tok = await loadTokenizer(dir);
    });

    it('matches llama2.c: "Once upon a time" → [1, 403, 407, 261, 378]', () => {
      expect(tok.encode('Once upon a time')).toEqual([1, 403, 407, 261, 378]);
      expect(tok.vocabSize).toBe(512);
      expect(tok.bosId).toBe(1);
      expect(tok.eosIds).toEqual([2, 1]);
      expect(tok.addBosToken).toBe(true);
    });

    it('decodes the reference generations to the text llama2.c printed', async () => {
      const expected = await readExpected(dir);
      for (const c of expected.cases) {
        expect(tok.encode(c.prompt)).toEqual(c.prompt_tokens);
        const ids = [...c.prompt_tokens];
        for (const s of c.steps) {
          if (s.token === 1) break; // run.c stops at BOS
          ids.push(s.token);
        }
        expect(`${tok.decode(ids, { skipSpecialTokens: true })}\n`).toBe(c.llama2c_stdout);
      }
    });

    it('round-trips multilingual text through byte fallback', () => {
      for (const text of TEXTS) {
        const ids = tok.encode(text, { addSpecialTokens: false });
        expect(tok.decode(ids)).toBe(text);
      }
    });
  },
);

describe.skipIf(!realTokenizerDir('tinyllama-1.1b-chat-v1.0'))(
  'TinyLlama (Llama-2 SentencePiece BPE)',
  () => {
    const dir = realTokenizerDir('tinyllama-1.1b-chat-v1.0')!;
    let tok: Tokenizer;
    beforeAll(async () => {
      tok = await loadTokenizer(dir);
    });

    it('encodes with the well-known Llama-2 ids and adds BOS once', () => {
      expect(tok.vocabSize).toBe(32000);
      expect(tok.encode('Hello world')).toEqual([1, 15043, 3186]);
      expect(tok.encode('<s>Hello world')).toEqual([1, 15043, 3186]);
      expect(tok.tokenize('Hello world')).toEqual(['▁Hello', '▁world']);
      expect(tok.idToToken(13)).toBe('<0x0A>');
      expect(tok.tokenToId('▁Hello')).toBe(15043);
      // the raw U+2028 in tokenizer.json must survive JSON parsing
      expect(tok.idToToken(31353)).toBe('\u2028');
      expect(tok.tokenToId('\u2028')).toBe(31353);
    });

    it('reads BOS/EOS from the config files', () => {
      expect(tok.bosId).toBe(1);
      expect(tok.bosToken).toBe('<s>');
      expect(tok.eosId).toBe(2);
      expect(tok.eosIds).toEqual([2]);
      expect(tok.unkId).toBe(0);
      expect(tok.padId).toBe(2);
      expect(tok.addBosToken).toBe(true);
      expect(tok.addEosToken).toBe(false);
      expect(tok.cleanUpTokenizationSpaces).toBe(false);
      expect(tok.isSpecial(1)).toBe(true);
      expect(tok.isSpecial(15043)).toBe(false);
    });

    it('byte-falls back for characters outside the vocabulary and round-trips every text', () => {
      // 😀 is not a piece: four byte tokens <0xF0><0x9F><0x98><0x80>
      expect(tok.encode('😀', { addSpecialTokens: false })).toEqual([29871, 243, 162, 155, 131]);
      for (const text of TEXTS) {
        const ids = tok.encode(text);
        expect(ids[0]).toBe(1);
        expect(ids.filter((id) => id === 1)).toHaveLength(1);
        expect(tok.decode(ids, { skipSpecialTokens: true })).toBe(text);
        expect(tok.decode(ids)).toBe(`<s> ${text}`);
      }
    });
  },
);

describe.skipIf(!realTokenizerDir('phi-3-mini-4k-instruct'))(
  'Phi-3-mini (Llama-2 vocabulary + chat tokens)',
  () => {
    it('shares Llama-2 ids, adds no BOS (add_bos_token: false), parses its chat tokens', async () => {
      const phi3 = await loadTokenizer(realTokenizerDir('phi-3-mini-4k-instruct')!);
      const llama = realTokenizerDir('tinyllama-1.1b-chat-v1.0');
      expect(phi3.vocabSize).toBe(32011);
      expect(phi3.addBosToken).toBe(false);
      expect(phi3.bosId).toBe(1);
      expect(phi3.eosToken).toBe('<|endoftext|>');
      expect(phi3.eosIds).toEqual([32000]);
      expect(phi3.encode('Hello world')).toEqual([15043, 3186]);
      expect(phi3.tokenToId('<|end|>')).toBe(32007);
      // <|user|> has rstrip: the newline after it is absorbed
      expect(phi3.encode('<|user|>\nHello<|end|>')).toEqual([32010, 15043, 32007]);
      expect(phi3.decode([32010, 15043, 32007], { skipSpecialTokens: true })).toBe('Hello');
      if (llama !== null) {
        const tiny = await loadTokenizer(llama);
        for (const text of TEXTS) {
          expect(phi3.encode(text)).toEqual(tiny.encode(text, { addSpecialTokens: false }));
        }
      }
      for (const text of TEXTS) expect(phi3.decode(phi3.encode(text))).toBe(text);
    });
  },
);

describe.skipIf(!realTokenizerDir('phi-2'))('Phi-2 (GPT-2 byte-level BPE, tokenizer.json)', () => {
  it('encodes GPT-2 ids, cleans up tokenization spaces as configured', async () => {
    const tok = await loadTokenizer(realTokenizerDir('phi-2')!);
    expect(tok.vocabSize).toBe(50295);
    expect(tok.encode('Hello world')).toEqual([15496, 995]);
    expect(tok.encode('Hello, world!')).toEqual([15496, 11, 995, 0]);
    expect(tok.tokenize(' Hello')).toEqual(['ĠHello']);
    expect(tok.bosId).toBe(50256);
    expect(tok.eosIds).toEqual([50256]);
    expect(tok.addBosToken).toBe(false);
    expect(tok.cleanUpTokenizationSpaces).toBe(true);
    expect(tok.hasChatTemplate).toBe(false);
    const ids = tok.encode("a . b , c ? do n't , it 's");
    expect(tok.decode(ids)).toBe("a. b, c? don't, it's");
    expect(tok.decode(ids, { cleanUpTokenizationSpaces: false })).toBe("a . b , c ? do n't , it 's");
    // runs of spaces are added tokens
    expect(tok.encode('a    b')).toEqual([64, 50284, 65]);
    for (const text of TEXTS) {
      expect(tok.decode(tok.encode(text), { cleanUpTokenizationSpaces: false })).toBe(text);
    }
  });
});

describe.skipIf(!realTokenizerDir('gpt2'))('GPT-2 from vocab.json + merges.txt', () => {
  it('builds a byte-level BPE equal to Phi-2 tokenizer.json on text without space runs', async () => {
    const gpt2 = await loadTokenizer(realTokenizerDir('gpt2')!);
    expect(gpt2.vocabSize).toBe(50257);
    expect(gpt2.encode('Hello world')).toEqual([15496, 995]);
    expect(gpt2.bosId).toBe(50256);
    expect(gpt2.eosIds).toEqual([50256]);
    expect(gpt2.encode('<|endoftext|>')).toEqual([50256]);
    expect(gpt2.addBosToken).toBe(false);
    const phi2Dir = realTokenizerDir('phi-2');
    const phi2 = phi2Dir === null ? null : await loadTokenizer(phi2Dir);
    for (const text of TEXTS) {
      const ids = gpt2.encode(text);
      expect(gpt2.decode(ids)).toBe(text);
      // Phi-2 adds tokens for runs of spaces and tabs; compare where there are none
      if (phi2 !== null && !/ {2}|\t\t/.test(text)) expect(phi2.encode(text)).toEqual(ids);
    }
  });
});

describe('loading errors and fingerprints', () => {
  let tmp: string;
  beforeAll(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'mnemo-tokenizer-'));
  });
  afterAll(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  it('names the folder when no tokenizer file is there', async () => {
    await expect(loadTokenizer(tmp)).rejects.toThrow(TokenizerLoadError);
    await expect(loadTokenizer(tmp)).rejects.toThrow(/no tokenizer found/);
    await expect(loadTokenizer(join(tmp, 'missing'))).rejects.toThrow(/does not exist/);
  });

  it('names the file holding invalid JSON', async () => {
    const dir = join(tmp, 'bad');
    await rm(dir, { recursive: true, force: true });
    await import('node:fs/promises').then((fs) => fs.mkdir(dir));
    await writeFile(join(dir, 'tokenizer.json'), '{"model": ');
    const err = await loadTokenizer(dir).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TokenizerLoadError);
    expect((err as TokenizerLoadError).file).toBe(join(dir, 'tokenizer.json'));
  });

  it('reads BOS/EOS rules, EOS ids and chat templates from every config file', async () => {
    const src = syntheticPreset('llama-f32');
    const tj = await readFile(join(src, 'tokenizer.json'), 'utf8');
    const dir = join(tmp, 'configs');
    const fs = await import('node:fs/promises');
    await fs.mkdir(join(dir, 'additional_chat_templates'), { recursive: true });
    await writeFile(join(dir, 'tokenizer.json'), tj);
    // no add_bos_token flag: the tokenizer.json post-processor (TemplateProcessing with <s>) decides
    await writeFile(
      join(dir, 'tokenizer_config.json'),
      JSON.stringify({ bos_token: { content: '<s>', __type: 'AddedToken' }, eos_token: '<|reserved_0|>' }),
    );
    await writeFile(join(dir, 'special_tokens_map.json'), JSON.stringify({ eos_token: { content: '</s>' } }));
    await writeFile(join(dir, 'generation_config.json'), JSON.stringify({ eos_token_id: [258, 257] }));
    await writeFile(join(dir, 'config.json'), JSON.stringify({ eos_token_id: 263, bos_token_id: 256 }));
    await writeFile(join(dir, 'chat_template.jinja'), '{{ bos_token }}{{ messages[0].content }}');
    await writeFile(join(dir, 'additional_chat_templates', 'tool_use.jinja'), 'TOOLS{{ eos_token }}');
    let tok = await loadTokenizer(dir);
    expect(tok.bosId).toBe(256);
    expect(tok.eosToken).toBe('</s>'); // special_tokens_map.json wins over tokenizer_config.json
    expect(tok.eosIds).toEqual([258, 257, 263]);
    expect(tok.isEos(263)).toBe(true);
    expect(tok.addBosToken).toBe(true);
    expect(tok.encode('a')).toEqual([256, 97]);
    expect(tok.chatTemplateNames).toEqual(['default', 'tool_use']);
    expect(tok.applyChatTemplate([{ role: 'user', content: 'x' }])).toBe('<s>x');
    expect(tok.applyChatTemplate([{ role: 'user', content: 'x' }], { tools: [] })).toBe('TOOLS</s>');

    // the tokenizer_config flags override the post-processor, as transformers' LlamaTokenizerFast does
    await writeFile(
      join(dir, 'tokenizer_config.json'),
      JSON.stringify({ bos_token: '<s>', eos_token: '</s>', add_bos_token: false, add_eos_token: true }),
    );
    tok = await loadTokenizer(dir);
    expect(tok.addBosToken).toBe(false);
    expect(tok.addEosToken).toBe(true);
    expect(tok.encode('a')).toEqual([97, 257]);
    expect(tok.encode('a</s>')).toEqual([97, 257]);
    expect(tok.encode('a', { addSpecialTokens: false })).toEqual([97]);

    // a tokenizer without BOS in its config: bos_token: null
    await writeFile(
      join(dir, 'tokenizer_config.json'),
      JSON.stringify({ bos_token: null, add_bos_token: false }),
    );
    tok = await loadTokenizer(dir);
    expect(tok.bosId).toBe(null);
    expect(tok.bosToken).toBe(null);
    expect(tok.encode('a')).toEqual([97]);
  });

  it('fingerprints tokenizer.json and the chat template', async () => {
    const src = syntheticPreset('llama-f32');
    const a = await loadTokenizer(src);
    const b = await loadTokenizer(syntheticPreset('llama-q4g32'));
    expect(tokenizerFingerprint(a)).toMatch(/^[0-9a-f]{64}$/);
    expect(tokenizerFingerprint(a)).toBe(tokenizerFingerprint(b));

    const dir = join(tmp, 'copy');
    await import('node:fs/promises').then((fs) => fs.mkdir(dir, { recursive: true }));
    const tj = await readFile(join(src, 'tokenizer.json'), 'utf8');
    const tc = JSON.parse(await readFile(join(src, 'tokenizer_config.json'), 'utf8'));
    await writeFile(join(dir, 'tokenizer.json'), tj);
    await writeFile(join(dir, 'tokenizer_config.json'), JSON.stringify(tc));
    expect(tokenizerFingerprint(await loadTokenizer(dir))).toBe(tokenizerFingerprint(a));

    await writeFile(
      join(dir, 'tokenizer_config.json'),
      JSON.stringify({ ...tc, chat_template: `${tc.chat_template} ` }),
    );
    expect(tokenizerFingerprint(await loadTokenizer(dir))).not.toBe(tokenizerFingerprint(a));

    await writeFile(join(dir, 'tokenizer_config.json'), JSON.stringify(tc));
    await writeFile(join(dir, 'tokenizer.json'), tj.replace('"<|reserved_2|>"', '"<|reserved_x|>"'));
    expect(tokenizerFingerprint(await loadTokenizer(dir))).not.toBe(tokenizerFingerprint(a));
  });
});
