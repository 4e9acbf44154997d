/* kernels_impl.h: internals shared by the kernel files (kernels*.c); no other
 * module includes this. The variant sources are compiled once per
 * instruction set and chosen at run time (kernels_variants.h); within one
 * compile, LS_K_AVX2 / LS_K_VNNI say what that variant may use. */
#ifndef LS_KERNELS_IMPL_H
#define LS_KERNELS_IMPL_H

#include "kernels_variants.h" /* first: renames the variant's functions */

#include "kernels.h"
#include <string.h>

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define LS_K_AVX2 1
#include <immintrin.h>
#else
#define LS_K_AVX2 0
#endif

/* 256-bit VNNI (vpdpbusd): AVX512-VNNI with VL, or the VEX-coded AVX-VNNI */
#if LS_K_AVX2 && ((defined(__AVX512VNNI__) && defined(__AVX512VL__)) || defined(__AVXVNNI__))
#define LS_K_VNNI 1
#else
#define LS_K_VNNI 0
#endif

#define LS_K_QK 32 /* elements per quantized block */

/* ---- per-thread scratch (grown as needed, freed at thread exit) ----
 * Each slot is an independent 64-byte aligned buffer; contents are not kept
 * when a slot grows. Never called on a path that must not allocate after
 * the first calls of a given shape (growth only). Aborts on out of memory:
 * the hot path has no way to report it and callers sized models already. */
enum {
    LS_K_SLOT_ACT,   /* quantized / rounded activations of the current call */
    LS_K_SLOT_TILE,  /* dequantized weight tile (sgemm path) */
    LS_K_SLOT_AUX,   /* small per-tile arrays (block scales/mins) */
    LS_K_SLOT_COUNT
};
void *ls_k_scratch(int slot, size_t bytes);

/* ls_pool_run, or fn(arg, 0, 1) when pool is NULL */
void ls_k_run(ls_pool *pool, void (*fn)(void *arg, int ith, int nth), void *arg);

/* ---- fp16 / bf16 scalars ---- */
static inline float ls_k_h2f(uint16_t h) {
#if LS_K_AVX2
    return _cvtsh_ss(h);
#else
    return ls_f16_to_f32(h);
#endif
}
static inline uint16_t ls_k_f2h(float f) {
#if LS_K_AVX2
    return (uint16_t)_cvtss_sh(f, 0); /* round to nearest even */
#else
    return ls_f32_to_f16(f);
#endif
}
static inline uint16_t ls_k_rd16(const void *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

/* the 8 float lanes of an AVX2 register summed as the vector reductions
 * (ls_k_hsum8, ggml's hsum_float_8) do: (lo + hi), then pairs (0, 2) and
 * (1, 3), then the two */
static inline float ls_k_hsum8_model(const float v[8]) {
    return ((v[0] + v[4]) + (v[2] + v[6])) + ((v[1] + v[5]) + (v[3] + v[7]));
}
#if LS_K_AVX2
static inline float ls_k_hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
#endif

/* ---- weight type families ----
 * the 32-element blocks with Q8_0/Q8_1 activations (kernels_q.c);
 * K-quants and IQ4_XS (256-element super-blocks, Q8_K activations) and
 * IQ4_NL (32-element blocks, Q8_0 activations), both in kernels_k.c */
static inline bool ls_k_is_q32(ls_type t) {
    return t == LS_TYPE_Q4_0 || t == LS_TYPE_Q4_1 || t == LS_TYPE_Q5_0 || t == LS_TYPE_Q5_1 || t == LS_TYPE_Q8_0;
}
static inline bool ls_k_is_super(ls_type t) { return ls_type_block_elems(t) == 256; }
static inline bool ls_k_is_quant(ls_type t) { return ls_type_block_elems(t) > 1; }

/* ---- 32-element weight blocks ---- */
/* types whose blocks carry a min (dequantized x = d*q + m): activations are
 * then Q8_1-style (with the block sum), as llama.cpp pairs them */
static inline bool ls_k_has_min(ls_type t) { return t == LS_TYPE_Q4_1 || t == LS_TYPE_Q5_1; }
static inline bool ls_k_is_q5(ls_type t) { return t == LS_TYPE_Q5_0 || t == LS_TYPE_Q5_1; }
/* offset of the quants (Q5: of qh, the 32 high bits, then 16 bytes of nibbles) */
static inline size_t ls_k_qs_off(ls_type t) { return ls_k_has_min(t) ? 4 : 2; }
/* the 32 integer quants of a Q4_0/Q4_1/Q5_0/Q5_1/Q8_0 block as ggml's
 * dequantize sees them: Q4_0 nibble-8, Q4_1 nibble, Q5_0 (nibble|bit<<4)-16,
 * Q5_1 nibble|bit<<4, Q8_0 the int8 */
static inline void ls_k_block_ints(ls_type t, const uint8_t *blk, int q[32]) {
    const uint8_t *p = blk + ls_k_qs_off(t);
    if (t == LS_TYPE_Q8_0) {
        for (int j = 0; j < 32; j++) q[j] = (int8_t)p[j];
        return;
    }
    uint32_t qh = 0;
    if (ls_k_is_q5(t)) {
        memcpy(&qh, p, 4);
        p += 4;
    }
    const int off = t == LS_TYPE_Q4_0 ? 8 : t == LS_TYPE_Q5_0 ? 16 : 0;
    for (int j = 0; j < 16; j++) {
        q[j] = (int)((p[j] & 0x0F) | (((qh >> j) & 1u) << 4)) - off;
        q[j + 16] = (int)((p[j] >> 4) | (((qh >> (j + 16)) & 1u) << 4)) - off;
    }
}

/* ---- activation quantization (the integer path's rounding) ----
 * Per block of 32: amax = max|x|, d = amax/127, id = amax ? 127/amax : 0,
 * q = round-half-even(x*id), d stored as fp16: exactly llama.cpp's x86
 * quantize_row_q8_0 / q8_1. q8_1 also keeps s = fp16(d * sum(q)) with the
 * unrounded d. */
/* one row of cols (multiple of 32) floats into q[cols]; dq[nb] receives the
 * fp16-rounded d as float; sq (may be NULL) the fp16-rounded Q8_1 block sums */
void ls_k_quant_row(const float *x, int64_t cols, int8_t *q, float *dq, float *sq);

/* ---- matmul internals shared by kernels.c and kernels_q.c ---- */
/* Activations of one multi-row call, quantized for weight type wt:
 *   q[n][cols]      int8 quants
 *   d[n][...]       Q4_0/Q8_0: fp16-rounded scales, nbp per row;
 *                   Q4_1: (d, s) pairs, 2*nbp per row (s: Q8_1 block sum)
 *   corr[n][nb][8]  Q4_0 only: 8 * sums of 4 consecutive quants, so the
 *                   unsigned-nibble dot minus corr is the signed dot exactly
 * nbp = nb rounded up to 8; padding entries are zero. */
typedef struct ls_k_qact {
    int64_t n, cols, nb, nbp;
    const int8_t *q;
    const float *d;
    const int32_t *corr;
    const int16_t *bsums; /* Q8_K (super-block types): n x nb x 16 sums of 16 quants;
                           * d is then n x nb float scales (nbp = nb) */
} ls_k_qact;
size_t ls_k_qact_bytes(ls_type wt, int64_t n, int64_t cols);
void ls_k_qact_init(ls_type wt, const float *x, int64_t n, int64_t cols, void *buf, ls_k_qact *a);
/* y rows [r0, r1) for all n activation rows; aux: per-thread scratch of
 * ls_k_q_aux_bytes(cols) bytes; exact: llama.cpp's summation order (see
 * LS_MATMUL_EXACT) */
size_t ls_k_q_aux_bytes(int64_t cols);
void ls_k_q_rows(const ls_weight *w, const ls_k_qact *a, int64_t r0, int64_t r1, float *y, void *aux, bool exact);

/* ---- kernels_k.c: K-quants, IQ4_NL, IQ4_XS ---- */
/* ggml's quantize_row_q8_K_ref: per 256 values int8 q, float d, int16 sums of 16 */
void ls_k_quant_row_q8k(const float *x, int64_t cols, int8_t *q, float *d, int16_t *bsums);
/* ggml's dequantize_row_* for these types, bit for bit */
void ls_k_dequant_row(ls_type t, const uint8_t *src, int64_t cols, float *dst);
/* y rows [r0, r1), always llama.cpp's arithmetic (exact or not); the
 * _model variant is the portable scalar lane model, bit-identical */
void ls_k_kq_rows(const ls_weight *w, const ls_k_qact *a, int64_t r0, int64_t r1, float *y);
void ls_k_kq_rows_model(const ls_weight *w, const ls_k_qact *a, int64_t r0, int64_t r1, float *y);

/* ---- one variant's functions (kernels_table.c, kernels_dispatch.c) ---- */
typedef struct ls_kv_table {
    const char *path; /* what ls_kernel_path() reports */
#define LS_KV_FIELD_R(ret, name, params, args) ret(*f_##name) params;
#define LS_KV_FIELD_V(name, params, args) void(*f_##name) params;
    LS_KV_FUNCS(LS_KV_FIELD_R, LS_KV_FIELD_V)
#undef LS_KV_FIELD_R
#undef LS_KV_FIELD_V
} ls_kv_table;

#endif
