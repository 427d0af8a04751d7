import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import {
  type CacheKindOptions,
  exportMlxPromptCache,
  importMlxPromptCache,
  inspectPromptCache,
  type KVCache,
  loadPromptCache,
  type MlxDType,
  PromptCacheError,
  savePromptCache,
} from '@mnemo/kv-cache';
import {
  type LoadedModel,
  type LoadModelOptions,
  loadModel,
  type Model,
  type RawConfig,
} from '@mnemo/models';
import type { Backend } from '@mnemo/tensor';
import {
  type ChatMessage,
  createDetokenizer,
  loadTokenizer,
  type Tokenizer,
  tokenizerFingerprint,
  tokenizerFromGguf,
} from '@mnemo/tokenizer';
import { logprobsOf, type StepLogprobs } from './logprobs';
import { PromptCache, type PromptTemplateUse } from './prompt-cache';
import {
  type LogitsProcessorOptions,
  makeLogitsProcessors,
  makeSampler,
  type SamplerOptions,
} from './sampler';
import { emptyStats, type GenerationStats, peakMemoryMb } from './stats';
import { generateStep, type PrefillOptions, prefill } from './step';
import { StopStrings } from './stop';

/** What to generate from: raw text, chat messages, or token ids. */
export type PromptInput =
  | string
  | { readonly messages: readonly ChatMessage[] }
  | { readonly tokens: readonly number[] };

export interface PromptOptions {
  /** Apply the tokenizer's chat template to a text prompt (default: when the tokenizer has one). */
  readonly chatTemplate?: boolean;
  /** System message placed before a text prompt when the chat template is applied. */
  readonly systemPrompt?: string;
}

export interface ContextOptions {
  /**
   * Run past the model's context (`max_position_embeddings` of config.json). By default a prompt that leaves no room
   * in it, a prompt to cache longer than it, or a cache file holding more tokens is refused before anything is computed
   * (as llama.cpp refuses prompts longer than its context), and generation stops (finish reason `length`) when prompt
   * and generated tokens fill it: positions the model was not trained for give unreliable output.
   */
  readonly ignoreContextLimit?: boolean;
}

export interface GenerateOptions
  extends SamplerOptions,
    LogitsProcessorOptions,
    PromptOptions,
    ContextOptions {
  /** Most tokens to generate (default 256); generation also stops when the model's context is full. */
  readonly maxTokens?: number;
  /** Prompt tokens per forward call while prefilling (default 512); results are bitwise the same for any value. */
  readonly prefillStepSize?: number;
  /** Report the top `logprobs` alternatives of each generated token (0 = only the token's own logprob). */
  readonly logprobs?: number;
  /** Keep generating past end-of-sequence tokens (for benchmarks and reference comparisons). */
  readonly ignoreEos?: boolean;
  /** Extra strings that end generation (not included in the text). */
  readonly stop?: readonly string[];
  /** Caches and the tokens they hold, reused for the longest common prefix and updated in place. */
  readonly promptCache?: PromptCache;
  /** Cache kind for a fresh generation without `promptCache`. */
  readonly cache?: CacheKindOptions;
  /** Called while the prompt is processed. */
  readonly onPrefill?: (done: number, total: number) => void;
}

export type FinishReason = 'stop' | 'length';

export interface GenerationChunk {
  /** Token id generated (a stop token is reported with `finishReason: 'stop'` and empty text). */
  readonly token: number;
  /** New text since the previous chunk. */
  readonly text: string;
  readonly logprobs: StepLogprobs;
  readonly finishReason?: FinishReason;
}

export interface GenerationResult {
  readonly promptTokens: number[];
  /** Generated ids, without a stop token. */
  readonly tokens: number[];
  readonly text: string;
  readonly finishReason: FinishReason;
  readonly logprobs: StepLogprobs[];
  readonly stats: GenerationStats;
}

export interface LoadOptions extends LoadModelOptions {}

export interface CachePromptOptions extends PromptOptions, PrefillOptions, ContextOptions {
  /** Cache kind (rotating with `maxKvSize`, quantized with `kvBits`, standard otherwise). */
  readonly cache?: CacheKindOptions;
}

/** Marks the end of the user's text when finding what a templated continuation shares. */
const SENTINEL = '\u{10FFFD}mnemo-prompt-end\u{10FFFD}';

function idsOf(v: unknown): number[] {
  if (typeof v === 'number' && Number.isSafeInteger(v)) return [v];
  if (Array.isArray(v)) return v.filter((x): x is number => typeof x === 'number' && Number.isSafeInteger(x));
  return [];
}

/** A model with its tokenizer: the object most users work with. */
export class LM {
  /** Every id that ends generation: config.json, generation_config.json and the tokenizer, together. */
  readonly eosIds: readonly number[];
  /** sha256 of the tokenizer and its chat templates. */
  readonly tokenizerFingerprint: string;

  private constructor(
    readonly loaded: LoadedModel,
    readonly tokenizer: Tokenizer,
    /**
     * Where the model came from: the absolute local folder or GGUF file, or the Hub reference as given (`owner/name`,
     * `owner/name:Q4_K_M`). Recorded in prompt-cache files (`model`), so that a file works from any folder.
     */
    readonly source: string,
  ) {
    const ids = new Set<number>([
      ...idsOf(loaded.config.eos_token_id),
      ...idsOf(loaded.generationConfig?.eos_token_id),
      ...tokenizer.eosIds,
    ]);
    this.eosIds = [...ids].sort((a, b) => a - b);
    this.tokenizerFingerprint = tokenizerFingerprint(tokenizer);
  }

  /**
   * Loads a model and its tokenizer: a model folder or Hub repo id (safetensors), or a GGUF file — a local `.gguf`
   * path, `owner/name:QUANT` or `owner/name/file.gguf` — whose tokenizer comes from its metadata.
   */
  static async load(pathOrRepo: string, opts: LoadOptions = {}): Promise<LM> {
    const loaded = await loadModel(pathOrRepo, opts);
    try {
      const tokenizer = loaded.gguf
        ? tokenizerFromGguf(loaded.gguf.metadata, loaded.gguf.path)
        : await loadTokenizer(loaded.dir);
      return new LM(loaded, tokenizer, loaded.source);
    } catch (e) {
      loaded.model.free();
      throw e;
    }
  }

  get model(): Model {
    return this.loaded.model;
  }
  get backend(): Backend {
    return this.loaded.backend;
  }
  get config(): RawConfig {
    return this.loaded.config;
  }
  get fingerprint(): string {
    return this.loaded.fingerprint;
  }
  /** The backend's arithmetic (`numerics ?? name`), recorded in prompt-cache files and checked when loading one. */
  get numerics(): string {
    return this.backend.numerics ?? this.backend.name;
  }
  /** Most positions the model was trained for (`max_position_embeddings`; 4096 when config.json does not say). */
  get contextLength(): number {
    return this.model.maxPositionEmbeddings;
  }

  /** Refuses `positions` past the model's context unless asked to allow it; `what` says what would need them. */
  private checkContext(positions: number, what: string, opts: ContextOptions): void {
    if (opts.ignoreContextLimit || positions <= this.contextLength) return;
    throw new RangeError(
      `${what} ${positions} positions, more than the model's context of ${this.contextLength} (max_position_embeddings); ` +
        'shorten it, or allow it explicitly (ignoreContextLimit, mnemo --ignore-context-limit)',
    );
  }

  /** Token ids of a prompt: chat-templated (when asked and available) or raw text with the tokenizer's BOS rules. */
  encode(prompt: PromptInput, opts: PromptOptions = {}): number[] {
    if (typeof prompt !== 'string') {
      if ('tokens' in prompt) return [...prompt.tokens];
      return this.tokenizer.encodeChat(prompt.messages, { addGenerationPrompt: true });
    }
    const useTemplate = opts.chatTemplate ?? this.tokenizer.hasChatTemplate;
    if (useTemplate) {
      const messages: ChatMessage[] = [];
      if (opts.systemPrompt !== undefined) messages.push({ role: 'system', content: opts.systemPrompt });
      messages.push({ role: 'user', content: prompt });
      return this.tokenizer.encodeChat(messages, { addGenerationPrompt: true });
    }
    return this.tokenizer.encode(prompt);
  }

  /** Whether `encode` applies the chat template to a text prompt with these options. */
  usesChatTemplate(opts: PromptOptions = {}): boolean {
    return (opts.chatTemplate ?? this.tokenizer.hasChatTemplate) && this.tokenizer.hasChatTemplate;
  }

  /**
   * Token ids that every continuation of `text` (`text + more`, encoded by `encode`) starts with — or nearly: what
   * the cache of a prompt should hold. Raw text: its encoding. With the chat template: the rendered conversation up to
   * the end of the user's text (the template's closing of the message and the generation prompt come after whatever
   * follows). Prompt reuse matches token ids, so a boundary token that merges differently is simply recomputed.
   */
  sharedPrefixTokens(text: string, opts: PromptOptions = {}): number[] {
    if (!this.usesChatTemplate(opts)) return this.tokenizer.encode(text);
    const messages: ChatMessage[] = [];
    if (opts.systemPrompt !== undefined) messages.push({ role: 'system', content: opts.systemPrompt });
    messages.push({ role: 'user', content: text + SENTINEL });
    const rendered = this.tokenizer.applyChatTemplate(messages, { addGenerationPrompt: true });
    const end = rendered.indexOf(SENTINEL);
    if (end < 0) return []; // the template does not show the message verbatim: nothing is known to be shared
    return this.tokenizer.encode(rendered.slice(0, end), { addSpecialTokens: false });
  }

  /**
   * Processes `text` into a prompt cache holding what its continuations share (see `sharedPrefixTokens`), ready to be
   * saved or passed as `promptCache`. `cache.prompt` and `cache.template` record how to assemble a continuation.
   */
  cachePrompt(text: string, opts: CachePromptOptions = {}): PromptCache {
    const tokens = this.sharedPrefixTokens(text, opts);
    if (tokens.length === 0) throw new RangeError('the prompt has no tokens to cache');
    this.checkContext(tokens.length, 'the prompt to cache needs', opts);
    const pc = this.makePromptCache(opts.cache);
    try {
      prefill(this.model, tokens, pc.caches, opts);
    } catch (e) {
      pc.free();
      throw e;
    }
    pc.tokens = tokens;
    pc.prompt = text;
    pc.template = this.usesChatTemplate(opts)
      ? { applied: true, ...(opts.systemPrompt !== undefined ? { systemPrompt: opts.systemPrompt } : {}) }
      : { applied: false };
    return pc;
  }

  /** The full text prompt for a continuation of a cached prompt: the cached text followed by `text`. */
  continuation(pc: PromptCache, text: string): string {
    return pc.prompt + text;
  }

  /**
   * Saves a prompt cache (used rows only, with fingerprints and token ids) atomically to `path`. `model` defaults to
   * {@link source}: the absolute local folder or GGUF file, or the Hub reference.
   */
  async savePromptCache(path: string, pc: PromptCache, opts: { model?: string } = {}): Promise<void> {
    await savePromptCache(path, pc.caches, {
      modelFingerprint: this.fingerprint,
      tokenizerFingerprint: this.tokenizerFingerprint,
      numerics: this.numerics,
      tokens: pc.tokens,
      prompt: pc.prompt,
      modelConfig: this.config,
      chatTemplate: JSON.stringify(pc.template),
      model: opts.model ?? this.source,
    });
  }

  /**
   * The bytes of the prompt-cache file {@link savePromptCache} writes for `pc`, for keeping a cache somewhere other than
   * a file (a database, another machine). They go through the file code itself (a private temporary file in
   * `opts.tmpDir`, default the OS temp folder, removed before returning), so they are exactly a file's bytes.
   */
  async savePromptCacheToBytes(
    pc: PromptCache,
    opts: { model?: string; tmpDir?: string } = {},
  ): Promise<Uint8Array> {
    return withTempFile(opts.tmpDir, async (file) => {
      await this.savePromptCache(file, pc, opts);
      return new Uint8Array(await readFile(file));
    });
  }

  /**
   * Loads a prompt cache from the bytes of a prompt-cache file (see {@link savePromptCacheToBytes}), with every check
   * {@link loadPromptCache} makes: damaged bytes or another model's cache are refused with a PromptCacheError.
   */
  async loadPromptCacheFromBytes(bytes: Uint8Array, opts: { tmpDir?: string } = {}): Promise<PromptCache> {
    if (!(bytes instanceof Uint8Array)) throw new TypeError('loadPromptCacheFromBytes expects a Uint8Array');
    return withTempFile(opts.tmpDir, async (file) => {
      await writeFile(file, bytes, { mode: 0o600 });
      try {
        return await this.loadPromptCache(file);
      } catch (e) {
        // Name the bytes, not the temporary file they went through.
        if (!(e instanceof PromptCacheError)) throw e;
        throw new PromptCacheError(e.code, `prompt-cache bytes: ${e.detail}`, { cause: e });
      }
    });
  }

  /**
   * Loads a prompt cache file made for this model and tokenizer; refuses (PromptCacheError) a file that is damaged, of
   * an unknown version, made for another model or tokenizer, holding more tokens than the model's context (unless
   * `ignoreContextLimit`), or whose informative texts do not belong to its tokens: the `prompt` entry must encode to
   * exactly the cached token ids, and the prompt, system prompt and messages together cannot be longer than the cached
   * tokens can spell (`tokenizer.maxTokenChars` each).
   */
  async loadPromptCache(path: string, opts: ContextOptions = {}): Promise<PromptCache> {
    const { caches, meta } = await loadPromptCache(path, {
      backend: this.backend,
      expect: {
        modelFingerprint: this.fingerprint,
        tokenizerFingerprint: this.tokenizerFingerprint,
        numerics: this.numerics,
        layers: this.model.attentionLayers,
        ...(opts.ignoreContextLimit ? {} : { maxTokens: this.contextLength }),
      },
    });
    const template = parseTemplateUse(meta.chatTemplate);
    try {
      this.checkInformativeTexts(path, meta.tokens, meta.prompt, template);
    } catch (e) {
      for (const c of caches) c.free();
      throw e;
    }
    // the file's kinds and parameters, per layer: a cache that cannot be trimmed is replaced by empty ones like it
    const pc = new PromptCache(caches, [...meta.tokens], this.fingerprint);
    pc.prompt = meta.prompt;
    pc.template = template;
    return pc;
  }

  /**
   * The `prompt` and `chat_template` entries of a cache file are informative: the cached token ids are what counts.
   * They are used, though (a continuation is `prompt + text`; a chat goes on from `messages`), so they must belong to
   * the tokens: never longer than the tokens can spell, and `prompt` encoding to exactly those tokens.
   */
  private checkInformativeTexts(
    path: string,
    tokens: readonly number[],
    prompt: string,
    template: PromptTemplateUse,
  ): void {
    const messages = template.messages ?? [];
    let chars = prompt.length + (template.systemPrompt?.length ?? 0);
    for (const m of messages) chars += typeof m.content === 'string' ? m.content.length : 0;
    const most = (tokens.length + messages.length + 1) * this.tokenizer.maxTokenChars;
    if (chars > most)
      throw new PromptCacheError(
        'CORRUPT',
        `its prompt and messages hold ${chars} characters, more than its ${tokens.length} cached tokens can spell (at most ${most})`,
        { file: path },
      );
    if (prompt === '') return;
    const expected = this.sharedPrefixTokens(prompt, {
      chatTemplate: template.applied,
      ...(template.systemPrompt !== undefined ? { systemPrompt: template.systemPrompt } : {}),
    });
    if (expected.length !== tokens.length || expected.some((t, i) => t !== tokens[i]))
      throw new PromptCacheError(
        'CORRUPT',
        `its 'prompt' entry encodes to ${expected.length} tokens that differ from the ${tokens.length} cached ones: the entry does not belong to this cache`,
        { file: path },
      );
  }

  /**
   * Writes a prompt cache in mlx-lm's `save_prompt_cache` layout (keys/values `[1, kv_heads, T, head_dim]` after RoPE,
   * in `dtype`; f32 keeps every value). Such files carry no token ids: keep the prompt to import it again.
   */
  async exportMlxPromptCache(path: string, pc: PromptCache, opts: { dtype?: MlxDType } = {}): Promise<void> {
    await exportMlxPromptCache(path, pc.caches, {
      dtype: opts.dtype ?? 'f32',
      metadata: { model: this.source, chat_template: JSON.stringify(pc.template) },
    });
  }

  /**
   * Reads an mlx-lm prompt cache. It records no token ids, so the prompt it was made from must be given; its tokens
   * (as `sharedPrefixTokens` gives them with `opts`) must number exactly what the file holds, and every shape must fit
   * this model, or the file is refused.
   */
  async importMlxPromptCache(path: string, prompt: string, opts: PromptOptions = {}): Promise<PromptCache> {
    const imported = await importMlxPromptCache(path, {
      backend: this.backend,
      layers: this.model.attentionLayers,
    });
    const tokens = this.sharedPrefixTokens(prompt, opts);
    if (tokens.length !== imported.tokenCount) {
      for (const c of imported.caches) c.free();
      throw new PromptCacheError(
        'SHAPE_MISMATCH',
        `the prompt gives ${tokens.length} tokens but the file holds ${imported.tokenCount}: not the prompt this cache was made from`,
        { file: path },
      );
    }
    const pc = new PromptCache(imported.caches, tokens, this.fingerprint);
    pc.prompt = prompt;
    pc.template = this.usesChatTemplate(opts)
      ? { applied: true, ...(opts.systemPrompt !== undefined ? { systemPrompt: opts.systemPrompt } : {}) }
      : { applied: false };
    return pc;
  }

  /**
   * Fresh per-layer caches, as the model builds them (`Model.makeCaches`): ring caches of the window on sliding
   * layers, the kind `kind` asks for (standard, f16, quantized, rotating) on global ones.
   */
  makeCaches(kind: CacheKindOptions = {}): KVCache[] {
    return this.model.makeCaches(kind);
  }

  /** An empty prompt cache for this model (reused across calls through `promptCache`). */
  makePromptCache(kind: CacheKindOptions = {}): PromptCache {
    return new PromptCache(this.makeCaches(kind), [], this.fingerprint, () => this.makeCaches(kind), kind);
  }

  /** Streams generated tokens; the generator's return value is the whole result. */
  async *stream(
    prompt: PromptInput,
    opts: GenerateOptions = {},
  ): AsyncGenerator<GenerationChunk, GenerationResult> {
    const t0 = performance.now();
    const maxTokens = opts.maxTokens ?? 256;
    if (!Number.isSafeInteger(maxTokens) || maxTokens < 0)
      throw new RangeError(`maxTokens must be ≥ 0, got ${maxTokens}`);
    const k = opts.logprobs ?? 0;
    if (!Number.isSafeInteger(k) || k < 0 || k > this.model.vocabSize) {
      throw new RangeError(`logprobs must be an integer in [0, ${this.model.vocabSize}], got ${k}`);
    }
    const sampler = makeSampler(opts);
    const processors = makeLogitsProcessors(opts);
    const stops = new StopStrings(opts.stop ?? []);
    const promptTokens = this.encode(prompt, opts);
    // The prompt must leave room for what is asked (one token at least); generation stops when the context is full.
    this.checkContext(
      promptTokens.length + Math.min(maxTokens, 1),
      `the prompt has ${promptTokens.length} tokens; with one token generated that is`,
      opts,
    );
    const most = opts.ignoreContextLimit
      ? maxTokens
      : Math.min(maxTokens, this.contextLength - promptTokens.length);
    const owned = opts.promptCache === undefined;
    const pc = opts.promptCache ?? this.makePromptCache(opts.cache);
    if (pc.modelFingerprint !== undefined && pc.modelFingerprint !== this.fingerprint) {
      throw new Error('prompt cache was made for another model');
    }
    const stats = emptyStats();
    stats.promptTokens = promptTokens.length;
    const tokens: number[] = [];
    const logprobs: StepLogprobs[] = [];
    let text = '';
    let finishReason: FinishReason = 'length';
    try {
      if (maxTokens === 0) return { promptTokens, tokens, text, finishReason, logprobs, stats };
      stats.cachedTokens = pc.prepare(promptTokens);
      const history = [...promptTokens.slice(0, stats.cachedTokens)];
      for (let i = stats.cachedTokens; i < promptTokens.length; i++) history.push(promptTokens[i]!);
      pc.tokens = history;
      const detok = createDetokenizer(this.tokenizer);
      const steps = generateStep(this.model, this.backend, history, pc.caches, {
        sampler,
        processors,
        ...(opts.prefillStepSize !== undefined ? { prefillStepSize: opts.prefillStepSize } : {}),
        ...(opts.onPrefill ? { onPrefill: opts.onPrefill } : {}),
      });
      let tFirst = 0;
      for (const step of steps) {
        const n = tokens.length + 1;
        if (n === 1) {
          tFirst = performance.now();
          stats.timeToFirstTokenMs = tFirst - t0;
          const computed = promptTokens.length - stats.cachedTokens;
          stats.promptTps = computed / Math.max(1e-9, (tFirst - t0) / 1000);
        }
        stats.generationTokens = n;
        const lp = logprobsOf(step.logits, step.token, k);
        if (!opts.ignoreEos && this.eosIds.includes(step.token)) {
          finishReason = 'stop';
          const tail = stops.push(detok.flush()).text + stops.flush();
          text += tail;
          yield { token: step.token, text: tail, logprobs: lp, finishReason };
          break;
        }
        tokens.push(step.token);
        logprobs.push(lp);
        const { text: delta, stopped } = stops.push(detok.push(step.token));
        text += delta;
        if (stopped) {
          finishReason = 'stop';
          yield { token: step.token, text: delta, logprobs: lp, finishReason };
          break;
        }
        if (tokens.length >= most) {
          const tail = delta + stops.push(detok.flush()).text + stops.flush();
          text += tail.slice(delta.length);
          yield { token: step.token, text: tail, logprobs: lp, finishReason: 'length' };
          break;
        }
        yield { token: step.token, text: delta, logprobs: lp };
      }
      const tEnd = performance.now();
      if (stats.generationTokens > 1)
        stats.generationTps = (stats.generationTokens - 1) / ((tEnd - tFirst) / 1000);
      stats.peakMemoryMb = peakMemoryMb();
      return { promptTokens, tokens, text, finishReason, logprobs, stats };
    } catch (e) {
      // A caller's cache stays usable: its token list again names exactly what the caches hold.
      if (!owned) pc.recover();
      throw e;
    } finally {
      if (owned) pc.free();
    }
  }

  /** Generates to the end and returns the result. */
  async generate(prompt: PromptInput, opts: GenerateOptions = {}): Promise<GenerationResult> {
    const it = this.stream(prompt, opts);
    for (;;) {
      const r = await it.next();
      if (r.done) return r.value;
    }
  }

  free(): void {
    this.model.free();
  }
}

/** Runs `fn` with the path of a file in a fresh private folder under `dir` (default the OS temp folder), then removes the folder. */
async function withTempFile<T>(dir: string | undefined, fn: (file: string) => Promise<T>): Promise<T> {
  const folder = await mkdtemp(join(dir ?? tmpdir(), 'mnemo-pc-'));
  try {
    return await fn(join(folder, 'cache.safetensors'));
  } finally {
    await rm(folder, { recursive: true, force: true });
  }
}

function parseTemplateUse(s: string): PromptTemplateUse {
  try {
    const v = JSON.parse(s) as { applied?: unknown; systemPrompt?: unknown; messages?: unknown };
    if (v && typeof v === 'object' && typeof v.applied === 'boolean') {
      const messages = Array.isArray(v.messages)
        ? v.messages.filter(
            (m): m is { role: string; content: string } =>
              !!m && typeof m === 'object' && typeof m.role === 'string' && typeof m.content === 'string',
          )
        : undefined;
      return {
        applied: v.applied,
        ...(typeof v.systemPrompt === 'string' ? { systemPrompt: v.systemPrompt } : {}),
        ...(messages ? { messages } : {}),
      };
    }
  } catch {
    // informative field: a file from another writer may hold anything
  }
  return { applied: false };
}

/**
 * Where the model of a prompt cache file was loaded from (its `model` entry: an absolute local folder or GGUF file, or a
 * Hub reference), after checking the whole file, without loading anything else. A caller must not download or load what a file
 * names without the user's consent: see {@link isLocalModelReference}.
 */
export async function promptCacheModel(path: string): Promise<string> {
  const r = await inspectPromptCache(path);
  if (!r.valid || !r.info) {
    throw new PromptCacheError(r.error?.code ?? 'CORRUPT', r.error?.detail ?? 'not a valid prompt cache', {
      file: path,
    });
  }
  if (!r.info.model)
    throw new PromptCacheError('BAD_INPUT', 'the file does not say which model made it; pass --model', {
      file: path,
    });
  return r.info.model;
}

/** Whether a prompt-cache file's `model` entry names a local folder or file (an absolute path) rather than a Hub repo. */
export function isLocalModelReference(model: string): boolean {
  return isAbsolute(model);
}
