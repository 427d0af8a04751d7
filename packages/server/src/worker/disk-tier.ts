/**
 * The disk tier: prompt-cache files in one folder, found again after a restart. Each entry is two files named by its
 * id (a hash of scope and token ids; nothing from a request ever names a file):
 *   <id>.safetensors   the prompt-cache file (written atomically by LM.savePromptCache)
 *   <id>.json          its index record: scope, model, numerics and token ids (written after it, atomically)
 * so the index is rebuilt at startup from the small records without opening the caches. Both are written through
 * `@mnemo/files`' atomic writer (a temporary file beside them, then rename; removed on SIGINT/SIGTERM, and by the next
 * write when its writer was killed) and read only when they are regular files. Entries over the byte budget
 * are removed least recently used first. A file that fails its checks when loaded is moved to `refused/` with the
 * reason in its name, and never used again.
 */
import { lstat, mkdir, readdir, rename, rm, stat, unlink, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { readTextFile, writeFileAtomic } from '@mnemo/files';
import { chainHashes, commonPrefix, entryId, isEntryId } from '../cache/prefix';

export interface DiskEntry {
  readonly id: string;
  readonly scope: string;
  readonly modelFingerprint: string;
  readonly numerics: string;
  readonly tokens: readonly number[];
  readonly bytes: number;
  lastUsed: number;
}

interface Record1 {
  readonly format: 'mnemo-server-cache-entry';
  readonly version: 1;
  readonly id: string;
  readonly scope: string;
  readonly modelFingerprint: string;
  readonly numerics: string;
  readonly tokens: readonly number[];
  readonly bytes: number;
  readonly createdAt: string;
}

/** Index records larger than this are not read (a record of 1M tokens is about 7 MB). */
const MAX_RECORD_BYTES = 16 << 20;
/** Files kept in `refused/`; older ones are deleted. */
const MAX_REFUSED = 32;
/** Leftovers (temporary files, caches without a record) younger than this may belong to a writer still at work. */
const STALE_MS = 60 * 60 * 1000;

export interface DiskLookup {
  readonly entry: DiskEntry | undefined;
  readonly lcp: number;
  /** The longest prefix (in tokens, at a block boundary) held for another scope: another model or numerics. */
  readonly other:
    | { readonly length: number; readonly modelFingerprint: string; readonly numerics: string }
    | undefined;
  /** Length of the longest evicted prefix of the prompt (0 if none). */
  readonly evicted: number;
}

type Log = (level: 'debug' | 'info' | 'warn', msg: string, data?: Record<string, unknown>) => void;

export class DiskTier {
  readonly #entries = new Map<string, DiskEntry>();
  /** Block-boundary hash → ids of entries (any scope) holding that prefix. */
  readonly #index = new Map<string, Set<string>>();
  readonly #ghosts = new Map<string, number>();
  #bytes = 0;

  private constructor(
    readonly dir: string,
    readonly budgetBytes: number,
    private readonly blockTokens: number,
    private readonly log: Log,
  ) {}

  /** Opens (creating it if needed) the folder and indexes what a previous run left there. */
  static async open(dir: string, budgetBytes: number, blockTokens: number, log: Log): Promise<DiskTier> {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const t = new DiskTier(dir, budgetBytes, blockTokens, log);
    await t.#scan();
    await t.#evict();
    return t;
  }

  get bytes(): number {
    return this.#bytes;
  }
  get size(): number {
    return this.#entries.size;
  }

  has(id: string): boolean {
    return this.#entries.has(id);
  }

  path(id: string): string {
    if (!isEntryId(id)) throw new Error(`disk tier: not an entry id: ${JSON.stringify(id)}`);
    return join(this.dir, `${id}.safetensors`);
  }

  /**
   * The entry of `scope` sharing the longest prefix with `prompt` (at most `max` tokens), found through the prompt's
   * block hashes `chain`; also what other scopes hold and what was evicted, for diagnostics.
   */
  best(prompt: readonly number[], chain: readonly string[], scope: string, max: number): DiskLookup {
    let entry: DiskEntry | undefined;
    let lcp = 0;
    let other: DiskLookup['other'];
    // An entry sharing the prompt's first k blocks is indexed at boundaries 1..k, so the first (longest) boundary with
    // an entry of this scope holds the best one; the exact common prefix decides among the entries found there.
    for (let k = chain.length; k > 0 && (entry === undefined || other === undefined); k--) {
      const ids = this.#index.get(chain[k - 1]!);
      if (!ids) continue;
      const found = entry !== undefined;
      for (const id of ids) {
        const e = this.#entries.get(id)!;
        if (e.scope !== scope) {
          other ??= {
            length: k * this.blockTokens,
            modelFingerprint: e.modelFingerprint,
            numerics: e.numerics,
          };
        } else if (!found) {
          const n = commonPrefix(e.tokens, prompt, max);
          if (n > lcp) {
            lcp = n;
            entry = e;
          }
        }
      }
    }
    let evicted = 0;
    for (let k = chain.length; k > 0; k--)
      if (this.#ghosts.has(chain[k - 1]!)) {
        evicted = k * this.blockTokens;
        break;
      }
    return { entry, lcp, other, evicted };
  }

  /** Marks an entry used now (its recency survives restarts through the file's modification time). */
  touch(e: DiskEntry): void {
    e.lastUsed = Date.now();
    const when = new Date(e.lastUsed);
    utimes(this.path(e.id), when, when).catch(() => {});
  }

  /**
   * Adds an entry: `save` writes the prompt-cache file at the path it is given (atomically), then the record is
   * written. Returns the entry, or undefined when it is larger than the whole budget.
   */
  async add(
    meta: { scope: string; modelFingerprint: string; numerics: string; tokens: readonly number[] },
    estimatedBytes: number,
    save: (path: string) => Promise<void>,
  ): Promise<DiskEntry | undefined> {
    if (estimatedBytes > this.budgetBytes) return undefined;
    const id = entryId(meta.scope, meta.tokens);
    if (this.#entries.has(id)) return this.#entries.get(id);
    const file = this.path(id);
    await save(file);
    const { size } = await stat(file);
    const record: Record1 = {
      format: 'mnemo-server-cache-entry',
      version: 1,
      id,
      scope: meta.scope,
      modelFingerprint: meta.modelFingerprint,
      numerics: meta.numerics,
      tokens: [...meta.tokens],
      bytes: size,
      createdAt: new Date().toISOString(),
    };
    await writeAtomic(join(this.dir, `${id}.json`), JSON.stringify(record));
    const e: DiskEntry = { ...record, lastUsed: Date.now() };
    this.#insert(e);
    await this.#evict();
    return this.#entries.get(id);
  }

  /** Moves an entry's files to `refused/` (named with the reason) and forgets it. */
  async refuse(e: DiskEntry, code: string): Promise<void> {
    this.#remove(e, false);
    const dir = join(this.dir, 'refused');
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const tag = `${e.id}.${code.replace(/[^A-Z0-9_]/gi, '_')}.${Date.now()}`;
    for (const ext of ['safetensors', 'json'])
      await rename(join(this.dir, `${e.id}.${ext}`), join(dir, `${tag}.${ext}`)).catch(() => {});
    this.log('warn', 'disk tier: prompt-cache file refused and moved aside', { id: e.id, code, to: dir });
    await this.#trimRefused(dir);
  }

  async #trimRefused(dir: string): Promise<void> {
    const names = await readdir(dir).catch(() => [] as string[]);
    const files = await Promise.all(
      names.map(async (n) => ({ n, t: (await stat(join(dir, n)).catch(() => undefined))?.mtimeMs ?? 0 })),
    );
    files.sort((a, b) => a.t - b.t);
    for (const f of files.slice(0, Math.max(0, files.length - MAX_REFUSED * 2)))
      await rm(join(dir, f.n), { force: true });
  }

  #insert(e: DiskEntry): void {
    this.#entries.set(e.id, e);
    this.#bytes += e.bytes;
    for (const h of chainHashes(e.tokens, e.tokens.length, this.blockTokens)) {
      let s = this.#index.get(h);
      if (!s) {
        s = new Set();
        this.#index.set(h, s);
      }
      s.add(e.id);
    }
  }

  #remove(e: DiskEntry, evicted: boolean): void {
    if (!this.#entries.delete(e.id)) return;
    this.#bytes -= e.bytes;
    for (const h of chainHashes(e.tokens, e.tokens.length, this.blockTokens)) {
      const s = this.#index.get(h);
      s?.delete(e.id);
      if (s?.size === 0) this.#index.delete(h);
      if (evicted) {
        this.#ghosts.delete(h);
        this.#ghosts.set(h, e.tokens.length);
      }
    }
    while (this.#ghosts.size > 65_536) {
      const [oldest] = this.#ghosts.keys();
      this.#ghosts.delete(oldest!);
    }
  }

  async #evict(): Promise<void> {
    if (this.#bytes <= this.budgetBytes) return;
    const byAge = [...this.#entries.values()].sort((a, b) => a.lastUsed - b.lastUsed);
    for (const e of byAge) {
      if (this.#bytes <= this.budgetBytes) break;
      this.#remove(e, true);
      await unlink(join(this.dir, `${e.id}.json`)).catch(() => {});
      await unlink(join(this.dir, `${e.id}.safetensors`)).catch(() => {});
      this.log('debug', 'disk tier: evicted', { id: e.id, tokens: e.tokens.length, bytes: e.bytes });
    }
  }

  async #scan(): Promise<void> {
    const names = await readdir(this.dir);
    const present = new Set(names);
    const now = Date.now();
    let refused = 0;
    for (const name of names) {
      const full = join(this.dir, name);
      const m = /^([0-9a-f]{64})\.json$/.exec(name);
      if (!m && name.startsWith('mnemo-pc-')) {
        // The private folder of a Redis entry passing through a file (LM.loadPromptCacheFromBytes) whose process died.
        const st = await lstat(full).catch(() => undefined);
        if (st?.isDirectory() && now - st.mtimeMs > STALE_MS)
          await rm(full, { recursive: true, force: true });
        continue;
      }
      if (!m) {
        // A cache without its record, or a temporary file, left by an interrupted writer: removed once stale.
        if (/^[0-9a-f]{64}\.(safetensors|json)\..*tmp|^[0-9a-f]{64}\.safetensors$/.test(name)) {
          const id = name.slice(0, 64);
          if (name.endsWith('.safetensors') && present.has(`${id}.json`)) continue;
          const st = await stat(full).catch(() => undefined);
          if (st?.isFile() && now - st.mtimeMs > STALE_MS) await unlink(full).catch(() => {});
        }
        continue;
      }
      const id = m[1]!;
      const bad = async (why: string) => {
        refused++;
        this.log('warn', `disk tier: index record refused: ${why}`, { id });
        const dir = join(this.dir, 'refused');
        await mkdir(dir, { recursive: true, mode: 0o700 });
        for (const ext of ['safetensors', 'json'])
          await rename(join(this.dir, `${id}.${ext}`), join(dir, `${id}.INDEX.${now}.${ext}`)).catch(
            () => {},
          );
      };
      try {
        const st = await stat(full);
        if (!st.isFile() || st.size > MAX_RECORD_BYTES) {
          await bad('not a regular file or too large');
          continue;
        }
        const r = JSON.parse(await readTextFile(full, { maxBytes: MAX_RECORD_BYTES })) as Partial<Record1>;
        if (
          r.format !== 'mnemo-server-cache-entry' ||
          r.version !== 1 ||
          r.id !== id ||
          typeof r.scope !== 'string' ||
          typeof r.modelFingerprint !== 'string' ||
          typeof r.numerics !== 'string' ||
          !Array.isArray(r.tokens) ||
          !r.tokens.every((t) => Number.isSafeInteger(t) && t >= 0) ||
          entryId(r.scope, r.tokens) !== id
        ) {
          await bad('malformed');
          continue;
        }
        const cache = await stat(join(this.dir, `${id}.safetensors`)).catch(() => undefined);
        if (!cache?.isFile() || cache.size !== r.bytes) {
          await bad('its prompt-cache file is missing or has another size');
          continue;
        }
        this.#insert({
          id,
          scope: r.scope,
          modelFingerprint: r.modelFingerprint,
          numerics: r.numerics,
          tokens: r.tokens,
          bytes: cache.size,
          lastUsed: cache.mtimeMs,
        });
      } catch (e) {
        await bad((e as Error).message);
      }
    }
    this.log('info', 'disk tier: indexed', {
      dir: this.dir,
      entries: this.#entries.size,
      bytes: this.#bytes,
      refused,
    });
  }
}

/** Writes a small file atomically (a private temporary file beside it, then rename), without fsync: an index record. */
async function writeAtomic(path: string, text: string): Promise<void> {
  await writeFileAtomic(
    path,
    async (fh) => {
      await fh.writeFile(text);
    },
    { fsync: false },
  );
}
