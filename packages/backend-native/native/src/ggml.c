/*
 * GGML block weights (the formats of GGUF files, documented in @mnemo/tensor's ggml.ts): decoded at upload into the
 * affine panel layout the matmul kernels already read. Every GGML element is exactly `s · c + b` with an unsigned
 * code c (2–8 bits) and the f32 scale s and offset b of its sub-block (16 or 32 elements), all exact in f32; the panel
 * stores c packed as MLX codes and s, b as f32 panels, so a weight element is fma(s, c, b) — one rounding, the same
 * rule as for MLX weights. Compiled once (baseline ISA): byte and integer work only, plus exact f32 products.
 */
#include "mn.h"

int mn_ggml_info(int type, mn_ggml_type *t) {
  /* id, block elements, block bytes, code bits, sub-block (group) size */
  static const mn_ggml_type all[] = {
      {MN_GGML_Q4_0, 32, 18, 4, 32},   {MN_GGML_Q4_1, 32, 20, 4, 32},   {MN_GGML_Q5_0, 32, 22, 5, 32},
      {MN_GGML_Q5_1, 32, 24, 5, 32},   {MN_GGML_Q8_0, 32, 34, 8, 32},   {MN_GGML_Q2_K, 256, 84, 2, 16},
      {MN_GGML_Q3_K, 256, 110, 3, 16}, {MN_GGML_Q4_K, 256, 144, 4, 32}, {MN_GGML_Q5_K, 256, 176, 5, 32},
      {MN_GGML_Q6_K, 256, 210, 6, 16},
  };
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
    if (all[i].id == type) {
      *t = all[i];
      return 1;
    }
  return 0;
}

static int64_t align64(int64_t n) { return (n + 63) & ~(int64_t)63; }

int64_t mn_ggml_panel_bytes(const mn_ggml_type *t, int64_t rows, int64_t cols, int64_t *off_s, int64_t *off_b) {
  int64_t codes = align64(mn_codes_panel_bytes(rows, cols, t->bits));
  int64_t sb = align64(mn_dense_panel_bytes(rows, cols / t->group, 4));
  if (off_s) *off_s = codes;
  if (off_b) *off_b = codes + sb;
  return codes + 2 * sb;
}

static float f16at(const uint8_t *p) { return mn_f16_to_f32((uint16_t)(p[0] | (p[1] << 8))); }

/* Codes (one byte per element), scales and offsets (one per sub-block) of one block. */
static void decode_block(int type, const uint8_t *u, uint8_t *codes, float *s, float *o) {
  switch (type) {
    case MN_GGML_Q4_0:
    case MN_GGML_Q4_1:
    case MN_GGML_Q5_0:
    case MN_GGML_Q5_1: {
      const int five = type == MN_GGML_Q5_0 || type == MN_GGML_Q5_1;
      const int one = type == MN_GGML_Q4_1 || type == MN_GGML_Q5_1;
      const int qs = (one ? 4 : 2) + (five ? 4 : 0);
      uint32_t qh = five ? (uint32_t)u[qs - 4] | (uint32_t)u[qs - 3] << 8 | (uint32_t)u[qs - 2] << 16 |
                               (uint32_t)u[qs - 1] << 24
                         : 0;
      for (int j = 0; j < 16; j++) {
        codes[j] = (uint8_t)((u[qs + j] & 15) | (five ? ((qh >> j) & 1) << 4 : 0));
        codes[j + 16] = (uint8_t)((u[qs + j] >> 4) | (five ? ((qh >> (j + 16)) & 1) << 4 : 0));
      }
      float d = f16at(u);
      s[0] = d;
      o[0] = one ? f16at(u + 2) : (five ? -16.0f : -8.0f) * d;
      return;
    }
    case MN_GGML_Q8_0: {
      for (int j = 0; j < 32; j++) codes[j] = (uint8_t)(u[2 + j] ^ 0x80);
      float d = f16at(u);
      s[0] = d;
      o[0] = -128.0f * d;
      return;
    }
    case MN_GGML_Q2_K: {
      for (int n = 0; n < 2; n++)
        for (int j = 0; j < 4; j++)
          for (int h = 0; h < 2; h++)
            for (int l = 0; l < 16; l++)
              codes[128 * n + 32 * j + 16 * h + l] = (uint8_t)((u[16 + 32 * n + 16 * h + l] >> (2 * j)) & 3);
      float d = f16at(u + 80), dmin = f16at(u + 82);
      for (int i = 0; i < 16; i++) {
        s[i] = d * (float)(u[i] & 15);
        o[i] = -(dmin * (float)(u[i] >> 4));
      }
      return;
    }
    case MN_GGML_Q3_K: {
      for (int n = 0; n < 2; n++)
        for (int j = 0; j < 4; j++)
          for (int h = 0; h < 2; h++)
            for (int l = 0; l < 16; l++)
              codes[128 * n + 32 * j + 16 * h + l] =
                  (uint8_t)(((u[32 + 32 * n + 16 * h + l] >> (2 * j)) & 3) | (((u[16 * h + l] >> (4 * n + j)) & 1) << 2));
      float d = f16at(u + 108);
      for (int k = 0; k < 4; k++) {
        int hi = u[104 + k];
        int sc[4] = {
            (u[96 + k] & 15) | ((hi & 3) << 4),
            (u[100 + k] & 15) | (((hi >> 2) & 3) << 4),
            (u[96 + k] >> 4) | (((hi >> 4) & 3) << 4),
            (u[100 + k] >> 4) | ((hi >> 6) << 4),
        };
        for (int q = 0; q < 4; q++) {
          s[4 * q + k] = d * (float)(sc[q] - 32);
          o[4 * q + k] = -4.0f * s[4 * q + k];
        }
      }
      return;
    }
    case MN_GGML_Q4_K:
    case MN_GGML_Q5_K: {
      const int five = type == MN_GGML_Q5_K;
      const int qs = five ? 48 : 16;
      for (int j = 0; j < 4; j++)
        for (int l = 0; l < 32; l++) {
          int q = u[qs + 32 * j + l];
          int h = five ? u[16 + l] : 0;
          codes[64 * j + l] = (uint8_t)((q & 15) | (((h >> (2 * j)) & 1) << 4));
          codes[64 * j + 32 + l] = (uint8_t)((q >> 4) | (((h >> (2 * j + 1)) & 1) << 4));
        }
      float d = f16at(u), dmin = f16at(u + 2);
      for (int j = 0; j < 8; j++) {
        int sc = j < 4 ? u[4 + j] & 63 : (u[8 + j] & 15) | ((u[j] >> 6) << 4);
        int m = j < 4 ? u[8 + j] & 63 : (u[8 + j] >> 4) | ((u[4 + j] >> 6) << 4);
        s[j] = d * (float)sc;
        o[j] = -(dmin * (float)m);
      }
      return;
    }
    case MN_GGML_Q6_K: {
      for (int n = 0; n < 2; n++)
        for (int l = 0; l < 32; l++) {
          int h = u[128 + 32 * n + l], a = u[64 * n + l], c = u[64 * n + 32 + l];
          codes[128 * n + l] = (uint8_t)((a & 15) | ((h & 3) << 4));
          codes[128 * n + 32 + l] = (uint8_t)((c & 15) | (((h >> 2) & 3) << 4));
          codes[128 * n + 64 + l] = (uint8_t)((a >> 4) | (((h >> 4) & 3) << 4));
          codes[128 * n + 96 + l] = (uint8_t)((c >> 4) | (((h >> 6) & 3) << 4));
        }
      float d = f16at(u + 208);
      for (int i = 0; i < 16; i++) {
        s[i] = d * (float)(int8_t)u[192 + i];
        o[i] = -32.0f * s[i];
      }
      return;
    }
  }
}

/*
 * Rows r0..r1 of raw blocks (`src` holds exactly those rows) into the panel buffer `dst` (mn_ggml_panel_bytes). The
 * call that starts at row 0 zeroes the padding lanes of the last panel.
 */
void mn_ggml_pack_rows(uint8_t *dst, const uint8_t *src, const mn_ggml_type *t, int64_t rows, int64_t cols, int64_t r0,
                       int64_t r1) {
  int64_t off_s, off_b;
  mn_ggml_panel_bytes(t, rows, cols, &off_s, &off_b);
  const int B = t->bits;
  const int64_t words = (cols / 32) * B, groups = cols / t->group, nblocks = cols / t->block;
  const int64_t row_bytes = nblocks * t->block_bytes;
  uint32_t *codes = (uint32_t *)dst;
  float *sp = (float *)(dst + off_s), *bp = (float *)(dst + off_b);
  if (r0 == 0 && rows % 16) {
    int64_t p = rows / 16;
    memset(codes + p * words * 16, 0, (size_t)(words * 16 * 4));
    memset(sp + p * groups * 16, 0, (size_t)(groups * 16 * 4));
    memset(bp + p * groups * 16, 0, (size_t)(groups * 16 * 4));
  }
  uint8_t c[256];
  float s[16], o[16];
  const int per_block = t->block / t->group;
  for (int64_t r = r0; r < r1; r++) {
    const int64_t p = r / 16, l = r % 16;
    uint32_t *pc = codes + p * words * 16 + l;
    float *ps = sp + p * groups * 16 + l, *pb = bp + p * groups * 16 + l;
    const uint8_t *row = src + (r - r0) * row_bytes;
    for (int64_t b = 0; b < nblocks; b++) {
      decode_block(t->id, row + b * t->block_bytes, c, s, o);
      for (int g = 0; g < per_block; g++) {
        ps[(b * per_block + g) * 16] = s[g];
        pb[(b * per_block + g) * 16] = o[g];
      }
      /* element e of the row at bit B*e of its 32-element chunk's B words, least significant first */
      for (int ch = 0; ch < t->block / 32; ch++) {
        uint32_t w[8] = {0};
        for (int i = 0; i < 32; i++) {
          int bit = B * i, wd = bit >> 5, sh = bit & 31;
          uint32_t q = c[ch * 32 + i];
          w[wd] |= q << sh;
          if (sh + B > 32) w[wd + 1] |= q >> (32 - sh);
        }
        const int64_t chunk = b * (t->block / 32) + ch;
        for (int wd = 0; wd < B; wd++) pc[(chunk * B + wd) * 16] = w[wd];
      }
    }
  }
}
