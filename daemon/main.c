/* main.c: layerskipd. Reads the options, loads the model, creates the
 * session slots and the gRPC server, then waits for SIGTERM/SIGINT and
 * drains: health NOT_SERVING, new calls UNAVAILABLE, in-flight requests get
 * --drain-seconds to finish, the rest are cancelled, exit 0.
 * Exit codes: 0 ok (and --help), 2 bad flags or config, 1 any other
 * startup failure (model, address in use, TLS files, token file).
 *
 * Under mpirun with more than one rank (mpirun -np 1 layerskipd ... : -np N
 * layerskip-worker) this process is rank 0 of the MPI pipeline (worker/):
 * the drafter stage, and generations run through lsw_generate. Twice a
 * second it checks the stages (pings when idle); a lost stage (silent for
 * --stage-timeout, or a local worker process gone when mpirun signals the
 * job) makes health NOT_SERVING, fails requests with UNAVAILABLE naming the
 * stage, and ends the job with MPI_Abort (exit 1): mpirun stops every rank,
 * and systemd or Slurm can restart it. */
#include "config.h"
#include "log.h"
#include "metrics.h"
#include "sched.h"
#include "server.h"
#include "service.h"

#include "layerskip/chat_template.h"
#include "layerskip/engine.h"
#include "layerskip/generate.h"
#include "layerskip/tokenizer.h"

#ifdef LSD_WITH_MPI
#include "msg.h" /* lsw_hostname */
#include "pipeline.h"
#endif

#include <errno.h>
#include <pthread.h>
#include <grpc/grpc.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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

/* the chat template: --chat-template FILE (an error there fails startup), else
 * the model's; *out stays NULL when there is none or the model's cannot be
 * used, and msg says why (Chat then answers FAILED_PRECONDITION with it) */
static int load_chat_template(const lsd_config *cfg, const ls_model *model, ls_chat_template **out, char *msg,
                              size_t msg_len) {
    *out = NULL;
    ls_err err = {{0}};
    if (cfg->chat_template[0]) {
        FILE *f = fopen(cfg->chat_template, "rb");
        if (!f) {
            snprintf(msg, msg_len, "--chat-template %.300s: %.500s", cfg->chat_template, strerror(errno));
            return -1;
        }
        char *text = malloc(1 << 20);
        size_t n = text ? fread(text, 1, (1 << 20) - 1, f) : 0;
        bool big = text && n == (1 << 20) - 1 && fgetc(f) != EOF;
        fclose(f);
        if (!text || big) {
            snprintf(msg, msg_len, "--chat-template %.300s: %.500s", cfg->chat_template,
                     text ? "larger than 1 MiB" : "out of memory");
            free(text);
            return -1;
        }
        ls_status st = ls_chat_template_parse(text, n, out, &err);
        free(text);
        if (st != LS_OK) {
            snprintf(msg, msg_len, "--chat-template %.300s: %.500s", cfg->chat_template, err.msg);
            return -1;
        }
        return 0;
    }
    const char *src = ls_model_chat_template(model);
    if (!src) {
        snprintf(msg, msg_len, "the model has no chat template (GGUF tokenizer.chat_template): start layerskipd with "
                 "--chat-template FILE");
        return 0;
    }
    if (ls_chat_template_parse(src, strlen(src), out, &err) != LS_OK)
        snprintf(msg, msg_len, "the model's chat template cannot be used (%.600s): start layerskipd with "
                 "--chat-template FILE", err.msg);
    return 0;
}

/* a special token's text (bos_token / eos_token for the chat template) */
static void token_text(const ls_model *model, int32_t id, char *out, size_t len) {
    out[0] = 0;
    if (id < 0) return;
    int64_t n = ls_token_to_bytes(ls_model_tokenizer(model), id, true, out, (int64_t)len - 1);
    out[n > 0 && n < (int64_t)len ? n : 0] = 0;
}

#ifdef LSD_WITH_MPI
/* mpirun (OpenMPI), srun (PMIx / PMI) set these in every rank's environment */
static bool launched_by_mpi(void) {
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_RANK");
}

/* mpirun's odls_base_sigkill_timeout T (mpirun passes --mca settings to
 * the ranks as OMPI_MCA_ variables; OpenMPI's default is 1 s): after its
 * SIGTERM the launcher sends SIGKILL T s later */
static double launcher_sigkill_s(void) {
    const char *v = getenv("OMPI_MCA_odls_base_sigkill_timeout");
    char *end = NULL;
    double t = v ? strtod(v, &end) : 1;
    return v && (end == v || t < 0 || t > 3600) ? 1 : t;
}

/* how long a stage may take to answer the roll call after the launcher's
 * signal: half of what is left before its SIGKILL, at most a stage timeout */
static double launcher_roll_call_s(double stage_timeout) {
    double w = launcher_sigkill_s() / 2;
    if (w < 0.2) w = 0.2;
    return w > stage_timeout ? stage_timeout : w;
}

/* MPI_Abort asks mpirun to end every rank, but OpenMPI 4.1's mpirun waits
 * without limit for a host whose orted holds its connection without
 * answering (its processes stopped, say): the job never ends and a
 * supervisor never restarts it. So a small child outlives this rank and, if
 * the launcher is still there 2T + 5 s later, sends it SIGTERM, which ends
 * mpirun at once (non-zero); the stopped host's orted ends its ranks when it
 * runs again and finds mpirun gone. Only for mpirun as the parent (rank 0 on
 * the first node, as deploy/README.md starts it). */
static void launcher_watchdog(void) {
    const pid_t launcher = getppid();
    if (launcher <= 1) return;
    char path[64], comm[32] = "";
    snprintf(path, sizeof path, "/proc/%d/comm", (int)launcher);
    FILE *f = fopen(path, "r");
    if (!f) return;
    if (!fgets(comm, sizeof comm, f)) comm[0] = 0;
    fclose(f);
    comm[strcspn(comm, "\n")] = 0;
    if (strcmp(comm, "mpirun") != 0 && strcmp(comm, "mpiexec") != 0 && strcmp(comm, "orterun") != 0) return;
    const double grace = 2 * launcher_sigkill_s() + 5;
    LSD_LOG(LSD_LOG_INFO, "if %s (pid %d) has not ended the job within %.0f s, a watchdog sends it SIGTERM", comm,
            (int)launcher, grace);
    fflush(NULL);
    if (fork() != 0) return; /* this rank goes on to MPI_Abort (or fork failed: nothing to do) */
    /* the child of a threaded process: async-signal-safe calls only */
    setsid(); /* out of the rank's process group, which the launcher kills */
    for (int fd = 0; fd < 65536; fd++) close(fd); /* no pipe held open: mpirun waits for its ranks' output to end */
    const struct timespec tick = {0, 100 * 1000 * 1000};
    for (int i = 0; i < (int)(grace * 10); i++) {
        if (kill(launcher, 0) != 0) _exit(0);
        nanosleep(&tick, NULL);
    }
    kill(launcher, SIGTERM);
    _exit(0);
}

static ls_status pipe_generate(void *user, int slot, const int32_t *prompt, int n_prompt, const ls_gen_params *p,
                               int32_t *out, ls_token_cb cb, void *cb_user, ls_gen_stats *stats, ls_err *err) {
    return lsw_generate(user, slot, prompt, n_prompt, p, out, cb, cb_user, stats, err);
}

/* --stages as memory budgets: weights + KV (max-sessions x ctx) per layer */
static int budget_stages(const ls_model *model, const char *text, int exit_layer, int n_ctx, int n_slots,
                         int n_ranks, char *out, size_t out_len) {
    const ls_config *c = ls_model_config(model);
    const int L = c->n_layers;
    uint64_t budgets[LSW_MAX_STAGES], *layer = calloc((size_t)L, sizeof *layer);
    ls_err e = {{0}};
    if (!layer) return startup_error("out of memory");
    const uint64_t kv = ls_kv_bytes(model, 0, 1, n_ctx) * (uint64_t)n_slots;
    for (int l = 0; l < L; l++) layer[l] = ls_model_weight_bytes(model, l, l + 1, false, false) + kv;
    const uint64_t head = ls_model_weight_bytes(model, 0, 0, false, true);
    /* rank 0 holds the embedding and the head: one matrix when they are tied */
    const uint64_t embed_head = ls_model_weight_bytes(model, 0, 0, true, true);
    lsw_layout lo;
    ls_status st = lsw_layout_parse_budgets(text, n_ranks, budgets, &e);
    if (st == LS_OK) st = lsw_layout_fit(exit_layer, L, n_ranks, layer, embed_head, head, budgets, &lo, &e);
    free(layer);
    if (st != LS_OK) {
        fprintf(stderr, "layerskipd: --stages: %s\n", e.msg);
        return 2;
    }
    lsw_layout_format(&lo, out, out_len);
    return 0;
}
#endif

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

    int mpi_size = 1;
#ifdef LSD_WITH_MPI
    const bool mpi = launched_by_mpi();
    if (mpi) {
        int provided = 0, rank = 0;
        if (MPI_Init_thread(&argc, &argv, MPI_THREAD_SERIALIZED, &provided) != MPI_SUCCESS)
            return startup_error("MPI_Init_thread failed (started by mpirun or srun?)");
        MPI_Comm_rank(MPI_COMM_WORLD, &rank);
        MPI_Comm_size(MPI_COMM_WORLD, &mpi_size);
        if (rank != 0) {
            fprintf(stderr, "layerskipd: this is MPI rank %d: layerskipd runs on rank 0 only, the other ranks run "
                    "layerskip-worker (mpirun -np 1 layerskipd ... : -np %d layerskip-worker)\n", rank,
                    mpi_size - 1);
            MPI_Abort(MPI_COMM_WORLD, 2);
        }
        if (provided < MPI_THREAD_SERIALIZED) {
            fprintf(stderr, "layerskipd: this MPI library gives thread level %d; the pipeline needs "
                    "MPI_THREAD_SERIALIZED\n", provided);
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
    }
    lsw_pipeline *pl = NULL;
    static lsd_stage_info stage_info[LSW_MAX_STAGES];
    bool stage_lost = false;
#endif

    static lsd_config cfg;
    char err[2048] = "";
    int rc = 0;
    ls_err lerr = {{0}};
    ls_strategy strategy = LS_STRATEGY_AUTOREGRESSIVE;
    ls_draft_source draft_source = LS_DRAFT_AUTO;
    ls_model *model = NULL;
    ls_adapter *adapter = NULL;
    lsd_config_result cr = lsd_config_parse(&cfg, argc, argv, err, sizeof err);
    lsd_log_level lvl = LSD_LOG_INFO;
    if (cr == LSD_CONFIG_HELP) {
        rc = -1; /* exit 0, after the MPI shutdown below */
    } else if (cr != LSD_CONFIG_OK) {
        fprintf(stderr, "layerskipd: %s%s\n", err, strstr(err, "--help") ? "" : "\n(run layerskipd --help for the options)");
        rc = 2;
    } else if (!lsd_log_parse_level(cfg.log_level, &lvl)) {
        fprintf(stderr, "layerskipd: --log-level %s: use error, warn, info or debug\n", cfg.log_level);
        rc = 2;
    } else if (ls_strategy_parse(cfg.strategy, &strategy, &lerr) != LS_OK) {
        fprintf(stderr, "layerskipd: --strategy: %s\n", lerr.msg);
        rc = 2;
    } else if (ls_draft_source_parse(cfg.draft_source, &draft_source, &lerr) != LS_OK) {
        fprintf(stderr, "layerskipd: --draft-source: %s\n", lerr.msg);
        rc = 2;
    } else if (mpi_size == 1 && (cfg.stages[0] || cfg.trace[0])) {
        fprintf(stderr, "layerskipd: --%s is for the MPI pipeline: start layerskipd under mpirun with workers "
                "(mpirun -np 1 layerskipd ... : -np N layerskip-worker), or drop it\n",
                cfg.stages[0] ? "stages" : "trace");
        rc = 2;
    }
    if (rc != 0) goto early_out;
    lsd_log_set_level(lvl);
    lsd_config_log(&cfg);

    char *token = NULL, *cert = NULL, *key = NULL;
    lsd_metrics *metrics = NULL;
    lsd_sched *sched = NULL;
    lsd_server *srv = NULL;
    bool grpc_up = false;
    lsd_service *svc = NULL;
    ls_chat_template *chat_tpl = NULL;
    char chat_err[900] = "", bos_text[256] = "", eos_text[256] = "";

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
    if (cfg.draft_adapter[0]) {
        if (ls_adapter_load(cfg.draft_adapter, model, &adapter, &lerr) != LS_OK) {
            fprintf(stderr, "layerskipd: --draft-adapter: %s\n", lerr.msg); /* the engine's message names the file */
            rc = 1;
            goto out;
        }
        LSD_LOG(LSD_LOG_INFO, "draft adapter %s: trained after layer %d, %s, frequency table of %d tokens",
                cfg.draft_adapter, ls_adapter_exit_layer(adapter),
                ls_adapter_has_block(adapter) ? "with its block" : "no block", ls_adapter_vocab_len(adapter));
    }
    int n_ctx = cfg.ctx;
    if (n_ctx == 0) n_ctx = mc->ctx_train > 0 && mc->ctx_train < 4096 ? mc->ctx_train : 4096;
    /* not given: the adapter's E (its block drafts only from there), else layers/4 */
    int exit_layer = cfg.exit_layer ? cfg.exit_layer
                     : adapter      ? ls_adapter_exit_layer(adapter)
                                    : (L / 4 > 0 ? L / 4 : 1);
    if (L < 2 || exit_layer < 1 || exit_layer > L - 1) {
        fprintf(stderr, "layerskipd: --exit-layer %d is out of range [1, %d] for this model of %d layers\n",
                exit_layer, L - 1, L);
        rc = 2;
        goto out;
    }
#ifdef LSD_WITH_MPI
    if (mpi_size > 1) {
        char stages[1024] = "";
        const bool ranges = cfg.stages[0] && !lsw_layout_is_budget(cfg.stages);
        if (cfg.stages[0] && !ranges &&
            (rc = budget_stages(model, cfg.stages, exit_layer, n_ctx, cfg.max_sessions, mpi_size, stages,
                                sizeof stages)) != 0)
            goto out;
        if (ranges) snprintf(stages, sizeof stages, "%s", cfg.stages);
        lsw_options po;
        lsw_options_default(&po);
        po.model_path = cfg.model;
        po.model = model;
        po.stages = stages[0] ? stages : NULL;
        /* with explicit ranges, E is where stage 0 ends (an --exit-layer given too must agree) */
        po.exit_layer = ranges ? cfg.exit_layer : exit_layer;
        po.n_ctx = n_ctx;
        po.max_slots = cfg.max_sessions;
        po.n_threads = cfg.threads > 0 ? cfg.threads : 1;
        po.timeout_s = cfg.stage_timeout;
        po.trace_prefix = cfg.trace[0] ? cfg.trace : NULL;
        LSD_LOG(LSD_LOG_INFO, "MPI pipeline of %d ranks: loading the model on every rank", mpi_size);
        ls_status pst = lsw_pipeline_create(MPI_COMM_WORLD, &po, &pl, &lerr);
        if (pst != LS_OK) {
            fprintf(stderr, "layerskipd: pipeline: %s\n", lerr.msg);
            rc = pst == LS_ERR_INVALID ? 2 : 1;
            goto out;
        }
        const lsw_layout *lo = lsw_pipeline_layout(pl);
        exit_layer = lsw_layout_exit_layer(lo);
        for (int r = 0; r < lo->n_stages; r++) {
            lsd_stage_info *si = &stage_info[r];
            si->rank = r;
            si->first_layer = lo->l0[r];
            si->last_layer = lo->l1[r];
            si->embedding = r == 0;
            si->head = r == 0 || r == lo->n_stages - 1;
            if (r == 0) lsw_hostname(si->host, sizeof si->host);
            else snprintf(si->host, sizeof si->host, "%s", lsw_pipeline_worker_host(pl, r));
            snprintf(si->kernels, sizeof si->kernels, "%s",
                     r == 0 ? ls_kernel_path() : lsw_pipeline_worker_kernels(pl, r));
            LSD_LOG(LSD_LOG_INFO, "stage %d: rank %d on %s (pid %d), %slayers %d-%d%s", r, r, si->host,
                    r == 0 ? (int)getpid() : lsw_pipeline_worker_pid(pl, r), r == 0 ? "embedding + " : "",
                    lo->l0[r], lo->l1[r],
                    r == 0 ? " + final norm and LM head: drafts by early exit"
                           : r == lo->n_stages - 1 ? " + final norm and LM head: verifies, decides acceptance"
                                                   : ": verifies");
        }
    }
#endif
    const bool auto_k = cfg.num_speculations == LSD_NUM_SPECULATIONS_AUTO;
    ls_gen_params check = {.n_predict = cfg.default_max_tokens, .strategy = strategy, .exit_layer = exit_layer,
                           .num_speculations = auto_k ? LS_AUTO_SPECULATIONS_MAX : cfg.num_speculations,
                           .draft_min_p = cfg.draft_min_p, .draft_source = draft_source, .adapter = adapter,
                           .draft_vocab = cfg.draft_vocab, .auto_speculations = auto_k};
    ls_sampling_default(&check.sampling);
    /* the defaults as the --strategy default uses them, and as a self_speculative request would */
    ls_gen_params spec = check;
    spec.strategy = LS_STRATEGY_SELF_SPECULATIVE;
    if (ls_gen_params_check(&check, L, &lerr) != LS_OK || ls_gen_params_check(&spec, L, &lerr) != LS_OK) {
        fprintf(stderr, "layerskipd: %s (check --strategy, --exit-layer, --num-speculations, --draft-min-p, "
                "--draft-source, --draft-adapter, --draft-vocab, --default-max-tokens)\n", lerr.msg);
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
                         .max_batch = 256, .max_queue = cfg.max_queue, .prefill_chunk = cfg.prefill_chunk,
                         .metrics = metrics};
    so.kv_bytes_per_pos = (int64_t)ls_kv_bytes(model, 0, L, 1);
    if (lsd_kv_budget_parse(cfg.kv_budget, so.kv_bytes_per_pos, n_ctx, &so.kv_budget, err, sizeof err) != 0) {
        fprintf(stderr, "layerskipd: %s\n", err);
        rc = 2;
        goto out;
    }
#ifdef LSD_WITH_MPI
    if (pl) {
        so.generate = pipe_generate;
        so.generate_user = pl;
    }
#endif
    if (lsd_sched_create(&so, &sched, err, sizeof err) != 0) {
        fprintf(stderr, "layerskipd: %s\n", err);
        rc = 1;
        goto out;
    }
    if (load_chat_template(&cfg, model, &chat_tpl, chat_err, sizeof chat_err) != 0) {
        fprintf(stderr, "layerskipd: %s\n", chat_err);
        rc = 2;
        goto out;
    }
    if (!chat_tpl) LSD_LOG(LSD_LOG_WARN, "Chat is off: %s", chat_err);
    token_text(model, ls_tokenizer_bos(ls_model_tokenizer(model)), bos_text, sizeof bos_text);
    token_text(model, ls_tokenizer_eos(ls_model_tokenizer(model)), eos_text, sizeof eos_text);
    svc = calloc(1, sizeof *svc);
    if (!svc) { rc = 1; goto out; }
    svc->chat_template = chat_tpl;
    svc->chat_template_source = cfg.chat_template[0] ? cfg.chat_template : chat_tpl ? "model" : "";
    svc->chat_template_error = chat_err;
    svc->bos_text = bos_text;
    svc->eos_text = eos_text;
    svc->model = model;
    svc->model_path = cfg.model;
    svc->n_ctx = n_ctx;
    svc->default_max_tokens = cfg.default_max_tokens;
    svc->default_strategy = strategy;
    svc->default_exit_layer = exit_layer;
    svc->default_num_speculations = cfg.num_speculations;
    svc->draft_min_p = cfg.draft_min_p;
    svc->default_draft_source = draft_source;
    svc->default_draft_vocab = cfg.draft_vocab;
    svc->adapter = adapter;
    svc->max_sessions = cfg.max_sessions;
    svc->max_queue = cfg.max_queue;
#ifdef LSD_WITH_MPI
    if (pl) {
        svc->stages = stage_info;
        svc->n_stages = lsw_pipeline_layout(pl)->n_stages;
        svc->pipeline_exit_layer = exit_layer;
    }
#endif
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
#ifdef LSD_WITH_MPI
    if (pl) {
        /* the monitor: liveness pings between signals */
        const struct timespec half = {0, 500 * 1000 * 1000};
        for (;;) {
            siginfo_t si = {0};
            sig = sigtimedwait(&sigs, &si, &half);
            /* mpirun signals every rank when one of them dies: was it one of ours here? */
            if (sig == SIGTERM || sig == SIGINT) lsw_pipeline_probe(pl);
            /* from the launcher itself, the signal means the job is ending
             * (SIGKILL follows T s later): a stage that does not answer
             * within T/2 is the lost one, and the requests are told so */
            if ((sig == SIGTERM || sig == SIGINT) && si.si_pid > 1 && si.si_pid == getppid()) {
                const double w = launcher_roll_call_s(cfg.stage_timeout);
                LSD_LOG(LSD_LOG_INFO, "%s from the launcher (pid %d): roll call of the stages, %.1f s", strsignal(sig),
                        (int)si.si_pid, w);
                lsw_pipeline_roll_call(pl, w);
            }
            ls_err perr = {{0}};
            if (lsw_pipeline_check(pl, 1.0, &perr) != LS_OK) {
                stage_lost = true;
                break;
            }
            if (sig == SIGINT || sig == SIGTERM) break;
        }
    }
    if (stage_lost) {
        const char *why = "";
        lsw_pipeline_broken(pl, &why);
        char reason[600];
        snprintf(reason, sizeof reason, "pipeline stage lost: %.560s", why);
        LSD_LOG(LSD_LOG_ERROR, "%s; health NOT_SERVING, failing requests with UNAVAILABLE, ending the job", reason);
        lsd_server_begin_drain_reason(srv, reason);
        /* running generations fail by themselves (the pipeline is broken,
         * each says where); queued ones get the reason now */
        struct timespec tick = {0, 10 * 1000 * 1000};
        double until = now_s() + 0.1; /* mpirun's SIGKILL may be < 1 s away */
        lsd_sched_fail_all(sched, GRPC_STATUS_UNAVAILABLE, reason);
        while (lsd_sched_active(sched) > 0 && now_s() < until) nanosleep(&tick, NULL);
        /* a slot thread may be stuck in MPI (OpenMPI blocks there while
         * mpirun ends the job): answer its clients without it */
        lsd_server_fail_generations(srv, GRPC_STATUS_UNAVAILABLE, reason);
        lsd_server_shutdown(srv, 0.5);
        /* end the job now: freeing the scheduler would join those threads */
        launcher_watchdog();
        fflush(NULL);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
#endif
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
    free(token);
    free(cert);
    free(key);
early_out:
#ifdef LSD_WITH_MPI
    if (mpi) {
        if (pl && lsw_pipeline_probe(pl)) {
            /* a stage is gone or stuck: end every rank of the job (no orphans), non-zero */
            launcher_watchdog();
            fflush(NULL);
            MPI_Abort(MPI_COMM_WORLD, rc > 0 ? rc : 1);
        }
        ls_err serr = {{0}};
        const bool had = pl != NULL;
        lsw_pipeline_free(pl); /* the workers drop their stage */
        if (mpi_size > 1 && lsw_shutdown_workers(MPI_COMM_WORLD, had ? cfg.stage_timeout : 10, &serr) != LS_OK) {
            fprintf(stderr, "layerskipd: stopping the workers: %s\n", serr.msg);
            fflush(NULL);
            MPI_Abort(MPI_COMM_WORLD, rc > 0 ? rc : 1);
        }
        MPI_Finalize();
    }
#endif
    ls_chat_template_free(chat_tpl);
    ls_adapter_free(adapter); /* before the model it was made for */
    ls_model_free(model);
    return rc < 0 ? 0 : rc;
}
