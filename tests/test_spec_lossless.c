/* Greedy self-speculative decoding is lossless: its token ids equal
 * autoregressive decoding's, bit for bit (exact mode makes a position's
 * result independent of its batch).
 *
 * On the default model (30 layers): 10 prompts x 64 tokens (EOS ignored),
 * each prompt with one (E, k) cell; together the cells cover E in {1, 4, 8,
 * 15, 22, 29} and k in {1, 2, 4, 8} (CELLS below). The model was not trained
 * for early exit, so few drafts are accepted and a run costs up to k+1 times
 * an autoregressive one: the full 6 x 4 grid on every prompt takes about 10
 * minutes on 2 cores, so it runs only with LS_SPEC_FULL_GRID=1. Plus two
 * chat prompts that end in <|im_end|> (EOS honoured, one with draft_min_p).
 * On a random 4-layer model (few acceptances, so many rollbacks): every E in
 * [1, 3] x k in {1, 2, 4, 8} x 3 prompts x 64 tokens, n_predict 0..12, a
 * one-token prompt, a stopping callback and full contexts. Then the
 * parameter errors. */
#include "test_util.h"
#include "random_model.h"
#include "layerskip/engine.h"
#include "layerskip/generate.h"
#include "layerskip/tokenizer.h"

#define N_GEN 64

static const char *PROMPTS[] = {
    "The history of the Roman Empire begins with",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "Photosynthesis is the process by which plants",
    "Once upon a time, in a small village by the sea, there lived",
    "The three laws of thermodynamics are",
    "To make a cup of green tea, first",
    "In computer science, a hash table is",
    "The capital of France is Paris. The capital of Germany is",
    "Dear hiring manager, I am writing to apply for",
    "1, 2, 3, 5, 8, 13, 21,",
};
#define N_PROMPTS ((int)(sizeof PROMPTS / sizeof PROMPTS[0]))

typedef struct run_out {
    int32_t ids[256];
    ls_gen_stats stats;
    ls_status st;
} run_out;

static int tokenize(const ls_model *m, const char *text, int32_t *ids, int cap) {
    const ls_tokenizer *tok = ls_model_tokenizer(m);
    return (int)ls_tokenize(tok, text, strlen(text), ls_tokenizer_add_bos(tok), true, ids, cap);
}

typedef struct stop_after { int n, seen; } stop_after;
static bool stop_cb(void *user, int32_t t) {
    (void)t;
    stop_after *s = user;
    return ++s->seen < s->n;
}

static void gen(ls_ctx *ctx, ls_kv *kv, const int32_t *prompt, int np, const ls_gen_params *gp,
                ls_token_cb cb, void *user, run_out *o) {
    ls_err err;
    o->st = ls_generate(ctx, kv, prompt, np, gp, o->ids, cb, user, &o->stats, &err);
    if (o->st != LS_OK) fprintf(stderr, "  generate failed: %s\n", err.msg);
}

static ls_gen_params params(ls_strategy s, int E, int k, int n_predict, bool ignore_eog) {
    ls_gen_params gp = {.n_predict = n_predict, .ignore_eog = ignore_eog, .strategy = s,
                        .exit_layer = E, .num_speculations = k};
    ls_sampling_default(&gp.sampling);
    return gp;
}

/* same ids, count and finish; prints the first difference */
static bool same_output(const char *what, const run_out *ar, const run_out *sp) {
    int first = -1;
    for (int i = 0; i < ar->stats.n_generated && i < sp->stats.n_generated; i++)
        if (ar->ids[i] != sp->ids[i]) { first = i; break; }
    bool ok = ar->st == LS_OK && sp->st == LS_OK && first < 0 &&
              ar->stats.n_generated == sp->stats.n_generated && ar->stats.finish == sp->stats.finish;
    if (!ok)
        fprintf(stderr, "  %s: differs (first diff at %d, %d vs %d tokens, finish %s vs %s)\n", what, first,
                ar->stats.n_generated, sp->stats.n_generated, ls_finish_name(ar->stats.finish),
                ls_finish_name(sp->stats.finish));
    return ok;
}

/* Default grid: one (E, k) cell per prompt, covering E in {1, 4, 8, 15,
 * 22, 29} and k in {1, 2, 4, 8} (all 24 cells: LS_SPEC_FULL_GRID=1, about
 * 10 minutes on 2 cores). Under AddressSanitizer: 16 tokens per run. */
static const int CELLS[N_PROMPTS][2] = {
    {1, 1}, {4, 2}, {8, 4}, {15, 8}, {22, 1}, {29, 2}, {1, 4}, {4, 8}, {15, 2}, {29, 8},
};
#if defined(__SANITIZE_ADDRESS__)
#define N_GEN_DEFAULT 16
#else
#define N_GEN_DEFAULT N_GEN
#endif

static void test_default_model(void) {
    ls_err err;
    ls_model *m;
    REQUIRE(ls_model_load(tu_default_model(), &m, &err) == LS_OK);
    const int L = ls_model_config(m)->n_layers;
    ls_ctx *ctx;
    ls_kv *kv;
    REQUIRE(ls_ctx_create(m, 2, 64, &ctx, &err) == LS_OK);
    REQUIRE(ls_kv_create(m, 0, L, 512, &kv, &err) == LS_OK);
    const char *full_env = getenv("LS_SPEC_FULL_GRID");
    const bool full = full_env && strcmp(full_env, "1") == 0;
    static const int Es[] = {1, 4, 8, 15, 22, 29}, Ks[] = {1, 2, 4, 8};
    const int n_gen = N_GEN_DEFAULT;

    static int32_t prompts[N_PROMPTS][128];
    int np[N_PROMPTS];
    static run_out ar[N_PROMPTS];
    double t0 = ls_time_ms(), ar_ms = 0;
    for (int i = 0; i < N_PROMPTS; i++) {
        np[i] = tokenize(m, PROMPTS[i], prompts[i], 128);
        REQUIRE(np[i] > 0);
        ls_gen_params gp = params(LS_STRATEGY_AUTOREGRESSIVE, 0, 0, n_gen, true);
        gen(ctx, kv, prompts[i], np[i], &gp, NULL, NULL, &ar[i]);
        CHECK_EQ_INT(ar[i].stats.n_generated, n_gen);
        ar_ms += ar[i].stats.decode_ms;
    }
    double t1 = ls_time_ms();

    int runs = 0, identical = 0;
    int64_t drafted = 0, accepted = 0, tokens = 0;
    double spec_ms = 0;
    for (int pi = 0; pi < N_PROMPTS; pi++)
        for (int cell = 0; cell < (full ? 24 : 1); cell++) {
            const int E = full ? Es[cell / 4] : CELLS[pi][0], k = full ? Ks[cell % 4] : CELLS[pi][1];
            ls_gen_params gp = params(LS_STRATEGY_SELF_SPECULATIVE, E, k, n_gen, true);
            run_out sp;
            gen(ctx, kv, prompts[pi], np[pi], &gp, NULL, NULL, &sp);
            char what[96];
            snprintf(what, sizeof what, "prompt %d E=%d k=%d", pi, E, k);
            bool ok = same_output(what, &ar[pi], &sp);
            CHECK(ok);
            runs++;
            identical += ok;
            CHECK(sp.stats.rounds > 0 && sp.stats.accepted <= sp.stats.drafted);
            int64_t hist_rounds = 0, hist_acc = 0;
            for (int a = 0; a <= LS_MAX_SPECULATIONS; a++) {
                hist_rounds += sp.stats.accept_hist[a];
                hist_acc += a * sp.stats.accept_hist[a];
            }
            CHECK_EQ_INT(hist_rounds, sp.stats.rounds);
            CHECK_EQ_INT(hist_acc, sp.stats.accepted);
            /* every round emits its accepted drafts and one more token */
            CHECK_EQ_INT(sp.stats.accepted + sp.stats.rounds, n_gen);
            drafted += sp.stats.drafted;
            accepted += sp.stats.accepted;
            tokens += sp.stats.n_generated;
            spec_ms += sp.stats.decode_ms;
            if (full) fprintf(stderr, "    prompt %d E=%2d k=%d: acceptance %.3f\n", pi, E, k,
                              sp.stats.drafted ? (double)sp.stats.accepted / sp.stats.drafted : 0.0);
        }
    double t2 = ls_time_ms();
    fprintf(stderr, "  default model: %d/%d self-speculative runs of %d tokens identical to autoregressive "
            "(%s grid)\n", identical, runs, n_gen, full ? "full 24-cell" : "one cell per prompt");
    fprintf(stderr, "  autoregressive %.1f tok/s, self-speculative %.1f tok/s, acceptance %.3f "
            "(%.1f s + %.1f s)\n", N_PROMPTS * n_gen / (ar_ms / 1e3), tokens / (spec_ms / 1e3),
            drafted ? (double)accepted / drafted : 0.0, (t1 - t0) / 1e3, (t2 - t1) / 1e3);

    /* chat prompts: the model ends its answer with <|im_end|>; EOS honoured,
     * and once with draft_min_p on */
    static const char *chats[] = {
        "<|im_start|>user\nWhat is 2+2? Answer with one number.<|im_end|>\n<|im_start|>assistant\n",
        "<|im_start|>user\nName a color.<|im_end|>\n<|im_start|>assistant\n",
    };
    int eog_runs = 0;
    for (int i = 0; i < 2; i++) {
        int32_t ids[128];
        int n = tokenize(m, chats[i], ids, 128);
        REQUIRE(n > 0);
        ls_gen_params gp = params(LS_STRATEGY_AUTOREGRESSIVE, 0, 0, 48, false);
        run_out a, s;
        gen(ctx, kv, ids, n, &gp, NULL, NULL, &a);
        eog_runs += a.stats.finish == LS_FINISH_EOG;
        gp = params(LS_STRATEGY_SELF_SPECULATIVE, i ? 22 : 29, 4, 48, false);
        gp.draft_min_p = i ? 0.3f : 0.0f;
        gen(ctx, kv, ids, n, &gp, NULL, NULL, &s);
        CHECK(same_output("chat", &a, &s));
    }
    fprintf(stderr, "  chat prompts: %d/2 end with EOS, self-speculative output identical\n", eog_runs);
    CHECK(eog_runs >= 1);
    ls_kv_free(kv);
    ls_ctx_free(ctx);
    ls_model_free(m);
}

static ls_model *random_model(const char *name, int n_layers, uint64_t seed) {
    rm_spec spec = {.n_layers = n_layers, .dim = 64, .n_heads = 4, .n_kv_heads = 2, .ffn_dim = 128,
                    .rope_theta = 10000, .norm_eps = 1e-5f, .dtype = LS_TYPE_F16,
                    .vocab_gguf = tu_models_path("vocab/ggml-vocab-llama-spm.gguf"), .seed = seed, .n_shards = 1};
    rm_model *rm = rm_model_create(&spec);
    if (!rm) return NULL;
    const char *path = tu_tmp_path(name);
    bool ok = rm_write_gguf(rm, path);
    rm_model_free(rm);
    ls_model *m = NULL;
    ls_err err;
    if (!ok || ls_model_load(path, &m, &err) != LS_OK) return NULL;
    return m;
}

static void test_random_model(void) {
    ls_model *m = random_model("spec_lossless_4l.gguf", 4, 11);
    REQUIRE(m != NULL);
    ls_err err;
    ls_ctx *ctx;
    ls_kv *kv;
    REQUIRE(ls_ctx_create(m, 2, 16, &ctx, &err) == LS_OK);
    REQUIRE(ls_kv_create(m, 0, 4, 256, &kv, &err) == LS_OK);
    static const int Ks[] = {1, 2, 4, 8};
    int runs = 0, identical = 0;
    int64_t drafted = 0, accepted = 0;
    for (int pi = 0; pi < 3; pi++) {
        int32_t prompt[128];
        int np = tokenize(m, PROMPTS[pi], prompt, 128);
        REQUIRE(np > 0);
        ls_gen_params gp = params(LS_STRATEGY_AUTOREGRESSIVE, 0, 0, N_GEN, true);
        run_out a, s;
        gen(ctx, kv, prompt, np, &gp, NULL, NULL, &a);
        for (int E = 1; E <= 3; E++)
            for (int ki = 0; ki < 4; ki++) {
                gp = params(LS_STRATEGY_SELF_SPECULATIVE, E, Ks[ki], N_GEN, true);
                gen(ctx, kv, prompt, np, &gp, NULL, NULL, &s);
                char what[96];
                snprintf(what, sizeof what, "random model prompt %d E=%d k=%d", pi, E, Ks[ki]);
                bool ok = same_output(what, &a, &s);
                CHECK(ok);
                runs++;
                identical += ok;
                drafted += s.stats.drafted;
                accepted += s.stats.accepted;
            }
    }
    fprintf(stderr, "  random 4-layer model: %d/%d runs identical (acceptance %.3f)\n", identical, runs,
            drafted ? (double)accepted / drafted : 0.0);
    CHECK(accepted < drafted); /* rejections happened: rollback was exercised */

    int32_t prompt[128];
    int np = tokenize(m, PROMPTS[3], prompt, 128);
    run_out a, s;
    /* draft_min_p: the random model's top draft probabilities are around
     * 3e-4, so 3e-4 stops some rounds early and 1 stops every round before
     * its first draft; output unchanged */
    ls_gen_params gpa = params(LS_STRATEGY_AUTOREGRESSIVE, 0, 0, N_GEN, true);
    gen(ctx, kv, prompt, np, &gpa, NULL, NULL, &a);
    for (int i = 0; i < 2; i++) {
        ls_gen_params gp = params(LS_STRATEGY_SELF_SPECULATIVE, 2, 4, N_GEN, true);
        gp.draft_min_p = i ? 1.0f : 0.0003f;
        gen(ctx, kv, prompt, np, &gp, NULL, NULL, &s);
        CHECK(same_output("draft_min_p", &a, &s));
        if (i) CHECK_EQ_INT(s.stats.drafted, 0);
        if (i) CHECK_EQ_INT(s.stats.rounds, N_GEN);
    }
    /* n_predict is met exactly, whatever k */
    for (int n = 1; n <= 12; n++) {
        ls_gen_params gp = params(LS_STRATEGY_AUTOREGRESSIVE, 0, 0, n, true);
        gen(ctx, kv, prompt, np, &gp, NULL, NULL, &a);
        gp = params(LS_STRATEGY_SELF_SPECULATIVE, 2, 8, n, true);
        gen(ctx, kv, prompt, np, &gp, NULL, NULL, &s);
        CHECK_EQ_INT(s.stats.n_generated, n);
        CHECK(same_output("n_predict", &a, &s));
    }
    /* n_predict 0: nothing generated */
    ls_gen_params gp0 = params(LS_STRATEGY_SELF_SPECULATIVE, 2, 4, 0, true);
    gen(ctx, kv, prompt, np, &gp0, NULL, NULL, &s);
    CHECK_EQ_INT(s.st, LS_OK);
    CHECK_EQ_INT(s.stats.n_generated, 0);
    /* a one-token prompt has nothing to prefill */
    ls_gen_params gp1 = params(LS_STRATEGY_AUTOREGRESSIVE, 0, 0, 20, true);
    gen(ctx, kv, prompt, 1, &gp1, NULL, NULL, &a);
    gp1 = params(LS_STRATEGY_SELF_SPECULATIVE, 1, 4, 20, true);
    gen(ctx, kv, prompt, 1, &gp1, NULL, NULL, &s);
    CHECK(same_output("one-token prompt", &a, &s));
    /* the callback stops generation at the token it returns false for */
    for (int stop = 1; stop <= 9; stop += 4) {
        stop_after sa = {stop, 0}, sb = {stop, 0};
        ls_gen_params gp = params(LS_STRATEGY_AUTOREGRESSIVE, 0, 0, 40, true);
        gen(ctx, kv, prompt, np, &gp, stop_cb, &sa, &a);
        gp = params(LS_STRATEGY_SELF_SPECULATIVE, 3, 8, 40, true);
        gen(ctx, kv, prompt, np, &gp, stop_cb, &sb, &s);
        CHECK_EQ_INT(s.stats.finish, LS_FINISH_STOPPED);
        CHECK_EQ_INT(s.stats.n_generated, stop);
        CHECK_EQ_INT(sb.seen, stop);
        CHECK(same_output("callback", &a, &s));
    }
    /* a full context ends both the same way, at the same token */
    ls_kv *small;
    REQUIRE(ls_kv_create(m, 0, 4, np + 21, &small, &err) == LS_OK);
    for (int k = 1; k <= 8; k *= 2) {
        ls_gen_params gp = params(LS_STRATEGY_AUTOREGRESSIVE, 0, 0, 64, true);
        gen(ctx, small, prompt, np, &gp, NULL, NULL, &a);
        CHECK_EQ_INT(a.stats.finish, LS_FINISH_CONTEXT);
        gp = params(LS_STRATEGY_SELF_SPECULATIVE, 2, k, 64, true);
        gen(ctx, small, prompt, np, &gp, NULL, NULL, &s);
        CHECK(same_output("context", &a, &s));
    }
    ls_kv_free(small);
    /* a prompt filling the context exactly: one token, then the context is full */
    REQUIRE(ls_kv_create(m, 0, 4, np, &small, &err) == LS_OK);
    gpa = params(LS_STRATEGY_AUTOREGRESSIVE, 0, 0, 8, true);
    gen(ctx, small, prompt, np, &gpa, NULL, NULL, &a);
    CHECK_EQ_INT(a.stats.n_generated, 1);
    ls_gen_params gpf = params(LS_STRATEGY_SELF_SPECULATIVE, 2, 4, 8, true);
    gen(ctx, small, prompt, np, &gpf, NULL, NULL, &s);
    CHECK(same_output("full context", &a, &s));
    ls_kv_free(small);
    ls_kv_free(kv);
    ls_ctx_free(ctx);
    ls_model_free(m);
}

static void test_errors(void) {
    ls_model *m = random_model("spec_lossless_err.gguf", 4, 12);
    REQUIRE(m != NULL);
    ls_err err;
    ls_ctx *ctx;
    ls_kv *kv;
    REQUIRE(ls_ctx_create(m, 1, 8, &ctx, &err) == LS_OK);
    REQUIRE(ls_kv_create(m, 0, 4, 64, &kv, &err) == LS_OK);
    int32_t prompt[4] = {1, 100, 200, 300}, out[8];
    ls_gen_stats stats;
    struct { ls_strategy s; int E, k; float min_p; const char *needle; } bad[] = {
        {LS_STRATEGY_SELF_SPECULATIVE, 0, 4, 0, "exit_layer 0 is out of range [1, 3]"},
        {LS_STRATEGY_SELF_SPECULATIVE, 4, 4, 0, "exit_layer 4 is out of range [1, 3]"},
        {LS_STRATEGY_SELF_SPECULATIVE, -1, 4, 0, "exit_layer -1"},
        {LS_STRATEGY_EARLY_EXIT, 0, 0, 0, "exit_layer 0"},
        {LS_STRATEGY_EARLY_EXIT, 4, 0, 0, "exit_layer 4"},
        {LS_STRATEGY_SELF_SPECULATIVE, 2, 0, 0, "num_speculations 0 is out of range [1, 32]"},
        {LS_STRATEGY_SELF_SPECULATIVE, 2, 33, 0, "num_speculations 33 is out of range [1, 32]"},
        {LS_STRATEGY_SELF_SPECULATIVE, 2, 4, -0.1f, "draft_min_p"},
        {LS_STRATEGY_SELF_SPECULATIVE, 2, 4, 1.5f, "draft_min_p"},
        {LS_STRATEGY_SELF_SPECULATIVE, 2, 4, NAN, "draft_min_p"},
        {(ls_strategy)7, 2, 4, 0, "strategy 7"},
        /* k + 1 positions per verification do not fit max_batch 8 */
        {LS_STRATEGY_SELF_SPECULATIVE, 2, 8, 0, "max_batch >= 9"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ls_gen_params gp = params(bad[i].s, bad[i].E, bad[i].k, 8, true);
        gp.draft_min_p = bad[i].min_p;
        err.msg[0] = 0;
        ls_status st = ls_generate(ctx, kv, prompt, 4, &gp, out, NULL, NULL, &stats, &err);
        CHECK_EQ_INT(st, LS_ERR_INVALID);
        if (!strstr(err.msg, bad[i].needle))
            fprintf(stderr, "  case %zu: message \"%s\" lacks \"%s\"\n", i, err.msg, bad[i].needle);
        CHECK(strstr(err.msg, bad[i].needle) != NULL);
    }
    /* zero-initialised strategy fields: autoregressive, fields ignored */
    ls_gen_params plain = {.n_predict = 4, .ignore_eog = true};
    ls_sampling_default(&plain.sampling);
    CHECK_EQ_INT(ls_generate(ctx, kv, prompt, 4, &plain, out, NULL, NULL, &stats, &err), LS_OK);
    CHECK_EQ_INT(stats.n_generated, 4);
    CHECK_EQ_INT(stats.drafted, 0);

    ls_strategy s;
    CHECK_EQ_INT(ls_strategy_parse("self_speculative", &s, &err), LS_OK);
    CHECK_EQ_INT(s, LS_STRATEGY_SELF_SPECULATIVE);
    CHECK_EQ_INT(ls_strategy_parse("early_exit", &s, &err), LS_OK);
    CHECK_EQ_INT(s, LS_STRATEGY_EARLY_EXIT);
    CHECK_EQ_INT(ls_strategy_parse("autoregressive", &s, &err), LS_OK);
    CHECK_EQ_INT(s, LS_STRATEGY_AUTOREGRESSIVE);
    for (int i = 0; i < 3; i++) {
        CHECK_EQ_INT(ls_strategy_parse(ls_strategy_name((ls_strategy)i), &s, &err), LS_OK);
        CHECK_EQ_INT(s, i);
    }
    CHECK_EQ_INT(ls_strategy_parse("speculative", &s, &err), LS_ERR_INVALID);
    CHECK(strstr(err.msg, "\"speculative\"") != NULL);
    CHECK(strstr(err.msg, "autoregressive, early_exit, self_speculative") != NULL);
    CHECK_EQ_INT(ls_strategy_parse("", &s, &err), LS_ERR_INVALID);
    CHECK_EQ_INT(ls_strategy_parse(NULL, &s, &err), LS_ERR_INVALID);
    CHECK_STR_EQ(ls_strategy_name(LS_STRATEGY_EARLY_EXIT), "early_exit");
    ls_kv_free(kv);
    ls_ctx_free(ctx);
    ls_model_free(m);
}

int main(void) {
    RUN(test_errors);
    RUN(test_random_model);
    RUN(test_default_model);
    TEST_MAIN_END();
}
