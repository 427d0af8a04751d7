import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { rng } from '@mnemo/test-utils';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  decodeSafetensors,
  encodeSafetensors,
  MAX_HEADER_SIZE,
  openSafetensors,
  SAFETENSORS_DTYPE_BITS,
  SafetensorsError,
  type SafetensorsErrorCode,
} from './index';

// Every allocation sized from file contents goes through io.allocBytes; record the largest request.
const allocs = vi.hoisted(() => ({ max: 0 }));
vi.mock('./io', async (importOriginal) => {
  const actual = await importOriginal<typeof import('./io')>();
  return {
    ...actual,
    allocBytes: (n: number, file: string, tensor?: string) => {
      allocs.max = Math.max(allocs.max, n);
      return actual.allocBytes(n, file, tensor);
    },
  };
});

/** Also catches any direct `new Uint8Array(n)` / `new ArrayBuffer(n)` made while `fn` runs (synchronously). */
function probeAllocations<T>(fn: () => T): { value: T | undefined; error: unknown; max: number } {
  const RealU8 = globalThis.Uint8Array;
  const RealAB = globalThis.ArrayBuffer;
  let max = 0;
  type Ctor = new (...args: unknown[]) => object;
  const probe = <C extends object>(C: C): C =>
    new Proxy(C, {
      construct(target, args, newTarget) {
        if (typeof args[0] === 'number') max = Math.max(max, args[0]);
        return Reflect.construct(target as unknown as Ctor, args, newTarget as unknown as Ctor);
      },
    });
  const proxies = new Map<object, object>();
  proxies.set(RealU8, probe(RealU8));
  proxies.set(RealAB, probe(RealAB));
  globalThis.Uint8Array = proxies.get(RealU8) as typeof Uint8Array;
  globalThis.ArrayBuffer = proxies.get(RealAB) as typeof ArrayBuffer;
  try {
    return { value: fn(), error: undefined, max };
  } catch (error) {
    return { value: undefined, error, max };
  } finally {
    globalThis.Uint8Array = RealU8;
    globalThis.ArrayBuffer = RealAB;
  }
}

const CODES: readonly SafetensorsErrorCode[] = [
  'TRUNCATED',
  'HEADER_TOO_LARGE',
  'BAD_JSON',
  'BAD_TENSOR',
  'BAD_DTYPE',
  'BAD_SHAPE',
  'BAD_OFFSETS',
  'SIZE_MISMATCH',
  'OUT_OF_BOUNDS',
  'OVERLAP',
  'GAP',
  'TRAILING_DATA',
  'DUPLICATE',
  'BAD_METADATA',
];

/** A small valid file: several dtypes, a scalar, an empty tensor, packed F4, metadata. */
const base = encodeSafetensors(
  [
    { name: 'a', dtype: 'F32', shape: [2, 3], data: new Float32Array([1, 2, 3, 4, 5, 6]) },
    { name: 'b', dtype: 'BF16', shape: [4], data: new Uint16Array([1, 2, 3, 4]) },
    { name: 'c', dtype: 'U8', shape: [5], data: new Uint8Array([1, 2, 3, 4, 5]) },
    { name: 'd', dtype: 'I64', shape: [], data: new BigInt64Array([-5n]) },
    { name: 'e', dtype: 'F32', shape: [0, 7], data: new Uint8Array(0) },
    { name: 'f', dtype: 'F4', shape: [2, 2], data: new Uint8Array([0x12, 0x34]) },
  ],
  { format: 'pt', note: 'fuzz' },
);
const baseN = Number(new DataView(base.buffer).getBigUint64(0, true));
const baseHeader = JSON.parse(new TextDecoder().decode(base.subarray(8, 8 + baseN))) as Record<
  string,
  unknown
>;
const baseData = base.subarray(8 + baseN);

/** A file from raw header text and data; `n` overrides the declared header length. */
function build(headerText: string | Uint8Array, data: Uint8Array = baseData, n?: bigint): Uint8Array {
  const json = typeof headerText === 'string' ? new TextEncoder().encode(headerText) : headerText;
  const padded = Math.ceil(json.byteLength / 8) * 8;
  const out = new Uint8Array(8 + padded + data.byteLength);
  new DataView(out.buffer).setBigUint64(0, n ?? BigInt(padded), true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.byteLength, 8 + padded);
  out.set(data, 8 + padded);
  return out;
}

type Outcome = { ok: true; names: string[] } | { ok: false; code: SafetensorsErrorCode };

/**
 * Decodes `bytes`; success must be self-consistent, failure a SafetensorsError; no allocation larger than the input
 * (so no work sized by a declared length). Time is not asserted: on a loaded machine any bound fails by chance.
 */
function check(bytes: Uint8Array, label: string): Outcome {
  allocs.max = 0;
  const r = probeAllocations(() => decodeSafetensors(bytes));
  expect(Math.max(r.max, allocs.max), `${label}: allocation`).toBeLessThanOrEqual(bytes.byteLength);
  if (r.error !== undefined) {
    if (!(r.error instanceof SafetensorsError))
      throw new Error(`${label}: threw ${String(r.error)}`, { cause: r.error });
    expect(CODES, `${label}: ${r.error.message}`).toContain(r.error.code);
    return { ok: false, code: r.error.code };
  }
  const decoded = r.value!;
  // Consistency: sizes match dtype × shape and the tensors tile the data region exactly.
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  let total = 0;
  for (const t of decoded.tensors.values()) {
    const bits = t.shape.reduce((acc, d) => acc * BigInt(d), BigInt(SAFETENSORS_DTYPE_BITS[t.dtype]));
    expect(BigInt(t.data.byteLength) * 8n, label).toBe(bits);
    for (const d of t.shape) expect(Number.isSafeInteger(d) && d >= 0, label).toBe(true);
    total += t.data.byteLength;
  }
  expect(total, label).toBe(bytes.byteLength - 8 - n);
  // Whatever this parser accepts, JSON.parse accepts too, with the same tensors.
  const plain = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n))) as Record<
    string,
    { shape: number[] }
  >;
  for (const [name, t] of decoded.tensors) expect(plain[name]?.shape, label).toEqual(t.shape);
  return { ok: true, names: [...decoded.tensors.keys()] };
}

/** Raw JSON text of a value, with hooks to splice in literal text. */
const raw = (v: unknown) => JSON.stringify(v);
function headerText(entries: [string, string][]): string {
  return `{${entries.map(([k, v]) => `${raw(k)}:${v}`).join(',')}}`;
}
const baseEntries = (): [string, string][] => Object.entries(baseHeader).map(([k, v]) => [k, raw(v)]);
const tensorEntry = (name: string) => ({ ...(baseHeader[name] as Record<string, unknown>) });
const tensorNames = Object.keys(baseHeader).filter((k) => k !== '__metadata__');

const NUMBERS = [
  '-1',
  '-0',
  '0',
  '1',
  '1.5',
  '1.0',
  '1e2',
  '2E0',
  '9007199254740991',
  '9007199254740992',
  '18446744073709551615',
  '18446744073709551616',
  '1e400',
  '-1e400',
  '9'.repeat(400),
  '"3"',
  'null',
  'true',
  '[]',
  '{}',
  '[2]',
];
const deepArray = (depth: number) => `${'['.repeat(depth)}1${']'.repeat(depth)}`;

/** One structured mutation of the header (a list of raw [key, value] entries). */
function mutateEntries(r: () => number, entries: [string, string][]): [string, string][] {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const name = pick(tensorNames);
  const i = entries.findIndex(([k]) => k === name);
  const t = tensorEntry(name);
  const setT = (text: string) => {
    if (i >= 0) entries[i] = [name, text];
  };
  const objText = (o: Record<string, unknown>, overrides: Record<string, string> = {}) =>
    `{${Object.entries(o)
      .map(([k, v]) => `${raw(k)}:${overrides[k] ?? raw(v)}`)
      .join(',')}}`;
  const shape = t.shape as number[];
  const [b, e] = t.data_offsets as [number, number];
  switch (Math.floor(r() * 14)) {
    case 0: {
      // one shape entry replaced by an odd number or non-number
      const s = shape.map(String);
      s[Math.floor(r() * (s.length + 1))] = pick(NUMBERS);
      setT(objText(t, { shape: `[${s.join(',')}]` }));
      break;
    }
    case 1:
      setT(
        objText(t, {
          shape: pick([
            '[]',
            '[0]',
            'null',
            '"2,3"',
            '{}',
            `[${Array(10_000).fill('1').join(',')}]`,
            `[${Array(1000).fill('9007199254740991').join(',')}]`,
            `[${Array(1000).fill('9007199254740991').join(',')},0]`,
            deepArray(100_000),
            deepArray(120),
          ]),
        }),
      );
      break;
    case 2: {
      const d = Math.floor(r() * 9) - 4;
      const variants = [
        `[${e},${b}]`,
        `[${b},${e + 1}]`,
        `[${b + d},${e + d}]`,
        `[${b},${e + d}]`,
        `[${b},${baseData.byteLength + 1}]`,
        `[0,${e - b}]`,
        `[${pick(NUMBERS)},${e}]`,
        `[${b},${pick(NUMBERS)}]`,
        `[${b}]`,
        `[${b},${e},${e}]`,
        '[]',
        'null',
        `{"0":${b},"1":${e}}`,
        `[${b},18446744073709551615]`,
        `[18446744073709551000,18446744073709551615]`,
      ];
      setT(objText(t, { data_offsets: pick(variants) }));
      break;
    }
    case 3:
      setT(
        objText(t, {
          dtype: pick([
            '"F31"',
            '"f32"',
            '""',
            '"F32 "',
            '"F32\\u0000"',
            '123',
            'null',
            '"BF16"',
            '"F64"',
            '"U8"',
            '"F4"',
            '"__proto__"',
            '"toString"',
          ]),
        }),
      );
      break;
    case 4: {
      // drop a field, or add an unknown one (ignored, as by the reference)
      const copy: Record<string, unknown> = { ...t };
      if (r() < 0.5) delete copy[pick(['dtype', 'shape', 'data_offsets'])];
      else copy[pick(['extra', 'dtype2', '__proto__'])] = pick([1, 'x', null, [1, [2]]]);
      setT(objText(copy));
      if (r() < 0.3) setT(objText(copy, { extra: deepArray(50_000) }));
      break;
    }
    case 5:
      setT(pick(['[]', '1', '"x"', 'null', 'true', '{}', deepArray(1000)]));
      break;
    case 6:
      // duplicate top-level key (same or different content)
      entries.push([name, r() < 0.5 ? raw(t) : pick(entries)[1]]);
      break;
    case 7:
      // duplicate key inside an entry
      setT(`${objText(t).slice(0, -1)},"dtype":${raw(t.dtype)}}`);
      break;
    case 8: {
      const m = entries.findIndex(([k]) => k === '__metadata__');
      const value = pick([
        '{"a":1}',
        '{"a":null}',
        '{"a":["x"]}',
        '{"a":{"b":"c"}}',
        '{"a":"x","a":"y"}',
        '[]',
        '"meta"',
        '7',
        'null',
        '{}',
        `{"a":${deepArray(200)}}`,
        '{"__proto__":"x"}',
      ]);
      if (m >= 0) entries[m] = ['__metadata__', value];
      else entries.unshift(['__metadata__', value]);
      break;
    }
    case 9:
      entries.splice(i, 1);
      break;
    case 10:
      // swap two entries' offsets (valid only when sizes happen to agree)
      {
        const other = pick(tensorNames);
        const o = tensorEntry(other);
        const j = entries.findIndex(([k]) => k === other);
        if (i >= 0 && j >= 0) {
          entries[i] = [name, objText(t, { data_offsets: raw(o.data_offsets) })];
          entries[j] = [other, objText(o, { data_offsets: raw(t.data_offsets) })];
        }
      }
      break;
    case 11:
      // reorder entries (always valid)
      entries.reverse();
      break;
    case 12:
      entries.push([
        pick(['x', '', '__proto__', 'a.b', '\u0000']),
        raw({ dtype: 'U8', shape: [0], data_offsets: [0, 0] }),
      ]);
      break;
    default:
      entries.push([
        `zz${Math.floor(r() * 100)}`,
        raw({ dtype: 'U8', shape: [2], data_offsets: [b, b + 2] }),
      ]);
  }
  return entries;
}

/** Text-level mutations of the whole header. */
function mutateText(r: () => number, text: string): string | Uint8Array {
  switch (Math.floor(r() * 10)) {
    case 0:
      return `\ufeff${text}`;
    case 1:
      return ` ${text}`;
    case 2:
      return `${text}x`;
    case 3:
      return `${text.slice(0, -1)},}`;
    case 4: {
      const bytes = new TextEncoder().encode(text);
      const out = new Uint8Array(bytes.byteLength + 3);
      out.set(bytes);
      return out; // NUL padding instead of spaces
    }
    case 5: {
      const bytes = new TextEncoder().encode(text);
      bytes[Math.floor(r() * bytes.byteLength)] = 0xff; // invalid UTF-8
      return bytes;
    }
    case 6:
      return text.slice(0, Math.floor(r() * text.length));
    case 7:
      return pick(r, [
        '[]',
        '"x"',
        '1',
        'null',
        '{}',
        '',
        ' ',
        deepArray(200_000),
        `{"a":${deepArray(100)}}`,
      ]);
    case 8:
      return `${text}\n\t\r `; // JSON whitespace after the object is allowed
    default:
      return text.replace(/"([a-f])"/, (_m, c: string) => `"${c}","${c}"`.slice(0, 3)); // usually a no-op
  }
}

function pick<T>(r: () => number, xs: readonly T[]): T {
  return xs[Math.floor(r() * xs.length)]!;
}

describe('fuzzing the reader', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mnemo-st-fuzz-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** The file reader must agree with the in-memory decoder and read every tensor it accepts. */
  async function checkFile(bytes: Uint8Array, expected: Outcome, label: string): Promise<void> {
    const path = join(dir, 'case.safetensors');
    await writeFile(path, bytes);
    allocs.max = 0;
    let outcome: Outcome;
    try {
      const f = await openSafetensors(path);
      try {
        for (const [name, t] of f.tensors) {
          expect((await f.read(name)).byteLength, label).toBe(t.byteLength);
          expect(f.readSync(name).byteLength, label).toBe(t.byteLength);
        }
        outcome = { ok: true, names: f.names() };
      } finally {
        await f.close();
      }
    } catch (err) {
      if (!(err instanceof SafetensorsError))
        throw new Error(`${label}: threw ${String(err)}`, { cause: err });
      expect((err as Error).message, label).toContain(path);
      outcome = { ok: false, code: err.code };
    }
    expect(allocs.max, `${label}: allocation`).toBeLessThanOrEqual(bytes.byteLength);
    expect(outcome, label).toEqual(expected);
  }

  it('the base file is valid', async () => {
    expect(check(base, 'base')).toEqual({
      ok: true,
      names: ['__metadata__', 'a', 'b', 'c', 'd', 'e', 'f'].slice(1),
    });
    await checkFile(base, { ok: true, names: ['a', 'b', 'c', 'd', 'e', 'f'] }, 'base');
    // The probe sees the decoder's allocations (the largest tensor copy is 24 bytes).
    expect(probeAllocations(() => decodeSafetensors(base)).max).toBe(24);
  });

  it('survives truncation at every length of the first bytes and beyond', async () => {
    for (let len = 0; len < base.byteLength; len++) {
      const out = check(base.subarray(0, len), `truncated to ${len}`);
      expect(out.ok).toBe(false);
      if (len < 40 || len % 16 === 0) await checkFile(base.slice(0, len), out, `truncated to ${len}`);
    }
    // Extra bytes after the data region are refused like the reference does.
    const longer = new Uint8Array(base.byteLength + 3);
    longer.set(base);
    expect(check(longer, 'longer')).toEqual({ ok: false, code: 'TRAILING_DATA' });
  });

  it('survives random bit flips and byte changes', async () => {
    const r = rng(1234);
    let accepted = 0;
    for (let i = 0; i < 3000; i++) {
      const bytes = base.slice();
      const region = r() < 0.3 ? 8 : r() < 0.8 ? 8 + baseN : bytes.byteLength;
      for (let k = 1 + Math.floor(r() * 4); k > 0; k--) {
        const at = Math.floor(r() * region);
        if (r() < 0.5) bytes[at]! ^= 1 << Math.floor(r() * 8);
        else bytes[at] = Math.floor(r() * 256);
      }
      const label = `flip case ${i}`;
      const out = check(bytes, label);
      if (out.ok) accepted++;
      if (i % 20 === 0) await checkFile(bytes, out, label);
    }
    // Flips inside tensor data (or harmless ones in the header) still parse.
    expect(accepted).toBeGreaterThan(0);
  });

  it('refuses huge and off-by-one header lengths without allocating them', async () => {
    const lengths = [2n ** 63n, 2n ** 64n - 1n, 2n ** 40n, 2n ** 32n, BigInt(MAX_HEADER_SIZE) + 1n];
    for (const n of lengths) {
      const bytes = base.slice();
      new DataView(bytes.buffer).setBigUint64(0, n, true);
      expect(check(bytes, `n=${n}`)).toEqual({ ok: false, code: 'HEADER_TOO_LARGE' });
      await checkFile(bytes, { ok: false, code: 'HEADER_TOO_LARGE' }, `n=${n}`);
    }
    for (const delta of [-8, -1, 1, 8, base.byteLength - 8 - baseN, base.byteLength - 8 - baseN + 1]) {
      const bytes = base.slice();
      new DataView(bytes.buffer).setBigUint64(0, BigInt(baseN + delta), true);
      const out = check(bytes, `n=${baseN + delta}`);
      expect(out.ok).toBe(false);
      await checkFile(bytes, out, `n=${baseN + delta}`);
    }
    expect(check(build('{}', new Uint8Array(0), 0n), 'n=0')).toEqual({ ok: false, code: 'BAD_JSON' });
  });

  it('survives structured header mutations', async () => {
    const r = rng(99);
    const seen = new Map<string, number>();
    for (let i = 0; i < 3000; i++) {
      let entries = baseEntries();
      for (let k = 1 + Math.floor(r() * 2); k > 0; k--) entries = mutateEntries(r, entries);
      let text: string | Uint8Array = headerText(entries);
      if (r() < 0.15) text = mutateText(r, text);
      const label = `structured case ${i}: ${(typeof text === 'string' ? text : new TextDecoder().decode(text)).slice(0, 300)}`;
      const bytes = build(text);
      const out = check(bytes, label);
      const key = out.ok ? 'ok' : out.code;
      seen.set(key, (seen.get(key) ?? 0) + 1);
      if (i % 25 === 0) await checkFile(bytes, out, label);
    }
    // The mutations reach every validation rule.
    for (const code of [
      'ok',
      'BAD_JSON',
      'BAD_TENSOR',
      'BAD_DTYPE',
      'BAD_SHAPE',
      'BAD_OFFSETS',
      'SIZE_MISMATCH',
    ]) {
      expect(seen.get(code), `${code} never produced: ${JSON.stringify([...seen])}`).toBeGreaterThan(0);
    }
    for (const code of ['OUT_OF_BOUNDS', 'OVERLAP', 'GAP', 'TRAILING_DATA', 'DUPLICATE', 'BAD_METADATA']) {
      expect(seen.get(code), `${code} never produced: ${JSON.stringify([...seen])}`).toBeGreaterThan(0);
    }
  });

  it('gives the expected code for each targeted violation, naming the tensor', () => {
    const withEntry = (name: string, value: string) =>
      headerText(baseEntries().map(([k, v]) => [k, k === name ? value : v]));
    const cases: [string | Uint8Array, SafetensorsErrorCode, string?][] = [
      [withEntry('a', '{"dtype":"F32","shape":[2,-3],"data_offsets":[0,24]}'), 'BAD_SHAPE', 'a'],
      [withEntry('a', '{"dtype":"F32","shape":[2,3.5],"data_offsets":[0,24]}'), 'BAD_SHAPE', 'a'],
      [
        withEntry('a', '{"dtype":"F32","shape":[2,18446744073709551616],"data_offsets":[0,24]}'),
        'BAD_SHAPE',
        'a',
      ],
      [
        withEntry('a', '{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,24]}'),
        'SIZE_MISMATCH',
        'a',
      ],
      [withEntry('a', '{"dtype":"F32","shape":[2,4],"data_offsets":[0,24]}'), 'SIZE_MISMATCH', 'a'],
      [withEntry('a', '{"dtype":"F33","shape":[2,3],"data_offsets":[0,24]}'), 'BAD_DTYPE', 'a'],
      [withEntry('a', '{"dtype":"F32","shape":[2,3],"data_offsets":[24,0]}'), 'BAD_OFFSETS', 'a'],
      [
        withEntry('a', '{"dtype":"F32","shape":[2,3],"data_offsets":[0,9007199254740993]}'),
        'BAD_OFFSETS',
        'a',
      ],
      [withEntry('a', '{"dtype":"F32","shape":[2,3],"data_offsets":[0,24,24]}'), 'BAD_OFFSETS', 'a'],
      [withEntry('a', '{"dtype":"F32","shape":[2,3],"data_offsets":[1000,1024]}'), 'OUT_OF_BOUNDS', 'a'],
      [withEntry('b', '{"dtype":"BF16","shape":[4],"data_offsets":[20,28]}'), 'OVERLAP', 'b'],
      [withEntry('a', '{"dtype":"F32","shape":[2,3]}'), 'BAD_TENSOR', 'a'],
      [withEntry('a', '[]'), 'BAD_TENSOR', 'a'],
      [withEntry('__metadata__', '{"format":1}'), 'BAD_METADATA'],
      [withEntry('__metadata__', '["pt"]'), 'BAD_METADATA'],
      [
        `${headerText(baseEntries()).slice(0, -1)},"a":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}}`,
        'DUPLICATE',
        'a',
      ],
      [withEntry('a', '{"dtype":"F32","dtype":"F32","shape":[2,3],"data_offsets":[0,24]}'), 'DUPLICATE', 'a'],
      [withEntry('a', `{"dtype":"F32","shape":${deepArray(10_000)},"data_offsets":[0,24]}`), 'BAD_JSON'],
      [`\ufeff${headerText(baseEntries())}`, 'BAD_JSON'],
      ['[]', 'BAD_JSON'],
      [headerText(baseEntries().filter(([k]) => k !== 'c')), 'GAP', 'd'],
    ];
    for (const [text, code, tensor] of cases) {
      const err = probeAllocations(() => decodeSafetensors(build(text), { source: 'x.safetensors' })).error;
      expect(err, String(text)).toBeInstanceOf(SafetensorsError);
      expect((err as SafetensorsError).code, String(text).slice(0, 200)).toBe(code);
      expect((err as Error).message).toContain('x.safetensors');
      if (tensor) {
        expect((err as SafetensorsError).tensor).toBe(tensor);
        expect((err as Error).message).toContain(`tensor "${tensor}"`);
      }
    }
    // Valid variants: null metadata (as the reference reads it), unknown fields, any key order, trailing whitespace.
    for (const text of [
      withEntry('__metadata__', 'null'),
      withEntry('a', '{"extra":[1,{"x":2}],"dtype":"F32","data_offsets":[0,24],"shape":[2,3]}'),
      headerText(baseEntries().reverse()),
      `${headerText(baseEntries())}\n\t\r`,
    ]) {
      expect(check(build(text), text).ok, text).toBe(true);
    }
  });
});
