/* kernels.c: ls_matmul and weight rows. Two paths over the same quantized
 * (or rounded) activations, differing only in float rounding:
 *  - multi-row (decode, verification batches): each thread takes a range of
 *    weight rows, quantizes (or rounds) all activation rows once into its
 *    own scratch, and streams its weight rows once for the whole batch;
 *    outputs are batch invariant, and LS_MATMUL_EXACT makes the quantized
 *    ones llama.cpp's bit for bit;
 *  - sgemm (large batches, where OpenBLAS is fast enough to win):
 *    activations are quantized and dequantized exactly as the integer path
 *    sees them, weight tiles are dequantized to f32 in per-thread scratch
 *    and multiplied by OpenBLAS (one thread each; this pool owns the cores).
 *    Q4_1's block mins multiply the fp16 Q8_1 block sums in a second, 32x
 *    smaller sgemm, as llama.cpp's dot does.
 * Quantized kernels live in kernels_q.c, the pool in kernels_pool.c. */
#include "kernels_impl.h"

#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LS_ALWAYS_INLINE static inline __attribute__((always_inline))

size_t ls_weight_row_bytes(const ls_weight *w) {
    return (size_t)(w->cols / ls_type_block_elems(w->type)) * ls_type_block_bytes(w->type);
}

static inline float bf2f(uint16_t h) { return ls_bf16_to_f32(h); }

/* ---- dequantization of rows ----
 * mins == NULL: full values (Q4_1/Q5_1 as fma(q, d, m), as ggml's dequantize);
 * mins != NULL (Q4_1/Q5_1 only): d*q into dst and the block mins into mins[nb]. */
LS_ALWAYS_INLINE void dequant_row(ls_type t, const uint8_t *src, int64_t cols, float *dst, float *mins) {
    const int64_t nb = cols / LS_K_QK;
    switch (t) {
    case LS_TYPE_F32: memcpy(dst, src, (size_t)cols * 4); return;
    case LS_TYPE_F16: ls_f16_to_f32_row(dst, (const uint16_t *)(const void *)src, cols); return;
    case LS_TYPE_BF16: {
        int64_t i = 0;
#if LS_K_AVX2
        for (; i + 8 <= cols; i += 8) {
            __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(src + 2 * i)));
            _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(_mm256_slli_epi32(v, 16)));
        }
#endif
        for (; i < cols; i++) dst[i] = bf2f(ls_k_rd16(src + 2 * i));
        return;
    }
    case LS_TYPE_Q2_K:
    case LS_TYPE_Q3_K:
    case LS_TYPE_Q4_K:
    case LS_TYPE_Q5_K:
    case LS_TYPE_Q6_K:
    case LS_TYPE_IQ4_NL:
    case LS_TYPE_IQ4_XS: ls_k_dequant_row(t, src, cols, dst); return;
    case LS_TYPE_Q4_0:
    case LS_TYPE_Q4_1:
    case LS_TYPE_Q5_0:
    case LS_TYPE_Q5_1:
    case LS_TYPE_Q8_0: {
        const size_t bb = ls_type_block_bytes(t);
        const bool has_m = ls_k_has_min(t);
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *blk = src + (size_t)b * bb;
            float *o = dst + b * LS_K_QK;
            const float d = ls_k_h2f(ls_k_rd16(blk));
            const float m = has_m ? ls_k_h2f(ls_k_rd16(blk + 2)) : 0.0f;
            const float mm = mins ? 0.0f : m;
            if (mins) mins[b] = m;
#if LS_K_AVX2
            if (!ls_k_is_q5(t)) { /* Q5 takes the scalar unpack below (embeddings and sgemm tiles only) */
                __m256i q8;
                if (t == LS_TYPE_Q8_0) {
                    q8 = _mm256_loadu_si256((const __m256i *)(blk + 2));
                } else {
                    const __m128i x = _mm_loadu_si128((const __m128i *)(blk + ls_k_qs_off(t)));
                    q8 = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(x, 4), x), _mm256_set1_epi8(0x0F));
                    if (t == LS_TYPE_Q4_0) q8 = _mm256_sub_epi8(q8, _mm256_set1_epi8(8));
                }
                const __m256 dv = _mm256_set1_ps(d);
                const __m256 mv = _mm256_set1_ps(mm);
                const __m128i lo = _mm256_castsi256_si128(q8), hi = _mm256_extracti128_si256(q8, 1);
                const __m256i q[4] = {_mm256_cvtepi8_epi32(lo), _mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8)),
                                      _mm256_cvtepi8_epi32(hi), _mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8))};
                for (int k = 0; k < 4; k++) {
                    const __m256 f = _mm256_cvtepi32_ps(q[k]);
                    _mm256_storeu_ps(o + 8 * k, has_m ? _mm256_fmadd_ps(f, dv, mv) : _mm256_mul_ps(f, dv));
                }
                continue;
            }
#endif
            int q[LS_K_QK];
            ls_k_block_ints(t, blk, q);
            for (int j = 0; j < LS_K_QK; j++) o[j] = has_m ? fmaf((float)q[j], d, mm) : (float)q[j] * d;
        }
        return;
    }
    }
    abort();
}

void ls_weight_get_row(const ls_weight *w, int64_t r, float *out) {
    const size_t rb = ls_weight_row_bytes(w);
    dequant_row(w->type, (const uint8_t *)w->data + (size_t)r * rb, w->cols, out, NULL);
}

/* ---- multi-row kernels for float weights ---- */

#if LS_K_AVX2
LS_ALWAYS_INLINE __m256 load_w8(ls_type t, const uint8_t *p) {
    if (t == LS_TYPE_F32) return _mm256_loadu_ps((const float *)(const void *)p);
    if (t == LS_TYPE_F16) return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
}
#endif

LS_ALWAYS_INLINE float load_w1(ls_type t, const uint8_t *p, int64_t k) {
    if (t == LS_TYPE_F32) {
        float f;
        memcpy(&f, p + 4 * k, 4);
        return f;
    }
    if (t == LS_TYPE_F16) return ls_k_h2f(ls_k_rd16(p + 2 * k));
    return bf2f(ls_k_rd16(p + 2 * k));
}

#ifndef LS_F_PREFETCH_GROUPS
#define LS_F_PREFETCH_GROUPS 1
#endif

/* y[c*ys + r] = dot(W row r, x row c0+c), R weight rows x C activation rows */
LS_ALWAYS_INLINE void f_tile(const ls_type t, const int R, const int C, const uint8_t *w, size_t rb,
                             const float *x, int64_t cols, int64_t c0, float *y, int64_t ys) {
    const float *x0 = x + c0 * cols;
    int64_t k = 0;
    float s[4][4];
#if LS_K_AVX2
    const size_t es = t == LS_TYPE_F32 ? 4 : 2;
    __m256 acc[4][4];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int c = 0; c < C; c++) acc[r][c] = _mm256_setzero_ps();
    for (; k + 8 <= cols; k += 8) {
        __m256 wv[4];
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) wv[r] = load_w8(t, w + (size_t)r * rb + (size_t)k * es);
#pragma GCC unroll 4
        for (int c = 0; c < C; c++) {
            const __m256 xv = _mm256_loadu_ps(x0 + c * cols + k);
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) acc[r][c] = _mm256_fmadd_ps(wv[r], xv, acc[r][c]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int c = 0; c < C; c++) s[r][c] = ls_k_hsum8(acc[r][c]);
#else /* the same lanes and fused steps in scalar code (bit for bit) */
    float acc[4][4][8] = {{{0}}};
    for (; k + 8 <= cols; k += 8)
        for (int r = 0; r < R; r++)
            for (int l = 0; l < 8; l++) {
                const float wk = load_w1(t, w + (size_t)r * rb, k + l);
                for (int c = 0; c < C; c++) acc[r][c][l] = fmaf(wk, x0[c * cols + k + l], acc[r][c][l]);
            }
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) s[r][c] = ls_k_hsum8_model(acc[r][c]);
#endif
    for (; k < cols; k++)
        for (int r = 0; r < R; r++) {
            const float wk = load_w1(t, w + (size_t)r * rb, k);
            for (int c = 0; c < C; c++) s[r][c] += wk * x0[c * cols + k];
        }
#pragma GCC unroll 4
    for (int c = 0; c < C; c++)
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) y[(c0 + c) * ys + r] = s[r][c];
}

LS_ALWAYS_INLINE void f_rows(const ls_type t, const uint8_t *w, size_t rb, const float *x, int64_t cols, int64_t n,
                             int64_t r0, int64_t r1, float *y, int64_t ys) {
    for (int64_t r = r0; r < r1; r += 4) {
        const int64_t g = r1 - r < 4 ? r1 - r : 4;
        const uint8_t *wr = w + (size_t)r * rb;
#if LS_K_AVX2
        { /* the tile walks 4 rows at once, too many streams for the hardware
           * prefetcher to run far ahead: request the next rows' lines now */
            const uint8_t *pf = wr + (size_t)(4 * LS_F_PREFETCH_GROUPS) * rb;
            const uint8_t *pe = pf + 4 * rb, *lim = w + (size_t)r1 * rb;
            for (; pf < pe && pf < lim; pf += 64) _mm_prefetch((const char *)pf, _MM_HINT_T1);
        }
#endif
        for (int64_t c0 = 0; c0 < n; c0 += 4) {
            const int C = n - c0 < 4 ? (int)(n - c0) : 4;
            if (g == 4) {
                switch (C) {
                case 1: f_tile(t, 4, 1, wr, rb, x, cols, c0, y + r, ys); break;
                case 2: f_tile(t, 4, 2, wr, rb, x, cols, c0, y + r, ys); break;
                case 3:
                    f_tile(t, 2, 3, wr, rb, x, cols, c0, y + r, ys);
                    f_tile(t, 2, 3, wr + 2 * rb, rb, x, cols, c0, y + r + 2, ys);
                    break;
                default:
                    f_tile(t, 2, 4, wr, rb, x, cols, c0, y + r, ys);
                    f_tile(t, 2, 4, wr + 2 * rb, rb, x, cols, c0, y + r + 2, ys);
                    break;
                }
            } else {
                for (int64_t k = 0; k < g; k++) {
                    switch (C) {
                    case 1: f_tile(t, 1, 1, wr + k * rb, rb, x, cols, c0, y + r + k, ys); break;
                    case 2: f_tile(t, 1, 2, wr + k * rb, rb, x, cols, c0, y + r + k, ys); break;
                    case 3: f_tile(t, 1, 3, wr + k * rb, rb, x, cols, c0, y + r + k, ys); break;
                    default: f_tile(t, 1, 4, wr + k * rb, rb, x, cols, c0, y + r + k, ys); break;
                    }
                }
            }
        }
    }
}

/* activations as the float-weight dot sees them: rounded to fp16 / bf16 */
static void round_act(ls_type t, const float *x, int64_t count, float *out) {
    if (t == LS_TYPE_F16) {
        int64_t i = 0;
#if LS_K_AVX2
        for (; i + 8 <= count; i += 8)
            _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm256_cvtps_ph(_mm256_loadu_ps(x + i), 0)));
#endif
        for (; i < count; i++) out[i] = ls_k_h2f(ls_k_f2h(x[i]));
    } else {
        for (int64_t i = 0; i < count; i++) out[i] = bf2f(ls_f32_to_bf16(x[i]));
    }
}

/* ---- multi-row path ---- */

typedef struct mr_job {
    const ls_weight *w;
    const float *x;
    int64_t n;
    float *y;
    bool exact;
} mr_job;

static void mr_worker(void *arg, int ith, int nth) {
    const mr_job *j = arg;
    const ls_weight *w = j->w;
    const int64_t rows = w->rows, cols = w->cols, n = j->n;
    /* contiguous row ranges, multiples of 4 so tiles stay full */
    const int64_t per = ((rows + nth - 1) / nth + 3) / 4 * 4;
    const int64_t r0 = per * ith, r1 = r0 + per < rows ? r0 + per : rows;
    if (r0 >= r1) return;
    const size_t rb = ls_weight_row_bytes(w);
    const ls_type t = w->type;
    if (ls_k_is_quant(t)) {
        ls_k_qact a;
        ls_k_qact_init(t, j->x, n, cols, ls_k_scratch(LS_K_SLOT_ACT, ls_k_qact_bytes(t, n, cols)), &a);
        ls_k_q_rows(w, &a, r0, r1, j->y, ls_k_scratch(LS_K_SLOT_AUX, ls_k_q_aux_bytes(cols)), j->exact);
        return;
    }
    const float *x = j->x;
    if (t != LS_TYPE_F32) {
        float *xr = ls_k_scratch(LS_K_SLOT_ACT, (size_t)(n * cols) * sizeof(float));
        round_act(t, j->x, n * cols, xr);
        x = xr;
    }
    const uint8_t *wd = w->data;
    switch (t) {
    case LS_TYPE_F32: f_rows(LS_TYPE_F32, wd, rb, x, cols, n, r0, r1, j->y, rows); break;
    case LS_TYPE_F16: f_rows(LS_TYPE_F16, wd, rb, x, cols, n, r0, r1, j->y, rows); break;
    case LS_TYPE_BF16: f_rows(LS_TYPE_BF16, wd, rb, x, cols, n, r0, r1, j->y, rows); break;
    default: abort();
    }
}

static void check_shape(const ls_weight *w, int64_t n) {
    if (!ls_type_is_supported((uint32_t)w->type) || w->rows < 0 || w->cols <= 0 || n < 0 ||
        w->cols % ls_type_block_elems(w->type) != 0) {
        fprintf(stderr, "ls_matmul: bad weight (type %d, %lld x %lld) or n %lld\n", (int)w->type,
                (long long)w->rows, (long long)w->cols, (long long)n);
        abort();
    }
}

static void multirow(ls_pool *pool, const ls_weight *w, const float *x, int64_t n, float *y, bool exact) {
    check_shape(w, n);
    if (n == 0 || w->rows == 0) return;
    mr_job j = {.w = w, .x = x, .n = n, .y = y, .exact = exact};
    ls_k_run(pool, mr_worker, &j);
}

void ls_matmul_multirow(ls_pool *pool, const ls_weight *w, const float *x, int64_t n, float *y) {
    multirow(pool, w, x, n, y, false);
}

/* ---- sgemm path ---- */

typedef struct gemm_job {
    const ls_weight *w;
    const float *x;
    int64_t n;
    float *y;
    float *xa;      /* n x cols activations as the dot sees them */
    float *s;       /* n x nb Q8_1 block sums (Q4_1) */
    int64_t tile;   /* weight rows per tile */
    int64_t mtiles; /* activation row splits */
    atomic_llong next;
} gemm_job;

static void gemm_prep_worker(void *arg, int ith, int nth) {
    gemm_job *j = arg;
    const ls_type t = j->w->type;
    const int64_t cols = j->w->cols, nb = cols / LS_K_QK;
    const int64_t i0 = j->n * ith / nth, i1 = j->n * (ith + 1) / nth;
    if (i0 >= i1) return;
    if (!ls_k_is_quant(t)) {
        round_act(t, j->x + i0 * cols, (i1 - i0) * cols, j->xa + i0 * cols);
        return;
    }
    uint8_t *buf = ls_k_scratch(LS_K_SLOT_AUX, (size_t)cols + (size_t)nb * 2 * sizeof(float) + 64);
    int8_t *q = (int8_t *)buf;
    float *d = (float *)(void *)(buf + (cols + 63) / 64 * 64);
    float *sq = d + nb;
    for (int64_t i = i0; i < i1; i++) {
        ls_k_quant_row(j->x + i * cols, cols, q, d, ls_k_has_min(t) ? sq : NULL);
        float *o = j->xa + i * cols;
        for (int64_t b = 0; b < nb; b++) {
            const float db = d[b];
            int64_t k = 0;
#if LS_K_AVX2
            const __m256 dv = _mm256_set1_ps(db);
            for (; k < LS_K_QK; k += 8) {
                const __m256i qi = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(q + b * LS_K_QK + k)));
                _mm256_storeu_ps(o + b * LS_K_QK + k, _mm256_mul_ps(_mm256_cvtepi32_ps(qi), dv));
            }
#endif
            for (; k < LS_K_QK; k++) o[b * LS_K_QK + k] = (float)q[b * LS_K_QK + k] * db;
            if (ls_k_has_min(t)) j->s[i * nb + b] = sq[b];
        }
    }
}

static void gemm_tile_worker(void *arg, int ith, int nth) {
    (void)ith;
    (void)nth;
    gemm_job *j = arg;
    const ls_weight *w = j->w;
    const ls_type t = w->type;
    const int64_t rows = w->rows, cols = w->cols, nb = cols / LS_K_QK, n = j->n;
    const int64_t wtiles = (rows + j->tile - 1) / j->tile, ntiles = wtiles * j->mtiles;
    const size_t rb = ls_weight_row_bytes(w);
    float *tile = NULL, *mins = NULL;
    int64_t have = -1; /* weight tile now dequantized in this thread's scratch */
    for (;;) {
        const int64_t ti = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed);
        if (ti >= ntiles) break;
        /* consecutive tiles share a weight tile: a thread often reuses its own */
        const int64_t wi = ti / j->mtiles, mi = ti % j->mtiles;
        const int64_t r0 = wi * j->tile, m = rows - r0 < j->tile ? rows - r0 : j->tile;
        const int64_t i0 = n * mi / j->mtiles, i1 = n * (mi + 1) / j->mtiles;
        const uint8_t *src = (const uint8_t *)w->data + (size_t)r0 * rb;
        const float *B;
        if (t == LS_TYPE_F32) {
            B = (const float *)(const void *)src;
        } else {
            if (!tile) {
                tile = ls_k_scratch(LS_K_SLOT_TILE, (size_t)(j->tile * cols) * sizeof(float));
                if (ls_k_has_min(t)) mins = ls_k_scratch(LS_K_SLOT_AUX, (size_t)(j->tile * nb) * sizeof(float));
            }
            if (have != wi)
                for (int64_t r = 0; r < m; r++)
                    dequant_row(t, src + (size_t)r * rb, cols, tile + r * cols, mins ? mins + r * nb : NULL);
            have = wi;
            B = tile;
        }
        const float *A = (t == LS_TYPE_F32 ? j->x : j->xa) + i0 * cols;
        float *C = j->y + i0 * rows + r0;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)(i1 - i0), (int)m, (int)cols, 1.0f, A, (int)cols, B,
                    (int)cols, 0.0f, C, (int)rows);
        if (ls_k_has_min(t))
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)(i1 - i0), (int)m, (int)nb, 1.0f, j->s + i0 * nb,
                        (int)nb, mins, (int)nb, 1.0f, C, (int)rows);
    }
}

void ls_matmul_sgemm(ls_pool *pool, const ls_weight *w, const float *x, int64_t n, float *y) {
    check_shape(w, n);
    if (n == 0 || w->rows == 0) return;
    if (ls_k_is_quant(w->type) && !ls_k_is_q32(w->type)) { /* K-quants, IQ4: no sgemm path (yet) */
        multirow(pool, w, x, n, y, true);
        return;
    }
    const ls_type t = w->type;
    const int64_t cols = w->cols, nb = cols / LS_K_QK;
    const int nth = ls_pool_size(pool);
    gemm_job j = {.w = w, .x = x, .n = n, .y = y};
    atomic_init(&j.next, 0);
    /* Tiles of up to 128 weight rows (sgemm is poor on narrow ones); when
     * that gives fewer than 3 tiles a thread, the activation rows are split
     * too (each split dequantizes its weight tile again, cheap next to the
     * product). */
    j.tile = w->rows < 128 ? w->rows : 128;
    const int64_t wtiles = (w->rows + j.tile - 1) / j.tile;
    int64_t mt = (3 * nth + wtiles - 1) / wtiles;
    const int64_t mt_max = (n + 15) / 16; /* at least 16 activation rows a tile */
    j.mtiles = mt < 1 ? 1 : mt > mt_max ? mt_max : mt;
    if (t != LS_TYPE_F32) {
        const size_t xa = (size_t)(n * cols), s = ls_k_has_min(t) ? (size_t)(n * nb) : 0;
        float *buf = ls_k_scratch(LS_K_SLOT_ACT, (xa + s) * sizeof(float));
        j.xa = buf;
        j.s = s ? buf + xa : NULL;
        ls_k_run(pool, gemm_prep_worker, &j);
    }
    ls_k_run(pool, gemm_tile_worker, &j);
}

/* Where sgemm overtakes the multi-row kernels, by OpenBLAS's kernel (its
 * runtime CPU choice) and ours (compile time); fixed for a process, so
 * results do not depend on timing. Measured with kernel-bench on
 * SmolLM2-135M shapes:
 *  - AVX2 sgemm ("Haswell", "Zen"; ~70 GFLOP/s a core on an AMD EPYC): the
 *    integer multi-row kernels match or beat it up to 256 rows (on the real
 *    model's mix of small matrices: 306 vs 270 positions/s at n = 128 on one
 *    thread, 461 vs 396 on two); float multi-row (~40-60 GFLOP/s) loses from
 *    32 (F16/BF16) or 16 (F32) rows.
 *  - AVX-512 sgemm ("SkylakeX", "Cooperlake", "SapphireRapids"; 135-170
 *    GFLOP/s a core measured on a Xeon): from 32 / 16 / 8 rows.
 *  - other OpenBLAS kernels are generic and slow: multi-row only.
 *  - portable (scalar) builds: our kernels are the slow ones: sgemm from 8 / 4. */
typedef struct sgemm_limits {
    int64_t quant, half, f32;
} sgemm_limits;

static sgemm_limits limits;
static pthread_once_t limits_once = PTHREAD_ONCE_INIT;

#if LS_K_AVX2
static bool core_is(const char *core, const char *const *names) {
    for (; *names; names++)
        if (!strncmp(core, *names, strlen(*names))) return true;
    return false;
}
#endif

static void limits_init(void) {
#if LS_K_AVX2
    static const char *const avx512[] = {"SkylakeX", "Cooperlake", "SapphireRapids", NULL};
    static const char *const avx2[] = {"Haswell", "Zen", "Excavator", NULL};
    const char *core = openblas_get_corename();
    if (!core) core = "";
    if (core_is(core, avx512))
        limits = (sgemm_limits){.quant = 32, .half = 16, .f32 = 8};
    else if (core_is(core, avx2))
        limits = (sgemm_limits){.quant = 256, .half = 32, .f32 = 16};
    else
        limits = (sgemm_limits){.quant = INT64_MAX, .half = INT64_MAX, .f32 = INT64_MAX};
#else
    limits = (sgemm_limits){.quant = 8, .half = 4, .f32 = 4};
#endif
}

int64_t ls_matmul_sgemm_min_n(ls_type t) {
    pthread_once(&limits_once, limits_init);
    if (ls_k_is_quant(t) && !ls_k_is_q32(t)) return INT64_MAX; /* K-quants, IQ4: multi-row only */
    return ls_k_is_quant(t) ? limits.quant : t == LS_TYPE_F32 ? limits.f32 : limits.half;
}

void ls_matmul_ex(ls_pool *pool, const ls_weight *w, const float *x, int64_t n, float *y, unsigned flags) {
    if (flags & LS_MATMUL_EXACT)
        multirow(pool, w, x, n, y, true);
    else if (n >= ls_matmul_sgemm_min_n(w->type))
        ls_matmul_sgemm(pool, w, x, n, y);
    else
        multirow(pool, w, x, n, y, false);
}

void ls_matmul(ls_pool *pool, const ls_weight *w, const float *x, int64_t n, float *y) {
    ls_matmul_ex(pool, w, x, n, y, 0);
}
