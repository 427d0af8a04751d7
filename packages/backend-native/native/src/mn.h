/*
 * mnemo native backend: types shared by the kernels (compiled once per ISA level) and the glue (compiled once).
 *
 * The numerics contract ("native-f32") is written down in ../../README.md. In short: every kernel is a fixed
 * sequence of IEEE-754 binary32 operations (add, sub, mul, div, sqrt, fused multiply-add) on values that depend only
 * on the output element's own inputs; vector code works on a virtual vector of 16 lanes, and each ISA level (scalar,
 * AVX2, AVX-512, NEON) implements the same lane operations, so every level gives the same bits. The sources are
 * compiled with -ffp-contract=off: a multiply-add is fused only where the code says vf_fma / mn_fma.
 */
#ifndef MN_H
#define MN_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define MN_LANES 16
#define MN_AI static inline __attribute__((always_inline))

/* Exact f16 -> f32, subnormals included; a NaN keeps its payload with the quiet bit set (as F16C and NEON do). */
MN_AI float mn_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16;
  uint32_t e = (h >> 10) & 0x1f;
  uint32_t m = h & 0x3ff;
  uint32_t bits;
  if (e == 0x1f) {
    bits = sign | 0x7f800000u | (m << 13) | (m ? 0x400000u : 0);
  } else if (e != 0) {
    bits = sign | ((e + 112) << 23) | (m << 13);
  } else if (m == 0) {
    bits = sign;
  } else {
    int s = 0;
    while (!(m & 0x400)) {
      m <<= 1;
      s++;
    }
    bits = sign | ((uint32_t)(113 - s) << 23) | ((m & 0x3ff) << 13);
  }
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

/* Float storage types (dense weights, quantization scales). */
enum { MN_F32 = 0, MN_F16 = 1, MN_BF16 = 2 };

/* RoPE layouts. */
enum { MN_ROPE_HALF = 0, MN_ROPE_PAIR = 1 };

/*
 * Weight layouts.
 * Dense panel (MN_F32/F16/BF16, rows n, cols k): rows grouped 16 at a time ("panels"; the last one padded with
 * zeros); panel p holds, for k = 0..cols-1, the 16 elements w[16p + lane][k] (lane 0..15) back to back.
 * Affine panel (MLX affine quantization, bits b, group g): codes of panel p are cols/32 chunks of b * 16 uint32: chunk
 * c, word w, lane l holds word (c * b + w) of row 16p + l's MLX packed row (element 32c + i at bit b*i of the chunk's
 * b words, least significant first). Scales and biases of panel p: cols/g groups of 16 values (lane = row). Groups of
 * 16 (GGML K-quants) are allowed too: a 32-element chunk then has two groups.
 */
typedef struct mn_matmul {
  float *y;            /* [rows, n], row stride ldy */
  const float *x;      /* [rows, k], row stride ldx */
  const float *bias;   /* [n] or NULL */
  int64_t rows, k, n, ldx, ldy;
  int quant;           /* 0: dense panel of dtype `dtype`; 1: affine panel */
  int ggml;            /* the affine panel was decoded from GGML blocks (f32 scales, groups of 16 or 32) */
  int dtype;           /* dense weights: MN_F32 / MN_F16 / MN_BF16 */
  const void *w;       /* panels (dense values or affine codes) */
  int bits, group, sdtype;
  const void *scales, *biases;
  /* int8 activations (matmul_q8a): per row k int8 values (4-bit weights: each 8-block permuted as
     x0 x2 x4 x6 x1 x3 x5 x7), k/32 block scales d, k/group group sums X_g; row strides k, k/32, k/group. */
  const int8_t *xq;
  const float *xd;
  const float *xg;
} mn_matmul;

/*
 * One side of a KV cache as attention reads it: `cap` rows of nkv * hd values, stored as f32, f16 or MLX affine codes
 * (bits 4/8, f32 scales and biases per group along the row; value fl(fl(s * q) + b)). Position j sits in row
 * mn_kv_row(j, cap, keep).
 */
enum { MN_KV_F32 = 0, MN_KV_F16 = 1, MN_KV_AFFINE = 2 };
typedef struct mn_kv {
  int fmt;
  const void *data;              /* f32 / f16 values, or u32 packed codes; rows back to back */
  const float *scales, *biases;  /* MN_KV_AFFINE: [cap, width / group] */
  int bits, group;
} mn_kv;
MN_AI int64_t mn_kv_row(int64_t j, int64_t cap, int64_t keep) {
  return j < keep || j < cap ? j : keep + (j - keep) % (cap - keep);
}

typedef struct mn_attention {
  float *out;
  const float *q;
  mn_kv k, v;
  int64_t rows, start, nheads, nkv, hd, window, cap, keep;
  float scale;
  float softcap; /* 0: none */
} mn_attention;

/* KV rows written by writeKv: src rows r0..r1 ([rows, width] f32) into rows mn_kv_row(start + r) of dst. */
void mn_write_kv(const mn_kv *dst, const float *src, int64_t r0, int64_t r1, int64_t width, int64_t start,
                 int64_t cap, int64_t keep);

/* Prefill GEMM: panels and columns decoded into f32 scratch at a time, and the rows a matmul needs to use it. */
#define MN_GNV 2
#define MN_KC 512
#define MN_GEMM_MIN_ROWS 4
#define MN_MM_SCRATCH (MN_GNV * 16 * MN_KC)

/* Scratch floats one thread needs for attention with `group` query heads per kv head of size hd. */
#define MN_ATTN_SCRATCH(group, hd) (((group) + 18) * ((hd) + 16) + 18 * (group) + 16)

/* One ISA level's kernels. Ranges are [start, end). */
typedef struct mn_kernels {
  const char *name;
  void (*to_f32)(float *out, const void *src, int dtype, int64_t n);
  /* rows r0..r1 of y, panels p0..p1 (outputs 16*p0 .. min(16*p1, n)); scratch: MN_MM_SCRATCH floats or NULL */
  void (*matmul)(const mn_matmul *m, int64_t r0, int64_t r1, int64_t p0, int64_t p1, float *scratch);
  void (*matmul_q8a)(const mn_matmul *m, int64_t r0, int64_t r1, int64_t p0, int64_t p1, float *scratch);
  void (*rmsnorm)(float *out, const float *x, const float *w, int64_t rows, int64_t dim, float eps);
  void (*rope)(float *x, const float *cos, const float *sin, int64_t rows, int64_t nheads, int64_t hd,
               int64_t half, int layout);
  void (*swiglu)(float *out, const float *g, const float *u, int64_t n);
  void (*gelu_glu)(float *out, const float *g, const float *u, int64_t n);
  void (*softcap)(float *x, int64_t n, float cap);
  void (*scale)(float *out, const float *x, int64_t n, float s);
  void (*add)(float *out, const float *a, const float *b, int64_t n);
  void (*softmax)(float *x, int64_t rows, int64_t n);
  int64_t (*argmax)(const float *x, int64_t n);
  /* query rows r0..r1 of kv head kvh; scratch: MN_ATTN_SCRATCH floats */
  void (*attention)(const mn_attention *a, int64_t kvh, int64_t r0, int64_t r1, float *scratch);
  /* one row of a dense or affine panel weight (m->w etc.; m->k columns) as f32 */
  void (*embed)(float *out, const mn_matmul *m, int64_t row);
  /* exp and tanh of n values (tests) */
  void (*exp)(float *out, const float *x, int64_t n);
  void (*tanh)(float *out, const float *x, int64_t n);
} mn_kernels;

extern const mn_kernels mn_kernels_scalar;
#if defined(__x86_64__) || defined(_M_X64)
extern const mn_kernels mn_kernels_avx2;
extern const mn_kernels mn_kernels_avx512;
extern const mn_kernels mn_kernels_avx512vnni;
#endif
#if defined(__aarch64__)
extern const mn_kernels mn_kernels_neon;
extern const mn_kernels mn_kernels_dotprod;
#endif

/* ISA levels, lowest first. */
typedef struct mn_level {
  const char *name;
  const mn_kernels *kernels;
  int supported;
} mn_level;

/* Fills `out` (at most `max`) with this build's levels, lowest first, marking those the CPU runs; returns the count. */
int mn_levels(mn_level *out, int max);

/* Quantizes rows of x to int8 blocks of 32 for matmul_q8a (layout in mn_matmul). */
void mn_quantize_rows(int8_t *xq, float *xd, float *xg, const float *x, int64_t rows, int64_t k, int64_t ldx,
                      int bits, int group);

/* Layout conversions (byte moves only). */
int64_t mn_dense_panel_bytes(int64_t rows, int64_t cols, int esize);
void mn_pack_dense(void *dst, const void *src, int64_t rows, int64_t cols, int esize);
void mn_unpack_dense(void *dst, const void *src, int64_t rows, int64_t cols, int esize);
/* Rows r0..r1 only (src points at row r0 of the row-major matrix): for streaming uploads. */
void mn_pack_dense_rows(void *dst, const void *src, int64_t rows, int64_t cols, int esize, int64_t r0, int64_t r1);
int64_t mn_codes_panel_bytes(int64_t rows, int64_t cols, int bits);
void mn_pack_codes(uint32_t *dst, const uint32_t *src, int64_t rows, int64_t cols, int bits);
void mn_unpack_codes(uint32_t *dst, const uint32_t *src, int64_t rows, int64_t cols, int bits);
void mn_pack_codes_rows(uint32_t *dst, const uint32_t *src, int64_t rows, int64_t cols, int bits, int64_t r0,
                        int64_t r1);

/*
 * GGML block weights (GGUF type ids). Stored as a "GGML panel": the affine panel layout above with code bits `bits`,
 * f32 scales and offsets per sub-block of `group` (16 or 32) elements, in one buffer: codes at 0, scales at off_s,
 * offsets at off_b (mn_ggml_panel_bytes). See ggml.c.
 */
enum {
  MN_GGML_Q4_0 = 2,
  MN_GGML_Q4_1 = 3,
  MN_GGML_Q5_0 = 6,
  MN_GGML_Q5_1 = 7,
  MN_GGML_Q8_0 = 8,
  MN_GGML_Q2_K = 10,
  MN_GGML_Q3_K = 11,
  MN_GGML_Q4_K = 12,
  MN_GGML_Q5_K = 13,
  MN_GGML_Q6_K = 14,
};
typedef struct mn_ggml_type {
  int id, block, block_bytes, bits, group;
} mn_ggml_type;
/* 1 and *t filled for a known type id, else 0 */
int mn_ggml_info(int type, mn_ggml_type *t);
int64_t mn_ggml_panel_bytes(const mn_ggml_type *t, int64_t rows, int64_t cols, int64_t *off_s, int64_t *off_b);
void mn_ggml_pack_rows(uint8_t *dst, const uint8_t *src, const mn_ggml_type *t, int64_t rows, int64_t cols, int64_t r0,
                       int64_t r1);

#endif
