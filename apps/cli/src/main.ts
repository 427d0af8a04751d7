import { Command } from 'commander';
import { registerCachePrompt } from './commands/cache-prompt';
import { registerChat } from './commands/chat';
import { registerConvertCache } from './commands/convert-cache';
import { registerGenerate } from './commands/generate';
import { registerInspectCache } from './commands/inspect-cache';
import { registerServe } from './commands/serve';
import { VERSION } from './version';

const program = new Command();
program
  .name('mnemo')
  .description('Run Llama-family language models, with prompt caching that never changes the output.')
  .version(VERSION)
  .showHelpAfterError('(run with --help for usage)');

registerGenerate(program);
registerCachePrompt(program);
registerChat(program);
registerInspectCache(program);
registerConvertCache(program);
registerServe(program);

await program.parseAsync(process.argv);
