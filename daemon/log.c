/* log.c: see log.h. The level is the one piece of process-wide state here:
 * every thread (gRPC's included) logs, so it lives in an atomic that the
 * daemon sets once at startup, not in a struct that would have to be passed
 * into gRPC's log callback, which takes no user pointer. */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <grpc/support/log.h>

/* PIPE_BUF: a write of at most this many bytes to a pipe is atomic, so
 * concurrent entries never interleave even when stderr is a pipe. */
#define LSD_LOG_LINE_MAX 4096

static atomic_int lsd_log_level_now = LSD_LOG_INFO;

void lsd_log_set_level(lsd_log_level l) {
    if (l < LSD_LOG_ERROR) l = LSD_LOG_ERROR;
    if (l > LSD_LOG_DEBUG) l = LSD_LOG_DEBUG;
    atomic_store_explicit(&lsd_log_level_now, (int)l, memory_order_relaxed);
}

lsd_log_level lsd_log_get_level(void) {
    return (lsd_log_level)atomic_load_explicit(&lsd_log_level_now, memory_order_relaxed);
}

bool lsd_log_parse_level(const char *s, lsd_log_level *out) {
    static const struct { const char *name; lsd_log_level level; } names[] = {
        {"error", LSD_LOG_ERROR}, {"warn", LSD_LOG_WARN}, {"warning", LSD_LOG_WARN},
        {"info", LSD_LOG_INFO}, {"debug", LSD_LOG_DEBUG},
    };
    if (!s) return false;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strcmp(s, names[i].name) == 0) {
            if (out) *out = names[i].level;
            return true;
        }
    }
    return false;
}

const char *lsd_log_level_name(lsd_log_level l) {
    switch (l) {
    case LSD_LOG_ERROR: return "error";
    case LSD_LOG_WARN: return "warn";
    case LSD_LOG_INFO: return "info";
    case LSD_LOG_DEBUG: return "debug";
    }
    return "?";
}

/* Append src to dst[*n..cap) escaping control bytes; stops (returning
 * false) when the next piece does not fit. */
static bool append_escaped(char *dst, size_t *n, size_t cap, const char *src) {
    for (const unsigned char *p = (const unsigned char *)src; *p; p++) {
        char tmp[5];
        size_t k;
        if (*p == '\n') { memcpy(tmp, "\\n", 2); k = 2; }
        else if (*p == '\r') { memcpy(tmp, "\\r", 2); k = 2; }
        else if (*p == '\t') { memcpy(tmp, "\\t", 2); k = 2; }
        else if (*p < 0x20 || *p == 0x7f) { snprintf(tmp, sizeof tmp, "\\x%02x", *p); k = 4; }
        else { tmp[0] = (char)*p; k = 1; }
        if (*n + k > cap) return false;
        memcpy(dst + *n, tmp, k);
        *n += k;
    }
    return true;
}

static void write_line(lsd_log_level l, const char *func, const char *msg) {
    char line[LSD_LOG_LINE_MAX];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int h = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ layerskipd[%ld] %s: ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, ts.tv_nsec / 1000000L, (long)getpid(), lsd_log_level_name(l));
    if (h < 0) return;
    size_t n = (size_t)h;
    /* room for "...\n" at the end whatever happens */
    const size_t cap = sizeof line - 4;
    bool fits = true;
    if (l == LSD_LOG_DEBUG && func && *func) {
        fits = append_escaped(line, &n, cap, func) && append_escaped(line, &n, cap, ": ");
    }
    if (fits) fits = append_escaped(line, &n, cap, msg);
    if (!fits) {
        memcpy(line + n, "...", 3);
        n += 3;
    }
    line[n++] = '\n';
    /* one write per entry; a short write or EINTR is retried for the rest */
    size_t off = 0;
    while (off < n) {
        ssize_t w = write(STDERR_FILENO, line + off, n - off);
        if (w < 0) {
            if (errno == EINTR) continue;
            return;
        }
        off += (size_t)w;
    }
}

void lsd_log_write(lsd_log_level l, const char *func, const char *fmt, ...) {
    char msg[LSD_LOG_LINE_MAX];
    va_list ap;
    va_start(ap, fmt);
    int r = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (r < 0) snprintf(msg, sizeof msg, "(unformattable log entry: %s)", fmt);
    write_line(l, func, msg);
}

static void lsd_log_from_gpr(gpr_log_func_args *args) {
    lsd_log_level l;
    switch (args->severity) {
    case GPR_LOG_SEVERITY_DEBUG: l = LSD_LOG_DEBUG; break;
    case GPR_LOG_SEVERITY_INFO: l = LSD_LOG_INFO; break;
    default: l = LSD_LOG_ERROR; break;
    }
    if (l > lsd_log_get_level()) return;
    const char *file = args->file ? args->file : "?";
    /* gRPC passes full source paths; the last component is enough to find it */
    const char *slash = strrchr(file, '/');
    if (slash) file = slash + 1;
    /* no func: the "grpc:" prefix already says where it comes from */
    lsd_log_write(l, "", "grpc: %s (%s:%d)", args->message ? args->message : "", file, args->line);
}

void lsd_log_install_grpc(void) {
    if (!getenv("GRPC_VERBOSITY")) {
        gpr_set_log_verbosity(lsd_log_get_level() >= LSD_LOG_DEBUG ? GPR_LOG_SEVERITY_DEBUG
                                                                   : GPR_LOG_SEVERITY_ERROR);
    }
    gpr_set_log_function(lsd_log_from_gpr);
}
