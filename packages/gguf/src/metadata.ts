import { GgufError } from './errors';
import {
  GGUF_VALUE_TYPE_NAMES,
  type GgufArray,
  type GgufArrayItems,
  type GgufValue,
  GgufValueType,
} from './types';

const INTEGER_TYPES: ReadonlySet<number> = new Set([
  GgufValueType.UINT8,
  GgufValueType.INT8,
  GgufValueType.UINT16,
  GgufValueType.INT16,
  GgufValueType.UINT32,
  GgufValueType.INT32,
  GgufValueType.UINT64,
  GgufValueType.INT64,
]);

/**
 * The metadata of a GGUF file with typed readers. Each reader returns the fallback when the key is absent (or throws
 * `NOT_FOUND` without one) and throws `BAD_VALUE`, naming the key and the file, when the stored type does not fit.
 */
export class GgufMetadata {
  constructor(
    readonly entries: ReadonlyMap<string, GgufValue>,
    readonly file: string,
  ) {}

  has(key: string): boolean {
    return this.entries.has(key);
  }

  get(key: string): GgufValue | undefined {
    return this.entries.get(key);
  }

  keys(): string[] {
    return [...this.entries.keys()];
  }

  private value(key: string, fallback: unknown): GgufValue | undefined {
    const v = this.entries.get(key);
    if (v === undefined && fallback === undefined)
      throw new GgufError('NOT_FOUND', 'the file has no such metadata key', { file: this.file, key });
    return v;
  }

  private bad(key: string, want: string, v: GgufValue): GgufError {
    return new GgufError('BAD_VALUE', `must be ${want}, got a ${GGUF_VALUE_TYPE_NAMES[v.type]}`, {
      file: this.file,
      key,
    });
  }

  string(key: string, fallback?: string): string {
    const v = this.value(key, fallback);
    if (v === undefined) return fallback!;
    if (v.type !== GgufValueType.STRING) throw this.bad(key, 'a string', v);
    return v.value;
  }

  /** An integer of any width as a number (64-bit values must fit a safe integer). */
  int(key: string, fallback?: number): number {
    const v = this.value(key, fallback);
    if (v === undefined) return fallback!;
    if (!INTEGER_TYPES.has(v.type)) throw this.bad(key, 'an integer', v);
    const n = typeof v.value === 'bigint' ? v.value : BigInt(v.value as number);
    if (n > BigInt(Number.MAX_SAFE_INTEGER) || n < BigInt(Number.MIN_SAFE_INTEGER))
      throw new GgufError('TOO_LARGE', `${n} does not fit a safe integer`, { file: this.file, key });
    return Number(n);
  }

  /** A float or an integer, as a number. */
  number(key: string, fallback?: number): number {
    const v = this.value(key, fallback);
    if (v === undefined) return fallback!;
    if (v.type === GgufValueType.FLOAT32 || v.type === GgufValueType.FLOAT64) return v.value;
    if (INTEGER_TYPES.has(v.type)) return this.int(key);
    throw this.bad(key, 'a number', v);
  }

  bool(key: string, fallback?: boolean): boolean {
    const v = this.value(key, fallback);
    if (v === undefined) return fallback!;
    if (v.type !== GgufValueType.BOOL) throw this.bad(key, 'a bool', v);
    return v.value;
  }

  /** An array value; `undefined` when absent. */
  array(key: string): GgufArray | undefined {
    const v = this.entries.get(key);
    if (v === undefined) return undefined;
    if (v.type !== GgufValueType.ARRAY) throw this.bad(key, 'an array', v);
    return v.value;
  }

  /** An array of strings; `undefined` when absent. */
  strings(key: string): string[] | undefined {
    const a = this.array(key);
    if (a === undefined) return undefined;
    if (a.itemType !== GgufValueType.STRING)
      throw new GgufError(
        'BAD_VALUE',
        `must be an array of strings, got an array of ${GGUF_VALUE_TYPE_NAMES[a.itemType]}`,
        { file: this.file, key },
      );
    return a.items as string[];
  }

  /** An array of numbers of any numeric type (64-bit integers must be safe), as a Float64Array; `undefined` when absent. */
  numbers(key: string): Float64Array | undefined {
    const a = this.array(key);
    if (a === undefined) return undefined;
    const items: GgufArrayItems = a.items;
    if (items instanceof BigInt64Array || items instanceof BigUint64Array) {
      const out = new Float64Array(items.length);
      for (let i = 0; i < items.length; i++) {
        const n = items[i]!;
        if (n > BigInt(Number.MAX_SAFE_INTEGER) || n < BigInt(Number.MIN_SAFE_INTEGER))
          throw new GgufError('TOO_LARGE', `item ${i} (${n}) does not fit a safe integer`, {
            file: this.file,
            key,
          });
        out[i] = Number(n);
      }
      return out;
    }
    if (ArrayBuffer.isView(items)) return Float64Array.from(items as ArrayLike<number>);
    throw new GgufError(
      'BAD_VALUE',
      `must be an array of numbers, got an array of ${GGUF_VALUE_TYPE_NAMES[a.itemType]}`,
      { file: this.file, key },
    );
  }
}
