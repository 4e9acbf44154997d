/* test_kernels_k.c: the K-quant and I-quant weight types (Q2_K, Q3_K, Q4_K,
 * Q5_K, Q6_K, IQ4_NL, IQ4_XS).
 *  - against llama.cpp: matmul outputs and dequantized rows bit for bit
 *    equal to ggml's (tests/data/ggml_kquant_goldens.h, made by
 *    scripts/make_kquant_goldens.sh from the ggml in the llama-cpp-python
 *    0.3.36 sdist);
 *  - the kernel this machine runs against the portable lane model, bit for
 *    bit, over random shapes, batch sizes and thread counts (so every batch
 *    row equals the single-row call, as verification needs);
 *  - against ls_matmul_ref (double sums) within a float-rounding bound;
 *  - Q8_K activation quantization against its definition. */
#include "test_util.h"
#include "kernels_impl.h"

#include "../tests/data/ggml_kquant_goldens.h"

static const ls_type ktypes[] = {LS_TYPE_Q2_K, LS_TYPE_Q3_K, LS_TYPE_Q4_K, LS_TYPE_Q5_K,
                                 LS_TYPE_Q6_K, LS_TYPE_IQ4_NL, LS_TYPE_IQ4_XS};
#define NKT ((int)(sizeof ktypes / sizeof ktypes[0]))

static void put16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }

static size_t row_bytes(ls_type t, int64_t cols) {
    return (size_t)(cols / ls_type_block_elems(t)) * ls_type_block_bytes(t);
}

/* random blocks: every quant and scale bit random, the fp16 super-block
 * scales of a realistic size (signs random where the format allows) */
static void *make_weights(ls_type t, int64_t rows, int64_t cols) {
    const size_t total = row_bytes(t, cols) * (size_t)rows, bb = ls_type_block_bytes(t);
    uint8_t *w = malloc(total);
    for (size_t i = 0; i < total; i++) w[i] = (uint8_t)tu_rng_u64();
    for (size_t i = 0; i < total / bb; i++) {
        uint8_t *b = w + i * bb;
        const float s = (float)((0.002 + 0.05 * tu_rng_uniform()) * (tu_rng_u64() & 1 ? 1 : -1));
        switch (t) {
        case LS_TYPE_Q2_K:
            put16(b + 80, ls_f32_to_f16(s / 8));
            put16(b + 82, ls_f32_to_f16(fabsf(s) / 16));
            break;
        case LS_TYPE_Q3_K: put16(b + 108, ls_f32_to_f16(s / 16)); break;
        case LS_TYPE_Q4_K:
        case LS_TYPE_Q5_K:
            put16(b, ls_f32_to_f16(s / 64));
            put16(b + 2, ls_f32_to_f16(fabsf(s) / 64));
            break;
        case LS_TYPE_Q6_K: put16(b + 208, ls_f32_to_f16(s / 256)); break;
        case LS_TYPE_IQ4_NL:
        case LS_TYPE_IQ4_XS: put16(b, ls_f32_to_f16(s / 64)); break;
        default: abort();
        }
    }
    return w;
}

/* activations: 32-blocks of varied scale, zero blocks, outliers */
static float *make_acts(int64_t n, int64_t cols) {
    float *x = malloc(sizeof(float) * (size_t)(n * cols));
    for (int64_t i = 0; i < n * cols; i += 32) {
        const double s = pow(10.0, -2.0 + 3.0 * tu_rng_uniform());
        const int kind = (int)(tu_rng_u64() % 16);
        for (int64_t j = i; j < i + 32; j++) {
            x[j] = kind == 0 ? 0.0f : (float)(tu_rng_normal() * s);
            if (kind == 1 && tu_rng_u64() % 8 == 0) x[j] *= 100.0f;
        }
    }
    return x;
}

static uint64_t fnv1a(const void *p, size_t n) {
    const uint8_t *b = p;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

/* ---- the exact cases: inputs from a fixed seed, outputs from ggml ---- */
#define EX_ROWS 16
#define EX_N 3
static int64_t ex_cols(ls_type t) { return t == LS_TYPE_IQ4_NL ? 96 : 768; } /* IQ4_NL: an odd block count */

static void exact_inputs(ls_type t, void **w, float **x) {
    tu_rng_state = 0x6B5EED00ull + (uint64_t)t;
    const int64_t cols = ex_cols(t);
    *w = make_weights(t, EX_ROWS, cols);
    *x = make_acts(EX_N, cols);
    for (int64_t k = 0; k < cols && k < 256; k++) (*x)[cols + k] = 0.0f; /* an all-zero Q8_K block */
}

static int dump_inputs(const char *dir) {
    for (int i = 0; i < NKT; i++) {
        void *w;
        float *x;
        exact_inputs(ktypes[i], &w, &x);
        char path[4096];
        snprintf(path, sizeof path, "%s/%s_w.bin", dir, ls_type_name(ktypes[i]));
        FILE *f = fopen(path, "wb");
        if (!f) return 1;
        fwrite(w, 1, row_bytes(ktypes[i], ex_cols(ktypes[i])) * EX_ROWS, f);
        fclose(f);
        snprintf(path, sizeof path, "%s/%s_x.bin", dir, ls_type_name(ktypes[i]));
        f = fopen(path, "wb");
        if (!f) return 1;
        fwrite(x, sizeof(float), (size_t)(EX_N * ex_cols(ktypes[i])), f);
        fclose(f);
        printf("%d %s %d %lld %d\n", (int)ktypes[i], ls_type_name(ktypes[i]), EX_ROWS, (long long)ex_cols(ktypes[i]),
               EX_N);
        free(w);
        free(x);
    }
    return 0;
}

static const ggml_golden *golden_of(ls_type t) {
    for (size_t i = 0; i < sizeof ggml_goldens / sizeof ggml_goldens[0]; i++)
        if (ggml_goldens[i].type == (int)t) return &ggml_goldens[i];
    return NULL;
}

static void test_vs_ggml(void) {
    ls_pool *pool = ls_pool_create(2);
    REQUIRE(pool);
    for (int ti = 0; ti < NKT; ti++) {
        const ls_type t = ktypes[ti];
        const ggml_golden *g = golden_of(t);
        REQUIRE(g);
        void *wd;
        float *x;
        exact_inputs(t, &wd, &x);
        const int64_t cols = ex_cols(t);
        const ls_weight w = {.type = t, .rows = EX_ROWS, .cols = cols, .data = wd};
        float y[EX_N * EX_ROWS];
        for (int flags = 0; flags < 2; flags++) {
            ls_matmul_ex(pool, &w, x, EX_N, y, flags ? LS_MATMUL_EXACT : 0);
            int same = 0;
            for (int k = 0; k < EX_N * EX_ROWS; k++) {
                uint32_t u;
                memcpy(&u, &y[k], 4);
                same += u == g->y[k];
            }
            if (same != EX_N * EX_ROWS)
                fprintf(stderr, "%s: %d of %d outputs bit-equal to ggml\n", ls_type_name(t), same, EX_N * EX_ROWS);
            CHECK_EQ_INT(same, EX_N * EX_ROWS);
        }
        /* dequantized rows (token embeddings) */
        float *rowsf = malloc(sizeof(float) * (size_t)(EX_ROWS * cols));
        for (int64_t r = 0; r < EX_ROWS; r++) ls_weight_get_row(&w, r, rowsf + r * cols);
        const uint64_t h = fnv1a(rowsf, sizeof(float) * (size_t)(EX_ROWS * cols));
        if (h != g->deq_fnv) fprintf(stderr, "%s: dequantized rows differ from ggml's\n", ls_type_name(t));
        CHECK(h == g->deq_fnv);
        free(rowsf);
        free(wd);
        free(x);
    }
    ls_pool_free(pool);
}

/* ---- this machine's kernels against the lane model, and the reference ---- */

/* |w_k| + the row's largest |w|, times |x_k|, summed: a magnitude for the
 * float error (a super-block's scaled and min parts can cancel in w) */
static double *error_scale(const ls_weight *w, const float *x, int64_t n) {
    double *s = calloc((size_t)(w->rows * n), sizeof(double));
    float *row = malloc(sizeof(float) * (size_t)w->cols);
    for (int64_t r = 0; r < w->rows; r++) {
        ls_weight_get_row(w, r, row);
        double mx = 0.0;
        for (int64_t k = 0; k < w->cols; k++) mx = fmax(mx, fabs(row[k]));
        for (int64_t i = 0; i < n; i++) {
            double acc = 0.0;
            for (int64_t k = 0; k < w->cols; k++) acc += (fabs(row[k]) + mx) * fabs(x[i * w->cols + k]);
            s[i * w->rows + r] = acc;
        }
    }
    free(row);
    return s;
}

static void test_vs_model_and_ref(void) {
    static const int64_t shapes[][2] = {{1, 256}, {5, 512}, {16, 256}, {37, 768}, {64, 1536}, {7, 2048}};
    static const int64_t ns[] = {1, 2, 3, 4, 5, 8, 9, 17};
    ls_pool *pools[3] = {ls_pool_create(1), ls_pool_create(2), ls_pool_create(3)};
    REQUIRE(pools[0] && pools[1] && pools[2]);
    tu_rng_state = 0xC0FFEE12345ull;
    for (int ti = 0; ti < NKT; ti++) {
        const ls_type t = ktypes[ti];
        double worst = 0.0;
        int model_diff = 0, thread_diff = 0, checked = 0;
        for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
            /* IQ4_NL takes any multiple of 32: make some odd block counts */
            const int64_t rows = shapes[si][0], cols = t == LS_TYPE_IQ4_NL && si % 2 ? shapes[si][1] - 32 : shapes[si][1];
            void *wd = make_weights(t, rows, cols);
            const ls_weight w = {.type = t, .rows = rows, .cols = cols, .data = wd};
            for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++) {
                const int64_t n = ns[ni];
                float *x = make_acts(n, cols);
                const size_t ny = (size_t)(n * rows);
                float *y = malloc(ny * sizeof(float)), *y1 = malloc(ny * sizeof(float));
                float *ym = malloc(ny * sizeof(float)), *ref = malloc(ny * sizeof(float));
                /* the lane model on the same quantized activations */
                ls_k_qact a;
                void *buf = malloc(ls_k_qact_bytes(t, n, cols));
                ls_k_qact_init(t, x, n, cols, buf, &a);
                ls_k_kq_rows_model(&w, &a, 0, rows, ym);
                for (int p = 0; p < 3; p++) {
                    memset(y, 0xff, ny * sizeof(float));
                    ls_matmul(pools[p], &w, x, n, y);
                    if (p == 0) memcpy(y1, y, ny * sizeof(float));
                    else thread_diff += memcmp(y, y1, ny * sizeof(float)) != 0;
                }
                model_diff += memcmp(y1, ym, ny * sizeof(float)) != 0;
                /* each batch row is the single-row call */
                for (int64_t i = 0; i < n; i++) {
                    float *yi = malloc(sizeof(float) * (size_t)rows);
                    ls_matmul_ex(NULL, &w, x + i * cols, 1, yi, LS_MATMUL_EXACT);
                    for (int64_t r = 0; r < rows; r++) model_diff += memcmp(&yi[r], &y1[i * rows + r], 4) != 0;
                    free(yi);
                }
                ls_matmul_ref(&w, x, n, ref);
                double *S = error_scale(&w, x, n);
                for (size_t k = 0; k < ny; k++) {
                    const double e = fabs((double)y1[k] - ref[k]) / (S[k] + 1e-30);
                    if (!(e <= worst)) worst = isnan(y1[k]) ? INFINITY : e;
                }
                checked++;
                free(S);
                free(buf);
                free(x);
                free(y);
                free(y1);
                free(ym);
                free(ref);
            }
            free(wd);
        }
        fprintf(stderr, "   %-6s %d cases: %d differ from the lane model, %d across threads; worst error/S vs ref %.3g\n",
                ls_type_name(t), checked, model_diff, thread_diff, worst);
        CHECK_EQ_INT(model_diff, 0);
        CHECK_EQ_INT(thread_diff, 0);
        CHECK(worst <= 1e-5);
    }
    for (int p = 0; p < 3; p++) ls_pool_free(pools[p]);
}

/* ---- Q8_K activations, from ggml's definition ---- */
static void test_quantize_q8k(void) {
    int8_t q[512];
    float d[2];
    int16_t bs[32];
    /* the largest magnitude is negative: iscale = -127/max flips no sign of q */
    float x[512] = {0};
    x[0] = -2.0f;
    x[1] = 1.0f;
    x[2] = 0.5f * (2.0f / 127.0f); /* an exact half step: rounds to even (0) */
    x[3] = 1.5f * (2.0f / 127.0f);
    ls_k_quant_row_q8k(x, 512, q, d, bs);
    CHECK_EQ_INT(q[0], -127);
    CHECK_EQ_INT(q[1], 64); /* 63.5 rounds to even */
    CHECK(d[0] == 1.0f / (-127.f / -2.0f));
    CHECK_EQ_INT(bs[0], q[0] + q[1] + q[2] + q[3]);
    /* the second block is all zero */
    CHECK(d[1] == 0.0f);
    for (int j = 256; j < 512; j++) CHECK_EQ_INT(q[j], 0);
    for (int g = 16; g < 32; g++) CHECK_EQ_INT(bs[g], 0);
    /* ties in magnitude: the first one sets the sign of the scale (a
     * positive max gives a negative d and negated quants) */
    float y[256] = {0};
    y[5] = 3.0f;
    y[9] = -3.0f;
    ls_k_quant_row_q8k(y, 256, q, d, bs);
    CHECK(d[0] < 0.0f);
    CHECK_EQ_INT(q[5], -127);
    CHECK_EQ_INT(q[9], 127);
}

static void test_errors_named(void) {
    /* rows that are not whole super-blocks are refused by name */
    CHECK_EQ_INT(ls_type_block_elems(LS_TYPE_Q4_K), 256);
    CHECK_EQ_INT(ls_type_block_elems(LS_TYPE_IQ4_NL), 32);
    uint64_t nbytes;
    CHECK(!ls_type_nbytes(LS_TYPE_Q6_K, 576, &nbytes));
    CHECK(ls_type_nbytes(LS_TYPE_Q6_K, 512, &nbytes) && nbytes == 420);
    CHECK(!ls_type_is_supported(15)); /* Q8_K: an activation type only */
    CHECK(!ls_type_is_supported(16)); /* IQ2_XXS */
    CHECK_STR_EQ(ls_type_name(LS_TYPE_IQ4_XS), "IQ4_XS");
}

int main(void) {
    const char *dump = getenv("LS_KERNELS_DUMP");
    if (dump) return dump_inputs(dump);
    RUN(test_quantize_q8k);
    RUN(test_errors_named);
    RUN(test_vs_ggml);
    RUN(test_vs_model_and_ref);
    TEST_MAIN_END();
}
