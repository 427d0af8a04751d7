/**
 * GGML block formats: weights stored exactly as GGUF files hold them (the formats of llama.cpp), uploaded with
 * `Backend.uploadGgml` and used by `matmul` and `embedding` like any other weight.
 *
 * A `[rows, cols]` weight (`[out, in]` for a linear layer; GGUF `dims = [cols, rows]`) is `rows` rows of
 * `cols / QK` blocks, back to back, with no padding: row r starts at byte `r · (cols / QK) · BYTES`. Within a block,
 * element i (0 ≤ i < QK) is the block's element `blockIndex · QK + i` of its row. All multi-byte fields are
 * little-endian; `f16` is IEEE half precision (its value exactly, subnormals included). Every format decodes to
 * `value = s · c + b` with an unsigned integer code `c` and the scale `s` and offset `b` of the element's sub-block
 * (`dequantizeGgmlRow` is the reference decoder; `ggmlBlockAffine` gives the codes, `s` and `b` of a block).
 *
 * 32-element blocks (one sub-block): `qs[j]` holds element j in its low nibble and element j + 16 in its high nibble
 * (`lo(e)` below = that nibble).
 * - **Q4_0** (18 bytes): `d: f16` at 0, `qs[16]` at 2. `c = lo(e)`, value `d · (c − 8)`.
 * - **Q4_1** (20): `d: f16` at 0, `m: f16` at 2, `qs[16]` at 4. Value `d · c + m`.
 * - **Q5_0** (22): `d` at 0, `qh: u32` at 2, `qs[16]` at 6. `c = lo(e) + 16 · bit e of qh`, value `d · (c − 16)`.
 * - **Q5_1** (24): `d` at 0, `m` at 2, `qh: u32` at 4, `qs[16]` at 8. Value `d · c + m`.
 * - **Q8_0** (34): `d` at 0, `qs[32]: int8` at 2. Value `d · qs[e]`.
 *
 * 256-element blocks ("K-quants"):
 * - **Q2_K** (84): `scales[16]` at 0, `qs[64]` at 16, `d: f16` at 80, `dmin: f16` at 82. Element
 *   `e = 128n + 32j + 16h + l` (n < 2, j < 4, h < 2, l < 16): `c = (qs[32n + 16h + l] >> 2j) & 3`; its sub-block
 *   `t = e / 16` has `sc = scales[t] & 15`, `m = scales[t] >> 4`; value `d · sc · c − dmin · m`.
 * - **Q3_K** (110): `hmask[32]` at 0, `qs[64]` at 32, `scales[12]` at 96, `d: f16` at 108. Element
 *   `e = 128n + 32j + 16h + l`: `c = ((qs[32n + 16h + l] >> 2j) & 3) + 4 · ((hmask[16h + l] >> (4n + j)) & 1)`. The 16
 *   6-bit scales, with `S = scales` and k < 4: `sc[k] = (S[k] & 15) | (S[8+k] & 3) << 4`,
 *   `sc[4+k] = (S[4+k] & 15) | ((S[8+k] >> 2) & 3) << 4`, `sc[8+k] = (S[k] >> 4) | ((S[8+k] >> 4) & 3) << 4`,
 *   `sc[12+k] = (S[4+k] >> 4) | (S[8+k] >> 6) << 4`. Value `d · (sc[e / 16] − 32) · (c − 4)`.
 * - **Q4_K** (144): `d: f16` at 0, `dmin: f16` at 2, `scales[12]` at 4, `qs[128]` at 16. Element
 *   `e = 64j + 32h + l` (j < 4, h < 2, l < 32): `c = h ? qs[32j + l] >> 4 : qs[32j + l] & 15`. Sub-block `t = e / 32`
 *   (8 of 32) has 6-bit `sc` and `m` from `q = scales`: for t < 4 `sc = q[t] & 63`, `m = q[t + 4] & 63`; else
 *   `sc = (q[t + 4] & 15) | (q[t − 4] >> 6) << 4`, `m = (q[t + 4] >> 4) | (q[t] >> 6) << 4`. Value `d · sc · c − dmin · m`.
 * - **Q5_K** (176): `d` at 0, `dmin` at 2, `scales[12]` at 4, `qh[32]` at 16, `qs[128]` at 48. As Q4_K, with
 *   `c += 16 · ((qh[l] >> (2j + h)) & 1)`.
 * - **Q6_K** (210): `ql[128]` at 0, `qh[64]` at 128, `scales[16]: int8` at 192, `d: f16` at 208. Element
 *   `e = 128n + 32q + l` (n < 2, q < 4, l < 32): `c = lo | hi << 4` with `lo = ql[64n + 32(q & 1) + l]`'s low nibble
 *   for q < 2 and high nibble for q ≥ 2, `hi = (qh[32n + l] >> 2q) & 3`. Value `d · scales[e / 16] · (c − 32)`.
 *
 * In affine form (exact in f32): Q4_0 `s = d, b = −8d`; Q4_1/Q5_1 `s = d, b = m`; Q5_0 `s = d, b = −16d`; Q8_0
 * `c = q + 128, s = d, b = −128d`; Q2_K/Q4_K/Q5_K `s = d·sc, b = −dmin·m`; Q3_K `s = d·(sc − 32), b = −4s`; Q6_K
 * `s = d·sc, b = −32s`.
 */
import type { GgmlBlockType } from '@mnemo/kernels';
import type { Tensor, Weight } from './tensor';

export {
  dequantizeGgmlRow,
  GGML_BLOCK_TYPES,
  type GgmlBlockInfo,
  type GgmlBlockType,
  ggmlBlockAffine,
  ggmlRowBytes,
  isGgmlBlockType,
} from '@mnemo/kernels';

/**
 * A weight matrix `[rows, cols]` in a GGML block format (see the module docs for the layouts): `blocks` is a u8 tensor
 * `[rows, rowBytes]` holding the rows of blocks as they are in the file.
 */
export class GgmlTensor {
  readonly kind = 'ggml' as const;
  constructor(
    readonly type: GgmlBlockType,
    readonly shape: readonly [rows: number, cols: number],
    /** u8 `[rows, cols / blockSize · blockBytes]`. */
    readonly blocks: Tensor,
  ) {}

  get backendName(): string {
    return this.blocks.backendName;
  }

  toString(): string {
    return `GgmlTensor<${this.type}>[${this.shape.join(', ')}]`;
  }
}

export function isGgml(w: Weight): w is GgmlTensor {
  return w instanceof GgmlTensor;
}
