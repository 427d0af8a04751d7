/* The 16-lane virtual vector in plain C: the definition every SIMD level must reproduce bit for bit. */
#include <string.h>

typedef struct {
  float v[16];
} vf;
typedef struct {
  int32_t v[16];
} vi;

#define MN_FOR16 for (int i = 0; i < 16; i++)

MN_AI vf vf_zero(void) {
  vf r;
  MN_FOR16 r.v[i] = 0.0f;
  return r;
}
MN_AI vf vf_set1(float x) {
  vf r;
  MN_FOR16 r.v[i] = x;
  return r;
}
MN_AI vf vf_loadu(const float *p) {
  vf r;
  memcpy(r.v, p, sizeof r.v);
  return r;
}
MN_AI void vf_storeu(float *p, vf x) { memcpy(p, x.v, sizeof x.v); }
MN_AI vf vf_add(vf x, vf y) {
  vf r;
  MN_FOR16 r.v[i] = x.v[i] + y.v[i];
  return r;
}
MN_AI vf vf_sub(vf x, vf y) {
  vf r;
  MN_FOR16 r.v[i] = x.v[i] - y.v[i];
  return r;
}
MN_AI vf vf_mul(vf x, vf y) {
  vf r;
  MN_FOR16 r.v[i] = x.v[i] * y.v[i];
  return r;
}
MN_AI vf vf_div(vf x, vf y) {
  vf r;
  MN_FOR16 r.v[i] = x.v[i] / y.v[i];
  return r;
}
MN_AI vf vf_fma(vf x, vf y, vf z) {
  vf r;
  MN_FOR16 r.v[i] = __builtin_fmaf(x.v[i], y.v[i], z.v[i]);
  return r;
}
MN_AI vf vf_gt_sel(vf p, vf q, vf x, vf y) {
  vf r;
  MN_FOR16 r.v[i] = p.v[i] > q.v[i] ? x.v[i] : y.v[i];
  return r;
}
MN_AI float vf_reduce_add(vf x) {
  float h[8], q[4], t[2];
  for (int i = 0; i < 8; i++) h[i] = x.v[i] + x.v[i + 8];
  for (int i = 0; i < 4; i++) q[i] = h[i] + h[i + 4];
  for (int i = 0; i < 2; i++) t[i] = q[i] + q[i + 2];
  return t[0] + t[1];
}
/* lane k = vf_reduce_add(row k) for 16 rows of 16 floats (row k at r + 16k) */
MN_AI vf vf_reduce16(const float *r) {
  vf out;
  for (int k = 0; k < 16; k++) {
    vf x;
    MN_FOR16 x.v[i] = r[16 * k + i];
    out.v[k] = vf_reduce_add(x);
  }
  return out;
}

MN_AI vi vi_zero(void) {
  vi r;
  MN_FOR16 r.v[i] = 0;
  return r;
}
MN_AI vi vi_set1(int32_t x) {
  vi r;
  MN_FOR16 r.v[i] = x;
  return r;
}
MN_AI vi vi_loadu(const void *p) {
  vi r;
  memcpy(r.v, p, sizeof r.v);
  return r;
}
MN_AI void vi_storeu(void *p, vi x) { memcpy(p, x.v, sizeof x.v); }
MN_AI vi vi_and(vi x, vi y) {
  vi r;
  MN_FOR16 r.v[i] = x.v[i] & y.v[i];
  return r;
}
MN_AI vi vi_or(vi x, vi y) {
  vi r;
  MN_FOR16 r.v[i] = x.v[i] | y.v[i];
  return r;
}
MN_AI vi vi_xor(vi x, vi y) {
  vi r;
  MN_FOR16 r.v[i] = x.v[i] ^ y.v[i];
  return r;
}
MN_AI vi vi_add(vi x, vi y) {
  vi r;
  MN_FOR16 r.v[i] = (int32_t)((uint32_t)x.v[i] + (uint32_t)y.v[i]);
  return r;
}
MN_AI vi vi_sub(vi x, vi y) {
  vi r;
  MN_FOR16 r.v[i] = (int32_t)((uint32_t)x.v[i] - (uint32_t)y.v[i]);
  return r;
}
MN_AI vi vi_srli_(vi x, int n) {
  vi r;
  MN_FOR16 r.v[i] = (int32_t)((uint32_t)x.v[i] >> n);
  return r;
}
MN_AI vi vi_slli_(vi x, int n) {
  vi r;
  MN_FOR16 r.v[i] = (int32_t)((uint32_t)x.v[i] << n);
  return r;
}
MN_AI vi vi_srai_(vi x, int n) {
  vi r;
  MN_FOR16 r.v[i] = x.v[i] >> n;
  return r;
}
#define vi_srli(x, n) vi_srli_((x), (n))
#define vi_slli(x, n) vi_slli_((x), (n))
#define vi_srai(x, n) vi_srai_((x), (n))
MN_AI vi vi_srl_n(vi x, int n) { return vi_srli_(x, n); }
MN_AI vi vi_sll_n(vi x, int n) { return vi_slli_(x, n); }
MN_AI vf vi_to_vf(vi x) {
  vf r;
  MN_FOR16 r.v[i] = (float)x.v[i];
  return r;
}
MN_AI vi vf_bits(vf x) {
  vi r;
  memcpy(r.v, x.v, sizeof r.v);
  return r;
}
MN_AI vf vi_bits(vi x) {
  vf r;
  memcpy(r.v, x.v, sizeof r.v);
  return r;
}
MN_AI vf vf_load_f16(const uint16_t *p) {
  vf r;
  MN_FOR16 r.v[i] = mn_f16_to_f32(p[i]);
  return r;
}
MN_AI vf vf_load_bf16(const uint16_t *p) {
  vi r;
  MN_FOR16 r.v[i] = (int32_t)((uint32_t)p[i] << 16);
  return vi_bits(r);
}
MN_AI vf vf_load_u8(const uint8_t *p) {
  vf r;
  MN_FOR16 r.v[i] = (float)p[i];
  return r;
}
MN_AI vi vi_dot4_u4(vi acc, vi w, int32_t x4) {
  vi r;
  MN_FOR16 {
    int32_t s = 0;
    for (int j = 0; j < 4; j++) s += (int32_t)(((uint32_t)w.v[i] >> (8 * j)) & 0xff) * (int8_t)((x4 >> (8 * j)) & 0xff);
    r.v[i] = acc.v[i] + s;
  }
  return r;
}
MN_AI vi vi_dot4_u8(vi acc, vi w, int32_t x4) { return vi_dot4_u4(acc, w, x4); }
