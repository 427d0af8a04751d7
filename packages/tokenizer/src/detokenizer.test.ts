import { join } from 'node:path';
import { realFixture, rng, syntheticPreset } from '@mnemo/test-utils';
import { beforeAll, describe, expect, it } from 'vitest';
import { cleanUpSafeCut, cleanUpTokenization } from './cleanup';
import { createDetokenizer, StreamingDetokenizer } from './detokenizer';
import { loadTokenizer } from './load';
import { realTokenizerDir, TEXTS } from './test-texts';
import type { Tokenizer } from './tokenizer';

const FFFD = '\uFFFD';

/** Streams `ids` and checks every property the detokenizer promises. */
function checkStream(tok: Tokenizer, ids: readonly number[], skipSpecialTokens: boolean): void {
  const expected = tok.decode(ids, { skipSpecialTokens });
  const det = createDetokenizer(tok, { skipSpecialTokens });
  let text = '';
  const seen: number[] = [];
  for (const id of ids) {
    const delta = det.push(id);
    text += delta;
    seen.push(id);
    if (!expected.includes(FFFD)) expect(delta).not.toContain(FFFD);
    // what was emitted is final: a prefix of the full decode
    if (!expected.startsWith(text)) {
      throw new Error(
        `after ${seen.length} ids ${JSON.stringify(text)} is not a prefix of ${JSON.stringify(expected)}`,
      );
    }
    // and nothing is held back longer than needed (clean-up aside)
    if (!tok.cleanUpTokenizationSpaces) {
      const now = tok.decode(seen, { skipSpecialTokens });
      if (!now.endsWith(FFFD) && now !== text) {
        throw new Error(
          `after ${seen.length} ids emitted ${JSON.stringify(text)}, decode says ${JSON.stringify(now)}`,
        );
      }
    }
  }
  const tail = det.flush();
  if (!expected.includes(FFFD)) expect(tail).not.toContain(FFFD);
  text += tail;
  expect(text).toBe(expected);
  expect(det.text).toBe(expected);
}

function byteTokenIds(tok: Tokenizer): number[] {
  const ids: number[] = [];
  for (let b = 0; b < 256; b++) {
    const hex = b.toString(16).toUpperCase().padStart(2, '0');
    const id = tok.tokenToId(`<0x${hex}>`);
    if (id !== undefined) ids.push(id);
  }
  if (ids.length > 0) return ids;
  // byte-level BPE: GPT-2's bytes_to_unicode maps each byte to one printable character
  for (let b = 0; b < 256; b++) {
    const code = isPrintable(b) ? b : 256 + [...Array(b).keys()].filter((x) => !isPrintable(x)).length;
    const id = tok.tokenToId(String.fromCodePoint(code));
    if (id !== undefined) ids.push(id);
  }
  return ids;
}

function isPrintable(b: number): boolean {
  return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
}

function suite(name: string, dir: () => string | null) {
  describe.skipIf(!dir())(`streaming detokenizer: ${name}`, () => {
    let tok: Tokenizer;
    beforeAll(async () => {
      tok = await loadTokenizer(dir()!);
    });

    it('deltas concatenate to decode(ids) for multilingual text', () => {
      for (const text of TEXTS) {
        const ids = tok.encode(text);
        checkStream(tok, ids, false);
        checkStream(tok, ids, true);
      }
      // everything in one stream, with special tokens in between
      const specials = [tok.bosId, ...tok.eosIds].filter((x): x is number => x !== null);
      const all = TEXTS.flatMap((t, i) => [
        ...tok.encode(t, { addSpecialTokens: false }),
        specials[i % specials.length]!,
      ]);
      checkStream(tok, all, false);
      checkStream(tok, all, true);
    });

    it('streams that start in the middle of a character', () => {
      for (const text of [TEXTS[3]!, TEXTS[4]!, TEXTS[5]!, TEXTS[12]!]) {
        const ids = tok.encode(text, { addSpecialTokens: false });
        for (let k = 0; k < ids.length; k++) checkStream(tok, ids.slice(k), false);
      }
    });

    it('random ids, mostly byte tokens (invalid UTF-8 included)', () => {
      const r = rng(1234);
      const bytes = byteTokenIds(tok);
      expect(bytes.length).toBeGreaterThan(200);
      for (let s = 0; s < 60; s++) {
        const n = 1 + Math.floor(r() * 24);
        const ids: number[] = [];
        for (let i = 0; i < n; i++) {
          ids.push(r() < 0.6 ? bytes[Math.floor(r() * bytes.length)]! : Math.floor(r() * tok.vocabSize));
        }
        checkStream(tok, ids, false);
        checkStream(tok, ids, s % 2 === 0);
      }
    });
  });
}

suite('synthetic llama-f32 (byte-level, one id per byte)', () => syntheticPreset('llama-f32'));
suite('stories260K-hf (SentencePiece, byte fallback)', () => realFixture('stories260K-hf'));
suite('TinyLlama (SentencePiece, byte fallback)', () => realTokenizerDir('tinyllama-1.1b-chat-v1.0'));
suite('Phi-3-mini (rstrip chat tokens)', () => realTokenizerDir('phi-3-mini-4k-instruct'));
suite('Phi-2 (byte-level, clean_up_tokenization_spaces)', () => realTokenizerDir('phi-2'));
suite('GPT-2 (vocab.json + merges.txt)', () => realTokenizerDir('gpt2'));
suite('Mistral v3 (tokenizer.model)', () => realTokenizerDir('mistral-7b'));

describe('streaming details', () => {
  it('holds a character split over byte tokens until it is complete', async () => {
    const dir = realTokenizerDir('tinyllama-1.1b-chat-v1.0');
    if (dir === null) return;
    const tok = await loadTokenizer(dir);
    const det = new StreamingDetokenizer(tok);
    // "Hi 😀!" = ▁Hi ▁ <0xF0> <0x9F> <0x98> <0x80> !
    const ids = tok.encode('Hi 😀!', { addSpecialTokens: false });
    expect(ids.map((id) => tok.idToToken(id))).toEqual([
      '▁Hi',
      '▁',
      '<0xF0>',
      '<0x9F>',
      '<0x98>',
      '<0x80>',
      '!',
    ]);
    expect(ids.map((id) => det.push(id))).toEqual(['Hi', ' ', '', '', '', '😀', '!']);
    expect(det.flush()).toBe('');
    // an incomplete character at the end comes out of flush() as decode() shows it
    det.reset();
    expect(det.push(ids[0]!)).toBe('Hi');
    expect(det.push(ids[2]!)).toBe('');
    expect(det.flush()).toBe(FFFD);
    expect(det.text).toBe(`Hi${FFFD}`);
    expect(det.text).toBe(tok.decode([ids[0]!, ids[2]!]));
  });

  it('keeps the space between words across a skipped special token', async () => {
    const dir = realTokenizerDir('tinyllama-1.1b-chat-v1.0');
    if (dir === null) return;
    const tok = await loadTokenizer(dir);
    const ids = [
      ...tok.encode('Hello', { addSpecialTokens: false }),
      2,
      ...tok.encode('world', { addSpecialTokens: false }),
    ];
    const det = tok.createDetokenizer({ skipSpecialTokens: true });
    const out = ids.map((id) => det.push(id)).join('') + det.flush();
    expect(out).toBe('Hello world');
    expect(out).toBe(tok.decode(ids, { skipSpecialTokens: true }));
  });

  it('clean-up safe cuts never change what clean-up does', () => {
    const r = rng(7);
    const alphabet = [' ', ' ', ' ', "'", 'n', 't', 's', 'm', 'v', 'e', 'r', '.', ',', '?', '!', 'a'];
    for (let s = 0; s < 3000; s++) {
      let text = '';
      const n = Math.floor(r() * 16);
      for (let i = 0; i < n; i++) text += alphabet[Math.floor(r() * alphabet.length)];
      const c = cleanUpSafeCut(text);
      for (const more of ['', ' ', "'", "'s", ' .', "n't", "' "]) {
        expect(cleanUpTokenization(text.slice(0, c)) + cleanUpTokenization(text.slice(c) + more)).toBe(
          cleanUpTokenization(text + more),
        );
      }
    }
  });

  it('with clean-up, holds " ." until it knows', async () => {
    const dir = realTokenizerDir('phi-2');
    if (dir === null) return;
    const tok = await loadTokenizer(dir);
    const det = tok.createDetokenizer();
    const ids = tok.encode('Hello world .');
    const out = ids.map((id) => det.push(id));
    expect(out.join('') + det.flush()).toBe('Hello world.');
    expect(out.join('')).not.toContain(' .');
  });
});

describe('detokenizer on a byte-level tokenizer without real fixtures', () => {
  it('streams a 4-byte character one byte token at a time', async () => {
    const tok = await loadTokenizer(join(syntheticPreset('llama-f32')));
    const det = createDetokenizer(tok, { skipSpecialTokens: true });
    const ids = tok.encode('a😀b');
    expect(ids).toEqual([256, 97, 240, 159, 152, 128, 98]);
    expect(ids.map((id) => det.push(id))).toEqual(['', 'a', '', '', '', '😀', 'b']);
    expect(det.flush()).toBe('');
    expect(det.tokenIds).toEqual(ids.slice(1));
  });
});
