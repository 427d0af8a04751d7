import type { CacheKind, LayerState, RowData } from './contract';
import { type KvStorage, quantOf } from './storage';

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

/** Checks that `data` holds exactly `rows` rows of `width` values stored as `storage`. */
export function checkRows(
  kind: string,
  name: string,
  data: RowData,
  rows: number,
  width: number,
  storage: KvStorage,
): void {
  if (data === null || typeof data !== 'object')
    throw new CacheStateError(`${kind} state: ${name} are missing`);
  const q = quantOf(storage);
  if (q === null) {
    if (data.format !== storage) throw new CacheStateError(`${kind} state: ${name} must be ${storage} rows`);
  } else if (data.format !== 'quantized')
    throw new CacheStateError(`${kind} state: ${name} must be quantized rows`);
  else if (data.bits !== q.bits || data.groupSize !== q.groupSize)
    throw new CacheStateError(
      `${kind} state: ${name} are q${data.bits}g${data.groupSize}, the cache is q${q.bits}g${q.groupSize}`,
    );
  if (data.rows !== rows)
    throw new CacheStateError(`${kind} state: ${name} hold ${data.rows} rows, expected ${rows}`);
  if (data.format === 'f32' || data.format === 'f16') {
    const type = data.format === 'f32' ? Float32Array : Uint16Array;
    if (!(data.data instanceof type) || data.data.length !== rows * width)
      throw new CacheStateError(
        `${kind} state: ${name} hold ${data.data?.length ?? 'no'} values, expected ${rows} x ${width} = ${rows * width}`,
      );
    return;
  }
  const words = (rows * width * data.bits) / 32;
  const groups = (rows * width) / data.groupSize;
  if (!(data.packed instanceof Uint32Array) || data.packed.length !== words)
    throw new CacheStateError(`${kind} state: ${name}.packed must be ${words} uint32 words`);
  for (const part of ['scales', 'biases'] as const) {
    const a = data[part];
    if (!(a instanceof Float32Array) || a.length !== groups)
      throw new CacheStateError(`${kind} state: ${name}.${part} must be ${groups} f32 values`);
  }
}
