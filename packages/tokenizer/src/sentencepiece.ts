import { TokenizerLoadError } from './errors';
import type { TokenizerJson } from './types';

/** Piece types of sentencepiece's `ModelProto.SentencePiece.Type`. */
export const SentencePieceType = {
  NORMAL: 1,
  UNKNOWN: 2,
  CONTROL: 3,
  USER_DEFINED: 4,
  UNUSED: 5,
  BYTE: 6,
} as const;

/** Model types of sentencepiece's `TrainerSpec.ModelType`. */
export const SentencePieceModelType = { UNIGRAM: 1, BPE: 2, WORD: 3, CHAR: 4 } as const;

export interface SentencePiece {
  piece: string;
  score: number;
  /** One of {@link SentencePieceType}. */
  type: number;
}

/** The parts of a sentencepiece `ModelProto` (a `tokenizer.model` file) that tokenization depends on. */
export interface SentencePieceModel {
  pieces: SentencePiece[];
  /** One of {@link SentencePieceModelType}. */
  modelType: number;
  byteFallback: boolean;
  unkId: number;
  bosId: number;
  eosId: number;
  padId: number;
  splitDigits: boolean;
  normalizerName: string;
  precompiledCharsmap: Uint8Array;
  addDummyPrefix: boolean;
  removeExtraWhitespaces: boolean;
  escapeWhitespaces: boolean;
}

interface Field {
  num: number;
  wire: number;
  /** varint / fixed value (wire 0, 1, 5), as a JS number; for wire 5 the raw uint32 bits. */
  int: number;
  /** payload of a length-delimited field (wire 2). */
  bytes: Uint8Array | null;
}

class ProtoReader {
  pos = 0;
  constructor(
    private readonly buf: Uint8Array,
    private readonly file: string,
  ) {}

  get done(): boolean {
    return this.pos >= this.buf.length;
  }

  private fail(what: string): never {
    throw new TokenizerLoadError(this.file, `malformed sentencepiece protobuf (${what} at byte ${this.pos})`);
  }

  varint(): number {
    let result = 0n;
    let shift = 0n;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.buf.length) this.fail('truncated varint');
      const b = this.buf[this.pos++]!;
      result |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return Number(BigInt.asIntN(64, result));
      shift += 7n;
    }
    this.fail('varint longer than 10 bytes');
  }

  field(): Field {
    const key = this.varint();
    const num = Math.floor(key / 8);
    const wire = key & 7;
    switch (wire) {
      case 0:
        return { num, wire, int: this.varint(), bytes: null };
      case 1: {
        if (this.pos + 8 > this.buf.length) this.fail('truncated fixed64');
        const v = new DataView(this.buf.buffer, this.buf.byteOffset + this.pos, 8).getFloat64(0, true);
        this.pos += 8;
        return { num, wire, int: v, bytes: null };
      }
      case 2: {
        const len = this.varint();
        if (len < 0 || this.pos + len > this.buf.length) this.fail('truncated length-delimited field');
        const bytes = this.buf.subarray(this.pos, this.pos + len);
        this.pos += len;
        return { num, wire, int: 0, bytes };
      }
      case 5: {
        if (this.pos + 4 > this.buf.length) this.fail('truncated fixed32');
        const v = new DataView(this.buf.buffer, this.buf.byteOffset + this.pos, 4).getUint32(0, true);
        this.pos += 4;
        return { num, wire, int: v, bytes: null };
      }
      default:
        this.fail(`unsupported wire type ${wire}`);
    }
  }
}

function* fields(buf: Uint8Array, file: string): Generator<Field> {
  const r = new ProtoReader(buf, file);
  while (!r.done) yield r.field();
}

// ignoreBOM: a piece may be U+FEFF itself (Llama's id 30143), which a default TextDecoder would strip.
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const f32 = new DataView(new ArrayBuffer(4));

function str(f: Field, file: string): string {
  if (f.bytes === null) throw new TokenizerLoadError(file, `field ${f.num} is not a string`);
  return utf8.decode(f.bytes);
}

/**
 * Parses a sentencepiece model (`tokenizer.model`, a serialized `sentencepiece.ModelProto`). Only the fields that
 * tokenization depends on are kept; unknown fields are skipped.
 */
export function parseSentencePieceModel(bytes: Uint8Array, file = 'tokenizer.model'): SentencePieceModel {
  const model: SentencePieceModel = {
    pieces: [],
    // proto2 defaults of sentencepiece_model.proto
    modelType: SentencePieceModelType.UNIGRAM,
    byteFallback: false,
    unkId: 0,
    bosId: 1,
    eosId: 2,
    padId: -1,
    splitDigits: false,
    normalizerName: 'nmt_nfkc',
    precompiledCharsmap: new Uint8Array(0),
    addDummyPrefix: true,
    removeExtraWhitespaces: true,
    escapeWhitespaces: true,
  };
  let sawNormalizer = false;
  for (const f of fields(bytes, file)) {
    if (f.num === 1 && f.bytes) {
      const p: SentencePiece = { piece: '', score: 0, type: SentencePieceType.NORMAL };
      for (const g of fields(f.bytes, file)) {
        if (g.num === 1) p.piece = str(g, file);
        else if (g.num === 2 && g.wire === 5) {
          f32.setUint32(0, g.int, true);
          p.score = f32.getFloat32(0, true);
        } else if (g.num === 3) p.type = g.int;
      }
      model.pieces.push(p);
    } else if (f.num === 2 && f.bytes) {
      for (const g of fields(f.bytes, file)) {
        if (g.num === 3) model.modelType = g.int;
        else if (g.num === 25) model.splitDigits = g.int !== 0;
        else if (g.num === 35) model.byteFallback = g.int !== 0;
        else if (g.num === 40) model.unkId = g.int;
        else if (g.num === 41) model.bosId = g.int;
        else if (g.num === 42) model.eosId = g.int;
        else if (g.num === 43) model.padId = g.int;
      }
    } else if (f.num === 3 && f.bytes) {
      sawNormalizer = true;
      for (const g of fields(f.bytes, file)) {
        if (g.num === 1) model.normalizerName = str(g, file);
        else if (g.num === 2 && g.bytes) model.precompiledCharsmap = g.bytes.slice();
        else if (g.num === 3) model.addDummyPrefix = g.int !== 0;
        else if (g.num === 4) model.removeExtraWhitespaces = g.int !== 0;
        else if (g.num === 5) model.escapeWhitespaces = g.int !== 0;
      }
    }
  }
  if (model.pieces.length === 0) throw new TokenizerLoadError(file, 'sentencepiece model has no pieces');
  if (!sawNormalizer) model.normalizerName = 'identity';
  return model;
}

export interface SentencePieceConversionOptions {
  /**
   * `true` (default): the legacy Llama conversion (normalizer `Prepend("▁")` + `Replace(" ", "▁")`, as in Llama-2 /
   * TinyLlama / Mistral-7B-v0.1 `tokenizer.json`): every text section between special tokens gets a leading `▁`.
   * `false`: transformers' `legacy=False` conversion (`Metaspace` pre-tokenizer with `prepend_scheme: "first"`), where
   * only the start of the text gets one.
   */
  legacy?: boolean;
  /** Whether the post-processor adds BOS (default: `true` when the model has a BOS piece). */
  addBos?: boolean;
  /** Whether the post-processor adds EOS (default `false`). */
  addEos?: boolean;
}

function bpeMerges(pieces: SentencePiece[]): [string, string][] {
  const normal = new Map<string, number>();
  pieces.forEach((p, id) => {
    if (p.type === SentencePieceType.NORMAL) normal.set(p.piece, id);
  });
  // As transformers' SentencePieceExtractor: every split of a piece into two pieces is a merge, ranked by the merged
  // piece's score (sentencepiece merges the pair whose result scores highest). Only normal pieces take part.
  const merges: { l: string; r: string; score: number; id: number; lid: number; rid: number }[] = [];
  for (const [piece, id] of normal) {
    const chars = Array.from(piece);
    for (let k = 1; k < chars.length; k++) {
      const l = chars.slice(0, k).join('');
      const r = chars.slice(k).join('');
      const lid = normal.get(l);
      const rid = normal.get(r);
      if (lid !== undefined && rid !== undefined)
        merges.push({ l, r, score: pieces[id]!.score, id, lid, rid });
    }
  }
  merges.sort((a, b) => b.score - a.score || a.id - b.id || a.lid - b.lid || a.rid - b.rid);
  return merges.map((m) => [m.l, m.r]);
}

/**
 * Builds the Hugging Face `tokenizer.json` equivalent of a sentencepiece model, as transformers' `LlamaConverter`
 * does: BPE with the model's pieces as vocabulary and merges derived from piece scores, byte fallback, control /
 * unknown / user-defined pieces as added tokens. Unigram models become a `Unigram` model.
 */
export function sentencePieceToTokenizerJson(
  model: SentencePieceModel,
  options: SentencePieceConversionOptions = {},
  file = 'tokenizer.model',
): TokenizerJson {
  const legacy = options.legacy ?? true;
  const { pieces } = model;
  const pieceAt = (id: number): string | null => (id >= 0 && id < pieces.length ? pieces[id]!.piece : null);
  const unk = pieceAt(model.unkId);
  const bos = pieceAt(model.bosId);
  const eos = pieceAt(model.eosId);

  let modelJson: Record<string, unknown>;
  if (model.modelType === SentencePieceModelType.BPE) {
    const vocab: Record<string, number> = {};
    pieces.forEach((p, id) => {
      vocab[p.piece] = id;
    });
    modelJson = {
      type: 'BPE',
      dropout: null,
      unk_token: unk,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: model.byteFallback,
      vocab,
      merges: bpeMerges(pieces),
    };
  } else if (model.modelType === SentencePieceModelType.UNIGRAM) {
    modelJson = {
      type: 'Unigram',
      unk_id: model.unkId,
      byte_fallback: model.byteFallback,
      vocab: pieces.map((p) => [p.piece, p.score]),
    };
  } else {
    throw new TokenizerLoadError(
      file,
      `sentencepiece model type ${model.modelType} is not supported (BPE and Unigram are)`,
    );
  }

  // As transformers' LlamaConverter, sentencepiece's remove_extra_whitespaces is not reproduced (llama2.c does not
  // collapse spaces either); a non-identity normalization becomes the (approximate) Precompiled normalizer.
  const normalizers: Record<string, unknown>[] = [];
  if (model.normalizerName !== 'identity' && model.precompiledCharsmap.length > 0) {
    normalizers.push({
      type: 'Precompiled',
      precompiled_charsmap: Buffer.from(model.precompiledCharsmap).toString('base64'),
    });
  }
  let preTokenizer: Record<string, unknown> | null = null;
  if (legacy) {
    if (model.addDummyPrefix) normalizers.push({ type: 'Prepend', prepend: '▁' });
    normalizers.push({ type: 'Replace', pattern: { String: ' ' }, content: '▁' });
  } else {
    preTokenizer = {
      type: 'Metaspace',
      replacement: '▁',
      prepend_scheme: model.addDummyPrefix ? 'first' : 'never',
      split: false,
    };
  }

  const decoders: Record<string, unknown>[] = [{ type: 'Replace', pattern: { String: '▁' }, content: ' ' }];
  if (model.byteFallback) decoders.push({ type: 'ByteFallback' });
  decoders.push({ type: 'Fuse' });
  if (model.addDummyPrefix) decoders.push({ type: 'Strip', content: ' ', start: 1, stop: 0 });

  const addBos = (options.addBos ?? true) && bos !== null;
  const addEos = (options.addEos ?? false) && eos !== null;
  const single: Record<string, unknown>[] = [];
  const specialTokens: Record<string, unknown> = {};
  if (addBos && bos !== null) {
    single.push({ SpecialToken: { id: bos, type_id: 0 } });
    specialTokens[bos] = { id: bos, ids: [model.bosId], tokens: [bos] };
  }
  single.push({ Sequence: { id: 'A', type_id: 0 } });
  if (addEos && eos !== null) {
    single.push({ SpecialToken: { id: eos, type_id: 0 } });
    specialTokens[eos] = { id: eos, ids: [model.eosId], tokens: [eos] };
  }
  const pair = [...single, { Sequence: { id: 'B', type_id: 1 } }];

  const addedTokens = pieces.flatMap((p, id) =>
    p.type === SentencePieceType.CONTROL ||
    p.type === SentencePieceType.UNKNOWN ||
    p.type === SentencePieceType.USER_DEFINED
      ? [
          {
            id,
            content: p.piece,
            single_word: false,
            lstrip: false,
            rstrip: false,
            normalized: false,
            special: p.type !== SentencePieceType.USER_DEFINED,
          },
        ]
      : [],
  );

  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: addedTokens,
    normalizer: normalizers.length === 0 ? null : { type: 'Sequence', normalizers },
    pre_tokenizer: preTokenizer,
    post_processor: { type: 'TemplateProcessing', single, pair, special_tokens: specialTokens },
    decoder: { type: 'Sequence', decoders },
    model: modelJson,
  };
}
