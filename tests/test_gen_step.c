/* ls_gen_step: many generations stepped together (autoregressive, early
 * exit and self-speculative with fixed and auto k, different exit layers and
 * prompt lengths, greedy and sampled, arriving at different steps, one
 * stopped by its callback) give, token for token, what ls_generate gives
 * each alone, with the same finish reason; prompts advance one slice per
 * step; refusals name the problem. */
#include "test_util.h"
#include "random_model.h"
#include "layerskip/engine.h"
#include "layerskip/generate.h"
#include "layerskip/tokenizer.h"

#define N_GEN 13

typedef struct spec {
    ls_strategy strategy;
    int exit_layer, n_prompt, n_predict, arrive; /* arrive: the step it joins */
    float temperature;
    uint64_t seed;
    int stop_after; /* callback stops after this many tokens (0: never) */
    int k;          /* self_speculative: num_speculations; < 0: auto, at most -k */
    float draft_min_p;
} spec;

#define AR LS_STRATEGY_AUTOREGRESSIVE
#define EE LS_STRATEGY_EARLY_EXIT
#define SS LS_STRATEGY_SELF_SPECULATIVE
static const spec specs[N_GEN] = {
    {AR, 0, 23, 12, 0, 0.0f, 1, 0, 0, 0},
    {EE, 1, 5, 9, 0, 0.0f, 2, 0, 0, 0},
    {SS, 1, 11, 14, 0, 0.0f, 10, 0, 4, 0},     /* greedy, fixed k */
    {AR, 0, 1, 15, 1, 0.8f, 3, 0, 0, 0},
    {SS, 2, 1, 10, 1, 0.9f, 11, 0, 3, 0},      /* sampled, fixed k, one-token prompt */
    {EE, 2, 17, 7, 2, 0.0f, 4, 0, 0, 0},
    {AR, 0, 40, 6, 2, 0.0f, 5, 3, 0, 0},       /* the callback stops it */
    {SS, 1, 30, 12, 3, 0.0f, 12, 0, -6, 0.3f}, /* greedy, auto k, draft min-p */
    {AR, 0, 9, 20, 5, 1.1f, 6, 0, 0, 0},
    {SS, 2, 6, 9, 6, 0.0f, 13, 4, 2, 0},       /* the callback stops it mid-round */
    {EE, 1, 3, 4, 7, 0.7f, 7, 0, 0, 0},
    {SS, 1, 20, 30, 0, 0.0f, 14, 0, 5, 0},     /* runs into the context's end */
    {AR, 0, 60, 1, 0, 0.0f, 8, 0, 0, 0},       /* longer than the context: refused below */
};

typedef struct cb_state {
    int seen, stop_after;
} cb_state;

static bool on_tok(void *user, int32_t t) {
    (void)t;
    cb_state *s = user;
    s->seen++;
    return !(s->stop_after && s->seen >= s->stop_after);
}

static ls_gen_params params_of(const spec *s) {
    ls_gen_params p = {.n_predict = s->n_predict, .ignore_eog = true, .strategy = s->strategy,
                       .exit_layer = s->exit_layer, .num_speculations = s->k < 0 ? -s->k : s->k,
                       .auto_speculations = s->k < 0, .draft_min_p = s->draft_min_p};
    ls_sampling_default(&p.sampling);
    p.sampling.temperature = s->temperature;
    p.sampling.seed = s->seed;
    return p;
}

static void test_step_equals_alone(void) {
    static const ls_type mix[] = {LS_TYPE_Q4_K, LS_TYPE_F16, LS_TYPE_Q8_0, LS_TYPE_Q4_1};
    rm_spec rs = {.n_layers = 3, .dim = 256, .n_heads = 4, .n_kv_heads = 2, .ffn_dim = 512, .rope_theta = 10000.0f,
                  .norm_eps = 1e-5f, .dtype = LS_TYPE_F32, .mix = mix, .n_mix = 4,
                  .vocab_gguf = tu_models_path("vocab/ggml-vocab-llama-spm.gguf"), .seed = 9, .n_shards = 1};
    rm_model *rm = rm_model_create(&rs);
    REQUIRE(rm);
    const char *path = tu_tmp_path("gen-step.gguf");
    REQUIRE(rm_write_gguf(rm, path));
    rm_model_free(rm);
    ls_err err;
    ls_model *m = NULL;
    REQUIRE(ls_model_load(path, &m, &err) == LS_OK);
    const ls_config *cfg = ls_model_config(m);
    const int n_ctx = 48;
    int32_t prompts[N_GEN][64];
    for (int g = 0; g < N_GEN; g++)
        for (int i = 0; i < 64; i++) prompts[g][i] = (int32_t)(1 + tu_rng_u64() % (uint64_t)(cfg->n_vocab - 1));

    /* alone */
    int32_t want[N_GEN][32];
    ls_gen_stats want_st[N_GEN];
    ls_ctx *ctx = NULL;
    REQUIRE(ls_ctx_create(m, 2, 16, &ctx, &err) == LS_OK);
    for (int g = 0; g < N_GEN - 1; g++) {
        ls_kv *kv = NULL;
        REQUIRE(ls_kv_create(m, 0, cfg->n_layers, n_ctx, &kv, &err) == LS_OK);
        const ls_gen_params p = params_of(&specs[g]);
        cb_state cs = {.stop_after = specs[g].stop_after};
        CHECK_EQ_INT(ls_generate(ctx, kv, prompts[g], specs[g].n_prompt, &p, want[g], on_tok, &cs, &want_st[g], &err),
                     LS_OK);
        ls_kv_free(kv);
    }

    /* stepped together, prefill slices of 6, the context's max_batch 16 */
    ls_gen *gens[N_GEN] = {0};
    ls_kv *kvs[N_GEN] = {0};
    int32_t got[N_GEN][32];
    ls_gen_stats got_st[N_GEN];
    cb_state cs[N_GEN];
    ls_gen_params ps[N_GEN];
    int steps = 0, prompt_left_prev[N_GEN];
    for (int step = 0; step < 200; step++) {
        for (int g = 0; g < N_GEN - 1; g++)
            if (specs[g].arrive == step) {
                REQUIRE(ls_kv_create(m, 0, cfg->n_layers, n_ctx, &kvs[g], &err) == LS_OK);
                ps[g] = params_of(&specs[g]);
                cs[g] = (cb_state){.stop_after = specs[g].stop_after};
                CHECK_EQ_INT(ls_gen_create(ctx, kvs[g], prompts[g], specs[g].n_prompt, &ps[g], got[g], on_tok, &cs[g],
                                           &got_st[g], &gens[g], &err),
                             LS_OK);
            }
        ls_gen *live[N_GEN];
        int nl = 0;
        for (int g = 0; g < N_GEN; g++)
            if (gens[g] && !ls_gen_done(gens[g])) {
                prompt_left_prev[g] = ls_gen_prompt_left(gens[g]);
                live[nl++] = gens[g];
            }
        if (!nl && step > 8) break;
        CHECK_EQ_INT(ls_gen_step(ctx, live, nl, 6, &err), LS_OK);
        /* a prompt advances by at most one slice a step */
        for (int g = 0; g < N_GEN; g++)
            if (gens[g] && prompt_left_prev[g] > 0) CHECK(prompt_left_prev[g] - ls_gen_prompt_left(gens[g]) <= 6);
        steps++;
    }
    int same = 0;
    for (int g = 0; g < N_GEN - 1; g++) {
        REQUIRE(gens[g]);
        CHECK(ls_gen_done(gens[g]));
        CHECK_EQ_INT(ls_gen_status(gens[g]), LS_OK);
        CHECK_EQ_INT(got_st[g].n_generated, want_st[g].n_generated);
        CHECK_EQ_INT(got_st[g].finish, want_st[g].finish);
        const bool eq = got_st[g].n_generated == want_st[g].n_generated &&
                        !memcmp(got[g], want[g], sizeof(int32_t) * (size_t)want_st[g].n_generated);
        if (!eq) fprintf(stderr, "  generation %d differs from its run alone\n", g);
        same += eq;
        ls_gen_free(gens[g]);
        ls_kv_free(kvs[g]);
    }
    fprintf(stderr, "  %d/%d generations identical to ls_generate alone, in %d steps\n", same, N_GEN - 1, steps);
    CHECK_EQ_INT(same, N_GEN - 1);
    CHECK_EQ_INT(want_st[6].finish, LS_FINISH_STOPPED); /* the callback's stop is exercised */
    CHECK_EQ_INT(want_st[6].n_generated, 3);
    CHECK_EQ_INT(want_st[9].finish, LS_FINISH_STOPPED);
    CHECK_EQ_INT(want_st[11].finish, LS_FINISH_CONTEXT);
    CHECK(want_st[2].drafted > 0 && want_st[4].drafted > 0); /* [7]: auto k may settle on plain steps */
    fprintf(stderr, "  self-speculative drafted/accepted alone: %lld/%lld %lld/%lld %lld/%lld\n",
            (long long)want_st[2].drafted, (long long)want_st[2].accepted, (long long)want_st[4].drafted,
            (long long)want_st[4].accepted, (long long)want_st[7].drafted, (long long)want_st[7].accepted);
    for (int g = 0; g < N_GEN - 1; g++) /* greedy self-speculative rounds: the same verdicts */
        if (specs[g].strategy == SS && specs[g].temperature == 0 && specs[g].k > 0) {
            CHECK_EQ_INT(got_st[g].drafted, want_st[g].drafted);
            CHECK_EQ_INT(got_st[g].accepted, want_st[g].accepted);
        }

    /* refusals */
    ls_kv *kv = NULL;
    REQUIRE(ls_kv_create(m, 0, cfg->n_layers, n_ctx, &kv, &err) == LS_OK);
    ls_gen *g = NULL;
    ls_gen_stats st;
    int32_t out[32];
    ls_gen_params p = params_of(&specs[N_GEN - 1]);
    CHECK_EQ_INT(ls_gen_create(ctx, kv, prompts[0], specs[N_GEN - 1].n_prompt, &p, out, NULL, NULL, &st, &g, &err),
                 LS_ERR_RANGE);
    CHECK(strstr(err.msg, "does not fit the context") != NULL);
    p = params_of(&specs[2]);
    p.num_speculations = 16; /* 17 positions verified at once > max_batch 16 */
    CHECK_EQ_INT(ls_gen_create(ctx, kv, prompts[0], 4, &p, out, NULL, NULL, &st, &g, &err), LS_ERR_INVALID);
    CHECK(strstr(err.msg, "max_batch") != NULL);
    p = params_of(&specs[0]);
    int32_t bad[2] = {1, cfg->n_vocab};
    CHECK_EQ_INT(ls_gen_create(ctx, kv, bad, 2, &p, out, NULL, NULL, &st, &g, &err), LS_ERR_INVALID);
    CHECK(g == NULL);
    CHECK_EQ_INT(ls_gen_step(ctx, NULL, 0, 0, &err), LS_ERR_INVALID);
    CHECK_EQ_INT(ls_gen_step(ctx, NULL, 0, 4, &err), LS_OK); /* nothing to do */
    ls_kv_free(kv);
    ls_ctx_free(ctx);
    ls_model_free(m);
}

/* the default model, where deep exits agree with the full model often
 * enough that rounds accept drafts: self-speculative generations stepped
 * with others emit accepted drafts exactly as alone */
static void test_default_model_accepts(void) {
    ls_err err;
    ls_model *m = NULL;
    REQUIRE(ls_model_load(tu_default_model(), &m, &err) == LS_OK);
    const ls_config *cfg = ls_model_config(m);
    const ls_tokenizer *tok = ls_model_tokenizer(m);
    static const char *texts[] = {"The capital of France is", "def fibonacci(n):\n    if n < 2:\n        return n",
                                  "One, two, three, four, five, six,", "The quick brown fox jumps over the lazy"};
    static const spec ss[] = {
        {SS, 22, 0, 24, 0, 0.0f, 1, 0, 4, 0},
        {SS, 26, 0, 20, 0, 0.0f, 2, 0, 3, 0},
        {AR, 0, 0, 16, 0, 0.0f, 3, 0, 0, 0},
        {SS, 20, 0, 16, 0, 0.7f, 4, 0, 2, 0},
    };
    enum { NS = 4 };
    int32_t prompts[NS][64], want[NS][32], got[NS][32];
    int np[NS];
    for (int i = 0; i < NS; i++) {
        int64_t n = ls_tokenize(tok, texts[i], strlen(texts[i]), true, false, prompts[i], 64);
        REQUIRE(n > 0 && n <= 64);
        np[i] = (int)n;
    }
    ls_ctx *ctx = NULL;
    REQUIRE(ls_ctx_create(m, 2, 16, &ctx, &err) == LS_OK);
    ls_gen_stats ws[NS], gs[NS];
    ls_kv *kvs[NS];
    ls_gen *gens[NS];
    ls_gen_params ps[NS];
    for (int i = 0; i < NS; i++) {
        REQUIRE(ls_kv_create(m, 0, cfg->n_layers, 128, &kvs[i], &err) == LS_OK);
        ps[i] = params_of(&ss[i]);
        CHECK_EQ_INT(ls_generate(ctx, kvs[i], prompts[i], np[i], &ps[i], want[i], NULL, NULL, &ws[i], &err), LS_OK);
        CHECK_EQ_INT(ls_gen_create(ctx, kvs[i], prompts[i], np[i], &ps[i], got[i], NULL, NULL, &gs[i], &gens[i], &err),
                     LS_OK);
    }
    for (int step = 0; step < 100; step++) {
        CHECK_EQ_INT(ls_gen_step(ctx, gens, NS, 4, &err), LS_OK);
        bool live = false;
        for (int i = 0; i < NS; i++) live |= !ls_gen_done(gens[i]);
        if (!live) break;
    }
    int64_t accepted = 0;
    for (int i = 0; i < NS; i++) {
        CHECK(ls_gen_done(gens[i]));
        CHECK_EQ_INT(gs[i].n_generated, ws[i].n_generated);
        CHECK(!memcmp(got[i], want[i], sizeof(int32_t) * (size_t)ws[i].n_generated));
        CHECK_EQ_INT(gs[i].accepted, ws[i].accepted);
        CHECK_EQ_INT(gs[i].drafted, ws[i].drafted);
        accepted += gs[i].accepted;
        ls_gen_free(gens[i]);
        ls_kv_free(kvs[i]);
    }
    fprintf(stderr, "  %lld drafts accepted in all (stepped together, as alone)\n", (long long)accepted);
    CHECK(accepted > 0);
    ls_ctx_free(ctx);
    ls_model_free(m);
}

int main(void) {
    RUN(test_step_equals_alone);
    RUN(test_default_model_accepts);
    TEST_MAIN_END();
}
