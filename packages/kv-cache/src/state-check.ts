import type { CacheKind, LayerState, RowData } from './contract';

/** A state that does not describe a cache this package can rebuild. */
export class CacheStateError extends TypeError {
  override readonly name = 'CacheStateError';
}

function isCount(n: unknown): n is number {
  return typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;
}

/** Checks kind, shape and offset of a state handed to `fromState`. */
export function checkStateHeader(kind: CacheKind, state: LayerState): void {
  if (state === null || typeof state !== 'object') throw new CacheStateError(`${kind} state: not an object`);
  if (state.kind !== kind) throw new CacheStateError(`${kind} state: kind is '${String(state.kind)}'`);
  const s = state.shape;
  if (
    s === null ||
    typeof s !== 'object' ||
    !isCount(s.nKvHeads) ||
    !isCount(s.headDim) ||
    s.nKvHeads < 1 ||
    s.headDim < 1
  )
    throw new CacheStateError(`${kind} state: bad shape ${JSON.stringify(s)}`);
  if (!isCount(state.offset)) throw new CacheStateError(`${kind} state: bad offset ${String(state.offset)}`);
}

/** Checks that `data` holds exactly `rows` exact f32 rows of `width`. */
export function checkDenseRows(kind: string, name: string, data: RowData, rows: number, width: number): void {
  if (data === null || typeof data !== 'object' || data.format !== 'f32')
    throw new CacheStateError(`${kind} state: ${name} must be f32 rows`);
  if (data.rows !== rows)
    throw new CacheStateError(`${kind} state: ${name} hold ${data.rows} rows, expected ${rows}`);
  if (!(data.data instanceof Float32Array) || data.data.length !== rows * width)
    throw new CacheStateError(
      `${kind} state: ${name} hold ${data.data?.length ?? 'no'} values, expected ${rows} x ${width} = ${rows * width}`,
    );
}

/** Checks that `data` holds exactly `rows` quantized rows of `width` with the given layout. */
export function checkQuantizedRows(
  kind: string,
  name: string,
  data: RowData,
  rows: number,
  width: number,
  bits: number,
  groupSize: number,
): void {
  if (data === null || typeof data !== 'object' || data.format !== 'quantized')
    throw new CacheStateError(`${kind} state: ${name} must be quantized rows`);
  if (data.bits !== bits || data.groupSize !== groupSize)
    throw new CacheStateError(
      `${kind} state: ${name} are q${data.bits}g${data.groupSize}, the cache is q${bits}g${groupSize}`,
    );
  if (data.rows !== rows)
    throw new CacheStateError(`${kind} state: ${name} hold ${data.rows} rows, expected ${rows}`);
  const words = (rows * width * bits) / 32;
  const groups = (rows * width) / groupSize;
  if (!(data.packed instanceof Uint32Array) || data.packed.length !== words)
    throw new CacheStateError(`${kind} state: ${name}.packed must be ${words} uint32 words`);
  for (const part of ['scales', 'biases'] as const) {
    const a = data[part];
    if (!(a instanceof Float32Array) || a.length !== groups)
      throw new CacheStateError(`${kind} state: ${name}.${part} must be ${groups} f32 values`);
  }
}
