//! MLX affine-quantized matmul and embedding: `w = scale · q + bias` per group of `gs` elements.
//!
//! Formulation per output element (r, o), groups g ascending:
//!   acc  = Σ_g  D_g · s_g            (v128 chain; D_g = the group's Σ q_i·x_i as 4 lane partials)
//!   ybias = Σ_g  b_g · X_g           (v128 chain over groups in quads; X_g = Σ_{i∈g} x_i, computed once per row)
//!   y    = (hsum(acc) + hsum(ybias)) + bias[o]
//! `X_g` depends only on the input row; `s_g`/`b_g` are converted to f32 exactly. Within a group, D_g is built
//! from products in a fixed layout order that depends only on `bits` and `gs`.
//!
//! Fast path (bits 4 and 8, whose elements never straddle a u32): a v128 holds 4 words; lane j = word j, and
//! position k of a word holds element `j·E + k` (E = 32/bits) at bits `bits·k`. `and`-masking position k leaves
//! `q · 2^(bits·k)` in the lane, which `f32x4.convert_i32x4_s` turns into an exact float (the top position is
//! shifted down instead, to stay positive). The input row is pre-permuted once per row into the same layout and
//! pre-scaled by `2^(-bits·k)`, so each product equals `q·x` exactly as rounded (barring |x| < 2^-100, which
//! would make the pre-scaled value subnormal). Products alternate between two accumulators by position parity.
//! Decode (rows < 4) converts the packed words in registers ([`qblock`]); prefill unpacks each weight row's
//! converted vectors once into scratch and runs [`qdense`] over them in the very same order, so both give the
//! same bits.
//!
//! Generic path (bits 2, 3, 5, 6): one weight row is unpacked to f32 once and reused for every input row; D_g is
//! the canonical 8-element-block two-accumulator dot over the group.
use crate::dense::row_tile;
use crate::simd::*;
use core::arch::wasm32::*;

/// Outputs per block in the 1-row (decode) path.
const MV_O: usize = 2;
/// From this many rows on, the prefill path is used (row tiles are a multiple of it).
const PF_R: usize = 4;
/// Rows × outputs of the prefill block (over unpacked weight rows).
const QPF_R: usize = 2;
const QPF_O: usize = 2;
const OM: usize = if MV_O > QPF_O { MV_O } else { QPF_O };

struct Layout {
    t: usize,
    ng: usize,
    ngp: usize,
}

#[inline(always)]
fn layout(rows: usize, n: usize, gs: usize) -> Layout {
    let ng = n / gs;
    let ngp = (ng + 3) & !3;
    let t = if rows < PF_R { 1 } else { row_tile(n, PF_R).min(rows) };
    Layout { t, ng, ngp }
}

/// Scratch bytes `mk_matmul_q` needs for these arguments.
#[no_mangle]
pub extern "C" fn mk_matmul_q_scratch(rows: usize, n: usize, gs: usize) -> usize {
    let l = layout(rows, n, gs);
    4 * (l.t * (n + l.ngp) + 2 * OM * l.ngp + OM * n) + 16
}

/// Group sums (canonical [`sum`] per group, zero-padded to a multiple of 4) and, for bits 4/8, the permuted and
/// pre-scaled copy of the row.
unsafe fn prep_row(xp: *mut f32, xg: *mut f32, x: *const f32, n: usize, gs: usize, ngp: usize, bits: usize) {
    let ng = n / gs;
    for g in 0..ng {
        *xg.add(g) = sum(x.add(g * gs), gs);
    }
    for g in ng..ngp {
        *xg.add(g) = 0.0;
    }
    if bits == 4 || bits == 8 {
        let e = 32 / bits;
        let blk = 4 * e;
        let mut base = 0;
        while base < n {
            for k in 0..e {
                let sc = if k == e - 1 { 1.0 } else { f32::from_bits((127 - (bits * k) as u32) << 23) };
                for j in 0..4 {
                    *xp.add(base + 4 * k + j) = *x.add(base + j * e + k) * sc;
                }
            }
            base += blk;
        }
    }
}

/// Converts `ng` scales (or biases) of output row `o` to f32 at `dst`, zero-padded to `ngp`.
#[inline(always)]
pub(crate) unsafe fn conv_groups<S: Elem>(dst: *mut f32, src: *const u8, ng: usize, ngp: usize) {
    convert::<S>(dst, src, ng);
    for g in ng..ngp {
        *dst.add(g) = 0.0;
    }
}

/// `Σ_quads b4 · X4`, one v128 chain, then hsum.
#[inline(always)]
pub(crate) unsafe fn bias_term(bf: *const f32, xg: *const f32, ngp: usize) -> f32 {
    let mut t = zero();
    let mut g = 0;
    while g < ngp {
        t = f32x4_add(t, f32x4_mul(ld(bf.add(g)), ld(xg.add(g))));
        g += 4;
    }
    hsum(t)
}

/// One 4-word block (4·E elements) of R rows × O outputs. `FIRST` = first block of a group (assigns instead of
/// adding the first two products).
#[inline(always)]
unsafe fn qstep<const B: usize, const R: usize, const O: usize, const FIRST: bool>(
    a0: &mut [[v128; O]; R],
    a1: &mut [[v128; O]; R],
    wp: *const u32,
    wpr: usize,
    xq: *const f32,
    xps: usize,
) {
    let e = 32 / B;
    let mut wv = [zero(); O];
    for o in 0..O {
        wv[o] = v128_load(wp.add(o * wpr) as *const v128);
    }
    for k in 0..e {
        let mut c = [zero(); O];
        for o in 0..O {
            c[o] = if k == e - 1 {
                f32x4_convert_i32x4(u32x4_shr(wv[o], (32 - B) as u32))
            } else {
                f32x4_convert_i32x4(v128_and(wv[o], u32x4_splat(((1u32 << B) - 1) << (B * k))))
            };
        }
        for r in 0..R {
            let xv = ld(xq.add(r * xps + 4 * k));
            for o in 0..O {
                let p = f32x4_mul(c[o], xv);
                if FIRST && k < 2 {
                    if k == 0 {
                        a0[r][o] = p;
                    } else {
                        a1[r][o] = p;
                    }
                } else if k % 2 == 0 {
                    a0[r][o] = f32x4_add(a0[r][o], p);
                } else {
                    a1[r][o] = f32x4_add(a1[r][o], p);
                }
            }
        }
    }
}

/// R rows × O outputs over the whole row; writes `y[r·ys + o]`. Not inlined: a small function of its own gets a
/// much better register allocation from V8 than the same code inlined into a large caller.
#[inline(never)]
#[allow(clippy::too_many_arguments)]
unsafe fn qblock<const B: usize, const R: usize, const O: usize>(
    y: *mut f32,
    ys: usize,
    xp: *const f32,
    xps: usize,
    xg: *const f32,
    w: *const u32,
    wpr: usize,
    sf: *const f32,
    bf: *const f32,
    l: &Layout,
    bias: *const f32,
    gs: usize,
) {
    let blk = 128 / B; // elements per 4-word block
    let bpg = gs / blk; // a runtime trip count on purpose: unrolled groups make V8 hoist and spill the x loads
    let mut acc = [[zero(); O]; R];
    let mut a0 = [[zero(); O]; R];
    let mut a1 = [[zero(); O]; R];
    let mut wp = w;
    let mut xq = xp;
    for g in 0..l.ng {
        qstep::<B, R, O, true>(&mut a0, &mut a1, wp, wpr, xq, xps);
        wp = wp.add(4);
        xq = xq.add(blk);
        let mut b = 1;
        while b < bpg {
            qstep::<B, R, O, false>(&mut a0, &mut a1, wp, wpr, xq, xps);
            wp = wp.add(4);
            xq = xq.add(blk);
            b += 1;
        }
        for o in 0..O {
            let s = v128_load32_splat(sf.add(o * l.ngp + g) as *const u32);
            for r in 0..R {
                acc[r][o] = f32x4_add(acc[r][o], f32x4_mul(f32x4_add(a0[r][o], a1[r][o]), s));
            }
        }
    }
    for r in 0..R {
        for o in 0..O {
            let mut v = hsum(acc[r][o]) + bias_term(bf.add(o * l.ngp), xg.add(r * l.ngp), l.ngp);
            if !bias.is_null() {
                v += *bias.add(o);
            }
            *y.add(r * ys + o) = v;
        }
    }
}

struct QArgs<'a> {
    packed: *const u32,
    scales: *const u8,
    biases: *const u8,
    bias: *const f32,
    n: usize,
    m: usize,
    gs: usize,
    bits: usize,
    l: &'a Layout,
    sf: *mut f32,
    bf: *mut f32,
    qf: *mut f32,
    sdt: u32,
}

impl QArgs<'_> {
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
        let ng = self.l.ng;
        for oo in 0..no {
            let o = o0 + oo;
            conv_groups::<S>(self.sf.add(oo * self.l.ngp), self.scales.add(o * ng * S::BYTES), ng, self.l.ngp);
            conv_groups::<S>(self.bf.add(oo * self.l.ngp), self.biases.add(o * ng * S::BYTES), ng, self.l.ngp);
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
}

/// Rows `tr` of one row tile: `y` = row 0 of the tile, `xp`/`xg` its prepared rows.
#[inline(always)]
unsafe fn aligned_tile<const B: usize>(a: &QArgs, y: *mut f32, xp: *const f32, xg: *const f32, tr: usize) {
    let (n, m, l) = (a.n, a.m, a.l);
    let wpr = n * B / 32;
    let wrow = |o: usize| a.packed.add(o * wpr);
    if l.t == 1 {
        let mut o = 0;
        while o + MV_O <= m {
            a.conv(o, MV_O);
            qblock::<B, 1, MV_O>(y.add(o), 0, xp, 0, xg, wrow(o), wpr, a.sf, a.bf, l, a.bias_at(o), a.gs);
            o += MV_O;
        }
        while o < m {
            a.conv(o, 1);
            qblock::<B, 1, 1>(y.add(o), 0, xp, 0, xg, wrow(o), wpr, a.sf, a.bf, l, a.bias_at(o), a.gs);
            o += 1;
        }
        return;
    }
    // prefill: the `c` vectors of QPF_O weight rows are unpacked once and applied to every row of the tile
    let ngp = l.ngp;
    let mut o = 0;
    while o < m {
        let no = if o + QPF_O <= m { QPF_O } else { 1 };
        a.conv(o, no);
        for oo in 0..no {
            unpack_c::<B>(a.qf.add(oo * n), wrow(o + oo), n);
        }
        let mut r = 0;
        while r + QPF_R <= tr {
            let (yy, xx, gg) = (y.add(r * m + o), xp.add(r * n), xg.add(r * ngp));
            if no == QPF_O {
                qdense::<QPF_R, QPF_O>(yy, m, xx, n, a.qf, n, gg, a.sf, a.bf, l, a.bias_at(o), a.gs);
            } else {
                qdense::<QPF_R, 1>(yy, m, xx, n, a.qf, n, gg, a.sf, a.bf, l, a.bias_at(o), a.gs);
            }
            r += QPF_R;
        }
        while r < tr {
            let (yy, xx, gg) = (y.add(r * m + o), xp.add(r * n), xg.add(r * ngp));
            if no == QPF_O {
                qdense::<1, QPF_O>(yy, m, xx, n, a.qf, n, gg, a.sf, a.bf, l, a.bias_at(o), a.gs);
            } else {
                qdense::<1, 1>(yy, m, xx, n, a.qf, n, gg, a.sf, a.bf, l, a.bias_at(o), a.gs);
            }
            r += 1;
        }
        o += no;
    }
}

/// The `c` vectors [`qstep`] computes for one weight row, stored in its order: block b, position k at
/// `cf[(b·E + k)·4 ..]` (the same index as the matching `xp` vector).
unsafe fn unpack_c<const B: usize>(cf: *mut f32, w: *const u32, n: usize) {
    let e = 32 / B;
    for b in 0..n * B / 128 {
        let wv = v128_load(w.add(4 * b) as *const v128);
        for k in 0..e {
            let c = if k == e - 1 {
                f32x4_convert_i32x4(u32x4_shr(wv, (32 - B) as u32))
            } else {
                f32x4_convert_i32x4(v128_and(wv, u32x4_splat(((1u32 << B) - 1) << (B * k))))
            };
            st(cf.add((b * e + k) * 4), c);
        }
    }
}

/// Prefill twin of [`qblock`] over unpacked `c` rows (`O` of them, stride `cfs`): per group, chunk t of 4 lanes
/// goes to accumulator t % 2 (the first two assigned), which is exactly qstep's position-parity order, so every
/// output is bitwise the same as the decode path's. One chunk per iteration with the two accumulators swapped
/// keeps few loads in flight (TurboFan hoists all loads of an iteration).
#[inline(never)]
#[allow(clippy::too_many_arguments)]
unsafe fn qdense<const R: usize, const O: usize>(
    y: *mut f32,
    ys: usize,
    xp: *const f32,
    xps: usize,
    cf: *const f32,
    cfs: usize,
    xg: *const f32,
    sf: *const f32,
    bf: *const f32,
    l: &Layout,
    bias: *const f32,
    gs: usize,
) {
    let cpg = gs / 4;
    let z = zero();
    let mut acc = [[z; O]; R];
    let mut xq = xp;
    let mut cq = cf;
    for g in 0..l.ng {
        let mut a0 = [[z; O]; R];
        let mut a1 = [[z; O]; R];
        for o in 0..O {
            let c0 = ld(cq.add(o * cfs));
            let c1 = ld(cq.add(o * cfs + 4));
            for r in 0..R {
                a0[r][o] = f32x4_mul(c0, ld(xq.add(r * xps)));
                a1[r][o] = f32x4_mul(c1, ld(xq.add(r * xps + 4)));
            }
        }
        let mut t = 2;
        while t < cpg {
            let mut cv = [z; O];
            for o in 0..O {
                cv[o] = ld(cq.add(o * cfs + 4 * t));
            }
            for r in 0..R {
                let xv = ld(xq.add(r * xps + 4 * t));
                for o in 0..O {
                    a0[r][o] = f32x4_add(a0[r][o], f32x4_mul(cv[o], xv));
                }
            }
            core::mem::swap(&mut a0, &mut a1);
            t += 1;
        }
        // cpg is even, so after cpg - 2 swaps a0/a1 are back in place
        for o in 0..O {
            let s = v128_load32_splat(sf.add(o * l.ngp + g) as *const u32);
            for r in 0..R {
                acc[r][o] = f32x4_add(acc[r][o], f32x4_mul(f32x4_add(a0[r][o], a1[r][o]), s));
            }
        }
        xq = xq.add(gs);
        cq = cq.add(gs);
    }
    for r in 0..R {
        for o in 0..O {
            let mut v = hsum(acc[r][o]) + bias_term(bf.add(o * l.ngp), xg.add(r * l.ngp), l.ngp);
            if !bias.is_null() {
                v += *bias.add(o);
            }
            *y.add(r * ys + o) = v;
        }
    }
}

/// Unpacks `n` elements of a `bits`-bit row (continuous little-endian bit stream) to f32.
unsafe fn unpack_row(dst: *mut f32, w: *const u32, n: usize, bits: usize) {
    let mask = (1u32 << bits) - 1;
    if 32 % bits == 0 {
        let e = 32 / bits;
        for wi in 0..n / e {
            let word = *w.add(wi);
            for k in 0..e {
                *dst.add(wi * e + k) = ((word >> (bits * k)) & mask) as f32;
            }
        }
    } else {
        for k in 0..n {
            let bp = k * bits;
            let wi = bp >> 5;
            let sh = (bp & 31) as u32;
            let mut v = *w.add(wi) >> sh;
            if sh as usize + bits > 32 {
                v |= *w.add(wi + 1) << (32 - sh);
            }
            *dst.add(k) = (v & mask) as f32;
        }
    }
}

/// Generic path: one output at a time, its row unpacked once and applied to every row of the tile.
unsafe fn generic_tile(a: &QArgs, y: *mut f32, x: *const f32, xg: *const f32, tr: usize) {
    let (n, m, l, gs) = (a.n, a.m, a.l, a.gs);
    let wpr = n * a.bits / 32;
    for o in 0..m {
        a.conv(o, 1);
        unpack_row(a.qf, a.packed.add(o * wpr), n, a.bits);
        for r in 0..tr {
            let xr = x.add(r * n);
            let mut acc = zero();
            for g in 0..l.ng {
                let qg = a.qf.add(g * gs);
                let xx = xr.add(g * gs);
                let mut a0 = f32x4_mul(ld(qg), ld(xx));
                let mut a1 = f32x4_mul(ld(qg.add(4)), ld(xx.add(4)));
                let mut i = 8;
                while i < gs {
                    a0 = f32x4_add(a0, f32x4_mul(ld(qg.add(i)), ld(xx.add(i))));
                    a1 = f32x4_add(a1, f32x4_mul(ld(qg.add(i + 4)), ld(xx.add(i + 4))));
                    i += 8;
                }
                let s = v128_load32_splat(a.sf.add(g) as *const u32);
                acc = f32x4_add(acc, f32x4_mul(f32x4_add(a0, a1), s));
            }
            let mut v = hsum(acc) + bias_term(a.bf, xg.add(r * l.ngp), l.ngp);
            if !a.bias.is_null() {
                v += *a.bias.add(o);
            }
            *y.add(r * m + o) = v;
        }
    }
}

#[allow(clippy::too_many_arguments)]
unsafe fn matmul_q_t(
    y: *mut f32,
    x: *const f32,
    packed: *const u32,
    scales: *const u8,
    biases: *const u8,
    bias: *const f32,
    rows: usize,
    n: usize,
    m: usize,
    bits: usize,
    gs: usize,
    sdt: u32,
    scratch: *mut f32,
) {
    let l = layout(rows, n, gs);
    let xp = scratch;
    let xg = xp.add(l.t * n);
    let sf = xg.add(l.t * l.ngp);
    let bf = sf.add(OM * l.ngp);
    let qf = bf.add(OM * l.ngp);
    let a = QArgs { packed, scales, biases, bias, n, m, gs, bits, l: &l, sf, bf, qf, sdt };
    let mut r0 = 0;
    while r0 < rows {
        let r1 = (r0 + l.t).min(rows);
        let tr = r1 - r0;
        for r in 0..tr {
            prep_row(xp.add(r * n), xg.add(r * l.ngp), x.add((r0 + r) * n), n, gs, l.ngp, bits);
        }
        let yt = y.add(r0 * m);
        match bits {
            4 => aligned_tile::<4>(&a, yt, xp, xg, tr),
            8 => aligned_tile::<8>(&a, yt, xp, xg, tr),
            _ => generic_tile(&a, yt, x.add(r0 * n), xg, tr),
        }
        r0 = r1;
    }
}

/// Quantized `y[rows, out] = x[rows, in] · dequant(W)ᵀ (+ bias)`. `sdt`: scale/bias dtype (0 f32, 1 f16, 2 bf16).
/// `scratch` must hold [`mk_matmul_q_scratch`]`(rows, in, gs)` bytes, 4-byte aligned.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn mk_matmul_q(
    y: *mut f32,
    x: *const f32,
    packed: *const u32,
    scales: *const u8,
    biases: *const u8,
    bias: *const f32,
    rows: usize,
    n_in: usize,
    n_out: usize,
    bits: usize,
    gs: usize,
    sdt: u32,
    scratch: *mut f32,
) {
    let bias = if bias as usize == 0 { core::ptr::null() } else { bias };
    matmul_q_t(y, x, packed, scales, biases, bias, rows, n_in, n_out, bits, gs, sdt, scratch);
}

unsafe fn embedding_q_t<S: Elem>(
    out: *mut f32,
    packed: *const u32,
    scales: *const u8,
    biases: *const u8,
    ids: *const i32,
    n_ids: usize,
    dim: usize,
    bits: usize,
    gs: usize,
) {
    let ng = dim / gs;
    let wpr = dim * bits / 32;
    for t in 0..n_ids {
        let id = *ids.add(t) as usize;
        let o = out.add(t * dim);
        unpack_row(o, packed.add(id * wpr), dim, bits);
        for g in 0..ng {
            let s = f32x4_splat(S::l1(scales, id * ng + g));
            let b = f32x4_splat(S::l1(biases, id * ng + g));
            let mut i = g * gs;
            while i < (g + 1) * gs {
                st(o.add(i), f32x4_add(f32x4_mul(s, ld(o.add(i))), b));
                i += 4;
            }
        }
    }
}

/// `out[i, :] = dequant(table[ids[i], :])` (`scale · q + bias` per element).
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn mk_embedding_q(
    out: *mut f32,
    packed: *const u32,
    scales: *const u8,
    biases: *const u8,
    ids: *const i32,
    n_ids: usize,
    dim: usize,
    bits: usize,
    gs: usize,
    sdt: u32,
) {
    match sdt {
        0 => embedding_q_t::<F32>(out, packed, scales, biases, ids, n_ids, dim, bits, gs),
        1 => embedding_q_t::<F16>(out, packed, scales, biases, ids, n_ids, dim, bits, gs),
        _ => embedding_q_t::<BF16>(out, packed, scales, biases, ids, n_ids, dim, bits, gs),
    }
}
