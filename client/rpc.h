/* rpc.h: the client's whole gRPC surface. One channel (lsc_conn) shared by
 * any number of threads; each call blocks its caller on a private completion
 * queue, wakes every 100 ms to honour the interrupt flag (Ctrl-C cancels the
 * call rather than killing the process, so local mode can clean up). */
#ifndef LSC_RPC_H
#define LSC_RPC_H

#include "common.h"

#include <grpc/status.h>
#include <protobuf-c/protobuf-c.h>
#include <stdatomic.h>

typedef struct lsc_conn lsc_conn;

typedef struct lsc_conn_opts {
    const char *target;          /* "host:port" or "unix:/path" */
    bool tls;                    /* TLS with the system roots (or tls_ca_file) */
    const char *tls_ca_file;     /* PEM roots; implies tls */
    const char *tls_server_name; /* override the name checked in the certificate */
    const char *auth_token;      /* sent as "authorization: Bearer <token>"; NULL = none */
    const atomic_int *interrupted; /* set by the signal thread; NULL = never */
} lsc_conn_opts;

/* The outcome of one call. code is GRPC_STATUS_OK on success; otherwise
 * message holds the server's text (or the transport's). */
typedef struct lsc_rpc_status {
    grpc_status_code code;
    bool interrupted; /* cancelled because the interrupt flag was set */
    char message[1024];
} lsc_rpc_status;

/* Called once per streamed message; return false to cancel the call. The
 * message is freed after the callback returns. */
typedef bool (*lsc_stream_cb)(const ProtobufCMessage *msg, void *user);

/* grpc_init() must have been called. */
lsc_status lsc_conn_open(const lsc_conn_opts *opts, lsc_conn **out, lsc_err *err);
void lsc_conn_close(lsc_conn *c);
const char *lsc_conn_target(const lsc_conn *c);

/* timeout_s <= 0: no deadline. On OK, *resp is the unpacked reply (free it
 * with protobuf_c_message_free_unpacked). Returns st->code. */
grpc_status_code lsc_call_unary(lsc_conn *c, const char *method, const ProtobufCMessage *req,
                                const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp,
                                double timeout_s, lsc_rpc_status *st);

grpc_status_code lsc_call_stream(lsc_conn *c, const char *method, const ProtobufCMessage *req,
                                 const ProtobufCMessageDescriptor *resp_desc, lsc_stream_cb cb, void *user,
                                 double timeout_s, lsc_rpc_status *st);

/* grpc.health.v1.Health/Check for service ("" = the whole server).
 * *serving_status is the HealthCheckResponse.ServingStatus value. */
grpc_status_code lsc_health_check(lsc_conn *c, const char *service, double timeout_s, int *serving_status,
                                  lsc_rpc_status *st);

/* "INVALID_ARGUMENT" etc. */
const char *lsc_grpc_code_name(grpc_status_code code);

/* True when the status means the server could not be reached at all (as
 * opposed to a server that answered UNAVAILABLE on purpose). */
bool lsc_status_is_unreachable(const lsc_rpc_status *st);

/* One message for the user: "cannot reach layerskipd at ADDR: ...; start it
 * with ..." for connection failures, "CODE: message" otherwise. */
void lsc_rpc_status_describe(const lsc_conn *c, const lsc_rpc_status *st, char *buf, size_t len);

#endif
