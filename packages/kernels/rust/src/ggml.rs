//! GGML block formats (as stored in GGUF files): Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K.
//!
//! Every format is read as *unsigned integer codes with an affine scale per sub-block*: element value
//! `w = s · c + b`, `c` an unsigned code, `s`/`b` f32 values of the element's sub-block (16 or 32 elements):
//!
//! | type | block | sub | code c                           | s            | b              |
//! |------|-------|-----|----------------------------------|--------------|----------------|
//! | Q4_0 | 32    | 32  | 4-bit q                          | d            | −8·d           |
//! | Q4_1 | 32    | 32  | 4-bit q                          | d            | m              |
//! | Q5_0 | 32    | 32  | 5-bit q                          | d            | −16·d          |
//! | Q5_1 | 32    | 32  | 5-bit q                          | d            | m              |
//! | Q8_0 | 32    | 32  | int8 q + 128                     | d            | −128·d         |
//! | Q2_K | 256   | 16  | 2-bit q                          | d·sc (4-bit) | −dmin·m (4-bit)|
//! | Q3_K | 256   | 16  | 2 low bits + 4·hmask bit (0..7)  | d·(sc − 32)  | −4·s           |
//! | Q4_K | 256   | 32  | 4-bit q                          | d·sc (6-bit) | −dmin·m (6-bit)|
//! | Q5_K | 256   | 32  | 4 low bits + 16·qh bit           | d·sc         | −dmin·m        |
//! | Q6_K | 256   | 16  | 4 low bits + 16·(2 qh bits)      | d·sc (int8)  | −32·s          |
//!
//! `s` and `b` are exact in f32 (an f16 times a small integer). The block layouts are documented in
//! `@mnemo/tensor`'s `ggml.ts`; [`Fmt::codes`] yields the 16 codes of elements `16g .. 16g + 16` of a block as bytes in
//! element order.
//!
//! Exact matmul, per output element (r, o), sub-blocks t ascending (groups of 16 ascending inside a sub-block):
//!   D_t  = Σ_{i∈t} c_i·x_i   as 4 lane partials in two chains: products of byte position k of each lane go to chain
//!                             k mod 2 (the first group of a sub-block assigns, later ones add), D_t = a0 + a1
//!   acc  = Σ_t D_t · s_t      (v128 chain)
//!   y    = (hsum(acc) + Σ_t b_t · X_t) + bias[o],   X_t = Σ_{i∈t} x_i (canonical sum, once per input row)
//! with `Σ_t b_t · X_t` the quad chain of the MLX path (`quant::bias_term`). Codes become floats with the masking trick
//! of the MLX path: a lane (u32) holds 4 code bytes; `and`-masking byte k leaves `c · 2^(8k)`, converted exactly (byte 3
//! is shifted down instead); the input row is pre-permuted once per row into that lane order and pre-scaled by
//! `2^(−8k)`, so each product is exactly `c·x` as rounded. Every operation depends only on the row, the weight row and
//! the format, never on `rows` or tiling: the decode (rows < 4) and prefill paths run the same sequence.
use crate::dense::row_tile;
use crate::quant::bias_term;
use crate::simd::*;
use core::arch::wasm32::*;

/// Receives the codes of a block, group by group (16 elements each) in element order, for O weight rows at once.
pub(crate) trait Visit<const O: usize> {
    /// Group `gg` of sub-block `t` (elements `16·(t·SUB/16 + gg) ..` of the block): `c[o]` holds weight row o's 16
    /// codes, one per byte, in element order.
    unsafe fn group(&mut self, t: usize, gg: usize, c: &[v128; O]);
}

/// Visits the `nb` blocks starting at `b[o]` (one row of blocks per output); `spb` = `F::QK / F::SUB`, passed in
/// so that the sub-block loop keeps a runtime trip count (unrolled groups make V8 hoist and spill loads).
#[inline(always)]
pub(crate) unsafe fn visit_blocks<F: Fmt, const O: usize, V: Visit<O>>(
    b: &[*const u8; O],
    nb: usize,
    spb: usize,
    v: &mut V,
    next_block: impl Fn(&mut V),
) {
    let mut blocks = *b;
    for _ in 0..nb {
        for t in 0..spb {
            for gg in 0..F::SUB / 16 {
                let g = t * (F::SUB / 16) + gg;
                let mut c = [zero(); O];
                for o in 0..O {
                    c[o] = F::codes(blocks[o], g);
                }
                v.group(t, gg, &c);
            }
        }
        for o in 0..O {
            blocks[o] = blocks[o].add(F::BYTES);
        }
        next_block(v);
    }
}

/// One GGML block format (see the module docs).
pub(crate) trait Fmt {
    /// Elements per block.
    const QK: usize;
    /// Bytes per block.
    const BYTES: usize;
    /// Elements per scale (16 or 32).
    const SUB: usize;
    /// `s` and `b` of each of the `QK / SUB` sub-blocks of the block at `blk`.
    unsafe fn scales(blk: *const u8, sf: *mut f32, bf: *mut f32);
    /// The codes of elements `16g .. 16g + 16` of the block at `blk`, one per byte, in element order. Branch-free:
    /// `g` only moves offsets and shift amounts.
    unsafe fn codes(blk: *const u8, g: usize) -> v128;
}

#[inline(always)]
unsafe fn f16at(p: *const u8) -> f32 {
    h2f_1(u16::from_le_bytes([*p, *p.add(1)]))
}

#[inline(always)]
unsafe fn ld16(p: *const u8) -> v128 {
    v128_load(p as *const v128)
}

#[inline(always)]
fn lo4(v: v128) -> v128 {
    v128_and(v, u8x16_splat(0x0f))
}

#[inline(always)]
fn hi4(v: v128) -> v128 {
    v128_and(u16x8_shr(v, 4), u8x16_splat(0x0f))
}

/// Bits `t .. t + width` of each byte of `v` (`mask` = 2^width − 1, t + width <= 8), at bit 0: 16-bit shifts then a
/// byte mask, which drops whatever the neighbouring byte shifted in.
#[inline(always)]
fn bits(v: v128, t: usize, mask: u8) -> v128 {
    v128_and(u16x8_shr(v, t as u32), u8x16_splat(mask))
}

/// 0x10 in byte e where bit e of `h` (16 bits) is set.
#[inline(always)]
fn high_bits16(h: u32) -> v128 {
    let s = i8x16_swizzle(u32x4_splat(h), i8x16(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1));
    let m = v128_and(s, u8x16(1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128));
    v128_andnot(u8x16_splat(0x10), i8x16_eq(m, u8x16_splat(0)))
}

#[inline(always)]
unsafe fn u32at(p: *const u8) -> u32 {
    u32::from_le_bytes([*p, *p.add(1), *p.add(2), *p.add(3)])
}

pub(crate) struct Q4_0;
pub(crate) struct Q4_1;
pub(crate) struct Q5_0;
pub(crate) struct Q5_1;
pub(crate) struct Q8_0;
pub(crate) struct Q2K;
pub(crate) struct Q3K;
pub(crate) struct Q4K;
pub(crate) struct Q5K;
pub(crate) struct Q6K;

/// Blocks of 32 whose elements j and j + 16 are the low and high nibbles of byte j of the 16 at `qs` (Q4_0, Q4_1,
/// and the low bits of Q5_0, Q5_1), plus 16 · bit e of the 32-bit `qh` for element e when given.
#[inline(always)]
unsafe fn nibbles32(blk: *const u8, g: usize, qs: usize, qh: Option<usize>) -> v128 {
    let c = bits(ld16(blk.add(qs)), 4 * g, 15);
    match qh {
        Some(h) => v128_or(c, high_bits16((u32at(blk.add(h)) >> (16 * g)) & 0xffff)),
        None => c,
    }
}

impl Fmt for Q4_0 {
    const QK: usize = 32;
    const BYTES: usize = 18;
    const SUB: usize = 32;
    #[inline(always)]
    unsafe fn scales(blk: *const u8, sf: *mut f32, bf: *mut f32) {
        let d = f16at(blk);
        *sf = d;
        *bf = -8.0 * d;
    }
    #[inline(always)]
    unsafe fn codes(blk: *const u8, g: usize) -> v128 {
        nibbles32(blk, g, 2, None)
    }
}

impl Fmt for Q4_1 {
    const QK: usize = 32;
    const BYTES: usize = 20;
    const SUB: usize = 32;
    #[inline(always)]
    unsafe fn scales(blk: *const u8, sf: *mut f32, bf: *mut f32) {
        *sf = f16at(blk);
        *bf = f16at(blk.add(2));
    }
    #[inline(always)]
    unsafe fn codes(blk: *const u8, g: usize) -> v128 {
        nibbles32(blk, g, 4, None)
    }
}

impl Fmt for Q5_0 {
    const QK: usize = 32;
    const BYTES: usize = 22;
    const SUB: usize = 32;
    #[inline(always)]
    unsafe fn scales(blk: *const u8, sf: *mut f32, bf: *mut f32) {
        let d = f16at(blk);
        *sf = d;
        *bf = -16.0 * d;
    }
    #[inline(always)]
    unsafe fn codes(blk: *const u8, g: usize) -> v128 {
        nibbles32(blk, g, 6, Some(2))
    }
}

impl Fmt for Q5_1 {
    const QK: usize = 32;
    const BYTES: usize = 24;
    const SUB: usize = 32;
    #[inline(always)]
    unsafe fn scales(blk: *const u8, sf: *mut f32, bf: *mut f32) {
        *sf = f16at(blk);
        *bf = f16at(blk.add(2));
    }
    #[inline(always)]
    unsafe fn codes(blk: *const u8, g: usize) -> v128 {
        nibbles32(blk, g, 8, Some(4))
    }
}

impl Fmt for Q8_0 {
    const QK: usize = 32;
    const BYTES: usize = 34;
    const SUB: usize = 32;
    #[inline(always)]
    unsafe fn scales(blk: *const u8, sf: *mut f32, bf: *mut f32) {
        let d = f16at(blk);
        *sf = d;
        *bf = -128.0 * d;
    }
    #[inline(always)]
    unsafe fn codes(blk: *const u8, g: usize) -> v128 {
        v128_xor(ld16(blk.add(2 + 16 * g)), u8x16_splat(0x80))
    }
}

impl Fmt for Q2K {
    const QK: usize = 256;
    const BYTES: usize = 84;
    const SUB: usize = 16;
    #[inline(always)]
    unsafe fn scales(blk: *const u8, sf: *mut f32, bf: *mut f32) {
        let d = f16at(blk.add(80));
        let dmin = f16at(blk.add(82));
        for i in 0..16 {
            let sc = *blk.add(i);
            *sf.add(i) = d * (sc & 15) as f32;
            *bf.add(i) = -(dmin * (sc >> 4) as f32);
        }
    }
    #[inline(always)]
    unsafe fn codes(blk: *const u8, g: usize) -> v128 {
        // g = 8n + 2j + h: element 128n + 32j + 16h + l = bits 2j of qs[32n + 16h + l]
        let (n, j, h) = (g >> 3, (g >> 1) & 3, g & 1);
        bits(ld16(blk.add(16 + 32 * n + 16 * h)), 2 * j, 3)
    }
}

impl Fmt for Q3K {
    const QK: usize = 256;
    const BYTES: usize = 110;
    const SUB: usize = 16;
    #[inline(always)]
    unsafe fn scales(blk: *const u8, sf: *mut f32, bf: *mut f32) {
        let s = blk.add(96);
        let d = f16at(blk.add(108));
        for k in 0..4 {
            let hi = *s.add(8 + k);
            let sc = [
                (*s.add(k) & 15) | ((hi & 3) << 4),
                (*s.add(4 + k) & 15) | (((hi >> 2) & 3) << 4),
                (*s.add(k) >> 4) | (((hi >> 4) & 3) << 4),
                (*s.add(4 + k) >> 4) | ((hi >> 6) << 4),
            ];
            for q in 0..4 {
                let v = d * (sc[q] as i32 - 32) as f32;
                *sf.add(4 * q + k) = v;
                *bf.add(4 * q + k) = -4.0 * v;
            }
        }
    }
    #[inline(always)]
    unsafe fn codes(blk: *const u8, g: usize) -> v128 {
        // g = 8n + 2j + h: element 128n + 32j + 16h + l: bits 2j of qs[32n + 16h + l], plus 4 · bit 4n + j of
        // hmask[16h + l]
        let (n, j, h) = (g >> 3, (g >> 1) & 3, g & 1);
        let lo = bits(ld16(blk.add(32 + 32 * n + 16 * h)), 2 * j, 3);
        v128_or(lo, i16x8_shl(bits(ld16(blk.add(16 * h)), 4 * n + j, 1), 2))
    }
}

/// Scale and min `j` (0..8) of the 12 packed bytes at `q` (6 bits each), as Q4_K and Q5_K store them.
#[inline(always)]
unsafe fn scale_min_k4(j: usize, q: *const u8) -> (u8, u8) {
    if j < 4 {
        (*q.add(j) & 63, *q.add(j + 4) & 63)
    } else {
        ((*q.add(j + 4) & 15) | ((*q.add(j - 4) >> 6) << 4), (*q.add(j + 4) >> 4) | ((*q.add(j) >> 6) << 4))
    }
}

#[inline(always)]
unsafe fn k4_scales(blk: *const u8, sf: *mut f32, bf: *mut f32) {
    let d = f16at(blk);
    let dmin = f16at(blk.add(2));
    for j in 0..8 {
        let (sc, m) = scale_min_k4(j, blk.add(4));
        *sf.add(j) = d * sc as f32;
        *bf.add(j) = -(dmin * m as f32);
    }
}

/// Q4_K and Q5_K codes, g = 4j + 2h + half: element 64j + 32h + 16half + l = nibble h of qs[32j + 16half + l]
/// (+ 16 · bit 2j + h of qh[16half + l] for Q5_K).
#[inline(always)]
unsafe fn k_nibbles(blk: *const u8, g: usize, qs: usize, qh: Option<usize>) -> v128 {
    let (j, h, half) = (g >> 2, (g >> 1) & 1, g & 1);
    let c = bits(ld16(blk.add(qs + 32 * j + 16 * half)), 4 * h, 15);
    match qh {
        Some(q) => v128_or(c, i16x8_shl(bits(ld16(blk.add(q + 16 * half)), 2 * j + h, 1), 4)),
        None => c,
    }
}

impl Fmt for Q4K {
    const QK: usize = 256;
    const BYTES: usize = 144;
    const SUB: usize = 32;
    #[inline(always)]
    unsafe fn scales(blk: *const u8, sf: *mut f32, bf: *mut f32) {
        k4_scales(blk, sf, bf);
    }
    #[inline(always)]
    unsafe fn codes(blk: *const u8, g: usize) -> v128 {
        k_nibbles(blk, g, 16, None)
    }
}

impl Fmt for Q5K {
    const QK: usize = 256;
    const BYTES: usize = 176;
    const SUB: usize = 32;
    #[inline(always)]
    unsafe fn scales(blk: *const u8, sf: *mut f32, bf: *mut f32) {
        k4_scales(blk, sf, bf);
    }
    #[inline(always)]
    unsafe fn codes(blk: *const u8, g: usize) -> v128 {
        k_nibbles(blk, g, 48, Some(16))
    }
}

impl Fmt for Q6K {
    const QK: usize = 256;
    const BYTES: usize = 210;
    const SUB: usize = 16;
    #[inline(always)]
    unsafe fn scales(blk: *const u8, sf: *mut f32, bf: *mut f32) {
        let d = f16at(blk.add(208));
        for i in 0..16 {
            let v = d * (*blk.add(192 + i) as i8) as f32;
            *sf.add(i) = v;
            *bf.add(i) = -32.0 * v;
        }
    }
    #[inline(always)]
    unsafe fn codes(blk: *const u8, g: usize) -> v128 {
        // g = 8n + 2q + half: element 128n + 32q + 16half + l: nibble q >> 1 of ql[64n + 32(q & 1) + 16half + l],
        // plus 16 · bits 2q of qh[32n + 16half + l]
        let (n, q, half) = (g >> 3, (g >> 1) & 3, g & 1);
        let lo = bits(ld16(blk.add(64 * n + 32 * (q & 1) + 16 * half)), 4 * (q >> 1), 15);
        let hi = bits(ld16(blk.add(128 + 32 * n + 16 * half)), 2 * q, 3);
        v128_or(lo, i16x8_shl(hi, 4))
    }
}

/// Calls `$f::<Fmt>($args)` for the GGML type id `$ty` (2 Q4_0, 3 Q4_1, 6 Q5_0, 7 Q5_1, 8 Q8_0, 10 Q2_K, 11 Q3_K,
/// 12 Q4_K, 13 Q5_K, 14 Q6_K; the loader has checked it).
macro_rules! by_type {
    ($ty:expr, $f:ident, $($a:expr),* $(,)?) => {
        match $ty {
            2 => $f::<crate::ggml::Q4_0>($($a),*),
            3 => $f::<crate::ggml::Q4_1>($($a),*),
            6 => $f::<crate::ggml::Q5_0>($($a),*),
            7 => $f::<crate::ggml::Q5_1>($($a),*),
            8 => $f::<crate::ggml::Q8_0>($($a),*),
            10 => $f::<crate::ggml::Q2K>($($a),*),
            11 => $f::<crate::ggml::Q3K>($($a),*),
            12 => $f::<crate::ggml::Q4K>($($a),*),
            13 => $f::<crate::ggml::Q5K>($($a),*),
            _ => $f::<crate::ggml::Q6K>($($a),*),
        }
    };
}
pub(crate) use by_type;

/// Sub-blocks of a row of `n` elements, rounded up to a multiple of 4 (zero-padded arrays for the bias quad chain).
#[inline(always)]
pub(crate) fn subs_padded<F: Fmt>(n: usize) -> usize {
    (n / F::SUB + 3) & !3
}

/// `s`/`b` of every sub-block of the weight row at `w` (`nb` blocks) → `sf`/`bf`, zero-padded to `nsp`.
#[inline(always)]
pub(crate) unsafe fn row_scales<F: Fmt>(w: *const u8, nb: usize, sf: *mut f32, bf: *mut f32, nsp: usize) {
    let spb = F::QK / F::SUB;
    for b in 0..nb {
        F::scales(w.add(b * F::BYTES), sf.add(b * spb), bf.add(b * spb));
    }
    for t in nb * spb..nsp {
        *sf.add(t) = 0.0;
        *bf.add(t) = 0.0;
    }
}

// ---- exact matmul ----------------------------------------------------------------------------------------------

/// Outputs per block in the 1-row (decode) path.
const MV_O: usize = 2;
/// From this many rows on, the prefill path (rows × 1 output blocks) is used.
const PF_R: usize = 4;

/// Pre-scaling of byte position k (byte 3 is shifted down, not masked).
const KSCALE: [f32; 4] = [1.0, 1.0 / 256.0, 1.0 / 65536.0, 1.0];

/// The permuted, pre-scaled copy of one input row (`xp`) and its sub-block sums (`xg`, zero-padded to `nsp`).
unsafe fn prep_row<F: Fmt>(xp: *mut f32, xg: *mut f32, x: *const f32, n: usize, nsp: usize) {
    let ns = n / F::SUB;
    for t in 0..ns {
        *xg.add(t) = sum(x.add(t * F::SUB), F::SUB);
    }
    for t in ns..nsp {
        *xg.add(t) = 0.0;
    }
    let mut e = 0;
    while e < n {
        for k in 0..4 {
            for i in 0..4 {
                *xp.add(e + 4 * k + i) = *x.add(e + 4 * i + k) * KSCALE[k];
            }
        }
        e += 16;
    }
}

/// The exact path's accumulators for R input rows × O weight rows (see the module docs for the order).
struct Exact<F: Fmt, const R: usize, const O: usize> {
    acc: [[v128; O]; R],
    a0: [[v128; O]; R],
    a1: [[v128; O]; R],
    /// Row 0 of the permuted input at the current block's first element (stride `xps`).
    xp: *const f32,
    xps: usize,
    /// Scales of the current block's first sub-block (stride `nsp` between outputs).
    sf: *const f32,
    nsp: usize,
    _f: core::marker::PhantomData<F>,
}

impl<F: Fmt, const R: usize, const O: usize> Visit<O> for Exact<F, R, O> {
    #[inline(always)]
    unsafe fn group(&mut self, t: usize, gg: usize, c: &[v128; O]) {
        let e = 16 * (t * (F::SUB / 16) + gg);
        for k in 0..4 {
            let mut cf = [zero(); O];
            for o in 0..O {
                cf[o] = f32x4_convert_i32x4(if k == 3 {
                    u32x4_shr(c[o], 24)
                } else {
                    v128_and(c[o], u32x4_splat(0xff << (8 * k)))
                });
            }
            for r in 0..R {
                let xv = ld(self.xp.add(r * self.xps + e + 4 * k));
                for o in 0..O {
                    let p = f32x4_mul(cf[o], xv);
                    if k % 2 == 0 {
                        self.a0[r][o] = if gg == 0 && k == 0 { p } else { f32x4_add(self.a0[r][o], p) };
                    } else {
                        self.a1[r][o] = if gg == 0 && k == 1 { p } else { f32x4_add(self.a1[r][o], p) };
                    }
                }
            }
        }
        if gg == F::SUB / 16 - 1 {
            for o in 0..O {
                let s = v128_load32_splat(self.sf.add(o * self.nsp + t) as *const u32);
                for r in 0..R {
                    let d = f32x4_add(self.a0[r][o], self.a1[r][o]);
                    self.acc[r][o] = f32x4_add(self.acc[r][o], f32x4_mul(d, s));
                }
            }
        }
    }
}

/// R rows × O outputs over whole rows; writes `y[r·ys + o]`.
#[inline(never)]
#[allow(clippy::too_many_arguments)]
unsafe fn gblock<F: Fmt, const R: usize, const O: usize>(
    y: *mut f32,
    ys: usize,
    xp: *const f32,
    xps: usize,
    xg: *const f32,
    w: *const u8,
    wpr: usize,
    sf: *const f32,
    bf: *const f32,
    nsp: usize,
    nb: usize,
    spb: usize,
    bias: *const f32,
) {
    let z = zero();
    let mut v = Exact::<F, R, O> {
        acc: [[z; O]; R],
        a0: [[z; O]; R],
        a1: [[z; O]; R],
        xp,
        xps,
        sf,
        nsp,
        _f: core::marker::PhantomData,
    };
    let mut blocks = [w; O];
    for o in 0..O {
        blocks[o] = w.add(o * wpr);
    }
    visit_blocks::<F, O, _>(&blocks, nb, spb, &mut v, |v| {
        v.xp = unsafe { v.xp.add(F::QK) };
        v.sf = unsafe { v.sf.add(F::QK / F::SUB) };
    });
    for r in 0..R {
        for o in 0..O {
            let mut val = hsum(v.acc[r][o]) + bias_term(bf.add(o * nsp), xg.add(r * nsp), nsp);
            if !bias.is_null() {
                val += *bias.add(o);
            }
            *y.add(r * ys + o) = val;
        }
    }
}

#[inline(always)]
fn tile_rows(rows: usize, n: usize) -> usize {
    if rows < PF_R {
        1
    } else {
        row_tile(n, PF_R).min(rows)
    }
}

/// Scratch bytes `mk_ggml_matmul` needs.
#[no_mangle]
pub extern "C" fn mk_ggml_matmul_scratch(ty: u32, rows: usize, n: usize) -> usize {
    unsafe fn f<F: Fmt>(rows: usize, n: usize) -> usize {
        let nsp = subs_padded::<F>(n);
        4 * (tile_rows(rows, n) * (n + nsp) + 2 * MV_O * nsp) + 16
    }
    unsafe { by_type!(ty, f, rows, n) }
}

#[allow(clippy::too_many_arguments)]
unsafe fn matmul_t<F: Fmt>(
    y: *mut f32,
    x: *const f32,
    w: *const u8,
    bias: *const f32,
    rows: usize,
    n: usize,
    m: usize,
    scratch: *mut f32,
) {
    let nb = n / F::QK;
    let wpr = nb * F::BYTES;
    let spb = F::QK / F::SUB;
    let nsp = subs_padded::<F>(n);
    let t = tile_rows(rows, n);
    let xp = scratch;
    let xg = xp.add(t * n);
    let sf = xg.add(t * nsp);
    let bf = sf.add(MV_O * nsp);
    let bias_at = |o: usize| if bias.is_null() { bias } else { bias.add(o) };
    let mut r0 = 0;
    while r0 < rows {
        let r1 = (r0 + t).min(rows);
        let tr = r1 - r0;
        for r in 0..tr {
            prep_row::<F>(xp.add(r * n), xg.add(r * nsp), x.add((r0 + r) * n), n, nsp);
        }
        let yt = y.add(r0 * m);
        if t == 1 {
            let mut o = 0;
            while o < m {
                let no = if o + MV_O <= m { MV_O } else { 1 };
                for oo in 0..no {
                    row_scales::<F>(w.add((o + oo) * wpr), nb, sf.add(oo * nsp), bf.add(oo * nsp), nsp);
                }
                if no == MV_O {
                    gblock::<F, 1, MV_O>(yt.add(o), 0, xp, 0, xg, w.add(o * wpr), wpr, sf, bf, nsp, nb, spb, bias_at(o));
                } else {
                    gblock::<F, 1, 1>(yt.add(o), 0, xp, 0, xg, w.add(o * wpr), wpr, sf, bf, nsp, nb, spb, bias_at(o));
                }
                o += no;
            }
        } else {
            for o in 0..m {
                row_scales::<F>(w.add(o * wpr), nb, sf, bf, nsp);
                let wo = w.add(o * wpr);
                let mut r = 0;
                while r + PF_R <= tr {
                    let (yy, xx, gg) = (yt.add(r * m + o), xp.add(r * n), xg.add(r * nsp));
                    gblock::<F, PF_R, 1>(yy, m, xx, n, gg, wo, wpr, sf, bf, nsp, nb, spb, bias_at(o));
                    r += PF_R;
                }
                while r < tr {
                    let (yy, xx, gg) = (yt.add(r * m + o), xp.add(r * n), xg.add(r * nsp));
                    gblock::<F, 1, 1>(yy, m, xx, n, gg, wo, wpr, sf, bf, nsp, nb, spb, bias_at(o));
                    r += 1;
                }
            }
        }
        r0 = r1;
    }
}

/// `y[rows, out] = x[rows, in] · dequant(W)ᵀ (+ bias)` with `W` `[out, in]` in GGML type `ty` (rows of whole blocks,
/// back to back). `scratch` must hold [`mk_ggml_matmul_scratch`]`(ty, rows, in)` bytes, 4-byte aligned.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn mk_ggml_matmul(
    y: *mut f32,
    x: *const f32,
    w: *const u8,
    bias: *const f32,
    rows: usize,
    n_in: usize,
    n_out: usize,
    ty: u32,
    scratch: *mut f32,
) {
    let bias = if bias as usize == 0 { core::ptr::null() } else { bias };
    by_type!(ty, matmul_t, y, x, w, bias, rows, n_in, n_out, scratch)
}

// ---- embedding -------------------------------------------------------------------------------------------------

/// Writes `s · c + b` of each element of one block (f32) to `out`.
struct Dequant {
    out: *mut f32,
    sf: [f32; 16],
    bf: [f32; 16],
    sub: usize,
}

impl Visit<1> for Dequant {
    #[inline(always)]
    unsafe fn group(&mut self, t: usize, gg: usize, c: &[v128; 1]) {
        let s = f32x4_splat(self.sf[t]);
        let b = f32x4_splat(self.bf[t]);
        let lo = u16x8_extend_low_u8x16(c[0]);
        let hi = u16x8_extend_high_u8x16(c[0]);
        let parts = [
            u32x4_extend_low_u16x8(lo),
            u32x4_extend_high_u16x8(lo),
            u32x4_extend_low_u16x8(hi),
            u32x4_extend_high_u16x8(hi),
        ];
        let e = self.out.add(t * self.sub + 16 * gg);
        for (k, p) in parts.iter().enumerate() {
            st(e.add(4 * k), f32x4_add(f32x4_mul(f32x4_convert_i32x4(*p), s), b));
        }
    }
}

unsafe fn embedding_t<F: Fmt>(out: *mut f32, table: *const u8, ids: *const i32, n_ids: usize, dim: usize) {
    let nb = dim / F::QK;
    let wpr = nb * F::BYTES;
    let mut v = Dequant { out, sf: [0.0; 16], bf: [0.0; 16], sub: F::SUB };
    for i in 0..n_ids {
        let row = table.add(*ids.add(i) as usize * wpr);
        for b in 0..nb {
            let blk = row.add(b * F::BYTES);
            F::scales(blk, v.sf.as_mut_ptr(), v.bf.as_mut_ptr());
            v.out = out.add(i * dim + b * F::QK);
            for g in 0..F::QK / 16 {
                v.group(g * 16 / F::SUB, g % (F::SUB / 16), &[F::codes(blk, g)]);
            }
        }
    }
}

/// `out[i, :] = dequant(table[ids[i], :])` (`s · c + b` per element, f32) for a `[vocab, dim]` table in GGML type `ty`.
#[no_mangle]
pub unsafe extern "C" fn mk_ggml_embedding(out: *mut f32, table: *const u8, ids: *const i32, n_ids: usize, dim: usize, ty: u32) {
    by_type!(ty, embedding_t, out, table, ids, n_ids, dim)
}
