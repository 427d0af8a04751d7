/**
 * The synthetic vocabulary, one definition for both runtimes: a sentencepiece-style (Llama-2 style) model with byte
 * fallback. Ids: 0 `<unk>`, 1–256 the byte pieces `<0x00>`…`<0xFF>`, then dummy normal pieces `▁w<id>`, and the
 * last 256 ids control tokens as in Llama 3 (`<|begin_of_text|>` = BOS, `<|end_of_text|>` = EOS, then reserved
 * ones). The benchmark passes token ids directly; the tokenizer exists because loaders need one.
 * mnemo reads it as tokenizer.json (converted by @mnemo/tokenizer's `sentencePieceToTokenizerJson`, as transformers
 * converts a tokenizer.model); llama.cpp reads the same pieces as `tokenizer.ggml.model = "llama"`.
 */
import {
  type SentencePieceModel,
  SentencePieceModelType,
  SentencePieceType,
  sentencePieceToTokenizerJson,
  type TokenizerJson,
} from '@mnemo/tokenizer';

export interface Vocab {
  readonly pieces: readonly string[];
  readonly scores: Float32Array;
  /** sentencepiece piece types (1 normal, 2 unknown, 3 control, 6 byte) — the same numbers GGUF uses. */
  readonly types: Int32Array;
  readonly unkId: number;
  readonly bosId: number;
  readonly eosId: number;
  /** First and one-past-last id of the normal pieces (where prompt ids are drawn from). */
  readonly normalStart: number;
  readonly normalEnd: number;
}

export function makeVocab(size: number): Vocab {
  const controls = 256;
  if (size < 257 + controls + 16) throw new RangeError(`vocabulary of ${size} is too small`);
  const pieces: string[] = new Array(size);
  const scores = new Float32Array(size);
  const types = new Int32Array(size);
  pieces[0] = '<unk>';
  types[0] = SentencePieceType.UNKNOWN;
  for (let b = 0; b < 256; b++) {
    pieces[1 + b] = `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`;
    types[1 + b] = SentencePieceType.BYTE;
  }
  const normalEnd = size - controls;
  for (let id = 257; id < normalEnd; id++) {
    pieces[id] = `▁w${id}`;
    types[id] = SentencePieceType.NORMAL;
    scores[id] = -(id - 257);
  }
  for (let k = 0; k < controls; k++) {
    const id = normalEnd + k;
    pieces[id] =
      k === 0 ? '<|begin_of_text|>' : k === 1 ? '<|end_of_text|>' : `<|reserved_special_token_${k - 2}|>`;
    types[id] = SentencePieceType.CONTROL;
  }
  return {
    pieces,
    scores,
    types,
    unkId: 0,
    bosId: normalEnd,
    eosId: normalEnd + 1,
    normalStart: 257,
    normalEnd,
  };
}

/** tokenizer.json for mnemo (the Hugging Face conversion of the same sentencepiece model). */
export function tokenizerJson(v: Vocab): TokenizerJson {
  const model: SentencePieceModel = {
    pieces: v.pieces.map((piece, id) => ({ piece, score: v.scores[id]!, type: v.types[id]! })),
    modelType: SentencePieceModelType.BPE,
    byteFallback: true,
    unkId: v.unkId,
    bosId: v.bosId,
    eosId: v.eosId,
    padId: -1,
    splitDigits: false,
    normalizerName: 'identity',
    precompiledCharsmap: new Uint8Array(0),
    addDummyPrefix: true,
    removeExtraWhitespaces: false,
    escapeWhitespaces: true,
  };
  return sentencePieceToTokenizerJson(
    model,
    { legacy: true, addBos: true, addEos: false },
    'synthetic vocabulary',
  );
}

export function tokenizerConfig(v: Vocab): Record<string, unknown> {
  return {
    bos_token: v.pieces[v.bosId],
    eos_token: v.pieces[v.eosId],
    unk_token: v.pieces[v.unkId],
    add_bos_token: true,
    add_eos_token: false,
    legacy: true,
    model_max_length: 131072,
    tokenizer_class: 'LlamaTokenizerFast',
  };
}
