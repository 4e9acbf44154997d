/* kernels_k.c: weights in ggml's K-quants (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K)
 * and I-quants (IQ4_NL, IQ4_XS): Q8_K activation quantization, row
 * dequantization, and the multi-row integer kernels.
 *
 * Exactness. Every output is bit for bit what llama.cpp's x86 dot
 * (ggml_vec_dot_q4_K_q8_K and friends, AVX2 build) returns for the same
 * row. Those dots keep 8 int32 lanes per super-block: lane l sums, over
 * every 32-element chunk, the scaled products of elements 4l..4l+3 of the
 * chunk (plus type-specific block-sum terms, below); integer sums are
 * exact, so only the lane grouping and the float steps matter:
 *   Q2_K    acc = fma(-d_y*dmin_x, mins.bsums (8 lanes), acc); acc = fma(d_y*d_x, lanes, acc)
 *   Q3_K, IQ4_XS   acc = fma(d_y*d_x, lanes, acc)
 *   Q4_K    acc = fma(d, lanes, acc); accm(4 lanes) = fma(-d_y*dmin_x, mins.bsums pairs, accm);
 *           result hsum8(acc) + ((m0+m2)+(m1+m3))
 *   Q5_K    acc = fma(d, lanes, acc); summs = fma(-d_y*dmin_x, sum(mins.bsums), summs) (a
 *           scalar fma: llama.cpp's compiler contracts it); result hsum8(acc) + summs
 *   Q6_K    lanes hold the unsigned 6-bit values' products minus 32*scales.bsums (8 lanes)
 *   IQ4_NL  32-element blocks with Q8_0 activations, even blocks in one accumulator and odd
 *           ones in another, added before the horizontal sum; an odd last block is added in
 *           scalar (multiply, then add: not contracted there)
 * The portable code below computes the same lanes in scalar code (the lane
 * model), so it is bit-identical to the AVX2 code, and the tests hold both
 * to each other and to ggml's outputs. This file is compiled with
 * -ffp-contract=off: every fma here is written out, as in llama.cpp.
 *
 * Multi-row: a weight row's super-block is unpacked once (8 chunks of 32
 * integer weights, 16 per-16 scales, 16 per-16 mins) and dotted with up to
 * 4 activation rows; a row is a few KB, so a batch of k+1 positions reads
 * each weight from memory once. */
#include "kernels_impl.h"

#include <math.h>
#include <stdlib.h>

#define LS_ALWAYS_INLINE static inline __attribute__((always_inline))
#define QK_K 256

static const int8_t iq4nl_values[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

/* ---- Q8_K activations (ggml's quantize_row_q8_K_ref, which x86 uses) ----
 * Per 256 values: max = the value of largest magnitude (first one on ties),
 * iscale = -127/max, q = nearest_int(iscale*x) capped at 127, d = 1/iscale,
 * bsums = sums of 16 consecutive q. All zero for an all-zero block. */
static inline int nearest_int(float f) {
    /* ggml's trick (round half to even for |f| < 2^22); defined for any input */
    const float v = f + 12582912.f;
    int32_t i;
    memcpy(&i, &v, 4);
    return (i & 0x007fffff) - 0x00400000;
}

void ls_k_quant_row_q8k(const float *x, int64_t cols, int8_t *q, float *d, int16_t *bsums) {
    for (int64_t b = 0; b < cols / QK_K; b++, x += QK_K, q += QK_K, bsums += 16) {
        float max = 0.0f, amax = 0.0f;
        for (int j = 0; j < QK_K; j++) {
            const float ax = fabsf(x[j]);
            if (ax > amax) {
                amax = ax;
                max = x[j];
            }
        }
        if (amax == 0.0f) {
            d[b] = 0.0f;
            memset(q, 0, QK_K);
            memset(bsums, 0, 16 * sizeof(int16_t));
            continue;
        }
        const float iscale = -127.f / max;
        for (int j = 0; j < QK_K; j++) {
            const int v = nearest_int(iscale * x[j]);
            q[j] = (int8_t)(v > 127 ? 127 : v < -128 ? -128 : v);
        }
        for (int g = 0; g < 16; g++) {
            int s = 0;
            for (int j = 0; j < 16; j++) s += q[16 * g + j];
            bsums[g] = (int16_t)s;
        }
        d[b] = 1.0f / iscale;
    }
}

/* ---- super-block unpacking (scalar; the lane model and dequantization) ----
 * w: the 256 integer weights as the dots multiply them (Q6_K: unsigned
 * 0..63, its -32 goes through the block sums; Q3_K: -4..3; IQ4_XS: table
 * values); sc, mn: per-16 scales and mins (per-32 ones repeated). */
typedef struct kunp {
    int w[QK_K];
    int sc[16], mn[16];
    float d, dmin;
} kunp;

/* Q4_K/Q5_K 6-bit scales and mins of sub-block j (ggml's get_scale_min_k4) */
static inline void scale_min_k4(int j, const uint8_t *q, int *sc, int *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

/* Q3_K's 16 6-bit scales, minus 32 */
static inline void q3k_scales(const uint8_t *s12, int sc[16]) {
    for (int j = 0; j < 16; j++) {
        const int lo = j < 8 ? s12[j] & 0xF : s12[j - 8] >> 4;
        const int hi = (s12[8 + j % 4] >> (2 * (j / 4))) & 3;
        sc[j] = (lo | hi << 4) - 32;
    }
}

static void unpack(ls_type t, const uint8_t *blk, kunp *u) {
    u->dmin = 0.0f;
    for (int j = 0; j < 16; j++) u->mn[j] = 0;
    switch (t) {
    case LS_TYPE_Q2_K: { /* scales[16], qs[64], d, dmin */
        const uint8_t *qs = blk + 16;
        u->d = ls_k_h2f(ls_k_rd16(blk + 80));
        u->dmin = ls_k_h2f(ls_k_rd16(blk + 82));
        for (int j = 0; j < 16; j++) {
            u->sc[j] = blk[j] & 0xF;
            u->mn[j] = blk[j] >> 4;
        }
        for (int h = 0; h < 2; h++)
            for (int k = 0; k < 4; k++)
                for (int e = 0; e < 32; e++) u->w[128 * h + 32 * k + e] = (qs[32 * h + e] >> (2 * k)) & 3;
        return;
    }
    case LS_TYPE_Q3_K: { /* hmask[32], qs[64], scales[12], d */
        const uint8_t *hm = blk, *qs = blk + 32;
        u->d = ls_k_h2f(ls_k_rd16(blk + 108));
        q3k_scales(blk + 96, u->sc);
        for (int h = 0; h < 2; h++)
            for (int k = 0; k < 4; k++)
                for (int e = 0; e < 32; e++)
                    u->w[128 * h + 32 * k + e] =
                        ((qs[32 * h + e] >> (2 * k)) & 3) - ((hm[e] >> (4 * h + k)) & 1 ? 0 : 4);
        return;
    }
    case LS_TYPE_Q4_K:
    case LS_TYPE_Q5_K: { /* d, dmin, scales[12], [qh[32],] qs[128] */
        const bool q5 = t == LS_TYPE_Q5_K;
        const uint8_t *qh = blk + 16, *qs = blk + (q5 ? 48 : 16);
        u->d = ls_k_h2f(ls_k_rd16(blk));
        u->dmin = ls_k_h2f(ls_k_rd16(blk + 2));
        for (int j = 0; j < 8; j++) {
            int sc, m;
            scale_min_k4(j, blk + 4, &sc, &m);
            u->sc[2 * j] = u->sc[2 * j + 1] = sc;
            u->mn[2 * j] = u->mn[2 * j + 1] = m;
        }
        for (int j = 0; j < 4; j++)
            for (int e = 0; e < 32; e++) {
                int lo = qs[32 * j + e] & 0xF, hi = qs[32 * j + e] >> 4;
                if (q5) {
                    lo |= ((qh[e] >> (2 * j)) & 1) << 4;
                    hi |= ((qh[e] >> (2 * j + 1)) & 1) << 4;
                }
                u->w[64 * j + e] = lo;
                u->w[64 * j + 32 + e] = hi;
            }
        return;
    }
    case LS_TYPE_Q6_K: { /* ql[128], qh[64], scales[16] (int8), d */
        const uint8_t *ql = blk, *qh = blk + 128;
        u->d = ls_k_h2f(ls_k_rd16(blk + 208));
        for (int j = 0; j < 16; j++) u->sc[j] = (int8_t)blk[192 + j];
        for (int h = 0; h < 2; h++)
            for (int e = 0; e < 32; e++) {
                const uint8_t a = ql[64 * h + e], b = ql[64 * h + 32 + e], c = qh[32 * h + e];
                u->w[128 * h + e] = (a & 0xF) | (c & 3) << 4;
                u->w[128 * h + 32 + e] = (b & 0xF) | ((c >> 2) & 3) << 4;
                u->w[128 * h + 64 + e] = (a >> 4) | ((c >> 4) & 3) << 4;
                u->w[128 * h + 96 + e] = (b >> 4) | ((c >> 6) & 3) << 4;
            }
        return;
    }
    case LS_TYPE_IQ4_XS: { /* d, scales_h (u16), scales_l[4], qs[128] */
        const uint16_t sh = ls_k_rd16(blk + 2);
        const uint8_t *sl = blk + 4, *qs = blk + 8;
        u->d = ls_k_h2f(ls_k_rd16(blk));
        for (int ib = 0; ib < 8; ib++) {
            const int ls = ((sl[ib / 2] >> (4 * (ib % 2))) & 0xF) | (((sh >> (2 * ib)) & 3) << 4);
            u->sc[2 * ib] = u->sc[2 * ib + 1] = ls - 32;
            for (int j = 0; j < 16; j++) {
                u->w[32 * ib + j] = iq4nl_values[qs[16 * ib + j] & 0xF];
                u->w[32 * ib + 16 + j] = iq4nl_values[qs[16 * ib + j] >> 4];
            }
        }
        return;
    }
    default: abort();
    }
}

/* ---- dequantization: ggml's dequantize_row_* float steps exactly ---- */
void ls_k_dequant_row(ls_type t, const uint8_t *src, int64_t cols, float *dst) {
    if (t == LS_TYPE_IQ4_NL) {
        for (int64_t b = 0; b < cols / 32; b++, src += 18, dst += 32) {
            const float d = ls_k_h2f(ls_k_rd16(src));
            for (int j = 0; j < 16; j++) {
                dst[j] = d * (float)iq4nl_values[src[2 + j] & 0xF];
                dst[j + 16] = d * (float)iq4nl_values[src[2 + j] >> 4];
            }
        }
        return;
    }
    const size_t bb = ls_type_block_bytes(t);
    kunp u;
    for (int64_t b = 0; b < cols / QK_K; b++, src += bb, dst += QK_K) {
        unpack(t, src, &u);
        for (int s = 0; s < 16; s++) {
            float *o = dst + 16 * s;
            const int *w = u.w + 16 * s;
            switch (t) {
            case LS_TYPE_Q2_K:
            case LS_TYPE_Q4_K:
            case LS_TYPE_Q5_K: { /* dl * q - ml */
                const float dl = u.d * (float)u.sc[s], ml = u.dmin * (float)u.mn[s];
                for (int j = 0; j < 16; j++) o[j] = dl * (float)w[j] - ml;
                break;
            }
            case LS_TYPE_Q6_K: { /* d * sc * (q - 32), left to right */
                for (int j = 0; j < 16; j++) o[j] = u.d * (float)u.sc[s] * (float)(w[j] - 32);
                break;
            }
            default: { /* Q3_K, IQ4_XS: dl * q */
                const float dl = u.d * (float)u.sc[s];
                for (int j = 0; j < 16; j++) o[j] = dl * (float)w[j];
                break;
            }
            }
        }
    }
}

/* ---- the lane model (portable kernels; the reference of the AVX2 ones) ---- */

/* the super-block's float steps, given its 8 integer lanes and block-sum lanes */
typedef struct kacc {
    float acc[8], accm[4], summs;
} kacc;

static void sb_model(ls_type t, const kunp *u, const int8_t *q8, float yd, const int16_t *bs, kacc *k) {
    int32_t lane[8] = {0}, mlane[8];
    for (int e = 0; e < QK_K; e++) lane[(e % 32) / 4] += u->sc[e / 16] * u->w[e] * q8[e];
    for (int l = 0; l < 8; l++) mlane[l] = u->mn[2 * l] * bs[2 * l] + u->mn[2 * l + 1] * bs[2 * l + 1];
    const float d = yd * u->d, dmin = -yd * u->dmin;
    switch (t) {
    case LS_TYPE_Q2_K:
        for (int l = 0; l < 8; l++) k->acc[l] = fmaf(dmin, (float)mlane[l], k->acc[l]);
        break;
    case LS_TYPE_Q4_K:
        for (int m = 0; m < 4; m++) k->accm[m] = fmaf(dmin, (float)(mlane[2 * m] + mlane[2 * m + 1]), k->accm[m]);
        break;
    case LS_TYPE_Q5_K: {
        int32_t s = 0;
        for (int l = 0; l < 8; l++) s += mlane[l];
        k->summs = fmaf(dmin, (float)s, k->summs);
        break;
    }
    case LS_TYPE_Q6_K:
        for (int l = 0; l < 8; l++) lane[l] -= 32 * (u->sc[2 * l] * bs[2 * l] + u->sc[2 * l + 1] * bs[2 * l + 1]);
        break;
    default: break;
    }
    for (int l = 0; l < 8; l++) k->acc[l] = fmaf(d, (float)lane[l], k->acc[l]);
}

static float finish_model(ls_type t, const kacc *k) {
    const float s = ls_k_hsum8_model(k->acc);
    if (t == LS_TYPE_Q4_K) return s + ((k->accm[0] + k->accm[2]) + (k->accm[1] + k->accm[3]));
    if (t == LS_TYPE_Q5_K) return s + k->summs;
    return s;
}

/* IQ4_NL with Q8_0 activations: one 32-block's 8 lanes */
static void iq4nl_lanes(const uint8_t *blk, const int8_t *q8, int32_t lane[8]) {
    for (int l = 0; l < 8; l++) lane[l] = 0;
    for (int j = 0; j < 16; j++) {
        lane[j / 4] += iq4nl_values[blk[2 + j] & 0xF] * q8[j];
        lane[(j + 16) / 4] += iq4nl_values[blk[2 + j] >> 4] * q8[j + 16];
    }
}

static void iq4nl_rows_model(const uint8_t *w, size_t rb, const ls_k_qact *a, int64_t r0, int64_t r1, float *y,
                             int64_t ys) {
    const int64_t nb = a->nb;
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *wr = w + (size_t)r * rb;
        for (int64_t i = 0; i < a->n; i++) {
            const int8_t *q = a->q + i * a->cols;
            const float *dy = a->d + i * a->nbp;
            float acc[2][8] = {{0}};
            int32_t lane[8];
            int64_t b = 0;
            for (; b + 1 < nb; b += 2)
                for (int h = 0; h < 2; h++) {
                    const uint8_t *blk = wr + (size_t)(b + h) * 18;
                    iq4nl_lanes(blk, q + (b + h) * 32, lane);
                    const float d = dy[b + h] * ls_k_h2f(ls_k_rd16(blk));
                    for (int l = 0; l < 8; l++) acc[h][l] = fmaf(d, (float)lane[l], acc[h][l]);
                }
            float s8[8];
            for (int l = 0; l < 8; l++) s8[l] = acc[0][l] + acc[1][l];
            float s = ls_k_hsum8_model(s8);
            if (b < nb) {
                const uint8_t *blk = wr + (size_t)b * 18;
                iq4nl_lanes(blk, q + b * 32, lane);
                int32_t t = 0;
                for (int l = 0; l < 8; l++) t += lane[l];
                const float d = dy[b] * ls_k_h2f(ls_k_rd16(blk));
                s = s + d * (float)t;
            }
            y[i * ys + r] = s;
        }
    }
}

void ls_k_kq_rows_model(const ls_weight *w, const ls_k_qact *a, int64_t r0, int64_t r1, float *y) {
    const ls_type t = w->type;
    const size_t rb = ls_weight_row_bytes(w);
    const uint8_t *wd = w->data;
    if (t == LS_TYPE_IQ4_NL) {
        iq4nl_rows_model(wd, rb, a, r0, r1, y, w->rows);
        return;
    }
    const size_t bb = ls_type_block_bytes(t);
    kunp u;
    for (int64_t r = r0; r < r1; r++) {
        for (int64_t i = 0; i < a->n; i++) {
            kacc k;
            memset(&k, 0, sizeof k);
            for (int64_t b = 0; b < a->nb; b++) {
                unpack(t, wd + (size_t)r * rb + (size_t)b * bb, &u);
                sb_model(t, &u, a->q + i * a->cols + b * QK_K, a->d[i * a->nb + b], a->bsums + (i * a->nb + b) * 16,
                         &k);
            }
            y[i * w->rows + r] = finish_model(t, &k);
        }
    }
}

/* ---- AVX2 kernels ---- */
#if LS_K_AVX2

/* one super-block of a weight row, unpacked into registers' worth of data:
 * wa: the 8 chunks of 32 weights as unsigned bytes (|w| for signed types),
 * ws: the signed weights (signed types only; the sign trick for maddubs),
 * sv: per chunk, the int16 scale of its first 16 elements in the low half
 *     and of its last 16 in the high half,
 * mn: the 16 per-16 mins (or Q6_K scales) as int16, for the block-sum lanes */
typedef struct kvec {
    __m256i wa[8], ws[8], sv[8], mn;
    float d, dmin;
} kvec;

LS_ALWAYS_INLINE bool k_signed(ls_type t) { return t == LS_TYPE_Q3_K || t == LS_TYPE_IQ4_XS; }

LS_ALWAYS_INLINE __m256i lo_nib(__m256i v) { return _mm256_and_si256(v, _mm256_set1_epi8(0x0F)); }
LS_ALWAYS_INLINE __m256i hi_nib(__m256i v) { return _mm256_and_si256(_mm256_srli_epi16(v, 4), _mm256_set1_epi8(0x0F)); }
/* bit s (0..7) of every byte, moved to bit p of the byte (others zero) */
LS_ALWAYS_INLINE __m256i bit_to(__m256i v, int s, int p) {
    const __m256i m = _mm256_set1_epi8((char)(1 << p));
    if (s == p) return _mm256_and_si256(v, m);
    return s < p ? _mm256_and_si256(_mm256_slli_epi16(v, p - s), m) : _mm256_and_si256(_mm256_srli_epi16(v, s - p), m);
}
/* chunk scales: int16 sc[2k] in the low 128 bits, sc[2k+1] in the high;
 * one byte shuffle per chunk from the 16 scales loaded once (each 128-bit
 * half of `lo`/`hi` holds scales 0..7 / 8..15) */
LS_ALWAYS_INLINE void scale_vecs(const int16_t sc[16], __m256i sv[8]) {
    const __m128i s0 = _mm_loadu_si128((const __m128i *)sc), s1 = _mm_loadu_si128((const __m128i *)(sc + 8));
    const __m256i lo = _mm256_broadcastsi128_si256(s0), hi = _mm256_broadcastsi128_si256(s1);
#pragma GCC unroll 8
    for (int k = 0; k < 8; k++) {
        const int a = 2 * (2 * k % 8), b = a + 2; /* byte offsets of sc[2k], sc[2k+1] within their half */
        const __m256i idx = _mm256_setr_epi8(a, a + 1, a, a + 1, a, a + 1, a, a + 1, a, a + 1, a, a + 1, a, a + 1, a,
                                             a + 1, b, b + 1, b, b + 1, b, b + 1, b, b + 1, b, b + 1, b, b + 1, b, b + 1,
                                             b, b + 1);
        sv[k] = _mm256_shuffle_epi8(k < 4 ? lo : hi, idx);
    }
}
LS_ALWAYS_INLINE __m256i iq4_lookup(__m128i bits) {
    const __m128i tab = _mm_loadu_si128((const __m128i *)(const void *)iq4nl_values);
    const __m128i m4 = _mm_set1_epi8(0x0F);
    const __m128i lo = _mm_shuffle_epi8(tab, _mm_and_si128(bits, m4));
    const __m128i hi = _mm_shuffle_epi8(tab, _mm_and_si128(_mm_srli_epi16(bits, 4), m4));
    return _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1);
}

LS_ALWAYS_INLINE void unpack_vec(const ls_type t, const uint8_t *blk, kvec *v) {
    int16_t sc[16], mn[16];
    v->dmin = 0.0f;
    switch (t) {
    case LS_TYPE_Q2_K: {
        v->d = ls_k_h2f(ls_k_rd16(blk + 80));
        v->dmin = ls_k_h2f(ls_k_rd16(blk + 82));
        const __m128i s = _mm_loadu_si128((const __m128i *)blk);
        _mm256_storeu_si256((__m256i *)sc, _mm256_cvtepu8_epi16(_mm_and_si128(s, _mm_set1_epi8(0x0F))));
        v->mn = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(s, 4), _mm_set1_epi8(0x0F)));
        for (int h = 0; h < 2; h++) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)(blk + 16 + 32 * h));
            const __m256i m3 = _mm256_set1_epi8(3);
            v->wa[4 * h + 0] = _mm256_and_si256(q, m3);
            v->wa[4 * h + 1] = _mm256_and_si256(_mm256_srli_epi16(q, 2), m3);
            v->wa[4 * h + 2] = _mm256_and_si256(_mm256_srli_epi16(q, 4), m3);
            v->wa[4 * h + 3] = _mm256_and_si256(_mm256_srli_epi16(q, 6), m3);
        }
        break;
    }
    case LS_TYPE_Q3_K: {
        v->d = ls_k_h2f(ls_k_rd16(blk + 108));
        int isc[16];
        q3k_scales(blk + 96, isc);
        for (int j = 0; j < 16; j++) sc[j] = (int16_t)isc[j];
        const __m256i hm = _mm256_loadu_si256((const __m256i *)blk);
        for (int h = 0; h < 2; h++) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)(blk + 32 + 32 * h));
            for (int k = 0; k < 4; k++) {
                const __m256i lo = _mm256_and_si256(_mm256_srli_epi16(q, 2 * k), _mm256_set1_epi8(3));
                /* 4 where the high bit is clear */
                const __m256i h4 = _mm256_andnot_si256(bit_to(hm, 4 * h + k, 2), _mm256_set1_epi8(4));
                const __m256i w = _mm256_sub_epi8(lo, h4);
                v->ws[4 * h + k] = w;
                v->wa[4 * h + k] = _mm256_sign_epi8(w, w);
            }
        }
        break;
    }
    case LS_TYPE_Q4_K:
    case LS_TYPE_Q5_K: {
        const bool q5 = t == LS_TYPE_Q5_K;
        v->d = ls_k_h2f(ls_k_rd16(blk));
        v->dmin = ls_k_h2f(ls_k_rd16(blk + 2));
        for (int j = 0; j < 8; j++) {
            int s, m;
            scale_min_k4(j, blk + 4, &s, &m);
            sc[2 * j] = sc[2 * j + 1] = (int16_t)s;
            mn[2 * j] = mn[2 * j + 1] = (int16_t)m;
        }
        v->mn = _mm256_loadu_si256((const __m256i *)mn);
        const uint8_t *qs = blk + (q5 ? 48 : 16);
        const __m256i qh = q5 ? _mm256_loadu_si256((const __m256i *)(blk + 16)) : _mm256_setzero_si256();
        for (int j = 0; j < 4; j++) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * j));
            __m256i lo = lo_nib(q), hi = hi_nib(q);
            if (q5) {
                lo = _mm256_or_si256(lo, bit_to(qh, 2 * j, 4));
                hi = _mm256_or_si256(hi, bit_to(qh, 2 * j + 1, 4));
            }
            v->wa[2 * j] = lo;
            v->wa[2 * j + 1] = hi;
        }
        break;
    }
    case LS_TYPE_Q6_K: {
        v->d = ls_k_h2f(ls_k_rd16(blk + 208));
        const __m128i s = _mm_loadu_si128((const __m128i *)(blk + 192));
        v->mn = _mm256_cvtepi8_epi16(s);
        _mm256_storeu_si256((__m256i *)sc, v->mn);
        for (int h = 0; h < 2; h++) {
            const __m256i a = _mm256_loadu_si256((const __m256i *)(blk + 64 * h));
            const __m256i b = _mm256_loadu_si256((const __m256i *)(blk + 64 * h + 32));
            const __m256i c = _mm256_loadu_si256((const __m256i *)(blk + 128 + 32 * h));
            const __m256i m3 = _mm256_set1_epi8(3);
            v->wa[4 * h + 0] = _mm256_or_si256(lo_nib(a), _mm256_slli_epi16(_mm256_and_si256(c, m3), 4));
            v->wa[4 * h + 1] =
                _mm256_or_si256(lo_nib(b), _mm256_slli_epi16(_mm256_and_si256(c, _mm256_set1_epi8(12)), 2));
            v->wa[4 * h + 2] = _mm256_or_si256(hi_nib(a), _mm256_and_si256(c, _mm256_set1_epi8(48)));
            v->wa[4 * h + 3] =
                _mm256_or_si256(hi_nib(b), _mm256_srli_epi16(_mm256_and_si256(c, _mm256_set1_epi8((char)0xC0)), 2));
        }
        break;
    }
    case LS_TYPE_IQ4_XS: {
        v->d = ls_k_h2f(ls_k_rd16(blk));
        const uint16_t sh = ls_k_rd16(blk + 2);
        for (int ib = 0; ib < 8; ib++) {
            const int ls = ((blk[4 + ib / 2] >> (4 * (ib % 2))) & 0xF) | (((sh >> (2 * ib)) & 3) << 4);
            sc[2 * ib] = sc[2 * ib + 1] = (int16_t)(ls - 32);
            const __m256i w = iq4_lookup(_mm_loadu_si128((const __m128i *)(blk + 8 + 16 * ib)));
            v->ws[ib] = w;
            v->wa[ib] = _mm256_sign_epi8(w, w);
        }
        break;
    }
    default: abort();
    }
    scale_vecs(sc, v->sv);
}

/* the 8 integer lanes of one super-block against one Q8_K activation block */
LS_ALWAYS_INLINE __m256i sb_lanes(const ls_type t, const kvec *v, const int8_t *q8) {
    __m256i sumi = _mm256_setzero_si256();
#pragma GCC unroll 8
    for (int k = 0; k < 8; k++) {
        __m256i q = _mm256_loadu_si256((const __m256i *)(q8 + 32 * k));
        if (k_signed(t)) q = _mm256_sign_epi8(q, v->ws[k]);
        sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(_mm256_maddubs_epi16(v->wa[k], q), v->sv[k]));
    }
    return sumi;
}

/* y[(c0+c)*ys] for c < C: one weight row against activation rows c0.. */
LS_ALWAYS_INLINE void k_tile(const ls_type t, const int C, const uint8_t *wr, const ls_k_qact *a, int64_t c0,
                             float *y, int64_t ys) {
    const int64_t nb = a->nb, cols = a->cols;
    const size_t bb = ls_type_block_bytes(t);
    __m256 acc[4];
    __m128 accm[4];
    float summs[4];
#pragma GCC unroll 4
    for (int c = 0; c < C; c++) {
        acc[c] = _mm256_setzero_ps();
        accm[c] = _mm_setzero_ps();
        summs[c] = 0.0f;
    }
    for (int64_t b = 0; b < nb; b++) {
        kvec v;
        unpack_vec(t, wr + (size_t)b * bb, &v);
#pragma GCC unroll 4
        for (int c = 0; c < C; c++) {
            const int64_t i = c0 + c;
            const float yd = a->d[i * nb + b];
            const float d = yd * v.d;
            __m256i sumi = sb_lanes(t, &v, a->q + i * cols + b * QK_K);
            if (t == LS_TYPE_Q2_K || t == LS_TYPE_Q4_K || t == LS_TYPE_Q5_K || t == LS_TYPE_Q6_K) {
                const __m256i bs = _mm256_loadu_si256((const __m256i *)(a->bsums + (i * nb + b) * 16));
                const __m256i ml = _mm256_madd_epi16(v.mn, bs); /* mn[2l]*bs[2l] + mn[2l+1]*bs[2l+1] */
                const float dmin = -yd * v.dmin;
                if (t == LS_TYPE_Q2_K) {
                    acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(dmin), _mm256_cvtepi32_ps(ml), acc[c]);
                } else if (t == LS_TYPE_Q4_K) {
                    const __m128i m4 = _mm_hadd_epi32(_mm256_castsi256_si128(ml), _mm256_extracti128_si256(ml, 1));
                    accm[c] = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(m4), accm[c]);
                } else if (t == LS_TYPE_Q5_K) {
                    __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(ml), _mm256_extracti128_si256(ml, 1));
                    s4 = _mm_add_epi32(s4, _mm_unpackhi_epi64(s4, s4));
                    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, _MM_SHUFFLE(2, 3, 0, 1)));
                    summs[c] = fmaf(dmin, (float)_mm_cvtsi128_si32(s4), summs[c]);
                } else {
                    sumi = _mm256_sub_epi32(sumi, _mm256_slli_epi32(ml, 5));
                }
            }
            acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc[c]);
        }
    }
#pragma GCC unroll 4
    for (int c = 0; c < C; c++) {
        float s = ls_k_hsum8(acc[c]);
        if (t == LS_TYPE_Q4_K) {
            __m128 m = _mm_add_ps(accm[c], _mm_movehl_ps(accm[c], accm[c]));
            m = _mm_add_ss(m, _mm_movehdup_ps(m));
            s += _mm_cvtss_f32(m);
        } else if (t == LS_TYPE_Q5_K) {
            s += summs[c];
        }
        y[(c0 + c) * ys] = s;
    }
}

LS_ALWAYS_INLINE void k_rows(const ls_type t, const uint8_t *w, size_t rb, const ls_k_qact *a, int64_t r0, int64_t r1,
                             float *y, int64_t ys) {
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *wr = w + (size_t)r * rb;
        for (int64_t c0 = 0; c0 < a->n; c0 += 4) {
            switch (a->n - c0 < 4 ? a->n - c0 : 4) {
            case 1: k_tile(t, 1, wr, a, c0, y + r, ys); break;
            case 2: k_tile(t, 2, wr, a, c0, y + r, ys); break;
            case 3: k_tile(t, 3, wr, a, c0, y + r, ys); break;
            default: k_tile(t, 4, wr, a, c0, y + r, ys); break;
            }
        }
    }
}

/* IQ4_NL: per 32-block unpack, even/odd accumulators, scalar odd tail */
LS_ALWAYS_INLINE __m256i iq4nl_block_lanes(__m256i wa, __m256i ws, const int8_t *q8) {
    const __m256i q = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)q8), ws);
    return _mm256_madd_epi16(_mm256_maddubs_epi16(wa, q), _mm256_set1_epi16(1));
}

LS_ALWAYS_INLINE void iq4nl_tile(const int C, const uint8_t *wr, const ls_k_qact *a, int64_t c0, float *y, int64_t ys) {
    const int64_t nb = a->nb, cols = a->cols, nbp = a->nbp;
    __m256 acc[2][4];
#pragma GCC unroll 4
    for (int c = 0; c < C; c++) acc[0][c] = acc[1][c] = _mm256_setzero_ps();
    int64_t b = 0;
    for (; b + 1 < nb; b += 2) {
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const uint8_t *blk = wr + (size_t)(b + h) * 18;
            const __m256i ws = iq4_lookup(_mm_loadu_si128((const __m128i *)(blk + 2)));
            const __m256i wa = _mm256_sign_epi8(ws, ws);
            const float dx = ls_k_h2f(ls_k_rd16(blk));
#pragma GCC unroll 4
            for (int c = 0; c < C; c++) {
                const int64_t i = c0 + c;
                const __m256i p = iq4nl_block_lanes(wa, ws, a->q + i * cols + (b + h) * 32);
                acc[h][c] = _mm256_fmadd_ps(_mm256_set1_ps(a->d[i * nbp + b + h] * dx), _mm256_cvtepi32_ps(p), acc[h][c]);
            }
        }
    }
#pragma GCC unroll 4
    for (int c = 0; c < C; c++) {
        const int64_t i = c0 + c;
        float s = ls_k_hsum8(_mm256_add_ps(acc[0][c], acc[1][c]));
        if (b < nb) {
            const uint8_t *blk = wr + (size_t)b * 18;
            const __m256i ws = iq4_lookup(_mm_loadu_si128((const __m128i *)(blk + 2)));
            const __m256i p = iq4nl_block_lanes(_mm256_sign_epi8(ws, ws), ws, a->q + i * cols + b * 32);
            __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(p), _mm256_extracti128_si256(p, 1));
            s4 = _mm_add_epi32(s4, _mm_unpackhi_epi64(s4, s4));
            s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, _MM_SHUFFLE(2, 3, 0, 1)));
            const float d = a->d[i * nbp + b] * ls_k_h2f(ls_k_rd16(blk));
            s = s + d * (float)_mm_cvtsi128_si32(s4);
        }
        y[i * ys] = s;
    }
}

static void iq4nl_rows(const uint8_t *w, size_t rb, const ls_k_qact *a, int64_t r0, int64_t r1, float *y, int64_t ys) {
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *wr = w + (size_t)r * rb;
        for (int64_t c0 = 0; c0 < a->n; c0 += 4) {
            switch (a->n - c0 < 4 ? a->n - c0 : 4) {
            case 1: iq4nl_tile(1, wr, a, c0, y + r, ys); break;
            case 2: iq4nl_tile(2, wr, a, c0, y + r, ys); break;
            case 3: iq4nl_tile(3, wr, a, c0, y + r, ys); break;
            default: iq4nl_tile(4, wr, a, c0, y + r, ys); break;
            }
        }
    }
}

#endif /* LS_K_AVX2 */

void ls_k_kq_rows(const ls_weight *w, const ls_k_qact *a, int64_t r0, int64_t r1, float *y) {
#if LS_K_AVX2
    const uint8_t *wd = w->data;
    const size_t rb = ls_weight_row_bytes(w);
    const int64_t ys = w->rows;
    switch (w->type) {
    case LS_TYPE_Q2_K: k_rows(LS_TYPE_Q2_K, wd, rb, a, r0, r1, y, ys); return;
    case LS_TYPE_Q3_K: k_rows(LS_TYPE_Q3_K, wd, rb, a, r0, r1, y, ys); return;
    case LS_TYPE_Q4_K: k_rows(LS_TYPE_Q4_K, wd, rb, a, r0, r1, y, ys); return;
    case LS_TYPE_Q5_K: k_rows(LS_TYPE_Q5_K, wd, rb, a, r0, r1, y, ys); return;
    case LS_TYPE_Q6_K: k_rows(LS_TYPE_Q6_K, wd, rb, a, r0, r1, y, ys); return;
    case LS_TYPE_IQ4_XS: k_rows(LS_TYPE_IQ4_XS, wd, rb, a, r0, r1, y, ys); return;
    case LS_TYPE_IQ4_NL: iq4nl_rows(wd, rb, a, r0, r1, y, ys); return;
    default: abort();
    }
#else
    ls_k_kq_rows_model(w, a, r0, r1, y);
#endif
}
