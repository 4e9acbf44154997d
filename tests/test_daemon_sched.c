/* test_daemon_sched.c: the daemon's scheduler on the default model: the
 * output equals ls_generate's, stop sequences cut the text and never leak a
 * prefix of a stop string in a streamed chunk, stop token ids are left out,
 * the queue bound answers FULL, and cancelling a queued or running job ends
 * it with the given code; jobs running together (one step loop) each give
 * ls_generate's output alone, and a job cancelled during its prompt leaves
 * at once. No gRPC involved: the scheduler is driven directly. */
#include "metrics.h"
#include "sched.h"

#include "test_util.h"

#include <pthread.h>
#include <unistd.h>

typedef struct sink {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
    char streamed[4096];
    size_t streamed_len;
    int streamed_ids;
    bool leaked_prefix;  /* a chunk ended with a proper prefix of a stop string */
} sink;

static void sink_init(sink *s) {
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
}

static void sink_free(sink *s) {
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
}

static void on_chunk_cb(void *user, lsd_job *j, const char *text, size_t len, const int32_t *ids, int n) {
    sink *s = user;
    pthread_mutex_lock(&s->mu);
    if (s->streamed_len + len < sizeof s->streamed) {
        memcpy(s->streamed + s->streamed_len, text, len);
        s->streamed_len += len;
    }
    s->streamed_ids += n;
    /* everything released so far must not end inside a possible stop match */
    for (int i = 0; i < j->n_stops; i++)
        for (size_t k = 1; k < j->stop_len[i] && k <= s->streamed_len; k++)
            if (memcmp(s->streamed + s->streamed_len - k, j->stops[i], k) == 0) s->leaked_prefix = true;
    pthread_mutex_unlock(&s->mu);
}

static void on_done_cb(void *user, lsd_job *j) {
    sink *s = user;
    pthread_mutex_lock(&s->mu);
    s->done++;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static void sink_wait(sink *s, int n) {
    pthread_mutex_lock(&s->mu);
    while (s->done < n) pthread_cond_wait(&s->cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
}

static ls_model *model;
static const int32_t prompt_ids[] = {504, 3575, 282, 4649, 314}; /* "The capital of France is" */

static void job_setup(lsd_job *j, sink *s, int n_predict, bool stream) {
    lsd_job_init(j);
    j->prompt = malloc(sizeof prompt_ids);
    memcpy(j->prompt, prompt_ids, sizeof prompt_ids);
    j->n_prompt = 5;
    ls_sampling_default(&j->params.sampling);
    j->params.n_predict = n_predict;
    j->params.ignore_eog = true;
    j->params.exit_layer = 7;
    j->params.num_speculations = 4;
    j->on_chunk = stream ? on_chunk_cb : NULL;
    j->on_done = on_done_cb;
    j->user = s;
    j->t_arrival = ls_time_ms();
}

static void add_stop(lsd_job *j, const char *s) {
    j->stops[j->n_stops] = strdup(s);
    j->stop_len[j->n_stops++] = strlen(s);
}

static lsd_sched *make_sched(int slots, int queue, lsd_metrics *m) {
    lsd_sched_opts o = {.model = model, .n_slots = slots, .n_threads = 2, .n_ctx = 256, .max_batch = 64,
                        .max_queue = queue, .metrics = m};
    lsd_sched *s = NULL;
    char err[512] = "";
    if (lsd_sched_create(&o, &s, err, sizeof err) != 0) fprintf(stderr, "lsd_sched_create: %s\n", err);
    return s;
}

/* the job's ids are ls_generate's, and the streamed text is the whole text */
static void test_matches_engine(void) {
    lsd_metrics *m = lsd_metrics_create(1, 4);
    lsd_sched *s = make_sched(1, 4, m);
    REQUIRE(s != NULL);
    for (int strat = 0; strat < 3; strat++) {
        sink sk;
        sink_init(&sk);
        lsd_job j;
        job_setup(&j, &sk, 16, true);
        j.params.strategy = (ls_strategy)strat;
        CHECK_EQ_INT(lsd_sched_submit(s, &j, NULL), LSD_SUBMIT_OK);
        sink_wait(&sk, 1);
        CHECK_EQ_INT(j.code, 0);
        CHECK_EQ_INT(j.n_ids, 16);
        CHECK_EQ_INT(j.finish_reason, LSD_FINISH_LENGTH);

        ls_ctx *ctx;
        ls_kv *kv;
        ls_err err;
        REQUIRE(ls_ctx_create(model, 2, 64, &ctx, &err) == LS_OK);
        REQUIRE(ls_kv_create(model, 0, ls_model_config(model)->n_layers, 256, &kv, &err) == LS_OK);
        int32_t out[16];
        ls_gen_stats st;
        CHECK_EQ_INT(ls_generate(ctx, kv, prompt_ids, 5, &j.params, out, NULL, NULL, &st, &err), LS_OK);
        CHECK_EQ_INT(st.n_generated, 16);
        CHECK(memcmp(out, j.ids, sizeof out) == 0);
        ls_kv_free(kv);
        ls_ctx_free(ctx);

        /* streamed chunks + the unreleased tail = the whole text */
        CHECK_EQ_INT(sk.streamed_len + (j.text_len - j.text_sent), j.text_len);
        CHECK(memcmp(sk.streamed, j.text, sk.streamed_len) == 0);
        CHECK_EQ_INT(sk.streamed_ids + (j.n_ids - j.ids_sent), j.n_ids);
        lsd_job_clear(&j);
        sink_free(&sk);
    }
    char *text = lsd_metrics_render(m);
    REQUIRE(text != NULL);
    CHECK(strstr(text, "layerskip_generated_tokens_total 48") != NULL);
    CHECK(strstr(text, "layerskip_sessions_busy 0") != NULL);
    free(text);
    lsd_sched_free(s);
    lsd_metrics_free(m);
}

static void test_stops(void) {
    lsd_sched *s = make_sched(1, 4, NULL);
    REQUIRE(s != NULL);
    /* greedy continuation: " Paris.\n\nThe United States has a population of ..." */
    static const struct { const char *stops[2]; const char *want; } cases[] = {
        {{"States has", NULL}, " Paris.\n\nThe United "},
        {{"\n\n", NULL}, " Paris."},
        {{"zzz", "United"}, " Paris.\n\nThe "},
        {{"s", NULL}, " Pari"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        sink sk;
        sink_init(&sk);
        lsd_job j;
        job_setup(&j, &sk, 24, true);
        for (int i = 0; i < 2 && cases[c].stops[i]; i++) add_stop(&j, cases[c].stops[i]);
        CHECK_EQ_INT(lsd_sched_submit(s, &j, NULL), LSD_SUBMIT_OK);
        sink_wait(&sk, 1);
        CHECK_EQ_INT(j.code, 0);
        CHECK_STR_EQ(j.text, cases[c].want);
        CHECK_EQ_INT(j.finish_reason, LSD_FINISH_STOP);
        CHECK(!sk.leaked_prefix);
        CHECK(j.n_ids < 24);
        lsd_job_clear(&j);
        sink_free(&sk);
    }
    /* a stop token id ends generation and is not part of the output: 7042 = " Paris" */
    sink sk;
    sink_init(&sk);
    lsd_job j;
    job_setup(&j, &sk, 24, false);
    j.stop_ids = malloc(sizeof(int32_t));
    j.stop_ids[0] = 7042;
    j.n_stop_ids = 1;
    CHECK_EQ_INT(lsd_sched_submit(s, &j, NULL), LSD_SUBMIT_OK);
    sink_wait(&sk, 1);
    CHECK_EQ_INT(j.n_ids, 0);
    CHECK_EQ_INT(j.text_len, 0);
    CHECK_EQ_INT(j.finish_reason, LSD_FINISH_STOP);
    lsd_job_clear(&j);
    sink_free(&sk);
    lsd_sched_free(s);
}

static void test_queue_and_cancel(void) {
    lsd_sched *s = make_sched(1, 1, NULL);
    REQUIRE(s != NULL);
    sink sk;
    sink_init(&sk);
    lsd_job a, b, c;
    job_setup(&a, &sk, 200, false);
    job_setup(&b, &sk, 8, false);
    job_setup(&c, &sk, 8, false);
    CHECK_EQ_INT(lsd_sched_submit(s, &a, NULL), LSD_SUBMIT_OK);
    /* wait until the worker took a, so b is the one waiting */
    for (int i = 0; i < 500 && lsd_sched_active(s) == 1 && a.queued; i++) usleep(10000);
    CHECK(!a.queued);
    CHECK_EQ_INT(lsd_sched_submit(s, &b, NULL), LSD_SUBMIT_OK);
    int waiting = -1;
    CHECK_EQ_INT(lsd_sched_submit(s, &c, &waiting), LSD_SUBMIT_FULL);
    CHECK_EQ_INT(waiting, 1);
    CHECK_EQ_INT(lsd_sched_active(s), 2);
    /* a queued job leaves at once, with the code given */
    lsd_sched_cancel(s, &b, 4);
    CHECK_EQ_INT(sk.done, 1);
    CHECK_EQ_INT(b.code, 4);
    /* a running one stops at its next token */
    double t0 = ls_time_ms();
    lsd_sched_cancel(s, &a, 1);
    sink_wait(&sk, 2);
    CHECK_EQ_INT(a.code, 1);
    CHECK(a.n_ids < 200);
    CHECK(ls_time_ms() - t0 < 5000);
    CHECK_EQ_INT(lsd_sched_active(s) <= 1, 1);
    lsd_sched_free(s);
    CHECK_EQ_INT(lsd_sched_submit(s = make_sched(1, 0, NULL), &c, NULL), LSD_SUBMIT_OK);
    sink_wait(&sk, 3);
    CHECK_EQ_INT(c.code, 0);
    lsd_sched_cancel_all(s, 14);
    CHECK_EQ_INT(lsd_sched_submit(s, &b, NULL), LSD_SUBMIT_CLOSED);
    lsd_sched_free(s);
    lsd_job_clear(&a);
    lsd_job_clear(&b);
    lsd_job_clear(&c);
    sink_free(&sk);
}

/* 12 jobs at once on 6 slots, mixed strategies, lengths and exits: each
 * output is ls_generate's alone */
static void test_together_matches_alone(void) {
    lsd_sched *s = make_sched(6, 12, NULL);
    REQUIRE(s != NULL);
    enum { NJ = 12 };
    sink sk;
    sink_init(&sk);
    lsd_job jobs[NJ];
    for (int i = 0; i < NJ; i++) {
        job_setup(&jobs[i], &sk, 6 + 3 * (i % 5), i % 2 == 0);
        jobs[i].params.strategy = (ls_strategy)(i % 3);
        jobs[i].params.exit_layer = 6 + 4 * (i % 4);
        jobs[i].params.num_speculations = 1 + i % 4;
        if (i % 4 == 3) {
            jobs[i].params.sampling.temperature = 0.8f;
            jobs[i].params.sampling.seed = (uint64_t)i;
            if (jobs[i].params.strategy == LS_STRATEGY_SELF_SPECULATIVE) jobs[i].params.sampling.temperature = 0;
        }
        CHECK_EQ_INT(lsd_sched_submit(s, &jobs[i], NULL), LSD_SUBMIT_OK);
    }
    sink_wait(&sk, NJ);
    ls_ctx *ctx;
    ls_kv *kv;
    ls_err err;
    REQUIRE(ls_ctx_create(model, 2, 64, &ctx, &err) == LS_OK);
    REQUIRE(ls_kv_create(model, 0, ls_model_config(model)->n_layers, 256, &kv, &err) == LS_OK);
    int same = 0;
    for (int i = 0; i < NJ; i++) {
        CHECK_EQ_INT(jobs[i].code, 0);
        int32_t out[32];
        ls_gen_stats st;
        CHECK_EQ_INT(ls_generate(ctx, kv, prompt_ids, 5, &jobs[i].params, out, NULL, NULL, &st, &err), LS_OK);
        if (st.n_generated == jobs[i].n_ids && !memcmp(out, jobs[i].ids, sizeof(int32_t) * (size_t)st.n_generated))
            same++;
        else
            fprintf(stderr, "  job %d differs from ls_generate alone\n", i);
        lsd_job_clear(&jobs[i]);
    }
    CHECK_EQ_INT(same, NJ);
    CHECK_EQ_INT(lsd_sched_active(s), 0);
    ls_kv_free(kv);
    ls_ctx_free(ctx);
    sink_free(&sk);
    lsd_sched_free(s);
}

/* a long prompt in slices of 8: cancelled during it, the job ends at the
 * next step with no token, and the slot is free again */
static void test_cancel_mid_prompt(void) {
    lsd_sched_opts o = {.model = model, .n_slots = 1, .n_threads = 2, .n_ctx = 256, .max_batch = 64,
                        .max_queue = 2, .prefill_chunk = 8};
    lsd_sched *s = NULL;
    char e[512] = "";
    REQUIRE(lsd_sched_create(&o, &s, e, sizeof e) == 0);
    sink sk;
    sink_init(&sk);
    lsd_job j;
    job_setup(&j, &sk, 8, false);
    free(j.prompt);
    j.n_prompt = 240;
    j.prompt = malloc(sizeof(int32_t) * 240);
    for (int i = 0; i < 240; i++) j.prompt[i] = prompt_ids[i % 5];
    CHECK_EQ_INT(lsd_sched_submit(s, &j, NULL), LSD_SUBMIT_OK);
    for (int i = 0; i < 500 && j.queued; i++) usleep(2000); /* taken into the slot */
    lsd_sched_cancel(s, &j, 1);
    sink_wait(&sk, 1);
    CHECK_EQ_INT(j.code, 1);
    CHECK_EQ_INT(j.n_ids, 0);
    CHECK_EQ_INT(lsd_sched_active(s), 0);
    /* the slot serves the next job */
    lsd_job k;
    job_setup(&k, &sk, 4, false);
    CHECK_EQ_INT(lsd_sched_submit(s, &k, NULL), LSD_SUBMIT_OK);
    sink_wait(&sk, 2);
    CHECK_EQ_INT(k.code, 0);
    CHECK_EQ_INT(k.n_ids, 4);
    lsd_job_clear(&j);
    lsd_job_clear(&k);
    sink_free(&sk);
    lsd_sched_free(s);
}

int main(void) {
    ls_err err;
    if (ls_model_load(tu_default_model(), &model, &err) != LS_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    RUN(test_matches_engine);
    RUN(test_stops);
    RUN(test_queue_and_cancel);
    RUN(test_together_matches_alone);
    RUN(test_cancel_mid_prompt);
    ls_model_free(model);
    TEST_MAIN_END();
}
