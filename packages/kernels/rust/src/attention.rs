//! Causal grouped-query attention over a KV cache addressed by absolute position.
//!
//! For query row r at position p = start + r and head h (kv head h / (nh / nkv)), keys j run over
//! `lo..=p` with `lo = max(0, p − window + 1)` (window 0 = unlimited). Nothing outside that range is read.
//! The reduction is a fixed function of (lo, p), i.e. of p alone:
//!   s_j = dot(q, k_j) · scale         ([`crate::simd::dot`] order over head_dim)
//!   m   = max_j s_j
//!   e_j = exp(s_j − m),  Σ = canonical [`crate::simd::sum`] of e_lo..e_p (index relative to lo)
//!   out = (Σ_j e_j · v_j, j ascending, one chain per dimension) / Σ
//! So a position's output is bitwise the same whether it is computed in a prefill of many rows or alone, and
//! whatever the cache holds beyond p.
use crate::ops::max;
use crate::simd::*;
use core::arch::wasm32::*;

#[inline(always)]
fn span(p: usize, window: usize) -> (usize, usize) {
    let lo = if window > 0 && p + 1 > window { p + 1 - window } else { 0 };
    (lo, p - lo + 1)
}

#[inline(always)]
fn round4(n: usize) -> usize {
    (n + 3) & !3
}

/// Scratch bytes `mk_attention` needs.
#[no_mangle]
pub extern "C" fn mk_attention_scratch(rows: usize, start: usize, nh: usize, nkv: usize, hd: usize, window: usize) -> usize {
    let g = nh / nkv;
    let last = start + rows; // positions < last
    let lmax = if window > 0 { window.min(last) } else { last };
    4 * g * (round4(lmax) + round4(hd) + 1) + 16
}

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
) {
    let g = nh / nkv;
    let qs = nh * hd;
    let ks = nkv * hd;
    let last = start + rows;
    let lcap = round4(if window > 0 { window.min(last) } else { last });
    let scores = scratch;
    let acc = scratch.add(g * lcap);
    let hdp = round4(hd);
    let sums = acc.add(g * hdp);
    for r in 0..rows {
        let p = start + r;
        let (lo, len) = span(p, window);
        for kvh in 0..nkv {
            let kb = k.add(lo * ks + kvh * hd);
            let vb = v.add(lo * ks + kvh * hd);
            let qb = q.add(r * qs + kvh * g * hd);
            // scores, keys ascending
            for j in 0..len {
                let kj = kb.add(j * ks);
                for hh in 0..g {
                    *scores.add(hh * lcap + j) = dot(qb.add(hh * hd), kj, hd) * scale;
                }
            }
            // softmax weights
            for hh in 0..g {
                let s = scores.add(hh * lcap);
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
                *sums.add(hh) = sum(s, len);
            }
            // weighted values, keys ascending
            for hh in 0..g {
                let a = acc.add(hh * hdp);
                let mut d = 0;
                while d < hdp {
                    st(a.add(d), zero());
                    d += 4;
                }
            }
            for j in 0..len {
                let vj = vb.add(j * ks);
                for hh in 0..g {
                    let e = f32x4_splat(*scores.add(hh * lcap + j));
                    let a = acc.add(hh * hdp);
                    let mut d = 0;
                    while d + 4 <= hd {
                        st(a.add(d), f32x4_add(ld(a.add(d)), f32x4_mul(e, ld(vj.add(d)))));
                        d += 4;
                    }
                    if d < hd {
                        let t = hd - d;
                        st(a.add(d), f32x4_add(ld(a.add(d)), f32x4_mul(e, ld_part(vj.add(d), t, 0.0))));
                    }
                }
            }
            for hh in 0..g {
                let sv = f32x4_splat(*sums.add(hh));
                let a = acc.add(hh * hdp);
                let o = out.add(r * qs + (kvh * g + hh) * hd);
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
}
