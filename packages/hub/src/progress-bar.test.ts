import { describe, expect, it } from 'vitest';
import type { DownloadProgress } from './download';
import { createProgressBar, formatBytes, formatDuration } from './progress-bar';

function fakeStream(isTTY: boolean, columns = 120) {
  const out: string[] = [];
  return { out, stream: { isTTY, columns, write: (s: string) => out.push(s) } };
}

const p = (downloaded: number, over: Partial<DownloadProgress> = {}): DownloadProgress => ({
  file: 'model.safetensors',
  downloaded,
  total: 4_000_000,
  overallDownloaded: downloaded,
  overallTotal: 4_000_000,
  fileIndex: 0,
  fileCount: 2,
  ...over,
});

describe('createProgressBar', () => {
  it('draws file, bar, percentage, totals, rate and ETA on a TTY', () => {
    let t = 0;
    const { out, stream } = fakeStream(true);
    const bar = createProgressBar(stream, { now: () => t });
    bar.update(p(0));
    t = 1000;
    bar.update(p(1_000_000));
    const line = out.at(-1)!;
    expect(line.startsWith('\r\x1b[2K')).toBe(true);
    expect(line).toContain('[1/2] model.safetensors [#####---------------]  25% 1.00 MB / 4.00 MB');
    expect(line).toContain('1.00 MB/s  ETA 3s');
    bar.done();
    expect(out.at(-1)).toBe('\n');
  });

  it('throttles redraws but always draws the end of a file', () => {
    let t = 0;
    const { out, stream } = fakeStream(true);
    const bar = createProgressBar(stream, { now: () => t, intervalMs: 100 });
    bar.update(p(0));
    t = 10;
    bar.update(p(10));
    bar.update(p(20));
    expect(out).toHaveLength(1);
    bar.update(p(4_000_000));
    expect(out).toHaveLength(2);
    expect(out[1]).toContain('100%');
  });

  it('fits the terminal width, shortening the file name first', () => {
    const { out, stream } = fakeStream(true, 70);
    const bar = createProgressBar(stream, { now: () => 0 });
    bar.update(p(5, { file: 'some/very/long/folder/name/model-00001-of-00002.safetensors' }));
    const line = out[0]!.replace('\r\x1b[2K', '');
    expect(line.length).toBeLessThanOrEqual(69);
    expect(line).toMatch(/^\[1\/2\] …\S*safetensors \[-+\] {3}0% 5 B \/ 4\.00 MB$/);
    const narrow = fakeStream(true, 30);
    createProgressBar(narrow.stream).update(p(5));
    expect(narrow.out[0]!.replace('\r\x1b[2K', '').length).toBeLessThanOrEqual(29);
  });

  it('prints nothing when the stream is not a TTY', () => {
    const { out, stream } = fakeStream(false);
    const bar = createProgressBar(stream);
    bar.update(p(0));
    bar.update(p(4_000_000));
    bar.done();
    expect(out).toEqual([]);
  });
});

describe('formatting', () => {
  it('formats bytes and durations', () => {
    expect(formatBytes(512)).toBe('512 B');
    expect(formatBytes(1500)).toBe('1.50 kB');
    expect(formatBytes(12_345_678)).toBe('12.3 MB');
    expect(formatBytes(4.2e9)).toBe('4.20 GB');
    expect(formatDuration(7)).toBe('7s');
    expect(formatDuration(125)).toBe('2m05s');
    expect(formatDuration(3720)).toBe('1h02m');
    expect(formatDuration(Number.POSITIVE_INFINITY)).toBe('?');
  });
});
