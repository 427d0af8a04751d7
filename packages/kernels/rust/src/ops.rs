//! Row-wise and elementwise ops. Elementwise results never depend on an element's index: tails go through the
//! same vector code on a zero-padded register.
use crate::simd::*;
use core::arch::wasm32::*;

/// Applies `f` to `n` elements, 4 at a time; the tail is padded (so scalar and vector lanes agree bit for bit).
#[inline(always)]
unsafe fn map2(out: *mut f32, a: *const f32, b: *const f32, n: usize, f: impl Fn(v128, v128) -> v128) {
    let mut i = 0;
    while i + 4 <= n {
        st(out.add(i), f(ld(a.add(i)), ld(b.add(i))));
        i += 4;
    }
    if i < n {
        let m = n - i;
        st_part(out.add(i), f(ld_part(a.add(i), m, 0.0), ld_part(b.add(i), m, 0.0)), m);
    }
}

#[no_mangle]
pub unsafe extern "C" fn mk_add(out: *mut f32, a: *const f32, b: *const f32, n: usize) {
    map2(out, a, b, n, |x, y| f32x4_add(x, y));
}

/// `out = silu(gate) · up = gate / (1 + e^-gate) · up`. Gates below −200 are raised to −200 first (silu is
/// −0 in f32 there either way), so −inf gives −0 rather than −inf/inf = NaN; NaN stays NaN.
#[no_mangle]
pub unsafe extern "C" fn mk_swiglu(out: *mut f32, gate: *const f32, up: *const f32, n: usize) {
    map2(out, gate, up, n, |g, u| {
        let g = f32x4_pmax(g, f32x4_splat(-200.0));
        let e = exp4(f32x4_neg(g));
        f32x4_mul(f32x4_div(g, f32x4_add(f32x4_splat(1.0), e)), u)
    });
}

/// −2·sqrt(2/π): `gelu_tanh(g) = g · σ(2u) = g / (1 + e^{−2u})` with `u = sqrt(2/π)·(g + 0.044715·g³)`.
const GELU_C: f32 = -1.595_769_1;
const GELU_K: f32 = 0.044_715;

/// `out = gelu_tanh(gate) · up`, where `gelu_tanh(g) = 0.5·g·(1 + tanh(u))`, computed as `g / (1 + e^{−2u})`
/// (the same function, without cancellation). Gates below −20 are raised to −20 first (the result is −0 in f32
/// there either way), so −inf gives −0 rather than NaN; +inf gives +inf; NaN stays NaN.
#[no_mangle]
pub unsafe extern "C" fn mk_gelu_glu(out: *mut f32, gate: *const f32, up: *const f32, n: usize) {
    map2(out, gate, up, n, |g, u| {
        let g = f32x4_pmax(g, f32x4_splat(-20.0));
        let inner = f32x4_add(g, f32x4_mul(f32x4_splat(GELU_K), f32x4_mul(f32x4_mul(g, g), g)));
        let e = exp4(f32x4_mul(f32x4_splat(GELU_C), inner));
        f32x4_mul(f32x4_div(g, f32x4_add(f32x4_splat(1.0), e)), u)
    });
}

/// In place: `x = cap · tanh(x / cap)` (`cap > 0`, checked by the loader).
#[no_mangle]
pub unsafe extern "C" fn mk_softcap(x: *mut f32, n: usize, cap: f32) {
    let c = f32x4_splat(cap);
    map2(x, x, x, n, |v, _| softcap4(v, c));
}

/// `out = x · s` (one f32 rounding per element); `out` may be `x`.
#[no_mangle]
pub unsafe extern "C" fn mk_scale(out: *mut f32, x: *const f32, n: usize, s: f32) {
    let sv = f32x4_splat(s);
    map2(out, x, x, n, |v, _| f32x4_mul(v, sv));
}

/// `out = x · (1 / sqrt(mean(x²) + eps)) · weight`, row-wise; `out` may be `x`.
#[no_mangle]
pub unsafe extern "C" fn mk_rmsnorm(out: *mut f32, x: *const f32, w: *const f32, rows: usize, dim: usize, eps: f32) {
    for r in 0..rows {
        let xr = x.add(r * dim);
        let or = out.add(r * dim);
        let ss = dot(xr, xr, dim);
        let inv = f32x4_splat(1.0 / f32::sqrt_(ss / dim as f32 + eps));
        map2(or, xr, w, dim, |a, b| f32x4_mul(f32x4_mul(a, inv), b));
    }
}

trait Sqrt {
    fn sqrt_(self) -> Self;
}
impl Sqrt for f32 {
    #[inline(always)]
    fn sqrt_(self) -> f32 {
        // f32.sqrt (correctly rounded) without libm
        f32x4_extract_lane::<0>(f32x4_sqrt(f32x4_splat(self)))
    }
}

/// In-place rotary embedding. `x` `[rows, nh·hd]`, `cos`/`sin` `[rows, rot/2]`; layout 0 = rotate-half
/// (pairs (i, i + rot/2)), 1 = adjacent pairs (2i, 2i+1). Each pair: `(a·c − b·s, b·c + a·s)`.
#[no_mangle]
pub unsafe extern "C" fn mk_rope(
    x: *mut f32,
    cos: *const f32,
    sin: *const f32,
    rows: usize,
    nh: usize,
    hd: usize,
    rot: usize,
    layout: u32,
) {
    let h = rot / 2;
    for r in 0..rows {
        let c = cos.add(r * h);
        let s = sin.add(r * h);
        for head in 0..nh {
            let base = x.add((r * nh + head) * hd);
            let mut i = 0;
            if layout == 0 {
                while i + 4 <= h {
                    let (a, b) = (ld(base.add(i)), ld(base.add(h + i)));
                    let (cc, ss) = (ld(c.add(i)), ld(s.add(i)));
                    st(base.add(i), f32x4_sub(f32x4_mul(a, cc), f32x4_mul(b, ss)));
                    st(base.add(h + i), f32x4_add(f32x4_mul(b, cc), f32x4_mul(a, ss)));
                    i += 4;
                }
                while i < h {
                    let (a, b) = (*base.add(i), *base.add(h + i));
                    let (cc, ss) = (*c.add(i), *s.add(i));
                    *base.add(i) = a * cc - b * ss;
                    *base.add(h + i) = b * cc + a * ss;
                    i += 1;
                }
            } else {
                while i + 4 <= h {
                    let v0 = ld(base.add(2 * i));
                    let v1 = ld(base.add(2 * i + 4));
                    let a = i32x4_shuffle::<0, 2, 4, 6>(v0, v1);
                    let b = i32x4_shuffle::<1, 3, 5, 7>(v0, v1);
                    let (cc, ss) = (ld(c.add(i)), ld(s.add(i)));
                    let ra = f32x4_sub(f32x4_mul(a, cc), f32x4_mul(b, ss));
                    let rb = f32x4_add(f32x4_mul(b, cc), f32x4_mul(a, ss));
                    st(base.add(2 * i), i32x4_shuffle::<0, 4, 1, 5>(ra, rb));
                    st(base.add(2 * i + 4), i32x4_shuffle::<2, 6, 3, 7>(ra, rb));
                    i += 4;
                }
                while i < h {
                    let (a, b) = (*base.add(2 * i), *base.add(2 * i + 1));
                    let (cc, ss) = (*c.add(i), *s.add(i));
                    *base.add(2 * i) = a * cc - b * ss;
                    *base.add(2 * i + 1) = b * cc + a * ss;
                    i += 1;
                }
            }
        }
    }
}

/// Largest element of `n` floats (NaN-propagating `f32x4.max`; a NaN anywhere gives NaN).
#[inline(always)]
pub unsafe fn max(x: *const f32, n: usize) -> f32 {
    let mut m = f32x4_splat(f32::NEG_INFINITY);
    let mut i = 0;
    while i + 4 <= n {
        m = f32x4_max(m, ld(x.add(i)));
        i += 4;
    }
    if i < n {
        m = f32x4_max(m, ld_part(x.add(i), n - i, f32::NEG_INFINITY));
    }
    let a = f32x4_max(m, i32x4_shuffle::<2, 3, 0, 1>(m, m));
    let b = f32x4_max(a, i32x4_shuffle::<1, 0, 3, 2>(a, a));
    f32x4_extract_lane::<0>(b)
}

/// In place: `x = e^(x − max) / Σ e^(x − max)` per row, sums in the canonical [`sum`] order. Rows containing NaN,
/// or made only of −inf, give NaN.
#[no_mangle]
pub unsafe extern "C" fn mk_softmax(x: *mut f32, rows: usize, n: usize) {
    for r in 0..rows {
        let xr = x.add(r * n);
        let m = f32x4_splat(max(xr, n));
        map2(xr, xr, xr, n, |v, _| exp4(f32x4_sub(v, m)));
        let s = f32x4_splat(sum(xr, n));
        map2(xr, xr, xr, n, |v, _| f32x4_div(v, s));
    }
}

/// Index of the first largest element. NaNs are skipped (never selected); if every element is NaN the result
/// is 0. −0 and +0 compare equal (the first wins).
#[no_mangle]
pub unsafe extern "C" fn mk_argmax(x: *const f32, n: usize) -> i32 {
    let mut mv = f32x4_splat(f32::NEG_INFINITY);
    let mut iv = i32x4_splat(-1);
    let mut idx = i32x4(0, 1, 2, 3);
    let four = i32x4_splat(4);
    let none = i32x4_splat(-1);
    let mut i = 0;
    while i + 4 <= n {
        let v = ld(x.add(i));
        let upd = v128_or(f32x4_gt(v, mv), v128_and(i32x4_eq(iv, none), f32x4_eq(v, v)));
        mv = v128_bitselect(v, mv, upd);
        iv = v128_bitselect(idx, iv, upd);
        idx = i32x4_add(idx, four);
        i += 4;
    }
    let mut mb = [0f32; 4];
    let mut ib = [0i32; 4];
    v128_store(mb.as_mut_ptr() as *mut v128, mv);
    v128_store(ib.as_mut_ptr() as *mut v128, iv);
    let mut best = f32::NEG_INFINITY;
    let mut bi: i32 = -1;
    for l in 0..4 {
        let (m, k) = (mb[l], ib[l]);
        if k >= 0 && (bi < 0 || m > best || (m == best && k < bi)) {
            best = m;
            bi = k;
        }
    }
    while i < n {
        let v = *x.add(i);
        if v == v && (bi < 0 || v > best) {
            best = v;
            bi = i as i32;
        }
        i += 1;
    }
    if bi < 0 {
        0
    } else {
        bi
    }
}

/// memmove
#[no_mangle]
pub unsafe extern "C" fn mk_copy(dst: *mut u8, src: *const u8, bytes: usize) {
    core::ptr::copy(src, dst, bytes);
}

#[inline(always)]
unsafe fn bw<const S: usize>(p: *const f32, bytes: usize) -> f32 {
    // S contiguous parts read side by side (like a matvec streaming S weight rows), 8 v128 per part per step
    let part = bytes / 4 / S / 32 * 32;
    let mut a = [zero(); 8];
    let mut i = 0;
    while i < part {
        for s in 0..S {
            let q = p.add(s * part + i);
            for c in 0..8 {
                a[c] = f32x4_add(a[c], ld(q.add(4 * c)));
            }
        }
        i += 32;
    }
    let mut t = zero();
    for c in 0..8 {
        t = f32x4_add(t, a[c]);
    }
    hsum(t)
}

/// Reads `bytes` at `p` in `streams` (1, 2, 4 or 8) concurrent sequential streams with eight independent v128
/// accumulators: the benchmark's single-thread read-bandwidth probe (not part of the loader API).
#[no_mangle]
pub unsafe extern "C" fn mk_bw_sum(p: *const f32, bytes: usize, streams: usize) -> f32 {
    match streams {
        1 => bw::<1>(p, bytes),
        2 => bw::<2>(p, bytes),
        4 => bw::<4>(p, bytes),
        _ => bw::<8>(p, bytes),
    }
}

/// `out[i] = tanh(x[i])` (the kernels' tanh; exported for accuracy tests, not part of the loader API).
#[no_mangle]
pub unsafe extern "C" fn mk_tanh(out: *mut f32, x: *const f32, n: usize) {
    map2(out, x, x, n, |v, _| tanh4(v));
}

/// `out[i] = e^x[i]` (the kernels' exp; exported for accuracy tests, not part of the loader API).
#[no_mangle]
pub unsafe extern "C" fn mk_exp(out: *mut f32, x: *const f32, n: usize) {
    map2(out, x, x, n, |v, _| exp4(v));
}
