/* main.c: layerskipd. Reads the options, loads the model, creates the
 * session slots and the gRPC server, then waits for SIGTERM/SIGINT and
 * drains: health NOT_SERVING, new calls UNAVAILABLE, in-flight requests get
 * --drain-seconds to finish, the rest are cancelled, exit 0.
 * Exit codes: 0 ok (and --help), 2 bad flags or config, 1 any other
 * startup failure (model, address in use, TLS files, token file). */
#include "config.h"
#include "log.h"
#include "metrics.h"
#include "sched.h"
#include "server.h"
#include "service.h"

#include "layerskip/engine.h"
#include "layerskip/generate.h"

#include <errno.h>
#include <pthread.h>
#include <grpc/grpc.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SHUTDOWN_GRACE_S 2.0 /* for replies already on their way after the drain */

/* whole file as a NUL-terminated string; NULL with errno set on failure */
static char *read_text_file(const char *path, size_t max) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = malloc(max + 1);
    size_t n = buf ? fread(buf, 1, max + 1, f) : 0;
    int e = ferror(f) ? EIO : 0;
    fclose(f);
    if (!buf || e || n > max) {
        free(buf);
        errno = e ? e : n > max ? EFBIG : ENOMEM;
        return NULL;
    }
    buf[n] = 0;
    return buf;
}

__attribute__((format(printf, 1, 2))) static int startup_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "layerskipd: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    return 1;
}

/* the bearer token: the file's text minus trailing newlines; must be a
 * non-empty visible-ASCII string (it travels in an HTTP/2 header) */
static char *read_token(const char *path, int *rc) {
    char *t = read_text_file(path, 4096);
    if (!t) {
        *rc = startup_error("cannot read --auth-token-file %s: %s", path, strerror(errno));
        return NULL;
    }
    size_t n = strlen(t);
    while (n && (t[n - 1] == '\n' || t[n - 1] == '\r')) t[--n] = 0;
    bool ok = n > 0;
    for (size_t i = 0; i < n; i++) if (t[i] <= ' ' || t[i] > '~') ok = false;
    if (!ok) {
        *rc = startup_error("--auth-token-file %s: %s", path,
                            n ? "the token must be one line of visible ASCII characters (no spaces)"
                              : "the file is empty: put the bearer token in it");
        free(t);
        return NULL;
    }
    return t;
}

static char *read_pem(const char *flag, const char *path, int *rc) {
    char *t = read_text_file(path, 1 << 20);
    if (!t) {
        fprintf(stderr, "layerskipd: cannot read %s %s: %s\n", flag, path, strerror(errno));
        *rc = 1;
        return NULL;
    }
    if (!strstr(t, "-----BEGIN ")) {
        fprintf(stderr, "layerskipd: %s %s is not a PEM file (no -----BEGIN line): give a PEM %s\n", flag, path,
                strcmp(flag, "--tls-cert") == 0 ? "certificate" : "private key");
        *rc = 1;
        free(t);
        return NULL;
    }
    return t;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    /* before any thread exists (gRPC's and ours inherit the mask): the
     * signals are taken with sigtimedwait in this thread only */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    lsd_config cfg;
    char err[2048] = "";
    lsd_config_result cr = lsd_config_parse(&cfg, argc, argv, err, sizeof err);
    if (cr == LSD_CONFIG_HELP) return 0;
    if (cr != LSD_CONFIG_OK) {
        fprintf(stderr, "layerskipd: %s%s\n", err, strstr(err, "--help") ? "" : "\n(run layerskipd --help for the options)");
        return 2;
    }
    lsd_log_level lvl = LSD_LOG_INFO;
    if (!lsd_log_parse_level(cfg.log_level, &lvl)) {
        fprintf(stderr, "layerskipd: --log-level %s: use error, warn, info or debug\n", cfg.log_level);
        return 2;
    }
    lsd_log_set_level(lvl);
    ls_strategy strategy;
    ls_err lerr = {{0}};
    if (ls_strategy_parse(cfg.strategy, &strategy, &lerr) != LS_OK) {
        fprintf(stderr, "layerskipd: --strategy: %s\n", lerr.msg);
        return 2;
    }
    lsd_config_log(&cfg);

    int rc = 0;
    char *token = NULL, *cert = NULL, *key = NULL;
    ls_model *model = NULL;
    lsd_metrics *metrics = NULL;
    lsd_sched *sched = NULL;
    lsd_server *srv = NULL;
    bool grpc_up = false;
    lsd_service *svc = NULL;

    if (cfg.auth_token_file[0] && !(token = read_token(cfg.auth_token_file, &rc))) goto out;
    if (cfg.tls_cert[0] && (!(cert = read_pem("--tls-cert", cfg.tls_cert, &rc)) ||
                            !(key = read_pem("--tls-key", cfg.tls_key, &rc))))
        goto out;

    double t0 = ls_time_ms();
    if (ls_model_load(cfg.model, &model, &lerr) != LS_OK) {
        fprintf(stderr, "layerskipd: --model %s: %s\n", cfg.model, lerr.msg);
        rc = 1;
        goto out;
    }
    const ls_config *mc = ls_model_config(model);
    const int L = mc->n_layers;
    int n_ctx = cfg.ctx;
    if (n_ctx == 0) n_ctx = mc->ctx_train > 0 && mc->ctx_train < 4096 ? mc->ctx_train : 4096;
    int exit_layer = cfg.exit_layer ? cfg.exit_layer : (L / 4 > 0 ? L / 4 : 1);
    if (L < 2 || exit_layer < 1 || exit_layer > L - 1) {
        fprintf(stderr, "layerskipd: --exit-layer %d is out of range [1, %d] for this model of %d layers\n",
                exit_layer, L - 1, L);
        rc = 2;
        goto out;
    }
    ls_gen_params check = {.n_predict = cfg.default_max_tokens, .strategy = strategy, .exit_layer = exit_layer,
                           .num_speculations = cfg.num_speculations, .draft_min_p = cfg.draft_min_p};
    ls_sampling_default(&check.sampling);
    if (ls_gen_params_check(&check, L, &lerr) != LS_OK) {
        fprintf(stderr, "layerskipd: %s (check --strategy, --exit-layer, --num-speculations, --draft-min-p, "
                "--default-max-tokens)\n", lerr.msg);
        rc = 2;
        goto out;
    }
    LSD_LOG(LSD_LOG_INFO, "model %s: %s, %d layers, vocabulary %d, loaded in %.0f ms; context %d per session",
            cfg.model, mc->name, L, mc->n_vocab, ls_time_ms() - t0, n_ctx);

    metrics = lsd_metrics_create(cfg.max_sessions, cfg.max_queue);
    if (!metrics) {
        fprintf(stderr, "layerskipd: out of memory creating the metrics\n");
        rc = 1;
        goto out;
    }
    if (cfg.metrics_listen[0] && lsd_metrics_http_start(metrics, cfg.metrics_listen, err, sizeof err) != 0) {
        fprintf(stderr, "layerskipd: %s\n", err);
        rc = 1;
        goto out;
    }

    lsd_sched_opts so = {.model = model, .n_slots = cfg.max_sessions, .n_threads = cfg.threads > 0 ? cfg.threads : 1,
                         .n_ctx = n_ctx,
                         /* the bench's prompt batch; above LS_MAX_SPECULATIONS + 1 so any k fits */
                         .max_batch = 256, .max_queue = cfg.max_queue, .metrics = metrics};
    if (lsd_sched_create(&so, &sched, err, sizeof err) != 0) {
        fprintf(stderr, "layerskipd: %s\n", err);
        rc = 1;
        goto out;
    }
    svc = calloc(1, sizeof *svc);
    if (!svc) { rc = 1; goto out; }
    svc->model = model;
    svc->model_path = cfg.model;
    svc->n_ctx = n_ctx;
    svc->default_max_tokens = cfg.default_max_tokens;
    svc->default_strategy = strategy;
    svc->default_exit_layer = exit_layer;
    svc->default_num_speculations = cfg.num_speculations;
    svc->draft_min_p = cfg.draft_min_p;
    svc->max_sessions = cfg.max_sessions;
    svc->max_queue = cfg.max_queue;
    atomic_init(&svc->next_request, 0);

    lsd_log_install_grpc();
    grpc_init();
    grpc_up = true;
    long streams = (long)cfg.max_sessions + cfg.max_queue + 128;
    lsd_server_opts o = {.listen = cfg.listen, .tls_cert_pem = cert, .tls_key_pem = key, .auth_token = token,
                         .max_request_bytes = cfg.max_request_bytes,
                         .max_concurrent_streams = streams > (1 << 20) ? (1 << 20) : (int)streams,
                         .service = svc, .sched = sched, .metrics = metrics};
    char bound[600];
    if (lsd_server_start(&o, &srv, bound, sizeof bound, err, sizeof err) != 0) {
        fprintf(stderr, "layerskipd: %s\n", err);
        rc = 1;
        goto out;
    }
    LSD_LOG(LSD_LOG_INFO, "listening on %s%s (%d sessions, queue %d)%s", bound, cert ? " with TLS" : "",
            cfg.max_sessions, cfg.max_queue, token ? ", bearer token required" : "");

    int sig = 0;
    while (sig != SIGINT && sig != SIGTERM) sig = sigwaitinfo(&sigs, NULL);
    LSD_LOG(LSD_LOG_INFO, "%s: draining, up to %d s for %d request(s) in flight", strsignal(sig),
            cfg.drain_seconds, lsd_sched_active(sched));
    lsd_server_begin_drain(srv);
    double until = now_s() + cfg.drain_seconds;
    struct timespec tick = {0, 20 * 1000 * 1000};
    while (lsd_sched_active(sched) > 0 && now_s() < until) {
        /* a second signal ends the wait */
        if (sigtimedwait(&sigs, NULL, &tick) > 0) break;
    }
    int left = lsd_sched_active(sched);
    if (left > 0) LSD_LOG(LSD_LOG_WARN, "cancelling %d request(s) still running after the drain", left);
    lsd_sched_cancel_all(sched, GRPC_STATUS_UNAVAILABLE);
    while (lsd_sched_active(sched) > 0) nanosleep(&tick, NULL);
    lsd_server_shutdown(srv, SHUTDOWN_GRACE_S);
    LSD_LOG(LSD_LOG_INFO, "stopped");

out:
    lsd_sched_free(sched); /* joins the workers before the server they report to goes away */
    if (srv) lsd_server_free(srv);
    if (grpc_up) grpc_shutdown_blocking();
    lsd_metrics_free(metrics);
    free(svc);
    ls_model_free(model);
    free(token);
    free(cert);
    free(key);
    return rc;
}
