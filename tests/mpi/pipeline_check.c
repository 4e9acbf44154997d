/* pipeline_check: the MPI pipeline against single-process generation.
 *
 * Rank 0 is the driver; other ranks run the stage loop (lsw_worker_run), or
 * are layerskip-worker processes when launched MPMD (mpirun -np 1
 * pipeline_check ... : -np N layerskip-worker). Modes (one per ctest entry):
 *   --split LIST [--split LIST...]  for each split: greedy autoregressive,
 *        self_speculative (k 2 and 4) and early_exit through the pipeline on
 *        several prompts; token ids, counts and finish reasons must equal
 *        ls_generate's on one process. Plus n_predict 0/1/2, a stopping
 *        callback, a full context, sampled autoregressive (equal to
 *        ls_generate's draws), sampled self_speculative (valid tokens), and
 *        request errors. And the draft sources: lookup, a random adapter
 *        written for the split's exit layer (tests/support/random_adapter.c;
 *        with and without its table as the draft vocabulary), auto with and
 *        without the adapter, fixed and auto k, on a prompt the model copies
 *        from (lookup drafts and is accepted) and plain ones: output equal
 *        to ls_generate's, per-source statistics adding up.
 *   --sampling      a random 4-layer model over a 16-token vocabulary split
 *        0-1 | 1-4 (2 ranks) or 0-1 | 1-2 | 2-4 (3 ranks): sampled
 *        self-speculation with adapter drafts (a random adapter after layer
 *        1) and with lookup drafts (a point mass on the prompt's earlier
 *        continuation): the first token's counts pass a chi-square test
 *        against the full model's distribution and fail one against the
 *        draft's, the first two tokens' joint counts pass too (as
 *        test_spec_sampling checks ls_generate; the pipeline's draws are its
 *        own).
 *   --layouts       bad layouts and options are refused with clear errors
 *   --trace PREFIX  a 2-rank run traced: drafting on rank 0 overlaps
 *                   verification on rank 1 in time
 *   --concurrent N  N requests (up to 16) at once on N slots (threads),
 *                   autoregressive, early_exit and self_speculative mixed
 *                   with several k and lengths (the stages batch them), while rank 0 pings the
 *                   stages: each equals its single-process ls_generate
 *   --hang          rank 1 is stopped (SIGSTOP): lsw_generate fails within
 *                   the timeout naming stage 1, later calls fail at once
 *   --expect-setup-error TEXT  pipeline creation fails with TEXT (workers
 *                   started with a different --stages or --model) */
#include "test_util.h"
#include "pipeline.h"
#include "chi2.h"
#include "random_adapter.h"
#include "random_model.h"
#include "tiny_vocab.h"
#include "layerskip/tokenizer.h"

#include <pthread.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

/* Under AddressSanitizer (about 5x slower): fewer tokens, two prompts
 * (one plain, the chat one), one k per prompt. */
#if defined(__SANITIZE_ADDRESS__)
#define N_GEN 10
#define LIGHT 1
#else
#define N_GEN 24
#define LIGHT 0
#endif
#define N_CTX 256
/* per draft-source case; 16 also under ASan: with fewer, lookup covers the
 * whole copy prompt and auto never falls back to the adapter */
#define N_GEN_SRC 16

static const char *PROMPTS[] = {
    "The history of the Roman Empire begins with",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "The capital of France is Paris. The capital of Germany is",
};
#define N_PROMPTS ((int)(sizeof PROMPTS / sizeof PROMPTS[0]))
/* ends in <|im_end|> within a few tokens: EOS honoured */
static const char *CHAT = "<|im_start|>user\nSay only the word yes.<|im_end|>\n<|im_start|>assistant\n";
/* the model copies the sentence, then writes something new: lookup drafts */
static const char *COPY = "<|im_start|>user\nWrite the sentence \"the cat sat on the mat\" three times.<|im_end|>\n"
                          "<|im_start|>assistant\nthe cat sat on the mat\nthe cat";
#define COPY_IDX (N_PROMPTS + 1)

typedef struct run_out {
    int32_t ids[N_CTX];
    ls_gen_stats stats;
    ls_status st;
    char msg[1024];
} run_out;

typedef struct world {
    MPI_Comm comm;
    int size;
    ls_model *m;
    ls_ctx *ctx;
    ls_kv *kv;
    int32_t prompts[N_PROMPTS + 2][128];
    int np[N_PROMPTS + 2];
} world;

static ls_gen_params params(ls_strategy s, int E, int k, int n, bool ignore_eog) {
    ls_gen_params gp = {.n_predict = n, .ignore_eog = ignore_eog, .strategy = s, .exit_layer = E,
                        .num_speculations = k};
    ls_sampling_default(&gp.sampling);
    return gp;
}

static void single(world *w, int i, const ls_gen_params *gp, ls_token_cb cb, void *user, run_out *o) {
    ls_err err = {{0}};
    o->st = ls_generate(w->ctx, w->kv, w->prompts[i], w->np[i], gp, o->ids, cb, user, &o->stats, &err);
    snprintf(o->msg, sizeof o->msg, "%s", err.msg);
}

static void piped(lsw_pipeline *pl, world *w, int i, const ls_gen_params *gp, ls_token_cb cb, void *user,
                  run_out *o) {
    ls_err err = {{0}};
    o->st = lsw_generate(pl, 0, w->prompts[i], w->np[i], gp, o->ids, cb, user, &o->stats, &err);
    snprintf(o->msg, sizeof o->msg, "%s", err.msg);
    if (o->st != LS_OK) fprintf(stderr, "  lsw_generate failed: %s\n", err.msg);
}

static bool same(const char *what, const run_out *a, const run_out *b) {
    int first = -1;
    for (int i = 0; i < a->stats.n_generated && i < b->stats.n_generated; i++)
        if (a->ids[i] != b->ids[i]) { first = i; break; }
    bool ok = a->st == LS_OK && b->st == LS_OK && first < 0 && a->stats.n_generated == b->stats.n_generated &&
              a->stats.finish == b->stats.finish;
    if (!ok)
        fprintf(stderr, "  %s: differs (status %d/%d, first diff at %d, %d vs %d tokens, finish %s vs %s)\n", what,
                a->st, b->st, first, a->stats.n_generated, b->stats.n_generated, ls_finish_name(a->stats.finish),
                ls_finish_name(b->stats.finish));
    return ok;
}

typedef struct stop_after { int n, seen; } stop_after;
static bool stop_cb(void *user, int32_t t) {
    (void)t;
    stop_after *s = user;
    return ++s->seen < s->n;
}

static lsw_options popts(const char *stages) {
    lsw_options o;
    lsw_options_default(&o);
    o.model_path = tu_default_model();
    o.stages = stages;
    o.n_ctx = N_CTX;
    o.max_batch = 32;
    o.timeout_s = 60; /* generous: the machine is shared and ASan is slow */
    return o;
}

/* drafted/accepted per source and rounds per k add up, and only the
 * sources the request allows drafted */
static bool stats_add_up(const ls_gen_stats *s, ls_draft_source src, bool block, int k) {
    int64_t d = 0, a = 0, r = 0;
    for (int i = 0; i < LS_N_DRAFT_SOURCES; i++) {
        d += s->drafted_by[i];
        a += s->accepted_by[i];
    }
    for (int i = 0; i <= LS_MAX_SPECULATIONS; i++) {
        r += s->rounds_by_k[i];
        if (i > k && s->rounds_by_k[i]) return false;
    }
    const bool may[LS_N_DRAFT_SOURCES] = {
        [LS_DRAFT_EXIT] = src == LS_DRAFT_EXIT || (src == LS_DRAFT_AUTO && !block),
        [LS_DRAFT_ADAPTER] = src == LS_DRAFT_ADAPTER || (src == LS_DRAFT_AUTO && block),
        [LS_DRAFT_LOOKUP] = src == LS_DRAFT_LOOKUP || src == LS_DRAFT_AUTO,
    };
    for (int i = 0; i < LS_N_DRAFT_SOURCES; i++)
        if (!may[i] && s->drafted_by[i]) return false;
    return d == s->drafted && a == s->accepted && r == s->rounds && s->accepted <= s->drafted;
}

/* the draft sources through the pipeline: a random adapter written for exit
 * layer E (its block after layer E, an 8000-entry table) */
static void check_sources(world *w, lsw_pipeline *pl, int E, const char *stages) {
    char name[96];
    snprintf(name, sizeof name, "pipeline_adapter_e%d_%d.gguf", E, (int)getpid());
    const char *path = tu_tmp_path(name);
    const ra_spec as = {.exit_layer = E, .ffn_dim = 256, .dtype = LS_TYPE_F16, .seed = 900 + (uint64_t)E,
                        .n_table = 8000};
    REQUIRE(ra_write_for_model(w->m, &as, path));
    ls_adapter *ad = NULL;
    ls_err err = {{0}};
    ls_status st = ls_adapter_load(path, w->m, &ad, &err);
    remove(path); /* the adapter keeps its mapping */
    if (st != LS_OK) fprintf(stderr, "  adapter: %s\n", err.msg);
    REQUIRE(st == LS_OK);
    static const struct { ls_draft_source src; bool adapter; int dv, k; bool auto_k; int prompt; bool light; } cases[] = {
        {LS_DRAFT_LOOKUP, false, 0, 4, false, COPY_IDX, true},
        {LS_DRAFT_ADAPTER, true, 2000, 4, false, COPY_IDX, true},
        {LS_DRAFT_AUTO, true, 0, 4, false, COPY_IDX, true},
        {LS_DRAFT_AUTO, true, 1000, 8, true, COPY_IDX, true},
        {LS_DRAFT_ADAPTER, true, 0, 3, false, 0, false},
        {LS_DRAFT_AUTO, false, 0, 4, true, 2, false},
        {LS_DRAFT_LOOKUP, true, 4000, 2, true, 1, false},
        {LS_DRAFT_EXIT, true, 500, 3, false, 0, false},
        {LS_DRAFT_AUTO, true, 8000, 2, false, N_PROMPTS, false}, /* the chat prompt, EOS honoured */
    };
    static run_out a, b;
    char what[160];
    /* every case on 2 ranks at E = 8, the light subset on the other splits */
    const bool all = !LIGHT && w->size == 2 && E == 8;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        if (!all && !cases[c].light) continue;
        const int pi = cases[c].prompt;
        const bool eog = pi == N_PROMPTS;
        ls_gen_params ar = params(LS_STRATEGY_AUTOREGRESSIVE, 0, 0, N_GEN_SRC, !eog);
        single(w, pi, &ar, NULL, NULL, &a);
        REQUIRE(a.st == LS_OK);
        ls_gen_params sp = params(LS_STRATEGY_SELF_SPECULATIVE, E, cases[c].k, N_GEN_SRC, !eog);
        sp.draft_source = cases[c].src;
        sp.adapter = cases[c].adapter ? ad : NULL;
        sp.draft_vocab = cases[c].dv;
        sp.auto_speculations = cases[c].auto_k;
        piped(pl, w, pi, &sp, NULL, NULL, &b);
        snprintf(what, sizeof what, "%s prompt %d source %s%s dv %d k=%d%s", stages, pi,
                 ls_draft_source_name(cases[c].src), cases[c].adapter ? "+adapter" : "", cases[c].dv, cases[c].k,
                 cases[c].auto_k ? " auto" : "");
        CHECK(same(what, &a, &b));
        const ls_gen_stats *g = &b.stats;
        const bool add_up = stats_add_up(g, cases[c].src, cases[c].adapter, cases[c].k);
        CHECK(add_up);
        fprintf(stderr, "   %s: accepted/drafted exit %lld/%lld adapter %lld/%lld lookup %lld/%lld, %lld rounds%s\n",
                what, (long long)g->accepted_by[LS_DRAFT_EXIT], (long long)g->drafted_by[LS_DRAFT_EXIT],
                (long long)g->accepted_by[LS_DRAFT_ADAPTER], (long long)g->drafted_by[LS_DRAFT_ADAPTER],
                (long long)g->accepted_by[LS_DRAFT_LOOKUP], (long long)g->drafted_by[LS_DRAFT_LOOKUP],
                (long long)g->rounds, add_up ? "" : " (statistics do not add up)");
        /* the copy prompt with fixed k: lookup drafts and is accepted; auto
         * with the adapter also drafts from the adapter */
        if (pi == COPY_IDX && !cases[c].auto_k && cases[c].src != LS_DRAFT_ADAPTER)
            CHECK(g->drafted_by[LS_DRAFT_LOOKUP] > 0 && g->accepted_by[LS_DRAFT_LOOKUP] > 0);
        if (pi == COPY_IDX && !cases[c].auto_k && cases[c].src != LS_DRAFT_LOOKUP && cases[c].adapter)
            CHECK(g->drafted_by[LS_DRAFT_ADAPTER] > 0);
    }
    ls_adapter_free(ad);
}

static void check_split(world *w, const char *stages) {
    fprintf(stderr, "   split %s on %d ranks\n", stages, w->size);
    lsw_options o = popts(stages);
    o.model = w->m;
    lsw_pipeline *pl = NULL;
    ls_err err = {{0}};
    ls_status st = lsw_pipeline_create(w->comm, &o, &pl, &err);
    if (st != LS_OK) fprintf(stderr, "  create: %s\n", err.msg);
    REQUIRE(st == LS_OK);
    const int E = lsw_layout_exit_layer(lsw_pipeline_layout(pl));
    static run_out a, b;
    char what[128];
    for (int i = 0; i <= N_PROMPTS; i++) {
        const bool chat = i == N_PROMPTS; /* EOS honoured */
        if (LIGHT && i > 0 && !chat) continue;
        ls_gen_params ar = params(LS_STRATEGY_AUTOREGRESSIVE, 0, 0, N_GEN, !chat);
        single(w, i, &ar, NULL, NULL, &a);
        REQUIRE(a.st == LS_OK);
        if (chat) CHECK_EQ_INT(a.stats.finish, LS_FINISH_EOG);
        piped(pl, w, i, &ar, NULL, NULL, &b);
        snprintf(what, sizeof what, "%s prompt %d autoregressive", stages, i);
        CHECK(same(what, &a, &b));
        for (int k = LIGHT ? 4 : 2; k <= 4; k += 2) {
            ls_gen_params sp = params(LS_STRATEGY_SELF_SPECULATIVE, E, k, N_GEN, !chat);
            if (chat && k == 4) sp.draft_min_p = 0.3f;
            piped(pl, w, i, &sp, NULL, NULL, &b);
            snprintf(what, sizeof what, "%s prompt %d self_speculative k=%d", stages, i, k);
            CHECK(same(what, &a, &b));
            CHECK(b.stats.rounds > 0);
            CHECK(b.stats.accepted <= b.stats.drafted);
            fprintf(stderr, "   %s: drafted %lld accepted %lld rounds %lld\n", what, (long long)b.stats.drafted,
                    (long long)b.stats.accepted, (long long)b.stats.rounds);
        }
    }
    /* early exit runs on rank 0 alone: same as the engine's */
    ls_gen_params ee = params(LS_STRATEGY_EARLY_EXIT, E, 0, N_GEN, true);
    single(w, 0, &ee, NULL, NULL, &a);
    piped(pl, w, 0, &ee, NULL, NULL, &b);
    CHECK(same("early_exit", &a, &b));
    /* short runs, a stopping callback */
    for (int n = 0; n <= 2; n++) {
        ls_gen_params ar = params(LS_STRATEGY_AUTOREGRESSIVE, 0, 0, n, true);
        ls_gen_params sp = params(LS_STRATEGY_SELF_SPECULATIVE, E, 3, n, true);
        single(w, 1, &ar, NULL, NULL, &a);
        piped(pl, w, 1, &ar, NULL, NULL, &b);
        snprintf(what, sizeof what, "n_predict %d autoregressive", n);
        CHECK(same(what, &a, &b));
        piped(pl, w, 1, &sp, NULL, NULL, &b);
        snprintf(what, sizeof what, "n_predict %d self_speculative", n);
        CHECK(same(what, &a, &b));
    }
    {
        stop_after s1 = {5, 0}, s2 = {5, 0};
        ls_gen_params ar = params(LS_STRATEGY_AUTOREGRESSIVE, 0, 0, N_GEN, true);
        ls_gen_params sp = params(LS_STRATEGY_SELF_SPECULATIVE, E, 4, N_GEN, true);
        single(w, 2, &ar, stop_cb, &s1, &a);
        piped(pl, w, 2, &sp, stop_cb, &s2, &b);
        CHECK(same("stopping callback", &a, &b));
        CHECK_EQ_INT(b.stats.finish, LS_FINISH_STOPPED);
        CHECK_EQ_INT(b.stats.n_generated, 5);
    }
    /* sampled self-speculation: valid tokens, right count (the draws are
     * not ls_generate's: drafting and verifying use separate streams) */
    {
        ls_gen_params sp = params(LS_STRATEGY_SELF_SPECULATIVE, E, 3, N_GEN, true);
        sp.sampling.temperature = 0.8f;
        sp.sampling.top_p = 0.95f;
        sp.sampling.seed = 7;
        piped(pl, w, 0, &sp, NULL, NULL, &b);
        CHECK_EQ_INT(b.st, LS_OK);
        CHECK_EQ_INT(b.stats.n_generated, N_GEN);
        for (int i = 0; i < b.stats.n_generated; i++)
            CHECK(b.ids[i] >= 0 && b.ids[i] < ls_model_config(w->m)->n_vocab);
    }
    /* sampled autoregressive decoding draws from the same stream as
     * ls_generate (the last stage seeds it with the request's seed) */
    {
        ls_gen_params ar = params(LS_STRATEGY_AUTOREGRESSIVE, 0, 0, N_GEN, true);
        ar.sampling.temperature = 0.8f;
        ar.sampling.top_k = 40;
        ar.sampling.repeat_penalty = 1.1f;
        ar.sampling.repeat_last_n = 64;
        ar.sampling.seed = 11;
        single(w, 1, &ar, NULL, NULL, &a);
        piped(pl, w, 1, &ar, NULL, NULL, &b);
        CHECK(same("sampled autoregressive", &a, &b));
    }
    check_sources(w, pl, E, stages);
    /* request errors name the field */
    {
        ls_gen_params sp = params(LS_STRATEGY_SELF_SPECULATIVE, E + 1, 2, 4, true);
        piped(pl, w, 0, &sp, NULL, NULL, &b);
        CHECK_EQ_INT(b.st, LS_ERR_INVALID);
        CHECK(strstr(b.msg, "differs from the pipeline's drafter stage") != NULL);
        int32_t bad_tok = 1 << 30;
        ls_gen_stats gs;
        ls_gen_params ar = params(LS_STRATEGY_AUTOREGRESSIVE, 0, 0, 4, true);
        CHECK_EQ_INT(lsw_generate(pl, 0, &bad_tok, 1, &ar, b.ids, NULL, NULL, &gs, &err), LS_ERR_INVALID);
        CHECK(strstr(err.msg, "not in the vocabulary") != NULL);
        CHECK_EQ_INT(lsw_generate(pl, 3, w->prompts[0], w->np[0], &ar, b.ids, NULL, NULL, &gs, &err), LS_ERR_INVALID);
        CHECK(strstr(err.msg, "slot 3") != NULL);
        CHECK(!lsw_pipeline_broken(pl, NULL));
    }
    lsw_pipeline_free(pl);

    /* a full context: generation ends at the same token with finish "context" */
    o.n_ctx = w->np[0] + 7;
    REQUIRE(lsw_pipeline_create(w->comm, &o, &pl, &err) == LS_OK);
    ls_kv *small;
    REQUIRE(ls_kv_create(w->m, 0, ls_model_config(w->m)->n_layers, o.n_ctx, &small, &err) == LS_OK);
    ls_gen_params ar = params(LS_STRATEGY_AUTOREGRESSIVE, 0, 0, N_GEN, true);
    a.st = ls_generate(w->ctx, small, w->prompts[0], w->np[0], &ar, a.ids, NULL, NULL, &a.stats, &err);
    CHECK_EQ_INT(a.stats.finish, LS_FINISH_CONTEXT);
    piped(pl, w, 0, &ar, NULL, NULL, &b);
    CHECK(same("full context autoregressive", &a, &b));
    ls_gen_params sp = params(LS_STRATEGY_SELF_SPECULATIVE, E, 4, N_GEN, true);
    piped(pl, w, 0, &sp, NULL, NULL, &b);
    CHECK(same("full context self_speculative", &a, &b));
    ls_kv_free(small);
    lsw_pipeline_free(pl);
}

/* ---- sampled self-speculation through the pipeline, chi-square ---- */

#define SV 16                     /* the tiny vocabulary */
/* also under ASan (about 35 s there): with 2000 the joint test of the first
 * two tokens (df ~130) has too few samples per cell and failed by chance
 * (p = 0.005 on one timing-dependent run) */
#define N_PIPE_SAMPLES 4000

typedef struct tiny_world {
    ls_model *m;
    ls_ctx *ctx;
    ls_kv *kv;
} tiny_world;

/* warped next-token distribution (dense) after tokens[0..n), full model */
static void tiny_next_dist(tiny_world *t, const int32_t *tokens, int n, const ls_sampling *s, double *out) {
    const ls_config *c = ls_model_config(t->m);
    float *h = malloc(sizeof(float) * (size_t)n * c->dim), logits[SV];
    ls_err err = {{0}};
    ls_kv_truncate(t->kv, 0, c->n_layers, 0);
    bool ok = ls_embed(t->ctx, tokens, n, h, &err) == LS_OK &&
              ls_forward(t->ctx, t->kv, 0, c->n_layers, 0, n, h, &err) == LS_OK &&
              ls_exit_head(t->ctx, h + (size_t)(n - 1) * c->dim, 1, logits, &err) == LS_OK;
    if (!ok) fprintf(stderr, "  tiny_next_dist: %s\n", err.msg);
    CHECK(ok);
    ls_dist d;
    ls_dist_init(&d, SV);
    ls_sampler_probs(s, logits, SV, tokens, n, &d);
    for (int i = 0; i < SV; i++) out[i] = 0;
    for (int i = 0; i < d.n; i++) out[d.ids[i]] = d.p[i];
    ls_dist_free(&d);
    free(h);
}

/* the adapter's first draft distribution after prompt, from a drafter */
static void tiny_adapter_dist(tiny_world *t, const ls_adapter *a, const int32_t *prompt, int np, const ls_sampling *s,
                              double *out) {
    const ls_config *c = ls_model_config(t->m);
    ls_gen_params gp = {.n_predict = 2, .sampling = *s, .ignore_eog = true, .strategy = LS_STRATEGY_SELF_SPECULATIVE,
                        .exit_layer = 1, .num_speculations = 1, .draft_source = LS_DRAFT_ADAPTER, .adapter = a};
    ls_drafter *d = NULL;
    ls_err err = {{0}};
    float *h = malloc(sizeof(float) * 16 * (size_t)c->dim);
    int32_t hist[32];
    memcpy(hist, prompt, sizeof(int32_t) * (size_t)np);
    ls_draft_chunk *ch = calloc(1, sizeof *ch);
    ls_rng rng;
    ls_rng_seed(&rng, 1);
    ls_kv_truncate(t->kv, 0, c->n_layers, 0);
    bool ok = ls_drafter_create(t->ctx, t->kv, &gp, 32, &d, &err) == LS_OK &&
              ls_embed(t->ctx, prompt, np - 1, h, &err) == LS_OK &&
              ls_forward(t->ctx, t->kv, 0, 1, 0, np - 1, h, &err) == LS_OK &&
              ls_drafter_feed(d, 0, np - 1, h, &err) == LS_OK &&
              ls_drafter_draft(d, &rng, np - 1, prompt[np - 1], 1, false, hist, h, ch, &err) == LS_OK;
    if (!ok) fprintf(stderr, "  tiny_adapter_dist: %s\n", err.msg);
    CHECK(ok && ch->m == 1);
    for (int i = 0; i < SV; i++) out[i] = 0;
    for (int i = 0; ok && i < ch->q_n[0]; i++) out[ch->q_ids[0][i]] = ch->q_p[0][i];
    ls_drafter_free(d);
    free(ch);
    free(h);
}

/* N sampled requests of 3 tokens (k 4) through the pipeline: first-token
 * counts against the full model's and the draft's distributions, the first
 * two tokens' against the full model's joint */
static void pipe_chi2(tiny_world *t, lsw_pipeline *pl, const char *label, const ls_sampling *s, ls_draft_source src,
                      const ls_adapter *a, const int32_t *prompt, int np, const double *p_draft) {
    double p_full[SV], tv = 0;
    static double joint[SV * SV];
    tiny_next_dist(t, prompt, np, s, p_full);
    for (int i = 0; i < SV; i++) tv += fabs(p_full[i] - p_draft[i]) / 2;
    for (int t1 = 0; t1 < SV; t1++) {
        double cond[SV];
        int32_t seq[32];
        memcpy(seq, prompt, sizeof(int32_t) * (size_t)np);
        seq[np] = t1;
        if (p_full[t1] > 0) tiny_next_dist(t, seq, np + 1, s, cond);
        for (int t2 = 0; t2 < SV; t2++) joint[t1 * SV + t2] = p_full[t1] > 0 ? p_full[t1] * cond[t2] : 0;
    }
    static long c1[SV], c12[SV * SV];
    memset(c1, 0, sizeof c1);
    memset(c12, 0, sizeof c12);
    int64_t drafted = 0, accepted = 0, other = 0;
    int runs_drafted = 0;
    const double t0 = ls_time_ms();
    for (int i = 0; i < N_PIPE_SAMPLES; i++) {
        ls_gen_params gp = {.n_predict = 3, .sampling = *s, .ignore_eog = true,
                            .strategy = LS_STRATEGY_SELF_SPECULATIVE, .exit_layer = 1, .num_speculations = 4,
                            .draft_source = src, .adapter = a};
        gp.sampling.seed = 0x5eed0000ull + (uint64_t)i;
        int32_t out[3];
        ls_gen_stats st;
        ls_err err = {{0}};
        ls_status rc = lsw_generate(pl, 0, prompt, np, &gp, out, NULL, NULL, &st, &err);
        if (rc != LS_OK) fprintf(stderr, "  lsw_generate: %s\n", err.msg);
        REQUIRE(rc == LS_OK && st.n_generated == 3);
        REQUIRE(out[0] >= 0 && out[0] < SV && out[1] >= 0 && out[1] < SV);
        c1[out[0]]++;
        c12[out[0] * SV + out[1]]++;
        drafted += st.drafted;
        accepted += st.accepted;
        other += st.drafted - st.drafted_by[src];
        runs_drafted += st.drafted_by[src] > 0;
    }
    int df_full, df_draft, df_joint;
    const double pv_full = chi2_pvalue(c1, p_full, SV, N_PIPE_SAMPLES, &df_full);
    const double pv_draft = chi2_pvalue(c1, p_draft, SV, N_PIPE_SAMPLES, &df_draft);
    const double pv_joint = chi2_pvalue(c12, joint, SV * SV, N_PIPE_SAMPLES, &df_joint);
    fprintf(stderr, "   [%s] %d pipeline samples in %.1f s, acceptance %.3f, TV(full, draft) %.3f, %s drafted in %d "
            "runs\n", label, N_PIPE_SAMPLES, (ls_time_ms() - t0) / 1e3, drafted ? (double)accepted / drafted : 0.0, tv,
            ls_draft_source_name(src), runs_drafted);
    fprintf(stderr, "     first token vs full: p = %.4f (df %d); vs draft: p = %.3g (df %d); first two vs full: "
            "p = %.4f (df %d)\n", pv_full, df_full, pv_draft, df_draft, pv_joint, df_joint);
    CHECK(pv_full > 0.01);
    CHECK(pv_draft < 0.01);
    CHECK(pv_joint > 0.01);
    CHECK(accepted > 0 && accepted < drafted);
    CHECK_EQ_INT(other, 0);
    CHECK(runs_drafted >= N_PIPE_SAMPLES * 9 / 10);
}

static void check_sampling(world *w) {
    char vname[96], mname[96];
    snprintf(vname, sizeof vname, "pipeline_tiny_vocab_%d.gguf", (int)getpid());
    snprintf(mname, sizeof mname, "pipeline_tiny_model_%d.gguf", (int)getpid());
    char vpath[4096], mpath[4096];
    snprintf(vpath, sizeof vpath, "%s", tu_tmp_path(vname));
    snprintf(mpath, sizeof mpath, "%s", tu_tmp_path(mname));
    REQUIRE(tv_write_vocab(vpath, SV));
    /* the model of test_spec_sampling */
    rm_spec spec = {.n_layers = 4, .dim = 64, .n_heads = 4, .n_kv_heads = 2, .ffn_dim = 128, .rope_theta = 10000,
                    .norm_eps = 1e-5f, .dtype = LS_TYPE_F32, .vocab_gguf = vpath, .seed = 21, .n_shards = 1};
    rm_model *rm = rm_model_create(&spec);
    REQUIRE(rm && rm_write_gguf(rm, mpath));
    rm_model_free(rm);
    tiny_world t = {0};
    ls_err err = {{0}};
    REQUIRE(ls_model_load(mpath, &t.m, &err) == LS_OK);
    REQUIRE(ls_ctx_create(t.m, 1, 16, &t.ctx, &err) == LS_OK);
    REQUIRE(ls_kv_create(t.m, 0, 4, 32, &t.kv, &err) == LS_OK);
    const ra_spec as = {.exit_layer = 1, .ffn_dim = 64, .dtype = LS_TYPE_F32, .seed = 61, .scale = 2};
    char aname[96], apath[4096];
    snprintf(aname, sizeof aname, "pipeline_tiny_adapter_%d.gguf", (int)getpid());
    snprintf(apath, sizeof apath, "%s", tu_tmp_path(aname));
    REQUIRE(ra_write_for_model(t.m, &as, apath));
    ls_adapter *ad = NULL;
    REQUIRE(ls_adapter_load(apath, t.m, &ad, &err) == LS_OK);

    lsw_options o;
    lsw_options_default(&o);
    o.model_path = mpath;
    o.model = t.m;
    o.stages = w->size == 2 ? "0-1,1-4" : "0-1,1-2,2-4";
    o.n_ctx = 32;
    o.max_batch = 8;
    o.timeout_s = 60;
    lsw_pipeline *pl = NULL;
    ls_status st = lsw_pipeline_create(w->comm, &o, &pl, &err);
    if (st != LS_OK) fprintf(stderr, "  create: %s\n", err.msg);
    REQUIRE(st == LS_OK);
    fprintf(stderr, "   stages %s\n", o.stages);

    ls_sampling plain, warped;
    ls_sampling_default(&plain);
    plain.temperature = 1.0f;
    warped = plain;
    warped.temperature = 0.7f;
    warped.top_k = 8;
    warped.top_p = 0.9f;
    warped.repeat_penalty = 1.3f;

    /* adapter drafts */
    static const int32_t prompt[] = {1, 7, 4, 12, 9};
    double q[SV];
    tiny_adapter_dist(&t, ad, prompt, 5, &plain, q);
    pipe_chi2(&t, pl, "adapter, temperature 1", &plain, LS_DRAFT_ADAPTER, ad, prompt, 5, q);
    tiny_adapter_dist(&t, ad, prompt, 5, &warped, q);
    pipe_chi2(&t, pl, "adapter, temperature 0.7, top-k 8, top-p 0.9, penalty 1.3", &warped, LS_DRAFT_ADAPTER, ad,
              prompt, 5, q);

    /* lookup drafts: 1 7 4 X 9 7 4 ends in "7 4", so lookup proposes X (a
     * point mass); X the full model's likeliest token there */
    int32_t lp[] = {1, 7, 4, -1, 9, 7, 4};
    double best = -1, p[SV];
    int32_t x = -1;
    for (int32_t cand = 3; cand < SV; cand++) {
        lp[3] = cand;
        tiny_next_dist(&t, lp, 7, &warped, p);
        if (p[cand] > best) {
            best = p[cand];
            x = cand;
        }
    }
    lp[3] = x;
    for (int i = 0; i < SV; i++) q[i] = i == x;
    pipe_chi2(&t, pl, "lookup, temperature 1", &plain, LS_DRAFT_LOOKUP, NULL, lp, 7, q);
    pipe_chi2(&t, pl, "lookup, temperature 0.7, top-k 8, top-p 0.9, penalty 1.3", &warped, LS_DRAFT_LOOKUP, NULL, lp,
              7, q);
    CHECK(!lsw_pipeline_broken(pl, NULL));
    lsw_pipeline_free(pl);
    ls_adapter_free(ad);
    ls_kv_free(t.kv);
    ls_ctx_free(t.ctx);
    ls_model_free(t.m);
    remove(apath);
    remove(mpath);
    remove(vpath);
}

static void expect_create_error(world *w, lsw_options *o, const char *text) {
    lsw_pipeline *pl = NULL;
    ls_err err = {{0}};
    ls_status st = lsw_pipeline_create(w->comm, o, &pl, &err);
    CHECK(st != LS_OK);
    CHECK(pl == NULL);
    if (!strstr(err.msg, text)) {
        fprintf(stderr, "  expected an error containing \"%s\", got: %s\n", text, err.msg);
        CHECK(false);
    } else {
        fprintf(stderr, "   refused as expected: %s\n", err.msg);
    }
    if (pl) lsw_pipeline_free(pl);
}

static void check_layouts(world *w) {
    /* run with 3 ranks: three ranges each */
    lsw_options o = popts("0-8,9-20,20-30");
    o.model = w->m;
    expect_create_error(w, &o, "ranges must be contiguous");
    o.stages = "0-8,8-20,20-25";
    expect_create_error(w, &o, "must cover [0, 30)");
    o.stages = "0-8,8-20";
    expect_create_error(w, &o, "2 stages but 3 MPI ranks");
    o.stages = "0-8,8-20,20-30,30-30";
    expect_create_error(w, &o, "4 stages but");
    o.stages = "0-8;8-20,20-30";
    expect_create_error(w, &o, "separated by commas");
    o.stages = "2-8,8-20,20-30";
    expect_create_error(w, &o, "must start at layer 0");
    o.stages = "0-8,8-20,20-31";
    expect_create_error(w, &o, "past the model's 30 layers");
    o.stages = "0-8,8-20,20-30";
    o.exit_layer = 4;
    expect_create_error(w, &o, "stage 0 ends at layer 8 but the exit layer is 4");
    o.stages = NULL;
    o.exit_layer = 0;
    expect_create_error(w, &o, "no pipeline layout");
    o.exit_layer = 30;
    expect_create_error(w, &o, "exit layer 30 is out of range [1, 29]");
    o.exit_layer = 8;
    o.max_inflight = 0;
    expect_create_error(w, &o, "max_inflight 0");
    o.max_inflight = 4;
    o.model = NULL;
    o.model_path = "/nonexistent/model.gguf";
    expect_create_error(w, &o, "/nonexistent/model.gguf");
    /* after all that the workers still serve a good pipeline */
    o = popts(NULL);
    o.model = w->m;
    o.exit_layer = 8;
    lsw_pipeline *pl = NULL;
    ls_err err = {{0}};
    REQUIRE(lsw_pipeline_create(w->comm, &o, &pl, &err) == LS_OK);
    const lsw_layout *lo = lsw_pipeline_layout(pl);
    CHECK_EQ_INT(lo->n_stages, w->size);
    CHECK_EQ_INT(lo->l1[0], 8);
    CHECK_EQ_INT(lo->l1[lo->n_stages - 1], 30);
    static run_out a, b;
    ls_gen_params ar = params(LS_STRATEGY_AUTOREGRESSIVE, 0, 0, 6, true);
    single(w, 0, &ar, NULL, NULL, &a);
    piped(pl, w, 0, &ar, NULL, NULL, &b);
    CHECK(same("after refused layouts", &a, &b));
    lsw_pipeline_free(pl);
}

typedef struct span { char name[16]; int64_t t0, t1; } span;

static int read_spans(const char *path, span *out, int cap) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char line[512];
    int n = 0;
    while (n < cap && fgets(line, sizeof line, f)) {
        char *p = strstr(line, "\"span\":\""), *q = strstr(line, "\"t0\":"), *r = strstr(line, "\"t1\":");
        if (!p || !q || !r) continue;
        p += 8;
        size_t len = strcspn(p, "\"");
        if (len >= sizeof out[n].name) len = sizeof out[n].name - 1;
        memcpy(out[n].name, p, len);
        out[n].name[len] = '\0';
        out[n].t0 = strtoll(q + 5, NULL, 10);
        out[n].t1 = strtoll(r + 5, NULL, 10);
        n++;
    }
    fclose(f);
    return n;
}

static void check_trace(world *w, const char *prefix) {
    lsw_options o = popts("0-8,8-30");
    o.model = w->m;
    o.trace_prefix = prefix;
    lsw_pipeline *pl = NULL;
    ls_err err = {{0}};
    REQUIRE(lsw_pipeline_create(w->comm, &o, &pl, &err) == LS_OK);
    static run_out a, b;
    ls_gen_params ar = params(LS_STRATEGY_AUTOREGRESSIVE, 0, 0, 48, true);
    ls_gen_params sp = params(LS_STRATEGY_SELF_SPECULATIVE, 8, 4, 48, true);
    single(w, 2, &ar, NULL, NULL, &a);
    piped(pl, w, 2, &sp, NULL, NULL, &b);
    CHECK(same("traced self_speculative", &a, &b));
    lsw_pipeline_free(pl); /* closes the trace files on every rank */
    static span s0[4096], s1[4096];
    char p0[600], p1[600];
    snprintf(p0, sizeof p0, "%s.rank0.jsonl", prefix);
    snprintf(p1, sizeof p1, "%s.rank1.jsonl", prefix);
    int n0 = read_spans(p0, s0, 4096), n1 = read_spans(p1, s1, 4096);
    CHECK(n0 > 0);
    CHECK(n1 > 0);
    int drafts = 0, verifies = 0, overlaps = 0;
    for (int i = 0; i < n0; i++) drafts += strcmp(s0[i].name, "draft") == 0;
    for (int j = 0; j < n1; j++) verifies += strcmp(s1[j].name, "verify") == 0;
    for (int i = 0; i < n0; i++) {
        if (strcmp(s0[i].name, "draft") != 0) continue;
        for (int j = 0; j < n1; j++) {
            if (strcmp(s1[j].name, "verify") != 0) continue;
            int64_t lo = s0[i].t0 > s1[j].t0 ? s0[i].t0 : s1[j].t0, hi = s0[i].t1 < s1[j].t1 ? s0[i].t1 : s1[j].t1;
            if (lo < hi) overlaps++;
        }
    }
    fprintf(stderr, "   trace: %d draft spans on rank 0, %d verify spans on rank 1, %d overlapping pairs\n", drafts,
            verifies, overlaps);
    CHECK(drafts > 0);
    CHECK(verifies > 0);
    CHECK(overlaps > 0);
}

static void check_hang(world *w) {
    lsw_options o = popts("0-8,8-30");
    o.model = w->m;
    o.timeout_s = 2;
    lsw_pipeline *pl = NULL;
    ls_err err = {{0}};
    REQUIRE(lsw_pipeline_create(w->comm, &o, &pl, &err) == LS_OK);
    const int pid = lsw_pipeline_worker_pid(pl, 1);
    REQUIRE(pid > 0);
    REQUIRE(kill(pid, SIGSTOP) == 0);
    static run_out b;
    ls_gen_params ar = params(LS_STRATEGY_AUTOREGRESSIVE, 0, 0, 8, true);
    double t0 = ls_time_ms();
    piped(pl, w, 0, &ar, NULL, NULL, &b);
    double ms = ls_time_ms() - t0;
    fprintf(stderr, "   stopped stage: failed after %.0f ms: %s\n", ms, b.msg);
    CHECK_EQ_INT(b.st, LS_ERR_IO);
    CHECK(strstr(b.msg, "stage 1 (rank 1, layers 8-30)") != NULL);
    CHECK(strstr(b.msg, "within 2 s") != NULL);
    CHECK(ms >= 1900 && ms < 8000);
    const char *why = NULL;
    CHECK(lsw_pipeline_broken(pl, &why));
    t0 = ls_time_ms();
    piped(pl, w, 0, &ar, NULL, NULL, &b);
    CHECK_EQ_INT(b.st, LS_ERR_IO);
    CHECK(strstr(b.msg, "broken") != NULL);
    CHECK(ls_time_ms() - t0 < 100);
    kill(pid, SIGCONT);
    lsw_pipeline_free(pl);
}

static void expect_setup_error(world *w, const char *text) {
    lsw_options o = popts("0-8,8-30");
    o.model = w->m;
    o.timeout_s = 30;
    expect_create_error(w, &o, text);
}

/* ---- several requests in flight on their own slots */
typedef struct conc_job {
    lsw_pipeline *pl;
    world *w;
    int slot, prompt;
    ls_gen_params gp;
    run_out out;
} conc_job;

static void *conc_main(void *arg) {
    conc_job *j = arg;
    ls_err err = {{0}};
    j->out.st = lsw_generate(j->pl, j->slot, j->w->prompts[j->prompt], j->w->np[j->prompt], &j->gp, j->out.ids,
                             NULL, NULL, &j->out.stats, &err);
    snprintf(j->out.msg, sizeof j->out.msg, "%s", err.msg);
    if (j->out.st != LS_OK) fprintf(stderr, "  slot %d: %s\n", j->slot, err.msg);
    return NULL;
}

static void check_concurrent(world *w, int n) {
    REQUIRE(n >= 1 && n <= 16);
    lsw_options o = popts(w->size == 2 ? "0-8,8-30" : "0-8,8-20,20-30");
    o.model = w->m;
    o.max_slots = n;
    char prefix[256], last[300];
    snprintf(prefix, sizeof prefix, "%s/ls_conc_%d", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", (int)getpid());
    snprintf(last, sizeof last, "%s.rank%d.jsonl", prefix, w->size - 1);
    o.trace_prefix = prefix;
    lsw_pipeline *pl = NULL;
    ls_err err = {{0}};
    ls_status st = lsw_pipeline_create(w->comm, &o, &pl, &err);
    if (st != LS_OK) fprintf(stderr, "  create: %s\n", err.msg);
    REQUIRE(st == LS_OK);
    static conc_job jobs[16];
    static run_out ref[16];
    pthread_t th[16];
    for (int i = 0; i < n; i++) {
        conc_job *j = &jobs[i];
        j->pl = pl;
        j->w = w;
        j->slot = i;
        j->prompt = i % (N_PROMPTS + 1);
        static const ls_strategy strat[3] = {LS_STRATEGY_SELF_SPECULATIVE, LS_STRATEGY_AUTOREGRESSIVE,
                                             LS_STRATEGY_EARLY_EXIT};
        j->gp = params(strat[i % 3], 8, 2 + i % 3, N_GEN - 4 * (i % 3), j->prompt != N_PROMPTS);
        single(w, j->prompt, &j->gp, NULL, NULL, &ref[i]);
        REQUIRE(ref[i].st == LS_OK);
    }
    const double t0 = MPI_Wtime();
    for (int i = 0; i < n; i++) REQUIRE(pthread_create(&th[i], NULL, conc_main, &jobs[i]) == 0);
    /* the daemon's monitor does this while requests run */
    for (int i = 0; i < 5; i++) {
        CHECK(lsw_pipeline_check(pl, 0.05, &err) == LS_OK);
        struct timespec ts = {0, 50000000};
        nanosleep(&ts, NULL);
    }
    for (int i = 0; i < n; i++) pthread_join(th[i], NULL);
    fprintf(stderr, "   %d concurrent requests in %.2f s\n", n, MPI_Wtime() - t0);
    char what[96];
    for (int i = 0; i < n; i++) {
        snprintf(what, sizeof what, "slot %d (prompt %d, %s)", i, jobs[i].prompt,
                 ls_strategy_name(jobs[i].gp.strategy));
        CHECK(same(what, &ref[i], &jobs[i].out));
    }
    /* a slot is one request at a time; out-of-range slots are refused */
    ls_gen_params gp = params(LS_STRATEGY_AUTOREGRESSIVE, 0, 0, 2, true);
    st = lsw_generate(pl, n, w->prompts[0], w->np[0], &gp, jobs[0].out.ids, NULL, NULL, &jobs[0].out.stats, &err);
    CHECK(st != LS_OK && strstr(err.msg, "out of range") != NULL);
    CHECK(lsw_pipeline_check(pl, 0.0, &err) == LS_OK);
    lsw_pipeline_free(pl); /* closes the trace files on every rank */
    /* the last stage ran chunks of several slots in one forward pass: their
     * spans share the batch's start time */
    static span sp[16384];
    const int ns = read_spans(last, sp, 16384);
    int batched = 0, alone = 0;
    for (int i = 0; i < ns; i++) {
        if (strcmp(sp[i].name, "drop") == 0) continue;
        bool shared = false;
        for (int k = 0; k < ns && !shared; k++)
            shared = k != i && sp[k].t0 == sp[i].t0 && strcmp(sp[k].name, "drop") != 0;
        if (shared) batched++;
        else alone++;
    }
    fprintf(stderr, "   last stage: %d chunks ran in shared passes, %d alone\n", batched, alone);
    CHECK(batched > 0);
    for (int r = 0; r < w->size; r++) {
        char f[300];
        snprintf(f, sizeof f, "%s.rank%d.jsonl", prefix, r);
        remove(f);
    }
}

int main(int argc, char **argv) {
    int provided = 0;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_SERIALIZED, &provided);
    world w = {.comm = MPI_COMM_WORLD};
    int rank = 0;
    MPI_Comm_rank(w.comm, &rank);
    MPI_Comm_size(w.comm, &w.size);
    if (rank != 0) {
        ls_err err = {{0}};
        ls_status st = lsw_worker_run(w.comm, NULL, &err);
        if (st != LS_OK) fprintf(stderr, "rank %d: %s\n", rank, err.msg);
        MPI_Finalize();
        return st == LS_OK ? 0 : 1;
    }
    ls_err err = {{0}};
    if (ls_model_load(tu_default_model(), &w.m, &err) != LS_OK ||
        ls_ctx_create(w.m, 1, 32, &w.ctx, &err) != LS_OK ||
        ls_kv_create(w.m, 0, ls_model_config(w.m)->n_layers, N_CTX, &w.kv, &err) != LS_OK) {
        fprintf(stderr, "setup: %s\n", err.msg);
        MPI_Abort(w.comm, 1);
    }
    const ls_tokenizer *tok = ls_model_tokenizer(w.m);
    for (int i = 0; i <= COPY_IDX; i++) {
        const char *text = i < N_PROMPTS ? PROMPTS[i] : i == N_PROMPTS ? CHAT : COPY;
        w.np[i] = (int)ls_tokenize(tok, text, strlen(text), ls_tokenizer_add_bos(tok), true, w.prompts[i], 128);
        CHECK(w.np[i] > 0);
    }
#define CASE(name, call) do { int _f = tu_failures; fprintf(stderr, "-- %s\n", name); call; \
        fprintf(stderr, "   %s %s\n", name, tu_failures == _f ? "ok" : "FAILED"); } while (0)
    int modes = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const bool val = i + 1 < argc;
        modes++;
        if (strcmp(a, "--split") == 0 && val) {
            const char *s = argv[++i];
            CASE(s, check_split(&w, s));
        } else if (strcmp(a, "--layouts") == 0) {
            CASE("layouts", check_layouts(&w));
        } else if (strcmp(a, "--trace") == 0 && val) {
            const char *prefix = argv[++i];
            CASE("trace overlap", check_trace(&w, prefix));
        } else if (strcmp(a, "--concurrent") == 0 && val) {
            const int n = atoi(argv[++i]);
            CASE("concurrent requests", check_concurrent(&w, n));
        } else if (strcmp(a, "--sampling") == 0) {
            CASE("sampled self-speculation, chi-square", check_sampling(&w));
        } else if (strcmp(a, "--hang") == 0) {
            CASE("stopped stage", check_hang(&w));
        } else if (strcmp(a, "--expect-setup-error") == 0 && val) {
            const char *text = argv[++i];
            CASE("setup error", expect_setup_error(&w, text));
        } else {
            fprintf(stderr, "pipeline_check: unknown option or missing value: %s\n", a);
            tu_failures++;
        }
    }
    CHECK(modes > 0);
    if (lsw_shutdown_workers(w.comm, 60, &err) != LS_OK) {
        fprintf(stderr, "shutdown: %s\n", err.msg);
        tu_failures++;
    }
    ls_kv_free(w.kv);
    ls_ctx_free(w.ctx);
    ls_model_free(w.m);
    MPI_Finalize();
    TEST_MAIN_END();
}
