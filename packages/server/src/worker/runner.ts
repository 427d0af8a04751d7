/**
 * Runs jobs in the model worker, one at a time: finds the longest cached prefix of the prompt across the tiers
 * (memory, disk, Redis through the HTTP side), generates from it, then keeps the conversation's cache (memory) and
 * persists it (disk, Redis). Every cache it loads is checked like a file; what it could not use, and why, goes into the
 * job's report.
 */
import { readRegularFile } from '@mnemo/files';
import { PromptCacheError } from '@mnemo/kv-cache';
import { type LM, type PromptCache, prefill } from '@mnemo/lm';
import { chainHashes, commonPrefix, entryId } from '../cache/prefix';
import {
  type CacheReport,
  CTL,
  type FromWorker,
  type JobParams,
  type JobResult,
  type ModelInfo,
  PHASE,
  type Tier,
  type ToWorker,
  type WorkerInit,
  type WorkerStats,
} from '../protocol';
import type { DiskEntry, DiskTier } from './disk-tier';
import type { MemoryTier } from './memory-tier';

/** Thrown from the progress callback when the HTTP side asks the running job to stop. */
class Cancelled extends Error {
  override readonly name = 'Cancelled';
}

type RedisReply = Extract<ToWorker, { type: 'redis-reply' }>;

export class Runner {
  readonly #ctl: Int32Array;
  readonly #gate: Int32Array | undefined;
  #redisWait: { id: number; resolve: (r: RedisReply) => void } | undefined;
  /** Entries offered to Redis, with when (re-offered after half their TTL). */
  readonly #redisPut = new Map<string, number>();
  #liveCaches = 0;

  constructor(
    private readonly lm: LM,
    private readonly init: WorkerInit,
    private readonly info: ModelInfo,
    private readonly memory: MemoryTier,
    private readonly disk: DiskTier | null,
    private readonly post: (m: FromWorker, transfer?: ArrayBuffer[]) => void,
  ) {
    this.#ctl = new Int32Array(init.ctl);
    this.#gate = init.stepGate ? new Int32Array(init.stepGate) : undefined;
  }

  stats(): WorkerStats {
    return {
      memory: { bytes: this.memory.bytes, entries: this.memory.size },
      disk: this.disk ? { bytes: this.disk.bytes, entries: this.disk.size } : null,
      liveCaches: this.#liveCaches,
      backendBytes: this.lm.backend.memoryInUse(),
    };
  }

  /** Hands a Redis answer to the job waiting for it. */
  redisReply(m: RedisReply): void {
    if (this.#redisWait?.id === m.id) {
      const w = this.#redisWait;
      this.#redisWait = undefined;
      w.resolve(m);
    }
  }

  #log(level: 'debug' | 'info' | 'warn' | 'error', msg: string, data?: Record<string, unknown>): void {
    this.post({ type: 'log', level, msg, ...(data ? { data } : {}) });
  }

  #phase(p: number): void {
    Atomics.store(this.#ctl, CTL.PHASE, p);
  }

  #cancelled(id: number): boolean {
    return Atomics.load(this.#ctl, CTL.CANCEL) === id;
  }

  #fresh(): PromptCache {
    const pc = this.lm.makePromptCache();
    this.#track(pc);
    return pc;
  }

  /** Counts a cache alive until it is freed (so a leak shows in the stats). */
  #track(pc: PromptCache): PromptCache {
    this.#liveCaches++;
    const free = pc.free.bind(pc);
    let freed = false;
    pc.free = () => {
      if (!freed) {
        freed = true;
        this.#liveCaches--;
      }
      free();
    };
    return pc;
  }

  async run(id: number, prompt: readonly number[], params: JobParams): Promise<void> {
    const t0 = performance.now();
    Atomics.store(this.#ctl, CTL.RUNNING, id);
    Atomics.store(this.#ctl, CTL.PREFILL_DONE, 0);
    Atomics.store(this.#ctl, CTL.PREFILL_TOTAL, 0);
    Atomics.store(this.#ctl, CTL.GENERATED, 0);
    this.#phase(PHASE.LOOKUP);
    let pc: PromptCache | undefined;
    let keep = false;
    let completed = false;
    try {
      const found = await this.#lookup(id, prompt);
      pc = found.pc;
      if (this.#cancelled(id)) throw new Cancelled();
      this.post({ type: 'start', id, report: found.report });
      this.#log('debug', 'prompt cache', { job: id, ...found.report });
      keep = true;
      const cached = found.report.cachedTokens;
      const persisted = await this.#persistPrefixes(id, prompt, pc, params.persistAt, cached);
      const result = await this.#generate(id, prompt, pc, params, t0);
      completed = true;
      this.post({
        type: 'done',
        id,
        result: { ...result, cachedTokens: cached, persistedTokens: Math.max(0, persisted - cached) },
      });
    } catch (e) {
      if (e instanceof Cancelled) {
        // The caches hold what was computed before the stop (whole chunks, whole steps): name exactly that.
        if (pc && pc.caches.length > 0) {
          const held = pc.caches[0]!.offset;
          pc.tokens = held <= pc.tokens.length ? pc.tokens.slice(0, held) : prompt.slice(0, held);
          keep = true;
        }
        this.post({ type: 'failed', id, status: 499, code: 'cancelled', message: 'the client went away' });
      } else {
        keep = false;
        const err = e as Error;
        const status = err instanceof RangeError ? 400 : 500;
        this.#log(status === 500 ? 'error' : 'debug', 'job failed', { job: id, error: err.message });
        this.post({ type: 'failed', id, status, code: err.name, message: err.message });
      }
    } finally {
      Atomics.store(this.#ctl, CTL.RUNNING, 0);
      if (pc) {
        if (keep) {
          if (completed) {
            this.#phase(PHASE.PERSIST);
            await this.#persist(pc).catch((e: Error) =>
              this.#log('warn', 'persisting a prompt cache failed', { error: e.message }),
            );
          }
          this.memory.put(pc);
        } else pc.free();
      }
      this.#phase(PHASE.IDLE);
      this.post({ type: 'free', stats: this.stats() });
    }
  }

  async #lookup(id: number, prompt: readonly number[]): Promise<{ pc: PromptCache; report: CacheReport }> {
    const { blockTokens } = this.init.cache;
    const max = prompt.length - 1; // at least one prompt token is always computed, for its logits
    const chain = chainHashes(prompt, max, blockTokens);
    const notes: string[] = [];
    const mem = this.memory.best(prompt, max);
    const disk = this.disk?.best(prompt, chain, this.info.scope, max);
    const memLcp = mem?.lcp ?? 0;
    const diskLcp = disk?.entry ? disk.lcp : 0;
    let redis: RedisReply['found'] = null;
    let redisOffer: number | null = null;
    if (this.init.cache.redis) {
      const local = Math.max(memLcp, diskLcp);
      const boundaries = chain
        .map((hash, i) => ({ hash, length: (i + 1) * blockTokens }))
        .filter((b) => b.length > local)
        .reverse();
      if (boundaries.length > 0) {
        const reply = await new Promise<RedisReply>((resolve) => {
          this.#redisWait = { id, resolve };
          this.post({ type: 'redis-get', id, boundaries });
        });
        redis = reply.found;
        redisOffer = redis?.length ?? 0;
        if (reply.note) notes.push(`redis: ${reply.note}`);
      }
    }

    const candidates: { tier: Tier; length: number }[] = [
      { tier: 'memory' as const, length: memLcp },
      { tier: 'disk' as const, length: diskLcp },
      { tier: 'redis' as const, length: redis?.length ?? 0 },
    ]
      .filter((c) => c.length > 0)
      .sort((a, b) => b.length - a.length); // stable: memory, then disk, then Redis on ties

    let pc: PromptCache | undefined;
    let tier: Tier | 'none' = 'none';
    for (const c of candidates) {
      try {
        if (c.tier === 'memory') pc = this.memory.take(mem!.key);
        else if (c.tier === 'disk') pc = await this.#loadDisk(disk!.entry!);
        else pc = await this.#loadRedis(redis!);
      } catch (e) {
        if (!(e instanceof PromptCacheError)) throw e;
        notes.push(`${c.tier}: a ${c.length}-token prefix was refused: ${e.code}`);
        this.post({ type: 'refused', tier: c.tier, code: e.code });
        this.#log('warn', `${c.tier} tier: prompt cache refused`, { code: e.code, error: e.message });
        continue;
      }
      tier = c.tier;
      break;
    }
    pc ??= this.#fresh();
    const cachedTokens = commonPrefix(pc.tokens, prompt, max);
    if (tier !== 'none' && cachedTokens < Math.min(pc.tokens.length, max))
      notes.push(
        `${tier}: the entry (${pc.tokens.length} tokens) diverged from the prompt at token ${cachedTokens}`,
      );
    const evicted = Math.max(this.memory.evicted(chain), disk?.evicted ?? 0);
    if (evicted > cachedTokens) notes.push(`a ${evicted}-token prefix was evicted from the cache (LRU)`);
    if (disk?.other && disk.other.length > cachedTokens)
      notes.push(
        `disk: a ${disk.other.length}-token prefix is cached for another model or numerics (model ${disk.other.modelFingerprint.slice(0, 12)}, numerics ${disk.other.numerics || 'unknown'})`,
      );
    const report: CacheReport = {
      promptTokens: prompt.length,
      cachedTokens,
      tier: cachedTokens > 0 ? tier : 'none',
      offered: { memory: memLcp, disk: this.disk ? diskLcp : null, redis: redisOffer },
      notes,
    };
    return { pc, report };
  }

  async #loadDisk(e: DiskEntry): Promise<PromptCache> {
    const disk = this.disk!;
    let pc: PromptCache;
    try {
      pc = this.#track(await this.lm.loadPromptCache(disk.path(e.id)));
    } catch (err) {
      if (err instanceof PromptCacheError && err.code !== 'IO') await disk.refuse(e, err.code);
      throw err;
    }
    if (pc.tokens.length !== e.tokens.length || commonPrefix(pc.tokens, e.tokens) !== e.tokens.length) {
      pc.free();
      await disk.refuse(e, 'INDEX');
      throw new PromptCacheError('CORRUPT', 'the file holds other tokens than its index record says');
    }
    disk.touch(e);
    return pc;
  }

  async #loadRedis(found: NonNullable<RedisReply['found']>): Promise<PromptCache> {
    try {
      const pc = this.#track(
        await this.lm.loadPromptCacheFromBytes(found.bytes, this.disk ? { tmpDir: this.disk.dir } : {}),
      );
      if (entryId(this.info.scope, pc.tokens) !== found.entryId) {
        pc.free();
        throw new PromptCacheError('CORRUPT', 'the entry holds other tokens than its key says');
      }
      return pc;
    } catch (err) {
      if (err instanceof PromptCacheError) this.post({ type: 'redis-del', entryId: found.entryId });
      throw err;
    }
  }

  /** Computes and persists each explicit breakpoint prefix not cached yet; returns the longest one persisted. */
  async #persistPrefixes(
    id: number,
    prompt: readonly number[],
    pc: PromptCache,
    at: readonly number[],
    cached: number,
  ): Promise<number> {
    let done = 0;
    if (!this.disk && !this.init.cache.redis) return 0; // no tier outlives the process: nothing to persist
    const points = [...new Set(at)].filter((n) => n > cached && n < prompt.length).sort((a, b) => a - b);
    for (const n of points) {
      const prefix = prompt.slice(0, n);
      pc.prepare(prompt); // keep what is shared with the prompt (the caches then hold fewer than n tokens)
      this.#phase(PHASE.PREFILL);
      prefill(this.lm.model, prefix, pc.caches, {
        prefillStepSize: this.init.prefillStepSize,
        onPrefill: (d, total) => this.#progress(id, d, total),
      });
      pc.tokens = prefix;
      this.#phase(PHASE.PERSIST);
      if (await this.#persist(pc, true)) done = n;
      if (this.#cancelled(id)) throw new Cancelled();
    }
    return done;
  }

  #progress(id: number, done: number, total: number): void {
    Atomics.store(this.#ctl, CTL.PREFILL_DONE, done);
    Atomics.store(this.#ctl, CTL.PREFILL_TOTAL, total);
    if (this.#cancelled(id)) throw new Cancelled();
    this.#step(id);
  }

  /** With a step gate (tests): takes a permit, waiting while there is none or until the job is cancelled. */
  #step(id: number): void {
    const g = this.#gate;
    if (!g) return;
    for (;;) {
      const v = Atomics.load(g, 0);
      if (v > 0) {
        if (Atomics.compareExchange(g, 0, v, v - 1) === v) return;
        continue;
      }
      if (this.#cancelled(id)) throw new Cancelled();
      Atomics.wait(g, 0, v, 10);
    }
  }

  async #generate(
    id: number,
    prompt: readonly number[],
    pc: PromptCache,
    p: JobParams,
    t0: number,
  ): Promise<Omit<JobResult, 'cachedTokens' | 'persistedTokens'>> {
    this.#phase(PHASE.PREFILL);
    const it = this.lm.stream(
      { tokens: prompt },
      {
        promptCache: pc,
        maxTokens: p.maxTokens,
        temperature: p.temperature,
        topP: p.topP,
        topK: p.topK,
        ...(p.seed !== undefined ? { seed: p.seed } : {}),
        stop: p.stop,
        logprobs: p.logprobs ?? 0,
        prefillStepSize: this.init.prefillStepSize,
        onPrefill: (d, total) => this.#progress(id, d, total),
      },
    );
    let generated = 0;
    let ttft = 0;
    try {
      for (;;) {
        const r = await it.next();
        if (r.done) {
          const res = r.value;
          const eos = res.finishReason === 'stop' && generated > res.tokens.length;
          let stopSequence: string | null = null;
          if (res.finishReason === 'stop' && !eos) {
            const full = this.lm.tokenizer.decode(res.tokens);
            stopSequence = p.stop.find((s) => full.startsWith(s, res.text.length)) ?? p.stop[0] ?? null;
          }
          return {
            reason: res.finishReason === 'length' ? 'length' : eos ? 'eos' : 'stop',
            stopSequence,
            promptTokens: prompt.length,
            completionTokens: generated,
            timeToFirstTokenMs: ttft,
          };
        }
        const c = r.value;
        if (generated === 0) {
          ttft = performance.now() - t0;
          this.#phase(PHASE.DECODE);
        }
        generated++;
        Atomics.store(this.#ctl, CTL.GENERATED, generated);
        const isEos = c.finishReason === 'stop' && this.lm.eosIds.includes(c.token);
        const token = isEos
          ? null
          : {
              id: c.token,
              logprob: c.logprobs.logprob,
              top: p.logprobs === null ? [] : c.logprobs.top,
            };
        this.post({ type: 'chunk', id, text: c.text, token });
        if (c.finishReason === undefined) {
          if (this.#cancelled(id)) throw new Cancelled();
          this.#step(id);
        }
      }
    } finally {
      await it.return(undefined as never).catch(() => {});
    }
  }

  /** Keeps `pc` on disk and offers it to Redis (when long enough and not there yet). */
  async #persist(pc: PromptCache, explicit = false): Promise<boolean> {
    const tokens = pc.tokens;
    if (tokens.length === 0 || (!explicit && tokens.length < this.init.cache.minPersistTokens)) return false;
    const { scope, fingerprint, numerics } = this.info;
    let file: string | undefined;
    let stored = false;
    if (this.disk) {
      try {
        const e = await this.disk.add(
          { scope, modelFingerprint: fingerprint, numerics, tokens },
          pc.stateByteLength, // the file's row data, by the caches' own accounting
          (path) => this.lm.savePromptCache(path, pc),
        );
        if (e) {
          file = this.disk.path(e.id);
          stored = true;
        }
      } catch (e) {
        this.#log('warn', 'disk tier: writing a prompt cache failed', { error: (e as Error).message });
      }
    }
    if (this.init.cache.redis) {
      const id = entryId(scope, tokens);
      const last = this.#redisPut.get(id);
      if (last !== undefined && Date.now() - last < (this.init.cache.redisTtlSeconds * 1000) / 2) return true;
      const bytes = file
        ? new Uint8Array(await readRegularFile(file))
        : await this.lm.savePromptCacheToBytes(pc);
      this.#redisPut.delete(id);
      this.#redisPut.set(id, Date.now());
      while (this.#redisPut.size > 100_000) {
        const [oldest] = this.#redisPut.keys();
        this.#redisPut.delete(oldest!);
      }
      const hashes = chainHashes(tokens, tokens.length, this.init.cache.blockTokens);
      this.post({ type: 'redis-put', entryId: id, hashes, bytes }, [bytes.buffer as ArrayBuffer]);
      stored = true;
    }
    return stored;
  }
}
