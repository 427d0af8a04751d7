import { createInterface } from 'node:readline';
import type { PromptCache } from '@mnemo/lm';
import type { ChatMessage } from '@mnemo/tokenizer';
import type { Command } from 'commander';
import { addCacheFlags, type CacheFlags, cacheKind } from '../cache-flags';
import { action, CliError } from '../errors';
import { addComputeFlags, loadLM, prefillProgress } from '../load';
import { fileArg } from '../options';
import { addSamplingFlags, type GenerateFlags, generateOptions, verboseStats } from './generate';

interface ChatFlags extends CacheFlags, Omit<GenerateFlags, 'prompt'> {
  promptCacheFile?: string;
}

const HELP = 'Commands: /save FILE, /load FILE, /reset, /help, /quit (or end of input).';

export function registerChat(program: Command): void {
  const cmd = program
    .command('chat')
    .description('chat interactively; the KV cache is reused between turns')
    .option(
      '-m, --model <dir|file|repo>',
      'model directory, .gguf file, or Hugging Face repo id (owner/name, owner/name:Q4_K_M for a GGUF file)',
    )
    .option('--system-prompt <text>', 'system message')
    .option('--prompt-cache-file <file>', 'start from a conversation saved with /save', fileArg)
    .option('--verbose', 'print speed and cached tokens after each reply');
  addComputeFlags(addCacheFlags(addSamplingFlags(cmd))).action(
    action(async (f: ChatFlags) => {
      if (!f.model) throw new CliError('--model is required');
      const lm = await loadLM(f.model, f);
      if (!lm.tokenizer.hasChatTemplate) {
        lm.free();
        throw new CliError('this model has no chat template; use `mnemo generate`');
      }
      const base = generateOptions({ ...f, prompt: '' });
      let pc: PromptCache = lm.makePromptCache(cacheKind(f));
      let messages: ChatMessage[] = [];
      const reset = () => {
        messages = f.systemPrompt !== undefined ? [{ role: 'system', content: f.systemPrompt }] : [];
      };
      reset();
      const load = async (file: string) => {
        const loaded = await lm.loadPromptCache(file, {
          ...(f.ignoreContextLimit ? { ignoreContextLimit: true } : {}),
        });
        pc.free();
        pc = loaded;
        messages = [...(loaded.template.messages ?? [])];
        process.stdout.write(
          `[loaded ${loaded.length} cached tokens and ${messages.length} messages from ${file}]\n`,
        );
      };
      const rl = createInterface({
        input: process.stdin,
        output: process.stdout,
        terminal: process.stdin.isTTY,
      });
      // Take lines from the start: lines that arrive while a cache file loads must not be lost.
      const lines = rl[Symbol.asyncIterator]();
      try {
        if (f.promptCacheFile !== undefined) await load(f.promptCacheFile);
        if (process.stdin.isTTY) process.stdout.write(`${HELP}\n`);
        rl.setPrompt('>> ');
        rl.prompt();
        for (;;) {
          const next = await lines.next();
          if (next.done) break;
          const line: string = next.value;
          const input = line.trim();
          try {
            if (input === '/quit' || input === '/exit') break;
            if (input === '/help') process.stdout.write(`${HELP}\n`);
            else if (input === '/reset') {
              reset();
              pc.free();
              pc = lm.makePromptCache(cacheKind(f));
            } else if (input === '/save' || input.startsWith('/save ')) {
              const file = input.slice(5).trim();
              if (file === '') {
                process.stdout.write('usage: /save FILE (saves the conversation and its cache)\n');
              } else {
                pc.template = {
                  applied: true,
                  ...(f.systemPrompt !== undefined ? { systemPrompt: f.systemPrompt } : {}),
                  messages,
                };
                await lm.savePromptCache(file, pc);
                process.stdout.write(
                  `[saved ${pc.length} cached tokens and ${messages.length} messages to ${file}]\n`,
                );
              }
            } else if (input === '/load' || input.startsWith('/load ')) {
              const file = input.slice(5).trim();
              if (file === '') process.stdout.write('usage: /load FILE (a conversation saved with /save)\n');
              else await load(file);
            } else if (input.startsWith('/')) {
              process.stdout.write(`unknown command ${input.split(' ')[0]}. ${HELP}\n`);
            } else if (input) {
              // The turn joins the conversation only when it succeeds: a failed turn (a template that refuses it, a
              // prompt past the context, an interrupted generation) leaves the history as it was.
              const turn: ChatMessage[] = [...messages, { role: 'user', content: line }];
              const progress = prefillProgress();
              const it = lm.stream(
                { messages: turn },
                {
                  ...base,
                  promptCache: pc,
                  ...(progress.onPrefill ? { onPrefill: progress.onPrefill } : {}),
                },
              );
              let reply = '';
              let first = true;
              try {
                for (;;) {
                  const r = await it.next();
                  if (first) {
                    progress.done();
                    first = false;
                  }
                  if (r.done) {
                    process.stdout.write('\n');
                    if (f.verbose) process.stderr.write(verboseStats(r.value));
                    break;
                  }
                  reply += r.value.text;
                  process.stdout.write(r.value.text);
                }
              } catch (e) {
                if (first) progress.done();
                else process.stdout.write('\n');
                throw e;
              }
              messages = [...turn, { role: 'assistant', content: reply }];
            }
          } catch (e) {
            process.stderr.write(`mnemo: ${e instanceof Error ? e.message : String(e)}\n`);
          }
          rl.prompt();
        }
      } finally {
        rl.close();
        pc.free();
        lm.free();
      }
    }),
  );
}
