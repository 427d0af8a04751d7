import { exportMlxPromptCache, loadPromptCache, type MlxDType } from '@mnemo/kv-cache';
import { createBackend } from '@mnemo/tensor';
import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';
import { action, CliError } from '../errors';
import { loadLM } from '../load';
import { fileArg, readPrompt } from '../options';

interface ConvertFlags {
  to: 'mlx' | 'mnemo';
  dtype: MlxDType;
  model?: string;
  prompt?: string;
  ignoreChatTemplate?: boolean;
  systemPrompt?: string;
  backend?: string;
}

function choice<T extends string>(values: readonly T[]) {
  return (v: string): T => {
    if (!(values as readonly string[]).includes(v))
      throw new InvalidArgumentError(`expected one of ${values.join(', ')}, got "${v}"`);
    return v as T;
  };
}

export function registerConvertCache(program: Command): void {
  program
    .command('convert-cache')
    .description("convert a prompt cache between mnemo's format and mlx-lm's save_prompt_cache layout")
    .argument('<input>', 'prompt cache file to read', fileArg)
    .argument('<output>', 'file to write', fileArg)
    .requiredOption(
      '--to <format>',
      'mlx (from a mnemo file) or mnemo (from an mlx-lm file)',
      choice(['mlx', 'mnemo'] as const),
    )
    .option(
      '--dtype <dtype>',
      'with --to mlx: f32 (exact), f16 or bf16',
      choice(['f32', 'f16', 'bf16'] as const),
      'f32',
    )
    .option('-m, --model <dir|repo>', 'with --to mnemo: the model the mlx-lm cache was made with')
    .option(
      '-p, --prompt <text>',
      'with --to mnemo: the prompt the mlx-lm cache was made from ("-" reads stdin)',
    )
    .option('--ignore-chat-template', 'with --to mnemo: the prompt was cached as raw text')
    .option('--system-prompt <text>', 'with --to mnemo: the system message the prompt was cached with')
    .option('--backend <name>', 'compute backend (wasm, js)')
    .action(
      action(async (input: string, output: string, f: ConvertFlags) => {
        if (f.to === 'mlx') {
          const backend = await createBackend({ backend: f.backend ?? 'js' });
          try {
            const { caches, meta } = await loadPromptCache(input, { backend });
            await exportMlxPromptCache(output, caches, {
              dtype: f.dtype,
              metadata: { model: meta.model, chat_template: meta.chatTemplate },
            });
            process.stderr.write(
              `Wrote ${meta.tokens.length} cached tokens in mlx-lm's layout to ${output}\n`,
            );
          } finally {
            backend.dispose();
          }
          return;
        }
        if (!f.model || f.prompt === undefined) {
          throw new CliError(
            '--to mnemo needs --model and --prompt: mlx-lm cache files record neither token ids nor the model',
          );
        }
        const prompt = await readPrompt(f.prompt);
        const lm = await loadLM(f.model, { ...(f.backend ? { backend: f.backend } : {}) });
        try {
          const pc = await lm.importMlxPromptCache(input, prompt, {
            chatTemplate: !f.ignoreChatTemplate,
            ...(f.systemPrompt !== undefined ? { systemPrompt: f.systemPrompt } : {}),
          });
          try {
            await lm.savePromptCache(output, pc);
            process.stderr.write(`Wrote ${pc.length} cached tokens to ${output}\n`);
          } finally {
            pc.free();
          }
        } finally {
          lm.free();
        }
      }),
    );
}
