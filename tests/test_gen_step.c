/* ls_gen_step: many generations stepped together (mixed strategies, exit
 * layers, prompt lengths, greedy and sampled, arriving at different steps,
 * one stopped by its callback) give, token for token, what ls_generate
 * gives each alone, with the same finish reason; prompts advance one slice
 * per step; refusals name the problem. */
#include "test_util.h"
#include "random_model.h"
#include "layerskip/engine.h"
#include "layerskip/generate.h"

#define N_GEN 8

typedef struct spec {
    ls_strategy strategy;
    int exit_layer, n_prompt, n_predict, arrive; /* arrive: the step it joins */
    float temperature;
    uint64_t seed;
    int stop_after; /* callback stops after this many tokens (0: never) */
} spec;

static const spec specs[N_GEN] = {
    {LS_STRATEGY_AUTOREGRESSIVE, 0, 23, 12, 0, 0.0f, 1, 0},
    {LS_STRATEGY_EARLY_EXIT, 1, 5, 9, 0, 0.0f, 2, 0},
    {LS_STRATEGY_AUTOREGRESSIVE, 0, 1, 15, 1, 0.8f, 3, 0},
    {LS_STRATEGY_EARLY_EXIT, 2, 17, 7, 2, 0.0f, 4, 0},
    {LS_STRATEGY_AUTOREGRESSIVE, 0, 40, 6, 2, 0.0f, 5, 3},
    {LS_STRATEGY_AUTOREGRESSIVE, 0, 9, 20, 5, 1.1f, 6, 0},
    {LS_STRATEGY_EARLY_EXIT, 1, 3, 4, 7, 0.7f, 7, 0},
    {LS_STRATEGY_AUTOREGRESSIVE, 0, 60, 1, 0, 0.0f, 8, 0}, /* longer than the context: refused below */
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
                       .exit_layer = s->exit_layer};
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
                CHECK_EQ_INT(ls_gen_create(m, kvs[g], prompts[g], specs[g].n_prompt, &ps[g], got[g], on_tok, &cs[g],
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
    CHECK_EQ_INT(want_st[4].finish, LS_FINISH_STOPPED); /* the callback's stop is exercised */
    CHECK_EQ_INT(want_st[4].n_generated, 3);

    /* refusals */
    ls_kv *kv = NULL;
    REQUIRE(ls_kv_create(m, 0, cfg->n_layers, n_ctx, &kv, &err) == LS_OK);
    ls_gen *g = NULL;
    ls_gen_stats st;
    int32_t out[32];
    ls_gen_params p = params_of(&specs[N_GEN - 1]);
    CHECK_EQ_INT(ls_gen_create(m, kv, prompts[0], specs[N_GEN - 1].n_prompt, &p, out, NULL, NULL, &st, &g, &err),
                 LS_ERR_RANGE);
    CHECK(strstr(err.msg, "does not fit the context") != NULL);
    p = params_of(&specs[0]);
    p.strategy = LS_STRATEGY_SELF_SPECULATIVE;
    p.exit_layer = 1;
    p.num_speculations = 2;
    CHECK_EQ_INT(ls_gen_create(m, kv, prompts[0], 4, &p, out, NULL, NULL, &st, &g, &err), LS_ERR_UNSUPPORTED);
    p = params_of(&specs[0]);
    int32_t bad[2] = {1, cfg->n_vocab};
    CHECK_EQ_INT(ls_gen_create(m, kv, bad, 2, &p, out, NULL, NULL, &st, &g, &err), LS_ERR_INVALID);
    CHECK(g == NULL);
    CHECK_EQ_INT(ls_gen_step(ctx, NULL, 0, 0, &err), LS_ERR_INVALID);
    CHECK_EQ_INT(ls_gen_step(ctx, NULL, 0, 4, &err), LS_OK); /* nothing to do */
    ls_kv_free(kv);
    ls_ctx_free(ctx);
    ls_model_free(m);
}

int main(void) {
    RUN(test_step_equals_alone);
    TEST_MAIN_END();
}
