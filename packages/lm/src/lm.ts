import { type CacheKindOptions, makeCaches } from '@mnemo/kv-cache';
import {
  type LoadedModel,
  type LoadModelOptions,
  loadModel,
  type Model,
  type RawConfig,
} from '@mnemo/models';
import type { Backend } from '@mnemo/tensor';
import { type ChatMessage, createDetokenizer, loadTokenizer, type Tokenizer } from '@mnemo/tokenizer';
import { logprobsOf, type StepLogprobs } from './logprobs';
import { PromptCache } from './prompt-cache';
import {
  type LogitsProcessorOptions,
  makeLogitsProcessors,
  makeSampler,
  type SamplerOptions,
} from './sampler';
import { emptyStats, type GenerationStats, peakMemoryMb } from './stats';
import { generateStep } from './step';
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

export interface GenerateOptions extends SamplerOptions, LogitsProcessorOptions, PromptOptions {
  /** Most tokens to generate (default 256). */
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

function idsOf(v: unknown): number[] {
  if (typeof v === 'number' && Number.isSafeInteger(v)) return [v];
  if (Array.isArray(v)) return v.filter((x): x is number => typeof x === 'number' && Number.isSafeInteger(x));
  return [];
}

/** A model with its tokenizer: the object most users work with. */
export class LM {
  /** Every id that ends generation: config.json, generation_config.json and the tokenizer, together. */
  readonly eosIds: readonly number[];

  private constructor(
    readonly loaded: LoadedModel,
    readonly tokenizer: Tokenizer,
  ) {
    const ids = new Set<number>([
      ...idsOf(loaded.config.eos_token_id),
      ...idsOf(loaded.generationConfig?.eos_token_id),
      ...tokenizer.eosIds,
    ]);
    this.eosIds = [...ids].sort((a, b) => a - b);
  }

  static async load(pathOrRepo: string, opts: LoadOptions = {}): Promise<LM> {
    const loaded = await loadModel(pathOrRepo, opts);
    try {
      const tokenizer = await loadTokenizer(loaded.dir);
      return new LM(loaded, tokenizer);
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

  /** Fresh per-layer caches of the given kind. */
  makeCaches(kind: CacheKindOptions = {}) {
    const { nKvHeads, headDim } = this.model.cacheShape;
    return makeCaches(this.model.numLayers, { backend: this.backend, nKvHeads, headDim, ...kind });
  }

  /** An empty prompt cache for this model (reused across calls through `promptCache`). */
  makePromptCache(kind: CacheKindOptions = {}): PromptCache {
    return new PromptCache(this.makeCaches(kind), [], this.fingerprint, () => this.makeCaches(kind));
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
        if (tokens.length >= maxTokens) {
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
