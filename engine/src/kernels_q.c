/* kernels_q.c: activation quantization (Q8_0 / Q8_1, llama.cpp's x86
 * rounding) and the multi-row integer kernels for Q4_0, Q4_1, Q5_0, Q5_1
 * and Q8_0 weights. A tile of R weight rows is streamed once and dotted with C
 * activation rows at a time, so a batch of k+1 positions reads each weight
 * once: that is what makes verifying drafted tokens cheap. */
#include "kernels_impl.h"

#include <math.h>
#include <stdlib.h>

#define LS_ALWAYS_INLINE static inline __attribute__((always_inline))

/* ---- activation quantization ---- */

/* one block of 32: q[32], fp16 d and (when sh != NULL) fp16 s */
LS_ALWAYS_INLINE void q8_block(const float *x, int8_t *q, uint16_t *dh, uint16_t *sh) {
#if LS_K_AVX2
    __m256 v0 = _mm256_loadu_ps(x);
    __m256 v1 = _mm256_loadu_ps(x + 8);
    __m256 v2 = _mm256_loadu_ps(x + 16);
    __m256 v3 = _mm256_loadu_ps(x + 24);
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 m = _mm256_andnot_ps(sign, v0);
    m = _mm256_max_ps(m, _mm256_andnot_ps(sign, v1));
    m = _mm256_max_ps(m, _mm256_andnot_ps(sign, v2));
    m = _mm256_max_ps(m, _mm256_andnot_ps(sign, v3));
    __m128 m4 = _mm_max_ps(_mm256_extractf128_ps(m, 1), _mm256_castps256_ps128(m));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    const float amax = _mm_cvtss_f32(m4);
    const float d = amax / 127.f;
    const float id = amax != 0.0f ? 127.f / amax : 0.0f;
    *dh = ls_k_f2h(d);
    const __m256 mul = _mm256_set1_ps(id);
    __m256i i0 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v0, mul), _MM_FROUND_TO_NEAREST_INT));
    __m256i i1 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v1, mul), _MM_FROUND_TO_NEAREST_INT));
    __m256i i2 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v2, mul), _MM_FROUND_TO_NEAREST_INT));
    __m256i i3 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v3, mul), _MM_FROUND_TO_NEAREST_INT));
    if (sh) {
        __m256i s = _mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3));
        __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
        s4 = _mm_add_epi32(s4, _mm_unpackhi_epi64(s4, s4));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, _MM_SHUFFLE(2, 3, 0, 1)));
        *sh = ls_k_f2h(d * (float)_mm_cvtsi128_si32(s4));
    }
    /* pack to int8; the packs work per 128-bit lane, the permute restores order */
    i0 = _mm256_packs_epi32(i0, i1);
    i2 = _mm256_packs_epi32(i2, i3);
    i0 = _mm256_packs_epi16(i0, i2);
    i0 = _mm256_permutevar8x32_epi32(i0, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256((__m256i *)q, i0);
#else
    float amax = 0.0f;
    for (int j = 0; j < LS_K_QK; j++) amax = fmaxf(amax, fabsf(x[j]));
    const float d = amax / 127.f;
    const float id = amax != 0.0f ? 127.f / amax : 0.0f;
    *dh = ls_k_f2h(d);
    int sum = 0;
    for (int j = 0; j < LS_K_QK; j++) {
        float v = rintf(x[j] * id); /* round half to even, as vroundps */
        v = v > 127.f ? 127.f : v < -128.f ? -128.f : v;
        q[j] = (int8_t)v;
        sum += q[j];
    }
    if (sh) *sh = ls_k_f2h(d * (float)sum);
#endif
}

void ls_k_quant_row(const float *x, int64_t cols, int8_t *q, float *dq, float *sq) {
    const int64_t nb = cols / LS_K_QK;
    for (int64_t b = 0; b < nb; b++) {
        uint16_t dh, sh;
        q8_block(x + b * LS_K_QK, q + b * LS_K_QK, &dh, sq ? &sh : NULL);
        dq[b] = ls_k_h2f(dh);
        if (sq) sq[b] = ls_k_h2f(sh);
    }
}

void ls_quantize_row_q8_0(const float *x, int64_t n, void *dst) {
    uint8_t *o = dst;
    for (int64_t b = 0; b < n / LS_K_QK; b++, o += 34) {
        uint16_t dh;
        int8_t q[LS_K_QK];
        q8_block(x + b * LS_K_QK, q, &dh, NULL);
        memcpy(o, &dh, 2);
        memcpy(o + 2, q, LS_K_QK);
    }
}

void ls_quantize_row_q8_1(const float *x, int64_t n, void *dst) {
    uint8_t *o = dst;
    for (int64_t b = 0; b < n / LS_K_QK; b++, o += 36) {
        uint16_t dh, sh;
        int8_t q[LS_K_QK];
        q8_block(x + b * LS_K_QK, q, &dh, &sh);
        memcpy(o, &dh, 2);
        memcpy(o + 2, &sh, 2);
        memcpy(o + 4, q, LS_K_QK);
    }
}

/* ---- activations of a multi-row call ---- */

static size_t align64(size_t v) { return (v + 63) / 64 * 64; }

size_t ls_k_qact_bytes(ls_type wt, int64_t n, int64_t cols) {
    if (ls_k_is_super(wt)) {
        const int64_t nsb = cols / 256;
        return align64((size_t)(n * cols)) + align64((size_t)(n * nsb) * sizeof(float)) +
               align64((size_t)(n * nsb) * 16 * sizeof(int16_t));
    }
    const int64_t nb = cols / LS_K_QK, nbp = (nb + 7) / 8 * 8;
    size_t bytes = align64((size_t)(n * cols));
    bytes += align64((size_t)(n * nbp) * (ls_k_has_min(wt) ? 2 : 1) * sizeof(float));
    if (wt == LS_TYPE_Q4_0) bytes += align64((size_t)(n * nb) * 8 * sizeof(int32_t));
    return bytes;
}

void ls_k_qact_init(ls_type wt, const float *x, int64_t n, int64_t cols, void *buf, ls_k_qact *a) {
    if (ls_k_is_super(wt)) { /* Q8_K */
        const int64_t nsb = cols / 256;
        uint8_t *p = buf;
        int8_t *q = (int8_t *)p;
        p += align64((size_t)(n * cols));
        float *d = (float *)(void *)p;
        p += align64((size_t)(n * nsb) * sizeof(float));
        int16_t *bs = (int16_t *)(void *)p;
        for (int64_t i = 0; i < n; i++) ls_k_quant_row_q8k(x + i * cols, cols, q + i * cols, d + i * nsb, bs + i * nsb * 16);
        *a = (ls_k_qact){.n = n, .cols = cols, .nb = nsb, .nbp = nsb, .q = q, .d = d, .bsums = bs};
        return;
    }
    const int64_t nb = cols / LS_K_QK, nbp = (nb + 7) / 8 * 8;
    const bool q41 = ls_k_has_min(wt); /* Q8_1-style activations */
    const int64_t sl = q41 ? 2 * nbp : nbp;
    uint8_t *p = buf;
    int8_t *q = (int8_t *)p;
    p += align64((size_t)(n * cols));
    float *d = (float *)(void *)p;
    p += align64((size_t)(n * sl) * sizeof(float));
    int32_t *corr = wt == LS_TYPE_Q4_0 ? (int32_t *)(void *)p : NULL;
    for (int64_t i = 0; i < n; i++) {
        float *di = d + i * sl;
        for (int64_t b = 0; b < nb; b++) {
            uint16_t dh, sh;
            int8_t *qb = q + i * cols + b * LS_K_QK;
            q8_block(x + i * cols + b * LS_K_QK, qb, &dh, q41 ? &sh : NULL);
            if (q41) {
                di[2 * b] = ls_k_h2f(dh);
                di[2 * b + 1] = ls_k_h2f(sh);
            } else {
                di[b] = ls_k_h2f(dh);
            }
            if (corr) {
                int32_t *cb = corr + (i * nb + b) * 8;
                for (int k = 0; k < 8; k++) cb[k] = 8 * (qb[4 * k] + qb[4 * k + 1] + qb[4 * k + 2] + qb[4 * k + 3]);
            }
        }
        for (int64_t k = q41 ? 2 * nb : nb; k < sl; k++) di[k] = 0.0f;
    }
    *a = (ls_k_qact){.n = n, .cols = cols, .nb = nb, .nbp = nbp, .q = q, .d = d, .corr = corr, .bsums = NULL};
}

size_t ls_k_q_aux_bytes(int64_t cols) {
    const int64_t nbp = (cols / LS_K_QK + 7) / 8 * 8;
    /* scales of up to 8 (row, activation) pairs; (d, m) pairs for Q4_1 */
    return (size_t)(8 * 2 * nbp) * sizeof(float) + 64;
}

/* ---- multi-row kernels ---- */

/* No software prefetch: the rows of a thread are one sequential stream, which
 * the hardware prefetcher follows; explicit prefetches measured 5-30% slower. */

#if LS_K_AVX2

/* sum over groups of 4 of u8 * s8 products, into 8 int32 lanes; no
 * saturation for our operands (|a| <= 128, |b| <= 127: pairs < 32767) */
LS_ALWAYS_INLINE __m256i dot_u8s8(__m256i a, __m256i b) {
#if LS_K_VNNI && defined(__AVX512VNNI__) && defined(__AVX512VL__)
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), a, b);
#elif LS_K_VNNI
    return _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), a, b);
#else
    return _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), _mm256_set1_epi16(1));
#endif
}

/* 16 bytes of nibbles: low nibbles to bytes 0..15, high to 16..31 */
LS_ALWAYS_INLINE __m256i nibbles(const uint8_t *p) {
    const __m256i t = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)p));
    return _mm256_and_si256(_mm256_srlv_epi32(t, _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4)), _mm256_set1_epi8(0x0F));
}

/* 32 bits to 32 bytes: byte j = 0xFF where bit j is set, else 0 */
LS_ALWAYS_INLINE __m256i bits32(const uint8_t *p) {
    uint32_t x;
    memcpy(&x, p, 4);
    const __m256i shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
    const __m256i bytes = _mm256_shuffle_epi8(_mm256_set1_epi32((int)x), shuf);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    return _mm256_cmpeq_epi8(_mm256_and_si256(bytes, bit), bit);
}

/* y[(c0+c)*ys + r] for r < R, c < C: weight rows w + r*rb against
 * activation rows c0+c. A pre-pass turns the rows' fp16 scales into
 * d_w*d_x products (and Q4_1's m_w*s_x) so that the block loop is unpack,
 * integer dot, convert, one fma, per lane exactly as llama.cpp's AVX2 dots.
 * type, exact, R, C are constants at every call site. */
LS_ALWAYS_INLINE void q_tile(const ls_type type, const bool exact, const int R, const int C, const uint8_t *w,
                             size_t rb, const ls_k_qact *a, int64_t c0, float *y, int64_t ys, uint8_t *aux) {
    const int64_t nb = a->nb, nbp = a->nbp, cols = a->cols;
    const bool q41 = ls_k_has_min(type); /* Q4_1, Q5_1: a block min, Q8_1-style activations */
    const bool sgn = type == LS_TYPE_Q8_0 || type == LS_TYPE_Q5_0; /* signed quants: the sign trick */
    const size_t bb = type == LS_TYPE_Q4_0 ? 18 : type == LS_TYPE_Q4_1 ? 20 : type == LS_TYPE_Q5_0 ? 22
                    : type == LS_TYPE_Q5_1 ? 24 : 34;
    const int64_t sl = q41 ? 2 * nbp : nbp; /* floats per scale row */
    float *restrict sc = (float *)(void *)aux;
    __m256 acc[4][4];

    /* Pre-pass: the fp16 scales of 4 blocks come from 4 overlapping loads
     * (block b+k's scale sits at word k, or Q4_1's (d, m) at dword k, of a
     * 16-byte load at (b+k)*bb - 2k or - 4k), are blended, converted and
     * multiplied by the activation scales (zero past the last block). */
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        const uint8_t *wr = w + (size_t)r * rb;
        __m256 macc[4];
#pragma GCC unroll 4
        for (int c = 0; c < C; c++) macc[c] = _mm256_setzero_ps();
        for (int64_t b = 0; b < nb; b += 4) {
            __m128i l[4];
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++)
                l[k] = b + k < nb ? _mm_loadu_si128((const __m128i *)(wr + (size_t)(b + k) * bb - (q41 ? 4 : 2) * k))
                                  : _mm_setzero_si128();
            if (q41) {
                const __m128i dm =
                    _mm_blend_epi32(_mm_blend_epi32(l[0], l[1], 0x2), _mm_blend_epi32(l[2], l[3], 0x8), 0xC);
                const __m256 v = _mm256_cvtph_ps(dm); /* (d, m) of 4 blocks */
#pragma GCC unroll 4
                for (int c = 0; c < C; c++) { /* times (d_x, s_x) */
                    const __m256 t = _mm256_mul_ps(v, _mm256_loadu_ps(a->d + (c0 + c) * sl + 2 * b));
                    _mm256_storeu_ps(sc + (r * C + c) * sl + 2 * b, t);
                    macc[c] = _mm256_add_ps(macc[c], t);
                }
            } else {
                const __m128i dd =
                    _mm_blend_epi16(_mm_blend_epi16(l[0], l[1], 0x2), _mm_blend_epi16(l[2], l[3], 0x8), 0xC);
                const __m128 v = _mm_cvtph_ps(dd);
#pragma GCC unroll 4
                for (int c = 0; c < C; c++)
                    _mm_storeu_ps(sc + (r * C + c) * sl + b, _mm_mul_ps(v, _mm_loadu_ps(a->d + (c0 + c) * sl + b)));
            }
        }
        /* Q4_1, fast order: the odd lanes, m_w*s_x, start the accumulator */
#pragma GCC unroll 4
        for (int c = 0; c < C; c++)
            acc[r][c] = q41 && !exact ? _mm256_blend_ps(_mm256_setzero_ps(), macc[c], 0xAA) : _mm256_setzero_ps();
    }
    /* Q4_1, exact: the m_w*s_x (exact products, odd entries of sc) summed in
     * block order after the rest, as llama.cpp's dot does (~15-20% slower) */
    float summ[4][4] = {{0}};
    if (q41 && exact)
        for (int64_t b = 0; b < nb; b++)
#pragma GCC unroll 4
            for (int r = 0; r < R; r++)
#pragma GCC unroll 4
                for (int c = 0; c < C; c++) summ[r][c] += sc[(r * C + c) * sl + 2 * b + 1];

    const int8_t *qy0 = a->q + c0 * cols;
#pragma GCC unroll 2
    for (int64_t b = 0; b < nb; b++) {
        __m256i aw[4], sw[4];
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const uint8_t *blk = w + (size_t)r * rb + (size_t)b * bb;
            if (type == LS_TYPE_Q8_0) {
                sw[r] = _mm256_loadu_si256((const __m256i *)(blk + 2));
                aw[r] = _mm256_sign_epi8(sw[r], sw[r]);
            } else if (type == LS_TYPE_Q5_0) { /* (nibble | bit << 4) - 16 as int8, as ggml's AVX2 dot */
                sw[r] = _mm256_or_si256(nibbles(blk + 6), _mm256_andnot_si256(bits32(blk + 2), _mm256_set1_epi8((char)0xF0)));
                aw[r] = _mm256_sign_epi8(sw[r], sw[r]);
            } else if (type == LS_TYPE_Q5_1) {
                aw[r] = _mm256_or_si256(nibbles(blk + 8), _mm256_and_si256(bits32(blk + 4), _mm256_set1_epi8(0x10)));
                sw[r] = aw[r];
            } else {
                aw[r] = nibbles(blk + (q41 ? 4 : 2));
                sw[r] = aw[r];
            }
        }
#pragma GCC unroll 4
        for (int c = 0; c < C; c++) {
            const __m256i qy = _mm256_loadu_si256((const __m256i *)(qy0 + c * cols + b * LS_K_QK));
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                const __m256i by = sgn ? _mm256_sign_epi8(qy, sw[r]) : qy;
                __m256i p = dot_u8s8(aw[r], by);
                if (type == LS_TYPE_Q4_0)
                    p = _mm256_sub_epi32(p, _mm256_loadu_si256((const __m256i *)(a->corr + ((c0 + c) * nb + b) * 8)));
                const __m256 s = _mm256_broadcast_ss(sc + (r * C + c) * sl + (q41 ? 2 * b : b));
                acc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), s, acc[r][c]);
            }
        }
    }
    /* one reduction for every tile shape: an output does not depend on the
     * batch it was computed in (verifying k+1 positions gives exactly the
     * logits of k+1 single steps) */
#pragma GCC unroll 4
    for (int c = 0; c < C; c++)
#pragma GCC unroll 4
        for (int r = 0; r < R; r++)
            y[(c0 + c) * ys + r] = q41 && exact ? ls_k_hsum8(acc[r][c]) + summ[r][c] : ls_k_hsum8(acc[r][c]);
}

LS_ALWAYS_INLINE void q_rows(const ls_type type, const bool exact, const uint8_t *w, size_t rb, const ls_k_qact *a,
                             int64_t r0, int64_t r1, float *y, int64_t ys, uint8_t *aux) {
    const int64_t n = a->n;
    for (int64_t r = r0; r < r1; r += 4) {
        const int64_t g = r1 - r < 4 ? r1 - r : 4;
        const uint8_t *wr = w + (size_t)r * rb;
        for (int64_t c0 = 0; c0 < n; c0 += 4) {
            const int C = n - c0 < 4 ? (int)(n - c0) : 4;
            if (g == 4) {
                switch (C) {
                case 1: q_tile(type, exact, 4, 1, wr, rb, a, c0, y + r, ys, aux); break;
                case 2: q_tile(type, exact, 4, 2, wr, rb, a, c0, y + r, ys, aux); break;
                case 3:
                    q_tile(type, exact, 2, 3, wr, rb, a, c0, y + r, ys, aux);
                    q_tile(type, exact, 2, 3, wr + 2 * rb, rb, a, c0, y + r + 2, ys, aux);
                    break;
                default:
                    q_tile(type, exact, 2, 4, wr, rb, a, c0, y + r, ys, aux);
                    q_tile(type, exact, 2, 4, wr + 2 * rb, rb, a, c0, y + r + 2, ys, aux);
                    break;
                }
            } else {
                for (int64_t k = 0; k < g; k++) {
                    switch (C) {
                    case 1: q_tile(type, exact, 1, 1, wr + k * rb, rb, a, c0, y + r + k, ys, aux); break;
                    case 2: q_tile(type, exact, 1, 2, wr + k * rb, rb, a, c0, y + r + k, ys, aux); break;
                    case 3: q_tile(type, exact, 1, 3, wr + k * rb, rb, a, c0, y + r + k, ys, aux); break;
                    default: q_tile(type, exact, 1, 4, wr + k * rb, rb, a, c0, y + r + k, ys, aux); break;
                    }
                }
            }
        }
    }
}

#else /* portable: a scalar model of the AVX2 tile above, bit for bit */

/* Each (weight row, activation row) pair as q_tile computes it: lane l of
 * block b holds the exact integer sum of products of elements 4l..4l+3,
 * converted to float and fused into lane l of the accumulator with the
 * block's d_w*d_x; Q4_1/Q5_1 add m_w*s_x in lanes (fast order: odd lane
 * 2k+1 starts with the blocks b = k mod 4) or after the reduction in block
 * order (exact). fmaf is the fused multiply-add the vector path uses. */
LS_ALWAYS_INLINE void q_rows(const ls_type type, const bool exact, const uint8_t *w, size_t rb, const ls_k_qact *a,
                             int64_t r0, int64_t r1, float *y, int64_t ys, uint8_t *aux) {
    (void)aux;
    const int64_t nb = a->nb, cols = a->cols;
    const bool q41 = ls_k_has_min(type);
    const int64_t sl = q41 ? 2 * a->nbp : a->nbp;
    const size_t bb = ls_type_block_bytes(type);
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *wr = w + (size_t)r * rb;
        for (int64_t i = 0; i < a->n; i++) {
            const int8_t *qy = a->q + i * cols;
            const float *di = a->d + i * sl;
            float acc[8] = {0}, summ = 0.0f;
            if (q41 && !exact)
                for (int64_t b = 0; b < nb; b++)
                    acc[2 * (b & 3) + 1] += ls_k_h2f(ls_k_rd16(wr + (size_t)b * bb + 2)) * di[2 * b + 1];
            if (q41 && exact)
                for (int64_t b = 0; b < nb; b++) summ += ls_k_h2f(ls_k_rd16(wr + (size_t)b * bb + 2)) * di[2 * b + 1];
            for (int64_t b = 0; b < nb; b++) {
                const uint8_t *blk = wr + (size_t)b * bb;
                const int8_t *yb = qy + b * LS_K_QK;
                const float s = ls_k_h2f(ls_k_rd16(blk)) * di[q41 ? 2 * b : b];
                int qw[LS_K_QK];
                ls_k_block_ints(type, blk, qw);
                for (int l = 0; l < 8; l++) {
                    int lane = 0;
                    for (int e = 4 * l; e < 4 * l + 4; e++) lane += qw[e] * yb[e];
                    acc[l] = fmaf((float)lane, s, acc[l]);
                }
            }
            y[i * ys + r] = q41 && exact ? ls_k_hsum8_model(acc) + summ : ls_k_hsum8_model(acc);
        }
    }
}

#endif

void ls_k_q_rows(const ls_weight *w, const ls_k_qact *a, int64_t r0, int64_t r1, float *y, void *aux, bool exact) {
    const uint8_t *wd = w->data;
    const size_t rb = ls_weight_row_bytes(w);
    switch (w->type) { /* Q4_0 and Q8_0 sum in llama.cpp's order either way */
    case LS_TYPE_Q4_0: q_rows(LS_TYPE_Q4_0, false, wd, rb, a, r0, r1, y, w->rows, aux); break;
    case LS_TYPE_Q4_1:
        if (exact) q_rows(LS_TYPE_Q4_1, true, wd, rb, a, r0, r1, y, w->rows, aux);
        else q_rows(LS_TYPE_Q4_1, false, wd, rb, a, r0, r1, y, w->rows, aux);
        break;
    case LS_TYPE_Q8_0: q_rows(LS_TYPE_Q8_0, false, wd, rb, a, r0, r1, y, w->rows, aux); break;
    case LS_TYPE_Q5_0: q_rows(LS_TYPE_Q5_0, false, wd, rb, a, r0, r1, y, w->rows, aux); break;
    case LS_TYPE_Q5_1:
        if (exact) q_rows(LS_TYPE_Q5_1, true, wd, rb, a, r0, r1, y, w->rows, aux);
        else q_rows(LS_TYPE_Q5_1, false, wd, rb, a, r0, r1, y, w->rows, aux);
        break;
    default: ls_k_kq_rows(w, a, r0, r1, y); break; /* K-quants, IQ4: always llama.cpp's order */
    }
}
