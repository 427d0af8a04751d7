/*
 * Kernel tests in C: every ISA level this CPU runs must give bit-for-bit the results of the scalar definition, for
 * every kernel, many shapes and any split of the work into tiles and tasks; the scalar results must be close to a
 * float64 evaluation. Prints one line per check group and, last, "hash <hex>": an FNV-1a hash of every scalar result
 * (NaNs canonicalized), which must be the same on every architecture (the test suite compares the x86-64 run with
 * the arm64 run under qemu).
 *
 *   kernel_test [level...]   (default: every level the CPU supports)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/mn.h"

static int failures = 0;
static uint64_t hash = 1469598103934665603ull;

static void hash_floats(const float *x, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    uint32_t b;
    memcpy(&b, x + i, 4);
    if ((b & 0x7f800000u) == 0x7f800000u && (b & 0x7fffffu)) b = 0x7fc00000u;
    for (int k = 0; k < 4; k++) {
      hash ^= (b >> (8 * k)) & 0xff;
      hash *= 1099511628211ull;
    }
  }
}

/* ---- deterministic random data (integer arithmetic only: the same on every architecture) ---------------------- */
static uint64_t rng_state = 88172645463325252ull;
static uint32_t rnd(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (uint32_t)(rng_state >> 16);
}
/* uniform in [-scale, scale) on a grid of 2^-24 */
static float rndf(float scale) { return scale * ((float)(int32_t)(rnd() % 33554432u - 16777216) / 16777216.0f); }
static void fill(float *x, int64_t n, float scale) {
  for (int64_t i = 0; i < n; i++) x[i] = rndf(scale);
}
/* wide dynamic range: sign * (1 + u) * 2^e, e in [-s, s] */
static void fill_wide(float *x, int64_t n, int s) {
  for (int64_t i = 0; i < n; i++) {
    float m = 1.0f + (float)(rnd() % 1024u) / 1024.0f;
    int e = (int)(rnd() % (uint32_t)(2 * s + 1)) - s;
    x[i] = (rnd() & 1 ? -1.0f : 1.0f) * ldexpf(m, e);
  }
}
static uint16_t f32_to_f16(float f) {
  /* round to nearest even, for test data only (finite, in range) */
  uint32_t b;
  memcpy(&b, &f, 4);
  uint32_t sign = (b >> 16) & 0x8000;
  int e = (int)((b >> 23) & 0xff) - 127 + 15;
  uint32_t m = b & 0x7fffff;
  if (e <= 0) {
    if (e < -10) return (uint16_t)sign;
    m |= 0x800000;
    int shift = 14 - e;
    uint32_t h = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (h & 1))) h++;
    return (uint16_t)(sign | h);
  }
  if (e >= 31) return (uint16_t)(sign | 0x7c00);
  uint32_t h = ((uint32_t)e << 10) | (m >> 13), rem = m & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++;
  return (uint16_t)(sign | h);
}
static uint16_t f32_to_bf16(float f) {
  uint32_t b;
  memcpy(&b, &f, 4);
  uint32_t r = b + 0x7fff + ((b >> 16) & 1);
  return (uint16_t)(r >> 16);
}
static float f16v(uint16_t h) { return mn_f16_to_f32(h); }
static float bf16v(uint16_t h) {
  uint32_t b = (uint32_t)h << 16;
  float f;
  memcpy(&f, &b, 4);
  return f;
}

static mn_level levels[8];
static int nlevels = 0;

static int same_bits(const float *a, const float *b, int64_t n, int64_t *where) {
  for (int64_t i = 0; i < n; i++) {
    uint32_t x, y;
    memcpy(&x, a + i, 4);
    memcpy(&y, b + i, 4);
    int xn = (x & 0x7f800000u) == 0x7f800000u && (x & 0x7fffffu);
    int yn = (y & 0x7f800000u) == 0x7f800000u && (y & 0x7fffffu);
    if (xn && yn) continue;
    if (x != y) {
      *where = i;
      return 0;
    }
  }
  return 1;
}

static void expect_same(const char *what, const char *level, const float *got, const float *want, int64_t n) {
  int64_t at = -1;
  if (!same_bits(got, want, n, &at)) {
    failures++;
    if (failures < 30)
      printf("FAIL %s [%s]: element %lld: %.9g vs scalar %.9g\n", what, level, (long long)at, got[at], want[at]);
  }
}

static void expect_close(const char *what, const float *got, const double *want, const double *tol, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    double d = fabs((double)got[i] - want[i]);
    if (!(d <= tol[i]) && !(isnan(want[i]) && isnan(got[i]))) {
      failures++;
      if (failures < 30) printf("FAIL %s: element %lld: %.9g vs %.9g (tolerance %.3g)\n", what, (long long)i, got[i], want[i], tol[i]);
      return;
    }
  }
}

#define U (1.0 / 16777216.0)

/* ---- exp ---------------------------------------------------------------------------------------------------- */
static void test_exp(void) {
  const int n = 4000;
  float *x = malloc(n * 4), *want = malloc(n * 4), *got = malloc(n * 4);
  for (int i = 0; i < n; i++) x[i] = -110.0f + 200.0f * (float)i / n + rndf(0.01f);
  float sp[] = {0.0f, -0.0f, 1.0f, -1.0f, INFINITY, -INFINITY, NAN, 88.72f, 88.73f, -87.3f, -103.0f, -104.0f, 1e-8f, -1e-30f};
  memcpy(x, sp, sizeof sp);
  mn_kernels_scalar.exp(want, x, n);
  hash_floats(want, n);
  double worst = 0;
  for (int i = 0; i < n; i++) {
    double e = exp((double)x[i]);
    if (isnan(x[i])) {
      if (!isnan(want[i])) failures++;
      continue;
    }
    if (e > 3.4028234663852886e38) {
      if (!isinf(want[i])) {
        failures++;
        printf("FAIL exp(%g) = %g, expected inf\n", x[i], want[i]);
      }
      continue;
    }
    double err = fabs(want[i] - e);
    double rel = e >= 1.1754943508222875e-38 ? err / e : err / 1.1754943508222875e-38;
    if (rel > worst) worst = rel;
  }
  if (worst > 4 * U) {
    failures++;
    printf("FAIL exp: relative error %.3g\n", worst);
  }
  for (int l = 0; l < nlevels; l++) {
    levels[l].kernels->exp(got, x, n);
    expect_same("exp", levels[l].name, got, want, n);
  }
  printf("exp: max relative error %.3g ulp-ish (%.3g)\n", worst / U, worst);
  /* tanh */
  for (int i = 0; i < n; i++) x[i] = -12.0f + 24.0f * (float)i / n + rndf(0.001f);
  float tsp[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 0.35f, -0.35f, 0.3499999f, 1e-20f, -1e-6f, 0.5f, 20.0f};
  memcpy(x, tsp, sizeof tsp);
  for (int i = 0; i < 200; i++) x[20 + i] = ldexpf(1.0f + (float)i / 200.0f, -(i % 40)) * (i % 2 ? -1.0f : 1.0f);
  mn_kernels_scalar.tanh(want, x, n);
  hash_floats(want, n);
  worst = 0;
  for (int i = 0; i < n; i++) {
    if (isnan(x[i])) {
      if (!isnan(want[i])) failures++;
      continue;
    }
    double e = tanh((double)x[i]);
    double rel = e == 0 ? fabs(want[i]) : fabs(want[i] - e) / fabs(e);
    if (rel > worst) worst = rel;
    if (!signbit(want[i]) != !signbit(e) && e != 0) {
      failures++;
      if (failures < 5) printf("FAIL tanh(%g) = %g, sign\n", x[i], want[i]);
    }
  }
  if (!signbit(want[1]) || want[2] != 1.0f || want[3] != -1.0f) {
    failures++;
    printf("FAIL tanh limits: %g %g %g\n", want[1], want[2], want[3]);
  }
  if (worst > 8 * U) {
    failures++;
    printf("FAIL tanh: relative error %.3g\n", worst);
  }
  for (int l = 0; l < nlevels; l++) {
    levels[l].kernels->tanh(got, x, n);
    expect_same("tanh", levels[l].name, got, want, n);
  }
  printf("tanh: max relative error %.3g ulp-ish\n", worst / U);
  free(x), free(want), free(got);
}

/* ---- conversions -------------------------------------------------------------------------------------------- */
static void test_to_f32(void) {
  const int64_t n = 65536 + 7;
  uint16_t *h = malloc(n * 2);
  float *want = malloc(n * 4), *got = malloc(n * 4);
  for (int64_t i = 0; i < n; i++) h[i] = (uint16_t)(i * 40503u);
  for (int d = MN_F16; d <= MN_BF16; d++) {
    mn_kernels_scalar.to_f32(want, h, d, n);
    hash_floats(want, n);
    for (int64_t i = 0; i < n; i++) {
      float e = d == MN_F16 ? f16v(h[i]) : bf16v(h[i]);
      if (memcmp(&e, want + i, 4) != 0 && !(isnan(e) && isnan(want[i]))) {
        failures++;
        printf("FAIL to_f32 %d: %04x\n", d, h[i]);
        break;
      }
    }
    for (int l = 0; l < nlevels; l++) {
      levels[l].kernels->to_f32(got, h, d, n);
      expect_same(d == MN_F16 ? "to_f32 f16" : "to_f32 bf16", levels[l].name, got, want, n);
    }
  }
  /* every f16 value exactly */
  for (int64_t i = 0; i < 65536; i++) h[i] = (uint16_t)i;
  for (int l = 0; l < nlevels; l++) {
    levels[l].kernels->to_f32(got, h, MN_F16, 65536);
    for (int64_t i = 0; i < 65536; i++) {
      float e = f16v((uint16_t)i);
      if (memcmp(&e, got + i, 4) != 0 && !(isnan(e) && isnan(got[i]))) {
        failures++;
        printf("FAIL to_f32 f16 %04llx [%s]: %g\n", (long long)i, levels[l].name, got[i]);
        break;
      }
    }
  }
  printf("to_f32: ok\n");
  free(h), free(want), free(got);
}

/* ---- matmul ------------------------------------------------------------------------------------------------- */

static float mm_scratch[MN_MM_SCRATCH];

/* runs m on kernels kk split into tasks of rb rows x pb panels (0: one task); odd rb: without the GEMM scratch */
static void run_matmul(const mn_kernels *kk, const mn_matmul *m, int64_t rb, int64_t pb, int q8a) {
  int64_t P = (m->n + 15) / 16;
  if (rb <= 0) rb = m->rows;
  if (pb <= 0) pb = P;
  for (int64_t r = 0; r < m->rows; r += rb)
    for (int64_t p = 0; p < P; p += pb) {
      int64_t r1 = r + rb < m->rows ? r + rb : m->rows, p1 = p + pb < P ? p + pb : P;
      (q8a ? kk->matmul_q8a : kk->matmul)(m, r, r1, p, p1, rb % 2 ? NULL : mm_scratch);
    }
}

static void check_matmul_levels(const char *label, mn_matmul *m, int q8a, const double *ref, const double *tol) {
  int64_t ny = m->rows * m->n;
  float *want = malloc((size_t)(ny + 1) * 4);
  float *y0 = m->y;
  m->y = want;
  run_matmul(&mn_kernels_scalar, m, 0, 0, q8a);
  hash_floats(want, ny);
  if (ref) expect_close(label, want, ref, tol, ny);
  float *got = malloc((size_t)(ny + 1) * 4);
  m->y = got;
  const int64_t splits[][2] = {{0, 0}, {1, 1}, {3, 2}, {5, 1}, {2, 3}, {1000, 0}, {1001, 0}, {4, 1}};
  for (int l = 0; l < nlevels; l++)
    for (int s = 0; s < 8; s++) {
      for (int64_t i = 0; i < ny; i++) got[i] = NAN;
      run_matmul(levels[l].kernels, m, splits[s][0], splits[s][1], q8a);
      expect_same(label, levels[l].name, got, want, ny);
    }
  /* row invariance: each row alone */
  for (int64_t r = 0; r < m->rows; r++) {
    mn_matmul one = *m;
    one.rows = 1;
    one.x = m->x + r * m->ldx;
    one.y = got;
    if (q8a) {
      one.xq = m->xq + r * m->k;
      one.xd = m->xd + r * (m->k / 32);
      one.xg = m->xg + r * (m->k / m->group);
    }
    for (int l = 0; l < nlevels; l++) {
      run_matmul(levels[l].kernels, &one, 0, 0, q8a);
      expect_same(label, levels[l].name, got, want + r * m->n, m->n);
    }
  }
  m->y = y0;
  free(want), free(got);
}

static void test_dense(void) {
  const int64_t shapes[][3] = {{1, 1, 1}, {1, 7, 3}, {2, 16, 5}, {3, 33, 17}, {1, 64, 40}, {5, 100, 9},
                               {4, 257, 6}, {7, 8, 1}, {16, 19, 23}, {9, 64, 70}, {1, 128, 96}, {6, 40, 33},
                               {19, 1100, 37}, {12, 513, 64}};
  int count = 0;
  for (int d = MN_F32; d <= MN_BF16; d++)
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
      int64_t rows = shapes[s][0], K = shapes[s][1], N = shapes[s][2];
      float *x = malloc(rows * K * 4), *wv = malloc(N * K * 4), *bias = malloc(N * 4);
      int wide = (s % 2) == 1;
      if (wide) fill_wide(x, rows * K, 6); else fill(x, rows * K, 1.0f);
      fill(bias, N, 2.0f);
      int es = d == MN_F32 ? 4 : 2;
      void *w = malloc(N * K * es);
      for (int64_t i = 0; i < N * K; i++) {
        float v = rndf(0.5f);
        if (d == MN_F32) ((float *)w)[i] = wv[i] = v;
        else if (d == MN_F16) wv[i] = f16v(((uint16_t *)w)[i] = f32_to_f16(v));
        else wv[i] = bf16v(((uint16_t *)w)[i] = f32_to_bf16(v));
      }
      void *panel = malloc(mn_dense_panel_bytes(N, K, es));
      mn_pack_dense(panel, w, N, K, es);
      /* round trip of the layout */
      void *back = malloc(N * K * es);
      mn_unpack_dense(back, panel, N, K, es);
      if (memcmp(back, w, N * K * es) != 0) {
        failures++;
        printf("FAIL dense pack/unpack\n");
      }
      double *ref = malloc(rows * N * 8), *tol = malloc(rows * N * 8);
      for (int64_t r = 0; r < rows; r++)
        for (int64_t o = 0; o < N; o++) {
          double acc = 0, mag = 0;
          for (int64_t k = 0; k < K; k++) {
            acc += (double)x[r * K + k] * wv[o * K + k];
            mag += fabs((double)x[r * K + k] * wv[o * K + k]);
          }
          int hb = (s % 3) == 0;
          ref[r * N + o] = acc + (hb ? bias[o] : 0);
          tol[r * N + o] = (K + 8) * U * (mag + (hb ? fabs(bias[o]) : 0)) + 1e-30;
        }
      mn_matmul m = {0};
      m.x = x;
      m.bias = (s % 3) == 0 ? bias : NULL;
      m.rows = rows, m.k = K, m.n = N, m.ldx = K, m.ldy = N;
      m.quant = 0, m.dtype = d, m.w = panel;
      check_matmul_levels("matmul dense", &m, 0, ref, tol);
      count++;
      /* embedding rows from the panel: exact */
      float *row = malloc(K * 4 + 4);
      for (int l = -1; l < nlevels; l++) {
        const mn_kernels *kk = l < 0 ? &mn_kernels_scalar : levels[l].kernels;
        for (int64_t o = 0; o < N; o++) {
          kk->embed(row, &m, o);
          if (memcmp(row, wv + o * K, K * 4) != 0) {
            failures++;
            printf("FAIL embed dense row %lld\n", (long long)o);
            break;
          }
        }
      }
      free(row), free(x), free(wv), free(bias), free(w), free(panel), free(back), free(ref), free(tol);
    }
  printf("matmul dense: %d shapes x 3 dtypes ok\n", count / 3);
}

/* packed codes of a row: element k at bit bits*k of the row's stream */
static void put_code(uint32_t *row, int bits, int64_t k, uint32_t q) {
  int64_t bit = bits * k, w = bit >> 5;
  int sh = (int)(bit & 31);
  row[w] |= q << sh;
  if (sh + bits > 32) row[w + 1] |= q >> (32 - sh);
}

typedef struct {
  int64_t rows, K, N;
  int bits, group, sd;
  uint32_t *codes; /* row-major MLX */
  void *scales, *biases;
  float *wv;       /* dequantized (fma(s, q, b)) */
  float *absw;     /* |s| q + |b| */
  uint32_t *pcodes;
  void *pscales, *pbiases;
} qweight;

static void make_qweight(qweight *q, int64_t N, int64_t K, int bits, int group, int sd) {
  q->N = N, q->K = K, q->bits = bits, q->group = group, q->sd = sd;
  int64_t words = K * bits / 32, G = K / group;
  int es = sd == MN_F32 ? 4 : 2;
  q->codes = calloc(N * words + 1, 4);
  q->scales = malloc(N * G * es);
  q->biases = malloc(N * G * es);
  q->wv = malloc(N * K * 4);
  q->absw = malloc(N * K * 4);
  for (int64_t o = 0; o < N; o++) {
    for (int64_t g = 0; g < G; g++) {
      float s = rndf(0.05f), b = rndf(0.2f);
      if (sd == MN_F32) ((float *)q->scales)[o * G + g] = s, ((float *)q->biases)[o * G + g] = b;
      else if (sd == MN_F16) ((uint16_t *)q->scales)[o * G + g] = f32_to_f16(s), ((uint16_t *)q->biases)[o * G + g] = f32_to_f16(b);
      else ((uint16_t *)q->scales)[o * G + g] = f32_to_bf16(s), ((uint16_t *)q->biases)[o * G + g] = f32_to_bf16(b);
    }
    for (int64_t k = 0; k < K; k++) {
      uint32_t c = rnd() & ((1u << bits) - 1);
      if (k == 0) c = (1u << bits) - 1;
      put_code(q->codes + o * words, bits, k, c);
      int64_t g = k / group;
      float s, b;
      if (sd == MN_F32) s = ((float *)q->scales)[o * G + g], b = ((float *)q->biases)[o * G + g];
      else if (sd == MN_F16) s = f16v(((uint16_t *)q->scales)[o * G + g]), b = f16v(((uint16_t *)q->biases)[o * G + g]);
      else s = bf16v(((uint16_t *)q->scales)[o * G + g]), b = bf16v(((uint16_t *)q->biases)[o * G + g]);
      q->wv[o * K + k] = fmaf(s, (float)c, b);
      q->absw[o * K + k] = fabsf(s) * c + fabsf(b);
    }
  }
  q->pcodes = malloc(mn_codes_panel_bytes(N, K, bits));
  mn_pack_codes(q->pcodes, q->codes, N, K, bits);
  uint32_t *back = calloc(N * words + 1, 4);
  mn_unpack_codes(back, q->pcodes, N, K, bits);
  if (memcmp(back, q->codes, N * words * 4) != 0) {
    failures++;
    printf("FAIL codes pack/unpack bits %d\n", bits);
  }
  free(back);
  q->pscales = malloc(mn_dense_panel_bytes(N, G, es));
  q->pbiases = malloc(mn_dense_panel_bytes(N, G, es));
  mn_pack_dense(q->pscales, q->scales, N, G, es);
  mn_pack_dense(q->pbiases, q->biases, N, G, es);
}

static void free_qweight(qweight *q) {
  free(q->codes), free(q->scales), free(q->biases), free(q->wv), free(q->absw), free(q->pcodes), free(q->pscales),
      free(q->pbiases);
}

static void set_qmatmul(mn_matmul *m, const qweight *q) {
  m->quant = 1, m->bits = q->bits, m->group = q->group, m->sdtype = q->sd;
  m->w = q->pcodes, m->scales = q->pscales, m->biases = q->pbiases;
  m->k = q->K, m->n = q->N;
}

static void test_quant(void) {
  const int bitss[] = {2, 3, 4, 5, 6, 8};
  /* groups of 16: the GGML K-quants with 2, 3 and 6 bits (f32 scales) */
  const int groups[] = {32, 64, 128, 16};
  int count = 0;
  for (int bi = 0; bi < 6; bi++)
    for (int gi = 0; gi < 4; gi++)
      for (int sd = 0; sd < 3; sd++) {
        int bits = bitss[bi], group = groups[gi];
        if (group == 16 && (sd != MN_F32 || !(bits == 2 || bits == 3 || bits == 6))) continue;
        const int64_t shapes[][3] = {{1, 1, 5}, {3, 2, 3}, {2, 3, 1}, {7, 2, 37}, {1, 4, 70}, {13, 10, 35}};
        for (int s = 0; s < 6; s++) {
          if (s == 5 && (gi != 1 || sd != 1)) continue; /* one long case per bit width */
          int64_t rows = shapes[s][0], K = shapes[s][1] * (group < 32 ? 32 : group), N = shapes[s][2];
          qweight q;
          make_qweight(&q, N, K, bits, group, sd);
          float *x = malloc(rows * K * 4), *bias = malloc(N * 4);
          fill(x, rows * K, 1.0f);
          fill(bias, N, 1.0f);
          double *ref = malloc(rows * N * 8), *tol = malloc(rows * N * 8);
          for (int64_t r = 0; r < rows; r++)
            for (int64_t o = 0; o < N; o++) {
              double acc = 0, mag = 0;
              for (int64_t k = 0; k < K; k++) {
                acc += (double)x[r * K + k] * q.wv[o * K + k];
                mag += fabs((double)x[r * K + k]) * q.absw[o * K + k];
              }
              ref[r * N + o] = acc + (s & 1 ? bias[o] : 0);
              tol[r * N + o] = (K + 8) * U * (mag + (s & 1 ? fabs(bias[o]) : 0)) + 1e-30;
            }
          mn_matmul m = {0};
          m.x = x, m.rows = rows, m.ldx = K, m.ldy = N, m.bias = s & 1 ? bias : NULL;
          set_qmatmul(&m, &q);
          char label[64];
          snprintf(label, sizeof label, "matmul q%d g%d sd%d", bits, group, sd);
          check_matmul_levels(label, &m, 0, ref, tol);
          /* embedding rows */
          float *row = malloc(K * 4);
          for (int l = -1; l < nlevels; l++) {
            const mn_kernels *kk = l < 0 ? &mn_kernels_scalar : levels[l].kernels;
            for (int64_t o = 0; o < N; o++) {
              kk->embed(row, &m, o);
              if (memcmp(row, q.wv + o * K, K * 4) != 0) {
                failures++;
                printf("FAIL embed %s row %lld\n", label, (long long)o);
                break;
              }
            }
          }
          if (s == 0) hash_floats(q.wv, N * K);
          /* int8 activations */
          if ((bits == 4 || bits == 8) && group >= 32) {
            int64_t blocks = K / 32, G = K / group;
            int8_t *xq = malloc(rows * K);
            float *xd = malloc(rows * blocks * 4), *xg = malloc(rows * G * 4);
            if (s == 2) x[5] = 0, memset(x + 32, 0, 32 * 4); /* an all-zero block */
            mn_quantize_rows(xq, xd, xg, x, rows, K, K, bits, group);
            /* reference on the rounded activations q * d */
            for (int64_t r = 0; r < rows; r++)
              for (int64_t o = 0; o < N; o++) {
                double acc = 0, mag = 0;
                for (int64_t k = 0; k < K; k++) {
                  int64_t b = k / 32, pos = k % 32, src = k;
                  if (bits == 4) {
                    int64_t w8 = pos / 8, j = pos % 8;
                    src = b * 32 + w8 * 8 + (j % 2 == 0 ? j / 2 : 4 + j / 2);
                  }
                  double xr = (double)xq[r * K + src] * xd[r * blocks + b];
                  acc += xr * q.wv[o * K + k];
                  mag += fabs(xr) * q.absw[o * K + k];
                }
                ref[r * N + o] = acc + (s & 1 ? bias[o] : 0);
                tol[r * N + o] = (K + 8) * U * (mag + (s & 1 ? fabs(bias[o]) : 0)) + 1e-30;
              }
            m.xq = xq, m.xd = xd, m.xg = xg;
            snprintf(label, sizeof label, "matmul q8a q%d g%d sd%d", bits, group, sd);
            check_matmul_levels(label, &m, 1, ref, tol);
            free(xq), free(xd), free(xg);
          }
          free(row), free(x), free(bias), free(ref), free(tol);
          free_qweight(&q);
          count++;
        }
      }
  printf("matmul quantized: %d cases ok (exact and int8 activations)\n", count);
}

/* ---- row ops ------------------------------------------------------------------------------------------------ */
static void test_rowops(void) {
  const int64_t shapes[][2] = {{1, 1}, {1, 7}, {3, 64}, {2, 1000}, {5, 13}, {4, 33}, {2, 4096}};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    int64_t rows = shapes[s][0], n = shapes[s][1], t = rows * n;
    float *a = malloc(t * 4), *b = malloc(t * 4), *w = malloc(n * 4), *want = malloc(t * 4), *got = malloc(t * 4);
    fill_wide(a, t, 5);
    fill(b, t, 10.0f);
    fill(w, n, 2.0f);
    if (t > 8) b[1] = 100, b[2] = -100, b[3] = 88.5f, b[4] = -88.5f, b[5] = -104, b[6] = 0, b[7] = -0.0f;
    /* add */
    mn_kernels_scalar.add(want, a, b, t);
    hash_floats(want, t);
    for (int l = 0; l < nlevels; l++) {
      levels[l].kernels->add(got, a, b, t);
      expect_same("add", levels[l].name, got, want, t);
    }
    /* swiglu (gate b, up a) */
    mn_kernels_scalar.swiglu(want, b, a, t);
    hash_floats(want, t);
    for (int64_t i = 0; i < t; i++) {
      double e = (double)b[i] / (1 + exp(-(double)b[i])) * a[i];
      if (fabs(want[i] - e) > 8 * U * fabs(e) + 1e-30) {
        failures++;
        printf("FAIL swiglu %g %g: %g vs %g\n", b[i], a[i], want[i], e);
        break;
      }
    }
    for (int l = 0; l < nlevels; l++) {
      levels[l].kernels->swiglu(got, b, a, t);
      expect_same("swiglu", levels[l].name, got, want, t);
      memcpy(got, b, t * 4);
      levels[l].kernels->swiglu(got, got, a, t);
      expect_same("swiglu in place", levels[l].name, got, want, t);
    }
    /* geluGlu (gate b, up a) */
    mn_kernels_scalar.gelu_glu(want, b, a, t);
    hash_floats(want, t);
    for (int64_t i = 0; i < t; i++) {
      double g = b[i], u = sqrt(2 / M_PI) * (g + 0.044715 * g * g * g);
      double e = g / (1 + exp(-2 * u)) * a[i];
      double tol = (1.0 / 65536 + 1.0 / 2097152 + fabs(2 * u) / (1 + exp(2 * u)) / 2097152) * fabs(e) + 1e-30;
      if (fabs(want[i] - e) > tol) {
        failures++;
        printf("FAIL geluGlu %g %g: %g vs %g\n", b[i], a[i], want[i], e);
        break;
      }
    }
    for (int l = 0; l < nlevels; l++) {
      levels[l].kernels->gelu_glu(got, b, a, t);
      expect_same("geluGlu", levels[l].name, got, want, t);
    }
    /* softcap (of b, cap 10) and scale (of a by 0.3) */
    memcpy(want, b, t * 4);
    mn_kernels_scalar.softcap(want, t, 10.0f);
    hash_floats(want, t);
    for (int64_t i = 0; i < t; i++) {
      double e = 10.0 * tanh(b[i] / 10.0);
      if (fabs(want[i] - e) > (1.0 / 65536 + 1.0 / 2097152) * fabs(e) + 1e-30) {
        failures++;
        printf("FAIL softcap %g: %g vs %g\n", b[i], want[i], e);
        break;
      }
    }
    for (int l = 0; l < nlevels; l++) {
      memcpy(got, b, t * 4);
      levels[l].kernels->softcap(got, t, 10.0f);
      expect_same("softcap", levels[l].name, got, want, t);
    }
    mn_kernels_scalar.scale(want, a, t, 0.3f);
    for (int64_t i = 0; i < t; i++)
      if (want[i] != a[i] * 0.3f) {
        failures++;
        printf("FAIL scale\n");
        break;
      }
    for (int l = 0; l < nlevels; l++) {
      levels[l].kernels->scale(got, a, t, 0.3f);
      expect_same("scale", levels[l].name, got, want, t);
    }
    /* rmsnorm */
    if (rows > 1) memset(a + n, 0, n * 4);
    mn_kernels_scalar.rmsnorm(want, a, w, rows, n, 1e-5f);
    hash_floats(want, t);
    for (int64_t r = 0; r < rows; r++) {
      double ss = 0;
      for (int64_t i = 0; i < n; i++) ss += (double)a[r * n + i] * a[r * n + i];
      double inv = 1 / sqrt(ss / n + 1e-5);
      for (int64_t i = 0; i < n; i++) {
        double e = a[r * n + i] * inv * w[i];
        if (fabs(want[r * n + i] - e) > (n + 16) * U * fabs(e) + 1e-30) {
          failures++;
          printf("FAIL rmsnorm\n");
          r = rows;
          break;
        }
      }
    }
    for (int l = 0; l < nlevels; l++) {
      levels[l].kernels->rmsnorm(got, a, w, rows, n, 1e-5f);
      expect_same("rmsnorm", levels[l].name, got, want, t);
      memcpy(got, a, t * 4);
      levels[l].kernels->rmsnorm(got, got, w, rows, n, 1e-5f);
      expect_same("rmsnorm in place", levels[l].name, got, want, t);
    }
    /* softmax */
    float *sx = malloc(t * 4);
    fill(sx, t, s % 2 ? 50.0f : 5.0f);
    if (n > 2) sx[1] = -INFINITY;
    memcpy(want, sx, t * 4);
    mn_kernels_scalar.softmax(want, rows, n);
    hash_floats(want, t);
    for (int64_t r = 0; r < rows; r++) {
      double mx = -INFINITY, sum = 0;
      for (int64_t i = 0; i < n; i++) mx = fmax(mx, sx[r * n + i]);
      for (int64_t i = 0; i < n; i++) sum += exp(sx[r * n + i] - mx);
      for (int64_t i = 0; i < n; i++) {
        double e = exp(sx[r * n + i] - mx) / sum;
        if (fabs(want[r * n + i] - e) > (2 * n + 200) * U * e + 1e-30) {
          failures++;
          printf("FAIL softmax %lld %lld: %g vs %g\n", (long long)r, (long long)i, want[r * n + i], e);
          r = rows;
          break;
        }
      }
    }
    for (int l = 0; l < nlevels; l++) {
      memcpy(got, sx, t * 4);
      levels[l].kernels->softmax(got, rows, n);
      expect_same("softmax", levels[l].name, got, want, t);
    }
    /* argmax */
    if (n > 4) sx[2] = 1e9f, sx[n - 1] = 1e9f;
    int64_t am = mn_kernels_scalar.argmax(sx, n);
    for (int l = 0; l < nlevels; l++)
      if (levels[l].kernels->argmax(sx, n) != am) {
        failures++;
        printf("FAIL argmax [%s]\n", levels[l].name);
      }
    if (n > 4 && am != 2) {
      failures++;
      printf("FAIL argmax tie: %lld\n", (long long)am);
    }
    free(a), free(b), free(w), free(want), free(got), free(sx);
  }
  /* rope */
  const int64_t rs[][4] = {{1, 1, 2, 2}, {3, 2, 8, 8}, {2, 3, 64, 64}, {4, 2, 16, 8}, {2, 1, 6, 2}, {5, 4, 12, 12}, {1, 8, 128, 128}};
  for (size_t s = 0; s < sizeof rs / sizeof rs[0]; s++) {
    int64_t rows = rs[s][0], nh = rs[s][1], hd = rs[s][2], half = rs[s][3] / 2, t = rows * nh * hd;
    float *x = malloc(t * 4), *c = malloc(rows * half * 4), *sn = malloc(rows * half * 4), *want = malloc(t * 4),
          *got = malloc(t * 4);
    fill(x, t, 4.0f);
    for (int64_t i = 0; i < rows * half; i++) {
      c[i] = rndf(1.0f);
      sn[i] = rndf(1.0f);
    }
    for (int layout = 0; layout < 2; layout++) {
      memcpy(want, x, t * 4);
      mn_kernels_scalar.rope(want, c, sn, rows, nh, hd, half, layout);
      hash_floats(want, t);
      for (int l = 0; l < nlevels; l++) {
        memcpy(got, x, t * 4);
        levels[l].kernels->rope(got, c, sn, rows, nh, hd, half, layout);
        expect_same("rope", levels[l].name, got, want, t);
      }
    }
    free(x), free(c), free(sn), free(want), free(got);
  }
  printf("add, swiglu, geluGlu, softcap, scale, rmsnorm, softmax, argmax, rope: ok\n");
}

/* ---- attention ---------------------------------------------------------------------------------------------- */
static void attention_ref(const mn_attention *a, double *out, double *tol) {
  int64_t G = a->nheads / a->nkv, ldq = a->nheads * a->hd, ldkv = a->nkv * a->hd;
  double *w = malloc((a->start + a->rows) * 8);
  for (int64_t r = 0; r < a->rows; r++) {
    int64_t p = a->start + r, lo = a->window > 0 && p - a->window + 1 > 0 ? p - a->window + 1 : 0;
    for (int64_t h = 0; h < a->nheads; h++) {
      int64_t kvh = h / G;
      double mx = -INFINITY, sum = 0;
      for (int64_t j = lo; j <= p; j++) {
        double d = 0;
        for (int64_t i = 0; i < a->hd; i++) d += (double)a->q[r * ldq + h * a->hd + i] * ((const float *)a->k.data)[j * ldkv + kvh * a->hd + i];
        w[j] = d * a->scale;
        if (a->softcap > 0) w[j] = a->softcap * tanh(w[j] / a->softcap);
        if (w[j] > mx) mx = w[j];
      }
      for (int64_t j = lo; j <= p; j++) sum += (w[j] = exp(w[j] - mx));
      for (int64_t i = 0; i < a->hd; i++) {
        double acc = 0, mag = 0;
        for (int64_t j = lo; j <= p; j++) {
          acc += w[j] * ((const float *)a->v.data)[j * ldkv + kvh * a->hd + i];
          mag += w[j] * fabs(((const float *)a->v.data)[j * ldkv + kvh * a->hd + i]);
        }
        out[r * ldq + h * a->hd + i] = acc / sum;
        tol[r * ldq + h * a->hd + i] = (4 * a->hd + 2 * (p - lo) + 100) * U * 8 * mag / sum + 1e-30;
      }
    }
  }
  free(w);
}

static void test_attention(void) {
  /* heads, kv heads, head size, rows, start, window */
  const int64_t cs[][6] = {{2, 2, 8, 1, 0, 0},   {4, 2, 16, 5, 0, 0},   {8, 2, 8, 3, 7, 0},    {4, 1, 12, 4, 9, 3},
                           {4, 4, 8, 6, 2, 4},   {8, 2, 16, 1, 20, 8},  {2, 1, 64, 2, 30, 0},  {6, 3, 5, 7, 1, 0},
                           {4, 2, 32, 3, 4, 1},  {8, 4, 64, 1, 700, 0}, {6, 3, 36, 40, 300, 100}, {4, 4, 20, 33, 0, 0},
                           {32, 8, 64, 2, 100, 0},  {8, 2, 128, 3, 50, 0},  {8, 4, 64, 19, 40, 24},
                           {8, 4, 16, 20, 30, 0},  {4, 2, 32, 3, 40, 16}, {4, 2, 64, 5, 60, 0}};
  for (size_t s = 0; s < sizeof cs / sizeof cs[0]; s++) {
    mn_attention a = {0};
    a.nheads = cs[s][0], a.nkv = cs[s][1], a.hd = cs[s][2], a.rows = cs[s][3], a.start = cs[s][4], a.window = cs[s][5];
    a.scale = 1.0f / sqrtf((float)a.hd);
    a.softcap = s >= 15 ? 2.0f : 0.0f; /* the last cases soft-capped (scores from q, k up to 4 to make it bite) */
    int64_t cap = a.start + a.rows + 5, ldq = a.nheads * a.hd, ldkv = a.nkv * a.hd, G = a.nheads / a.nkv;
    float *q = malloc(a.rows * ldq * 4), *k = malloc(cap * ldkv * 4), *v = malloc(cap * ldkv * 4);
    fill(q, a.rows * ldq, a.softcap > 0 ? 4.0f : 1.0f);
    fill(k, cap * ldkv, a.softcap > 0 ? 4.0f : 1.0f);
    fill(v, cap * ldkv, 1.0f);
    /* garbage the rows no query may read */
    for (int64_t i = (a.start + a.rows) * ldkv; i < cap * ldkv; i++) k[i] = v[i] = NAN;
    a.q = q, a.cap = cap;
    a.k.fmt = a.v.fmt = MN_KV_F32, a.k.data = k, a.v.data = v;
    float *want = malloc(a.rows * ldq * 4), *got = malloc(a.rows * ldq * 4);
    float *scratch = malloc(MN_ATTN_SCRATCH(G, a.hd) * 4);
    a.out = want;
    for (int64_t h = 0; h < a.nkv; h++) mn_kernels_scalar.attention(&a, h, 0, a.rows, scratch);
    hash_floats(want, a.rows * ldq);
    double *ref = malloc(a.rows * ldq * 8), *tol = malloc(a.rows * ldq * 8);
    attention_ref(&a, ref, tol);
    expect_close("attention", want, ref, tol, a.rows * ldq);
    a.out = got;
    for (int l = 0; l < nlevels; l++) {
      for (int64_t i = 0; i < a.rows * ldq; i++) got[i] = NAN;
      /* any split of rows and heads */
      for (int64_t h = a.nkv - 1; h >= 0; h--)
        for (int64_t r = 0; r < a.rows; r += 3) levels[l].kernels->attention(&a, h, r, r + 3 < a.rows ? r + 3 : a.rows, scratch);
      expect_same("attention", levels[l].name, got, want, a.rows * ldq);
    }
    /* one row at a time (decode) = all rows (prefill) */
    for (int64_t r = 0; r < a.rows; r++) {
      mn_attention one = a;
      one.rows = 1, one.start = a.start + r, one.q = q + r * ldq, one.out = got;
      for (int64_t h = 0; h < a.nkv; h++) mn_kernels_scalar.attention(&one, h, 0, 1, scratch);
      expect_same("attention row alone", "scalar", got, want + r * ldq, ldq);
    }
    free(q), free(k), free(v), free(want), free(got), free(scratch), free(ref), free(tol);
  }
  printf("attention: ok\n");
}

int main(int argc, char **argv) {
  mn_level all[8];
  int n = mn_levels(all, 8);
  for (int i = 1; i < n; i++) { /* index 0 is scalar itself */
    if (argc > 1) {
      int want = 0;
      for (int a = 1; a < argc; a++) want |= strcmp(argv[a], all[i].name) == 0;
      if (!want) continue;
      if (!all[i].supported) {
        printf("level %s is not supported by this CPU\n", all[i].name);
        return 2;
      }
    }
    if (all[i].supported) levels[nlevels++] = all[i];
  }
  printf("levels compared with scalar:");
  for (int i = 0; i < nlevels; i++) printf(" %s", levels[i].name);
  printf("\n");
  test_exp();
  test_to_f32();
  test_dense();
  test_quant();
  test_rowops();
  test_attention();
  printf("hash %016llx\n", (unsigned long long)hash);
  if (failures) {
    printf("%d failures\n", failures);
    return 1;
  }
  printf("all ok\n");
  return 0;
}
