/**
 * KV-cache storage (Backend API v3): `writeKv` stores rows bitwise as specified in every format and at their ring
 * rows; `attention` reads f32, f16 and 4/8-bit quantized storage accurately (against the reference), bitwise as it
 * reads f32 storage holding the same values, and bitwise the same for every chunking of the positions over a wrapped
 * ring whose unseen rows hold garbage.
 */
import { type AttentionOptions, type Backend, type KvRows, kvRow } from '../backend';
import { f16BitsToNumber } from '../convert';
import type { QuantSpec } from '../dtype';
import { QuantizedTensor, type Tensor } from '../tensor';
import { attentionTolerance } from './attention';
import { expectBitwise, expectBytes, expectClose, expectRejects, type Scope, scoped } from './compare';
import { floats, Rng, wideFloats } from './random';
import type { ConformanceCase } from './types';

/** The storage formats a backend must support. */
export const KV_KINDS = ['f32', 'f16', 'q4g32', 'q4g64', 'q8g32', 'q8g64'] as const;
export type KvKind = (typeof KV_KINDS)[number];

function specOf(kind: KvKind): QuantSpec | null {
  if (kind === 'f32' || kind === 'f16') return null;
  return { bits: kind[1] === '4' ? 4 : 8, groupSize: kind.endsWith('32') ? 32 : 64, scaleDtype: 'f32' };
}

/** KV storage `[capacity, width]` of `kind`, allocated with `alloc` (contents unspecified). */
export function allocKv(s: Scope, kind: KvKind, capacity: number, width: number): KvRows {
  const spec = specOf(kind);
  if (spec === null) return s.alloc(kind as 'f32' | 'f16', [capacity, width]);
  const groups = width / spec.groupSize;
  const b = s.backend;
  return s.keep(
    new QuantizedTensor(
      spec,
      [capacity, width],
      b.alloc('u32', [capacity, (width * spec.bits) / 32]),
      b.alloc('f32', [capacity, groups]),
      b.alloc('f32', [capacity, groups]),
    ),
  );
}

function parts(t: KvRows): Tensor[] {
  return t instanceof QuantizedTensor ? [t.packed, t.scales, t.biases] : [t];
}

/** Random bytes (any bit pattern: NaN, inf, huge codes) into rows `rows` of every part of `t`. */
export function garbageRows(b: Backend, t: KvRows, rows: Iterable<number>, rng: Rng): void {
  for (const p of parts(t)) {
    const w = p.shape[1]!;
    const bytes = new Uint8Array(p.byteLength / p.shape[0]!);
    for (const r of rows) {
      for (let i = 0; i < bytes.length; i++) bytes[i] = rng.int(0, 256);
      b.write(b.view(p, [1, w], r * w), bytes);
    }
  }
}

/** The raw bytes of every part of `t`. */
function bytesOf(b: Backend, t: KvRows): Uint8Array[] {
  return parts(t).map((p) => b.readBytes(p));
}

/** Writes the same bytes into every part of `t` as `from` holds (e.g. the reference's copy). */
function copyBytes(b: Backend, t: KvRows, from: readonly Uint8Array[]): void {
  parts(t).forEach((p, i) => {
    b.write(p, from[i]!);
  });
}

/** The f32 values attention reads from row `row` of `t` (the format's definition, in plain TypeScript). */
export function kvRowValues(b: Backend, t: KvRows, row: number, width: number): Float32Array {
  const out = new Float32Array(width);
  if (!(t instanceof QuantizedTensor)) {
    const bytes = b.readBytes(b.view(t, [1, width], row * width));
    if (t.dtype === 'f32') return new Float32Array(bytes.buffer, 0, width).slice();
    const h = new Uint16Array(bytes.buffer, 0, width);
    for (let i = 0; i < width; i++) out[i] = f16BitsToNumber(h[i]!);
    return out;
  }
  const { bits, groupSize } = t.spec;
  const words = (width * bits) / 32;
  const groups = width / groupSize;
  const packed = new Uint32Array(b.readBytes(b.view(t.packed, [1, words], row * words)).buffer);
  const scales = b.read(b.view(t.scales, [1, groups], row * groups));
  const biases = b.read(b.view(t.biases, [1, groups], row * groups));
  const f = Math.fround;
  for (let i = 0; i < width; i++) {
    const bit = i * bits;
    const q = (packed[bit >>> 5]! >>> (bit & 31)) & ((1 << bits) - 1);
    const g = Math.floor(i / groupSize);
    out[i] = f(f(scales[g]! * q) + biases[g]!);
  }
  return out;
}

/** Rows of `[rows, width]` with special values mixed in (f16 edges, constant and NaN-free groups, zeros). */
function kvData(rng: Rng, rows: number, width: number, kind: KvKind): Float32Array {
  const x = wideFloats(rng, rows * width, 5);
  for (let r = 0; r < rows; r++) {
    const row = x.subarray(r * width, (r + 1) * width);
    if (r % 3 === 1) row.fill(0.75, 0, Math.min(width, 32)); // a constant group: scale 0
    if (kind === 'f16' && r % 2 === 0)
      row.set(
        [65504, 65519.99, 65520, -1e6, 6e-8, 2.9e-8, -3e-9, 1e-5, -0, Number.NaN, Infinity].slice(0, width),
      );
    if (kind === 'f32' && r % 2 === 0) row.set([Number.NaN, -0, Infinity, 1e-40].slice(0, width));
  }
  return x;
}

const writeCase: ConformanceCase = {
  name: 'kv: writeKv stores f32 / f16 / 4- and 8-bit rows bitwise as specified, at their ring rows only',
  group: 'ops',
  run: (backend, reference) =>
    scoped(backend, reference, (b, r) => {
      const rng = new Rng(4100);
      const width = 64;
      const capacity = 7;
      const keep = 2;
      for (const kind of KV_KINDS) {
        const got = allocKv(b, kind, capacity, width);
        const want = allocKv(r, kind, capacity, width);
        garbageRows(r.backend, want, [0, 1, 2, 3, 4, 5, 6], rng);
        copyBytes(b.backend, got, bytesOf(r.backend, want));
        let pos = 0;
        let last: Float32Array = new Float32Array(0);
        for (const n of [2, 5, 3, 1, 4]) {
          const x = kvData(rng, n, width, kind);
          b.backend.writeKv(got, b.f32([n, width], x), { startPos: pos, keep });
          r.backend.writeKv(want, r.f32([n, width], x), { startPos: pos, keep });
          const g = bytesOf(b.backend, got);
          bytesOf(r.backend, want).forEach((w, i) => {
            expectBytes(`writeKv ${kind}: positions ${pos}..${pos + n - 1}, part ${i}`, g[i]!, w);
          });
          pos += n;
          last = x.subarray((n - 1) * width);
        }
        // the ring mapping itself: the row of the last position holds that position's row (as a lone write stores it)
        const alone = allocKv(r, kind, 1, width);
        r.backend.writeKv(alone, r.f32([1, width], last), { startPos: 0 });
        expectBitwise(
          `writeKv ${kind}: row ${kvRow(pos - 1, capacity, keep)} holds position ${pos - 1}`,
          kvRowValues(b.backend, got, kvRow(pos - 1, capacity, keep), width),
          kvRowValues(r.backend, alone, 0, width),
        );
      }
    }),
};

interface Layout {
  readonly nHeads: number;
  readonly nKvHeads: number;
  readonly headDim: number;
  readonly window: number;
  readonly keep: number;
  readonly softcap?: number;
}

/** Width 64 (every kind fits): linear, sliding window (soft-capped), sinks + window, window 1. */
const LAYOUTS: readonly Layout[] = [
  { nHeads: 4, nKvHeads: 2, headDim: 32, window: 0, keep: 0 },
  { nHeads: 8, nKvHeads: 4, headDim: 16, window: 5, keep: 0, softcap: 2 },
  { nHeads: 2, nKvHeads: 1, headDim: 64, window: 4, keep: 2 },
  { nHeads: 4, nKvHeads: 4, headDim: 16, window: 1, keep: 0 },
];

/** Positions a query at p sees, ascending (see `Backend.attention`). */
function seenBy(p: number, window: number, keep: number): number[] {
  const lo = window > 0 ? Math.max(0, p - window + 1) : 0;
  const out: number[] = [];
  for (let j = 0; j < Math.min(keep, lo); j++) out.push(j);
  for (let j = lo; j <= p; j++) out.push(j);
  return out;
}

/**
 * Writes positions 0..T-1 in `chunks` into storage of `capacity` rows (ring with `keep`) and runs attention per chunk.
 * Before each chunk, every row holding no position the chunk's queries see is overwritten with garbage.
 */
function runKv(
  s: Scope,
  kind: KvKind,
  l: Layout,
  data: { q: Float32Array; k: Float32Array; v: Float32Array },
  T: number,
  capacity: number,
  chunks: readonly number[],
  rng: Rng,
): Float32Array {
  const b = s.backend;
  const qw = l.nHeads * l.headDim;
  const width = l.nKvHeads * l.headDim;
  const k = allocKv(s, kind, capacity, width);
  const v = allocKv(s, kind, capacity, width);
  const q = s.f32([T, qw], data.q);
  const kSrc = s.f32([T, width], data.k);
  const vSrc = s.f32([T, width], data.v);
  const out = s.f32([T, qw], new Float32Array(T * qw).fill(Number.NaN));
  let start = 0;
  for (const n of chunks) {
    const keepRows = new Set<number>();
    for (let p = start; p < start + n; p++)
      for (const j of seenBy(p, l.window, l.keep)) keepRows.add(kvRow(j, capacity, l.keep));
    const dead: number[] = [];
    for (let row = 0; row < capacity; row++) if (!keepRows.has(row)) dead.push(row);
    garbageRows(b, k, dead, rng);
    garbageRows(b, v, dead, rng);
    b.writeKv(k, b.view(kSrc, [n, width], start * width), { startPos: start, keep: l.keep });
    b.writeKv(v, b.view(vSrc, [n, width], start * width), { startPos: start, keep: l.keep });
    const opts: AttentionOptions = { ...l, startPos: start, scale: 1 / Math.sqrt(l.headDim) };
    b.attention(b.view(out, [n, qw], start * qw), b.view(q, [n, qw], start * qw), k, v, opts);
    start += n;
  }
  if (start !== T) throw new Error(`conformance: chunks ${chunks} do not cover ${T} positions`);
  return b.read(out);
}

function layoutName(l: Layout): string {
  return `heads ${l.nHeads}/${l.nKvHeads}×${l.headDim} window ${l.window} keep ${l.keep} softcap ${l.softcap ?? 0}`;
}

const accuracyCase: ConformanceCase = {
  name: 'kv: attention over f32 / f16 / 4- and 8-bit storage and rings vs reference',
  group: 'ops',
  run: (backend, reference) =>
    scoped(backend, reference, (b, r) => {
      const rng = new Rng(4200);
      const T = 11;
      for (const kind of KV_KINDS)
        for (const l of LAYOUTS) {
          const qw = l.nHeads * l.headDim;
          const width = l.nKvHeads * l.headDim;
          const data = {
            q: floats(rng, T * qw, 1),
            k: floats(rng, T * width, 2),
            v: floats(rng, T * width, 3),
          };
          const capacity = l.window > 0 ? l.keep + l.window + 2 : T;
          const chunks = [3, 3, 3, 2];
          const got = runKv(b, kind, l, data, T, capacity, chunks, rng);
          const want = runKv(r, kind, l, data, T, capacity, chunks, rng);
          // tolerance from the stored values (what attention reads), position j at row j
          const stored = allocKv(r, kind, T, width);
          const kv: Float32Array[] = [];
          for (const x of [data.k, data.v]) {
            r.backend.writeKv(stored, r.f32([T, width], x), { startPos: 0 });
            const vals = new Float32Array(T * width);
            for (let j = 0; j < T; j++) vals.set(kvRowValues(r.backend, stored, j, width), j * width);
            kv.push(vals);
          }
          for (let p = 0; p < T; p += 3) {
            const n = Math.min(3, T - p);
            const opts: AttentionOptions = { ...l, startPos: p, scale: 1 / Math.sqrt(l.headDim) };
            expectClose(
              `attention over ${kind} storage, ${layoutName(l)}, rows ${p}..${p + n - 1}`,
              got.subarray(p * qw, (p + n) * qw),
              want.subarray(p * qw, (p + n) * qw),
              attentionTolerance(data.q.subarray(p * qw, (p + n) * qw), kv[0]!, kv[1]!, n, opts),
            );
          }
        }
    }),
};

const transparencyCase: ConformanceCase = {
  name: 'kv: attention over f16 and quantized storage is bitwise attention over f32 storage holding its values',
  group: 'invariance',
  run: (backend) =>
    scoped(backend, backend, (s) => {
      const b = s.backend;
      const rng = new Rng(4300);
      const capacity = 9;
      for (const kind of KV_KINDS.filter((k) => k !== 'f32'))
        for (const l of LAYOUTS) {
          const width = l.nKvHeads * l.headDim;
          const qw = l.nHeads * l.headDim;
          const rows = 3;
          const startPos = 14;
          const k = allocKv(s, kind, capacity, width);
          const v = allocKv(s, kind, capacity, width);
          garbageRows(b, k, [0, 1, 2, 3, 4, 5, 6, 7, 8], rng);
          garbageRows(b, v, [0, 1, 2, 3, 4, 5, 6, 7, 8], rng);
          const window = l.window > 0 ? l.window : 5; // the ring holds at most 9 - keep positions
          const opts: AttentionOptions = { ...l, window, startPos, scale: 1 / Math.sqrt(l.headDim) };
          const lo = Math.max(0, startPos - window + 1);
          for (const t of [k, v]) {
            if (l.keep > 0)
              b.writeKv(t, s.f32([l.keep, width], floats(rng, l.keep * width, 2)), {
                startPos: 0,
                keep: l.keep,
              });
            const n = startPos + rows - lo;
            b.writeKv(t, s.f32([n, width], floats(rng, n * width, 2)), { startPos: lo, keep: l.keep });
          }
          const kf = s.alloc('f32', [capacity, width]);
          const vf = s.alloc('f32', [capacity, width]);
          for (let row = 0; row < capacity; row++) {
            b.write(b.view(kf, [1, width], row * width), kvRowValues(b, k, row, width));
            b.write(b.view(vf, [1, width], row * width), kvRowValues(b, v, row, width));
          }
          const q = s.f32([rows, qw], floats(rng, rows * qw, 1));
          const out = s.alloc('f32', [rows, qw]);
          const outF = s.alloc('f32', [rows, qw]);
          b.attention(out, q, k, v, opts);
          b.attention(outF, q, kf, vf, opts);
          expectBitwise(
            `attention over ${kind} vs f32 holding its values, ${layoutName(l)}`,
            b.read(out),
            b.read(outF),
          );
        }
    }),
};

function invarianceCase(kind: KvKind): ConformanceCase {
  return {
    name: `kv invariance (${kind}): prefill = chunked = decode over a wrapped ring, unseen rows garbage`,
    group: 'invariance',
    run: (backend) =>
      scoped(backend, backend, (s) => {
        const rng = new Rng(4400);
        const T = 17;
        for (const l of LAYOUTS) {
          const qw = l.nHeads * l.headDim;
          const width = l.nKvHeads * l.headDim;
          const data = {
            q: floats(rng, T * qw, 2),
            k: floats(rng, T * width, 2),
            v: floats(rng, T * width, 3),
          };
          const base = runKv(s, kind, l, data, T, T, [T], rng);
          const plans: [string, number[]][] = [
            ['chunks 4+3+6+4', [4, 3, 6, 4]],
            ['chunks 1+7+5+4', [1, 7, 5, 4]],
            ['decode (one row at a time)', Array(T).fill(1)],
            ['prefill 5 then decode', [5, ...Array(T - 5).fill(1)]],
          ];
          for (const [plan, chunks] of plans) {
            const most = Math.max(...chunks);
            // the smallest ring the plan fits (window + step - 1 rows past the sinks), else a linear cache with spares
            const capacity = l.window > 0 ? l.keep + l.window + most - 1 : T + 3;
            expectBitwise(
              `${kind}, ${layoutName(l)}: ${plan} in ${capacity} rows vs one call in ${T}`,
              runKv(s, kind, l, data, T, capacity, chunks, rng),
              base,
            );
          }
        }
      }),
  };
}

const validationCase: ConformanceCase = {
  name: 'validation: attention and writeKv reject mismatched or unsupported storage and rings too small',
  group: 'validation',
  run: (backend) =>
    scoped(backend, backend, (s) => {
      const b = s.backend;
      const rng = new Rng(4500);
      const q = s.f32([2, 64], floats(rng, 128));
      const out = s.alloc('f32', [2, 64]);
      const o: AttentionOptions = {
        startPos: 6,
        nHeads: 4,
        nKvHeads: 2,
        headDim: 16,
        scale: 0.25,
        window: 3,
      };
      const f32 = allocKv(s, 'f32', 4, 32);
      const q8 = allocKv(s, 'q8g32', 4, 32);
      const q4 = allocKv(s, 'q4g32', 4, 32);
      garbageRows(b, f32, [0, 1, 2, 3], rng);
      b.attention(out, q, f32, f32, o); // valid: positions 4..7 in 4 rows
      b.attention(out, q, q8, q8, o);
      const rejects = expectRejects;
      rejects('k and v of different formats', 'attention', () => b.attention(out, q, q8, q4, o));
      rejects('k f32, v quantized', 'attention', () => b.attention(out, q, f32, q8, o));
      rejects('a ring too small for the window', 'attention', () =>
        b.attention(out, q, f32, f32, { ...o, window: 4 }),
      );
      rejects('no window over a wrapped ring', 'attention', () =>
        b.attention(out, q, f32, f32, { ...o, window: 0 }),
      );
      rejects('keep beyond the rows', 'attention', () => b.attention(out, q, f32, f32, { ...o, keep: 5 }));
      rejects('keep leaving too few ring rows', 'attention', () =>
        b.attention(out, q, f32, f32, { ...o, keep: 1 }),
      );
      rejects('bf16 storage', 'attention', () => {
        const t = s.alloc('bf16', [4, 32]);
        b.attention(out, q, t, t, o);
      });
      const f16scales = s.keep(
        new QuantizedTensor(
          { bits: 8, groupSize: 32, scaleDtype: 'f16' },
          [4, 32],
          b.alloc('u32', [4, 8]),
          b.alloc('f16', [4, 1]),
          b.alloc('f16', [4, 1]),
        ),
      );
      rejects('quantized storage with f16 scales', 'attention', () =>
        b.attention(out, q, f16scales, f16scales, o),
      );
      const q3 = s.keep(
        new QuantizedTensor(
          { bits: 3, groupSize: 32, scaleDtype: 'f32' },
          [4, 32],
          b.alloc('u32', [4, 3]),
          b.alloc('f32', [4, 1]),
          b.alloc('f32', [4, 1]),
        ),
      );
      rejects('3-bit storage', 'attention', () => b.attention(out, q, q3, q3, o));
      const q8h12 = allocKv(s, 'q8g32', 4, 96); // headDim 12: not a multiple of 8
      rejects('quantized storage with headDim 12', 'attention', () =>
        b.attention(s.alloc('f32', [2, 96]), s.f32([2, 96], floats(rng, 192)), q8h12, q8h12, {
          ...o,
          nHeads: 8,
          nKvHeads: 8,
          headDim: 12,
        }),
      );
      rejects('out overlapping k', 'attention', () => {
        const big = s.alloc('f32', [8, 64]);
        const kv = b.view(big, [4, 32]);
        b.attention(b.view(big, [2, 64], 0), q, kv, kv, { ...o, startPos: 0, window: 0 });
      });
      const src = s.f32([3, 32], floats(rng, 96));
      b.writeKv(q4, src, { startPos: 9, keep: 1 }); // 3 positions >= keep into 3 ring rows
      rejects('writeKv rows landing on each other', 'writeKv', () =>
        b.writeKv(q4, src, { startPos: 9, keep: 2 }),
      );
      rejects('writeKv src of another width', 'writeKv', () =>
        b.writeKv(q4, s.f32([1, 64], floats(rng, 64)), { startPos: 0 }),
      );
      rejects('writeKv f16 src', 'writeKv', () => b.writeKv(f32, s.alloc('f16', [1, 32]), { startPos: 0 }));
      rejects('writeKv keep beyond the rows', 'writeKv', () => b.writeKv(f32, src, { startPos: 0, keep: 5 }));
      rejects('writeKv fractional position', 'writeKv', () => b.writeKv(f32, src, { startPos: 0.5 }));
      rejects('writeKv src overlapping dst', 'writeKv', () =>
        b.writeKv(f32, b.view(f32 as Tensor, [1, 32], 32), { startPos: 0 }),
      );
    }),
};

export function kvCases(): ConformanceCase[] {
  return [writeCase, accuracyCase, transparencyCase, ...KV_KINDS.map(invarianceCase), validationCase];
}
