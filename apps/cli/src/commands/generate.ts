import { type GenerateOptions, type GenerationResult, LM } from '@mnemo/lm';
import type { Command } from 'commander';
import { action, CliError } from '../errors';
import { floatArg, intArg, readPrompt } from '../options';

export interface GenerateFlags {
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
  backend?: string;
  prefillStepSize: number;
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

export function registerGenerate(program: Command): void {
  const cmd = program
    .command('generate')
    .description('generate text from a prompt')
    .option('-m, --model <dir|repo>', 'model directory or Hugging Face repo id')
    .requiredOption('-p, --prompt <text>', 'prompt text ("-" reads standard input)')
    .option('--ignore-chat-template', 'use the prompt as raw text, without the chat template')
    .option('--system-prompt <text>', 'system message for the chat template')
    .option('--json', 'print one JSON object with token ids, text, logprobs and stats')
    .option('--logprobs <k>', 'with --json: top-k log-probabilities of each generated token', intArg(0, 1000))
    .option('--verbose', 'print prompt and generation speed and peak memory')
    .option('--backend <name>', 'compute backend (wasm, js); default MNEMO_BACKEND or wasm');
  addSamplingFlags(cmd).action(
    action(async (f: GenerateFlags) => {
      if (!f.model) throw new CliError('--model is required');
      const prompt = await readPrompt(f.prompt);
      const lm = await LM.load(f.model, f.backend ? { backendName: f.backend } : {});
      try {
        const opts = generateOptions(f);
        const it = lm.stream(prompt, opts);
        let r: IteratorResult<{ text: string }, GenerationResult>;
        for (;;) {
          r = await it.next();
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
        lm.free();
      }
    }),
  );
}
