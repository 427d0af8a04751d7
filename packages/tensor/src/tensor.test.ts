import { describe, expect, it } from 'vitest';
import { Tensor } from './tensor';

describe('Tensor', () => {
  it('computes size, rows and cols', () => {
    const t = new Tensor('js', 'f32', [3, 4, 5], {});
    expect(t.size).toBe(60);
    expect(t.rows).toBe(3);
    expect(t.cols).toBe(20);
    expect(t.byteLength).toBe(240);
  });
  it('rejects bad dimensions', () => {
    expect(() => new Tensor('js', 'f32', [2, -1], {})).toThrow(/bad dimension/);
  });
});
