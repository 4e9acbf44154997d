/* msg.c: encoding, checking and nonblocking transport of stage messages
 * (msg.h). Encoding is the header followed by the payload's bytes: all
 * ranks run the same build on the same architecture (checked by
 * LSW_PROTOCOL and the HELLO exchange). */
#include "msg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>
#include <time.h>

struct lsw_pending {
    MPI_Request req;
    void *buf;
    int dest, type;
    double t0;           /* seconds (MPI_Wtime) when posted */
    lsw_pending *next;
};

int64_t lsw_now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void lsw_precise_sleeps(void) {
#ifdef PR_SET_TIMERSLACK
    prctl(PR_SET_TIMERSLACK, 1000UL, 0UL, 0UL, 0UL); /* 1 us */
#endif
}

void lsw_hostname(char *buf, size_t cap) {
    if (cap == 0) return;
    if (gethostname(buf, cap) != 0) buf[0] = 0;
    buf[cap - 1] = 0;
    for (char *c = buf; *c; c++)
        if (*c <= ' ' || *c > '~') *c = '?';
    if (!buf[0]) snprintf(buf, cap, "localhost");
}

const char *lsw_msg_type_name(int type) {
    switch (type) {
    case LSW_MSG_CONFIG: return "config";
    case LSW_MSG_HELLO: return "hello";
    case LSW_MSG_START: return "start";
    case LSW_MSG_CHUNK: return "chunk";
    case LSW_MSG_VERDICT: return "verdict";
    case LSW_MSG_NOTICE: return "notice";
    case LSW_MSG_ERROR: return "error";
    case LSW_MSG_CLOSE: return "close";
    case LSW_MSG_SHUTDOWN: return "shutdown";
    case LSW_MSG_PING: return "ping";
    case LSW_MSG_PONG: return "pong";
    }
    return "unknown";
}

/* ------------------------------------------------------------ decoding */

static ls_status bad(ls_err *err, int type, const char *what) {
    return ls_err_set(err, LS_ERR_FORMAT, "bad %s message from another stage: %s (are all ranks the same build?)",
                      lsw_msg_type_name(type), what);
}

static bool str_terminated(const char *s, size_t cap) { return memchr(s, '\0', cap) != NULL; }

ls_status lsw_msg_decode(const void *buf, size_t len, int tag, const lsw_limits *lim, lsw_msg *out, ls_err *err) {
    out->tokens = NULL;
    out->states = NULL;
    out->draft_q = NULL;
    if (len < sizeof(lsw_hdr))
        return ls_err_set(err, LS_ERR_FORMAT, "message of %zu bytes (tag %d) is shorter than a header (%zu bytes)",
                          len, tag, sizeof(lsw_hdr));
    memcpy(&out->h, buf, sizeof out->h);
    const lsw_hdr *h = &out->h;
    if (h->type != tag)
        return ls_err_set(err, LS_ERR_FORMAT, "message header says type %d but it came with tag %d", h->type, tag);
    const char *payload = (const char *)buf + sizeof(lsw_hdr);
    const size_t plen = len - sizeof(lsw_hdr);
    if (!lim && h->type != LSW_MSG_CONFIG && h->type != LSW_MSG_CLOSE && h->type != LSW_MSG_SHUTDOWN &&
        h->type != LSW_MSG_HELLO)
        return bad(err, h->type, "it arrived before the pipeline was configured");
    if (lim && (h->type == LSW_MSG_START || h->type == LSW_MSG_CHUNK || h->type == LSW_MSG_VERDICT ||
                h->type == LSW_MSG_NOTICE || h->type == LSW_MSG_ERROR)) {
        if (h->slot < 0 || h->slot >= lim->max_slots) return bad(err, h->type, "slot out of range");
        if (h->generation < 0) return bad(err, h->type, "negative generation");
    }
    switch (h->type) {
    case LSW_MSG_CONFIG: {
        if (plen != sizeof(lsw_config_msg)) return bad(err, h->type, "wrong size");
        memcpy(&out->config, payload, sizeof out->config);
        const lsw_config_msg *c = &out->config;
        if (c->protocol != LSW_PROTOCOL) return bad(err, h->type, "protocol version differs");
        if (!str_terminated(c->model_path, sizeof c->model_path) ||
            !str_terminated(c->trace_prefix, sizeof c->trace_prefix))
            return bad(err, h->type, "unterminated path");
        if (c->n_ctx < 1 || c->max_slots < 1 || c->max_slots > 1024 || c->max_batch < 1 || c->max_batch > 4096 ||
            c->n_threads < 1 || c->n_threads > 1024 || !(c->timeout_s > 0) || c->dim < 1 || c->n_vocab < 1 ||
            c->n_layers < 2 || c->layout.n_stages < 2 || c->layout.n_stages > LSW_MAX_STAGES)
            return bad(err, h->type, "value out of range");
        return LS_OK;
    }
    case LSW_MSG_HELLO:
        if (plen != sizeof(lsw_hello_msg)) return bad(err, h->type, "wrong size");
        memcpy(&out->hello, payload, sizeof out->hello);
        if (!str_terminated(out->hello.msg, sizeof out->hello.msg) ||
            !str_terminated(out->hello.host, sizeof out->hello.host) ||
            !str_terminated(out->hello.kernels, sizeof out->hello.kernels))
            return bad(err, h->type, "unterminated text");
        for (const char *c = out->hello.host; *c; c++)
            if (*c <= ' ' || *c > '~') return bad(err, h->type, "host name is not printable ASCII");
        for (const char *c = out->hello.kernels; *c; c++)
            if (*c <= ' ' || *c > '~') return bad(err, h->type, "kernel path is not printable ASCII");
        return LS_OK;
    case LSW_MSG_START:
        if (plen != sizeof(lsw_start_msg)) return bad(err, h->type, "wrong size");
        memcpy(&out->start, payload, sizeof out->start);
        if (out->start.strategy < 0 || out->start.strategy > 2 || out->start.num_speculations < 0 ||
            out->start.num_speculations > lim->max_batch)
            return bad(err, h->type, "value out of range");
        return ls_sampling_check(&out->start.sampling, err) == LS_OK ? LS_OK : bad(err, h->type, "bad sampling");
    case LSW_MSG_CHUNK: {
        if (h->count < 1 || h->count > lim->max_batch) return bad(err, h->type, "count out of range");
        if (h->first_pos < 0 || h->first_pos > lim->n_ctx - h->count)
            return bad(err, h->type, "positions outside the context");
        if (h->flags & ~(int32_t)(LSW_CHUNK_PREFILL | LSW_CHUNK_SPECULATIVE | LSW_CHUNK_DRAFT_Q))
            return bad(err, h->type, "unknown flags");
        if (h->next < -1 || h->next >= lim->n_vocab) return bad(err, h->type, "assumed token out of range");
        if (h->accepted < 0 || h->accepted > h->count) return bad(err, h->type, "head batch out of range");
        const size_t n = (size_t)h->count, rows = n * (size_t)lim->dim;
        const size_t nq = (h->flags & LSW_CHUNK_DRAFT_Q) ? n - 1 : 0;
        const size_t want = n * sizeof(int32_t) + rows * sizeof(float) + nq * sizeof(lsw_draft_q);
        if (plen != want) return bad(err, h->type, "payload size does not match count and hidden size");
        out->tokens = (const int32_t *)payload;
        for (size_t i = 0; i < n; i++)
            if (out->tokens[i] < 0 || out->tokens[i] >= lim->n_vocab) return bad(err, h->type, "token id out of range");
        out->states = (const float *)(payload + n * sizeof(int32_t));
        if (nq > 0) {
            out->draft_q = (const lsw_draft_q *)(payload + n * sizeof(int32_t) + rows * sizeof(float));
            for (size_t i = 0; i < nq; i++) {
                const lsw_draft_q *q = &out->draft_q[i];
                if (q->n < 1 || q->n > LS_DRAFT_Q_CAP) return bad(err, h->type, "draft distribution size out of range");
                for (int j = 0; j < q->n; j++)
                    if (q->ids[j] < 0 || q->ids[j] >= lim->n_vocab || !(q->p[j] >= 0 && q->p[j] <= 1))
                        return bad(err, h->type, "draft distribution entry out of range");
            }
        }
        return LS_OK;
    }
    case LSW_MSG_VERDICT:
        if (plen != 0) return bad(err, h->type, "wrong size");
        if (h->first_pos < 0 || h->first_pos >= lim->n_ctx) return bad(err, h->type, "position outside the context");
        if (h->accepted < 0 || h->accepted >= lim->max_batch) return bad(err, h->type, "accepted count out of range");
        if (h->next < 0 || h->next >= lim->n_vocab) return bad(err, h->type, "token id out of range");
        return LS_OK;
    case LSW_MSG_NOTICE:
        if (plen != 0) return bad(err, h->type, "wrong size");
        if (h->next < 0) return bad(err, h->type, "negative generation floor");
        return LS_OK;
    case LSW_MSG_ERROR:
        if (plen != sizeof out->error) return bad(err, h->type, "wrong size");
        memcpy(out->error, payload, sizeof out->error);
        if (!str_terminated(out->error, sizeof out->error)) return bad(err, h->type, "unterminated text");
        return LS_OK;
    case LSW_MSG_CLOSE:
    case LSW_MSG_SHUTDOWN:
    case LSW_MSG_PING:
    case LSW_MSG_PONG:
        return plen == 0 ? LS_OK : bad(err, h->type, "wrong size");
    }
    return ls_err_set(err, LS_ERR_FORMAT, "message of unknown type %d from another stage", h->type);
}

/* ------------------------------------------------------------ transport */

void lsw_net_init(lsw_net *net, MPI_Comm comm, double timeout_s) {
    memset(net, 0, sizeof *net);
    net->comm = comm;
    MPI_Comm_rank(comm, &net->rank);
    MPI_Comm_size(comm, &net->size);
    net->timeout_s = timeout_s;
}

void lsw_net_set_limits(lsw_net *net, const lsw_limits *lim) {
    net->lim = *lim;
    net->have_limits = true;
}

void lsw_net_free(lsw_net *net) {
    /* Give sends still pending a last chance (bounded by the timeout). One
     * that is still not taken is left to MPI with its buffer: cancelling a
     * started send is not reliable (OpenMPI may still read the buffer), so
     * it is leaked on purpose; its peer is stuck or dead and the job is
     * about to end. */
    const double t0 = MPI_Wtime();
    while (net->pending && MPI_Wtime() - t0 < net->timeout_s) {
        ls_err ignored;
        lsw_net_progress(net, &ignored);
        if (!net->pending) break;
        struct timespec ts = {0, 100000};
        nanosleep(&ts, NULL);
    }
    for (lsw_pending *p = net->pending, *nx; p; p = nx) {
        nx = p->next;
        MPI_Request_free(&p->req); /* completes on its own; buf stays valid */
        free(p);
    }
    net->pending = NULL;
    free(net->rbuf);
    net->rbuf = NULL;
    net->rcap = 0;
}

void lsw_stage_name(const lsw_net *net, int rank, char *buf, size_t cap) {
    if (net->layout && rank >= 0 && rank < net->layout->n_stages)
        snprintf(buf, cap, "stage %d (rank %d, layers %d-%d)", rank, rank, net->layout->l0[rank],
                 net->layout->l1[rank]);
    else
        snprintf(buf, cap, "rank %d", rank);
}

ls_status lsw_net_progress(lsw_net *net, ls_err *err) {
    const double now = MPI_Wtime();
    const lsw_pending *late = NULL;
    for (lsw_pending **pp = &net->pending; *pp;) {
        lsw_pending *p = *pp;
        int done = 0;
        if (MPI_Test(&p->req, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS)
            return ls_err_set(err, LS_ERR_IO, "MPI_Test failed on a send to rank %d", p->dest);
        if (done) {
            *pp = p->next;
            free(p->buf);
            free(p);
            continue;
        }
        if (!late && now - p->t0 > net->timeout_s) late = p;
        pp = &p->next;
    }
    if (late) {
        char who[96];
        lsw_stage_name(net, late->dest, who, sizeof who);
        return ls_err_set(err, LS_ERR_IO, "%s did not take a %s message within %g s (stuck or dead; restart "
                          "the job)", who, lsw_msg_type_name(late->type), net->timeout_s);
    }
    return LS_OK;
}

ls_status lsw_net_flush(lsw_net *net, ls_err *err) {
    for (;;) {
        ls_status st = lsw_net_progress(net, err);
        if (st != LS_OK || !net->pending) return st;
        struct timespec ts = {0, 100000};
        nanosleep(&ts, NULL);
    }
}

/* copy hdr + parts into one buffer and post it */
static ls_status post(lsw_net *net, int dest, const lsw_hdr *h, const void *a, size_t na, const void *b, size_t nb,
                      const void *c, size_t nc, ls_err *err) {
    const size_t len = sizeof *h + na + nb + nc;
    if (len > (size_t)0x7fffffff)
        return ls_err_set(err, LS_ERR_RANGE, "%s message of %zu bytes is too large for MPI", lsw_msg_type_name(h->type),
                          len);
    if (dest < 0 || dest >= net->size)
        return ls_err_set(err, LS_ERR_INVALID, "no rank %d to send a %s message to (%d ranks)", dest,
                          lsw_msg_type_name(h->type), net->size);
    lsw_pending *p = calloc(1, sizeof *p);
    char *buf = malloc(len);
    if (!p || !buf) {
        free(p);
        free(buf);
        return ls_err_set(err, LS_ERR_NOMEM, "out of memory for a %zu-byte message", len);
    }
    memcpy(buf, h, sizeof *h);
    ((lsw_hdr *)(void *)buf)->epoch = net->epoch;
    if (na) memcpy(buf + sizeof *h, a, na);
    if (nb) memcpy(buf + sizeof *h + na, b, nb);
    if (nc) memcpy(buf + sizeof *h + na + nb, c, nc);
    p->buf = buf;
    p->dest = dest;
    p->type = h->type;
    p->t0 = MPI_Wtime();
    if (MPI_Isend(buf, (int)len, MPI_BYTE, dest, h->type, net->comm, &p->req) != MPI_SUCCESS) {
        free(buf);
        free(p);
        return ls_err_set(err, LS_ERR_IO, "MPI_Isend of a %s message to rank %d failed", lsw_msg_type_name(h->type),
                          dest);
    }
    p->next = net->pending;
    net->pending = p;
    return lsw_net_progress(net, err);
}

ls_status lsw_recv_poll(lsw_net *net, lsw_msg *out, bool *got, ls_err *err) {
    *got = false;
    int flag = 0;
    MPI_Status status;
    if (MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, net->comm, &flag, &status) != MPI_SUCCESS)
        return ls_err_set(err, LS_ERR_IO, "MPI_Iprobe failed");
    if (!flag) return LS_OK;
    int count = 0;
    MPI_Get_count(&status, MPI_BYTE, &count);
    size_t max = sizeof(lsw_hdr) + sizeof(lsw_config_msg);
    if (net->have_limits) {
        size_t chunk = sizeof(lsw_hdr) +
                       (size_t)net->lim.max_batch * (sizeof(int32_t) + 2 * sizeof(float) * (size_t)net->lim.dim);
        if (chunk > max) max = chunk;
    }
    const size_t len = count < 0 ? 0 : (size_t)count;
    /* an oversized message is still taken off the link (so it cannot block
     * it), then reported */
    const size_t need = len > max ? len : max;
    if (need > net->rcap) {
        void *nb = realloc(net->rbuf, need);
        if (!nb) return ls_err_set(err, LS_ERR_NOMEM, "out of memory for a %zu-byte message", need);
        net->rbuf = nb;
        net->rcap = need;
    }
    if (MPI_Recv(net->rbuf, count, MPI_BYTE, status.MPI_SOURCE, status.MPI_TAG, net->comm, MPI_STATUS_IGNORE) !=
        MPI_SUCCESS)
        return ls_err_set(err, LS_ERR_IO, "MPI_Recv from rank %d failed", status.MPI_SOURCE);
    if (len > max)
        return ls_err_set(err, LS_ERR_FORMAT, "message of %zu bytes from rank %d is larger than any valid message "
                          "(%zu bytes)", len, status.MPI_SOURCE, max);
    out->source = status.MPI_SOURCE;
    if (len >= sizeof(lsw_hdr)) {
        lsw_hdr h;
        memcpy(&h, net->rbuf, sizeof h);
        /* left over from an earlier pipeline (control messages are for any) */
        if (h.type != LSW_MSG_CONFIG && h.type != LSW_MSG_CLOSE && h.type != LSW_MSG_SHUTDOWN &&
            h.epoch != net->epoch)
            return LS_OK;
    }
    ls_status st = lsw_msg_decode(net->rbuf, len, status.MPI_TAG, net->have_limits ? &net->lim : NULL, out, err);
    if (st != LS_OK) return st;
    *got = true;
    return LS_OK;
}

/* ------------------------------------------------------------ typed sends */

ls_status lsw_send_config(lsw_net *net, int dest, const lsw_config_msg *c, ls_err *err) {
    lsw_hdr h = {.type = LSW_MSG_CONFIG};
    return post(net, dest, &h, c, sizeof *c, NULL, 0, NULL, 0, err);
}

ls_status lsw_send_hello(lsw_net *net, int dest, const lsw_hello_msg *hm, ls_err *err) {
    lsw_hdr h = {.type = LSW_MSG_HELLO};
    return post(net, dest, &h, hm, sizeof *hm, NULL, 0, NULL, 0, err);
}

ls_status lsw_send_start(lsw_net *net, int dest, int32_t slot, int32_t generation, const lsw_start_msg *s,
                         ls_err *err) {
    lsw_hdr h = {.type = LSW_MSG_START, .slot = slot, .generation = generation};
    return post(net, dest, &h, s, sizeof *s, NULL, 0, NULL, 0, err);
}

ls_status lsw_send_chunk(lsw_net *net, int dest, int32_t slot, int32_t generation, int32_t first_pos,
                         int32_t count, uint32_t flags, int32_t assumed_next, int32_t head_batch,
                         const int32_t *tokens, const float *states, const lsw_draft_q *draft_q, ls_err *err) {
    lsw_hdr h = {.type = LSW_MSG_CHUNK, .slot = slot, .generation = generation, .first_pos = first_pos,
                 .count = count, .flags = (int32_t)flags, .next = assumed_next, .accepted = head_batch};
    const size_t rows = (size_t)count * (size_t)net->lim.dim * sizeof(float);
    const size_t nq = (flags & LSW_CHUNK_DRAFT_Q) ? (size_t)count - 1 : 0;
    return post(net, dest, &h, tokens, (size_t)count * sizeof(int32_t), states, rows, nq ? draft_q : NULL,
                nq * sizeof(lsw_draft_q), err);
}

ls_status lsw_send_verdict(lsw_net *net, int dest, int32_t slot, int32_t generation, int32_t first_pos,
                           int32_t accepted, int32_t next, ls_err *err) {
    lsw_hdr h = {.type = LSW_MSG_VERDICT, .slot = slot, .generation = generation, .first_pos = first_pos,
                 .accepted = accepted, .next = next};
    return post(net, dest, &h, NULL, 0, NULL, 0, NULL, 0, err);
}

ls_status lsw_send_notice(lsw_net *net, int dest, int32_t slot, int32_t generation_floor, ls_err *err) {
    lsw_hdr h = {.type = LSW_MSG_NOTICE, .slot = slot, .next = generation_floor};
    return post(net, dest, &h, NULL, 0, NULL, 0, NULL, 0, err);
}

ls_status lsw_send_error(lsw_net *net, int dest, int32_t slot, int32_t generation, const char *msg, ls_err *err) {
    lsw_hdr h = {.type = LSW_MSG_ERROR, .slot = slot, .generation = generation};
    char text[512] = {0};
    snprintf(text, sizeof text, "%s", msg);
    return post(net, dest, &h, text, sizeof text, NULL, 0, NULL, 0, err);
}

ls_status lsw_send_close(lsw_net *net, int dest, ls_err *err) {
    lsw_hdr h = {.type = LSW_MSG_CLOSE};
    return post(net, dest, &h, NULL, 0, NULL, 0, NULL, 0, err);
}

ls_status lsw_send_shutdown(lsw_net *net, int dest, ls_err *err) {
    lsw_hdr h = {.type = LSW_MSG_SHUTDOWN};
    return post(net, dest, &h, NULL, 0, NULL, 0, NULL, 0, err);
}

ls_status lsw_send_ping(lsw_net *net, int dest, int32_t seq, ls_err *err) {
    lsw_hdr h = {.type = LSW_MSG_PING, .next = seq};
    return post(net, dest, &h, NULL, 0, NULL, 0, NULL, 0, err);
}

ls_status lsw_send_pong(lsw_net *net, int dest, int32_t seq, ls_err *err) {
    lsw_hdr h = {.type = LSW_MSG_PONG, .next = seq};
    return post(net, dest, &h, NULL, 0, NULL, 0, NULL, 0, err);
}
