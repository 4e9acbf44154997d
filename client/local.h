/* local.h: local mode (--model PATH). Starts a private layerskipd on a unix
 * socket in a fresh 0700 temporary directory, waits for it to be SERVING,
 * and stops it (SIGTERM, then SIGKILL) and removes the directory on every
 * exit path. The child gets PR_SET_PDEATHSIG so even a SIGKILLed client
 * does not leave it behind. */
#ifndef LSC_LOCAL_H
#define LSC_LOCAL_H

#include "common.h"

#include <sys/types.h>

typedef struct lsc_local_opts {
    const char *model;
    const char *daemon_bin; /* NULL: next to this executable, ../daemon/, then PATH */
    int threads, ctx, max_sessions; /* 0 = the daemon's default */
    const char *draft_adapter;      /* --draft-adapter for the daemon; NULL = none */
    const char *log_level;          /* NULL = the daemon's default */
} lsc_local_opts;

typedef struct lsc_local {
    pid_t pid;          /* 0 when not running */
    char dir[256];      /* private temporary directory ("" when none) */
    char socket[300];   /* dir/layerskipd.sock */
    char target[310];   /* "unix:" + socket */
    char log_path[300]; /* daemon stdout+stderr; unlinked once SERVING */
    int log_fd;         /* read side of the log, open until stop (-1: none) */
} lsc_local;

/* Fork+exec the daemon. Call before grpc_init(): forking a process that has
 * gRPC threads is not safe. */
lsc_status lsc_local_start(lsc_local *l, const lsc_local_opts *o, lsc_err *err);

/* Has the daemon exited? If so, describe how (exit status + log tail). */
bool lsc_local_exited(lsc_local *l, lsc_err *err);

/* The daemon is SERVING: unlink its log (still readable through log_fd)
 * so a SIGKILLed client leaves at most an empty directory behind. */
void lsc_local_serving(lsc_local *l);

/* Last bytes of the daemon's log, for error messages. */
void lsc_local_log_tail(const lsc_local *l, char *buf, size_t len);

/* SIGTERM, wait up to grace_s, then SIGKILL; remove the socket, log and
 * directory. Safe to call twice and on a never-started lsc_local. */
void lsc_local_stop(lsc_local *l, double grace_s);

#endif
