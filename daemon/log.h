/* log.h: the daemon's log. One line per entry on stderr,
 *   2026-11-30T02:50:01.123Z layerskipd[4242] info: message
 * written with a single write(2) so lines from different threads never
 * interleave (journald and container runtimes read stderr). The level check
 * sits in the LSD_LOG macro so filtered entries do not evaluate their
 * arguments. gRPC's own gpr_log output is routed through the same writer. */
#ifndef LSD_LOG_H
#define LSD_LOG_H

#include <stdbool.h>

typedef enum lsd_log_level {
    LSD_LOG_ERROR = 0,
    LSD_LOG_WARN = 1,
    LSD_LOG_INFO = 2,
    LSD_LOG_DEBUG = 3,
} lsd_log_level;

void lsd_log_set_level(lsd_log_level l);
lsd_log_level lsd_log_get_level(void);
/* "error", "warn", "info", "debug" (also "warning"); false for anything else */
bool lsd_log_parse_level(const char *s, lsd_log_level *out);
/* "error", "warn", "info", "debug" */
const char *lsd_log_level_name(lsd_log_level l);

/* One entry. Control characters in the message (a hostile path or prompt
 * could carry newlines) are escaped so one entry is always one line; entries
 * longer than about 4 KiB are cut and end with "...". func is printed at
 * debug level only. */
void lsd_log_write(lsd_log_level l, const char *func, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define LSD_LOG(lvl, ...) do { if ((lvl) <= lsd_log_get_level()) \
    lsd_log_write((lvl), __func__, __VA_ARGS__); } while (0)

/* Route gpr_log through lsd_log_write (gpr DEBUG/INFO/ERROR -> debug/info/
 * error). Unless GRPC_VERBOSITY is set in the environment, gRPC's own filter
 * is set to debug when our level is debug and to error otherwise. Call
 * before grpc_init() and after lsd_log_set_level(). */
void lsd_log_install_grpc(void);

#endif
