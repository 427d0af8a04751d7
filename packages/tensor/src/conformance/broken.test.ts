/**
 * The suite can fail: deliberately broken wrappers around the reference backend must fail the cases meant to catch
 * them, while still passing the tolerance-based checks (so only the invariance/validation checks see the defect).
 */
import { getHeapStatistics } from 'node:v8';
import { describe, expect, it } from 'vitest';
import type { AttentionOptions, Backend, RopeOptions } from '../backend';
import { createReferenceBackend } from '../reference/backend';
import type { Tensor, Weight } from '../tensor';
import { createWasmBackend } from '../wasm/backend';
import { type ConformanceCase, conformanceCases } from './index';
import { checkSteadyStateMemory } from './memory';

/** Moves every finite nonzero value of `t` by one ulp, in place. */
function nudge(b: Backend, t: Tensor): void {
  const v = b.read(t);
  const bits = new Uint32Array(v.buffer);
  for (let i = 0; i < v.length; i++) if (Number.isFinite(v[i]) && v[i] !== 0) bits[i]! += 1;
  b.write(t, v);
}

type Defect =
  | 'matmul-batch-order'
  | 'rmsnorm-batch'
  | 'rope-batch'
  | 'swiglu-batch'
  | 'gelu-batch'
  | 'gelu-erf'
  | 'softcap-batch'
  | 'attention-no-softcap'
  | 'embedding-batch'
  | 'softmax-batch'
  | 'attention-prefill'
  | 'attention-spare-row'
  | 'embedding-no-id-check'
  | 'free-leaks';

/**
 * A backend that delegates to `inner` but has one defect. "-batch" defects change results by one ulp whenever an op
 * computes more than one row (as a kernel whose reduction order depends on the row count would); the attention ones
 * perturb multi-row calls or read the cache row just past the causal limit (multiplying it by 0, which only shows
 * when that row holds NaN).
 */
function broken(inner: Backend, defect: Defect): Backend {
  const b: Backend = Object.create(inner);
  const multi = (t: Tensor) => t.shape[0]! > 1;
  Object.assign(b, {
    name: 'broken',
    matmul(y: Tensor, x: Tensor, w: Weight, bias?: Tensor) {
      inner.matmul(y, x, w, bias);
      if (defect === 'matmul-batch-order' && multi(x)) nudge(inner, y);
    },
    rmsnorm(out: Tensor, x: Tensor, w: Tensor, eps: number) {
      inner.rmsnorm(out, x, w, eps);
      if (defect === 'rmsnorm-batch' && multi(x)) nudge(inner, out);
    },
    rope(x: Tensor, cos: Tensor, sin: Tensor, o: RopeOptions) {
      inner.rope(x, cos, sin, o);
      if (defect === 'rope-batch' && multi(x)) nudge(inner, x);
    },
    swiglu(out: Tensor, g: Tensor, u: Tensor) {
      inner.swiglu(out, g, u);
      if (defect === 'swiglu-batch' && multi(out)) nudge(inner, out);
    },
    geluGlu(out: Tensor, g: Tensor, u: Tensor) {
      if (defect === 'gelu-erf') {
        // the exact (erf) GELU instead of the tanh approximation: close, but not the op's function
        const gv = inner.read(g);
        const uv = inner.read(u);
        inner.write(
          out,
          Float32Array.from(gv, (x, i) => 0.5 * x * (1 + erf(x / Math.SQRT2)) * uv[i]!),
        );
        return;
      }
      inner.geluGlu(out, g, u);
      if (defect === 'gelu-batch' && multi(out)) nudge(inner, out);
    },
    softcap(x: Tensor, cap: number) {
      inner.softcap(x, cap);
      if (defect === 'softcap-batch' && multi(x)) nudge(inner, x);
    },
    softmax(x: Tensor) {
      inner.softmax(x);
      if (defect === 'softmax-batch' && multi(x)) nudge(inner, x);
    },
    embedding(out: Tensor, table: Weight, ids: Int32Array) {
      if (defect === 'embedding-no-id-check')
        ids = ids.map((id) => (id >= 0 && id < table.shape[0]! ? id : 0));
      inner.embedding(out, table, ids);
      if (defect === 'embedding-batch' && ids.length > 1) nudge(inner, out);
    },
    attention(out: Tensor, q: Tensor, k: Tensor, v: Tensor, o: AttentionOptions) {
      inner.attention(out, q, k, v, defect === 'attention-no-softcap' ? { ...o, softcap: 0 } : o);
      if (defect === 'attention-prefill' && multi(q)) nudge(inner, out);
      const spare = o.startPos + q.shape[0]!;
      if (defect === 'attention-spare-row' && spare < k.shape[0]!) {
        const width = k.size / k.shape[0]!;
        const row = inner.read(inner.view(k, [width], spare * width));
        const res = inner.read(out);
        for (let i = 0; i < res.length; i++) res[i]! += 0 * row[i % width]!;
        inner.write(out, res);
      }
    },
    free(t: Weight) {
      if (defect !== 'free-leaks') inner.free(t);
    },
  });
  return b;
}

/** erf to about 1e-7 (Abramowitz–Stegun 7.1.26 is too coarse; this is a plain Taylor/continued-fraction mix). */
function erf(x: number): number {
  const a = Math.abs(x);
  let r: number;
  if (a < 2.5) {
    // Taylor series: erf(x) = 2/√π Σ (−1)^n x^(2n+1) / (n! (2n+1))
    let term = a;
    let sum = a;
    for (let n = 1; n < 60; n++) {
      term *= (-a * a) / n;
      sum += term / (2 * n + 1);
    }
    r = (2 / Math.sqrt(Math.PI)) * sum;
  } else {
    // continued fraction for erfc
    let f = 0;
    for (let n = 60; n >= 1; n--) f = n / 2 / (a + f);
    r = 1 - Math.exp(-a * a) / Math.sqrt(Math.PI) / (a + f);
  }
  return x < 0 ? -r : r;
}

async function outcome(c: ConformanceCase, defect: Defect): Promise<string> {
  const reference = await createReferenceBackend();
  const backend = broken(await createReferenceBackend(), defect);
  const other = await createReferenceBackend();
  try {
    await c.run(backend, reference, other);
    return 'passed';
  } catch (e) {
    return `failed: ${(e as Error).message}`;
  }
}

function find(name: string): ConformanceCase {
  const c = conformanceCases().find((k) => k.name.startsWith(name));
  if (!c) throw new Error(`no case named ${name}`);
  return c;
}

describe('the conformance suite fails on broken backends', () => {
  const expectations: [Defect, string, string | null, RegExp][] = [
    // [defect, a case it must fail, a case it must still pass (tolerance is not enough), failure message]
    ['matmul-batch-order', 'matmul row invariance: f32', 'matmul: dense f32', /not bitwise identical/],
    [
      'matmul-batch-order',
      'matmul row invariance: q4 g32',
      'matmul: quantized 4-bit',
      /not bitwise identical/,
    ],
    [
      'rmsnorm-batch',
      'row invariance: rmsnorm',
      'rmsnorm vs reference',
      /rmsnorm dim 37.*not bitwise identical/,
    ],
    // (rope's own case fails too: the nudge also touches dimensions past rotDim, which must come back exactly.)
    ['rope-batch', 'row invariance: rmsnorm', null, /rope half.*not bitwise identical/],
    [
      'swiglu-batch',
      'row invariance: rmsnorm',
      'swiglu vs reference',
      /swiglu dim 37.*not bitwise identical/,
    ],
    [
      'softmax-batch',
      'row invariance: rmsnorm',
      'softmax vs reference',
      /softmax n 37.*not bitwise identical/,
    ],
    [
      'embedding-batch',
      'row invariance: embedding',
      'embedding: quantized',
      /embedding f32.*not bitwise identical/,
    ],
    [
      'attention-prefill',
      'attention invariance: prefill = chunked = decode, unused cache rows hold zeros',
      'attention vs reference',
      /chunks 1\+7\+5 with zeros in unused rows.*not bitwise identical/,
    ],
    [
      'attention-spare-row',
      'attention invariance: prefill = chunked = decode, unused cache rows hold NaN',
      'attention invariance: prefill = chunked = decode, unused cache rows hold zeros',
      /NaN in unused rows.*not bitwise identical/,
    ],
    [
      'gelu-batch',
      'row invariance: rmsnorm',
      'geluGlu vs reference',
      /geluGlu dim 37.*not bitwise identical/,
    ],
    ['gelu-erf', 'geluGlu vs reference', 'row invariance: rmsnorm', /geluGlu \[.*out of tolerance/],
    [
      'softcap-batch',
      'row invariance: rmsnorm',
      'softcap vs reference',
      /softcap dim 37.*not bitwise identical/,
    ],
    [
      'attention-no-softcap',
      'attention vs reference',
      'attention invariance: prefill = chunked = decode, unused cache rows hold zeros',
      /softcap 2.*out of tolerance/,
    ],
    ['embedding-no-id-check', 'validation: ops reject', 'embedding: dense', /expected embedding to throw/],
    ['free-leaks', 'matmul: dense f32', null, /memoryInUse\(\) went from/],
  ];

  for (const [defect, failing, passing, message] of expectations)
    it(`${defect}: fails "${failing}"${passing ? `, passes "${passing}"` : ''}`, async () => {
      expect(await outcome(find(failing), defect)).toMatch(message);
      if (passing) expect(await outcome(find(passing), defect)).toBe('passed');
    });

  it('an intact wrapper passes the same cases (the failures come from the defects)', async () => {
    const reference = await createReferenceBackend();
    const backend = Object.assign(Object.create(reference) as Backend, { name: 'intact' });
    for (const name of new Set(expectations.map((e) => e[1]))) await find(name).run(backend, reference);
  });
});

/** `inner` with some ops replaced; every other method is `inner`'s own, bound to it. */
function withOps(inner: Backend, ops: Partial<Backend>): Backend {
  const b = Object.create(inner) as Backend;
  for (
    let p = Object.getPrototypeOf(inner);
    p !== null && p !== Object.prototype;
    p = Object.getPrototypeOf(p)
  )
    for (const key of Object.getOwnPropertyNames(p)) {
      const v: unknown = Reflect.get(inner, key);
      if (key !== 'constructor' && typeof v === 'function' && !Object.hasOwn(b, key))
        Object.defineProperty(b, key, { value: v.bind(inner), writable: true });
    }
  return Object.assign(b, ops);
}

/** What a defect allocates, kept reachable so that the compiler cannot leave the allocation out. */
const kept: { last: unknown; all: unknown[] } = { last: null, all: [] };

describe('the steady-state memory check fails on backends that allocate a little per call', () => {
  const gc = (globalThis as { gc?: () => void }).gc;
  const heapUsed = () => getHeapStatistics().used_heap_size;
  // Each wraps the single-threaded wasm backend, which passes the check (src/wasm/memory.test.ts), so the failure
  // comes from the one defect: one small object per call of one op, the smallest leak there is.
  const defects: [string, (inner: Backend) => Partial<Backend>][] = [
    [
      'one options object copy per rope call',
      (inner) => ({
        rope(x: Tensor, cos: Tensor, sin: Tensor, o: RopeOptions) {
          kept.last = { ...o };
          inner.rope(x, cos, sin, kept.last as RopeOptions);
        },
      }),
    ],
    [
      'one typed-array view per read call',
      (inner) => ({
        read(t: Tensor, out?: Float32Array) {
          const view = out?.subarray(0, t.size);
          kept.last = view;
          inner.read(t, view);
          return out ?? inner.read(t);
        },
      }),
    ],
    [
      'one small record per argmax call, kept in a list',
      (inner) => ({
        argmax(x: Tensor, row?: number) {
          const i = inner.argmax(x, row);
          kept.all.push({ i });
          return i;
        },
      }),
    ],
  ];

  for (const [what, ops] of defects)
    it(`${what}: fails`, async () => {
      const inner = await createWasmBackend({ threads: 1 });
      try {
        expect(() => checkSteadyStateMemory(withOps(inner, ops(inner)), { heapUsed, gc })).toThrow(
          /an op allocates per call/,
        );
      } finally {
        kept.last = null;
        kept.all = [];
        inner.dispose();
      }
    });

  it('an intact wrapper passes (the failures come from the defects)', async () => {
    const inner = await createWasmBackend({ threads: 1 });
    try {
      checkSteadyStateMemory(withOps(inner, {}), { heapUsed, gc });
    } finally {
      inner.dispose();
    }
  });
});
