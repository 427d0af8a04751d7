//! Shared SIMD helpers: loads with padded tails, horizontal sums, f16/bf16 conversion, exp.
use core::arch::wasm32::*;

#[inline(always)]
pub fn zero() -> v128 {
    f32x4_splat(0.0)
}

#[inline(always)]
pub unsafe fn ld(p: *const f32) -> v128 {
    v128_load(p as *const v128)
}

#[inline(always)]
pub unsafe fn st(p: *mut f32, v: v128) {
    v128_store(p as *mut v128, v)
}

/// Loads `n < 4` floats (lanes `n..4` are `fill`). Never reads past `p + n`.
#[inline(always)]
pub unsafe fn ld_part(p: *const f32, n: usize, fill: f32) -> v128 {
    let mut a = [fill; 4];
    let mut i = 0;
    while i < n {
        a[i] = *p.add(i);
        i += 1;
    }
    v128_load(a.as_ptr() as *const v128)
}

/// Stores the first `n < 4` lanes of `v`.
#[inline(always)]
pub unsafe fn st_part(p: *mut f32, v: v128, n: usize) {
    let mut a = [0f32; 4];
    v128_store(a.as_mut_ptr() as *mut v128, v);
    let mut i = 0;
    while i < n {
        *p.add(i) = a[i];
        i += 1;
    }
}

/// `(l0 + l1) + (l2 + l3)`: the one horizontal reduction order used everywhere.
#[inline(always)]
pub fn hsum(v: v128) -> f32 {
    (f32x4_extract_lane::<0>(v) + f32x4_extract_lane::<1>(v))
        + (f32x4_extract_lane::<2>(v) + f32x4_extract_lane::<3>(v))
}

/// Exact f16 → f32 for four halves held in the low 16 bits of each u32 lane (upper bits must be zero).
/// Normals and subnormals: the 15 exponent+mantissa bits moved to f32 position and multiplied by 2^112
/// (exact: a power-of-two scaling into the normal range); inf/NaN: exponent forced to 255, payload kept.
#[inline(always)]
pub fn h2f(h: v128) -> v128 {
    let expmant = v128_and(h, i32x4_splat(0x7fff));
    let sign = i32x4_shl(v128_xor(h, expmant), 16);
    let scaled = f32x4_mul(i32x4_shl(expmant, 13), f32x4_splat(f32::from_bits(0x7780_0000)));
    let infnan = v128_and(i32x4_gt(expmant, i32x4_splat(0x7bff)), i32x4_splat(0x7f80_0000));
    v128_or(v128_or(scaled, sign), infnan)
}

/// Scalar f16 → f32, bit-identical to a lane of [`h2f`].
#[inline(always)]
pub fn h2f_1(h: u16) -> f32 {
    f32x4_extract_lane::<0>(h2f(u32x4_splat(h as u32)))
}

#[inline(always)]
pub fn bf2f_1(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// Eight f16 at `p` → two f32x4 (elements 0..4, 4..8).
#[inline(always)]
pub unsafe fn ld_f16x8(p: *const u16) -> (v128, v128) {
    let v = v128_load(p as *const v128);
    let z = u32x4_splat(0);
    (
        h2f(i16x8_shuffle::<0, 8, 1, 9, 2, 10, 3, 11>(v, z)),
        h2f(i16x8_shuffle::<4, 12, 5, 13, 6, 14, 7, 15>(v, z)),
    )
}

/// Four f16 at `p` → f32x4.
#[inline(always)]
pub unsafe fn ld_f16x4(p: *const u16) -> v128 {
    let v = v128_load64_zero(p as *const u64);
    h2f(u32x4_extend_low_u16x8(v))
}

/// Eight bf16 at `p` → two f32x4.
#[inline(always)]
pub unsafe fn ld_bf16x8(p: *const u16) -> (v128, v128) {
    let v = v128_load(p as *const v128);
    let z = u32x4_splat(0);
    (
        i16x8_shuffle::<8, 0, 9, 1, 10, 2, 11, 3>(v, z),
        i16x8_shuffle::<12, 4, 13, 5, 14, 6, 15, 7>(v, z),
    )
}

#[inline(always)]
pub unsafe fn ld_bf16x4(p: *const u16) -> v128 {
    let v = v128_load64_zero(p as *const u64);
    i16x8_shuffle::<8, 0, 9, 1, 10, 2, 11, 3>(v, u32x4_splat(0))
}

/// Element types of weights / scales: 0 = f32, 1 = f16, 2 = bf16.
pub trait Elem {
    const BYTES: usize;
    /// Whether [`Elem::l8_fast`] may be inexact for some inputs; the caller then accumulates `flag` and, if
    /// [`Elem::flagged`] says so, redoes the work with [`Elem::l8`] (same order, exact values).
    const CHECK: bool = false;
    /// Elements `i..i+8` → (0..4, 4..8) as f32.
    unsafe fn l8(p: *const u8, i: usize) -> (v128, v128);
    /// Like `l8`, possibly cheaper; when `CHECK`, exact unless it records a problem in `flag`.
    #[inline(always)]
    unsafe fn l8_fast(p: *const u8, i: usize, _flag: &mut v128) -> (v128, v128) {
        Self::l8(p, i)
    }
    #[inline(always)]
    fn flagged(_flag: v128) -> bool {
        false
    }
    unsafe fn l4(p: *const u8, i: usize) -> v128;
    /// Like `l4`, possibly cheaper (same contract as [`Elem::l8_fast`]).
    #[inline(always)]
    unsafe fn l4_fast(p: *const u8, i: usize, _flag: &mut v128) -> v128 {
        Self::l4(p, i)
    }
    unsafe fn l1(p: *const u8, i: usize) -> f32;
    /// Elements `i..i+n` (`n < 4`), remaining lanes zero.
    #[inline(always)]
    unsafe fn lpart(p: *const u8, i: usize, n: usize) -> v128 {
        let mut a = [0f32; 4];
        let mut k = 0;
        while k < n {
            a[k] = Self::l1(p, i + k);
            k += 1;
        }
        v128_load(a.as_ptr() as *const v128)
    }
}

pub struct F32;
pub struct F16;
pub struct BF16;

impl Elem for F32 {
    const BYTES: usize = 4;
    #[inline(always)]
    unsafe fn l8(p: *const u8, i: usize) -> (v128, v128) {
        let q = (p as *const f32).add(i);
        (ld(q), ld(q.add(4)))
    }
    #[inline(always)]
    unsafe fn l4(p: *const u8, i: usize) -> v128 {
        ld((p as *const f32).add(i))
    }
    #[inline(always)]
    unsafe fn l1(p: *const u8, i: usize) -> f32 {
        *(p as *const f32).add(i)
    }
}

/// Fast f16 → f32 of four halves held in the HIGH 16 bits of each lane (`h << 16`): exact for zeros, subnormals
/// and normals (sign kept by the arithmetic shift, the 15 exponent+mantissa bits moved to f32 position, then a
/// power-of-two scaling by 2^112). Inf/NaN (exponent 31) come out as finite values ≥ 65536 instead: callers
/// detect them separately.
#[inline(always)]
pub fn h2f_hi(x: v128) -> v128 {
    f32x4_mul(
        v128_and(i32x4_shr(x, 3), i32x4_splat(0x8FFF_FFFFu32 as i32)),
        f32x4_splat(f32::from_bits(0x7780_0000)),
    )
}

impl Elem for F16 {
    const BYTES: usize = 2;
    const CHECK: bool = true;
    #[inline(always)]
    unsafe fn l8(p: *const u8, i: usize) -> (v128, v128) {
        ld_f16x8((p as *const u16).add(i))
    }
    #[inline(always)]
    unsafe fn l8_fast(p: *const u8, i: usize, flag: &mut v128) -> (v128, v128) {
        let v = v128_load((p as *const u16).add(i) as *const v128);
        // running max of |h|: any lane >= 0x7c00 at the end means an inf/NaN was seen
        *flag = u16x8_max(*flag, v128_and(v, u16x8_splat(0x7fff)));
        let z = u32x4_splat(0);
        (
            h2f_hi(i16x8_shuffle::<8, 0, 9, 1, 10, 2, 11, 3>(v, z)),
            h2f_hi(i16x8_shuffle::<12, 4, 13, 5, 14, 6, 15, 7>(v, z)),
        )
    }
    #[inline(always)]
    unsafe fn l4_fast(p: *const u8, i: usize, flag: &mut v128) -> v128 {
        let v = v128_load64_zero((p as *const u16).add(i) as *const u64);
        *flag = u16x8_max(*flag, v128_and(v, u16x8_splat(0x7fff)));
        h2f_hi(i16x8_shuffle::<8, 0, 9, 1, 10, 2, 11, 3>(v, u32x4_splat(0)))
    }
    #[inline(always)]
    fn flagged(flag: v128) -> bool {
        // some |h| >= 0x7c00 <=> max_u(|h|, 0x7bff) != 0x7bff somewhere
        let m = u16x8_max(flag, u16x8_splat(0x7bff));
        !u16x8_all_true(i16x8_eq(m, u16x8_splat(0x7bff)))
    }
    #[inline(always)]
    unsafe fn l4(p: *const u8, i: usize) -> v128 {
        ld_f16x4((p as *const u16).add(i))
    }
    #[inline(always)]
    unsafe fn l1(p: *const u8, i: usize) -> f32 {
        h2f_1(*(p as *const u16).add(i))
    }
}

impl Elem for BF16 {
    const BYTES: usize = 2;
    #[inline(always)]
    unsafe fn l8(p: *const u8, i: usize) -> (v128, v128) {
        ld_bf16x8((p as *const u16).add(i))
    }
    #[inline(always)]
    unsafe fn l4(p: *const u8, i: usize) -> v128 {
        ld_bf16x4((p as *const u16).add(i))
    }
    #[inline(always)]
    unsafe fn l1(p: *const u8, i: usize) -> f32 {
        bf2f_1(*(p as *const u16).add(i))
    }
}

/// Converts `n` elements of type `E` at `src` to f32 at `dst` (vectorized; the tail uses the same per-element
/// conversion, so every element's value is independent of `n` and of its position).
#[inline(always)]
pub unsafe fn convert<E: Elem>(dst: *mut f32, src: *const u8, n: usize) {
    let mut i = 0;
    while i + 8 <= n {
        let (a, b) = E::l8(src, i);
        st(dst.add(i), a);
        st(dst.add(i + 4), b);
        i += 8;
    }
    while i < n {
        *dst.add(i) = E::l1(src, i);
        i += 1;
    }
}

// ---- exp ------------------------------------------------------------------------------------------------

const MAGIC: f32 = 12582912.0; // 1.5 * 2^23: adding it rounds to an integer held in the low mantissa bits
const LOG2E: f32 = 1.442_695_04;
const LN2_HI: f32 = 0.693_359_375; // 9 significant bits: n * LN2_HI is exact for |n| <= 2^15
const LN2_LO: f32 = -2.121_944_4e-4;

/// e^x for four lanes, about 1 ulp (cephes expf polynomial after Cody–Waite reduction).
/// x <= -104 (and -inf) → 0; x >= 88.73 (and +inf) → +inf; NaN → NaN. Subnormal results are produced by a
/// two-step power-of-two scaling (exact except for the final rounding).
#[inline(always)]
pub fn exp4(x: v128) -> v128 {
    // pmax/pmin keep NaN (it compares false) and compile to a single maxps/minps.
    let x = f32x4_pmin(f32x4_pmax(x, f32x4_splat(-104.0)), f32x4_splat(89.0));
    let t = f32x4_add(f32x4_mul(x, f32x4_splat(LOG2E)), f32x4_splat(MAGIC));
    let n = f32x4_sub(t, f32x4_splat(MAGIC));
    let r = f32x4_sub(
        f32x4_sub(x, f32x4_mul(n, f32x4_splat(LN2_HI))),
        f32x4_mul(n, f32x4_splat(LN2_LO)),
    );
    let z = f32x4_mul(r, r);
    let mut p = f32x4_splat(1.987_569_15e-4);
    p = f32x4_add(f32x4_mul(p, r), f32x4_splat(1.398_199_950_7e-3));
    p = f32x4_add(f32x4_mul(p, r), f32x4_splat(8.333_451_907_3e-3));
    p = f32x4_add(f32x4_mul(p, r), f32x4_splat(4.166_579_589_4e-2));
    p = f32x4_add(f32x4_mul(p, r), f32x4_splat(1.666_666_545_9e-1));
    p = f32x4_add(f32x4_mul(p, r), f32x4_splat(5.000_000_120_1e-1));
    p = f32x4_add(f32x4_add(f32x4_mul(p, z), r), f32x4_splat(1.0));
    // integer n in [-150, 128]; 2^n = 2^n1 * 2^n2 with both halves in the normal range
    let ni = i32x4_sub(t, i32x4_splat(0x4B40_0000));
    let n1 = i32x4_shr(ni, 1);
    let n2 = i32x4_sub(ni, n1);
    let s1 = i32x4_shl(i32x4_add(n1, i32x4_splat(127)), 23);
    let s2 = i32x4_shl(i32x4_add(n2, i32x4_splat(127)), 23);
    f32x4_mul(f32x4_mul(p, s1), s2)
}

// ---- tanh -----------------------------------------------------------------------------------------------

/// Coefficients of `tanh(y) ≈ y + y·z·P(z)`, `z = y²`, for `|y| < TANH_SMALL`: a degree-4 fit of P minimizing the
/// largest relative error of tanh over that interval (about 4.4e-9 in exact arithmetic, fitted for this crate).
const TANH_P: [f32; 5] = [-0.333_332_8, 0.133_314_42, -0.053_739_72, 0.020_639_097, -0.005_704_996];
/// Below this |y| the polynomial is used; above it `1 − 2/(e^{2|y|} + 1)` (no cancellation there: tanh ≥ 0.55).
const TANH_SMALL: f32 = 0.625;

/// tanh of four lanes, within a few ulp: an odd polynomial for |y| < 0.625, else `±(1 − 2/(e^{2|y|} + 1))` with
/// [`exp4`]. ±inf → ±1, ±0 → ±0, NaN → NaN. Each lane's result depends on that lane alone.
#[inline(always)]
pub fn tanh4(y: v128) -> v128 {
    // |tanh| from |y|, then y's sign (so ±0 stays ±0, and NaN stays NaN)
    let a = f32x4_abs(y);
    let z = f32x4_mul(a, a);
    let mut p = f32x4_splat(TANH_P[4]);
    p = f32x4_add(f32x4_mul(p, z), f32x4_splat(TANH_P[3]));
    p = f32x4_add(f32x4_mul(p, z), f32x4_splat(TANH_P[2]));
    p = f32x4_add(f32x4_mul(p, z), f32x4_splat(TANH_P[1]));
    p = f32x4_add(f32x4_mul(p, z), f32x4_splat(TANH_P[0]));
    let small = f32x4_add(a, f32x4_mul(f32x4_mul(a, z), p));
    let e = exp4(f32x4_add(a, a));
    let big = f32x4_sub(f32x4_splat(1.0), f32x4_div(f32x4_splat(2.0), f32x4_add(e, f32x4_splat(1.0))));
    let r = v128_bitselect(small, big, f32x4_lt(a, f32x4_splat(TANH_SMALL)));
    v128_or(r, v128_and(y, f32x4_splat(-0.0)))
}

/// `c · tanh(x / c)` for four lanes (soft-capping to (−c, c)); `c > 0`.
#[inline(always)]
pub fn softcap4(x: v128, c: v128) -> v128 {
    f32x4_mul(c, tanh4(f32x4_div(x, c)))
}

/// Canonical dot product of `n` f32 at `a` and `b`: two v128 accumulators over 8-element blocks, a 4-element
/// remainder into the first, a zero-padded tail (< 4) into the second, then `hsum(acc0 + acc1)`.
/// The dense matmul kernels reproduce exactly this order.
#[inline(always)]
pub unsafe fn dot(a: *const f32, b: *const f32, n: usize) -> f32 {
    let mut a0 = zero();
    let mut a1 = zero();
    let mut i = 0;
    while i + 8 <= n {
        a0 = f32x4_add(a0, f32x4_mul(ld(a.add(i)), ld(b.add(i))));
        a1 = f32x4_add(a1, f32x4_mul(ld(a.add(i + 4)), ld(b.add(i + 4))));
        i += 8;
    }
    if i + 4 <= n {
        a0 = f32x4_add(a0, f32x4_mul(ld(a.add(i)), ld(b.add(i))));
        i += 4;
    }
    if i < n {
        let m = n - i;
        a1 = f32x4_add(a1, f32x4_mul(ld_part(a.add(i), m, 0.0), ld_part(b.add(i), m, 0.0)));
    }
    hsum(f32x4_add(a0, a1))
}

/// Canonical sum of `n` f32 (same structure as [`dot`]).
#[inline(always)]
pub unsafe fn sum(a: *const f32, n: usize) -> f32 {
    let mut a0 = zero();
    let mut a1 = zero();
    let mut i = 0;
    while i + 8 <= n {
        a0 = f32x4_add(a0, ld(a.add(i)));
        a1 = f32x4_add(a1, ld(a.add(i + 4)));
        i += 8;
    }
    if i + 4 <= n {
        a0 = f32x4_add(a0, ld(a.add(i)));
        i += 4;
    }
    if i < n {
        a1 = f32x4_add(a1, ld_part(a.add(i), n - i, 0.0));
    }
    hsum(f32x4_add(a0, a1))
}
