/* sched.c: session slots, the FIFO queue and the generation loop.
 *
 * In one process (no pipeline) one step-loop thread serves every slot: it
 * admits queued jobs into free slots, and each step advances all of them at
 * once with ls_gen_step on one context whose pool owns the cores (--threads
 * is the process's threads): a prompt slice, a decode token or a
 * self-speculative round each, one pass over the weights for all. Output is
 * ls_generate's token for token (exact mode), so greedy output is the
 * bench's. A cancelled or expired job leaves at the next step, also during
 * its prompt. Through the MPI pipeline one worker thread per slot runs the
 * pipeline's generate instead. The token callback is where requests are
 * steered: it stops on cancel, stop token ids and stop sequences, and
 * releases text only when no stop sequence can still start inside it. */
#define _GNU_SOURCE /* memmem */
#include "sched.h"

#include "metrics.h"
#include "layerskip/tokenizer.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* gRPC status numbers (grpc/status.h), kept here so the scheduler needs no gRPC */
enum { CODE_OK = 0, CODE_CANCELLED = 1, CODE_INTERNAL = 13, CODE_UNAVAILABLE = 14 };

/* ---- output handling inside the token callback ---- */

typedef struct run_state {
    lsd_job *job;
    ls_detok_stream ds;
    char *piece;            /* (piece_cap) scratch for one token's text */
    int64_t piece_cap;
    bool cancelled, stop_hit, oom;
} run_state;

typedef struct sched_slot {
    lsd_sched *s;
    int index;
    ls_kv *kv;              /* step loop: the running job's cache, made for its need */
    int64_t kv_need;        /* positions the running job reserved, under s->mu */
    int32_t *out;           /* (n_ctx + 1) generated ids */
    pthread_t thread;       /* pipeline: this slot's worker */
    bool thread_started;
    lsd_job *job;           /* running job, under s->mu */
    /* step loop, owned by its thread */
    ls_gen *gen;
    run_state r;
    bool started;
} sched_slot;

struct lsd_sched {
    lsd_sched_opts o;
    const ls_tokenizer *tok;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    lsd_job *head, *tail;   /* waiting jobs, FIFO */
    int n_queued, n_busy;
    int64_t kv_reserved;    /* positions the running jobs reserved */
    bool closed;
    char fail_msg[512]; /* lsd_sched_fail_all's message for what it stops (under mu) */
    sched_slot *slots;      /* (n_slots) */
    bool stepping;          /* one step loop (no pipeline) */
    ls_ctx *ctx;            /* the step loop's context */
    pthread_t step_thread;
    bool step_started;
};

void lsd_job_init(lsd_job *j) {
    memset(j, 0, sizeof *j);
    atomic_init(&j->cancel, false);
    atomic_init(&j->cancel_code, CODE_CANCELLED);
}

void lsd_job_clear(lsd_job *j) {
    free(j->prompt);
    for (int i = 0; i < j->n_stops; i++) free(j->stops[i]);
    free(j->stop_ids);
    free(j->text);
    free(j->ids);
    lsd_job_init(j);
}

static void publish_gauges(lsd_sched *s) {
    if (!s->o.metrics) return;
    lsd_metrics_set_queue_depth(s->o.metrics, s->n_queued);
    lsd_metrics_set_busy_sessions(s->o.metrics, s->n_busy);
    lsd_metrics_set_kv(s->o.metrics, s->kv_reserved, s->o.kv_budget, s->o.kv_bytes_per_pos);
}

int64_t lsd_job_kv_need(const lsd_job *j, int n_ctx) {
    int64_t need = (int64_t)j->n_prompt + (j->params.n_predict > 0 ? j->params.n_predict : 0) + 1;
    return need < n_ctx ? need : n_ctx;
}

int lsd_kv_budget_parse(const char *text, int64_t bytes_per_pos, int n_ctx, int64_t *out, char *err, size_t err_len) {
    *out = 0;
    if (!text || !*text) return 0;
    const size_t n = strlen(text);
    size_t i = 0;
    while (i < n && text[i] >= '0' && text[i] <= '9') i++;
    int64_t pos;
    if (i == n) { /* positions */
        if (n > 15) {
            snprintf(err, err_len, "--kv-budget \"%.40s\" is too large", text);
            return -1;
        }
        pos = strtoll(text, NULL, 10);
    } else {
        uint64_t bytes = 0;
        char why[96];
        if (!ls_parse_size(text, n, &bytes, why, sizeof why)) {
            snprintf(err, err_len, "--kv-budget \"%.40s\" %s: give KV positions (\"16384\") or a size (%s)", text, why,
                     LS_SIZE_HELP);
            return -1;
        }
        pos = bytes_per_pos > 0 ? (int64_t)(bytes / (uint64_t)bytes_per_pos) : 0;
    }
    if (pos < n_ctx) {
        snprintf(err, err_len, "--kv-budget \"%.40s\" holds %lld KV positions, fewer than one context (--ctx %d, "
                 "%lld bytes a position): raise the budget or lower --ctx", text, (long long)pos, n_ctx,
                 (long long)bytes_per_pos);
        return -1;
    }
    *out = pos;
    return 0;
}

static bool text_append(lsd_job *j, const char *p, size_t n) {
    if (j->text_len + n + 1 > j->text_cap) {
        size_t cap = (j->text_len + n + 1) * 2;
        char *t = realloc(j->text, cap);
        if (!t) return false;
        j->text = t;
        j->text_cap = cap;
    }
    memcpy(j->text + j->text_len, p, n);
    j->text_len += n;
    j->text[j->text_len] = 0;
    return true;
}

static bool ids_append(lsd_job *j, int32_t id) {
    if (j->n_ids == j->ids_cap) {
        int cap = j->ids_cap ? j->ids_cap * 2 : 64;
        int32_t *t = realloc(j->ids, sizeof(int32_t) * (size_t)cap);
        if (!t) return false;
        j->ids = t;
        j->ids_cap = cap;
    }
    j->ids[j->n_ids++] = id;
    return true;
}

/* Cut the text at the earliest stop sequence in the unreleased part (a
 * match cannot start earlier: text that could begin one is never released). */
static bool find_stop(lsd_job *j) {
    size_t best = SIZE_MAX;
    const char *hay = j->text + j->text_sent;
    size_t hay_len = j->text_len - j->text_sent;
    for (int i = 0; i < j->n_stops; i++) {
        const char *m = memmem(hay, hay_len, j->stops[i], j->stop_len[i]);
        if (m && (size_t)(m - j->text) < best) best = (size_t)(m - j->text);
    }
    if (best == SIZE_MAX) return false;
    j->text_len = best;
    j->text[best] = 0;
    return true;
}

/* the longest unreleased suffix that is a proper prefix of some stop string */
static size_t holdback(const lsd_job *j) {
    size_t avail = j->text_len - j->text_sent, best = 0;
    for (int i = 0; i < j->n_stops; i++) {
        size_t k = j->stop_len[i] - 1 < avail ? j->stop_len[i] - 1 : avail;
        for (; k > best; k--)
            if (memcmp(j->text + j->text_len - k, j->stops[i], k) == 0) { best = k; break; }
    }
    return best;
}

static void release(lsd_job *j) {
    size_t end = j->text_len - holdback(j);
    if (end <= j->text_sent) return;
    if (j->on_chunk)
        j->on_chunk(j->user, j, j->text + j->text_sent, end - j->text_sent, j->ids + j->ids_sent,
                    j->n_ids - j->ids_sent);
    j->text_sent = end;
    j->ids_sent = j->n_ids;
}

/* append a token's text (or the flushed tail when id < 0); false on a stop match or OOM */
static bool push_text(run_state *r, int32_t id) {
    for (;;) {
        int64_t n = id >= 0 ? ls_detok_stream_push(&r->ds, id, r->piece, r->piece_cap)
                            : ls_detok_stream_flush(&r->ds, r->piece, r->piece_cap);
        if (n >= 0) {
            if (n > 0 && !text_append(r->job, r->piece, (size_t)n)) { r->oom = true; return false; }
            break;
        }
        char *p = realloc(r->piece, (size_t)-n);
        if (!p) { r->oom = true; return false; }
        r->piece = p;
        r->piece_cap = -n;
    }
    if (r->job->n_stops && find_stop(r->job)) { r->stop_hit = true; return false; }
    return true;
}

static bool on_token(void *user, int32_t t) {
    run_state *r = user;
    lsd_job *j = r->job;
    if (atomic_load(&j->cancel)) { r->cancelled = true; return false; }
    if (j->ttft_ms == 0) j->ttft_ms = ls_time_ms() - j->t_arrival;
    for (int i = 0; i < j->n_stop_ids; i++)
        if (j->stop_ids[i] == t) { r->stop_hit = true; return false; }
    if (!ids_append(j, t)) { r->oom = true; return false; }
    if (!push_text(r, t)) return false;
    release(j);
    return true;
}

/* a job leaves the queue: its output state; false when it cannot run (out
 * of memory, already cancelled: job_end reports it) */
static bool job_begin(lsd_sched *s, lsd_job *j, run_state *r) {
    j->queue_ms = ls_time_ms() - j->t_arrival;
    *r = (run_state){.job = j, .piece_cap = 256};
    r->piece = malloc((size_t)r->piece_cap);
    ls_detok_stream_init(&r->ds, s->tok, false);
    r->ds.first = false; /* the text continues the prompt: keep a leading space, as the bench prints it */
    if (!r->piece) r->oom = true;
    else if (atomic_load(&j->cancel)) r->cancelled = true;
    return !r->oom && !r->cancelled;
}

/* the generation ended with st: the job's result, text tail and metrics */
static void job_end(lsd_sched *s, sched_slot *sl, lsd_job *j, run_state *rs, ls_status st, const ls_err *e) {
    run_state r = *rs;
    ls_err err = *e;
    /* end-of-generation tokens never reach the callback, but are part of the output */
    if (st == LS_OK && !r.cancelled && !r.oom && j->gen.finish == LS_FINISH_EOG && j->gen.n_generated > 0) {
        if (j->ttft_ms == 0) j->ttft_ms = ls_time_ms() - j->t_arrival;
        if (!ids_append(j, sl->out[j->gen.n_generated - 1])) r.oom = true;
        else push_text(&r, sl->out[j->gen.n_generated - 1]);
    }
    if (st == LS_OK && !r.cancelled && !r.oom && !r.stop_hit) push_text(&r, -1);
    j->total_ms = ls_time_ms() - j->t_arrival;
    if (j->ttft_ms == 0) j->ttft_ms = j->total_ms;

    if (r.cancelled || atomic_load(&j->cancel)) {
        j->code = atomic_load(&j->cancel_code);
        pthread_mutex_lock(&s->mu);
        snprintf(j->message, sizeof j->message, "%s",
                 j->code != CODE_UNAVAILABLE ? "request cancelled" : s->fail_msg[0] ? s->fail_msg
                                                                     : "server is shutting down");
        pthread_mutex_unlock(&s->mu);
    } else if (st == LS_ERR_IO && s->o.generate) {
        j->code = CODE_UNAVAILABLE; /* a pipeline stage was lost */
        snprintf(j->message, sizeof j->message, "%.500s", err.msg);
    } else if (st != LS_OK) {
        j->code = CODE_INTERNAL;
        snprintf(j->message, sizeof j->message, "generation failed: %.480s", err.msg);
    } else if (r.oom) {
        j->code = CODE_INTERNAL;
        snprintf(j->message, sizeof j->message, "out of memory while collecting the output");
    } else {
        j->code = CODE_OK;
        if (r.stop_hit) j->finish_reason = LSD_FINISH_STOP;
        else switch (j->gen.finish) {
            case LS_FINISH_EOG: j->finish_reason = LSD_FINISH_EOS; break;
            case LS_FINISH_CONTEXT: j->finish_reason = LSD_FINISH_CONTEXT; break;
            case LS_FINISH_STOPPED: j->finish_reason = LSD_FINISH_STOP; break;
            case LS_FINISH_LENGTH: default:
                /* a default max_tokens cut to the room left ends because the window is full */
                j->finish_reason = j->until_context_full ? LSD_FINISH_CONTEXT : LSD_FINISH_LENGTH;
                break;
            }
    }
    if (s->o.metrics) {
        int gen = j->n_ids;
        /* -1: not observed (no token came out) */
        double tpot = gen > 0 && j->gen.decode_ms > 0 ? j->gen.decode_ms / 1e3 / gen : -1;
        lsd_metrics_generation_done(s->o.metrics, j->n_prompt, gen, j->gen.drafted, j->gen.accepted,
                                    gen > 0 ? j->ttft_ms / 1e3 : -1, j->queue_ms / 1e3, tpot);
    }
    free(r.piece);
    rs->piece = NULL;
}

/* pipeline mode: one job on a slot's worker thread */
static void run_job(sched_slot *sl, lsd_job *j) {
    lsd_sched *s = sl->s;
    run_state r;
    ls_err err = {{0}};
    ls_status st = LS_OK;
    if (job_begin(s, j, &r))
        st = s->o.generate(s->o.generate_user, sl->index, j->prompt, j->n_prompt, &j->params, sl->out, on_token, &r,
                           &j->gen, &err);
    job_end(s, sl, j, &r, st, &err);
}

/* the queue's first job fits the KV budget next to the running ones (caller holds mu) */
static bool head_fits(const lsd_sched *s) {
    return s->head && (s->o.kv_budget <= 0 ||
                       s->kv_reserved + lsd_job_kv_need(s->head, s->o.n_ctx) <= s->o.kv_budget);
}

/* the queue's first job into slot sl (caller holds mu; head_fits) */
static lsd_job *admit(lsd_sched *s, sched_slot *sl) {
    lsd_job *j = s->head;
    sl->kv_need = lsd_job_kv_need(j, s->o.n_ctx);
    s->kv_reserved += sl->kv_need;
    s->head = j->next;
    if (!s->head) s->tail = NULL;
    j->next = NULL;
    j->queued = false;
    s->n_queued--;
    s->n_busy++;
    sl->job = j;
    publish_gauges(s);
    return j;
}

/* the finished job j of slot sl to its sink (caller does not hold mu) */
static void hand_over(lsd_sched *s, sched_slot *sl, lsd_job *j) {
    pthread_mutex_lock(&s->mu);
    sl->job = NULL; /* on_done may free the job: nobody may cancel it after this */
    pthread_mutex_unlock(&s->mu);
    j->on_done(j->user, j);
    /* busy until the result is handed over, so a drain waits for it */
    pthread_mutex_lock(&s->mu);
    s->n_busy--;
    s->kv_reserved -= sl->kv_need;
    sl->kv_need = 0;
    publish_gauges(s);
    if (s->o.kv_budget > 0) pthread_cond_broadcast(&s->cv); /* room for a waiting job */
    pthread_mutex_unlock(&s->mu);
}

static void *worker_main(void *arg) {
    sched_slot *sl = arg;
    lsd_sched *s = sl->s;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!head_fits(s) && !s->closed) pthread_cond_wait(&s->cv, &s->mu);
        if (!head_fits(s)) break; /* closed: cancel_all took the queue */
        lsd_job *j = admit(s, sl);
        pthread_mutex_unlock(&s->mu);
        run_job(sl, j);
        hand_over(s, sl, j);
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* step loop: hand a finished job over and free its slot */
static void step_release(lsd_sched *s, sched_slot *sl, ls_status st, const ls_err *err) {
    lsd_job *j = sl->job;
    job_end(s, sl, j, &sl->r, st, err);
    ls_gen_free(sl->gen);
    sl->gen = NULL;
    ls_kv_free(sl->kv);
    sl->kv = NULL;
    sl->started = false;
    hand_over(s, sl, j);
}

static void *step_main(void *arg) {
    lsd_sched *s = arg;
    const int n = s->o.n_slots;
    ls_gen **live = malloc(sizeof(ls_gen *) * (size_t)n);
    for (;;) {
        /* admit queued jobs into free slots, FIFO; sleep when there is nothing to do */
        pthread_mutex_lock(&s->mu);
        for (;;) {
            for (int i = 0; i < n && head_fits(s); i++)
                if (!s->slots[i].job) admit(s, &s->slots[i]);
            bool active = false;
            for (int i = 0; i < n; i++) active |= s->slots[i].job != NULL;
            if (active || s->closed) break;
            pthread_cond_wait(&s->cv, &s->mu);
        }
        bool active = false;
        for (int i = 0; i < n; i++) active |= s->slots[i].job != NULL;
        pthread_mutex_unlock(&s->mu);
        if (!active) break; /* closed and nothing left */

        /* start the new jobs; end cancelled ones (also mid-prompt) */
        for (int i = 0; i < n; i++) {
            sched_slot *sl = &s->slots[i];
            lsd_job *j = sl->job; /* only this thread clears it */
            if (!j) continue;
            ls_err err = {{0}};
            if (!sl->started) {
                sl->started = true;
                if (!job_begin(s, j, &sl->r) || !live) {
                    if (!live) sl->r.oom = true;
                    step_release(s, sl, LS_OK, &err);
                    continue;
                }
                /* the job's cache, as large as it reserved */
                ls_status st = ls_kv_create(s->o.model, 0, ls_model_config(s->o.model)->n_layers, (int)sl->kv_need,
                                            &sl->kv, &err);
                if (st == LS_OK)
                    st = ls_gen_create(s->ctx, sl->kv, j->prompt, j->n_prompt, &j->params, sl->out, on_token, &sl->r,
                                       &j->gen, &sl->gen, &err);
                if (st != LS_OK) {
                    step_release(s, sl, st, &err);
                    continue;
                }
            }
            if (atomic_load(&j->cancel)) {
                sl->r.cancelled = true;
                step_release(s, sl, LS_OK, &err);
            }
        }
        /* one step for every running job */
        int nl = 0;
        for (int i = 0; i < n; i++)
            if (s->slots[i].gen && !ls_gen_done(s->slots[i].gen)) live[nl++] = s->slots[i].gen;
        ls_err err = {{0}};
        if (nl) ls_gen_step(s->ctx, live, nl, s->o.prefill_chunk > 0 ? s->o.prefill_chunk : LSD_PREFILL_CHUNK, &err);
        for (int i = 0; i < n; i++) {
            sched_slot *sl = &s->slots[i];
            if (sl->gen && ls_gen_done(sl->gen)) step_release(s, sl, ls_gen_status(sl->gen), &err);
        }
    }
    free(live);
    return NULL;
}

int lsd_sched_create(const lsd_sched_opts *o, lsd_sched **out, char *err, size_t err_len) {
    *out = NULL;
    lsd_sched *s = calloc(1, sizeof *s);
    if (!s) { snprintf(err, err_len, "out of memory creating the scheduler"); return -1; }
    s->o = *o;
    s->tok = ls_model_tokenizer(o->model);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->slots = calloc((size_t)o->n_slots, sizeof(sched_slot));
    if (!s->slots) {
        snprintf(err, err_len, "out of memory creating %d session slots", o->n_slots);
        lsd_sched_free(s);
        return -1;
    }
    s->stepping = !o->generate;
    if (s->stepping) {
        ls_err e = {{0}};
        if (ls_ctx_create(o->model, o->n_threads, o->max_batch, &s->ctx, &e) != LS_OK) {
            snprintf(err, err_len, "the generation context: %s", e.msg);
            lsd_sched_free(s);
            return -1;
        }
        ls_ctx_set_exact(s->ctx, true);
    }
    for (int i = 0; i < o->n_slots; i++) {
        sched_slot *sl = &s->slots[i];
        sl->s = s;
        sl->index = i;
        sl->out = malloc(sizeof(int32_t) * ((size_t)o->n_ctx + 1));
        if (!sl->out) {
            snprintf(err, err_len, "out of memory for session slot %d (lower --ctx)", i + 1);
            lsd_sched_free(s);
            return -1;
        }
    }
    if (s->stepping) {
        if (pthread_create(&s->step_thread, NULL, step_main, s) != 0) {
            snprintf(err, err_len, "cannot start the generation thread");
            lsd_sched_free(s);
            return -1;
        }
        s->step_started = true;
    }
    for (int i = 0; !s->stepping && i < o->n_slots; i++) {
        if (pthread_create(&s->slots[i].thread, NULL, worker_main, &s->slots[i]) != 0) {
            snprintf(err, err_len, "cannot start the worker thread of session slot %d", i + 1);
            lsd_sched_free(s);
            return -1;
        }
        s->slots[i].thread_started = true;
    }
    pthread_mutex_lock(&s->mu);
    if (s->o.metrics) publish_gauges(s);
    pthread_mutex_unlock(&s->mu);
    *out = s;
    return 0;
}

/* take every queued job out (caller holds mu); returns the list */
static lsd_job *take_queue(lsd_sched *s) {
    lsd_job *list = s->head;
    for (lsd_job *j = list; j; j = j->next) j->queued = false;
    s->head = s->tail = NULL;
    s->n_queued = 0;
    publish_gauges(s);
    return list;
}

static void finish_cancelled(lsd_job *list, int code, const char *msg) {
    while (list) {
        lsd_job *next = list->next;
        list->next = NULL;
        list->code = code;
        snprintf(list->message, sizeof list->message, "%s",
                 msg ? msg : code == CODE_UNAVAILABLE ? "server is shutting down" : "request cancelled");
        list->total_ms = ls_time_ms() - list->t_arrival;
        list->queue_ms = list->total_ms;
        list->on_done(list->user, list);
        list = next;
    }
}

void lsd_sched_cancel_all(lsd_sched *s, int code) { lsd_sched_fail_all(s, code, NULL); }

void lsd_sched_fail_all(lsd_sched *s, int code, const char *msg) {
    pthread_mutex_lock(&s->mu);
    if (msg && !s->fail_msg[0]) snprintf(s->fail_msg, sizeof s->fail_msg, "%s", msg);
    s->closed = true;
    lsd_job *list = take_queue(s);
    for (int i = 0; i < s->o.n_slots; i++) {
        lsd_job *j = s->slots[i].job;
        if (j) {
            atomic_store(&j->cancel_code, code);
            atomic_store(&j->cancel, true);
        }
    }
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    finish_cancelled(list, code, msg);
}

void lsd_sched_free(lsd_sched *s) {
    if (!s) return;
    if (s->slots) {
        lsd_sched_cancel_all(s, CODE_UNAVAILABLE);
        if (s->step_started) pthread_join(s->step_thread, NULL);
        for (int i = 0; i < s->o.n_slots; i++) {
            sched_slot *sl = &s->slots[i];
            if (sl->thread_started) pthread_join(sl->thread, NULL);
            ls_gen_free(sl->gen);
            ls_kv_free(sl->kv);
            free(sl->out);
        }
        free(s->slots);
    }
    ls_ctx_free(s->ctx);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

lsd_submit_result lsd_sched_submit(lsd_sched *s, lsd_job *job, int *n_waiting) {
    pthread_mutex_lock(&s->mu);
    if (s->closed) {
        pthread_mutex_unlock(&s->mu);
        return LSD_SUBMIT_CLOSED;
    }
    /* idle slots take a job at once, so it never counts as waiting */
    int idle = s->o.n_slots - s->n_busy;
    if (s->n_queued >= s->o.max_queue + idle) {
        int w = s->n_queued - idle;
        if (n_waiting) *n_waiting = w > 0 ? w : 0;
        pthread_mutex_unlock(&s->mu);
        return LSD_SUBMIT_FULL;
    }
    job->next = NULL;
    job->queued = true;
    if (s->tail) s->tail->next = job;
    else s->head = job;
    s->tail = job;
    s->n_queued++;
    publish_gauges(s);
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return LSD_SUBMIT_OK;
}

void lsd_sched_cancel(lsd_sched *s, lsd_job *job, int code) {
    bool removed = false;
    pthread_mutex_lock(&s->mu);
    atomic_store(&job->cancel_code, code);
    atomic_store(&job->cancel, true);
    if (job->queued) {
        lsd_job **pp = &s->head, *prev = NULL;
        while (*pp && *pp != job) { prev = *pp; pp = &(*pp)->next; }
        if (*pp) {
            *pp = job->next;
            if (s->tail == job) s->tail = prev;
            job->next = NULL;
            job->queued = false;
            s->n_queued--;
            publish_gauges(s);
            removed = true;
        }
    }
    pthread_mutex_unlock(&s->mu);
    if (removed) finish_cancelled(job, code, NULL);
}

int lsd_sched_active(lsd_sched *s) {
    pthread_mutex_lock(&s->mu);
    int n = s->n_queued + s->n_busy;
    pthread_mutex_unlock(&s->mu);
    return n;
}

int lsd_sched_queued(lsd_sched *s) {
    pthread_mutex_lock(&s->mu);
    int n = s->n_queued;
    pthread_mutex_unlock(&s->mu);
    return n;
}
