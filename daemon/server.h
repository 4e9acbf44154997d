/* server.h: layerskipd's gRPC server (all gRPC C-core code lives in
 * server.c): one completion-queue thread serves layerskip.v1.LayerSkip,
 * grpc.health.v1.Health (Check, Watch), server reflection (v1, v1alpha)
 * and answers UNIMPLEMENTED for anything else. Generations go to the
 * scheduler; their output comes back through per-call send queues.
 *
 * Lifecycle (main.c): grpc_init, lsd_server_start, ... signal ...,
 * lsd_server_begin_drain, wait for the scheduler, lsd_server_shutdown,
 * lsd_sched_free, lsd_server_free, grpc_shutdown. */
#ifndef LSD_SERVER_H
#define LSD_SERVER_H

#include "sched.h"
#include "service.h"

#include <stddef.h>

typedef struct lsd_server lsd_server;

typedef struct lsd_server_opts {
    const char *listen;         /* "HOST:PORT" or "unix:/path" */
    const char *tls_cert_pem;   /* PEM text; NULL = plaintext */
    const char *tls_key_pem;
    const char *auth_token;     /* NULL = no auth; else "authorization: Bearer <token>" required */
    int max_request_bytes;      /* larger request messages -> INVALID_ARGUMENT */
    int max_concurrent_streams; /* per HTTP/2 connection */
    lsd_service *service;
    lsd_sched *sched;
    lsd_metrics *metrics;       /* may be NULL */
} lsd_server_opts;

/* Binds and starts serving (health SERVING). 0, or -1 with a message
 * naming the address / TLS files and the fix. bound gets the address with
 * the real port (for ":0"). */
int lsd_server_start(const lsd_server_opts *o, lsd_server **out, char *bound, size_t bound_len,
                     char *err, size_t err_len);
/* health NOT_SERVING, new calls UNAVAILABLE "server is shutting down";
 * running generations go on */
void lsd_server_begin_drain(lsd_server *s);
/* the same, new calls get UNAVAILABLE with reason (a lost pipeline stage) */
void lsd_server_begin_drain_reason(lsd_server *s, const char *reason);
/* stop accepting calls, end health watches, give in-flight calls grace_s
 * to finish, then cancel the rest; returns when every call is gone */
void lsd_server_shutdown(lsd_server *s, double grace_s);
/* answer every generation whose job the scheduler still holds with code
 * and msg now, without waiting for the job (whose thread may be stuck in
 * MPI after a pipeline stage was lost); its later output is dropped */
void lsd_server_fail_generations(lsd_server *s, int code, const char *msg);
/* after lsd_server_shutdown and lsd_sched_free: stop the queue thread, free */
void lsd_server_free(lsd_server *s);

#endif
