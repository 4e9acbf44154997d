/* rpc.c: all of the client's gRPC C-core code. One channel per process;
 * every call gets its own pluck completion queue so concurrent callers (the
 * batch workers) never share a queue, and each wait wakes every 100 ms to
 * cancel the call when the interrupt flag is set. */
#include "rpc.h"

#include "grpc/health/v1/health.pb-c.h"

#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct lsc_conn {
    grpc_channel *channel;
    char *target;
    bool tls;
    bool has_auth;
    grpc_slice auth_value; /* "Bearer <token>", alive as long as the channel */
    const atomic_int *interrupted;
};

const char *lsc_grpc_code_name(grpc_status_code code) {
    static const char *names[] = {
        "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
        "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED",
        "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
    };
    if ((int)code >= 0 && (size_t)code < sizeof names / sizeof names[0]) return names[code];
    return "UNKNOWN";
}

static grpc_arg arg_int(const char *key, int v) {
    grpc_arg a = {.type = GRPC_ARG_INTEGER, .key = (char *)key};
    a.value.integer = v;
    return a;
}

static grpc_arg arg_str(const char *key, const char *v) {
    grpc_arg a = {.type = GRPC_ARG_STRING, .key = (char *)key};
    a.value.string = (char *)v;
    return a;
}

lsc_status lsc_conn_open(const lsc_conn_opts *o, lsc_conn **out, lsc_err *err) {
    *out = NULL;
    lsc_conn *c = calloc(1, sizeof *c);
    if (!c || !(c->target = strdup(o->target))) {
        free(c);
        lsc_err_set(err, "out of memory");
        return LSC_ERR_NOMEM;
    }
    c->interrupted = o->interrupted;
    c->tls = o->tls || o->tls_ca_file;

    grpc_channel_credentials *creds;
    if (o->tls || o->tls_ca_file) {
        char *pem = NULL;
        if (o->tls_ca_file) {
            lsc_err ferr;
            if (lsc_read_file(o->tls_ca_file, &pem, NULL, &ferr) != LSC_OK) {
                lsc_err_set(err, "--tls-ca: %s (give a PEM file with the CA that signed the server's certificate)",
                            ferr.msg);
                lsc_conn_close(c);
                return LSC_ERR_USAGE;
            }
        }
        /* NULL roots: gRPC's default (GRPC_DEFAULT_SSL_ROOTS_FILE_PATH or the system bundle) */
        creds = grpc_ssl_credentials_create(pem, NULL, NULL, NULL);
        free(pem);
    } else {
        creds = grpc_insecure_credentials_create();
    }
    if (!creds) {
        lsc_err_set(err, "could not create channel credentials (check --tls-ca)");
        lsc_conn_close(c);
        return LSC_ERR_USAGE;
    }

    grpc_arg args[3];
    size_t nargs = 0;
    args[nargs++] = arg_int(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, 64 << 20);
    args[nargs++] = arg_int(GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, 64 << 20);
    if (o->tls_server_name)
        args[nargs++] = arg_str(GRPC_SSL_TARGET_NAME_OVERRIDE_ARG, o->tls_server_name);
    grpc_channel_args cargs = {.num_args = nargs, .args = args};
    c->channel = grpc_channel_create(c->target, creds, &cargs);
    grpc_channel_credentials_release(creds);
    if (!c->channel) {
        lsc_err_set(err, "could not create a channel to '%s' (give --server HOST:PORT or unix:/path)", c->target);
        lsc_conn_close(c);
        return LSC_ERR_USAGE;
    }
    if (o->auth_token) {
        size_t n = strlen(o->auth_token) + 8;
        char *v = malloc(n);
        if (!v) { lsc_conn_close(c); lsc_err_set(err, "out of memory"); return LSC_ERR_NOMEM; }
        snprintf(v, n, "Bearer %s", o->auth_token);
        c->auth_value = grpc_slice_from_copied_string(v);
        c->has_auth = true;
        free(v);
    }
    *out = c;
    return LSC_OK;
}

void lsc_conn_close(lsc_conn *c) {
    if (!c) return;
    if (c->channel) grpc_channel_destroy(c->channel);
    if (c->has_auth) grpc_slice_unref(c->auth_value);
    free(c->target);
    free(c);
}

const char *lsc_conn_target(const lsc_conn *c) { return c->target; }

bool lsc_status_is_unreachable(const lsc_rpc_status *st) {
    if (st->code != GRPC_STATUS_UNAVAILABLE) return false;
    /* Transport failures from gRPC core; layerskipd's own UNAVAILABLE replies
     * (shutting down, stage lost) name the daemon instead. */
    static const char *hints[] = {"connect", "Connection refused", "No such file", "DNS", "resolve",
                                  "Socket closed", "unreachable", "Handshake", "handshake", "ssl", "SSL",
                                  "Broken pipe", "reset by peer", "addresses"};
    for (size_t i = 0; i < sizeof hints / sizeof hints[0]; i++)
        if (strstr(st->message, hints[i])) return true;
    return st->message[0] == '\0';
}

void lsc_rpc_status_describe(const lsc_conn *c, const lsc_rpc_status *st, char *buf, size_t len) {
    if (st->interrupted) {
        snprintf(buf, len, "interrupted");
    } else if (lsc_status_is_unreachable(st)) {
        const char *hint = "start it with `layerskipd --model M` (or pass --server ADDR), or use --model PATH for "
                           "local mode";
        if (strstr(st->message, "certificate verify failed") || strstr(st->message, "ssl") ||
            strstr(st->message, "SSL"))
            hint = "the server's certificate was not accepted: give its CA with --tls-ca FILE (and "
                   "--tls-server-name NAME if the certificate names another host)";
        else if (strstr(st->message, "peer certificate"))
            hint = "the server's certificate names another host: give that name with --tls-server-name NAME";
        else if (c && !c->tls && strstr(st->message, "Socket closed"))
            hint = "the server closed the connection: if layerskipd serves TLS, add --tls or --tls-ca FILE";
        snprintf(buf, len, "cannot reach layerskipd at %s: %s; %s", c ? c->target : "?",
                 st->message[0] ? st->message : "connection failed", hint);
    } else if (st->code == GRPC_STATUS_UNAUTHENTICATED && !strstr(st->message, "token")) {
        snprintf(buf, len, "UNAUTHENTICATED: %s (give the daemon's token with --auth-token-file FILE or "
                 "LAYERSKIP_AUTH_TOKEN)", st->message);
    } else {
        snprintf(buf, len, "%s: %s", lsc_grpc_code_name(st->code), st->message[0] ? st->message : "(no message)");
    }
}

static void status_set(lsc_rpc_status *st, grpc_status_code code, const char *msg) {
    st->code = code;
    snprintf(st->message, sizeof st->message, "%s", msg);
}

/* Wait for tag, cancelling the call once if the interrupt flag goes up. */
static grpc_event pluck(lsc_conn *c, grpc_completion_queue *cq, grpc_call *call, void *tag, lsc_rpc_status *st) {
    for (;;) {
        /* checked before every wait, not only on timeouts: a stream whose
         * messages come faster than the timeout would never see it */
        if (!st->interrupted && c->interrupted && atomic_load(c->interrupted)) {
            st->interrupted = true;
            grpc_call_cancel(call, NULL);
        }
        gpr_timespec dl = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(100, GPR_TIMESPAN));
        grpc_event ev = grpc_completion_queue_pluck(cq, tag, dl, NULL);
        if (ev.type != GRPC_QUEUE_TIMEOUT) return ev;
    }
}

static void cq_destroy(grpc_completion_queue *cq) {
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type != GRPC_QUEUE_SHUTDOWN) {
    }
    grpc_completion_queue_destroy(cq);
}

static grpc_byte_buffer *pack_message(const ProtobufCMessage *m) {
    size_t n = protobuf_c_message_get_packed_size(m);
    grpc_slice s = grpc_slice_malloc(n);
    protobuf_c_message_pack(m, GRPC_SLICE_START_PTR(s));
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    return bb;
}

static ProtobufCMessage *unpack_message(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *desc) {
    grpc_byte_buffer_reader r;
    if (!grpc_byte_buffer_reader_init(&r, bb)) return NULL;
    grpc_slice s = grpc_byte_buffer_reader_readall(&r);
    grpc_byte_buffer_reader_destroy(&r);
    ProtobufCMessage *m = protobuf_c_message_unpack(desc, NULL, GRPC_SLICE_LENGTH(s), GRPC_SLICE_START_PTR(s));
    grpc_slice_unref(s);
    return m;
}

typedef struct call_ctx {
    grpc_completion_queue *cq;
    grpc_call *call;
    grpc_metadata auth_md;
    grpc_metadata_array initial_md, trailing_md;
    grpc_status_code code;
    grpc_slice details;
    grpc_byte_buffer *send_bb;
} call_ctx;

static bool call_start(lsc_conn *c, call_ctx *x, const char *method, double timeout_s) {
    memset(x, 0, sizeof *x);
    x->cq = grpc_completion_queue_create_for_pluck(NULL);
    gpr_timespec deadline = timeout_s > 0
                                ? gpr_time_add(gpr_now(GPR_CLOCK_REALTIME),
                                               gpr_time_from_millis((int64_t)(timeout_s * 1000.0), GPR_TIMESPAN))
                                : gpr_inf_future(GPR_CLOCK_REALTIME);
    grpc_slice m = grpc_slice_from_static_string(method);
    x->call = grpc_channel_create_call(c->channel, NULL, GRPC_PROPAGATE_DEFAULTS, x->cq, m, NULL, deadline, NULL);
    if (!x->call) {
        cq_destroy(x->cq);
        return false;
    }
    grpc_metadata_array_init(&x->initial_md);
    grpc_metadata_array_init(&x->trailing_md);
    x->details = grpc_empty_slice();
    if (c->has_auth) {
        x->auth_md.key = grpc_slice_from_static_string("authorization");
        x->auth_md.value = c->auth_value;
    }
    return true;
}

/* Send the request (and half-close), receive initial metadata; and, for a
 * unary call, the reply and the status in the same batch. */
static grpc_call_error call_send(lsc_conn *c, call_ctx *x, const ProtobufCMessage *req, grpc_byte_buffer **recv,
                                 bool with_status, void *tag) {
    grpc_op ops[6];
    memset(ops, 0, sizeof ops);
    size_t n = 0;
    x->send_bb = pack_message(req);
    ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[n].data.send_initial_metadata.count = c->has_auth ? 1 : 0;
    ops[n].data.send_initial_metadata.metadata = c->has_auth ? &x->auth_md : NULL;
    n++;
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n].data.send_message.send_message = x->send_bb;
    n++;
    ops[n++].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[n].data.recv_initial_metadata.recv_initial_metadata = &x->initial_md;
    n++;
    if (recv) {
        ops[n].op = GRPC_OP_RECV_MESSAGE;
        ops[n].data.recv_message.recv_message = recv;
        n++;
    }
    if (with_status) {
        ops[n].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
        ops[n].data.recv_status_on_client.trailing_metadata = &x->trailing_md;
        ops[n].data.recv_status_on_client.status = &x->code;
        ops[n].data.recv_status_on_client.status_details = &x->details;
        n++;
    }
    return grpc_call_start_batch(x->call, ops, n, tag, NULL);
}

static void call_take_status(call_ctx *x, lsc_rpc_status *st) {
    st->code = x->code;
    size_t len = GRPC_SLICE_LENGTH(x->details);
    if (len >= sizeof st->message) len = sizeof st->message - 1;
    memcpy(st->message, GRPC_SLICE_START_PTR(x->details), len);
    st->message[len] = '\0';
}

static void call_finish(call_ctx *x) {
    if (x->send_bb) grpc_byte_buffer_destroy(x->send_bb);
    grpc_metadata_array_destroy(&x->initial_md);
    grpc_metadata_array_destroy(&x->trailing_md);
    grpc_slice_unref(x->details);
    grpc_call_unref(x->call);
    cq_destroy(x->cq);
}

grpc_status_code lsc_call_unary(lsc_conn *c, const char *method, const ProtobufCMessage *req,
                                const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp,
                                double timeout_s, lsc_rpc_status *st) {
    memset(st, 0, sizeof *st);
    *resp = NULL;
    call_ctx x;
    if (!call_start(c, &x, method, timeout_s)) {
        status_set(st, GRPC_STATUS_INTERNAL, "could not create the call");
        return st->code;
    }
    grpc_byte_buffer *recv = NULL;
    void *tag = (void *)1;
    if (call_send(c, &x, req, &recv, true, tag) != GRPC_CALL_OK) {
        status_set(st, GRPC_STATUS_INTERNAL, "grpc_call_start_batch failed (a client bug)");
    } else {
        pluck(c, x.cq, x.call, tag, st);
        call_take_status(&x, st);
        if (st->code == GRPC_STATUS_OK) {
            if (!recv) {
                status_set(st, GRPC_STATUS_INTERNAL, "the server sent no reply message");
            } else if (!(*resp = unpack_message(recv, resp_desc))) {
                status_set(st, GRPC_STATUS_INTERNAL, "could not parse the server's reply (a different protocol version?)");
            }
        }
    }
    if (recv) grpc_byte_buffer_destroy(recv);
    call_finish(&x);
    return st->code;
}

grpc_status_code lsc_call_stream(lsc_conn *c, const char *method, const ProtobufCMessage *req,
                                 const ProtobufCMessageDescriptor *resp_desc, lsc_stream_cb cb, void *user,
                                 double timeout_s, lsc_rpc_status *st) {
    memset(st, 0, sizeof *st);
    call_ctx x;
    if (!call_start(c, &x, method, timeout_s)) {
        status_set(st, GRPC_STATUS_INTERNAL, "could not create the call");
        return st->code;
    }
    bool local_error = false;
    char local_msg[256] = "";
    if (call_send(c, &x, req, NULL, false, (void *)1) != GRPC_CALL_OK) {
        status_set(st, GRPC_STATUS_INTERNAL, "grpc_call_start_batch failed (a client bug)");
        call_finish(&x);
        return st->code;
    }
    grpc_event ev = pluck(c, x.cq, x.call, (void *)1, st);
    bool reading = ev.success;
    while (reading) {
        grpc_byte_buffer *recv = NULL;
        grpc_op op;
        memset(&op, 0, sizeof op);
        op.op = GRPC_OP_RECV_MESSAGE;
        op.data.recv_message.recv_message = &recv;
        if (grpc_call_start_batch(x.call, &op, 1, (void *)2, NULL) != GRPC_CALL_OK) break;
        ev = pluck(c, x.cq, x.call, (void *)2, st);
        if (!ev.success || !recv) break; /* end of stream or failure: the status says which */
        ProtobufCMessage *m = unpack_message(recv, resp_desc);
        grpc_byte_buffer_destroy(recv);
        if (!m) {
            local_error = true;
            snprintf(local_msg, sizeof local_msg, "could not parse a streamed message (a different protocol version?)");
            grpc_call_cancel(x.call, NULL);
            break;
        }
        bool more = cb(m, user);
        protobuf_c_message_free_unpacked(m, NULL);
        if (!more) {
            grpc_call_cancel(x.call, NULL);
            break;
        }
    }
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    op.data.recv_status_on_client.trailing_metadata = &x.trailing_md;
    op.data.recv_status_on_client.status = &x.code;
    op.data.recv_status_on_client.status_details = &x.details;
    if (grpc_call_start_batch(x.call, &op, 1, (void *)3, NULL) == GRPC_CALL_OK) {
        pluck(c, x.cq, x.call, (void *)3, st);
        call_take_status(&x, st);
    } else {
        status_set(st, GRPC_STATUS_INTERNAL, "grpc_call_start_batch failed (a client bug)");
    }
    if (local_error) status_set(st, GRPC_STATUS_INTERNAL, local_msg);
    call_finish(&x);
    return st->code;
}

grpc_status_code lsc_health_check(lsc_conn *c, const char *service, double timeout_s, int *serving_status,
                                  lsc_rpc_status *st) {
    Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    req.service = (char *)(service ? service : "");
    ProtobufCMessage *resp = NULL;
    *serving_status = 0;
    if (lsc_call_unary(c, "/grpc.health.v1.Health/Check", &req.base, &grpc__health__v1__health_check_response__descriptor,
                       &resp, timeout_s, st) == GRPC_STATUS_OK) {
        *serving_status = (int)((Grpc__Health__V1__HealthCheckResponse *)resp)->status;
        protobuf_c_message_free_unpacked(resp, NULL);
    }
    return st->code;
}
