//! Opt-in int8-activation ("Q8a") path for MLX affine 4- and 8-bit weights, in the style of llama.cpp's Q8_1:
//! the activations are quantized once per input row to int8 in blocks of 32 (one f32 scale and one f32 sum per
//! block), and the weight dot products run in integers with `i32x4.dot_i16x8_s` (8 multiply-adds per
//! instruction). This changes the numerics (the activations are rounded to 8 bits), so it is a separate, opt-in
//! API; the exact f32 path in `quant.rs` is untouched.
//!
//! Quantized activation layout (`mk_quantize_act`), per row of `n` values (`n % 32 == 0`, `nb = n / 32`), rows
//! back to back, `40·nb` bytes per row:
//!   bytes `[0, n)`          int8 `q_i`, natural order
//!   bytes `[n, n + 4nb)`    f32 block scales `d_b = max|x| / 127` (f32 division)
//!   bytes `[n + 4nb, 40nb)` f32 block sums `s_b = d_b · Σ_{i∈b} q_i` (integer sum, one f32 multiply)
//! `q_i = round_half_even(x_i · (127 / max|x|))`, so `|q_i| <= 127`. A block whose `d_b` would be below the
//! smallest normal f32 (max|x| < ~1.5e-36, including all zeros) is stored as zeros (`d_b = s_b = 0`); a block with
//! an inf or NaN gets `d_b = s_b = NaN` (and zero values), so every output that uses it is NaN.
//!
//! Matmul, per output element (r, o), weight groups g ascending, blocks b of the group ascending:
//!   I_b  = Σ_{i∈b} q_w,i · q_x,i · 2^k         (exact i32, k = 8 for 4-bit weights, 0 for 8-bit; as 4 lane
//!                                                partials: 4-bit lane j = elements 8j..8j+7 of the block, 8-bit
//!                                                lane j = elements 4j..4j+3 and 16+4j..16+4j+3)
//!   ga_g = Σ_b f32(I_b) · d_b                   (v128 chain, first term assigned)
//!   acc  = Σ_g ga_g · s_g                       (v128 chain)
//!   y    = (hsum(acc) · 2^-k + Σ_g b_g · X_g) + bias[o],   X_g = Σ_{b∈g} s_b (scalar, b ascending)
//! with `Σ_g b_g · X_g` the same quad-chain as the exact path's bias term. The integer part is exact (|I_b| lanes
//! < 2^22, so `f32(I_b)` is exact too) and independent of how it is summed; every float operation above depends
//! only on the row's own quantized activations, the weight row and `gs`, never on `rows` or on tiling: the decode
//! (rows < 4) and prefill paths run the very same sequence (the prefill path only unpacks each weight block once
//! for 4 rows instead of once per row). The factor 2^k is exact (it would only matter on f32 overflow, |y| >
//! ~1e36).
//!
//! Integer layout: a v128 of 4-bit weights holds 32 elements; its i16 lane i holds elements 4i..4i+3 in nibbles
//! 0..3. Masking nibble k (`and 0xF << 4k`; the top nibble is shifted down instead, to stay positive) leaves
//! `q · 16^k` in each lane; the activations are pre-widened to i16 in the same lane order and pre-scaled by
//! `[256, 16, 1, 256][k]`, so every product is `256 · q_w · q_x` (at most 15 · 32512, well inside i32). For 8-bit
//! weights a v128 holds 16 elements, lane i = elements 2i (low byte) and 2i+1 (high byte), activations unscaled.
//! That per-bits re-layout of the activations is done once per call and row into scratch (O(rows · n), cheap next
//! to the O(rows · n · out) matmul), so one quantized input serves weights of any bits and group size.
//!
//! Cost per 32 weights and output: 1 load, 4 unpack ops, 4 `dot`, 3 integer adds, convert + mul + add — about 13
//! vector ops for 16 bytes of 4-bit or 32 bytes of 8-bit weights, against 4 ops per 4 weights in the exact path.
//! Decode runs 8 outputs side by side (8 weight streams: DRAM-resident shapes need them). The per-call scale/bias
//! conversion uses the cheap f16 conversion with the exact fallback (same values), since it is a large share of
//! a 4-bit matvec with groups of 32.
use crate::dense::row_tile;
use crate::quant::{bias_term, conv_groups};
use crate::simd::*;
use core::arch::wasm32::*;

/// Activation block: 32 values per scale (aligns with every weight group size: 32, 64, 128).
const QB: usize = 32;
/// Outputs per block in the 1-row (decode) path (tuned on V8/x64: 4 is slower on DRAM-resident shapes, 16 spills).
const MV_O: usize = 8;
/// Rows per block in the prefill path (rows >= PF_R), one output at a time.
const PF_R: usize = 4;

/// Bytes of one quantized activation row of `n` values.
#[inline(always)]
fn row_bytes(n: usize) -> usize {
    n + 8 * (n / QB)
}

// ---- activation quantization ----------------------------------------------------------------------------------

/// Quantizes one block of 32 floats at `x` to int8 at `q`; returns (scale, sum).
#[inline(always)]
unsafe fn quant_block(q: *mut u8, x: *const f32) -> (f32, f32) {
    let mut v = [zero(); 8];
    // max |x| over the bit patterns: for non-negative floats integer order is float order, and inf/NaN patterns
    // are larger than every finite one
    let mut m = i32x4_splat(0);
    for i in 0..8 {
        v[i] = ld(x.add(4 * i));
        m = i32x4_max(m, v128_and(v[i], i32x4_splat(0x7fff_ffff)));
    }
    let mb = i32x4_extract_lane::<0>(m)
        .max(i32x4_extract_lane::<1>(m))
        .max(i32x4_extract_lane::<2>(m).max(i32x4_extract_lane::<3>(m)));
    let qv = q as *mut v128;
    if mb >= 0x7f80_0000 {
        v128_store(qv, zero());
        v128_store(qv.add(1), zero());
        return (f32::NAN, f32::NAN);
    }
    let amax = f32::from_bits(mb as u32);
    let d = amax / 127.0;
    if !(d >= f32::MIN_POSITIVE) {
        v128_store(qv, zero());
        v128_store(qv.add(1), zero());
        return (0.0, 0.0);
    }
    // |x · inv| <= 127 · (1 + 2^-24)^2 < 127.5: never rounds past ±127
    let inv = f32x4_splat(127.0 / amax);
    let mut qi = [zero(); 8];
    let mut s = i32x4_splat(0);
    for i in 0..8 {
        qi[i] = i32x4_trunc_sat_f32x4(f32x4_nearest(f32x4_mul(v[i], inv)));
        s = i32x4_add(s, qi[i]);
    }
    let h0 = i16x8_narrow_i32x4(qi[0], qi[1]);
    let h1 = i16x8_narrow_i32x4(qi[2], qi[3]);
    let h2 = i16x8_narrow_i32x4(qi[4], qi[5]);
    let h3 = i16x8_narrow_i32x4(qi[6], qi[7]);
    v128_store(qv, i8x16_narrow_i16x8(h0, h1));
    v128_store(qv.add(1), i8x16_narrow_i16x8(h2, h3));
    let st = (i32x4_extract_lane::<0>(s) + i32x4_extract_lane::<1>(s))
        + (i32x4_extract_lane::<2>(s) + i32x4_extract_lane::<3>(s));
    (d, st as f32 * d)
}

/// Quantizes `rows` rows of `n` f32 (`n % 32 == 0`) at `x` into the layout described in the module docs at `out`.
#[no_mangle]
pub unsafe extern "C" fn mk_quantize_act(out: *mut u8, x: *const f32, rows: usize, n: usize) {
    let nb = n / QB;
    let rb = row_bytes(n);
    for r in 0..rows {
        let qv = out.add(r * rb);
        let ds = qv.add(n) as *mut f32;
        let ss = ds.add(nb);
        let xr = x.add(r * n);
        for b in 0..nb {
            let (d, s) = quant_block(qv.add(b * QB), xr.add(b * QB));
            *ds.add(b) = d;
            *ss.add(b) = s;
        }
    }
}

// ---- matmul ---------------------------------------------------------------------------------------------------

struct Layout {
    /// Rows per tile.
    t: usize,
    ng: usize,
    /// `ng` rounded up to a multiple of 4 (zero-padded group arrays).
    ngp: usize,
}

#[inline(always)]
fn layout(rows: usize, n: usize, gs: usize) -> Layout {
    let ng = n / gs;
    let ngp = (ng + 3) & !3;
    let t = if rows < PF_R { 1 } else { row_tile(n, PF_R).min(rows) };
    Layout { t, ng, ngp }
}

/// Scratch bytes `mk_matmul_q8a` needs for these arguments.
#[no_mangle]
pub extern "C" fn mk_matmul_q8a_scratch(rows: usize, n: usize, gs: usize) -> usize {
    let l = layout(rows, n, gs);
    2 * l.t * n + 4 * (l.t * l.ngp + 2 * MV_O * l.ngp) + 16
}

/// One quantized activation row `src` → i16 activations in the lane order of `B`-bit weights (pre-scaled for
/// 4-bit) at `xi`, and group sums `X_g` (zero-padded to `ngp`) at `xg`.
unsafe fn prep_row<const B: usize>(xi: *mut i16, xg: *mut f32, src: *const u8, n: usize, gs: usize, ngp: usize) {
    let nb = n / QB;
    for b in 0..nb {
        let q = src.add(b * QB) as *const v128;
        let (a, c) = (v128_load(q), v128_load(q.add(1)));
        let o = xi.add(b * QB) as *mut v128;
        if B == 4 {
            // kind k = elements 4i + k (i = 0..8), scaled by [256, 16, 1, 256][k]
            let k0 = i8x16_shuffle::<0, 4, 8, 12, 16, 20, 24, 28, 0, 0, 0, 0, 0, 0, 0, 0>(a, c);
            let k1 = i8x16_shuffle::<1, 5, 9, 13, 17, 21, 25, 29, 0, 0, 0, 0, 0, 0, 0, 0>(a, c);
            let k2 = i8x16_shuffle::<2, 6, 10, 14, 18, 22, 26, 30, 0, 0, 0, 0, 0, 0, 0, 0>(a, c);
            let k3 = i8x16_shuffle::<3, 7, 11, 15, 19, 23, 27, 31, 0, 0, 0, 0, 0, 0, 0, 0>(a, c);
            v128_store(o, i16x8_shl(i16x8_extend_low_i8x16(k0), 8));
            v128_store(o.add(1), i16x8_shl(i16x8_extend_low_i8x16(k1), 4));
            v128_store(o.add(2), i16x8_extend_low_i8x16(k2));
            v128_store(o.add(3), i16x8_shl(i16x8_extend_low_i8x16(k3), 8));
        } else {
            // per 16 elements: even elements (low bytes), then odd ones (high bytes)
            for (h, v) in [(0, a), (1, c)] {
                let ev = i8x16_shuffle::<0, 2, 4, 6, 8, 10, 12, 14, 0, 0, 0, 0, 0, 0, 0, 0>(v, v);
                let od = i8x16_shuffle::<1, 3, 5, 7, 9, 11, 13, 15, 0, 0, 0, 0, 0, 0, 0, 0>(v, v);
                v128_store(o.add(2 * h), i16x8_extend_low_i8x16(ev));
                v128_store(o.add(2 * h + 1), i16x8_extend_low_i8x16(od));
            }
        }
    }
    let ss = (src.add(n) as *const f32).add(nb);
    let bpg = gs / QB;
    let ng = n / gs;
    for g in 0..ng {
        let mut t = *ss.add(g * bpg);
        for j in 1..bpg {
            t += *ss.add(g * bpg + j);
        }
        *xg.add(g) = t;
    }
    for g in ng..ngp {
        *xg.add(g) = 0.0;
    }
}

/// The four i16 weight vectors of one 32-element block at `w` (4-bit: nibble k masked in place; 8-bit: even and
/// odd bytes of each 16), matching [`prep_row`]'s activation order.
#[inline(always)]
unsafe fn unpack<const B: usize>(w: *const u8) -> [v128; 4] {
    let p = w as *const v128;
    if B == 4 {
        let v = v128_load(p);
        [
            v128_and(v, u16x8_splat(0x000f)),
            v128_and(v, u16x8_splat(0x00f0)),
            v128_and(v, u16x8_splat(0x0f00)),
            u16x8_shr(v, 12),
        ]
    } else {
        let (v0, v1) = (v128_load(p), v128_load(p.add(1)));
        [
            v128_and(v0, u16x8_splat(0x00ff)),
            u16x8_shr(v0, 8),
            v128_and(v1, u16x8_splat(0x00ff)),
            u16x8_shr(v1, 8),
        ]
    }
}

/// Exact integer dot of one unpacked weight block with one activation block (4 i32 lane partials).
#[inline(always)]
unsafe fn idot(u: &[v128; 4], x: *const i16) -> v128 {
    let p = x as *const v128;
    let d0 = i32x4_dot_i16x8(u[0], v128_load(p));
    let d1 = i32x4_dot_i16x8(u[1], v128_load(p.add(1)));
    let d2 = i32x4_dot_i16x8(u[2], v128_load(p.add(2)));
    let d3 = i32x4_dot_i16x8(u[3], v128_load(p.add(3)));
    i32x4_add(i32x4_add(d0, d1), i32x4_add(d2, d3))
}

/// One block (32 elements) of R rows × O outputs: `ga[r][o] (+)= f32(I) · d_b`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn step<const B: usize, const R: usize, const O: usize, const FIRST: bool>(
    ga: &mut [[v128; O]; R],
    wp: *const u8,
    wpr: usize,
    xp: *const i16,
    xis: usize,
    dp: *const f32,
    xds: usize,
) {
    for o in 0..O {
        let u = unpack::<B>(wp.add(o * wpr));
        for r in 0..R {
            let d = v128_load32_splat(dp.add(r * xds) as *const u32);
            let f = f32x4_mul(f32x4_convert_i32x4(idot(&u, xp.add(r * xis))), d);
            ga[r][o] = if FIRST { f } else { f32x4_add(ga[r][o], f) };
        }
    }
}

/// R rows × O outputs over the whole row; writes `y[r·ys + o]`. `xi`/`xd`: the rows' i16 activations (stride
/// `xis` i16) and block scales (stride `xds` f32); `xg`: group sums (stride `ngp`); `w`: weight row 0 (stride
/// `wpr` bytes); `sf`/`bf`: f32 scales/biases of the O outputs (stride `ngp`).
#[inline(never)]
#[allow(clippy::too_many_arguments)]
unsafe fn qa_block<const B: usize, const R: usize, const O: usize>(
    y: *mut f32,
    ys: usize,
    xi: *const i16,
    xis: usize,
    xd: *const f32,
    xds: usize,
    xg: *const f32,
    w: *const u8,
    wpr: usize,
    sf: *const f32,
    bf: *const f32,
    l: &Layout,
    bias: *const f32,
    gs: usize,
) {
    let bpg = gs / QB; // a runtime trip count, as in quant.rs: unrolled groups make V8 hoist and spill loads
    let bb = 4 * B; // weight bytes per block
    let mut acc = [[zero(); O]; R];
    let mut ga = [[zero(); O]; R];
    let (mut wp, mut xp, mut dp) = (w, xi, xd);
    for g in 0..l.ng {
        step::<B, R, O, true>(&mut ga, wp, wpr, xp, xis, dp, xds);
        wp = wp.add(bb);
        xp = xp.add(QB);
        dp = dp.add(1);
        let mut j = 1;
        while j < bpg {
            step::<B, R, O, false>(&mut ga, wp, wpr, xp, xis, dp, xds);
            wp = wp.add(bb);
            xp = xp.add(QB);
            dp = dp.add(1);
            j += 1;
        }
        for o in 0..O {
            let s = v128_load32_splat(sf.add(o * l.ngp + g) as *const u32);
            for r in 0..R {
                acc[r][o] = f32x4_add(acc[r][o], f32x4_mul(ga[r][o], s));
            }
        }
    }
    let post = if B == 4 { 1.0 / 256.0 } else { 1.0 };
    for r in 0..R {
        for o in 0..O {
            let mut v = hsum(acc[r][o]) * post + bias_term(bf.add(o * l.ngp), xg.add(r * l.ngp), l.ngp);
            if !bias.is_null() {
                v += *bias.add(o);
            }
            *y.add(r * ys + o) = v;
        }
    }
}

/// Exact conversion of `ng` scales (or biases) to f32 at `dst`, zero-padded to `ngp`: the cheap conversion
/// ([`Elem::l8_fast`]), redone with the fully exact one if it met a value it cannot convert (f16 inf/NaN). The
/// values are the same either way (per-call conversion is a large share of a 4-bit matvec with groups of 32).
#[inline(always)]
unsafe fn conv_fast<S: Elem>(dst: *mut f32, src: *const u8, ng: usize, ngp: usize) {
    let mut flag = zero();
    let mut i = 0;
    while i + 8 <= ng {
        let (a, b) = S::l8_fast(src, i, &mut flag);
        st(dst.add(i), a);
        st(dst.add(i + 4), b);
        i += 8;
    }
    if S::CHECK && S::flagged(flag) {
        conv_groups::<S>(dst, src, ng, ngp);
        return;
    }
    while i < ng {
        *dst.add(i) = S::l1(src, i);
        i += 1;
    }
    for g in ng..ngp {
        *dst.add(g) = 0.0;
    }
}

struct Args<'a> {
    packed: *const u8,
    scales: *const u8,
    biases: *const u8,
    bias: *const f32,
    m: usize,
    gs: usize,
    l: &'a Layout,
    sf: *mut f32,
    bf: *mut f32,
    sdt: u32,
    /// Packed bytes per weight row.
    wpr: usize,
}

impl Args<'_> {
    /// Scales and biases of outputs `o0..o0+no` → f32 scratch (`sf`, `bf`).
    #[inline(always)]
    unsafe fn conv(&self, o0: usize, no: usize) {
        match self.sdt {
            0 => self.conv_t::<F32>(o0, no),
            1 => self.conv_t::<F16>(o0, no),
            _ => self.conv_t::<BF16>(o0, no),
        }
    }
    #[inline(never)]
    unsafe fn conv_t<S: Elem>(&self, o0: usize, no: usize) {
        let (ng, ngp) = (self.l.ng, self.l.ngp);
        for oo in 0..no {
            let o = o0 + oo;
            conv_fast::<S>(self.sf.add(oo * ngp), self.scales.add(o * ng * S::BYTES), ng, ngp);
            conv_fast::<S>(self.bf.add(oo * ngp), self.biases.add(o * ng * S::BYTES), ng, ngp);
        }
    }
    #[inline(always)]
    fn bias_at(&self, o: usize) -> *const f32 {
        if self.bias.is_null() {
            self.bias
        } else {
            unsafe { self.bias.add(o) }
        }
    }
    #[inline(always)]
    fn wrow(&self, o: usize) -> *const u8 {
        unsafe { self.packed.add(o * self.wpr) }
    }
}

/// The `tr` rows of one tile: `y` = output row 0 of the tile, `xi`/`xg` its prepared rows (strides `n`, `ngp`),
/// `xd` its block scales (stride `xds` f32, straight from the caller's quantized activations).
#[allow(clippy::too_many_arguments)]
unsafe fn tile<const B: usize>(a: &Args, y: *mut f32, xi: *const i16, n: usize, xd: *const f32, xds: usize, xg: *const f32, tr: usize) {
    let (m, l, gs, wpr) = (a.m, a.l, a.gs, a.wpr);
    let (sf, bf) = (a.sf as *const f32, a.bf as *const f32);
    if l.t == 1 {
        let mut o = 0;
        while o + MV_O <= m {
            a.conv(o, MV_O);
            qa_block::<B, 1, MV_O>(y.add(o), 0, xi, 0, xd, 0, xg, a.wrow(o), wpr, sf, bf, l, a.bias_at(o), gs);
            o += MV_O;
        }
        while o < m {
            a.conv(o, 1);
            qa_block::<B, 1, 1>(y.add(o), 0, xi, 0, xd, 0, xg, a.wrow(o), wpr, sf, bf, l, a.bias_at(o), gs);
            o += 1;
        }
        return;
    }
    // prefill: one output at a time (its packed row stays in L1), PF_R rows per block share each unpacked block
    let ngp = l.ngp;
    for o in 0..m {
        a.conv(o, 1);
        let mut r = 0;
        while r + PF_R <= tr {
            let (yy, xx, dd, gg) = (y.add(r * m + o), xi.add(r * n), xd.add(r * xds), xg.add(r * ngp));
            qa_block::<B, PF_R, 1>(yy, m, xx, n, dd, xds, gg, a.wrow(o), wpr, sf, bf, l, a.bias_at(o), gs);
            r += PF_R;
        }
        while r < tr {
            let (yy, xx, dd, gg) = (y.add(r * m + o), xi.add(r * n), xd.add(r * xds), xg.add(r * ngp));
            qa_block::<B, 1, 1>(yy, m, xx, n, dd, xds, gg, a.wrow(o), wpr, sf, bf, l, a.bias_at(o), gs);
            r += 1;
        }
    }
}

#[allow(clippy::too_many_arguments)]
unsafe fn matmul_q8a_t<const B: usize>(
    y: *mut f32,
    xq: *const u8,
    packed: *const u8,
    scales: *const u8,
    biases: *const u8,
    bias: *const f32,
    rows: usize,
    n: usize,
    m: usize,
    gs: usize,
    sdt: u32,
    scratch: *mut u8,
) {
    let l = layout(rows, n, gs);
    let xi = scratch as *mut i16;
    let xg = scratch.add(2 * l.t * n) as *mut f32;
    let sf = xg.add(l.t * l.ngp);
    let bf = sf.add(MV_O * l.ngp);
    let a = Args { packed, scales, biases, bias, m, gs, l: &l, sf, bf, sdt, wpr: n * B / 8 };
    let rb = row_bytes(n);
    let xds = rb / 4;
    let mut r0 = 0;
    while r0 < rows {
        let r1 = (r0 + l.t).min(rows);
        let tr = r1 - r0;
        for r in 0..tr {
            prep_row::<B>(xi.add(r * n), xg.add(r * l.ngp), xq.add((r0 + r) * rb), n, gs, l.ngp);
        }
        let xd = xq.add(r0 * rb + n) as *const f32;
        tile::<B>(&a, y.add(r0 * m), xi, n, xd, xds, xg, tr);
        r0 = r1;
    }
}

/// `y[rows, out] ≈ x[rows, in] · dequant(W)ᵀ (+ bias)` from activations quantized by [`mk_quantize_act`] (`xq`,
/// `rows` rows of `in` values). bits 4 or 8; `sdt`: scale/bias dtype (0 f32, 1 f16, 2 bf16). `scratch` must hold
/// [`mk_matmul_q8a_scratch`]`(rows, in, gs)` bytes, 16-byte aligned.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn mk_matmul_q8a(
    y: *mut f32,
    xq: *const u8,
    packed: *const u8,
    scales: *const u8,
    biases: *const u8,
    bias: *const f32,
    rows: usize,
    n_in: usize,
    n_out: usize,
    bits: usize,
    gs: usize,
    sdt: u32,
    scratch: *mut u8,
) {
    let bias = if bias as usize == 0 { core::ptr::null() } else { bias };
    if bits == 4 {
        matmul_q8a_t::<4>(y, xq, packed, scales, biases, bias, rows, n_in, n_out, gs, sdt, scratch);
    } else {
        matmul_q8a_t::<8>(y, xq, packed, scales, biases, bias, rows, n_in, n_out, gs, sdt, scratch);
    }
}
