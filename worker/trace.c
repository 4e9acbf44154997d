/* trace.c: JSON-lines span writer (trace.h). */
#include "trace.h"

#include <errno.h>
#include <string.h>

ls_status lsw_trace_open(lsw_trace *t, const char *prefix, int rank, ls_err *err) {
    t->f = NULL;
    t->rank = rank;
    if (!prefix || !*prefix) return LS_OK;
    char path[1024];
    if (snprintf(path, sizeof path, "%s.rank%d.jsonl", prefix, rank) >= (int)sizeof path)
        return ls_err_set(err, LS_ERR_INVALID, "trace prefix \"%.200s...\" is too long", prefix);
    t->f = fopen(path, "w");
    if (!t->f)
        return ls_err_set(err, LS_ERR_IO, "cannot write the trace file %s: %s (check the trace prefix's directory)",
                          path, strerror(errno));
    return LS_OK;
}

void lsw_trace_span(lsw_trace *t, const char *name, int slot, int generation, int pos, int n, int64_t t0_us,
                    int64_t t1_us) {
    if (!t->f) return;
    fprintf(t->f, "{\"rank\":%d,\"span\":\"%s\",\"slot\":%d,\"gen\":%d,\"pos\":%d,\"n\":%d,\"t0\":%lld,\"t1\":%lld}\n",
            t->rank, name, slot, generation, pos, n, (long long)t0_us, (long long)t1_us);
}

void lsw_trace_close(lsw_trace *t) {
    if (t->f) fclose(t->f);
    t->f = NULL;
}
