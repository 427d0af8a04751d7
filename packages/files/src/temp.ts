/**
 * Temporary files of atomic writes: their names, their removal when the process is interrupted (SIGINT, SIGTERM,
 * SIGHUP, or exit while a write is in progress), and the removal of those a killed writer (SIGKILL, power loss) left
 * behind.
 */
import { randomBytes } from 'node:crypto';
import { unlinkSync } from 'node:fs';
import { lstat, readdir, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/** `<name>.tmp-<pid>-<12 hex digits>`: the writer's process id is part of the name. */
const TEMP_NAME = /\.tmp-(\d{1,10})-[0-9a-f]{12}$/;

/** Longest part of the destination's name kept in a temporary file's name (names are limited to 255 bytes). */
const MAX_STEM = 200;

/** A fresh temporary path beside `target` (in the same folder, so the final rename is atomic). */
export function tempPathFor(target: string): string {
  const stem = basename(target).slice(0, MAX_STEM);
  return join(dirname(target), `${stem}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`);
}

/** The process id in a temporary file's name, or undefined when `name` is not one. */
export function tempWriterPid(name: string): number | undefined {
  const m = TEMP_NAME.exec(name);
  return m ? Number(m[1]) : undefined;
}

// ---- removal on interruption ------------------------------------------------------------------------------------

const live = new Set<string>();
const SIGNALS: readonly NodeJS.Signals[] =
  process.platform === 'win32' ? ['SIGINT', 'SIGTERM'] : ['SIGINT', 'SIGTERM', 'SIGHUP'];
let installed = false;

function removeLiveSync(): void {
  for (const p of live) {
    try {
      unlinkSync(p);
    } catch {
      // already gone (renamed into place, or removed by the writer)
    }
  }
  live.clear();
}

function onSignal(signal: NodeJS.Signals): void {
  removeLiveSync();
  // Nobody else handles this signal: do what the process would have done without us, which is to die of it.
  if (process.listenerCount(signal) === 1) {
    uninstall();
    process.kill(process.pid, signal);
  }
}

function onExit(): void {
  removeLiveSync();
}

function install(): void {
  if (installed) return;
  installed = true;
  for (const s of SIGNALS) process.on(s, onSignal);
  process.on('exit', onExit);
}

function uninstall(): void {
  if (!installed) return;
  installed = false;
  for (const s of SIGNALS) process.off(s, onSignal);
  process.off('exit', onExit);
}

/** Marks `path` as a temporary file being written: it is removed if the process is interrupted or exits. */
export function registerTemp(path: string): void {
  live.add(path);
  install();
}

/** The write of `path` ended (renamed into place or removed). */
export function unregisterTemp(path: string): void {
  live.delete(path);
  if (live.size === 0) uninstall();
}

/** Temporary files this process is writing now (for tests). */
export function liveTemps(): readonly string[] {
  return [...live];
}

// ---- removal of what killed writers left ------------------------------------------------------------------------

/** Whether a process with this id exists (one we may not signal counts as existing). */
function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as { code?: unknown }).code === 'EPERM';
  }
}

/**
 * Removes the temporary files in `dir` whose writer process no longer exists (a writer killed with SIGKILL cannot
 * clean up). Only regular files named like this module's temporary files are touched; files of this process and of
 * any running process are left alone. Best effort: returns the paths removed, never throws.
 */
export async function removeStaleTemps(dir: string): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    const pid = tempWriterPid(name);
    if (pid === undefined || pid === process.pid || pid === 0 || isRunning(pid)) continue;
    const p = join(dir, name);
    try {
      if (!(await lstat(p)).isFile()) continue;
      await unlink(p);
      removed.push(p);
    } catch {
      // gone meanwhile, or not ours to remove
    }
  }
  return removed;
}
