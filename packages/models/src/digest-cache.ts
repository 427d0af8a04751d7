/**
 * Verified tensor digests remembered across loads, so that the model fingerprint (every byte of every tensor) costs a
 * full sha256 pass only the first time a checkpoint file is loaded.
 *
 * One JSON file per checkpoint file, under the user's cache folder (`$MNEMO_CACHE_DIR`, else `$XDG_CACHE_HOME/mnemo`,
 * else `~/.cache/mnemo`, then `weight-digests/`; never beside the checkpoint), holding the file's real path, its
 * identity when its tensors were hashed (device, inode, size, mtime and ctime in nanoseconds) and each tensor's digest.
 * An entry is used only when the open file's identity is exactly the recorded one: any write to the file changes its
 * ctime (which programs cannot set back) and replacing it changes its inode. A file changed while it loads is caught
 * by checking its identity again at the end. A file modified less than 2 s before it was hashed is not remembered (on
 * filesystems with coarse timestamps a write in the same tick would leave its identity unchanged).
 */
import { createHash } from 'node:crypto';
import { mkdir, realpath } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { type FileIdentity, readTextFileIfExists, sameIdentity, writeFileAtomic } from '@mnemo/files';

const FORMAT = 'mnemo-weight-digests';
const VERSION = 1;
const SETTLE_NS = 2_000_000_000n;
const MAX_ENTRY_BYTES = 64 * 1024 * 1024;
const HEX = /^[0-9a-f]{64}$/;

/** The default folder of remembered digests, or null when `MNEMO_DIGEST_CACHE=0` turns remembering off. */
export function defaultDigestCacheDir(env: NodeJS.ProcessEnv = process.env): string | null {
  if (env.MNEMO_DIGEST_CACHE === '0') return null;
  const base =
    env.MNEMO_CACHE_DIR ||
    (env.XDG_CACHE_HOME ? join(env.XDG_CACHE_HOME, 'mnemo') : join(homedir(), '.cache', 'mnemo'));
  return join(base, 'weight-digests');
}

interface Entry {
  /** Where the entry is stored. */
  readonly store: string;
  readonly file: string;
  readonly identity: FileIdentity;
  readonly tensors: Map<string, string>;
  dirty: boolean;
}

function isIdentity(x: unknown): x is FileIdentity {
  if (typeof x !== 'object' || x === null) return false;
  const o = x as Record<string, unknown>;
  return ['dev', 'ino', 'size', 'mtimeNs', 'ctimeNs'].every(
    (k) => typeof o[k] === 'string' && /^\d+$/.test(o[k]),
  );
}

/** Remembered digests of the tensors of checkpoint files (see the module comment). */
export class DigestCache {
  private readonly entries = new Map<string, Promise<Entry>>();

  constructor(readonly dir: string) {}

  /** What a remembered digest is keyed by within its file: the tensor's name, dtype, shape and place. */
  static tensorKey(
    name: string,
    dtype: string,
    shape: readonly number[],
    byteOffset: number,
    byteLength: number,
  ): string {
    return `${name}\0${dtype}\0${shape.join(',')}\0${byteOffset}\0${byteLength}`;
  }

  /** The entry of `file` for a file of this identity: the remembered digests when they match it, else none. */
  private entry(file: string, identity: FileIdentity): Promise<Entry> {
    let e = this.entries.get(file);
    if (e === undefined) {
      e = this.load(file, identity);
      this.entries.set(file, e);
    }
    return e;
  }

  private async load(file: string, identity: FileIdentity): Promise<Entry> {
    const real = await realpath(file).catch(() => file);
    const store = join(this.dir, `${createHash('sha256').update(real).digest('hex')}.json`);
    const fresh: Entry = { store, file: real, identity, tensors: new Map(), dirty: false };
    try {
      const text = await readTextFileIfExists(store, { maxBytes: MAX_ENTRY_BYTES });
      if (text === null) return fresh;
      const j = JSON.parse(text) as Record<string, unknown>;
      if (j.format !== FORMAT || j.version !== VERSION || j.file !== real) return fresh;
      if (!isIdentity(j.identity) || !sameIdentity(j.identity, identity)) return fresh;
      const tensors = j.tensors;
      if (typeof tensors !== 'object' || tensors === null || Array.isArray(tensors)) return fresh;
      for (const [k, v] of Object.entries(tensors))
        if (typeof v === 'string' && HEX.test(v)) fresh.tensors.set(k, v);
      return fresh;
    } catch {
      return fresh; // unreadable or damaged: hash again
    }
  }

  /** The remembered digest of a tensor of `file`, when `file` has exactly this identity. */
  async lookup(file: string, identity: FileIdentity, key: string): Promise<string | undefined> {
    const e = await this.entry(file, identity);
    return sameIdentity(e.identity, identity) ? e.tensors.get(key) : undefined;
  }

  /** Remembers a digest just computed from the bytes of `file` (saved by {@link save}). */
  async record(file: string, identity: FileIdentity, key: string, hex: string): Promise<void> {
    const e = await this.entry(file, identity);
    if (!sameIdentity(e.identity, identity)) return;
    e.tensors.set(key, hex);
    e.dirty = true;
  }

  /**
   * Writes the entries that gained digests, for files whose identity `now(file)` still is the one they were hashed
   * with and that were last modified at least 2 s before. Best effort: a cache that cannot be written is skipped.
   */
  async save(now: (file: string) => Promise<FileIdentity>): Promise<void> {
    const wall = BigInt(Date.now()) * 1_000_000n;
    for (const [file, pending] of this.entries) {
      const e = await pending;
      if (!e.dirty) continue;
      try {
        const current = await now(file);
        if (!sameIdentity(current, e.identity) || wall - BigInt(e.identity.mtimeNs) < SETTLE_NS) continue;
        await mkdir(this.dir, { recursive: true, mode: 0o700 });
        const body = JSON.stringify({
          format: FORMAT,
          version: VERSION,
          file: e.file,
          identity: e.identity,
          tensors: Object.fromEntries(e.tensors),
        });
        await writeFileAtomic(
          e.store,
          async (fh) => {
            await fh.writeFile(body);
          },
          { fsync: false },
        );
        e.dirty = false;
      } catch {
        // a read-only or full cache folder: the digests are computed again next time
      }
    }
  }
}
