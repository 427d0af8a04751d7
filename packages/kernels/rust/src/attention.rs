//! Causal grouped-query attention over KV-cache storage, and the writes that fill that storage.
//!
//! Storage ([`Kv`]): `cap` rows of `width = nkv·hd` values, f32, f16 or MLX-affine 4/8-bit (groups of 32/64 along
//! the row, f32 scales and biases; value `fl(fl(scale·q) + bias)`). Position j sits in row
//! `j` when `j < keep` or `j < cap`, else `keep + (j − keep) mod (cap − keep)` (a ring with `keep` pinned rows).
//!
//! For query row r at position p = start + r and head h (kv head h / (nh / nkv)), the keys seen are
//! `V(p) = [0, min(keep, lo)) ∪ [lo, p]` with `lo = max(0, p − window + 1)` (window 0 = unlimited), in ascending
//! position order whatever rows they sit in. Nothing else is read. The reduction is a fixed function of V(p), i.e.
//! of p alone:
//!   s_i = dot(q, K_i) · scale   ([`crate::simd::dot`] order over head_dim), i = index in V(p)
//!   s_i = cap · tanh(s_i / cap) (only with a soft-cap, `cap > 0`: [`crate::simd::softcap4`])
//!   m   = max_i s_i
//!   e_i = exp(s_i − m),  Σ = canonical [`crate::simd::sum`] of e_0..e_{len−1}
//!   out = (Σ_i e_i · V_i, i ascending, one chain per dimension) / Σ
//! Non-f32 rows are first converted to f32 (exactly; quantized as above) into scratch and then go through the very
//! same code, so the result is bitwise what f32 storage holding the converted values gives. A position's output is
//! therefore bitwise the same whether it is computed in a prefill of many rows or alone, whatever the ring's
//! rotation, capacity, or the contents of rows outside V(p).
//!
//! [`mk_attention_kv`] computes only the query heads of kv heads `kv0..kv1` (so threads can split the heads).
//! Register blocking over heads never crosses a kv head (blocks start at `kvh · g`), and every head's chains are
//! the ones above, so a head's output is bitwise the same whatever range it is computed in; other heads' output
//! columns are not written.
use crate::dense::block;
use crate::ops::max;
use crate::simd::*;
use core::arch::wasm32::*;

/// Storage format codes.
pub const FMT_F32: usize = 0;
pub const FMT_F16: usize = 1;
pub const FMT_Q4: usize = 4;
#[allow(dead_code)]
pub const FMT_Q8: usize = 8; // any other code: 8-bit

/// Keys per tile of the value pass (a tile of V rows stays in cache while its dimension blocks are swept).
const VT: usize = 16;

/// One side (keys or values) of KV storage.
#[derive(Clone, Copy)]
struct Kv {
    data: *const u8,
    scales: *const f32,
    biases: *const f32,
    fmt: usize,
    width: usize,
    gs: usize,
}

impl Kv {
    /// Bytes per row of `data`.
    #[inline(always)]
    fn row_bytes(&self) -> usize {
        match self.fmt {
            FMT_F32 => self.width * 4,
            FMT_F16 => self.width * 2,
            bits => self.width * bits / 8,
        }
    }

    /// f32 rows: element `c` of row `row`.
    #[inline(always)]
    unsafe fn f32_at(&self, row: usize, c: usize) -> *const f32 {
        (self.data as *const f32).add(row * self.width + c)
    }

    /// Elements `c0 .. c0 + n` of row `row` as f32 into `dst` (for quantized rows `c0` and `n` are multiples of 8).
    #[inline(always)]
    unsafe fn load(&self, dst: *mut f32, row: usize, c0: usize, n: usize) {
        match self.fmt {
            FMT_F32 => core::ptr::copy_nonoverlapping(self.f32_at(row, c0), dst, n),
            FMT_F16 => convert::<F16>(dst, self.data.add((row * self.width + c0) * 2), n),
            _ => {
                let groups = self.width / self.gs;
                let sc = self.scales.add(row * groups);
                let bi = self.biases.add(row * groups);
                let src = self.data.add(row * self.row_bytes());
                if self.fmt == FMT_Q4 {
                    deq4(dst, src, sc, bi, c0, n, self.gs)
                } else {
                    deq8(dst, src, sc, bi, c0, n, self.gs)
                }
            }
        }
    }
}

/// Eight codes (one per low byte of `v`'s lanes 0..8, as u8) → `fl(fl(s·q) + b)` at `dst`, `dst + 4`.
#[inline(always)]
unsafe fn deq_store(dst: *mut f32, v: v128, s: v128, b: v128) {
    let h = u16x8_extend_low_u8x16(v);
    let lo = f32x4_convert_u32x4(u32x4_extend_low_u16x8(h));
    let hi = f32x4_convert_u32x4(u32x4_extend_high_u16x8(h));
    v128_store(dst as *mut v128, f32x4_add(f32x4_mul(lo, s), b));
    v128_store(dst.add(4) as *mut v128, f32x4_add(f32x4_mul(hi, s), b));
}

/// 8-bit codes: element c is byte c of the row.
#[inline(always)]
unsafe fn deq8(dst: *mut f32, row: *const u8, sc: *const f32, bi: *const f32, c0: usize, n: usize, gs: usize) {
    let mut c = c0;
    while c < c0 + n {
        let g = c / gs;
        let v = v128_load64_zero(row.add(c) as *const u64);
        deq_store(dst.add(c - c0), v, f32x4_splat(*sc.add(g)), f32x4_splat(*bi.add(g)));
        c += 8;
    }
}

/// 4-bit codes: element c is the low (even c) or high (odd c) nibble of byte c / 2 of the row.
#[inline(always)]
unsafe fn deq4(dst: *mut f32, row: *const u8, sc: *const f32, bi: *const f32, c0: usize, n: usize, gs: usize) {
    let mask = u8x16_splat(0x0f);
    let mut c = c0;
    while c < c0 + n {
        let g = c / gs;
        let v = v128_load32_zero(row.add(c / 2) as *const u32);
        let lo = v128_and(v, mask);
        let hi = u8x16_shr(v, 4);
        let codes = i8x16_shuffle::<0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23>(lo, hi);
        deq_store(dst.add(c - c0), codes, f32x4_splat(*sc.add(g)), f32x4_splat(*bi.add(g)));
        c += 8;
    }
}

/// Row of position `j` (see the module docs).
#[inline(always)]
fn ring_row(j: usize, keep: usize, cap: usize) -> usize {
    if j < keep || j < cap {
        j
    } else {
        keep + (j - keep) % (cap - keep)
    }
}

/// Splits the positions of V(p) into runs of consecutive rows: `(row, count)` pairs, in position order. At most 4.
#[inline(always)]
fn runs(p: usize, window: usize, keep: usize, cap: usize, out: &mut [(usize, usize); 4]) -> (usize, usize) {
    let lo = if window > 0 && p + 1 > window { p + 1 - window } else { 0 };
    let mut n = 0;
    let mut len = 0;
    let sinks = keep.min(lo);
    if sinks > 0 {
        out[0] = (0, sinks);
        n = 1;
        len = sinks;
    }
    let mut j = lo;
    while j <= p {
        let row = ring_row(j, keep, cap);
        let count = if j < keep {
            (p + 1).min(keep) - j
        } else if j < cap {
            (p + 1).min(cap) - j
        } else {
            (p + 1 - j).min(cap - row)
        };
        out[n] = (row, count);
        n += 1;
        len += count;
        j += count;
    }
    (n, len)
}

/// `acc[h][d] += e[h][j] · v_j[d]` for `H` heads over `nk` keys (ascending) and all `hd` dims, 8 dims at a time
/// held in registers. `acc` rows have stride `accs`, `e` rows stride `es`, value rows stride `vs`.
#[inline(never)]
#[allow(clippy::too_many_arguments)]
unsafe fn vtile<const H: usize>(
    acc: *mut f32,
    accs: usize,
    e: *const f32,
    es: usize,
    v: *const f32,
    vs: usize,
    nk: usize,
    hd: usize,
) {
    let mut d = 0;
    while d + 8 <= hd {
        let mut a0 = [zero(); H];
        let mut a1 = [zero(); H];
        for h in 0..H {
            a0[h] = ld(acc.add(h * accs + d));
            a1[h] = ld(acc.add(h * accs + d + 4));
        }
        for j in 0..nk {
            let vj = v.add(j * vs + d);
            let (v0, v1) = (ld(vj), ld(vj.add(4)));
            for h in 0..H {
                let w = v128_load32_splat(e.add(h * es + j) as *const u32);
                a0[h] = f32x4_add(a0[h], f32x4_mul(w, v0));
                a1[h] = f32x4_add(a1[h], f32x4_mul(w, v1));
            }
        }
        for h in 0..H {
            st(acc.add(h * accs + d), a0[h]);
            st(acc.add(h * accs + d + 4), a1[h]);
        }
        d += 8;
    }
    while d < hd {
        let t = (hd - d).min(4);
        let mut a = [zero(); H];
        for h in 0..H {
            a[h] = ld(acc.add(h * accs + d));
        }
        for j in 0..nk {
            let vv = if t == 4 { ld(v.add(j * vs + d)) } else { ld_part(v.add(j * vs + d), t, 0.0) };
            for h in 0..H {
                let w = v128_load32_splat(e.add(h * es + j) as *const u32);
                a[h] = f32x4_add(a[h], f32x4_mul(w, vv));
            }
        }
        for h in 0..H {
            st(acc.add(h * accs + d), a[h]);
        }
        d += 4;
    }
}

/// Floats per head row of the score buffer: `lmax` rounded up to whole 64-byte lines, plus one line, so that an
/// odd number of cache lines separates the heads (a multiple of 4 KiB would put every head in the same L1 set).
#[inline(always)]
fn score_stride(lmax: usize) -> usize {
    let lines = (lmax + 15) / 16;
    16 * (lines + 1 - lines % 2)
}

#[inline(always)]
fn round4(n: usize) -> usize {
    (n + 3) & !3
}

/// Most keys any query of the call sees.
#[inline(always)]
fn max_seen(rows: usize, start: usize, window: usize, keep: usize) -> usize {
    let last = start + rows; // positions < last
    if window > 0 {
        (window + keep).min(last)
    } else {
        last
    }
}

/// Scratch bytes `mk_attention` needs.
#[no_mangle]
pub extern "C" fn mk_attention_scratch(rows: usize, start: usize, nh: usize, _nkv: usize, hd: usize, window: usize) -> usize {
    scratch_bytes(rows, start, nh, hd, window, 0)
}

/// Scratch bytes `mk_attention_heads` needs for kv heads `kv0..kv1` (the range's query heads only).
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn mk_attention_heads_scratch(
    rows: usize,
    start: usize,
    nh: usize,
    nkv: usize,
    hd: usize,
    window: usize,
    kv0: usize,
    kv1: usize,
) -> usize {
    scratch_bytes(rows, start, (kv1 - kv0) * (nh / nkv), hd, window, 0)
}

/// Scratch bytes `mk_attention_kv` needs for kv heads `kv0..kv1`.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn mk_attention_kv_scratch(
    rows: usize,
    start: usize,
    nh: usize,
    nkv: usize,
    hd: usize,
    window: usize,
    keep: usize,
    kv0: usize,
    kv1: usize,
) -> usize {
    scratch_bytes(rows, start, (kv1 - kv0) * (nh / nkv), hd, window, keep)
}

/// Scratch for `heads` query heads: the call's parameters (scale, soft-cap: 4 floats), scores `[heads, lcap]`,
/// value sums `[heads, round4(hd)]`, a converted key `[round4(hd)]`, a converted value tile `[VT, round4(hd)]` and
/// softmax sums `[heads]`.
#[inline(always)]
fn scratch_bytes(rows: usize, start: usize, heads: usize, hd: usize, window: usize, keep: usize) -> usize {
    let hdp = round4(hd);
    4 * (PARAMS + heads * (score_stride(max_seen(rows, start, window, keep)) + hdp + 1) + hdp * (1 + VT)) + 16
}

/// Floats at the start of the scratch holding the call's float parameters: `[scale, softcap, 0, 0]` (passed in
/// memory so that every argument of the call is an integer: a JS caller then never boxes a number to call it).
const PARAMS: usize = 4;

/// f32 storage with row j = position j: [`mk_attention_kv`] over kv heads `0..nkv`. `cap` > 0 soft-caps the scaled
/// scores (0 = none).
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn mk_attention(
    out: *mut f32,
    q: *const f32,
    k: *const f32,
    v: *const f32,
    rows: usize,
    start: usize,
    nh: usize,
    nkv: usize,
    hd: usize,
    scale: f32,
    window: usize,
    scratch: *mut f32,
    cap: f32,
) {
    mk_attention_heads(out, q, k, v, rows, start, nh, nkv, hd, scale, window, 0, nkv, scratch, cap);
}

/// f32 storage with row j = position j, query heads of kv heads `kv0..kv1`.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn mk_attention_heads(
    out: *mut f32,
    q: *const f32,
    k: *const f32,
    v: *const f32,
    rows: usize,
    start: usize,
    nh: usize,
    nkv: usize,
    hd: usize,
    scale: f32,
    window: usize,
    kv0: usize,
    kv1: usize,
    scratch: *mut f32,
    cap: f32,
) {
    let n = core::ptr::null();
    *scratch = scale;
    *scratch.add(1) = cap;
    mk_attention_kv(
        out, q, k as *const u8, n, n, v as *const u8, n, n, rows, start, nh, nkv, hd, window, 0, start + rows,
        FMT_F32, 32, kv0, kv1, scratch,
    );
}

/// Query heads `kv0·g .. kv1·g` (g = nh / nkv) of every row over storage of format `fmt` (0 f32, 1 f16, 4/8
/// quantized with group size `gs`; `*s`/`*b` are the scales/biases of quantized storage) with `cap` rows and `keep`
/// pinned rows. The scale of q·k and the soft-cap (applied when > 0) are the first two floats of `scratch`: scores, softmax weights and value sums for the range's heads of one query row; keys and values are
/// walked in ascending position order, all the range's heads at once. `q`/`out` rows are `nh·hd` wide and storage
/// rows `nkv·hd` wide whatever the range; only the range's output columns are written.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn mk_attention_kv(
    out: *mut f32,
    q: *const f32,
    kd: *const u8,
    ks: *const f32,
    kb: *const f32,
    vd: *const u8,
    vs: *const f32,
    vb: *const f32,
    rows: usize,
    start: usize,
    nh: usize,
    nkv: usize,
    hd: usize,
    window: usize,
    keep: usize,
    cap: usize,
    fmt: usize,
    gs: usize,
    kv0: usize,
    kv1: usize,
    scratch: *mut f32,
) {
    let scale = *scratch;
    let softcap = *scratch.add(1);
    let scratch = scratch.add(PARAMS);
    let g = nh / nkv;
    let qs = nh * hd;
    let width = nkv * hd;
    let kst = Kv { data: kd, scales: ks, biases: kb, fmt, width, gs };
    let vst = Kv { data: vd, scales: vs, biases: vb, fmt, width, gs };
    let h0 = kv0 * g; // first query head of the range; scratch rows are indexed by h - h0
    let nr = (kv1 - kv0) * g;
    let lcap = score_stride(max_seen(rows, start, window, keep));
    let hdp = round4(hd);
    let scores = scratch; // [nr, lcap]
    let acc = scratch.add(nr * lcap); // [nr, hdp]
    let kbuf = acc.add(nr * hdp); // [hdp]
    let vbuf = kbuf.add(hdp); // [VT, hdp]
    let sums = vbuf.add(VT * hdp); // [nr]
    let mut segs = [(0usize, 0usize); 4];
    for r in 0..rows {
        let p = start + r;
        let (nseg, len) = runs(p, window, keep, cap, &mut segs);
        let qr = q.add(r * qs);
        // raw scores q·k (the canonical dot order of `dense::block`), keys ascending, heads sharing a kv head
        // blocked together so each key slice is loaded (and converted) once
        let mut j = 0;
        for &(row0, count) in &segs[..nseg] {
            for t in 0..count {
                let row = row0 + t;
                for kvh in kv0..kv1 {
                    let kp = if fmt == FMT_F32 {
                        kst.f32_at(row, kvh * hd) as *const u8
                    } else {
                        kst.load(kbuf, row, kvh * hd, hd);
                        kbuf as *const u8
                    };
                    let mut h = kvh * g;
                    let end = h + g;
                    while h + 4 <= end {
                        block::<F32, 4, 1>(scores.add((h - h0) * lcap + j), lcap, qr.add(h * hd), hd, kp, 0, hd, core::ptr::null());
                        h += 4;
                    }
                    while h + 2 <= end {
                        block::<F32, 2, 1>(scores.add((h - h0) * lcap + j), lcap, qr.add(h * hd), hd, kp, 0, hd, core::ptr::null());
                        h += 2;
                    }
                    if h < end {
                        block::<F32, 1, 1>(scores.add((h - h0) * lcap + j), lcap, qr.add(h * hd), hd, kp, 0, hd, core::ptr::null());
                    }
                }
                j += 1;
            }
        }
        // softmax weights of s = (q·k) · scale (soft-capped when softcap > 0)
        let sc = f32x4_splat(scale);
        let cv = f32x4_splat(softcap);
        for hl in 0..nr {
            let s = scores.add(hl * lcap);
            let mut i = 0;
            if softcap > 0.0 {
                while i + 4 <= len {
                    st(s.add(i), softcap4(f32x4_mul(ld(s.add(i)), sc), cv));
                    i += 4;
                }
                if i < len {
                    let t = len - i;
                    st_part(s.add(i), softcap4(f32x4_mul(ld_part(s.add(i), t, 0.0), sc), cv), t);
                }
            } else {
                while i + 4 <= len {
                    st(s.add(i), f32x4_mul(ld(s.add(i)), sc));
                    i += 4;
                }
                if i < len {
                    let t = len - i;
                    st_part(s.add(i), f32x4_mul(ld_part(s.add(i), t, 0.0), sc), t);
                }
            }
            let m = f32x4_splat(max(s, len));
            let mut i = 0;
            while i + 4 <= len {
                st(s.add(i), exp4(f32x4_sub(ld(s.add(i)), m)));
                i += 4;
            }
            if i < len {
                let t = len - i;
                st_part(s.add(i), exp4(f32x4_sub(ld_part(s.add(i), t, 0.0), m)), t);
            }
            *sums.add(hl) = sum(s, len);
        }
        // weighted values, keys ascending: every (head, dim) is one chain acc = acc + e_j · v_j[dim]
        let mut d = 0;
        while d < nr * hdp {
            st(acc.add(d), zero());
            d += 4;
        }
        let mut j0 = 0;
        for &(row0, count) in &segs[..nseg] {
            let mut t0 = 0;
            while t0 < count {
                let nk = (count - t0).min(VT);
                for kvh in kv0..kv1 {
                    let (vp, vstride) = if fmt == FMT_F32 {
                        (vst.f32_at(row0 + t0, kvh * hd), width)
                    } else {
                        for t in 0..nk {
                            vst.load(vbuf.add(t * hdp), row0 + t0 + t, kvh * hd, hd);
                        }
                        (vbuf as *const f32, hdp)
                    };
                    let mut h = kvh * g;
                    let end = h + g;
                    while h + 4 <= end {
                        let hl = h - h0;
                        vtile::<4>(acc.add(hl * hdp), hdp, scores.add(hl * lcap + j0 + t0), lcap, vp, vstride, nk, hd);
                        h += 4;
                    }
                    while h < end {
                        let hl = h - h0;
                        vtile::<1>(acc.add(hl * hdp), hdp, scores.add(hl * lcap + j0 + t0), lcap, vp, vstride, nk, hd);
                        h += 1;
                    }
                }
                t0 += nk;
            }
            j0 += count;
        }
        for hl in 0..nr {
            let sv = f32x4_splat(*sums.add(hl));
            let a = acc.add(hl * hdp);
            let o = out.add(r * qs + (h0 + hl) * hd);
            let mut d = 0;
            while d + 4 <= hd {
                st(o.add(d), f32x4_div(ld(a.add(d)), sv));
                d += 4;
            }
            if d < hd {
                st_part(o.add(d), f32x4_div(ld(a.add(d)), sv), hd - d);
            }
        }
    }
}

// ---- writes ----------------------------------------------------------------------------------------------------

/// f32 bit pattern → f16 bit pattern, round to nearest even (overflow → inf; NaN → quiet NaN keeping the top
/// payload bits), exactly as `f32BitsToF16Bits` of `@mnemo/tensor`.
#[inline(always)]
fn f32_to_f16(x: u32) -> u32 {
    let sign = (x >> 16) & 0x8000;
    let exp = ((x >> 23) & 0xff) as i32;
    let mant = x & 0x7f_ffff;
    if exp == 0xff {
        return if mant == 0 { sign | 0x7c00 } else { sign | 0x7e00 | (mant >> 13) };
    }
    let e = exp - 112;
    if e >= 31 {
        return sign | 0x7c00;
    }
    if e <= 0 {
        let shift = (14 - e) as u32;
        if shift > 24 {
            return sign;
        }
        let m = mant | 0x80_0000;
        let mut q = m >> shift;
        let rem = m & ((1 << shift) - 1);
        let half = 1 << (shift - 1);
        if rem > half || (rem == half && q & 1 == 1) {
            q += 1;
        }
        return sign | q;
    }
    let mut h = ((e as u32) << 10) | (mant >> 13);
    let rem = mant & 0x1fff;
    if rem > 0x1000 || (rem == 0x1000 && h & 1 == 1) {
        h += 1; // a carry into the exponent (up to inf) is correct
    }
    sign | h
}

/// Round half to even in float64.
#[inline(always)]
fn round_even(x: f64) -> f64 {
    f64x2_extract_lane::<0>(f64x2_nearest(f64x2_splat(x)))
}

/// Quantizes one row of `width` f32 values (groups of `gs`) into `packed`/`scales`/`biases`: per group `min`/`max`
/// by a first-to-last scan, `scale = (max − min) / (2^bits − 1)` in f32, `bias = min`, codes
/// `clamp(round_even((x − bias) / scale), 0, 2^bits − 1)` computed in f64 (0 when the scale is 0; NaN → 0).
#[inline(always)]
unsafe fn quantize_row(packed: *mut u32, scales: *mut f32, biases: *mut f32, x: *const f32, width: usize, gs: usize, bits: usize) {
    let max_q = ((1u32 << bits) - 1) as f64;
    let per_word = 32 / bits;
    for g in 0..width / gs {
        let xg = x.add(g * gs);
        let mut mn = f32::INFINITY;
        let mut mx = f32::NEG_INFINITY;
        for i in 0..gs {
            let w = *xg.add(i);
            if w < mn {
                mn = w;
            }
            if w > mx {
                mx = w;
            }
        }
        let scale = (mx - mn) / (max_q as f32);
        let bias = mn;
        *scales.add(g) = scale;
        *biases.add(g) = bias;
        let words = packed.add(g * gs / per_word);
        for wi in 0..gs / per_word {
            let mut word = 0u32;
            for e in 0..per_word {
                let q = if scale == 0.0 {
                    0.0
                } else {
                    round_even((*xg.add(wi * per_word + e) as f64 - bias as f64) / scale as f64)
                };
                let code = if !(q >= 0.0) { 0 } else if q > max_q { max_q as u32 } else { q as u32 };
                word |= code << (bits * e);
            }
            *words.add(wi) = word;
        }
    }
}

/// Writes `rows` f32 rows of `width` from `src` into storage of format `fmt` (0 f32, 1 f16, 4/8 quantized with
/// group size `gs`, `ds`/`db` its scales/biases) with `cap` rows and `keep` pinned rows, row r at the row of
/// position `start + r`. Each row is converted on its own.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn mk_kv_write(
    dd: *mut u8,
    ds: *mut f32,
    db: *mut f32,
    src: *const f32,
    rows: usize,
    start: usize,
    width: usize,
    keep: usize,
    cap: usize,
    fmt: usize,
    gs: usize,
) {
    for r in 0..rows {
        let row = ring_row(start + r, keep, cap);
        let x = src.add(r * width);
        match fmt {
            FMT_F32 => core::ptr::copy_nonoverlapping(x, (dd as *mut f32).add(row * width), width),
            FMT_F16 => {
                let o = (dd as *mut u16).add(row * width);
                for i in 0..width {
                    *o.add(i) = f32_to_f16((*x.add(i)).to_bits()) as u16;
                }
            }
            bits => {
                let groups = width / gs;
                quantize_row(
                    (dd as *mut u32).add(row * width * bits / 32),
                    ds.add(row * groups),
                    db.add(row * groups),
                    x,
                    width,
                    gs,
                    bits,
                );
            }
        }
    }
}
