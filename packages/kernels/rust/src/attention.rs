//! Causal grouped-query attention over a KV cache addressed by absolute position.
//!
//! For query row r at position p = start + r and head h (kv head h / (nh / nkv)), keys j run over
//! `lo..=p` with `lo = max(0, p − window + 1)` (window 0 = unlimited). Nothing outside that range is read.
//! The reduction is a fixed function of (lo, p), i.e. of p alone:
//!   s_j = dot(q, k_j) · scale         ([`crate::simd::dot`] order over head_dim)
//!   s_j = cap · tanh(s_j / cap)       (only with a soft-cap, `cap > 0`: [`crate::simd::softcap4`])
//!   m   = max_j s_j
//!   e_j = exp(s_j − m),  Σ = canonical [`crate::simd::sum`] of e_lo..e_p (index relative to lo)
//!   out = (Σ_j e_j · v_j, j ascending, one chain per dimension) / Σ
//! So a position's output is bitwise the same whether it is computed in a prefill of many rows or alone, and
//! whatever the cache holds beyond p.
//!
//! [`mk_attention_heads`] computes only the query heads of kv heads `kv0..kv1` (so threads can split the heads).
//! Register blocking over heads never crosses a kv head (blocks start at `kvh · g`), and every head's chains are
//! the ones above, so a head's output is bitwise the same whatever range it is computed in; other heads' output
//! columns are not written. [`mk_attention`] is the full range.
use crate::dense::block;
use crate::ops::max;
use crate::simd::*;
use core::arch::wasm32::*;

#[inline(always)]
fn span(p: usize, window: usize) -> (usize, usize) {
    let lo = if window > 0 && p + 1 > window { p + 1 - window } else { 0 };
    (lo, p - lo + 1)
}

/// Keys per tile of the value pass (a tile of V rows stays in cache while its dimension blocks are swept).
const VT: usize = 16;

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

/// Scratch bytes `mk_attention` needs.
#[no_mangle]
pub extern "C" fn mk_attention_scratch(rows: usize, start: usize, nh: usize, _nkv: usize, hd: usize, window: usize) -> usize {
    scratch_bytes(rows, start, nh, hd, window)
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
    scratch_bytes(rows, start, (kv1 - kv0) * (nh / nkv), hd, window)
}

/// Scratch for `heads` query heads: scores `[heads, lcap]`, value sums `[heads, round4(hd)]`, softmax sums `[heads]`.
#[inline(always)]
fn scratch_bytes(rows: usize, start: usize, heads: usize, hd: usize, window: usize) -> usize {
    let last = start + rows; // positions < last
    let lmax = if window > 0 { window.min(last) } else { last };
    4 * heads * (score_stride(lmax) + round4(hd) + 1) + 16
}

/// All heads: [`mk_attention_heads`] over kv heads `0..nkv`. `cap` > 0 soft-caps the scaled scores (0 = none).
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

/// Query heads `kv0·g .. kv1·g` (g = nh / nkv) of every row: scores, softmax weights and value sums for the
/// range's heads of one query row; K and V rows are walked in ascending order, all the range's heads at once.
/// `q`/`out` rows are `nh·hd` wide and `k`/`v` rows `nkv·hd` wide whatever the range; only the range's output
/// columns are written.
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
    let g = nh / nkv;
    let qs = nh * hd;
    let ks = nkv * hd;
    let h0 = kv0 * g; // first query head of the range; scratch rows are indexed by h - h0
    let nr = (kv1 - kv0) * g;
    let last = start + rows;
    let lcap = score_stride(if window > 0 { window.min(last) } else { last });
    let hdp = round4(hd);
    let scores = scratch; // [nr, lcap]
    let acc = scratch.add(nr * lcap); // [nr, hdp]
    let sums = acc.add(nr * hdp); // [nr]
    for r in 0..rows {
        let p = start + r;
        let (lo, len) = span(p, window);
        let qr = q.add(r * qs);
        // raw scores q·k (the canonical dot order of `dense::block`), keys ascending, heads sharing a kv head
        // blocked together so each key slice is loaded once
        for j in 0..len {
            let krow = k.add((lo + j) * ks);
            for kvh in kv0..kv1 {
                let kb = krow.add(kvh * hd) as *const u8;
                let mut h = kvh * g;
                let end = h + g;
                while h + 4 <= end {
                    block::<F32, 4, 1>(scores.add((h - h0) * lcap + j), lcap, qr.add(h * hd), hd, kb, 0, hd, core::ptr::null());
                    h += 4;
                }
                while h + 2 <= end {
                    block::<F32, 2, 1>(scores.add((h - h0) * lcap + j), lcap, qr.add(h * hd), hd, kb, 0, hd, core::ptr::null());
                    h += 2;
                }
                if h < end {
                    block::<F32, 1, 1>(scores.add((h - h0) * lcap + j), lcap, qr.add(h * hd), hd, kb, 0, hd, core::ptr::null());
                }
            }
        }
        // softmax weights of s = (q·k) · scale (soft-capped when cap > 0)
        let sc = f32x4_splat(scale);
        let cv = f32x4_splat(cap);
        for hl in 0..nr {
            let s = scores.add(hl * lcap);
            let mut i = 0;
            if cap > 0.0 {
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
        while j0 < len {
            let j1 = (j0 + VT).min(len);
            for kvh in kv0..kv1 {
                let vb = v.add((lo + j0) * ks + kvh * hd);
                let mut h = kvh * g;
                let end = h + g;
                while h + 4 <= end {
                    let hl = h - h0;
                    vtile::<4>(acc.add(hl * hdp), hdp, scores.add(hl * lcap + j0), lcap, vb, ks, j1 - j0, hd);
                    h += 4;
                }
                while h < end {
                    let hl = h - h0;
                    vtile::<1>(acc.add(hl * hdp), hdp, scores.add(hl * lcap + j0), lcap, vb, ks, j1 - j0, hd);
                    h += 1;
                }
            }
            j0 = j1;
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
