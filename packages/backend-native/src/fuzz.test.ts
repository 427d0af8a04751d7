import {
  type Backend,
  createReferenceBackend,
  type DType,
  GGML_BLOCK_TYPES,
  type GgmlBlockType,
  GgmlTensor,
  ggmlRowBytes,
  type KvRows,
  QuantizedTensor,
  type QuantSpec,
  Tensor,
  type Weight,
} from '@mnemo/tensor';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadAddon } from './addon';
import { createNativeBackend, type NativeBackend } from './index';

// Random calls of every op with arguments drawn from valid tensors, views, freed tensors, tensors of other backends or
// instances, forged tensors, garbage numbers, shapes, options and typed arrays. Every call must either succeed or
// throw a TypeError / RangeError naming the op: never crash the process, never throw anything else.

/** mulberry32 */
function rng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (lo: number, hi: number) => lo + Math.floor(next() * (hi - lo));
  const pick = <T>(xs: readonly T[]): T => xs[int(0, xs.length)]!;
  return { next, int, pick };
}
type Rng = ReturnType<typeof rng>;

const DTYPES: readonly string[] = ['f32', 'f16', 'bf16', 'u32', 'i32', 'u8', 'f64', '', 'F32'];
const NUMBERS = [
  0,
  1,
  2,
  3,
  7,
  16,
  17,
  31,
  32,
  64,
  -1,
  -16,
  0.5,
  1.5,
  Number.NaN,
  Infinity,
  -Infinity,
  2 ** 31,
  2 ** 32,
  2 ** 53,
  2 ** 60,
  1e300,
];

function garbageNumber(r: Rng): number {
  return r.next() < 0.6 ? r.int(0, 70) : r.pick(NUMBERS);
}

function shape(r: Rng, maxElems = 512): number[] {
  if (r.next() < 0.08) return r.pick([[-1], [2.5], [Number.NaN], [2 ** 40, 2 ** 20], [2 ** 53], []]);
  const dims = r.int(1, 4);
  const s: number[] = [];
  let n = 1;
  for (let i = 0; i < dims; i++) {
    const d = r.int(0, 18);
    if (n * Math.max(d, 1) > maxElems) s.push(1);
    else {
      s.push(d);
      n *= Math.max(d, 1);
    }
  }
  return s;
}

function typedArray(r: Rng, bytes: number): ArrayBufferView {
  const n = Math.max(0, bytes + (r.next() < 0.3 ? r.int(-5, 6) : 0));
  switch (r.int(0, 7)) {
    case 0:
      return new Uint8Array(n);
    case 1:
      return new Float32Array(Math.floor(n / 4));
    case 2:
      return new Uint16Array(Math.floor(n / 2));
    case 3:
      return new Uint32Array(Math.floor(n / 4));
    case 4:
      return new Float64Array(Math.floor(n / 8));
    case 5:
      return new DataView(new ArrayBuffer(n));
    default:
      return new Int32Array(Math.floor(n / 4));
  }
}

/** MNEMO_FUZZ_SEED runs other random calls (the default is fixed, so the test is reproducible). */
const SEED = Number(process.env.MNEMO_FUZZ_SEED ?? 20261203);

const SPECS: readonly QuantSpec[] = [
  { bits: 4, groupSize: 32, scaleDtype: 'f16' },
  { bits: 8, groupSize: 64, scaleDtype: 'bf16' },
  { bits: 3, groupSize: 32, scaleDtype: 'f32' },
  { bits: 6, groupSize: 128, scaleDtype: 'f16' },
];

const GGML = Object.keys(GGML_BLOCK_TYPES) as GgmlBlockType[];
/** The tensor a weight's random use picks: a part of a quantized or GGML weight, or the tensor itself. */
function partOf(r: Rng, w: Weight): Tensor {
  if (w instanceof QuantizedTensor) return r.pick([w.packed, w.scales, w.biases]);
  if (w instanceof GgmlTensor) return w.blocks;
  return w;
}

describe('fuzzing the native backend', () => {
  let b: NativeBackend;
  let other: NativeBackend;
  let ref: Backend;
  beforeAll(async () => {
    b = await createNativeBackend({ threads: 2 });
    other = await createNativeBackend({ threads: 1 });
    ref = await createReferenceBackend();
  });
  afterAll(() => {
    b?.dispose();
    other?.dispose();
    ref?.dispose();
  });

  it('survives 12,000 random op calls: each succeeds or throws a TypeError/RangeError naming the op', () => {
    const r = rng(SEED);
    const pool: Weight[] = [];
    const freed: Weight[] = [];
    const bad: string[] = [];
    let ok = 0;
    let refused = 0;

    const small = (): Tensor => {
      const dtype = r.pick(['f32', 'f32', 'f32', 'f16', 'bf16', 'u32', 'u8'] as const);
      const dims = Array.from({ length: r.int(1, 4) }, () => r.int(0, 9));
      const n = dims.reduce((a, c) => a * c, 1);
      const bytes = n * (dtype === 'f32' || dtype === 'u32' ? 4 : dtype === 'u8' ? 1 : 2);
      return b.upload(
        dtype,
        dims,
        new Uint8Array(bytes).map(() => r.int(0, 256)),
      );
    };
    for (let i = 0; i < 40; i++) pool.push(small());
    for (const spec of SPECS) {
      const rows = r.int(1, 40);
      const cols = spec.groupSize * r.int(1, 3);
      const groups = (rows * cols) / spec.groupSize;
      const es = spec.scaleDtype === 'f32' ? 4 : 2;
      pool.push(
        b.uploadQuantized(
          spec,
          [rows, cols],
          new Uint32Array((rows * cols * spec.bits) / 32).map(() => r.int(0, 2 ** 31)),
          new Uint8Array(groups * es).map(() => r.int(0, 256)),
          new Uint8Array(groups * es).map(() => r.int(0, 256)),
        ),
      );
    }
    for (const type of GGML) {
      const rows = r.int(1, 40);
      const cols = GGML_BLOCK_TYPES[type].blockSize * r.int(1, 3);
      pool.push(
        b.uploadGgml(
          type,
          [rows, cols],
          new Uint8Array(rows * ggmlRowBytes(type, cols)).map(() => r.int(0, 256)),
        ),
      );
    }
    const foreign: Weight[] = [
      other.upload('f32', [4, 4], new Float32Array(16)),
      ref.upload('f32', [4, 4], new Float32Array(16)),
      ref.upload('f16', [3, 8], new Uint16Array(24)),
    ];

    const tensor = (): Tensor => {
      const x = r.next();
      if (x < 0.7 || pool.length === 0) {
        const w = partOf(r, r.pick(pool));
        if (r.next() < 0.2 && w.size > 0) {
          const len = r.int(0, w.size + 1);
          const off = r.int(0, w.size - len + 1);
          try {
            return b.view(w, [len], off);
          } catch {
            return w;
          }
        }
        return w;
      }
      if (x < 0.8 && freed.length > 0) {
        return partOf(r, r.pick(freed));
      }
      if (x < 0.9) {
        return partOf(r, r.pick(foreign));
      }
      // forged: a real storage under a wrong dtype, shape or offset, or a made-up storage
      const t = partOf(r, r.pick(pool));
      const storage = r.next() < 0.8 ? t.storage : {};
      try {
        return new Tensor(
          r.pick(['native', 'wasm', 'js']),
          r.pick(['f32', 'f16', 'u32'] as const),
          shape(r),
          storage,
          r.pick([0, 1, 3, -1, 0.5, 1e9, t.size]),
        );
      } catch {
        return t;
      }
    };
    const weight = (): Weight => {
      const x = r.next();
      if (x < 0.3) {
        const qs = pool.filter((w) => w instanceof QuantizedTensor);
        if (qs.length > 0) {
          const q = r.pick(qs) as QuantizedTensor;
          if (r.next() < 0.8) return q;
          // mixed or mis-shaped parts
          return new QuantizedTensor(
            r.pick(SPECS),
            [r.int(0, 40), 32 * r.int(0, 5)],
            tensor(),
            tensor(),
            tensor(),
          );
        }
      }
      if (x < 0.45) {
        const gs = pool.filter((w) => w instanceof GgmlTensor);
        if (gs.length > 0) {
          const g = r.pick(gs) as GgmlTensor;
          if (r.next() < 0.7) return g;
          // another type or shape over these (or other) blocks
          return new GgmlTensor(
            r.next() < 0.9 ? r.pick(GGML) : (r.pick(['Q4_2', 'F16', '']) as GgmlBlockType),
            [r.int(0, 40), r.pick([32, 64, 256, 0, 48])],
            r.next() < 0.7 ? g.blocks : tensor(),
          );
        }
      }
      return tensor();
    };
    const opt = <T>(make: () => T): T | undefined => (r.next() < 0.3 ? undefined : make());
    /** KV storage: an f32/f16 tensor, a 4-/8-bit quantized one with f32 scales (as caches make them), or anything */
    const kv = (): KvRows => {
      const x = r.next();
      if (x < 0.3) {
        const rowsN = r.int(1, 24);
        const w = r.pick([32, 64, 128]);
        const bits = r.pick([4, 8] as const);
        const groupSize = r.pick([32, 64] as const);
        if (w % groupSize !== 0) return tensor();
        const q = new QuantizedTensor(
          { bits, groupSize, scaleDtype: 'f32' },
          [rowsN, w],
          b.alloc('u32', [rowsN, (w * bits) / 32]),
          b.alloc('f32', [rowsN, w / groupSize]),
          b.alloc('f32', [rowsN, w / groupSize]),
        );
        pool.push(q);
        return q;
      }
      return x < 0.5 ? (weight() as KvRows) : tensor();
    };
    const maybeGarbage = <T>(v: T): T =>
      r.next() < 0.05 ? (r.pick([null, undefined, 'x', {}, []]) as T) : v;

    const ops: [string, () => unknown][] = [
      ['alloc', () => b.alloc(r.pick(DTYPES) as DType, shape(r, 1 << 16))],
      [
        'upload',
        () => {
          const dtype = r.pick(DTYPES) as DType;
          const s = shape(r);
          const n = s.every((d) => Number.isSafeInteger(d) && d >= 0) ? s.reduce((a, c) => a * c, 1) : 8;
          return b.upload(dtype, s, typedArray(r, Math.min(n, 4096) * r.pick([1, 2, 4])));
        },
      ],
      [
        'uploadQuantized',
        () => {
          const spec =
            r.next() < 0.8
              ? r.pick(SPECS)
              : ({
                  bits: r.pick([1, 7, 9, 4]),
                  groupSize: r.pick([16, 32, 48]),
                  scaleDtype: r.pick(['f16', 'f64']),
                } as unknown as QuantSpec);
          const rows = garbageNumber(r) % 40;
          const cols = r.pick([32, 64, 128, 48, 0, -32, 256]);
          const words = Math.max(0, (rows * cols * (spec.bits || 4)) / 32) | 0;
          const groups = Math.max(0, Math.floor((rows * cols) / (spec.groupSize || 32)));
          return b.uploadQuantized(
            spec,
            [rows, cols] as [number, number],
            typedArray(r, words * 4),
            typedArray(r, groups * 2),
            typedArray(r, groups * 2),
          );
        },
      ],
      [
        'uploadGgml',
        () => {
          const type = r.next() < 0.9 ? r.pick(GGML) : (r.pick(['Q4_2', 'F32', 'x']) as GgmlBlockType);
          const rows = garbageNumber(r) % 40;
          const cols = r.pick([32, 64, 256, 512, 0, -32, 48]);
          const info = GGML_BLOCK_TYPES[type];
          const bytes =
            info && rows > 0 && cols > 0 ? Math.floor((rows * cols) / info.blockSize) * info.blockBytes : 64;
          const n = r.next() < 0.8 ? bytes : r.int(0, 2 * bytes + 2);
          return b.uploadGgml(
            type,
            [rows, cols] as [number, number],
            r.next() < 0.9 ? new Uint8Array(Math.min(n, 1 << 16)).map(() => r.int(0, 256)) : typedArray(r, n),
          );
        },
      ],
      [
        'writeKv',
        () =>
          b.writeKv(
            kv(),
            tensor(),
            maybeGarbage({
              startPos: r.next() < 0.7 ? r.int(0, 40) : garbageNumber(r),
              keep: opt(() => r.pick([0, 1, 4, -1, 1000, 0.5])),
            } as never),
          ),
      ],
      ['view', () => b.view(tensor(), shape(r), garbageNumber(r))],
      ['write', () => b.write(tensor(), typedArray(r, Math.min(tensor().byteLength || 0, 1 << 16)))],
      [
        'read',
        () =>
          b.read(
            tensor(),
            opt(() => new Float32Array(r.int(0, 600))),
          ),
      ],
      [
        'readBytes',
        () =>
          b.readBytes(
            tensor(),
            opt(() => new Uint8Array(r.int(0, 2400))),
          ),
      ],
      [
        'copyRows',
        () => b.copyRows(tensor(), garbageNumber(r), tensor(), garbageNumber(r), garbageNumber(r)),
      ],
      ['toF32', () => b.toF32(tensor(), tensor())],
      ['matmul', () => b.matmul(tensor(), tensor(), weight(), opt(tensor))],
      [
        'embedding',
        () =>
          b.embedding(
            tensor(),
            weight(),
            maybeGarbage(Int32Array.from({ length: r.int(0, 6) }, () => garbageNumber(r) | 0)),
          ),
      ],
      ['rmsnorm', () => b.rmsnorm(tensor(), tensor(), tensor(), r.pick([1e-5, 0, -1, Number.NaN, Infinity]))],
      [
        'rope',
        () =>
          b.rope(
            tensor(),
            tensor(),
            tensor(),
            maybeGarbage({
              nHeads: garbageNumber(r),
              headDim: garbageNumber(r),
              layout: r.pick(['half', 'pair', 'x']),
            } as never),
          ),
      ],
      ['swiglu', () => b.swiglu(tensor(), tensor(), tensor())],
      ['geluGlu', () => b.geluGlu(tensor(), tensor(), tensor())],
      ['softcap', () => b.softcap(tensor(), r.pick([1, 30, 0, -1, Number.NaN, Infinity, 1e-30]))],
      ['scale', () => b.scale(tensor(), tensor(), r.pick([1, 0.5, -2, Number.NaN, Infinity, 1e300]))],
      ['add', () => b.add(tensor(), tensor(), tensor())],
      ['softmax', () => b.softmax(tensor())],
      [
        'argmax',
        () =>
          b.argmax(
            tensor(),
            opt(() => garbageNumber(r)),
          ),
      ],
      [
        'attention',
        () =>
          b.attention(
            tensor(),
            tensor(),
            kv(),
            kv(),
            maybeGarbage({
              startPos: garbageNumber(r),
              nHeads: r.pick([1, 2, 4, 8, 0, 3]),
              nKvHeads: r.pick([1, 2, 4, 0]),
              headDim: r.pick([1, 2, 4, 8, 16, 0, 5]),
              scale: r.pick([0.5, 1, Number.NaN, Infinity]),
              window: opt(() => garbageNumber(r)),
              softcap: opt(() => r.pick([0, 10, -1, Number.NaN, Infinity])),
              keep: opt(() => r.pick([0, 1, 4, -1, 100])),
            } as never),
          ),
      ],
      [
        'free',
        () => {
          const w = r.next() < 0.5 && pool.length > 20 ? pool.splice(r.int(0, pool.length), 1)[0]! : weight();
          b.free(w);
          freed.push(w);
        },
      ],
    ];

    for (let i = 0; i < 12_000; i++) {
      const [name, call] = r.pick(ops);
      try {
        const res = call();
        ok++;
        if (res instanceof Tensor || res instanceof QuantizedTensor || res instanceof GgmlTensor) {
          if (res.backendName === 'native' && (!(res instanceof Tensor) || res.byteLength <= 1 << 16))
            pool.push(res);
          else b.free(res);
        }
      } catch (e) {
        refused++;
        if (
          !(e instanceof TypeError || e instanceof RangeError) ||
          !e.message.includes(name === 'free' ? 'free' : name)
        )
          if (bad.length < 10)
            bad.push(`${name}: ${(e as Error)?.constructor?.name}: ${(e as Error)?.message}`);
      }
      if (pool.length < 10) pool.push(small());
    }
    expect(bad).toEqual([]);
    // both outcomes were exercised
    expect(ok).toBeGreaterThan(500);
    expect(refused).toBeGreaterThan(1000);
    // the backend still works and its accounting is consistent
    const y = b.alloc('f32', [1, 3]);
    b.matmul(
      y,
      b.upload('f32', [1, 2], new Float32Array([1, 2])),
      b.upload('f32', [3, 2], new Float32Array([1, 0, 0, 1, 1, 1])),
    );
    expect(Array.from(b.read(y))).toEqual([1, 2, 3]);
    expect(b.memoryInUse()).toBeGreaterThan(0);
  });

  it('the raw addon context survives 8,000 random calls: ranges outside its buffers are refused', () => {
    const ctx = loadAddon().createContext('scalar', 2, 0);
    const r = rng(SEED + 7);
    const handles: number[] = [];
    for (let i = 0; i < 8; i++) handles.push(ctx.alloc(r.int(0, 4096)));
    const h = () => (r.next() < 0.85 ? r.pick(handles) : r.pick([-1, 0, 1, 2 ** 24, 2 ** 30, 1e15, 0.5]));
    const n = () => (r.next() < 0.7 ? r.int(0, 300) : r.pick(NUMBERS));
    /** one side of KV storage: (fmt, bits, group, h, off, scalesH, scalesOff, biasesH, biasesOff) */
    const kvSide = () => [
      r.pick([0, 1, 2, 2, 3, -1]),
      r.pick([4, 8, 3, 0]),
      r.pick([32, 64, 16, 0]),
      h(),
      n(),
      h(),
      n(),
      h(),
      n(),
    ];
    const calls: (() => unknown)[] = [
      () => ctx.copy(h(), n(), h(), n(), n()),
      () => ctx.fill(h(), n(), n(), n()),
      () => ctx.write(h(), n(), new Uint8Array(r.int(0, 500))),
      () => ctx.read(h(), n(), new Float32Array(r.int(0, 200))),
      () => ctx.toF32(h(), n(), h(), n(), n(), r.int(-1, 4)),
      () =>
        ctx.matmul(
          h(),
          n(),
          h(),
          n(),
          n(),
          n(),
          n(),
          r.pick([-1, h()]),
          n(),
          h(),
          r.int(0, 3),
          r.pick([0, 1, 2, 4, 8, 7, 3, 10, 12, 14, 99]),
          r.pick([32, 64, 0]),
          r.int(0, 3),
          h(),
          h(),
          r.int(0, 2),
        ),
      () => ctx.ggmlBytes(r.pick([2, 8, 12, 14, 0, 99, -1]), n(), r.pick([32, 256, 0, 48, n()])),
      () =>
        ctx.ggmlPack(
          h(),
          new Uint8Array(r.int(0, 1200)),
          r.pick([2, 3, 6, 7, 8, 10, 11, 12, 13, 14, 5]),
          r.int(0, 6),
          r.pick([32, 256, 64, 0]),
          r.int(0, 6),
          r.int(0, 6),
        ),
      () => ctx.ggmlPackBuf(h(), h(), n(), r.pick([2, 8, 12, 14, 1]), r.int(0, 6), r.pick([32, 256, 0])),
      () =>
        ctx.embedding(
          h(),
          n(),
          Int32Array.from({ length: r.int(0, 4) }, () => r.int(-2, 40)),
          n(),
          n(),
          h(),
          r.int(0, 3),
          r.pick([0, 1, 2, 4, 8, 12, 14, 99]),
          32,
          r.int(0, 3),
          h(),
          h(),
        ),
      () => ctx.rmsnorm(h(), n(), h(), n(), h(), n(), n(), n(), 1e-5),
      () => ctx.rope(h(), n(), h(), n(), h(), n(), n(), n(), n(), n(), r.int(0, 3)),
      () => ctx.add(h(), n(), h(), n(), h(), n(), n()),
      () => ctx.swiglu(h(), n(), h(), n(), h(), n(), n()),
      () => ctx.softmax(h(), n(), n(), n()),
      () => ctx.argmax(h(), n(), n()),
      () =>
        ctx.attention(
          h(),
          n(),
          h(),
          n(),
          n(),
          n(),
          r.int(0, 9),
          r.int(0, 5),
          r.int(0, 20),
          0.5,
          n(),
          n(),
          r.pick([0, 1, -1, 50, Number.NaN]),
          r.pick([0, 0, 1, 3, -1, n()]),
          ...kvSide(),
          ...kvSide(),
        ),
      () => ctx.writeKv(h(), n(), n(), n(), n(), n(), r.pick([0, 0, 2, -1, n()]), ...kvSide()),
      () => ctx.geluGlu(h(), n(), h(), n(), h(), n(), n()),
      () => ctx.softcap(h(), n(), n(), r.pick([1, 0, -1, 30, Number.NaN, Infinity])),
      () => ctx.scale(h(), n(), h(), n(), n(), r.pick([1, 0.5, Number.NaN, Infinity])),
      () => ctx.tanh(h(), n(), h(), n(), n()),
      () => ctx.repack(h(), n(), r.pick([32, 64, 3]), r.int(0, 3), r.pick([2, 4, 8, 3]), r.int(0, 2)),
      () =>
        ctx.pack(
          h(),
          new Uint8Array(r.int(0, 600)),
          n(),
          r.pick([32, 16, 64]),
          r.int(0, 2),
          r.pick([2, 4, 8]),
          n(),
          n(),
        ),
    ];
    let refused = 0;
    const bad: string[] = [];
    for (let i = 0; i < 8000; i++) {
      try {
        r.pick(calls)();
      } catch (e) {
        refused++;
        if (!(e instanceof TypeError || e instanceof RangeError) && bad.length < 5) bad.push(String(e));
      }
    }
    ctx.dispose();
    expect(bad).toEqual([]);
    expect(refused).toBeGreaterThan(4000);
  });
});
