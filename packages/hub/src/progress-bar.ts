/** A one-line progress bar for downloads, drawn on a TTY only (stderr by default). */
import type { DownloadProgress } from './download';

export interface ProgressBar {
  /** Pass as `onProgress` (it is bound). */
  update: (progress: DownloadProgress) => void;
  /** Draws the final state and ends the line, if anything was drawn. Call it after the download, also on error. */
  done: () => void;
}

/** The part of a stream the bar uses (`process.stderr` fits). */
export interface ProgressStream {
  write(chunk: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export interface ProgressBarOptions {
  /** Clock in ms (tests). Default `performance.now`. */
  now?: () => number;
  /** Minimum time between redraws (default 100 ms); the last update of a file is always drawn. */
  intervalMs?: number;
}

/** `1.5 kB`, `12.3 MB`, `4.20 GB` (powers of 1000, like the Hub's file sizes). */
export function formatBytes(n: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let v = n;
  let u = 0;
  while (v >= 1000 && u < units.length - 1) {
    v /= 1000;
    u++;
  }
  return u === 0 ? `${Math.round(v)} B` : `${v.toFixed(v < 10 ? 2 : 1)} ${units[u]}`;
}

/** `7s`, `2m05s`, `1h02m`. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/**
 * `createProgressBar(process.stderr)` → `{update, done}`; `update` fits `onProgress`. Shows the file, the overall
 * bar and percentage, bytes done / total, the rate (bytes/s since the first update) and the ETA. Prints nothing
 * when the stream is not a TTY.
 */
export function createProgressBar(
  stream: ProgressStream = process.stderr,
  options: ProgressBarOptions = {},
): ProgressBar {
  const now = options.now ?? (() => performance.now());
  const interval = options.intervalMs ?? 100;
  const enabled = stream.isTTY === true;
  let start: { t: number; bytes: number } | null = null;
  let lastDraw = Number.NEGATIVE_INFINITY;
  let last: DownloadProgress | null = null;
  /** The last update has not been drawn yet (throttled). */
  let dirty = false;

  const render = (p: DownloadProgress): string => {
    const t = now();
    const elapsed = start ? (t - start.t) / 1000 : 0;
    const rate = start && elapsed > 0 ? (p.overallDownloaded - start.bytes) / elapsed : 0;
    const frac = p.overallTotal > 0 ? Math.min(1, p.overallDownloaded / p.overallTotal) : 1;
    const width = 20;
    const filled = Math.round(frac * width);
    const bar = `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}]`;
    const eta = rate > 0 ? formatDuration((p.overallTotal - p.overallDownloaded) / rate) : '?';
    const counter = p.fileCount > 1 ? `[${p.fileIndex + 1}/${p.fileCount}] ` : '';
    const tail =
      ` ${bar} ${String(Math.floor(frac * 100)).padStart(3)}% ` +
      `${formatBytes(p.overallDownloaded)} / ${formatBytes(p.overallTotal)}` +
      (rate > 0 ? `  ${formatBytes(rate)}/s  ETA ${eta}` : '');
    // Shorten the file name (from the left) before anything else, so the numbers stay visible.
    const cols = (stream.columns || 100) - 1;
    const room = cols - counter.length - tail.length;
    const name = p.file.length <= room ? p.file : room > 4 ? `…${p.file.slice(-(room - 1))}` : '';
    const line = `${counter}${name}${tail}`;
    return line.length > cols ? line.slice(0, cols) : line;
  };

  const draw = (p: DownloadProgress) => {
    stream.write(`\r\x1b[2K${render(p)}`);
    dirty = false;
    lastDraw = now();
  };

  return {
    update: (p) => {
      if (!enabled) return;
      if (!start) start = { t: now(), bytes: p.overallDownloaded };
      last = p;
      dirty = true;
      if (p.downloaded === p.total || now() - lastDraw >= interval) draw(p);
    },
    done: () => {
      if (!enabled || !last) return;
      if (dirty) draw(last);
      stream.write('\n');
      last = null;
      start = null;
    },
  };
}
