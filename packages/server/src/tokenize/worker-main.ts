/**
 * Entry of the tokenizer worker (bundled into `generated/worker-source.ts`): renders chat templates and tokenizes
 * prompts off the HTTP thread, so a long prompt never delays other requests or /health.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { loadTokenizer } from '@mnemo/tokenizer';
import { HttpError } from '../http/errors';
import { anthropicTokens, chatTokens, completionTokens } from './prompt';
import type { FromTokenizer, Tokenized, ToTokenizer } from './protocol';

const port = parentPort!;
const post = (m: FromTokenizer) => port.postMessage(m);

async function main(dir: string): Promise<void> {
  const tokenizer = await loadTokenizer(dir);
  port.on('message', (m: ToTokenizer) => {
    try {
      let result: Tokenized;
      if (m.op === 'chat') result = { tokens: chatTokens(tokenizer, m.messages), breakpoints: [] };
      else if (m.op === 'completion')
        result = { tokens: completionTokens(tokenizer, m.vocabSize, m.prompt), breakpoints: [] };
      else result = anthropicTokens(tokenizer, m.system, m.messages);
      post({ type: 'result', id: m.id, result });
    } catch (e) {
      const err = e instanceof Error ? e : new Error(String(e));
      if (err instanceof HttpError)
        post({
          type: 'error',
          id: m.id,
          status: err.status,
          message: err.message,
          code: err.code,
          param: err.param,
        });
      else post({ type: 'error', id: m.id, status: 500, message: err.message, code: null, param: null });
    }
  });
  post({ type: 'ready' });
}

main((workerData as { dir: string }).dir).catch((e: unknown) =>
  post({ type: 'fatal', message: e instanceof Error ? e.message : String(e) }),
);
