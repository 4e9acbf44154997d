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
    "      --exit-layer E        draft/exit after layers [0, E), 1 <= E <= L-1 (default L/4)\n"
    "      --num-speculations K  drafts per verification round, 1..32 (default 4)\n"
    "      --draft-min-p P       stop drafting a round when the draft's top probability < P\n"
    "                            (0 = off; default 0.95, the best measured in BENCHMARKS.md)\n"
    "      --sweep-exit A:B[:S]  sweep E over A..B (step S) x --sweep-k over the prompts\n"
    "      --sweep-k A:B         (one per line of --prompt-file, or --prompt); prints a grid of\n"
    "                            acceptance and tok/s, writes --csv and --heatmap\n"
    "      --csv FILE            sweep table (default sweep.csv)\n"
    "      --heatmap FILE        sweep heat map, PNG (default sweep.png)\n"
    "      --compare             run autoregressive and self_speculative (greedy) on the prompts,\n"
    "                            report the speedup and whether the outputs matched\n"
    "      --verify-cost         time one pass of layers [E, L) over k+1 positions against one\n"
    "                            position, for k = 0..--num-speculations (medians of --runs)\n"
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
    "threads, runs, strategy, exit_layer, num_speculations, drafted, accepted, acceptance_rate,\n"
    "rounds, accepted_per_round (histogram: rounds that accepted 0, 1, ... drafts).\n"
    "decode_tok_s counts generated tokens after the first (whose logits come from the\n"
    "prompt pass) over decode_ms; with --runs R, timings are medians over R runs.\n";

typedef struct opts {
    const char *model, *prompt, *prompt_file, *tokenize;
    int n_predict, threads, ctx, batch, runs;
    bool json, no_bos, ignore_eos, fast_math, compare, verify_cost;
    const char *strategy, *sweep_exit, *sweep_k, *csv, *heatmap;
    int exit_layer, num_speculations;
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
    int64_t generated, drafted, accepted, rounds;
    double decode_ms;
} pass_result;

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
        res->drafted += st.drafted;
        res->accepted += st.accepted;
        res->rounds += st.rounds;
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
                     bool add_bos, const ls_gen_params *base, const int se[3], const int sk[3]) {
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
    int ne = (se[1] - se[0]) / se[2] + 1, nk = (sk[1] - sk[0]) / sk[2] + 1;
    int *ev = malloc(sizeof(int) * (size_t)ne), *kvals = malloc(sizeof(int) * (size_t)nk);
    for (int i = 0; i < ne; i++) ev[i] = se[0] + i * se[2];
    for (int j = 0; j < nk; j++) kvals[j] = sk[0] + j * sk[2];
    double *speed = malloc(sizeof(double) * (size_t)(ne * nk)), *acc = malloc(sizeof(double) * (size_t)(ne * nk));
    FILE *csv = fopen(o->csv, "w");
    if (!csv) {
        fprintf(stderr, "layerskip-bench: cannot write --csv %s: %s\n", o->csv, strerror(errno));
        rc = 1;
    } else {
        fprintf(csv, "exit_layer,num_speculations,acceptance_rate,tok_s,autoregressive_tok_s,speedup,drafted,accepted,rounds,outputs_match\n");
    }
    printf("%d prompts x %d tokens; autoregressive %.1f tok/s\n", ps.n, base->n_predict, tok_s(&arr));
    printf("%6s", "E \\ k");
    for (int j = 0; j < nk; j++) printf(" | %17d", kvals[j]);
    printf("\n");
    for (int i = 0; rc == 0 && i < ne; i++) {
        printf("%6d", ev[i]);
        for (int j = 0; j < nk; j++) {
            ls_gen_params gp = *base;
            gp.exit_layer = ev[i];
            gp.num_speculations = kvals[j];
            pass_result r;
            if (run_pass(ctx, kv, &ps, &gp, sp_out, sp_n, &r, &err) != LS_OK) {
                fprintf(stderr, "\nlayerskip-bench: %s\n", err.msg);
                rc = 1;
                break;
            }
            double a = r.drafted ? (double)r.accepted / (double)r.drafted : 0;
            double sp = tok_s(&arr) > 0 ? tok_s(&r) / tok_s(&arr) : 0;
            speed[i * nk + j] = sp;
            acc[i * nk + j] = a;
            bool match = base->sampling.temperature <= 0 && same_outputs(ar_out, ar_n, sp_out, sp_n, ps.n);
            printf(" | %4.0f%% %6.1f %4.2fx", 100 * a, tok_s(&r), sp);
            fflush(stdout);
            fprintf(csv, "%d,%d,%.4f,%.2f,%.2f,%.4f,%lld,%lld,%lld,%s\n", ev[i], kvals[j], a, tok_s(&r), tok_s(&arr), sp,
                    (long long)r.drafted, (long long)r.accepted, (long long)r.rounds,
                    base->sampling.temperature > 0 ? "n/a" : match ? "yes" : "no");
        }
        printf("\n");
    }
    if (csv) fclose(csv);
    if (rc == 0) {
        printf("cells: acceptance, tok/s, speedup over autoregressive\nwrote %s and %s\n", o->csv, o->heatmap);
        if (!ls_heatmap_png(o->heatmap, "speedup over autoregressive (E x k)", ev, ne, "E=", kvals, nk, "k", speed, 2, "x")) {
            fprintf(stderr, "layerskip-bench: cannot write --heatmap %s\n", o->heatmap);
            rc = 1;
        }
    }
    free(ev); free(kvals); free(speed); free(acc);
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
        double a = rs.drafted ? (double)rs.accepted / (double)rs.drafted : 0;
        if (o->json) {
            printf("{\"prompts\":%d,\"n_predict\":%d,\"exit_layer\":%d,\"num_speculations\":%d,"
                   "\"autoregressive_tok_s\":%.3f,\"self_speculative_tok_s\":%.3f,\"speedup\":%.4f,"
                   "\"acceptance_rate\":%.4f,\"outputs_differ\":%d}\n",
                   ps.n, base->n_predict, base->exit_layer, base->num_speculations, tok_s(&ra), tok_s(&rs),
                   tok_s(&ra) > 0 ? tok_s(&rs) / tok_s(&ra) : 0, a, differ);
        } else {
            printf("%d prompts x %d tokens, E=%d k=%d\n"
                   "autoregressive    %.1f tok/s\nself_speculative  %.1f tok/s (acceptance %.1f%%)\n"
                   "speedup %.2fx; greedy outputs %s (%d of %d prompts differ)\n",
                   ps.n, base->n_predict, base->exit_layer, base->num_speculations, tok_s(&ra), tok_s(&rs),
                   100 * a, tok_s(&ra) > 0 ? tok_s(&rs) / tok_s(&ra) : 0, differ ? "DIFFER" : "match", differ, ps.n);
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

int main(int argc, char **argv) {
    opts o = {.prompt = "The capital of France is", .n_predict = 64, .threads = 2,
              .ctx = 2048, .batch = 256, .runs = 1, .exit_layer = -1000001, .num_speculations = 4, .draft_min_p = 0.95f,
              .csv = "sweep.csv", .heatmap = "sweep.png"};
    ls_sampling_default(&o.sampling);
    enum { O_TEMP = 1000, O_TOPK, O_TOPP, O_MINP, O_REP, O_REPN, O_SEED, O_RUNS, O_JSON,
           O_TOKENIZE, O_NOBOS, O_IGNEOS, O_FAST, O_STRAT, O_EXIT, O_NSPEC, O_DMINP, O_SWE, O_SWK, O_CSV,
           O_HEAT, O_CMP, O_VCOST };
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
        case O_NSPEC: if (!parse_int(optarg, -1000000, 1000000, &o.num_speculations)) return die_usage("--num-speculations needs an integer, got '%s'", optarg); break;
        case O_DMINP: if (!parse_float(optarg, &o.draft_min_p)) return die_usage("--draft-min-p needs a number in [0, 1], got '%s'", optarg); break;
        case O_SWE: o.sweep_exit = optarg; break;
        case O_SWK: o.sweep_k = optarg; break;
        case O_CSV: o.csv = optarg; break;
        case O_HEAT: o.heatmap = optarg; break;
        case O_CMP: o.compare = true; break;
        case O_VCOST: o.verify_cost = true; break;
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
    int sweep_e[3] = {0, 0, 1}, sweep_k[3] = {0, 0, 1};
    if ((o.sweep_exit != NULL) != (o.sweep_k != NULL))
        return die_usage("%s", "--sweep-exit and --sweep-k go together");
    if (o.sweep_exit && (!parse_range(o.sweep_exit, sweep_e) || !parse_range(o.sweep_k, sweep_k)))
        return die_usage("%s", "--sweep-exit A:B[:S] and --sweep-k A:B[:S] take integer ranges with A <= B and S >= 1");

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
    if (!o.sweep_exit && !o.compare && n + o.n_predict > o.ctx) {
        fprintf(stderr, "layerskip-bench: prompt (%lld tokens) + -n %d exceeds --ctx %d; raise --ctx or lower -n\n",
                (long long)n, o.n_predict, o.ctx);
        rc = 1;
        goto done;
    }
    if (o.exit_layer == -1000001) o.exit_layer = cfg->n_layers / 4 > 0 ? cfg->n_layers / 4 : 1; /* not given */
    ls_gen_params gp = {.n_predict = o.n_predict, .sampling = o.sampling, .ignore_eog = o.ignore_eos,
                        .strategy = strategy, .exit_layer = o.exit_layer,
                        .num_speculations = o.num_speculations, .draft_min_p = o.draft_min_p};
    if (o.sweep_exit || o.compare) gp.strategy = LS_STRATEGY_SELF_SPECULATIVE;
    if (o.sweep_exit) {
        gp.exit_layer = sweep_e[0];
        gp.num_speculations = sweep_k[0];
    }
    for (int pass = 0; pass < (o.sweep_exit ? 2 : 1); pass++) { /* both ends of a sweep */
        if (pass) { gp.exit_layer = sweep_e[1]; gp.num_speculations = sweep_k[1]; }
        if (ls_gen_params_check(&gp, cfg->n_layers, &err) != LS_OK) {
            fprintf(stderr, "layerskip-bench: %s\n(run layerskip-bench --help for the options)\n", err.msg);
            rc = 2;
            goto done;
        }
    }
    int max_k = o.sweep_exit ? sweep_k[1] : gp.num_speculations;
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
    if (o.sweep_exit || o.compare) {
        rc = o.sweep_exit ? run_sweep(&o, ctx, kv, tok, prompt, add_bos, &gp, sweep_e, sweep_k)
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
        cJSON_AddNumberToObject(j, "runs", o.runs);
        cJSON_AddStringToObject(j, "strategy", ls_strategy_name(gp.strategy));
        cJSON_AddNumberToObject(j, "exit_layer", gp.strategy == LS_STRATEGY_AUTOREGRESSIVE ? cfg->n_layers : gp.exit_layer);
        cJSON_AddNumberToObject(j, "num_speculations", gp.strategy == LS_STRATEGY_SELF_SPECULATIVE ? gp.num_speculations : 0);
        cJSON_AddNumberToObject(j, "drafted", (double)stats.drafted);
        cJSON_AddNumberToObject(j, "accepted", (double)stats.accepted);
        cJSON_AddNumberToObject(j, "acceptance_rate", stats.drafted ? (double)stats.accepted / (double)stats.drafted : 0);
        cJSON_AddNumberToObject(j, "rounds", (double)stats.rounds);
        cJSON *hist = cJSON_AddArrayToObject(j, "accepted_per_round");
        int last = 0;
        for (int i = 0; i <= LS_MAX_SPECULATIONS; i++) if (stats.accept_hist[i]) last = i;
        for (int i = 0; stats.rounds && i <= last; i++) cJSON_AddItemToArray(hist, cJSON_CreateNumber((double)stats.accept_hist[i]));
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
        if (gp.strategy != LS_STRATEGY_AUTOREGRESSIVE)
            fprintf(stderr, "%s E=%d k=%d: %.2f ms/token, drafted %lld, accepted %lld (%.1f%%), %lld rounds\n",
                    ls_strategy_name(gp.strategy), gp.exit_layer, gp.num_speculations,
                    stats.n_generated ? dec_ms / stats.n_generated : 0, (long long)stats.drafted,
                    (long long)stats.accepted, stats.drafted ? 100.0 * stats.accepted / stats.drafted : 0,
                    (long long)stats.rounds);
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
