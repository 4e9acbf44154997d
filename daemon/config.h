/* config.h: layerskipd's options. One table (config.c) of name, type,
 * default, bounds and help drives the command-line flags, the config file
 * and --help, so the three cannot disagree. Every flag --NAME is also the
 * config key NAME. Config file syntax: `key = value` lines, '#' starts a
 * comment (at the start of a line, or after whitespace following a value),
 * blank lines are skipped, a value may be "double quoted" to keep a '#' or
 * surrounding spaces. Flags given on the command line override the file. */
#ifndef LSD_CONFIG_H
#define LSD_CONFIG_H

#include <stddef.h>
#include <stdio.h>

#include "layerskip/speculate.h"

#ifndef LSD_VERSION
#define LSD_VERSION "0.1.0"
#endif

typedef struct lsd_config {
    char model[4096];          /* --model PATH (required): GGUF file or Hugging Face directory */
    char listen[512];          /* --listen ADDR, default "127.0.0.1:50051"; "unix:/path" for a unix socket */
    int threads;               /* --threads N, default: online CPUs; compute threads (one process: shared by all sessions) */
    int ctx;                   /* --ctx N, default 0 = min(4096, model's training context); [16, 1<<20] */
    int max_sessions;          /* --max-sessions N, default 4; generations running at once (each owns a KV cache) [1, 1024] */
    int max_queue;             /* --max-queue N, default 64; requests waiting for a session; more -> RESOURCE_EXHAUSTED [0, 1<<20] */
    char kv_budget[64];        /* --kv-budget N|SIZE: KV positions all running generations may hold; "" = none */
    int prefill_chunk;         /* --prefill-chunk N, default 64: prompt tokens per step and request [1, 256] */
    int default_max_tokens;    /* --default-max-tokens N, default 256 */
    char strategy[32];         /* --strategy NAME, default "autoregressive" (autoregressive|early_exit|self_speculative) */
    int exit_layer;            /* --exit-layer E, default 0 = layers/4 */
    int num_speculations;      /* --num-speculations K|auto, default 4, [1, 32]; auto = LSD_NUM_SPECULATIONS_AUTO */
    float draft_min_p;         /* --draft-min-p P, default 0.95, [0, 1] */
    char draft_source[16];     /* --draft-source NAME, default "auto" (auto|exit|adapter|lookup: ls_draft_source_name) */
    char draft_adapter[4096];  /* --draft-adapter PATH: draft adapter GGUF (docs/ADAPTER.md); "" = none */
    char chat_template[4096];  /* --chat-template FILE: Jinja chat template instead of the model's; "" = the model's */
    int draft_vocab;           /* --draft-vocab N, default 0 = the full head; [0, 1<<24] */
    char tls_cert[4096];       /* --tls-cert FILE (PEM), with --tls-key: serve TLS */
    char tls_key[4096];        /* --tls-key FILE (PEM) */
    char auth_token_file[4096];/* --auth-token-file FILE: clients must send "authorization: Bearer <token>" */
    char metrics_listen[512];  /* --metrics-listen HOST:PORT, default "" = off; Prometheus text at /metrics */
    char log_level[16];        /* --log-level error|warn|info|debug, default info */
    int max_request_bytes;     /* --max-request-bytes N, default 1048576; larger requests -> INVALID_ARGUMENT */
    int drain_seconds;         /* --drain-seconds N, default 30: SIGTERM waits this long for in-flight requests */
    char stages[1024];         /* --stages LIST: MPI pipeline split, "0-8,8-30" or budgets "2GiB,6GiB"; "" = by --exit-layer */
    float stage_timeout;       /* --stage-timeout S, default 10: a silent pipeline stage is lost after S seconds */
    char trace[512];           /* --trace PREFIX: pipeline spans to PREFIX.rank<R>.jsonl; "" = off */
    char config_file[4096];    /* --config FILE */
} lsd_config;

/* num_speculations given as "auto" (the request's -1): the engine chooses k
 * per round in [0, LS_AUTO_SPECULATIONS_MAX] (ls_gen_params.auto_speculations
 * with that bound as num_speculations; speculate.h). */
#define LSD_NUM_SPECULATIONS_AUTO (-1)

typedef enum lsd_config_result {
    LSD_CONFIG_OK = 0,
    LSD_CONFIG_HELP = 1,   /* --help or --version was printed: exit 0 */
    LSD_CONFIG_ERROR = -1, /* err holds the message: print it and exit 2 */
} lsd_config_result;

void lsd_config_defaults(lsd_config *c);

/* Fills c: defaults, then the config file (--config FILE, read first
 * wherever it appears), then the other flags in order (a repeated flag or
 * key: the last one wins). Flags are "--name value" or "--name=value".
 * --help prints the help to stdout, --version the version; both return
 * LSD_CONFIG_HELP. Errors (unknown flag or key, missing value, bad number,
 * out of bounds, unknown choice, unreadable config file, --tls-cert without
 * --tls-key or the reverse, missing --model) return LSD_CONFIG_ERROR with a
 * message in err naming the flag ("--threads: ...") or the file line
 * ("FILE:LINE: threads: ...") and the fix; nothing is printed. On error c
 * may be partly filled. */
lsd_config_result lsd_config_parse(lsd_config *c, int argc, char **argv, char *err, size_t err_len);

void lsd_config_print_help(FILE *f);

/* One INFO log line per option that differs from its default (the model is
 * always logged; the auth token file's path is logged, never its content). */
void lsd_config_log(const lsd_config *c);

/* Table access, for tests and tools that must cover every option: the
 * number of options and the i-th option's key (flag name without "--").
 * NULL past the end. */
size_t lsd_config_option_count(void);
const char *lsd_config_option_name(size_t i);

#endif
