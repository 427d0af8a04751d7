import { type Backend, createReferenceBackend } from '@mnemo/tensor';
import { conformanceCases } from '@mnemo/tensor/conformance';
import { describe, expect, it } from 'vitest';
import { createNativeBackend, nativeLevels } from './index';

// Every ISA level of this CPU gives bit-for-bit the same results on every conformance case: each value the suite
// reads back from the backend (read, readBytes, argmax) is recorded, in order, and the records of all levels compared.
const levels = nativeLevels()
  .filter((l) => l.supported)
  .map((l) => l.name);

type Record = Float32Array | Uint8Array | number;

/** `b` with every read, readBytes and argmax result appended to `log`. */
function recording(b: Backend, log: Record[]): Backend {
  return new Proxy(b, {
    get(target, prop) {
      const v = Reflect.get(target, prop, target) as unknown;
      if (typeof v !== 'function') return v;
      if (prop === 'read' || prop === 'readBytes')
        return (...args: unknown[]) => {
          const r = (v as (...a: unknown[]) => Float32Array | Uint8Array).apply(target, args);
          log.push(r.slice());
          return r;
        };
      if (prop === 'argmax')
        return (...args: unknown[]) => {
          const r = (v as (...a: unknown[]) => number).apply(target, args);
          log.push(r);
          return r;
        };
      return (v as (...a: unknown[]) => unknown).bind(target);
    },
  });
}

async function runAll(isa: string, int8Activations: boolean): Promise<Map<string, Record[]>> {
  const out = new Map<string, Record[]>();
  const [b, other, ref] = await Promise.all([
    createNativeBackend({ isa, threads: 2, int8Activations }),
    createNativeBackend({ isa, threads: 2, int8Activations }),
    createReferenceBackend(),
  ]);
  try {
    for (const c of conformanceCases()) {
      const log: Record[] = [];
      await c.run(recording(b, log), ref, other);
      out.set(c.name, log);
    }
  } finally {
    b.dispose();
    other.dispose();
    ref.dispose();
  }
  return out;
}

function bits(r: Record): Uint8Array | number {
  return typeof r === 'number' ? r : new Uint8Array(r.buffer, r.byteOffset, r.byteLength);
}

describe.skipIf(levels.length < 2)(`ISA levels ${levels.join(', ')}: bitwise equal`, () => {
  for (const int8 of [false, true])
    it(`on every conformance case${int8 ? ' (int8 activations)' : ''}`, async () => {
      const base = await runAll(levels[0]!, int8);
      let values = 0;
      for (const isa of levels.slice(1)) {
        const got = await runAll(isa, int8);
        for (const [name, want] of base) {
          const have = got.get(name)!;
          expect(have.length, `${name}: number of reads on ${isa}`).toBe(want.length);
          for (let i = 0; i < want.length; i++) {
            const w = bits(want[i]!);
            const h = bits(have[i]!);
            if (typeof w === 'number') expect(h, `${name}: argmax #${i} on ${isa}`).toBe(w);
            else {
              values += w.length;
              expect(
                Buffer.compare(Buffer.from(h as Uint8Array), Buffer.from(w)),
                `${name}: read #${i} on ${isa} vs ${levels[0]}`,
              ).toBe(0);
            }
          }
        }
      }
      expect(values).toBeGreaterThan(100_000);
    });
});
