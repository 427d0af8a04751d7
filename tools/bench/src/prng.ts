/**
 * Deterministic random numbers for the synthetic weights: xoshiro128** seeded per tensor (from the global seed and
 * the tensor's name), normals by Box–Muller. The same seed and name always give the same values, on any machine.
 */
export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;
  private spare = Number.NaN;

  constructor(seed: number, name = '') {
    // splitmix32 over the seed and an FNV-1a hash of the name fills the state.
    let h = 0x811c9dc5 ^ (seed >>> 0);
    for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
    let s = h >>> 0;
    const next = () => {
      s = (s + 0x9e3779b9) | 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.a = next();
    this.b = next();
    this.c = next();
    this.d = next() | 1;
  }

  /** A uniform uint32. */
  u32(): number {
    const r = Math.imul(this.b, 5);
    const result = Math.imul((r << 7) | (r >>> 25), 9) >>> 0;
    const t = this.b << 9;
    this.c ^= this.a;
    this.d ^= this.b;
    this.b ^= this.c;
    this.a ^= this.d;
    this.c ^= t;
    this.d = (this.d << 11) | (this.d >>> 21);
    return result;
  }

  /** Uniform in (0, 1) (never 0). */
  uniform(): number {
    return ((this.u32() >>> 8) + 0.5) / 16777216;
  }

  /** Integer in [lo, hi). */
  int(lo: number, hi: number): number {
    return lo + Math.floor((this.u32() / 4294967296) * (hi - lo));
  }

  /** A standard normal value. */
  normal(): number {
    if (!Number.isNaN(this.spare)) {
      const v = this.spare;
      this.spare = Number.NaN;
      return v;
    }
    const r = Math.sqrt(-2 * Math.log(this.uniform()));
    const t = 2 * Math.PI * this.uniform();
    this.spare = r * Math.sin(t);
    return r * Math.cos(t);
  }

  /** Fills `out` with `mean + std * N(0, 1)` (rounded to f32). */
  fillNormal(out: Float32Array, mean: number, std: number): void {
    const n = out.length;
    let i = 0;
    if (!Number.isNaN(this.spare) && n > 0) out[i++] = mean + std * this.normal();
    for (; i + 1 < n; i += 2) {
      const r = std * Math.sqrt(-2 * Math.log(this.uniform()));
      const t = 2 * Math.PI * this.uniform();
      out[i] = mean + r * Math.cos(t);
      out[i + 1] = mean + r * Math.sin(t);
    }
    if (i < n) out[i] = mean + std * this.normal();
  }
}
