/*
 * Node-API glue of the native backend. `createContext(level, threads, spinNs)` returns an object whose methods work
 * on that context's buffers (handles: numbers) with that context's kernels and thread pool. The TypeScript backend
 * validates every op's tensors first; the glue still checks that every range it is given lies inside a live buffer
 * (a RangeError otherwise), so no call can touch memory outside the backend's own buffers.
 */
#define NAPI_VERSION 8
#include <errno.h>
#include <stdarg.h>
#include <node_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifndef _WIN32
#include <sys/mman.h>
#endif

#include "mn.h"
#include "pool.h"

#define MAX_BYTES ((int64_t)1 << 47)
#define INDEX_BITS 24
#define INDEX_MASK ((1 << INDEX_BITS) - 1)

/* Products of sizes, -1 when a factor is negative or the product exceeds MAX_BYTES (then `at` refuses it). */
static int64_t mul2(int64_t a, int64_t b) {
  int64_t r;
  if (a < 0 || b < 0 || __builtin_mul_overflow(a, b, &r) || r > MAX_BYTES) return -1;
  return r;
}
static int64_t mul3(int64_t a, int64_t b, int64_t c) { return mul2(mul2(a, b), c); }
static int64_t mul4(int64_t a, int64_t b, int64_t c, int64_t d) { return mul2(mul3(a, b, c), d); }
/* mn_*_panel_bytes with the same checks (rows rounded up to 16) */
static int64_t dense_panel_bytes(int64_t rows, int64_t cols, int64_t esize) {
  if (rows < 0 || rows > MAX_BYTES) return -1;
  return mul3((rows + 15) / 16 * 16, cols, esize);
}
static int64_t codes_panel_bytes(int64_t rows, int64_t cols, int64_t bits) {
  if (rows < 0 || rows > MAX_BYTES || cols < 0) return -1;
  return mul4((rows + 15) / 16 * 16, cols / 32, bits, 4);
}

/* mn_ggml_panel_bytes with the same checks; -1 for an unknown type or impossible sizes */
static int64_t ggml_panel_bytes(int64_t type, int64_t rows, int64_t cols, mn_ggml_type *t) {
  if (type < 0 || type > 64 || !mn_ggml_info((int)type, t)) return -1;
  if (rows < 0 || cols < 0 || cols % t->block || codes_panel_bytes(rows, cols, t->bits) < 0 ||
      dense_panel_bytes(rows, cols / t->group, 4) < 0)
    return -1;
  int64_t total = mn_ggml_panel_bytes(t, rows, cols, NULL, NULL);
  return total > MAX_BYTES ? -1 : total;
}
/* bytes of one row of raw blocks */
static int64_t ggml_row_bytes(const mn_ggml_type *t, int64_t cols) { return mul2(cols / t->block, t->block_bytes); }

typedef struct {
  uint8_t *p;
  int64_t size;
  uint32_t gen;
} buf;

typedef struct ctx {
  const mn_kernels *k;
  const char *level;
  mn_pool *pool;
  int threads;
  buf *bufs;
  int64_t nbufs, cap;
  int32_t *free_idx;
  int64_t nfree;
  int64_t bytes;
  int64_t reported; /* bytes told to V8 as external memory */
  /* scratch */
  float *attn;
  int64_t attn_floats; /* per thread */
  float *mm;           /* MN_MM_SCRATCH floats per thread */
  int8_t *xq;
  int64_t xq_bytes;
  int disposed;
  napi_env env;
} ctx;

/* ---- errors and arguments ------------------------------------------------------------------------------------ */

static napi_value throw_range(napi_env env, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static napi_value throw_range(napi_env env, const char *fmt, ...) {
  char msg[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  napi_throw_range_error(env, NULL, msg);
  return NULL;
}
static napi_value throw_type(napi_env env, const char *msg) {
  napi_throw_type_error(env, NULL, msg);
  return NULL;
}

/* An integer argument (a JS number holding a safe integer); sets *ok = 0 and throws otherwise. */
static int64_t arg_i(napi_env env, napi_value v, const char *op, int *ok) {
  double d;
  if (!*ok) return 0;
  if (napi_get_value_double(env, v, &d) != napi_ok || !(d == d) || d != (double)(int64_t)d ||
      d > 9007199254740991.0 || d < -9007199254740991.0) {
    char msg[128];
    snprintf(msg, sizeof msg, "native %s: expected an integer argument", op);
    napi_throw_type_error(env, NULL, msg);
    *ok = 0;
    return 0;
  }
  return (int64_t)d;
}
static double arg_f(napi_env env, napi_value v, const char *op, int *ok) {
  double d;
  if (!*ok) return 0;
  if (napi_get_value_double(env, v, &d) != napi_ok) {
    char msg[128];
    snprintf(msg, sizeof msg, "native %s: expected a number argument", op);
    napi_throw_type_error(env, NULL, msg);
    *ok = 0;
    return 0;
  }
  return d;
}

/* The pointer to bytes [off, off + len) of buffer `h`, or NULL (with a RangeError thrown). */
static uint8_t *at(ctx *c, napi_env env, int64_t h, int64_t off, int64_t len, const char *op, int *ok) {
  if (!*ok) return NULL;
  int64_t idx = h & INDEX_MASK;
  uint32_t gen = (uint32_t)(h >> INDEX_BITS);
  if (h < 0 || idx >= c->nbufs || c->bufs[idx].p == NULL || c->bufs[idx].gen != gen) {
    throw_range(env, "native %s: no live buffer %lld", op, (long long)h);
    *ok = 0;
    return NULL;
  }
  buf *b = &c->bufs[idx];
  if (off < 0 || len < 0 || off > b->size || len > b->size - off) {
    throw_range(env, "native %s: bytes [%lld, %lld) lie outside a buffer of %lld bytes", op, (long long)off,
                (long long)(off + len), (long long)b->size);
    *ok = 0;
    return NULL;
  }
  return b->p + off;
}

static ctx *get_ctx(napi_env env, napi_callback_info info, size_t *argc, napi_value *argv, const char *op) {
  void *data = NULL;
  napi_get_cb_info(env, info, argc, argv, NULL, &data);
  ctx *c = (ctx *)data;
  if (c->disposed) {
    char msg[128];
    snprintf(msg, sizeof msg, "native %s: the context was disposed", op);
    napi_throw_type_error(env, NULL, msg);
    return NULL;
  }
  return c;
}

#define BEGIN(op, n)                                                                                                   \
  const char *OP = op;                                                                                                 \
  size_t argc = n;                                                                                                     \
  napi_value argv[n > 0 ? n : 1];                                                                                      \
  ctx *c = get_ctx(env, info, &argc, argv, OP);                                                                        \
  if (!c) return NULL;                                                                                                 \
  if (argc < (size_t)(n)) return throw_type(env, "native: missing arguments");                                         \
  int ok = 1;                                                                                                          \
  (void)ok;
#define I(i) arg_i(env, argv[i], OP, &ok)
#define F(i) arg_f(env, argv[i], OP, &ok)
#define AT(h, off, len) at(c, env, h, off, len, OP, &ok)
#define CHECK                                                                                                          \
  if (!ok) return NULL;

static napi_value undefined(napi_env env) {
  napi_value u;
  napi_get_undefined(env, &u);
  return u;
}
static napi_value num(napi_env env, double d) {
  napi_value v;
  napi_create_double(env, d, &v);
  return v;
}

/* Bytes of a TypedArray or DataView argument. */
static int view_bytes(napi_env env, napi_value v, uint8_t **data, int64_t *len) {
  bool is;
  if (napi_is_typedarray(env, v, &is) == napi_ok && is) {
    napi_typedarray_type t;
    size_t n, off;
    void *d;
    napi_value ab;
    if (napi_get_typedarray_info(env, v, &t, &n, &d, &ab, &off) != napi_ok) return 0;
    static const int sizes[] = {1, 1, 1, 2, 2, 4, 4, 4, 8, 8, 8};
    *data = (uint8_t *)d;
    *len = (int64_t)n * (t < (int)(sizeof sizes / sizeof sizes[0]) ? sizes[t] : 1);
    return 1;
  }
  if (napi_is_dataview(env, v, &is) == napi_ok && is) {
    size_t n;
    void *d;
    napi_value ab;
    size_t off;
    if (napi_get_dataview_info(env, v, &n, &d, &ab, &off) != napi_ok) return 0;
    *data = (uint8_t *)d;
    *len = (int64_t)n;
    return 1;
  }
  return 0;
}

/* ---- buffers ------------------------------------------------------------------------------------------------- */

static void *alloc_aligned(int64_t bytes) {
  void *p = NULL;
  size_t n = (size_t)((bytes + 63) & ~(int64_t)63);
  if (n == 0) n = 64;
  if (posix_memalign(&p, 64, n) != 0) return NULL;
  return p;
}

/*
 * Tensor buffers of MAP_MIN bytes or more are pages of their own (mmap): freeing one returns its memory to the system
 * at once, and pages never written (the spare rows of a KV cache) are never resident. Through malloc they would land
 * in the heap once glibc has raised its mmap threshold, and a freed cache would stay resident as a hole in it.
 */
#define MAP_MIN ((int64_t)256 << 10)
/*
 * Buffers of HUGE_MIN bytes or more ask for transparent huge pages (where the kernel offers them only on request):
 * a decode step streams every weight once, and with 2 MiB pages it takes ~500x fewer TLB misses and page walks to do
 * so (3-10% faster f16/q8 matvecs out of cache, measured on Zen 5).
 */
#define HUGE_MIN ((int64_t)2 << 20)
static void *buf_alloc(int64_t bytes) {
#if defined(MAP_ANONYMOUS)
  if (bytes >= MAP_MIN) {
    void *p = mmap(NULL, (size_t)bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
#if defined(MADV_HUGEPAGE)
    if (bytes >= HUGE_MIN) madvise(p, (size_t)bytes, MADV_HUGEPAGE); /* a hint; failure changes nothing */
#endif
    return p;
  }
#endif
  return alloc_aligned(bytes);
}
static void buf_release(void *p, int64_t bytes) {
  if (!p) return;
#if defined(MAP_ANONYMOUS)
  if (bytes >= MAP_MIN) {
    munmap(p, (size_t)bytes);
    return;
  }
#endif
  free(p);
}

/* a new buffer of `bytes`; returns its handle or -1 */
static int64_t new_buf(ctx *c, int64_t bytes) {
  if (bytes < 0 || bytes > MAX_BYTES) return -1;
  void *p = buf_alloc(bytes);
  if (!p) return -1;
  int64_t idx;
  if (c->nfree > 0) {
    idx = c->free_idx[--c->nfree];
  } else {
    if (c->nbufs == c->cap) {
      int64_t cap = c->cap ? 2 * c->cap : 256;
      if (cap > INDEX_MASK + 1) {
        buf_release(p, bytes);
        return -1;
      }
      buf *nb = (buf *)realloc(c->bufs, (size_t)cap * sizeof(buf));
      int32_t *nf = (int32_t *)realloc(c->free_idx, (size_t)cap * sizeof(int32_t));
      if (nb) c->bufs = nb;
      if (nf) c->free_idx = nf;
      if (!nb || !nf) {
        buf_release(p, bytes);
        return -1;
      }
      c->cap = cap;
    }
    idx = c->nbufs++;
    c->bufs[idx].gen = 0;
  }
  buf *b = &c->bufs[idx];
  b->p = (uint8_t *)p;
  b->size = bytes;
  b->gen = (b->gen + 1) & 0x0fffffff;
  c->bytes += bytes;
  return ((int64_t)b->gen << INDEX_BITS) | idx;
}

static void free_buf(ctx *c, int64_t idx) {
  buf *b = &c->bufs[idx];
  buf_release(b->p, b->size);
  c->bytes -= b->size;
  b->p = NULL;
  b->size = 0;
  c->free_idx[c->nfree++] = (int32_t)idx;
}

static void report_bytes(napi_env env, ctx *c) {
  int64_t d = c->bytes - c->reported, total;
  if (d != 0 && napi_adjust_external_memory(env, d, &total) == napi_ok) c->reported += d;
}

static napi_value m_alloc(napi_env env, napi_callback_info info) {
  BEGIN("alloc", 1);
  int64_t bytes = I(0);
  CHECK;
  int64_t h = new_buf(c, bytes);
  if (h < 0) return throw_range(env, "native alloc: could not allocate %lld bytes", (long long)bytes);
  report_bytes(env, c);
  return num(env, (double)h);
}

static napi_value m_free(napi_env env, napi_callback_info info) {
  BEGIN("free", 1);
  int64_t h = I(0);
  AT(h, 0, 0);
  CHECK;
  free_buf(c, h & INDEX_MASK);
  report_bytes(env, c);
  return undefined(env);
}

static napi_value m_write(napi_env env, napi_callback_info info) {
  BEGIN("write", 3);
  int64_t h = I(0), off = I(1);
  CHECK;
  uint8_t *src;
  int64_t len;
  if (!view_bytes(env, argv[2], &src, &len)) return throw_type(env, "native write: expected a TypedArray or DataView");
  uint8_t *dst = AT(h, off, len);
  CHECK;
  if (len) memcpy(dst, src, (size_t)len);
  return undefined(env);
}

static napi_value m_read(napi_env env, napi_callback_info info) {
  BEGIN("read", 3);
  int64_t h = I(0), off = I(1);
  CHECK;
  uint8_t *dst;
  int64_t len;
  if (!view_bytes(env, argv[2], &dst, &len)) return throw_type(env, "native read: expected a TypedArray or DataView");
  uint8_t *src = AT(h, off, len);
  CHECK;
  if (len) memcpy(dst, src, (size_t)len);
  return undefined(env);
}

/* copy(dst, dstOff, src, srcOff, bytes): memmove */
static napi_value m_copy(napi_env env, napi_callback_info info) {
  BEGIN("copy", 5);
  int64_t dh = I(0), doff = I(1), sh = I(2), soff = I(3), n = I(4);
  uint8_t *d = AT(dh, doff, n);
  uint8_t *s = AT(sh, soff, n);
  CHECK;
  if (n) memmove(d, s, (size_t)n);
  return undefined(env);
}

/* fill(h, off, bytes, byte) */
static napi_value m_fill(napi_env env, napi_callback_info info) {
  BEGIN("fill", 4);
  int64_t h = I(0), off = I(1), n = I(2), v = I(3);
  uint8_t *d = AT(h, off, n);
  CHECK;
  if (n) memset(d, (int)(v & 0xff), (size_t)n);
  return undefined(env);
}

/*
 * Layouts. kind 0: dense panels (esize = arg), kind 1: affine codes (bits = arg).
 * pack(dst, view, rows, cols, kind, arg, r0, r1): rows r0..r1 of a row-major matrix in `view` (which holds exactly
 *   those rows) into the panel buffer dst (which must already hold panel bytes for all rows; padding zeroed when r1 = rows).
 * repack(h, rows, cols, kind, arg, toPanel): converts buffer h in place (a new buffer under the same handle).
 */
static int64_t layout_bytes(int kind, int64_t rows, int64_t cols, int64_t arg) {
  return kind == 0 ? dense_panel_bytes(rows, cols, arg) : codes_panel_bytes(rows, cols, arg);
}
static int64_t row_bytes(int kind, int64_t cols, int64_t arg) { return kind == 0 ? mul2(cols, arg) : mul2(cols, arg) / 8; }

static int layout_ok(int kind, int64_t rows, int64_t cols, int64_t arg) {
  if (rows < 0 || cols < 0 || rows > ((int64_t)1 << 40) || cols > ((int64_t)1 << 40)) return 0;
  if (kind == 0) return arg == 2 || arg == 4;
  if (kind == 1) return (arg >= 2 && arg <= 8 && arg != 7) && cols % 32 == 0;
  return 0;
}

static napi_value m_pack(napi_env env, napi_callback_info info) {
  BEGIN("pack", 8);
  int64_t dh = I(0), rows = I(2), cols = I(3), kind = I(4), arg = I(5), r0 = I(6), r1 = I(7);
  CHECK;
  if (!layout_ok((int)kind, rows, cols, arg) || r0 < 0 || r1 < r0 || r1 > rows)
    return throw_range(env, "native pack: bad layout arguments");
  uint8_t *src;
  int64_t len;
  if (!view_bytes(env, argv[1], &src, &len)) return throw_type(env, "native pack: expected a TypedArray or DataView");
  if (len != mul2(r1 - r0, row_bytes((int)kind, cols, arg)))
    return throw_range(env, "native pack: %lld source bytes for %lld rows", (long long)len, (long long)(r1 - r0));
  uint8_t *d = AT(dh, 0, layout_bytes((int)kind, rows, cols, arg));
  CHECK;
  /* the first call (rows from 0) zeroes the padding lanes of the last panel, which no row fills */
  if (r0 == 0 && rows % 16) {
    int64_t pbytes = layout_bytes((int)kind, 16, cols, arg);
    memset(d + (rows / 16) * pbytes, 0, (size_t)pbytes);
  }
  if (kind == 0)
    mn_pack_dense_rows(d, src, rows, cols, (int)arg, r0, r1);
  else
    mn_pack_codes_rows((uint32_t *)d, (const uint32_t *)src, rows, cols, (int)arg, r0, r1);
  return undefined(env);
}

static napi_value m_repack(napi_env env, napi_callback_info info) {
  BEGIN("repack", 6);
  int64_t h = I(0), rows = I(1), cols = I(2), kind = I(3), arg = I(4), to_panel = I(5);
  CHECK;
  if (!layout_ok((int)kind, rows, cols, arg)) return throw_range(env, "native repack: bad layout arguments");
  int64_t plain = mul2(rows, row_bytes((int)kind, cols, arg)), panel = layout_bytes((int)kind, rows, cols, arg);
  if (plain < 0 || panel < 0) return throw_range(env, "native repack: %lld x %lld is too large", (long long)rows, (long long)cols);
  uint8_t *src = AT(h, 0, to_panel ? plain : panel);
  CHECK;
  int64_t nbytes = to_panel ? panel : plain;
  uint8_t *dst = (uint8_t *)buf_alloc(nbytes);
  if (!dst) return throw_range(env, "native repack: could not allocate %lld bytes", (long long)nbytes);
  if (to_panel) {
    if (kind == 0) mn_pack_dense(dst, src, rows, cols, (int)arg);
    else mn_pack_codes((uint32_t *)dst, (const uint32_t *)src, rows, cols, (int)arg);
  } else {
    if (kind == 0) mn_unpack_dense(dst, src, rows, cols, (int)arg);
    else mn_unpack_codes((uint32_t *)dst, (const uint32_t *)src, rows, cols, (int)arg);
  }
  buf *b = &c->bufs[h & INDEX_MASK];
  c->bytes += nbytes - b->size;
  buf_release(b->p, b->size);
  b->p = dst;
  b->size = nbytes;
  report_bytes(env, c);
  return undefined(env);
}

static int read_fully(int fd, uint8_t *d, int64_t n, int64_t pos, int64_t *done) {
  *done = 0;
  while (*done < n) {
    int64_t want = n - *done > (1 << 30) ? (1 << 30) : n - *done;
    ssize_t got = pread(fd, d + *done, (size_t)want, (off_t)(pos + *done));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return got < 0 ? errno : -1;
    *done += got;
  }
  return 0;
}

/*
 * packFile(dst, fd, position, rows, cols, kind, arg): a row-major matrix read from a file, packed into the panel buffer
 * dst a few rows at a time (a bounded temporary: never the whole matrix).
 */
static napi_value m_pack_file(napi_env env, napi_callback_info info) {
  BEGIN("packFile", 7);
  int64_t dh = I(0), fd = I(1), pos = I(2), rows = I(3), cols = I(4), kind = I(5), arg = I(6);
  CHECK;
  if (!layout_ok((int)kind, rows, cols, arg) || fd < 0 || pos < 0)
    return throw_range(env, "native packFile: bad arguments");
  int64_t rb = row_bytes((int)kind, cols, arg), total = layout_bytes((int)kind, rows, cols, arg);
  if (rb < 0 || total < 0) return throw_range(env, "native packFile: the matrix is too large");
  uint8_t *d = AT(dh, 0, total);
  CHECK;
  if (rows % 16) {
    int64_t pbytes = layout_bytes((int)kind, 16, cols, arg);
    memset(d + (rows / 16) * pbytes, 0, (size_t)pbytes);
  }
  int64_t chunk = rb > 0 ? ((int64_t)4 << 20) / rb : rows;
  if (chunk < 1) chunk = 1;
  if (chunk > rows) chunk = rows;
  uint8_t *tmp = (uint8_t *)alloc_aligned(mul2(chunk, rb) > 0 ? mul2(chunk, rb) : 64);
  if (!tmp) return throw_range(env, "native packFile: could not allocate a read buffer");
  for (int64_t r0 = 0; r0 < rows; r0 += chunk) {
    int64_t r1 = r0 + chunk < rows ? r0 + chunk : rows, done;
    int err = read_fully((int)fd, tmp, (r1 - r0) * rb, pos + r0 * rb, &done);
    if (err) {
      free(tmp);
      return throw_range(env, "native packFile: read %lld of %lld bytes at %lld (%s)", (long long)(r0 * rb + done),
                         (long long)(rows * rb), (long long)pos, err > 0 ? strerror(err) : "end of file");
    }
    if (kind == 0)
      mn_pack_dense_rows(d, tmp, rows, cols, (int)arg, r0, r1);
    else
      mn_pack_codes_rows((uint32_t *)d, (const uint32_t *)tmp, rows, cols, (int)arg, r0, r1);
  }
  free(tmp);
  return undefined(env);
}

/* readFile(h, off, fd, position, bytes): reads a file range straight into a buffer */
static napi_value m_read_file(napi_env env, napi_callback_info info) {
  BEGIN("readFile", 5);
  int64_t h = I(0), off = I(1), fd = I(2), pos = I(3), n = I(4);
  uint8_t *d = AT(h, off, n);
  CHECK;
  if (fd < 0 || pos < 0) return throw_range(env, "native readFile: bad file descriptor or position");
  int64_t done;
  int err = read_fully((int)fd, d, n, pos, &done);
  if (err)
    return throw_range(env, "native readFile: read %lld of %lld bytes at %lld (%s)", (long long)done, (long long)n,
                       (long long)pos, err > 0 ? strerror(err) : "end of file");
  return undefined(env);
}

/*
 * GGML weights. ggmlBytes(type, rows, cols): bytes of the panel buffer (-1 when impossible).
 * ggmlPack(dst, view, type, rows, cols, r0, r1): raw blocks of rows r0..r1 (`view` holds exactly those) into dst.
 * ggmlPackBuf(dst, src, srcOff, type, rows, cols): all rows from a native buffer of raw blocks.
 * ggmlPackFile(dst, fd, position, type, rows, cols): all rows read from a file a few at a time.
 */
static napi_value m_ggml_bytes(napi_env env, napi_callback_info info) {
  BEGIN("ggmlBytes", 3);
  int64_t type = I(0), rows = I(1), cols = I(2);
  CHECK;
  mn_ggml_type t;
  return num(env, (double)ggml_panel_bytes(type, rows, cols, &t));
}

static napi_value m_ggml_pack(napi_env env, napi_callback_info info) {
  BEGIN("ggmlPack", 7);
  int64_t dh = I(0), type = I(2), rows = I(3), cols = I(4), r0 = I(5), r1 = I(6);
  CHECK;
  mn_ggml_type t;
  int64_t total = ggml_panel_bytes(type, rows, cols, &t);
  if (total < 0 || r0 < 0 || r1 < r0 || r1 > rows) return throw_range(env, "native ggmlPack: bad layout arguments");
  uint8_t *src;
  int64_t len;
  if (!view_bytes(env, argv[1], &src, &len)) return throw_type(env, "native ggmlPack: expected a TypedArray or DataView");
  if (len != mul2(r1 - r0, ggml_row_bytes(&t, cols)))
    return throw_range(env, "native ggmlPack: %lld source bytes for %lld rows", (long long)len, (long long)(r1 - r0));
  uint8_t *d = AT(dh, 0, total);
  CHECK;
  mn_ggml_pack_rows(d, src, &t, rows, cols, r0, r1);
  return undefined(env);
}

static napi_value m_ggml_pack_buf(napi_env env, napi_callback_info info) {
  BEGIN("ggmlPackBuf", 6);
  int64_t dh = I(0), sh = I(1), so = I(2), type = I(3), rows = I(4), cols = I(5);
  CHECK;
  mn_ggml_type t;
  int64_t total = ggml_panel_bytes(type, rows, cols, &t);
  if (total < 0) return throw_range(env, "native ggmlPackBuf: bad layout arguments");
  uint8_t *d = AT(dh, 0, total);
  const uint8_t *src = AT(sh, so, mul2(rows, ggml_row_bytes(&t, cols)));
  CHECK;
  if (d == src) return throw_range(env, "native ggmlPackBuf: source and destination are the same buffer");
  mn_ggml_pack_rows(d, src, &t, rows, cols, 0, rows);
  return undefined(env);
}

static napi_value m_ggml_pack_file(napi_env env, napi_callback_info info) {
  BEGIN("ggmlPackFile", 6);
  int64_t dh = I(0), fd = I(1), pos = I(2), type = I(3), rows = I(4), cols = I(5);
  CHECK;
  mn_ggml_type t;
  int64_t total = ggml_panel_bytes(type, rows, cols, &t);
  if (total < 0 || fd < 0 || pos < 0) return throw_range(env, "native ggmlPackFile: bad arguments");
  int64_t rb = ggml_row_bytes(&t, cols);
  if (rb < 0 || mul2(rows, rb) < 0) return throw_range(env, "native ggmlPackFile: the matrix is too large");
  uint8_t *d = AT(dh, 0, total);
  CHECK;
  int64_t chunk = rb > 0 ? ((int64_t)4 << 20) / rb : rows;
  if (chunk < 1) chunk = 1;
  if (chunk > rows) chunk = rows;
  uint8_t *tmp = (uint8_t *)alloc_aligned(mul2(chunk, rb) > 0 ? mul2(chunk, rb) : 64);
  if (!tmp) return throw_range(env, "native ggmlPackFile: could not allocate a read buffer");
  for (int64_t r0 = 0; r0 < rows; r0 += chunk) {
    int64_t r1 = r0 + chunk < rows ? r0 + chunk : rows, done;
    int err = read_fully((int)fd, tmp, (r1 - r0) * rb, pos + r0 * rb, &done);
    if (err) {
      free(tmp);
      return throw_range(env, "native ggmlPackFile: read %lld of %lld bytes at %lld (%s)", (long long)(r0 * rb + done),
                         (long long)(rows * rb), (long long)pos, err > 0 ? strerror(err) : "end of file");
    }
    mn_ggml_pack_rows(d, tmp, &t, rows, cols, r0, r1);
  }
  free(tmp);
  return undefined(env);
}

/* ---- ops ----------------------------------------------------------------------------------------------------- */

static int dsize(int64_t d) { return d == MN_F32 ? 4 : 2; }

static napi_value m_to_f32(napi_env env, napi_callback_info info) {
  BEGIN("toF32", 6);
  int64_t oh = I(0), oo = I(1), sh = I(2), so = I(3), n = I(4), dt = I(5);
  CHECK;
  if (dt < 0 || dt > 2 || n < 0) return throw_range(env, "native toF32: bad arguments");
  float *out = (float *)AT(oh, oo, mul2(n, 4));
  const void *src = AT(sh, so, mul2(n, dsize(dt)));
  CHECK;
  c->k->to_f32(out, src, (int)dt, n);
  return undefined(env);
}

typedef struct {
  const mn_kernels *k;
  const mn_matmul *m;
  int64_t rb, pb, npb, rows, panels;
  int q8a;
  float *scratch; /* MN_MM_SCRATCH floats per thread */
} mm_job;

static void mm_task(void *arg, int64_t t, int thread) {
  mm_job *j = (mm_job *)arg;
  int64_t r0 = (t / j->npb) * j->rb, p0 = (t % j->npb) * j->pb;
  int64_t r1 = r0 + j->rb < j->rows ? r0 + j->rb : j->rows, p1 = p0 + j->pb < j->panels ? p0 + j->pb : j->panels;
  (j->q8a ? j->k->matmul_q8a : j->k->matmul)(j->m, r0, r1, p0, p1, j->scratch + (int64_t)thread * MN_MM_SCRATCH);
}

typedef struct {
  int8_t *xq;
  float *xd, *xg;
  const float *x;
  int64_t k, bits, group, rows_per;
  int64_t rows;
} q_job;
static void q_task(void *arg, int64_t t, int thread) {
  (void)thread;
  q_job *j = (q_job *)arg;
  int64_t r0 = t * j->rows_per, r1 = r0 + j->rows_per < j->rows ? r0 + j->rows_per : j->rows;
  mn_quantize_rows(j->xq + r0 * j->k, j->xd + r0 * (j->k / 32), j->xg + r0 * (j->k / j->group), j->x + r0 * j->k,
                   r1 - r0, j->k, j->k, (int)j->bits, (int)j->group);
}

/* Parses a panel weight: (w, kind, dtype|bits, group, sdtype, scales, biases) at argv[i..i+6]; rows n, cols k. */
static int weight_arg(ctx *c, napi_env env, napi_value *argv, int i, int64_t n, int64_t k, mn_matmul *m,
                      const char *OP, int *okp) {
  int ok = *okp;
  int64_t wh = arg_i(env, argv[i], OP, &ok), quant = arg_i(env, argv[i + 1], OP, &ok),
          dt = arg_i(env, argv[i + 2], OP, &ok), group = arg_i(env, argv[i + 3], OP, &ok),
          sd = arg_i(env, argv[i + 4], OP, &ok), sh = arg_i(env, argv[i + 5], OP, &ok),
          bh = arg_i(env, argv[i + 6], OP, &ok);
  if (!ok) return *okp = 0;
  m->quant = (int)quant;
  if (quant == 2) {
    /* a GGML panel (dtype|bits = the GGML type id): codes, f32 scales and offsets in one buffer */
    mn_ggml_type t;
    int64_t total = ggml_panel_bytes(dt, n, k, &t);
    if (total < 0) return *okp = 0, throw_range(env, "native %s: bad GGML weight", OP), 0;
    int64_t off_s, off_b;
    mn_ggml_panel_bytes(&t, n, k, &off_s, &off_b);
    const uint8_t *base = (const uint8_t *)at(c, env, wh, 0, total, OP, &ok);
    *okp = ok;
    if (!ok) return 0;
    m->quant = 1;
    m->bits = t.bits;
    m->group = t.group;
    m->sdtype = MN_F32;
    m->w = base;
    m->scales = base + off_s;
    m->biases = base + off_b;
    m->ggml = 1;
    return 1;
  }
  if (!quant) {
    if (dt < 0 || dt > 2) return *okp = 0, throw_range(env, "native %s: bad weight dtype", OP), 0;
    m->dtype = (int)dt;
    m->w = at(c, env, wh, 0, dense_panel_bytes(n, k, dsize(dt)), OP, &ok);
  } else {
    if (dt < 2 || dt > 8 || dt == 7 || (group != 32 && group != 64 && group != 128) || k % group || sd < 0 || sd > 2)
      return *okp = 0, throw_range(env, "native %s: bad quantization", OP), 0;
    m->bits = (int)dt;
    m->group = (int)group;
    m->sdtype = (int)sd;
    m->w = at(c, env, wh, 0, codes_panel_bytes(n, k, dt), OP, &ok);
    m->scales = at(c, env, sh, 0, dense_panel_bytes(n, k / group, dsize(sd)), OP, &ok);
    m->biases = at(c, env, bh, 0, dense_panel_bytes(n, k / group, dsize(sd)), OP, &ok);
  }
  *okp = ok;
  return ok;
}

static int ensure_scratch(ctx *c, int64_t bytes) {
  if (bytes <= c->xq_bytes) return 1;
  int64_t n = bytes > 2 * c->xq_bytes ? bytes : 2 * c->xq_bytes;
  void *p = alloc_aligned(n);
  if (!p) return 0;
  free(c->xq);
  c->xq = (int8_t *)p;
  c->xq_bytes = n;
  return 1;
}

/*
 * matmul(y, yOff, x, xOff, rows, k, n, bias, biasOff, w, quant, dtype|bits, group, sdtype, scales, biases, int8a)
 * bias = -1 for none. Weights are panels.
 */
static napi_value m_matmul(napi_env env, napi_callback_info info) {
  BEGIN("matmul", 17);
  int64_t yh = I(0), yo = I(1), xh = I(2), xo = I(3), rows = I(4), k = I(5), n = I(6), bh = I(7), bo = I(8),
          int8a = I(16);
  CHECK;
  if (rows < 0 || k < 0 || n < 0) return throw_range(env, "native matmul: bad sizes");
  mn_matmul m = {0};
  m.y = (float *)AT(yh, yo, mul3(rows, n, 4));
  m.x = (const float *)AT(xh, xo, mul3(rows, k, 4));
  m.bias = bh >= 0 ? (const float *)AT(bh, bo, mul2(n, 4)) : NULL;
  CHECK;
  if (!weight_arg(c, env, argv, 9, n, k, &m, OP, &ok)) return NULL;
  m.rows = rows, m.k = k, m.n = n, m.ldx = k, m.ldy = n;
  if (rows == 0 || n == 0) return undefined(env);
  if (k == 0) {
    for (int64_t r = 0; r < rows; r++)
      for (int64_t o = 0; o < n; o++) m.y[r * n + o] = m.bias ? m.bias[o] : 0.0f;
    return undefined(env);
  }
  int q8a = int8a && m.quant && (m.bits == 4 || m.bits == 8) && m.group >= 32;
  if (int8a && m.ggml && !q8a) {
    /* GGML weights without an integer kernel: the activations rounded to int8 blocks (q · d, as
       roundActivationsInt8), then the exact kernel */
    int64_t blocks = k / 32;
    int64_t need = rows * k + 64 + rows * blocks * 4 + rows * blocks * 4 + 64 + rows * k * 4 + 64;
    if (!ensure_scratch(c, need)) return throw_range(env, "native matmul: could not allocate %lld bytes of scratch", (long long)need);
    int8_t *xq = c->xq;
    float *xd = (float *)(c->xq + ((rows * k + 63) & ~(int64_t)63));
    float *xg = xd + rows * blocks;
    float *xr = (float *)(((uintptr_t)(xg + rows * blocks) + 63) & ~(uintptr_t)63);
    q_job qj = {xq, xd, xg, m.x, k, 8, 32, 16, rows};
    mn_pool_run(c->pool, q_task, &qj, (rows + 15) / 16);
    for (int64_t r = 0; r < rows; r++)
      for (int64_t i = 0; i < k; i++) xr[r * k + i] = (float)xq[r * k + i] * xd[r * blocks + i / 32];
    m.x = xr;
  }
  if (q8a) {
    int64_t blocks = k / 32, groups = k / m.group;
    int64_t need = rows * k + 64 + rows * blocks * 4 + rows * groups * 4 + 64;
    if (!ensure_scratch(c, need)) return throw_range(env, "native matmul: could not allocate %lld bytes of scratch", (long long)need);
    m.xq = c->xq;
    m.xd = (float *)(c->xq + ((rows * k + 63) & ~(int64_t)63));
    m.xg = m.xd + rows * blocks;
    q_job qj = {(int8_t *)m.xq, (float *)m.xd, (float *)m.xg, m.x, k, m.bits, m.group, 16, rows};
    mn_pool_run(c->pool, q_task, &qj, (rows + 15) / 16);
  }
  int64_t panels = (n + 15) / 16;
  if (!c->mm) {
    c->mm = (float *)alloc_aligned((int64_t)MN_MM_SCRATCH * 4 * c->threads);
    if (!c->mm) return throw_range(env, "native matmul: could not allocate scratch");
  }
  mm_job j = {c->k, &m, rows, panels, 1, rows, panels, q8a, c->mm};
  int64_t tasks_wanted = (int64_t)c->threads * 8;
  if (rows <= 4) {
    j.rb = rows;
    int64_t pb = (panels + tasks_wanted - 1) / tasks_wanted;
    pb = (pb + 3) & ~(int64_t)3;
    j.pb = pb < 4 ? 4 : pb;
  } else {
    j.rb = rows <= 128 ? rows : 128;
    j.pb = 8;
  }
  j.npb = (panels + j.pb - 1) / j.pb;
  int64_t nrb = (rows + j.rb - 1) / j.rb;
  mn_pool_run(c->pool, mm_task, &j, nrb * j.npb);
  return undefined(env);
}

/* embedding(out, outOff, ids: Int32Array, vocab, k, w, quant, dtype|bits, group, sdtype, scales, biases) */
static napi_value m_embedding(napi_env env, napi_callback_info info) {
  BEGIN("embedding", 12);
  int64_t oh = I(0), oo = I(1), vocab = I(3), k = I(4);
  CHECK;
  bool is;
  napi_typedarray_type t;
  size_t nids, ab_off;
  void *idp;
  napi_value ab;
  if (napi_is_typedarray(env, argv[2], &is) != napi_ok || !is ||
      napi_get_typedarray_info(env, argv[2], &t, &nids, &idp, &ab, &ab_off) != napi_ok || t != napi_int32_array)
    return throw_type(env, "native embedding: ids must be an Int32Array");
  const int32_t *ids = (const int32_t *)idp;
  float *out = (float *)AT(oh, oo, mul3((int64_t)nids, k, 4));
  CHECK;
  mn_matmul m = {0};
  if (!weight_arg(c, env, argv, 5, vocab, k, &m, OP, &ok)) return NULL;
  m.k = k, m.n = vocab;
  for (size_t i = 0; i < nids; i++)
    if (ids[i] < 0 || ids[i] >= vocab) return throw_range(env, "native embedding: id %d outside [0, %lld)", ids[i], (long long)vocab);
  for (size_t i = 0; i < nids; i++) c->k->embed(out + i * k, &m, ids[i]);
  return undefined(env);
}

typedef struct {
  const mn_kernels *k;
  float *out;
  const float *x, *w;
  int64_t dim, rows_per, rows;
  float eps;
} rms_job;
static void rms_task(void *arg, int64_t t, int thread) {
  (void)thread;
  rms_job *j = (rms_job *)arg;
  int64_t r0 = t * j->rows_per, r1 = r0 + j->rows_per < j->rows ? r0 + j->rows_per : j->rows;
  j->k->rmsnorm(j->out + r0 * j->dim, j->x + r0 * j->dim, j->w, r1 - r0, j->dim, j->eps);
}

/* rows per task so that each holds about 64K elements */
static int64_t rows_per_task(int64_t rows, int64_t width) {
  int64_t per = width > 0 ? (65536 + width - 1) / width : rows;
  return per < 1 ? 1 : per;
}

static napi_value m_rmsnorm(napi_env env, napi_callback_info info) {
  BEGIN("rmsnorm", 9);
  int64_t oh = I(0), oo = I(1), xh = I(2), xo = I(3), wh = I(4), wo = I(5), rows = I(6), dim = I(7);
  double eps = F(8);
  CHECK;
  if (rows < 0 || dim < 0) return throw_range(env, "native rmsnorm: bad sizes");
  rms_job j = {c->k, (float *)AT(oh, oo, mul3(rows, dim, 4)), (const float *)AT(xh, xo, mul3(rows, dim, 4)),
               (const float *)AT(wh, wo, mul2(dim, 4)), dim, rows_per_task(rows, dim), rows, (float)eps};
  CHECK;
  if (rows == 0 || dim == 0) return undefined(env);
  mn_pool_run(c->pool, rms_task, &j, (rows + j.rows_per - 1) / j.rows_per);
  return undefined(env);
}

static napi_value m_rope(napi_env env, napi_callback_info info) {
  BEGIN("rope", 11);
  int64_t xh = I(0), xo = I(1), ch = I(2), co = I(3), sh = I(4), so = I(5), rows = I(6), nh = I(7), hd = I(8),
          half = I(9), layout = I(10);
  CHECK;
  if (rows < 0 || nh < 0 || hd < 0 || half < 0 || half > hd / 2 || (layout != 0 && layout != 1))
    return throw_range(env, "native rope: bad sizes");
  float *x = (float *)AT(xh, xo, mul4(rows, nh, hd, 4));
  const float *cs = (const float *)AT(ch, co, mul3(rows, half, 4));
  const float *sn = (const float *)AT(sh, so, mul3(rows, half, 4));
  CHECK;
  c->k->rope(x, cs, sn, rows, nh, hd, half, (int)layout);
  return undefined(env);
}

typedef struct {
  const mn_kernels *k;
  float *out;
  const float *a, *b;
  int64_t n, per;
  int op; /* 0 add, 1 swiglu, 2 geluGlu, 3 softcap (in place), 4 scale */
  float f;
} ew_job;
static void ew_task(void *arg, int64_t t, int thread) {
  (void)thread;
  ew_job *j = (ew_job *)arg;
  int64_t i0 = t * j->per, i1 = i0 + j->per < j->n ? i0 + j->per : j->n;
  if (j->op == 0)
    j->k->add(j->out + i0, j->a + i0, j->b + i0, i1 - i0);
  else if (j->op == 1)
    j->k->swiglu(j->out + i0, j->a + i0, j->b + i0, i1 - i0);
  else if (j->op == 2)
    j->k->gelu_glu(j->out + i0, j->a + i0, j->b + i0, i1 - i0);
  else if (j->op == 3)
    j->k->softcap(j->out + i0, i1 - i0, j->f);
  else
    j->k->scale(j->out + i0, j->a + i0, i1 - i0, j->f);
}

static napi_value elementwise(napi_env env, napi_callback_info info, int op) {
  BEGIN(op == 0 ? "add" : op == 1 ? "swiglu" : "geluGlu", 7);
  int64_t oh = I(0), oo = I(1), ah = I(2), ao = I(3), bh = I(4), bo = I(5), n = I(6);
  CHECK;
  if (n < 0) return throw_range(env, "native %s: bad size", OP);
  ew_job j = {c->k, (float *)AT(oh, oo, mul2(n, 4)), (const float *)AT(ah, ao, mul2(n, 4)), (const float *)AT(bh, bo, mul2(n, 4)), n,
              65536, op, 0.0f};
  CHECK;
  if (n == 0) return undefined(env);
  mn_pool_run(c->pool, ew_task, &j, (n + j.per - 1) / j.per);
  return undefined(env);
}
static napi_value m_add(napi_env env, napi_callback_info info) { return elementwise(env, info, 0); }
static napi_value m_swiglu(napi_env env, napi_callback_info info) { return elementwise(env, info, 1); }
static napi_value m_gelu_glu(napi_env env, napi_callback_info info) { return elementwise(env, info, 2); }

/* softcap(x, xOff, n, cap): in place */
static napi_value m_softcap(napi_env env, napi_callback_info info) {
  BEGIN("softcap", 4);
  int64_t xh = I(0), xo = I(1), n = I(2);
  double cap = F(3);
  CHECK;
  if (n < 0 || !(cap > 0 && cap <= 3.4028234663852886e38)) return throw_range(env, "native softcap: bad arguments");
  float *x = (float *)AT(xh, xo, mul2(n, 4));
  CHECK;
  ew_job j = {c->k, x, x, x, n, 65536, 3, (float)cap};
  if (n > 0) mn_pool_run(c->pool, ew_task, &j, (n + j.per - 1) / j.per);
  return undefined(env);
}

/* scale(out, outOff, x, xOff, n, s) */
static napi_value m_scale(napi_env env, napi_callback_info info) {
  BEGIN("scale", 6);
  int64_t oh = I(0), oo = I(1), xh = I(2), xo = I(3), n = I(4);
  double sc = F(5);
  CHECK;
  if (n < 0) return throw_range(env, "native scale: bad size");
  ew_job j = {c->k, (float *)AT(oh, oo, mul2(n, 4)), (const float *)AT(xh, xo, mul2(n, 4)), NULL, n, 65536, 4,
              (float)sc};
  CHECK;
  if (n > 0) mn_pool_run(c->pool, ew_task, &j, (n + j.per - 1) / j.per);
  return undefined(env);
}

typedef struct {
  const mn_kernels *k;
  float *x;
  int64_t n, rows, per;
} sm_job;
static void sm_task(void *arg, int64_t t, int thread) {
  (void)thread;
  sm_job *j = (sm_job *)arg;
  int64_t r0 = t * j->per, r1 = r0 + j->per < j->rows ? r0 + j->per : j->rows;
  j->k->softmax(j->x + r0 * j->n, r1 - r0, j->n);
}

static napi_value m_softmax(napi_env env, napi_callback_info info) {
  BEGIN("softmax", 4);
  int64_t xh = I(0), xo = I(1), rows = I(2), n = I(3);
  CHECK;
  if (rows < 0 || n < 0) return throw_range(env, "native softmax: bad sizes");
  sm_job j = {c->k, (float *)AT(xh, xo, mul3(rows, n, 4)), n, rows, rows_per_task(rows, n)};
  CHECK;
  if (rows == 0 || n == 0) return undefined(env);
  mn_pool_run(c->pool, sm_task, &j, (rows + j.per - 1) / j.per);
  return undefined(env);
}

static napi_value m_argmax(napi_env env, napi_callback_info info) {
  BEGIN("argmax", 3);
  int64_t xh = I(0), xo = I(1), n = I(2);
  CHECK;
  if (n <= 0) return throw_range(env, "native argmax: empty row");
  const float *x = (const float *)AT(xh, xo, mul2(n, 4));
  CHECK;
  return num(env, (double)c->k->argmax(x, n));
}

typedef struct {
  const mn_kernels *k;
  const mn_attention *a;
  float *scratch;
  int64_t per_thread, rb, nrb;
} at_job;
static void at_task(void *arg, int64_t t, int thread) {
  at_job *j = (at_job *)arg;
  int64_t kvh = t / j->nrb, r0 = (t % j->nrb) * j->rb;
  int64_t r1 = r0 + j->rb < j->a->rows ? r0 + j->rb : j->a->rows;
  j->k->attention(j->a, kvh, r0, r1, j->scratch + thread * j->per_thread);
}

/*
 * One side of a KV storage at argv[i..i+8]: (fmt, bits, group, h, off, scalesH, scalesOff, biasesH, biasesOff), `cap`
 * rows of `width` values. fmt 0 f32, 1 f16 (h/off the values), 2 affine (h/off the packed codes; bits 4/8, group
 * 32/64, f32 scales and biases).
 */
static int kv_arg(ctx *c, napi_env env, napi_value *argv, int i, int64_t cap, int64_t width, mn_kv *kv, const char *OP,
                  int *okp) {
  int ok = *okp;
  int64_t fmt = arg_i(env, argv[i], OP, &ok), bits = arg_i(env, argv[i + 1], OP, &ok),
          group = arg_i(env, argv[i + 2], OP, &ok), h = arg_i(env, argv[i + 3], OP, &ok),
          off = arg_i(env, argv[i + 4], OP, &ok), sh = arg_i(env, argv[i + 5], OP, &ok),
          so = arg_i(env, argv[i + 6], OP, &ok), bh = arg_i(env, argv[i + 7], OP, &ok),
          bo = arg_i(env, argv[i + 8], OP, &ok);
  if (!ok) return *okp = 0;
  memset(kv, 0, sizeof *kv);
  kv->fmt = (int)fmt;
  if (fmt == MN_KV_F32 || fmt == MN_KV_F16) {
    kv->data = at(c, env, h, off, mul3(cap, width, fmt == MN_KV_F32 ? 4 : 2), OP, &ok);
  } else if (fmt == MN_KV_AFFINE) {
    if ((bits != 4 && bits != 8) || (group != 32 && group != 64) || width % group)
      return *okp = 0, throw_range(env, "native %s: bad KV quantization", OP), 0;
    kv->bits = (int)bits;
    kv->group = (int)group;
    kv->data = at(c, env, h, off, mul4(cap, width / 32, bits, 4), OP, &ok);
    kv->scales = (const float *)at(c, env, sh, so, mul3(cap, width / group, 4), OP, &ok);
    kv->biases = (const float *)at(c, env, bh, bo, mul3(cap, width / group, 4), OP, &ok);
  } else {
    return *okp = 0, throw_range(env, "native %s: bad KV format", OP), 0;
  }
  *okp = ok;
  return ok;
}

/*
 * attention(out, outOff, q, qOff, rows, start, nheads, nkv, hd, scale, window, cap, softcap, keep, K side (9 args),
 * V side (9 args)) — sides as kv_arg. Every position a query sees must lie in the ring (checked here too).
 */
static napi_value m_attention(napi_env env, napi_callback_info info) {
  BEGIN("attention", 32);
  int64_t oh = I(0), oo = I(1), qh = I(2), qo = I(3), rows = I(4), start = I(5), nh = I(6), nkv = I(7), hd = I(8),
          window = I(10), cap = I(11), keep = I(13);
  double scale = F(9), softcap = F(12);
  CHECK;
  if (!(softcap >= 0 && softcap <= 3.4028234663852886e38)) return throw_range(env, "native attention: bad softcap");
  if (rows < 0 || start < 0 || nh < 1 || nkv < 1 || nh % nkv || hd < 1 || window < 0 || rows > MAX_BYTES ||
      start > MAX_BYTES || cap < 0 || cap > MAX_BYTES || keep < 0 || keep > cap || nh > (1 << 20) || hd > (1 << 20))
    return throw_range(env, "native attention: bad sizes");
  if (rows > 0) {
    /* the storage holds every position seen (kvRow never maps two of them to one row) */
    int64_t last = start + rows - 1, lo = window > 0 && start - window + 1 > keep ? start - window + 1 : keep;
    if (lo <= last && last - lo >= cap - keep)
      return throw_range(env, "native attention: positions %lld..%lld do not fit %lld rows (keep %lld)",
                         (long long)lo, (long long)last, (long long)cap, (long long)keep);
  }
  mn_attention a = {0};
  a.out = (float *)AT(oh, oo, mul4(rows, nh, hd, 4));
  a.q = (const float *)AT(qh, qo, mul4(rows, nh, hd, 4));
  CHECK;
  int64_t width = mul2(nkv, hd);
  if (width < 0) return throw_range(env, "native attention: bad sizes");
  if (!kv_arg(c, env, argv, 14, cap, width, &a.k, OP, &ok)) return NULL;
  if (!kv_arg(c, env, argv, 23, cap, width, &a.v, OP, &ok)) return NULL;
  if (a.k.fmt == MN_KV_AFFINE && hd % 8) return throw_range(env, "native attention: quantized KV needs headDim % 8 == 0");
  a.rows = rows, a.start = start, a.nheads = nh, a.nkv = nkv, a.hd = hd, a.window = window, a.scale = (float)scale;
  a.softcap = (float)softcap;
  a.cap = cap, a.keep = keep;
  if (rows == 0) return undefined(env);
  int64_t per = MN_ATTN_SCRATCH(nh / nkv, hd);
  if (per > c->attn_floats) {
    void *p = alloc_aligned(per * 4 * c->threads);
    if (!p) return throw_range(env, "native attention: could not allocate scratch");
    free(c->attn);
    c->attn = (float *)p;
    c->attn_floats = per;
  }
  at_job j = {c->k, &a, c->attn, c->attn_floats, rows <= 16 ? rows : 16, 0};
  j.nrb = (rows + j.rb - 1) / j.rb;
  mn_pool_run(c->pool, at_task, &j, nkv * j.nrb);
  return undefined(env);
}

typedef struct {
  const mn_kv *dst;
  const float *src;
  int64_t width, start, cap, keep, rows, rows_per;
} wkv_job;
static void wkv_task(void *arg, int64_t t, int thread) {
  (void)thread;
  wkv_job *j = (wkv_job *)arg;
  int64_t r0 = t * j->rows_per, r1 = r0 + j->rows_per < j->rows ? r0 + j->rows_per : j->rows;
  mn_write_kv(j->dst, j->src, r0, r1, j->width, j->start, j->cap, j->keep);
}

/* writeKv(src, srcOff, rows, width, start, cap, keep, dst side (9 args, as kv_arg)) */
static napi_value m_write_kv(napi_env env, napi_callback_info info) {
  BEGIN("writeKv", 16);
  int64_t sh = I(0), so = I(1), rows = I(2), width = I(3), start = I(4), cap = I(5), keep = I(6);
  CHECK;
  if (rows < 0 || width < 0 || start < 0 || cap < 0 || keep < 0 || keep > cap || rows > MAX_BYTES || start > MAX_BYTES ||
      cap > MAX_BYTES)
    return throw_range(env, "native writeKv: bad sizes");
  /* no two rows written land on one storage row */
  int64_t first = start > keep ? start : keep, ring = start + rows > first ? start + rows - first : 0;
  if (ring > cap - keep) return throw_range(env, "native writeKv: %lld rows from %lld overwrite each other in %lld rows",
                                            (long long)rows, (long long)start, (long long)cap);
  const float *src = (const float *)AT(sh, so, mul3(rows, width, 4));
  CHECK;
  mn_kv kv;
  if (!kv_arg(c, env, argv, 7, cap, width, &kv, OP, &ok)) return NULL;
  if (rows == 0 || width == 0) return undefined(env);
  wkv_job j = {&kv, src, width, start, cap, keep, rows, rows_per_task(rows, width)};
  mn_pool_run(c->pool, wkv_task, &j, (rows + j.rows_per - 1) / j.rows_per);
  return undefined(env);
}

/* ---- context ------------------------------------------------------------------------------------------------- */

static void ctx_release(ctx *c) {
  if (c->disposed) return;
  c->disposed = 1;
  if (c->pool) mn_pool_destroy(c->pool);
  c->pool = NULL;
  for (int64_t i = 0; i < c->nbufs; i++) buf_release(c->bufs[i].p, c->bufs[i].size);
  free(c->bufs);
  free(c->free_idx);
  free(c->attn);
  free(c->xq);
  free(c->mm);
  c->mm = NULL;
  c->bufs = NULL;
  c->free_idx = NULL;
  c->attn = NULL;
  c->xq = NULL;
  c->nbufs = c->cap = c->nfree = 0;
  c->bytes = 0;
}

static void env_cleanup(void *arg) { ctx_release((ctx *)arg); }

static void ctx_finalize(napi_env env, void *data, void *hint) {
  (void)hint;
  ctx *c = (ctx *)data;
  if (!c->disposed) napi_remove_env_cleanup_hook(env, env_cleanup, c);
  ctx_release(c);
  report_bytes(env, c);
  free(c);
}

static napi_value m_dispose(napi_env env, napi_callback_info info) {
  void *data = NULL;
  size_t argc = 0;
  napi_get_cb_info(env, info, &argc, NULL, NULL, &data);
  ctx *c = (ctx *)data;
  if (!c->disposed) {
    napi_remove_env_cleanup_hook(env, env_cleanup, c);
    ctx_release(c);
    report_bytes(env, c);
  }
  return undefined(env);
}

static napi_value m_bytes(napi_env env, napi_callback_info info) {
  void *data = NULL;
  size_t argc = 0;
  napi_get_cb_info(env, info, &argc, NULL, NULL, &data);
  return num(env, (double)((ctx *)data)->bytes);
}

/* Bytes this context has told V8 of (napi_adjust_external_memory calls that succeeded): for tests */
static napi_value m_reported(napi_env env, napi_callback_info info) {
  void *data = NULL;
  size_t argc = 0;
  napi_get_cb_info(env, info, &argc, NULL, NULL, &data);
  return num(env, (double)((ctx *)data)->reported);
}

/* V8's count of external memory (every report of this process, the buffers here included): for tests */
static napi_value m_external(napi_env env, napi_callback_info info) {
  (void)info;
  int64_t total = 0;
  napi_adjust_external_memory(env, 0, &total);
  return num(env, (double)total);
}

/* exp / tanh (out, outOff, x, xOff, n): the kernels' functions, for tests */
static napi_value unary(napi_env env, napi_callback_info info, int which) {
  BEGIN(which ? "tanh" : "exp", 5);
  int64_t oh = I(0), oo = I(1), xh = I(2), xo = I(3), n = I(4);
  CHECK;
  if (n < 0) return throw_range(env, "native exp: bad size");
  float *o = (float *)AT(oh, oo, mul2(n, 4));
  const float *x = (const float *)AT(xh, xo, mul2(n, 4));
  CHECK;
  (which ? c->k->tanh : c->k->exp)(o, x, n);
  return undefined(env);
}
static napi_value m_exp(napi_env env, napi_callback_info info) { return unary(env, info, 0); }
static napi_value m_tanh(napi_env env, napi_callback_info info) { return unary(env, info, 1); }

static const mn_level *find_level(const char *name, mn_level *all, int n) {
  for (int i = 0; i < n; i++)
    if (strcmp(all[i].name, name) == 0) return &all[i];
  return NULL;
}

/* createContext(level: string, threads: number, spinNs: number) */
static napi_value create_context(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 3) return throw_type(env, "native createContext: missing arguments");
  char name[32];
  size_t len;
  if (napi_get_value_string_utf8(env, argv[0], name, sizeof name, &len) != napi_ok)
    return throw_type(env, "native createContext: level must be a string");
  int ok = 1;
  const char *OP = "createContext";
  int64_t threads = arg_i(env, argv[1], OP, &ok), spin = arg_i(env, argv[2], OP, &ok);
  if (!ok) return NULL;
  if (threads < 1 || threads > 256) return throw_range(env, "native createContext: threads must be in [1, 256]");
  mn_level all[8];
  int n = mn_levels(all, 8);
  const mn_level *lv = find_level(name, all, n);
  if (!lv) return throw_range(env, "native createContext: unknown level %s", name);
  if (!lv->supported) return throw_range(env, "native createContext: this CPU cannot run level %s", name);
  ctx *c = (ctx *)calloc(1, sizeof *c);
  if (!c) return throw_range(env, "native createContext: out of memory");
  c->k = lv->kernels;
  c->level = lv->name;
  c->threads = (int)threads;
  c->env = env;
  c->pool = mn_pool_create((int)threads, spin);
  if (!c->pool) {
    free(c);
    return throw_range(env, "native createContext: could not start %lld threads", (long long)threads);
  }
  napi_value obj;
  napi_create_object(env, &obj);
  struct {
    const char *name;
    napi_callback fn;
  } methods[] = {
      {"alloc", m_alloc},         {"free", m_free},       {"write", m_write},     {"read", m_read},
      {"copy", m_copy},           {"fill", m_fill},       {"pack", m_pack},       {"repack", m_repack},
      {"readFile", m_read_file},  {"packFile", m_pack_file},  {"toF32", m_to_f32},    {"matmul", m_matmul},   {"embedding", m_embedding},
      {"rmsnorm", m_rmsnorm},     {"rope", m_rope},       {"add", m_add},         {"swiglu", m_swiglu},
      {"softmax", m_softmax},     {"argmax", m_argmax},   {"attention", m_attention}, {"exp", m_exp},
      {"tanh", m_tanh},           {"geluGlu", m_gelu_glu}, {"softcap", m_softcap}, {"scale", m_scale},
      {"bytes", m_bytes},         {"dispose", m_dispose}, {"ggmlBytes", m_ggml_bytes}, {"ggmlPack", m_ggml_pack},
      {"external", m_external},   {"reported", m_reported},
      {"ggmlPackBuf", m_ggml_pack_buf}, {"writeKv", m_write_kv}, {"ggmlPackFile", m_ggml_pack_file},
  };
  for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
    napi_value fn;
    napi_create_function(env, methods[i].name, NAPI_AUTO_LENGTH, methods[i].fn, c, &fn);
    napi_set_named_property(env, obj, methods[i].name, fn);
  }
  napi_value lvname, th;
  napi_create_string_utf8(env, lv->name, NAPI_AUTO_LENGTH, &lvname);
  napi_create_int32(env, (int32_t)threads, &th);
  napi_set_named_property(env, obj, "level", lvname);
  napi_set_named_property(env, obj, "threads", th);
  napi_add_finalizer(env, obj, c, ctx_finalize, NULL, NULL);
  napi_add_env_cleanup_hook(env, env_cleanup, c);
  return obj;
}

/* levels(): [{ name, supported }] lowest first */
static napi_value levels(napi_env env, napi_callback_info info) {
  (void)info;
  mn_level all[8];
  int n = mn_levels(all, 8);
  napi_value arr;
  napi_create_array_with_length(env, (size_t)n, &arr);
  for (int i = 0; i < n; i++) {
    napi_value o, nm, sup;
    napi_create_object(env, &o);
    napi_create_string_utf8(env, all[i].name, NAPI_AUTO_LENGTH, &nm);
    napi_get_boolean(env, all[i].supported != 0, &sup);
    napi_set_named_property(env, o, "name", nm);
    napi_set_named_property(env, o, "supported", sup);
    napi_set_element(env, arr, (uint32_t)i, o);
  }
  return arr;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  napi_create_function(env, "createContext", NAPI_AUTO_LENGTH, create_context, NULL, &fn);
  napi_set_named_property(env, exports, "createContext", fn);
  napi_create_function(env, "levels", NAPI_AUTO_LENGTH, levels, NULL, &fn);
  napi_set_named_property(env, exports, "levels", fn);
  napi_value v;
  napi_create_string_utf8(env, "1", NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, exports, "abi", v);
  return exports;
}
