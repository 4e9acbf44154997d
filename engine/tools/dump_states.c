/* dump_states.c: training data for draft adapters (docs/ADAPTER.md,
 * tools/train/adapter.py). Tokenizes text documents, packs them into
 * sequences of T tokens, runs each sequence through the model and writes,
 * per position, the residual stream after layers [0, E) for every requested
 * exit E (float16), and the full model's top-K logits with the logsumexp of
 * all its logits (so the trainer can form the exact probability of each of
 * the K tokens).
 *
 * Packing: each document is tokenized without BOS/EOS (parse_special off);
 * documents are concatenated in the given order, each preceded by one
 * separator token (the vocabulary's BOS, else its EOS), and the stream is cut
 * into consecutive sequences of T tokens; the tail shorter than T is dropped.
 * Each sequence is run on its own from position 0 (fresh cache).
 *
 * --tokens-file FILE instead takes ready token sequences, one per line (ids
 * separated by spaces, e.g. a chat prompt and the model's answer), not packed:
 * each line is one record, trimmed to T tokens; a shorter one is run over its
 * own length only and padded to T with token id -1, zero states, zero top-K
 * ids and logits and lse 0 (readers mask positions whose token is -1).
 *
 * Output file, little endian:
 *   header, 128 bytes:
 *     char     magic[8]      "LSSTATE1"
 *     uint32   version       1
 *     uint32   n_seq         sequences written
 *     uint32   T             tokens per sequence
 *     uint32   dim
 *     uint32   n_vocab
 *     uint32   n_layers      L
 *     uint32   K             top-K entries per position
 *     uint32   n_exits
 *     uint32   exits[16]     E values, increasing, 1 <= E < L (unused: 0)
 *     uint32   sep_token     the separator token id
 *     uint32   reserved[5]   0
 *   then n_seq records, each:
 *     int32    tokens[T]
 *     uint16   states[n_exits][T][dim]   float16: the output of layer E-1
 *     int32    topk_ids[T][K]            full model, by decreasing logit
 *     float32  topk_logits[T][K]
 *     float32  lse[T]                    log(sum(exp(logits))) over the vocab
 * Position t's logits predict token t+1 (the last position's have no target
 * in the sequence but are written all the same). */
#include "layerskip/engine.h"
#include "layerskip/tokenizer.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_EXITS 16

typedef struct opts {
    const char *model;
    const char *list;  /* file with one document path per line */
    const char *tokens_file; /* one token-id sequence per line */
    const char *out;
    char **files;      /* positional document paths */
    int n_files;
    int T, K, threads, max_seq;
    int exits[MAX_EXITS];
    int n_exits;
    bool exact;
} opts;

static void usage(FILE *f) {
    fprintf(f,
            "usage: dump-states --model PATH --out FILE --exits E1,E2,.. [--list FILE] [DOC...]\n"
            "                   [--tokens-file FILE]\n"
            "                   [--seq-len T] [--topk K] [--max-seq N] [--threads N] [--exact]\n"
            "  --model PATH     GGUF file or Hugging Face directory\n"
            "  --out FILE       output (layout in the header comment of engine/tools/dump_states.c)\n"
            "  --exits LIST     exit layers E (comma separated, increasing, 1..L-1): the output of\n"
            "                   layer E-1 is saved for each\n"
            "  --list FILE      text file naming one document per line (added to DOC...)\n"
            "  --tokens-file F  token-id sequences, one per line (not packed; shorter ones padded\n"
            "                   with id -1, longer ones trimmed to T); instead of documents\n"
            "  --seq-len T      tokens per sequence (default 256)\n"
            "  --topk K         full-model logits kept per position (default 32)\n"
            "  --max-seq N      stop after N sequences (default: all)\n"
            "  --threads N      worker threads (default 2)\n"
            "  --exact          exact mode (llama.cpp's order); default is fast math\n");
}

static int parse_int(const char *flag, const char *s, int lo, int hi, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end || errno || v < lo || v > hi) {
        fprintf(stderr, "error: %s '%s': give a whole number from %d to %d\n", flag, s, lo, hi);
        return -1;
    }
    *out = (int)v;
    return 0;
}

static int parse_opts(int argc, char **argv, opts *o) {
    *o = (opts){.T = 256, .K = 32, .threads = 2, .max_seq = 0};
    o->files = calloc((size_t)argc, sizeof *o->files);
    if (!o->files) return -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); exit(0); }
        else if (!strcmp(a, "--exact")) o->exact = true;
        else if (!strcmp(a, "--model") && has) o->model = argv[++i];
        else if (!strcmp(a, "--list") && has) o->list = argv[++i];
        else if (!strcmp(a, "--tokens-file") && has) o->tokens_file = argv[++i];
        else if (!strcmp(a, "--out") && has) o->out = argv[++i];
        else if (!strcmp(a, "--seq-len") && has) { if (parse_int(a, argv[++i], 2, 1 << 16, &o->T)) return -1; }
        else if (!strcmp(a, "--topk") && has) { if (parse_int(a, argv[++i], 1, 1024, &o->K)) return -1; }
        else if (!strcmp(a, "--max-seq") && has) { if (parse_int(a, argv[++i], 1, 1 << 30, &o->max_seq)) return -1; }
        else if (!strcmp(a, "--threads") && has) { if (parse_int(a, argv[++i], 1, 256, &o->threads)) return -1; }
        else if (!strcmp(a, "--exits") && has) {
            const char *p = argv[++i];
            o->n_exits = 0;
            while (*p) {
                char *end;
                long v = strtol(p, &end, 10);
                if (end == p || v < 1 || o->n_exits == MAX_EXITS ||
                    (o->n_exits > 0 && v <= o->exits[o->n_exits - 1])) {
                    fprintf(stderr, "error: --exits '%s': give up to %d increasing layer numbers >= 1, e.g. 4,6,8\n",
                            argv[i], MAX_EXITS);
                    return -1;
                }
                o->exits[o->n_exits++] = (int)v;
                p = end;
                if (*p == ',') p++;
                else if (*p) {
                    fprintf(stderr, "error: --exits '%s': separate the layers by commas\n", argv[i]);
                    return -1;
                }
            }
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "error: unknown option or missing value: '%s' (see --help)\n", a);
            return -1;
        } else {
            o->files[o->n_files++] = argv[i];
        }
    }
    if (!o->model || !o->out || o->n_exits == 0 || (!o->list && o->n_files == 0 && !o->tokens_file)) {
        fprintf(stderr, "error: --model, --out, --exits and at least one document (--list or DOC) or --tokens-file "
                        "are required (see --help)\n");
        return -1;
    }
    if (o->tokens_file && (o->list || o->n_files)) {
        fprintf(stderr, "error: --tokens-file takes no documents (--list, DOC)\n");
        return -1;
    }
    return 0;
}

static char *read_all(const char *path, size_t *len_out) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, len = 0, r;
    char *buf = malloc(cap);
    while (buf && (r = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += r;
        if (len + 1 == cap) {
            char *t = realloc(buf, cap * 2);
            if (!t) { free(buf); buf = NULL; break; }
            buf = t;
            cap *= 2;
        }
    }
    fclose(f);
    if (buf) buf[len] = 0;
    *len_out = len;
    return buf;
}

/* growable int32 array */
typedef struct ivec { int32_t *v; size_t n, cap; } ivec;
static int ivec_reserve(ivec *a, size_t extra) {
    if (a->n + extra <= a->cap) return 0;
    size_t cap = a->cap ? a->cap : 4096;
    while (cap < a->n + extra) cap *= 2;
    int32_t *t = realloc(a->v, cap * sizeof *t);
    if (!t) return -1;
    a->v = t;
    a->cap = cap;
    return 0;
}

/* append one document's tokens (preceded by sep) to the stream */
static int add_document(const ls_tokenizer *tok, const char *path, int32_t sep, ivec *stream) {
    size_t len;
    char *text = read_all(path, &len);
    if (!text) {
        fprintf(stderr, "error: %s: cannot read: %s\n", path, strerror(errno));
        return -1;
    }
    int64_t need = -ls_tokenize(tok, text, len, false, false, NULL, 0);
    if (need < 0) need = 0;
    if (ivec_reserve(stream, (size_t)need + 1)) { free(text); return -1; }
    stream->v[stream->n++] = sep;
    int64_t got = ls_tokenize(tok, text, len, false, false, stream->v + stream->n, need);
    free(text);
    if (got < 0) {
        fprintf(stderr, "error: %s: tokenization failed\n", path);
        return -1;
    }
    stream->n += (size_t)got;
    return 0;
}

/* top-K of row[0..n) by decreasing value (ties: lower id first) and logsumexp */
static void topk_row(const float *row, int n, int K, int32_t *ids, float *vals, float *lse) {
    int m = 0; /* entries held, sorted decreasing in vals/ids */
    float mx = -INFINITY;
    for (int i = 0; i < n; i++) {
        float x = row[i];
        if (x > mx) mx = x;
        if (m == K && !(x > vals[K - 1])) continue;
        int j = m < K ? m++ : K - 1;
        while (j > 0 && x > vals[j - 1]) {
            vals[j] = vals[j - 1];
            ids[j] = ids[j - 1];
            j--;
        }
        vals[j] = x;
        ids[j] = i;
    }
    double s = 0;
    for (int i = 0; i < n; i++) s += exp((double)(row[i] - mx));
    *lse = mx + (float)log(s);
}

int main(int argc, char **argv) {
    opts o;
    if (parse_opts(argc, argv, &o) != 0) return 2;
    ls_err err = {{0}};
    ls_model *model = NULL;
    ls_ctx *ctx = NULL;
    ls_kv *kv = NULL;
    ivec stream = {0};
    float *hidden = NULL, *logits = NULL, *vals = NULL, *lse = NULL;
    uint16_t *half = NULL;
    int32_t *ids = NULL;
    FILE *f = NULL;
    int rc = 1;

    if (ls_model_load(o.model, &model, &err) != LS_OK) {
        fprintf(stderr, "error: %s\n", err.msg);
        goto out;
    }
    const ls_config *cfg = ls_model_config(model);
    const ls_tokenizer *tok = ls_model_tokenizer(model);
    if (o.exits[o.n_exits - 1] >= cfg->n_layers) {
        fprintf(stderr, "error: --exits: every E must be below the model's %d layers\n", cfg->n_layers);
        goto out;
    }
    if (o.K > cfg->n_vocab) o.K = cfg->n_vocab;
    int32_t sep = ls_tokenizer_bos(tok) >= 0 ? ls_tokenizer_bos(tok) : ls_tokenizer_eos(tok);
    if (sep < 0) {
        fprintf(stderr, "error: the model's vocabulary has neither BOS nor EOS to separate documents\n");
        goto out;
    }

    /* documents: the list file's lines, then positional paths */
    int n_docs = 0;
    if (o.list) {
        size_t len;
        char *text = read_all(o.list, &len);
        if (!text) {
            fprintf(stderr, "error: --list %s: cannot read: %s\n", o.list, strerror(errno));
            goto out;
        }
        for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
            if (!*line) continue;
            if (add_document(tok, line, sep, &stream)) { free(text); goto out; }
            n_docs++;
        }
        free(text);
    }
    for (int i = 0; i < o.n_files; i++) {
        if (add_document(tok, o.files[i], sep, &stream)) goto out;
        n_docs++;
    }
    /* --tokens-file: each line one sequence, stored in the stream padded to T with -1 */
    size_t n_lines = 0;
    if (o.tokens_file) {
        size_t len;
        char *text = read_all(o.tokens_file, &len);
        if (!text) {
            fprintf(stderr, "error: --tokens-file %s: cannot read: %s\n", o.tokens_file, strerror(errno));
            goto out;
        }
        size_t lineno = 0;
        for (char *line = text; *line;) {
            char *nl = strchr(line, '\n');
            if (nl) *nl = 0;
            lineno++;
            char *p = line;
            while (*p == ' ' || *p == '\t' || *p == '\r') p++;
            if (*p) {
                if (ivec_reserve(&stream, (size_t)o.T)) { free(text); fprintf(stderr, "error: out of memory\n"); goto out; }
                int n = 0;
                while (*p) {
                    char *end;
                    errno = 0;
                    long v = strtol(p, &end, 10);
                    if (end == p || errno || v < 0 || v >= cfg->n_vocab) {
                        fprintf(stderr, "error: --tokens-file %s line %zu: bad token id near '%.20s'\n",
                                o.tokens_file, lineno, p);
                        free(text);
                        goto out;
                    }
                    if (n < o.T) stream.v[stream.n + (size_t)n++] = (int32_t)v;
                    p = end;
                    while (*p == ' ' || *p == '\t' || *p == '\r') p++;
                }
                for (int t = n; t < o.T; t++) stream.v[stream.n + (size_t)t] = -1;
                stream.n += (size_t)o.T;
                n_lines++;
            }
            if (!nl) break;
            line = nl + 1;
        }
        free(text);
    }
    size_t n_seq = stream.n / (size_t)o.T;
    if (o.max_seq && n_seq > (size_t)o.max_seq) n_seq = (size_t)o.max_seq;
    if (o.tokens_file)
        fprintf(stderr, "dump-states: %zu token sequences, padded/trimmed to %d\n", n_lines, o.T);
    else
        fprintf(stderr, "dump-states: %d documents, %zu tokens, %zu sequences of %d\n", n_docs, stream.n, n_seq, o.T);
    if (n_seq == 0) {
        fprintf(stderr, "error: fewer than %d tokens in the documents: nothing to write\n", o.T);
        goto out;
    }

    const int T = o.T, D = cfg->dim, V = cfg->n_vocab, K = o.K;
    if (ls_ctx_create(model, o.threads, T, &ctx, &err) != LS_OK ||
        ls_kv_create(model, 0, cfg->n_layers, T, &kv, &err) != LS_OK) {
        fprintf(stderr, "error: %s\n", err.msg);
        goto out;
    }
    ls_ctx_set_exact(ctx, o.exact);
    hidden = malloc((size_t)T * D * sizeof *hidden);
    logits = malloc((size_t)T * V * sizeof *logits);
    half = malloc((size_t)T * D * sizeof *half);
    ids = malloc((size_t)T * K * sizeof *ids);
    vals = malloc((size_t)T * K * sizeof *vals);
    lse = malloc((size_t)T * sizeof *lse);
    if (!hidden || !logits || !half || !ids || !vals || !lse) {
        fprintf(stderr, "error: out of memory\n");
        goto out;
    }
    f = fopen(o.out, "wb");
    if (!f) {
        fprintf(stderr, "error: --out %s: cannot create: %s\n", o.out, strerror(errno));
        goto out;
    }
    uint32_t hdr[32] = {0};
    memcpy(hdr, "LSSTATE1", 8);
    hdr[2] = 1;
    hdr[3] = 0; /* n_seq, patched at the end */
    hdr[4] = (uint32_t)T;
    hdr[5] = (uint32_t)D;
    hdr[6] = (uint32_t)V;
    hdr[7] = (uint32_t)cfg->n_layers;
    hdr[8] = (uint32_t)K;
    hdr[9] = (uint32_t)o.n_exits;
    for (int e = 0; e < o.n_exits; e++) hdr[10 + e] = (uint32_t)o.exits[e];
    hdr[26] = (uint32_t)sep;
    if (fwrite(hdr, sizeof hdr, 1, f) != 1) goto write_err;

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    size_t n_pos = 0;
    for (size_t s = 0; s < n_seq; s++) {
        const int32_t *tk = stream.v + s * (size_t)T;
        int n = T; /* real positions (the rest is -1 padding) */
        while (n > 0 && tk[n - 1] < 0) n--;
        n_pos += (size_t)n;
        ls_kv_truncate(kv, 0, cfg->n_layers, 0);
        if (fwrite(tk, sizeof *tk, (size_t)T, f) != (size_t)T) goto write_err;
        if (ls_embed(ctx, tk, n, hidden, &err) != LS_OK) goto engine_err;
        int l0 = 0;
        for (int e = 0; e <= o.n_exits; e++) {
            int l1 = e < o.n_exits ? o.exits[e] : cfg->n_layers;
            if (ls_forward(ctx, kv, l0, l1, 0, n, hidden, &err) != LS_OK) goto engine_err;
            l0 = l1;
            if (e == o.n_exits) break;
            for (size_t i = 0; i < (size_t)n * D; i++) half[i] = ls_f32_to_f16(hidden[i]);
            for (size_t i = (size_t)n * D; i < (size_t)T * D; i++) half[i] = 0;
            if (fwrite(half, sizeof *half, (size_t)T * D, f) != (size_t)T * D) goto write_err;
        }
        if (ls_exit_head(ctx, hidden, n, logits, &err) != LS_OK) goto engine_err;
        for (int t = 0; t < n; t++)
            topk_row(logits + (size_t)t * V, V, K, ids + (size_t)t * K, vals + (size_t)t * K, lse + t);
        for (size_t i = (size_t)n * K; i < (size_t)T * K; i++) { ids[i] = 0; vals[i] = 0; }
        for (int t = n; t < T; t++) lse[t] = 0;
        if (fwrite(ids, sizeof *ids, (size_t)T * K, f) != (size_t)T * K ||
            fwrite(vals, sizeof *vals, (size_t)T * K, f) != (size_t)T * K ||
            fwrite(lse, sizeof *lse, (size_t)T, f) != (size_t)T)
            goto write_err;
        if ((s + 1) % 20 == 0 || s + 1 == n_seq) {
            clock_gettime(CLOCK_MONOTONIC, &t1);
            double dt = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
            fprintf(stderr, "dump-states: %zu/%zu sequences, %.0f tok/s\n", s + 1, n_seq,
                    (double)n_pos / dt);
        }
    }
    hdr[3] = (uint32_t)n_seq;
    if (fseek(f, 0, SEEK_SET) != 0 || fwrite(hdr, sizeof hdr, 1, f) != 1) goto write_err;
    if (fclose(f) != 0) {
        f = NULL;
        goto write_err;
    }
    f = NULL;
    printf("n_seq %zu T %d dim %d K %d exits %d tokens %zu\n", n_seq, T, D, K, o.n_exits, n_pos);
    rc = 0;
    goto out;
engine_err:
    fprintf(stderr, "error: %s\n", err.msg);
    goto out;
write_err:
    fprintf(stderr, "error: --out %s: write failed: %s\n", o.out, strerror(errno));
out:
    if (f) fclose(f);
    free(hidden);
    free(logits);
    free(half);
    free(ids);
    free(vals);
    free(lse);
    free(stream.v);
    free(o.files);
    ls_kv_free(kv);
    ls_ctx_free(ctx);
    ls_model_free(model);
    return rc;
}
