//! Dense matmul `Y = X · Wᵀ (+ bias)` with f32 / f16 / bf16 weights, conversion and dense embedding gather.
//!
//! Per output element (r, o) the reduction is exactly [`crate::simd::dot`]'s order over `in`: two accumulators
//! over 8-element blocks, the 4-element remainder into acc0, the zero-padded tail into acc1, `hsum(acc0 + acc1)`,
//! then `+ bias[o]`. Weight elements are converted to f32 exactly before use, so the product order is the same for
//! every dtype. The register-blocked kernels below (R rows × O outputs) run R·O of these chains side by side.
use crate::simd::*;
use core::arch::wasm32::*;

/// Rows × outputs blocked kernel. Returns false if the fast weight conversion met a value it cannot convert
/// (f16 inf/NaN); the caller then reruns [`block_exact`]. `x` points at row 0 of the block (stride `xs` floats), `w` at weight row 0 of
/// the block (stride `ws` bytes), `y` at element (0, 0) (row stride `ys`). `bias` is null or points at bias[o0].
#[inline(always)]
pub unsafe fn block<E: Elem, const R: usize, const O: usize>(
    y: *mut f32,
    ys: usize,
    x: *const f32,
    xs: usize,
    w: *const u8,
    ws: usize,
    n: usize,
    bias: *const f32,
) -> bool {
    let z = zero();
    let mut a0 = [[z; O]; R];
    let mut a1 = [[z; O]; R];
    let mut flag = z;
    // One 4-element chunk per iteration, alternating accumulators by swapping them: chunk c lands in acc(c % 2),
    // exactly the 8-block order of `dot` (the 4-element remainder of an odd chunk count lands in acc0). Fewer
    // loads per iteration keeps TurboFan (which hoists all loads of an iteration) from spilling.
    let nc = n / 4;
    let mut c = 0;
    while c < nc {
        let i = 4 * c;
        let mut wv = [z; O];
        for o in 0..O {
            wv[o] = E::l4_fast(w.add(o * ws), i, &mut flag);
        }
        for r in 0..R {
            let xv = ld(x.add(r * xs + i));
            for o in 0..O {
                a0[r][o] = f32x4_add(a0[r][o], f32x4_mul(xv, wv[o]));
            }
        }
        core::mem::swap(&mut a0, &mut a1);
        c += 1;
    }
    if nc % 2 == 1 {
        core::mem::swap(&mut a0, &mut a1);
    }
    let i = 4 * nc;
    if i < n {
        let m = n - i;
        for o in 0..O {
            let wv = E::lpart(w.add(o * ws), i, m);
            for r in 0..R {
                a1[r][o] = f32x4_add(a1[r][o], f32x4_mul(ld_part(x.add(r * xs + i), m, 0.0), wv));
            }
        }
    }
    for r in 0..R {
        for o in 0..O {
            let mut v = hsum(f32x4_add(a0[r][o], a1[r][o]));
            if !bias.is_null() {
                v += *bias.add(o);
            }
            *y.add(r * ys + o) = v;
        }
    }
    !(E::CHECK && E::flagged(flag))
}

/// Exact twin of an element type: same loads, no fast path (used to redo a block that met f16 inf/NaN).
struct Exact<E>(core::marker::PhantomData<E>);

impl<E: Elem> Elem for Exact<E> {
    const BYTES: usize = E::BYTES;
    #[inline(always)]
    unsafe fn l8(p: *const u8, i: usize) -> (v128, v128) {
        E::l8(p, i)
    }
    #[inline(always)]
    unsafe fn l4(p: *const u8, i: usize) -> v128 {
        E::l4(p, i)
    }
    #[inline(always)]
    unsafe fn l1(p: *const u8, i: usize) -> f32 {
        E::l1(p, i)
    }
}

/// [`block`], redone with exact conversion when the fast one flagged a value.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn run<E: Elem, const R: usize, const O: usize>(
    y: *mut f32,
    ys: usize,
    x: *const f32,
    xs: usize,
    w: *const u8,
    ws: usize,
    n: usize,
    bias: *const f32,
) {
    if !block::<E, R, O>(y, ys, x, xs, w, ws, n, bias) {
        slow::<E, R, O>(y, ys, x, xs, w, ws, n, bias);
    }
}

#[inline(never)]
#[allow(clippy::too_many_arguments)]
unsafe fn slow<E: Elem, const R: usize, const O: usize>(
    y: *mut f32,
    ys: usize,
    x: *const f32,
    xs: usize,
    w: *const u8,
    ws: usize,
    n: usize,
    bias: *const f32,
) {
    block::<Exact<E>, R, O>(y, ys, x, xs, w, ws, n, bias);
}

/// Rows of X per tile in the prefill path: enough that a tile stays in L2 while the weights stream once per tile.
#[inline(always)]
pub fn row_tile(n_in: usize, r: usize) -> usize {
    let t = (1 << 20) / (n_in * 4).max(1);
    let t = t.min(64).max(r);
    t - t % r
}

/// `MV_O`: outputs computed together in the 1-row (decode) path; `PF_R` × `PF_O`: rows × outputs of the prefill
/// block (rows >= PF_R). Tuned per dtype on a V8/x64 machine; any choice gives the same bits.
unsafe fn matmul_t<E: Elem, const MV_O: usize, const PF_R: usize, const PF_O: usize>(
    y: *mut f32,
    x: *const f32,
    w: *const u8,
    bias: *const f32,
    rows: usize,
    n: usize,
    m: usize,
) {
    let ws = n * E::BYTES;
    let bias_at = |o: usize| if bias.is_null() { bias } else { bias.add(o) };
    if rows < PF_R {
        for r in 0..rows {
            let xr = x.add(r * n);
            let yr = y.add(r * m);
            let mut o = 0;
            while o + MV_O <= m {
                run::<E, 1, MV_O>(yr.add(o), 0, xr, 0, w.add(o * ws), ws, n, bias_at(o));
                o += MV_O;
            }
            while o < m {
                run::<E, 1, 1>(yr.add(o), 0, xr, 0, w.add(o * ws), ws, n, bias_at(o));
                o += 1;
            }
        }
        return;
    }
    let tile = row_tile(n, PF_R);
    let mut r0 = 0;
    while r0 < rows {
        let r1 = (r0 + tile).min(rows);
        let mut o = 0;
        while o < m {
            let wo = w.add(o * ws);
            if o + PF_O <= m {
                let mut r = r0;
                while r + PF_R <= r1 {
                    run::<E, PF_R, PF_O>(y.add(r * m + o), m, x.add(r * n), n, wo, ws, n, bias_at(o));
                    r += PF_R;
                }
                while r < r1 {
                    run::<E, 1, PF_O>(y.add(r * m + o), m, x.add(r * n), n, wo, ws, n, bias_at(o));
                    r += 1;
                }
                o += PF_O;
            } else {
                let mut r = r0;
                while r + PF_R <= r1 {
                    run::<E, PF_R, 1>(y.add(r * m + o), m, x.add(r * n), n, wo, ws, n, bias_at(o));
                    r += PF_R;
                }
                while r < r1 {
                    run::<E, 1, 1>(y.add(r * m + o), m, x.add(r * n), n, wo, ws, n, bias_at(o));
                    r += 1;
                }
                o += 1;
            }
        }
        r0 = r1;
    }
}

/// `y[rows, out] = x[rows, in] · w[out, in]ᵀ (+ bias[out])`; `wdt` 0 = f32, 1 = f16, 2 = bf16; `bias` 0 = none.
#[no_mangle]
pub unsafe extern "C" fn mk_matmul(
    y: *mut f32,
    x: *const f32,
    w: *const u8,
    bias: *const f32,
    rows: usize,
    n_in: usize,
    n_out: usize,
    wdt: u32,
) {
    let bias = if bias as usize == 0 { core::ptr::null() } else { bias };
    match wdt {
        0 => matmul_t::<F32, 4, 2, 2>(y, x, w, bias, rows, n_in, n_out),
        1 => matmul_t::<F16, 2, 4, 1>(y, x, w, bias, rows, n_in, n_out),
        _ => matmul_t::<BF16, 4, 2, 2>(y, x, w, bias, rows, n_in, n_out),
    }
}

/// `out[i] = f32(src[i])` for `n` elements of dtype `dt` (0 = f32, 1 = f16, 2 = bf16).
#[no_mangle]
pub unsafe extern "C" fn mk_to_f32(out: *mut f32, src: *const u8, n: usize, dt: u32) {
    match dt {
        0 => core::ptr::copy(src as *const f32, out, n),
        1 => convert::<F16>(out, src, n),
        _ => convert::<BF16>(out, src, n),
    }
}

/// `out[i, :] = f32(table[ids[i], :])`; the loader has checked every id against the vocabulary.
#[no_mangle]
pub unsafe extern "C" fn mk_embedding(out: *mut f32, table: *const u8, ids: *const i32, n_ids: usize, dim: usize, dt: u32) {
    let es = match dt {
        0 => 4,
        _ => 2,
    };
    for t in 0..n_ids {
        let id = *ids.add(t) as usize;
        mk_to_f32(out.add(t * dim), table.add(id * dim * es), dim, dt);
    }
}
