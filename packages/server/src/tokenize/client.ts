/** The HTTP side's handle on the tokenizer worker: one request at a time in the worker, answers by id. */
import { Worker } from 'node:worker_threads';
import { TOKENIZER_WORKER_SOURCE } from '../generated/worker-source';
import { HttpError } from '../http/errors';
import type { FromTokenizer, Tokenized, TokenizeRequest, ToTokenizer } from './protocol';

export class TokenizerWorker {
  readonly #pending = new Map<number, { resolve: (r: Tokenized) => void; reject: (e: Error) => void }>();
  #next = 1;
  #dead: string | undefined;
  #closing = false;

  private constructor(private readonly worker: Worker) {
    worker.on('message', (m: FromTokenizer) => {
      if (m.type !== 'result' && m.type !== 'error') return;
      const p = this.#pending.get(m.id);
      if (!p) return;
      this.#pending.delete(m.id);
      if (m.type === 'result') p.resolve(m.result);
      else p.reject(new HttpError(m.status, m.message, m.code, m.param));
    });
    const die = (why: string) => {
      if (this.#closing || this.#dead) return;
      this.#dead = why;
      for (const p of this.#pending.values()) p.reject(new HttpError(503, why, 'unavailable'));
      this.#pending.clear();
    };
    worker.on('error', (e) => die(`the tokenizer worker failed: ${e.message}`));
    worker.on('exit', (code) => die(`the tokenizer worker exited (code ${code})`));
  }

  /** Starts the worker with the tokenizer of the model folder `dir`. */
  static async start(dir: string): Promise<TokenizerWorker> {
    const worker = new Worker(TOKENIZER_WORKER_SOURCE, {
      eval: true,
      workerData: { dir },
      name: 'mnemo-tokenizer',
    });
    await new Promise<void>((resolve, reject) => {
      const onMessage = (m: FromTokenizer) => {
        if (m.type === 'ready') done(resolve);
        else if (m.type === 'fatal') done(() => reject(new Error(m.message)));
      };
      const onError = (e: Error) => done(() => reject(e));
      const done = (f: () => void) => {
        worker.off('message', onMessage);
        worker.off('error', onError);
        f();
      };
      worker.on('message', onMessage);
      worker.on('error', onError);
    }).catch(async (e: unknown) => {
      await worker.terminate();
      throw e;
    });
    worker.unref();
    return new TokenizerWorker(worker);
  }

  /** Token ids of a request's prompt (and Anthropic breakpoints); rejects with the HttpError the request gets. */
  tokenize(req: TokenizeRequest): Promise<Tokenized> {
    if (this.#dead) return Promise.reject(new HttpError(503, this.#dead, 'unavailable'));
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.worker.postMessage({ ...req, id } satisfies ToTokenizer);
    });
  }

  async close(): Promise<void> {
    this.#closing = true;
    for (const p of this.#pending.values())
      p.reject(new HttpError(503, 'the server is shutting down', 'unavailable'));
    this.#pending.clear();
    await this.worker.terminate();
  }
}
