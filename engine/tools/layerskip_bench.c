/* layerskip-bench: the engine's own command-line tool (like llama-cli /
 * llama-bench for development): load a model, run a prompt, print the
 * continuation and how fast it went. No gRPC, no MPI. */
#include "layerskip/engine.h"
#include "layerskip/generate.h"
#include "layerskip/sampler.h"
#include "heatmap.h"
#include "layerskip/tokenizer.h"

#include <cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

/* --num-speculations auto: k per round in [0, LS_AUTO_SPECULATIONS_MAX] (speculate.h) */
#define XSTR(x) STR(x)
#define STR(x) #x

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
    "      --generation-strategy S  autoregressive (default), early_exit or self_speculative\n"
    "      --exit-layer E        draft/exit after layers [0, E), 1 <= E <= L-1 (default: the\n"
    "                            --draft-adapter's E if one is given, else L/4)\n"
    "      --num-speculations K|auto  drafts per verification round, 1..32 (default 4); auto: k\n"
    "                            chosen every round in [0, " XSTR(LS_AUTO_SPECULATIONS_MAX) "] from the acceptance so far and\n"
    "                            the measured cost of drafting and verifying (0 = a plain step)\n"
    "      --draft-min-p P       stop drafting a round when the draft's top probability < P\n"
    "                            (0 = off; default 0.95, the best measured in BENCHMARKS.md)\n"
    "      --draft-source S      self_speculative drafts from: exit (layers [0, E) + the model's\n"
    "                            head), adapter (layers [0, E) + --draft-adapter's block), lookup\n"
    "                            (n-gram copies of the prompt and text so far, no model compute)\n"
    "                            or auto (lookup when it matches, else adapter if loaded, else\n"
    "                            exit; the default)\n"
    "      --draft-adapter PATH  draft adapter GGUF for this model (docs/ADAPTER.md)\n"
    "      --draft-vocab N       drafts score only the N most frequent tokens of the adapter's\n"
    "                            frequency table (0 = the full head, default); output unchanged\n"
    "      --sweep-exit A:B[:S]  sweep E over A..B (step S) x --sweep-k over the prompts\n"
    "      --sweep-k LIST        (one per line of --prompt-file, or --prompt); LIST is comma-\n"
    "                            separated K, A:B[:S] and auto, e.g. 1:8,auto; prints a grid of\n"
    "                            acceptance and tok/s, writes --csv and --heatmap\n"
    "      --csv FILE            sweep table (default sweep.csv)\n"
    "      --heatmap FILE        sweep heat map, PNG (default sweep.png)\n"
    "      --compare             run autoregressive and self_speculative (greedy) on the prompts,\n"
    "                            report the speedup and whether the outputs matched\n"
    "      --verify-cost         time one pass of layers [E, L) over k+1 positions against one\n"
    "                            position, for k = 0..--num-speculations (medians of --runs)\n"
    "      --streams N           N generations of the prompt (seeds --seed+i) stepped together,\n"
    "                            one forward pass per step for all (prompts in --batch slices),\n"
    "                            against the same N one after another: aggregate tok/s and\n"
    "                            whether the outputs are identical (any strategy)\n"
    "      --fast-math           allow batch-size-dependent arithmetic (OpenBLAS sgemm for large\n"
    "                            prompt batches, reordered Q4_1 sums): may be faster, no longer\n"
    "                            bit-identical to llama.cpp (default: exact)\n"
    "      --runs R              time R runs and report the median (default 1)\n"
    "      --json                print one JSON object on stdout instead of text\n"
    "      --tokenize TEXT       print the token ids of TEXT as a JSON array and exit\n"
    "  -h, --help                this help\n"
    "\n"
    "JSON fields: model, text, token_ids, prompt_tokens, generated_tokens, finish_reason,\n"
    "prefill_ms, decode_ms, prefill_tok_s, decode_tok_s, time_per_token_ms, load_ms, peak_rss_mb,\n"
    "threads, runs, strategy, exit_layer, num_speculations (with auto: the bound), auto_speculations,\n"
    "draft_source, draft_adapter, draft_vocab, drafted, accepted, acceptance_rate, rounds,\n"
    "accepted_per_round (histogram: rounds that accepted 0, 1, ... drafts), drafted_by and\n"
    "accepted_by ({exit, adapter, lookup}), rounds_by_k (rounds by the k they allowed; with auto\n"
    "the k chosen, 0 = a plain step) and mean_k. Text output and --compare report the same\n"
    "per-source counts and k distribution; --sweep-k's CSV has them as columns.\n"
    "decode_tok_s counts generated tokens after the first (whose logits come from the\n"
    "prompt pass) over decode_ms; with --runs R, timings are medians over R runs.\n";

typedef struct opts {
    const char *model, *prompt, *prompt_file, *tokenize;
    int n_predict, threads, ctx, batch, runs, streams;
    bool json, no_bos, ignore_eos, fast_math, compare, verify_cost;
    const char *strategy, *sweep_exit, *sweep_k, *csv, *heatmap, *draft_source, *draft_adapter;
    int exit_layer, num_speculations, draft_vocab;
    bool auto_speculations;
    float draft_min_p;
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

/* "A:B" or "A:B:S" -> {A, B, S} */
static bool parse_range(const char *s, int r[3]) {
    char tail;
    r[2] = 1;
    int n = sscanf(s, "%d:%d:%d%c", &r[0], &r[1], &r[2], &tail);
    return (n == 2 || n == 3) && r[0] <= r[1] && r[2] >= 1;
}

/* k as --num-speculations gives it: a number, or "auto" (the engine chooses
 * per round, at most LS_AUTO_SPECULATIONS_MAX); the range is the engine's check */
typedef struct kcol {
    int k;
    bool autok;
} kcol;

static bool parse_k(const char *s, kcol *out) {
    if (strcmp(s, "auto") == 0) {
        *out = (kcol){LS_AUTO_SPECULATIONS_MAX, true};
        return true;
    }
    out->autok = false;
    return parse_int(s, -1000000, 1000000, &out->k);
}

static void kcol_name(const kcol *c, char *buf, size_t len) {
    if (c->autok) snprintf(buf, len, "auto");
    else snprintf(buf, len, "%d", c->k);
}

/* --sweep-k: comma-separated K, A:B[:S] and auto, e.g. "1:8,auto"; at most 64 columns */
static bool parse_k_list(const char *s, kcol **out, int *n) {
    char *copy = strdup(s), *save = NULL;
    *out = NULL;
    *n = 0;
    bool ok = copy && *s;
    for (char *item = copy ? strtok_r(copy, ",", &save) : NULL; ok && item; item = strtok_r(NULL, ",", &save)) {
        int r[3] = {0, 0, 1};
        kcol one = {0, false};
        if (strchr(item, ':')) ok = parse_range(item, r) && (r[1] - r[0]) / r[2] + 1 + *n <= 64;
        else if ((ok = parse_k(item, &one) && *n < 64)) r[0] = r[1] = one.k;
        for (int k = r[0]; ok && k <= r[1]; k += r[2]) {
            *out = realloc(*out, sizeof **out * (size_t)(*n + 1));
            (*out)[(*n)++] = strchr(item, ':') ? (kcol){k, false} : one;
        }
    }
    free(copy);
    if (!ok || *n == 0) {
        free(*out);
        *out = NULL;
        return false;
    }
    return true;
}

/* the prompts of a sweep or comparison: one per non-empty line of the text
 * ("\n" in a line stands for a newline), tokenized */
typedef struct prompt_set {
    int n;
    int32_t **ids;
    int *len;
} prompt_set;

static void prompt_set_free(prompt_set *ps) {
    for (int i = 0; i < ps->n; i++) free(ps->ids[i]);
    free(ps->ids);
    free(ps->len);
}

static bool prompt_set_build(prompt_set *ps, const ls_tokenizer *tok, const char *text, bool add_bos) {
    memset(ps, 0, sizeof *ps);
    char *copy = strdup(text), *save = NULL;
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *w = line;
        for (char *r = line; *r; r++) { /* unescape \n */
            if (r[0] == '\\' && r[1] == 'n') { *w++ = '\n'; r++; }
            else *w++ = *r;
        }
        *w = 0;
        if (!*line) continue;
        int64_t n = ls_tokenize(tok, line, strlen(line), add_bos, true, NULL, 0);
        int64_t cap = (n < 0 ? -n : n) + 1;
        int32_t *ids = malloc(sizeof(int32_t) * (size_t)cap);
        n = ls_tokenize(tok, line, strlen(line), add_bos, true, ids, cap);
        if (n < 1) { free(ids); continue; }
        ps->ids = realloc(ps->ids, sizeof(int32_t *) * (size_t)(ps->n + 1));
        ps->len = realloc(ps->len, sizeof(int) * (size_t)(ps->n + 1));
        ps->ids[ps->n] = ids;
        ps->len[ps->n++] = (int)n;
    }
    free(copy);
    return ps->n > 0;
}

/* one pass over all prompts with gp: tokens generated, decode time and
 * speculation counters summed; outs[i] (n_predict ids) kept when given */
typedef struct pass_result {
    int64_t generated;
    double decode_ms;
    ls_gen_stats spec; /* drafted, accepted, rounds and their breakdowns, summed */
} pass_result;

/* the speculation counters of s into sum */
static void spec_stats_add(ls_gen_stats *sum, const ls_gen_stats *s) {
    sum->drafted += s->drafted;
    sum->accepted += s->accepted;
    sum->rounds += s->rounds;
    for (int i = 0; i <= LS_MAX_SPECULATIONS; i++) {
        sum->accept_hist[i] += s->accept_hist[i];
        sum->rounds_by_k[i] += s->rounds_by_k[i];
    }
    for (int i = 0; i < LS_N_DRAFT_SOURCES; i++) {
        sum->drafted_by[i] += s->drafted_by[i];
        sum->accepted_by[i] += s->accepted_by[i];
    }
}

/* mean of the k the rounds allowed (auto: chose) */
static double mean_k(const ls_gen_stats *s) {
    int64_t n = 0, sum = 0;
    for (int k = 0; k <= LS_MAX_SPECULATIONS; k++) {
        n += s->rounds_by_k[k];
        sum += (int64_t)k * s->rounds_by_k[k];
    }
    return n ? (double)sum / (double)n : 0;
}

/* "0:3 2:5 4:7": rounds by k, the k that occur ("-" none) */
static void k_hist_text(const ls_gen_stats *s, char *buf, size_t len) {
    size_t used = 0;
    buf[0] = 0;
    for (int k = 0; k <= LS_MAX_SPECULATIONS && used < len; k++)
        if (s->rounds_by_k[k]) {
            int w = snprintf(buf + used, len - used, "%s%d:%lld", used ? " " : "", k, (long long)s->rounds_by_k[k]);
            if (w < 0) break;
            used += (size_t)w;
        }
    if (!buf[0]) snprintf(buf, len, "-");
}

/* the sources that draft (every one but auto, which picks among them) */
static bool drafting_source(int i) { return i != LS_DRAFT_AUTO; }

/* "k=4" or "k=auto (0..8)" */
static void k_text(const ls_gen_params *gp, char *buf, size_t len) {
    if (gp->auto_speculations) snprintf(buf, len, "k=auto (0..%d)", gp->num_speculations);
    else snprintf(buf, len, "k=%d", gp->num_speculations);
}

/* two lines: drafted/accepted per source, the k distribution */
static void print_spec_stats(FILE *f, const ls_gen_params *gp, const ls_gen_stats *s) {
    fprintf(f, "draft source %s%s%s, draft vocab %d: drafted/accepted", ls_draft_source_name(gp->draft_source),
            gp->adapter ? ", adapter " : "", gp->adapter ? ls_adapter_path(gp->adapter) : "", gp->draft_vocab);
    for (int i = 0, first = 1; i < LS_N_DRAFT_SOURCES; i++)
        if (drafting_source(i)) {
            fprintf(f, "%s %s %lld/%lld", first ? "" : ",", ls_draft_source_name((ls_draft_source)i),
                    (long long)s->drafted_by[i], (long long)s->accepted_by[i]);
            first = 0;
        }
    char hist[512];
    k_hist_text(s, hist, sizeof hist);
    fprintf(f, "\nk per round: mean %.2f; rounds by k %s\n", mean_k(s), hist);
}

/* drafted_by, accepted_by ({exit, adapter, lookup}), rounds_by_k (up to the largest k used), mean_k */
static void add_spec_json(cJSON *j, const ls_gen_stats *s) {
    cJSON *d = cJSON_AddObjectToObject(j, "drafted_by"), *a = cJSON_AddObjectToObject(j, "accepted_by");
    for (int i = 0; i < LS_N_DRAFT_SOURCES; i++)
        if (drafting_source(i)) {
            cJSON_AddNumberToObject(d, ls_draft_source_name((ls_draft_source)i), (double)s->drafted_by[i]);
            cJSON_AddNumberToObject(a, ls_draft_source_name((ls_draft_source)i), (double)s->accepted_by[i]);
        }
    cJSON *h = cJSON_AddArrayToObject(j, "rounds_by_k");
    int last = -1;
    for (int k = 0; k <= LS_MAX_SPECULATIONS; k++) if (s->rounds_by_k[k]) last = k;
    for (int k = 0; k <= last; k++) cJSON_AddItemToArray(h, cJSON_CreateNumber((double)s->rounds_by_k[k]));
    cJSON_AddNumberToObject(j, "mean_k", mean_k(s));
}

/* the draft options as JSON fields */
static void add_draft_json(cJSON *j, const ls_gen_params *gp) {
    cJSON_AddBoolToObject(j, "auto_speculations", gp->auto_speculations);
    cJSON_AddStringToObject(j, "draft_source", ls_draft_source_name(gp->draft_source));
    if (gp->adapter) cJSON_AddStringToObject(j, "draft_adapter", ls_adapter_path(gp->adapter));
    else cJSON_AddNullToObject(j, "draft_adapter");
    cJSON_AddNumberToObject(j, "draft_vocab", gp->draft_vocab);
}

static ls_status run_pass(ls_ctx *ctx, ls_kv *kv, const prompt_set *ps, const ls_gen_params *gp,
                          int32_t **outs, int *n_out, pass_result *res, ls_err *err) {
    memset(res, 0, sizeof *res);
    int32_t *tmp = malloc(sizeof(int32_t) * (size_t)(gp->n_predict + 1));
    for (int i = 0; i < ps->n; i++) {
        ls_gen_stats st;
        ls_status s = ls_generate(ctx, kv, ps->ids[i], ps->len[i], gp, outs ? outs[i] : tmp, NULL, NULL, &st, err);
        if (s != LS_OK) { free(tmp); return s; }
        if (n_out) n_out[i] = st.n_generated;
        res->generated += st.n_generated;
        res->decode_ms += st.decode_ms;
        spec_stats_add(&res->spec, &st);
    }
    free(tmp);
    return LS_OK;
}

static double tok_s(const pass_result *r) { return r->decode_ms > 0 ? r->generated / (r->decode_ms / 1e3) : 0; }

static int32_t **alloc_outs(int n, int n_predict) {
    int32_t **o = malloc(sizeof(int32_t *) * (size_t)n);
    for (int i = 0; i < n; i++) o[i] = malloc(sizeof(int32_t) * (size_t)(n_predict + 1));
    return o;
}

static void free_outs(int32_t **o, int n) {
    for (int i = 0; i < n; i++) free(o[i]);
    free(o);
}

static bool same_outputs(int32_t **a, const int *na, int32_t **b, const int *nb, int n) {
    for (int i = 0; i < n; i++)
        if (na[i] != nb[i] || memcmp(a[i], b[i], sizeof(int32_t) * (size_t)na[i]) != 0) return false;
    return true;
}

static int run_sweep(const opts *o, ls_ctx *ctx, ls_kv *kv, const ls_tokenizer *tok, const char *text,
                     bool add_bos, const ls_gen_params *base, const int se[3], const kcol *kc, int nk) {
    prompt_set ps;
    if (!prompt_set_build(&ps, tok, text, add_bos)) {
        fprintf(stderr, "layerskip-bench: no prompts to sweep (one per line of --prompt-file)\n");
        return 1;
    }
    ls_err err;
    ls_gen_params ar = *base;
    ar.strategy = LS_STRATEGY_AUTOREGRESSIVE;
    int32_t **ar_out = alloc_outs(ps.n, base->n_predict), **sp_out = alloc_outs(ps.n, base->n_predict);
    int *ar_n = calloc((size_t)ps.n, sizeof(int)), *sp_n = calloc((size_t)ps.n, sizeof(int));
    pass_result arr;
    int rc = 0;
    if (run_pass(ctx, kv, &ps, &ar, ar_out, ar_n, &arr, &err) != LS_OK) {
        fprintf(stderr, "layerskip-bench: %s\n", err.msg);
        rc = 1;
        goto out;
    }
    int ne = (se[1] - se[0]) / se[2] + 1;
    int *ev = malloc(sizeof(int) * (size_t)ne);
    for (int i = 0; i < ne; i++) ev[i] = se[0] + i * se[2];
    char (*knames)[16] = malloc(sizeof *knames * (size_t)nk);
    const char **klabels = malloc(sizeof(char *) * (size_t)nk);
    for (int j = 0; j < nk; j++) {
        kcol_name(&kc[j], knames[j], sizeof knames[j]);
        klabels[j] = knames[j];
    }
    double *speed = malloc(sizeof(double) * (size_t)(ne * nk)), *acc = malloc(sizeof(double) * (size_t)(ne * nk));
    FILE *csv = fopen(o->csv, "w");
    if (!csv) {
        fprintf(stderr, "layerskip-bench: cannot write --csv %s: %s\n", o->csv, strerror(errno));
        rc = 1;
    } else {
        fprintf(csv, "exit_layer,num_speculations,acceptance_rate,tok_s,autoregressive_tok_s,speedup,drafted,accepted,"
                     "rounds,outputs_match,draft_source,draft_vocab,mean_k,rounds_by_k");
        for (int i = 0; i < LS_N_DRAFT_SOURCES; i++)
            if (drafting_source(i))
                fprintf(csv, ",drafted_%s,accepted_%s", ls_draft_source_name((ls_draft_source)i),
                        ls_draft_source_name((ls_draft_source)i));
        fprintf(csv, "\n");
    }
    printf("%d prompts x %d tokens; autoregressive %.1f tok/s; draft source %s\n", ps.n, base->n_predict, tok_s(&arr),
           ls_draft_source_name(base->draft_source));
    printf("%6s", "E \\ k");
    for (int j = 0; j < nk; j++) printf(" | %17s", knames[j]);
    printf("\n");
    for (int i = 0; rc == 0 && i < ne; i++) {
        printf("%6d", ev[i]);
        for (int j = 0; j < nk; j++) {
            ls_gen_params gp = *base;
            gp.exit_layer = ev[i];
            gp.num_speculations = kc[j].k;
            gp.auto_speculations = kc[j].autok;
            pass_result r;
            if (run_pass(ctx, kv, &ps, &gp, sp_out, sp_n, &r, &err) != LS_OK) {
                fprintf(stderr, "\nlayerskip-bench: %s\n", err.msg);
                rc = 1;
                break;
            }
            double a = r.spec.drafted ? (double)r.spec.accepted / (double)r.spec.drafted : 0;
            double sp = tok_s(&arr) > 0 ? tok_s(&r) / tok_s(&arr) : 0;
            speed[i * nk + j] = sp;
            acc[i * nk + j] = a;
            bool match = base->sampling.temperature <= 0 && same_outputs(ar_out, ar_n, sp_out, sp_n, ps.n);
            printf(" | %4.0f%% %6.1f %4.2fx", 100 * a, tok_s(&r), sp);
            fflush(stdout);
            char hist[512];
            k_hist_text(&r.spec, hist, sizeof hist);
            fprintf(csv, "%d,%s,%.4f,%.2f,%.2f,%.4f,%lld,%lld,%lld,%s,%s,%d,%.3f,%s", ev[i], knames[j], a, tok_s(&r),
                    tok_s(&arr), sp, (long long)r.spec.drafted, (long long)r.spec.accepted, (long long)r.spec.rounds,
                    base->sampling.temperature > 0 ? "n/a" : match ? "yes" : "no",
                    ls_draft_source_name(gp.draft_source), gp.draft_vocab, mean_k(&r.spec), hist);
            for (int s = 0; s < LS_N_DRAFT_SOURCES; s++)
                if (drafting_source(s))
                    fprintf(csv, ",%lld,%lld", (long long)r.spec.drafted_by[s], (long long)r.spec.accepted_by[s]);
            fprintf(csv, "\n");
        }
        printf("\n");
    }
    if (csv) fclose(csv);
    if (rc == 0) {
        printf("cells: acceptance, tok/s, speedup over autoregressive\nwrote %s and %s\n", o->csv, o->heatmap);
        if (!ls_heatmap_png(o->heatmap, "speedup over autoregressive (E x k)", ev, ne, "E=", klabels, nk, "k", speed,
                            2, "x")) {
            fprintf(stderr, "layerskip-bench: cannot write --heatmap %s\n", o->heatmap);
            rc = 1;
        }
    }
    free(ev); free(knames); free(klabels); free(speed); free(acc);
out:
    free_outs(ar_out, ps.n);
    free_outs(sp_out, ps.n);
    free(ar_n); free(sp_n);
    prompt_set_free(&ps);
    return rc;
}

static int run_compare(const opts *o, ls_ctx *ctx, ls_kv *kv, const ls_tokenizer *tok, const char *text,
                       bool add_bos, const ls_gen_params *base) {
    prompt_set ps;
    if (!prompt_set_build(&ps, tok, text, add_bos)) {
        fprintf(stderr, "layerskip-bench: no prompts to compare (one per line of --prompt-file)\n");
        return 1;
    }
    ls_err err;
    ls_gen_params ar = *base, sp = *base;
    ar.strategy = LS_STRATEGY_AUTOREGRESSIVE;
    ar.sampling.temperature = sp.sampling.temperature = 0; /* the reference's check is greedy */
    int32_t **ar_out = alloc_outs(ps.n, base->n_predict), **sp_out = alloc_outs(ps.n, base->n_predict);
    int *ar_n = calloc((size_t)ps.n, sizeof(int)), *sp_n = calloc((size_t)ps.n, sizeof(int));
    pass_result ra, rs;
    int rc = 0;
    if (run_pass(ctx, kv, &ps, &ar, ar_out, ar_n, &ra, &err) != LS_OK ||
        run_pass(ctx, kv, &ps, &sp, sp_out, sp_n, &rs, &err) != LS_OK) {
        fprintf(stderr, "layerskip-bench: %s\n", err.msg);
        rc = 1;
    } else {
        int differ = 0;
        for (int i = 0; i < ps.n; i++)
            if (!same_outputs(ar_out + i, ar_n + i, sp_out + i, sp_n + i, 1)) differ++;
        double a = rs.spec.drafted ? (double)rs.spec.accepted / (double)rs.spec.drafted : 0;
        if (o->json) {
            cJSON *j = cJSON_CreateObject();
            cJSON_AddNumberToObject(j, "prompts", ps.n);
            cJSON_AddNumberToObject(j, "n_predict", base->n_predict);
            cJSON_AddNumberToObject(j, "exit_layer", base->exit_layer);
            cJSON_AddNumberToObject(j, "num_speculations", base->num_speculations);
            add_draft_json(j, base);
            cJSON_AddNumberToObject(j, "autoregressive_tok_s", tok_s(&ra));
            cJSON_AddNumberToObject(j, "self_speculative_tok_s", tok_s(&rs));
            cJSON_AddNumberToObject(j, "speedup", tok_s(&ra) > 0 ? tok_s(&rs) / tok_s(&ra) : 0);
            cJSON_AddNumberToObject(j, "acceptance_rate", a);
            cJSON_AddNumberToObject(j, "drafted", (double)rs.spec.drafted);
            cJSON_AddNumberToObject(j, "accepted", (double)rs.spec.accepted);
            cJSON_AddNumberToObject(j, "rounds", (double)rs.spec.rounds);
            add_spec_json(j, &rs.spec);
            cJSON_AddNumberToObject(j, "outputs_differ", differ);
            char *s = cJSON_PrintUnformatted(j);
            puts(s);
            free(s);
            cJSON_Delete(j);
        } else {
            char kt[32];
            k_text(base, kt, sizeof kt);
            printf("%d prompts x %d tokens, E=%d %s\n"
                   "autoregressive    %.1f tok/s\nself_speculative  %.1f tok/s (acceptance %.1f%%)\n",
                   ps.n, base->n_predict, base->exit_layer, kt, tok_s(&ra), tok_s(&rs), 100 * a);
            print_spec_stats(stdout, base, &rs.spec);
            printf("speedup %.2fx; greedy outputs %s (%d of %d prompts differ)\n",
                   tok_s(&ra) > 0 ? tok_s(&rs) / tok_s(&ra) : 0, differ ? "DIFFER" : "match", differ, ps.n);
        }
        if (differ) rc = 3;
    }
    free_outs(ar_out, ps.n);
    free_outs(sp_out, ps.n);
    free(ar_n); free(sp_n);
    prompt_set_free(&ps);
    return rc;
}

/* the price of verification: layers [E, L) over k+1 positions in one call
 * against one position, at the position after the prompt */
static int run_verify_cost(const opts *o, ls_ctx *ctx, ls_kv *kv, const ls_model *model,
                           const int32_t *ids, int n, const ls_gen_params *gp) {
    const ls_config *cfg = ls_model_config(model);
    const int E = gp->exit_layer, K = gp->num_speculations, reps = o->runs > 1 ? o->runs : 20;
    ls_err err;
    float *logits = malloc(sizeof(float) * (size_t)cfg->n_vocab * (size_t)(K + 1));
    float *hidden = malloc(sizeof(float) * (size_t)cfg->dim * (size_t)(K + 1));
    int rc = 0;
    if (n + K + 1 > ls_kv_n_ctx(kv) || ls_prefill(ctx, kv, ids, n, 0, logits, &err) != LS_OK) {
        fprintf(stderr, "layerskip-bench: %s\n", n + K + 1 > ls_kv_n_ctx(kv) ? "prompt too long for --ctx" : err.msg);
        rc = 1;
        goto out;
    }
    /* inputs: the exit states of k+1 copies of the last prompt token */
    int32_t *toks = malloc(sizeof(int32_t) * (size_t)(K + 1));
    for (int i = 0; i <= K; i++) toks[i] = ids[n - 1];
    ls_embed(ctx, toks, K + 1, hidden, &err);
    free(toks);
    double *t = malloc(sizeof(double) * (size_t)reps), base = 0;
    printf("layers [%d, %d) + exit head, position %d, median of %d\n%4s %10s %8s\n", E, cfg->n_layers, n, reps, "k+1",
           "ms", "vs 1");
    for (int m = 1; m <= K + 1; m++) {
        for (int r = 0; r < reps; r++) {
            ls_kv_truncate(kv, 0, cfg->n_layers, n);
            double t0 = ls_time_ms();
            if (ls_forward(ctx, kv, E, cfg->n_layers, n, m, hidden, &err) != LS_OK ||
                ls_exit_head(ctx, hidden, m, logits, &err) != LS_OK) {
                fprintf(stderr, "layerskip-bench: %s\n", err.msg);
                rc = 1;
                free(t);
                goto out;
            }
            t[r] = ls_time_ms() - t0;
        }
        double med = median(t, reps);
        if (m == 1) base = med;
        printf("%4d %10.3f %7.2fx\n", m, med, med / base);
    }
    free(t);
out:
    free(logits);
    free(hidden);
    return rc;
}

/* --streams N: N generations stepped together (ls_gen_step) against the same
 * N run one after another (ls_generate) */
static int run_streams(const opts *o, ls_ctx *ctx, const ls_model *model, const int32_t *prompt, int n,
                       const ls_gen_params *gp) {
    const ls_config *cfg = ls_model_config(model);
    const int N = o->streams;
    ls_err err = {{0}};
    int rc = 0;
    ls_kv **kv = calloc((size_t)N, sizeof *kv);
    ls_gen **g = calloc((size_t)N, sizeof *g);
    ls_gen_params *ps = calloc((size_t)N, sizeof *ps);
    ls_gen_stats *st = calloc((size_t)N, sizeof *st);
    int32_t *alone = calloc((size_t)N * (size_t)(o->n_predict + 1), sizeof(int32_t));
    int32_t *stepped = calloc((size_t)N * (size_t)(o->n_predict + 1), sizeof(int32_t));
    if (!kv || !g || !ps || !st || !alone || !stepped) {
        fprintf(stderr, "layerskip-bench: out of memory for %d streams\n", N);
        rc = 1;
        goto out;
    }
    for (int i = 0; i < N; i++) {
        ps[i] = *gp;
        ps[i].sampling.seed = gp->sampling.seed + (uint64_t)i;
        if (ls_kv_create(model, 0, cfg->n_layers, o->ctx, &kv[i], &err) != LS_OK) {
            fprintf(stderr, "layerskip-bench: stream %d: %s\n", i, err.msg);
            rc = 1;
            goto out;
        }
    }
    int64_t gen_alone = 0, gen_stepped = 0;
    const double t0 = ls_time_ms();
    for (int i = 0; i < N; i++) {
        if (ls_generate(ctx, kv[i], prompt, n, &ps[i], alone + (size_t)i * (o->n_predict + 1), NULL, NULL, &st[i],
                        &err) != LS_OK) {
            fprintf(stderr, "layerskip-bench: %s\n", err.msg);
            rc = 1;
            goto out;
        }
        gen_alone += st[i].n_generated;
    }
    const double t1 = ls_time_ms();
    for (int i = 0; i < N; i++)
        if (ls_gen_create(ctx, kv[i], prompt, n, &ps[i], stepped + (size_t)i * (o->n_predict + 1), NULL, NULL, &st[i],
                          &g[i], &err) != LS_OK) {
            fprintf(stderr, "layerskip-bench: %s\n", err.msg);
            rc = 1;
            goto out;
        }
    int steps = 0;
    for (bool live = true; live; steps++) {
        if (ls_gen_step(ctx, g, N, o->batch, &err) != LS_OK) {
            fprintf(stderr, "layerskip-bench: %s\n", err.msg);
            rc = 1;
            goto out;
        }
        live = false;
        for (int i = 0; i < N; i++) live |= !ls_gen_done(g[i]);
    }
    const double t2 = ls_time_ms();
    bool same = true;
    for (int i = 0; i < N; i++) {
        gen_stepped += st[i].n_generated;
        same &= !memcmp(alone + (size_t)i * (o->n_predict + 1), stepped + (size_t)i * (o->n_predict + 1),
                        sizeof(int32_t) * (size_t)st[i].n_generated);
    }
    same &= gen_alone == gen_stepped;
    const double a = gen_alone / ((t1 - t0) / 1e3), b = gen_stepped / ((t2 - t1) / 1e3);
    if (o->json)
        printf("{\"streams\": %d, \"kernels\": \"%s\", \"prompt_tokens\": %d, \"generated\": %lld, "
               "\"one_after_another_ms\": %.3f, \"stepped_ms\": %.3f, \"one_after_another_tok_s\": %.3f, "
               "\"stepped_tok_s\": %.3f, \"speedup\": %.4f, \"steps\": %d, \"outputs_identical\": %s}\n",
               N, ls_kernel_path(), n, (long long)gen_stepped, t1 - t0, t2 - t1, a, b, b / a, steps,
               same ? "true" : "false");
    else
        printf("%d streams, %d prompt tokens each, %lld tokens generated in all\n"
               "  one after another: %9.1f ms  %8.1f tok/s\n"
               "  stepped together:  %9.1f ms  %8.1f tok/s  (%.2fx, %d steps)\n"
               "  outputs identical: %s\n",
               N, n, (long long)gen_stepped, t1 - t0, a, t2 - t1, b, b / a, steps, same ? "yes" : "NO");
    if (!same) rc = 1;
out:
    for (int i = 0; i < N; i++) {
        if (g) ls_gen_free(g[i]);
        if (kv) ls_kv_free(kv[i]);
    }
    free(kv);
    free(g);
    free(ps);
    free(st);
    free(alone);
    free(stepped);
    return rc;
}

int main(int argc, char **argv) {
    opts o = {.prompt = "The capital of France is", .n_predict = 64, .threads = 2,
              .ctx = 2048, .batch = 256, .runs = 1, .exit_layer = -1000001, .num_speculations = 4, .draft_min_p = 0.95f,
              .csv = "sweep.csv", .heatmap = "sweep.png"};
    ls_sampling_default(&o.sampling);
    enum { O_TEMP = 1000, O_TOPK, O_TOPP, O_MINP, O_REP, O_REPN, O_SEED, O_RUNS, O_JSON,
           O_TOKENIZE, O_NOBOS, O_IGNEOS, O_FAST, O_STRAT, O_EXIT, O_NSPEC, O_DMINP, O_SWE, O_SWK, O_CSV,
           O_HEAT, O_CMP, O_VCOST, O_DSRC, O_DADAPT, O_DVOCAB, O_STREAMS };
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
        {"generation-strategy", required_argument, 0, O_STRAT}, {"exit-layer", required_argument, 0, O_EXIT},
        {"num-speculations", required_argument, 0, O_NSPEC}, {"draft-min-p", required_argument, 0, O_DMINP},
        {"sweep-exit", required_argument, 0, O_SWE}, {"sweep-k", required_argument, 0, O_SWK},
        {"csv", required_argument, 0, O_CSV}, {"heatmap", required_argument, 0, O_HEAT},
        {"compare", no_argument, 0, O_CMP}, {"verify-cost", no_argument, 0, O_VCOST},
        {"draft-source", required_argument, 0, O_DSRC}, {"draft-adapter", required_argument, 0, O_DADAPT},
        {"draft-vocab", required_argument, 0, O_DVOCAB}, {"streams", required_argument, 0, O_STREAMS},
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
        case O_STRAT: o.strategy = optarg; break;
        case O_EXIT: if (!parse_int(optarg, -1000000, 1000000, &o.exit_layer)) return die_usage("--exit-layer needs an integer, got '%s'", optarg); break;
        case O_NSPEC: {
            kcol k;
            if (!parse_k(optarg, &k)) return die_usage("--num-speculations needs an integer or auto, got '%s'", optarg);
            o.num_speculations = k.k;
            o.auto_speculations = k.autok;
            break;
        }
        case O_DSRC: o.draft_source = optarg; break;
        case O_DADAPT: o.draft_adapter = optarg; break;
        case O_DVOCAB: if (!parse_int(optarg, -1000000000, 1000000000, &o.draft_vocab)) return die_usage("--draft-vocab needs an integer, got '%s'", optarg); break;
        case O_DMINP: if (!parse_float(optarg, &o.draft_min_p)) return die_usage("--draft-min-p needs a number in [0, 1], got '%s'", optarg); break;
        case O_SWE: o.sweep_exit = optarg; break;
        case O_SWK: o.sweep_k = optarg; break;
        case O_CSV: o.csv = optarg; break;
        case O_HEAT: o.heatmap = optarg; break;
        case O_CMP: o.compare = true; break;
        case O_VCOST: o.verify_cost = true; break;
        case O_STREAMS: if (!parse_int(optarg, 1, 1024, &o.streams)) return die_usage("--streams needs an integer in [1, 1024], got '%s'", optarg); break;
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
    ls_strategy strategy = LS_STRATEGY_AUTOREGRESSIVE;
    if (o.strategy && ls_strategy_parse(o.strategy, &strategy, &err) != LS_OK)
        return die_usage("--generation-strategy: %s", err.msg);
    ls_draft_source draft_source = LS_DRAFT_AUTO;
    if (o.draft_source && ls_draft_source_parse(o.draft_source, &draft_source, &err) != LS_OK)
        return die_usage("--draft-source: %s", err.msg);
    int sweep_e[3] = {0, 0, 1};
    kcol *sweep_k = NULL;
    int n_sweep_k = 0;
    if ((o.sweep_exit != NULL) != (o.sweep_k != NULL))
        return die_usage("%s", "--sweep-exit and --sweep-k go together");
    if (o.sweep_exit && !parse_range(o.sweep_exit, sweep_e))
        return die_usage("%s", "--sweep-exit A:B[:S] takes an integer range with A <= B and S >= 1");
    if (o.sweep_k && !parse_k_list(o.sweep_k, &sweep_k, &n_sweep_k))
        return die_usage("%s", "--sweep-k takes a comma-separated list of K, A:B[:S] (A <= B, S >= 1) and auto, "
                               "at most 64 values, e.g. 1:8,auto");

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
    ls_adapter *adapter = NULL;
    char *prompt_buf = NULL;
    int32_t *prompt_ids = NULL, *out_ids = NULL;
    ls_ctx *ctx = NULL;
    ls_kv *kv = NULL;
    char *text = NULL;

    if (o.draft_adapter && ls_adapter_load(o.draft_adapter, model, &adapter, &err) != LS_OK) {
        fprintf(stderr, "layerskip-bench: --draft-adapter: %s\n", err.msg); /* the message names the file */
        rc = 1;
        goto done;
    }
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
    if (!o.sweep_exit && !o.compare && n + o.n_predict > o.ctx) {
        fprintf(stderr, "layerskip-bench: prompt (%lld tokens) + -n %d exceeds --ctx %d; raise --ctx or lower -n\n",
                (long long)n, o.n_predict, o.ctx);
        rc = 1;
        goto done;
    }
    if (o.exit_layer == -1000001) /* not given: the adapter's E (its block drafts only from there), else L/4 */
        o.exit_layer = adapter ? ls_adapter_exit_layer(adapter) : cfg->n_layers / 4 > 0 ? cfg->n_layers / 4 : 1;
    ls_gen_params gp = {.n_predict = o.n_predict, .sampling = o.sampling, .ignore_eog = o.ignore_eos,
                        .strategy = strategy, .exit_layer = o.exit_layer,
                        .num_speculations = o.num_speculations, .draft_min_p = o.draft_min_p,
                        .draft_source = draft_source, .adapter = adapter, .draft_vocab = o.draft_vocab,
                        .auto_speculations = o.auto_speculations};
    if (o.sweep_exit || o.compare) gp.strategy = LS_STRATEGY_SELF_SPECULATIVE;
    int max_k = gp.num_speculations;
    /* a sweep: both ends of E with every k */
    for (int e = 0; e < (o.sweep_exit ? 2 : 1); e++) {
        for (int j = 0; j < (o.sweep_exit ? n_sweep_k : 1); j++) {
            ls_gen_params c = gp;
            if (o.sweep_exit) {
                c.exit_layer = sweep_e[e];
                c.num_speculations = sweep_k[j].k;
                c.auto_speculations = sweep_k[j].autok;
                if (j == 0 || c.num_speculations > max_k) max_k = c.num_speculations;
            }
            if (ls_gen_params_check(&c, cfg->n_layers, &err) != LS_OK) {
                fprintf(stderr, "layerskip-bench: %s\n(run layerskip-bench --help for the options)\n", err.msg);
                rc = 2;
                goto done;
            }
        }
    }
    if (ls_ctx_create(model, o.threads, o.batch > max_k + 1 ? o.batch : max_k + 1, &ctx, &err) != LS_OK ||
        ls_kv_create(model, 0, cfg->n_layers, o.ctx, &kv, &err) != LS_OK) {
        fprintf(stderr, "layerskip-bench: %s\n", err.msg);
        rc = 1;
        goto done;
    }
    ls_ctx_set_exact(ctx, !o.fast_math);
    if (o.verify_cost) {
        rc = run_verify_cost(&o, ctx, kv, model, prompt_ids, (int)n, &gp);
        goto done;
    }
    if (o.streams) {
        rc = run_streams(&o, ctx, model, prompt_ids, (int)n, &gp);
        goto done;
    }
    if (o.sweep_exit || o.compare) {
        rc = o.sweep_exit ? run_sweep(&o, ctx, kv, tok, prompt, add_bos, &gp, sweep_e, sweep_k, n_sweep_k)
                          : run_compare(&o, ctx, kv, tok, prompt, add_bos, &gp);
        goto done;
    }
    out_ids = malloc(sizeof(int32_t) * (size_t)(o.n_predict + 1));
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
        cJSON_AddNumberToObject(j, "time_per_token_ms", stats.n_generated ? dec_ms / stats.n_generated : 0);
        cJSON_AddNumberToObject(j, "load_ms", load_ms);
        cJSON_AddNumberToObject(j, "peak_rss_mb", peak_rss_mb());
        cJSON_AddNumberToObject(j, "threads", o.threads);
        cJSON_AddStringToObject(j, "kernels", ls_kernel_path());
        cJSON_AddNumberToObject(j, "runs", o.runs);
        cJSON_AddStringToObject(j, "strategy", ls_strategy_name(gp.strategy));
        cJSON_AddNumberToObject(j, "exit_layer", gp.strategy == LS_STRATEGY_AUTOREGRESSIVE ? cfg->n_layers : gp.exit_layer);
        cJSON_AddNumberToObject(j, "num_speculations", gp.strategy == LS_STRATEGY_SELF_SPECULATIVE ? gp.num_speculations : 0);
        add_draft_json(j, &gp);
        cJSON_AddNumberToObject(j, "drafted", (double)stats.drafted);
        cJSON_AddNumberToObject(j, "accepted", (double)stats.accepted);
        cJSON_AddNumberToObject(j, "acceptance_rate", stats.drafted ? (double)stats.accepted / (double)stats.drafted : 0);
        cJSON_AddNumberToObject(j, "rounds", (double)stats.rounds);
        cJSON *hist = cJSON_AddArrayToObject(j, "accepted_per_round");
        int last = 0;
        for (int i = 0; i <= LS_MAX_SPECULATIONS; i++) if (stats.accept_hist[i]) last = i;
        for (int i = 0; stats.rounds && i <= last; i++) cJSON_AddItemToArray(hist, cJSON_CreateNumber((double)stats.accept_hist[i]));
        add_spec_json(j, &stats);
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
        char kt[32];
        k_text(&gp, kt, sizeof kt);
        if (gp.strategy == LS_STRATEGY_EARLY_EXIT)
            fprintf(stderr, "%s E=%d: %.2f ms/token\n", ls_strategy_name(gp.strategy), gp.exit_layer,
                    stats.n_generated ? dec_ms / stats.n_generated : 0);
        if (gp.strategy == LS_STRATEGY_SELF_SPECULATIVE) {
            fprintf(stderr, "%s E=%d %s: %.2f ms/token, drafted %lld, accepted %lld (%.1f%%), %lld rounds\n",
                    ls_strategy_name(gp.strategy), gp.exit_layer, kt,
                    stats.n_generated ? dec_ms / stats.n_generated : 0, (long long)stats.drafted,
                    (long long)stats.accepted, stats.drafted ? 100.0 * stats.accepted / stats.drafted : 0,
                    (long long)stats.rounds);
            print_spec_stats(stderr, &gp, &stats);
        }
    }
done:
    free(text);
    free(prompt_buf);
    free(prompt_ids);
    free(out_ids);
    ls_kv_free(kv);
    ls_ctx_free(ctx);
    ls_adapter_free(adapter); /* before the model it was made for */
    ls_model_free(model);
    free(sweep_k);
    return rc;
}
