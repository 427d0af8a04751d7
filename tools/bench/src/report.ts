/**
 * Turns the children's raw figures into the reported numbers (medians, ratios, bandwidth, targets) and renders them
 * as a markdown table, JSON and a chart (SVG, rasterized to PNG with @resvg/resvg-js when it loads).
 */
import type { Bandwidth } from './bandwidth';
import { FORMAT_INFO, type Format } from './checkpoint';
import { type ChildResult, median } from './job';
import { type ModelSpec, tensorDefs } from './spec';

export interface RuntimeFigures {
  readonly prefillTps: number;
  readonly decodeTps: number;
  /** GB/s read during decode (weights + KV at the mean context), and its share of the measured 2-thread bandwidth. */
  readonly decodeGBs: number;
  decodeBandwidthPct: number;
  /** 1-minute load average before and after this runtime's process. */
  readonly loadAverage: [number, number];
  readonly ttftUncachedMs: number;
  readonly ttftCachedMs: number | null;
  readonly cachedPctOfUncached: number | null;
  readonly peakRssMb: number;
  readonly weightsMb: number;
  readonly kvMb: number;
  /** 1.25 × (weights + KV). */
  readonly rssBudgetMb: number;
  readonly prefillCores: number;
  readonly decodeCores: number;
  readonly loadSeconds: number;
  readonly raw: ChildResult;
}

export interface TargetCheck {
  readonly name: string;
  readonly value: string;
  readonly target: string;
  readonly met: boolean | null;
}

/** A generated format, or `gguf`: one GGUF file run by both runtimes (`pnpm bench --gguf FILE`). */
export type BenchFormat = Format | 'gguf';

export interface FormatResult {
  readonly format: BenchFormat;
  readonly label: string;
  readonly mnemo: RuntimeFigures | null;
  readonly peer: RuntimeFigures | null;
  readonly agreement: {
    readonly compared: number;
    /** Length of the common prefix of the two greedy sequences. */
    readonly commonPrefix: number;
    /** Positions where they agree. */
    readonly samePositions: number;
    /** Positions where llama.cpp's greedy token, given mnemo's previous tokens, equals mnemo's. */
    readonly teacherForced: number | null;
  } | null;
  targets: TargetCheck[];
  readonly errors: string[];
}

export interface BenchConfig {
  readonly runs: number;
  readonly threads: number;
  readonly peerThreads?: number;
  readonly prefillTokens: number;
  readonly decodeTokens: number;
  readonly ttftTokens: number;
  readonly agreeTokens: number;
  readonly contextSize: number;
  /** mnemo's arithmetic when not the default exact path (e.g. `wasm+int8a`: int8 activations). */
  readonly mnemoNumerics?: string;
}

export interface BenchReport {
  readonly model: string;
  readonly spec: ModelSpec;
  readonly date: string;
  readonly machine: Record<string, string | number>;
  readonly git: string;
  readonly config: BenchConfig;
  /** The measurement decode is compared with (the best of the run's measurements). */
  bandwidth: Bandwidth;
  bandwidthMeasurements: Bandwidth[];
  /** 1-minute load averages seen during the run. */
  readonly loadAverage: number[];
  readonly formats: FormatResult[];
  readonly notes: string[];
}

const MB = 1024 * 1024;

/** The bandwidth decode is compared with: the fastest 2-thread pass (the median drops when other work runs). */
export function referenceBandwidth(bw: Bandwidth): number {
  return Math.max(bw.twoThreadBestGBs, bw.twoThreadGBs);
}

/**
 * Bytes read from memory per decoded token: every matrix in its stored form, the norms (f32), KV at `ctx` tokens.
 * `weightBytes` replaces the weights' part when the caller knows it (a GGUF file's tensors).
 */
function bytesPerToken(
  spec: ModelSpec,
  format: BenchFormat,
  kvBytesPerToken: number,
  ctx: number,
  weightBytes?: number,
): number {
  if (weightBytes !== undefined || format === 'gguf') return (weightBytes ?? 0) + kvBytesPerToken * ctx;
  let bytes = 0;
  for (const t of tensorDefs(spec)) {
    if (t.kind === 'norm') bytes += t.cols * 4;
    else if (t.kind === 'embed' && !spec.tied) bytes += t.cols * FORMAT_INFO[format].bytesPerWeight;
    else bytes += t.rows * t.cols * FORMAT_INFO[format].bytesPerWeight;
  }
  return bytes + kvBytesPerToken * ctx;
}

export function figures(
  spec: ModelSpec,
  format: BenchFormat,
  raw: ChildResult,
  cfg: BenchConfig,
  bw: Bandwidth,
  weightBytes: number,
  kvBytesPerToken: number,
  kvCapacityTokens: number,
  loadAverage: [number, number],
  /** Weight bytes read per decoded token, when known (GGUF files); else computed from the spec and format. */
  weightBytesPerToken?: number,
): RuntimeFigures {
  const decodeTps = median(raw.runs.map((r) => r.decodeTps));
  const meanCtx = cfg.prefillTokens + cfg.decodeTokens / 2;
  const decodeGBs =
    (bytesPerToken(spec, format, kvBytesPerToken, meanCtx, weightBytesPerToken) * decodeTps) / 1e9;
  const ttftUncachedMs = median(raw.ttftUncachedMs);
  const ttftCachedMs = raw.ttftCachedMs ? median(raw.ttftCachedMs) : null;
  const weightsMb = weightBytes / MB;
  const kvMb = (kvBytesPerToken * kvCapacityTokens) / MB;
  return {
    prefillTps: median(raw.runs.map((r) => r.prefillTps)),
    decodeTps,
    decodeGBs,
    decodeBandwidthPct: (100 * decodeGBs) / referenceBandwidth(bw),
    loadAverage,
    ttftUncachedMs,
    ttftCachedMs,
    cachedPctOfUncached: ttftCachedMs === null ? null : (100 * ttftCachedMs) / ttftUncachedMs,
    peakRssMb: raw.peakRssBytes / MB,
    weightsMb,
    kvMb,
    rssBudgetMb: 1.25 * (weightsMb + kvMb),
    prefillCores: median(raw.runs.map((r) => r.prefillCores)),
    decodeCores: median(raw.runs.map((r) => r.decodeCores)),
    loadSeconds: raw.loadMs / 1000,
    raw,
  };
}

export function agreement(
  a: ChildResult,
  b: ChildResult,
  n: number,
): { compared: number; commonPrefix: number; samePositions: number; teacherForced: number | null } {
  const x = a.runs[0]?.tokens ?? [];
  const y = b.runs[0]?.tokens ?? [];
  const compared = Math.min(n, x.length, y.length);
  let commonPrefix = 0;
  while (commonPrefix < compared && x[commonPrefix] === y[commonPrefix]) commonPrefix++;
  let samePositions = 0;
  for (let i = 0; i < compared; i++) if (x[i] === y[i]) samePositions++;
  return { compared, commonPrefix, samePositions, teacherForced: b.teacherForcedAgree ?? null };
}

export function targets(
  spec: ModelSpec,
  format: BenchFormat,
  m: RuntimeFigures | null,
  p: RuntimeFigures | null,
): TargetCheck[] {
  const out: TargetCheck[] = [];
  const x = (v: number) => `${v.toFixed(2)}×`;
  if (m && p) {
    const r = m.decodeTps / p.decodeTps;
    const applies = spec.name === 'llama-3.2-1b' && format === 'q4';
    out.push({
      name: 'decode vs llama.cpp',
      value: x(r),
      target: applies ? '≥ 1.0× (1B 4-bit)' : '≥ 1.0× (stated for 1B 4-bit)',
      met: applies ? r >= 1 : null,
    });
    const pr = m.prefillTps / p.prefillTps;
    out.push({ name: 'prefill vs llama.cpp', value: x(pr), target: '≥ 0.5×', met: pr >= 0.5 });
  }
  if (m) {
    out.push({
      name: 'decode bandwidth',
      value: `${m.decodeBandwidthPct.toFixed(0)}%`,
      target: '≥ 70% of measured',
      met: m.decodeBandwidthPct >= 70,
    });
    if (m.cachedPctOfUncached !== null)
      out.push({
        name: 'cached TTFT',
        value: `${m.cachedPctOfUncached.toFixed(1)}% of uncached`,
        target: '≤ 5%',
        met: m.cachedPctOfUncached <= 5,
      });
    out.push({
      name: 'peak RSS',
      value: `${m.peakRssMb.toFixed(0)} MiB (${(m.peakRssMb / (m.weightsMb + m.kvMb)).toFixed(2)}× weights + KV)`,
      target: `≤ 1.25 × (weights + KV) = ${m.rssBudgetMb.toFixed(0)} MiB`,
      met: m.peakRssMb <= m.rssBudgetMb,
    });
  }
  return out;
}

// ---- markdown -------------------------------------------------------------------------------------------------

const f1 = (v: number | null | undefined, d = 1) =>
  v === null || v === undefined || !Number.isFinite(v) ? 'n/a' : v.toFixed(d);
const ratio = (a: number | null | undefined, b: number | null | undefined) =>
  a === null ||
  a === undefined ||
  b === null ||
  b === undefined ||
  !Number.isFinite(a) ||
  !Number.isFinite(b) ||
  b === 0
    ? 'n/a'
    : `${(a / b).toFixed(2)}×`;

export function markdown(r: BenchReport): string {
  const c = r.config;
  const lines: string[] = [];
  const oneFile = r.formats.length > 0 && r.formats.every((f) => f.format === 'gguf');
  lines.push(
    `# mnemo vs llama.cpp — ${r.spec.label}${oneFile ? ', one GGUF file for both' : ' (synthetic weights)'}`,
  );
  lines.push('');
  lines.push(
    `${r.date} · ${r.machine.cpu} · ${r.machine.cores} cores · ${r.machine.memoryGb} GB RAM · Node ${r.machine.node} · mnemo ${r.git} · median of up to ${c.runs} runs · threads requested: mnemo ${c.threads}, llama.cpp ${c.peerThreads ?? c.threads}${c.mnemoNumerics ? ` · mnemo numerics: ${c.mnemoNumerics} (opt-in int8 activations for q4/q8)` : ''}`,
  );
  lines.push('');
  lines.push(
    `Memory read bandwidth measured in this run (${r.bandwidth.method}), before and after the runs: ${r.bandwidthMeasurements
      .map(
        (b) =>
          `1 thread ${b.oneThreadGBs.toFixed(1)} GB/s, 2 threads ${b.twoThreadGBs.toFixed(1)} GB/s (fastest pass ${b.oneThreadBestGBs.toFixed(1)} / ${b.twoThreadBestGBs.toFixed(1)})`,
      )
      .join(
        '; ',
      )}. Decode bandwidth is a share of the fastest 2-thread pass, **${referenceBandwidth(r.bandwidth).toFixed(1)} GB/s**.`,
  );
  lines.push('');
  lines.push(
    `Prefill: ${c.prefillTokens}-token prompt (same ids for both). Decode: ${c.decodeTokens} greedy tokens after it. TTFT: ${c.ttftTokens}-token prompt, without a cache and from a prompt-cache file of its first ${c.ttftTokens - 1} tokens (file load included). Ratio = mnemo / llama.cpp (for TTFT and RSS lower is better).`,
  );
  lines.push('');
  lines.push('| format | metric | mnemo | llama.cpp | ratio | runs (mnemo / llama.cpp) |');
  lines.push('|---|---|---:|---:|---:|:-:|');
  for (const f of r.formats) {
    const m = f.mnemo;
    const p = f.peer;
    const row = (metric: string, a: string, b: string, q: string, n = '') =>
      lines.push(`| ${f.format} | ${metric} | ${a} | ${b} | ${q} | ${n} |`);
    const n = (get: (x: ChildResult) => number | undefined) =>
      `${m ? (get(m.raw) ?? '–') : '–'} / ${p ? (get(p.raw) ?? '–') : '–'}`;
    const nRuns = n((x) => x.runs.length);
    row('prefill tok/s', f1(m?.prefillTps), f1(p?.prefillTps), ratio(m?.prefillTps, p?.prefillTps), nRuns);
    row('decode tok/s', f1(m?.decodeTps, 2), f1(p?.decodeTps, 2), ratio(m?.decodeTps, p?.decodeTps), nRuns);
    row(
      'decode bandwidth GB/s (% of 2-thread)',
      m ? `${f1(m.decodeGBs)} (${m.decodeBandwidthPct.toFixed(0)}%)` : 'n/a',
      p ? `${f1(p.decodeGBs)} (${p.decodeBandwidthPct.toFixed(0)}%)` : 'n/a',
      ratio(m?.decodeGBs, p?.decodeGBs),
      nRuns,
    );
    row(
      `TTFT ${c.ttftTokens} tokens, uncached ms`,
      f1(m?.ttftUncachedMs, 0),
      f1(p?.ttftUncachedMs, 0),
      ratio(m?.ttftUncachedMs, p?.ttftUncachedMs),
      n((x) => x.ttftUncachedMs.length),
    );
    row(
      'TTFT from prompt-cache file ms (% of uncached)',
      m?.ttftCachedMs != null ? `${f1(m.ttftCachedMs, 0)} (${f1(m.cachedPctOfUncached)}%)` : 'n/a',
      p?.ttftCachedMs != null ? `${f1(p.ttftCachedMs, 0)} (${f1(p.cachedPctOfUncached)}%)` : 'n/a',
      ratio(m?.ttftCachedMs, p?.ttftCachedMs),
      n((x) => x.ttftCachedMs?.length),
    );
    row(
      'peak RSS MiB (weights + KV)',
      m ? `${f1(m.peakRssMb, 0)} (${f1(m.weightsMb, 0)} + ${f1(m.kvMb, 0)})` : 'n/a',
      p ? `${f1(p.peakRssMb, 0)} (${f1(p.weightsMb, 0)} + ${f1(p.kvMb, 0)})` : 'n/a',
      ratio(m?.peakRssMb, p?.peakRssMb),
    );
    row(
      'cores busy prefill / decode',
      m ? `${f1(m.prefillCores, 2)} / ${f1(m.decodeCores, 2)}` : 'n/a',
      p ? `${f1(p.prefillCores, 2)} / ${f1(p.decodeCores, 2)}` : 'n/a',
      '',
      nRuns,
    );
    if (f.agreement) {
      const a = f.agreement;
      row(
        `greedy agreement (first ${a.compared})`,
        `common prefix ${a.commonPrefix}, same ${a.samePositions}/${a.compared}`,
        a.teacherForced === null ? '' : `teacher-forced ${a.teacherForced}/${a.compared}`,
        '',
      );
    }
  }
  lines.push('');
  lines.push('## Targets (mnemo)');
  lines.push('');
  lines.push('| format | target | value | goal | met |');
  lines.push('|---|---|---:|---|:-:|');
  for (const f of r.formats)
    for (const t of f.targets)
      lines.push(
        `| ${f.format} | ${t.name} | ${t.value} | ${t.target} | ${t.met === null ? '–' : t.met ? 'yes' : 'no'} |`,
      );
  lines.push('');
  lines.push('## Formats and runtimes');
  lines.push('');
  for (const f of r.formats) {
    lines.push(`- **${f.format}** — ${f.label}.`);
    const la = (x: RuntimeFigures) =>
      `load average ${x.loadAverage[0].toFixed(1)} → ${x.loadAverage[1].toFixed(1)}`;
    const same = (x: RuntimeFigures) =>
      x.raw.cachedSameToken === null
        ? ''
        : `; first token from the cache ${x.raw.cachedSameToken ? 'equals' : 'DIFFERS from'} the uncached one`;
    if (f.mnemo)
      lines.push(
        `  mnemo: ${f.mnemo.raw.threadsNote}; ${f.mnemo.raw.cacheNote}${same(f.mnemo)}; model load ${f1(f.mnemo.loadSeconds)} s; ${la(f.mnemo)}.`,
      );
    if (f.peer)
      lines.push(
        `  llama.cpp: ${f.peer.raw.version}; ${f.peer.raw.threadsNote}; ${f.peer.raw.cacheNote}${same(f.peer)}; model load ${f1(f.peer.loadSeconds)} s; ${la(f.peer)}.`,
      );
    for (const note of [...(f.mnemo?.raw.notes ?? []), ...(f.peer?.raw.notes ?? [])])
      lines.push(`  note: ${note}`);
    for (const e of f.errors) lines.push(`  error: ${e}`);
  }
  if (r.notes.length > 0) {
    lines.push('');
    lines.push('## Notes');
    lines.push('');
    for (const n of r.notes) lines.push(`- ${n}`);
  }
  lines.push('');
  return lines.join('\n');
}

// ---- chart ----------------------------------------------------------------------------------------------------

interface Panel {
  readonly title: string;
  readonly unit: string;
  readonly better: 'higher' | 'lower';
  readonly get: (f: RuntimeFigures) => number | null;
}

const PANELS: Panel[] = [
  { title: 'Prefill', unit: 'tok/s', better: 'higher', get: (f) => f.prefillTps },
  { title: 'Decode', unit: 'tok/s', better: 'higher', get: (f) => f.decodeTps },
  { title: 'Decode bandwidth', unit: '% of measured', better: 'higher', get: (f) => f.decodeBandwidthPct },
  { title: 'TTFT uncached', unit: 'ms', better: 'lower', get: (f) => f.ttftUncachedMs },
  { title: 'TTFT from cache file', unit: 'ms', better: 'lower', get: (f) => f.ttftCachedMs },
  { title: 'Peak RSS', unit: 'MiB', better: 'lower', get: (f) => f.peakRssMb },
];

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

function fmt(v: number): string {
  if (v >= 1000) return v.toFixed(0);
  if (v >= 100) return v.toFixed(0);
  if (v >= 10) return v.toFixed(1);
  return v.toFixed(2);
}

export function chartSvg(r: BenchReport): string {
  const cols = 3;
  const pw = 360;
  const ph = 250;
  const top = 70;
  const width = cols * pw + 20;
  const height = top + Math.ceil(PANELS.length / cols) * ph + 40;
  const colors = { mnemo: '#2563eb', peer: '#f97316' };
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="DejaVu Sans, Arial, Helvetica, sans-serif">`,
  );
  out.push(`<rect width="${width}" height="${height}" fill="white"/>`);
  out.push(
    `<text x="${width / 2}" y="28" text-anchor="middle" font-size="18" font-weight="bold">${esc(`mnemo vs llama.cpp — ${r.spec.label}, synthetic weights, threads: mnemo ${r.config.threads}, llama.cpp ${r.config.peerThreads ?? r.config.threads}`)}</text>`,
  );
  out.push(
    `<text x="${width / 2}" y="50" text-anchor="middle" font-size="12" fill="#444">${esc(`${r.machine.cpu} · read bandwidth ${referenceBandwidth(r.bandwidth).toFixed(1)} GB/s (2 threads) · median of up to ${r.config.runs} runs · ${r.date}`)}</text>`,
  );
  out.push(`<rect x="${width - 250}" y="58" width="12" height="12" fill="${colors.mnemo}"/>`);
  out.push(`<text x="${width - 234}" y="69" font-size="12">mnemo</text>`);
  out.push(`<rect x="${width - 170}" y="58" width="12" height="12" fill="${colors.peer}"/>`);
  out.push(`<text x="${width - 154}" y="69" font-size="12">llama.cpp</text>`);
  PANELS.forEach((panel, i) => {
    const x0 = 10 + (i % cols) * pw;
    const y0 = top + Math.floor(i / cols) * ph;
    const plotTop = y0 + 40;
    const plotBottom = y0 + ph - 45;
    const plotH = plotBottom - plotTop;
    out.push(
      `<text x="${x0 + pw / 2}" y="${y0 + 22}" text-anchor="middle" font-size="14" font-weight="bold">${esc(panel.title)}</text>`,
    );
    out.push(
      `<text x="${x0 + pw / 2}" y="${y0 + 37}" text-anchor="middle" font-size="11" fill="#555">${esc(`${panel.unit}, ${panel.better} is better`)}</text>`,
    );
    const values = r.formats.flatMap((f) => [
      f.mnemo ? panel.get(f.mnemo) : null,
      f.peer ? panel.get(f.peer) : null,
    ]);
    const max = Math.max(1e-9, ...values.filter((v): v is number => v !== null && Number.isFinite(v)));
    out.push(
      `<line x1="${x0 + 20}" y1="${plotBottom}" x2="${x0 + pw - 20}" y2="${plotBottom}" stroke="#999" stroke-width="1"/>`,
    );
    const groupW = (pw - 40) / Math.max(1, r.formats.length);
    r.formats.forEach((f, j) => {
      const gx = x0 + 20 + j * groupW;
      const bw = Math.min(40, groupW / 3);
      const pairs: [RuntimeFigures | null, string][] = [
        [f.mnemo, colors.mnemo],
        [f.peer, colors.peer],
      ];
      const vals: (number | null)[] = [];
      pairs.forEach(([fig, color], k) => {
        const v = fig ? panel.get(fig) : null;
        vals.push(v);
        const bx = gx + groupW / 2 - bw - 2 + k * (bw + 4);
        if (v === null || !Number.isFinite(v)) {
          out.push(
            `<text x="${bx + bw / 2}" y="${plotBottom - 4}" text-anchor="middle" font-size="10" fill="#777">n/a</text>`,
          );
          return;
        }
        const h = (v / max) * (plotH - 16);
        out.push(`<rect x="${bx}" y="${plotBottom - h}" width="${bw}" height="${h}" fill="${color}"/>`);
        out.push(
          `<text x="${bx + bw / 2}" y="${plotBottom - h - 4}" text-anchor="middle" font-size="10">${esc(fmt(v))}</text>`,
        );
      });
      out.push(
        `<text x="${gx + groupW / 2}" y="${plotBottom + 15}" text-anchor="middle" font-size="12">${esc(f.format)}</text>`,
      );
      const [a, b] = vals;
      if (a !== null && b !== null && a !== undefined && b !== undefined && b > 0) {
        out.push(
          `<text x="${gx + groupW / 2}" y="${plotBottom + 30}" text-anchor="middle" font-size="11" fill="#333">${esc(`${(a / b).toFixed(2)}×`)}</text>`,
        );
      }
    });
  });
  out.push(
    `<text x="10" y="${height - 12}" font-size="11" fill="#555">${esc('ratio under each pair = mnemo / llama.cpp · q4 = MLX 4-bit g32 ↔ Q4_1 (same values), q8 = MLX 8-bit g64 ↔ Q8_0, f16 = F16')}</text>`,
  );
  out.push('</svg>');
  return out.join('\n');
}

/** PNG bytes of the SVG, or the reason it could not be rendered. */
export async function renderPng(svg: string): Promise<Uint8Array | string> {
  try {
    const mod = (await import('@resvg/resvg-js')) as typeof import('@resvg/resvg-js');
    const resvg = new mod.Resvg(svg, {
      font: { loadSystemFonts: true, defaultFontFamily: 'DejaVu Sans' },
      fitTo: { mode: 'zoom', value: 1.5 },
      background: 'white',
    });
    return resvg.render().asPng();
  } catch (e) {
    return `PNG not rendered: ${(e as Error).message}`;
  }
}
