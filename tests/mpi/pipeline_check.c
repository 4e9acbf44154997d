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
 *        request errors.
 *   --layouts       bad layouts and options are refused with clear errors
 *   --trace PREFIX  a 2-rank run traced: drafting on rank 0 overlaps
 *                   verification on rank 1 in time
 *   --concurrent N  N requests at once on N slots (threads), autoregressive
 *                   and self_speculative mixed, while rank 0 pings the
 *                   stages: each equals its single-process ls_generate
 *   --hang          rank 1 is stopped (SIGSTOP): lsw_generate fails within
 *                   the timeout naming stage 1, later calls fail at once
 *   --expect-setup-error TEXT  pipeline creation fails with TEXT (workers
 *                   started with a different --stages or --model) */
#include "test_util.h"
#include "pipeline.h"
#include "layerskip/tokenizer.h"

#include <pthread.h>
#include <signal.h>
#include <time.h>

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

static const char *PROMPTS[] = {
    "The history of the Roman Empire begins with",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "The capital of France is Paris. The capital of Germany is",
};
#define N_PROMPTS ((int)(sizeof PROMPTS / sizeof PROMPTS[0]))
/* ends in <|im_end|> within a few tokens: EOS honoured */
static const char *CHAT = "<|im_start|>user\nSay only the word yes.<|im_end|>\n<|im_start|>assistant\n";

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
    int32_t prompts[N_PROMPTS + 1][128];
    int np[N_PROMPTS + 1];
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
    REQUIRE(n >= 1 && n <= 8);
    lsw_options o = popts(w->size == 2 ? "0-8,8-30" : "0-8,8-20,20-30");
    o.model = w->m;
    o.max_slots = n;
    lsw_pipeline *pl = NULL;
    ls_err err = {{0}};
    ls_status st = lsw_pipeline_create(w->comm, &o, &pl, &err);
    if (st != LS_OK) fprintf(stderr, "  create: %s\n", err.msg);
    REQUIRE(st == LS_OK);
    static conc_job jobs[8];
    static run_out ref[8];
    pthread_t th[8];
    for (int i = 0; i < n; i++) {
        conc_job *j = &jobs[i];
        j->pl = pl;
        j->w = w;
        j->slot = i;
        j->prompt = i % (N_PROMPTS + 1);
        j->gp = params(i % 2 ? LS_STRATEGY_AUTOREGRESSIVE : LS_STRATEGY_SELF_SPECULATIVE, 8, 2 + i % 3, N_GEN,
                       j->prompt != N_PROMPTS);
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
    lsw_pipeline_free(pl);
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
    for (int i = 0; i <= N_PROMPTS; i++) {
        const char *text = i < N_PROMPTS ? PROMPTS[i] : CHAT;
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
