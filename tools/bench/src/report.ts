/**
 * Turns the children's raw figures into the reported numbers (medians, ratios, bandwidth, targets) and renders them
 * as a markdown table, JSON and a chart (SVG, rasterized to PNG with @resvg/resvg-js when it loads).
 */
import { type Bandwidth, PROBE_BYTES, PROBE_PASSES, type TwoThreadBandwidth } from './bandwidth';
import { FORMAT_INFO, type Format } from './checkpoint';
import { type ChildResult, median, PROBE_EVERY } from './job';
import { type ModelSpec, tensorDefs } from './spec';

export interface RuntimeFigures {
  readonly prefillTps: number;
  readonly decodeTps: number;
  /** GB/s read during decode (weights + KV at the mean context), and its share of the measured 2-thread bandwidth. */
  readonly decodeGBs: number;
  decodeBandwidthPct: number;
  /**
   * GB/s that `decodeBandwidthPct` is a share of: the 2-thread read bandwidth measured between the slices of this
   * runtime's decodes (`decodeBandwidthAdjacent`, see `decodeTimeBandwidth`), else (no probes, or a report from before
   * them) the fastest 2-thread pass of the whole run.
   */
  decodeBandwidthRefGBs: number;
  readonly decodeBandwidthAdjacent: boolean;
  /** Share of the fastest 2-thread pass of the whole run's measurements (before and after all runtimes). */
  decodeBandwidthPctOfRun: number;
  /** 1-minute load average before and after this runtime's process. */
  readonly loadAverage: [number, number];
  readonly ttftUncachedMs: number;
  readonly ttftCachedMs: number | null;
  readonly cachedPctOfUncached: number | null;
  readonly peakRssMb: number;
  readonly weightsMb: number;
  readonly kvMb: number;
  /** 1.15 × (weights + KV). */
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
/** What mnemo runs on: backend, with or without its opt-in int8 activations. */
export type MnemoVariant = 'native' | 'native+int8a' | 'wasm' | 'wasm+int8a';
export const ALL_VARIANTS: readonly MnemoVariant[] = ['native', 'native+int8a', 'wasm', 'wasm+int8a'];
export function variantBackend(v: MnemoVariant): { backend: string; int8: boolean } {
  return { backend: v.startsWith('native') ? 'native' : 'wasm', int8: v.endsWith('+int8a') };
}
/** Int8 activations apply to 4- and 8-bit weights only: on f16 such a variant is the exact one. */
export function variantApplies(v: MnemoVariant, format: BenchFormat): boolean {
  return !v.endsWith('+int8a') || format !== 'f16';
}

export interface Agreement {
  readonly compared: number;
  /** Length of the common prefix of the two greedy sequences. */
  readonly commonPrefix: number;
  /** Positions where they agree. */
  readonly samePositions: number;
  /** Positions where llama.cpp's greedy token, given mnemo's previous tokens, equals mnemo's (first variant only). */
  readonly teacherForced: number | null;
}

export interface VariantResult {
  readonly variant: MnemoVariant;
  readonly figures: RuntimeFigures | null;
  readonly agreement: Agreement | null;
}

export interface FormatResult {
  readonly format: BenchFormat;
  readonly label: string;
  /** One entry per mnemo variant run for this format, in the order run. */
  readonly mnemo: VariantResult[];
  readonly peer: RuntimeFigures | null;
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
  readonly variants?: readonly MnemoVariant[];
  /** Reports written before variants existed: mnemo's arithmetic (e.g. `wasm+int8a`). */
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

/** A report saved before variants existed (one `mnemo` result per format) in the current shape. */
export function upgradeReport(r: BenchReport): BenchReport {
  const variant: MnemoVariant = r.config.mnemoNumerics === 'wasm+int8a' ? 'wasm+int8a' : 'wasm';
  // Before the probes next to each decode: every share was of the run's fastest pass.
  const ref = referenceBandwidth(r.bandwidth);
  const upgrade = (m: RuntimeFigures | null): RuntimeFigures | null =>
    m && m.decodeBandwidthRefGBs === undefined
      ? {
          ...m,
          decodeBandwidthRefGBs: ref,
          decodeBandwidthAdjacent: false,
          decodeBandwidthPctOfRun: m.decodeBandwidthPct,
        }
      : m;
  const formats = r.formats.map((f) => {
    const old = f as unknown as {
      mnemo: RuntimeFigures | VariantResult[] | null;
      agreement?: Agreement | null;
    };
    const mnemo: VariantResult[] = Array.isArray(old.mnemo)
      ? old.mnemo
      : old.mnemo
        ? [{ variant, figures: old.mnemo, agreement: old.agreement ?? null }]
        : [];
    return { ...f, mnemo: mnemo.map((v) => ({ ...v, figures: upgrade(v.figures) })), peer: upgrade(f.peer) };
  });
  return { ...r, formats };
}

const MB = 1024 * 1024;
/** Peak RSS target: at most this many times weights + KV cache. */
const RSS_FACTOR = 1.15;

/** The bandwidth decode is compared with: the fastest 2-thread pass (the median drops when other work runs). */
export function referenceBandwidth(bw: TwoThreadBandwidth): number {
  return Math.max(bw.twoThreadBestGBs, bw.twoThreadGBs);
}

/**
 * The 2-thread read bandwidth while a runtime decoded: each slice of a decode is given the mean of the medians of the
 * probes on either side of it, and the slices are weighted by their time. Undefined when no slice lies between probes.
 */
export function decodeTimeBandwidth(raw: ChildResult): number | undefined {
  const probes = raw.decodeProbes ?? [];
  let ms = 0;
  let sum = 0;
  for (let i = 1; i < probes.length; i++) {
    const a = probes[i - 1]!;
    const b = probes[i]!;
    if (b.run !== a.run || b.tokens === 0 || !(b.ms > 0)) continue;
    sum += ((a.twoThreadGBs + b.twoThreadGBs) / 2) * b.ms;
    ms += b.ms;
  }
  return ms > 0 ? sum / ms : undefined;
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
  const adjacent = decodeTimeBandwidth(raw);
  const ref = adjacent ?? referenceBandwidth(bw);
  return {
    prefillTps: median(raw.runs.map((r) => r.prefillTps)),
    decodeTps,
    decodeGBs,
    decodeBandwidthPct: (100 * decodeGBs) / ref,
    decodeBandwidthRefGBs: ref,
    decodeBandwidthAdjacent: adjacent !== undefined,
    decodeBandwidthPctOfRun: (100 * decodeGBs) / referenceBandwidth(bw),
    loadAverage,
    ttftUncachedMs,
    ttftCachedMs,
    cachedPctOfUncached: ttftCachedMs === null ? null : (100 * ttftCachedMs) / ttftUncachedMs,
    peakRssMb: raw.peakRssBytes / MB,
    weightsMb,
    kvMb,
    rssBudgetMb: RSS_FACTOR * (weightsMb + kvMb),
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

/**
 * The targets of the native backend (issue 11) on the 1B shapes: exact path decode ≥ 1.0× llama.cpp in every format
 * and prefill ≥ 0.5×, f16 decode ≥ 70% of the measured bandwidth; int8 activations decode ≥ 1.1× and prefill ≥ 1.0×;
 * cached TTFT ≤ 5% of uncached and peak RSS ≤ 1.15 × (weights + KV) for each. WASM rows are shown for comparison.
 */
export function targets(
  spec: ModelSpec,
  format: BenchFormat,
  variant: MnemoVariant,
  m: RuntimeFigures | null,
  p: RuntimeFigures | null,
): TargetCheck[] {
  const out: TargetCheck[] = [];
  if (!variant.startsWith('native') || !m) return out;
  const x = (v: number) => `${v.toFixed(2)}×`;
  const applies = spec.name === 'llama-3.2-1b';
  const goal = (g: string) => (applies ? g : `${g} (stated for 1B)`);
  const int8 = variant.endsWith('+int8a');
  if (p) {
    const r = m.decodeTps / p.decodeTps;
    const want = int8 ? 1.1 : 1.0;
    out.push({
      name: 'decode vs llama.cpp',
      value: x(r),
      target: goal(`≥ ${want.toFixed(1)}×`),
      met: applies ? r >= want : null,
    });
    const pr = m.prefillTps / p.prefillTps;
    const wantP = int8 ? 1.0 : 0.5;
    out.push({
      name: 'prefill vs llama.cpp',
      value: x(pr),
      target: goal(`≥ ${wantP.toFixed(1)}×`),
      met: applies ? pr >= wantP : null,
    });
  }
  if (format === 'f16' && !int8)
    out.push({
      name: 'decode bandwidth',
      value: m.decodeBandwidthAdjacent
        ? `${m.decodeBandwidthPct.toFixed(0)}% of ${m.decodeBandwidthRefGBs.toFixed(1)} GB/s measured during the decode (${m.decodeBandwidthPctOfRun.toFixed(0)}% of the run's fastest pass)`
        : `${m.decodeBandwidthPct.toFixed(0)}% of the run's fastest pass`,
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
    target: `≤ ${RSS_FACTOR} × (weights + KV) = ${m.rssBudgetMb.toFixed(0)} MiB`,
    met: applies ? m.peakRssMb <= m.rssBudgetMb : null,
  });
  return out;
}

/** Every target of a format's variants, named by variant. */
export function formatTargets(spec: ModelSpec, f: FormatResult): TargetCheck[] {
  return f.mnemo.flatMap((v) =>
    targets(spec, f.format, v.variant, v.figures, f.peer).map((t) => ({
      ...t,
      name: `${v.variant}: ${t.name}`,
    })),
  );
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

const VARIANT_LABEL: Record<MnemoVariant, string> = {
  native: 'mnemo native',
  'native+int8a': 'mnemo native, int8 act.',
  wasm: 'mnemo wasm',
  'wasm+int8a': 'mnemo wasm, int8 act.',
};

export function markdown(report: BenchReport): string {
  const r = upgradeReport(report);
  const c = r.config;
  const lines: string[] = [];
  const oneFile = r.formats.length > 0 && r.formats.every((f) => f.format === 'gguf');
  lines.push(
    `# mnemo vs llama.cpp — ${r.spec.label}${oneFile ? ', one GGUF file for both' : ' (synthetic weights)'}`,
  );
  lines.push('');
  lines.push(
    `${r.date} · ${r.machine.cpu} · ${r.machine.cores} cores · ${r.machine.memoryGb} GB RAM · Node ${r.machine.node} · mnemo ${r.git} · median of up to ${c.runs} runs · threads requested: mnemo ${c.threads}, llama.cpp ${c.peerThreads ?? c.threads}${c.mnemoNumerics ? ` · mnemo numerics: ${c.mnemoNumerics}` : ''}`,
  );
  lines.push('');
  lines.push(
    `Memory read bandwidth measured in this run (${r.bandwidth.method}), before and after the runs: ${r.bandwidthMeasurements
      .map(
        (b) =>
          `1 thread ${b.oneThreadGBs.toFixed(1)} GB/s, 2 threads ${b.twoThreadGBs.toFixed(1)} GB/s (fastest pass ${b.oneThreadBestGBs.toFixed(1)} / ${b.twoThreadBestGBs.toFixed(1)})`,
      )
      .join('; ')}; fastest 2-thread pass **${referenceBandwidth(r.bandwidth).toFixed(1)} GB/s**.`,
  );
  lines.push('');
  lines.push(
    r.formats.some((f) => [...f.mnemo.map((v) => v.figures), f.peer].some((m) => m?.decodeBandwidthAdjacent))
      ? `Decode bandwidth is a share of the 2-thread read bandwidth measured while that runtime decoded (the GB/s after each % in the table): the same probe (${PROBE_BYTES / 2 ** 20} MiB, median of ${PROBE_PASSES} passes) runs in the runtime's process before its first decode token is timed and after every ${PROBE_EVERY} tokens, with the decode's clock stopped and its threads idle; each slice of the decode gets the mean of the probes on either side, weighted by its time. On a virtual machine the bandwidth two cores get can double or halve within seconds (the probes show it), so decode is compared with what the memory gave while it ran. As a share of the run's fastest pass above: ` +
          r.formats
            .flatMap((f) =>
              [
                ...f.mnemo.map((v) => [VARIANT_LABEL[v.variant], v.figures] as const),
                ['llama.cpp', f.peer] as const,
              ]
                .filter(([, m]) => m !== null)
                .map(([name, m]) => `${f.format} ${name} ${m!.decodeBandwidthPctOfRun.toFixed(0)}%`),
            )
            .join(', ') +
          '.'
      : 'Decode bandwidth is a share of the fastest 2-thread pass above.',
  );
  lines.push('');
  lines.push(
    `Prefill: ${c.prefillTokens}-token prompt (same ids for all). Decode: ${c.decodeTokens} greedy tokens after it. TTFT: ${c.ttftTokens}-token prompt, without a cache and from a prompt-cache file of its first ${c.ttftTokens - 1} tokens (file load included). × = ratio to llama.cpp in the same run. Load average (1 min) before → after each process in the last column.`,
  );
  lines.push('');
  lines.push(
    '| format | runtime | prefill tok/s | decode tok/s | decode GB/s (% of 2-thread GB/s) | TTFT uncached ms | TTFT cached ms (% of uncached) | peak RSS MiB (× weights + KV) | cores busy prefill / decode | runs | load |',
  );
  lines.push('|---|---|---:|---:|---:|---:|---:|---:|:-:|:-:|:-:|');
  for (const f of r.formats) {
    const p = f.peer;
    const row = (name: string, m: RuntimeFigures | null, vsPeer: boolean) => {
      if (!m) {
        lines.push(`| ${f.format} | ${name} | n/a | n/a | n/a | n/a | n/a | n/a | | | |`);
        return;
      }
      const q = (a: number, b: number | undefined) => (vsPeer && b !== undefined ? ` (${ratio(a, b)})` : '');
      lines.push(
        `| ${f.format} | ${name} | ${f1(m.prefillTps)}${q(m.prefillTps, p?.prefillTps)} | ${f1(m.decodeTps, 2)}${q(m.decodeTps, p?.decodeTps)} | ${f1(m.decodeGBs)} (${m.decodeBandwidthPct.toFixed(0)}% of ${f1(m.decodeBandwidthRefGBs)}) | ${f1(m.ttftUncachedMs, 0)} | ${m.ttftCachedMs != null ? `${f1(m.ttftCachedMs, 0)} (${f1(m.cachedPctOfUncached)}%)` : 'n/a'} | ${f1(m.peakRssMb, 0)} (${(m.peakRssMb / (m.weightsMb + m.kvMb)).toFixed(2)}×) | ${f1(m.prefillCores, 2)} / ${f1(m.decodeCores, 2)} | ${m.raw.runs.length} | ${m.loadAverage[0].toFixed(1)} → ${m.loadAverage[1].toFixed(1)} |`,
      );
    };
    row('llama.cpp', p, false);
    for (const v of f.mnemo) row(VARIANT_LABEL[v.variant], v.figures, true);
  }
  lines.push('');
  lines.push('## Targets (native backend)');
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
    const same = (x: RuntimeFigures) =>
      x.raw.cachedSameToken === null
        ? ''
        : `; first token from the cache ${x.raw.cachedSameToken ? 'equals' : 'DIFFERS from'} the uncached one`;
    for (const v of f.mnemo) {
      const m = v.figures;
      if (!m) continue;
      const a = v.agreement;
      const agree = a
        ? `; greedy agreement with llama.cpp over the first ${a.compared} tokens: common prefix ${a.commonPrefix}, same ${a.samePositions}${a.teacherForced === null ? '' : `, teacher-forced ${a.teacherForced}`}`
        : '';
      lines.push(
        `  ${VARIANT_LABEL[v.variant]}: ${m.raw.threadsNote}; ${m.raw.cacheNote}${same(m)}; model load ${f1(m.loadSeconds)} s${agree}.`,
      );
      for (const note of m.raw.notes) lines.push(`  note: ${note}`);
    }
    if (f.peer)
      lines.push(
        `  llama.cpp: ${f.peer.raw.version}; ${f.peer.raw.threadsNote}; ${f.peer.raw.cacheNote}${same(f.peer)}; model load ${f1(f.peer.loadSeconds)} s.`,
      );
    for (const note of f.peer?.raw.notes ?? []) lines.push(`  note: ${note}`);
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

const RUNTIME_COLORS: Record<string, string> = {
  'llama.cpp': '#f97316',
  native: '#1d4ed8',
  'native+int8a': '#60a5fa',
  wasm: '#15803d',
  'wasm+int8a': '#86efac',
};

export function chartSvg(report: BenchReport): string {
  const r = upgradeReport(report);
  const runtimes: string[] = ['llama.cpp'];
  for (const f of r.formats)
    for (const v of f.mnemo) if (!runtimes.includes(v.variant)) runtimes.push(v.variant);
  const label = (k: string) => (k === 'llama.cpp' ? k : VARIANT_LABEL[k as MnemoVariant]);
  const get = (f: FormatResult, k: string): RuntimeFigures | null =>
    k === 'llama.cpp' ? f.peer : (f.mnemo.find((v) => v.variant === k)?.figures ?? null);
  const cols = 3;
  const pw = 420;
  const ph = 260;
  const top = 90;
  const width = cols * pw + 20;
  const height = top + Math.ceil(PANELS.length / cols) * ph + 40;
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="DejaVu Sans, Arial, Helvetica, sans-serif">`,
  );
  out.push(`<rect width="${width}" height="${height}" fill="white"/>`);
  out.push(
    `<text x="${width / 2}" y="28" text-anchor="middle" font-size="18" font-weight="bold">${esc(`mnemo vs llama.cpp — ${r.spec.label}, synthetic weights, threads: mnemo ${r.config.threads}, llama.cpp ${r.config.peerThreads ?? r.config.threads}`)}</text>`,
  );
  out.push(
    `<text x="${width / 2}" y="50" text-anchor="middle" font-size="12" fill="#444">${esc(`${r.machine.cpu} · read bandwidth ${referenceBandwidth(r.bandwidth).toFixed(1)} GB/s (2 threads) · median of up to ${r.config.runs} runs · load average up to ${Math.max(...r.loadAverage).toFixed(1)} · ${r.date}`)}</text>`,
  );
  let lx = 20;
  for (const k of runtimes) {
    out.push(`<rect x="${lx}" y="62" width="12" height="12" fill="${RUNTIME_COLORS[k] ?? '#888'}"/>`);
    out.push(`<text x="${lx + 16}" y="73" font-size="12">${esc(label(k))}</text>`);
    lx += 40 + label(k).length * 7.5;
  }
  PANELS.forEach((panel, i) => {
    const x0 = 10 + (i % cols) * pw;
    const y0 = top + Math.floor(i / cols) * ph;
    const plotTop = y0 + 40;
    const plotBottom = y0 + ph - 35;
    const plotH = plotBottom - plotTop;
    out.push(
      `<text x="${x0 + pw / 2}" y="${y0 + 22}" text-anchor="middle" font-size="14" font-weight="bold">${esc(panel.title)}</text>`,
    );
    out.push(
      `<text x="${x0 + pw / 2}" y="${y0 + 37}" text-anchor="middle" font-size="11" fill="#555">${esc(`${panel.unit}, ${panel.better} is better`)}</text>`,
    );
    const values = r.formats.flatMap((f) =>
      runtimes.map((k) => {
        const fig = get(f, k);
        return fig ? panel.get(fig) : null;
      }),
    );
    const max = Math.max(1e-9, ...values.filter((v): v is number => v !== null && Number.isFinite(v)));
    out.push(
      `<line x1="${x0 + 20}" y1="${plotBottom}" x2="${x0 + pw - 20}" y2="${plotBottom}" stroke="#999" stroke-width="1"/>`,
    );
    const groupW = (pw - 40) / Math.max(1, r.formats.length);
    r.formats.forEach((f, j) => {
      const gx = x0 + 20 + j * groupW;
      const bw = Math.min(22, (groupW - 10) / runtimes.length);
      const start = gx + (groupW - bw * runtimes.length) / 2;
      runtimes.forEach((k, n) => {
        const fig = get(f, k);
        const v = fig ? panel.get(fig) : null;
        const bx = start + n * bw;
        if (v === null || !Number.isFinite(v)) return;
        const h = (v / max) * (plotH - 16);
        out.push(
          `<rect x="${bx}" y="${plotBottom - h}" width="${bw - 2}" height="${h}" fill="${RUNTIME_COLORS[k] ?? '#888'}"/>`,
        );
        out.push(
          `<text x="${bx + bw / 2 - 1}" y="${plotBottom - h - 3}" text-anchor="middle" font-size="8">${esc(fmt(v))}</text>`,
        );
      });
      out.push(
        `<text x="${gx + groupW / 2}" y="${plotBottom + 15}" text-anchor="middle" font-size="12">${esc(f.format)}</text>`,
      );
    });
  });
  out.push(
    `<text x="10" y="${height - 12}" font-size="11" fill="#555">${esc('q4 = MLX 4-bit g32 ↔ Q4_1 (same values), q8 = MLX 8-bit g64 ↔ Q8_0, f16 = F16 · int8 act. = opt-in int8 activations (4-/8-bit weights only)')}</text>`,
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
