/*
 * writeKv: f32 rows converted into KV storage (f32 copied, f16 rounded to nearest even, MLX affine 4/8-bit quantized
 * per group), exactly as @mnemo/tensor's reference defines it, so the stored bytes are the same on every backend.
 * Compiled once (baseline ISA): scalar code, float64 where the definition says so.
 */
#include <math.h>

#include "mn.h"

/* f32 bits -> f16 bits, round to nearest even; overflow to inf; NaN keeps the top of its payload (as f32ToF16) */
static uint16_t f32_to_f16_bits(uint32_t x) {
  uint32_t sign = (x >> 16) & 0x8000, exp = (x >> 23) & 255, mant = x & 0x7fffff;
  if (exp == 255) return (uint16_t)(mant == 0 ? sign | 0x7c00 : sign | 0x7e00 | (mant >> 13));
  int32_t e = (int32_t)exp - 112;
  if (e >= 31) return (uint16_t)(sign | 0x7c00);
  if (e <= 0) {
    int32_t shift = 14 - e;
    if (shift > 24) return (uint16_t)sign;
    uint32_t m = mant | 0x800000, q = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1))) q++;
    return (uint16_t)(sign | q);
  }
  uint32_t h = ((uint32_t)e << 10) | (mant >> 13), rem = mant & 8191;
  if (rem > 4096 || (rem == 4096 && (h & 1))) h++;
  return (uint16_t)(sign | h);
}

/* one row into affine codes: per group min/max (x < min, x > max: NaNs skipped), scale = fl32(fl32(max - min) /
   (2^bits - 1)), bias = min, q = scale == 0 ? 0 : clamp(round_half_even((x - bias) / scale) in float64); NaN -> 0 */
static void quantize_row(uint32_t *packed, float *scales, float *biases, const float *x, int64_t width, int bits,
                         int group) {
  const double maxq = (double)((1u << bits) - 1);
  memset(packed, 0, (size_t)(width * bits / 32) * 4);
  for (int64_t g = 0; g < width / group; g++) {
    const float *v = x + g * group;
    float mn = INFINITY, mx = -INFINITY;
    for (int i = 0; i < group; i++) {
      if (v[i] < mn) mn = v[i];
      if (v[i] > mx) mx = v[i];
    }
    const float range = (float)((double)mx - (double)mn);
    const float scale = (float)((double)range / maxq);
    scales[g] = scale;
    biases[g] = mn;
    for (int i = 0; i < group; i++) {
      uint32_t q = 0;
      if (scale != 0.0f) {
        double t = nearbyint(((double)v[i] - (double)mn) / (double)scale);
        if (t != t) t = 0;
        q = t <= 0 ? 0 : t >= maxq ? (uint32_t)maxq : (uint32_t)t;
      }
      const int64_t k = g * group + i, bit = (int64_t)bits * k;
      packed[bit >> 5] |= q << (bit & 31); /* 4 and 8 bits never straddle words */
    }
  }
}

void mn_write_kv(const mn_kv *dst, const float *src, int64_t r0, int64_t r1, int64_t width, int64_t start,
                 int64_t cap, int64_t keep) {
  for (int64_t r = r0; r < r1; r++) {
    const int64_t row = mn_kv_row(start + r, cap, keep);
    const float *x = src + r * width;
    if (dst->fmt == MN_KV_F32) {
      memcpy((float *)dst->data + row * width, x, (size_t)width * 4);
    } else if (dst->fmt == MN_KV_F16) {
      uint16_t *h = (uint16_t *)dst->data + row * width;
      for (int64_t i = 0; i < width; i++) {
        uint32_t b;
        memcpy(&b, x + i, 4);
        h[i] = f32_to_f16_bits(b);
      }
    } else {
      const int64_t words = width * dst->bits / 32, groups = width / dst->group;
      quantize_row((uint32_t *)dst->data + row * words, (float *)dst->scales + row * groups,
                   (float *)dst->biases + row * groups, x, width, dst->bits, dst->group);
    }
  }
}
