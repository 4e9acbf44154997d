/* gen_step.c: generations advanced step by step, many at once (ls_gen_*,
 * generate.h). A step gives every unfinished generation its next work (a
 * slice of its prompt, one decode token, or a self-speculative round) and
 * runs all of it through one ls_forward_multi per layer range and one
 * exit-head call, so each weight is read once per step for every request.
 * A self-speculative round drafts on its own (the drafter's k steps through
 * layers [0, E)), then its chunk joins the step's pass over [E, L) and the
 * rule decides. Sampling, emission, the round's bookkeeping and the finish
 * rules are ls_generate's (ls_gen_emit, ls_spec_verify, the same rng and
 * history), and in exact mode a row's result does not depend on its batch,
 * so every generation's output is token for token what ls_generate gives it
 * alone. */
#include "generate_internal.h"

#include <stdlib.h>
#include <string.h>

struct ls_gen {
    ls_gen_run r;
    ls_gen_params p;  /* a copy: the caller's may go away */
    int32_t *prompt;  /* (n_prompt) */
    int n_prompt;
    int n_pre;        /* prompt tokens prefilled before decoding (self_speculative: all but the last) */
    int l1;           /* layers a decode row runs: L, or E for early exit */
    int pos;          /* positions cached */
    int32_t next;     /* the token that starts the next step's decode work */
    bool done;
    ls_status status; /* of the step that ended it */
    double t_first;   /* first step's start (ls_time_ms) */
    ls_dist dist;
    /* self_speculative */
    bool spec;
    int E;
    ls_drafter *d;
    ls_draft_chunk *ch;
    ls_spec_scratch sc;
    float *h;         /* (LS_MAX_SPECULATIONS + 1, dim) a round's layer-E states */
    /* this step */
    int rows, row0, start, end; /* rows run, first row in the step's hidden, layers [start, end) */
};

ls_status ls_gen_create(ls_ctx *c, ls_kv *kv, const int32_t *prompt, int n_prompt, const ls_gen_params *p,
                        int32_t *out_tokens, ls_token_cb cb, void *user, ls_gen_stats *stats, ls_gen **out,
                        ls_err *err) {
    *out = NULL;
    const ls_model *m = ls_ctx_model(c);
    const ls_config *cfg = ls_model_config(m);
    ls_status st = ls_gen_params_check(p, cfg->n_layers, err);
    if (st != LS_OK) return st;
    const bool spec = p->strategy == LS_STRATEGY_SELF_SPECULATIVE;
    if (spec && p->num_speculations + 1 > ls_ctx_max_batch(c))
        return ls_err_set(err, LS_ERR_INVALID,
                          "num_speculations %d verifies %d positions at once: create the context with "
                          "max_batch >= %d (it has %d)", p->num_speculations, p->num_speculations + 1,
                          p->num_speculations + 1, ls_ctx_max_batch(c));
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
    g->spec = spec;
    g->E = p->exit_layer;
    g->n_prompt = n_prompt;
    g->n_pre = spec ? n_prompt - 1 : n_prompt;
    g->l1 = p->strategy == LS_STRATEGY_EARLY_EXIT ? p->exit_layer : cfg->n_layers;
    g->prompt = malloc(sizeof(int32_t) * (size_t)n_prompt);
    int32_t *history =
        malloc(sizeof(int32_t) * ((size_t)n_prompt + (size_t)p->n_predict + LS_MAX_SPECULATIONS + 1));
    st = g->prompt && history && ls_dist_init(&g->dist, cfg->n_vocab) == LS_OK
             ? LS_OK
             : ls_err_set(err, LS_ERR_NOMEM, "out of memory");
    if (st == LS_OK) {
        memcpy(g->prompt, prompt, sizeof(int32_t) * (size_t)n_prompt);
        memcpy(history, prompt, sizeof(int32_t) * (size_t)n_prompt);
        memset(stats, 0, sizeof *stats);
        stats->n_prompt = n_prompt;
        stats->finish = LS_FINISH_LENGTH;
        g->r = (ls_gen_run){.c = c, .kv = kv, .p = &g->p, .cfg = cfg, .tok = ls_model_tokenizer(m),
                            .out = out_tokens, .history = history, .n_hist = n_prompt, .cb = cb, .user = user,
                            .stats = stats};
        history = NULL;
        ls_rng_seed(&g->r.rng, p->sampling.seed);
        ls_kv_truncate(kv, 0, cfg->n_layers, 0);
    }
    if (st == LS_OK && spec) {
        g->ch = malloc(sizeof *g->ch);
        g->h = malloc(sizeof(float) * (LS_MAX_SPECULATIONS + 1) * (size_t)cfg->dim);
        st = g->ch && g->h ? LS_OK : ls_err_set(err, LS_ERR_NOMEM, "out of memory");
        if (st == LS_OK) st = ls_spec_scratch_init(&g->sc, cfg->n_vocab, err);
        if (st == LS_OK) st = ls_drafter_create(c, kv, &g->p, ls_kv_n_ctx(kv), &g->d, err);
    }
    free(history);
    if (st != LS_OK) {
        ls_gen_free(g);
        return st;
    }
    g->next = spec ? prompt[n_prompt - 1] : -1;
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
    ls_drafter_free(g->d);
    ls_spec_scratch_free(&g->sc);
    free(g->ch);
    free(g->h);
    free(g);
}

bool ls_gen_done(const ls_gen *g) { return g->done; }
ls_status ls_gen_status(const ls_gen *g) { return g->status; }
int ls_gen_prompt_left(const ls_gen *g) { return g->pos < g->n_pre ? g->n_prompt - g->pos : 0; }

/* the most rows a generation may run this step (0 when done); chunk <= max_batch */
static int step_rows(const ls_gen *g, int chunk) {
    if (g->done) return 0;
    const int left = g->n_pre - g->pos;
    if (left > 0) return left < chunk ? left : chunk;
    return g->spec ? g->p.num_speculations + 1 : 1;
}

/* Rows of one step are ordered so that the generations running any layer
 * range are contiguous: first those entering at layer E (self-speculative
 * chunks), deepest entry first; then those entering at layer 0, deepest
 * exit first. A range then takes a suffix of the first group and a prefix
 * of the second. */
static int step_order(const void *a, const void *b) {
    const ls_gen *x = *(ls_gen *const *)a, *y = *(ls_gen *const *)b;
    if ((x->start > 0) != (y->start > 0)) return x->start > 0 ? -1 : 1;
    if (x->start > 0) return (x->start < y->start) - (x->start > y->start);
    return (x->end < y->end) - (x->end > y->end);
}

/* a self-speculative round's draft: layers [0, E) of its chunk into g->h */
static ls_status spec_draft(ls_gen *g, ls_err *err) {
    ls_gen_stats *s = g->r.stats;
    const int n_ctx = ls_kv_n_ctx(g->r.kv);
    int k_max = g->p.n_predict - s->n_generated - 1; /* a round emits up to k + 1 tokens */
    if (k_max > n_ctx - 1 - g->pos) k_max = n_ctx - 1 - g->pos;
    return ls_drafter_draft(g->d, &g->r.rng, g->pos, g->next, k_max, false, g->r.history, g->h, g->ch, err);
}

/* a self-speculative round's verdict on its chunk's last-layer rows */
static ls_status spec_finish(ls_gen *g, const float *rows, double verify_ms, ls_err *err) {
    int32_t n = 0, next = -1;
    ls_status st = ls_spec_verify(g->r.c, &g->p.sampling, g->ch, g->pos, rows, g->r.history, &g->r.rng, &g->sc, &n,
                                  &next, err);
    if (st != LS_OK) return st;
    ls_drafter_observe(g->d, g->ch, n, verify_ms);
    ls_spec_stats_add(g->r.stats, g->ch, n);
    /* emit the accepted drafts and `next`, then roll back as ls_generate does */
    int emitted = 0;
    bool more = true;
    while (more && emitted < n) more = ls_gen_emit(&g->r, g->ch->tokens[1 + emitted++]);
    if (more) {
        more = ls_gen_emit(&g->r, next);
        emitted++;
    }
    ls_kv_truncate(g->r.kv, 0, g->r.cfg->n_layers, g->pos + emitted);
    ls_drafter_rollback(g->d, g->pos + emitted);
    g->pos += emitted;
    g->next = next;
    if (!more) g->done = true;
    return LS_OK;
}

ls_status ls_gen_step(ls_ctx *c, ls_gen **gens, int n_gens, int prefill_chunk, ls_err *err) {
    const ls_config *cfg = ls_model_config(ls_ctx_model(c));
    const int B = ls_ctx_max_batch(c), D = cfg->dim, V = cfg->n_vocab;
    if (prefill_chunk < 1) return ls_err_set(err, LS_ERR_INVALID, "prefill chunk %d is below 1", prefill_chunk);
    if (n_gens < 0) return ls_err_set(err, LS_ERR_INVALID, "negative generation count %d", n_gens);
    for (int i = 0; i < n_gens; i++)
        if (gens[i]->r.c != c)
            return ls_err_set(err, LS_ERR_INVALID, "generation %d was created on another context", i);
    if (prefill_chunk > B) prefill_chunk = B;
    const size_t cap = (size_t)(n_gens ? n_gens : 1);
    ls_gen **act = malloc(sizeof(ls_gen *) * cap);
    ls_seq_slice *sl = malloc(sizeof(ls_seq_slice) * cap);
    int *cuts = malloc(sizeof(int) * (2 * cap + 2));
    float *hidden = malloc(sizeof(float) * (size_t)B * D);
    float *hrow = malloc(sizeof(float) * cap * D);
    float *logits = malloc(sizeof(float) * cap * V);
    int *head_of = malloc(sizeof(int) * cap); /* logits row of act[i], -1 none */
    ls_status st = act && sl && cuts && hidden && hrow && logits && head_of
                       ? LS_OK
                       : ls_err_set(err, LS_ERR_NOMEM, "out of memory");
    const double t0 = ls_time_ms();
    /* admit in the caller's order while the rows fit; draft the rounds */
    int na = 0, rows = 0;
    for (int i = 0; st == LS_OK && i < n_gens; i++) {
        ls_gen *g = gens[i];
        const int k = step_rows(g, prefill_chunk);
        if (!k || rows + k > B) continue; /* done, or waits for the next step */
        if (g->t_first < 0) g->t_first = t0;
        const bool pre = g->pos < g->n_pre;
        g->start = g->spec && !pre ? g->E : 0;
        g->end = g->l1; /* self-speculative prompts too: l1 = L */
        if (g->spec && !pre) {
            if (g->pos >= ls_kv_n_ctx(g->r.kv)) {
                g->r.stats->finish = LS_FINISH_CONTEXT;
                g->done = true;
                continue;
            }
            ls_status ds = spec_draft(g, err);
            if (ds != LS_OK) {
                g->done = true;
                g->status = ds;
                continue;
            }
            g->rows = g->ch->m + 1;
        } else {
            g->rows = k;
        }
        act[na++] = g;
        rows += g->rows;
    }
    qsort(act, (size_t)na, sizeof *act, step_order);
    for (int i = 0, r = 0; st == LS_OK && i < na; i++) {
        ls_gen *g = act[i];
        g->row0 = r;
        if (g->start > 0) {
            memcpy(hidden + (size_t)r * D, g->h, sizeof(float) * (size_t)g->rows * D);
        } else {
            const int32_t *toks = g->pos < g->n_pre ? g->prompt + g->pos : &g->next;
            st = ls_embed(c, toks, g->rows, hidden + (size_t)r * D, err);
        }
        sl[i] = (ls_seq_slice){.kv = g->r.kv, .pos = g->pos, .n = g->rows};
        r += g->rows;
    }
    /* the layer ranges: cut at every start, end and (for prompts that feed
     * a drafter) E */
    int nc = 0;
    cuts[nc++] = 0;
    for (int i = 0; i < na; i++) {
        cuts[nc++] = act[i]->start;
        cuts[nc++] = act[i]->end;
        if (act[i]->spec && act[i]->start == 0 && ls_drafter_needs_states(act[i]->d)) cuts[nc++] = act[i]->E;
    }
    for (int i = 1; i < nc; i++) /* sort, small n */
        for (int j = i; j > 0 && cuts[j - 1] > cuts[j]; j--) {
            const int t = cuts[j];
            cuts[j] = cuts[j - 1];
            cuts[j - 1] = t;
        }
    const double tp = ls_time_ms();
    for (int ci = 0; st == LS_OK && ci + 1 < nc; ci++) {
        const int lo = cuts[ci], hi = cuts[ci + 1];
        if (lo == hi) continue;
        int a = -1, b = -1;
        for (int i = 0; i < na; i++)
            if (act[i]->start <= lo && act[i]->end >= hi) {
                if (a < 0) a = i;
                b = i + 1;
            }
        if (a < 0) continue;
        for (int i = a; i < b; i++) /* the order above guarantees it */
            if (act[i]->start > lo || act[i]->end < hi)
                st = ls_err_set(err, LS_ERR_INVALID, "internal error: rows of layers [%d, %d) are not contiguous", lo, hi);
        if (st != LS_OK) break;
        st = ls_forward_multi(c, sl + a, b - a, lo, hi, hidden + (size_t)act[a]->row0 * D, err);
        /* prompts whose drafter keeps layer-E states */
        for (int i = a; st == LS_OK && i < b; i++) {
            ls_gen *g = act[i];
            if (g->spec && g->start == 0 && hi == g->E && ls_drafter_needs_states(g->d))
                st = ls_drafter_feed(g->d, g->pos, g->rows, hidden + (size_t)g->row0 * D, err);
        }
    }
    const double pass_ms = ls_time_ms() - tp;
    /* one head call for the rows that need logits: autoregressive and early
     * exit decode rows and the last prompt row */
    int nh = 0;
    for (int i = 0; st == LS_OK && i < na; i++) {
        ls_gen *g = act[i];
        head_of[i] = -1;
        if (g->spec || g->pos + g->rows < g->n_prompt) continue;
        memcpy(hrow + (size_t)nh * D, hidden + (size_t)(g->row0 + g->rows - 1) * D, sizeof(float) * D);
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
        if (g->pos < g->n_pre) { /* a prompt slice */
            g->pos += g->rows;
            s->prefill_ms = t1 - g->t_first;
            if (g->spec || head_of[i] < 0) continue;
        } else if (g->spec) {
            const double tv = ls_time_ms();
            ls_status vs = spec_finish(g, hidden + (size_t)g->row0 * D, pass_ms + (ls_time_ms() - tv), err);
            s->decode_ms += ls_time_ms() - t0;
            if (vs != LS_OK) {
                g->done = true;
                g->status = vs;
            }
            continue;
        } else {
            g->pos += 1;
            s->decode_ms += t1 - t0;
        }
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
    free(cuts);
    free(hidden);
    free(hrow);
    free(logits);
    free(head_of);
    return st;
}
