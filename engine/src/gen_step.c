/* gen_step.c: generations advanced step by step, many at once (ls_gen_*,
 * generate.h). A step gives every unfinished generation its next work, a
 * slice of its prompt or one decode token, and runs all of it through one
 * ls_forward_multi per layer range and one exit-head call, so each weight is
 * read once per step for every request. Sampling, emission and the finish
 * rules are ls_generate's (generate.c: ls_gen_emit, the same rng and
 * history), and in exact mode a row's result does not depend on its batch,
 * so every generation's output is token for token what ls_generate gives
 * it alone. */
#include "generate_internal.h"

#include <stdlib.h>
#include <string.h>

struct ls_gen {
    ls_gen_run r;
    ls_gen_params p;  /* a copy: the caller's may go away */
    int32_t *prompt;  /* (n_prompt) */
    int n_prompt;
    int l1;           /* layers run: L (autoregressive) or E (early exit) */
    int pos;          /* positions cached */
    int32_t next;     /* decode phase: the emitted token to run next */
    bool done;
    ls_status status; /* of the step that ended it */
    double t_first;   /* first step's start (ls_time_ms) */
    ls_dist dist;
};

ls_status ls_gen_create(const ls_model *m, ls_kv *kv, const int32_t *prompt, int n_prompt, const ls_gen_params *p,
                        int32_t *out_tokens, ls_token_cb cb, void *user, ls_gen_stats *stats, ls_gen **out,
                        ls_err *err) {
    *out = NULL;
    const ls_config *cfg = ls_model_config(m);
    ls_status st = ls_gen_params_check(p, cfg->n_layers, err);
    if (st != LS_OK) return st;
    if (p->strategy == LS_STRATEGY_SELF_SPECULATIVE)
        return ls_err_set(err, LS_ERR_UNSUPPORTED,
                          "self_speculative generations are not stepped in batches yet: run them with ls_generate");
    if (n_prompt < 1) return ls_err_set(err, LS_ERR_INVALID, "empty prompt: nothing to process");
    if (n_prompt > ls_kv_n_ctx(kv))
        return ls_err_set(err, LS_ERR_RANGE, "prompt of %d tokens does not fit the context of %d (raise --ctx)",
                          n_prompt, ls_kv_n_ctx(kv));
    for (int i = 0; i < n_prompt; i++)
        if (prompt[i] < 0 || prompt[i] >= cfg->n_vocab)
            return ls_err_set(err, LS_ERR_INVALID, "token id %d is outside the vocabulary [0, %d)", prompt[i],
                              cfg->n_vocab);
    ls_gen *g = calloc(1, sizeof *g);
    if (!g) return ls_err_set(err, LS_ERR_NOMEM, "out of memory");
    g->p = *p;
    g->n_prompt = n_prompt;
    g->l1 = p->strategy == LS_STRATEGY_EARLY_EXIT ? p->exit_layer : cfg->n_layers;
    g->prompt = malloc(sizeof(int32_t) * (size_t)n_prompt);
    int32_t *history = malloc(sizeof(int32_t) * ((size_t)n_prompt + (size_t)p->n_predict + 1));
    if (!g->prompt || !history || ls_dist_init(&g->dist, cfg->n_vocab) != LS_OK) {
        free(g->prompt);
        free(history);
        free(g);
        return ls_err_set(err, LS_ERR_NOMEM, "out of memory");
    }
    memcpy(g->prompt, prompt, sizeof(int32_t) * (size_t)n_prompt);
    memcpy(history, prompt, sizeof(int32_t) * (size_t)n_prompt);
    memset(stats, 0, sizeof *stats);
    stats->n_prompt = n_prompt;
    stats->finish = LS_FINISH_LENGTH;
    g->r = (ls_gen_run){.kv = kv, .p = &g->p, .cfg = cfg, .tok = ls_model_tokenizer(m), .out = out_tokens,
                        .history = history, .n_hist = n_prompt, .cb = cb, .user = user, .stats = stats};
    ls_rng_seed(&g->r.rng, p->sampling.seed);
    ls_kv_truncate(kv, 0, cfg->n_layers, 0);
    g->t_first = -1;
    g->status = LS_OK;
    g->done = p->n_predict == 0;
    *out = g;
    return LS_OK;
}

void ls_gen_free(ls_gen *g) {
    if (!g) return;
    free(g->prompt);
    free(g->r.history);
    ls_dist_free(&g->dist);
    free(g);
}

bool ls_gen_done(const ls_gen *g) { return g->done; }
ls_status ls_gen_status(const ls_gen *g) { return g->status; }
int ls_gen_prompt_left(const ls_gen *g) { return g->pos < g->n_prompt ? g->n_prompt - g->pos : 0; }

/* the rows a generation runs this step (0 when done); chunk <= max_batch */
static int step_rows(const ls_gen *g, int chunk) {
    if (g->done) return 0;
    const int left = g->n_prompt - g->pos;
    if (left > 0) return left < chunk ? left : chunk;
    return 1;
}

static int by_l1_desc(const void *a, const void *b) {
    const ls_gen *x = *(ls_gen *const *)a, *y = *(ls_gen *const *)b;
    return (x->l1 < y->l1) - (x->l1 > y->l1);
}

ls_status ls_gen_step(ls_ctx *c, ls_gen **gens, int n_gens, int prefill_chunk, ls_err *err) {
    const ls_config *cfg = ls_model_config(ls_ctx_model(c));
    const int B = ls_ctx_max_batch(c), D = cfg->dim, V = cfg->n_vocab;
    if (prefill_chunk < 1) return ls_err_set(err, LS_ERR_INVALID, "prefill chunk %d is below 1", prefill_chunk);
    if (prefill_chunk > B) prefill_chunk = B;
    if (n_gens < 0) return ls_err_set(err, LS_ERR_INVALID, "negative generation count %d", n_gens);
    /* the active generations, deepest first: each layer range is then run by
     * a prefix of them, whose rows are contiguous */
    ls_gen **act = malloc(sizeof(ls_gen *) * (size_t)(n_gens ? n_gens : 1));
    ls_seq_slice *sl = malloc(sizeof(ls_seq_slice) * (size_t)(n_gens ? n_gens : 1));
    if (!act || !sl) {
        free(act);
        free(sl);
        return ls_err_set(err, LS_ERR_NOMEM, "out of memory");
    }
    int na = 0, rows = 0;
    for (int i = 0; i < n_gens; i++) {
        const int k = step_rows(gens[i], prefill_chunk);
        if (!k) continue;
        if (rows + k > B) continue; /* waits for the next step */
        act[na++] = gens[i];
        rows += k;
    }
    qsort(act, (size_t)na, sizeof *act, by_l1_desc);
    float *hidden = malloc(sizeof(float) * (size_t)(rows ? rows : 1) * D);
    float *hrow = malloc(sizeof(float) * (size_t)(na ? na : 1) * D);
    float *logits = malloc(sizeof(float) * (size_t)(na ? na : 1) * V);
    int *head_of = malloc(sizeof(int) * (size_t)(na ? na : 1)); /* logits row of act[i], -1 none */
    ls_status st = hidden && hrow && logits && head_of ? LS_OK : ls_err_set(err, LS_ERR_NOMEM, "out of memory");
    const double t0 = ls_time_ms();
    for (int i = 0, r = 0; st == LS_OK && i < na; i++) {
        ls_gen *g = act[i];
        if (g->t_first < 0) g->t_first = t0;
        const int k = step_rows(g, prefill_chunk);
        const int32_t *toks = g->pos < g->n_prompt ? g->prompt + g->pos : &g->next;
        st = ls_embed(c, toks, k, hidden + (size_t)r * D, err);
        sl[i] = (ls_seq_slice){.kv = g->r.kv, .pos = g->pos, .n = k};
        r += k;
    }
    /* layer ranges [b, next distinct l1): the generations with l1 > b */
    for (int lo = 0; st == LS_OK && na > 0 && lo < act[0]->l1;) {
        int cnt = 0, hi = act[0]->l1;
        while (cnt < na && act[cnt]->l1 > lo) cnt++;
        for (int i = 0; i < cnt; i++)
            if (act[i]->l1 < hi) hi = act[i]->l1;
        st = ls_forward_multi(c, sl, cnt, lo, hi, hidden, err);
        lo = hi;
    }
    /* one head call for the rows that need logits: decode rows and the last
     * prompt row */
    int nh = 0;
    for (int i = 0, r = 0; st == LS_OK && i < na; i++) {
        r += sl[i].n;
        head_of[i] = -1;
        if (sl[i].pos + sl[i].n < act[i]->n_prompt) continue;
        memcpy(hrow + (size_t)nh * D, hidden + (size_t)(r - 1) * D, sizeof(float) * D);
        head_of[i] = nh++;
    }
    if (st == LS_OK && nh) st = ls_exit_head(c, hrow, nh, logits, err);
    const double t1 = ls_time_ms();
    for (int i = 0; i < na; i++) {
        ls_gen *g = act[i];
        ls_gen_stats *s = g->r.stats;
        if (st != LS_OK) { /* the step failed: every generation in it ends with its error */
            g->done = true;
            g->status = st;
            continue;
        }
        const bool prefilling = g->pos < g->n_prompt;
        g->pos += sl[i].n;
        if (prefilling) s->prefill_ms = t1 - g->t_first;
        else s->decode_ms += t1 - t0;
        if (head_of[i] < 0) continue;
        float *lg = logits + (size_t)head_of[i] * V;
        const int32_t t = ls_sample(&g->p.sampling, &g->r.rng, lg, V, g->r.history, (int32_t)g->r.n_hist, &g->dist);
        if (!ls_gen_emit(&g->r, t)) {
            g->done = true;
            continue;
        }
        if (g->pos >= ls_kv_n_ctx(g->r.kv)) {
            s->finish = LS_FINISH_CONTEXT;
            g->done = true;
            continue;
        }
        g->next = t;
    }
    free(act);
    free(sl);
    free(hidden);
    free(hrow);
    free(logits);
    free(head_of);
    return st;
}
