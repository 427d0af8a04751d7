/* The 16-lane virtual vector on AVX-512 (F, BW, VL, DQ; VNNI when MN_VNNI): one zmm register. */
#include <immintrin.h>

typedef __m512 vf;
typedef __m512i vi;

MN_AI vf vf_zero(void) { return _mm512_setzero_ps(); }
MN_AI vf vf_set1(float a) { return _mm512_set1_ps(a); }
MN_AI vf vf_loadu(const float *p) { return _mm512_loadu_ps(p); }
MN_AI void vf_storeu(float *p, vf a) { _mm512_storeu_ps(p, a); }
MN_AI vf vf_add(vf a, vf b) { return _mm512_add_ps(a, b); }
MN_AI vf vf_sub(vf a, vf b) { return _mm512_sub_ps(a, b); }
MN_AI vf vf_mul(vf a, vf b) { return _mm512_mul_ps(a, b); }
MN_AI vf vf_div(vf a, vf b) { return _mm512_div_ps(a, b); }
/* a * b + c, rounded once */
MN_AI vf vf_fma(vf a, vf b, vf c) { return _mm512_fmadd_ps(a, b, c); }
/* per lane: a > b (ordered: false with a NaN) ? x : y */
MN_AI vf vf_gt_sel(vf a, vf b, vf x, vf y) {
  return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, b, _CMP_GT_OQ), y, x);
}
/* ((l0+l8)+(l4+l12)) + ((l2+l10)+(l6+l14)) + ...: lanes i and i+8, then i and i+4, i and i+2, i and i+1 */
MN_AI float vf_reduce_add(vf a) {
  __m256 h = _mm256_add_ps(_mm512_castps512_ps256(a), _mm512_extractf32x8_ps(a, 1));
  __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  q = _mm_add_ps(q, _mm_movehl_ps(q, q));
  q = _mm_add_ss(q, _mm_movehdup_ps(q));
  return _mm_cvtss_f32(q);
}
/*
 * Lane k = vf_reduce_add(row k) for 16 rows of 16 floats (r: row k at r + 16k): the very same pairwise sums, done for
 * 16 rows at once. Rows are read in the order MN_R16 so that the transposing shuffles leave row k's sum in lane k.
 */
#define MN_R16 {0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15}
MN_AI vf vf_reduce16(const float *r) {
  static const int o[16] = MN_R16;
  __m512 t[8], u[4], v[2];
  for (int a = 0; a < 8; a++) {
    __m512 x = _mm512_loadu_ps(r + 16 * o[2 * a]), y = _mm512_loadu_ps(r + 16 * o[2 * a + 1]);
    t[a] = _mm512_add_ps(_mm512_shuffle_f32x4(x, y, 0x44), _mm512_shuffle_f32x4(x, y, 0xEE)); /* i + i+8 */
  }
  for (int b = 0; b < 4; b++) /* i + i+4 */
    u[b] = _mm512_add_ps(_mm512_shuffle_f32x4(t[2 * b], t[2 * b + 1], 0x88),
                         _mm512_shuffle_f32x4(t[2 * b], t[2 * b + 1], 0xDD));
  for (int c = 0; c < 2; c++) /* i + i+2 */
    v[c] = _mm512_add_ps(_mm512_shuffle_ps(u[2 * c], u[2 * c + 1], 0x44), _mm512_shuffle_ps(u[2 * c], u[2 * c + 1], 0xEE));
  return _mm512_add_ps(_mm512_shuffle_ps(v[0], v[1], 0x88), _mm512_shuffle_ps(v[0], v[1], 0xDD)); /* i + i+1 */
}

MN_AI vi vi_zero(void) { return _mm512_setzero_si512(); }
MN_AI vi vi_set1(int32_t a) { return _mm512_set1_epi32(a); }
MN_AI vi vi_loadu(const void *p) { return _mm512_loadu_si512(p); }
MN_AI void vi_storeu(void *p, vi a) { _mm512_storeu_si512(p, a); }
MN_AI vi vi_and(vi a, vi b) { return _mm512_and_si512(a, b); }
MN_AI vi vi_or(vi a, vi b) { return _mm512_or_si512(a, b); }
MN_AI vi vi_xor(vi a, vi b) { return _mm512_xor_si512(a, b); }
MN_AI vi vi_add(vi a, vi b) { return _mm512_add_epi32(a, b); }
MN_AI vi vi_sub(vi a, vi b) { return _mm512_sub_epi32(a, b); }
#define vi_srli(a, n) _mm512_srli_epi32((a), (n))
#define vi_slli(a, n) _mm512_slli_epi32((a), (n))
#define vi_srai(a, n) _mm512_srai_epi32((a), (n))
/* int32 -> f32 (exact below 2^24) */
MN_AI vi vi_srl_n(vi a, int n) { return _mm512_srl_epi32(a, _mm_cvtsi32_si128(n)); }
MN_AI vi vi_sll_n(vi a, int n) { return _mm512_sll_epi32(a, _mm_cvtsi32_si128(n)); }
MN_AI vf vi_to_vf(vi a) { return _mm512_cvtepi32_ps(a); }
MN_AI vi vf_bits(vf a) { return _mm512_castps_si512(a); }
MN_AI vf vi_bits(vi a) { return _mm512_castsi512_ps(a); }
MN_AI vf vf_load_f16(const uint16_t *p) { return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p)); }
MN_AI vf vf_load_bf16(const uint16_t *p) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p)), 16));
}
MN_AI vf vf_load_u8(const uint8_t *p) {
  return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)p)));
}

/* Integer dot products: lane i += sum_j w.byte[4i+j] * x.byte[j] (w unsigned, x = 4 signed bytes in one int32). */
#ifdef MN_VNNI
MN_AI vi vi_dot4_u4(vi acc, vi w, int32_t x4) { return _mm512_dpbusd_epi32(acc, w, _mm512_set1_epi32(x4)); }
MN_AI vi vi_dot4_u8(vi acc, vi w, int32_t x4) { return _mm512_dpbusd_epi32(acc, w, _mm512_set1_epi32(x4)); }
#else
/* bytes of w at most 15: pairs of products fit int16 */
MN_AI vi vi_dot4_u4(vi acc, vi w, int32_t x4) {
  __m512i p = _mm512_maddubs_epi16(w, _mm512_set1_epi32(x4));
  return _mm512_add_epi32(acc, _mm512_madd_epi16(p, _mm512_set1_epi16(1)));
}
/* bytes of w up to 255: split into nibbles so that no int16 pair saturates */
MN_AI vi vi_dot4_u8(vi acc, vi w, int32_t x4) {
  __m512i x = _mm512_set1_epi32(x4);
  __m512i m = _mm512_set1_epi8(0x0f);
  __m512i lo = _mm512_maddubs_epi16(_mm512_and_si512(w, m), x);
  __m512i hi = _mm512_maddubs_epi16(_mm512_and_si512(_mm512_srli_epi16(w, 4), m), x);
  __m512i one = _mm512_set1_epi16(1);
  __m512i s = _mm512_add_epi32(_mm512_madd_epi16(lo, one), _mm512_slli_epi32(_mm512_madd_epi16(hi, one), 4));
  return _mm512_add_epi32(acc, s);
}
#endif
