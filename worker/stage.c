/* stage.c: the verifier stages (ranks 1..N-1, pipeline.h lsw_worker_run).
 *
 * Each rank waits for CONFIG, loads the model (only its own layers are paged
 * in), checks it matches rank 0's (fingerprint.h) and the split, and answers
 * HELLO. Then it serves its links: chunks from the previous rank are queued;
 * a chunk of a generation below the slot's floor is stale and dropped, as
 * early as it is seen (on arrival, and again when the floor rises). The
 * oldest waiting chunks of all slots run together, in one forward pass
 * through layers [l0, l1) (so concurrent requests share each read of the
 * weights), each after cutting its KV back to its first position (that is
 * the rollback). A middle stage passes the states on; the
 * last stage runs the head and applies the acceptance rule (greedy: longest
 * prefix equal to the argmax, plus one token; sampling: speculative
 * sampling over distributions recomputed from the exit states), answers
 * rank 0 with a verdict and, on a rejection, raises the floor here and on
 * the middle stages (NOTICE). */
#include "pipeline.h"

#include "fingerprint.h"
#include "msg.h"
#include "trace.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LSW_STAGE_BATCH 64 /* chunks in one forward pass, at most (and at most max_batch positions) */

typedef struct job {
    lsw_hdr h;
    int32_t *tokens;      /* (count) */
    float *states;        /* (count, dim) */
    lsw_draft_q *draft_q; /* (count - 1) sampled drafts' distributions, or NULL */
    struct job *next;
} job;

typedef struct stage_slot {
    ls_kv *kv;            /* layers [l0, l1) */
    int32_t floor;        /* chunks of lower generations are stale */
    bool started;
    lsw_start_msg start;
    ls_rng rng;           /* last stage: verification draws */
    int32_t *hist;        /* last stage: (n_ctx + LS_MAX_SPECULATIONS + 2) token at each position */
} stage_slot;

typedef struct stage {
    lsw_net *net;
    lsw_config_msg cfg;
    const lsw_worker_options *wo;
    int l0, l1;
    bool last;
    ls_model *model;
    ls_ctx *ctx;
    stage_slot *slots;
    job *q_head, *q_tail;
    ls_spec_scratch sc;   /* last: the rule's scratch */
    ls_draft_chunk *chunk;/* last: the chunk being decided */
    float *x;             /* (max_batch, dim) the states of a batch */
    lsw_trace trace;
} stage;

static void job_free(job *j) {
    if (!j) return;
    free(j->tokens);
    free(j->states);
    free(j->draft_q);
    free(j);
}

static void stage_free(stage *s) {
    for (job *j = s->q_head, *nx; j; j = nx) {
        nx = j->next;
        job_free(j);
    }
    s->q_head = s->q_tail = NULL;
    for (int i = 0; s->slots && i < s->cfg.max_slots; i++) {
        ls_kv_free(s->slots[i].kv);
        free(s->slots[i].hist);
    }
    free(s->slots);
    s->slots = NULL;
    ls_spec_scratch_free(&s->sc);
    free(s->chunk);
    s->chunk = NULL;
    free(s->x);
    s->x = NULL;
    ls_ctx_free(s->ctx);
    s->ctx = NULL;
    ls_model_free(s->model);
    s->model = NULL;
    lsw_trace_close(&s->trace);
}

static ls_status stage_setup(stage *s, ls_err *err) {
    const lsw_config_msg *c = &s->cfg;
    const int rank = s->net->rank;
    const char *path = s->wo->model_path ? s->wo->model_path : c->model_path;
    ls_status st = lsw_layout_check(&c->layout, s->net->size, 0, err);
    if (st != LS_OK) return st;
    s->l0 = c->layout.l0[rank];
    s->l1 = c->layout.l1[rank];
    s->last = rank == s->net->size - 1;
    if (s->wo->stages) {
        lsw_layout mine;
        st = lsw_layout_parse(s->wo->stages, c->n_layers, s->net->size, &mine, err);
        if (st != LS_OK) return st;
        if (!lsw_layout_equal(&mine, &c->layout)) {
            char a[512], b[512];
            lsw_layout_format(&mine, a, sizeof a);
            lsw_layout_format(&c->layout, b, sizeof b);
            return ls_err_set(err, LS_ERR_INVALID, "this rank was started with --stages \"%s\" but rank 0 uses "
                              "\"%s\": give every rank the same --stages (or none to the workers)", a, b);
        }
    }
    uint64_t fp = 0;
    st = lsw_model_fingerprint(path, &fp, err);
    if (st != LS_OK) return st;
    if (fp != c->fingerprint)
        return ls_err_set(err, LS_ERR_INVALID, "the model at %s is not the file rank 0 loaded (%s): size, header or "
                          "tensor table differ (fingerprint %016llx vs %016llx); copy the same model to every host",
                          path, c->model_path, (unsigned long long)fp, (unsigned long long)c->fingerprint);
    st = ls_model_load(path, &s->model, err);
    if (st != LS_OK) return st;
    const ls_config *mc = ls_model_config(s->model);
    if (mc->n_layers != c->n_layers || mc->dim != c->dim || mc->n_vocab != c->n_vocab)
        return ls_err_set(err, LS_ERR_INVALID, "the model at %s has %d layers, hidden size %d, vocabulary %d; rank 0's "
                          "has %d, %d, %d: use the same model on every rank", path, mc->n_layers, mc->dim,
                          mc->n_vocab, c->n_layers, c->dim, c->n_vocab);
    const int n_threads = s->wo->n_threads > 0 ? s->wo->n_threads : c->n_threads;
    st = ls_ctx_create(s->model, n_threads, c->max_batch, &s->ctx, err);
    if (st != LS_OK) return st;
    ls_ctx_set_exact(s->ctx, c->exact != 0);
    if (!(s->x = malloc(sizeof(float) * (size_t)c->max_batch * (size_t)c->dim)))
        return ls_err_set(err, LS_ERR_NOMEM, "out of memory");
    s->slots = calloc((size_t)c->max_slots, sizeof *s->slots);
    if (!s->slots) return ls_err_set(err, LS_ERR_NOMEM, "out of memory");
    for (int i = 0; i < c->max_slots; i++) {
        st = ls_kv_create(s->model, s->l0, s->l1, c->n_ctx, &s->slots[i].kv, err);
        if (st != LS_OK) return st;
        if (s->last && !(s->slots[i].hist = malloc(sizeof(int32_t) * ((size_t)c->n_ctx + LS_MAX_SPECULATIONS + 2))))
            return ls_err_set(err, LS_ERR_NOMEM, "out of memory");
    }
    if (s->last) {
        st = ls_spec_scratch_init(&s->sc, c->n_vocab, err);
        if (st != LS_OK) return st;
        if (!(s->chunk = malloc(sizeof *s->chunk))) return ls_err_set(err, LS_ERR_NOMEM, "out of memory");
    }
    st = lsw_trace_open(&s->trace, c->trace_prefix, rank, err);
    if (st != LS_OK) return st;
    ls_model_touch(s->model, s->l0, s->l1, false, s->last);
    return LS_OK;
}

/* drop queued chunks of a slot below its floor */
static void purge(stage *s, int slot) {
    job **pp = &s->q_head;
    s->q_tail = NULL;
    while (*pp) {
        job *j = *pp;
        if (j->h.slot == slot && j->h.generation < s->slots[slot].floor) {
            *pp = j->next;
            lsw_trace_span(&s->trace, "drop", j->h.slot, j->h.generation, j->h.first_pos, j->h.count, lsw_now_us(),
                           lsw_now_us());
            job_free(j);
            continue;
        }
        s->q_tail = j;
        pp = &j->next;
    }
}

static ls_status enqueue(stage *s, const lsw_msg *m, ls_err *err) {
    const size_t n = (size_t)m->h.count, rows = n * (size_t)s->cfg.dim;
    job *j = calloc(1, sizeof *j);
    if (j) {
        j->h = m->h;
        j->tokens = malloc(n * sizeof(int32_t));
        j->states = malloc(rows * sizeof(float));
        if (m->draft_q) j->draft_q = malloc((n - 1) * sizeof(lsw_draft_q));
    }
    if (!j || !j->tokens || !j->states || (m->draft_q && !j->draft_q)) {
        job_free(j);
        return ls_err_set(err, LS_ERR_NOMEM, "out of memory for a chunk of %zu positions", n);
    }
    memcpy(j->tokens, m->tokens, n * sizeof(int32_t));
    memcpy(j->states, m->states, rows * sizeof(float));
    if (m->draft_q) memcpy(j->draft_q, m->draft_q, (n - 1) * sizeof(lsw_draft_q));
    if (s->q_tail) s->q_tail->next = j;
    else s->q_head = j;
    s->q_tail = j;
    return LS_OK;
}

/* the last stage's decision on a chunk whose states went through [l0, L):
 * the engine's rule (ls_spec_verify), with the draft distributions the
 * drafter sent */
static ls_status verify(stage *s, stage_slot *sl, const job *j, int32_t *accepted, int32_t *next, ls_err *err) {
    const int V = s->cfg.n_vocab, p0 = j->h.first_pos;
    const ls_sampling *sp = &sl->start.sampling;
    *accepted = 0;
    if (!(j->h.flags & LSW_CHUNK_SPECULATIVE)) { /* autoregressive: one token from the full model */
        ls_status st = ls_exit_head(s->ctx, j->states, 1, s->sc.logits, err);
        if (st != LS_OK) return st;
        *next = ls_sample(sp, &sl->rng, s->sc.logits, V, sl->hist, p0 + 1, &s->sc.pf);
        return LS_OK;
    }
    ls_draft_chunk *ch = s->chunk;
    ch->m = j->h.count - 1;
    ch->head_batch = j->h.accepted;
    memcpy(ch->tokens, j->tokens, sizeof(int32_t) * (size_t)j->h.count);
    if (sp->temperature > 0) {
        if (!j->draft_q && ch->m > 0)
            return ls_err_set(err, LS_ERR_FORMAT, "a sampled chunk came without its draft distributions");
        for (int i = 0; i < ch->m; i++) {
            const lsw_draft_q *q = &j->draft_q[i];
            ch->q_n[i] = q->n;
            memcpy(ch->q_ids[i], q->ids, sizeof(int32_t) * (size_t)q->n);
            memcpy(ch->q_p[i], q->p, sizeof(float) * (size_t)q->n);
        }
    }
    return ls_spec_verify(s->ctx, sp, ch, p0, j->states, sl->hist, &sl->rng, &s->sc, accepted, next, err);
}

/* a job may run: its slot started and this stage holds its earlier positions
 * (after cutting the KV back to its first position: that is the rollback) */
static ls_status job_check(stage *s, const job *j, ls_err *err) {
    stage_slot *sl = &s->slots[j->h.slot];
    const int p0 = j->h.first_pos;
    if (!sl->started)
        return ls_err_set(err, LS_ERR_FORMAT, "chunk for slot %d before its request started", j->h.slot);
    ls_kv_truncate(sl->kv, s->l0, s->l1, p0);
    if (ls_kv_len(sl->kv, s->l0) < p0)
        return ls_err_set(err, LS_ERR_FORMAT, "chunk at position %d but this stage holds only %d positions of "
                          "slot %d", p0, ls_kv_len(sl->kv, s->l0), j->h.slot);
    return LS_OK;
}

/* a job whose states went through [l0, l1): pass them on, or decide */
static ls_status job_finish(stage *s, job *j, int64_t t0, ls_err *err) {
    stage_slot *sl = &s->slots[j->h.slot];
    const int p0 = j->h.first_pos, n = j->h.count;
    ls_status st;
    if (!s->last) {
        st = lsw_send_chunk(s->net, s->net->rank + 1, j->h.slot, j->h.generation, p0, n, (uint32_t)j->h.flags,
                            j->h.next, j->h.accepted, j->tokens, j->states, j->draft_q, err);
        lsw_trace_span(&s->trace, "forward", j->h.slot, j->h.generation, p0, n, t0, lsw_now_us());
        return st;
    }
    for (int i = 0; i < n; i++) sl->hist[p0 + i] = j->tokens[i];
    if (j->h.flags & LSW_CHUNK_PREFILL) {
        lsw_trace_span(&s->trace, "prefill", j->h.slot, j->h.generation, p0, n, t0, lsw_now_us());
        return LS_OK;
    }
    int32_t acc = 0, next = -1;
    st = verify(s, sl, j, &acc, &next, err);
    if (st != LS_OK) return st;
    st = lsw_send_verdict(s->net, 0, j->h.slot, j->h.generation, p0, acc, next, err);
    lsw_trace_span(&s->trace, "verify", j->h.slot, j->h.generation, p0, n, t0, lsw_now_us());
    if (st != LS_OK) return st;
    if ((j->h.flags & LSW_CHUNK_SPECULATIVE) && lsw_chunk_rejected(n - 1, j->h.next, acc, next)) {
        /* rank 0 restarts from `next` with the next generation */
        sl->floor = j->h.generation + 1;
        purge(s, j->h.slot);
        for (int r = 1; r < s->net->rank && st == LS_OK; r++) st = lsw_send_notice(s->net, r, j->h.slot, sl->floor, err);
    }
    return st;
}

/* Take the batch to run: the oldest queued chunk of each slot (a slot's
 * chunks run in order), oldest first, while the positions fit one forward
 * call. Stale chunks are dropped on the way. Returns how many were taken. */
static int take_batch(stage *s, job **batch, int max_jobs) {
    const int B = ls_ctx_max_batch(s->ctx);
    int n = 0, rows = 0;
    job **pp = &s->q_head;
    while (*pp && n < max_jobs) {
        job *j = *pp;
        if (j->h.generation < s->slots[j->h.slot].floor) { /* stale */
            lsw_trace_span(&s->trace, "drop", j->h.slot, j->h.generation, j->h.first_pos, j->h.count, lsw_now_us(),
                           lsw_now_us());
            *pp = j->next;
            job_free(j);
            continue;
        }
        bool slot_taken = false;
        for (int i = 0; i < n; i++) slot_taken |= batch[i]->h.slot == j->h.slot;
        if (slot_taken || rows + j->h.count > B) {
            /* a later chunk of a slot already in the batch, or too many positions:
             * it waits; so does every later chunk of its slot (the break) */
            pp = &j->next;
            if (rows + j->h.count > B && n > 0) break;
            continue;
        }
        *pp = j->next;
        j->next = NULL;
        batch[n++] = j;
        rows += j->h.count;
    }
    /* the tail is the last remaining job */
    s->q_tail = NULL;
    for (job *j = s->q_head; j; j = j->next) s->q_tail = j;
    return n;
}

/* a job failed: the request fails, the stage stays up for the next one */
static ls_status job_failed(stage *s, job *j, const ls_err *jerr, ls_err *err) {
    char who[96];
    lsw_stage_name(s->net, s->net->rank, who, sizeof who);
    fprintf(stderr, "layerskip-worker %s: %s\n", who, jerr->msg);
    ls_status st = lsw_send_error(s->net, 0, j->h.slot, j->h.generation, jerr->msg, err);
    s->slots[j->h.slot].floor = j->h.generation + 1;
    return st;
}

/* Run a batch: one forward pass through [l0, l1) for the chunks of every
 * slot (ls_forward_multi: a position's result does not depend on the rest
 * of the batch), then each chunk is passed on or decided in turn. */
static ls_status run_batch(stage *s, job **batch, int n, ls_err *err) {
    const int64_t t0 = lsw_now_us();
    const size_t D = (size_t)s->cfg.dim;
    ls_seq_slice seqs[LSW_STAGE_BATCH];
    job *ok[LSW_STAGE_BATCH];
    int n_ok = 0, rows = 0;
    ls_status st = LS_OK;
    for (int i = 0; i < n && st == LS_OK; i++) {
        ls_err jerr;
        if (job_check(s, batch[i], &jerr) != LS_OK) {
            st = job_failed(s, batch[i], &jerr, err);
            continue;
        }
        seqs[n_ok] = (ls_seq_slice){s->slots[batch[i]->h.slot].kv, batch[i]->h.first_pos, batch[i]->h.count};
        memcpy(s->x + (size_t)rows * D, batch[i]->states, sizeof(float) * D * (size_t)batch[i]->h.count);
        rows += batch[i]->h.count;
        ok[n_ok++] = batch[i];
    }
    if (st != LS_OK || n_ok == 0) return st;
    ls_err ferr;
    if (ls_forward_multi(s->ctx, seqs, n_ok, s->l0, s->l1, s->x, &ferr) != LS_OK) {
        for (int i = 0; i < n_ok && st == LS_OK; i++) st = job_failed(s, ok[i], &ferr, err);
        return st;
    }
    rows = 0;
    for (int i = 0; i < n_ok && st == LS_OK; i++) {
        job *j = ok[i];
        memcpy(j->states, s->x + (size_t)rows * D, sizeof(float) * D * (size_t)j->h.count);
        rows += j->h.count;
        /* a rejection decided earlier in this batch makes a later chunk of
         * that slot stale; chunks of one slot are never in one batch */
        ls_err jerr;
        if (job_finish(s, j, t0, &jerr) != LS_OK) st = job_failed(s, j, &jerr, err);
    }
    return st;
}

/* pass CLOSE / SHUTDOWN on (the last stage acknowledges to rank 0) */
static ls_status pass_on(lsw_net *net, int type, ls_err *err) {
    const bool last = net->rank == net->size - 1;
    const int dest = last ? 0 : net->rank + 1;
    ls_status st = type == LSW_MSG_CLOSE ? lsw_send_close(net, dest, err) : lsw_send_shutdown(net, dest, err);
    return st == LS_OK ? lsw_net_flush(net, err) : st;
}

static void idle_wait(int64_t idle_since_us) {
    /* short naps while work is likely to come, longer ones when idle */
    struct timespec ts = {0, lsw_now_us() - idle_since_us < 20000 ? 20000 : 500000};
    nanosleep(&ts, NULL);
}

/* serve a configured stage until CLOSE or SHUTDOWN (returned in *type) */
static ls_status serve(stage *s, int *type, ls_err *err) {
    lsw_net *net = s->net;
    int64_t idle_since = lsw_now_us();
    for (;;) {
        ls_status st = lsw_net_progress(net, err);
        if (st != LS_OK) return st;
        bool got = true;
        while (got) { /* take everything waiting, so stale work is seen early */
            lsw_msg m;
            st = lsw_recv_poll(net, &m, &got, err);
            if (st != LS_OK) return st;
            if (!got) break;
            idle_since = lsw_now_us();
            const int t = m.h.type;
            if (t == LSW_MSG_CLOSE || t == LSW_MSG_SHUTDOWN) {
                *type = t;
                return pass_on(net, t, err);
            }
            if (t == LSW_MSG_PING && m.source == 0) { /* liveness: answered between chunks */
                st = lsw_send_pong(net, 0, m.h.next, err);
                if (st != LS_OK) return st;
                continue;
            }
            if (t == LSW_MSG_NOTICE && m.source == net->size - 1) {
                stage_slot *sl = &s->slots[m.h.slot];
                if (m.h.next > sl->floor) sl->floor = m.h.next;
                purge(s, m.h.slot);
                continue;
            }
            if (m.source != net->rank - 1 || (t != LSW_MSG_START && t != LSW_MSG_CHUNK))
                return ls_err_set(err, LS_ERR_FORMAT, "unexpected %s message from rank %d at rank %d",
                                  lsw_msg_type_name(t), m.source, net->rank);
            stage_slot *sl = &s->slots[m.h.slot];
            if (t == LSW_MSG_START) {
                if (!s->last) {
                    st = lsw_send_start(net, net->rank + 1, m.h.slot, m.h.generation, &m.start, err);
                    if (st != LS_OK) return st;
                }
                if (m.h.generation > sl->floor) sl->floor = m.h.generation;
                sl->started = true;
                sl->start = m.start;
                /* autoregressive draws follow ls_generate's stream; speculative
                 * verification has its own (the drafter draws on rank 0) */
                ls_rng_seed(&sl->rng, m.start.sampling.seed ^
                                          (m.start.strategy == LS_STRATEGY_AUTOREGRESSIVE ? 0 : 0x9e3779b97f4a7c15ull));
                ls_kv_truncate(sl->kv, s->l0, s->l1, 0);
                purge(s, m.h.slot);
                continue;
            }
            if (m.h.generation < sl->floor) {
                lsw_trace_span(&s->trace, "drop", m.h.slot, m.h.generation, m.h.first_pos, m.h.count, lsw_now_us(),
                               lsw_now_us());
                continue;
            }
            st = enqueue(s, &m, err);
            if (st != LS_OK) return st;
        }
        job *batch[LSW_STAGE_BATCH];
        const int n = take_batch(s, batch, LSW_STAGE_BATCH);
        if (n == 0) {
            idle_wait(idle_since);
            continue;
        }
        st = run_batch(s, batch, n, err);
        for (int i = 0; i < n; i++) job_free(batch[i]);
        if (st != LS_OK) return st;
        idle_since = lsw_now_us();
    }
}

ls_status lsw_worker_run(MPI_Comm comm, const lsw_worker_options *o, ls_err *err) {
    lsw_worker_options none = {0};
    if (!o) o = &none;
    lsw_net net;
    lsw_net_init(&net, comm, 10);
    lsw_precise_sleeps();
    if (net.rank == 0) {
        lsw_net_free(&net);
        return ls_err_set(err, LS_ERR_INVALID, "layerskip-worker runs on ranks 1..N-1; rank 0 is the daemon "
                          "(mpirun -np 1 layerskipd ... : -np N-1 layerskip-worker)");
    }
    ls_status st = LS_OK;
    int64_t idle_since = lsw_now_us();
    while (st == LS_OK) {
        lsw_msg m;
        bool got = false;
        st = lsw_recv_poll(&net, &m, &got, err);
        if (st != LS_OK) {
            /* a leftover of a closed pipeline that no longer decodes */
            if (o->verbose) fprintf(stderr, "layerskip-worker rank %d: ignored: %s\n", net.rank, err->msg);
            st = LS_OK;
            continue;
        }
        if (!got) {
            idle_wait(idle_since);
            continue;
        }
        idle_since = lsw_now_us();
        if (m.h.type == LSW_MSG_SHUTDOWN) {
            st = pass_on(&net, LSW_MSG_SHUTDOWN, err);
            break;
        }
        if (m.h.type == LSW_MSG_CLOSE) {
            st = pass_on(&net, LSW_MSG_CLOSE, err);
            continue;
        }
        if (m.h.type != LSW_MSG_CONFIG || m.source != 0) continue; /* left over from a closed pipeline */
        stage s = {.net = &net, .cfg = m.config, .wo = o};
        net.timeout_s = m.config.timeout_s;
        net.epoch = m.h.epoch;
        net.layout = &s.cfg.layout;
        lsw_limits lim = {.dim = m.config.dim, .n_vocab = m.config.n_vocab, .n_ctx = m.config.n_ctx,
                          .max_slots = m.config.max_slots, .max_batch = m.config.max_batch};
        lsw_net_set_limits(&net, &lim);
        ls_err serr;
        ls_status sst = stage_setup(&s, &serr);
        lsw_hello_msg hm = {.protocol = LSW_PROTOCOL, .status = sst, .pid = (int32_t)getpid(),
                            .fingerprint = m.config.fingerprint};
        lsw_hostname(hm.host, sizeof hm.host);
        snprintf(hm.kernels, sizeof hm.kernels, "%s", ls_kernel_path());
        if (sst != LS_OK) {
            snprintf(hm.msg, sizeof hm.msg, "%.500s", serr.msg);
            if (o->verbose) fprintf(stderr, "layerskip-worker rank %d: setup failed: %s\n", net.rank, serr.msg);
        }
        st = lsw_send_hello(&net, 0, &hm, err);
        if (st == LS_OK && sst == LS_OK) {
            int type = 0;
            st = serve(&s, &type, err);
            if (st == LS_OK && type == LSW_MSG_SHUTDOWN) {
                stage_free(&s);
                break;
            }
        }
        stage_free(&s);
        net.layout = NULL;
    }
    lsw_net_free(&net);
    return st;
}
