/* test_kernels.c: every fast kernel against its reference on random data
 * (all types, many shapes and batch sizes, pools of 1-3 threads, both matmul
 * paths), multi-row batch invariance, LS_MATMUL_EXACT against llama.cpp's
 * own outputs, activation quantization rounding, the pool, the vector ops.
 *
 * Tolerances. The integer path computes, per 32-block, d_w*d_x (exact: two
 * fp16 values) times an exact integer dot, then sums blocks in float; the
 * reference does the same sums in double. Each float step rounds by at most
 * 2^-24 of its operand magnitudes, and a row of K/32 blocks spread over 8
 * lanes builds up at most ~(K/256 + 4) such steps, so the error is bounded
 * by ~1e-6 of S = sum_j |w_j x_j| (+ sum_b |m_b s_b| for Q4_1) for the
 * shapes here (K <= 2048); we allow 1e-5 * S. The sgemm path multiplies the
 * same quantize-dequantized values in f32 (products rounded, then K-long
 * sums in OpenBLAS's order): random-walk error ~sqrt(K)*2^-24*S ~3e-6 S at
 * K = 2048; we allow 2e-5 * S. Float weights (F16/BF16 products are exact
 * in f32) use the same bounds. The observed worst ratios are printed. */
#include "test_util.h"
#include "kernels.h"

#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#define TOL_MULTIROW 1e-5
#define TOL_SGEMM 2e-5

static void put16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static uint16_t get16(const uint8_t *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

static size_t row_bytes(ls_type t, int64_t cols) {
    return (size_t)(cols / ls_type_block_elems(t)) * ls_type_block_bytes(t);
}

/* random weights of a realistic spread, in the type's own encoding */
static void *make_weights(ls_type t, int64_t rows, int64_t cols) {
    const size_t total = row_bytes(t, cols) * (size_t)rows;
    uint8_t *w = malloc(total ? total : 1);
    const size_t bb = ls_type_block_bytes(t);
    const size_t nblk = total / bb;
    for (size_t i = 0; i < nblk; i++) {
        uint8_t *b = w + i * bb;
        const double scale = 0.002 + 0.05 * tu_rng_uniform();
        switch (t) {
        case LS_TYPE_F32: {
            float f = (float)(tu_rng_normal() * 0.05);
            memcpy(b, &f, 4);
            break;
        }
        case LS_TYPE_F16: put16(b, ls_f32_to_f16((float)(tu_rng_normal() * 0.05))); break;
        case LS_TYPE_BF16: put16(b, ls_f32_to_bf16((float)(tu_rng_normal() * 0.05))); break;
        case LS_TYPE_Q4_0:
            put16(b, ls_f32_to_f16((float)(tu_rng_u64() & 1 ? scale : -scale)));
            for (int j = 0; j < 16; j++) b[2 + j] = (uint8_t)tu_rng_u64();
            break;
        case LS_TYPE_Q4_1:
            put16(b, ls_f32_to_f16((float)scale));
            put16(b + 2, ls_f32_to_f16((float)(-8.0 * scale * (0.5 + tu_rng_uniform()))));
            for (int j = 0; j < 16; j++) b[4 + j] = (uint8_t)tu_rng_u64();
            break;
        case LS_TYPE_Q5_0:
            put16(b, ls_f32_to_f16((float)(tu_rng_u64() & 1 ? scale : -scale) / 2));
            for (int j = 0; j < 20; j++) b[2 + j] = (uint8_t)tu_rng_u64();
            break;
        case LS_TYPE_Q5_1:
            put16(b, ls_f32_to_f16((float)scale / 2));
            put16(b + 2, ls_f32_to_f16((float)(-8.0 * scale * (0.5 + tu_rng_uniform()))));
            for (int j = 0; j < 20; j++) b[4 + j] = (uint8_t)tu_rng_u64();
            break;
        case LS_TYPE_Q8_0:
            put16(b, ls_f32_to_f16((float)(tu_rng_u64() & 1 ? scale : -scale) / 16));
            for (int j = 0; j < 32; j++) {
                int v = (int)(tu_rng_u64() % 255) - 127;
                if (tu_rng_u64() % 64 == 0) v = -128; /* files may hold it */
                b[2 + j] = (uint8_t)(int8_t)v;
            }
            break;
        default: abort(); /* K-quants and IQ4: test_kernels_k.c */
        }
    }
    return w;
}

/* activations: blocks of varied scale, some all-zero blocks and outliers */
static float *make_acts(int64_t n, int64_t cols) {
    float *x = malloc(sizeof(float) * (size_t)(n * cols > 0 ? n * cols : 1));
    for (int64_t i = 0; i < n * cols; i += 32) {
        const double s = pow(10.0, -2.0 + 3.0 * tu_rng_uniform());
        const int kind = (int)(tu_rng_u64() % 16);
        for (int64_t j = i; j < i + 32 && j < n * cols; j++) {
            x[j] = kind == 0 ? 0.0f : (float)(tu_rng_normal() * s);
            if (kind == 1 && tu_rng_u64() % 8 == 0) x[j] *= 100.0f;
        }
    }
    return x;
}

/* value of weight (r, k), and the block min (Q4_1) that it includes */
static double weight_at(ls_type t, const uint8_t *w, int64_t cols, int64_t r, int64_t k, double *min_out) {
    const uint8_t *row = w + row_bytes(t, cols) * (size_t)r;
    *min_out = 0.0;
    switch (t) {
    case LS_TYPE_F32: {
        float f;
        memcpy(&f, row + 4 * k, 4);
        return f;
    }
    case LS_TYPE_F16: return ls_f16_to_f32(get16(row + 2 * k));
    case LS_TYPE_BF16: return ls_bf16_to_f32(get16(row + 2 * k));
    default: break;
    }
    const uint8_t *b = row + ls_type_block_bytes(t) * (size_t)(k / 32);
    const int j = (int)(k % 32);
    const double d = ls_f16_to_f32(get16(b));
    if (t == LS_TYPE_Q8_0) return d * (int8_t)b[2 + j];
    if (t == LS_TYPE_Q5_0 || t == LS_TYPE_Q5_1) { /* u32 qh: bit j is element j's fifth bit */
        const uint8_t *qh = b + (t == LS_TYPE_Q5_1 ? 4 : 2), *qs = qh + 4;
        const int hi = (qh[j / 8] >> (j % 8)) & 1;
        const int q = (j < 16 ? (qs[j] & 0x0F) : (qs[j - 16] >> 4)) | hi << 4;
        if (t == LS_TYPE_Q5_0) return d * (q - 16);
        *min_out = ls_f16_to_f32(get16(b + 2));
        return d * q + *min_out;
    }
    const uint8_t *qs = b + (t == LS_TYPE_Q4_1 ? 4 : 2);
    const int q = j < 16 ? (qs[j] & 0x0F) : (qs[j - 16] >> 4);
    if (t == LS_TYPE_Q4_0) return d * (q - 8);
    *min_out = ls_f16_to_f32(get16(b + 2));
    return d * q + *min_out;
}

/* S[i*rows + r] = sum_k |w_rk x_ik| + |m_rk x_ik|: the magnitude errors scale with */
static double *error_scale(ls_type t, const uint8_t *w, int64_t rows, int64_t cols, const float *x, int64_t n) {
    double *s = calloc((size_t)(rows * n > 0 ? rows * n : 1), sizeof(double));
    double *wr = malloc(sizeof(double) * (size_t)cols * 2);
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t k = 0; k < cols; k++) {
            double m;
            const double v = weight_at(t, w, cols, r, k, &m);
            wr[2 * k] = fabs(v - m);
            wr[2 * k + 1] = fabs(m);
        }
        for (int64_t i = 0; i < n; i++) {
            double acc = 0.0;
            for (int64_t k = 0; k < cols; k++) acc += (wr[2 * k] + wr[2 * k + 1]) * fabs(x[i * cols + k]);
            s[i * rows + r] = acc;
        }
    }
    free(wr);
    return s;
}

static double worst_ratio_multirow = 0.0, worst_ratio_sgemm = 0.0;

/* max over outputs of |a - ref| / S, failing the check above tol */
static double compare(const float *a, const float *ref, const double *S, int64_t count, double tol, const char *what,
                      ls_type t, int64_t rows, int64_t cols, int64_t n, int nth) {
    double worst = 0.0;
    int64_t bad = -1;
    for (int64_t i = 0; i < count; i++) {
        const double e = fabs((double)a[i] - (double)ref[i]);
        const double ratio = e / (S[i] + 1e-30);
        if (!(ratio <= worst) || isnan(a[i])) {
            worst = isnan(a[i]) ? INFINITY : ratio;
            bad = i;
        }
    }
    tu_checks++;
    if (!(worst <= tol)) {
        tu_failures++;
        fprintf(stderr, "FAIL %s %s rows %lld cols %lld n %lld threads %d: error/S %.3g at %lld (%.9g vs ref %.9g)\n",
                what, ls_type_name(t), (long long)rows, (long long)cols, (long long)n, nth, worst, (long long)bad,
                (double)a[bad], (double)ref[bad]);
    }
    return worst;
}

typedef struct shape {
    int64_t rows, cols;
    bool all_n; /* every n of the list, else a subset */
} shape;

static void test_matmul_vs_ref(void) {
    static const ls_type types[] = {LS_TYPE_Q4_0, LS_TYPE_Q4_1, LS_TYPE_Q5_0, LS_TYPE_Q5_1, LS_TYPE_Q8_0,
                                    LS_TYPE_F16,  LS_TYPE_BF16, LS_TYPE_F32};
    static const shape shapes[] = {
        {1, 32, true},     {2, 64, true},   {5, 32, true},    {32, 32, true},  {37, 96, true},
        {64, 64, true},    {96, 96, true},  {192, 576, false}, {576, 576, false}, {40, 1536, false},
        {33, 2048, false}, {7, 33, true},   {13, 100, false},
    };
    static const int64_t all_n[] = {1, 2, 3, 5, 8, 9, 16, 17, 33, 64, 128};
    static const int64_t some_n[] = {1, 3, 9, 17, 64};
    ls_pool *pools[3] = {ls_pool_create(1), ls_pool_create(2), ls_pool_create(3)};
    REQUIRE(pools[0] && pools[1] && pools[2]);
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        const ls_type t = types[ti];
        const bool quant = ls_type_block_elems(t) == 32;
        double worst_mr = 0.0, worst_sg = 0.0;
        for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
            const shape sh = shapes[si];
            if (quant && sh.cols % 32 != 0) continue;
            void *wd = make_weights(t, sh.rows, sh.cols);
            const ls_weight w = {.type = t, .rows = sh.rows, .cols = sh.cols, .data = wd};
            const int64_t *ns = sh.all_n ? all_n : some_n;
            const size_t nn = sh.all_n ? sizeof all_n / sizeof all_n[0] : sizeof some_n / sizeof some_n[0];
            for (size_t ni = 0; ni < nn; ni++) {
                const int64_t n = ns[ni];
                float *x = make_acts(n, sh.cols);
                const size_t ny = (size_t)(n * sh.rows);
                float *ref = malloc(ny * sizeof(float));
                float *y = malloc(ny * sizeof(float));
                float *y_mr1 = malloc(ny * sizeof(float));
                float *y_sg1 = malloc(ny * sizeof(float));
                ls_matmul_ref(&w, x, n, ref);
                double *S = error_scale(t, wd, sh.rows, sh.cols, x, n);
                for (int p = 0; p < 3; p++) {
                    const int nth = p + 1;
                    memset(y, 0xff, ny * sizeof(float)); /* NaN: unwritten outputs fail */
                    ls_matmul_multirow(pools[p], &w, x, n, y);
                    double e = compare(y, ref, S, (int64_t)ny, TOL_MULTIROW, "multirow", t, sh.rows, sh.cols, n, nth);
                    worst_mr = e > worst_mr ? e : worst_mr;
                    if (p == 0) {
                        memcpy(y_mr1, y, ny * sizeof(float));
                    } else { /* each output is one tile's sum: thread count cannot change it */
                        tu_checks++;
                        if (memcmp(y, y_mr1, ny * sizeof(float)) != 0) {
                            tu_failures++;
                            fprintf(stderr, "FAIL multirow %s %lldx%lld n %lld: %d threads differ from 1 thread\n",
                                    ls_type_name(t), (long long)sh.rows, (long long)sh.cols, (long long)n, nth);
                        }
                    }
                    memset(y, 0xff, ny * sizeof(float));
                    ls_matmul_sgemm(pools[p], &w, x, n, y);
                    e = compare(y, ref, S, (int64_t)ny, TOL_SGEMM, "sgemm", t, sh.rows, sh.cols, n, nth);
                    worst_sg = e > worst_sg ? e : worst_sg;
                    if (p == 0) memcpy(y_sg1, y, ny * sizeof(float));
                    memset(y, 0xff, ny * sizeof(float));
                    ls_matmul(pools[p], &w, x, n, y);
                    compare(y, ref, S, (int64_t)ny, TOL_SGEMM, "ls_matmul", t, sh.rows, sh.cols, n, nth);
                }
                /* the two paths agree with each other (sum of both bounds) */
                compare(y_mr1, y_sg1, S, (int64_t)ny, TOL_MULTIROW + TOL_SGEMM, "multirow-vs-sgemm", t, sh.rows,
                        sh.cols, n, 1);
                free(S);
                free(x);
                free(ref);
                free(y);
                free(y_mr1);
                free(y_sg1);
            }
            free(wd);
        }
        fprintf(stderr, "   %-5s worst error/S: multirow %.3g, sgemm %.3g\n", ls_type_name(t), worst_mr, worst_sg);
        worst_ratio_multirow = worst_mr > worst_ratio_multirow ? worst_mr : worst_ratio_multirow;
        worst_ratio_sgemm = worst_sg > worst_ratio_sgemm ? worst_sg : worst_ratio_sgemm;
    }
    /* null pool and n = 0 */
    void *wd = make_weights(LS_TYPE_Q4_1, 8, 64);
    const ls_weight w = {.type = LS_TYPE_Q4_1, .rows = 8, .cols = 64, .data = wd};
    float *x = make_acts(2, 64);
    float ref[16], y[16], sentinel[16];
    ls_matmul_ref(&w, x, 2, ref);
    ls_matmul(NULL, &w, x, 2, y);
    double *S1 = error_scale(LS_TYPE_Q4_1, wd, 8, 64, x, 2);
    compare(y, ref, S1, 16, TOL_MULTIROW, "null-pool", LS_TYPE_Q4_1, 8, 64, 2, 1);
    free(S1);
    memset(sentinel, 0x5a, sizeof sentinel);
    memcpy(y, sentinel, sizeof y);
    ls_matmul(pools[1], &w, x, 0, y);
    CHECK(memcmp(y, sentinel, sizeof y) == 0);
    free(x);
    free(wd);
    for (int p = 0; p < 3; p++) ls_pool_free(pools[p]);
}

/* Multi-row outputs do not depend on the batch: row i of an n-row call is
 * bit for bit the one-row call on row i (and on any thread count), so a
 * verification batch reproduces single-token decoding exactly. */
static void test_multirow_batch_invariance(void) {
    static const ls_type types[] = {LS_TYPE_Q4_0, LS_TYPE_Q4_1, LS_TYPE_Q5_0, LS_TYPE_Q5_1, LS_TYPE_Q8_0,
                                    LS_TYPE_F16,  LS_TYPE_BF16, LS_TYPE_F32};
    ls_pool *pool = ls_pool_create(3);
    REQUIRE(pool);
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        const ls_type t = types[ti];
        const int64_t rows = 43, cols = 160, n = 11;
        void *wd = make_weights(t, rows, cols);
        const ls_weight w = {.type = t, .rows = rows, .cols = cols, .data = wd};
        float *x = make_acts(n, cols);
        float *yb = malloc(sizeof(float) * (size_t)(n * rows));
        float y1[43];
        int diff = 0;
        for (int64_t nn = 1; nn <= n; nn++) {
            ls_matmul_multirow(pool, &w, x, nn, yb);
            for (int64_t i = 0; i < nn; i++) {
                ls_matmul_multirow(NULL, &w, x + i * cols, 1, y1);
                diff += memcmp(y1, yb + i * rows, sizeof y1) != 0;
            }
        }
        if (diff) fprintf(stderr, "%s: %d batch rows differ from single-row calls\n", ls_type_name(t), diff);
        CHECK_EQ_INT(diff, 0);
        free(yb);
        free(x);
        free(wd);
    }
    ls_pool_free(pool);
}

/* ---- exact mode against llama.cpp ----
 * Inputs from a fixed generator; the expected outputs are what ggml's
 * mul_mat (llama-cpp-python 0.3.36, CPU backend, AVX2, one thread) returned
 * for exactly these bytes, as float bit patterns. With AVX2 (or VNNI) the
 * LS_MATMUL_EXACT outputs must equal them bit for bit; the portable build
 * sums in another order and is held to the usual tolerance. Regenerate:
 * LS_KERNELS_DUMP=dir test_kernels writes dir/<type>_{w,x}.bin, then feed
 * them to ggml_mul_mat (rows 16, cols 96, n 3): scripts/ggml_exact.c does
 * that against the ggml that scripts/llamacpp_tools.sh builds. */
#define EXACT_ROWS 16
#define EXACT_COLS 96
#define EXACT_N 3

static void exact_inputs(ls_type t, void **w, float **x) {
    tu_rng_state = 0x5EED0000ull + (uint64_t)t;
    *w = make_weights(t, EXACT_ROWS, EXACT_COLS);
    *x = make_acts(EXACT_N, EXACT_COLS);
}

static const uint32_t exact_q4_0[EXACT_N * EXACT_ROWS] = {
    0xbe326c20, 0xc00abc34, 0x404458ea, 0x3fcc5bec, 0xbfa7f084, 0xbeacfc6c,
    0x40392e8f, 0x3fc07782, 0x40a40ed9, 0x3f1a9704, 0xbeca2c5a, 0x3f2f657c,
    0x3fe6d912, 0x3e5c019c, 0xc0a0b743, 0x40795f3f, 0xc01c794f, 0x3ed0f130,
    0x3f8041c8, 0x3fa63f16, 0x3f8fe42c, 0x3f36f480, 0xbdeb59a0, 0x3f2abd00,
    0xc0702b95, 0xbf33f130, 0x40151f47, 0xc00d2bcc, 0x402db64c, 0xbfbd2049,
    0xbed823d0, 0x4003fcd4, 0xbfe2b938, 0x425445bd, 0x425a5000, 0xc3690539,
    0xc3fe16fe, 0x4146d4fe, 0x427fe96c, 0x3e931054, 0xc41be028, 0x4195be12,
    0x4285ebc2, 0xc234a3c6, 0x435862c2, 0xc1ad09d2, 0x41fd983c, 0x42add6b0,
};
static const uint32_t exact_q4_1[EXACT_N * EXACT_ROWS] = {
    0xbd2fa09c, 0x3d31a9d8, 0x3e1c0ac3, 0xbd76d4cd, 0xbda1ab1e, 0x3c3470e8,
    0xbcfb6624, 0x3d327dd0, 0x3d8bb7a8, 0xbc76208c, 0x3c4d9fd8, 0x3e2a076a,
    0xbd4f343c, 0xbda49806, 0xbe6525e3, 0xbdf121e8, 0xc0098444, 0x3d6aebc0,
    0x3d536580, 0xbda5d05c, 0x3e9fd0b4, 0x3fa2d1fa, 0xbf722518, 0x3f46302e,
    0xbf320d97, 0xbe842a86, 0x3f86c906, 0x3f2c4030, 0x3d936da8, 0x3ee7f74e,
    0xbf3a611b, 0xbfc054c9, 0x3f57e7d4, 0xc04679cd, 0x3f9262e0, 0xbe2091d0,
    0x3eb66240, 0xbfa714f6, 0x40889e0d, 0xc07c9244, 0xc00dd966, 0x3f2e8da6,
    0xc0afbd4e, 0xbfa91fd0, 0xc08d4065, 0x3ed04950, 0x40802ed0, 0xc11eb9ef,
};
static const uint32_t exact_q8_0[EXACT_N * EXACT_ROWS] = {
    0xbd8087ae, 0x3ff717a8, 0x3fa16e30, 0xc030be72, 0x3fa6488a, 0xc079a23c,
    0xbf4ada04, 0xbe03e49c, 0xc0c5dfde, 0xbeca42f5, 0x3d90ed30, 0xbea25162,
    0xbd770500, 0xbf01c112, 0xbf0a41fa, 0xc07d75e4, 0xc0cbb5cc, 0xbfb1bcad,
    0xbeee1f35, 0xc07b97c4, 0x3f3a864e, 0xbef2d340, 0xc02c5f44, 0xc0223449,
    0x40d5ff02, 0xbfa355b4, 0xc0e8739c, 0x406dd925, 0x41368566, 0xc0291f2d,
    0x40ef4146, 0xc08085f0, 0xbe94f313, 0x3e3d7e4b, 0xbf9517af, 0x4012c9d5,
    0xbe97c59d, 0xbfe22ca9, 0xbf8a00d3, 0x40046b58, 0xbfe2ed84, 0x3e3286d4,
    0xc039c108, 0x3fe8d5e9, 0xbfbe1cf9, 0x3ed2fc80, 0xbfbcac17, 0x40200df4,
};

static const uint32_t exact_q5_0[EXACT_N * EXACT_ROWS] = {
    0xc0da3971, 0x42573e08, 0x41e4327a, 0x41e94f82, 0xbf97617c, 0xc1f544cc,
    0x41590ece, 0x412a9e03, 0x428e2bbc, 0x40ef5fb0, 0x426bace2, 0xc034da1e,
    0xc194807e, 0x424ac734, 0xc0834df8, 0x4263c89f, 0xbf04e5fc, 0xbe1f7da1,
    0xbf5fa930, 0xbe54ea2e, 0x3f4be14d, 0x3edacfe2, 0xbf23b438, 0xbfc52554,
    0xbfaf4d1a, 0xbeb99655, 0xc027aa86, 0x3f94489d, 0xbfb2664e, 0x4024918e,
    0xc0108750, 0xbfdc6536, 0xbde64182, 0xbeb02e82, 0xbdb10116, 0xbdcdc97c,
    0xbdbfba6c, 0x3c8a1d8c, 0xbc3dee80, 0xbec92ac8, 0xbdfe0f2c, 0xbe14ce1e,
    0xbdf293b4, 0xbe14b685, 0xbe529d00, 0x3f6212c0, 0xbee839ce, 0x3d880496,
};

static const uint32_t exact_q5_1[EXACT_N * EXACT_ROWS] = {
    0x3f4dc900, 0x3ff84668, 0xbf2d6050, 0x3fd9dbca, 0xc006a6c0, 0xbe9f1c40,
    0x404b0dc3, 0xbdbd9280, 0xbfc3be50, 0xbfbbb370, 0xbfb0eb58, 0xc06af4e8,
    0xbffcfc4c, 0x4107d9d8, 0x3e7a76c0, 0x3f5bf400, 0xbeac4050, 0xc1255379,
    0xc03b2e39, 0x41487043, 0x4117bbd6, 0xc08ee5fe, 0x3f713ca0, 0x3f06ff90,
    0xc0a0783a, 0x3e9a9c7e, 0x3f8b2a38, 0x3fd3c840, 0xbf790510, 0xc0528550,
    0x3ff16938, 0x4065dc62, 0x3dcfacb8, 0x4016c469, 0xbe2495b4, 0xbfb064da,
    0xc0975278, 0x3f76a212, 0x3f5f1600, 0xc0290312, 0x3fd0babb, 0x3f420d98,
    0xbe99ad08, 0xbfc23b86, 0xbe4f83c0, 0xc080bfb2, 0x3ff2f2a5, 0x3f2bbf0e,
};

static int dump_exact_inputs(const char *dir) {
    static const ls_type types[] = {LS_TYPE_Q4_0, LS_TYPE_Q4_1, LS_TYPE_Q5_0, LS_TYPE_Q5_1, LS_TYPE_Q8_0};
    for (int i = 0; i < 5; i++) {
        void *w;
        float *x;
        exact_inputs(types[i], &w, &x);
        char path[4096];
        snprintf(path, sizeof path, "%s/%s_w.bin", dir, ls_type_name(types[i]));
        FILE *f = fopen(path, "wb");
        if (!f) return 1;
        fwrite(w, 1, row_bytes(types[i], EXACT_COLS) * EXACT_ROWS, f);
        fclose(f);
        snprintf(path, sizeof path, "%s/%s_x.bin", dir, ls_type_name(types[i]));
        f = fopen(path, "wb");
        if (!f) return 1;
        fwrite(x, sizeof(float), EXACT_N * EXACT_COLS, f);
        fclose(f);
        free(w);
        free(x);
    }
    return 0;
}

static void test_exact_vs_llamacpp(void) {
    static const ls_type types[] = {LS_TYPE_Q4_0, LS_TYPE_Q4_1, LS_TYPE_Q5_0, LS_TYPE_Q5_1, LS_TYPE_Q8_0};
    const uint32_t *want[] = {exact_q4_0, exact_q4_1, exact_q5_0, exact_q5_1, exact_q8_0};
    ls_pool *pool = ls_pool_create(2);
    REQUIRE(pool);
    for (int i = 0; i < 5; i++) {
        const ls_type t = types[i];
        void *wd;
        float *x;
        exact_inputs(t, &wd, &x);
        const ls_weight w = {.type = t, .rows = EXACT_ROWS, .cols = EXACT_COLS, .data = wd};
        float y[EXACT_N * EXACT_ROWS], ref[EXACT_N * EXACT_ROWS];
        float expect[EXACT_N * EXACT_ROWS];
        memcpy(expect, want[i], sizeof expect);
        ls_matmul_ex(pool, &w, x, EXACT_N, y, LS_MATMUL_EXACT);
        ls_matmul_ref(&w, x, EXACT_N, ref);
        double *S = error_scale(t, wd, EXACT_ROWS, EXACT_COLS, x, EXACT_N);
        compare(y, ref, S, EXACT_N * EXACT_ROWS, TOL_MULTIROW, "exact", t, EXACT_ROWS, EXACT_COLS, EXACT_N, 2);
        compare(expect, ref, S, EXACT_N * EXACT_ROWS, TOL_MULTIROW, "llama.cpp-golden", t, EXACT_ROWS, EXACT_COLS,
                EXACT_N, 1);
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
        int same = 0;
        for (int k = 0; k < EXACT_N * EXACT_ROWS; k++) same += memcmp(&y[k], &expect[k], 4) == 0;
        if (same != EXACT_N * EXACT_ROWS)
            fprintf(stderr, "%s: %d of %d outputs bit-equal to llama.cpp\n", ls_type_name(t), same,
                    EXACT_N * EXACT_ROWS);
        CHECK_EQ_INT(same, EXACT_N * EXACT_ROWS);
#endif
        /* one row at a time gives the same bits (what llama.cpp computes) */
        for (int k = 0; k < EXACT_N; k++) {
            float y1[EXACT_ROWS];
            ls_matmul_ex(NULL, &w, x + k * EXACT_COLS, 1, y1, LS_MATMUL_EXACT);
            CHECK(memcmp(y1, y + k * EXACT_ROWS, sizeof y1) == 0);
        }
        /* Q4_0, Q5_0 and Q8_0 already sum in llama.cpp's order without the flag */
        if (t != LS_TYPE_Q4_1 && t != LS_TYPE_Q5_1) {
            float yf[EXACT_N * EXACT_ROWS];
            ls_matmul_multirow(pool, &w, x, EXACT_N, yf);
            CHECK(memcmp(yf, y, sizeof y) == 0);
        }
        free(S);
        free(wd);
        free(x);
    }
    ls_pool_free(pool);
}

/* llama.cpp's x86 Q8_0/Q8_1 activation quantization, from its definition */
static void model_q8(const float *x, int8_t *q, uint16_t *dh, uint16_t *sh) {
    float amax = 0.0f;
    for (int j = 0; j < 32; j++) amax = fabsf(x[j]) > amax ? fabsf(x[j]) : amax;
    const float d = amax / 127.f, id = amax != 0.0f ? 127.f / amax : 0.0f;
    int sum = 0;
    for (int j = 0; j < 32; j++) {
        q[j] = (int8_t)nearbyintf(x[j] * id);
        sum += q[j];
    }
    *dh = ls_f32_to_f16(d);
    *sh = ls_f32_to_f16(d * (float)sum);
}

static void test_quantize_q8(void) {
    uint8_t out[36 * 4];
    /* amax 127 makes id exactly 1: halves round to even, not away from 0 */
    float x[32] = {127.0f, 2.5f, 3.5f, -2.5f, -3.5f, 0.5f, -0.5f, 1.5f, -1.5f, 126.5f, -127.0f, 0.49999997f};
    ls_quantize_row_q8_0(x, 32, out);
    const int8_t *q = (const int8_t *)(out + 2);
    CHECK_EQ_INT(get16(out), ls_f32_to_f16(1.0f));
    const int want[12] = {127, 2, 4, -2, -4, 0, 0, 2, -2, 126, -127, 0};
    for (int j = 0; j < 12; j++) CHECK_EQ_INT(q[j], want[j]);
    for (int j = 12; j < 32; j++) CHECK_EQ_INT(q[j], 0);
    /* amax 254: id = 0.5 */
    float x2[32] = {254.0f, 5.0f, 7.0f, -5.0f, 1.0f, 3.0f};
    ls_quantize_row_q8_0(x2, 32, out);
    const int want2[6] = {127, 2, 4, -2, 0, 2};
    for (int j = 0; j < 6; j++) CHECK_EQ_INT(((const int8_t *)(out + 2))[j], want2[j]);
    CHECK_EQ_INT(get16(out), ls_f32_to_f16(2.0f));
    /* an all-zero block: d = 0 and q = 0 */
    float z[32] = {0};
    ls_quantize_row_q8_1(z, 32, out);
    CHECK_EQ_INT(get16(out), 0);
    CHECK_EQ_INT(get16(out + 2), 0);
    for (int j = 0; j < 32; j++) CHECK_EQ_INT(((const int8_t *)(out + 4))[j], 0);
    /* random blocks, bit for bit against the model, both layouts */
    int mismatches = 0;
    for (int it = 0; it < 2000; it++) {
        float xr[128];
        const double s = pow(10.0, -4.0 + 6.0 * tu_rng_uniform());
        for (int j = 0; j < 128; j++) xr[j] = (float)(tu_rng_normal() * s);
        if (it % 7 == 0) xr[it % 128] = (float)(s * 40.0); /* one outlier */
        if (it % 11 == 0) { /* amax 127*sc with sc a power of two: x*id lands on exact halves */
            const float sc = it % 3 == 0 ? 0.5f : it % 3 == 1 ? 1.0f : 2.0f;
            xr[0] = 127.0f * sc;
            for (int j = 1; j < 32; j++) xr[j] = (float)((j % 2 ? -1 : 1) * (j * 3 % 126 + 0.5)) * sc;
        }
        uint8_t o0[34 * 4], o1[36 * 4];
        ls_quantize_row_q8_0(xr, 128, o0);
        ls_quantize_row_q8_1(xr, 128, o1);
        for (int b = 0; b < 4; b++) {
            int8_t mq[32];
            uint16_t dh, sh;
            model_q8(xr + 32 * b, mq, &dh, &sh);
            if (get16(o0 + 34 * b) != dh || memcmp(o0 + 34 * b + 2, mq, 32) != 0) mismatches++;
            if (get16(o1 + 36 * b) != dh || get16(o1 + 36 * b + 2) != sh || memcmp(o1 + 36 * b + 4, mq, 32) != 0)
                mismatches++;
        }
    }
    CHECK_EQ_INT(mismatches, 0);
}

static void test_weight_get_row(void) {
    static const ls_type types[] = {LS_TYPE_Q4_0, LS_TYPE_Q4_1, LS_TYPE_Q5_0, LS_TYPE_Q5_1,
                                    LS_TYPE_Q8_0, LS_TYPE_F16,  LS_TYPE_BF16, LS_TYPE_F32};
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        const ls_type t = types[ti];
        const int64_t rows = 5, cols = 96;
        void *wd = make_weights(t, rows, cols);
        const ls_weight w = {.type = t, .rows = rows, .cols = cols, .data = wd};
        CHECK_EQ_INT(ls_weight_row_bytes(&w), row_bytes(t, cols));
        float out[96];
        int bad = 0;
        for (int64_t r = 0; r < rows; r++) {
            ls_weight_get_row(&w, r, out);
            for (int64_t k = 0; k < cols; k++) {
                double m;
                const double v = weight_at(t, wd, cols, r, k, &m);
                /* Q4_1 is fma(q, d, m): one rounding of the exact value */
                if (fabs(out[k] - v) > fabs(v) * 6e-8 + 1e-30) bad++;
            }
        }
        CHECK_EQ_INT(bad, 0);
        free(wd);
    }
}

/* ---- thread pool ---- */
typedef struct count_job {
    atomic_int hits[8];
    atomic_int bad_nth;
    int expect_nth;
    ls_pool *pool; /* for the nested run */
    int sleep_us;
} count_job;

static void count_fn(void *arg, int ith, int nth) {
    count_job *j = arg;
    if (nth != j->expect_nth || ith < 0 || ith >= nth) atomic_fetch_add(&j->bad_nth, 1);
    else atomic_fetch_add(&j->hits[ith], 1);
    if (j->sleep_us && ith == nth - 1) usleep((useconds_t)j->sleep_us);
}

static void nested_fn(void *arg, int ith, int nth) {
    count_job *j = arg;
    (void)nth;
    if (ith == 0) ls_pool_run(j->pool, count_fn, j); /* runs inline */
}

typedef struct ext_caller {
    ls_pool *pool;
    count_job *job;
    int iters;
} ext_caller;

static void *ext_main(void *arg) {
    ext_caller *c = arg;
    for (int i = 0; i < c->iters; i++) ls_pool_run(c->pool, count_fn, c->job);
    return NULL;
}

static void test_pool(void) {
    for (int nth = 1; nth <= 4; nth++) {
        ls_pool *p = ls_pool_create(nth);
        REQUIRE(p);
        CHECK_EQ_INT(ls_pool_size(p), nth);
        count_job j;
        memset(&j, 0, sizeof j);
        j.expect_nth = nth;
        j.pool = p;
        const int iters = 3000;
        for (int i = 0; i < iters; i++) ls_pool_run(p, count_fn, &j);
        /* a slow thread: the caller outwaits its spin and sleeps */
        j.sleep_us = 5000;
        ls_pool_run(p, count_fn, &j);
        j.sleep_us = 0;
        /* an idle pool whose workers went to sleep */
        usleep(20000);
        ls_pool_run(p, count_fn, &j);
        /* nested: the inner run goes inline, every ith once */
        ls_pool_run(p, nested_fn, &j);
        /* two outside threads sharing the pool */
        ext_caller c = {.pool = p, .job = &j, .iters = 500};
        pthread_t t1, t2;
        pthread_create(&t1, NULL, ext_main, &c);
        pthread_create(&t2, NULL, ext_main, &c);
        pthread_join(t1, NULL);
        pthread_join(t2, NULL);
        const int want = iters + 3 + 1000;
        for (int i = 0; i < nth; i++) CHECK_EQ_INT(atomic_load(&j.hits[i]), want);
        for (int i = nth; i < 8; i++) CHECK_EQ_INT(atomic_load(&j.hits[i]), 0);
        CHECK_EQ_INT(atomic_load(&j.bad_nth), 0);
        ls_pool_free(p);
    }
    CHECK_EQ_INT(ls_pool_size(NULL), 1);
}

/* ls_matmul from several threads at once without a pool (distinct y) */
typedef struct mm_caller {
    const ls_weight *w;
    const float *x;
    int64_t n;
    const float *want;
    int mismatches;
} mm_caller;

static void *mm_main(void *arg) {
    mm_caller *c = arg;
    const size_t ny = (size_t)(c->n * c->w->rows);
    float *y = malloc(ny * sizeof(float));
    for (int i = 0; i < 20; i++) {
        ls_matmul(NULL, c->w, c->x, c->n, y);
        if (memcmp(y, c->want, ny * sizeof(float)) != 0) c->mismatches++;
    }
    free(y);
    return NULL;
}

static void test_matmul_threads(void) {
    static const int64_t ns[] = {3, 64};
    for (int k = 0; k < 2; k++) {
        const int64_t n = ns[k], rows = 96, cols = 576;
        void *wd = make_weights(LS_TYPE_Q4_1, rows, cols);
        const ls_weight w = {.type = LS_TYPE_Q4_1, .rows = rows, .cols = cols, .data = wd};
        float *x = make_acts(n, cols);
        float *want = malloc(sizeof(float) * (size_t)(n * rows));
        ls_matmul(NULL, &w, x, n, want);
        mm_caller c[3];
        pthread_t th[3];
        for (int i = 0; i < 3; i++) {
            c[i] = (mm_caller){.w = &w, .x = x, .n = n, .want = want};
            pthread_create(&th[i], NULL, mm_main, &c[i]);
        }
        for (int i = 0; i < 3; i++) {
            pthread_join(th[i], NULL);
            CHECK_EQ_INT(c[i].mismatches, 0);
        }
        free(want);
        free(x);
        free(wd);
    }
}

/* ---- vector ops against naive double versions ---- */
static void test_vec_ops(void) {
    static const int64_t sizes[] = {1, 7, 8, 9, 31, 64, 100, 576, 1536};
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        const int64_t n = sizes[si];
        float *x = malloc(sizeof(float) * (size_t)n), *g = malloc(sizeof(float) * (size_t)n);
        float *out = malloc(sizeof(float) * (size_t)n), *y = malloc(sizeof(float) * (size_t)n);
        uint16_t *h = malloc(sizeof(uint16_t) * (size_t)n);
        for (int64_t i = 0; i < n; i++) {
            x[i] = (float)(tu_rng_normal() * 3.0);
            g[i] = (float)(1.0 + 0.3 * tu_rng_normal());
        }
        /* rmsnorm: relative 1e-6 (a few float roundings on each output) */
        double ss = 0.0;
        for (int64_t i = 0; i < n; i++) ss += (double)x[i] * x[i];
        const double sc = 1.0 / sqrt(ss / (double)n + 1e-5);
        ls_rmsnorm(out, x, g, n, 1e-5f);
        double e = 0.0;
        for (int64_t i = 0; i < n; i++) {
            const double want = x[i] * sc * g[i];
            e = fmax(e, fabs(out[i] - want) / (fabs(want) + 1e-30));
        }
        CHECK(e < 1e-6);
        memcpy(y, x, sizeof(float) * (size_t)n); /* in place */
        ls_rmsnorm(y, y, g, n, 1e-5f);
        CHECK(memcmp(y, out, sizeof(float) * (size_t)n) == 0);

        /* softmax: exp within ~2 ulp, normalized in double: relative 1e-6 */
        for (int64_t i = 0; i < n; i++) y[i] = x[i] * 5.0f;
        if (n > 3) y[1] = -INFINITY; /* masked */
        double mx = -INFINITY, sum = 0.0;
        for (int64_t i = 0; i < n; i++) mx = fmax(mx, y[i]);
        for (int64_t i = 0; i < n; i++) sum += exp((double)y[i] - mx);
        memcpy(out, y, sizeof(float) * (size_t)n);
        ls_softmax(out, n);
        e = 0.0;
        double total = 0.0;
        for (int64_t i = 0; i < n; i++) {
            /* x - max is a float subtraction in the kernel (as in llama.cpp);
             * below 1e-30 the float result is subnormal or zero */
            const double want = exp((double)(float)(y[i] - (float)mx)) / sum;
            if (want > 1e-30) e = fmax(e, fabs(out[i] - want) / want);
            else CHECK(out[i] <= 2e-30f);
            total += out[i];
        }
        if (!(e < 1e-6)) fprintf(stderr, "softmax n %lld: relative error %.3g\n", (long long)n, e);
        CHECK(e < 1e-6);
        CHECK_NEAR(total, 1.0, 1e-5);
        if (n > 3) CHECK(out[1] == 0.0f);

        /* swiglu, in place on gate as the forward pass calls it */
        memcpy(y, x, sizeof(float) * (size_t)n);
        ls_swiglu(y, y, g, n);
        e = 0.0;
        for (int64_t i = 0; i < n; i++) {
            const double want = (double)x[i] / (1.0 + exp(-(double)x[i])) * g[i];
            e = fmax(e, fabs(y[i] - want) / (fabs(want) + 1e-30));
        }
        CHECK(e < 1e-6);

        /* dot / axpy: accumulation error relative to sum |a b| */
        double dd = 0.0, da = 0.0;
        for (int64_t i = 0; i < n; i++) {
            dd += (double)x[i] * g[i];
            da += fabs((double)x[i] * g[i]);
        }
        CHECK_NEAR(ls_dot_f32(x, g, n), dd, 1e-6 * da + 1e-30);
        memcpy(y, g, sizeof(float) * (size_t)n);
        ls_axpy_f32(y, 0.37f, x, n);
        e = 0.0;
        for (int64_t i = 0; i < n; i++) e = fmax(e, fabs(y[i] - (g[i] + 0.37 * x[i])) / (fabs(g[i]) + fabs(x[i])));
        CHECK(e < 1e-6);

        /* fp16 rows: bit exact against the scalar conversions */
        int bad = 0;
        ls_f32_to_f16_row(h, x, n);
        for (int64_t i = 0; i < n; i++) bad += h[i] != ls_f32_to_f16(x[i]);
        ls_f16_to_f32_row(out, h, n);
        for (int64_t i = 0; i < n; i++) bad += out[i] != ls_f16_to_f32(h[i]);
        CHECK_EQ_INT(bad, 0);
        dd = 0.0;
        da = 0.0;
        for (int64_t i = 0; i < n; i++) {
            dd += (double)ls_f16_to_f32(h[i]) * g[i];
            da += fabs((double)ls_f16_to_f32(h[i]) * g[i]);
        }
        CHECK_NEAR(ls_dot_f16_f32(h, g, n), dd, 1e-6 * da + 1e-30);
        memcpy(y, g, sizeof(float) * (size_t)n);
        ls_axpy_f16(y, -1.25f, h, n);
        e = 0.0;
        for (int64_t i = 0; i < n; i++) {
            const double hv = ls_f16_to_f32(h[i]);
            e = fmax(e, fabs(y[i] - (g[i] - 1.25 * hv)) / (fabs(g[i]) + fabs(1.25 * hv)));
        }
        CHECK(e < 1e-6);
        free(x);
        free(g);
        free(out);
        free(y);
        free(h);
    }
    /* fp16 edge cases through the row converters */
    const float edge[8] = {65504.0f, 65520.0f, -1e-8f, 6.1e-5f, 5.96e-8f, INFINITY, -0.0f, 1.0f / 3.0f};
    uint16_t he[8];
    ls_f32_to_f16_row(he, edge, 8);
    for (int i = 0; i < 8; i++) CHECK_EQ_INT(he[i], ls_f32_to_f16(edge[i]));
    /* softmax over a wide range: large negative differences underflow to 0 */
    float w[16];
    for (int i = 0; i < 16; i++) w[i] = (float)(-12.0 * i);
    ls_softmax(w, 16);
    double sum = 0.0, mx = 0.0;
    for (int i = 0; i < 16; i++) sum += exp(-12.0 * i);
    for (int i = 0; i < 16; i++) {
        const double want = exp(-12.0 * i) / sum;
        mx = fmax(mx, fabs(w[i] - want) / fmax(want, 1e-37));
    }
    CHECK(mx < 1e-5);
}

int main(void) {
    const char *dump = getenv("LS_KERNELS_DUMP");
    if (dump) return dump_exact_inputs(dump);
    RUN(test_pool);
    RUN(test_quantize_q8);
    RUN(test_weight_get_row);
    RUN(test_vec_ops);
    RUN(test_matmul_threads);
    RUN(test_multirow_batch_invariance);
    RUN(test_exact_vs_llamacpp);
    RUN(test_matmul_vs_ref);
    fprintf(stderr, "worst error/S over all types: multirow %.3g (tol %g), sgemm %.3g (tol %g)\n",
            worst_ratio_multirow, TOL_MULTIROW, worst_ratio_sgemm, TOL_SGEMM);
    TEST_MAIN_END();
}
