/* metrics.h: the daemon's Prometheus metrics (text exposition format
 * 0.0.4) and the small HTTP server that exposes them at /metrics. All
 * update functions are thread-safe and cheap (one mutex, no allocation), so
 * the scheduler and the completion-queue thread may call them directly.
 *
 * Metric names (tests and dashboards scrape exactly these):
 *   layerskip_requests_total{method,code}            counter
 *   layerskip_request_duration_seconds{method}       histogram
 *   layerskip_prompt_tokens_total, layerskip_generated_tokens_total,
 *   layerskip_drafted_tokens_total, layerskip_accepted_tokens_total  counters
 *   layerskip_time_to_first_token_seconds            histogram
 *   layerskip_queue_wait_seconds                     histogram
 *   layerskip_time_per_output_token_seconds          histogram
 *   layerskip_queue_depth, layerskip_sessions_busy,
 *   layerskip_sessions_max, layerskip_queue_max,
 *   layerskip_kv_reserved_tokens, layerskip_kv_reserved_bytes,
 *   layerskip_kv_budget_tokens                        gauges
 *   layerskip_acceptance_ratio  gauge: accepted / drafted (0 when none) */
#ifndef LSD_METRICS_H
#define LSD_METRICS_H

#include <stddef.h>
#include <stdint.h>

typedef struct lsd_metrics lsd_metrics;

/* NULL when out of memory */
lsd_metrics *lsd_metrics_create(int max_sessions, int max_queue);
/* stops the HTTP server if running; NULL is fine */
void lsd_metrics_free(lsd_metrics *m);

/* One finished RPC. method: the short name ("Generate", "GenerateStream",
 * "Tokenize", "Detokenize", "GetModelInfo", "Health.Check", "Health.Watch",
 * "Reflection"); at most 32 distinct methods are tracked, later ones count as
 * "other". code: the gRPC status name ("OK", "CANCELLED",
 * "INVALID_ARGUMENT", ...); a name outside the 17 canonical ones counts as
 * "UNKNOWN". seconds < 0 or NaN counts the request but not its duration. */
void lsd_metrics_request_done(lsd_metrics *m, const char *method, const char *code, double seconds);

/* One finished generation, whatever its status. Token counts < 0 count as
 * 0. A duration < 0 or NaN is not observed: pass -1 for ttft_seconds and
 * seconds_per_token when no token was generated, and for queue_seconds when
 * the request never waited in the queue. */
void lsd_metrics_generation_done(lsd_metrics *m, int prompt_tokens, int generated_tokens, int64_t drafted,
                                 int64_t accepted, double ttft_seconds, double queue_seconds,
                                 double seconds_per_token);

void lsd_metrics_set_queue_depth(lsd_metrics *m, int n);
void lsd_metrics_set_busy_sessions(lsd_metrics *m, int n);
/* KV positions reserved by running jobs, the budget (0 = none) and bytes
 * of one position over all layers */
void lsd_metrics_set_kv(lsd_metrics *m, int64_t reserved, int64_t budget, int64_t bytes_per_pos);

/* The exposition text: malloc'd, NUL-terminated; caller frees. NULL when
 * out of memory. */
char *lsd_metrics_render(lsd_metrics *m);

/* HTTP/1.1 server thread on listen = "HOST:PORT" ("[::1]:9090" for IPv6,
 * ":9090" for every interface, port 0 for any free port). GET or HEAD
 * /metrics answers 200 with the text; other paths 404, other methods 405,
 * malformed requests 400. One poll loop serves up to 64 connections at once,
 * each with a 5 s deadline and an 8 KiB request cap, so a slow or silent
 * client never delays another one, and nothing blocks the daemon.
 * Returns 0, or -1 with err naming --metrics-listen and the fix. */
int lsd_metrics_http_start(lsd_metrics *m, const char *listen, char *err, size_t err_len);
/* the bound TCP port (useful after port 0), or -1 when not serving */
int lsd_metrics_http_port(lsd_metrics *m);
/* wakes and joins the thread, closes every socket; no-op when not serving */
void lsd_metrics_http_stop(lsd_metrics *m);

#endif
