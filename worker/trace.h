/* trace.h: per-rank spans (draft, verify, forward, wait, send, ...) with wall
 * clock timestamps, one JSON object per line in <prefix>.rank<R>.jsonl, so a
 * test or an operator can see whether stages overlap in time. Timestamps are
 * CLOCK_REALTIME microseconds: comparable between ranks of one host (and
 * between hosts only as far as their clocks agree). */
#ifndef LSW_TRACE_H
#define LSW_TRACE_H

#include <stdint.h>
#include <stdio.h>

#include "layerskip/ls_common.h"

typedef struct lsw_trace {
    FILE *f; /* NULL: tracing off */
    int rank;
} lsw_trace;

/* prefix NULL or "": off */
ls_status lsw_trace_open(lsw_trace *t, const char *prefix, int rank, ls_err *err);
void lsw_trace_span(lsw_trace *t, const char *name, int slot, int generation, int pos, int n, int64_t t0_us,
                    int64_t t1_us);
void lsw_trace_close(lsw_trace *t);

#endif
