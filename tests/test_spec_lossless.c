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
 * parameter errors.
 *
 * Draft sources (exit, adapter, lookup, auto; random adapters written by
 * tests/support/random_adapter.c): on random 4-layer models every source x
 * E in [1, 3] (an adapter per E: attention-only F32, F16 with a feed-forward
 * part, F16 with the model's ffn width) x k in {1, 3, 8} x fixed or auto k x
 * with and without an adapter / a draft vocabulary (the adapter's table):
 * over a 32-token vocabulary, whose greedy text repeats itself so lookup
 * drafts are accepted and rejected (EOS ignored, then honoured), and over
 * the 32000-token one on a prompt with repetition and a plain one; plus
 * n_predict 1..12, a one-token prompt, a stopping callback and a full
 * context with the adapter's own cache in play. On the default model a
 * random adapter at E = 8 with a
 * table (acceptance is poor, output must not change) over a cell list of
 * source x k x auto k x draft_vocab, 32 tokens each (16 under ASan), on a
 * prompt that asks for a copy: lookup drafts and is accepted, and auto with
 * the adapter drafts from both lookup and the adapter. Every run's
 * statistics add up (per source, per k, the sources each mode may use). */
#include "test_util.h"
#include "random_model.h"
#include "random_adapter.h"
#include "tiny_vocab.h"
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

/* ------------------------------------------------------------ draft sources */

/* statistics that every self-speculative run must satisfy, for source src
 * with or without an adapter block in play and k allowed at most */
static bool stats_consistent(const char *what, const ls_gen_stats *s, ls_draft_source src, bool block, int k,
                             bool auto_k, int n_gen) {
    int64_t d = 0, a = 0, r = 0, hist_r = 0, hist_a = 0;
    bool ok = true;
    for (int i = 0; i < LS_N_DRAFT_SOURCES; i++) {
        d += s->drafted_by[i];
        a += s->accepted_by[i];
        ok = ok && s->accepted_by[i] <= s->drafted_by[i] && s->accepted_by[i] >= 0;
    }
    for (int i = 0; i <= LS_MAX_SPECULATIONS; i++) {
        r += s->rounds_by_k[i];
        if (i > k && s->rounds_by_k[i]) ok = false;        /* never more than k */
        /* fixed k, a model source in play: k = 0 only in the last round (one token left) */
        if (i == 0 && !auto_k && src != LS_DRAFT_LOOKUP && s->rounds_by_k[0] > 1) ok = false;
        hist_r += s->accept_hist[i];
        hist_a += i * s->accept_hist[i];
    }
    ok = ok && d == s->drafted && a == s->accepted && r == s->rounds && hist_r == s->rounds && hist_a == s->accepted;
    ok = ok && s->drafted_by[LS_DRAFT_AUTO] == 0 && s->accepted_by[LS_DRAFT_AUTO] == 0;
    /* the sources a mode may draft from */
    const bool may[LS_N_DRAFT_SOURCES] = {
        [LS_DRAFT_EXIT] = src == LS_DRAFT_EXIT || (src == LS_DRAFT_AUTO && !block),
        [LS_DRAFT_ADAPTER] = src == LS_DRAFT_ADAPTER || (src == LS_DRAFT_AUTO && block),
        [LS_DRAFT_LOOKUP] = src == LS_DRAFT_LOOKUP || src == LS_DRAFT_AUTO,
    };
    for (int i = 1; i < LS_N_DRAFT_SOURCES; i++) ok = ok && (may[i] || s->drafted_by[i] == 0);
    if (s->finish == LS_FINISH_LENGTH) ok = ok && s->accepted + s->rounds == n_gen;
    if (!ok)
        fprintf(stderr, "  %s: statistics do not add up: drafted %lld (exit %lld, adapter %lld, lookup %lld), "
                "accepted %lld (exit %lld, adapter %lld, lookup %lld), rounds %lld\n", what, (long long)s->drafted,
                (long long)s->drafted_by[LS_DRAFT_EXIT], (long long)s->drafted_by[LS_DRAFT_ADAPTER],
                (long long)s->drafted_by[LS_DRAFT_LOOKUP], (long long)s->accepted,
                (long long)s->accepted_by[LS_DRAFT_EXIT], (long long)s->accepted_by[LS_DRAFT_ADAPTER],
                (long long)s->accepted_by[LS_DRAFT_LOOKUP], (long long)s->rounds);
    return ok;
}

/* one way to draft: the source, whether the adapter is passed, whether
 * draft_vocab is set (to the run's dv) */
typedef struct variant { ls_draft_source src; bool adapter; int dv; } variant;
static const variant VARIANTS[] = {
    {LS_DRAFT_EXIT, false, 0},   {LS_DRAFT_EXIT, true, 1},   {LS_DRAFT_ADAPTER, true, 0}, {LS_DRAFT_ADAPTER, true, 1},
    {LS_DRAFT_LOOKUP, false, 0}, {LS_DRAFT_LOOKUP, true, 1}, {LS_DRAFT_AUTO, false, 0},   {LS_DRAFT_AUTO, true, 0},
    {LS_DRAFT_AUTO, true, 1},
};
#define N_VARIANTS ((int)(sizeof VARIANTS / sizeof VARIANTS[0]))

static ls_gen_params src_params(const variant *v, const ls_adapter *a, int dv, int E, int k, bool auto_k, int n) {
    ls_gen_params gp = params(LS_STRATEGY_SELF_SPECULATIVE, E, k, n, true);
    gp.draft_source = v->src;
    gp.adapter = v->adapter ? a : NULL;
    gp.draft_vocab = v->dv ? dv : 0;
    gp.auto_speculations = auto_k;
    return gp;
}

/* drafted and accepted per source, summed over runs */
typedef struct src_sums { int64_t drafted[LS_N_DRAFT_SOURCES], accepted[LS_N_DRAFT_SOURCES]; int runs, identical; } src_sums;

/* one adapter per exit layer [1, 3] of a 4-layer model, each with an
 * n_table-entry table: attention-only F32, F16 with a feed-forward part,
 * Q8_0 with the model's feed-forward width */
static bool load_adapters(ls_model *m, const char *tag, int n_table, ls_adapter *ad[3]) {
    const ra_spec specs[3] = {
        {.exit_layer = 1, .ffn_dim = 0, .dtype = LS_TYPE_F32, .seed = 301, .n_table = n_table},
        {.exit_layer = 2, .ffn_dim = 64, .dtype = LS_TYPE_F16, .seed = 302, .n_table = n_table},
        {.exit_layer = 3, .ffn_dim = 128, .dtype = LS_TYPE_Q8_0, .seed = 303, .n_table = n_table},
    };
    for (int i = 0; i < 3; i++) {
        char name[96];
        snprintf(name, sizeof name, "spec_lossless_%s_adapter_e%d.gguf", tag, i + 1);
        ls_err err;
        if (!ra_write_for_model(m, &specs[i], tu_tmp_path(name))) return false;
        if (ls_adapter_load(tu_tmp_path(name), m, &ad[i], &err) != LS_OK) {
            fprintf(stderr, "  %s\n", err.msg);
            return false;
        }
    }
    return true;
}

/* every variant x E in [1, 3] x k in {1, 3, 8} x fixed/auto k on a prompt
 * (every thin_fixed-th cell of fixed k, every thin_auto-th of auto k);
 * output against autoregressive, statistics checked */
static void sources_grid(const char *label, ls_ctx *ctx, ls_kv *kv, const int32_t *prompt, int np, bool ignore_eog,
                         ls_adapter *ad[3], int dv, int n_gen, int thin_fixed, int thin_auto, src_sums *sum) {
    static const int Ks[] = {1, 3, 8};
    ls_gen_params gp = params(LS_STRATEGY_AUTOREGRESSIVE, 0, 0, n_gen, ignore_eog);
    run_out a, s;
    gen(ctx, kv, prompt, np, &gp, NULL, NULL, &a);
    REQUIRE(a.st == LS_OK);
    int cell[2] = {0, 0};
    for (int vi = 0; vi < N_VARIANTS; vi++)
        for (int E = 1; E <= 3; E++)
            for (int ki = 0; ki < 3; ki++)
                for (int auto_k = 0; auto_k < 2; auto_k++) {
                    if (cell[auto_k]++ % (auto_k ? thin_auto : thin_fixed) != 0) continue;
                    const variant *v = &VARIANTS[vi];
                    gp = src_params(v, ad[E - 1], dv, E, Ks[ki], auto_k, n_gen);
                    gp.ignore_eog = ignore_eog;
                    gen(ctx, kv, prompt, np, &gp, NULL, NULL, &s);
                    char what[160];
                    snprintf(what, sizeof what, "%s source %s%s dv %d E=%d k=%d%s", label,
                             ls_draft_source_name(v->src), v->adapter ? "+adapter" : "", gp.draft_vocab, E, Ks[ki],
                             auto_k ? " auto" : "");
                    bool ok = same_output(what, &a, &s);
                    CHECK(ok);
                    CHECK(s.st == LS_OK &&
                          stats_consistent(what, &s.stats, v->src, v->adapter, Ks[ki], auto_k, a.stats.n_generated));
                    sum->runs++;
                    sum->identical += ok;
                    for (int i = 0; i < LS_N_DRAFT_SOURCES; i++) {
                        sum->drafted[i] += s.stats.drafted_by[i];
                        sum->accepted[i] += s.stats.accepted_by[i];
                    }
                }
}

static void print_sums(const char *label, const src_sums *s) {
    fprintf(stderr, "  %s: %d/%d runs identical; accepted/drafted exit %lld/%lld, adapter %lld/%lld, lookup "
            "%lld/%lld\n", label, s->identical, s->runs, (long long)s->accepted[LS_DRAFT_EXIT],
            (long long)s->drafted[LS_DRAFT_EXIT], (long long)s->accepted[LS_DRAFT_ADAPTER],
            (long long)s->drafted[LS_DRAFT_ADAPTER], (long long)s->accepted[LS_DRAFT_LOOKUP],
            (long long)s->drafted[LS_DRAFT_LOOKUP]);
}

/* repetition: lookup finds n-gram matches in the prompt (the random model
 * continues it otherwise: drafted, rejected, rolled back) */
static const char *REPEAT_PROMPT = "red green blue yellow, red green blue yellow, red green blue yellow, red green";

#if defined(__SANITIZE_ADDRESS__)
#define N_GEN_SPM 16
#define SPM_THIN 2
#else
#define N_GEN_SPM 32
#define SPM_THIN 1
#endif

static void test_sources_random_model(void) {
    ls_err err;
    ls_ctx *ctx;
    ls_kv *kv;
    ls_adapter *ad[3] = {NULL, NULL, NULL};
    double t0 = ls_time_ms();

    /* a 32-token vocabulary: the greedy text repeats itself, so lookup drafts
     * are accepted as well as rejected (and </s> is drafted: with EOS honoured
     * nothing is drafted past it) */
    const char *tv = tu_tmp_path("spec_lossless_tiny_vocab.gguf"), *tpath = tu_tmp_path("spec_lossless_tiny.gguf");
    REQUIRE(tv_write_vocab(tv, 32));
    rm_spec spec = {.n_layers = 4, .dim = 64, .n_heads = 4, .n_kv_heads = 2, .ffn_dim = 128, .rope_theta = 10000,
                    .norm_eps = 1e-5f, .dtype = LS_TYPE_F16, .vocab_gguf = tv, .seed = 13, .n_shards = 1};
    rm_model *rm = rm_model_create(&spec);
    REQUIRE(rm && rm_write_gguf(rm, tpath));
    rm_model_free(rm);
    ls_model *m;
    REQUIRE(ls_model_load(tpath, &m, &err) == LS_OK);
    REQUIRE(ls_ctx_create(m, 1, 16, &ctx, &err) == LS_OK);
    REQUIRE(ls_kv_create(m, 0, 4, 256, &kv, &err) == LS_OK);
    REQUIRE(load_adapters(m, "tiny", 20, ad));
    static const int32_t tprompt[] = {1, 3, 4, 5, 6, 3, 4, 5, 6, 3, 4};
    src_sums tiny, tiny_eog, spm[2];
    memset(&tiny, 0, sizeof tiny);
    memset(&tiny_eog, 0, sizeof tiny_eog);
    memset(spm, 0, sizeof spm);
    sources_grid("tiny model", ctx, kv, tprompt, 11, true, ad, 12, N_GEN, 1, 1, &tiny);
    print_sums("tiny-vocabulary model, every source x E x k x fixed/auto k", &tiny);
    CHECK_EQ_INT(tiny.identical, tiny.runs);
    for (int i = LS_DRAFT_EXIT; i <= LS_DRAFT_LOOKUP; i++) {
        CHECK(tiny.drafted[i] > 0);
        CHECK(tiny.accepted[i] > 0);
        CHECK(tiny.accepted[i] < tiny.drafted[i]);
    }
    /* EOS honoured: the text ends at </s>, as autoregressive decoding's does */
    sources_grid("tiny model, EOS honoured", ctx, kv, tprompt, 11, false, ad, 12, N_GEN, 2, 3, &tiny_eog);
    print_sums("tiny-vocabulary model, EOS honoured", &tiny_eog);
    fprintf(stderr, "  (%.1f s)\n", (ls_time_ms() - t0) / 1e3);
    CHECK_EQ_INT(tiny_eog.identical, tiny_eog.runs);

    /* the edges, with the adapter's cache in play (auto: lookup and adapter) */
    run_out a, s;
    const variant auto_ad = {LS_DRAFT_AUTO, true, 0}, ad_dv = {LS_DRAFT_ADAPTER, true, 1};
    for (int n = 1; n <= 12; n++) {
        ls_gen_params gp = params(LS_STRATEGY_AUTOREGRESSIVE, 0, 0, n, true);
        gen(ctx, kv, tprompt, 11, &gp, NULL, NULL, &a);
        for (int auto_k = 0; auto_k < 2; auto_k++) {
            gp = src_params(&auto_ad, ad[1], 0, 2, 8, auto_k, n);
            gen(ctx, kv, tprompt, 11, &gp, NULL, NULL, &s);
            CHECK_EQ_INT(s.stats.n_generated, n);
            CHECK(same_output("n_predict (auto + adapter)", &a, &s));
        }
    }
    /* a one-token prompt: nothing for the adapter's cache before the first round */
    ls_gen_params gp1 = params(LS_STRATEGY_AUTOREGRESSIVE, 0, 0, 40, true);
    gen(ctx, kv, tprompt, 1, &gp1, NULL, NULL, &a);
    for (int vi = 0; vi < N_VARIANTS; vi++) {
        gp1 = src_params(&VARIANTS[vi], ad[0], 12, 1, 4, vi % 2, 40);
        gen(ctx, kv, tprompt, 1, &gp1, NULL, NULL, &s);
        CHECK(same_output("one-token prompt", &a, &s));
    }
    for (int stop = 1; stop <= 13; stop += 4) {
        stop_after sa = {stop, 0}, sb = {stop, 0};
        ls_gen_params gp = params(LS_STRATEGY_AUTOREGRESSIVE, 0, 0, 40, true);
        gen(ctx, kv, tprompt, 11, &gp, stop_cb, &sa, &a);
        gp = src_params(&auto_ad, ad[2], 0, 3, 8, false, 40);
        gen(ctx, kv, tprompt, 11, &gp, stop_cb, &sb, &s);
        CHECK_EQ_INT(s.stats.finish, LS_FINISH_STOPPED);
        CHECK_EQ_INT(s.stats.n_generated, stop);
        CHECK(same_output("callback (auto + adapter)", &a, &s));
    }
    ls_kv *small;
    REQUIRE(ls_kv_create(m, 0, 4, 11 + 21, &small, &err) == LS_OK);
    for (int k = 1; k <= 8; k *= 2)
        for (int vi = 0; vi < 2; vi++) {
            ls_gen_params gp = params(LS_STRATEGY_AUTOREGRESSIVE, 0, 0, 64, true);
            gen(ctx, small, tprompt, 11, &gp, NULL, NULL, &a);
            CHECK_EQ_INT(a.stats.finish, LS_FINISH_CONTEXT);
            gp = src_params(vi ? &ad_dv : &auto_ad, ad[1], 12, 2, k, k == 4, 64);
            gen(ctx, small, tprompt, 11, &gp, NULL, NULL, &s);
            CHECK(same_output("context (adapter)", &a, &s));
        }
    ls_kv_free(small);
    for (int i = 0; i < 3; i++) ls_adapter_free(ad[i]);
    ls_kv_free(kv);
    ls_ctx_free(ctx);
    ls_model_free(m);

    /* the 32000-token SentencePiece vocabulary: big draft heads, tables of
     * 4000 entries (draft_vocab 1000); a prompt with repetition and a
     * plain one; auto k on every third cell */
    m = random_model("spec_lossless_src.gguf", 4, 13);
    REQUIRE(m != NULL);
    REQUIRE(ls_ctx_create(m, 1, 16, &ctx, &err) == LS_OK);
    REQUIRE(ls_kv_create(m, 0, 4, 256, &kv, &err) == LS_OK);
    REQUIRE(load_adapters(m, "spm", 4000, ad));
    const char *texts[2] = {REPEAT_PROMPT, PROMPTS[1]};
    for (int pi = 0; pi < 2; pi++) {
        int32_t prompt[128];
        int np = tokenize(m, texts[pi], prompt, 128);
        REQUIRE(np > 0);
        sources_grid(pi ? "random model, plain prompt" : "random model, repetitive prompt", ctx, kv, prompt, np, true,
                     ad, 1000, N_GEN_SPM, SPM_THIN * (pi ? 3 : 1), SPM_THIN * 3, &spm[pi]);
        print_sums(pi ? "random model, plain prompt" : "random model, repetitive prompt", &spm[pi]);
        CHECK_EQ_INT(spm[pi].identical, spm[pi].runs);
    }
    CHECK(spm[0].drafted[LS_DRAFT_LOOKUP] > 0); /* the prompt's repetition is drafted */
    CHECK(spm[0].accepted[LS_DRAFT_ADAPTER] < spm[0].drafted[LS_DRAFT_ADAPTER]); /* rollbacks */
    for (int i = 0; i < 3; i++) ls_adapter_free(ad[i]);
    ls_kv_free(kv);
    ls_ctx_free(ctx);
    ls_model_free(m);
    fprintf(stderr, "  random models, draft sources: %.1f s\n", (ls_time_ms() - t0) / 1e3);
}

/* the default model with a random adapter at E = 8 (576 x 576 attention
 * block, a 256-wide feed-forward part, F16) and an 8000-entry table */
#if defined(__SANITIZE_ADDRESS__)
#define N_GEN_SRC 16
#else
#define N_GEN_SRC 32
#endif
/* the model copies the sentence twice, then writes something new */
static const char *COPY_PROMPT = "<|im_start|>user\nWrite the sentence \"the cat sat on the mat\" three times."
                                 "<|im_end|>\n<|im_start|>assistant\nthe cat sat on the mat\nthe cat";

static void test_sources_default_model(void) {
    ls_err err;
    ls_model *m;
    REQUIRE(ls_model_load(tu_default_model(), &m, &err) == LS_OK);
    const int L = ls_model_config(m)->n_layers;
    ls_ctx *ctx;
    ls_kv *kv;
    REQUIRE(ls_ctx_create(m, 2, 16, &ctx, &err) == LS_OK);
    REQUIRE(ls_kv_create(m, 0, L, 512, &kv, &err) == LS_OK);
    const ra_spec as = {.exit_layer = 8, .ffn_dim = 256, .dtype = LS_TYPE_F16, .seed = 808, .n_table = 8000};
    const char *apath = tu_tmp_path("spec_lossless_default_adapter.gguf");
    REQUIRE(ra_write_for_model(m, &as, apath));
    ls_adapter *ad = NULL;
    ls_status st = ls_adapter_load(apath, m, &ad, &err);
    if (st != LS_OK) fprintf(stderr, "  %s\n", err.msg);
    REQUIRE(st == LS_OK);
    CHECK_EQ_INT(ls_adapter_vocab_len(ad), 8000);

    /* source, adapter passed, draft_vocab, k, auto k; prompt 0 = copy, 1 = plain */
    static const struct { variant v; int k; bool auto_k; int prompt; } cells[] = {
        {{LS_DRAFT_LOOKUP, false, 0}, 8, false, 0},   {{LS_DRAFT_AUTO, true, 0}, 3, false, 0},
        {{LS_DRAFT_ADAPTER, true, 4000}, 3, false, 0}, {{LS_DRAFT_AUTO, true, 4000}, 8, true, 0},
        {{LS_DRAFT_EXIT, true, 2000}, 3, false, 0},   {{LS_DRAFT_LOOKUP, true, 8000}, 1, true, 0},
        {{LS_DRAFT_AUTO, true, 4000}, 8, false, 0},   {{LS_DRAFT_AUTO, false, 0}, 8, true, 0},
        {{LS_DRAFT_AUTO, true, 0}, 8, false, 1},      {{LS_DRAFT_ADAPTER, true, 8000}, 3, false, 1},
        {{LS_DRAFT_EXIT, true, 4000}, 1, false, 1},
    };
#if defined(__SANITIZE_ADDRESS__)
    const int n_cells = 6; /* lookup, auto + adapter, adapter + table, auto k, exit + table, lookup + table */
#else
    const int n_cells = (int)(sizeof cells / sizeof cells[0]);
#endif
    const char *texts[2] = {COPY_PROMPT, PROMPTS[2]};
    static int32_t prompts[2][128];
    int np[2];
    static run_out ar[2];
    double t0 = ls_time_ms();
    for (int i = 0; i < 2; i++) {
        np[i] = tokenize(m, texts[i], prompts[i], 128);
        REQUIRE(np[i] > 0);
        ls_gen_params gp = params(LS_STRATEGY_AUTOREGRESSIVE, 0, 0, N_GEN_SRC, true);
        gen(ctx, kv, prompts[i], np[i], &gp, NULL, NULL, &ar[i]);
        REQUIRE(ar[i].st == LS_OK);
    }
    int identical = 0;
    for (int c = 0; c < n_cells; c++) {
        const int pi = cells[c].prompt;
        ls_gen_params gp = src_params(&cells[c].v, ad, cells[c].v.dv, 8, cells[c].k, cells[c].auto_k, N_GEN_SRC);
        run_out s;
        gen(ctx, kv, prompts[pi], np[pi], &gp, NULL, NULL, &s);
        char what[160];
        snprintf(what, sizeof what, "default model %s prompt, source %s%s dv %d k=%d%s", pi ? "plain" : "copy",
                 ls_draft_source_name(cells[c].v.src), cells[c].v.adapter ? "+adapter" : "", cells[c].v.dv,
                 cells[c].k, cells[c].auto_k ? " auto" : "");
        bool ok = same_output(what, &ar[pi], &s);
        CHECK(ok);
        identical += ok;
        CHECK(s.st == LS_OK && stats_consistent(what, &s.stats, cells[c].v.src, cells[c].v.adapter, cells[c].k,
                                                cells[c].auto_k, N_GEN_SRC));
        const ls_gen_stats *g = &s.stats;
        fprintf(stderr, "    %-62s accepted/drafted exit %lld/%lld adapter %lld/%lld lookup %lld/%lld, %lld rounds\n",
                what + 14, (long long)g->accepted_by[LS_DRAFT_EXIT], (long long)g->drafted_by[LS_DRAFT_EXIT],
                (long long)g->accepted_by[LS_DRAFT_ADAPTER], (long long)g->drafted_by[LS_DRAFT_ADAPTER],
                (long long)g->accepted_by[LS_DRAFT_LOOKUP], (long long)g->drafted_by[LS_DRAFT_LOOKUP],
                (long long)g->rounds);
        /* the copy prompt: lookup drafts and is accepted; auto with the
         * adapter drafts from both lookup and the adapter (fixed k: auto k's
         * choices depend on measured times, and with the adapter's prior it
         * starts with plain steps) */
        if (pi == 0 && cells[c].v.src == LS_DRAFT_LOOKUP && !cells[c].auto_k) {
            CHECK(g->drafted_by[LS_DRAFT_LOOKUP] > 0);
            CHECK(g->accepted_by[LS_DRAFT_LOOKUP] > 0);
        }
        if (pi == 0 && cells[c].v.src == LS_DRAFT_AUTO && cells[c].v.adapter && !cells[c].auto_k) {
            CHECK(g->drafted_by[LS_DRAFT_LOOKUP] > 0 && g->accepted_by[LS_DRAFT_LOOKUP] > 0);
            CHECK(g->drafted_by[LS_DRAFT_ADAPTER] > 0);
        }
    }
    fprintf(stderr, "  default model, draft sources: %d/%d runs of %d tokens identical to autoregressive (%.1f s)\n",
            identical, n_cells, N_GEN_SRC, (ls_time_ms() - t0) / 1e3);
    ls_adapter_free(ad);
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
    RUN(test_sources_random_model);
    RUN(test_default_model);
    RUN(test_sources_default_model);
    TEST_MAIN_END();
}
