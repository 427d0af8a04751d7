import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { realFixture } from '@mnemo/test-utils';
import { describe, expect, it } from 'vitest';
import { TokenizerLoadError } from './errors';
import { loadTokenizer } from './load';
import {
  parseSentencePieceModel,
  SentencePieceModelType,
  sentencePieceToTokenizerJson,
} from './sentencepiece';
import { realTokenizerDir, TEXTS } from './test-texts';
import { createTokenizer, type Tokenizer } from './tokenizer';

async function spTokenizer(path: string, options: { legacy?: boolean } = {}): Promise<Tokenizer> {
  const model = parseSentencePieceModel(new Uint8Array(await readFile(path)), path);
  return createTokenizer({
    tokenizerJson: sentencePieceToTokenizerJson(model, options, path),
    tokenizerConfig: { bos_token: '<s>', eos_token: '</s>', unk_token: '<unk>' },
    source: path,
  });
}

interface Sample {
  messages: { role: string; content: string }[];
}

const mistral = realTokenizerDir('mistral-7b');

describe.skipIf(!mistral)(
  'Mistral-7B tokenizer.model (sentencepiece protobuf) against mistral-common goldens',
  () => {
    const dir = mistral!;
    const golden = async (name: string) => readFile(join(dir, 'golden-no_tools', name), 'utf8');

    it('parses the v1 and v3 models', async () => {
      for (const [v, size] of [
        ['v1', 32000],
        ['v3', 32768],
      ] as const) {
        const m = parseSentencePieceModel(new Uint8Array(await readFile(join(dir, `tokenizer.model.${v}`))));
        expect(m.pieces).toHaveLength(size);
        expect(m.modelType).toBe(SentencePieceModelType.BPE);
        expect(m.byteFallback).toBe(true);
        expect([m.unkId, m.bosId, m.eosId, m.padId]).toEqual([0, 1, 2, -1]);
        expect(m.addDummyPrefix).toBe(true);
        expect(m.removeExtraWhitespaces).toBe(false);
        expect(m.pieces.slice(0, 3).map((p) => p.piece)).toEqual(['<unk>', '<s>', '</s>']);
      }
    });

    for (const v of ['v1', 'v3'] as const) {
      it(`${v}: ids map back to the golden pieces and text`, async () => {
        const tok = await spTokenizer(join(dir, `tokenizer.model.${v}`));
        const ids: number[] = JSON.parse(await golden(`tokens_${v}.json`)).tokens;
        expect(ids.map((id) => tok.idToToken(id)).join('')).toBe(await golden(`text_${v}.txt`));
        const text = tok.decode(ids, { skipSpecialTokens: true });
        expect(text).toContain("What's the result of 5 + 5?");
        expect(text).toContain('Sure! The result of 10 x 8 is 80.');
      });

      it(`${v}: encoding the sample chat as mistral-common does gives the golden ids`, async () => {
        const tok = await spTokenizer(join(dir, `tokenizer.model.${v}`));
        const sample: Sample = JSON.parse(await golden('sample.json'));
        const gold: number[] = JSON.parse(await golden(`tokens_${v}.json`)).tokens;
        const enc = (s: string) => tok.encode(s, { addSpecialTokens: false });
        const ids = [tok.bosId!];
        for (const m of sample.messages) {
          if (m.role === 'user') {
            // v1 writes [INST] as text; v3 has control tokens [INST]=3 and [/INST]=4
            if (v === 'v1') ids.push(...enc(`[INST] ${m.content} [/INST]`));
            else ids.push(tok.tokenToId('[INST]')!, ...enc(m.content), tok.tokenToId('[/INST]')!);
          } else {
            ids.push(...enc(m.content), tok.eosId!);
          }
        }
        expect(ids).toEqual(gold);
      });
    }

    it('v3, non-legacy conversion: the rendered chat string encodes to the golden ids in one call', async () => {
      const tok = await spTokenizer(join(dir, 'tokenizer.model.v3'), { legacy: false });
      const sample: Sample = JSON.parse(await golden('sample.json'));
      let text = '<s>';
      for (const m of sample.messages) {
        text += m.role === 'user' ? `[INST] ${m.content}[/INST]` : ` ${m.content}</s>`;
      }
      expect(tok.encode(text, { addSpecialTokens: false })).toEqual(
        JSON.parse(await golden('tokens_v3.json')).tokens,
      );
    });

    it('loadTokenizer picks the highest tokenizer.model.vN of a folder', async () => {
      const tok = await loadTokenizer(dir);
      expect(tok.vocabSize).toBe(32768);
      expect(tok.bosId).toBe(1);
      expect(tok.eosIds).toEqual([2]);
      expect(tok.encode('Thanks')).toEqual([1, 9636]);
      for (const text of TEXTS) expect(tok.decode(tok.encode(text), { skipSpecialTokens: true })).toBe(text);
    });
  },
);

describe.skipIf(!realFixture('stories260K/tok512.model') || !realFixture('stories260K-hf'))(
  'stories260K tok512.model',
  () => {
    it('converts to a tokenizer that encodes like the HF tokenizer.json', async () => {
      const fromModel = await spTokenizer(realFixture('stories260K/tok512.model')!);
      const fromJson = await loadTokenizer(realFixture('stories260K-hf')!);
      expect(fromModel.vocabSize).toBe(512);
      expect(fromModel.encode('Once upon a time')).toEqual([1, 403, 407, 261, 378]);
      for (const text of TEXTS) {
        expect(fromModel.encode(text)).toEqual(fromJson.encode(text));
        expect(fromModel.decode(fromModel.encode(text), { skipSpecialTokens: true })).toBe(text);
      }
    });
  },
);

describe.skipIf(!realTokenizerDir('tinyllama-1.1b-chat-v1.0'))('TinyLlama tokenizer.model', () => {
  it('converts to a tokenizer that encodes like its tokenizer.json', async () => {
    const dir = realTokenizerDir('tinyllama-1.1b-chat-v1.0')!;
    const fromModel = await spTokenizer(join(dir, 'tokenizer.model'));
    const fromJson = await loadTokenizer(dir);
    expect(fromModel.vocabSize).toBe(32000);
    for (const text of TEXTS) expect(fromModel.encode(text)).toEqual(fromJson.encode(text));
  });
});

describe('malformed models', () => {
  it('names the file and the problem', () => {
    expect(() => parseSentencePieceModel(new Uint8Array([0x0a, 0x80]), 'x.model')).toThrow(
      TokenizerLoadError,
    );
    expect(() => parseSentencePieceModel(new Uint8Array([0x0a, 0x80]), 'x.model')).toThrow(
      /x\.model: malformed/,
    );
    expect(() => parseSentencePieceModel(new Uint8Array([]), 'empty.model')).toThrow(/no pieces/);
    // a length-delimited field running past the end
    expect(() => parseSentencePieceModel(new Uint8Array([0x0a, 0x05, 0x0a]), 'short.model')).toThrow(
      /truncated/,
    );
  });
});
