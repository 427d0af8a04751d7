/* ISA detection, int8 activation rounding and weight layout conversions: compiled once, for the baseline ISA. */
#include <math.h>

#include "mn.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>

static uint64_t xgetbv0(void) {
  uint32_t lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return ((uint64_t)hi << 32) | lo;
}

int mn_levels(mn_level *out, int max) {
  unsigned a, b, c, d;
  int avx2 = 0, avx512 = 0, vnni = 0;
  if (__get_cpuid(1, &a, &b, &c, &d)) {
    int fma = (c >> 12) & 1, osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, f16c = (c >> 29) & 1;
    uint64_t xcr0 = osxsave ? xgetbv0() : 0;
    int ymm = (xcr0 & 0x6) == 0x6, zmm = (xcr0 & 0xe6) == 0xe6;
    if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
      avx2 = fma && avx && f16c && ymm && ((b >> 5) & 1);
      int f = (b >> 16) & 1, dq = (b >> 17) & 1, bw = (b >> 30) & 1, vl = (b >> 31) & 1;
      avx512 = avx2 && zmm && f && dq && bw && vl;
      vnni = avx512 && ((c >> 11) & 1);
    }
  }
  mn_level all[] = {
      {"scalar", &mn_kernels_scalar, 1},
      {"avx2", &mn_kernels_avx2, avx2},
      {"avx512", &mn_kernels_avx512, avx512},
      {"avx512vnni", &mn_kernels_avx512vnni, vnni},
  };
  int n = (int)(sizeof all / sizeof all[0]);
  for (int i = 0; i < n && i < max; i++) out[i] = all[i];
  return n < max ? n : max;
}
#elif defined(__aarch64__)
#if defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
static int has_dotprod(void) { return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0; }
#elif defined(__APPLE__)
#include <sys/sysctl.h>
static int has_dotprod(void) {
  int v = 0;
  size_t n = sizeof v;
  if (sysctlbyname("hw.optional.arm.FEAT_DotProd", &v, &n, NULL, 0) != 0) return 0;
  return v != 0;
}
#else
static int has_dotprod(void) { return 0; }
#endif
int mn_levels(mn_level *out, int max) {
  mn_level all[] = {
      {"scalar", &mn_kernels_scalar, 1},
      {"neon", &mn_kernels_neon, 1},
      {"dotprod", &mn_kernels_dotprod, has_dotprod()},
  };
  int n = (int)(sizeof all / sizeof all[0]);
  for (int i = 0; i < n && i < max; i++) out[i] = all[i];
  return n < max ? n : max;
}
#else
int mn_levels(mn_level *out, int max) {
  if (max < 1) return 0;
  out[0] = (mn_level){"scalar", &mn_kernels_scalar, 1};
  return 1;
}
#endif

/*
 * Int8 activations, block of 32 (the rule of @mnemo/tensor's roundActivationsInt8): amax = max |x| (a NaN wins);
 * a block with inf/NaN gets d = NaN; d = amax / 127; a block with d below 2^-126 (zeros included) is all zero;
 * q = round_half_even(x * (127 / amax)); the block's sum is d * sum(q). X_g = sum of a group's block sums, blocks
 * ascending. 4-bit weights take each 8-block permuted as x0 x2 x4 x6 x1 x3 x5 x7 (the nibble order of a code word).
 */
void mn_quantize_rows(int8_t *xq, float *xd, float *xg, const float *x, int64_t rows, int64_t k, int64_t ldx,
                      int bits, int group) {
  const int64_t blocks = k / 32, groups = k / group, bpg = group / 32;
  const float magic = 12582912.0f;
  for (int64_t r = 0; r < rows; r++) {
    const float *xr = x + r * ldx;
    int8_t *qr = xq + r * k;
    float *dr = xd + r * blocks;
    float *gr = xg + r * groups;
    float gsum = 0.0f;
    for (int64_t b = 0; b < blocks; b++) {
      const float *v = xr + b * 32;
      int8_t q[32];
      float amax = 0.0f;
      for (int i = 0; i < 32; i++) {
        float a = fabsf(v[i]);
        amax = (a != a) || a > amax ? a : amax;
      }
      float d = 0.0f, sum = 0.0f;
      if (!(amax <= 3.4028234663852886e38f)) { /* inf or NaN */
        memset(q, 0, sizeof q);
        d = NAN;
        sum = NAN;
      } else {
        d = amax / 127.0f;
        if (!(d >= 1.1754943508222875e-38f)) {
          memset(q, 0, sizeof q);
          d = 0.0f;
        } else {
          float inv = 127.0f / amax;
          int32_t s = 0;
          for (int i = 0; i < 32; i++) {
            float t = v[i] * inv;
            float rr = (t + magic) - magic;
            q[i] = (int8_t)(int32_t)rr;
            s += q[i];
          }
          sum = d * (float)s;
        }
      }
      int8_t *dst = qr + b * 32;
      if (bits == 4) {
        for (int w = 0; w < 4; w++)
          for (int j = 0; j < 4; j++) {
            dst[8 * w + j] = q[8 * w + 2 * j];
            dst[8 * w + 4 + j] = q[8 * w + 2 * j + 1];
          }
      } else {
        memcpy(dst, q, 32);
      }
      dr[b] = d;
      gsum = gsum + sum;
      if ((b + 1) % bpg == 0) {
        gr[b / bpg] = gsum;
        gsum = 0.0f;
      }
    }
  }
}

/* ---- layouts ------------------------------------------------------------------------------------------------- */

int64_t mn_dense_panel_bytes(int64_t rows, int64_t cols, int esize) {
  return ((rows + 15) / 16) * 16 * cols * esize;
}

void mn_pack_dense_rows(void *dst, const void *src, int64_t rows, int64_t cols, int esize, int64_t r0, int64_t r1) {
  (void)rows;
  uint8_t *d = (uint8_t *)dst;
  const uint8_t *s = (const uint8_t *)src;
  for (int64_t r = r0; r < r1; r++) {
    int64_t p = r / 16, l = r % 16;
    uint8_t *pd = d + (p * cols * 16 + l) * esize;
    const uint8_t *row = s + (r - r0) * cols * esize;
    if (esize == 2) {
      for (int64_t k = 0; k < cols; k++) memcpy(pd + k * 32, row + k * 2, 2);
    } else {
      for (int64_t k = 0; k < cols; k++) memcpy(pd + k * 64, row + k * 4, 4);
    }
  }
}

void mn_pack_dense(void *dst, const void *src, int64_t rows, int64_t cols, int esize) {
  int64_t padded = ((rows + 15) / 16) * 16;
  if (padded > rows) memset((uint8_t *)dst + (rows / 16) * 16 * cols * esize, 0, (size_t)(16 * cols * esize));
  mn_pack_dense_rows(dst, src, rows, cols, esize, 0, rows);
}

void mn_unpack_dense(void *dst, const void *src, int64_t rows, int64_t cols, int esize) {
  uint8_t *d = (uint8_t *)dst;
  const uint8_t *s = (const uint8_t *)src;
  for (int64_t r = 0; r < rows; r++) {
    int64_t p = r / 16, l = r % 16;
    const uint8_t *ps = s + (p * cols * 16 + l) * esize;
    uint8_t *row = d + r * cols * esize;
    for (int64_t k = 0; k < cols; k++) memcpy(row + k * esize, ps + k * 16 * esize, (size_t)esize);
  }
}

int64_t mn_codes_panel_bytes(int64_t rows, int64_t cols, int bits) {
  return ((rows + 15) / 16) * 16 * (cols / 32) * bits * 4;
}

/* row r's word (32c + w) goes to panel r/16, chunk c, word w, lane r%16 */
void mn_pack_codes_rows(uint32_t *dst, const uint32_t *src, int64_t rows, int64_t cols, int bits, int64_t r0,
                        int64_t r1) {
  (void)rows;
  const int64_t words = (cols / 32) * bits;
  for (int64_t r = r0; r < r1; r++) {
    int64_t p = r / 16, l = r % 16;
    uint32_t *pd = dst + p * words * 16 + l;
    const uint32_t *row = src + (r - r0) * words;
    for (int64_t w = 0; w < words; w++) pd[w * 16] = row[w];
  }
}

void mn_pack_codes(uint32_t *dst, const uint32_t *src, int64_t rows, int64_t cols, int bits) {
  const int64_t words = (cols / 32) * bits;
  if (rows % 16) memset(dst + (rows / 16) * words * 16, 0, (size_t)(words * 16 * 4));
  mn_pack_codes_rows(dst, src, rows, cols, bits, 0, rows);
}

void mn_unpack_codes(uint32_t *dst, const uint32_t *src, int64_t rows, int64_t cols, int bits) {
  const int64_t words = (cols / 32) * bits;
  for (int64_t r = 0; r < rows; r++) {
    int64_t p = r / 16, l = r % 16;
    const uint32_t *ps = src + p * words * 16 + l;
    uint32_t *row = dst + r * words;
    for (int64_t w = 0; w < words; w++) row[w] = ps[w * 16];
  }
}
