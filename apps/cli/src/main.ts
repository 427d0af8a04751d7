import { Command } from 'commander';
import { registerGenerate } from './commands/generate';
import { VERSION } from './version';

const program = new Command();
program
  .name('mnemo')
  .description('Run Llama-family language models, with prompt caching that never changes the output.')
  .version(VERSION)
  .showHelpAfterError('(run with --help for usage)');

registerGenerate(program);

await program.parseAsync(process.argv);
