/* The kernel variants (engine/src/kernels_variants.h) against each other:
 * every variant this CPU can run must give the portable variant's bits (the
 * portable code is a scalar model of the AVX2 lanes and fused steps) for
 * every weight type, batch size, thread count and vector op, for attention
 * and for whole-model logits. Variants the CPU lacks are listed as not run.
 * Without the exact flag, batches may take OpenBLAS at sizes that depend on
 * the variant (the portable one hands over earlier), so that mode is
 * compared between the SIMD variants only. */
#include "test_util.h"
#include "kernels_impl.h"
#include "random_model.h"
#include "layerskip/engine.h"
#include "layerskip/generate.h"

static int n_run, n_not_run;

/* the variants this CPU runs, other than portable */
static const char *simd[8];
static int n_simd;

static void list_variants(void) {
    fprintf(stderr, "variants (best first):");
    for (int i = 0; i < ls_kernels_count(); i++) {
        const char *v = ls_kernels_name(i);
        fprintf(stderr, " %s%s", v, ls_kernels_cpu_has(i) ? "" : " (not run: this CPU lacks it)");
        if (!ls_kernels_cpu_has(i)) n_not_run++;
        else if (strcmp(v, "portable")) simd[n_simd++] = v;
    }
    fprintf(stderr, "\nchosen for this CPU: %s\n", ls_kernel_path());
}

static void test_selection(void) {
    CHECK(ls_kernels_count() >= 1);
    CHECK_STR_EQ(ls_kernels_name(ls_kernels_count() - 1), "portable");
    CHECK(ls_kernels_cpu_has(ls_kernels_count() - 1));
    CHECK(ls_kernels_name(ls_kernels_count()) == NULL);
    CHECK(!ls_kernels_use("no-such-variant"));
    CHECK(!ls_kernels_use(NULL));
    const char *before = ls_kernel_path();
    for (int i = 0; i < ls_kernels_count(); i++) {
        if (ls_kernels_cpu_has(i)) continue;
        CHECK(!ls_kernels_use(ls_kernels_name(i))); /* refused, path unchanged */
        CHECK_STR_EQ(ls_kernel_path(), before);
    }
    CHECK(ls_kernels_use("portable"));
    CHECK_STR_EQ(ls_kernel_path(), "portable");
#if defined(__x86_64__)
    /* a CPU with AVX2 and a build with the avx2 variant: the fast path must be found */
    __builtin_cpu_init();
    bool built = false;
    for (int i = 0; i < ls_kernels_count(); i++) built |= !strcmp(ls_kernels_name(i), "avx2");
    if (built && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) CHECK(n_simd >= 1);
#endif
}

static float *rand_floats(int64_t n, float scale) {
    float *x = malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++) x[i] = (float)(tu_rng_normal() * scale);
    return x;
}

/* random bytes for a weight of type t, with finite, moderate fp16 scales */
static void *rand_weight(ls_type t, int64_t rows, int64_t cols) {
    uint64_t nb;
    if (!ls_type_nbytes(t, rows * cols, &nb)) return NULL;
    uint8_t *w = malloc(nb);
    if (t == LS_TYPE_F32) {
        for (int64_t i = 0; i < rows * cols; i++) ((float *)(void *)w)[i] = (float)tu_rng_normal();
        return w;
    }
    if (t == LS_TYPE_F16 || t == LS_TYPE_BF16) {
        for (int64_t i = 0; i < rows * cols; i++) {
            const float f = (float)tu_rng_normal();
            const uint16_t h = t == LS_TYPE_F16 ? ls_f32_to_f16(f) : ls_f32_to_bf16(f);
            memcpy(w + 2 * i, &h, 2);
        }
        return w;
    }
    for (uint64_t i = 0; i < nb; i++) w[i] = (uint8_t)tu_rng_u64();
    /* every fp16 scale field: a small positive or negative value */
    const size_t bb = ls_type_block_bytes(t);
    const int64_t nblk = rows * cols / ls_type_block_elems(t);
    for (int64_t b = 0; b < nblk; b++) {
        uint8_t *blk = w + (size_t)b * bb;
        const float d = (float)((tu_rng_uniform() * 2 - 1) * 0.05);
        const uint16_t h = ls_f32_to_f16(d), h2 = ls_f32_to_f16(d * 0.5f);
        switch (t) {
        case LS_TYPE_Q4_0: case LS_TYPE_Q5_0: case LS_TYPE_Q8_0: case LS_TYPE_IQ4_NL: case LS_TYPE_IQ4_XS:
            memcpy(blk, &h, 2); break;
        case LS_TYPE_Q4_1: case LS_TYPE_Q5_1: memcpy(blk, &h, 2); memcpy(blk + 2, &h2, 2); break;
        case LS_TYPE_Q2_K: memcpy(blk + 80, &h, 2); memcpy(blk + 82, &h2, 2); break;
        case LS_TYPE_Q3_K: memcpy(blk + 108, &h, 2); break;
        case LS_TYPE_Q4_K: case LS_TYPE_Q5_K: memcpy(blk, &h, 2); memcpy(blk + 2, &h2, 2); break;
        case LS_TYPE_Q6_K: memcpy(blk + 208, &h, 2); break;
        default: break;
        }
    }
    return w;
}

static bool same_bits(const float *a, const float *b, int64_t n, int64_t *first) {
    for (int64_t i = 0; i < n; i++)
        if (memcmp(&a[i], &b[i], 4)) {
            *first = i;
            return false;
        }
    return true;
}

static const ls_type all_types[] = {LS_TYPE_F32,  LS_TYPE_F16,  LS_TYPE_BF16, LS_TYPE_Q4_0,   LS_TYPE_Q4_1,
                                    LS_TYPE_Q5_0, LS_TYPE_Q5_1, LS_TYPE_Q8_0, LS_TYPE_Q2_K,   LS_TYPE_Q3_K,
                                    LS_TYPE_Q4_K, LS_TYPE_Q5_K, LS_TYPE_Q6_K, LS_TYPE_IQ4_NL, LS_TYPE_IQ4_XS};

/* y = W x under variant v (pool of nth threads) */
static void matmul_under(const char *v, int nth, const ls_weight *w, const float *x, int64_t n, float *y,
                         unsigned flags) {
    if (!ls_kernels_use(v)) abort();
    ls_pool *pool = nth > 1 ? ls_pool_create(nth) : NULL;
    ls_matmul_ex(pool, w, x, n, y, flags);
    ls_pool_free(pool);
}

static void test_matmul(void) {
    static const int64_t ns[] = {1, 2, 3, 4, 5, 7, 9, 17};
    int compared = 0;
    for (size_t ti = 0; ti < sizeof all_types / sizeof all_types[0]; ti++) {
        const ls_type t = all_types[ti];
        const int64_t cols = ls_type_block_elems(t) == 256 ? 512 : 96 + (t == LS_TYPE_F32 || t == LS_TYPE_F16 ? 5 : 0);
        const int64_t rows = 13;
        void *wd = rand_weight(t, rows, cols);
        REQUIRE(wd);
        const ls_weight w = {.type = t, .rows = rows, .cols = cols, .data = wd};
        for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++) {
            const int64_t n = ns[ni];
            float *x = rand_floats(n * cols, 1.0f);
            float *want = malloc(sizeof(float) * (size_t)(n * rows)), *got = malloc(sizeof(float) * (size_t)(n * rows));
            matmul_under("portable", 1, &w, x, n, want, LS_MATMUL_EXACT);
            for (int s = 0; s < n_simd; s++) {
                for (int nth = 1; nth <= 2; nth++) {
                    matmul_under(simd[s], nth, &w, x, n, got, LS_MATMUL_EXACT);
                    int64_t at = -1;
                    const bool ok = same_bits(want, got, n * rows, &at);
                    if (!ok)
                        fprintf(stderr, "  %s vs portable, %s n=%lld threads %d: differ at %lld (%.9g vs %.9g)\n",
                                simd[s], ls_type_name(t), (long long)n, nth, (long long)at, (double)got[at],
                                (double)want[at]);
                    CHECK(ok);
                    compared++;
                }
                if (s > 0) { /* default flags: the SIMD variants against each other */
                    float *a = malloc(sizeof(float) * (size_t)(n * rows));
                    matmul_under(simd[0], 2, &w, x, n, a, 0);
                    matmul_under(simd[s], 2, &w, x, n, got, 0);
                    int64_t at = -1;
                    CHECK(same_bits(a, got, n * rows, &at));
                    free(a);
                }
            }
            free(x);
            free(want);
            free(got);
        }
        /* the row dequantization too */
        float *ra = malloc(sizeof(float) * (size_t)cols), *rb = malloc(sizeof(float) * (size_t)cols);
        ls_kernels_use("portable");
        ls_weight_get_row(&w, 5, ra);
        for (int s = 0; s < n_simd; s++) {
            ls_kernels_use(simd[s]);
            ls_weight_get_row(&w, 5, rb);
            int64_t at;
            CHECK(same_bits(ra, rb, cols, &at));
        }
        free(ra);
        free(rb);
        free(wd);
    }
    fprintf(stderr, "  %d (type, batch, threads, variant) products compared\n", compared);
    n_run += compared;
}

/* one vector op under every variant, output compared with portable's */
typedef void (*vec_fn)(float *out, const float *in, int64_t n);

static void op_rmsnorm(float *out, const float *in, int64_t n) {
    float *g = rand_floats(n, 1.0f);
    ls_rmsnorm(out, in, g, n, 1e-5f);
    free(g);
}
static void op_softmax(float *out, const float *in, int64_t n) {
    memcpy(out, in, sizeof(float) * (size_t)n);
    ls_softmax(out, n);
}
static void op_swiglu(float *out, const float *in, int64_t n) {
    float *up = rand_floats(n, 1.0f);
    ls_swiglu(out, in, up, n);
    free(up);
}
static void op_dots(float *out, const float *in, int64_t n) {
    float *b = rand_floats(n, 1.0f);
    uint16_t *h = malloc(2 * (size_t)n);
    ls_f32_to_f16_row(h, in, n);
    out[0] = ls_dot_f32(in, b, n);
    out[1] = ls_dot_f16_f32(h, b, n);
    for (int64_t i = 2; i < n; i++) out[i] = 0;
    free(b);
    free(h);
}
static void op_axpy(float *out, const float *in, int64_t n) {
    uint16_t *h = malloc(2 * (size_t)n);
    ls_f32_to_f16_row(h, in, n);
    float *tmp = malloc(sizeof(float) * (size_t)n);
    ls_f16_to_f32_row(tmp, h, n);
    for (int64_t i = 0; i < n; i++) out[i] = tmp[i] * 0.5f;
    ls_axpy_f32(out, 1.7f, in, n);
    ls_axpy_f16(out, -0.3f, h, n);
    free(tmp);
    free(h);
}
static void op_quant(float *out, const float *in, int64_t n) { /* the blocks' bytes, as floats */
    const int64_t m = n / 32 * 32, nb = m / 32;
    uint8_t *q0 = malloc((size_t)nb * 34), *q1 = malloc((size_t)nb * 36);
    ls_quantize_row_q8_0(in, m, q0);
    ls_quantize_row_q8_1(in, m, q1);
    for (int64_t i = 0; i < n; i++) out[i] = (float)q0[i % (nb * 34)] + 256.0f * (float)q1[i % (nb * 36)];
    free(q0);
    free(q1);
}

static void test_vector_ops(void) {
    static const struct {
        const char *name;
        vec_fn fn;
    } ops[] = {{"rmsnorm", op_rmsnorm}, {"softmax", op_softmax}, {"swiglu", op_swiglu},
               {"dots", op_dots},       {"axpy", op_axpy},       {"quantize", op_quant}};
    static const int64_t ns[] = {1, 7, 8, 31, 64, 100, 576, 1029};
    int compared = 0;
    for (size_t oi = 0; oi < sizeof ops / sizeof ops[0]; oi++)
        for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++) {
            const int64_t n = ns[ni];
            if ((ops[oi].fn == op_quant && n < 32) || (ops[oi].fn == op_dots && n < 2)) continue;
            /* wide range: the exp's large-argument branches and -inf */
            float *in = rand_floats(n, oi == 1 || oi == 2 ? 60.0f : 2.0f);
            if (oi == 1 && n > 3) in[2] = -INFINITY;
            float *want = malloc(sizeof(float) * (size_t)n), *got = malloc(sizeof(float) * (size_t)n);
            const uint64_t seed = tu_rng_state;
            ls_kernels_use("portable");
            ops[oi].fn(want, in, n);
            for (int s = 0; s < n_simd; s++) {
                tu_rng_state = seed; /* the same side inputs */
                ls_kernels_use(simd[s]);
                ops[oi].fn(got, in, n);
                int64_t at = -1;
                const bool ok = same_bits(want, got, n, &at);
                if (!ok)
                    fprintf(stderr, "  %s %s n=%lld: differ at %lld (%.9g vs %.9g)\n", simd[s], ops[oi].name,
                            (long long)n, (long long)at, (double)got[at], (double)want[at]);
                CHECK(ok);
                compared++;
            }
            free(in);
            free(want);
            free(got);
        }
    fprintf(stderr, "  %d (op, length, variant) results compared\n", compared);
    n_run += compared;
}

static void attn_under(const char *v, ls_attn_batch *b, ls_attn_job *jobs, float *out, int nth) {
    ls_kernels_use(v);
    jobs[0].out = out;
    ls_pool *pool = nth > 1 ? ls_pool_create(nth) : NULL;
    ls_pool_run(pool, ls_attn_worker, b);
    ls_pool_free(pool);
}

static void test_attention(void) {
    const int hd = 64, nh = 6, nkv = 2, pos = 37, ctx = 64;
    int compared = 0;
    for (int n = 1; n <= 5; n += 4) {
        const int total = pos + n;
        float *q = rand_floats((int64_t)n * nh * hd, 1.0f), *kf = rand_floats((int64_t)total * nkv * hd, 1.0f);
        float *vf = rand_floats((int64_t)total * nkv * hd, 1.0f);
        uint16_t *k = malloc(2 * (size_t)ctx * nkv * hd), *v = malloc(2 * (size_t)ctx * nkv * hd);
        for (int i = 0; i < total * nkv * hd; i++) {
            k[i] = ls_f32_to_f16(kf[i]);
            v[i] = ls_f32_to_f16(vf[i]);
        }
        const int nth = 2;
        float *scratch = malloc(sizeof(float) * ls_attn_scratch_floats(hd) * nth);
        float *scores = malloc(sizeof(float) * LS_ATTN_QB * ctx * nth);
        ls_attn_job jobs[1] = {{.pos = pos, .n = n, .qb = n == 1 ? 1 : 4, .q = q, .k = k, .v = v}};
        ls_attn_batch b = {.head_dim = hd, .n_heads = nh, .n_kv_heads = nkv, .kv_stride = (size_t)nkv * hd,
                           .jobs = jobs, .n_jobs = 1, .scratch = scratch, .scores = scores, .scores_cap = ctx};
        const int64_t m = (int64_t)n * nh * hd;
        float *want = malloc(sizeof(float) * (size_t)m), *got = malloc(sizeof(float) * (size_t)m);
        attn_under("portable", &b, jobs, want, 1);
        for (int s = 0; s < n_simd; s++)
            for (int t = 1; t <= nth; t++) {
                attn_under(simd[s], &b, jobs, got, t);
                int64_t at = -1;
                CHECK(same_bits(want, got, m, &at));
                compared++;
            }
        free(q); free(kf); free(vf); free(k); free(v); free(scratch); free(scores); free(want); free(got);
    }
    fprintf(stderr, "  %d attention results compared\n", compared);
    n_run += compared;
}

/* a random model mixing the float and 32-block types: prefill (a batch) and
 * decode steps, all logits under every variant */
static void test_model_logits(void) {
    static const ls_type mix[] = {LS_TYPE_F16, LS_TYPE_Q4_0, LS_TYPE_BF16, LS_TYPE_Q4_1, LS_TYPE_Q5_0,
                                  LS_TYPE_Q8_0, LS_TYPE_Q5_1, LS_TYPE_F32};
    rm_spec spec = {.n_layers = 2, .dim = 128, .n_heads = 4, .n_kv_heads = 2, .ffn_dim = 256, .rope_theta = 10000.0f,
                    .norm_eps = 1e-5f, .dtype = LS_TYPE_F32, .mix = mix, .n_mix = 8,
                    .vocab_gguf = tu_models_path("vocab/ggml-vocab-llama-spm.gguf"), .seed = 5, .n_shards = 1};
    rm_model *rm = rm_model_create(&spec);
    REQUIRE(rm);
    const char *path = tu_tmp_path("dispatch-mix.gguf");
    REQUIRE(rm_write_gguf(rm, path));
    rm_model_free(rm);
    ls_err err;
    ls_model *model = NULL;
    REQUIRE(ls_model_load(path, &model, &err) == LS_OK);
    const ls_config *cfg = ls_model_config(model);
    const int nv = cfg->n_vocab, np = 11, nd = 4;
    int32_t toks[16];
    for (int i = 0; i < np + nd; i++) toks[i] = (int32_t)(tu_rng_u64() % (uint64_t)nv);
    float *want = malloc(sizeof(float) * (size_t)nv * (nd + 1)), *got = malloc(sizeof(float) * (size_t)nv * (nd + 1));
    int compared = 0;
    for (int s = -1; s < n_simd; s++) {
        ls_kernels_use(s < 0 ? "portable" : simd[s]);
        ls_ctx *ctx = NULL;
        ls_kv *kv = NULL;
        REQUIRE(ls_ctx_create(model, 2, 16, &ctx, &err) == LS_OK);
        REQUIRE(ls_kv_create(model, 0, cfg->n_layers, 64, &kv, &err) == LS_OK);
        float *out = s < 0 ? want : got;
        CHECK_EQ_INT(ls_prefill(ctx, kv, toks, np, 0, out, &err), LS_OK);
        for (int d = 0; d < nd; d++)
            CHECK_EQ_INT(ls_prefill(ctx, kv, toks + np + d, 1, np + d, out + (size_t)(d + 1) * nv, &err), LS_OK);
        if (s >= 0) {
            int64_t at = -1;
            const bool ok = same_bits(want, got, (int64_t)nv * (nd + 1), &at);
            if (!ok) fprintf(stderr, "  %s: model logits differ at %lld\n", simd[s], (long long)at);
            CHECK(ok);
            compared++;
        }
        ls_kv_free(kv);
        ls_ctx_free(ctx);
    }
    fprintf(stderr, "  %d variants' model logits compared with portable's\n", compared);
    n_run += compared;
    free(want);
    free(got);
    ls_model_free(model);
}

int main(void) {
    list_variants();
    RUN(test_selection);
    RUN(test_matmul);
    RUN(test_vector_ops);
    RUN(test_attention);
    RUN(test_model_logits);
    fprintf(stderr, "variants compared with portable: %d; not run (CPU lacks them): %d\n", n_simd, n_not_run);
    TEST_MAIN_END();
}
