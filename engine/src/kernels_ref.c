/* kernels_ref.c: ls_matmul_ref, the obviously correct version of every
 * matmul path, written from the block formulas alone (no code shared with
 * the fast kernels) and summed in double:
 *   Q4_0/Q8_0: sum_b d_w*d_x * sum_j q_w*q_x   (x quantized Q8_0)
 *   Q4_1:      sum_b d_w*d_x * sum_j q_w*q_x + m_w*s_x   (x quantized Q8_1)
 *   F16/BF16:  sum_j w_j * round16(x_j);  F32: sum_j w_j * x_j
 *   K-quants, IQ4_XS: sum_j w_j * d_x*q_x (x quantized Q8_K, 256 at a time);
 *   IQ4_NL:    the same with x quantized Q8_0. For these types w_j comes
 *              from ls_weight_get_row (their decoding is checked bit for
 *              bit against ggml's dequantization in test_kernels_k). */
#include "kernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct ref_qblock {
    float d; /* fp16-rounded scale */
    float s; /* fp16-rounded d * sum(q) (Q8_1) */
    int8_t q[32];
} ref_qblock;

/* llama.cpp x86 quantize_row_q8_0/q8_1 */
static void ref_quantize(const float *x, ref_qblock *o) {
    float amax = 0.0f;
    for (int j = 0; j < 32; j++)
        if (fabsf(x[j]) > amax) amax = fabsf(x[j]);
    const float d = amax / 127.f;
    const float id = amax != 0.0f ? 127.f / amax : 0.0f;
    int sum = 0;
    for (int j = 0; j < 32; j++) {
        const float v = rintf(x[j] * id);
        o->q[j] = (int8_t)(v > 127.f ? 127.f : v < -128.f ? -128.f : v);
        sum += o->q[j];
    }
    o->d = ls_f16_to_f32(ls_f32_to_f16(d));
    o->s = ls_f16_to_f32(ls_f32_to_f16(d * (float)sum));
}

static uint16_t rd16(const uint8_t *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

/* ggml's quantize_row_q8_K_ref: the dequantized values d*q of 256 inputs */
static void ref_q8k(const float *x, double *out) {
    float max = 0.0f, amax = 0.0f;
    for (int j = 0; j < 256; j++)
        if (fabsf(x[j]) > amax) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    if (amax == 0.0f) {
        for (int j = 0; j < 256; j++) out[j] = 0.0;
        return;
    }
    const float iscale = -127.f / max, d = 1.0f / iscale;
    for (int j = 0; j < 256; j++) {
        const float v = rintf(iscale * x[j]);
        out[j] = (double)d * (v > 127.f ? 127.0 : (double)v);
    }
}

static void ref_lowbit(const ls_weight *w, const float *x, int64_t n, float *y) {
    const int64_t rows = w->rows, cols = w->cols;
    double *xq = malloc(sizeof(double) * (size_t)(n * cols > 0 ? n * cols : 1));
    float *row = malloc(sizeof(float) * (size_t)cols);
    if (!xq || !row) abort();
    for (int64_t i = 0; i < n; i++) {
        if (w->type == LS_TYPE_IQ4_NL) {
            for (int64_t b = 0; b < cols / 32; b++) {
                ref_qblock qb;
                ref_quantize(x + i * cols + b * 32, &qb);
                for (int j = 0; j < 32; j++) xq[i * cols + b * 32 + j] = (double)qb.d * qb.q[j];
            }
        } else {
            for (int64_t b = 0; b < cols / 256; b++) ref_q8k(x + i * cols + b * 256, xq + i * cols + b * 256);
        }
    }
    for (int64_t r = 0; r < rows; r++) {
        ls_weight_get_row(w, r, row);
        for (int64_t i = 0; i < n; i++) {
            double sum = 0.0;
            for (int64_t k = 0; k < cols; k++) sum += (double)row[k] * xq[i * cols + k];
            y[i * rows + r] = (float)sum;
        }
    }
    free(row);
    free(xq);
}

void ls_matmul_ref(const ls_weight *w, const float *x, int64_t n, float *y) {
    const int64_t rows = w->rows, cols = w->cols;
    const size_t rb = ls_weight_row_bytes(w);
    const uint8_t *wd = w->data;
    switch (w->type) {
    case LS_TYPE_Q2_K:
    case LS_TYPE_Q3_K:
    case LS_TYPE_Q4_K:
    case LS_TYPE_Q5_K:
    case LS_TYPE_Q6_K:
    case LS_TYPE_IQ4_NL:
    case LS_TYPE_IQ4_XS: ref_lowbit(w, x, n, y); return;
    case LS_TYPE_Q4_0:
    case LS_TYPE_Q4_1:
    case LS_TYPE_Q5_0:
    case LS_TYPE_Q5_1:
    case LS_TYPE_Q8_0: {
        const int64_t nb = cols / 32;
        const bool has_m = w->type == LS_TYPE_Q4_1 || w->type == LS_TYPE_Q5_1;
        const size_t bb = ls_type_block_bytes(w->type);
        ref_qblock *xq = malloc(sizeof(ref_qblock) * (size_t)(nb * n > 0 ? nb * n : 1));
        if (!xq) abort();
        for (int64_t i = 0; i < n * nb; i++) ref_quantize(x + i * 32, &xq[i]);
        for (int64_t r = 0; r < rows; r++) {
            for (int64_t i = 0; i < n; i++) {
                double sum = 0.0;
                for (int64_t b = 0; b < nb; b++) {
                    const uint8_t *blk = wd + (size_t)r * rb + (size_t)b * bb;
                    const ref_qblock *xb = &xq[i * nb + b];
                    int qw[32];
                    double m = 0.0;
                    if (w->type == LS_TYPE_Q8_0) {
                        for (int j = 0; j < 32; j++) qw[j] = (int8_t)blk[2 + j];
                    } else if (w->type == LS_TYPE_Q5_0 || w->type == LS_TYPE_Q5_1) {
                        /* ggml's block_q5_*: fp16 d [, fp16 m], u32 qh (bit j: the 5th bit of
                         * element j), 16 bytes of nibbles (elements j and j + 16) */
                        const uint8_t *qh = blk + (has_m ? 4 : 2), *qs = qh + 4;
                        const uint32_t hb = (uint32_t)qh[0] | (uint32_t)qh[1] << 8 | (uint32_t)qh[2] << 16 |
                                            (uint32_t)qh[3] << 24;
                        const int off = has_m ? 0 : 16;
                        for (int j = 0; j < 16; j++) {
                            qw[j] = (int)((qs[j] & 0x0F) + 16 * ((hb >> j) & 1)) - off;
                            qw[j + 16] = (int)((qs[j] >> 4) + 16 * ((hb >> (j + 16)) & 1)) - off;
                        }
                        if (has_m) m = ls_f16_to_f32(rd16(blk + 2));
                    } else {
                        const uint8_t *qs = blk + (has_m ? 4 : 2);
                        const int off = has_m ? 0 : 8;
                        for (int j = 0; j < 16; j++) {
                            qw[j] = (qs[j] & 0x0F) - off;
                            qw[j + 16] = (qs[j] >> 4) - off;
                        }
                        if (has_m) m = ls_f16_to_f32(rd16(blk + 2));
                    }
                    long isum = 0;
                    for (int j = 0; j < 32; j++) isum += (long)qw[j] * xb->q[j];
                    sum += (double)ls_f16_to_f32(rd16(blk)) * (double)xb->d * (double)isum + m * (double)xb->s;
                }
                y[i * rows + r] = (float)sum;
            }
        }
        free(xq);
        return;
    }
    case LS_TYPE_F32:
    case LS_TYPE_F16:
    case LS_TYPE_BF16:
        for (int64_t r = 0; r < rows; r++) {
            const uint8_t *row = wd + (size_t)r * rb;
            for (int64_t i = 0; i < n; i++) {
                const float *xi = x + i * cols;
                double sum = 0.0;
                for (int64_t k = 0; k < cols; k++) {
                    double wk, xk;
                    if (w->type == LS_TYPE_F32) {
                        float f;
                        memcpy(&f, row + 4 * k, 4);
                        wk = f;
                        xk = xi[k];
                    } else if (w->type == LS_TYPE_F16) {
                        wk = ls_f16_to_f32(rd16(row + 2 * k));
                        xk = ls_f16_to_f32(ls_f32_to_f16(xi[k]));
                    } else {
                        wk = ls_bf16_to_f32(rd16(row + 2 * k));
                        xk = ls_bf16_to_f32(ls_f32_to_bf16(xi[k]));
                    }
                    sum += wk * xk;
                }
                y[i * rows + r] = (float)sum;
            }
        }
        return;
    }
    abort();
}
