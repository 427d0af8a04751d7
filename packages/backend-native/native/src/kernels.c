/*
 * Every kernel of the native backend, written once against the 16-lane virtual vector (vf / vi) and compiled once
 * per ISA level. Build with one of MN_LEVEL_{SCALAR,AVX2,AVX512,AVX512VNNI,NEON,DOTPROD} and -ffp-contract=off.
 * Tile sizes (MN_MR rows x MN_NV panels) only change speed: every output element is computed by the same sequence of
 * operations whatever tile, task split or ISA computes it.
 */
#include <math.h>

#include "mn.h"

#if defined(MN_LEVEL_AVX512VNNI)
#define MN_VNNI 1
#include "vec_avx512.h"
#define MN_TABLE mn_kernels_avx512vnni
#define MN_NAME "avx512vnni"
#define MN_MR 4
#define MN_NV 2
#define MN_NV1 4
#define MN_GMR 8
#elif defined(MN_LEVEL_AVX512)
#include "vec_avx512.h"
#define MN_TABLE mn_kernels_avx512
#define MN_NAME "avx512"
#define MN_MR 4
#define MN_NV 2
#define MN_NV1 4
#define MN_GMR 8
#elif defined(MN_LEVEL_AVX2)
#include "vec_avx2.h"
#define MN_TABLE mn_kernels_avx2
#define MN_NAME "avx2"
#define MN_MR 2
#define MN_NV 2
#define MN_NV1 4
#define MN_GMR 2
#elif defined(MN_LEVEL_DOTPROD)
#define MN_DOTPROD 1
#include "vec_neon.h"
#define MN_TABLE mn_kernels_dotprod
#define MN_NAME "dotprod"
#define MN_MR 2
#define MN_NV 2
#define MN_NV1 4
#define MN_GMR 2
#elif defined(MN_LEVEL_NEON)
#include "vec_neon.h"
#define MN_TABLE mn_kernels_neon
#define MN_NAME "neon"
#define MN_MR 2
#define MN_NV 2
#define MN_NV1 4
#define MN_GMR 2
#else
#include "vec_scalar.h"
#define MN_TABLE mn_kernels_scalar
#define MN_NAME "scalar"
#define MN_MR 1
#define MN_NV 1
#define MN_NV1 1
#define MN_GMR 1
#endif

#define MN_UNROLL _Pragma("GCC unroll 32")

/* ---- small helpers ------------------------------------------------------------------------------------------- */

/* n (< 16) floats from p, the other lanes `fill` */
MN_AI vf vf_load_part(const float *p, int64_t n, float fill) {
  float t[16];
  for (int i = 0; i < 16; i++) t[i] = i < n ? p[i] : fill;
  return vf_loadu(t);
}
MN_AI void vf_store_part(float *p, vf a, int64_t n) {
  float t[16];
  vf_storeu(t, a);
  for (int64_t i = 0; i < n; i++) p[i] = t[i];
}
MN_AI float vf_lane0(vf a) {
  float t[16];
  vf_storeu(t, a);
  return t[0];
}
MN_AI vf vf_neg(vf a) { return vi_bits(vi_xor(vf_bits(a), vi_set1((int32_t)0x80000000u))); }

/*
 * exp(x): clamp to [-104.5, 88.8] (NaN passes), n = round(x log2 e) with the 1.5*2^23 trick, r = x - n ln2 in two
 * fused steps, degree-7 Taylor polynomial in r (Horner, fused), times 2^(n>>1) (exact) and 2^(n - (n>>1)) (one
 * rounding, so subnormal results and overflow to +inf are correct). About 1 ulp over the whole range.
 */
MN_AI vf vf_exp(vf x) {
  const vf hi = vf_set1(88.8f), lo = vf_set1(-104.5f);
  x = vf_gt_sel(x, hi, hi, x);
  x = vf_gt_sel(lo, x, lo, x);
  const vf magic = vf_set1(12582912.0f);
  vf t = vf_fma(x, vf_set1(1.44269504088896341f), magic);
  vf n = vf_sub(t, magic);
  vi ni = vi_sub(vf_bits(t), vf_bits(magic));
  vf r = vf_fma(n, vf_set1(-0.693145751953125f), x);
  r = vf_fma(n, vf_set1(-1.42860682030941723212e-6f), r);
  vf p = vf_set1(1.0f / 5040.0f);
  p = vf_fma(p, r, vf_set1(1.0f / 720.0f));
  p = vf_fma(p, r, vf_set1(1.0f / 120.0f));
  p = vf_fma(p, r, vf_set1(1.0f / 24.0f));
  p = vf_fma(p, r, vf_set1(1.0f / 6.0f));
  p = vf_fma(p, r, vf_set1(0.5f));
  p = vf_fma(p, r, vf_set1(1.0f));
  p = vf_fma(p, r, vf_set1(1.0f));
  vi n1 = vi_srai(ni, 1);
  vi n2 = vi_sub(ni, n1);
  vf s1 = vi_bits(vi_slli(vi_add(n1, vi_set1(127)), 23));
  vf s2 = vi_bits(vi_slli(vi_add(n2, vi_set1(127)), 23));
  return vf_mul(vf_mul(p, s1), s2);
}
MN_AI float mn_exp1(float x) { return vf_lane0(vf_exp(vf_set1(x))); }

/* |a| (sign bit cleared) */
MN_AI vf vf_abs(vf a) { return vi_bits(vi_and(vf_bits(a), vi_set1(0x7fffffff))); }
/* a with the sign of s */
MN_AI vf vf_copysign(vf a, vf s) {
  return vi_bits(vi_or(vi_and(vf_bits(a), vi_set1(0x7fffffff)), vi_and(vf_bits(s), vi_set1((int32_t)0x80000000u))));
}

/*
 * tanh(y): for |y| < 0.35 the odd Taylor polynomial to y^9 (Horner in y^2, fused); else sign(y)·(1 − t)/(1 + t) with
 * t = exp(−2|y|) (no cancellation: t < 0.5). ±inf → ±1, ±0 → ±0, NaN → NaN.
 */
MN_AI vf vf_tanh(vf y) {
  vf ay = vf_abs(y);
  vf y2 = vf_mul(y, y);
  vf p = vf_set1(62.0f / 2835.0f);
  p = vf_fma(p, y2, vf_set1(-17.0f / 315.0f));
  p = vf_fma(p, y2, vf_set1(2.0f / 15.0f));
  p = vf_fma(p, y2, vf_set1(-1.0f / 3.0f));
  vf small = vf_copysign(vf_fma(vf_mul(p, y2), y, y), y); /* the sign of y, also for -0 */
  vf t = vf_exp(vf_mul(ay, vf_set1(-2.0f)));
  vf large = vf_copysign(vf_div(vf_sub(vf_set1(1.0f), t), vf_add(vf_set1(1.0f), t)), y);
  return vf_gt_sel(vf_set1(0.35f), ay, small, large);
}

/* cap · tanh(x / cap) */
MN_AI vf vf_softcap(vf x, vf cap) { return vf_mul(cap, vf_tanh(vf_div(x, cap))); }

static void k_exp(float *out, const float *x, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) vf_storeu(out + i, vf_exp(vf_loadu(x + i)));
  if (i < n) vf_store_part(out + i, vf_exp(vf_load_part(x + i, n - i, 0.0f)), n - i);
}

static void k_tanh(float *out, const float *x, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) vf_storeu(out + i, vf_tanh(vf_loadu(x + i)));
  if (i < n) vf_store_part(out + i, vf_tanh(vf_load_part(x + i, n - i, 0.0f)), n - i);
}

/* sum of squares / dot product: 16 partial sums (element i -> lane i mod 16, zero-padded tail), vf_reduce_add */
MN_AI float dot16(const float *a, const float *b, int64_t n) {
  vf acc = vf_zero();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) acc = vf_fma(vf_loadu(a + i), vf_loadu(b + i), acc);
  if (i < n) acc = vf_fma(vf_load_part(a + i, n - i, 0.0f), vf_load_part(b + i, n - i, 0.0f), acc);
  return vf_reduce_add(acc);
}

/* ---- elementwise and row ops --------------------------------------------------------------------------------- */

static void k_to_f32(float *out, const void *src, int dtype, int64_t n) {
  if (dtype == MN_F32) {
    memcpy(out, src, (size_t)n * 4);
    return;
  }
  const uint16_t *s = (const uint16_t *)src;
  int64_t i = 0;
  if (dtype == MN_F16) {
    for (; i + 16 <= n; i += 16) vf_storeu(out + i, vf_load_f16(s + i));
    for (; i < n; i++) out[i] = mn_f16_to_f32(s[i]);
  } else {
    for (; i + 16 <= n; i += 16) vf_storeu(out + i, vf_load_bf16(s + i));
    for (; i < n; i++) {
      uint32_t b = (uint32_t)s[i] << 16;
      memcpy(out + i, &b, 4);
    }
  }
}

static void k_add(float *out, const float *a, const float *b, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) vf_storeu(out + i, vf_add(vf_loadu(a + i), vf_loadu(b + i)));
  for (; i < n; i++) out[i] = a[i] + b[i];
}

/* out = (g / (1 + exp(-g))) * u */
MN_AI vf swiglu16(vf g, vf u) { return vf_mul(vf_div(g, vf_add(vf_set1(1.0f), vf_exp(vf_neg(g)))), u); }
static void k_swiglu(float *out, const float *g, const float *u, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) vf_storeu(out + i, swiglu16(vf_loadu(g + i), vf_loadu(u + i)));
  if (i < n) vf_store_part(out + i, swiglu16(vf_load_part(g + i, n - i, 0.0f), vf_load_part(u + i, n - i, 0.0f)), n - i);
}

/*
 * out = gelu_tanh(g) · u = (g / (1 + exp(−v))) · u with v = (g · 2·sqrt(2/π)) · fma(g·g, 0.044715, 1) (= 2u);
 * gelu_tanh(−inf) = −0.
 */
MN_AI vf geglu16(vf g, vf u) {
  vf a = vf_fma(vf_mul(g, g), vf_set1(0.044715f), vf_set1(1.0f));
  vf v = vf_mul(vf_mul(g, vf_set1(1.5957691216057308f)), a);
  vf r = vf_div(g, vf_add(vf_set1(1.0f), vf_exp(vf_neg(v))));
  r = vf_gt_sel(vf_set1(-3.4028234663852886e38f), g, vf_set1(-0.0f), r);
  return vf_mul(r, u);
}
static void k_gelu_glu(float *out, const float *g, const float *u, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) vf_storeu(out + i, geglu16(vf_loadu(g + i), vf_loadu(u + i)));
  if (i < n) vf_store_part(out + i, geglu16(vf_load_part(g + i, n - i, 0.0f), vf_load_part(u + i, n - i, 0.0f)), n - i);
}

/* in place: x = cap · tanh(x / cap) */
static void k_softcap(float *x, int64_t n, float cap) {
  vf c = vf_set1(cap);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) vf_storeu(x + i, vf_softcap(vf_loadu(x + i), c));
  if (i < n) vf_store_part(x + i, vf_softcap(vf_load_part(x + i, n - i, 0.0f), c), n - i);
}

/* out = x · s (one rounding) */
static void k_scale(float *out, const float *x, int64_t n, float s) {
  vf vs = vf_set1(s);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) vf_storeu(out + i, vf_mul(vf_loadu(x + i), vs));
  for (; i < n; i++) out[i] = x[i] * s;
}

/* ss = dot16(x, x); inv = 1 / sqrt(ss / dim + eps); out = (x * inv) * w */
static void k_rmsnorm(float *out, const float *x, const float *w, int64_t rows, int64_t dim, float eps) {
  for (int64_t r = 0; r < rows; r++) {
    const float *xr = x + r * dim;
    float *orow = out + r * dim;
    float ss = dot16(xr, xr, dim);
    float inv = 1.0f / sqrtf(ss / (float)dim + eps);
    vf vinv = vf_set1(inv);
    int64_t i = 0;
    for (; i + 16 <= dim; i += 16) vf_storeu(orow + i, vf_mul(vf_mul(vf_loadu(xr + i), vinv), vf_loadu(w + i)));
    for (; i < dim; i++) orow[i] = (xr[i] * inv) * w[i];
  }
}

/* a' = a*c - b*s, b' = a*s + b*c (products rounded, then the sum) */
static void k_rope(float *x, const float *cs, const float *sn, int64_t rows, int64_t nheads, int64_t hd, int64_t half,
                   int layout) {
  for (int64_t r = 0; r < rows; r++) {
    const float *c = cs + r * half;
    const float *s = sn + r * half;
    for (int64_t h = 0; h < nheads; h++) {
      float *base = x + (r * nheads + h) * hd;
      if (layout == MN_ROPE_HALF) {
        float *pa = base, *pb = base + half;
        int64_t i = 0;
        for (; i + 16 <= half; i += 16) {
          vf a = vf_loadu(pa + i), b = vf_loadu(pb + i), vc = vf_loadu(c + i), vs = vf_loadu(s + i);
          vf_storeu(pa + i, vf_sub(vf_mul(a, vc), vf_mul(b, vs)));
          vf_storeu(pb + i, vf_add(vf_mul(a, vs), vf_mul(b, vc)));
        }
        for (; i < half; i++) {
          float a = pa[i], b = pb[i];
          pa[i] = a * c[i] - b * s[i];
          pb[i] = a * s[i] + b * c[i];
        }
      } else {
        for (int64_t i = 0; i < half; i++) {
          float a = base[2 * i], b = base[2 * i + 1];
          base[2 * i] = a * c[i] - b * s[i];
          base[2 * i + 1] = a * s[i] + b * c[i];
        }
      }
    }
  }
}

/* max (x > m ? x : m, so NaNs are skipped), e = exp(x - max), sum as dot16's partial sums, x = e / sum */
static void k_softmax(float *x, int64_t rows, int64_t n) {
  const float ninf = -INFINITY;
  for (int64_t r = 0; r < rows; r++) {
    float *xr = x + r * n;
    vf m16 = vf_set1(ninf);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
      vf v = vf_loadu(xr + i);
      m16 = vf_gt_sel(v, m16, v, m16);
    }
    float mt[16];
    vf_storeu(mt, m16);
    float m = ninf;
    for (int j = 0; j < 16; j++) m = mt[j] > m ? mt[j] : m;
    for (; i < n; i++) m = xr[i] > m ? xr[i] : m;
    vf vm = vf_set1(m);
    vf acc = vf_zero();
    for (i = 0; i + 16 <= n; i += 16) {
      vf e = vf_exp(vf_sub(vf_loadu(xr + i), vm));
      vf_storeu(xr + i, e);
      acc = vf_add(acc, e);
    }
    if (i < n) {
      /* padding lanes are -inf: their e is 0 */
      vf e = vf_exp(vf_sub(vf_load_part(xr + i, n - i, ninf), vm));
      vf_store_part(xr + i, e, n - i);
      acc = vf_add(acc, e);
    }
    float sum = vf_reduce_add(acc);
    vf vs = vf_set1(sum);
    for (i = 0; i + 16 <= n; i += 16) vf_storeu(xr + i, vf_div(vf_loadu(xr + i), vs));
    for (; i < n; i++) xr[i] = xr[i] / sum;
  }
}

/* the first index whose value is greater than every earlier best (as the reference: x[i] > x[best]) */
static int64_t k_argmax(const float *x, int64_t n) {
  int64_t best = 0;
  float bv = x[0];
  for (int64_t i = 1; i < n; i++)
    if (x[i] > bv) {
      bv = x[i];
      best = i;
    }
  return best;
}

/* ---- weights ------------------------------------------------------------------------------------------------- */

MN_AI vf load_w(const void *base, int64_t idx, const int D) {
  if (D == MN_F32) return vf_loadu((const float *)base + idx);
  if (D == MN_F16) return vf_load_f16((const uint16_t *)base + idx);
  return vf_load_bf16((const uint16_t *)base + idx);
}
MN_AI int esize(int d) { return d == MN_F32 ? 4 : 2; }
MN_AI float scalar_w(const void *base, int64_t idx, int d) {
  if (d == MN_F32) return ((const float *)base)[idx];
  uint16_t h = ((const uint16_t *)base)[idx];
  if (d == MN_F16) return mn_f16_to_f32(h);
  uint32_t b = (uint32_t)h << 16;
  float f;
  memcpy(&f, &b, 4);
  return f;
}

/* y[r, 16p + l] (+ bias) for lanes l of panel p that exist */
MN_AI void store_out(const mn_matmul *m, int64_t r, int64_t p, vf acc) {
  float *y = m->y + r * m->ldy + p * 16;
  int64_t valid = m->n - p * 16;
  if (valid >= 16) {
    if (m->bias) acc = vf_add(acc, vf_loadu(m->bias + p * 16));
    vf_storeu(y, acc);
  } else {
    if (m->bias) acc = vf_add(acc, vf_load_part(m->bias + p * 16, valid, 0.0f));
    vf_store_part(y, acc, valid);
  }
}

MN_AI vf load_s(const void *base, int64_t idx, int sd) {
  if (sd == MN_F32) return vf_loadu((const float *)base + idx);
  if (sd == MN_F16) return vf_load_f16((const uint16_t *)base + idx);
  return vf_load_bf16((const uint16_t *)base + idx);
}

#define NVMAX (MN_NV1 > MN_NV ? MN_NV1 : MN_NV)

/*
 * Dense tile: rows r..r+MR, panels p..p+NV. acc = 0; for k ascending: acc = fma(x[k], w[k], acc); then + bias.
 */
MN_AI void tile_dense(const mn_matmul *m, int64_t r, int64_t p, const int MR, const int NV, const int D) {
  const int64_t K = m->k, ldx = m->ldx;
  vf acc[MN_MR][NVMAX];
  MN_UNROLL for (int i = 0; i < MR; i++) MN_UNROLL for (int j = 0; j < NV; j++) acc[i][j] = vf_zero();
  const float *x = m->x + r * ldx;
  const int64_t pstride = 16 * K;
  const int64_t base = p * pstride;
  for (int64_t k = 0; k < K; k++) {
    vf w[NVMAX];
    MN_UNROLL for (int j = 0; j < NV; j++) w[j] = load_w(m->w, base + j * pstride + k * 16, D);
    MN_UNROLL for (int i = 0; i < MR; i++) {
      vf xb = vf_set1(x[i * ldx + k]);
      MN_UNROLL for (int j = 0; j < NV; j++) acc[i][j] = vf_fma(xb, w[j], acc[i][j]);
    }
  }
  MN_UNROLL for (int i = 0; i < MR; i++) MN_UNROLL for (int j = 0; j < NV; j++) store_out(m, r + i, p + j, acc[i][j]);
}

/* codes of element e of a word whose elements do not straddle words (B = 2, 4, 8): constant shifts */
MN_AI vi word_code(vi w, const int e, const int B) {
  const int sh = B * e;
  vi q = sh ? vi_srli(w, sh) : w;
  return sh + B == 32 ? q : vi_and(q, vi_set1((int32_t)((1u << B) - 1)));
}
/* codes of element e (0..31) of a chunk of B words (any B; runtime shifts) */
MN_AI vi chunk_code(const uint32_t *cw, int e, const int B) {
  const int bit = B * e, wd = bit >> 5, sh = bit & 31;
  vi v = vi_srl_n(vi_loadu(cw + wd * 16), sh);
  if (sh + B > 32) v = vi_or(v, vi_sll_n(vi_loadu(cw + (wd + 1) * 16), 32 - sh));
  return vi_and(v, vi_set1((int32_t)((1u << B) - 1)));
}

/*
 * Affine (MLX) tile: each weight is dequantized with one rounding, w = fma(scale, q, bias), then as dense:
 * acc = fma(x[k], w[k], acc) for k ascending, then + bias. G16: groups of 16 (two per 32-element chunk; GGML K-quants).
 */
MN_AI void tile_quant(const mn_matmul *m, int64_t r, int64_t p, const int MR, const int NV, const int B, const int G16) {
  const int64_t K = m->k, ldx = m->ldx, chunks = K / 32, G = K / m->group, gpc = G16 ? 1 : m->group / 32;
  const int sd = m->sdtype;
  vf acc[MN_MR][NVMAX], sc[2][NVMAX], bi[2][NVMAX];
  MN_UNROLL for (int i = 0; i < MR; i++) MN_UNROLL for (int j = 0; j < NV; j++) acc[i][j] = vf_zero();
  const float *x = m->x + r * ldx;
  const int64_t cstride = chunks * B * 16; /* uint32 per panel */
  const uint32_t *codes = (const uint32_t *)m->w + p * cstride;
  for (int64_t c = 0; c < chunks; c++) {
    if (G16) {
      MN_UNROLL for (int h = 0; h < 2; h++) MN_UNROLL for (int j = 0; j < NV; j++) {
        sc[h][j] = load_s(m->scales, ((p + j) * G + 2 * c + h) * 16, sd);
        bi[h][j] = load_s(m->biases, ((p + j) * G + 2 * c + h) * 16, sd);
      }
    } else if (c % gpc == 0) {
      int64_t g = c / gpc;
      MN_UNROLL for (int j = 0; j < NV; j++) {
        sc[0][j] = load_s(m->scales, ((p + j) * G + g) * 16, sd);
        bi[0][j] = load_s(m->biases, ((p + j) * G + g) * 16, sd);
      }
    }
    const float *xc = x + c * 32;
    const uint32_t *cw = codes + c * B * 16;
    if (32 % B == 0) {
      const int per = 32 / B;
      for (int wd = 0; wd < B; wd++) {
        const int h = G16 ? (wd * per) >> 4 : 0;
        vi W[NVMAX];
        MN_UNROLL for (int j = 0; j < NV; j++) W[j] = vi_loadu(cw + j * cstride + wd * 16);
        MN_UNROLL for (int e = 0; e < per; e++) {
          vf w[NVMAX];
          MN_UNROLL for (int j = 0; j < NV; j++) w[j] = vf_fma(sc[h][j], vi_to_vf(word_code(W[j], e, B)), bi[h][j]);
          MN_UNROLL for (int i = 0; i < MR; i++) {
            vf xb = vf_set1(xc[i * ldx + wd * per + e]);
            MN_UNROLL for (int j = 0; j < NV; j++) acc[i][j] = vf_fma(xb, w[j], acc[i][j]);
          }
        }
      }
    } else {
      for (int e = 0; e < 32; e++) {
        const int h = G16 ? e >> 4 : 0;
        vf w[NVMAX];
        MN_UNROLL for (int j = 0; j < NV; j++)
          w[j] = vf_fma(sc[h][j], vi_to_vf(chunk_code(cw + j * cstride, e, B)), bi[h][j]);
        MN_UNROLL for (int i = 0; i < MR; i++) {
          vf xb = vf_set1(xc[i * ldx + e]);
          MN_UNROLL for (int j = 0; j < NV; j++) acc[i][j] = vf_fma(xb, w[j], acc[i][j]);
        }
      }
    }
  }
  MN_UNROLL for (int i = 0; i < MR; i++) MN_UNROLL for (int j = 0; j < NV; j++) store_out(m, r + i, p + j, acc[i][j]);
}

MN_AI int32_t load_i32(const int8_t *p) {
  int32_t v;
  memcpy(&v, p, 4);
  return v;
}

/*
 * int8-activation tile (4- and 8-bit codes): per block b of 32, I_b = exact integer dot of the codes with the int8
 * activations; per group g: t = 0, t = fma(f32(I_b), d_b, t) over its blocks ascending; then acc = fma(scale_g, t,
 * acc), acc = fma(bias_g, X_g, acc), groups ascending; then + bias.
 */
MN_AI void tile_q8a(const mn_matmul *m, int64_t r, int64_t p, const int MR, const int NV, const int B) {
  const int64_t K = m->k, chunks = K / 32, G = K / m->group, gpc = m->group / 32;
  const int sd = m->sdtype;
  vf acc[MN_MR][NVMAX];
  MN_UNROLL for (int i = 0; i < MR; i++) MN_UNROLL for (int j = 0; j < NV; j++) acc[i][j] = vf_zero();
  const int64_t cstride = chunks * B * 16;
  const uint32_t *codes = (const uint32_t *)m->w + p * cstride;
  const int8_t *xq = m->xq + r * K;
  const float *xd = m->xd + r * chunks;
  const float *xg = m->xg + r * G;
  for (int64_t g = 0; g < G; g++) {
    vf t[MN_MR][NVMAX];
    MN_UNROLL for (int i = 0; i < MR; i++) MN_UNROLL for (int j = 0; j < NV; j++) t[i][j] = vf_zero();
    for (int64_t c = g * gpc; c < (g + 1) * gpc; c++) {
      vi I[MN_MR][NVMAX];
      MN_UNROLL for (int i = 0; i < MR; i++) MN_UNROLL for (int j = 0; j < NV; j++) I[i][j] = vi_zero();
      MN_UNROLL for (int wd = 0; wd < B; wd++) {
        MN_UNROLL for (int j = 0; j < NV; j++) {
          vi W = vi_loadu(codes + j * cstride + (c * B + wd) * 16);
          if (B == 4) {
            const vi mk = vi_set1(0x0f0f0f0f);
            vi lo = vi_and(W, mk), hi = vi_and(vi_srli(W, 4), mk);
            MN_UNROLL for (int i = 0; i < MR; i++) {
              const int8_t *xr = xq + i * K + c * 32 + wd * 8;
              I[i][j] = vi_dot4_u4(I[i][j], lo, load_i32(xr));
              I[i][j] = vi_dot4_u4(I[i][j], hi, load_i32(xr + 4));
            }
          } else {
            MN_UNROLL for (int i = 0; i < MR; i++)
              I[i][j] = vi_dot4_u8(I[i][j], W, load_i32(xq + i * K + c * 32 + wd * 4));
          }
        }
      }
      MN_UNROLL for (int i = 0; i < MR; i++) {
        vf d = vf_set1(xd[i * chunks + c]);
        MN_UNROLL for (int j = 0; j < NV; j++) t[i][j] = vf_fma(vi_to_vf(I[i][j]), d, t[i][j]);
      }
    }
    MN_UNROLL for (int j = 0; j < NV; j++) {
      vf s = load_s(m->scales, ((p + j) * G + g) * 16, sd);
      vf b = load_s(m->biases, ((p + j) * G + g) * 16, sd);
      MN_UNROLL for (int i = 0; i < MR; i++) {
        acc[i][j] = vf_fma(s, t[i][j], acc[i][j]);
        acc[i][j] = vf_fma(b, vf_set1(xg[i * G + g]), acc[i][j]);
      }
    }
  }
  MN_UNROLL for (int i = 0; i < MR; i++) MN_UNROLL for (int j = 0; j < NV; j++) store_out(m, r + i, p + j, acc[i][j]);
}

/*
 * Tiling of rows r0..r1 x panels p0..p1. Full tiles of MN_MR rows: panels outer (a block of MN_NV panels stays in
 * cache while the row tiles stream past it), rows inner. The remaining rows (and single-row calls) one at a time,
 * MN_NV1 panels at once.
 */
#define MN_TILE_LOOP(CALL)                                                                                             \
  do {                                                                                                                 \
    const int64_t rfull = r0 + (r1 - r0) / MN_MR * MN_MR;                                                              \
    if (rfull > r0) {                                                                                                  \
      int64_t p = p0;                                                                                                  \
      for (; p + MN_NV <= p1; p += MN_NV)                                                                              \
        for (int64_t r = r0; r < rfull; r += MN_MR) CALL(r, p, MN_MR, MN_NV);                                          \
      for (; p < p1; p++)                                                                                              \
        for (int64_t r = r0; r < rfull; r += MN_MR) CALL(r, p, MN_MR, 1);                                              \
    }                                                                                                                  \
    for (int64_t r = rfull; r < r1; r++) {                                                                             \
      int64_t p = p0;                                                                                                  \
      for (; p + MN_NV1 <= p1; p += MN_NV1) CALL(r, p, 1, MN_NV1);                                                     \
      for (; p < p1; p++) CALL(r, p, 1, 1);                                                                            \
    }                                                                                                                  \
  } while (0)

#define MN_NOWARN_BEGIN _Pragma("GCC diagnostic push") _Pragma("GCC diagnostic ignored \"-Wmaybe-uninitialized\"")
#define MN_NOWARN_END _Pragma("GCC diagnostic pop")

#define DENSE_FN(D)                                                                                                    \
  static void mm_dense_##D(const mn_matmul *m, int64_t r0, int64_t r1, int64_t p0, int64_t p1) {                      \
    MN_NOWARN_BEGIN                                                                                                    \
    MN_TILE_LOOP(DENSE_CALL_##D);                                                                                      \
    MN_NOWARN_END                                                                                                      \
  }
#define DENSE_CALL_0(r, p, a, b) tile_dense(m, r, p, a, b, 0)
#define DENSE_CALL_1(r, p, a, b) tile_dense(m, r, p, a, b, 1)
#define DENSE_CALL_2(r, p, a, b) tile_dense(m, r, p, a, b, 2)
DENSE_FN(0)
DENSE_FN(1)
DENSE_FN(2)

#define QUANT_FN(B)                                                                                                    \
  static void mm_quant_##B(const mn_matmul *m, int64_t r0, int64_t r1, int64_t p0, int64_t p1) {                      \
    MN_NOWARN_BEGIN                                                                                                    \
    MN_TILE_LOOP(QUANT_CALL_##B);                                                                                      \
    MN_NOWARN_END                                                                                                      \
  }
#define QUANT_CALL_2(r, p, a, b) tile_quant(m, r, p, a, b, 2, 0)
#define QUANT_CALL_3(r, p, a, b) tile_quant(m, r, p, a, b, 3, 0)
#define QUANT_CALL_4(r, p, a, b) tile_quant(m, r, p, a, b, 4, 0)
#define QUANT_CALL_5(r, p, a, b) tile_quant(m, r, p, a, b, 5, 0)
#define QUANT_CALL_6(r, p, a, b) tile_quant(m, r, p, a, b, 6, 0)
#define QUANT_CALL_8(r, p, a, b) tile_quant(m, r, p, a, b, 8, 0)
#define QUANT_CALL_2g16(r, p, a, b) tile_quant(m, r, p, a, b, 2, 1)
#define QUANT_CALL_3g16(r, p, a, b) tile_quant(m, r, p, a, b, 3, 1)
#define QUANT_CALL_6g16(r, p, a, b) tile_quant(m, r, p, a, b, 6, 1)
QUANT_FN(2)
QUANT_FN(3)
QUANT_FN(4)
QUANT_FN(5)
QUANT_FN(6)
QUANT_FN(8)
QUANT_FN(2g16)
QUANT_FN(3g16)
QUANT_FN(6g16)

#define Q8A_FN(B)                                                                                                      \
  static void mm_q8a_##B(const mn_matmul *m, int64_t r0, int64_t r1, int64_t p0, int64_t p1) {                        \
    MN_NOWARN_BEGIN                                                                                                    \
    MN_TILE_LOOP(Q8A_CALL_##B);                                                                                        \
    MN_NOWARN_END                                                                                                      \
  }
#define Q8A_CALL_4(r, p, a, b) tile_q8a(m, r, p, a, b, 4)
#define Q8A_CALL_8(r, p, a, b) tile_q8a(m, r, p, a, b, 8)
Q8A_FN(4)
Q8A_FN(8)

/*
 * Prefill GEMM: a block of MN_GNV panels x MN_KC columns of the weight is decoded once into f32 scratch (dense
 * elements converted exactly, affine ones as fma(scale, q, bias): the very values the single-row tiles compute in
 * registers), then a register-blocked micro-kernel (MN_GMR rows x MN_GNV panels) runs over every row of the task.
 * Accumulators go through y between column blocks (an exact f32 store and load), the bias is added after the last:
 * each output is still acc = fma(x[k], w[k], acc) for k ascending, then + bias.
 */
MN_AI void decode_block(float *dst, const mn_matmul *m, int64_t p, int np, int64_t k0, int64_t kc) {
  const int64_t K = m->k;
  const int stride = MN_GNV * 16;
  for (int j = 0; j < np; j++) {
    float *d = dst + j * 16;
    if (!m->quant) {
      const int64_t base = (p + j) * 16 * K;
      if (m->dtype == MN_F16)
        for (int64_t k = 0; k < kc; k++) vf_storeu(d + k * stride, vf_load_f16((const uint16_t *)m->w + base + (k0 + k) * 16));
      else if (m->dtype == MN_BF16)
        for (int64_t k = 0; k < kc; k++) vf_storeu(d + k * stride, vf_load_bf16((const uint16_t *)m->w + base + (k0 + k) * 16));
      else
        for (int64_t k = 0; k < kc; k++) vf_storeu(d + k * stride, vf_loadu((const float *)m->w + base + (k0 + k) * 16));
      continue;
    }
    const int B = m->bits;
    const int64_t chunks = K / 32, G = K / m->group;
    const uint32_t *codes = (const uint32_t *)m->w + (p + j) * chunks * B * 16;
    const int g16 = m->group == 16;
    for (int64_t c = k0 / 32; c < (k0 + kc) / 32; c++) {
      /* the groups of elements 0..15 and 16..31 of the chunk (the same one unless groups are 16) */
      const int64_t g0 = c * 32 / m->group, g1 = g16 ? g0 + 1 : g0;
      vf sc0 = load_s(m->scales, ((p + j) * G + g0) * 16, m->sdtype);
      vf bi0 = load_s(m->biases, ((p + j) * G + g0) * 16, m->sdtype);
      vf sc1 = load_s(m->scales, ((p + j) * G + g1) * 16, m->sdtype);
      vf bi1 = load_s(m->biases, ((p + j) * G + g1) * 16, m->sdtype);
      const uint32_t *cw = codes + c * B * 16;
      float *dc = d + (c * 32 - k0) * stride;
      if (B == 4) {
        for (int wd = 0; wd < 4; wd++) {
          vi W = vi_loadu(cw + wd * 16);
          vf sc = wd < 2 ? sc0 : sc1, bi = wd < 2 ? bi0 : bi1;
          MN_UNROLL for (int e = 0; e < 8; e++)
            vf_storeu(dc + (wd * 8 + e) * stride, vf_fma(sc, vi_to_vf(word_code(W, e, 4)), bi));
        }
      } else if (B == 8) {
        for (int wd = 0; wd < 8; wd++) {
          vi W = vi_loadu(cw + wd * 16);
          vf sc = wd < 4 ? sc0 : sc1, bi = wd < 4 ? bi0 : bi1;
          MN_UNROLL for (int e = 0; e < 4; e++)
            vf_storeu(dc + (wd * 4 + e) * stride, vf_fma(sc, vi_to_vf(word_code(W, e, 8)), bi));
        }
      } else {
        for (int e = 0; e < 32; e++)
          vf_storeu(dc + e * stride, vf_fma(e < 16 ? sc0 : sc1, vi_to_vf(chunk_code(cw, e, B)), e < 16 ? bi0 : bi1));
      }
    }
  }
}

/* rows r..r+MR x panels p..p+NV over columns k0..k0+kc of scratch w; first: start from 0, else from y; last: + bias */
MN_AI void gemm_tile(const mn_matmul *m, const float *w, int64_t r, int64_t p, int64_t k0, int64_t kc, int first,
                     int last, const int MR, const int NV) {
  vf acc[MN_GMR][MN_GNV];
  const int stride = MN_GNV * 16;
  MN_UNROLL for (int i = 0; i < MR; i++) MN_UNROLL for (int j = 0; j < NV; j++) {
    if (first) {
      acc[i][j] = vf_zero();
    } else {
      int64_t valid = m->n - (p + j) * 16;
      const float *y = m->y + (r + i) * m->ldy + (p + j) * 16;
      acc[i][j] = valid >= 16 ? vf_loadu(y) : vf_load_part(y, valid, 0.0f);
    }
  }
  const float *x = m->x + r * m->ldx + k0;
  const int64_t ldx = m->ldx;
  for (int64_t k = 0; k < kc; k++) {
    vf wv[MN_GNV];
    MN_UNROLL for (int j = 0; j < NV; j++) wv[j] = vf_loadu(w + k * stride + j * 16);
    MN_UNROLL for (int i = 0; i < MR; i++) {
      vf xb = vf_set1(x[i * ldx + k]);
      MN_UNROLL for (int j = 0; j < NV; j++) acc[i][j] = vf_fma(xb, wv[j], acc[i][j]);
    }
  }
  MN_UNROLL for (int i = 0; i < MR; i++) MN_UNROLL for (int j = 0; j < NV; j++) {
    if (last) {
      store_out(m, r + i, p + j, acc[i][j]);
    } else {
      int64_t valid = m->n - (p + j) * 16;
      float *y = m->y + (r + i) * m->ldy + (p + j) * 16;
      if (valid >= 16) vf_storeu(y, acc[i][j]);
      else vf_store_part(y, acc[i][j], valid);
    }
  }
}

static void k_gemm(const mn_matmul *m, int64_t r0, int64_t r1, int64_t p0, int64_t p1, float *scratch) {
  const int64_t K = m->k;
  for (int64_t p = p0; p < p1; p += MN_GNV) {
    const int np = p1 - p < MN_GNV ? (int)(p1 - p) : MN_GNV;
    for (int64_t k0 = 0; k0 < K; k0 += MN_KC) {
      const int64_t kc = K - k0 < MN_KC ? K - k0 : MN_KC;
      const int first = k0 == 0, last = k0 + kc == K;
      decode_block(scratch, m, p, np, k0, kc);
      int64_t r = r0;
      if (np == MN_GNV) {
        for (; r + MN_GMR <= r1; r += MN_GMR) gemm_tile(m, scratch, r, p, k0, kc, first, last, MN_GMR, MN_GNV);
        for (; r < r1; r++) gemm_tile(m, scratch, r, p, k0, kc, first, last, 1, MN_GNV);
      } else {
        for (; r + MN_GMR <= r1; r += MN_GMR) gemm_tile(m, scratch, r, p, k0, kc, first, last, MN_GMR, 1);
        for (; r < r1; r++) gemm_tile(m, scratch, r, p, k0, kc, first, last, 1, 1);
      }
    }
  }
}

typedef void (*mm_fn)(const mn_matmul *, int64_t, int64_t, int64_t, int64_t);
static const mm_fn quant_fns[9] = {
    [2] = mm_quant_2, [3] = mm_quant_3, [4] = mm_quant_4, [5] = mm_quant_5, [6] = mm_quant_6, [8] = mm_quant_8,
};
static const mm_fn quant16_fns[9] = {[2] = mm_quant_2g16, [3] = mm_quant_3g16, [6] = mm_quant_6g16};
static const mm_fn dense_fns[3] = {mm_dense_0, mm_dense_1, mm_dense_2};
static const mm_fn q8a_fns[9] = {[4] = mm_q8a_4, [8] = mm_q8a_8};

static void k_matmul(const mn_matmul *m, int64_t r0, int64_t r1, int64_t p0, int64_t p1, float *scratch) {
  if (r0 >= r1 || p0 >= p1) return;
  if (scratch && r1 - r0 >= MN_GEMM_MIN_ROWS) {
    k_gemm(m, r0, r1, p0, p1, scratch);
    return;
  }
  if (!m->quant)
    dense_fns[m->dtype](m, r0, r1, p0, p1);
  else
    (m->group == 16 ? quant16_fns : quant_fns)[m->bits](m, r0, r1, p0, p1);
}
static void k_matmul_q8a(const mn_matmul *m, int64_t r0, int64_t r1, int64_t p0, int64_t p1, float *scratch) {
  (void)scratch;
  if (r0 >= r1 || p0 >= p1) return;
  q8a_fns[m->bits](m, r0, r1, p0, p1);
}

/* One row of a panel weight: dense elements converted exactly; affine ones as fma(scale, q, bias). */
static void k_embed(float *out, const mn_matmul *m, int64_t row) {
  const int64_t K = m->k, p = row / 16, l = row % 16;
  if (!m->quant) {
    for (int64_t k = 0; k < K; k++) out[k] = scalar_w(m->w, (p * K + k) * 16 + l, m->dtype);
    return;
  }
  const int B = m->bits;
  const int64_t chunks = K / 32, G = K / m->group;
  const uint32_t *codes = (const uint32_t *)m->w + p * chunks * B * 16;
  const uint32_t mask = (1u << B) - 1;
  for (int64_t k = 0; k < K; k++) {
    int64_t c = k / 32;
    int i = (int)(k % 32), bit = B * i, wd = bit >> 5, sh = bit & 31;
    const uint32_t *cw = codes + c * B * 16;
    uint32_t q = cw[wd * 16 + l] >> sh;
    if (sh + B > 32) q |= cw[(wd + 1) * 16 + l] << (32 - sh);
    q &= mask;
    int64_t g = k / m->group;
    float s = scalar_w(m->scales, (p * G + g) * 16 + l, m->sdtype);
    float b = scalar_w(m->biases, (p * G + g) * 16 + l, m->sdtype);
    out[k] = __builtin_fmaf(s, (float)q, b);
  }
}

/* ---- attention ----------------------------------------------------------------------------------------------- */

/*
 * The hd values of kv head kvh in storage row `row` as f32: a pointer into the storage (f32), or `tmp` filled with
 * the exact f16 conversions or the affine values fl(fl(s * q) + b) (a rounded product, then a rounded sum).
 */
MN_AI const float *kv_values(const mn_kv *s, int64_t row, int64_t width, int64_t kvh, int64_t hd, float *tmp) {
  const int64_t e0 = row * width + kvh * hd;
  if (s->fmt == MN_KV_F32) return (const float *)s->data + e0;
  if (s->fmt == MN_KV_F16) {
    const uint16_t *h = (const uint16_t *)s->data + e0;
    int64_t i = 0;
    for (; i + 16 <= hd; i += 16) vf_storeu(tmp + i, vf_load_f16(h + i));
    for (; i < hd; i++) tmp[i] = mn_f16_to_f32(h[i]);
    return tmp;
  }
  const int B = s->bits;
  const int64_t words = width * B / 32, groups = width / s->group;
  const uint32_t *pw = (const uint32_t *)s->data + row * words;
  const float *sc = s->scales + row * groups, *bi = s->biases + row * groups;
  const uint32_t mask = (1u << B) - 1;
  for (int64_t i = 0; i < hd; i++) {
    const int64_t k = kvh * hd + i, bit = (int64_t)B * k;
    const uint32_t q = (pw[bit >> 5] >> (bit & 31)) & mask; /* 4 and 8 bits never straddle words */
    const int64_t g = k / s->group;
    const float v = sc[g] * (float)q;
    tmp[i] = v + bi[g];
  }
  return tmp;
}

/*
 * The block loops of attention for head sizes of CH * 16 (CH = 4 or 8: the common 64 and 128), with the block's 16 key
 * or value rows gathered first (NULL where a position is not seen) so that a query head's q, or its accumulator, stays
 * in registers across the block. Every value is computed by the same operations as the one-row loops in k_attention:
 * s_j = vf_reduce_add(fma chain over the chunks) * scale (16 rows reduced at once by vf_reduce16, which makes the very
 * same pairwise sums), and acc = fma(p_j, V_j, acc) for j ascending.
 */
MN_AI void block_scores(float *sc, const float *qrow, const float *const *kr, int64_t G, int64_t hd, float scale,
                        const int CH) {
  float part[256];
  for (int64_t h = 0; h < G; h++) {
    const float *qh = qrow + h * hd;
    vf q[8];
    MN_UNROLL for (int i = 0; i < CH; i++) q[i] = vf_loadu(qh + 16 * i);
    for (int jj = 0; jj < 16; jj++) {
      vf s = vf_zero();
      if (kr[jj]) MN_UNROLL for (int i = 0; i < CH; i++) s = vf_fma(q[i], vf_loadu(kr[jj] + 16 * i), s);
      vf_storeu(part + 16 * jj, s);
    }
    vf_storeu(sc + h * 16, vf_mul(vf_reduce16(part), vf_set1(scale)));
    for (int jj = 0; jj < 16; jj++)
      if (!kr[jj]) sc[h * 16 + jj] = -INFINITY;
  }
}
MN_AI void block_values(float *acc, const float *sc, const float *const *vr, int64_t G, int64_t hdp, const int CH) {
  for (int64_t h = 0; h < G; h++) {
    float *ah = acc + h * hdp;
    vf av[8];
    MN_UNROLL for (int i = 0; i < CH; i++) av[i] = vf_loadu(ah + 16 * i);
    for (int jj = 0; jj < 16; jj++) {
      if (!vr[jj]) continue;
      const vf pj = vf_set1(sc[h * 16 + jj]);
      MN_UNROLL for (int i = 0; i < CH; i++) av[i] = vf_fma(pj, vf_loadu(vr[jj] + 16 * i), av[i]);
    }
    MN_UNROLL for (int i = 0; i < CH; i++) vf_storeu(ah + 16 * i, av[i]);
  }
}

/*
 * Causal attention for query rows r0..r1 and the query heads of kv head kvh. A query at position p sees
 * V(p) = { j <= p : window = 0 or p - j < window or j < keep }, in blocks aligned to multiples of 16 positions,
 * ascending (the blocks of the pinned positions first, then those of the window; a block in both is visited once).
 * Per block: scores s_j = dot16(q, K_j) * scale (soft-capped); m' = max(m, block max); c = exp(m - m'); l = l * c;
 * acc = acc * c; p_j = exp(s_j - m'); l = l + p_j (j ascending); acc = fma(p_j, V_j, acc) (j ascending). Output acc / l.
 * K_j, V_j are the f32 values of the storage row of position j, whatever the format. A block whose scores are all
 * -inf adds nothing.
 */
static void k_attention(const mn_attention *a, int64_t kvh, int64_t r0, int64_t r1, float *scratch) {
  const int64_t hd = a->hd, G = a->nheads / a->nkv, ldq = a->nheads * hd, width = a->nkv * hd;
  const int64_t hdp = (hd + 15) & ~(int64_t)15, chunks = hdp / 16, full = hd / 16;
  float *acc = scratch;            /* G * hdp */
  float *sc = acc + G * hdp;       /* G * 16 scores */
  float *mx = sc + G * 16;         /* G */
  float *ls = mx + G;              /* G */
  float *kp = ls + G;              /* hdp: a value row padded with zeros (hd not a multiple of 16) */
  float *tmp = kp + hdp;           /* hdp: a converted key or value row */
  float *rows = tmp + hdp;         /* 16 * hdp: a block's converted key or value rows (block loops) */
  const int blocked = full == chunks && (chunks == 4 || chunks == 8);
  const float *rp[16];
  const float ninf = -INFINITY;
  for (int64_t r = r0; r < r1; r++) {
    const int64_t pos = a->start + r;
    const int64_t lo = a->window > 0 && pos - a->window + 1 > 0 ? pos - a->window + 1 : 0;
    const int64_t kend = a->keep < lo ? a->keep : lo; /* pinned positions [0, kend) before the window */
    for (int64_t h = 0; h < G; h++) {
      mx[h] = ninf;
      ls[h] = 0.0f;
      for (int64_t i = 0; i < hdp; i++) acc[h * hdp + i] = 0.0f;
    }
    const float *qrow = a->q + r * ldq + kvh * G * hd;
    const int64_t wb = lo & ~(int64_t)15, kb = (kend + 15) & ~(int64_t)15;
    for (int64_t b0 = 0; b0 <= pos; b0 += 16) {
      if (b0 >= kb && b0 < wb) b0 = wb; /* skip the blocks between the pinned positions and the window */
      const int64_t j1 = b0 + 15 < pos ? b0 + 15 : pos;
#define MN_SEES(j) ((j) >= lo || (j) < kend)
      if (blocked) {
        for (int jj = 0; jj < 16; jj++) {
          const int64_t j = b0 + jj;
          rp[jj] = j <= j1 && MN_SEES(j) ? kv_values(&a->k, mn_kv_row(j, a->cap, a->keep), width, kvh, hd, rows + jj * hdp)
                                        : NULL;
        }
        if (chunks == 4) block_scores(sc, qrow, rp, G, hd, a->scale, 4);
        else block_scores(sc, qrow, rp, G, hd, a->scale, 8);
      } else {
        for (int64_t h = 0; h < G; h++) /* block_scores writes every lane itself */
          for (int i = 0; i < 16; i++) sc[h * 16 + i] = ninf;
        for (int64_t j = b0; j <= j1; j++) {
          if (!MN_SEES(j)) continue;
          const float *kr = kv_values(&a->k, mn_kv_row(j, a->cap, a->keep), width, kvh, hd, tmp);
          for (int64_t h = 0; h < G; h++) {
            const float *qh = qrow + h * hd;
            vf s = vf_zero();
            int64_t c = 0;
            for (; c < full; c++) s = vf_fma(vf_loadu(qh + c * 16), vf_loadu(kr + c * 16), s);
            if (c < chunks)
              s = vf_fma(vf_load_part(qh + c * 16, hd - c * 16, 0.0f), vf_load_part(kr + c * 16, hd - c * 16, 0.0f), s);
            sc[h * 16 + (j - b0)] = vf_reduce_add(s) * a->scale;
          }
        }
      }
      if (a->softcap > 0.0f) {
        /* the block's valid scores, soft-capped (the masked lanes stay -inf) */
        const vf cap = vf_set1(a->softcap);
        for (int64_t h = 0; h < G; h++) {
          float t[16];
          vf_storeu(t, vf_softcap(vf_loadu(sc + h * 16), cap));
          for (int64_t j = b0; j <= j1; j++)
            if (MN_SEES(j)) sc[h * 16 + (j - b0)] = t[j - b0];
        }
      }
      for (int64_t h = 0; h < G; h++) {
        float *s = sc + h * 16;
        float mb = ninf;
        for (int64_t j = b0; j <= j1; j++)
          if (MN_SEES(j)) mb = s[j - b0] > mb ? s[j - b0] : mb;
        float mnew = mb > mx[h] ? mb : mx[h];
        if (mnew == ninf) {
          for (int i = 0; i < 16; i++) s[i] = 0.0f;
          continue;
        }
        float c = mn_exp1(mx[h] - mnew);
        ls[h] = ls[h] * c;
        vf vc = vf_set1(c);
        for (int64_t i = 0; i < chunks; i++) vf_storeu(acc + h * hdp + i * 16, vf_mul(vf_loadu(acc + h * hdp + i * 16), vc));
        vf_storeu(s, vf_exp(vf_sub(vf_loadu(s), vf_set1(mnew))));
        for (int64_t j = b0; j <= j1; j++)
          if (MN_SEES(j)) ls[h] = ls[h] + s[j - b0];
        mx[h] = mnew;
      }
      if (blocked) {
        for (int jj = 0; jj < 16; jj++)
          if (rp[jj]) rp[jj] = kv_values(&a->v, mn_kv_row(b0 + jj, a->cap, a->keep), width, kvh, hd, rows + jj * hdp);
        if (chunks == 4) block_values(acc, sc, rp, G, hdp, 4);
        else block_values(acc, sc, rp, G, hdp, 8);
        continue;
      }
      for (int64_t j = b0; j <= j1; j++) {
        if (!MN_SEES(j)) continue;
        const float *vr = kv_values(&a->v, mn_kv_row(j, a->cap, a->keep), width, kvh, hd, tmp);
        if (full < chunks) {
          for (int64_t i = 0; i < hdp; i++) kp[i] = i < hd ? vr[i] : 0.0f;
          vr = kp;
        }
        for (int64_t h = 0; h < G; h++) {
          vf pj = vf_set1(sc[h * 16 + (j - b0)]);
          float *ah = acc + h * hdp;
          for (int64_t i = 0; i < chunks; i++) vf_storeu(ah + i * 16, vf_fma(pj, vf_loadu(vr + i * 16), vf_loadu(ah + i * 16)));
        }
      }
#undef MN_SEES
    }
    for (int64_t h = 0; h < G; h++) {
      float *o = a->out + r * ldq + (kvh * G + h) * hd;
      vf l = vf_set1(ls[h]);
      int64_t i = 0;
      for (; i < full; i++) vf_storeu(o + i * 16, vf_div(vf_loadu(acc + h * hdp + i * 16), l));
      if (i < chunks) vf_store_part(o + i * 16, vf_div(vf_loadu(acc + h * hdp + i * 16), l), hd - i * 16);
    }
  }
}

const mn_kernels MN_TABLE = {
    .name = MN_NAME,
    .to_f32 = k_to_f32,
    .matmul = k_matmul,
    .matmul_q8a = k_matmul_q8a,
    .rmsnorm = k_rmsnorm,
    .rope = k_rope,
    .swiglu = k_swiglu,
    .gelu_glu = k_gelu_glu,
    .softcap = k_softcap,
    .scale = k_scale,
    .add = k_add,
    .softmax = k_softmax,
    .argmax = k_argmax,
    .attention = k_attention,
    .embed = k_embed,
    .exp = k_exp,
    .tanh = k_tanh,
};
