/* test_daemon_metrics.c: daemon/metrics.c. The exposition text is parsed
 * back (every sample line well formed, HELP/TYPE before each family,
 * cumulative buckets, +Inf == _count) and checked against what was
 * recorded; updates from many threads sum exactly; the HTTP server answers
 * /metrics, 404/405/400/431, keeps answering while silent or half-sent
 * clients hold connections, drops them after its deadline, refuses past its
 * connection cap, and stops promptly. */
#define _GNU_SOURCE
#include "metrics.h"
#include "test_util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- a strict-enough parser of the text format ---- */

static bool name_char(char c, bool first) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' || (!first && c >= '0' && c <= '9');
}

/* One sample line: name, optional {k="v",...}, space, value. */
static bool parse_sample(const char *line, char *name, size_t name_len, char *labels, size_t labels_len, double *value) {
    const char *p = line;
    size_t n = 0;
    if (!name_char(*p, true)) return false;
    while (name_char(*p, n == 0) && n + 1 < name_len) name[n++] = *p++;
    name[n] = '\0';
    labels[0] = '\0';
    if (*p == '{') {
        const char *start = p;
        p++;
        while (*p != '}') {
            if (!name_char(*p, true)) return false;
            while (name_char(*p, false)) p++;
            if (*p++ != '=' || *p++ != '"') return false;
            while (*p && *p != '"') {
                if (*p == '\\') {
                    p++;
                    if (*p != '\\' && *p != '"' && *p != 'n') return false;
                }
                p++;
            }
            if (*p++ != '"') return false;
            if (*p == ',') p++;
            else if (*p != '}') return false;
        }
        p++;
        size_t l = (size_t)(p - start);
        if (l >= labels_len) return false;
        memcpy(labels, start, l);
        labels[l] = '\0';
    }
    if (*p++ != ' ') return false;
    char *end;
    *value = strtod(p, &end);
    return end != p && (*end == '\n' || *end == '\0');
}

/* value of the sample `key` (name plus labels exactly as rendered), NAN if absent */
static double sample(const char *text, const char *key) {
    size_t kl = strlen(key);
    for (const char *line = text; line && *line; line = strchr(line, '\n'), line = line ? line + 1 : NULL) {
        if (strncmp(line, key, kl) == 0 && line[kl] == ' ') return strtod(line + kl + 1, NULL);
    }
    return NAN;
}

typedef struct family {
    char name[96];
    char type[16];
    bool help;
} family;

/* Every line is HELP, TYPE or a sample of a declared family; histograms
 * have ascending le, non-decreasing cumulative counts, +Inf == _count. */
static void check_exposition(const char *text) {
    family fams[64];
    int nf = 0;
    char prev_series[256] = "";
    double prev_le = -INFINITY, prev_count = 0;
    bool saw_inf = false;
    double inf_count = -1;
    int lineno = 0;
    for (const char *line = text; *line; lineno++) {
        const char *eol = strchr(line, '\n');
        REQUIRE(eol); /* the text ends with a newline */
        char buf[1024];
        size_t len = (size_t)(eol - line);
        REQUIRE(len < sizeof buf);
        memcpy(buf, line, len);
        buf[len] = '\0';
        line = eol + 1;
        if (strncmp(buf, "# HELP ", 7) == 0 || strncmp(buf, "# TYPE ", 7) == 0) {
            char fname[96], rest[600];
            REQUIRE(sscanf(buf + 7, "%95s %599[^\n]", fname, rest) == 2);
            int k = 0;
            while (k < nf && strcmp(fams[k].name, fname) != 0) k++;
            if (k == nf) {
                REQUIRE(nf < 64);
                memset(&fams[nf], 0, sizeof fams[nf]);
                snprintf(fams[nf].name, sizeof fams[nf].name, "%s", fname);
                nf++;
            }
            if (buf[2] == 'H') {
                CHECK(!fams[k].help);
                fams[k].help = true;
            } else {
                CHECK(fams[k].type[0] == '\0');
                CHECK(strcmp(rest, "counter") == 0 || strcmp(rest, "gauge") == 0 || strcmp(rest, "histogram") == 0);
                snprintf(fams[k].type, sizeof fams[k].type, "%.15s", rest);
            }
            continue;
        }
        char name[128], labels[512];
        double v;
        bool ok = parse_sample(buf, name, sizeof name, labels, sizeof labels, &v);
        tu_checks++;
        if (!ok) {
            tu_failures++;
            fprintf(stderr, "  line %d is not a sample: %s\n", lineno, buf);
            continue;
        }
        /* the family: the name, or the name less a histogram suffix */
        int k = -1;
        for (int j = 0; j < nf; j++) {
            size_t fl = strlen(fams[j].name);
            if (strcmp(name, fams[j].name) == 0) k = j;
            else if (strncmp(name, fams[j].name, fl) == 0 && strcmp(fams[j].type, "histogram") == 0 &&
                     (!strcmp(name + fl, "_bucket") || !strcmp(name + fl, "_sum") || !strcmp(name + fl, "_count"))) {
                k = j;
            }
        }
        tu_checks++;
        if (k < 0 || !fams[k].help || !fams[k].type[0]) {
            tu_failures++;
            fprintf(stderr, "  sample before its HELP/TYPE: %s\n", buf);
            continue;
        }
        if (strcmp(fams[k].type, "counter") == 0) CHECK(v >= 0);
        if (strstr(name, "_bucket")) {
            /* series = labels less le */
            char *le = strstr(labels, "le=\"");
            REQUIRE(le);
            char series[256];
            snprintf(series, sizeof series, "%s%.*s", name, (int)(le - labels), labels);
            double lev = strncmp(le + 4, "+Inf", 4) == 0 ? INFINITY : strtod(le + 4, NULL);
            if (strcmp(series, prev_series) != 0) {
                snprintf(prev_series, sizeof prev_series, "%s", series);
                prev_le = -INFINITY;
                prev_count = 0;
                saw_inf = false;
            }
            CHECK(lev > prev_le);
            CHECK(v >= prev_count);
            prev_le = lev;
            prev_count = v;
            if (isinf(lev)) {
                saw_inf = true;
                inf_count = v;
            }
        } else if (strstr(name, "_count") && strcmp(fams[k].type, "histogram") == 0) {
            CHECK(saw_inf);
            CHECK_NEAR(v, inf_count, 0);
            saw_inf = false;
        }
    }
    for (int j = 0; j < nf; j++) CHECK(fams[j].help && fams[j].type[0]);
    static const char *const required[] = {
        "layerskip_requests_total", "layerskip_request_duration_seconds", "layerskip_prompt_tokens_total",
        "layerskip_generated_tokens_total", "layerskip_drafted_tokens_total", "layerskip_accepted_tokens_total",
        "layerskip_time_to_first_token_seconds", "layerskip_queue_wait_seconds",
        "layerskip_time_per_output_token_seconds", "layerskip_queue_depth", "layerskip_sessions_busy",
        "layerskip_sessions_max", "layerskip_queue_max", "layerskip_acceptance_ratio"};
    for (size_t i = 0; i < sizeof required / sizeof required[0]; i++) {
        bool found = false;
        for (int j = 0; j < nf; j++) found = found || strcmp(fams[j].name, required[i]) == 0;
        tu_checks++;
        if (!found) {
            tu_failures++;
            fprintf(stderr, "  family %s missing\n", required[i]);
        }
    }
}

static void test_render_empty(void) {
    lsd_metrics *m = lsd_metrics_create(4, 64);
    REQUIRE(m);
    char *text = lsd_metrics_render(m);
    REQUIRE(text);
    check_exposition(text);
    CHECK_NEAR(sample(text, "layerskip_sessions_max"), 4, 0);
    CHECK_NEAR(sample(text, "layerskip_queue_max"), 64, 0);
    CHECK_NEAR(sample(text, "layerskip_queue_depth"), 0, 0);
    CHECK_NEAR(sample(text, "layerskip_acceptance_ratio"), 0, 0);
    CHECK_NEAR(sample(text, "layerskip_time_to_first_token_seconds_count"), 0, 0);
    CHECK_NEAR(sample(text, "layerskip_time_to_first_token_seconds_bucket{le=\"+Inf\"}"), 0, 0);
    CHECK(strstr(text, "# TYPE layerskip_requests_total counter\n") != NULL);
    CHECK(strstr(text, "# TYPE layerskip_request_duration_seconds histogram\n") != NULL);
    CHECK(strstr(text, "# TYPE layerskip_acceptance_ratio gauge\n") != NULL);
    free(text);
    lsd_metrics_free(m);
    lsd_metrics_free(NULL);
}

static void test_values(void) {
    lsd_metrics *m = lsd_metrics_create(2, 8);
    REQUIRE(m);
    lsd_metrics_request_done(m, "Generate", "OK", 0.003);
    lsd_metrics_request_done(m, "Generate", "OK", 0.004);
    lsd_metrics_request_done(m, "Generate", "INVALID_ARGUMENT", 0.2);
    lsd_metrics_request_done(m, "Tokenize", "OK", -1);             /* counted, duration not observed */
    lsd_metrics_request_done(m, "Health.Check", "NOT_A_CODE", 1e9); /* above every bound: only +Inf */
    lsd_metrics_request_done(m, "we\"ird\\name\n", "OK", NAN);
    lsd_metrics_generation_done(m, 10, 20, 40, 30, 0.05, 0.001, 0.02);
    lsd_metrics_generation_done(m, 5, 0, 0, 0, -1, 0.5, -1);
    lsd_metrics_generation_done(m, -3, -3, -3, -3, NAN, INFINITY, -1);
    lsd_metrics_set_queue_depth(m, 3);
    lsd_metrics_set_busy_sessions(m, 2);
    char *text = lsd_metrics_render(m);
    REQUIRE(text);
    check_exposition(text);
    if (getenv("LS_TEST_VERBOSE")) fputs(text, stderr);
    CHECK_NEAR(sample(text, "layerskip_requests_total{method=\"Generate\",code=\"OK\"}"), 2, 0);
    CHECK_NEAR(sample(text, "layerskip_requests_total{method=\"Generate\",code=\"INVALID_ARGUMENT\"}"), 1, 0);
    CHECK_NEAR(sample(text, "layerskip_requests_total{method=\"Tokenize\",code=\"OK\"}"), 1, 0);
    CHECK_NEAR(sample(text, "layerskip_requests_total{method=\"Health.Check\",code=\"UNKNOWN\"}"), 1, 0);
    CHECK_NEAR(sample(text, "layerskip_requests_total{method=\"we\\\"ird\\\\name\\n\",code=\"OK\"}"), 1, 0);
    CHECK(isnan(sample(text, "layerskip_requests_total{method=\"Tokenize\",code=\"CANCELLED\"}")));
    CHECK_NEAR(sample(text, "layerskip_request_duration_seconds_bucket{method=\"Generate\",le=\"0.001\"}"), 0, 0);
    CHECK_NEAR(sample(text, "layerskip_request_duration_seconds_bucket{method=\"Generate\",le=\"0.005\"}"), 2, 0);
    CHECK_NEAR(sample(text, "layerskip_request_duration_seconds_bucket{method=\"Generate\",le=\"0.1\"}"), 2, 0);
    CHECK_NEAR(sample(text, "layerskip_request_duration_seconds_bucket{method=\"Generate\",le=\"0.25\"}"), 3, 0);
    CHECK_NEAR(sample(text, "layerskip_request_duration_seconds_bucket{method=\"Generate\",le=\"+Inf\"}"), 3, 0);
    CHECK_NEAR(sample(text, "layerskip_request_duration_seconds_count{method=\"Generate\"}"), 3, 0);
    CHECK_NEAR(sample(text, "layerskip_request_duration_seconds_sum{method=\"Generate\"}"), 0.207, 1e-12);
    CHECK_NEAR(sample(text, "layerskip_request_duration_seconds_count{method=\"Tokenize\"}"), 0, 0);
    CHECK_NEAR(sample(text, "layerskip_request_duration_seconds_bucket{method=\"Health.Check\",le=\"300\"}"), 0, 0);
    CHECK_NEAR(sample(text, "layerskip_request_duration_seconds_bucket{method=\"Health.Check\",le=\"+Inf\"}"), 1, 0);
    CHECK_NEAR(sample(text, "layerskip_prompt_tokens_total"), 15, 0);
    CHECK_NEAR(sample(text, "layerskip_generated_tokens_total"), 20, 0);
    CHECK_NEAR(sample(text, "layerskip_drafted_tokens_total"), 40, 0);
    CHECK_NEAR(sample(text, "layerskip_accepted_tokens_total"), 30, 0);
    CHECK_NEAR(sample(text, "layerskip_acceptance_ratio"), 0.75, 1e-15);
    CHECK_NEAR(sample(text, "layerskip_time_to_first_token_seconds_count"), 1, 0);
    CHECK_NEAR(sample(text, "layerskip_time_to_first_token_seconds_bucket{le=\"0.05\"}"), 1, 0);
    CHECK_NEAR(sample(text, "layerskip_time_to_first_token_seconds_bucket{le=\"0.025\"}"), 0, 0);
    CHECK_NEAR(sample(text, "layerskip_queue_wait_seconds_count"), 2, 0);
    CHECK_NEAR(sample(text, "layerskip_queue_wait_seconds_sum"), 0.501, 1e-12);
    CHECK_NEAR(sample(text, "layerskip_queue_wait_seconds_bucket{le=\"0.001\"}"), 1, 0);
    CHECK_NEAR(sample(text, "layerskip_time_per_output_token_seconds_count"), 1, 0);
    CHECK_NEAR(sample(text, "layerskip_queue_depth"), 3, 0);
    CHECK_NEAR(sample(text, "layerskip_sessions_busy"), 2, 0);
    CHECK_NEAR(sample(text, "layerskip_sessions_max"), 2, 0);
    CHECK_NEAR(sample(text, "layerskip_queue_max"), 8, 0);
    free(text);

    /* method names past the cap fold into "other" instead of growing without bound */
    for (int i = 0; i < 100; i++) {
        char name[32];
        snprintf(name, sizeof name, "m%d", i);
        lsd_metrics_request_done(m, name, "OK", 0.01);
    }
    text = lsd_metrics_render(m);
    REQUIRE(text);
    check_exposition(text);
    CHECK(sample(text, "layerskip_requests_total{method=\"other\",code=\"OK\"}") > 50);
    int series = 0;
    for (const char *p = text; (p = strstr(p, "\nlayerskip_requests_total{")); p++) series++;
    CHECK(series <= 40);
    free(text);
    lsd_metrics_free(m);
}

#define N_THREADS 8
#define N_ITER 5000

static void *hammer(void *arg) {
    lsd_metrics *m = arg;
    for (int i = 0; i < N_ITER; i++) {
        lsd_metrics_request_done(m, (i & 1) ? "Generate" : "GenerateStream", (i % 3) ? "OK" : "CANCELLED", 0.01);
        lsd_metrics_generation_done(m, 3, 2, 4, 3, 0.1, 0.01, 0.01);
        lsd_metrics_set_queue_depth(m, i % 5);
        if (i % 1000 == 0) free(lsd_metrics_render(m));
    }
    return NULL;
}

static void test_threads(void) {
    lsd_metrics *m = lsd_metrics_create(4, 64);
    REQUIRE(m);
    pthread_t t[N_THREADS];
    for (int i = 0; i < N_THREADS; i++) REQUIRE(pthread_create(&t[i], NULL, hammer, m) == 0);
    for (int i = 0; i < N_THREADS; i++) pthread_join(t[i], NULL);
    char *text = lsd_metrics_render(m);
    REQUIRE(text);
    check_exposition(text);
    double total = 0;
    const char *keys[] = {"layerskip_requests_total{method=\"Generate\",code=\"OK\"}",
                          "layerskip_requests_total{method=\"Generate\",code=\"CANCELLED\"}",
                          "layerskip_requests_total{method=\"GenerateStream\",code=\"OK\"}",
                          "layerskip_requests_total{method=\"GenerateStream\",code=\"CANCELLED\"}"};
    for (int i = 0; i < 4; i++) total += sample(text, keys[i]);
    CHECK_NEAR(total, N_THREADS * N_ITER, 0);
    CHECK_NEAR(sample(text, "layerskip_request_duration_seconds_count{method=\"Generate\"}"), N_THREADS * N_ITER / 2, 0);
    CHECK_NEAR(sample(text, "layerskip_prompt_tokens_total"), 3.0 * N_THREADS * N_ITER, 0);
    CHECK_NEAR(sample(text, "layerskip_generated_tokens_total"), 2.0 * N_THREADS * N_ITER, 0);
    CHECK_NEAR(sample(text, "layerskip_drafted_tokens_total"), 4.0 * N_THREADS * N_ITER, 0);
    CHECK_NEAR(sample(text, "layerskip_accepted_tokens_total"), 3.0 * N_THREADS * N_ITER, 0);
    CHECK_NEAR(sample(text, "layerskip_time_to_first_token_seconds_count"), N_THREADS * N_ITER, 0);
    CHECK_NEAR(sample(text, "layerskip_acceptance_ratio"), 0.75, 1e-12);
    free(text);
    lsd_metrics_free(m);
}

/* ---- HTTP ---- */

static int connect_port(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct timeval tv = {3, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* send req (may be NULL), read to EOF (3 s receive timeout); malloc'd answer */
static char *exchange(int port, const char *req, size_t req_len) {
    int fd = connect_port(port);
    if (fd < 0) return NULL;
    if (req && send(fd, req, req_len, MSG_NOSIGNAL) != (ssize_t)req_len) {
        close(fd);
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    for (;;) {
        if (n == cap) {
            cap *= 2;
            buf = realloc(buf, cap + 1);
        }
        ssize_t r = recv(fd, buf + n, cap - n, 0);
        if (r <= 0) break;
        n += (size_t)r;
    }
    buf[n] = '\0';
    close(fd);
    return buf;
}

static char *get(int port, const char *req) { return exchange(port, req, strlen(req)); }

static void test_http(void) {
    lsd_metrics *m = lsd_metrics_create(3, 9);
    REQUIRE(m);
    char err[512] = "";
    CHECK_EQ_INT(lsd_metrics_http_port(m), -1);
    int rc = lsd_metrics_http_start(m, "127.0.0.1:0", err, sizeof err);
    CHECK_EQ_INT(rc, 0);
    if (rc) fprintf(stderr, "  %s\n", err);
    int port = lsd_metrics_http_port(m);
    REQUIRE(port > 0);
    /* a second start is refused */
    CHECK_EQ_INT(lsd_metrics_http_start(m, "127.0.0.1:0", err, sizeof err), -1);
    CHECK(strstr(err, "already running") != NULL);

    lsd_metrics_request_done(m, "Generate", "OK", 0.5);
    char *r = get(port, "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n");
    REQUIRE(r);
    CHECK(strncmp(r, "HTTP/1.1 200 OK\r\n", 17) == 0);
    CHECK(strstr(r, "Content-Type: text/plain; version=0.0.4") != NULL);
    char *body = strstr(r, "\r\n\r\n");
    REQUIRE(body);
    body += 4;
    const char *cl = strstr(r, "Content-Length: ");
    REQUIRE(cl);
    CHECK_EQ_INT(strtol(cl + 16, NULL, 10), strlen(body));
    check_exposition(body);
    CHECK_NEAR(sample(body, "layerskip_requests_total{method=\"Generate\",code=\"OK\"}"), 1, 0);
    CHECK_NEAR(sample(body, "layerskip_sessions_max"), 3, 0);
    free(r);

    r = get(port, "GET /metrics?name[]=x HTTP/1.0\n\n"); /* bare LF and a query string are fine */
    REQUIRE(r);
    CHECK(strncmp(r, "HTTP/1.1 200 OK\r\n", 17) == 0);
    free(r);
    r = get(port, "HEAD /metrics HTTP/1.1\r\n\r\n");
    REQUIRE(r);
    CHECK(strncmp(r, "HTTP/1.1 200 OK\r\n", 17) == 0);
    body = strstr(r, "\r\n\r\n");
    CHECK(body && body[4] == '\0');
    free(r);
    r = get(port, "GET / HTTP/1.1\r\n\r\n");
    REQUIRE(r);
    CHECK(strncmp(r, "HTTP/1.1 404 Not Found\r\n", 24) == 0);
    free(r);
    r = get(port, "GET /metricsx HTTP/1.1\r\n\r\n");
    REQUIRE(r);
    CHECK(strncmp(r, "HTTP/1.1 404 ", 13) == 0);
    free(r);
    r = get(port, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    REQUIRE(r);
    CHECK(strncmp(r, "HTTP/1.1 405 ", 13) == 0);
    CHECK(strstr(r, "Allow: GET, HEAD") != NULL);
    free(r);
    r = get(port, "\x01\x02\xff garbage\r\n\r\n");
    REQUIRE(r);
    CHECK(strncmp(r, "HTTP/1.1 400 ", 13) == 0);
    free(r);
    r = get(port, "GET /metrics SPDY/9\r\n\r\n");
    REQUIRE(r);
    CHECK(strncmp(r, "HTTP/1.1 400 ", 13) == 0);
    free(r);
    /* headers that never end: cut at the cap */
    char *big = malloc(20000);
    memcpy(big, "GET /metrics HTTP/1.1\r\n", 23);
    memset(big + 23, 'a', 20000 - 23);
    r = exchange(port, big, 20000);
    free(big);
    REQUIRE(r);
    CHECK(strncmp(r, "HTTP/1.1 431 ", 13) == 0);
    free(r);

    /* silent and half-sent clients do not delay the next one */
    int silent = connect_port(port);
    int partial = connect_port(port);
    REQUIRE(silent >= 0 && partial >= 0);
    CHECK(send(partial, "GET /met", 8, MSG_NOSIGNAL) == 8);
    double t0 = now_s();
    r = get(port, "GET /metrics HTTP/1.1\r\n\r\n");
    double dt = now_s() - t0;
    REQUIRE(r);
    CHECK(strncmp(r, "HTTP/1.1 200 OK\r\n", 17) == 0);
    CHECK(dt < 1.0);
    free(r);
    /* ... and are dropped after the 5 s deadline */
    struct timeval tv = {8, 0};
    setsockopt(silent, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char c;
    t0 = now_s();
    ssize_t got = recv(silent, &c, 1, 0);
    dt = now_s() - t0;
    CHECK_EQ_INT(got, 0);
    CHECK(dt > 3.0 && dt < 7.5);
    close(silent);
    close(partial);

    /* past the connection cap: an immediate 503, and service resumes after */
    int hold[64];
    for (int i = 0; i < 64; i++) hold[i] = connect_port(port);
    usleep(200 * 1000); /* let the server accept them all */
    t0 = now_s();
    r = get(port, "GET /metrics HTTP/1.1\r\n\r\n");
    dt = now_s() - t0;
    REQUIRE(r);
    CHECK(strncmp(r, "HTTP/1.1 503 ", 13) == 0);
    CHECK(dt < 1.0);
    free(r);
    for (int i = 0; i < 64; i++) if (hold[i] >= 0) close(hold[i]);
    usleep(200 * 1000);
    r = get(port, "GET /metrics HTTP/1.1\r\n\r\n");
    REQUIRE(r);
    CHECK(strncmp(r, "HTTP/1.1 200 OK\r\n", 17) == 0);
    free(r);

    /* stop is prompt with a client still connected, and closes the port */
    silent = connect_port(port);
    usleep(50 * 1000);
    t0 = now_s();
    lsd_metrics_http_stop(m);
    CHECK(now_s() - t0 < 1.0);
    CHECK_EQ_INT(lsd_metrics_http_port(m), -1);
    if (silent >= 0) {
        got = recv(silent, &c, 1, 0);
        CHECK(got <= 0);
        close(silent);
    }
    CHECK(connect_port(port) < 0);
    lsd_metrics_http_stop(m); /* second stop: no-op */

    /* restart on the same port works (SO_REUSEADDR) */
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    rc = lsd_metrics_http_start(m, addr, err, sizeof err);
    CHECK_EQ_INT(rc, 0);
    if (rc) fprintf(stderr, "  %s\n", err);
    CHECK_EQ_INT(lsd_metrics_http_port(m), port);
    /* a second server on that port is refused with a clear message */
    lsd_metrics *m2 = lsd_metrics_create(1, 1);
    CHECK_EQ_INT(lsd_metrics_http_start(m2, addr, err, sizeof err), -1);
    CHECK(strstr(err, "--metrics-listen") && strstr(err, "cannot listen") && strstr(err, "in use"));
    lsd_metrics_free(m2);
    lsd_metrics_free(m); /* stops the server */
}

static void test_http_bad_addresses(void) {
    lsd_metrics *m = lsd_metrics_create(1, 1);
    REQUIRE(m);
    const char *bad[] = {"", "9090", "127.0.0.1", "127.0.0.1:", "127.0.0.1:http", "127.0.0.1:65536",
                         "::1:9090", "[::1]9090", "[]:1", "127.0.0.1:123456", "127.0.0.1:-1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char err[512] = "";
        CHECK_EQ_INT(lsd_metrics_http_start(m, bad[i], err, sizeof err), -1);
        CHECK(strstr(err, "--metrics-listen") != NULL);
        CHECK(strstr(err, "HOST:PORT") != NULL);
        CHECK_EQ_INT(lsd_metrics_http_port(m), -1);
    }
    char err[512] = "";
    CHECK_EQ_INT(lsd_metrics_http_start(m, "192.0.2.1:0", err, sizeof err), -1); /* not a local address */
    CHECK(strstr(err, "cannot listen") != NULL);
    /* IPv6 loopback when the machine has it */
    if (lsd_metrics_http_start(m, "[::1]:0", err, sizeof err) == 0) {
        CHECK(lsd_metrics_http_port(m) > 0);
        lsd_metrics_http_stop(m);
    }
    lsd_metrics_free(m);
}

int main(void) {
    RUN(test_render_empty);
    RUN(test_values);
    RUN(test_threads);
    RUN(test_http);
    RUN(test_http_bad_addresses);
    TEST_MAIN_END();
}
