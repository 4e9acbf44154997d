/* pipeline.c: rank 0 of the MPI pipeline: setup handshake, the drafter stage
 * and the two generation loops (pipeline.h).
 *
 * self_speculative, asynchronously: a chunk is the newest confirmed token
 * plus up to k drafts (their exit states, the output of layer E-1). After
 * sending chunk c the drafter goes on drafting chunk c+1 from the token its
 * own head predicts after c's last draft ("assumed next"), as if c were
 * fully accepted, up to max_inflight chunks ahead. A verdict {accepted n,
 * next} that rejects a draft or whose next differs from the assumption
 * (lsw_chunk_rejected) makes the drafter cut its KV back, bump the slot's
 * generation and restart from `next`; the last stage applies the same rule
 * and drops chunks of older generations, and every stage cuts its KV back
 * to a chunk's first position before running it, so rollback needs no
 * message of its own. */
#include "pipeline.h"

#include "fingerprint.h"
#include "msg.h"
#include "trace.h"
#include "layerskip/tokenizer.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_INFLIGHT 16
#define LSW_MAX_SLOTS_BATCH 64 /* requests in one combined pass through [0, E) */

/* a verdict or error for a slot, taken off the wire by whichever thread
 * polled it (messages of all slots share one link) */
typedef struct mail {
    lsw_hdr h;
    int source;
    char error[512];
} mail;

/* a slot's forward pass through the drafter stage's layers, waiting to run
 * together with the other slots' (stage0_forward) */
typedef struct fwd_req {
    ls_kv *kv;
    int pos, n;
    float *h;           /* (n, dim) in: embeddings, out: states after layer E-1 */
    ls_status st;
    ls_err *err;
    bool done;
    struct fwd_req *next;
} fwd_req;

typedef struct lsw_slot {
    ls_kv *kv;          /* layers [0, E), n_ctx positions */
    int32_t generation; /* only grows: START and every rejection take the next (changed under netlock) */
    bool busy;          /* a request runs on it (under netlock) */
    ls_ctx *ctx;        /* the slot's own compute context: slots draft concurrently */
    float *h;           /* (max_batch, dim) states being drafted / prefilled */
    float *logits;      /* (n_vocab) */
    int32_t *hist;      /* (n_ctx + LS_MAX_SPECULATIONS + 2) token at each position (penalty history) */
    ls_dist dist;
    mail *box;          /* ring of (box_cap) messages for this slot (under netlock) */
    int box_head, box_n, box_cap;
} lsw_slot;

struct lsw_pipeline {
    MPI_Comm comm;
    int size;
    lsw_options opt;
    char model_path[1024];
    ls_model *own_model; /* loaded here when the caller gave none */
    const ls_model *model;
    const ls_config *cfg;
    const ls_tokenizer *tok;
    lsw_layout layout;
    lsw_net net;          /* every use under netlock (MPI_THREAD_SERIALIZED) */
    pthread_mutex_t netlock;
    pthread_cond_t mail_cv; /* mail delivered, the poller role freed, or broken */
    int poller;           /* the slot polling MPI for the waiting ones, -1 none (under netlock) */
    lsw_trace trace;
    lsw_slot *slots;      /* (max_slots) */
    int pids[LSW_MAX_STAGES];
    char hosts[LSW_MAX_STAGES][64];
    char kernels[LSW_MAX_STAGES][32];
    _Atomic double heard[LSW_MAX_STAGES]; /* mono_s() of the last message from each rank (written under
                                           * netlock; read without it: the MPI layer may be stuck) */
    /* liveness (lsw_pipeline_check): a thread of its own pings and pumps,
     * so the caller never enters MPI (OpenMPI can block a call while mpirun
     * ends the job, and the caller must still answer) */
    pthread_t live_thread;
    bool live_started;
    atomic_bool live_stop, roll_req;
    _Atomic double live_beat;        /* mono_s() when its last round ended */
    _Atomic double live_interval;
    double ping_sent[LSW_MAX_STAGES]; /* > 0: a ping is outstanding since then */
    int32_t ping_seq;
    pthread_mutex_t faillock;
    atomic_bool broken;
    char why[1024];       /* written once, before broken is set */
    /* the slots' passes through [0, E), run together (stage0_forward) */
    pthread_mutex_t fwd_mu;
    pthread_cond_t fwd_cv;
    fwd_req *fwd_head;    /* waiting, oldest first (under fwd_mu) */
    bool fwd_leader;      /* a slot's thread is running a batch (under fwd_mu) */
    ls_ctx *fwd_ctx;      /* used by the leader only */
    float *fwd_x;         /* (max_batch, dim) */
};

void lsw_options_default(lsw_options *o) {
    memset(o, 0, sizeof *o);
    o->n_ctx = 2048;
    o->max_slots = 1;
    o->n_threads = 1;
    o->max_batch = 64;
    o->max_inflight = 4;
    o->timeout_s = 10;
    o->startup_timeout_s = 300;
}

const lsw_layout *lsw_pipeline_layout(const lsw_pipeline *pl) { return &pl->layout; }
const ls_model *lsw_pipeline_model(const lsw_pipeline *pl) { return pl->model; }
int lsw_pipeline_worker_pid(const lsw_pipeline *pl, int rank) {
    return rank > 0 && rank < pl->size ? pl->pids[rank] : -1;
}

const char *lsw_pipeline_worker_host(const lsw_pipeline *pl, int rank) {
    return rank > 0 && rank < pl->size ? pl->hosts[rank] : "";
}

const char *lsw_pipeline_worker_kernels(const lsw_pipeline *pl, int rank) {
    return rank > 0 && rank < pl->size ? pl->kernels[rank] : "";
}

bool lsw_pipeline_broken(const lsw_pipeline *pl, const char **why) {
    bool b = atomic_load(&((lsw_pipeline *)pl)->broken);
    if (why) *why = b ? pl->why : "";
    return b;
}

static double mono_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void idle_wait(void) {
    struct timespec ts = {0, 20000};
    nanosleep(&ts, NULL);
}

/* a failure that leaves the pipeline unusable: remember it, report it */
static ls_status fail(lsw_pipeline *pl, ls_status st, ls_err *err) {
    pthread_mutex_lock(&pl->faillock);
    if (!atomic_load(&pl->broken)) {
        snprintf(pl->why, sizeof pl->why, "%s", err ? err->msg : "stage failure");
        atomic_store(&pl->broken, true);
    }
    pthread_mutex_unlock(&pl->faillock);
    pthread_cond_broadcast(&pl->mail_cv);
    return st;
}

/* Wait up to timeout_s for the next message from any worker; on timeout the
 * error names late_rank's stage and `what` was awaited. */
static ls_status wait_msg(lsw_pipeline *pl, double timeout_s, int late_rank, const char *what, lsw_msg *m,
                          ls_err *err) {
    const double t0 = mono_s();
    for (;;) {
        bool got = false;
        ls_status st = lsw_recv_poll(&pl->net, m, &got, err);
        if (st == LS_OK) st = lsw_net_progress(&pl->net, err);
        if (st != LS_OK) return st;
        if (got) return LS_OK;
        if (mono_s() - t0 > timeout_s) {
            char who[96];
            lsw_stage_name(&pl->net, late_rank, who, sizeof who);
            return ls_err_set(err, LS_ERR_IO, "%s did not answer within %g s (waiting for %s); the stage is stuck "
                              "or dead: restart the job", who, timeout_s, what);
        }
        idle_wait();
    }
}

/* CLOSE along the chain; the last stage acknowledges once everything before
 * it has gone through, so no message of this pipeline is left in flight */
static ls_status close_chain(lsw_net *net, double timeout_s, int type, ls_err *err) {
    ls_status st = type == LSW_MSG_CLOSE ? lsw_send_close(net, 1, err) : lsw_send_shutdown(net, 1, err);
    const double t0 = mono_s();
    while (st == LS_OK) {
        lsw_msg m;
        bool got = false;
        st = lsw_recv_poll(net, &m, &got, err);
        if (st == LS_OK) st = lsw_net_progress(net, err);
        if (st != LS_OK) break;
        if (got && m.h.type == type && m.source == net->size - 1) return lsw_net_flush(net, err);
        if (!got && mono_s() - t0 > timeout_s) {
            char who[96];
            lsw_stage_name(net, net->size - 1, who, sizeof who);
            st = ls_err_set(err, LS_ERR_IO, "%s did not acknowledge %s within %g s", who, lsw_msg_type_name(type),
                            timeout_s);
        }
        if (!got) idle_wait();
    }
    return st;
}

ls_status lsw_shutdown_workers(MPI_Comm comm, double timeout_s, ls_err *err) {
    lsw_net net;
    lsw_net_init(&net, comm, timeout_s);
    ls_status st = net.size > 1 ? close_chain(&net, timeout_s, LSW_MSG_SHUTDOWN, err) : LS_OK;
    lsw_net_free(&net);
    return st;
}

void lsw_pipeline_free(lsw_pipeline *pl) {
    if (!pl) return;
    if (pl->live_started) {
        atomic_store(&pl->live_stop, true);
        pthread_join(pl->live_thread, NULL);
    }
    ls_err err;
    if (pl->net.size > 1 && !atomic_load(&pl->broken) &&
        close_chain(&pl->net, pl->opt.timeout_s, LSW_MSG_CLOSE, &err) != LS_OK)
        fprintf(stderr, "layerskip pipeline: closing the stages: %s\n", err.msg);
    lsw_net_free(&pl->net);
    lsw_trace_close(&pl->trace);
    for (int s = 0; pl->slots && s < pl->opt.max_slots; s++) {
        lsw_slot *sl = &pl->slots[s];
        ls_kv_free(sl->kv);
        ls_ctx_free(sl->ctx);
        free(sl->h);
        free(sl->logits);
        free(sl->hist);
        free(sl->box);
        ls_dist_free(&sl->dist);
    }
    free(pl->slots);
    ls_ctx_free(pl->fwd_ctx);
    free(pl->fwd_x);
    pthread_mutex_destroy(&pl->fwd_mu);
    pthread_cond_destroy(&pl->fwd_cv);
    ls_model_free(pl->own_model);
    pthread_mutex_destroy(&pl->netlock);
    pthread_cond_destroy(&pl->mail_cv);
    pthread_mutex_destroy(&pl->faillock);
    free(pl);
}

static ls_status check_options(const lsw_options *o, ls_err *err) {
    if (!o->model_path || !*o->model_path)
        return ls_err_set(err, LS_ERR_INVALID, "no model path: every rank loads the model from it (set model_path)");
    if (strlen(o->model_path) >= 1024)
        return ls_err_set(err, LS_ERR_INVALID, "model path is longer than 1023 bytes");
    if (o->trace_prefix && strlen(o->trace_prefix) >= 480)
        return ls_err_set(err, LS_ERR_INVALID, "trace prefix is longer than 479 bytes");
    if (o->n_ctx < 1 || o->n_ctx > (1 << 22))
        return ls_err_set(err, LS_ERR_INVALID, "pipeline context %d is out of range [1, %d]", o->n_ctx, 1 << 22);
    if (o->max_slots < 1 || o->max_slots > 1024)
        return ls_err_set(err, LS_ERR_INVALID, "pipeline max_slots %d is out of range [1, 1024]", o->max_slots);
    if (o->n_threads < 1 || o->n_threads > 1024)
        return ls_err_set(err, LS_ERR_INVALID, "pipeline threads %d is out of range [1, 1024]", o->n_threads);
    if (o->max_batch < 2 || o->max_batch > 4096)
        return ls_err_set(err, LS_ERR_INVALID, "pipeline max_batch %d is out of range [2, 4096]", o->max_batch);
    if (o->max_inflight < 1 || o->max_inflight > MAX_INFLIGHT)
        return ls_err_set(err, LS_ERR_INVALID, "pipeline max_inflight %d is out of range [1, %d]", o->max_inflight,
                          MAX_INFLIGHT);
    if (!(o->timeout_s > 0) || !(o->startup_timeout_s > 0))
        return ls_err_set(err, LS_ERR_INVALID, "pipeline timeouts must be > 0 s");
    return LS_OK;
}

ls_status lsw_pipeline_create(MPI_Comm comm, const lsw_options *o, lsw_pipeline **out, ls_err *err) {
    *out = NULL;
    int inited = 0, level = 0;
    MPI_Initialized(&inited);
    if (!inited) return ls_err_set(err, LS_ERR_INVALID, "MPI is not initialised: call MPI_Init_thread first");
    MPI_Query_thread(&level);
    if (level < MPI_THREAD_SERIALIZED)
        return ls_err_set(err, LS_ERR_UNSUPPORTED, "MPI was initialised with thread level %d: the pipeline needs "
                          "MPI_THREAD_SERIALIZED (call MPI_Init_thread with it)", level);
    ls_status st = check_options(o, err);
    if (st != LS_OK) return st;
    int rank = 0, size = 0;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    if (rank != 0)
        return ls_err_set(err, LS_ERR_INVALID, "lsw_pipeline_create runs on rank 0 (this is rank %d: run "
                          "lsw_worker_run / layerskip-worker there)", rank);
    if (size < 2)
        return ls_err_set(err, LS_ERR_INVALID, "the pipeline needs at least 2 MPI ranks (1 was started): launch "
                          "with mpirun -np 1 layerskipd ... : -np 1 layerskip-worker, or run without a pipeline");

    lsw_pipeline *pl = calloc(1, sizeof *pl);
    if (!pl) return ls_err_set(err, LS_ERR_NOMEM, "out of memory");
    pthread_mutex_init(&pl->netlock, NULL);
    pthread_cond_init(&pl->mail_cv, NULL);
    pl->poller = -1;
    pthread_mutex_init(&pl->fwd_mu, NULL);
    pthread_cond_init(&pl->fwd_cv, NULL);
    pthread_mutex_init(&pl->faillock, NULL);
    atomic_init(&pl->broken, false);
    pl->comm = comm;
    pl->size = size;
    pl->opt = *o;
    snprintf(pl->model_path, sizeof pl->model_path, "%s", o->model_path);
    pl->opt.model_path = pl->model_path;
    pl->opt.model = NULL;
    pl->opt.stages = NULL;
    pl->opt.trace_prefix = NULL;
    lsw_net_init(&pl->net, comm, o->timeout_s);
    pl->net.layout = &pl->layout;
    if (o->model) {
        pl->model = o->model;
    } else {
        st = ls_model_load(o->model_path, &pl->own_model, err);
        pl->model = pl->own_model;
    }
    if (st != LS_OK) goto fail_local;
    pl->cfg = ls_model_config(pl->model);
    pl->tok = ls_model_tokenizer(pl->model);
    const int L = pl->cfg->n_layers;
    if (o->stages)
        st = lsw_layout_parse(o->stages, L, size, &pl->layout, err);
    else if (o->exit_layer <= 0)
        st = ls_err_set(err, LS_ERR_INVALID, "no pipeline layout: give --stages (like \"0-8,8-30\") or an exit "
                        "layer to split [E, %d) over the %d verifier ranks", L, size - 1);
    else
        st = lsw_layout_split(o->exit_layer, L, size, &pl->layout, err);
    if (st == LS_OK && o->stages && o->exit_layer > 0) st = lsw_layout_check(&pl->layout, size, o->exit_layer, err);
    if (st != LS_OK) goto fail_local;

    lsw_config_msg cm = {.protocol = LSW_PROTOCOL, .n_ctx = o->n_ctx, .max_slots = o->max_slots,
                         .max_batch = o->max_batch, .n_threads = o->n_threads, .exact = !o->fast_math,
                         .timeout_s = o->timeout_s, .layout = pl->layout, .n_layers = L, .dim = pl->cfg->dim,
                         .n_vocab = pl->cfg->n_vocab};
    snprintf(cm.model_path, sizeof cm.model_path, "%s", o->model_path);
    if (o->trace_prefix) snprintf(cm.trace_prefix, sizeof cm.trace_prefix, "%s", o->trace_prefix);
    st = lsw_model_fingerprint(o->model_path, &cm.fingerprint, err);
    if (st != LS_OK) goto fail_local;
    lsw_limits lim = {.dim = pl->cfg->dim, .n_vocab = pl->cfg->n_vocab, .n_ctx = o->n_ctx,
                      .max_slots = o->max_slots, .max_batch = o->max_batch};
    lsw_net_set_limits(&pl->net, &lim);
    /* any value other workers' leftovers cannot carry: the wall clock */
    pl->net.epoch = (int32_t)(lsw_now_us() & 0x7fffffff);

    /* local stage: per slot a ctx, KV and buffers; page in own weights */
    const int E = lsw_layout_exit_layer(&pl->layout);
    pl->slots = calloc((size_t)o->max_slots, sizeof *pl->slots);
    if (!pl->slots) {
        st = ls_err_set(err, LS_ERR_NOMEM, "out of memory for the drafter stage");
        goto fail_local;
    }
    for (int s = 0; s < o->max_slots && st == LS_OK; s++) {
        lsw_slot *sl = &pl->slots[s];
        st = ls_ctx_create(pl->model, o->n_threads, o->max_batch, &sl->ctx, err);
        if (st != LS_OK) break;
        ls_ctx_set_exact(sl->ctx, !o->fast_math);
        sl->box_cap = 4 * MAX_INFLIGHT;
        sl->h = malloc(sizeof(float) * (size_t)o->max_batch * (size_t)pl->cfg->dim);
        sl->logits = malloc(sizeof(float) * (size_t)pl->cfg->n_vocab);
        sl->hist = malloc(sizeof(int32_t) * ((size_t)o->n_ctx + LS_MAX_SPECULATIONS + 2));
        sl->box = malloc(sizeof(mail) * (size_t)sl->box_cap);
        if (!sl->h || !sl->logits || !sl->hist || !sl->box || ls_dist_init(&sl->dist, pl->cfg->n_vocab) != LS_OK) {
            st = ls_err_set(err, LS_ERR_NOMEM, "out of memory for the drafter stage's slot %d", s);
            break;
        }
        st = ls_kv_create(pl->model, 0, E, o->n_ctx, &sl->kv, err);
    }
    if (st == LS_OK) st = ls_ctx_create(pl->model, o->n_threads, o->max_batch, &pl->fwd_ctx, err);
    if (st == LS_OK) {
        ls_ctx_set_exact(pl->fwd_ctx, !o->fast_math);
        if (!(pl->fwd_x = malloc(sizeof(float) * (size_t)o->max_batch * (size_t)pl->cfg->dim)))
            st = ls_err_set(err, LS_ERR_NOMEM, "out of memory for the drafter stage");
    }
    if (st != LS_OK) goto fail_local;
    st = lsw_trace_open(&pl->trace, o->trace_prefix, 0, err);
    if (st != LS_OK) goto fail_local;

    /* handshake: every worker loads its layers and checks model + split */
    for (int r = 1; r < size && st == LS_OK; r++) {
        st = lsw_send_config(&pl->net, r, &cm, err);
    }
    if (st != LS_OK) goto fail_local;
    ls_model_touch(pl->model, 0, E, true, true);
    int answered = 0;
    bool hello[LSW_MAX_STAGES] = {false};
    char first_err[1024] = "";
    ls_status worker_st = LS_OK;
    while (answered < size - 1) {
        int late = 1; /* the first rank still silent */
        while (late < size - 1 && hello[late]) late++;
        lsw_msg m;
        st = wait_msg(pl, o->startup_timeout_s, late, "its answer to the setup (model loading)", &m, err);
        if (st != LS_OK) {
            fail(pl, st, err);
            lsw_pipeline_free(pl);
            return st;
        }
        if (m.h.type != LSW_MSG_HELLO || hello[m.source]) continue;
        hello[m.source] = true;
        answered++;
        pl->pids[m.source] = m.hello.pid;
        snprintf(pl->hosts[m.source], sizeof pl->hosts[m.source], "%s", m.hello.host);
        snprintf(pl->kernels[m.source], sizeof pl->kernels[m.source], "%s", m.hello.kernels);
        char who[96];
        lsw_stage_name(&pl->net, m.source, who, sizeof who);
        ls_status ws = LS_OK;
        char why[600] = "";
        if (m.hello.protocol != LSW_PROTOCOL) {
            ws = LS_ERR_UNSUPPORTED;
            snprintf(why, sizeof why, "protocol %d differs from rank 0's %d: run the same build on every rank",
                     m.hello.protocol, LSW_PROTOCOL);
        } else if (m.hello.status != LS_OK) {
            ws = (ls_status)m.hello.status;
            snprintf(why, sizeof why, "%s", m.hello.msg);
        }
        if (ws != LS_OK && worker_st == LS_OK) {
            worker_st = ws;
            snprintf(first_err, sizeof first_err, "%s: %s", who, why);
        }
    }
    if (worker_st != LS_OK) {
        ls_err_set(err, worker_st, "%s", first_err);
        ls_err cerr;
        if (close_chain(&pl->net, o->timeout_s, LSW_MSG_CLOSE, &cerr) != LS_OK)
            fprintf(stderr, "layerskip pipeline: closing the stages after a failed setup: %s\n", cerr.msg);
        atomic_store(&pl->broken, true); /* already closed */
        snprintf(pl->why, sizeof pl->why, "%s", err ? err->msg : "");
        lsw_pipeline_free(pl);
        return worker_st;
    }
    for (int r = 1; r < size; r++) pl->heard[r] = mono_s();
    *out = pl;
    return LS_OK;

fail_local:
    /* no worker holds a stage yet (a failed CONFIG send leaves the job to
     * lsw_shutdown_workers), so there is nothing to close */
    atomic_store(&pl->broken, true);
    lsw_pipeline_free(pl);
    return st;
}

/* ------------------------------------------------------------ the shared link */

/* Take everything waiting on the link (caller holds netlock): verdicts and
 * errors go to their slot's mailbox (stale ones are dropped here), pongs
 * end a ping; anything else breaks the pipeline. Then push pending sends. */
static ls_status pump(lsw_pipeline *pl, ls_err *err) {
    const int last = pl->size - 1;
    bool delivered = false;
    for (;;) {
        lsw_msg m;
        bool got = false;
        ls_status st = lsw_recv_poll(&pl->net, &m, &got, err);
        if (st != LS_OK) return fail(pl, st, err);
        if (!got) break;
        pl->heard[m.source] = mono_s();
        if (m.h.type == LSW_MSG_PONG) {
            pl->ping_sent[m.source] = 0;
            continue;
        }
        if (m.h.type == LSW_MSG_ERROR || (m.h.type == LSW_MSG_VERDICT && m.source == last)) {
            lsw_slot *sl = &pl->slots[m.h.slot];
            if (!sl->busy || m.h.generation < sl->generation) continue; /* an ended request's, or stale */
            if (sl->box_n == sl->box_cap) {
                st = ls_err_set(err, LS_ERR_FORMAT, "more than %d unanswered messages for slot %d: the stages "
                                "disagree about the protocol", sl->box_cap, m.h.slot);
                return fail(pl, st, err);
            }
            mail *ml = &sl->box[(sl->box_head + sl->box_n++) % sl->box_cap];
            ml->h = m.h;
            ml->source = m.source;
            snprintf(ml->error, sizeof ml->error, "%s", m.h.type == LSW_MSG_ERROR ? m.error : "");
            delivered = true;
            continue;
        }
        st = ls_err_set(err, LS_ERR_FORMAT, "unexpected %s message from rank %d at rank 0",
                        lsw_msg_type_name(m.h.type), m.source);
        return fail(pl, st, err);
    }
    if (delivered) pthread_cond_broadcast(&pl->mail_cv);
    ls_status st = lsw_net_progress(&pl->net, err);
    return st == LS_OK ? st : fail(pl, st, err);
}

static ls_status broken_err(lsw_pipeline *pl, ls_err *err) {
    return ls_err_set(err, LS_ERR_IO, "the pipeline is broken: %s", pl->why);
}

/* one liveness round (caller holds netlock): pump, ping each worker whose
 * last message is older than interval_s (all of them on a roll call), and
 * break the pipeline on a ping unanswered, and the stage otherwise silent,
 * for timeout_s */
static ls_status live_round(lsw_pipeline *pl, double interval_s, bool roll, ls_err *err) {
    ls_status st = pump(pl, err);
    const double now = mono_s();
    for (int r = 1; r < pl->size && st == LS_OK; r++) {
        if (pl->ping_sent[r] > 0 && !roll) {
            /* a stage busy with a long chunk answers after it: only silence counts */
            const double since = pl->ping_sent[r] > pl->heard[r] ? pl->ping_sent[r] : pl->heard[r];
            if (now - since > pl->opt.timeout_s) {
                char who[96];
                lsw_stage_name(&pl->net, r, who, sizeof who);
                st = fail(pl, ls_err_set(err, LS_ERR_IO, "%s did not answer a liveness check within %g s; the "
                                         "stage is stuck or dead: restart the job", who, pl->opt.timeout_s), err);
            }
        } else if (roll || now - pl->heard[r] >= interval_s) {
            st = lsw_send_ping(&pl->net, r, ++pl->ping_seq, err);
            if (st != LS_OK) fail(pl, st, err);
            else if (pl->ping_sent[r] == 0) pl->ping_sent[r] = now;
        }
    }
    return st;
}

static void *live_main(void *arg) {
    lsw_pipeline *pl = arg;
    const struct timespec nap = {0, 50 * 1000 * 1000};
    while (!atomic_load(&pl->live_stop) && !atomic_load(&pl->broken)) {
        const bool roll = atomic_exchange(&pl->roll_req, false);
        ls_err err = {{0}};
        pthread_mutex_lock(&pl->netlock);
        live_round(pl, atomic_load(&pl->live_interval), roll, &err);
        pthread_mutex_unlock(&pl->netlock);
        atomic_store(&pl->live_beat, mono_s());
        if (!roll) nanosleep(&nap, NULL);
    }
    return NULL;
}

static void live_start(lsw_pipeline *pl, double interval_s) {
    atomic_store(&pl->live_interval, interval_s);
    if (pl->live_started) return;
    atomic_store(&pl->live_beat, mono_s());
    pl->live_started = pthread_create(&pl->live_thread, NULL, live_main, pl) == 0;
}

/* the stages silent since t (heard from before it), as "stage 1 (...) and stage 2 (...)" */
static void silent_stages(lsw_pipeline *pl, double t, char *out, size_t len) {
    size_t n = 0;
    out[0] = 0;
    for (int r = 1; r < pl->size; r++) {
        if (atomic_load(&pl->heard[r]) >= t) continue;
        char who[96];
        lsw_stage_name(&pl->net, r, who, sizeof who);
        int k = snprintf(out + n, len - n, "%s%s", n ? " and " : "", who);
        if (k < 0 || (size_t)k >= len - n) break;
        n += (size_t)k;
    }
    if (!n) snprintf(out, len, "no stage");
}

ls_status lsw_pipeline_check(lsw_pipeline *pl, double interval_s, ls_err *err) {
    if (atomic_load(&pl->broken)) return broken_err(pl, err);
    live_start(pl, interval_s);
    if (!pl->live_started) return ls_err_set(err, LS_ERR_NOMEM, "cannot start the pipeline's liveness thread");
    const double now = mono_s(), beat = atomic_load(&pl->live_beat);
    if (now - beat > pl->opt.timeout_s) {
        /* the liveness thread is stuck in MPI, or waits for netlock held by a
         * thread stuck there: no one here can reach a stage; say who was silent */
        char who[300];
        silent_stages(pl, now - pl->opt.timeout_s, who, sizeof who);
        return fail(pl, ls_err_set(err, LS_ERR_IO, "an MPI call at rank 0 has not returned for %g s (silent as "
                                   "long: %s): a rank or its host is gone or stuck; restart the job",
                                   pl->opt.timeout_s, who), err);
    }
    return atomic_load(&pl->broken) ? broken_err(pl, err) : LS_OK;
}

bool lsw_pipeline_probe(lsw_pipeline *pl) {
    char me[64];
    lsw_hostname(me, sizeof me);
    for (int r = 1; r < pl->size && !atomic_load(&pl->broken); r++) {
        if (strcmp(pl->hosts[r], me) != 0 || pl->pids[r] <= 0) continue;
        if (kill(pl->pids[r], 0) == 0 || errno != ESRCH) continue;
        char who[96];
        lsw_stage_name(&pl->net, r, who, sizeof who);
        ls_err err;
        fail(pl, ls_err_set(&err, LS_ERR_IO, "%s is gone (its process %d exited); restart the job", who,
                            pl->pids[r]), &err);
    }
    return atomic_load(&pl->broken);
}

bool lsw_pipeline_roll_call(lsw_pipeline *pl, double wait_s) {
    if (atomic_load(&pl->broken)) return true;
    const double t0 = mono_s();
    live_start(pl, pl->live_started ? atomic_load(&pl->live_interval) : 1.0);
    atomic_store(&pl->roll_req, true);
    const struct timespec nap = {0, 5 * 1000 * 1000};
    while (!atomic_load(&pl->broken)) {
        int silent = 0;
        for (int r = 1; r < pl->size && !silent; r++)
            if (atomic_load(&pl->heard[r]) < t0) silent = r;
        if (!silent) break;
        if (mono_s() - t0 >= wait_s) {
            char who[300];
            silent_stages(pl, t0, who, sizeof who);
            ls_err err;
            fail(pl, ls_err_set(&err, LS_ERR_IO, "%s did not answer within %g s when the launcher began ending the "
                                "job (a rank or its host is gone)%s; restart the job", who, wait_s,
                                atomic_load(&pl->live_beat) < t0 ? ", and an MPI call at rank 0 was stuck" : ""),
                 &err);
            break;
        }
        nanosleep(&nap, NULL);
    }
    return atomic_load(&pl->broken);
}

/* ------------------------------------------------------------ generation */

typedef struct gen_run {
    lsw_pipeline *pl;
    lsw_slot *slot;
    int slot_id;
    const ls_gen_params *p;
    int32_t *out;
    ls_token_cb cb;
    void *user;
    ls_gen_stats *stats;
    bool done;
} gen_run;

/* ls_generate's emission rule: false when generation ends with t */
static bool emit(gen_run *g, int32_t t) {
    ls_gen_stats *s = g->stats;
    g->out[s->n_generated++] = t;
    g->done = true;
    if (!g->p->ignore_eog && ls_tokenizer_is_eog(g->pl->tok, t)) { s->finish = LS_FINISH_EOG; return false; }
    if (g->cb && !g->cb(g->user, t)) { s->finish = LS_FINISH_STOPPED; return false; }
    if (s->n_generated == g->p->n_predict) { s->finish = LS_FINISH_LENGTH; return false; }
    g->done = false;
    return true;
}

/* the slot's states sl->h as a chunk to rank 1 */
static ls_status send_chunk(gen_run *g, int32_t first_pos, int32_t count, uint32_t flags, int32_t assumed,
                            int32_t head_batch, const int32_t *tokens, const lsw_draft_q *draft_q, ls_err *err) {
    lsw_pipeline *pl = g->pl;
    if (atomic_load(&pl->broken)) return broken_err(pl, err);
    pthread_mutex_lock(&pl->netlock);
    ls_status st = lsw_send_chunk(&pl->net, 1, g->slot_id, g->slot->generation, first_pos, count, flags, assumed,
                                  head_batch,
                                  tokens, g->slot->h, draft_q, err);
    if (st == LS_OK) st = pump(pl, err);
    pthread_mutex_unlock(&pl->netlock);
    return st == LS_OK ? st : fail(pl, st, err);
}

/* move the link along while computing (MPI moves a large message only while
 * its sender is inside MPI) */
static ls_status progress(gen_run *g, ls_err *err) {
    lsw_pipeline *pl = g->pl;
    if (atomic_load(&pl->broken)) return broken_err(pl, err);
    if (pthread_mutex_trylock(&pl->netlock) != 0) return LS_OK; /* another slot is moving it */
    ls_status st = pump(pl, err);
    pthread_mutex_unlock(&pl->netlock);
    return st;
}

/* prompt tokens [0, n) through layers [0, E), sent as prefill chunks of
 * about a quarter of the prompt (at least 8 positions, at most max_batch),
 * so the next stage starts on the first while this one runs the rest */
/* the prompt's layers [0, E) here (their states to the drafter d, if any),
 * the rest on the stages */
/* Positions [pos, pos+n) of a slot through layers [0, E), h in place. The
 * slots' threads combine: requests wait in a list, and whichever thread
 * finds no batch running takes the oldest ones (up to max_batch positions)
 * and runs them in one ls_forward_multi on the shared context, so one read
 * of the stage's weights serves every waiting request; exact mode keeps each
 * row what it is alone. The thread returns once its own request ran. */
static ls_status stage0_forward(lsw_pipeline *pl, ls_kv *kv, int pos, int n, float *h, ls_err *err) {
    const int B = pl->opt.max_batch, E = lsw_layout_exit_layer(&pl->layout);
    const size_t D = (size_t)pl->cfg->dim;
    fwd_req me = {.kv = kv, .pos = pos, .n = n, .h = h, .st = LS_OK, .err = err};
    pthread_mutex_lock(&pl->fwd_mu);
    fwd_req **tail = &pl->fwd_head;
    while (*tail) tail = &(*tail)->next;
    *tail = &me;
    while (!me.done) {
        if (pl->fwd_leader) {
            pthread_cond_wait(&pl->fwd_cv, &pl->fwd_mu);
            continue;
        }
        pl->fwd_leader = true;
        fwd_req *batch[LSW_MAX_SLOTS_BATCH];
        ls_seq_slice seqs[LSW_MAX_SLOTS_BATCH];
        int nb = 0, rows = 0;
        while (pl->fwd_head && nb < LSW_MAX_SLOTS_BATCH && (nb == 0 || rows + pl->fwd_head->n <= B)) {
            fwd_req *r = pl->fwd_head;
            pl->fwd_head = r->next;
            r->next = NULL;
            seqs[nb] = (ls_seq_slice){r->kv, r->pos, r->n};
            batch[nb++] = r;
            rows += r->n;
        }
        pthread_mutex_unlock(&pl->fwd_mu);
        rows = 0;
        for (int i = 0; i < nb; i++) {
            memcpy(pl->fwd_x + (size_t)rows * D, batch[i]->h, sizeof(float) * D * (size_t)batch[i]->n);
            rows += batch[i]->n;
        }
        ls_err e;
        ls_status st = ls_forward_multi(pl->fwd_ctx, seqs, nb, 0, E, pl->fwd_x, &e);
        rows = 0;
        for (int i = 0; i < nb; i++) {
            if (st == LS_OK) memcpy(batch[i]->h, pl->fwd_x + (size_t)rows * D, sizeof(float) * D * (size_t)batch[i]->n);
            else if (batch[i]->err) *batch[i]->err = e;
            rows += batch[i]->n;
        }
        pthread_mutex_lock(&pl->fwd_mu);
        for (int i = 0; i < nb; i++) {
            batch[i]->st = st;
            batch[i]->done = true;
        }
        pl->fwd_leader = false;
        pthread_cond_broadcast(&pl->fwd_cv);
    }
    pthread_mutex_unlock(&pl->fwd_mu);
    return me.st;
}

static ls_status prefill(gen_run *g, ls_drafter *d, const int32_t *prompt, int n, ls_err *err) {
    lsw_pipeline *pl = g->pl;
    lsw_slot *sl = g->slot;
    int B = (n + 3) / 4;
    if (B < 8) B = 8;
    if (B > pl->opt.max_batch) B = pl->opt.max_batch;
    for (int done = 0; done < n;) {
        int nb = n - done < B ? n - done : B;
        int64_t t0 = lsw_now_us();
        ls_status st = ls_embed(sl->ctx, prompt + done, nb, sl->h, err);
        if (st == LS_OK) st = stage0_forward(pl, sl->kv, done, nb, sl->h, err);
        if (st == LS_OK && d) st = ls_drafter_feed(d, done, nb, sl->h, err);
        if (st != LS_OK) return st;
        st = send_chunk(g, done, nb, LSW_CHUNK_PREFILL, -1, 0, prompt + done, NULL, err);
        if (st != LS_OK) return st;
        lsw_trace_span(&pl->trace, "prefill", g->slot_id, g->slot->generation, done, nb, t0, lsw_now_us());
        done += nb;
    }
    return LS_OK;
}

/* the next verdict of the current generation (stale ones are dropped);
 * a worker's ERROR fails the request */
/* the slot's next mail of its current generation (stale ones are skipped);
 * caller holds netlock */
static bool pop_mail(lsw_slot *sl, mail *ml) {
    while (sl->box_n > 0) {
        *ml = sl->box[sl->box_head];
        sl->box_head = (sl->box_head + 1) % sl->box_cap;
        sl->box_n--;
        if (ml->h.generation == sl->generation || ml->h.type == LSW_MSG_ERROR) return true;
    }
    return false;
}

/* The next verdict of the slot's current generation; a worker's ERROR fails
 * the request. Waiting slots do not all poll MPI: one of them at a time is
 * the poller (naps between polls and delivers every slot's mail), the
 * others sleep on mail_cv until the poller (or a drafting slot's pump)
 * delivers theirs, and take the role over when it is free. */
static ls_status next_verdict(gen_run *g, bool block, lsw_msg *m, bool *got, ls_err *err) {
    lsw_pipeline *pl = g->pl;
    lsw_slot *sl = g->slot;
    const int last = pl->size - 1;
    const int64_t t0 = lsw_now_us();
    const double w0 = mono_s();
    *got = false;
    mail ml;
    bool have = false;
    ls_status st = LS_OK;
    pthread_mutex_lock(&pl->netlock);
    for (;;) {
        if (atomic_load(&pl->broken)) { st = broken_err(pl, err); break; }
        if ((have = pop_mail(sl, &ml))) break;
        if (!block || pl->poller < 0 || pl->poller == g->slot_id) {
            if (block) pl->poller = g->slot_id;
            if ((st = pump(pl, err)) != LS_OK) break;
            if ((have = pop_mail(sl, &ml)) || !block) break;
        }
        /* the last stage may be busy with other slots' chunks: only its
         * silence for timeout_s counts */
        const double heard = pl->heard[last], since = heard > w0 ? heard : w0;
        if (mono_s() - since > pl->opt.timeout_s) {
            char who[96];
            lsw_stage_name(&pl->net, last, who, sizeof who);
            st = fail(pl, ls_err_set(err, LS_ERR_IO, "%s did not answer within %g s (waiting for the verdict on "
                                     "slot %d); a stage is stuck or dead: restart the job", who, pl->opt.timeout_s,
                                     g->slot_id), err);
            break;
        }
        if (pl->poller == g->slot_id) {
            pthread_mutex_unlock(&pl->netlock);
            idle_wait();
            pthread_mutex_lock(&pl->netlock);
        } else {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_nsec += 2000000; /* 2 ms: re-check the timeout and the poller role */
            if (until.tv_nsec >= 1000000000) { until.tv_sec++; until.tv_nsec -= 1000000000; }
            pthread_cond_timedwait(&pl->mail_cv, &pl->netlock, &until);
        }
    }
    if (pl->poller == g->slot_id) { /* hand the role over */
        pl->poller = -1;
        pthread_cond_broadcast(&pl->mail_cv);
    }
    pthread_mutex_unlock(&pl->netlock);
    if (st != LS_OK || !have) return st;
    if (ml.h.type == LSW_MSG_ERROR) {
        char who[96];
        lsw_stage_name(&pl->net, ml.source, who, sizeof who);
        return ls_err_set(err, LS_ERR_IO, "%s: %s", who, ml.error);
    }
    m->source = ml.source;
    m->h = ml.h;
    *got = true;
    if (block) lsw_trace_span(&pl->trace, "wait", g->slot_id, sl->generation, m->h.first_pos, 0, t0, lsw_now_us());
    return LS_OK;
}

/* a rejection: later chunks of this slot are stale (under netlock, so the
 * mailbox drops their verdicts on arrival) */
static void next_generation(gen_run *g) {
    pthread_mutex_lock(&g->pl->netlock);
    g->slot->generation++;
    pthread_mutex_unlock(&g->pl->netlock);
}

static ls_status generate_autoregressive(gen_run *g, const int32_t *prompt, int n_prompt, ls_err *err) {
    lsw_pipeline *pl = g->pl;
    double t0 = ls_time_ms();
    ls_status st = prefill(g, NULL, prompt, n_prompt - 1, err);
    g->stats->prefill_ms = ls_time_ms() - t0;
    double t1 = ls_time_ms();
    int32_t tok = prompt[n_prompt - 1];
    int pos = n_prompt - 1;
    while (st == LS_OK) {
        int64_t s0 = lsw_now_us();
        st = ls_embed(g->slot->ctx, &tok, 1, g->slot->h, err);
        if (st == LS_OK) st = stage0_forward(pl, g->slot->kv, pos, 1, g->slot->h, err);
        if (st == LS_OK) st = send_chunk(g, pos, 1, 0, -1, 0, &tok, NULL, err);
        if (st != LS_OK) break;
        lsw_trace_span(&pl->trace, "forward", g->slot_id, g->slot->generation, pos, 1, s0, lsw_now_us());
        lsw_msg m;
        bool got;
        st = next_verdict(g, true, &m, &got, err);
        if (st != LS_OK) break;
        if (m.h.first_pos != pos) {
            st = fail(pl, ls_err_set(err, LS_ERR_FORMAT, "verdict for position %d, expected %d", m.h.first_pos, pos),
                      err);
            break;
        }
        tok = m.h.next;
        if (!emit(g, tok)) break;
        pos++;
        if (pos >= pl->opt.n_ctx) { g->stats->finish = LS_FINISH_CONTEXT; break; }
    }
    g->stats->decode_ms = ls_time_ms() - t1;
    return st;
}

typedef struct flight {
    int32_t p;          /* first position */
    double sent_ms;     /* when it went to the stages */
    ls_draft_chunk ch;  /* tokens[0] at p, then ch.m drafts; ch.guess: the assumed next (-1 none) */
} flight;

/* the drafter's hook between positions: move the link along, and give up
 * the chunk being drafted once the verdict on the oldest chunk in flight
 * rejects (the chunk is stale already) */
typedef struct draft_watch {
    gen_run *g;
    const flight *fl;
    int fl_head, fl_n;
} draft_watch;

/* Has the verdict on the oldest chunk in flight arrived, and does it reject
 * (so the chunk being drafted is already stale)? */
static bool oldest_rejected(gen_run *g, const flight *f) {
    lsw_pipeline *pl = g->pl;
    lsw_slot *sl = g->slot;
    bool rejected = false;
    pthread_mutex_lock(&pl->netlock);
    for (int i = 0; i < sl->box_n && !rejected; i++) {
        const mail *ml = &sl->box[(sl->box_head + i) % sl->box_cap];
        if (ml->h.type == LSW_MSG_ERROR) rejected = true;
        else if (ml->h.generation == sl->generation && ml->h.first_pos == f->p)
            rejected = lsw_chunk_rejected(f->ch.m, f->ch.guess, ml->h.accepted, ml->h.next);
    }
    pthread_mutex_unlock(&pl->netlock);
    return rejected;
}

static ls_status watch_hook(void *user, bool *abandon, ls_err *err) {
    draft_watch *w = user;
    /* MPI moves a large message only while its sender is inside MPI: without
     * this the next stage could not take the chunk sent before until this
     * one is drafted, and would idle */
    ls_status st = progress(w->g, err);
    if (st == LS_OK && w->fl_n > 0 && oldest_rejected(w->g, &w->fl[w->fl_head])) *abandon = true;
    return st;
}

static ls_status generate_speculative(gen_run *g, const int32_t *prompt, int n_prompt, ls_err *err) {
    lsw_pipeline *pl = g->pl;
    const ls_gen_params *p = g->p;
    ls_gen_stats *stats = g->stats;
    const int E = lsw_layout_exit_layer(&pl->layout), n_ctx = pl->opt.n_ctx;
    const bool sampling = p->sampling.temperature > 0;
    lsw_slot *sl = g->slot;
    int32_t *hist = sl->hist; /* token at each position, drafts included */
    memcpy(hist, prompt, sizeof(int32_t) * (size_t)n_prompt);
    ls_rng rng;
    ls_rng_seed(&rng, p->sampling.seed);

    flight *fl = malloc(sizeof(flight) * MAX_INFLIGHT);
    lsw_draft_q *qs = malloc(sizeof(lsw_draft_q) * LS_MAX_SPECULATIONS);
    ls_drafter *d = NULL;
    ls_status st = fl && qs ? LS_OK : ls_err_set(err, LS_ERR_NOMEM, "out of memory for drafting");
    if (st == LS_OK) st = ls_drafter_create(sl->ctx, sl->kv, p, n_ctx, &d, err);
    draft_watch watch = {.g = g, .fl = fl};
    if (st == LS_OK) ls_drafter_set_hook(d, watch_hook, &watch);

    double t0 = ls_time_ms();
    if (st == LS_OK) st = prefill(g, d, prompt, n_prompt - 1, err);
    stats->prefill_ms = ls_time_ms() - t0;
    double t1 = ls_time_ms();

    int fl_head = 0, fl_n = 0;
    int d_pos = n_prompt - 1;        /* where the next chunk starts */
    int32_t d_tok = prompt[n_prompt - 1];
    bool d_stop = false;             /* the last chunk assumed no continuation */
    int assumed = 0;                 /* tokens the in-flight chunks emit if fully accepted */
    while (st == LS_OK && !g->done) {
        const int remaining = p->n_predict - stats->n_generated - assumed;
        if (!d_stop && fl_n < pl->opt.max_inflight && d_pos < n_ctx && remaining >= 1) {
            /* draft one chunk: d_tok at d_pos, then up to k_max drafts */
            int k_max = remaining - 1;
            if (k_max > n_ctx - 1 - d_pos) k_max = n_ctx - 1 - d_pos;
            flight *f = &fl[(fl_head + fl_n) % MAX_INFLIGHT];
            f->p = d_pos;
            watch.fl_head = fl_head;
            watch.fl_n = fl_n;
            int64_t s0 = lsw_now_us();
            st = ls_drafter_draft(d, &rng, d_pos, d_tok, k_max, true, hist, sl->h, &f->ch, err);
            if (st != LS_OK) break;
            const int m = f->ch.m;
            if (f->ch.abandoned) {
                /* not sent; the rejection below rolls the cache back past it */
                lsw_trace_span(&pl->trace, "abandon", g->slot_id, sl->generation, d_pos, m + 1, s0, lsw_now_us());
            } else {
                /* no continuation past the tokens asked for or the context */
                if (remaining - (m + 1) < 1 || d_pos + m + 1 >= n_ctx) f->ch.guess = -1;
                uint32_t flags = LSW_CHUNK_SPECULATIVE;
                if (sampling && m > 0) {
                    flags |= LSW_CHUNK_DRAFT_Q;
                    for (int i = 0; i < m; i++) {
                        qs[i].n = f->ch.q_n[i];
                        memcpy(qs[i].ids, f->ch.q_ids[i], sizeof qs[i].ids);
                        memcpy(qs[i].p, f->ch.q_p[i], sizeof qs[i].p);
                    }
                }
                f->sent_ms = ls_time_ms();
                st = send_chunk(g, d_pos, m + 1, flags, f->ch.guess, f->ch.head_batch, f->ch.tokens, qs, err);
                if (st != LS_OK) break;
                lsw_trace_span(&pl->trace, "draft", g->slot_id, g->slot->generation, d_pos, m + 1, s0, lsw_now_us());
                fl_n++;
                assumed += m + 1;
                d_pos += m + 1;
                d_tok = f->ch.guess;
                if (d_tok < 0) d_stop = true;
                else if (d_pos < n_ctx + LS_MAX_SPECULATIONS) hist[d_pos] = d_tok;
            }
        } else if (fl_n == 0) {
            /* nothing to verify and nothing more to draft: the context is full */
            stats->finish = LS_FINISH_CONTEXT;
            break;
        }

        /* verdicts: take what is there; block only when drafting cannot go on */
        const bool can_draft = !d_stop && fl_n < pl->opt.max_inflight && d_pos < n_ctx &&
                               p->n_predict - stats->n_generated - assumed >= 1;
        lsw_msg vm;
        bool got = false;
        st = next_verdict(g, !can_draft, &vm, &got, err);
        if (st != LS_OK || !got) continue;
        flight *f = &fl[fl_head];
        const int n = vm.h.accepted;
        const int32_t next = vm.h.next;
        if (fl_n == 0 || vm.h.first_pos != f->p || n > f->ch.m) {
            st = fail(pl, ls_err_set(err, LS_ERR_FORMAT, "verdict for position %d (%d accepted) does not match the "
                                     "oldest chunk in flight (position %d, %d drafts)", vm.h.first_pos, n,
                                     fl_n ? f->p : -1, fl_n ? f->ch.m : -1), err);
            break;
        }
        fl_head = (fl_head + 1) % MAX_INFLIGHT;
        fl_n--;
        ls_drafter_observe(d, &f->ch, n, ls_time_ms() - f->sent_ms);
        ls_spec_stats_add(stats, &f->ch, n);
        bool more = true;
        for (int i = 0; more && i < n; i++) more = emit(g, f->ch.tokens[1 + i]);
        if (more) more = emit(g, next);
        if (!more) break;
        const int conf = f->p + n + 1; /* position of `next`, not cached yet */
        if (lsw_chunk_rejected(f->ch.m, f->ch.guess, n, next)) {
            next_generation(g);
            fl_n = 0;
            assumed = 0;
            d_pos = conf;
            d_tok = next;
            d_stop = false;
            ls_kv_truncate(g->slot->kv, 0, E, conf);
            ls_drafter_rollback(d, conf);
            if (conf < n_ctx) hist[conf] = next;
        } else {
            assumed -= f->ch.m + 1;
        }
        if (conf >= n_ctx) { stats->finish = LS_FINISH_CONTEXT; break; }
    }
    stats->decode_ms = ls_time_ms() - t1;
    ls_drafter_free(d);
    free(fl);
    free(qs);
    return st;
}

/* layers [0, E) + head on rank 0 alone: no stage takes part */
static ls_status generate_early_exit(gen_run *g, const int32_t *prompt, int n_prompt, ls_err *err) {
    lsw_pipeline *pl = g->pl;
    const ls_gen_params *p = g->p;
    const int B = pl->opt.max_batch, D = pl->cfg->dim,
              V = pl->cfg->n_vocab;
    lsw_slot *sl = g->slot;
    int32_t *hist = sl->hist;
    memcpy(hist, prompt, sizeof(int32_t) * (size_t)n_prompt);
    ls_rng rng;
    ls_rng_seed(&rng, p->sampling.seed);
    double t0 = ls_time_ms();
    ls_status st = LS_OK;
    for (int done = 0; done < n_prompt && st == LS_OK; done += B) {
        int nb = n_prompt - done < B ? n_prompt - done : B;
        st = ls_embed(sl->ctx, prompt + done, nb, sl->h, err);
        if (st == LS_OK) st = stage0_forward(pl, sl->kv, done, nb, sl->h, err);
        if (st == LS_OK && done + nb == n_prompt)
            st = ls_exit_head(sl->ctx, sl->h + (size_t)(nb - 1) * D, 1, sl->logits, err);
    }
    double t1 = ls_time_ms();
    g->stats->prefill_ms = t1 - t0;
    int pos = n_prompt;
    while (st == LS_OK && g->stats->n_generated < p->n_predict) {
        int32_t t = ls_sample(&p->sampling, &rng, sl->logits, V, hist, pos, &sl->dist);
        if (!emit(g, t)) break;
        if (pos >= pl->opt.n_ctx) { g->stats->finish = LS_FINISH_CONTEXT; break; }
        hist[pos] = t;
        st = ls_embed(sl->ctx, &t, 1, sl->h, err);
        if (st == LS_OK) st = stage0_forward(pl, sl->kv, pos, 1, sl->h, err);
        if (st == LS_OK) st = ls_exit_head(sl->ctx, sl->h, 1, sl->logits, err);
        pos++;
    }
    g->stats->decode_ms = ls_time_ms() - t1;
    return st;
}

ls_status lsw_generate(lsw_pipeline *pl, int slot, const int32_t *prompt, int n_prompt, const ls_gen_params *p,
                       int32_t *out_tokens, ls_token_cb cb, void *user, ls_gen_stats *stats, ls_err *err) {
    memset(stats, 0, sizeof *stats);
    stats->n_prompt = n_prompt;
    stats->finish = LS_FINISH_LENGTH;
    const int L = pl->cfg->n_layers, E = lsw_layout_exit_layer(&pl->layout);
    ls_status st = ls_gen_params_check(p, L, err);
    if (st != LS_OK) return st;
    if (slot < 0 || slot >= pl->opt.max_slots)
        return ls_err_set(err, LS_ERR_INVALID, "slot %d is out of range [0, %d) (raise the pipeline's max_slots)",
                          slot, pl->opt.max_slots);
    if (n_prompt < 1) return ls_err_set(err, LS_ERR_INVALID, "empty prompt: nothing to process");
    if (n_prompt > pl->opt.n_ctx)
        return ls_err_set(err, LS_ERR_RANGE, "prompt of %d tokens does not fit the context of %d (raise --ctx)",
                          n_prompt, pl->opt.n_ctx);
    for (int i = 0; i < n_prompt; i++)
        if (prompt[i] < 0 || prompt[i] >= pl->cfg->n_vocab)
            return ls_err_set(err, LS_ERR_INVALID, "prompt token %d at index %d is not in the vocabulary [0, %d)",
                              prompt[i], i, pl->cfg->n_vocab);
    if (p->strategy != LS_STRATEGY_AUTOREGRESSIVE && p->exit_layer != E)
        return ls_err_set(err, LS_ERR_INVALID, "exit_layer %d differs from the pipeline's drafter stage, which "
                          "ends at layer %d: use exit_layer %d or restart the pipeline with --stages \"0-%d,...\"",
                          p->exit_layer, E, E, p->exit_layer);
    if (p->strategy == LS_STRATEGY_SELF_SPECULATIVE && p->num_speculations + 1 > pl->opt.max_batch)
        return ls_err_set(err, LS_ERR_INVALID, "num_speculations %d needs a pipeline max_batch >= %d (it has %d)",
                          p->num_speculations, p->num_speculations + 1, pl->opt.max_batch);

    if (atomic_load(&pl->broken)) return broken_err(pl, err);
    lsw_precise_sleeps(); /* this thread polls for verdicts */
    lsw_slot *sl = &pl->slots[slot];
    pthread_mutex_lock(&pl->netlock);
    if (sl->busy) {
        pthread_mutex_unlock(&pl->netlock);
        return ls_err_set(err, LS_ERR_INVALID, "slot %d is already generating: one request per slot at a time",
                          slot);
    }
    sl->busy = true;
    sl->box_n = 0;
    pthread_mutex_unlock(&pl->netlock);
    gen_run g = {.pl = pl, .slot = sl, .slot_id = slot, .p = p, .out = out_tokens, .cb = cb, .user = user,
                 .stats = stats};
    ls_kv_truncate(sl->kv, 0, E, 0);
    if (p->n_predict == 0) {
        /* nothing */
    } else if (p->strategy == LS_STRATEGY_EARLY_EXIT) {
        st = generate_early_exit(&g, prompt, n_prompt, err);
    } else {
        lsw_start_msg sm = {.strategy = (int32_t)p->strategy, .num_speculations = p->num_speculations,
                            .sampling = p->sampling};
        pthread_mutex_lock(&pl->netlock);
        sl->generation++;
        st = lsw_send_start(&pl->net, 1, slot, sl->generation, &sm, err);
        pthread_mutex_unlock(&pl->netlock);
        if (st != LS_OK) fail(pl, st, err);
        else if (p->strategy == LS_STRATEGY_AUTOREGRESSIVE) st = generate_autoregressive(&g, prompt, n_prompt, err);
        else st = generate_speculative(&g, prompt, n_prompt, err);
    }
    pthread_mutex_lock(&pl->netlock);
    sl->busy = false;
    sl->box_n = 0;
    pthread_mutex_unlock(&pl->netlock);
    return st;
}
