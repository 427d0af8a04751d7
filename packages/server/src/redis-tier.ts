/**
 * The Redis tier (HTTP side): prompt caches shared by every replica serving the same model. Keys, all with the
 * entry TTL:
 *   <prefix>:<scope>:e:<entry id>      the prompt-cache file's bytes
 *   <prefix>:<scope>:b:<prefix hash>   id of an entry whose tokens start with that block-chain prefix (newest wins)
 * The scope names the model, tokenizer, numerics and cache kind, so replicas of other models never see each other's
 * entries. The worker verifies every entry it gets like a file. When Redis is down or slow the server goes on with
 * its local tiers: commands fail fast (no offline queue, a command timeout), the client reconnects in the
 * background, and the state shows in /metrics (`mnemo_redis_up`) and in the log, once per change.
 */
import { Redis } from 'ioredis';

export interface RedisTierOptions {
  readonly url: string;
  readonly prefix: string;
  readonly ttlSeconds: number;
  readonly maxEntryBytes: number;
  readonly timeoutMs: number;
  readonly onState: (up: boolean, why: string) => void;
  readonly onError: (op: string, err: Error) => void;
}

export type RedisLookup =
  | {
      readonly found: { readonly bytes: Uint8Array; readonly length: number; readonly entryId: string };
      readonly note: null;
    }
  | { readonly found: null; readonly note: string | null };

export class RedisTier {
  readonly #client: Redis;
  #up = false;

  constructor(private readonly o: RedisTierOptions) {
    this.#client = new Redis(o.url, {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      connectTimeout: Math.max(1000, o.timeoutMs),
      commandTimeout: o.timeoutMs,
      retryStrategy: (times) => Math.min(100 * times, 2000),
      lazyConnect: false,
    });
    this.#client.on('ready', () => this.#state(true, 'connected'));
    this.#client.on('error', (e: Error) => this.#state(false, e.message));
    this.#client.on('close', () => this.#state(false, 'connection closed'));
  }

  get up(): boolean {
    return this.#up;
  }

  #state(up: boolean, why: string): void {
    if (up === this.#up) return;
    this.#up = up;
    this.o.onState(up, why);
  }

  #key(scope: string, kind: 'e' | 'b', name: string): string {
    return `${this.o.prefix}:${scope}:${kind}:${name}`;
  }

  /** The entry holding the longest of `boundaries` (longest first), or why there is none worth a note. */
  async get(scope: string, boundaries: readonly { hash: string; length: number }[]): Promise<RedisLookup> {
    if (!this.#up) return { found: null, note: 'unavailable (not connected): serving from local tiers' };
    try {
      const ids = await this.#client.mget(...boundaries.map((b) => this.#key(scope, 'b', b.hash)));
      const tried = new Set<string>();
      let expired = 0;
      for (let i = 0; i < ids.length && tried.size < 3; i++) {
        const id = ids[i];
        if (!id || tried.has(id) || !/^[0-9a-f]{64}$/.test(id)) continue;
        tried.add(id);
        const bytes = await this.#client.getBuffer(this.#key(scope, 'e', id));
        if (bytes === null) {
          expired++;
          continue;
        }
        return {
          found: {
            bytes: new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength),
            length: boundaries[i]!.length,
            entryId: id,
          },
          note: null,
        };
      }
      return {
        found: null,
        note: expired > 0 ? `${expired} matching entr${expired === 1 ? 'y' : 'ies'} expired` : null,
      };
    } catch (e) {
      this.o.onError('get', e as Error);
      return { found: null, note: `unavailable (${(e as Error).message}): serving from local tiers` };
    }
  }

  /** Stores an entry and its prefix names. Returns false (and says why through onError) when it did not. */
  async put(scope: string, entryId: string, hashes: readonly string[], bytes: Uint8Array): Promise<boolean> {
    if (!this.#up) return false;
    if (bytes.byteLength > this.o.maxEntryBytes) {
      this.o.onError(
        'put',
        new Error(`entry of ${bytes.byteLength} bytes is over the ${this.o.maxEntryBytes}-byte limit`),
      );
      return false;
    }
    try {
      const ttl = this.o.ttlSeconds;
      const m = this.#client.multi();
      m.set(
        this.#key(scope, 'e', entryId),
        Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength),
        'EX',
        ttl,
      );
      for (const h of hashes) m.set(this.#key(scope, 'b', h), entryId, 'EX', ttl);
      const r = await m.exec();
      const failed = r?.find(([err]) => err);
      if (failed) throw failed[0]!;
      return true;
    } catch (e) {
      this.o.onError('put', e as Error);
      return false;
    }
  }

  /** Removes an entry that failed its checks. */
  async del(scope: string, entryId: string): Promise<void> {
    if (!this.#up) return;
    try {
      await this.#client.del(this.#key(scope, 'e', entryId));
    } catch (e) {
      this.o.onError('del', e as Error);
    }
  }

  async close(): Promise<void> {
    this.#client.removeAllListeners('close');
    try {
      if (this.#client.status === 'ready') await this.#client.quit();
      else this.#client.disconnect();
    } catch {
      this.#client.disconnect();
    }
  }
}
