/* ls_forward_multi: several sequences in one forward call give, row for row
 * and bit for bit, what each sequence gives alone (exact mode), for prompt
 * slices, single decode steps and verification chunks mixed in one call,
 * on a model mixing float, 32-block and K-quant matrices; and the calls'
 * checks reject what they must. */
#include "test_util.h"
#include "random_model.h"
#include "layerskip/engine.h"
#include "layerskip/generate.h"

#define N_SEQ 4
#define MAX_LEN 40

static ls_model *load_model(void) {
    static const ls_type mix[] = {LS_TYPE_Q4_K, LS_TYPE_F16, LS_TYPE_Q4_1, LS_TYPE_Q8_0, LS_TYPE_Q6_K, LS_TYPE_BF16,
                                  LS_TYPE_IQ4_XS, LS_TYPE_Q5_0};
    rm_spec spec = {.n_layers = 3, .dim = 256, .n_heads = 4, .n_kv_heads = 2, .ffn_dim = 512, .rope_theta = 10000.0f,
                    .norm_eps = 1e-5f, .dtype = LS_TYPE_F32, .mix = mix, .n_mix = 8,
                    .vocab_gguf = tu_models_path("vocab/ggml-vocab-llama-spm.gguf"), .seed = 77, .n_shards = 1};
    rm_model *rm = rm_model_create(&spec);
    if (!rm) return NULL;
    const char *path = tu_tmp_path("forward-multi.gguf");
    const bool ok = rm_write_gguf(rm, path);
    rm_model_free(rm);
    if (!ok) return NULL;
    ls_model *m = NULL;
    ls_err err;
    if (ls_model_load(path, &m, &err) != LS_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return NULL;
    }
    return m;
}

/* the schedule: per step, how many positions each sequence runs (0 = idle) */
static const int schedule[][N_SEQ] = {
    {7, 3, 0, 12}, /* prompt slices of different lengths; sequence 2 not started */
    {1, 5, 9, 1},  /* decode, a verification chunk, a prompt, decode */
    {0, 1, 1, 4},  /* an idle sequence */
    {1, 1, 1, 1},  /* every sequence decoding */
    {6, 0, 2, 1},
};
#define N_STEPS ((int)(sizeof schedule / sizeof schedule[0]))

static void test_batched_equals_alone(void) {
    ls_model *m = load_model();
    REQUIRE(m);
    const ls_config *cfg = ls_model_config(m);
    const int dim = cfg->dim, nv = cfg->n_vocab, L = cfg->n_layers;
    int32_t toks[N_SEQ][MAX_LEN];
    for (int s = 0; s < N_SEQ; s++)
        for (int i = 0; i < MAX_LEN; i++) toks[s][i] = (int32_t)(tu_rng_u64() % (uint64_t)nv);
    ls_err err;
    for (int nth = 1; nth <= 2; nth++) {
        /* alone: each sequence its own calls, logits of every position */
        float *alone[N_SEQ];
        {
            ls_ctx *ctx = NULL;
            REQUIRE(ls_ctx_create(m, nth, 64, &ctx, &err) == LS_OK);
            for (int s = 0; s < N_SEQ; s++) {
                ls_kv *kv = NULL;
                REQUIRE(ls_kv_create(m, 0, L, 64, &kv, &err) == LS_OK);
                alone[s] = calloc((size_t)MAX_LEN * nv, sizeof(float));
                float *hidden = malloc(sizeof(float) * 64 * dim);
                int pos = 0;
                for (int st = 0; st < N_STEPS; st++) {
                    const int k = schedule[st][s];
                    if (!k) continue;
                    CHECK_EQ_INT(ls_embed(ctx, toks[s] + pos, k, hidden, &err), LS_OK);
                    CHECK_EQ_INT(ls_forward(ctx, kv, 0, L, pos, k, hidden, &err), LS_OK);
                    CHECK_EQ_INT(ls_exit_head(ctx, hidden, k, alone[s] + (size_t)pos * nv, &err), LS_OK);
                    pos += k;
                }
                free(hidden);
                ls_kv_free(kv);
            }
            ls_ctx_free(ctx);
        }
        /* batched: one call per step over every active sequence */
        ls_ctx *ctx = NULL;
        REQUIRE(ls_ctx_create(m, nth, 64, &ctx, &err) == LS_OK);
        ls_kv *kvs[N_SEQ];
        for (int s = 0; s < N_SEQ; s++) REQUIRE(ls_kv_create(m, 0, L, 64, &kvs[s], &err) == LS_OK);
        int pos[N_SEQ] = {0};
        float *hidden = malloc(sizeof(float) * 64 * dim), *logits = malloc(sizeof(float) * 64 * nv);
        int rows_equal = 0, rows = 0;
        for (int st = 0; st < N_STEPS; st++) {
            ls_seq_slice sl[N_SEQ];
            int ns = 0, n = 0, owner[N_SEQ];
            for (int s = 0; s < N_SEQ; s++) {
                const int k = schedule[st][s];
                if (!k) continue;
                CHECK_EQ_INT(ls_embed(ctx, toks[s] + pos[s], k, hidden + (size_t)n * dim, &err), LS_OK);
                sl[ns] = (ls_seq_slice){.kv = kvs[s], .pos = pos[s], .n = k};
                owner[ns++] = s;
                n += k;
            }
            CHECK_EQ_INT(ls_forward_multi(ctx, sl, ns, 0, L, hidden, &err), LS_OK);
            CHECK_EQ_INT(ls_exit_head(ctx, hidden, n, logits, &err), LS_OK);
            for (int j = 0, r = 0; j < ns; j++) {
                const int s = owner[j];
                for (int i = 0; i < sl[j].n; i++, r++) {
                    rows++;
                    if (!memcmp(logits + (size_t)r * nv, alone[s] + (size_t)(pos[s] + i) * nv, sizeof(float) * nv))
                        rows_equal++;
                    else
                        fprintf(stderr, "  threads %d step %d sequence %d position %d: logits differ\n", nth, st, s,
                                pos[s] + i);
                }
                pos[s] += sl[j].n;
                CHECK_EQ_INT(ls_kv_len(kvs[s], L - 1), pos[s]);
            }
        }
        fprintf(stderr, "  threads %d: %d/%d rows bit-identical to the sequences run alone\n", nth, rows_equal, rows);
        CHECK_EQ_INT(rows_equal, rows);
        CHECK(rows > 40);
        free(hidden);
        free(logits);
        for (int s = 0; s < N_SEQ; s++) {
            ls_kv_free(kvs[s]);
            free(alone[s]);
        }
        ls_ctx_free(ctx);
    }
    ls_model_free(m);
}

static void test_checks(void) {
    ls_model *m = load_model();
    REQUIRE(m);
    const ls_config *cfg = ls_model_config(m);
    const int L = cfg->n_layers;
    ls_err err;
    ls_ctx *ctx = NULL;
    ls_kv *a = NULL, *b = NULL, *part = NULL;
    REQUIRE(ls_ctx_create(m, 1, 8, &ctx, &err) == LS_OK);
    REQUIRE(ls_kv_create(m, 0, L, 16, &a, &err) == LS_OK);
    REQUIRE(ls_kv_create(m, 0, L, 16, &b, &err) == LS_OK);
    REQUIRE(ls_kv_create(m, 0, 1, 16, &part, &err) == LS_OK);
    float *hidden = calloc((size_t)16 * cfg->dim, sizeof(float));
    ls_seq_slice s2[2] = {{a, 0, 3}, {a, 0, 2}};
    CHECK_EQ_INT(ls_forward_multi(ctx, s2, 2, 0, L, hidden, &err), LS_ERR_INVALID); /* one cache twice */
    CHECK(strstr(err.msg, "share one KV cache") != NULL);
    s2[1] = (ls_seq_slice){b, 0, 6};
    CHECK_EQ_INT(ls_forward_multi(ctx, s2, 2, 0, L, hidden, &err), LS_ERR_INVALID); /* 9 rows > max_batch 8 */
    CHECK(strstr(err.msg, "outside [1, 8]") != NULL);
    s2[1] = (ls_seq_slice){b, 2, 1};
    CHECK_EQ_INT(ls_forward_multi(ctx, s2, 2, 0, L, hidden, &err), LS_ERR_INVALID); /* b has no position 0, 1 */
    CHECK(strstr(err.msg, "cached positions") != NULL);
    s2[1] = (ls_seq_slice){b, 15, 2};
    CHECK_EQ_INT(ls_forward_multi(ctx, s2, 2, 0, L, hidden, &err), LS_ERR_RANGE);
    s2[1] = (ls_seq_slice){part, 0, 1};
    CHECK_EQ_INT(ls_forward_multi(ctx, s2, 2, 0, L, hidden, &err), LS_ERR_INVALID); /* layers not held */
    s2[1] = (ls_seq_slice){NULL, 0, 1};
    CHECK_EQ_INT(ls_forward_multi(ctx, s2, 2, 0, L, hidden, &err), LS_ERR_INVALID);
    s2[1] = (ls_seq_slice){b, 0, 0};
    CHECK_EQ_INT(ls_forward_multi(ctx, s2, 2, 0, L, hidden, &err), LS_ERR_INVALID);
    CHECK_EQ_INT(ls_forward_multi(ctx, s2, 0, 0, L, hidden, &err), LS_ERR_INVALID);
    /* nothing was written by the refused calls */
    CHECK_EQ_INT(ls_kv_len(a, 0), 0);
    CHECK_EQ_INT(ls_kv_len(b, 0), 0);
    s2[1] = (ls_seq_slice){b, 0, 5};
    CHECK_EQ_INT(ls_forward_multi(ctx, s2, 2, 0, L, hidden, &err), LS_OK);
    CHECK_EQ_INT(ls_kv_len(a, L - 1), 3);
    CHECK_EQ_INT(ls_kv_len(b, L - 1), 5);
    free(hidden);
    ls_kv_free(a);
    ls_kv_free(b);
    ls_kv_free(part);
    ls_ctx_free(ctx);
    ls_model_free(m);
}

int main(void) {
    RUN(test_batched_equals_alone);
    RUN(test_checks);
    TEST_MAIN_END();
}
