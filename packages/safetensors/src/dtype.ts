/** Element types named as in safetensors headers. */
export type SafetensorsDType =
  | 'BOOL'
  | 'U8'
  | 'I8'
  | 'I16'
  | 'U16'
  | 'F16'
  | 'BF16'
  | 'I32'
  | 'U32'
  | 'F32'
  | 'F64'
  | 'I64'
  | 'U64'
  | 'C64'
  | 'F8_E4M3'
  | 'F8_E5M2'
  | 'F8_E8M0'
  | 'F6_E2M3'
  | 'F6_E3M2'
  | 'F4';

/**
 * Bits per element. Sub-byte types (F4, F6_*) are packed; a tensor of them must fill whole bytes, as the reference
 * implementation requires.
 */
export const SAFETENSORS_DTYPE_BITS: Readonly<Record<SafetensorsDType, number>> = {
  BOOL: 8,
  U8: 8,
  I8: 8,
  I16: 16,
  U16: 16,
  F16: 16,
  BF16: 16,
  I32: 32,
  U32: 32,
  F32: 32,
  F64: 64,
  I64: 64,
  U64: 64,
  C64: 64,
  F8_E4M3: 8,
  F8_E5M2: 8,
  F8_E8M0: 8,
  F6_E2M3: 6,
  F6_E3M2: 6,
  F4: 4,
};

export const SAFETENSORS_DTYPES: readonly SafetensorsDType[] = Object.keys(
  SAFETENSORS_DTYPE_BITS,
) as SafetensorsDType[];

export function isSafetensorsDType(x: unknown): x is SafetensorsDType {
  return typeof x === 'string' && Object.hasOwn(SAFETENSORS_DTYPE_BITS, x);
}

/** mnemo's tensor dtypes (the same strings as `DType` in @mnemo/tensor, repeated here to avoid the dependency). */
export type MnemoDType = 'f32' | 'f16' | 'bf16' | 'u32' | 'i32' | 'u8';

const TO_MNEMO: Partial<Record<SafetensorsDType, MnemoDType>> = {
  F32: 'f32',
  F16: 'f16',
  BF16: 'bf16',
  U32: 'u32',
  I32: 'i32',
  U8: 'u8',
};

const FROM_MNEMO: Readonly<Record<MnemoDType, SafetensorsDType>> = {
  f32: 'F32',
  f16: 'F16',
  bf16: 'BF16',
  u32: 'U32',
  i32: 'I32',
  u8: 'U8',
};

/** The mnemo dtype with the same storage as a safetensors dtype, or `undefined` where mnemo has none. */
export function toMnemoDType(dtype: string): MnemoDType | undefined {
  return isSafetensorsDType(dtype) ? TO_MNEMO[dtype] : undefined;
}

/** The safetensors spelling of a mnemo dtype. */
export function fromMnemoDType(dtype: MnemoDType): SafetensorsDType {
  return FROM_MNEMO[dtype];
}
