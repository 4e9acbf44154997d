/* metrics.c: counters, gauges and histograms behind one mutex (updates are
 * a few additions, far below the cost of any RPC), the Prometheus text
 * renderer, and a single-threaded poll() HTTP server for /metrics. The
 * server multiplexes its connections so a client that connects and says
 * nothing costs a slot and a timer, never the next scrape. */
#define _GNU_SOURCE /* accept4, MSG_NOSIGNAL, pipe2 */
#include "metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define LSD_METRICS_MAX_METHODS 32
#define LSD_METRICS_METHOD_LEN 48
#define LSD_HIST_MAX_BOUNDS 20
#define LSD_HTTP_MAX_CONNS 64
#define LSD_HTTP_REQ_MAX 8192
#define LSD_HTTP_DEADLINE_MS 5000

static const char *const lsd_grpc_codes[] = {
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
    "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED",
    "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
};
#define LSD_N_CODES (sizeof lsd_grpc_codes / sizeof lsd_grpc_codes[0])
#define LSD_CODE_UNKNOWN 2

/* Bucket bounds (seconds). RPCs range from microseconds (Tokenize) to
 * minutes (long generations); per-token latency from ~1 ms to ~1 s. */
static const double lsd_bounds_request[] = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                            1, 2.5, 5, 10, 30, 60, 120, 300};
static const double lsd_bounds_ttft[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
static const double lsd_bounds_queue[] = {0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120};
static const double lsd_bounds_tpot[] = {0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075,
                                         0.1, 0.15, 0.2, 0.3, 0.5, 1};

typedef struct lsd_histogram {
    const double *bounds;
    int n_bounds;
    uint64_t counts[LSD_HIST_MAX_BOUNDS + 1]; /* per bucket, not cumulative; last = above every bound */
    double sum;
    uint64_t count;
} lsd_histogram;

typedef struct lsd_method_stats {
    char name[LSD_METRICS_METHOD_LEN];
    uint64_t by_code[LSD_N_CODES];
    lsd_histogram duration;
} lsd_method_stats;

struct lsd_metrics {
    pthread_mutex_t mu;
    int max_sessions, max_queue;
    int queue_depth, busy_sessions;
    int64_t kv_reserved, kv_budget, kv_bytes_per_pos;
    int n_methods;
    lsd_method_stats methods[LSD_METRICS_MAX_METHODS];
    uint64_t prompt_tokens, generated_tokens, drafted, accepted;
    lsd_histogram ttft, queue_wait, tpot;

    /* HTTP server; started and stopped from one thread (main) */
    bool http_running;
    pthread_t http_thread;
    int http_fd;
    int http_port;
    int http_wake[2]; /* stop writes one byte to [1]; the loop polls [0] */
    struct http_conn *conns; /* LSD_HTTP_MAX_CONNS slots, owned by the HTTP thread while it runs */
};

static void hist_init(lsd_histogram *h, const double *bounds, int n) {
    memset(h, 0, sizeof *h);
    h->bounds = bounds;
    h->n_bounds = n;
}

static void hist_observe(lsd_histogram *h, double v) {
    if (!(v >= 0) || isinf(v)) return; /* NaN, negative and infinite: "not measured" */
    int i = 0;
    while (i < h->n_bounds && v > h->bounds[i]) i++;
    h->counts[i]++;
    h->count++;
    h->sum += v;
}

lsd_metrics *lsd_metrics_create(int max_sessions, int max_queue) {
    lsd_metrics *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    if (pthread_mutex_init(&m->mu, NULL) != 0) {
        free(m);
        return NULL;
    }
    m->max_sessions = max_sessions;
    m->max_queue = max_queue;
    hist_init(&m->ttft, lsd_bounds_ttft, (int)(sizeof lsd_bounds_ttft / sizeof(double)));
    hist_init(&m->queue_wait, lsd_bounds_queue, (int)(sizeof lsd_bounds_queue / sizeof(double)));
    hist_init(&m->tpot, lsd_bounds_tpot, (int)(sizeof lsd_bounds_tpot / sizeof(double)));
    m->http_fd = -1;
    m->http_port = -1;
    m->http_wake[0] = m->http_wake[1] = -1;
    return m;
}

void lsd_metrics_free(lsd_metrics *m) {
    if (!m) return;
    lsd_metrics_http_stop(m);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

/* caller holds mu */
static lsd_method_stats *method_slot(lsd_metrics *m, const char *method) {
    if (!method || !*method || strlen(method) >= LSD_METRICS_METHOD_LEN) method = "other";
    for (int i = 0; i < m->n_methods; i++) {
        if (strcmp(m->methods[i].name, method) == 0) return &m->methods[i];
    }
    /* the last slot is kept for "other" so a flood of odd names stays bounded */
    if (m->n_methods >= LSD_METRICS_MAX_METHODS - 1 && strcmp(method, "other") != 0) {
        return method_slot(m, "other");
    }
    lsd_method_stats *s = &m->methods[m->n_methods++];
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", method);
    hist_init(&s->duration, lsd_bounds_request, (int)(sizeof lsd_bounds_request / sizeof(double)));
    return s;
}

void lsd_metrics_request_done(lsd_metrics *m, const char *method, const char *code, double seconds) {
    if (!m) return;
    size_t ci = LSD_CODE_UNKNOWN;
    for (size_t i = 0; code && i < LSD_N_CODES; i++) {
        if (strcmp(code, lsd_grpc_codes[i]) == 0) ci = i;
    }
    pthread_mutex_lock(&m->mu);
    lsd_method_stats *s = method_slot(m, method);
    s->by_code[ci]++;
    hist_observe(&s->duration, seconds);
    pthread_mutex_unlock(&m->mu);
}

void lsd_metrics_generation_done(lsd_metrics *m, int prompt_tokens, int generated_tokens, int64_t drafted,
                                 int64_t accepted, double ttft_seconds, double queue_seconds,
                                 double seconds_per_token) {
    if (!m) return;
    pthread_mutex_lock(&m->mu);
    m->prompt_tokens += prompt_tokens > 0 ? (uint64_t)prompt_tokens : 0;
    m->generated_tokens += generated_tokens > 0 ? (uint64_t)generated_tokens : 0;
    m->drafted += drafted > 0 ? (uint64_t)drafted : 0;
    m->accepted += accepted > 0 ? (uint64_t)accepted : 0;
    hist_observe(&m->ttft, ttft_seconds);
    hist_observe(&m->queue_wait, queue_seconds);
    hist_observe(&m->tpot, seconds_per_token);
    pthread_mutex_unlock(&m->mu);
}

void lsd_metrics_set_queue_depth(lsd_metrics *m, int n) {
    if (!m) return;
    pthread_mutex_lock(&m->mu);
    m->queue_depth = n;
    pthread_mutex_unlock(&m->mu);
}

void lsd_metrics_set_busy_sessions(lsd_metrics *m, int n) {
    if (!m) return;
    pthread_mutex_lock(&m->mu);
    m->busy_sessions = n;
    pthread_mutex_unlock(&m->mu);
}

void lsd_metrics_set_kv(lsd_metrics *m, int64_t reserved, int64_t budget, int64_t bytes_per_pos) {
    if (!m) return;
    pthread_mutex_lock(&m->mu);
    m->kv_reserved = reserved;
    m->kv_budget = budget;
    m->kv_bytes_per_pos = bytes_per_pos;
    pthread_mutex_unlock(&m->mu);
}

/* ---- rendering ---- */

typedef struct strbuf {
    char *p;
    size_t len, cap;
    bool oom;
} strbuf;

static void sb_printf(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(strbuf *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = true;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap * 2 + (size_t)n + 1;
        char *q = realloc(b->p, cap);
        if (!q) {
            b->oom = true;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
}

/* label value escaping of the text format: backslash, double quote, newline */
static void escape_label(const char *s, char *out, size_t out_len) {
    size_t n = 0;
    for (; *s && n + 3 < out_len; s++) {
        if (*s == '\\' || *s == '"') { out[n++] = '\\'; out[n++] = *s; }
        else if (*s == '\n') { out[n++] = '\\'; out[n++] = 'n'; }
        else out[n++] = *s;
    }
    out[n] = '\0';
}

static void render_header(strbuf *b, const char *name, const char *type, const char *help) {
    sb_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* labels: "" or `method="x"` (without braces) */
static void render_hist(strbuf *b, const char *name, const char *labels, const lsd_histogram *h) {
    uint64_t cum = 0;
    const char *sep = labels[0] ? "," : "";
    for (int i = 0; i < h->n_bounds; i++) {
        cum += h->counts[i];
        sb_printf(b, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep, h->bounds[i], (unsigned long long)cum);
    }
    cum += h->counts[h->n_bounds];
    sb_printf(b, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep, (unsigned long long)cum);
    if (labels[0]) {
        sb_printf(b, "%s_sum{%s} %.15g\n%s_count{%s} %llu\n", name, labels, h->sum, name, labels,
                  (unsigned long long)h->count);
    } else {
        sb_printf(b, "%s_sum %.15g\n%s_count %llu\n", name, h->sum, name, (unsigned long long)h->count);
    }
}

char *lsd_metrics_render(lsd_metrics *m) {
    if (!m) return NULL;
    strbuf b = {malloc(8192), 0, 8192, false};
    if (!b.p) return NULL;
    b.p[0] = '\0';
    pthread_mutex_lock(&m->mu);

    render_header(&b, "layerskip_requests_total", "counter", "Finished RPCs by method and gRPC status code.");
    for (int i = 0; i < m->n_methods; i++) {
        char esc[2 * LSD_METRICS_METHOD_LEN + 4];
        escape_label(m->methods[i].name, esc, sizeof esc);
        for (size_t c = 0; c < LSD_N_CODES; c++) {
            if (m->methods[i].by_code[c] == 0) continue;
            sb_printf(&b, "layerskip_requests_total{method=\"%s\",code=\"%s\"} %llu\n", esc, lsd_grpc_codes[c],
                      (unsigned long long)m->methods[i].by_code[c]);
        }
    }
    render_header(&b, "layerskip_request_duration_seconds", "histogram", "RPC duration by method, in seconds.");
    for (int i = 0; i < m->n_methods; i++) {
        char esc[2 * LSD_METRICS_METHOD_LEN + 4], labels[2 * LSD_METRICS_METHOD_LEN + 16];
        escape_label(m->methods[i].name, esc, sizeof esc);
        snprintf(labels, sizeof labels, "method=\"%s\"", esc);
        render_hist(&b, "layerskip_request_duration_seconds", labels, &m->methods[i].duration);
    }

    render_header(&b, "layerskip_prompt_tokens_total", "counter", "Prompt tokens of finished generations.");
    sb_printf(&b, "layerskip_prompt_tokens_total %llu\n", (unsigned long long)m->prompt_tokens);
    render_header(&b, "layerskip_generated_tokens_total", "counter", "Tokens generated by finished generations.");
    sb_printf(&b, "layerskip_generated_tokens_total %llu\n", (unsigned long long)m->generated_tokens);
    render_header(&b, "layerskip_drafted_tokens_total", "counter",
                  "Tokens drafted by the early-exit layers in self-speculative generations.");
    sb_printf(&b, "layerskip_drafted_tokens_total %llu\n", (unsigned long long)m->drafted);
    render_header(&b, "layerskip_accepted_tokens_total", "counter",
                  "Drafted tokens the full model accepted in self-speculative generations.");
    sb_printf(&b, "layerskip_accepted_tokens_total %llu\n", (unsigned long long)m->accepted);

    render_header(&b, "layerskip_time_to_first_token_seconds", "histogram",
                  "Time from the start of a generation to its first token, in seconds.");
    render_hist(&b, "layerskip_time_to_first_token_seconds", "", &m->ttft);
    render_header(&b, "layerskip_queue_wait_seconds", "histogram",
                  "Time requests waited in the queue for a free session, in seconds.");
    render_hist(&b, "layerskip_queue_wait_seconds", "", &m->queue_wait);
    render_header(&b, "layerskip_time_per_output_token_seconds", "histogram",
                  "Mean time per generated token after the first, per generation, in seconds.");
    render_hist(&b, "layerskip_time_per_output_token_seconds", "", &m->tpot);

    render_header(&b, "layerskip_queue_depth", "gauge", "Requests waiting for a session now.");
    sb_printf(&b, "layerskip_queue_depth %d\n", m->queue_depth);
    render_header(&b, "layerskip_sessions_busy", "gauge", "Sessions running a generation now.");
    sb_printf(&b, "layerskip_sessions_busy %d\n", m->busy_sessions);
    render_header(&b, "layerskip_kv_reserved_tokens", "gauge",
                  "KV cache positions reserved by the running generations.");
    sb_printf(&b, "layerskip_kv_reserved_tokens %lld\n", (long long)m->kv_reserved);
    render_header(&b, "layerskip_kv_reserved_bytes", "gauge",
                  "KV cache bytes reserved by the running generations (all layers).");
    sb_printf(&b, "layerskip_kv_reserved_bytes %lld\n", (long long)(m->kv_reserved * m->kv_bytes_per_pos));
    render_header(&b, "layerskip_kv_budget_tokens", "gauge",
                  "KV positions the running generations may reserve together (--kv-budget; 0 = no budget).");
    sb_printf(&b, "layerskip_kv_budget_tokens %lld\n", (long long)m->kv_budget);
    render_header(&b, "layerskip_sessions_max", "gauge", "Configured sessions (--max-sessions).");
    sb_printf(&b, "layerskip_sessions_max %d\n", m->max_sessions);
    render_header(&b, "layerskip_queue_max", "gauge", "Configured queue length (--max-queue).");
    sb_printf(&b, "layerskip_queue_max %d\n", m->max_queue);
    render_header(&b, "layerskip_acceptance_ratio", "gauge",
                  "Accepted / drafted tokens over all self-speculative generations (0 when none).");
    sb_printf(&b, "layerskip_acceptance_ratio %.15g\n",
              m->drafted ? (double)m->accepted / (double)m->drafted : 0.0);

    pthread_mutex_unlock(&m->mu);
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

/* ---- HTTP server ---- */

typedef struct http_conn {
    int fd;                     /* -1: free slot */
    char req[LSD_HTTP_REQ_MAX];
    size_t req_len;
    char *out;                  /* response being written, or NULL while reading */
    size_t out_len, out_off;
    int64_t deadline_ms;
} http_conn;

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void conn_close(http_conn *c) {
    if (c->fd >= 0) close(c->fd);
    free(c->out);
    c->fd = -1;
    c->out = NULL;
    c->req_len = c->out_len = c->out_off = 0;
}

static char *http_response(int status, const char *reason, const char *ctype, const char *extra_headers,
                           const char *body, size_t body_len, bool head_only, size_t *out_len) {
    char hdr[512];
    int h = snprintf(hdr, sizeof hdr,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%sConnection: close\r\n\r\n",
                     status, reason, ctype, body_len, extra_headers);
    if (h < 0 || (size_t)h >= sizeof hdr) return NULL;
    size_t n = (size_t)h + (head_only ? 0 : body_len);
    char *out = malloc(n ? n : 1);
    if (!out) return NULL;
    memcpy(out, hdr, (size_t)h);
    if (!head_only && body_len) memcpy(out + h, body, body_len);
    *out_len = n;
    return out;
}

static char *simple_response(int status, const char *reason, const char *extra, bool head_only, size_t *out_len) {
    char body[128];
    int n = snprintf(body, sizeof body, "%d %s\n", status, reason);
    return http_response(status, reason, "text/plain; charset=utf-8", extra, body, (size_t)n, head_only, out_len);
}

/* Build the answer once the header block is complete (or the cap is hit). */
static void conn_answer(lsd_metrics *m, http_conn *c, bool complete) {
    size_t n = 0;
    char *out = NULL;
    if (!complete) {
        out = simple_response(431, "Request Header Fields Too Large", "", false, &n);
    } else {
        /* request line: METHOD SP TARGET SP HTTP/x.y */
        char method[16], target[1024], version[16];
        char *eol = memchr(c->req, '\n', c->req_len);
        size_t line_len = eol ? (size_t)(eol - c->req) : 0;
        char line[1100];
        bool ok = eol && line_len < sizeof line;
        if (ok) {
            memcpy(line, c->req, line_len);
            line[line_len] = '\0';
            if (line_len && line[line_len - 1] == '\r') line[line_len - 1] = '\0';
            char extra;
            ok = sscanf(line, "%15s %1023s %15s %c", method, target, version, &extra) == 3 &&
                 strncmp(version, "HTTP/1.", 7) == 0;
        }
        if (!ok) {
            out = simple_response(400, "Bad Request", "", false, &n);
        } else {
            bool head = strcmp(method, "HEAD") == 0;
            char *q = strchr(target, '?');
            if (q) *q = '\0';
            if (!head && strcmp(method, "GET") != 0) {
                out = simple_response(405, "Method Not Allowed", "Allow: GET, HEAD\r\n", false, &n);
            } else if (strcmp(target, "/metrics") != 0) {
                out = simple_response(404, "Not Found", "", head, &n);
            } else {
                char *text = lsd_metrics_render(m);
                if (text) {
                    out = http_response(200, "OK", "text/plain; version=0.0.4; charset=utf-8", "", text,
                                        strlen(text), head, &n);
                    free(text);
                } else {
                    out = simple_response(500, "Internal Server Error", "", head, &n);
                }
            }
        }
    }
    if (!out) {
        conn_close(c);
        return;
    }
    c->out = out;
    c->out_len = n;
    c->out_off = 0;
}

static bool headers_complete(const http_conn *c) {
    for (size_t i = 0; i + 1 < c->req_len; i++) {
        if (c->req[i] == '\n' && (c->req[i + 1] == '\n' ||
                                  (c->req[i + 1] == '\r' && i + 2 < c->req_len && c->req[i + 2] == '\n'))) {
            return true;
        }
    }
    return false;
}

static void conn_read(lsd_metrics *m, http_conn *c) {
    for (;;) {
        ssize_t r = recv(c->fd, c->req + c->req_len, sizeof c->req - c->req_len, 0);
        if (r > 0) {
            c->req_len += (size_t)r;
            if (headers_complete(c)) {
                conn_answer(m, c, true);
                return;
            }
            if (c->req_len == sizeof c->req) {
                conn_answer(m, c, false);
                return;
            }
            continue;
        }
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (r < 0 && errno == EINTR) continue;
        conn_close(c); /* EOF before a full request, or an error */
        return;
    }
}

static void conn_write(http_conn *c) {
    while (c->out_off < c->out_len) {
        ssize_t w = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (w > 0) {
            c->out_off += (size_t)w;
            continue;
        }
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (w < 0 && errno == EINTR) continue;
        conn_close(c);
        return;
    }
    /* done: FIN after the response, then close */
    shutdown(c->fd, SHUT_WR);
    conn_close(c);
}

static void *http_loop(void *arg) {
    lsd_metrics *m = arg;
    http_conn *conns = m->conns;
    struct pollfd pfd[LSD_HTTP_MAX_CONNS + 2];
    int idx[LSD_HTTP_MAX_CONNS + 2];
    /* after an accept error such as EMFILE the listening socket stays
     * readable; stop polling it for a moment instead of spinning */
    int64_t accept_paused_until = 0;
    for (;;) {
        int np = 0;
        int64_t now = now_ms(), next = -1;
        bool accepting = now >= accept_paused_until;
        if (!accepting) next = accept_paused_until;
        pfd[np++] = (struct pollfd){.fd = m->http_wake[0], .events = POLLIN};
        pfd[np++] = (struct pollfd){.fd = accepting ? m->http_fd : -1, .events = POLLIN};
        for (int i = 0; i < LSD_HTTP_MAX_CONNS; i++) {
            http_conn *c = &conns[i];
            if (c->fd < 0) continue;
            if (now >= c->deadline_ms) {
                conn_close(c); /* too slow: drop it */
                continue;
            }
            if (next < 0 || c->deadline_ms < next) next = c->deadline_ms;
            idx[np] = i;
            pfd[np++] = (struct pollfd){.fd = c->fd, .events = c->out ? POLLOUT : POLLIN};
        }
        int timeout = next < 0 ? -1 : (int)(next - now + 1);
        int r = poll(pfd, (nfds_t)np, timeout);
        if (r < 0) {
            if (errno == EINTR) continue;
            break;
        }
        if (pfd[0].revents) break; /* stop requested */
        if (pfd[1].revents & POLLIN) {
            for (;;) {
                int fd = accept4(m->http_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (fd < 0) {
                    if (errno == EINTR || errno == ECONNABORTED) continue;
                    if (errno != EAGAIN && errno != EWOULDBLOCK) accept_paused_until = now_ms() + 100;
                    break;
                }
                int slot = -1;
                for (int i = 0; i < LSD_HTTP_MAX_CONNS && slot < 0; i++) {
                    if (conns[i].fd < 0) slot = i;
                }
                if (slot < 0) {
                    /* full: refuse at once rather than queue behind slow clients */
                    static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                                               "Connection: close\r\n\r\n";
                    ssize_t ignored = send(fd, busy, sizeof busy - 1, MSG_NOSIGNAL);
                    (void)ignored;
                    close(fd);
                    continue;
                }
                conns[slot].fd = fd;
                conns[slot].req_len = 0;
                conns[slot].deadline_ms = now_ms() + LSD_HTTP_DEADLINE_MS;
            }
        }
        for (int k = 2; k < np; k++) {
            if (!pfd[k].revents) continue;
            http_conn *c = &conns[idx[k]];
            if (c->fd != pfd[k].fd) continue;
            if (c->out) conn_write(c);
            else conn_read(m, c);
            /* answered on the read: try writing at once, the socket is usually writable */
            if (c->fd >= 0 && c->out && c->out_off == 0) conn_write(c);
        }
    }
    for (int i = 0; i < LSD_HTTP_MAX_CONNS; i++) conn_close(&conns[i]);
    return NULL;
}

static void set_err(char *err, size_t err_len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t err_len, const char *fmt, ...) {
    if (!err || !err_len) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
}

/* "HOST:PORT", "[V6]:PORT", ":PORT" -> host (NULL = any) and port text */
static bool split_listen(const char *listen, char *host, size_t host_len, char *port, size_t port_len) {
    const char *colon;
    if (listen[0] == '[') {
        const char *close_br = strchr(listen, ']');
        if (!close_br || close_br[1] != ':') return false;
        size_t n = (size_t)(close_br - listen - 1);
        if (n == 0 || n >= host_len) return false;
        memcpy(host, listen + 1, n);
        host[n] = '\0';
        colon = close_br + 1;
    } else {
        colon = strrchr(listen, ':');
        if (!colon || memchr(listen, ':', (size_t)(colon - listen))) return false; /* bare IPv6 needs [] */
        size_t n = (size_t)(colon - listen);
        if (n >= host_len) return false;
        memcpy(host, listen, n);
        host[n] = '\0';
    }
    const char *p = colon + 1;
    size_t pn = strlen(p);
    if (pn == 0 || pn >= port_len || pn > 5) return false;
    for (size_t i = 0; i < pn; i++) {
        if (p[i] < '0' || p[i] > '9') return false;
    }
    if (atoi(p) > 65535) return false;
    memcpy(port, p, pn + 1);
    return true;
}

int lsd_metrics_http_start(lsd_metrics *m, const char *listen_addr, char *err, size_t err_len) {
    if (!m || !listen_addr) {
        set_err(err, err_len, "--metrics-listen: no address given");
        return -1;
    }
    if (m->http_running) {
        set_err(err, err_len, "--metrics-listen %s: the metrics server is already running", listen_addr);
        return -1;
    }
    char host[256], port[8];
    if (!split_listen(listen_addr, host, sizeof host, port, sizeof port)) {
        set_err(err, err_len, "--metrics-listen '%.100s': expected HOST:PORT (e.g. 127.0.0.1:9090, [::1]:9090, "
                              ":9090 for every interface) with a port in [0, 65535]", listen_addr);
        return -1;
    }
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int gai = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
    if (gai != 0) {
        set_err(err, err_len, "--metrics-listen '%.100s': cannot resolve '%s': %s; give an IP address or a known host name",
                listen_addr, host, gai_strerror(gai));
        return -1;
    }
    int fd = -1, last_errno = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            last_errno = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 64) == 0) break;
        last_errno = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        set_err(err, err_len, "--metrics-listen '%.100s': cannot listen: %s; choose a free port or another address",
                listen_addr, strerror(last_errno));
        return -1;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    int bound_port = -1;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET) bound_port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        else if (ss.ss_family == AF_INET6) bound_port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    m->conns = calloc(LSD_HTTP_MAX_CONNS, sizeof *m->conns);
    if (!m->conns) {
        set_err(err, err_len, "--metrics-listen: out of memory");
        close(fd);
        return -1;
    }
    for (int i = 0; i < LSD_HTTP_MAX_CONNS; i++) m->conns[i].fd = -1;
    if (pipe2(m->http_wake, O_CLOEXEC | O_NONBLOCK) != 0) {
        set_err(err, err_len, "--metrics-listen: cannot create a pipe: %s", strerror(errno));
        close(fd);
        free(m->conns);
        m->conns = NULL;
        return -1;
    }
    m->http_fd = fd;
    m->http_port = bound_port;
    int rc = pthread_create(&m->http_thread, NULL, http_loop, m);
    if (rc != 0) {
        set_err(err, err_len, "--metrics-listen: cannot start the HTTP thread: %s", strerror(rc));
        close(fd);
        close(m->http_wake[0]);
        close(m->http_wake[1]);
        m->http_fd = m->http_wake[0] = m->http_wake[1] = -1;
        m->http_port = -1;
        free(m->conns);
        m->conns = NULL;
        return -1;
    }
    m->http_running = true;
    return 0;
}

int lsd_metrics_http_port(lsd_metrics *m) {
    return m && m->http_running ? m->http_port : -1;
}

void lsd_metrics_http_stop(lsd_metrics *m) {
    if (!m || !m->http_running) return;
    char one = 1;
    while (write(m->http_wake[1], &one, 1) < 0 && errno == EINTR) {
    }
    pthread_join(m->http_thread, NULL);
    close(m->http_fd);
    close(m->http_wake[0]);
    close(m->http_wake[1]);
    m->http_fd = m->http_wake[0] = m->http_wake[1] = -1;
    m->http_port = -1;
    free(m->conns);
    m->conns = NULL;
    m->http_running = false;
}
