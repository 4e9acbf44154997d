/* dump_logits.c: run token ids through a model and write the logits, so that
 * another implementation (the PyTorch trainer in tools/train) can check the
 * engine's forward pass on the same weights, per exit layer if asked.
 *
 * Output: raw little-endian float32, no header. Without --exits: n x n_vocab
 * (the full model's logits at each position). With --exits: L x n x n_vocab,
 * block l (0-based) holding the exit head (final norm + LM head) applied to
 * the output of layer l, so the last block equals the full model's logits.
 * A one-line summary goes to stdout: "n_tokens N n_vocab V n_layers L blocks B". */
#include "layerskip/engine.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct opts {
    const char *model;
    const char *tokens;      /* comma/space separated ids */
    const char *tokens_file; /* same, in a file */
    const char *out;
    bool exits;
    int threads;
} opts;

static void usage(FILE *f) {
    fprintf(f,
            "usage: dump-logits --model PATH (--tokens IDS | --tokens-file FILE) --out FILE [--exits] [--threads N]\n"
            "  --model PATH        GGUF file or Hugging Face directory\n"
            "  --tokens IDS        token ids separated by commas or spaces, e.g. \"0,412,77\"\n"
            "  --tokens-file FILE  the same, read from a file\n"
            "  --out FILE          where the float32 logits go (n x n_vocab, or L x n x n_vocab with --exits)\n"
            "  --exits             the exit head after every layer, not only the last\n"
            "  --threads N         worker threads (default 1)\n");
}

/* ids from text: integers separated by commas/whitespace. Returns the count,
 * or -1 with a message naming the offending text. */
static int64_t parse_ids(const char *what, const char *s, int32_t **out) {
    size_t cap = 64, n = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    if (!ids) return -1;
    const char *p = s;
    for (;;) {
        while (*p == ',' || *p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
        if (!*p) break;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > INT32_MAX) {
            fprintf(stderr, "error: %s: '%.20s' is not a token id (non-negative integers separated by commas or spaces)\n",
                    what, p);
            free(ids);
            return -1;
        }
        if (n == cap) {
            int32_t *t = realloc(ids, 2 * cap * sizeof *ids);
            if (!t) { free(ids); return -1; }
            ids = t;
            cap *= 2;
        }
        ids[n++] = (int32_t)v;
        p = end;
    }
    *out = ids;
    return (int64_t)n;
}

static char *read_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    size_t r;
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
    return buf;
}

static int parse_opts(int argc, char **argv, opts *o) {
    *o = (opts){.threads = 1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); exit(0); }
        else if (!strcmp(a, "--exits")) o->exits = true;
        else if (!strcmp(a, "--model") && has) o->model = argv[++i];
        else if (!strcmp(a, "--tokens") && has) o->tokens = argv[++i];
        else if (!strcmp(a, "--tokens-file") && has) o->tokens_file = argv[++i];
        else if (!strcmp(a, "--out") && has) o->out = argv[++i];
        else if (!strcmp(a, "--threads") && has) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 1 || v > 256) {
                fprintf(stderr, "error: --threads '%s': give a whole number from 1 to 256\n", argv[i]);
                return -1;
            }
            o->threads = (int)v;
        } else {
            fprintf(stderr, "error: unknown option or missing value: '%s' (see --help)\n", a);
            return -1;
        }
    }
    if (!o->model || !o->out || (!o->tokens == !o->tokens_file)) {
        fprintf(stderr, "error: --model, --out and exactly one of --tokens / --tokens-file are required (see --help)\n");
        return -1;
    }
    return 0;
}

int main(int argc, char **argv) {
    opts o;
    if (parse_opts(argc, argv, &o) != 0) return 2;
    int32_t *ids = NULL;
    int64_t n;
    if (o.tokens) {
        n = parse_ids("--tokens", o.tokens, &ids);
    } else {
        char *text = read_file(o.tokens_file);
        if (!text) {
            fprintf(stderr, "error: --tokens-file %s: cannot read: %s\n", o.tokens_file, strerror(errno));
            return 1;
        }
        n = parse_ids(o.tokens_file, text, &ids);
        free(text);
    }
    if (n < 0) return 2;
    if (n == 0) {
        fprintf(stderr, "error: no token ids given: pass at least one with --tokens or --tokens-file\n");
        free(ids);
        return 2;
    }

    ls_err err = {{0}};
    ls_model *model = NULL;
    ls_ctx *ctx = NULL;
    ls_kv *kv = NULL;
    float *hidden = NULL, *logits = NULL;
    FILE *f = NULL;
    int rc = 1;
    if (ls_model_load(o.model, &model, &err) != LS_OK) {
        fprintf(stderr, "error: %s\n", err.msg);
        goto out;
    }
    const ls_config *cfg = ls_model_config(model);
    if (n > INT32_MAX / 2 || (cfg->ctx_train > 0 && n > cfg->ctx_train)) {
        fprintf(stderr, "error: %lld token ids are more than the model's context (%d): pass fewer\n", (long long)n,
                cfg->ctx_train);
        goto out;
    }
    for (int64_t i = 0; i < n; i++)
        if (ids[i] >= cfg->n_vocab) {
            fprintf(stderr, "error: token id %d (position %lld) is not below the model's vocabulary size %d\n", ids[i],
                    (long long)i, cfg->n_vocab);
            goto out;
        }
    if (ls_ctx_create(model, o.threads, (int)n, &ctx, &err) != LS_OK ||
        ls_kv_create(model, 0, cfg->n_layers, (int)n, &kv, &err) != LS_OK) {
        fprintf(stderr, "error: %s\n", err.msg);
        goto out;
    }
    hidden = malloc((size_t)n * (size_t)cfg->dim * sizeof *hidden);
    logits = malloc((size_t)n * (size_t)cfg->n_vocab * sizeof *logits);
    if (!hidden || !logits) {
        fprintf(stderr, "error: out of memory for %lld positions\n", (long long)n);
        goto out;
    }
    f = fopen(o.out, "wb");
    if (!f) {
        fprintf(stderr, "error: --out %s: cannot create: %s\n", o.out, strerror(errno));
        goto out;
    }
    if (ls_embed(ctx, ids, (int)n, hidden, &err) != LS_OK) {
        fprintf(stderr, "error: %s\n", err.msg);
        goto out;
    }
    /* one layer at a time when every exit is wanted: the same calls the
     * drafter makes, so the test covers the early-exit path itself */
    int step = o.exits ? 1 : cfg->n_layers;
    int blocks = 0;
    for (int l0 = 0; l0 < cfg->n_layers; l0 += step) {
        if (ls_forward(ctx, kv, l0, l0 + step, 0, (int)n, hidden, &err) != LS_OK ||
            ls_exit_head(ctx, hidden, (int)n, logits, &err) != LS_OK) {
            fprintf(stderr, "error: %s\n", err.msg);
            goto out;
        }
        size_t cnt = (size_t)n * (size_t)cfg->n_vocab;
        if (fwrite(logits, sizeof *logits, cnt, f) != cnt) {
            fprintf(stderr, "error: --out %s: write failed: %s\n", o.out, strerror(errno));
            goto out;
        }
        blocks++;
    }
    if (fclose(f) != 0) {
        f = NULL;
        fprintf(stderr, "error: --out %s: write failed: %s\n", o.out, strerror(errno));
        goto out;
    }
    f = NULL;
    printf("n_tokens %lld n_vocab %d n_layers %d blocks %d\n", (long long)n, cfg->n_vocab, cfg->n_layers, blocks);
    rc = 0;
out:
    if (f) fclose(f);
    free(hidden);
    free(logits);
    ls_kv_free(kv);
    ls_ctx_free(ctx);
    ls_model_free(model);
    free(ids);
    return rc;
}
