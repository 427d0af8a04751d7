import { createInterface } from 'node:readline/promises';
import { describeCache } from '@mnemo/kv-cache';
import {
  type GenerateOptions,
  type GenerationResult,
  isLocalModelReference,
  type LM,
  type PromptCache,
  promptCacheModel,
} from '@mnemo/lm';
import type { Command } from 'commander';
import { addCacheFlags, type CacheFlags, cacheKind, hasCacheFlags } from '../cache-flags';
import { action, CliError } from '../errors';
import { addComputeFlags, backendLine, type ComputeFlags, loadLM, prefillProgress } from '../load';
import { fileArg, floatArg, intArg, readPrompt } from '../options';

export interface GenerateFlags extends CacheFlags, ComputeFlags {
  promptCacheFile?: string;
  model?: string;
  prompt: string;
  maxTokens: number;
  temp: number;
  topP: number;
  minP: number;
  topK: number;
  seed?: number;
  repetitionPenalty?: number;
  repetitionContextSize: number;
  ignoreChatTemplate?: boolean;
  systemPrompt?: string;
  json?: boolean;
  logprobs?: number;
  verbose?: boolean;
  prefillStepSize: number;
  trustCacheModel?: boolean;
}

/** Flags shared by the commands that sample. */
export function addSamplingFlags(cmd: Command): Command {
  return cmd
    .option('--max-tokens <n>', 'most tokens to generate', intArg(0, 1_000_000), 256)
    .option('--temp <t>', 'sampling temperature (0 = greedy)', floatArg(0, 100), 0)
    .option('--top-p <p>', 'nucleus sampling threshold', floatArg(0, 1), 1)
    .option('--min-p <p>', 'minimum probability relative to the top token', floatArg(0, 1), 0)
    .option('--top-k <k>', 'sample among the k most likely tokens (0 = all)', intArg(0), 0)
    .option('--seed <n>', 'random seed for reproducible sampling', intArg(0, 2 ** 32 - 1))
    .option('--repetition-penalty <p>', 'penalty for recently seen tokens (1 = off)', floatArg(0.01, 100))
    .option(
      '--repetition-context-size <n>',
      'tokens the repetition penalty looks back at',
      intArg(1, 1_000_000),
      20,
    )
    .option('--prefill-step-size <n>', 'prompt tokens per forward pass', intArg(1, 65536), 512);
}

export function generateOptions(f: GenerateFlags): GenerateOptions {
  return {
    maxTokens: f.maxTokens,
    temperature: f.temp,
    topP: f.topP,
    minP: f.minP,
    topK: f.topK,
    ...(f.seed !== undefined ? { seed: f.seed } : {}),
    ...(f.repetitionPenalty !== undefined ? { repetitionPenalty: f.repetitionPenalty } : {}),
    repetitionContextSize: f.repetitionContextSize,
    chatTemplate: !f.ignoreChatTemplate,
    ...(f.systemPrompt !== undefined ? { systemPrompt: f.systemPrompt } : {}),
    logprobs: f.logprobs ?? 0,
    prefillStepSize: f.prefillStepSize,
    ...(f.ignoreContextLimit ? { ignoreContextLimit: true } : {}),
  };
}

/** The `--json` object: exactly the documented keys. */
export function resultJson(r: GenerationResult, withLogprobs: boolean): string {
  return JSON.stringify({
    prompt_tokens: r.promptTokens,
    tokens: r.tokens,
    text: r.text,
    finish_reason: r.finishReason,
    logprobs: withLogprobs
      ? r.logprobs.map((l) => ({
          id: l.id,
          logprob: l.logprob,
          top: l.top.map((t) => ({ id: t.id, logprob: t.logprob })),
        }))
      : [],
    stats: {
      prompt_tokens: r.stats.promptTokens,
      cached_tokens: r.stats.cachedTokens,
      prompt_tps: r.stats.promptTps,
      generation_tokens: r.stats.generationTokens,
      generation_tps: r.stats.generationTps,
      ttft_ms: r.stats.timeToFirstTokenMs,
      peak_memory_mb: r.stats.peakMemoryMb,
    },
  });
}

export function verboseStats(r: GenerationResult): string {
  const s = r.stats;
  return [
    '==========',
    `Prompt: ${s.promptTokens} tokens (${s.cachedTokens} cached), ${s.promptTps.toFixed(3)} tokens-per-sec`,
    `Generation: ${s.generationTokens} tokens, ${s.generationTps.toFixed(3)} tokens-per-sec`,
    `Time to first token: ${s.timeToFirstTokenMs.toFixed(1)} ms`,
    `Peak memory: ${(s.peakMemoryMb / 1024).toFixed(3)} GB`,
    '',
  ].join('\n');
}

/**
 * Refuses cache flags that contradict the caches of a loaded file (their kinds come from the file): the caches the
 * flags would make must be of the same kinds, storage and parameters, layer by layer.
 */
function checkKindMatches(f: CacheFlags, lm: LM, pc: PromptCache, file: string): void {
  let want: string[];
  try {
    const fresh = lm.makeCaches(cacheKind(f));
    want = fresh.map(describeCache);
    for (const c of fresh) c.free();
  } catch (e) {
    throw new CliError(`${e instanceof Error ? e.message : String(e)}`);
  }
  const have = pc.caches.map(describeCache);
  const at = have.findIndex((h, i) => h !== want[i]);
  if (at >= 0)
    throw new CliError(`${file} holds a ${have[at]} cache in layer ${at}; the flags ask for ${want[at]}`);
}

/**
 * The model a cache file names, used only with the user's consent unless it is local: a file must never choose what is
 * downloaded (or which repository is contacted). An absolute local folder or GGUF file is used as is; anything else
 * (a Hub repo id or GGUF reference, or a relative path from an older file) needs `--trust-cache-model` or a "yes" on
 * a terminal.
 */
async function modelOfCacheFile(file: string, trusted: boolean): Promise<string> {
  const model = await promptCacheModel(file);
  if (isLocalModelReference(model) || trusted) return model;
  const what = `${file} names the model ${JSON.stringify(model)}, which is not a local folder or file (a Hugging Face repo id?)`;
  if (process.stdin.isTTY && process.stderr.isTTY) {
    const rl = createInterface({ input: process.stdin, output: process.stderr });
    try {
      const answer = await rl.question(`${what}. Download (if needed) and use it? [y/N] `);
      if (/^y(es)?$/i.test(answer.trim())) return model;
    } finally {
      rl.close();
    }
  }
  throw new CliError(
    `${what}: a cache file does not choose what is downloaded. Pass --model ${model} to use it, or --trust-cache-model`,
  );
}

export function registerGenerate(program: Command): void {
  const cmd = program
    .command('generate')
    .description('generate text from a prompt')
    .option(
      '-m, --model <dir|file|repo>',
      'model directory, .gguf file, or Hugging Face repo id (owner/name, owner/name:Q4_K_M for a GGUF file; default: the model of --prompt-cache-file)',
    )
    .requiredOption('-p, --prompt <text>', 'prompt text ("-" reads standard input)')
    .option(
      '--prompt-cache-file <file>',
      'continue a prompt cached by `mnemo cache-prompt`: the prompt is appended to it',
      fileArg,
    )
    .option(
      '--trust-cache-model',
      'without --model: use the Hugging Face repo the cache file names (it may be downloaded); a local folder it names is used without asking',
    )
    .option('--ignore-chat-template', 'use the prompt as raw text, without the chat template')
    .option('--system-prompt <text>', 'system message for the chat template')
    .option('--json', 'print one JSON object with token ids, text, logprobs and stats')
    .option('--logprobs <k>', 'with --json: top-k log-probabilities of each generated token', intArg(0, 1000))
    .option('--verbose', 'print the backend, prompt and generation speed and peak memory');
  addComputeFlags(addCacheFlags(addSamplingFlags(cmd))).action(
    action(async (f: GenerateFlags) => {
      const model =
        f.model ??
        (f.promptCacheFile !== undefined
          ? await modelOfCacheFile(f.promptCacheFile, f.trustCacheModel === true)
          : undefined);
      if (!model)
        throw new CliError('--model is required (or --prompt-cache-file to take the model from the file)');
      let prompt = await readPrompt(f.prompt);
      const lm = await loadLM(model, f);
      if (f.verbose) process.stderr.write(backendLine(lm));
      let pc: PromptCache | undefined;
      try {
        let opts = generateOptions(f);
        if (f.promptCacheFile !== undefined) {
          pc = await lm.loadPromptCache(f.promptCacheFile, {
            ...(f.ignoreContextLimit ? { ignoreContextLimit: true } : {}),
          });
          if (hasCacheFlags(f)) checkKindMatches(f, lm, pc, f.promptCacheFile);
          prompt = lm.continuation(pc, prompt);
          const chatTemplate = f.ignoreChatTemplate ? false : pc.template.applied;
          const systemPrompt = f.systemPrompt ?? pc.template.systemPrompt;
          opts = {
            ...opts,
            chatTemplate,
            ...(systemPrompt !== undefined ? { systemPrompt } : {}),
            promptCache: pc,
          };
        } else {
          opts = { ...opts, cache: cacheKind(f) };
        }
        const progress = prefillProgress();
        const it = lm.stream(prompt, {
          ...opts,
          ...(progress.onPrefill ? { onPrefill: progress.onPrefill } : {}),
        });
        let r: IteratorResult<{ text: string }, GenerationResult>;
        let first = true;
        for (;;) {
          r = await it.next();
          if (first) {
            progress.done();
            first = false;
          }
          if (r.done) break;
          if (!f.json && r.value.text) process.stdout.write(r.value.text);
        }
        const result = r.value;
        if (f.json) process.stdout.write(`${resultJson(result, (f.logprobs ?? 0) > 0)}\n`);
        else {
          process.stdout.write('\n');
          if (f.verbose) process.stderr.write(verboseStats(result));
        }
      } finally {
        pc?.free();
        lm.free();
      }
    }),
  );
}
