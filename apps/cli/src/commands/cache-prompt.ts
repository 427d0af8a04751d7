import type { Command } from 'commander';
import { addCacheFlags, type CacheFlags, cacheKind } from '../cache-flags';
import { action, CliError } from '../errors';
import { addComputeFlags, type ComputeFlags, loadLM, prefillProgress } from '../load';
import { fileArg, intArg, readPrompt } from '../options';

interface CachePromptFlags extends CacheFlags, ComputeFlags {
  model?: string;
  prompt: string;
  promptCacheFile: string;
  ignoreChatTemplate?: boolean;
  systemPrompt?: string;
  prefillStepSize: number;
  verbose?: boolean;
}

export function registerCachePrompt(program: Command): void {
  const cmd = program
    .command('cache-prompt')
    .description('process a prompt once and save its KV cache, so generations that continue it start faster')
    .option(
      '-m, --model <dir|file|repo>',
      'model directory, .gguf file, or Hugging Face repo id (owner/name, owner/name:Q4_K_M for a GGUF file)',
    )
    .requiredOption('-p, --prompt <text>', 'prompt text to cache ("-" reads standard input)')
    .requiredOption(
      '--prompt-cache-file <file>',
      'file to write (safetensors, mnemo prompt-cache format v2; a symbolic link is written through, a device refused)',
      fileArg,
    )
    .option('--ignore-chat-template', 'cache the prompt as raw text, without the chat template')
    .option('--system-prompt <text>', 'system message for the chat template')
    .option('--prefill-step-size <n>', 'prompt tokens per forward pass', intArg(1, 65536), 512)
    .option('--verbose', 'print timing');
  addComputeFlags(addCacheFlags(cmd)).action(
    action(async (f: CachePromptFlags) => {
      if (!f.model) throw new CliError('--model is required');
      const prompt = await readPrompt(f.prompt);
      const lm = await loadLM(f.model, f);
      try {
        const t0 = performance.now();
        const progress = prefillProgress();
        const pc = lm.cachePrompt(prompt, {
          chatTemplate: !f.ignoreChatTemplate,
          ...(f.systemPrompt !== undefined ? { systemPrompt: f.systemPrompt } : {}),
          cache: cacheKind(f),
          prefillStepSize: f.prefillStepSize,
          ...(f.ignoreContextLimit ? { ignoreContextLimit: true } : {}),
          ...(progress.onPrefill ? { onPrefill: progress.onPrefill } : {}),
        });
        progress.done();
        const ms = performance.now() - t0;
        const count = pc.length;
        try {
          await lm.savePromptCache(f.promptCacheFile, pc);
        } finally {
          pc.free();
        }
        const timing = f.verbose ? ` (${ms.toFixed(1)} ms)` : '';
        process.stderr.write(`Saved ${count} tokens to ${f.promptCacheFile}${timing}\n`);
      } finally {
        lm.free();
      }
    }),
  );
}
