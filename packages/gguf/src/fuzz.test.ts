/**
 * Hostile headers: more than 10,000 mutated GGUF files (every header field replaced by edge values, fields removed,
 * duplicated and swapped, random bit flips, every truncation), each of which must either parse into a self-consistent
 * result or fail with a GgufError of a known code, never anything else, and never allocate more than the file holds.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { rng } from '@mnemo/test-utils';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { decodeGguf, GgufError, type GgufErrorCode, GgufValueType, openGguf } from './index';

// Every allocation sized from file contents goes through io.allocBytes: record the largest and the total.
const allocs = vi.hoisted(() => ({ max: 0, total: 0 }));
vi.mock('./io', async (importOriginal) => {
  const actual = await importOriginal<typeof import('./io')>();
  return {
    ...actual,
    allocBytes: (n: number, file: string, tensor?: string) => {
      allocs.max = Math.max(allocs.max, n);
      allocs.total += n;
      return actual.allocBytes(n, file, tensor);
    },
  };
});

const CODES: readonly GgufErrorCode[] = [
  'TRUNCATED',
  'BAD_MAGIC',
  'BAD_VERSION',
  'BAD_VALUE',
  'BAD_STRING',
  'TOO_DEEP',
  'DUPLICATE',
  'BAD_TENSOR',
  'BAD_ALIGNMENT',
  'OUT_OF_BOUNDS',
  'OVERLAP',
  'TOO_LARGE',
];

/** One field of the file as written: the unit mutations work on. */
type Field =
  | { kind: 'u32'; value: number; role: string }
  | { kind: 'u64'; value: bigint; role: string }
  | { kind: 'bytes'; value: Uint8Array; role: string };

const enc = new TextEncoder();
const u32 = (value: number, role: string): Field => ({ kind: 'u32', value, role });
const u64 = (value: number | bigint, role: string): Field => ({ kind: 'u64', value: BigInt(value), role });
const raw = (value: Uint8Array, role: string): Field => ({ kind: 'bytes', value, role });
const str = (s: string, role: string): Field[] => {
  const b = enc.encode(s);
  return [u64(b.byteLength, `${role}.length`), raw(b, role)];
};

interface BaseTensor {
  name: string;
  type: number;
  dims: number[];
  bytes: number;
}

/** The fields of a small valid file: metadata of every type (nested arrays too) and five tensors. */
function baseFields(): Field[] {
  const f: Field[] = [raw(enc.encode('GGUF'), 'magic'), u32(3, 'version')];
  const kv: Field[][] = [];
  const scalar = (key: string, type: number, bytes: Uint8Array) => [
    ...str(key, 'key'),
    u32(type, 'value type'),
    raw(bytes, 'value'),
  ];
  kv.push([
    ...str('general.architecture', 'key'),
    u32(GgufValueType.STRING, 'value type'),
    ...str('llama', 'string'),
  ]);
  kv.push([
    ...str('general.alignment', 'key'),
    u32(GgufValueType.UINT32, 'value type'),
    u32(32, 'alignment'),
  ]);
  kv.push(scalar('u8', GgufValueType.UINT8, Uint8Array.of(7)));
  kv.push(scalar('f64', GgufValueType.FLOAT64, new Uint8Array(new Float64Array([1.5]).buffer)));
  kv.push(scalar('bool', GgufValueType.BOOL, Uint8Array.of(1)));
  kv.push([
    ...str('tokens', 'key'),
    u32(GgufValueType.ARRAY, 'value type'),
    u32(GgufValueType.STRING, 'item type'),
    u64(3, 'array count'),
    ...str('<s>', 'item'),
    ...str('Ġthe', 'item'),
    ...str('日本', 'item'),
  ]);
  kv.push([
    ...str('scores', 'key'),
    u32(GgufValueType.ARRAY, 'value type'),
    u32(GgufValueType.FLOAT32, 'item type'),
    u64(2, 'array count'),
    raw(new Uint8Array(new Float32Array([-1, 2]).buffer), 'items'),
  ]);
  kv.push([
    ...str('nested', 'key'),
    u32(GgufValueType.ARRAY, 'value type'),
    u32(GgufValueType.ARRAY, 'item type'),
    u64(2, 'array count'),
    u32(GgufValueType.INT16, 'item type'),
    u64(2, 'array count'),
    raw(Uint8Array.of(1, 0, 255, 255), 'items'),
    u32(GgufValueType.UINT64, 'item type'),
    u64(1, 'array count'),
    u64(5, 'item'),
  ]);
  const tensors: BaseTensor[] = [
    { name: 'token_embd.weight', type: 12, dims: [256, 2], bytes: 288 },
    { name: 'norm', type: 0, dims: [8], bytes: 32 },
    { name: 'q8', type: 8, dims: [32, 3], bytes: 102 },
    { name: 'f16', type: 1, dims: [2, 3, 2], bytes: 24 },
    { name: 'q4_0', type: 2, dims: [64], bytes: 36 },
  ];
  f.push(u64(tensors.length, 'tensor count'), u64(kv.length, 'metadata count'));
  for (const e of kv) f.push(...e);
  let offset = 0;
  for (const t of tensors) {
    f.push(...str(t.name, 'tensor name'), u32(t.dims.length, 'dimension count'));
    for (const d of t.dims) f.push(u64(d, 'dimension'));
    f.push(u32(t.type, 'tensor type'), u64(offset, 'tensor offset'));
    offset += Math.ceil(t.bytes / 32) * 32;
  }
  const headerLength = f.reduce((n, x) => n + size(x), 0);
  f.push(raw(new Uint8Array((32 - (headerLength % 32)) % 32), 'padding'));
  f.push(
    raw(
      Uint8Array.from({ length: offset }, (_, i) => (i * 7) & 0xff),
      'data',
    ),
  );
  return f;
}

function size(x: Field): number {
  return x.kind === 'u32' ? 4 : x.kind === 'u64' ? 8 : x.value.byteLength;
}

function serialize(fields: readonly Field[]): Uint8Array {
  const out = new Uint8Array(fields.reduce((n, x) => n + size(x), 0));
  const view = new DataView(out.buffer);
  let o = 0;
  for (const x of fields) {
    if (x.kind === 'u32') view.setUint32(o, x.value >>> 0, true);
    else if (x.kind === 'u64') view.setBigUint64(o, BigInt.asUintN(64, x.value), true);
    else out.set(x.value, o);
    o += size(x);
  }
  return out;
}

const EDGE_U32 = [
  0,
  1,
  2,
  3,
  4,
  5,
  7,
  8,
  9,
  12,
  13,
  31,
  32,
  33,
  64,
  255,
  2 ** 16,
  2 ** 31 - 1,
  2 ** 31,
  2 ** 32 - 1,
];
const EDGE_U64 = [
  0n,
  1n,
  2n,
  3n,
  31n,
  32n,
  255n,
  4096n,
  2n ** 31n,
  2n ** 32n - 1n,
  2n ** 32n,
  2n ** 53n - 1n,
  2n ** 53n,
  2n ** 62n,
  2n ** 63n,
  2n ** 64n - 1n,
];

/** One structural mutation of the field list. */
function mutate(r: () => number, fields: Field[]): Field[] {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const i = Math.floor(r() * fields.length);
  const x = fields[i]!;
  const out = [...fields];
  switch (Math.floor(r() * 8)) {
    case 0:
    case 1:
    case 2:
    case 3: {
      // replace a number by an edge value, a neighbour or a random value
      if (x.kind === 'u32') {
        const v =
          r() < 0.6 ? pick(EDGE_U32) : r() < 0.5 ? x.value + pick([-1, 1, 2, -2]) : Math.floor(r() * 2 ** 32);
        out[i] = { ...x, value: v >>> 0 };
      } else if (x.kind === 'u64') {
        const v =
          r() < 0.6
            ? pick(EDGE_U64)
            : r() < 0.5
              ? x.value + pick([-1n, 1n, 8n, -8n, 32n])
              : BigInt(Math.floor(r() * 2 ** 40));
        out[i] = { ...x, value: v };
      } else {
        const b = x.value.slice();
        if (b.byteLength > 0) {
          const k = Math.floor(r() * b.byteLength);
          b[k] = pick([0, 0x80, 0xc0, 0xff, 0xed, Math.floor(r() * 256)]);
        }
        out[i] = { ...x, value: b };
      }
      break;
    }
    case 4:
      out.splice(i, 1);
      break;
    case 5:
      out.splice(i, 0, x);
      break;
    case 6: {
      const j = Math.floor(r() * fields.length);
      out[i] = fields[j]!;
      out[j] = x;
      break;
    }
    default:
      // grow or shrink a byte field
      if (x.kind === 'bytes')
        out[i] = {
          ...x,
          value:
            r() < 0.5
              ? x.value.subarray(0, Math.floor(r() * x.value.byteLength))
              : Uint8Array.from([...x.value, ...x.value]),
        };
      else out.splice(i, 1, raw(Uint8Array.of(Math.floor(r() * 256)), 'junk'));
  }
  return out;
}

type Outcome = { ok: true; tensors: string[] } | { ok: false; code: GgufErrorCode };

/** Decodes `bytes`: success must be self-consistent, failure a GgufError of a known code; allocations bounded. */
function check(bytes: Uint8Array, label: string): Outcome {
  allocs.max = 0;
  allocs.total = 0;
  let outcome: Outcome;
  try {
    const g = decodeGguf(bytes, 'fuzz.gguf');
    expect([2, 3], label).toContain(g.version);
    let end = 0;
    const infos = [...g.tensors.values()].sort((a, b) => a.byteOffset - b.byteOffset);
    for (const t of infos) {
      expect(Number.isSafeInteger(t.byteOffset) && t.byteOffset >= g.dataOffset, label).toBe(true);
      expect((t.byteOffset - g.dataOffset) % g.alignment, label).toBe(0);
      expect(t.byteOffset + t.byteLength, label).toBeLessThanOrEqual(bytes.byteLength);
      if (t.byteLength > 0) {
        expect(t.byteOffset, label).toBeGreaterThanOrEqual(end);
        end = t.byteOffset + t.byteLength;
      }
      expect(t.dims.length, label).toBeLessThanOrEqual(4);
      expect(g.data(t.name).byteLength, label).toBe(t.byteLength);
    }
    outcome = { ok: true, tensors: g.names() };
  } catch (e) {
    if (!(e instanceof GgufError)) throw new Error(`${label}: threw ${String(e)}`, { cause: e });
    expect(CODES, `${label}: ${e.message}`).toContain(e.code);
    expect(e.message, label).toContain('fuzz.gguf');
    outcome = { ok: false, code: e.code };
  }
  expect(
    allocs.total,
    `${label}: allocated ${allocs.total} bytes for a ${bytes.byteLength}-byte file`,
  ).toBeLessThanOrEqual(bytes.byteLength);
  return outcome;
}

describe('fuzzing the GGUF reader', () => {
  let dir: string;
  let cases = 0;
  const seen = new Map<string, number>();
  const note = (o: Outcome) => {
    cases++;
    const k = o.ok ? 'ok' : o.code;
    seen.set(k, (seen.get(k) ?? 0) + 1);
  };
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mnemo-gguf-fuzz-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** The file reader agrees with the in-memory decoder and never allocates more than the file holds. */
  async function checkFile(bytes: Uint8Array, expected: Outcome, label: string): Promise<void> {
    const path = join(dir, 'case.gguf');
    await writeFile(path, bytes);
    allocs.max = 0;
    let outcome: Outcome;
    try {
      const f = await openGguf(path);
      try {
        for (const t of f.tensors.values())
          expect((await f.read(t.name)).byteLength, label).toBe(t.byteLength);
        outcome = { ok: true, tensors: f.names() };
      } finally {
        await f.close();
      }
    } catch (e) {
      if (!(e instanceof GgufError)) throw new Error(`${label}: threw ${String(e)}`, { cause: e });
      expect(e.message, label).toContain(path);
      outcome = { ok: false, code: e.code };
    }
    expect(allocs.max, `${label}: allocation`).toBeLessThanOrEqual(bytes.byteLength);
    expect(outcome, label).toEqual(expected);
  }

  const base = serialize(baseFields());

  it('the base file is valid', async () => {
    const out = check(base, 'base');
    expect(out).toEqual({ ok: true, tensors: ['token_embd.weight', 'norm', 'q8', 'f16', 'q4_0'] });
    await checkFile(base, out, 'base');
  });

  it('survives truncation at every length', async () => {
    const g = decodeGguf(base);
    const dataEnd = Math.max(...[...g.tensors.values()].map((t) => t.byteOffset + t.byteLength));
    for (let len = 0; len < base.byteLength; len++) {
      const out = check(base.subarray(0, len), `truncated to ${len}`);
      note(out);
      // Cutting into the data leaves a tensor out of bounds, cutting the header leaves it incomplete; only the
      // padding after the last tensor may go.
      expect(out.ok, `truncated to ${len}`).toBe(len >= dataEnd);
      if (len % 37 === 0) await checkFile(base.slice(0, len), out, `truncated to ${len}`);
    }
  });

  it('survives 4,000 random bit flips and byte changes', async () => {
    const r = rng(4242);
    for (let i = 0; i < 4000; i++) {
      const bytes = base.slice();
      for (let k = 1 + Math.floor(r() * 4); k > 0; k--) {
        const at = Math.floor(r() * Math.min(bytes.byteLength, r() < 0.8 ? 600 : bytes.byteLength));
        if (r() < 0.5) bytes[at]! ^= 1 << Math.floor(r() * 8);
        else bytes[at] = Math.floor(r() * 256);
      }
      const out = check(bytes, `flip case ${i}`);
      note(out);
      if (i % 50 === 0) await checkFile(bytes, out, `flip case ${i}`);
    }
  });

  it('survives 6,000 structural mutations of the header fields', async () => {
    const r = rng(777);
    for (let i = 0; i < 6000; i++) {
      let fields = baseFields();
      for (let k = 1 + Math.floor(r() * 3); k > 0; k--) fields = mutate(r, fields);
      const bytes = serialize(fields);
      const label = `structured case ${i}`;
      const out = check(bytes, label);
      note(out);
      if (i % 50 === 0) await checkFile(bytes, out, label);
    }
  });

  it('gives the expected code for each targeted violation', () => {
    const at = (role: string, n = 0) => {
      const f = baseFields();
      let k = -1;
      const idx = f.findIndex((x) => x.role === role && ++k === n);
      if (idx < 0) throw new Error(`no field ${role} #${n}`);
      return { f, idx };
    };
    const setU64 = (role: string, v: bigint, n = 0) => {
      const { f, idx } = at(role, n);
      f[idx] = { ...(f[idx] as Field & { kind: 'u64' }), value: v };
      return serialize(f);
    };
    const setU32 = (role: string, v: number, n = 0) => {
      const { f, idx } = at(role, n);
      f[idx] = { ...(f[idx] as Field & { kind: 'u32' }), value: v };
      return serialize(f);
    };
    const deep = () => {
      const f: Field[] = [
        raw(enc.encode('GGUF'), 'magic'),
        u32(3, 'version'),
        u64(0, 'tensors'),
        u64(1, 'kv'),
      ];
      f.push(...str('deep', 'key'), u32(GgufValueType.ARRAY, 'value type'));
      for (let d = 0; d < 20; d++) f.push(u32(GgufValueType.ARRAY, 'item type'), u64(1, 'count'));
      f.push(u32(GgufValueType.UINT8, 'item type'), u64(0, 'count'));
      return serialize(f);
    };
    const cases: [Uint8Array, GgufErrorCode, { key?: string; tensor?: string }?][] = [
      [enc.encode('GGML\u0003\u0000\u0000\u0000'), 'BAD_MAGIC'],
      [setU32('version', 1), 'BAD_VERSION'],
      [setU32('version', 0x03000000), 'BAD_VERSION'],
      [setU32('version', 4), 'BAD_VERSION'],
      [setU64('tensor count', 2n ** 64n - 1n), 'TOO_LARGE'],
      [setU64('tensor count', 2n ** 40n), 'TRUNCATED'],
      [setU64('metadata count', 2n ** 40n), 'TRUNCATED'],
      [setU64('key.length', 2n ** 62n), 'TOO_LARGE'],
      [setU64('key.length', 1n << 30n), 'TRUNCATED'],
      [setU32('value type', 13, 2), 'BAD_VALUE', { key: 'u8' }],
      [setU32('item type', 99), 'BAD_VALUE', { key: 'tokens' }],
      [setU64('array count', 2n ** 50n), 'TRUNCATED', { key: 'tokens' }],
      [setU64('array count', 2n ** 50n, 1), 'TRUNCATED', { key: 'scores' }],
      [setU32('alignment', 24), 'BAD_ALIGNMENT', { key: 'general.alignment' }],
      [setU32('alignment', 0), 'BAD_ALIGNMENT', { key: 'general.alignment' }],
      [setU32('dimension count', 5), 'BAD_TENSOR', { tensor: 'token_embd.weight' }],
      [setU64('dimension', 100n), 'BAD_TENSOR', { tensor: 'token_embd.weight' }],
      [setU64('dimension', 2n ** 60n, 1), 'TOO_LARGE', { tensor: 'token_embd.weight' }],
      [setU64('dimension', 2n ** 30n, 1), 'OUT_OF_BOUNDS', { tensor: 'token_embd.weight' }],
      [setU32('tensor type', 4), 'BAD_TENSOR', { tensor: 'token_embd.weight' }],
      [setU32('tensor type', 999), 'BAD_TENSOR', { tensor: 'token_embd.weight' }],
      [setU64('tensor offset', 16n, 1), 'BAD_ALIGNMENT', { tensor: 'norm' }],
      [setU64('tensor offset', 0n, 1), 'OVERLAP', { tensor: 'norm' }],
      [setU64('tensor offset', 2n ** 52n, 1), 'OUT_OF_BOUNDS', { tensor: 'norm' }],
      [setU64('tensor offset', 2n ** 63n, 1), 'TOO_LARGE', { tensor: 'norm' }],
      [deep(), 'TOO_DEEP', { key: 'deep' }],
    ];
    // a duplicate key and a duplicate tensor name
    {
      const f = baseFields();
      const k = f.findIndex(
        (x) => x.role === 'key' && new TextDecoder().decode(x.value as Uint8Array) === 'u8',
      );
      f[k] = raw(enc.encode('f64'), 'key');
      f[k - 1] = u64(3, 'key.length');
      cases.push([serialize(f), 'DUPLICATE', { key: 'f64' }]);
    }
    {
      const f = baseFields();
      const k = f.findIndex(
        (x) => x.role === 'tensor name' && new TextDecoder().decode(x.value as Uint8Array) === 'q8',
      );
      f[k] = raw(enc.encode('q4'), 'tensor name');
      const j = f.findIndex(
        (x) => x.role === 'tensor name' && new TextDecoder().decode(x.value as Uint8Array) === 'q4_0',
      );
      f[j] = raw(enc.encode('q4'), 'tensor name');
      f[j - 1] = u64(2, 'tensor name.length');
      cases.push([serialize(f), 'DUPLICATE', { tensor: 'q4' }]);
    }
    {
      const f = baseFields();
      const k = f.findIndex((x) => x.role === 'item' && x.kind === 'bytes');
      f[k] = raw(Uint8Array.of(0x3c, 0xc3, 0x3e), 'item');
      cases.push([serialize(f), 'BAD_STRING', { key: 'tokens' }]);
    }
    for (const [bytes, code, where] of cases) {
      let err: unknown;
      try {
        decodeGguf(bytes, 'x.gguf');
      } catch (e) {
        err = e;
      }
      expect(err, code).toBeInstanceOf(GgufError);
      const g = err as GgufError;
      expect(g.code, g.message).toBe(code);
      expect(g.message).toContain('x.gguf');
      if (where?.key) expect(g.key, g.message).toBe(where.key);
      if (where?.tensor) expect(g.tensor, g.message).toBe(where.tensor);
      note({ ok: false, code });
    }
  });

  it('ran at least 10,000 hostile files and reached every rule', () => {
    expect(cases).toBeGreaterThanOrEqual(10_000);
    for (const code of ['ok', ...CODES])
      expect(seen.get(code), `${code} never produced: ${JSON.stringify([...seen])}`).toBeGreaterThan(0);
  });
});
