/* common.c: status text, error formatting, strict parsing and file reading
 * for the layerskip client. */
#include "common.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

const char *lsc_strerror(lsc_status s) {
    switch (s) {
    case LSC_OK: return "ok";
    case LSC_ERR_USAGE: return "bad usage";
    case LSC_ERR_IO: return "input/output error";
    case LSC_ERR_RPC: return "the server returned an error";
    case LSC_ERR_UNREACHABLE: return "cannot reach the server";
    case LSC_ERR_INTERRUPTED: return "interrupted";
    case LSC_ERR_NOMEM: return "out of memory";
    case LSC_ERR_DAEMON: return "the local daemon failed";
    case LSC_ERR_INPUT: return "bad input";
    }
    return "unknown status";
}

void lsc_err_set(lsc_err *e, const char *fmt, ...) {
    if (!e) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
}

double lsc_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

bool lsc_parse_int(const char *s, long long lo, long long hi, long long *out) {
    if (!s || !*s) return false;
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

bool lsc_parse_double(const char *s, double *out) {
    if (!s || !*s) return false;
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v)) return false;
    *out = v;
    return true;
}

bool lsc_parse_bool(const char *s, bool *out) {
    static const char *yes[] = {"true", "1", "yes", "on"}, *no[] = {"false", "0", "no", "off"};
    if (!s) return false;
    for (size_t i = 0; i < 4; i++) {
        if (!strcasecmp(s, yes[i])) { *out = true; return true; }
        if (!strcasecmp(s, no[i])) { *out = false; return true; }
    }
    return false;
}

lsc_status lsc_read_file(const char *path, char **data, size_t *len, lsc_err *err) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        lsc_err_set(err, "cannot open '%s': %s", path, strerror(errno));
        return LSC_ERR_IO;
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    if (!buf) { fclose(f); lsc_err_set(err, "out of memory reading '%s'", path); return LSC_ERR_NOMEM; }
    for (;;) {
        if (cap - n < 2) {
            char *nb = cap > SIZE_MAX / 2 ? NULL : realloc(buf, cap * 2);
            if (!nb) { free(buf); fclose(f); lsc_err_set(err, "out of memory reading '%s'", path); return LSC_ERR_NOMEM; }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) break;
    }
    if (ferror(f)) {
        lsc_err_set(err, "cannot read '%s': %s", path, strerror(errno));
        free(buf);
        fclose(f);
        return LSC_ERR_IO;
    }
    fclose(f);
    buf[n] = '\0';
    *data = buf;
    if (len) *len = n;
    return LSC_OK;
}
