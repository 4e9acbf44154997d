/* common.h: status codes, error text and small helpers shared by the
 * layerskip client's modules (rpc, batch, local mode, main). The client talks
 * gRPC only: nothing here may include engine headers. */
#ifndef LSC_COMMON_H
#define LSC_COMMON_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum lsc_status {
    LSC_OK = 0,
    LSC_ERR_USAGE = -1,       /* bad flag or argument: exit 2 */
    LSC_ERR_IO = -2,          /* a file could not be read or written */
    LSC_ERR_RPC = -3,         /* the server answered with a non-OK status */
    LSC_ERR_UNREACHABLE = -4, /* no connection to the server */
    LSC_ERR_INTERRUPTED = -5, /* Ctrl-C / SIGTERM */
    LSC_ERR_NOMEM = -6,
    LSC_ERR_DAEMON = -7,      /* local mode: the private daemon failed */
    LSC_ERR_INPUT = -8,       /* bad input data (JSONL line) */
} lsc_status;

const char *lsc_strerror(lsc_status s);

/* Error text for the user: what went wrong, naming the thing and the fix. */
typedef struct lsc_err {
    char msg[1024];
} lsc_err;

__attribute__((format(printf, 2, 3))) void lsc_err_set(lsc_err *e, const char *fmt, ...);

/* Seconds on the monotonic clock. */
double lsc_now(void);

/* Strict number parsing: the whole string, in range. */
bool lsc_parse_int(const char *s, long long lo, long long hi, long long *out);
bool lsc_parse_double(const char *s, double *out);
bool lsc_parse_bool(const char *s, bool *out); /* true/false/1/0/yes/no/on/off */

/* Read a whole file (NUL-terminated; *len excludes the NUL). */
lsc_status lsc_read_file(const char *path, char **data, size_t *len, lsc_err *err);

#endif
