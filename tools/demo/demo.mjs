// The seed scenario, end to end and offline: cache the prompt "Hi! ", generate "What are you up to?" from that cache,
// generate the whole prompt "Hi! What are you up to?" without a cache, and show that the outputs are identical and
// what the cache saved. Then the same with a long shared prefix, where the saving is large.
//   node tools/demo/demo.mjs [--model DIR_OR_REPO] [--max-tokens N]
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { makeDemoModel } from './make-model.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const cli = join(here, '..', '..', 'apps', 'cli', 'dist', 'mnemo.js');
const { values } = parseArgs({
  options: { model: { type: 'string' }, 'max-tokens': { type: 'string', default: '24' } },
});
const model = values.model ?? (await makeDemoModel(join(here, '.model')));
const maxTokens = values['max-tokens'];
const tmp = mkdtempSync(join(tmpdir(), 'mnemo-demo-'));

function mnemo(args) {
  return execFileSync(process.execPath, [cli, ...args], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}
function generate(extra) {
  return JSON.parse(
    mnemo(['generate', ...extra, '--temp', '0', '--max-tokens', maxTokens, '--json', '--logprobs', '3']),
  );
}
function same(a, b) {
  return (
    JSON.stringify([a.prompt_tokens, a.tokens, a.logprobs]) ===
    JSON.stringify([b.prompt_tokens, b.tokens, b.logprobs])
  );
}

function scenario(title, cached, rest) {
  console.log(`\n== ${title}`);
  const file = join(tmp, 'prompt.safetensors');
  const t0 = performance.now();
  mnemo(['cache-prompt', '--model', model, '--prompt', cached, '--prompt-cache-file', file]);
  const cacheMs = performance.now() - t0;
  const fromCache = generate(['--prompt-cache-file', file, '--model', model, '--prompt', rest]);
  const whole = generate(['--model', model, '--prompt', cached + rest]);
  const show = (r) => JSON.stringify(r.text.length > 60 ? `${r.text.slice(0, 60)}…` : r.text);
  console.log(
    `cache-prompt ${JSON.stringify(cached.length > 40 ? `${cached.slice(0, 40)}…` : cached)}: ${statSync(file).size} bytes, ${cacheMs.toFixed(0)} ms`,
  );
  console.log(`from the cache : ${fromCache.tokens.length} tokens ${show(fromCache)}`);
  console.log(
    `                 prompt ${fromCache.prompt_tokens.length} tokens, ${fromCache.stats.cached_tokens} from the cache, time to first token ${fromCache.stats.ttft_ms.toFixed(1)} ms`,
  );
  console.log(`without a cache: ${whole.tokens.length} tokens ${show(whole)}`);
  console.log(
    `                 prompt ${whole.prompt_tokens.length} tokens, 0 from the cache, time to first token ${whole.stats.ttft_ms.toFixed(1)} ms`,
  );
  const ok = same(fromCache, whole);
  console.log(
    ok ? 'IDENTICAL: same prompt ids, same tokens, bitwise-same logprobs' : 'DIFFERENT — this is a bug',
  );
  console.log(`time to first token saved: ${(whole.stats.ttft_ms - fromCache.stats.ttft_ms).toFixed(1)} ms`);
  return ok;
}

try {
  console.log(`model: ${model}`);
  let ok = scenario('the seed scenario', 'Hi! ', 'What are you up to?');
  const doc = 'Notes on the lighthouse keeper. '.repeat(40);
  ok = scenario('a long shared prefix', doc, 'Summarise the notes.') && ok;
  process.exitCode = ok ? 0 : 1;
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
