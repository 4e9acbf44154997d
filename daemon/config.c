/* config.c: the option table and the three things it drives: flag parsing,
 * the config file reader and --help. Adding an option is one table row plus
 * its field in lsd_config (and its entry in deploy/layerskipd.conf, which a
 * test checks). Errors are returned as text, never printed, so main decides
 * how to exit. */
#include "config.h"
#include "log.h"

#include "layerskip/speculate.h" /* the draft source names */

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <grpc/grpc.h>
#include <protobuf-c/protobuf-c.h>

/* A config file larger than this is certainly not a config file. */
#define LSD_CONFIG_FILE_MAX (1u << 20)

typedef enum lsd_opt_type { LSD_OPT_STR, LSD_OPT_INT, LSD_OPT_FLOAT } lsd_opt_type;

typedef struct lsd_option {
    const char *name;          /* flag without "--", and config key */
    const char *metavar;       /* shown in --help: --name METAVAR */
    lsd_opt_type type;
    size_t offset;             /* field in lsd_config */
    size_t size;               /* LSD_OPT_STR: buffer size (with NUL) */
    const char *def_str;       /* LSD_OPT_STR default */
    double def_num;            /* LSD_OPT_INT / LSD_OPT_FLOAT default */
    double min, max;           /* numeric bounds, inclusive */
    bool zero_ok;              /* 0 also allowed (means "automatic") outside [min, max] */
    bool nonempty;             /* a string that may not be "" */
    bool flag_only;            /* not a config file key (--config) */
    /* the i-th allowed string, NULL past the end; NULL: any string. For
     * LSD_OPT_INT: words accepted besides the numbers, the i-th stored as
     * -(i + 1) (num-speculations: "auto" = -1 = LSD_NUM_SPECULATIONS_AUTO) */
    const char *(*choices)(int i);
    const char *help;
    const char *default_doc;   /* --help text for a computed default, or NULL */
} lsd_option;

static const char *lsd_strategies(int i) {
    static const char *const v[] = {"autoregressive", "early_exit", "self_speculative", NULL};
    return v[i];
}
static const char *lsd_log_levels(int i) {
    static const char *const v[] = {"error", "warn", "info", "debug", NULL};
    return v[i];
}
/* the engine's names, so the daemon cannot list other ones */
static const char *lsd_draft_sources(int i) {
    return i >= 0 && i < LS_N_DRAFT_SOURCES ? ls_draft_source_name((ls_draft_source)i) : NULL;
}
static const char *lsd_auto_word(int i) { return i == 0 ? "auto" : NULL; } /* -1 */

#define XSTR(x) STR(x)
#define STR(x) #x

#define F(field) offsetof(lsd_config, field), sizeof(((lsd_config *)0)->field)

static const lsd_option lsd_options[] = {
    {"model", "PATH", LSD_OPT_STR, F(model), "", 0, 0, 0, false, true, false, NULL,
     "model to serve: a GGUF file or a Hugging Face directory (config.json, *.safetensors, "
     "tokenizer.json); required", NULL},
    {"listen", "ADDR", LSD_OPT_STR, F(listen), "127.0.0.1:50051", 0, 0, 0, false, true, false, NULL,
     "gRPC address: HOST:PORT ([::]:PORT or 0.0.0.0:PORT for all interfaces), or unix:/path "
     "for a unix socket", NULL},
    {"threads", "N", LSD_OPT_INT, F(threads), NULL, 0, 1, 1024, false, false, false, NULL,
     "compute threads: in one process, all sessions share them (one forward pass per step for every "
     "running generation); through the MPI pipeline, each running generation's", "online CPUs"},
    {"ctx", "N", LSD_OPT_INT, F(ctx), NULL, 0, 16, 1 << 20, true, false, false, NULL,
     "context length (prompt + generated tokens) of each session; 0 = min(4096, the model's "
     "training context)", NULL},
    {"max-sessions", "N", LSD_OPT_INT, F(max_sessions), NULL, 4, 1, 1024, false, false, false, NULL,
     "generations running at once; each owns a KV cache of ctx tokens", NULL},
    {"max-queue", "N", LSD_OPT_INT, F(max_queue), NULL, 64, 0, 1 << 20, false, false, false, NULL,
     "requests waiting for a free session; more are refused with RESOURCE_EXHAUSTED", NULL},
    {"kv-budget", "N|SIZE", LSD_OPT_STR, F(kv_budget), "", 0, 0, 0, false, false, false, NULL,
     "KV cache all running generations may hold together: N positions (\"16384\") or a size "
     "(\"512MiB\"); a request reserves its prompt + max_tokens + 1 positions (at most --ctx) when it "
     "starts and waits in the queue, first come first served, until that fits; at least one --ctx; "
     "empty = no budget beyond --max-sessions. In one process each request's cache is made at its "
     "size; through the MPI pipeline the stages keep --max-sessions caches of --ctx", NULL},
    {"prefill-chunk", "N", LSD_OPT_INT, F(prefill_chunk), NULL, 64, 1, 256, false, false, false, NULL,
     "prompt tokens each request runs per step (one process): a long prompt delays the other "
     "requests by one such slice per step, and a cancelled request stops within one", NULL},
    {"default-max-tokens", "N", LSD_OPT_INT, F(default_max_tokens), NULL, 256, 1, 1 << 20, false,
     false, false, NULL, "tokens to generate when a request leaves max_tokens at 0", NULL},
    {"strategy", "NAME", LSD_OPT_STR, F(strategy), "autoregressive", 0, 0, 0, false, true, false,
     lsd_strategies,
     "generation strategy when a request leaves it empty: autoregressive, early_exit or "
     "self_speculative", NULL},
    {"exit-layer", "E", LSD_OPT_INT, F(exit_layer), NULL, 0, 0, 1 << 16, false, false, false, NULL,
     "exit layer E for early_exit and self_speculative (drafts leave after layers [0, E)); "
     "0 = the E the --draft-adapter was trained after, or layers/4 without one; must be below the "
     "model's layer count", NULL},
    {"num-speculations", "K|auto", LSD_OPT_INT, F(num_speculations), NULL, 4, 1, 32, false, false, false,
     lsd_auto_word, "tokens drafted per self-speculative round; auto: k chosen every round in [0, "
     XSTR(LS_AUTO_SPECULATIONS_MAX) "] from the acceptance so far and the measured cost of drafting and "
     "verifying (0 = a plain step)", NULL},
    {"draft-min-p", "P", LSD_OPT_FLOAT, F(draft_min_p), NULL, 0.95, 0, 1, false, false, false, NULL,
     "self-speculation (greedy or sampled) stops a draft round early when the draft's top "
     "probability falls below P (0 = always draft K tokens)", NULL},
    {"draft-source", "NAME", LSD_OPT_STR, F(draft_source), "auto", 0, 0, 0, false, true, false,
     lsd_draft_sources,
     "where self-speculative drafts come from when a request leaves draft_source empty: exit "
     "(layers [0, E) and the model's own head), adapter (layers [0, E) and the --draft-adapter "
     "block), lookup (copies of n-grams of the prompt and the text so far: no model compute) or "
     "auto (lookup when it has a match, else adapter if one is loaded, else exit)", NULL},
    {"draft-adapter", "PATH", LSD_OPT_STR, F(draft_adapter), "", 0, 0, 0, false, false, false, NULL,
     "draft adapter GGUF made for --model (docs/ADAPTER.md), loaded with the model; startup fails if "
     "it does not fit the model. Its block drafts for the sources adapter and auto (exit layer E "
     "must then be the one it was trained after: --exit-layer defaults to it), its frequency table "
     "serves --draft-vocab; empty = none", NULL},
    {"draft-vocab", "N", LSD_OPT_INT, F(draft_vocab), NULL, 0, 0, 1 << 24, false, false, false, NULL,
     "drafts score only the N most frequent tokens of the --draft-adapter's frequency table "
     "(verification keeps the full head: the output does not change); 0 = the full head", NULL},
    {"chat-template", "FILE", LSD_OPT_STR, F(chat_template), "", 0, 0, 0, false, false, false, NULL,
     "Jinja chat template for Chat (and the HTTP chat API) instead of the model's own (GGUF "
     "tokenizer.chat_template); startup fails if it cannot be read or uses Jinja the renderer does "
     "not support, naming the construct; empty = the model's", NULL},
    {"tls-cert", "FILE", LSD_OPT_STR, F(tls_cert), "", 0, 0, 0, false, false, false, NULL,
     "PEM certificate chain; with --tls-key the gRPC port serves TLS; empty = plaintext", NULL},
    {"tls-key", "FILE", LSD_OPT_STR, F(tls_key), "", 0, 0, 0, false, false, false, NULL,
     "PEM private key of --tls-cert", NULL},
    {"auth-token-file", "FILE", LSD_OPT_STR, F(auth_token_file), "", 0, 0, 0, false, false, false,
     NULL,
     "file holding a bearer token; clients must then send \"authorization: Bearer <token>\"; "
     "empty = no authentication", NULL},
    {"metrics-listen", "HOST:PORT", LSD_OPT_STR, F(metrics_listen), "", 0, 0, 0, false, false,
     false, NULL, "serve Prometheus metrics over HTTP at http://HOST:PORT/metrics; empty = off",
     NULL},
    {"log-level", "LEVEL", LSD_OPT_STR, F(log_level), "info", 0, 0, 0, false, true, false,
     lsd_log_levels, "log verbosity on stderr: error, warn, info or debug", NULL},
    {"max-request-bytes", "N", LSD_OPT_INT, F(max_request_bytes), NULL, 1048576, 64, 1 << 30, false,
     false, false, NULL, "largest request message accepted; larger ones get INVALID_ARGUMENT",
     NULL},
    {"drain-seconds", "N", LSD_OPT_INT, F(drain_seconds), NULL, 30, 0, 3600, false, false, false,
     NULL,
     "on SIGTERM, new requests are refused and running ones get this long to finish before "
     "they are cancelled", NULL},
    {"stages", "LIST", LSD_OPT_STR, F(stages), "", 0, 0, 0, false, false, false, NULL,
     "MPI pipeline only (mpirun -np 1 layerskipd ... : -np N layerskip-worker): the layers of each "
     "rank as half-open ranges, like \"0-8,8-20,20-30\", or a memory budget per rank, like "
     "\"2GiB,6GiB,6GiB\" (stage 0 is then [0, --exit-layer) and the rest is split to fit); "
     "empty = stage 0 is [0, --exit-layer) and the other layers are split evenly", NULL},
    {"stage-timeout", "S", LSD_OPT_FLOAT, F(stage_timeout), NULL, 10, 0.1, 3600, false, false, false,
     NULL,
     "MPI pipeline only: a stage that does not answer for S seconds is lost: requests fail with "
     "UNAVAILABLE naming it, health turns NOT_SERVING and the job exits non-zero", NULL},
    {"trace", "PREFIX", LSD_OPT_STR, F(trace), "", 0, 0, 0, false, false, false, NULL,
     "MPI pipeline only: every rank writes its spans (draft, verify, wait, ...) as JSON lines to "
     "PREFIX.rank<R>.jsonl; empty = off", NULL},
    {"config", "FILE", LSD_OPT_STR, F(config_file), "", 0, 0, 0, false, false, true, NULL,
     "read options from FILE (key = value lines, the keys are the flag names without --) "
     "before the other flags, which override it", NULL},
};

#undef F

#define LSD_N_OPTIONS (sizeof lsd_options / sizeof lsd_options[0])

size_t lsd_config_option_count(void) { return LSD_N_OPTIONS; }

const char *lsd_config_option_name(size_t i) {
    return i < LSD_N_OPTIONS ? lsd_options[i].name : NULL;
}

static int lsd_online_cpus(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1) return 1;
    return n > 1024 ? 1024 : (int)n;
}

static void *opt_field(lsd_config *c, const lsd_option *o) { return (char *)c + o->offset; }
static const void *opt_cfield(const lsd_config *c, const lsd_option *o) {
    return (const char *)c + o->offset;
}

void lsd_config_defaults(lsd_config *c) {
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < LSD_N_OPTIONS; i++) {
        const lsd_option *o = &lsd_options[i];
        void *p = opt_field(c, o);
        switch (o->type) {
        case LSD_OPT_STR: snprintf(p, o->size, "%s", o->def_str); break;
        case LSD_OPT_INT: *(int *)p = (int)o->def_num; break;
        case LSD_OPT_FLOAT: *(float *)p = (float)o->def_num; break;
        }
    }
    c->threads = lsd_online_cpus();
}

static void set_err(char *err, size_t err_len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t err_len, const char *fmt, ...) {
    if (!err || err_len == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
}

static const lsd_option *find_option(const char *name, size_t len) {
    for (size_t i = 0; i < LSD_N_OPTIONS; i++) {
        if (strlen(lsd_options[i].name) == len && memcmp(lsd_options[i].name, name, len) == 0) {
            return &lsd_options[i];
        }
    }
    return NULL;
}

/* "max_sessions" for "max-sessions": the common slip gets a precise hint */
static const lsd_option *find_option_fuzzy(const char *name, size_t len) {
    char buf[64];
    if (len >= sizeof buf) return NULL;
    for (size_t i = 0; i < len; i++) buf[i] = name[i] == '_' ? '-' : name[i];
    return find_option(buf, len);
}

/* the i-th allowed string (or word) of o; NULL past the end or when there are none */
static const char *choice(const lsd_option *o, int i) { return o->choices ? o->choices(i) : NULL; }

static void format_bounds(const lsd_option *o, char *buf, size_t len) {
    if (o->type == LSD_OPT_INT) {
        int n = snprintf(buf, len, "[%d, %d]%s", (int)o->min, (int)o->max, o->zero_ok ? " or 0 (automatic)" : "");
        for (int i = 0; choice(o, i) && n >= 0 && (size_t)n < len; i++)
            n += snprintf(buf + n, len - (size_t)n, " or %s", choice(o, i));
    } else {
        snprintf(buf, len, "[%g, %g]", o->min, o->max);
    }
}

/* Set option o from text `value`; `where` names the source in messages
 * ("--threads" or "FILE:LINE: threads"). */
static bool apply_value(lsd_config *c, const lsd_option *o, const char *value, const char *where,
                        char *err, size_t err_len) {
    char bounds[96];
    switch (o->type) {
    case LSD_OPT_STR: {
        size_t n = strlen(value);
        if (n >= o->size) {
            set_err(err, err_len, "%s: value is %zu bytes, longer than the %zu-byte limit; give a shorter %s",
                    where, n, o->size - 1, o->metavar);
            return false;
        }
        if (o->nonempty && n == 0) {
            set_err(err, err_len, "%s: empty value; give %s", where, o->metavar);
            return false;
        }
        if (choice(o, 0)) {
            bool ok = false;
            for (int i = 0; choice(o, i); i++) ok = ok || strcmp(choice(o, i), value) == 0;
            if (!ok) {
                char list[256] = "";
                size_t used = 0;
                for (int i = 0; choice(o, i); i++) {
                    int w = snprintf(list + used, sizeof list - used, "%s%s", used ? ", " : "", choice(o, i));
                    if (w < 0 || (size_t)w >= sizeof list - used) break;
                    used += (size_t)w;
                }
                set_err(err, err_len, "%s: unknown value '%.64s'; use one of %s", where, value, list);
                return false;
            }
        }
        memcpy(opt_field(c, o), value, n + 1);
        return true;
    }
    case LSD_OPT_INT: {
        format_bounds(o, bounds, sizeof bounds);
        for (int i = 0; choice(o, i); i++) {
            if (strcmp(value, choice(o, i)) == 0) {
                *(int *)opt_field(c, o) = -(i + 1);
                return true;
            }
        }
        errno = 0;
        char *end = NULL;
        long long v = strtoll(value, &end, 10);
        if (*value == '\0' || end == value || *end != '\0') {
            set_err(err, err_len, "%s: '%.64s' is not a whole number; give an integer in %s", where, value, bounds);
            return false;
        }
        if (errno == ERANGE) {
            set_err(err, err_len, "%s: %.64s is out of range; give a value in %s", where, value, bounds);
            return false;
        }
        if (!((v == 0 && o->zero_ok) || (v >= (long long)o->min && v <= (long long)o->max))) {
            set_err(err, err_len, "%s: %lld is out of range; give a value in %s", where, v, bounds);
            return false;
        }
        *(int *)opt_field(c, o) = (int)v;
        return true;
    }
    case LSD_OPT_FLOAT: {
        format_bounds(o, bounds, sizeof bounds);
        errno = 0;
        char *end = NULL;
        double v = strtod(value, &end);
        if (*value == '\0' || end == value || *end != '\0' || errno == ERANGE || !isfinite(v)) {
            set_err(err, err_len, "%s: '%.64s' is not a number; give a number in %s", where, value, bounds);
            return false;
        }
        if (v < o->min || v > o->max) {
            set_err(err, err_len, "%s: %g is out of range; give a value in %s", where, v, bounds);
            return false;
        }
        *(float *)opt_field(c, o) = (float)v;
        return true;
    }
    }
    return false;
}

static char *trim(char *s) {
    while (*s == ' ' || *s == '\t') s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r')) s[--n] = '\0';
    return s;
}

/* Parse one non-blank, non-comment line in place and apply it. */
static bool apply_line(lsd_config *c, char *line, const char *path, int lineno, char *err, size_t err_len) {
    char *eq = strchr(line, '=');
    if (!eq) {
        set_err(err, err_len, "%s:%d: expected `key = value`, got '%.64s'; keys are the flag names without --",
                path, lineno, line);
        return false;
    }
    *eq = '\0';
    char *key = trim(line);
    char *value = trim(eq + 1);
    if (*key == '\0') {
        set_err(err, err_len, "%s:%d: missing key before '='; write `key = value`", path, lineno);
        return false;
    }
    const lsd_option *o = find_option(key, strlen(key));
    if (!o) {
        const lsd_option *hint = find_option_fuzzy(key, strlen(key));
        if (hint) {
            set_err(err, err_len, "%s:%d: unknown key '%.64s'; did you mean '%s'?", path, lineno, key, hint->name);
        } else {
            set_err(err, err_len, "%s:%d: unknown key '%.64s'; run layerskipd --help for the keys (flag names without --)",
                    path, lineno, key);
        }
        return false;
    }
    if (o->flag_only) {
        set_err(err, err_len, "%s:%d: %s: a config file cannot name another config file; remove this line",
                path, lineno, key);
        return false;
    }
    if (*value == '"') {
        char *close = strchr(value + 1, '"');
        if (!close) {
            set_err(err, err_len, "%s:%d: %s: unterminated quote; end the value with \"", path, lineno, key);
            return false;
        }
        char *rest = trim(close + 1);
        if (*rest != '\0' && *rest != '#') {
            set_err(err, err_len, "%s:%d: %s: text after the closing quote; put a comment after '#' or nothing",
                    path, lineno, key);
            return false;
        }
        *close = '\0';
        value++;
    } else {
        /* a comment starts at a '#' preceded by whitespace; "a#b" stays a value */
        for (char *p = value; *p; p++) {
            if (*p == '#' && p > value && (p[-1] == ' ' || p[-1] == '\t')) {
                *p = '\0';
                value = trim(value);
                break;
            }
        }
    }
    char where[4200];
    snprintf(where, sizeof where, "%s:%d: %s", path, lineno, key);
    return apply_value(c, o, value, where, err, err_len);
}

static bool read_config_file(lsd_config *c, const char *path, char *err, size_t err_len) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        set_err(err, err_len, "--config: cannot read '%s': %s; give the path of a readable config file",
                path, strerror(errno));
        return false;
    }
    char *buf = malloc(LSD_CONFIG_FILE_MAX + 1);
    if (!buf) {
        fclose(f);
        set_err(err, err_len, "--config: out of memory reading '%s'", path);
        return false;
    }
    size_t n = fread(buf, 1, LSD_CONFIG_FILE_MAX + 1, f);
    bool read_error = ferror(f) != 0;
    int read_errno = errno;
    fclose(f);
    if (read_error) {
        set_err(err, err_len, "--config: cannot read '%s': %s; give the path of a readable config file",
                path, strerror(read_errno));
        free(buf);
        return false;
    }
    if (n > LSD_CONFIG_FILE_MAX) {
        set_err(err, err_len, "--config: '%s' is larger than %u bytes; is it really a config file?",
                path, LSD_CONFIG_FILE_MAX);
        free(buf);
        return false;
    }
    buf[n] = '\0';
    if (memchr(buf, '\0', n)) {
        set_err(err, err_len, "--config: '%s' contains NUL bytes; a config file is text (key = value lines)", path);
        free(buf);
        return false;
    }
    bool ok = true;
    int lineno = 0;
    for (char *line = buf; ok && line;) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = '\0';
        lineno++;
        char *t = trim(line);
        if (*t != '\0' && *t != '#') ok = apply_line(c, t, path, lineno, err, err_len);
        line = nl ? nl + 1 : NULL;
    }
    free(buf);
    return ok;
}

static void print_version(FILE *f) {
    fprintf(f, "layerskipd %s (gRPC core %s, protobuf-c %s)\n", LSD_VERSION, grpc_version_string(),
            protobuf_c_version());
}

lsd_config_result lsd_config_parse(lsd_config *c, int argc, char **argv, char *err, size_t err_len) {
    lsd_config_defaults(c);
    if (err && err_len) err[0] = '\0';
    /* --help and --version win wherever they appear, even after a bad flag */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            lsd_config_print_help(stdout);
            return LSD_CONFIG_HELP;
        }
        if (strcmp(argv[i], "--version") == 0 || strcmp(argv[i], "-V") == 0) {
            print_version(stdout);
            return LSD_CONFIG_HELP;
        }
    }

    /* Pass 1: split argv into (option, value) pairs and find --config, so the
     * file can be applied first wherever the flag appears. */
    typedef struct { const lsd_option *o; const char *value; } flag_pair;
    flag_pair *pairs = calloc((size_t)(argc > 0 ? argc : 1), sizeof *pairs);
    if (!pairs) {
        set_err(err, err_len, "out of memory parsing the command line");
        return LSD_CONFIG_ERROR;
    }
    size_t n_pairs = 0;
    const char *config_path = NULL;
    lsd_config_result result = LSD_CONFIG_ERROR;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strncmp(arg, "--", 2) != 0) {
            set_err(err, err_len, "unexpected argument '%.64s'; options are --name value (run layerskipd --help)", arg);
            goto out;
        }
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t name_len = eq ? (size_t)(eq - name) : strlen(name);
        const lsd_option *o = find_option(name, name_len);
        if (!o) {
            const lsd_option *hint = find_option_fuzzy(name, name_len);
            if (hint) {
                set_err(err, err_len, "unknown flag --%.*s; did you mean --%s?", (int)(name_len > 64 ? 64 : name_len),
                        name, hint->name);
            } else {
                set_err(err, err_len, "unknown flag --%.*s; run layerskipd --help for the list",
                        (int)(name_len > 64 ? 64 : name_len), name);
            }
            goto out;
        }
        const char *value;
        if (eq) {
            value = eq + 1;
        } else if (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0) {
            value = argv[++i];
        } else {
            set_err(err, err_len, "--%s: missing value; give --%s %s", o->name, o->name, o->metavar);
            goto out;
        }
        if (o->flag_only) {
            config_path = value;
        } else {
            pairs[n_pairs].o = o;
            pairs[n_pairs].value = value;
            n_pairs++;
        }
    }

    if (config_path) {
        if (!apply_value(c, find_option("config", 6), config_path, "--config", err, err_len)) goto out;
        if (*config_path == '\0') {
            set_err(err, err_len, "--config: empty path; give the config file's path");
            goto out;
        }
        if (!read_config_file(c, config_path, err, err_len)) goto out;
    }
    for (size_t i = 0; i < n_pairs; i++) {
        char where[80];
        snprintf(where, sizeof where, "--%s", pairs[i].o->name);
        if (!apply_value(c, pairs[i].o, pairs[i].value, where, err, err_len)) goto out;
    }

    if (c->model[0] == '\0') {
        set_err(err, err_len, "missing --model: give the model with --model PATH (a GGUF file or a Hugging Face "
                              "directory) or `model = PATH` in the config file");
        goto out;
    }
    if ((c->tls_cert[0] != '\0') != (c->tls_key[0] != '\0')) {
        set_err(err, err_len, c->tls_cert[0]
                    ? "--tls-cert given without --tls-key: TLS needs the certificate and its private key (PEM files)"
                    : "--tls-key given without --tls-cert: TLS needs the certificate and its private key (PEM files)");
        goto out;
    }
    result = LSD_CONFIG_OK;
out:
    free(pairs);
    return result;
}

/* Print text in a column from 31 to about 100, continuation lines indented. */
static void print_wrapped(FILE *f, const char *head, const char *text) {
    const int width = 69;
    fprintf(f, "  %-28s ", head);
    const char *p = text;
    int col = 0;
    while (*p) {
        const char *sp = strchr(p, ' ');
        int word = sp ? (int)(sp - p) : (int)strlen(p);
        if (col > 0 && col + 1 + word > width) {
            fprintf(f, "\n  %-28s ", "");
            col = 0;
        } else if (col > 0) {
            fputc(' ', f);
            col++;
        }
        fwrite(p, 1, (size_t)word, f);
        col += word;
        p += word;
        while (*p == ' ') p++;
    }
    fputc('\n', f);
}

void lsd_config_print_help(FILE *f) {
    fprintf(f,
            "Usage: layerskipd --model PATH [options]\n"
            "       layerskipd --config FILE [options]\n"
            "\n"
            "LayerSkip serving daemon: serves a Llama-family model over gRPC (layerskip.v1.LayerSkip,\n"
            "grpc.health.v1.Health, server reflection) with autoregressive, early-exit and\n"
            "self-speculative generation.\n"
            "\n"
            "Options (every --NAME is also the config file key NAME; flags override the file):\n");
    for (size_t i = 0; i < LSD_N_OPTIONS; i++) {
        const lsd_option *o = &lsd_options[i];
        char head[96];
        snprintf(head, sizeof head, "--%s %s", o->name, o->metavar);
        print_wrapped(f, head, o->help);
        char def[160] = "";
        char bounds[96] = "";
        if (o->default_doc) {
            snprintf(def, sizeof def, "default: %s", o->default_doc);
        } else if (o->type == LSD_OPT_STR) {
            if (o->def_str[0]) snprintf(def, sizeof def, "default: %s", o->def_str);
        } else if (o->type == LSD_OPT_INT) {
            snprintf(def, sizeof def, "default: %d", (int)o->def_num);
        } else {
            snprintf(def, sizeof def, "default: %g", o->def_num);
        }
        if (o->type != LSD_OPT_STR) format_bounds(o, bounds, sizeof bounds);
        if (def[0] || bounds[0]) {
            fprintf(f, "  %-28s %s%s%s%s\n", "", def, def[0] && bounds[0] ? "; " : "",
                    bounds[0] ? "range " : "", bounds);
        }
    }
    fprintf(f, "  %-28s %s\n", "--help", "print this help and exit");
    fprintf(f, "  %-28s %s\n", "--version", "print the version and exit");
}

void lsd_config_log(const lsd_config *c) {
    lsd_config d;
    lsd_config_defaults(&d);
    for (size_t i = 0; i < LSD_N_OPTIONS; i++) {
        const lsd_option *o = &lsd_options[i];
        const void *p = opt_cfield(c, o);
        const void *q = opt_cfield(&d, o);
        switch (o->type) {
        case LSD_OPT_STR:
            if (strcmp(p, q) != 0 || o->offset == offsetof(lsd_config, model)) {
                LSD_LOG(LSD_LOG_INFO, "option %s = %s", o->name, (const char *)p);
            }
            break;
        case LSD_OPT_INT:
            if (*(const int *)p == *(const int *)q) break;
            if (*(const int *)p < 0 && choice(o, -*(const int *)p - 1)) {
                LSD_LOG(LSD_LOG_INFO, "option %s = %s", o->name, choice(o, -*(const int *)p - 1));
            } else {
                LSD_LOG(LSD_LOG_INFO, "option %s = %d", o->name, *(const int *)p);
            }
            break;
        case LSD_OPT_FLOAT:
            if (*(const float *)p != *(const float *)q) {
                LSD_LOG(LSD_LOG_INFO, "option %s = %g", o->name, (double)*(const float *)p);
            }
            break;
        }
    }
}
