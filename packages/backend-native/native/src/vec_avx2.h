/* The 16-lane virtual vector on AVX2 + FMA + F16C: two ymm registers (lanes 0-7, 8-15). */
#include <immintrin.h>

typedef struct {
  __m256 a, b;
} vf;
typedef struct {
  __m256i a, b;
} vi;

MN_AI vf mkf(__m256 a, __m256 b) {
  vf r = {a, b};
  return r;
}
MN_AI vi mki(__m256i a, __m256i b) {
  vi r = {a, b};
  return r;
}

MN_AI vf vf_zero(void) { return mkf(_mm256_setzero_ps(), _mm256_setzero_ps()); }
MN_AI vf vf_set1(float x) { return mkf(_mm256_set1_ps(x), _mm256_set1_ps(x)); }
MN_AI vf vf_loadu(const float *p) { return mkf(_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)); }
MN_AI void vf_storeu(float *p, vf x) {
  _mm256_storeu_ps(p, x.a);
  _mm256_storeu_ps(p + 8, x.b);
}
MN_AI vf vf_add(vf x, vf y) { return mkf(_mm256_add_ps(x.a, y.a), _mm256_add_ps(x.b, y.b)); }
MN_AI vf vf_sub(vf x, vf y) { return mkf(_mm256_sub_ps(x.a, y.a), _mm256_sub_ps(x.b, y.b)); }
MN_AI vf vf_mul(vf x, vf y) { return mkf(_mm256_mul_ps(x.a, y.a), _mm256_mul_ps(x.b, y.b)); }
MN_AI vf vf_div(vf x, vf y) { return mkf(_mm256_div_ps(x.a, y.a), _mm256_div_ps(x.b, y.b)); }
MN_AI vf vf_fma(vf x, vf y, vf z) { return mkf(_mm256_fmadd_ps(x.a, y.a, z.a), _mm256_fmadd_ps(x.b, y.b, z.b)); }
MN_AI vf vf_gt_sel(vf p, vf q, vf x, vf y) {
  return mkf(_mm256_blendv_ps(y.a, x.a, _mm256_cmp_ps(p.a, q.a, _CMP_GT_OQ)),
             _mm256_blendv_ps(y.b, x.b, _mm256_cmp_ps(p.b, q.b, _CMP_GT_OQ)));
}
MN_AI float vf_reduce_add(vf x) {
  __m256 h = _mm256_add_ps(x.a, x.b);
  __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  q = _mm_add_ps(q, _mm_movehl_ps(q, q));
  q = _mm_add_ss(q, _mm_movehdup_ps(q));
  return _mm_cvtss_f32(q);
}
/*
 * Lane k = vf_reduce_add(row k) for 16 rows of 16 floats (r: row k at r + 16k): the very same pairwise sums, done for
 * 16 rows at once (the same shuffles as the AVX-512 level, per 256-bit half). Rows are read in the order MN_R16 so
 * that row k's sum lands in lane k.
 */
#define MN_R16 {0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15}
MN_AI vf vf_reduce16(const float *r) {
  static const int o[16] = MN_R16;
  __m256 t[8][2], u[4][2], v[2][2];
  for (int a = 0; a < 8; a++) { /* i + i+8 */
    const float *x = r + 16 * o[2 * a], *y = r + 16 * o[2 * a + 1];
    t[a][0] = _mm256_add_ps(_mm256_loadu_ps(x), _mm256_loadu_ps(x + 8));
    t[a][1] = _mm256_add_ps(_mm256_loadu_ps(y), _mm256_loadu_ps(y + 8));
  }
  for (int b = 0; b < 4; b++) /* i + i+4 */
    for (int h = 0; h < 2; h++) {
      __m256 p = t[2 * b + h][0], q = t[2 * b + h][1];
      u[b][h] = _mm256_add_ps(_mm256_permute2f128_ps(p, q, 0x20), _mm256_permute2f128_ps(p, q, 0x31));
    }
  for (int c = 0; c < 2; c++) /* i + i+2 */
    for (int h = 0; h < 2; h++)
      v[c][h] = _mm256_add_ps(_mm256_shuffle_ps(u[2 * c][h], u[2 * c + 1][h], 0x44),
                              _mm256_shuffle_ps(u[2 * c][h], u[2 * c + 1][h], 0xEE));
  return mkf(_mm256_add_ps(_mm256_shuffle_ps(v[0][0], v[1][0], 0x88), _mm256_shuffle_ps(v[0][0], v[1][0], 0xDD)),
             _mm256_add_ps(_mm256_shuffle_ps(v[0][1], v[1][1], 0x88), _mm256_shuffle_ps(v[0][1], v[1][1], 0xDD)));
}

MN_AI vi vi_zero(void) { return mki(_mm256_setzero_si256(), _mm256_setzero_si256()); }
MN_AI vi vi_set1(int32_t x) { return mki(_mm256_set1_epi32(x), _mm256_set1_epi32(x)); }
MN_AI vi vi_loadu(const void *p) {
  return mki(_mm256_loadu_si256((const __m256i *)p), _mm256_loadu_si256((const __m256i *)p + 1));
}
MN_AI void vi_storeu(void *p, vi x) {
  _mm256_storeu_si256((__m256i *)p, x.a);
  _mm256_storeu_si256((__m256i *)p + 1, x.b);
}
MN_AI vi vi_and(vi x, vi y) { return mki(_mm256_and_si256(x.a, y.a), _mm256_and_si256(x.b, y.b)); }
MN_AI vi vi_or(vi x, vi y) { return mki(_mm256_or_si256(x.a, y.a), _mm256_or_si256(x.b, y.b)); }
MN_AI vi vi_xor(vi x, vi y) { return mki(_mm256_xor_si256(x.a, y.a), _mm256_xor_si256(x.b, y.b)); }
MN_AI vi vi_add(vi x, vi y) { return mki(_mm256_add_epi32(x.a, y.a), _mm256_add_epi32(x.b, y.b)); }
MN_AI vi vi_sub(vi x, vi y) { return mki(_mm256_sub_epi32(x.a, y.a), _mm256_sub_epi32(x.b, y.b)); }
#define vi_srli(x, n) mki(_mm256_srli_epi32((x).a, (n)), _mm256_srli_epi32((x).b, (n)))
#define vi_slli(x, n) mki(_mm256_slli_epi32((x).a, (n)), _mm256_slli_epi32((x).b, (n)))
#define vi_srai(x, n) mki(_mm256_srai_epi32((x).a, (n)), _mm256_srai_epi32((x).b, (n)))
MN_AI vi vi_srl_n(vi x, int n) { __m128i c = _mm_cvtsi32_si128(n); return mki(_mm256_srl_epi32(x.a, c), _mm256_srl_epi32(x.b, c)); }
MN_AI vi vi_sll_n(vi x, int n) { __m128i c = _mm_cvtsi32_si128(n); return mki(_mm256_sll_epi32(x.a, c), _mm256_sll_epi32(x.b, c)); }
MN_AI vf vi_to_vf(vi x) { return mkf(_mm256_cvtepi32_ps(x.a), _mm256_cvtepi32_ps(x.b)); }
MN_AI vi vf_bits(vf x) { return mki(_mm256_castps_si256(x.a), _mm256_castps_si256(x.b)); }
MN_AI vf vi_bits(vi x) { return mkf(_mm256_castsi256_ps(x.a), _mm256_castsi256_ps(x.b)); }
MN_AI vf vf_load_f16(const uint16_t *p) {
  return mkf(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)),
             _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p + 8))));
}
MN_AI vf vf_load_bf16(const uint16_t *p) {
  __m256i a = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
  __m256i b = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(p + 8)));
  return mkf(_mm256_castsi256_ps(_mm256_slli_epi32(a, 16)), _mm256_castsi256_ps(_mm256_slli_epi32(b, 16)));
}
MN_AI vf vf_load_u8(const uint8_t *p) {
  __m128i v = _mm_loadu_si128((const __m128i *)p);
  return mkf(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v)), _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(v, 8))));
}

MN_AI __m256i dot4_u4_half(__m256i acc, __m256i w, __m256i x) {
  __m256i p = _mm256_maddubs_epi16(w, x);
  return _mm256_add_epi32(acc, _mm256_madd_epi16(p, _mm256_set1_epi16(1)));
}
MN_AI vi vi_dot4_u4(vi acc, vi w, int32_t x4) {
  __m256i x = _mm256_set1_epi32(x4);
  return mki(dot4_u4_half(acc.a, w.a, x), dot4_u4_half(acc.b, w.b, x));
}
MN_AI __m256i dot4_u8_half(__m256i acc, __m256i w, __m256i x) {
  __m256i m = _mm256_set1_epi8(0x0f);
  __m256i one = _mm256_set1_epi16(1);
  __m256i lo = _mm256_maddubs_epi16(_mm256_and_si256(w, m), x);
  __m256i hi = _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(w, 4), m), x);
  return _mm256_add_epi32(acc, _mm256_add_epi32(_mm256_madd_epi16(lo, one),
                                                _mm256_slli_epi32(_mm256_madd_epi16(hi, one), 4)));
}
MN_AI vi vi_dot4_u8(vi acc, vi w, int32_t x4) {
  __m256i x = _mm256_set1_epi32(x4);
  return mki(dot4_u8_half(acc.a, w.a, x), dot4_u8_half(acc.b, w.b, x));
}
