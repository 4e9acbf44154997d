/* layerskip-bench: the engine's own command-line tool (like llama-cli /
 * llama-bench for development): load a model, run a prompt, print the
 * continuation and how fast it went. No gRPC, no MPI. */
#include "layerskip/engine.h"
#include "layerskip/generate.h"
#include "layerskip/sampler.h"
#include "tokenizer.h"

#include <cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static const char *usage_text =
    "usage: layerskip-bench --model PATH [options]\n"
    "\n"
    "Loads a Llama-family model (a .gguf file or a Hugging Face directory with\n"
    "config.json, *.safetensors and tokenizer.json), generates a continuation of\n"
    "the prompt and reports speed.\n"
    "\n"
    "  -m, --model PATH          model file (.gguf) or Hugging Face directory (required)\n"
    "  -p, --prompt TEXT         prompt text (default: \"The capital of France is\")\n"
    "  -f, --prompt-file FILE    read the prompt from FILE instead\n"
    "  -n, --n-predict N         tokens to generate (default 64; 0 = prompt only)\n"
    "  -t, --threads T           worker threads (default 2)\n"
    "  -c, --ctx N               context size in tokens (default 2048; prompt + generated must fit)\n"
    "  -b, --batch N             positions per forward call during prompt processing (default 256)\n"
    "      --temperature X       0 = greedy (default 0)\n"
    "      --top-k K             keep the K most likely tokens (0 = off, default)\n"
    "      --top-p P             nucleus sampling mass in (0, 1] (1 = off, default)\n"
    "      --min-p P             drop tokens below P x the top probability (0 = off, default)\n"
    "      --repeat-penalty X    penalise the last --repeat-last-n tokens (1 = off, default)\n"
    "      --repeat-last-n N     history the repetition penalty looks at (default 64)\n"
    "      --seed S              sampling seed (default 42)\n"
    "      --no-bos              do not prepend BOS even if the model asks for it\n"
    "      --ignore-eos          keep generating past end-of-generation tokens (benchmarks)\n"
    "      --fast-math           allow batch-size-dependent arithmetic (OpenBLAS sgemm for large\n"
    "                            prompt batches, reordered Q4_1 sums): may be faster, no longer\n"
    "                            bit-identical to llama.cpp (default: exact)\n"
    "      --runs R              time R runs and report the median (default 1)\n"
    "      --json                print one JSON object on stdout instead of text\n"
    "      --tokenize TEXT       print the token ids of TEXT as a JSON array and exit\n"
    "  -h, --help                this help\n"
    "\n"
    "JSON fields: model, text, token_ids, prompt_tokens, generated_tokens, finish_reason,\n"
    "prefill_ms, decode_ms, prefill_tok_s, decode_tok_s, load_ms, peak_rss_mb, threads, runs.\n"
    "decode_tok_s counts generated tokens after the first (whose logits come from the\n"
    "prompt pass) over decode_ms; with --runs R, timings are medians over R runs.\n";

typedef struct opts {
    const char *model, *prompt, *prompt_file, *tokenize;
    int n_predict, threads, ctx, batch, runs;
    bool json, no_bos, ignore_eos, fast_math;
    ls_sampling sampling;
} opts;

#include <stdarg.h>
__attribute__((format(printf, 1, 2))) static int die_usage(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "layerskip-bench: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n(run layerskip-bench --help for the options)\n");
    va_end(ap);
    return 2;
}

static bool parse_int(const char *s, long lo, long hi, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return false;
    *out = (int)v;
    return true;
}

static bool parse_float(const char *s, float *out) {
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (errno || end == s || *end) return false;
    *out = v;
    return true;
}

static char *read_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    for (size_t got; buf && (got = fread(buf + len, 1, cap - len - 1, f)) > 0;) {
        len += got;
        if (cap - len - 1 == 0) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) { free(buf); buf = NULL; break; }
            buf = nb;
            cap *= 2;
        }
    }
    fclose(f);
    if (buf) buf[len] = 0;
    return buf;
}

/* VmHWM of this process image; getrusage's ru_maxrss would also count the
 * parent's peak from before exec (a benchmark driver holding another model) */
static double peak_rss_mb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    while (f && fgets(line, sizeof line, f)) {
        long kb;
        if (sscanf(line, "VmHWM: %ld kB", &kb) == 1) {
            fclose(f);
            return kb / 1024.0;
        }
    }
    if (f) fclose(f);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024.0;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

typedef struct stream_state {
    const ls_tokenizer *tok;
    ls_detok_stream ds;
    bool print;
} stream_state;

static bool on_token(void *user, int32_t t) {
    stream_state *s = user;
    if (s->print) {
        char buf[512];
        int64_t n = ls_detok_stream_push(&s->ds, t, buf, sizeof buf);
        if (n > 0) { fwrite(buf, 1, (size_t)n, stdout); fflush(stdout); }
    }
    return true;
}

int main(int argc, char **argv) {
    opts o = {.prompt = "The capital of France is", .n_predict = 64, .threads = 2,
              .ctx = 2048, .batch = 256, .runs = 1};
    ls_sampling_default(&o.sampling);
    enum { O_TEMP = 1000, O_TOPK, O_TOPP, O_MINP, O_REP, O_REPN, O_SEED, O_RUNS, O_JSON,
           O_TOKENIZE, O_NOBOS, O_IGNEOS, O_FAST };
    static const struct option longopts[] = {
        {"model", required_argument, 0, 'm'}, {"prompt", required_argument, 0, 'p'},
        {"prompt-file", required_argument, 0, 'f'}, {"n-predict", required_argument, 0, 'n'},
        {"threads", required_argument, 0, 't'}, {"ctx", required_argument, 0, 'c'},
        {"batch", required_argument, 0, 'b'},
        {"temperature", required_argument, 0, O_TEMP}, {"top-k", required_argument, 0, O_TOPK},
        {"top-p", required_argument, 0, O_TOPP}, {"min-p", required_argument, 0, O_MINP},
        {"repeat-penalty", required_argument, 0, O_REP}, {"repeat-last-n", required_argument, 0, O_REPN},
        {"seed", required_argument, 0, O_SEED}, {"runs", required_argument, 0, O_RUNS},
        {"json", no_argument, 0, O_JSON}, {"tokenize", required_argument, 0, O_TOKENIZE},
        {"no-bos", no_argument, 0, O_NOBOS}, {"ignore-eos", no_argument, 0, O_IGNEOS}, {"fast-math", no_argument, 0, O_FAST},
        {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    int ch;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, "m:p:f:n:t:c:b:h", longopts, NULL)) != -1) {
        switch (ch) {
        case 'm': o.model = optarg; break;
        case 'p': o.prompt = optarg; break;
        case 'f': o.prompt_file = optarg; break;
        case 'n': if (!parse_int(optarg, 0, 1 << 20, &o.n_predict)) return die_usage("-n/--n-predict needs an integer in [0, 1048576], got '%s'", optarg); break;
        case 't': if (!parse_int(optarg, 1, 256, &o.threads)) return die_usage("--threads needs an integer in [1, 256], got '%s'", optarg); break;
        case 'c': if (!parse_int(optarg, 1, 1 << 22, &o.ctx)) return die_usage("--ctx needs an integer in [1, 4194304], got '%s'", optarg); break;
        case 'b': if (!parse_int(optarg, 1, 65536, &o.batch)) return die_usage("--batch needs an integer in [1, 65536], got '%s'", optarg); break;
        case O_TEMP: if (!parse_float(optarg, &o.sampling.temperature)) return die_usage("--temperature needs a number, got '%s'", optarg); break;
        case O_TOPK: if (!parse_int(optarg, 0, 1 << 24, &o.sampling.top_k)) return die_usage("--top-k needs a non-negative integer, got '%s'", optarg); break;
        case O_TOPP: if (!parse_float(optarg, &o.sampling.top_p)) return die_usage("--top-p needs a number in (0, 1], got '%s'", optarg); break;
        case O_MINP: if (!parse_float(optarg, &o.sampling.min_p)) return die_usage("--min-p needs a number in [0, 1], got '%s'", optarg); break;
        case O_REP: if (!parse_float(optarg, &o.sampling.repeat_penalty)) return die_usage("--repeat-penalty needs a number, got '%s'", optarg); break;
        case O_REPN: if (!parse_int(optarg, 0, 1 << 20, &o.sampling.repeat_last_n)) return die_usage("--repeat-last-n needs a non-negative integer, got '%s'", optarg); break;
        case O_SEED: {
            char *end;
            errno = 0;
            unsigned long long v = strtoull(optarg, &end, 10);
            if (errno || end == optarg || *end) return die_usage("--seed needs a non-negative integer, got '%s'", optarg);
            o.sampling.seed = v;
            break;
        }
        case O_RUNS: if (!parse_int(optarg, 1, 1000, &o.runs)) return die_usage("--runs needs an integer in [1, 1000], got '%s'", optarg); break;
        case O_JSON: o.json = true; break;
        case O_TOKENIZE: o.tokenize = optarg; break;
        case O_NOBOS: o.no_bos = true; break;
        case O_IGNEOS: o.ignore_eos = true; break;
        case O_FAST: o.fast_math = true; break;
        case 'h': fputs(usage_text, stdout); return 0;
        default:
            if (optopt) {
                char s[2] = {(char)optopt, 0};
                return die_usage("option -%s is unknown or misses its value", s);
            }
            return die_usage("option '%s' is unknown or misses its value", argv[optind - 1]);
        }
    }
    if (optind < argc) return die_usage("unexpected argument '%s'", argv[optind]);
    if (!o.model) return die_usage("%s", "--model PATH is required (a .gguf file or a Hugging Face directory)");
    ls_err err = {{0}};
    if (ls_sampling_check(&o.sampling, &err) != LS_OK) return die_usage("%s", err.msg);

    double t0 = ls_time_ms();
    ls_model *model;
    if (ls_model_load(o.model, &model, &err) != LS_OK) {
        fprintf(stderr, "layerskip-bench: %s\n", err.msg);
        return 1;
    }
    double load_ms = ls_time_ms() - t0;
    const ls_tokenizer *tok = ls_model_tokenizer(model);
    const ls_config *cfg = ls_model_config(model);
    int rc = 0;
    char *prompt_buf = NULL;
    int32_t *prompt_ids = NULL, *out_ids = NULL;
    ls_ctx *ctx = NULL;
    ls_kv *kv = NULL;
    char *text = NULL;

    const char *prompt = o.prompt;
    if (o.tokenize) prompt = o.tokenize;
    else if (o.prompt_file) {
        prompt_buf = read_file(o.prompt_file);
        if (!prompt_buf) {
            fprintf(stderr, "layerskip-bench: cannot read --prompt-file %s: %s\n", o.prompt_file, strerror(errno));
            rc = 1;
            goto done;
        }
        prompt = prompt_buf;
    }
    bool add_bos = ls_tokenizer_add_bos(tok) && !o.no_bos;
    size_t plen = strlen(prompt);
    int64_t n = ls_tokenize(tok, prompt, plen, add_bos, true, NULL, 0);
    int64_t cap = n < 0 ? -n : n;
    prompt_ids = malloc(sizeof(int32_t) * (size_t)(cap + 1));
    n = ls_tokenize(tok, prompt, plen, add_bos, true, prompt_ids, cap + 1);
    if (o.tokenize) {
        printf("[");
        for (int64_t i = 0; i < n; i++) printf(i ? ", %d" : "%d", prompt_ids[i]);
        printf("]\n");
        goto done;
    }
    if (n < 1) {
        fprintf(stderr, "layerskip-bench: the prompt is empty (give --prompt TEXT or --prompt-file FILE)\n");
        rc = 1;
        goto done;
    }
    if (n + o.n_predict > o.ctx) {
        fprintf(stderr, "layerskip-bench: prompt (%lld tokens) + -n %d exceeds --ctx %d; raise --ctx or lower -n\n",
                (long long)n, o.n_predict, o.ctx);
        rc = 1;
        goto done;
    }
    if (ls_ctx_create(model, o.threads, o.batch, &ctx, &err) != LS_OK ||
        ls_kv_create(model, 0, cfg->n_layers, o.ctx, &kv, &err) != LS_OK) {
        fprintf(stderr, "layerskip-bench: %s\n", err.msg);
        rc = 1;
        goto done;
    }
    ls_ctx_set_exact(ctx, !o.fast_math);
    out_ids = malloc(sizeof(int32_t) * (size_t)(o.n_predict + 1));
    ls_gen_params gp = {.n_predict = o.n_predict, .sampling = o.sampling, .ignore_eog = o.ignore_eos};
    double *pre = calloc((size_t)o.runs, sizeof(double)), *dec = calloc((size_t)o.runs, sizeof(double));
    ls_gen_stats stats = {0};
    stream_state ss = {.tok = tok, .print = !o.json};
    if (!o.json) { fwrite(prompt, 1, plen, stdout); fflush(stdout); }
    for (int r = 0; r < o.runs; r++) {
        ls_detok_stream_init(&ss.ds, tok, false);
        ss.ds.first = false; /* continuing the prompt: keep the leading space */
        ss.print = !o.json && r == 0;
        if (ls_generate(ctx, kv, prompt_ids, (int)n, &gp, out_ids, on_token, &ss, &stats, &err) != LS_OK) {
            fprintf(stderr, "\nlayerskip-bench: %s\n", err.msg);
            rc = 1;
            free(pre); free(dec);
            goto done;
        }
        if (ss.print) {
            char buf[64];
            int64_t k = ls_detok_stream_flush(&ss.ds, buf, sizeof buf);
            if (k > 0) fwrite(buf, 1, (size_t)k, stdout);
        }
        pre[r] = stats.prefill_ms;
        dec[r] = stats.decode_ms;
    }
    double pre_ms = median(pre, o.runs), dec_ms = median(dec, o.runs);
    free(pre); free(dec);
    double prefill_tok_s = pre_ms > 0 ? n / (pre_ms / 1e3) : 0;
    int n_dec = stats.n_generated > 1 ? stats.n_generated - 1 : 0;
    double decode_tok_s = dec_ms > 0 && n_dec > 0 ? n_dec / (dec_ms / 1e3) : 0;

    /* the continuation as the stream printed it: the text that follows the
     * prompt (no SentencePiece leading-space stripping) */
    size_t tl = 0, text_cap = 256;
    text = malloc(text_cap);
    ls_detok_stream ds;
    ls_detok_stream_init(&ds, tok, false);
    ds.first = false;
    for (int i = 0; i <= stats.n_generated; i++) {
        char piece[512];
        int64_t k = i < stats.n_generated ? ls_detok_stream_push(&ds, out_ids[i], piece, sizeof piece)
                                          : ls_detok_stream_flush(&ds, piece, sizeof piece);
        if (k <= 0) continue;
        if (tl + (size_t)k + 1 > text_cap) {
            text_cap = (tl + (size_t)k + 1) * 2;
            text = realloc(text, text_cap);
        }
        memcpy(text + tl, piece, (size_t)k);
        tl += (size_t)k;
    }
    text[tl] = 0;

    if (o.json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "model", o.model);
        cJSON_AddStringToObject(j, "text", text);
        cJSON *ids = cJSON_AddArrayToObject(j, "token_ids");
        for (int i = 0; i < stats.n_generated; i++) cJSON_AddItemToArray(ids, cJSON_CreateNumber(out_ids[i]));
        cJSON_AddNumberToObject(j, "prompt_tokens", (double)n);
        cJSON_AddNumberToObject(j, "generated_tokens", stats.n_generated);
        cJSON_AddStringToObject(j, "finish_reason", ls_finish_name(stats.finish));
        cJSON_AddNumberToObject(j, "prefill_ms", pre_ms);
        cJSON_AddNumberToObject(j, "decode_ms", dec_ms);
        cJSON_AddNumberToObject(j, "prefill_tok_s", prefill_tok_s);
        cJSON_AddNumberToObject(j, "decode_tok_s", decode_tok_s);
        cJSON_AddNumberToObject(j, "load_ms", load_ms);
        cJSON_AddNumberToObject(j, "peak_rss_mb", peak_rss_mb());
        cJSON_AddNumberToObject(j, "threads", o.threads);
        cJSON_AddNumberToObject(j, "runs", o.runs);
        char *s = cJSON_PrintUnformatted(j);
        puts(s);
        free(s);
        cJSON_Delete(j);
    } else {
        fprintf(stdout, "\n");
        fprintf(stderr,
                "\n[%s] prompt %lld tokens, generated %d (%s)\n"
                "prefill %.1f ms (%.1f tok/s), decode %.1f ms (%.1f tok/s), load %.0f ms, peak RSS %.0f MB%s\n",
                cfg->name, (long long)n, stats.n_generated, ls_finish_name(stats.finish), pre_ms,
                prefill_tok_s, dec_ms, decode_tok_s, load_ms, peak_rss_mb(),
                o.runs > 1 ? " (medians)" : "");
    }
done:
    free(text);
    free(prompt_buf);
    free(prompt_ids);
    free(out_ids);
    ls_kv_free(kv);
    ls_ctx_free(ctx);
    ls_model_free(model);
    return rc;
}
