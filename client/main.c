/* main.c: `layerskip`, the command-line client of layerskipd. Parses the
 * subcommand and its flags, sets up the connection (remote, or local mode
 * with a private daemon), runs the command and maps the outcome to an exit
 * code: 0 success, 1 failure, 2 bad usage, 130 interrupted.
 *
 * Signals: SIGINT/SIGTERM/SIGHUP are blocked in every thread and taken by
 * one sigwait thread that only raises the interrupt flag; calls and the
 * batch loop notice it within 100 ms and unwind through the normal cleanup
 * (which stops a local daemon). A second signal forces the exit. */
#define _GNU_SOURCE
#include "batch.h"
#include "common.h"
#include "gen.h"
#include "local.h"
#include "rpc.h"

#include "grpc/health/v1/health.pb-c.h"
#include "layerskip/v1/layerskip.pb-c.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <grpc/grpc.h>
#include <grpc/support/log.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { EXIT_USAGE = 2, EXIT_INTERRUPTED = 130 };

typedef enum command {
    CMD_GENERATE = 1 << 0,
    CMD_BATCH = 1 << 1,
    CMD_TOKENIZE = 1 << 2,
    CMD_DETOKENIZE = 1 << 3,
    CMD_INFO = 1 << 4,
    CMD_HEALTH = 1 << 5,
    CMD_CHAT = 1 << 6,
} command;
#define CMD_ALL (CMD_GENERATE | CMD_BATCH | CMD_TOKENIZE | CMD_DETOKENIZE | CMD_INFO | CMD_HEALTH | CMD_CHAT)
#define CMD_GEN (CMD_GENERATE | CMD_BATCH | CMD_CHAT)

static const struct {
    const char *name;
    command cmd;
    const char *summary;
} commands[] = {
    {"generate", CMD_GENERATE, "generate text for one prompt, streamed to stdout"},
    {"chat", CMD_CHAT, "talk with the model through its chat template (history, streamed answers)"},
    {"batch", CMD_BATCH, "run a JSONL file of prompts (resumable)"},
    {"tokenize", CMD_TOKENIZE, "print the token ids and pieces of a text"},
    {"detokenize", CMD_DETOKENIZE, "print the text of token ids"},
    {"info", CMD_INFO, "print the served model and the daemon's defaults"},
    {"health", CMD_HEALTH, "print SERVING or NOT_SERVING (exit 0 only when SERVING)"},
};

static const char *connection_help =
    "Connection (every command):\n"
    "      --server ADDR          layerskipd address: HOST:PORT or unix:/path\n"
    "                             (default $LAYERSKIP_SERVER or 127.0.0.1:50051)\n"
    "      --tls [true|false]     use TLS with the system's root certificates\n"
    "      --tls-ca FILE          PEM root certificates to trust (implies --tls)\n"
    "      --tls-server-name NAME name to expect in the server's certificate (test certificates)\n"
    "      --auth-token-file FILE send \"authorization: Bearer <token>\" with the token in FILE\n"
    "                             (or set LAYERSKIP_AUTH_TOKEN)\n"
    "      --timeout SECONDS      deadline per call (default: none for generate and batch,\n"
    "                             10 for tokenize, detokenize, info and health)\n"
    "Local mode (instead of --server): run a private daemon for this command only\n"
    "      --model PATH           model (.gguf or Hugging Face directory) for a private layerskipd\n"
    "                             on a unix socket in a fresh temporary directory; stopped at exit\n"
    "      --daemon-bin PATH      layerskipd to run (default: next to layerskip, ../daemon/, PATH)\n"
    "      --threads N            daemon compute threads\n"
    "      --ctx N                daemon context window (tokens)\n"
    "      --max-sessions N       daemon concurrent sessions\n"
    "      --draft-adapter PATH   daemon draft adapter for the model (docs/ADAPTER.md)\n"
    "      --startup-timeout S    seconds to wait for the daemon to be SERVING (default 120)\n"
    "  -h, --help                 this help\n";

static const char *generation_help =
    "Generation (names as in the LayerSkip reference generate.py):\n"
    "      --max-steps N          tokens to generate (alias --max-tokens; default: the daemon's)\n"
    "      --generation-strategy S  autoregressive, early_exit or self_speculative\n"
    "                             (alias --strategy; default: the daemon's)\n"
    "      --exit-layer E         draft/exit after layers [0, E)\n"
    "      --num-speculations K|auto  drafted tokens per verification round; auto: the daemon\n"
    "                             chooses k every round (0 = a plain step)\n"
    "      --draft-source S       auto, exit, adapter or lookup: where self-speculative drafts\n"
    "                             come from (default: the daemon's)\n"
    "      --draft-vocab N        drafts score the N most frequent tokens of the daemon's draft\n"
    "                             adapter; 0 = the full head (default: the daemon's)\n"
    "      --sample [true|false]  sample instead of greedy decoding (flag alone = true;\n"
    "                             default false). Sampling defaults: temperature 0.6, top-p 0.9,\n"
    "                             top-k 0 (off). --temperature X > 0 also turns sampling on.\n"
    "      --temperature X        sampling temperature (0 = greedy)\n"
    "      --top-k K              keep the K most likely tokens (0 = off)\n"
    "      --top-p P              nucleus mass in (0, 1]\n"
    "      --min-p P              drop tokens below P x the top probability (0 = off)\n"
    "      --repetition-penalty X penalise repeated tokens (1 = off)\n"
    "      --stop-words WORD      stop before WORD (repeat the flag for several; commas are literal)\n"
    "      --stop-token-ids ID[,ID...]  stop at these token ids\n"
    "      --seed N               sampling seed (default: the daemon picks and reports one)\n"
    "      --ignore-eos [true|false]  keep generating past end-of-generation tokens\n";

static void usage_main(FILE *f) {
    fprintf(f, "usage: layerskip COMMAND [options]\n\n"
               "The command-line client of layerskipd (LayerSkip early-exit and self-speculative\n"
               "generation over gRPC).\n\nCommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-11s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n'layerskip COMMAND --help' lists the command's flags.\n\n%s", connection_help);
    fprintf(f, "\nExit status: 0 success, 1 failure (server error, failed batch line), 2 bad usage,\n"
               "130 interrupted.\n");
}

static void usage_command(command cmd, FILE *f) {
    switch (cmd) {
    case CMD_CHAT:
        fprintf(f, "usage: layerskip chat [options]\n\n"
                   "Talks with the model through its chat template (the daemon's ChatStream): each line\n"
                   "read from stdin is your next message; the answer streams to stdout and both join\n"
                   "the conversation, which every request sends whole. On a terminal a \"> \" prompt is\n"
                   "shown on stderr. Lines starting with / are commands:\n"
                   "  /reset    forget the conversation (the --system message stays)\n"
                   "  /stats    print statistics after each answer, or stop printing them\n"
                   "  /exit     quit (so do Ctrl-D and Ctrl-C)\n\n"
                   "      --system TEXT          a system message at the start of the conversation\n"
                   "      --json [true|false]    for scripts: no prompt, one JSON object per answer on\n"
                   "                             stdout (text, token_ids, finish_reason, stats)\n"
                   "  -q, --quiet                no statistics, not even with /stats\n\n%s\n%s",
                generation_help, connection_help);
        break;
    case CMD_GENERATE:
        fprintf(f, "usage: layerskip generate [PROMPT | -] [options]\n\n"
                   "Streams the continuation of PROMPT to stdout as it is generated (PROMPT \"-\" or\n"
                   "missing: read it from stdin, less one trailing newline), then prints statistics\n"
                   "to stderr: prompt and\n"
                   "generated tokens, time to first token, time, time per token, tokens per second,\n"
                   "drafted/accepted and acceptance rate, finish reason, strategy/E/k, and for\n"
                   "self-speculation drafted/accepted per draft source and the k per round.\n\n"
                   "      --json [true|false]    print one JSON object (text, token_ids, finish_reason,\n"
                   "                             stats) instead (one unary Generate call)\n"
                   "  -q, --quiet                no statistics on stderr\n\n%s\n%s",
                generation_help, connection_help);
        break;
    case CMD_BATCH:
        fprintf(f, "usage: layerskip batch --input IN.jsonl --output OUT.jsonl [options]\n\n"
                   "One JSON object per input line: \"id\" (string or number; required, unique),\n"
                   "\"prompt\" (required), and optionally \"max_tokens\", \"temperature\", \"top_k\",\n"
                   "\"top_p\", \"min_p\", \"repetition_penalty\", \"seed\", \"stop\" (array of strings),\n"
                   "\"stop_token_ids\", \"strategy\", \"exit_layer\", \"num_speculations\" (a number or \"auto\"),\n"
                   "\"draft_source\", \"draft_vocab\", \"ignore_eos\";\n"
                   "the generation flags below are the defaults for fields a line leaves out.\n"
                   "Output, one line per id in completion order: {\"id\", \"text\", \"token_ids\",\n"
                   "\"finish_reason\", \"stats\"} or {\"id\", \"error\": {\"code\", \"message\"}}.\n"
                   "A line may give \"messages\" ([{\"role\", \"content\"}, ...]) instead of \"prompt\": the\n"
                   "conversation goes through the model's chat template (the daemon's Chat).\n"
                   "Resumable: an existing OUT is kept (a torn last line is cut), ids already in it are\n"
                   "skipped; rerun the same command after a crash or Ctrl-C. Lines without a usable id\n"
                   "and duplicate ids are reported on stderr with their line number.\n"
                   "Exit status: 0 every line succeeded, 1 a line failed or the job stopped early.\n\n"
                   "      --input FILE           JSONL prompts (\"-\" = stdin)\n"
                   "      --output FILE          JSONL results (appended to; created if missing)\n"
                   "      --concurrency C        requests in flight (default 4)\n"
                   "      --no-token-ids         leave \"token_ids\" out of the results\n"
                   "      --progress MODE        bar, lines or auto (default: bar on a terminal)\n"
                   "      --progress-every S     seconds between progress lines (default 5)\n\n%s\n%s",
                generation_help, connection_help);
        break;
    case CMD_TOKENIZE:
        fprintf(f, "usage: layerskip tokenize [TEXT | -] [options]\n\n"
                   "Prints the token ids of TEXT (\"-\" or missing: stdin), then one line per token:\n"
                   "id and piece (as a JSON string).\n\n"
                   "      --add-bos true|false   prepend BOS (default: the model's choice)\n"
                   "      --parse-special [true|false]  match special tokens such as <|im_start|>\n"
                   "      --json [true|false]    print {\"ids\": [...], \"pieces\": [...]}\n\n%s",
                connection_help);
        break;
    case CMD_DETOKENIZE:
        fprintf(f, "usage: layerskip detokenize ID... [options]\n\n"
                   "Prints the text of the token ids (separate arguments, or commas).\n\n"
                   "      --render-special [true|false]  include special tokens' text\n"
                   "      --json [true|false]    print {\"text\": ...}\n\n%s",
                connection_help);
        break;
    case CMD_INFO:
        fprintf(f, "usage: layerskip info [options]\n\n"
                   "Prints the served model, the daemon's defaults and ranges, and the pipeline stages.\n\n"
                   "      --json [true|false]    print the ModelInfo message as JSON\n\n%s",
                connection_help);
        break;
    case CMD_HEALTH:
        fprintf(f, "usage: layerskip health [options]\n\n"
                   "Prints SERVING, NOT_SERVING, UNKNOWN or SERVICE_UNKNOWN (grpc.health.v1);\n"
                   "exit status 0 only when SERVING.\n\n"
                   "      --service NAME         the service to check (default \"\": the whole server)\n\n%s",
                connection_help);
        break;
    }
}

/* Everything the flags say. Only main owns it. */
typedef struct cli {
    command cmd;
    /* connection */
    const char *server, *tls_ca, *tls_server_name, *auth_token_file;
    bool tls;
    double timeout_s;
    bool has_timeout;
    /* local mode */
    lsc_local_opts local;
    double startup_timeout_s;
    /* generation */
    lsc_gen_params gen;
    char **stop_words;
    size_t n_stop_words;
    int32_t *stop_ids;
    size_t n_stop_ids;
    /* output */
    bool json, quiet;
    /* chat */
    const char *system;
    /* batch */
    const char *input, *output;
    int concurrency;
    bool no_token_ids;
    int progress;
    double progress_every_s;
    /* tokenize / detokenize / health */
    bool has_add_bos, add_bos, parse_special, render_special;
    const char *service;
    /* positional arguments */
    char **args;
    int n_args;
    int32_t *ids; /* detokenize */
    size_t n_ids;
} cli;

enum {
    O_SERVER = 256, O_TLS, O_TLS_CA, O_TLS_NAME, O_AUTH_FILE, O_TIMEOUT, O_MODEL, O_DAEMON_BIN, O_THREADS, O_CTX,
    O_MAX_SESSIONS, O_STARTUP_TIMEOUT, O_MAX_STEPS, O_STRATEGY, O_EXIT_LAYER, O_NUM_SPEC, O_SAMPLE, O_TEMP, O_TOPK,
    O_TOPP, O_MINP, O_REP, O_STOP_WORDS, O_STOP_IDS, O_SEED, O_IGNORE_EOS, O_JSON, O_INPUT, O_OUTPUT, O_CONCURRENCY,
    O_NO_TOKEN_IDS, O_PROGRESS, O_PROGRESS_EVERY, O_ADD_BOS, O_PARSE_SPECIAL, O_RENDER_SPECIAL, O_SERVICE,
    O_DRAFT_SOURCE, O_DRAFT_VOCAB, O_DRAFT_ADAPTER, O_SYSTEM,
};

/* Which commands accept each option (long options indexed by val). */
static command option_scope(int val) {
    switch (val) {
    case O_MAX_STEPS: case O_STRATEGY: case O_EXIT_LAYER: case O_NUM_SPEC: case O_SAMPLE: case O_TEMP: case O_TOPK:
    case O_TOPP: case O_MINP: case O_REP: case O_STOP_WORDS: case O_STOP_IDS: case O_SEED: case O_IGNORE_EOS:
    case O_DRAFT_SOURCE: case O_DRAFT_VOCAB:
        return CMD_GEN;
    case 'q': return CMD_GENERATE | CMD_CHAT;
    case O_JSON: return CMD_GENERATE | CMD_TOKENIZE | CMD_DETOKENIZE | CMD_INFO | CMD_CHAT;
    case O_SYSTEM: return CMD_CHAT;
    case O_INPUT: case O_OUTPUT: case O_CONCURRENCY: case O_NO_TOKEN_IDS: case O_PROGRESS: case O_PROGRESS_EVERY:
        return CMD_BATCH;
    case O_ADD_BOS: case O_PARSE_SPECIAL: return CMD_TOKENIZE;
    case O_RENDER_SPECIAL: return CMD_DETOKENIZE;
    case O_SERVICE: return CMD_HEALTH;
    default: return CMD_ALL;
    }
}

static const struct option long_options[] = {
    {"server", required_argument, 0, O_SERVER},
    {"tls", no_argument, 0, O_TLS},
    {"tls-ca", required_argument, 0, O_TLS_CA},
    {"tls-server-name", required_argument, 0, O_TLS_NAME},
    {"auth-token-file", required_argument, 0, O_AUTH_FILE},
    {"timeout", required_argument, 0, O_TIMEOUT},
    {"model", required_argument, 0, O_MODEL},
    {"daemon-bin", required_argument, 0, O_DAEMON_BIN},
    {"threads", required_argument, 0, O_THREADS},
    {"ctx", required_argument, 0, O_CTX},
    {"max-sessions", required_argument, 0, O_MAX_SESSIONS},
    {"startup-timeout", required_argument, 0, O_STARTUP_TIMEOUT},
    {"max-steps", required_argument, 0, O_MAX_STEPS},
    {"max-tokens", required_argument, 0, O_MAX_STEPS},
    {"generation-strategy", required_argument, 0, O_STRATEGY},
    {"strategy", required_argument, 0, O_STRATEGY},
    {"exit-layer", required_argument, 0, O_EXIT_LAYER},
    {"num-speculations", required_argument, 0, O_NUM_SPEC},
    {"draft-source", required_argument, 0, O_DRAFT_SOURCE},
    {"draft-vocab", required_argument, 0, O_DRAFT_VOCAB},
    {"draft-adapter", required_argument, 0, O_DRAFT_ADAPTER},
    {"sample", no_argument, 0, O_SAMPLE},
    {"temperature", required_argument, 0, O_TEMP},
    {"top-k", required_argument, 0, O_TOPK},
    {"top-p", required_argument, 0, O_TOPP},
    {"min-p", required_argument, 0, O_MINP},
    {"repetition-penalty", required_argument, 0, O_REP},
    {"stop-words", required_argument, 0, O_STOP_WORDS},
    {"stop-token-ids", required_argument, 0, O_STOP_IDS},
    {"seed", required_argument, 0, O_SEED},
    {"ignore-eos", no_argument, 0, O_IGNORE_EOS},
    {"json", no_argument, 0, O_JSON},
    {"system", required_argument, 0, O_SYSTEM},
    {"quiet", no_argument, 0, 'q'},
    {"input", required_argument, 0, O_INPUT},
    {"output", required_argument, 0, O_OUTPUT},
    {"concurrency", required_argument, 0, O_CONCURRENCY},
    {"no-token-ids", no_argument, 0, O_NO_TOKEN_IDS},
    {"progress", required_argument, 0, O_PROGRESS},
    {"progress-every", required_argument, 0, O_PROGRESS_EVERY},
    {"add-bos", required_argument, 0, O_ADD_BOS},
    {"parse-special", no_argument, 0, O_PARSE_SPECIAL},
    {"render-special", no_argument, 0, O_RENDER_SPECIAL},
    {"service", required_argument, 0, O_SERVICE},
    {"help", no_argument, 0, 'h'},
    {0, 0, 0, 0},
};

static const char *option_name(int val) {
    for (const struct option *o = long_options; o->name; o++)
        if (o->val == val) return o->name;
    return "?";
}

__attribute__((format(printf, 1, 2))) static int usage_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "layerskip: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (see layerskip --help or layerskip COMMAND --help)\n");
    va_end(ap);
    return EXIT_USAGE;
}

/* "--flag [true|false]": the flag alone is true; a following true/false
 * word is taken as its value. */
static bool optional_bool(int argc, char **argv) {
    /* only these two words: a prompt such as "yes" must stay a prompt */
    if (optind < argc && (!strcmp(argv[optind], "true") || !strcmp(argv[optind], "false")))
        return !strcmp(argv[optind++], "true");
    return true;
}

static bool parse_int_flag(const char *s, long long lo, long long hi, int *out) {
    long long v;
    if (!lsc_parse_int(s, lo, hi, &v)) return false;
    *out = (int)v;
    return true;
}

/* Comma-separated non-negative ints appended to *ids. */
static bool parse_id_list(const char *s, int32_t **ids, size_t *n) {
    char *copy = strdup(s);
    if (!copy) return false;
    bool ok = true;
    char *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        while (isspace((unsigned char)*tok)) tok++;
        long long v;
        int32_t *grown = realloc(*ids, (*n + 1) * sizeof **ids);
        if (!grown || !lsc_parse_int(tok, 0, INT32_MAX, &v)) {
            if (grown) *ids = grown;
            ok = false;
            break;
        }
        *ids = grown;
        (*ids)[(*n)++] = (int32_t)v;
    }
    free(copy);
    return ok && *n > 0;
}

/* Returns -1 to go on, else the exit code (help: 0; bad flags: 2). */
static int parse_args(int argc, char **argv, cli *c) {
    if (argc < 2) {
        usage_main(stderr);
        return EXIT_USAGE;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        if (argc > 2)
            for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
                if (!strcmp(argv[2], commands[i].name)) {
                    usage_command(commands[i].cmd, stdout);
                    return 0;
                }
        usage_main(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) c->cmd = commands[i].cmd;
    if (!c->cmd) {
        if (argv[1][0] == '-')
            return usage_error("the command comes first: layerskip COMMAND [options] (got option '%s')", argv[1]);
        return usage_error("unknown command '%s' (commands: generate, batch, tokenize, detokenize, info, health)",
                           argv[1]);
    }
    c->concurrency = 4;
    c->progress = -1;
    c->progress_every_s = 5;
    c->startup_timeout_s = 120;
    argc--;
    argv++;
    optind = 1;
    opterr = 0;
    int opt, idx;
    while ((opt = getopt_long(argc, argv, "hq", long_options, &idx)) != -1) {
        if (opt == '?') {
            if (optopt)
                return usage_error("option '%s' needs a value", argv[optind - 1]);
            return usage_error("unknown option '%s' for '%s'", argv[optind - 1], argv[0]);
        }
        if (opt == 'h') {
            usage_command(c->cmd, stdout);
            return 0;
        }
        if (!(option_scope(opt) & c->cmd))
            return usage_error("--%s does not apply to '%s'", opt == 'q' ? "quiet" : option_name(opt),
                               argv[0]);
        double d;
        switch (opt) {
        case O_SERVER: c->server = optarg; break;
        case O_TLS: c->tls = optional_bool(argc, argv); break;
        case O_TLS_CA: c->tls_ca = optarg; break;
        case O_TLS_NAME: c->tls_server_name = optarg; break;
        case O_AUTH_FILE: c->auth_token_file = optarg; break;
        case O_TIMEOUT:
            if (!lsc_parse_double(optarg, &c->timeout_s) || c->timeout_s <= 0 || c->timeout_s > 1e7)
                return usage_error("--timeout needs a number of seconds > 0, got '%s'", optarg);
            c->has_timeout = true;
            break;
        case O_MODEL: c->local.model = optarg; break;
        case O_DAEMON_BIN: c->local.daemon_bin = optarg; break;
        case O_THREADS:
            if (!parse_int_flag(optarg, 1, 1024, &c->local.threads))
                return usage_error("--threads needs an integer in [1, 1024], got '%s'", optarg);
            break;
        case O_CTX:
            if (!parse_int_flag(optarg, 1, 1 << 24, &c->local.ctx))
                return usage_error("--ctx needs an integer in [1, 16777216], got '%s'", optarg);
            break;
        case O_MAX_SESSIONS:
            if (!parse_int_flag(optarg, 1, 4096, &c->local.max_sessions))
                return usage_error("--max-sessions needs an integer in [1, 4096], got '%s'", optarg);
            break;
        case O_STARTUP_TIMEOUT:
            if (!lsc_parse_double(optarg, &c->startup_timeout_s) || c->startup_timeout_s <= 0)
                return usage_error("--startup-timeout needs a number of seconds > 0, got '%s'", optarg);
            break;
        case O_MAX_STEPS:
            if (!parse_int_flag(optarg, 1, INT32_MAX, &c->gen.max_tokens))
                return usage_error("--%s needs an integer >= 1, got '%s'", long_options[idx].name, optarg);
            break;
        case O_STRATEGY: c->gen.strategy = optarg; break;
        case O_EXIT_LAYER:
            if (!parse_int_flag(optarg, 1, INT32_MAX, &c->gen.exit_layer))
                return usage_error("--exit-layer needs an integer >= 1, got '%s'", optarg);
            break;
        case O_NUM_SPEC:
            if (!lsc_num_speculations_parse(optarg, &c->gen.num_speculations))
                return usage_error("--num-speculations needs an integer >= 1 or auto, got '%s'", optarg);
            break;
        case O_DRAFT_SOURCE: c->gen.draft_source = optarg; break;
        case O_DRAFT_VOCAB:
            if (!parse_int_flag(optarg, 0, INT32_MAX, &c->gen.draft_vocab))
                return usage_error("--draft-vocab needs an integer >= 0 (0 = the full head), got '%s'", optarg);
            c->gen.has_draft_vocab = true;
            break;
        case O_DRAFT_ADAPTER: c->local.draft_adapter = optarg; break;
        case O_SAMPLE: c->gen.sample = optional_bool(argc, argv); break;
        case O_TEMP:
            if (!lsc_parse_double(optarg, &d) || d < 0)
                return usage_error("--temperature needs a number >= 0, got '%s'", optarg);
            c->gen.temperature = d;
            c->gen.has_temperature = true;
            break;
        case O_TOPK:
            if (!parse_int_flag(optarg, 0, INT32_MAX, &c->gen.top_k))
                return usage_error("--top-k needs an integer >= 0, got '%s'", optarg);
            c->gen.has_top_k = true;
            break;
        case O_TOPP:
            if (!lsc_parse_double(optarg, &d) || d <= 0 || d > 1)
                return usage_error("--top-p needs a number in (0, 1], got '%s'", optarg);
            c->gen.top_p = d;
            c->gen.has_top_p = true;
            break;
        case O_MINP:
            if (!lsc_parse_double(optarg, &d) || d < 0 || d >= 1)
                return usage_error("--min-p needs a number in [0, 1), got '%s'", optarg);
            c->gen.min_p = d;
            break;
        case O_REP:
            if (!lsc_parse_double(optarg, &d) || d <= 0)
                return usage_error("--repetition-penalty needs a number > 0, got '%s'", optarg);
            c->gen.repetition_penalty = d;
            break;
        case O_STOP_WORDS: {
            if (!*optarg) return usage_error("--stop-words needs a non-empty word");
            char **grown = realloc(c->stop_words, (c->n_stop_words + 1) * sizeof *grown);
            if (!grown) return usage_error("out of memory");
            c->stop_words = grown;
            c->stop_words[c->n_stop_words++] = optarg;
            break;
        }
        case O_STOP_IDS:
            if (!parse_id_list(optarg, &c->stop_ids, &c->n_stop_ids))
                return usage_error("--stop-token-ids needs token ids >= 0 separated by commas, got '%s'", optarg);
            break;
        case O_SEED: {
            char *end = NULL;
            errno = 0;
            unsigned long long s = strtoull(optarg, &end, 10);
            if (errno || end == optarg || *end || optarg[0] == '-')
                return usage_error("--seed needs an integer in [0, 2^64), got '%s'", optarg);
            c->gen.seed = s;
            c->gen.has_seed = true;
            break;
        }
        case O_IGNORE_EOS: c->gen.ignore_eos = optional_bool(argc, argv); break;
        case O_JSON: c->json = optional_bool(argc, argv); break;
        case 'q': c->quiet = true; break;
        case O_SYSTEM: c->system = optarg; break;
        case O_INPUT: c->input = optarg; break;
        case O_OUTPUT: c->output = optarg; break;
        case O_CONCURRENCY:
            if (!parse_int_flag(optarg, 1, 1024, &c->concurrency))
                return usage_error("--concurrency needs an integer in [1, 1024], got '%s'", optarg);
            break;
        case O_NO_TOKEN_IDS: c->no_token_ids = true; break;
        case O_PROGRESS:
            if (!strcmp(optarg, "bar")) c->progress = 1;
            else if (!strcmp(optarg, "lines")) c->progress = 0;
            else if (!strcmp(optarg, "auto")) c->progress = -1;
            else return usage_error("--progress needs bar, lines or auto, got '%s'", optarg);
            break;
        case O_PROGRESS_EVERY:
            if (!lsc_parse_double(optarg, &c->progress_every_s) || c->progress_every_s <= 0)
                return usage_error("--progress-every needs a number of seconds > 0, got '%s'", optarg);
            break;
        case O_ADD_BOS:
            if (!lsc_parse_bool(optarg, &c->add_bos))
                return usage_error("--add-bos needs true or false, got '%s'", optarg);
            c->has_add_bos = true;
            break;
        case O_PARSE_SPECIAL: c->parse_special = optional_bool(argc, argv); break;
        case O_RENDER_SPECIAL: c->render_special = optional_bool(argc, argv); break;
        case O_SERVICE: c->service = optarg; break;
        }
    }
    c->args = argv + optind;
    c->n_args = argc - optind;
    c->gen.stop = c->stop_words;
    c->gen.n_stop = c->n_stop_words;
    c->gen.stop_token_ids = c->stop_ids;
    c->gen.n_stop_token_ids = c->n_stop_ids;

    if (c->local.model && c->server)
        return usage_error("--model (local mode) and --server exclude each other: give one");
    if (!c->local.model &&
        (c->local.daemon_bin || c->local.threads || c->local.ctx || c->local.max_sessions || c->local.draft_adapter))
        return usage_error("--daemon-bin, --threads, --ctx, --max-sessions and --draft-adapter configure local mode: "
                           "add --model PATH");
    if (c->gen.sample && c->gen.has_temperature && c->gen.temperature == 0)
        return usage_error("--sample with --temperature 0 is contradictory: drop one");
    switch (c->cmd) {
    case CMD_GENERATE:
    case CMD_TOKENIZE:
        if (c->n_args > 1)
            return usage_error("'%s' takes one text argument, got %d (quote the text, or use - for stdin)", argv[0],
                               c->n_args);
        break;
    case CMD_BATCH:
        if (c->n_args > 0) return usage_error("unexpected argument '%s' for batch (give --input FILE)", c->args[0]);
        if (!c->input) return usage_error("batch needs --input FILE (JSONL prompts)");
        if (!c->output) return usage_error("batch needs --output FILE (JSONL results; reruns resume it)");
        break;
    case CMD_DETOKENIZE:
        if (c->n_args == 0) return usage_error("detokenize needs token ids (e.g. layerskip detokenize 1 2 3)");
        for (int i = 0; i < c->n_args; i++)
            if (!parse_id_list(c->args[i], &c->ids, &c->n_ids))
                return usage_error("detokenize needs token ids >= 0, got '%s'", c->args[i]);
        break;
    case CMD_INFO:
    case CMD_HEALTH:
    case CMD_CHAT:
        if (c->n_args > 0)
            return usage_error("unexpected argument '%s' for %s%s", c->args[0], argv[0],
                               c->cmd == CMD_CHAT ? " (type your messages on stdin)" : "");
        break;
    }
    return -1;
}

/* ---- signals ---- */

typedef struct signal_ctx {
    sigset_t set;
    atomic_int interrupted;
    atomic_int daemon_pid; /* local mode: killed outright on a second signal */
} signal_ctx;

static void *signal_thread(void *arg) {
    signal_ctx *s = arg;
    for (;;) {
        int sig;
        if (sigwait(&s->set, &sig) != 0) continue;
        if (atomic_fetch_add(&s->interrupted, 1) > 0) {
            /* second signal: the orderly path is stuck; do not leave the daemon behind */
            int pid = atomic_load(&s->daemon_pid);
            if (pid > 0) kill(pid, SIGKILL);
            static const char msg[] = "\nlayerskip: interrupted twice, exiting now\n";
            if (write(2, msg, sizeof msg - 1) < 0) _exit(EXIT_INTERRUPTED);
            _exit(EXIT_INTERRUPTED);
        }
    }
    return NULL;
}

/* gRPC logs transport errors to stderr by itself; the client reports each
 * failure once, with a fix, so gRPC's lines are shown only on request. */
static void grpc_log(gpr_log_func_args *args) {
    const char *want = getenv("LAYERSKIP_GRPC_LOG");
    if (want && *want && strcmp(want, "0"))
        fprintf(stderr, "grpc %s %s:%d: %s\n", gpr_log_severity_string(args->severity), args->file, args->line,
                args->message);
}

/* ---- input ---- */

static char *read_stdin_all(void) {
    if (isatty(0)) fprintf(stderr, "layerskip: reading the text from stdin (end it with Ctrl-D)\n");
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    if (!buf) return NULL;
    for (;;) {
        if (cap - n < 2) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) { free(buf); return NULL; }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, stdin);
        n += got;
        if (got == 0) break;
    }
    /* `echo PROMPT |` adds a newline the user did not mean as part of the text */
    if (n > 0 && buf[n - 1] == '\n') n--;
    if (n > 0 && buf[n - 1] == '\r') n--;
    buf[n] = '\0';
    return buf;
}

static char *read_token_file(const char *path, lsc_err *err) {
    char *tok = NULL;
    size_t len = 0;
    if (lsc_read_file(path, &tok, &len, err) != LSC_OK) return NULL;
    while (len > 0 && isspace((unsigned char)tok[len - 1])) tok[--len] = '\0';
    return tok;
}

static bool token_is_printable(const char *t) {
    for (; *t; t++)
        if ((unsigned char)*t < 0x20 || (unsigned char)*t > 0x7e) return false;
    return true;
}

/* ---- commands ---- */

static void print_rpc_error(const lsc_conn *conn, const lsc_rpc_status *st) {
    char msg[1400];
    lsc_rpc_status_describe(conn, st, msg, sizeof msg);
    fprintf(stderr, "layerskip: %s\n", msg);
}

static int rpc_exit(const lsc_rpc_status *st) { return st->interrupted ? EXIT_INTERRUPTED : 1; }

static void print_json(cJSON *o) {
    char *s = o ? cJSON_PrintUnformatted(o) : NULL;
    if (s) printf("%s\n", s);
    cJSON_free(s);
    cJSON_Delete(o);
}

typedef struct stream_state {
    double t0, t_first;
    bool any_text, ends_newline, write_failed;
    Layerskip__V1__FinishReason reason;
    Layerskip__V1__Stats *stats; /* the last chunk's (a copy: the chunk is freed after on_chunk) */
} stream_state;

static bool on_chunk(const ProtobufCMessage *m, void *user) {
    stream_state *s = user;
    const Layerskip__V1__GenerateChunk *ch = (const Layerskip__V1__GenerateChunk *)m;
    if (ch->text && *ch->text) {
        if (!s->any_text) s->t_first = lsc_now();
        size_t n = strlen(ch->text);
        if (fwrite(ch->text, 1, n, stdout) != n || fflush(stdout) != 0) {
            s->write_failed = true; /* e.g. `| head` closed the pipe: stop generating */
            return false;
        }
        s->any_text = true;
        s->ends_newline = ch->text[n - 1] == '\n';
    }
    if (ch->finish_reason != LAYERSKIP__V1__FINISH_REASON__FINISH_REASON_UNSPECIFIED) s->reason = ch->finish_reason;
    if (ch->stats) {
        if (s->stats) layerskip__v1__stats__free_unpacked(s->stats, NULL);
        s->stats = lsc_stats_copy(ch->stats);
    }
    return true;
}

static int cmd_generate(lsc_conn *conn, const cli *c, double timeout) {
    char *prompt = NULL;
    if (c->n_args == 0 || !strcmp(c->args[0], "-")) {
        if (!(prompt = read_stdin_all())) {
            fprintf(stderr, "layerskip: out of memory reading the prompt from stdin\n");
            return 1;
        }
    } else if (!(prompt = strdup(c->args[0]))) {
        return 1;
    }
    Layerskip__V1__GenerateRequest req;
    Layerskip__V1__SamplingParams sp;
    lsc_gen_request_fill(&c->gen, prompt, &req, &sp);
    lsc_rpc_status st;
    int rc = 0;
    if (c->json) {
        ProtobufCMessage *resp = NULL;
        if (lsc_call_unary(conn, "/layerskip.v1.LayerSkip/Generate", &req.base, &layerskip__v1__generate_response__descriptor,
                           &resp, timeout, &st) != GRPC_STATUS_OK) {
            print_rpc_error(conn, &st);
            rc = rpc_exit(&st);
        } else {
            const Layerskip__V1__GenerateResponse *r = (const Layerskip__V1__GenerateResponse *)resp;
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "request_id", r->request_id ? r->request_id : "");
            cJSON_AddStringToObject(o, "text", r->text ? r->text : "");
            cJSON *a = cJSON_AddArrayToObject(o, "token_ids");
            for (size_t i = 0; a && i < r->n_token_ids; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(r->token_ids[i]));
            cJSON_AddStringToObject(o, "finish_reason", lsc_finish_reason_name(r->finish_reason));
            cJSON_AddItemToObject(o, "stats", lsc_stats_to_json(r->stats));
            print_json(o);
            protobuf_c_message_free_unpacked(resp, NULL);
        }
        free(prompt);
        return rc;
    }
    stream_state s;
    memset(&s, 0, sizeof s);
    s.t0 = lsc_now();
    lsc_call_stream(conn, "/layerskip.v1.LayerSkip/GenerateStream", &req.base, &layerskip__v1__generate_chunk__descriptor,
                    on_chunk, &s, timeout, &st);
    double client_ms = (lsc_now() - s.t0) * 1000.0;
    if (s.any_text && !s.ends_newline && isatty(1)) putchar('\n');
    fflush(stdout);
    if (s.write_failed) {
        rc = 1;
    } else if (st.code != GRPC_STATUS_OK) {
        if (s.any_text) fputc('\n', stderr);
        print_rpc_error(conn, &st);
        rc = rpc_exit(&st);
    } else if (!c->quiet) {
        lsc_stats_print(stderr, s.stats, s.reason, client_ms);
    }
    if (s.stats) layerskip__v1__stats__free_unpacked(s.stats, NULL);
    free(prompt);
    return rc;
}

/* ---- chat ---- */

typedef struct chat_hist {
    Layerskip__V1__ChatMessage *msgs;
    Layerskip__V1__ChatMessage **ptrs;
    size_t n, cap;
} chat_hist;

static bool hist_push(chat_hist *h, const char *role, const char *content) {
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 16;
        Layerskip__V1__ChatMessage *m = realloc(h->msgs, cap * sizeof *m);
        if (!m) return false;
        h->msgs = m;
        Layerskip__V1__ChatMessage **p = realloc(h->ptrs, cap * sizeof *p);
        if (!p) return false;
        h->ptrs = p;
        h->cap = cap;
    }
    char *r = strdup(role), *t = strdup(content);
    if (!r || !t) {
        free(r);
        free(t);
        return false;
    }
    Layerskip__V1__ChatMessage *m = &h->msgs[h->n];
    layerskip__v1__chat_message__init(m);
    m->role = r;
    m->content = t;
    h->n++;
    for (size_t i = 0; i < h->n; i++) h->ptrs[i] = &h->msgs[i]; /* msgs may have moved */
    return true;
}

static void hist_truncate(chat_hist *h, size_t n) {
    while (h->n > n) {
        h->n--;
        free(h->msgs[h->n].role);
        free(h->msgs[h->n].content);
    }
}

typedef struct chat_turn {
    stream_state s;
    char *text;
    size_t len, cap;
    bool oom;
} chat_turn;

static bool on_chat_chunk(const ProtobufCMessage *m, void *user) {
    chat_turn *t = user;
    const Layerskip__V1__GenerateChunk *ch = (const Layerskip__V1__GenerateChunk *)m;
    size_t n = ch->text ? strlen(ch->text) : 0;
    if (t->len + n + 1 > t->cap) {
        size_t cap = (t->len + n + 1) * 2;
        char *q = realloc(t->text, cap);
        if (!q) {
            t->oom = true;
            return false;
        }
        t->text = q;
        t->cap = cap;
    }
    if (n) memcpy(t->text + t->len, ch->text, n);
    t->len += n;
    t->text[t->len] = 0;
    return on_chunk(m, &t->s);
}

static int cmd_chat(lsc_conn *conn, const cli *c, double timeout, const atomic_int *interrupted) {
    const bool tty = isatty(0) && !c->json;
    bool stats = false;
    chat_hist h = {0};
    size_t base = 0;
    int rc = 0;
    if (c->system) {
        if (!hist_push(&h, "system", c->system)) return 1;
        base = 1;
    }
    if (tty)
        fprintf(stderr, "layerskip chat with %s: type a message; /reset, /stats, /exit (or Ctrl-D)\n",
                lsc_conn_target(conn));
    char *line = NULL;
    size_t line_cap = 0;
    for (;;) {
        if (tty) fputs("> ", stderr);
        ssize_t n = getline(&line, &line_cap, stdin);
        if (n < 0 || (interrupted && atomic_load(interrupted))) break;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
        if (n == 0) continue;
        if (!strcmp(line, "/exit") || !strcmp(line, "/quit")) break;
        if (!strcmp(line, "/reset")) {
            hist_truncate(&h, base);
            if (tty) fprintf(stderr, "(conversation cleared)\n");
            continue;
        }
        if (!strcmp(line, "/stats")) {
            stats = !stats && !c->quiet;
            if (tty) fprintf(stderr, "(statistics %s)\n", stats ? "on" : "off");
            continue;
        }
        if (line[0] == '/' && line[1] != '/' && line[1] != ' ' && line[1] != 0) {
            fprintf(stderr, "layerskip: unknown command %s (/reset, /stats, /exit; start a message with // "
                    "to send a slash)\n", line);
            continue;
        }
        if (!hist_push(&h, "user", line[0] == '/' && line[1] == '/' ? line + 1 : line)) {
            rc = 1;
            break;
        }
        Layerskip__V1__GenerateRequest opts;
        Layerskip__V1__SamplingParams sp;
        lsc_gen_request_fill(&c->gen, NULL, &opts, &sp);
        opts.input_case = LAYERSKIP__V1__GENERATE_REQUEST__INPUT__NOT_SET;
        Layerskip__V1__ChatRequest req = LAYERSKIP__V1__CHAT_REQUEST__INIT;
        req.n_messages = h.n;
        req.messages = h.ptrs;
        req.options = &opts;
        lsc_rpc_status st;
        chat_turn t;
        memset(&t, 0, sizeof t);
        t.s.t0 = lsc_now();
        if (c->json) {
            ProtobufCMessage *resp = NULL;
            if (lsc_call_unary(conn, "/layerskip.v1.LayerSkip/Chat", &req.base,
                               &layerskip__v1__generate_response__descriptor, &resp, timeout, &st) == GRPC_STATUS_OK) {
                const Layerskip__V1__GenerateResponse *r = (const Layerskip__V1__GenerateResponse *)resp;
                cJSON *o = cJSON_CreateObject();
                cJSON_AddStringToObject(o, "request_id", r->request_id ? r->request_id : "");
                cJSON_AddStringToObject(o, "text", r->text ? r->text : "");
                cJSON *a = cJSON_AddArrayToObject(o, "token_ids");
                for (size_t i = 0; a && i < r->n_token_ids; i++)
                    cJSON_AddItemToArray(a, cJSON_CreateNumber(r->token_ids[i]));
                cJSON_AddStringToObject(o, "finish_reason", lsc_finish_reason_name(r->finish_reason));
                cJSON_AddItemToObject(o, "stats", lsc_stats_to_json(r->stats));
                print_json(o);
                fflush(stdout);
                t.text = strdup(r->text ? r->text : "");
                protobuf_c_message_free_unpacked(resp, NULL);
            }
        } else {
            lsc_call_stream(conn, "/layerskip.v1.LayerSkip/ChatStream", &req.base,
                            &layerskip__v1__generate_chunk__descriptor, on_chat_chunk, &t, timeout, &st);
            if (t.s.any_text && !t.s.ends_newline) putchar('\n');
            fflush(stdout);
        }
        if (t.s.write_failed || t.oom || (st.code == GRPC_STATUS_OK && !t.text && c->json)) {
            rc = 1;
        } else if (st.code != GRPC_STATUS_OK) {
            print_rpc_error(conn, &st);
            rc = rpc_exit(&st);
        } else if (!hist_push(&h, "assistant", t.text ? t.text : "")) {
            rc = 1;
        } else if (stats && !c->json) {
            lsc_stats_print(stderr, t.s.stats, t.s.reason, (lsc_now() - t.s.t0) * 1000.0);
        }
        if (t.s.stats) layerskip__v1__stats__free_unpacked(t.s.stats, NULL);
        free(t.text);
        if (rc != 0) break;
    }
    free(line);
    hist_truncate(&h, 0);
    free(h.msgs);
    free(h.ptrs);
    if (interrupted && atomic_load(interrupted)) return EXIT_INTERRUPTED;
    return rc;
}

static int cmd_tokenize(lsc_conn *conn, const cli *c, double timeout) {
    char *text = NULL;
    if (c->n_args == 0 || !strcmp(c->args[0], "-")) text = read_stdin_all();
    else text = strdup(c->args[0]);
    if (!text) return 1;
    Layerskip__V1__TokenizeRequest req = LAYERSKIP__V1__TOKENIZE_REQUEST__INIT;
    req.text = text;
    req.parse_special = c->parse_special;
    if (c->has_add_bos) {
        req.add_bos_option_case = LAYERSKIP__V1__TOKENIZE_REQUEST__ADD_BOS_OPTION_ADD_BOS;
        req.add_bos = c->add_bos;
    }
    ProtobufCMessage *resp = NULL;
    lsc_rpc_status st;
    int rc = 0;
    if (lsc_call_unary(conn, "/layerskip.v1.LayerSkip/Tokenize", &req.base, &layerskip__v1__tokenize_response__descriptor,
                       &resp, timeout, &st) != GRPC_STATUS_OK) {
        print_rpc_error(conn, &st);
        rc = rpc_exit(&st);
    } else if (c->json) {
        print_json(lsc_message_to_json(resp));
    } else {
        const Layerskip__V1__TokenizeResponse *r = (const Layerskip__V1__TokenizeResponse *)resp;
        printf("%zu tokens: [", r->n_ids);
        for (size_t i = 0; i < r->n_ids; i++) printf("%s%d", i ? ", " : "", r->ids[i]);
        printf("]\n");
        for (size_t i = 0; i < r->n_ids; i++) {
            cJSON *p = cJSON_CreateString(i < r->n_pieces && r->pieces[i] ? r->pieces[i] : "");
            char *q = p ? cJSON_PrintUnformatted(p) : NULL;
            printf("%8d  %s\n", r->ids[i], q ? q : "?");
            cJSON_free(q);
            cJSON_Delete(p);
        }
    }
    if (resp) protobuf_c_message_free_unpacked(resp, NULL);
    free(text);
    return rc;
}

static int cmd_detokenize(lsc_conn *conn, const cli *c, double timeout) {
    Layerskip__V1__DetokenizeRequest req = LAYERSKIP__V1__DETOKENIZE_REQUEST__INIT;
    req.n_ids = c->n_ids;
    req.ids = c->ids;
    req.render_special = c->render_special;
    ProtobufCMessage *resp = NULL;
    lsc_rpc_status st;
    if (lsc_call_unary(conn, "/layerskip.v1.LayerSkip/Detokenize", &req.base,
                       &layerskip__v1__detokenize_response__descriptor, &resp, timeout, &st) != GRPC_STATUS_OK) {
        print_rpc_error(conn, &st);
        return rpc_exit(&st);
    }
    if (c->json) print_json(lsc_message_to_json(resp));
    else printf("%s\n", ((const Layerskip__V1__DetokenizeResponse *)resp)->text);
    protobuf_c_message_free_unpacked(resp, NULL);
    return 0;
}

static void print_range(const char *name, const Layerskip__V1__IntRange *r) {
    if (r) printf("%s [%d, %d]", name, r->min, r->max);
    else printf("%s ?", name);
}

static int cmd_info(lsc_conn *conn, const cli *c, double timeout) {
    Layerskip__V1__GetModelInfoRequest req = LAYERSKIP__V1__GET_MODEL_INFO_REQUEST__INIT;
    ProtobufCMessage *resp = NULL;
    lsc_rpc_status st;
    if (lsc_call_unary(conn, "/layerskip.v1.LayerSkip/GetModelInfo", &req.base, &layerskip__v1__model_info__descriptor,
                       &resp, timeout, &st) != GRPC_STATUS_OK) {
        print_rpc_error(conn, &st);
        return rpc_exit(&st);
    }
    if (c->json) {
        print_json(lsc_message_to_json(resp));
        protobuf_c_message_free_unpacked(resp, NULL);
        return 0;
    }
    const Layerskip__V1__ModelInfo *m = (const Layerskip__V1__ModelInfo *)resp;
    printf("model:       %s (%s)\n", m->name, m->architecture);
    printf("path:        %s\n", m->path);
    printf("shape:       %d layers, hidden %d, heads %d (kv %d), ffn %d, vocab %d\n", m->layers, m->hidden_size,
           m->heads, m->kv_heads, m->ffn_size, m->vocab_size);
    printf("context:     %d tokens (trained with %d)\n", m->context, m->train_context);
    printf("tokenizer:   %s (bos %d, eos %d)\n", m->tokenizer, m->bos_id, m->eos_id);
    char k[32];
    if (m->default_num_speculations == LSC_NUM_SPECULATIONS_AUTO)
        snprintf(k, sizeof k, "auto (0..%d)", m->auto_speculations_max);
    else
        snprintf(k, sizeof k, "%d", m->default_num_speculations);
    printf("defaults:    strategy %s, exit layer %d, speculations %s, max tokens %d\n", m->default_strategy,
           m->default_exit_layer, k, m->default_max_tokens);
    printf("drafting:    source %s, draft vocabulary %d", m->default_draft_source, m->default_draft_vocab);
    if (m->draft_adapter && *m->draft_adapter)
        printf("; adapter %s (exit layer %d, frequency table %d tokens)", m->draft_adapter,
               m->draft_adapter_exit_layer, m->draft_vocab_max);
    printf("\ndraft sources:");
    for (size_t i = 0; i < m->n_draft_sources; i++) printf("%s %s", i ? "," : "", m->draft_sources[i]);
    printf("\n");
    printf("strategies: ");
    for (size_t i = 0; i < m->n_strategies; i++) printf("%s %s", i ? "," : "", m->strategies[i]);
    printf("\nranges:      ");
    print_range("exit layer", m->exit_layer_range);
    printf(", ");
    print_range("speculations", m->num_speculations_range);
    printf(", ");
    print_range("max tokens", m->max_tokens_range);
    printf("\nsessions:    %d concurrent, queue %d\n", m->max_sessions, m->max_queue);
    for (size_t i = 0; i < m->n_stages; i++) {
        const Layerskip__V1__Stage *s = m->stages[i];
        printf("stage %-5zu  rank %d: layers [%d, %d)%s%s%s%s%s%s%s\n", i, s->rank, s->first_layer, s->last_layer,
               s->embedding ? ", embedding" : "", s->head ? ", head" : "", s->host && *s->host ? " on " : "",
               s->host ? s->host : "", s->kernels && *s->kernels ? " (kernels " : "",
               s->kernels ? s->kernels : "", s->kernels && *s->kernels ? ")" : "");
    }
    printf("version:     %s\n", m->version);
    protobuf_c_message_free_unpacked(resp, NULL);
    return 0;
}

static const char *serving_name(int s) {
    switch (s) {
    case GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING: return "SERVING";
    case GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING: return "NOT_SERVING";
    case GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN: return "SERVICE_UNKNOWN";
    default: return "UNKNOWN";
    }
}

static int cmd_health(lsc_conn *conn, const cli *c, double timeout) {
    int status = 0;
    lsc_rpc_status st;
    if (lsc_health_check(conn, c->service, timeout, &status, &st) != GRPC_STATUS_OK) {
        if (st.code == GRPC_STATUS_NOT_FOUND) {
            printf("SERVICE_UNKNOWN\n");
            fprintf(stderr, "layerskip: the server does not know service '%s': %s\n", c->service ? c->service : "",
                    st.message);
            return 1;
        }
        print_rpc_error(conn, &st);
        return rpc_exit(&st);
    }
    printf("%s\n", serving_name(status));
    return status == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING ? 0 : 1;
}

static int cmd_batch(lsc_conn *conn, const cli *c, double timeout, const atomic_int *interrupted) {
    lsc_batch_opts o = {
        .input = c->input, .output = c->output, .concurrency = c->concurrency, .defaults = c->gen,
        .timeout_s = timeout, .token_ids = !c->no_token_ids, .progress = c->progress,
        .progress_every_s = c->progress_every_s,
    };
    lsc_batch_summary s;
    lsc_err err = {{0}};
    lsc_status st = lsc_batch_run(conn, &o, interrupted, &s, &err);
    if (st == LSC_ERR_USAGE) {
        fprintf(stderr, "layerskip: %s\n", err.msg);
        return EXIT_USAGE;
    }
    if (s.total > 0 || st == LSC_OK || st == LSC_ERR_RPC || st == LSC_ERR_INTERRUPTED) {
        fprintf(stderr, "batch: %zu lines: %zu succeeded, %zu skipped (already in %s), %zu failed", s.total, s.done,
                s.skipped, c->output, s.failed);
        if (s.invalid_no_id) fprintf(stderr, " (%zu reported above, not written)", s.invalid_no_id);
        fprintf(stderr, "; %lld tokens in %.1f s (%.1f tokens/s)", s.tokens, s.seconds,
                s.seconds > 0 ? (double)s.tokens / s.seconds : 0.0);
        if (s.drafted > 0) fprintf(stderr, "; mean acceptance %.3f", (double)s.accepted / (double)s.drafted);
        fprintf(stderr, "\n");
    }
    if (st == LSC_ERR_INTERRUPTED) {
        fprintf(stderr, "layerskip: batch interrupted; rerun the same command to resume\n");
        return EXIT_INTERRUPTED;
    }
    if (st != LSC_OK) {
        fprintf(stderr, "layerskip: batch: %s\n", err.msg);
        if (st == LSC_ERR_RPC) fprintf(stderr, "layerskip: batch stopped early; rerun the same command to resume\n");
        return 1;
    }
    return s.failed ? 1 : 0;
}

/* Local mode: wait until the private daemon answers SERVING. Each probe
 * uses a fresh channel: a channel that failed while the socket did not
 * exist yet stays in TRANSIENT_FAILURE for seconds after the daemon is up. */
static int wait_serving(const lsc_conn_opts *co, lsc_local *l, double limit_s, const atomic_int *interrupted) {
    double t0 = lsc_now();
    lsc_rpc_status st = {0};
    snprintf(st.message, sizeof st.message, "the socket %s did not appear", l->socket);
    for (;;) {
        lsc_err err;
        if (atomic_load(interrupted)) return EXIT_INTERRUPTED;
        if (lsc_local_exited(l, &err)) {
            fprintf(stderr, "layerskip: local mode: %s\n", err.msg);
            return 1;
        }
        if (access(l->socket, F_OK) == 0) {
            lsc_conn *probe = NULL;
            int status = 0;
            if (lsc_conn_open(co, &probe, &err) != LSC_OK) {
                fprintf(stderr, "layerskip: %s\n", err.msg);
                return 1;
            }
            grpc_status_code code = lsc_health_check(probe, "", 1.0, &status, &st);
            lsc_conn_close(probe);
            if (code == GRPC_STATUS_OK && status == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING) {
                lsc_local_serving(l);
                return -1;
            }
            if (st.interrupted) return EXIT_INTERRUPTED;
        }
        if (lsc_now() - t0 > limit_s) {
            char tail[1500];
            lsc_local_log_tail(l, tail, sizeof tail);
            fprintf(stderr,
                    "layerskip: local mode: layerskipd was not SERVING after %.0f s (last: %s: %s); raise "
                    "--startup-timeout. Its last output:\n%s\n",
                    limit_s, lsc_grpc_code_name(st.code), st.message, tail);
            return 1;
        }
        struct timespec nap = {0, 50 * 1000 * 1000};
        nanosleep(&nap, NULL);
    }
}

int main(int argc, char **argv) {
    cli c;
    memset(&c, 0, sizeof c);
    int rc = parse_args(argc, argv, &c);
    if (rc >= 0) {
        free(c.stop_words);
        free(c.stop_ids);
        free(c.ids);
        return rc;
    }
    rc = 1;

    /* the auth token: a file flag wins over the environment */
    char *token = NULL;
    lsc_err err;
    if (c.auth_token_file) {
        if (!(token = read_token_file(c.auth_token_file, &err))) {
            fprintf(stderr, "layerskip: --auth-token-file: %s\n", err.msg);
            rc = EXIT_USAGE;
            goto out_args;
        }
    } else if (getenv("LAYERSKIP_AUTH_TOKEN") && *getenv("LAYERSKIP_AUTH_TOKEN")) {
        token = strdup(getenv("LAYERSKIP_AUTH_TOKEN"));
    }
    if (token && (!*token || !token_is_printable(token))) {
        fprintf(stderr, "layerskip: the auth token (%s) is empty or has characters a header cannot carry "
                        "(printable ASCII only)\n", c.auth_token_file ? c.auth_token_file : "LAYERSKIP_AUTH_TOKEN");
        rc = EXIT_USAGE;
        goto out_args;
    }

    static signal_ctx sig; /* the signal thread outlives main's frame at _exit */
    sigemptyset(&sig.set);
    sigaddset(&sig.set, SIGINT);
    sigaddset(&sig.set, SIGTERM);
    sigaddset(&sig.set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sig.set, NULL);
    signal(SIGPIPE, SIG_IGN); /* a closed stdout pipe is an EPIPE we handle */
    pthread_t sig_th;
    pthread_create(&sig_th, NULL, signal_thread, &sig);
    pthread_detach(sig_th);

    lsc_local local;
    memset(&local, 0, sizeof local);
    local.log_fd = -1;
    const char *target = c.server;
    if (!target) target = getenv("LAYERSKIP_SERVER");
    if (!target || !*target) target = "127.0.0.1:50051";
    if (c.local.model) {
        if (lsc_local_start(&local, &c.local, &err) != LSC_OK) {
            fprintf(stderr, "layerskip: local mode: %s\n", err.msg);
            rc = EXIT_USAGE;
            goto out_args;
        }
        atomic_store(&sig.daemon_pid, (int)local.pid);
        target = local.target;
    }

    gpr_set_log_function(grpc_log); /* before grpc_init: its own start-up may log */
    grpc_init();
    lsc_conn_opts co = {
        .target = target, .tls = c.tls, .tls_ca_file = c.tls_ca, .tls_server_name = c.tls_server_name,
        .auth_token = token, .interrupted = &sig.interrupted,
    };
    lsc_conn *conn = NULL;
    if (c.local.model && (rc = wait_serving(&co, &local, c.startup_timeout_s, &sig.interrupted)) >= 0) goto out_grpc;
    if (lsc_conn_open(&co, &conn, &err) != LSC_OK) {
        fprintf(stderr, "layerskip: %s\n", err.msg);
        rc = EXIT_USAGE;
        goto out_grpc;
    }

    double timeout = c.has_timeout ? c.timeout_s : (c.cmd & CMD_GEN) ? 0 : 10;
    switch (c.cmd) {
    case CMD_GENERATE: rc = cmd_generate(conn, &c, timeout); break;
    case CMD_CHAT: rc = cmd_chat(conn, &c, timeout, &sig.interrupted); break;
    case CMD_BATCH: rc = cmd_batch(conn, &c, timeout, &sig.interrupted); break;
    case CMD_TOKENIZE: rc = cmd_tokenize(conn, &c, timeout); break;
    case CMD_DETOKENIZE: rc = cmd_detokenize(conn, &c, timeout); break;
    case CMD_INFO: rc = cmd_info(conn, &c, timeout); break;
    case CMD_HEALTH: rc = cmd_health(conn, &c, timeout); break;
    }
    if (atomic_load(&sig.interrupted) && rc != 0) rc = EXIT_INTERRUPTED;
    if (c.local.model && rc != 0 && rc != EXIT_INTERRUPTED) {
        /* did the daemon die under us? Its socket closes a moment before it
         * can be reaped, so give it half a second to say why. */
        for (int i = 0; i < 10; i++) {
            if (lsc_local_exited(&local, &err)) {
                fprintf(stderr, "layerskip: local mode: %s\n", err.msg);
                break;
            }
            struct timespec nap = {0, 50 * 1000 * 1000};
            nanosleep(&nap, NULL);
        }
    }
    lsc_conn_close(conn);
out_grpc:
    grpc_shutdown();
    if (local.pid > 0 || local.dir[0]) {
        lsc_local_stop(&local, 10.0);
        atomic_store(&sig.daemon_pid, 0);
    }
out_args:
    free(token);
    free(c.stop_words);
    free(c.stop_ids);
    free(c.ids);
    return rc;
}
