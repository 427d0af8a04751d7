//! Opt-in int8-activation path for the GGML block formats, in the style of llama.cpp's quantized dot products: the
//! input rows are quantized once by `mk_quantize_act` (blocks of 32, f32 scale `d_b` and sum per block — see `q8a.rs`)
//! and the weight dot products run in integers with `i32x4.dot_i16x8_s`. Every format uses the same 32-value
//! activation blocks (llama.cpp rounds the K-quants' activations per 256 instead), so one quantized input serves every
//! weight that reads it, whatever its type.
//!
//! Per output element (r, o), sub-blocks t ascending (see `ggml.rs` for codes `c`, scales `s` and offsets `b`):
//!   I_t  = Σ_{i∈t} c_i · q_i          (exact i32, 4 lane partials: 16-element groups ascending, each the sum of
//!                                       two `dot_i16x8` of its elements 0..8 and 8..16)
//!   acc  = Σ_t f32(I_t) · f32(s_t · d_t)   (v128 chain; d_t = scale of the activation block holding t)
//!   y    = (hsum(acc) + Σ_t b_t · X̂_t) + bias[o],   X̂_t = f32(Σ_{i∈t} q_i) · d_t
//! with the quad chain of the exact path for the offset term. |I_t| < 32 · 255 · 127 < 2^24, so `f32(I_t)` is exact.
//! The order depends only on the row's quantized values, the weight row and the format, never on `rows` or tiling.
use crate::dense::row_tile;
use crate::ggml::{by_type, row_scales, subs_padded, visit_blocks, Fmt, Visit};
use crate::quant::bias_term;
use crate::simd::*;
use core::arch::wasm32::*;

/// Activation block (values per scale), as `mk_quantize_act` writes it.
const QB: usize = 32;
/// Outputs per block in the 1-row (decode) path.
const MV_O: usize = 2;
/// Rows per block in the prefill path (rows >= PF_R), one output at a time.
const PF_R: usize = 4;

#[inline(always)]
fn act_row_bytes(n: usize) -> usize {
    n + 8 * (n / QB)
}

#[inline(always)]
fn tile_rows(rows: usize, n: usize) -> usize {
    if rows < PF_R {
        1
    } else {
        row_tile(n, PF_R).min(rows)
    }
}

/// Scratch bytes `mk_ggml_matmul_q8a` needs.
#[no_mangle]
pub extern "C" fn mk_ggml_matmul_q8a_scratch(ty: u32, rows: usize, n: usize) -> usize {
    unsafe fn f<F: Fmt>(rows: usize, n: usize) -> usize {
        let nsp = subs_padded::<F>(n);
        let t = tile_rows(rows, n);
        2 * t * n + 4 * (2 * t * nsp + 2 * MV_O * nsp) + 32
    }
    unsafe { by_type!(ty, f, rows, n) }
}

/// One quantized activation row `src` → i16 values in element order (`xi`), and per sub-block its activation scale
/// (`xd`) and dequantized sum (`xg`), both zero-padded to `nsp`.
unsafe fn prep_row<F: Fmt>(xi: *mut i16, xd: *mut f32, xg: *mut f32, src: *const u8, n: usize, nsp: usize) {
    let nb = n / QB;
    for b in 0..nb {
        let q = src.add(b * QB) as *const v128;
        let (a, c) = (v128_load(q), v128_load(q.add(1)));
        let o = xi.add(b * QB) as *mut v128;
        v128_store(o, i16x8_extend_low_i8x16(a));
        v128_store(o.add(1), i16x8_extend_high_i8x16(a));
        v128_store(o.add(2), i16x8_extend_low_i8x16(c));
        v128_store(o.add(3), i16x8_extend_high_i8x16(c));
    }
    let ds = src.add(n) as *const f32;
    let ns = n / F::SUB;
    for t in 0..ns {
        let e = t * F::SUB;
        let d = *ds.add(e / QB);
        let mut s: i32 = 0;
        for i in 0..F::SUB {
            s += *(src.add(e + i) as *const i8) as i32;
        }
        *xd.add(t) = d;
        *xg.add(t) = s as f32 * d;
    }
    for t in ns..nsp {
        *xd.add(t) = 0.0;
        *xg.add(t) = 0.0;
    }
}

/// The int8 path's accumulators for R input rows × O weight rows (see the module docs for the order).
struct Int8<F: Fmt, const R: usize, const O: usize> {
    acc: [[v128; O]; R],
    it: [[v128; O]; R],
    /// Row 0's i16 activations at the current block's first element (stride `xis`).
    xi: *const i16,
    xis: usize,
    /// Per-sub-block activation scales of row 0 at the current block (stride `nsp`), and the weight scales of output
    /// 0 (stride `nsp`).
    xd: *const f32,
    sf: *const f32,
    nsp: usize,
    _f: core::marker::PhantomData<F>,
}

impl<F: Fmt, const R: usize, const O: usize> Visit<O> for Int8<F, R, O> {
    #[inline(always)]
    unsafe fn group(&mut self, t: usize, gg: usize, c: &[v128; O]) {
        let e = 16 * (t * (F::SUB / 16) + gg);
        let mut lo = [zero(); O];
        let mut hi = [zero(); O];
        for o in 0..O {
            lo[o] = u16x8_extend_low_u8x16(c[o]);
            hi[o] = u16x8_extend_high_u8x16(c[o]);
        }
        for r in 0..R {
            let xa = v128_load(self.xi.add(r * self.xis + e) as *const v128);
            let xb = v128_load(self.xi.add(r * self.xis + e + 8) as *const v128);
            for o in 0..O {
                let d = i32x4_add(i32x4_dot_i16x8(lo[o], xa), i32x4_dot_i16x8(hi[o], xb));
                self.it[r][o] = if gg == 0 { d } else { i32x4_add(self.it[r][o], d) };
            }
        }
        if gg == F::SUB / 16 - 1 {
            for o in 0..O {
                let s = *self.sf.add(o * self.nsp + t);
                for r in 0..R {
                    let k = f32x4_splat(s * *self.xd.add(r * self.nsp + t));
                    self.acc[r][o] = f32x4_add(self.acc[r][o], f32x4_mul(f32x4_convert_i32x4(self.it[r][o]), k));
                }
            }
        }
    }
}

#[inline(never)]
#[allow(clippy::too_many_arguments)]
unsafe fn qblock<F: Fmt, const R: usize, const O: usize>(
    y: *mut f32,
    ys: usize,
    xi: *const i16,
    xis: usize,
    xd: *const f32,
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
    let mut v = Int8::<F, R, O> {
        acc: [[z; O]; R],
        it: [[z; O]; R],
        xi,
        xis,
        xd,
        sf,
        nsp,
        _f: core::marker::PhantomData,
    };
    let mut blocks = [w; O];
    for o in 0..O {
        blocks[o] = w.add(o * wpr);
    }
    visit_blocks::<F, O, _>(&blocks, nb, spb, &mut v, |v| {
        v.xi = unsafe { v.xi.add(F::QK) };
        v.xd = unsafe { v.xd.add(F::QK / F::SUB) };
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

#[allow(clippy::too_many_arguments)]
unsafe fn matmul_t<F: Fmt>(
    y: *mut f32,
    xq: *const u8,
    w: *const u8,
    bias: *const f32,
    rows: usize,
    n: usize,
    m: usize,
    scratch: *mut u8,
) {
    let nb = n / F::QK;
    let wpr = nb * F::BYTES;
    let spb = F::QK / F::SUB;
    let nsp = subs_padded::<F>(n);
    let t = tile_rows(rows, n);
    let xi = scratch as *mut i16;
    let xd = scratch.add(2 * t * n) as *mut f32;
    let xg = xd.add(t * nsp);
    let sf = xg.add(t * nsp);
    let bf = sf.add(MV_O * nsp);
    let rb = act_row_bytes(n);
    let bias_at = |o: usize| if bias.is_null() { bias } else { bias.add(o) };
    let mut r0 = 0;
    while r0 < rows {
        let r1 = (r0 + t).min(rows);
        let tr = r1 - r0;
        for r in 0..tr {
            prep_row::<F>(xi.add(r * n), xd.add(r * nsp), xg.add(r * nsp), xq.add((r0 + r) * rb), n, nsp);
        }
        let yt = y.add(r0 * m);
        if t == 1 {
            let mut o = 0;
            while o < m {
                let no = if o + MV_O <= m { MV_O } else { 1 };
                for oo in 0..no {
                    row_scales::<F>(w.add((o + oo) * wpr), nb, sf.add(oo * nsp), bf.add(oo * nsp), nsp);
                }
                let wo = w.add(o * wpr);
                if no == MV_O {
                    qblock::<F, 1, MV_O>(yt.add(o), 0, xi, 0, xd, xg, wo, wpr, sf, bf, nsp, nb, spb, bias_at(o));
                } else {
                    qblock::<F, 1, 1>(yt.add(o), 0, xi, 0, xd, xg, wo, wpr, sf, bf, nsp, nb, spb, bias_at(o));
                }
                o += no;
            }
        } else {
            for o in 0..m {
                row_scales::<F>(w.add(o * wpr), nb, sf, bf, nsp);
                let wo = w.add(o * wpr);
                let mut r = 0;
                while r + PF_R <= tr {
                    let (yy, xx, dd, gg) = (yt.add(r * m + o), xi.add(r * n), xd.add(r * nsp), xg.add(r * nsp));
                    qblock::<F, PF_R, 1>(yy, m, xx, n, dd, gg, wo, wpr, sf, bf, nsp, nb, spb, bias_at(o));
                    r += PF_R;
                }
                while r < tr {
                    let (yy, xx, dd, gg) = (yt.add(r * m + o), xi.add(r * n), xd.add(r * nsp), xg.add(r * nsp));
                    qblock::<F, 1, 1>(yy, m, xx, n, dd, gg, wo, wpr, sf, bf, nsp, nb, spb, bias_at(o));
                    r += 1;
                }
            }
        }
        r0 = r1;
    }
}

/// `y[rows, out] ≈ x[rows, in] · dequant(W)ᵀ (+ bias)` from activations quantized by `mk_quantize_act` (`xq`), `W` in
/// GGML type `ty`. `scratch` must hold [`mk_ggml_matmul_q8a_scratch`]`(ty, rows, in)` bytes, 16-byte aligned.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn mk_ggml_matmul_q8a(
    y: *mut f32,
    xq: *const u8,
    w: *const u8,
    bias: *const f32,
    rows: usize,
    n_in: usize,
    n_out: usize,
    ty: u32,
    scratch: *mut u8,
) {
    let bias = if bias as usize == 0 { core::ptr::null() } else { bias };
    by_type!(ty, matmul_t, y, xq, w, bias, rows, n_in, n_out, scratch)
}
