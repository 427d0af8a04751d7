/* The 16-lane virtual vector on arm64 NEON (dot products with SDOT when MN_DOTPROD): four q registers. */
#include <arm_neon.h>

typedef struct {
  float32x4_t v[4];
} vf;
typedef struct {
  int32x4_t v[4];
} vi;

#define MN_MAP4F(expr)                                                                                                 \
  do {                                                                                                                 \
    for (int i_ = 0; i_ < 4; i_++) r.v[i_] = (expr);                                                                  \
  } while (0)

MN_AI vf vf_zero(void) {
  vf r;
  MN_MAP4F(vdupq_n_f32(0.0f));
  return r;
}
MN_AI vf vf_set1(float x) {
  vf r;
  MN_MAP4F(vdupq_n_f32(x));
  return r;
}
MN_AI vf vf_loadu(const float *p) {
  vf r;
  MN_MAP4F(vld1q_f32(p + 4 * i_));
  return r;
}
MN_AI void vf_storeu(float *p, vf x) {
  for (int i = 0; i < 4; i++) vst1q_f32(p + 4 * i, x.v[i]);
}
MN_AI vf vf_add(vf x, vf y) {
  vf r;
  MN_MAP4F(vaddq_f32(x.v[i_], y.v[i_]));
  return r;
}
MN_AI vf vf_sub(vf x, vf y) {
  vf r;
  MN_MAP4F(vsubq_f32(x.v[i_], y.v[i_]));
  return r;
}
MN_AI vf vf_mul(vf x, vf y) {
  vf r;
  MN_MAP4F(vmulq_f32(x.v[i_], y.v[i_]));
  return r;
}
MN_AI vf vf_div(vf x, vf y) {
  vf r;
  MN_MAP4F(vdivq_f32(x.v[i_], y.v[i_]));
  return r;
}
/* x * y + z: vfmaq_f32(z, x, y) */
MN_AI vf vf_fma(vf x, vf y, vf z) {
  vf r;
  MN_MAP4F(vfmaq_f32(z.v[i_], x.v[i_], y.v[i_]));
  return r;
}
MN_AI vf vf_gt_sel(vf p, vf q, vf x, vf y) {
  vf r;
  MN_MAP4F(vbslq_f32(vcgtq_f32(p.v[i_], q.v[i_]), x.v[i_], y.v[i_]));
  return r;
}
/* lanes i and i+8 (registers 0+2, 1+3), then i and i+4 (the two sums), then i and i+2, then i and i+1 */
MN_AI float vf_reduce_add(vf x) {
  float32x4_t h = vaddq_f32(vaddq_f32(x.v[0], x.v[2]), vaddq_f32(x.v[1], x.v[3]));
  float32x2_t q = vadd_f32(vget_low_f32(h), vget_high_f32(h));
  return vget_lane_f32(q, 0) + vget_lane_f32(q, 1);
}
/*
 * Lane k = vf_reduce_add(row k) for 16 rows of 16 floats (row k at r + 16k): per row the same (v0 + v2) + (v1 + v3),
 * then four rows transposed so that (x0 + x2) + (x1 + x3) of each lands in its own lane.
 */
MN_AI vf vf_reduce16(const float *r) {
  vf out;
  for (int g = 0; g < 4; g++) {
    float32x4_t h[4];
    for (int k = 0; k < 4; k++) {
      const float *x = r + 16 * (4 * g + k);
      h[k] = vaddq_f32(vaddq_f32(vld1q_f32(x), vld1q_f32(x + 8)), vaddq_f32(vld1q_f32(x + 4), vld1q_f32(x + 12)));
    }
    float32x4x2_t p = vtrnq_f32(h[0], h[1]), q = vtrnq_f32(h[2], h[3]);
    float32x4_t c0 = vcombine_f32(vget_low_f32(p.val[0]), vget_low_f32(q.val[0]));   /* x0 of rows 0..3 */
    float32x4_t c2 = vcombine_f32(vget_high_f32(p.val[0]), vget_high_f32(q.val[0])); /* x2 */
    float32x4_t c1 = vcombine_f32(vget_low_f32(p.val[1]), vget_low_f32(q.val[1]));   /* x1 */
    float32x4_t c3 = vcombine_f32(vget_high_f32(p.val[1]), vget_high_f32(q.val[1])); /* x3 */
    out.v[g] = vaddq_f32(vaddq_f32(c0, c2), vaddq_f32(c1, c3));
  }
  return out;
}

#define MN_MAP4I(expr)                                                                                                 \
  do {                                                                                                                 \
    for (int i_ = 0; i_ < 4; i_++) r.v[i_] = (expr);                                                                  \
  } while (0)

MN_AI vi vi_zero(void) {
  vi r;
  MN_MAP4I(vdupq_n_s32(0));
  return r;
}
MN_AI vi vi_set1(int32_t x) {
  vi r;
  MN_MAP4I(vdupq_n_s32(x));
  return r;
}
MN_AI vi vi_loadu(const void *p) {
  vi r;
  MN_MAP4I(vld1q_s32((const int32_t *)p + 4 * i_));
  return r;
}
MN_AI void vi_storeu(void *p, vi x) {
  for (int i = 0; i < 4; i++) vst1q_s32((int32_t *)p + 4 * i, x.v[i]);
}
MN_AI vi vi_and(vi x, vi y) {
  vi r;
  MN_MAP4I(vandq_s32(x.v[i_], y.v[i_]));
  return r;
}
MN_AI vi vi_or(vi x, vi y) {
  vi r;
  MN_MAP4I(vorrq_s32(x.v[i_], y.v[i_]));
  return r;
}
MN_AI vi vi_xor(vi x, vi y) {
  vi r;
  MN_MAP4I(veorq_s32(x.v[i_], y.v[i_]));
  return r;
}
MN_AI vi vi_add(vi x, vi y) {
  vi r;
  MN_MAP4I(vaddq_s32(x.v[i_], y.v[i_]));
  return r;
}
MN_AI vi vi_sub(vi x, vi y) {
  vi r;
  MN_MAP4I(vsubq_s32(x.v[i_], y.v[i_]));
  return r;
}
MN_AI vi vi_srli_(vi x, int n) {
  vi r;
  int32x4_t s = vdupq_n_s32(-n);
  MN_MAP4I(vreinterpretq_s32_u32(vshlq_u32(vreinterpretq_u32_s32(x.v[i_]), s)));
  return r;
}
MN_AI vi vi_slli_(vi x, int n) {
  vi r;
  int32x4_t s = vdupq_n_s32(n);
  MN_MAP4I(vshlq_s32(x.v[i_], s));
  return r;
}
MN_AI vi vi_srai_(vi x, int n) {
  vi r;
  int32x4_t s = vdupq_n_s32(-n);
  MN_MAP4I(vshlq_s32(x.v[i_], s));
  return r;
}
#define vi_srli(x, n) vi_srli_((x), (n))
#define vi_slli(x, n) vi_slli_((x), (n))
#define vi_srai(x, n) vi_srai_((x), (n))
MN_AI vi vi_srl_n(vi x, int n) { return vi_srli_(x, n); }
MN_AI vi vi_sll_n(vi x, int n) { return vi_slli_(x, n); }
MN_AI vf vi_to_vf(vi x) {
  vf r;
  MN_MAP4F(vcvtq_f32_s32(x.v[i_]));
  return r;
}
MN_AI vi vf_bits(vf x) {
  vi r;
  MN_MAP4I(vreinterpretq_s32_f32(x.v[i_]));
  return r;
}
MN_AI vf vi_bits(vi x) {
  vf r;
  MN_MAP4F(vreinterpretq_f32_s32(x.v[i_]));
  return r;
}
MN_AI vf vf_load_f16(const uint16_t *p) {
  vf r;
  MN_MAP4F(vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p + 4 * i_))));
  return r;
}
MN_AI vf vf_load_bf16(const uint16_t *p) {
  vf r;
  MN_MAP4F(vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(p + 4 * i_), 16)));
  return r;
}
MN_AI vf vf_load_u8(const uint8_t *p) {
  uint8x16_t b = vld1q_u8(p);
  uint16x8_t lo = vmovl_u8(vget_low_u8(b));
  uint16x8_t hi = vmovl_u8(vget_high_u8(b));
  vf r;
  r.v[0] = vcvtq_f32_u32(vmovl_u16(vget_low_u16(lo)));
  r.v[1] = vcvtq_f32_u32(vmovl_u16(vget_high_u16(lo)));
  r.v[2] = vcvtq_f32_u32(vmovl_u16(vget_low_u16(hi)));
  r.v[3] = vcvtq_f32_u32(vmovl_u16(vget_high_u16(hi)));
  return r;
}

/* lane i += sum_j w.byte[4i+j] * x.byte[j]: w unsigned, x signed */
#ifdef MN_DOTPROD
MN_AI vi vi_dot4_u4(vi acc, vi w, int32_t x4) {
  int8x16_t x = vreinterpretq_s8_s32(vdupq_n_s32(x4));
  vi r;
  MN_MAP4I(vdotq_s32(acc.v[i_], vreinterpretq_s8_s32(w.v[i_]), x));
  return r;
}
/* bytes up to 255: (w - 128) is a signed byte; add back 128 * (x0 + x1 + x2 + x3) */
MN_AI vi vi_dot4_u8(vi acc, vi w, int32_t x4) {
  int8x16_t x = vreinterpretq_s8_s32(vdupq_n_s32(x4));
  int32_t xs = (int8_t)(x4 & 0xff) + (int8_t)((x4 >> 8) & 0xff) + (int8_t)((x4 >> 16) & 0xff) + (int8_t)((x4 >> 24) & 0xff);
  int32x4_t c = vdupq_n_s32(128 * xs);
  int32x4_t flip = vdupq_n_s32((int32_t)0x80808080u);
  vi r;
  MN_MAP4I(vaddq_s32(vdotq_s32(acc.v[i_], vreinterpretq_s8_s32(veorq_s32(w.v[i_], flip)), x), c));
  return r;
}
#else
MN_AI int32x4_t dot4_widen(int32x4_t acc, int32x4_t w, int8x16_t x) {
  uint8x16_t wb = vreinterpretq_u8_s32(w);
  int16x8_t xl = vmovl_s8(vget_low_s8(x));
  int16x8_t xh = vmovl_s8(vget_high_s8(x));
  int16x8_t pl = vmulq_s16(vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(wb))), xl);
  int16x8_t ph = vmulq_s16(vreinterpretq_s16_u16(vmovl_u8(vget_high_u8(wb))), xh);
  return vaddq_s32(acc, vpaddq_s32(vpaddlq_s16(pl), vpaddlq_s16(ph)));
}
MN_AI vi vi_dot4_u4(vi acc, vi w, int32_t x4) {
  int8x16_t x = vreinterpretq_s8_s32(vdupq_n_s32(x4));
  vi r;
  MN_MAP4I(dot4_widen(acc.v[i_], w.v[i_], x));
  return r;
}
MN_AI vi vi_dot4_u8(vi acc, vi w, int32_t x4) { return vi_dot4_u4(acc, w, x4); }
#endif
