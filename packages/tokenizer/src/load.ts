import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { FileAccessError, readRegularFile, readTextFile } from '@mnemo/files';
import { TokenizerLoadError } from './errors';
import { byteLevelBpeToTokenizerJson } from './gpt2';
import { parseSentencePieceModel, sentencePieceToTokenizerJson } from './sentencepiece';
import { Tokenizer } from './tokenizer';
import type { ModelConfigLike, NamedChatTemplate, TokenizerConfig, TokenizerJson } from './types';

function isMissing(e: unknown): boolean {
  if (e instanceof FileAccessError) return e.code === 'NOT_FOUND';
  const code = (e as { code?: unknown }).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

/** Largest JSON, template or text file of a tokenizer accepted (tokenizer.json of large vocabularies is ~30 MB). */
export const MAX_TOKENIZER_FILE_BYTES = 512 * 1024 * 1024;

/**
 * The text of a tokenizer file, or null when it does not exist. Only a regular file of bounded size is read: a FIFO
 * or a device in its place is refused instead of blocking or being read.
 */
async function readText(path: string): Promise<string | null> {
  try {
    return await readTextFile(path, { maxBytes: MAX_TOKENIZER_FILE_BYTES });
  } catch (e) {
    if (isMissing(e)) return null;
    throw new TokenizerLoadError(
      path,
      e instanceof FileAccessError ? e.detail : `cannot read: ${String(e)}`,
      {
        cause: e,
      },
    );
  }
}

function parseJson<T>(path: string, text: string): T {
  try {
    return JSON.parse(text) as T;
  } catch (e) {
    throw new TokenizerLoadError(path, `invalid JSON: ${(e as Error).message}`, { cause: e });
  }
}

function parseObject<T>(path: string, text: string): T {
  const v = parseJson<unknown>(path, text);
  if (typeof v !== 'object' || v === null || Array.isArray(v)) {
    throw new TokenizerLoadError(path, 'expected a JSON object');
  }
  return v as T;
}

async function readJsonObject<T>(path: string): Promise<T | null> {
  const text = await readText(path);
  return text === null ? null : parseObject<T>(path, text);
}

/** `tokenizer.model`, else the highest `tokenizer.model.vN` (Mistral's naming), else null. */
async function findSentencePieceModel(dir: string): Promise<string | null> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (e) {
    if (isMissing(e)) throw new TokenizerLoadError(dir, 'model folder does not exist', { cause: e });
    throw new TokenizerLoadError(dir, `cannot list: ${(e as Error).message}`, { cause: e });
  }
  if (names.includes('tokenizer.model')) return join(dir, 'tokenizer.model');
  const versioned = names
    .map((n) => /^tokenizer\.model\.v(\d+)$/.exec(n))
    .filter((m): m is RegExpExecArray => m !== null)
    .sort((a, b) => Number(b[1]) - Number(a[1]));
  return versioned.length > 0 ? join(dir, versioned[0]![0]) : null;
}

/** Chat templates stored beside tokenizer_config.json by newer transformers versions, or null. */
async function readChatTemplateFiles(dir: string): Promise<string | NamedChatTemplate[] | null> {
  const named: NamedChatTemplate[] = [];
  const jinja = await readText(join(dir, 'chat_template.jinja'));
  if (jinja !== null) {
    named.push({ name: 'default', template: jinja });
  } else {
    const jsonPath = join(dir, 'chat_template.json');
    const json = await readJsonObject<{ chat_template?: unknown }>(jsonPath);
    if (json !== null) {
      const t = json.chat_template;
      if (typeof t === 'string') named.push({ name: 'default', template: t });
      else if (Array.isArray(t)) named.push(...(t as NamedChatTemplate[]));
      else
        throw new TokenizerLoadError(
          jsonPath,
          '"chat_template" must be a string or a list of {name, template}',
        );
    }
  }
  const extraDir = join(dir, 'additional_chat_templates');
  let extra: string[] = [];
  try {
    extra = (await readdir(extraDir)).filter((n) => n.endsWith('.jinja')).sort();
  } catch (e) {
    if (!isMissing(e))
      throw new TokenizerLoadError(extraDir, `cannot list: ${(e as Error).message}`, { cause: e });
  }
  for (const n of extra) {
    const text = await readText(join(extraDir, n));
    if (text !== null) named.push({ name: n.slice(0, -'.jinja'.length), template: text });
  }
  if (named.length === 0) return null;
  if (named.length === 1 && named[0]!.name === 'default') return named[0]!.template;
  return named;
}

/**
 * Loads the tokenizer of a Hugging Face model folder.
 *
 * Reads `tokenizer.json` (or, without it, GPT-2's `vocab.json` + `merges.txt`, or a sentencepiece `tokenizer.model`
 * / `tokenizer.model.vN`, converted as transformers does), and the optional `tokenizer_config.json` (BOS/EOS flags,
 * special tokens, chat template), `special_tokens_map.json`, `generation_config.json` and `config.json` (EOS ids),
 * `chat_template.jinja` / `chat_template.json` / `additional_chat_templates/*.jinja`.
 */
export async function loadTokenizer(dir: string): Promise<Tokenizer> {
  const tokenizerConfig = await readJsonObject<TokenizerConfig>(join(dir, 'tokenizer_config.json'));
  const config: TokenizerConfig = { ...(tokenizerConfig ?? {}) };

  let tokenizerJson: TokenizerJson;
  let tokenizerJsonText: string;
  const tjPath = join(dir, 'tokenizer.json');
  const tjText = await readText(tjPath);
  if (tjText !== null) {
    tokenizerJson = parseObject<TokenizerJson>(tjPath, tjText);
    tokenizerJsonText = tjText;
  } else {
    const vocabText = await readText(join(dir, 'vocab.json'));
    const mergesText = await readText(join(dir, 'merges.txt'));
    if (vocabText !== null && mergesText !== null) {
      const vocab = parseObject<Record<string, number>>(join(dir, 'vocab.json'), vocabText);
      tokenizerJson = byteLevelBpeToTokenizerJson(vocab, mergesText, join(dir, 'merges.txt'));
      // GPT2Tokenizer's defaults when tokenizer_config.json does not say otherwise.
      if (vocab['<|endoftext|>'] !== undefined) {
        for (const key of ['bos_token', 'eos_token', 'unk_token'] as const) {
          if (!(key in config)) config[key] = '<|endoftext|>';
        }
      }
    } else {
      const spPath = await findSentencePieceModel(dir);
      if (spPath === null) {
        throw new TokenizerLoadError(
          dir,
          'no tokenizer found (expected tokenizer.json, vocab.json + merges.txt, or tokenizer.model)',
        );
      }
      let bytes: Uint8Array;
      try {
        bytes = new Uint8Array(await readRegularFile(spPath, { maxBytes: MAX_TOKENIZER_FILE_BYTES }));
      } catch (e) {
        const detail = e instanceof FileAccessError ? e.detail : `cannot read: ${String(e)}`;
        throw new TokenizerLoadError(spPath, detail, { cause: e });
      }
      const sp = parseSentencePieceModel(bytes, spPath);
      tokenizerJson = sentencePieceToTokenizerJson(
        sp,
        {
          legacy: config.legacy !== false,
          addBos: config.add_bos_token !== false,
          addEos: config.add_eos_token === true,
        },
        spPath,
      );
      const piece = (id: number) => (id >= 0 && id < sp.pieces.length ? sp.pieces[id]!.piece : undefined);
      const defaults = { bos_token: piece(sp.bosId), eos_token: piece(sp.eosId), unk_token: piece(sp.unkId) };
      for (const [key, value] of Object.entries(defaults)) {
        if (value !== undefined && !(key in config)) config[key] = value;
      }
    }
    tokenizerJsonText = JSON.stringify(tokenizerJson);
  }

  const [specialTokensMap, generationConfig, modelConfig, chatTemplate] = await Promise.all([
    readJsonObject<Record<string, unknown>>(join(dir, 'special_tokens_map.json')),
    readJsonObject<ModelConfigLike>(join(dir, 'generation_config.json')),
    readJsonObject<ModelConfigLike>(join(dir, 'config.json')),
    readChatTemplateFiles(dir),
  ]);

  return new Tokenizer({
    tokenizerJson,
    tokenizerJsonText,
    tokenizerConfig: config,
    specialTokensMap,
    generationConfig,
    modelConfig,
    chatTemplate,
    source: dir,
  });
}
