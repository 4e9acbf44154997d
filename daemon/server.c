/* server.c: every gRPC C-core call of layerskipd.
 *
 * One completion-queue thread runs every event through a tag {fn, arg}.
 * Each call is a refcounted struct: one reference per pending batch, one
 * for the scheduler while a generation runs, one for the health-watch list.
 * Only one SEND batch may be in flight per call (gRPC rule), so output
 * waits in a per-call queue: workers append under the call's mutex and
 * start a send when none is in flight; the completion starts the next.
 * Streamed text that piles up behind a slow reader is merged into the next
 * chunk, so a worker never waits for a client. */
#include "server.h"

#include "log.h"
#include "metrics.h"
#include "reflection.h"

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/log.h>
#include <grpc/support/time.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct lsd_tag {
    void (*fn)(void *arg, bool ok);
    void *arg;
} lsd_tag;

enum method {
    M_GENERATE, M_GENERATE_STREAM, M_CHAT, M_CHAT_STREAM, M_TOKENIZE, M_DETOKENIZE, M_MODEL_INFO,
    M_HEALTH_CHECK, M_HEALTH_WATCH, M_REFLECT_V1, M_REFLECT_V1ALPHA,
    M_REGISTERED, /* count of registered methods */
    M_GENERIC = M_REGISTERED,
    M_COUNT
};

static const struct method_info {
    const char *path;
    const char *metric;  /* lsd_metrics method label */
    bool payload;        /* the request message arrives with the call */
} method_info[M_COUNT] = {
    [M_GENERATE] = {"/layerskip.v1.LayerSkip/Generate", "Generate", true},
    [M_GENERATE_STREAM] = {"/layerskip.v1.LayerSkip/GenerateStream", "GenerateStream", true},
    [M_CHAT] = {"/layerskip.v1.LayerSkip/Chat", "Chat", true},
    [M_CHAT_STREAM] = {"/layerskip.v1.LayerSkip/ChatStream", "ChatStream", true},
    [M_TOKENIZE] = {"/layerskip.v1.LayerSkip/Tokenize", "Tokenize", true},
    [M_DETOKENIZE] = {"/layerskip.v1.LayerSkip/Detokenize", "Detokenize", true},
    [M_MODEL_INFO] = {"/layerskip.v1.LayerSkip/GetModelInfo", "GetModelInfo", true},
    [M_HEALTH_CHECK] = {"/grpc.health.v1.Health/Check", "Health.Check", true},
    [M_HEALTH_WATCH] = {"/grpc.health.v1.Health/Watch", "Health.Watch", true},
    [M_REFLECT_V1] = {"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", "Reflection", false},
    [M_REFLECT_V1ALPHA] = {"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", "Reflection", false},
    [M_GENERIC] = {NULL, "Unimplemented", false},
};

#define MAX_RECEIVE_BYTES (64 << 20) /* far above --max-request-bytes, so our own check answers */
#define LISTENERS_PER_METHOD 2

typedef struct listener {
    lsd_server *srv;
    int method;
    void *handle;               /* registered method; NULL for the generic one */
    lsd_tag tag;
    grpc_call *call;
    gpr_timespec deadline;
    grpc_metadata_array md;
    grpc_byte_buffer *payload;
    grpc_call_details details;  /* generic only */
} listener;

typedef struct msg_item {
    grpc_byte_buffer *bb;
    struct msg_item *next;
} msg_item;

typedef struct call call;
struct call {
    lsd_server *srv;
    int method;
    grpc_call *call;
    grpc_metadata_array md;
    grpc_call_details details;
    bool has_details;
    gpr_timespec deadline;
    grpc_byte_buffer *payload;
    double t_start;

    pthread_mutex_t mu;
    int refs;
    lsd_tag close_tag, send_tag, recv_tag;
    int cancelled;              /* written by RECV_CLOSE_ON_SERVER */
    bool closed;                /* the close batch completed */
    bool md_sent, in_flight, dead;
    bool status_queued, status_sent;
    grpc_status_code status;
    grpc_slice status_details;
    msg_item *q_head, *q_tail;  /* whole messages waiting to be sent */
    grpc_byte_buffer *sending;  /* the message of the batch in flight */

    /* GenerateStream: text and ids not yet sent, merged into one chunk */
    char *st_text;
    size_t st_len, st_cap;
    int32_t *st_ids;
    int st_n, st_ids_cap;
    bool st_final;

    lsd_job job;
    bool job_active;            /* the scheduler holds the job (and a reference) */

    grpc_byte_buffer *recv_bb;  /* reflection: the message being received */

    call *gen_prev, *gen_next;  /* srv->gens: the scheduler holds its job (under srv->mu) */
    bool in_gens;

    char *watch_service;        /* Health.Watch */
    bool watching;              /* in srv->watchers (holds a reference) */
    call *watch_next;
};

struct lsd_server {
    lsd_server_opts o;
    char *auth_token;
    size_t auth_len;
    grpc_server *server;
    grpc_completion_queue *cq;
    pthread_t cq_thread;
    bool cq_thread_started;
    void *handles[M_REGISTERED];
    listener listeners[M_COUNT][LISTENERS_PER_METHOD];
    atomic_bool draining;
    char drain_msg[512];       /* why new calls get UNAVAILABLE (set before draining) */
    atomic_bool shutting_down;
    pthread_mutex_t mu;         /* watchers, gens */
    call *watchers;
    call *gens;                 /* calls whose job the scheduler holds */
    int shutdown_tag;
};

static const char *status_name(grpc_status_code c) {
    static const char *names[] = {"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
                                  "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
                                  "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL",
                                  "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"};
    return (unsigned)c < sizeof names / sizeof names[0] ? names[c] : "UNKNOWN";
}

/* ---- call lifetime ---- */

static void on_close(void *arg, bool ok);
static void on_send_done(void *arg, bool ok);
static void on_recv_done(void *arg, bool ok);

static call *call_new(lsd_server *srv, int method) {
    call *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->srv = srv;
    c->method = method;
    c->t_start = ls_time_ms();
    pthread_mutex_init(&c->mu, NULL);
    c->close_tag = (lsd_tag){on_close, c};
    c->send_tag = (lsd_tag){on_send_done, c};
    c->recv_tag = (lsd_tag){on_recv_done, c};
    c->status_details = grpc_empty_slice();
    lsd_job_init(&c->job);
    return c;
}

static bool deadline_passed(const call *c) {
    gpr_timespec d = gpr_convert_clock_type(c->deadline, GPR_CLOCK_MONOTONIC);
    return gpr_time_cmp(gpr_now(GPR_CLOCK_MONOTONIC), d) >= 0;
}

static void call_free(call *c) {
    lsd_server *srv = c->srv;
    const char *code = c->cancelled ? (deadline_passed(c) ? "DEADLINE_EXCEEDED" : "CANCELLED")
                       : c->status_sent ? status_name(c->status) : "UNKNOWN";
    double secs = (ls_time_ms() - c->t_start) / 1e3;
    if (srv->o.metrics) lsd_metrics_request_done(srv->o.metrics, method_info[c->method].metric, code, secs);
    LSD_LOG(LSD_LOG_DEBUG, "%s done: %s after %.1f ms", method_info[c->method].metric, code, secs * 1e3);
    if (c->call) grpc_call_unref(c->call);
    grpc_metadata_array_destroy(&c->md);
    if (c->has_details) grpc_call_details_destroy(&c->details);
    if (c->payload) grpc_byte_buffer_destroy(c->payload);
    if (c->recv_bb) grpc_byte_buffer_destroy(c->recv_bb);
    if (c->sending) grpc_byte_buffer_destroy(c->sending);
    for (msg_item *m = c->q_head, *next; m; m = next) {
        next = m->next;
        grpc_byte_buffer_destroy(m->bb);
        free(m);
    }
    grpc_slice_unref(c->status_details);
    free(c->st_text);
    free(c->st_ids);
    free(c->watch_service);
    lsd_job_clear(&c->job);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

static void call_unref(call *c) {
    pthread_mutex_lock(&c->mu);
    int r = --c->refs;
    pthread_mutex_unlock(&c->mu);
    if (r == 0) call_free(c);
}

/* ---- sending (caller holds c->mu) ---- */

static grpc_byte_buffer *bytes_to_bb(uint8_t *bytes, size_t len) {
    grpc_slice s = grpc_slice_from_copied_buffer((const char *)bytes, len);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    free(bytes);
    return bb;
}

static void queue_message(call *c, uint8_t *bytes, size_t len) {
    msg_item *m = malloc(sizeof *m);
    if (!m) { free(bytes); return; }
    m->bb = bytes_to_bb(bytes, len);
    m->next = NULL;
    if (c->q_tail) c->q_tail->next = m;
    else c->q_head = m;
    c->q_tail = m;
}

static bool stream_pending(const call *c) { return c->st_len || c->st_n || c->st_final; }

static void kick(call *c) {
    if (c->in_flight || c->dead || c->status_sent || c->closed) return;
    grpc_byte_buffer *bb = NULL;
    if (c->q_head) {
        msg_item *m = c->q_head;
        c->q_head = m->next;
        if (!c->q_head) c->q_tail = NULL;
        bb = m->bb;
        free(m);
    } else if (stream_pending(c)) {
        uint8_t *bytes;
        size_t len;
        if (lsd_service_encode_chunk(c->srv->o.service, &c->job, c->st_text ? c->st_text : "", c->st_len,
                                     c->st_ids, c->st_n, c->st_final, &bytes, &len) == 0)
            bb = bytes_to_bb(bytes, len);
        c->st_len = 0;
        c->st_n = 0;
        c->st_final = false;
    }
    bool with_status = c->status_queued && !c->q_head && !stream_pending(c);
    if (!bb && !with_status) return;
    grpc_op ops[3];
    memset(ops, 0, sizeof ops);
    size_t n = 0;
    if (!c->md_sent) {
        ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
        ops[n].data.send_initial_metadata.count = 0;
        n++;
        c->md_sent = true;
    }
    if (bb) {
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n].data.send_message.send_message = bb;
        n++;
        c->sending = bb;
    }
    if (with_status) {
        ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
        ops[n].data.send_status_from_server.trailing_metadata_count = 0;
        ops[n].data.send_status_from_server.status = c->status;
        ops[n].data.send_status_from_server.status_details =
            GRPC_SLICE_LENGTH(c->status_details) ? &c->status_details : NULL;
        n++;
        c->status_sent = true;
    }
    c->in_flight = true;
    c->refs++;
    grpc_call_error e = grpc_call_start_batch(c->call, ops, n, &c->send_tag, NULL);
    if (e != GRPC_CALL_OK) {
        /* a bug in the call state machine: say so and drop the call's output */
        LSD_LOG(LSD_LOG_ERROR, "grpc_call_start_batch (send) failed: error %d", (int)e);
        c->in_flight = false;
        c->refs--;
        c->dead = true;
        if (c->sending) grpc_byte_buffer_destroy(c->sending);
        c->sending = NULL;
    }
}

/* end the call with a status (after any queued output); caller holds c->mu */
static void finish_locked(call *c, grpc_status_code code, const char *details) {
    if (c->status_queued) return;
    c->status_queued = true;
    c->status = code;
    grpc_slice_unref(c->status_details);
    c->status_details = grpc_slice_from_copied_string(details ? details : "");
    if (code != GRPC_STATUS_OK)
        LSD_LOG(LSD_LOG_DEBUG, "%s -> %s: %s", method_info[c->method].metric, status_name(code), details ? details : "");
    kick(c);
}

static void finish(call *c, grpc_status_code code, const char *details) {
    pthread_mutex_lock(&c->mu);
    finish_locked(c, code, details);
    pthread_mutex_unlock(&c->mu);
}

static void reply(call *c, uint8_t *bytes, size_t len) {
    pthread_mutex_lock(&c->mu);
    queue_message(c, bytes, len);
    finish_locked(c, GRPC_STATUS_OK, NULL);
    pthread_mutex_unlock(&c->mu);
}

static void on_send_done(void *arg, bool ok) {
    call *c = arg;
    pthread_mutex_lock(&c->mu);
    c->in_flight = false;
    if (c->sending) grpc_byte_buffer_destroy(c->sending);
    c->sending = NULL;
    if (!ok) c->dead = true; /* cancelled or the connection is gone */
    else kick(c);
    pthread_mutex_unlock(&c->mu);
    call_unref(c);
}

/* ---- health ---- */

static int health_of(lsd_server *srv, const char *service) {
    if (service[0] && strcmp(service, "layerskip.v1.LayerSkip") != 0) return LSD_HEALTH_SERVICE_UNKNOWN;
    return atomic_load(&srv->draining) ? LSD_HEALTH_NOT_SERVING : LSD_HEALTH_SERVING;
}

static void push_health(call *c, int status) {
    uint8_t *bytes;
    size_t len;
    if (lsd_service_health_response(status, &bytes, &len) != 0) return;
    pthread_mutex_lock(&c->mu);
    queue_message(c, bytes, len);
    kick(c);
    pthread_mutex_unlock(&c->mu);
}

static void watch_remove(lsd_server *srv, call *c) {
    bool was = false;
    pthread_mutex_lock(&srv->mu);
    for (call **pp = &srv->watchers; *pp; pp = &(*pp)->watch_next) {
        if (*pp == c) {
            *pp = c->watch_next;
            c->watching = false;
            was = true;
            break;
        }
    }
    pthread_mutex_unlock(&srv->mu);
    if (was) call_unref(c);
}

/* ---- generation sink (worker threads) ---- */

static bool stream_append(call *c, const char *text, size_t len, const int32_t *ids, int n) {
    if (c->st_len + len + 1 > c->st_cap) {
        size_t cap = (c->st_len + len + 1) * 2;
        char *t = realloc(c->st_text, cap);
        if (!t) return false;
        c->st_text = t;
        c->st_cap = cap;
    }
    memcpy(c->st_text + c->st_len, text, len);
    c->st_len += len;
    c->st_text[c->st_len] = 0;
    if (c->st_n + n > c->st_ids_cap) {
        int cap = (c->st_n + n) * 2 + 16;
        int32_t *t = realloc(c->st_ids, sizeof(int32_t) * (size_t)cap);
        if (!t) return false;
        c->st_ids = t;
        c->st_ids_cap = cap;
    }
    if (n) memcpy(c->st_ids + c->st_n, ids, sizeof(int32_t) * (size_t)n);
    c->st_n += n;
    return true;
}

static bool is_stream(const call *c) { return c->method == M_GENERATE_STREAM || c->method == M_CHAT_STREAM; }

static void gens_add(call *c) {
    lsd_server *srv = c->srv;
    pthread_mutex_lock(&srv->mu);
    c->gen_prev = NULL;
    c->gen_next = srv->gens;
    if (srv->gens) srv->gens->gen_prev = c;
    srv->gens = c;
    c->in_gens = true;
    pthread_mutex_unlock(&srv->mu);
}

static void gens_remove(call *c) {
    lsd_server *srv = c->srv;
    pthread_mutex_lock(&srv->mu);
    if (c->in_gens) {
        if (c->gen_prev) c->gen_prev->gen_next = c->gen_next;
        else srv->gens = c->gen_next;
        if (c->gen_next) c->gen_next->gen_prev = c->gen_prev;
        c->in_gens = false;
    }
    pthread_mutex_unlock(&srv->mu);
}

void lsd_server_fail_generations(lsd_server *srv, int code, const char *msg) {
    int n = 0;
    pthread_mutex_lock(&srv->mu);
    for (call *c = srv->gens; c; c = c->gen_next, n++) finish(c, (grpc_status_code)code, msg);
    pthread_mutex_unlock(&srv->mu);
    if (n) LSD_LOG(LSD_LOG_WARN, "answered %d generation(s) whose job had not ended: %s", n, msg);
}

static void on_job_chunk(void *user, lsd_job *j, const char *text, size_t len, const int32_t *ids, int n) {
    call *c = user;
    pthread_mutex_lock(&c->mu);
    if (!c->dead && !c->closed && !c->status_queued) {
        if (stream_append(c, text, len, ids, n)) {
            kick(c);
        } else { /* out of memory: stop the generation */
            atomic_store(&j->cancel_code, GRPC_STATUS_RESOURCE_EXHAUSTED);
            atomic_store(&j->cancel, true);
        }
    }
    pthread_mutex_unlock(&c->mu);
}

static void on_job_done(void *user, lsd_job *j) {
    call *c = user;
    gens_remove(c);
    pthread_mutex_lock(&c->mu);
    c->job_active = false;
    /* status_queued: lsd_server_fail_generations answered it already */
    if (!c->dead && !c->closed && !c->status_queued) {
        if (j->code != GRPC_STATUS_OK) {
            finish_locked(c, (grpc_status_code)j->code, j->message);
        } else if (is_stream(c)) {
            if (stream_append(c, j->text ? j->text + j->text_sent : "", j->text_len - j->text_sent,
                              j->ids + j->ids_sent, j->n_ids - j->ids_sent)) {
                c->st_final = true;
                finish_locked(c, GRPC_STATUS_OK, NULL);
            } else {
                finish_locked(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory for the stream's output");
            }
        } else {
            uint8_t *bytes;
            size_t len;
            if (lsd_service_encode_response(c->srv->o.service, j, &bytes, &len) == 0) {
                queue_message(c, bytes, len);
                finish_locked(c, GRPC_STATUS_OK, NULL);
            } else {
                finish_locked(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory encoding the response");
            }
        }
    }
    pthread_mutex_unlock(&c->mu);
    call_unref(c);
}

/* ---- handlers ---- */

static void on_close(void *arg, bool ok) {
    call *c = arg;
    pthread_mutex_lock(&c->mu);
    c->closed = true;
    bool active = c->job_active;
    pthread_mutex_unlock(&c->mu);
    if (c->cancelled && active)
        lsd_sched_cancel(c->srv->o.sched, &c->job,
                         deadline_passed(c) ? GRPC_STATUS_DEADLINE_EXCEEDED : GRPC_STATUS_CANCELLED);
    if (c->method == M_HEALTH_WATCH) watch_remove(c->srv, c);
    call_unref(c);
}

/* the request message, or NULL after answering the call with an error */
static grpc_slice *read_message(call *c, grpc_byte_buffer *bb, grpc_slice *out) {
    if (!bb) {
        finish(c, GRPC_STATUS_INVALID_ARGUMENT, "the call carries no request message: send exactly one");
        return NULL;
    }
    size_t len = grpc_byte_buffer_length(bb);
    if (len > (size_t)c->srv->o.max_request_bytes) {
        char msg[256];
        snprintf(msg, sizeof msg, "request message is %zu bytes, more than the daemon's --max-request-bytes %d: "
                 "send a smaller request", len, c->srv->o.max_request_bytes);
        finish(c, GRPC_STATUS_INVALID_ARGUMENT, msg);
        return NULL;
    }
    grpc_byte_buffer_reader r;
    if (!grpc_byte_buffer_reader_init(&r, bb)) {
        finish(c, GRPC_STATUS_INVALID_ARGUMENT, "cannot decompress the request message");
        return NULL;
    }
    *out = grpc_byte_buffer_reader_readall(&r);
    grpc_byte_buffer_reader_destroy(&r);
    return out;
}

static void start_recv(call *c) {
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &c->recv_bb;
    pthread_mutex_lock(&c->mu);
    c->refs++;
    grpc_call_error e = grpc_call_start_batch(c->call, &op, 1, &c->recv_tag, NULL);
    if (e != GRPC_CALL_OK) {
        c->refs--;
        LSD_LOG(LSD_LOG_ERROR, "grpc_call_start_batch (recv) failed: error %d", (int)e);
    }
    pthread_mutex_unlock(&c->mu);
}

/* reflection: one answer per received request, until the client half-closes */
static void on_recv_done(void *arg, bool ok) {
    call *c = arg;
    grpc_byte_buffer *bb = c->recv_bb;
    c->recv_bb = NULL;
    if (!ok) {
        if (bb) grpc_byte_buffer_destroy(bb);
    } else if (!bb) {
        finish(c, GRPC_STATUS_OK, NULL);
    } else {
        grpc_slice s;
        if (read_message(c, bb, &s)) {
            uint8_t *resp = NULL;
            size_t resp_len = 0;
            int rc = lsd_reflection_answer(GRPC_SLICE_START_PTR(s), GRPC_SLICE_LENGTH(s), &resp, &resp_len);
            grpc_slice_unref(s);
            if (rc != 0) {
                finish(c, GRPC_STATUS_INVALID_ARGUMENT,
                       "the request is not a valid grpc.reflection ServerReflectionRequest message");
            } else {
                pthread_mutex_lock(&c->mu);
                queue_message(c, resp, resp_len);
                kick(c);
                pthread_mutex_unlock(&c->mu);
                start_recv(c);
            }
        }
        grpc_byte_buffer_destroy(bb);
    }
    call_unref(c);
}

static bool auth_ok(lsd_server *srv, const call *c) {
    if (!srv->auth_token) return true;
    static const char prefix[] = "Bearer ";
    const size_t pl = sizeof prefix - 1;
    bool found = false;
    for (size_t i = 0; i < c->md.count; i++) {
        const grpc_metadata *m = &c->md.metadata[i];
        if (!grpc_slice_str_cmp(m->key, "authorization")) {
            size_t n = GRPC_SLICE_LENGTH(m->value);
            const uint8_t *v = GRPC_SLICE_START_PTR(m->value);
            if (n < pl || memcmp(v, prefix, pl) != 0) continue;
            /* constant time over the token: no early exit on the first mismatch */
            size_t tl = n - pl;
            unsigned diff = tl != srv->auth_len;
            for (size_t k = 0; k < srv->auth_len; k++)
                diff |= (unsigned)(srv->auth_token[k] ^ (k < tl ? v[pl + k] : 0));
            if (!diff) found = true;
        }
    }
    return found;
}

static void handle_generate(call *c, const grpc_slice *req) {
    lsd_server *srv = c->srv;
    char msg[1024] = "";
    const bool chat = c->method == M_CHAT || c->method == M_CHAT_STREAM;
    grpc_status_code code = (chat ? lsd_service_prepare_chat : lsd_service_prepare_generate)(
        srv->o.service, GRPC_SLICE_START_PTR(*req), GRPC_SLICE_LENGTH(*req), &c->job, msg, sizeof msg);
    if (code != GRPC_STATUS_OK) {
        finish(c, code, msg);
        return;
    }
    c->job.t_arrival = c->t_start;
    c->job.on_chunk = is_stream(c) ? on_job_chunk : NULL;
    c->job.on_done = on_job_done;
    c->job.user = c;
    pthread_mutex_lock(&c->mu);
    c->job_active = true;
    c->refs++;
    pthread_mutex_unlock(&c->mu);
    gens_add(c);
    int waiting = 0;
    lsd_submit_result r = lsd_sched_submit(srv->o.sched, &c->job, &waiting);
    if (r == LSD_SUBMIT_OK) return;
    gens_remove(c);
    pthread_mutex_lock(&c->mu);
    c->job_active = false;
    c->refs--;
    pthread_mutex_unlock(&c->mu);
    if (r == LSD_SUBMIT_FULL) {
        snprintf(msg, sizeof msg, "queue full: %d waiting, raise --max-queue (or retry later)", waiting);
        finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, msg);
    } else {
        finish(c, GRPC_STATUS_UNAVAILABLE, srv->drain_msg);
    }
}

static void handle_health(call *c, const grpc_slice *req) {
    lsd_server *srv = c->srv;
    char msg[256] = "", *service = NULL;
    grpc_status_code code = lsd_service_health_request(GRPC_SLICE_START_PTR(*req), GRPC_SLICE_LENGTH(*req),
                                                       &service, msg, sizeof msg);
    if (code != GRPC_STATUS_OK) {
        finish(c, code, msg);
        return;
    }
    int status = health_of(srv, service);
    if (c->method == M_HEALTH_CHECK) {
        if (status == LSD_HEALTH_SERVICE_UNKNOWN) {
            snprintf(msg, sizeof msg, "unknown service '%.128s': ask for \"\" or \"layerskip.v1.LayerSkip\"", service);
            finish(c, GRPC_STATUS_NOT_FOUND, msg);
        } else {
            uint8_t *bytes;
            size_t len;
            if (lsd_service_health_response(status, &bytes, &len) == 0) reply(c, bytes, len);
            else finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        }
        free(service);
        return;
    }
    /* Watch: the current status now, then every change until the client leaves */
    c->watch_service = service;
    pthread_mutex_lock(&srv->mu);
    bool shutting = atomic_load(&srv->shutting_down);
    if (!shutting) {
        pthread_mutex_lock(&c->mu);
        c->refs++;
        c->watching = true;
        pthread_mutex_unlock(&c->mu);
        c->watch_next = srv->watchers;
        srv->watchers = c;
    }
    pthread_mutex_unlock(&srv->mu);
    push_health(c, status);
    if (shutting) finish(c, GRPC_STATUS_UNAVAILABLE, srv->drain_msg);
}

static void dispatch(call *c) {
    lsd_server *srv = c->srv;
    if (c->method == M_GENERIC) {
        char msg[512];
        /* the method slice is not NUL-terminated: print it by length */
        size_t ml = c->has_details ? GRPC_SLICE_LENGTH(c->details.method) : 1;
        snprintf(msg, sizeof msg, "unknown method %.*s: this server offers layerskip.v1.LayerSkip, "
                 "grpc.health.v1.Health and grpc.reflection.v1(alpha).ServerReflection",
                 (int)(ml > 300 ? 300 : ml), c->has_details ? (const char *)GRPC_SLICE_START_PTR(c->details.method) : "?");
        finish(c, GRPC_STATUS_UNIMPLEMENTED, msg);
        return;
    }
    bool health = c->method == M_HEALTH_CHECK || c->method == M_HEALTH_WATCH;
    if (!health && atomic_load(&srv->draining)) {
        finish(c, GRPC_STATUS_UNAVAILABLE, srv->drain_msg);
        return;
    }
    /* health is exempt from auth so load balancers and probes work without the token */
    if (!health && !auth_ok(srv, c)) {
        finish(c, GRPC_STATUS_UNAUTHENTICATED, "missing or wrong bearer token: send metadata "
               "\"authorization: Bearer <token>\" with the daemon's --auth-token-file token");
        return;
    }
    if (!method_info[c->method].payload) { /* reflection: a bidi stream */
        start_recv(c);
        return;
    }
    grpc_slice req;
    if (!read_message(c, c->payload, &req)) return;
    char msg[1024] = "";
    uint8_t *bytes = NULL;
    size_t len = 0;
    grpc_status_code code = GRPC_STATUS_OK;
    const uint8_t *p = GRPC_SLICE_START_PTR(req);
    size_t n = GRPC_SLICE_LENGTH(req);
    switch (c->method) {
    case M_GENERATE:
    case M_GENERATE_STREAM:
    case M_CHAT:
    case M_CHAT_STREAM: handle_generate(c, &req); break;
    case M_HEALTH_CHECK:
    case M_HEALTH_WATCH: handle_health(c, &req); break;
    case M_TOKENIZE: code = lsd_service_tokenize(srv->o.service, p, n, &bytes, &len, msg, sizeof msg); goto unary;
    case M_DETOKENIZE: code = lsd_service_detokenize(srv->o.service, p, n, &bytes, &len, msg, sizeof msg); goto unary;
    case M_MODEL_INFO: code = lsd_service_model_info(srv->o.service, p, n, &bytes, &len, msg, sizeof msg); goto unary;
    unary:
        if (code == GRPC_STATUS_OK) reply(c, bytes, len);
        else finish(c, code, msg);
        break;
    default: break;
    }
    grpc_slice_unref(req);
}

/* ---- accepting calls ---- */

static void post_listener(listener *l) {
    lsd_server *srv = l->srv;
    grpc_call_error e;
    if (l->method == M_GENERIC) {
        grpc_call_details_init(&l->details);
        e = grpc_server_request_call(srv->server, &l->call, &l->details, &l->md, srv->cq, srv->cq, &l->tag);
    } else {
        e = grpc_server_request_registered_call(srv->server, l->handle, &l->call, &l->deadline, &l->md,
                                                method_info[l->method].payload ? &l->payload : NULL, srv->cq,
                                                srv->cq, &l->tag);
    }
    if (e != GRPC_CALL_OK) LSD_LOG(LSD_LOG_ERROR, "cannot wait for %s calls: gRPC error %d",
                                   method_info[l->method].metric, (int)e);
}

static void on_new_call(void *arg, bool ok) {
    listener *l = arg;
    lsd_server *srv = l->srv;
    if (!ok) { /* the server is shutting down */
        if (l->method == M_GENERIC) grpc_call_details_destroy(&l->details);
        return;
    }
    call *c = call_new(srv, l->method);
    if (!c) {
        grpc_call_cancel_with_status(l->call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory", NULL);
        grpc_call_unref(l->call);
        grpc_metadata_array_destroy(&l->md);
        if (l->payload) grpc_byte_buffer_destroy(l->payload);
        if (l->method == M_GENERIC) grpc_call_details_destroy(&l->details);
    } else {
        c->call = l->call;
        c->md = l->md;
        c->payload = l->payload;
        c->deadline = l->method == M_GENERIC ? l->details.deadline : l->deadline;
        if (l->method == M_GENERIC) {
            c->details = l->details;
            c->has_details = true;
        }
    }
    l->call = NULL;
    l->payload = NULL;
    grpc_metadata_array_init(&l->md);
    if (!atomic_load(&srv->shutting_down)) post_listener(l);
    if (!c) return;

    /* RECV_CLOSE_ON_SERVER first: its cancelled flag is the one signal for
     * client cancel, deadline, disconnect and shutdown */
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    op.data.recv_close_on_server.cancelled = &c->cancelled;
    c->refs = 2; /* the close batch, and this handler */
    grpc_call_error e = grpc_call_start_batch(c->call, &op, 1, &c->close_tag, NULL);
    if (e != GRPC_CALL_OK) {
        LSD_LOG(LSD_LOG_ERROR, "grpc_call_start_batch (close) failed: error %d", (int)e);
        c->refs = 1;
        c->closed = true;
    } else {
        dispatch(c);
    }
    call_unref(c);
}

static void *cq_main(void *arg) {
    lsd_server *srv = arg;
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(srv->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN) break;
        if (ev.type != GRPC_OP_COMPLETE) continue;
        lsd_tag *t = ev.tag;
        t->fn(t->arg, ev.success != 0);
    }
    return NULL;
}

static void quiet_log(gpr_log_func_args *args) { (void)args; }

int lsd_server_start(const lsd_server_opts *o, lsd_server **out, char *bound, size_t bound_len, char *err,
                     size_t err_len) {
    *out = NULL;
    lsd_server *srv = calloc(1, sizeof *srv);
    if (!srv) { snprintf(err, err_len, "out of memory creating the server"); return -1; }
    srv->o = *o;
    pthread_mutex_init(&srv->mu, NULL);
    atomic_init(&srv->draining, false);
    snprintf(srv->drain_msg, sizeof srv->drain_msg, "server is shutting down");
    atomic_init(&srv->shutting_down, false);
    if (o->auth_token) {
        srv->auth_token = strdup(o->auth_token);
        srv->auth_len = strlen(o->auth_token);
    }
    int streams = o->max_concurrent_streams > 0 ? o->max_concurrent_streams : 1024;
    grpc_arg args[3];
    memset(args, 0, sizeof args);
    args[0].type = GRPC_ARG_INTEGER;
    args[0].key = GRPC_ARG_ALLOW_REUSEPORT; /* a second daemon on the same port must fail, not share it */
    args[0].value.integer = 0;
    args[1].type = GRPC_ARG_INTEGER;
    args[1].key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[1].value.integer = MAX_RECEIVE_BYTES;
    args[2].type = GRPC_ARG_INTEGER;
    args[2].key = GRPC_ARG_MAX_CONCURRENT_STREAMS;
    args[2].value.integer = streams;
    grpc_channel_args ca = {.num_args = 3, .args = args};
    srv->server = grpc_server_create(&ca, NULL);
    for (int m = 0; m < M_REGISTERED; m++)
        srv->handles[m] = grpc_server_register_method(
            srv->server, method_info[m].path, NULL,
            method_info[m].payload ? GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER : GRPC_SRM_PAYLOAD_NONE, 0);
    srv->cq = grpc_completion_queue_create_for_next(NULL);
    grpc_server_register_completion_queue(srv->server, srv->cq, NULL);

    grpc_server_credentials *creds;
    if (o->tls_cert_pem) {
        grpc_ssl_pem_key_cert_pair pair = {.private_key = o->tls_key_pem, .cert_chain = o->tls_cert_pem};
        creds = grpc_ssl_server_credentials_create(NULL, &pair, 1, 0, NULL);
    } else {
        creds = grpc_insecure_server_credentials_create();
    }
    /* a failure here is explained by our own one-line message below; gRPC's
     * multi-line error dumps stay out of the log unless debugging */
    bool quiet = lsd_log_get_level() < LSD_LOG_DEBUG;
    if (quiet) gpr_set_log_function(quiet_log);
    int port = creds ? grpc_server_add_http2_port(srv->server, o->listen, creds) : 0;
    if (quiet) lsd_log_install_grpc();
    if (creds) grpc_server_credentials_release(creds);
    if (port == 0) {
        if (o->tls_cert_pem)
            snprintf(err, err_len, "cannot listen on %s with TLS: check that --tls-cert and --tls-key hold a valid "
                     "PEM certificate and its private key, and that the --listen address is free", o->listen);
        else
            snprintf(err, err_len, "cannot listen on %s: the address is in use or invalid (--listen HOST:PORT or "
                     "unix:/path)", o->listen);
        grpc_server_destroy(srv->server);
        grpc_completion_queue_shutdown(srv->cq);
        while (grpc_completion_queue_next(srv->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type != GRPC_QUEUE_SHUTDOWN) {}
        grpc_completion_queue_destroy(srv->cq);
        free(srv->auth_token);
        pthread_mutex_destroy(&srv->mu);
        free(srv);
        return -1;
    }
    /* report the real port when the address asked for any (":0") */
    size_t ll = strlen(o->listen);
    if (strncmp(o->listen, "unix:", 5) != 0 && ll >= 2 && strcmp(o->listen + ll - 2, ":0") == 0)
        snprintf(bound, bound_len, "%.*s:%d", (int)(ll - 2), o->listen, port);
    else
        snprintf(bound, bound_len, "%s", o->listen);
    grpc_server_start(srv->server);
    if (pthread_create(&srv->cq_thread, NULL, cq_main, srv) != 0) {
        snprintf(err, err_len, "cannot start the completion-queue thread");
        lsd_server_shutdown(srv, 0);
        lsd_server_free(srv);
        return -1;
    }
    srv->cq_thread_started = true;
    for (int m = 0; m < M_COUNT; m++) {
        for (int i = 0; i < LISTENERS_PER_METHOD; i++) {
            listener *l = &srv->listeners[m][i];
            l->srv = srv;
            l->method = m;
            l->handle = m < M_REGISTERED ? srv->handles[m] : NULL;
            l->tag = (lsd_tag){on_new_call, l};
            grpc_metadata_array_init(&l->md);
            post_listener(l);
        }
    }
    *out = srv;
    return 0;
}

void lsd_server_begin_drain(lsd_server *srv) { lsd_server_begin_drain_reason(srv, NULL); }

void lsd_server_begin_drain_reason(lsd_server *srv, const char *reason) {
    pthread_mutex_lock(&srv->mu);
    if (reason && !atomic_load(&srv->draining)) snprintf(srv->drain_msg, sizeof srv->drain_msg, "%s", reason);
    pthread_mutex_unlock(&srv->mu);
    if (atomic_exchange(&srv->draining, true)) return;
    pthread_mutex_lock(&srv->mu);
    for (call *c = srv->watchers; c; c = c->watch_next)
        if (health_of(srv, c->watch_service) == LSD_HEALTH_NOT_SERVING) push_health(c, LSD_HEALTH_NOT_SERVING);
    pthread_mutex_unlock(&srv->mu);
}

void lsd_server_shutdown(lsd_server *srv, double grace_s) {
    atomic_store(&srv->draining, true);
    atomic_store(&srv->shutting_down, true);
    /* health watches never end by themselves: close them so they do not hold the shutdown */
    pthread_mutex_lock(&srv->mu);
    for (call *c = srv->watchers; c; c = c->watch_next) finish(c, GRPC_STATUS_UNAVAILABLE, srv->drain_msg);
    pthread_mutex_unlock(&srv->mu);

    grpc_completion_queue *sq = grpc_completion_queue_create_for_pluck(NULL);
    grpc_server_shutdown_and_notify(srv->server, sq, &srv->shutdown_tag);
    gpr_timespec until = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                      gpr_time_from_millis((int64_t)(grace_s * 1e3), GPR_TIMESPAN));
    grpc_event ev = grpc_completion_queue_pluck(sq, &srv->shutdown_tag, until, NULL);
    if (ev.type == GRPC_QUEUE_TIMEOUT) {
        LSD_LOG(LSD_LOG_INFO, "cancelling the calls still open after %.1f s", grace_s);
        grpc_server_cancel_all_calls(srv->server);
        grpc_completion_queue_pluck(sq, &srv->shutdown_tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    }
    grpc_completion_queue_shutdown(sq);
    while (grpc_completion_queue_pluck(sq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type != GRPC_QUEUE_SHUTDOWN) {}
    grpc_completion_queue_destroy(sq);
}

void lsd_server_free(lsd_server *srv) {
    if (!srv) return;
    grpc_server_destroy(srv->server);
    grpc_completion_queue_shutdown(srv->cq);
    if (srv->cq_thread_started) pthread_join(srv->cq_thread, NULL);
    grpc_completion_queue_destroy(srv->cq);
    for (int m = 0; m < M_COUNT; m++)
        for (int i = 0; i < LISTENERS_PER_METHOD; i++) {
            listener *l = &srv->listeners[m][i];
            if (l->srv) grpc_metadata_array_destroy(&l->md);
        }
    free(srv->auth_token);
    pthread_mutex_destroy(&srv->mu);
    free(srv);
}
