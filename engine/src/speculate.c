/* speculate.c: draft sources, the draft head, the k policy and the
 * acceptance rule (speculate.h). ls_generate's loop (speculative.c) and the
 * MPI pipeline (worker/pipeline.c drafts, worker/stage.c verifies) both
 * build on these, so the rule and the drafting live here only. */
#include "adapter_internal.h"
#include "layerskip/generate.h"
#include "layerskip/tokenizer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const source_names[LS_N_DRAFT_SOURCES] = {
    [LS_DRAFT_AUTO] = "auto", [LS_DRAFT_EXIT] = "exit", [LS_DRAFT_ADAPTER] = "adapter", [LS_DRAFT_LOOKUP] = "lookup",
};

const char *ls_draft_source_name(ls_draft_source s) {
    return (int)s >= 0 && (int)s < LS_N_DRAFT_SOURCES ? source_names[s] : "?";
}

ls_status ls_draft_source_parse(const char *name, ls_draft_source *out, ls_err *err) {
    for (int i = 0; name && i < LS_N_DRAFT_SOURCES; i++)
        if (strcmp(name, source_names[i]) == 0) {
            *out = (ls_draft_source)i;
            return LS_OK;
        }
    return ls_err_set(err, LS_ERR_INVALID, "unknown draft source \"%.64s\" (valid: auto, exit, adapter, lookup)",
                      name ? name : "(null)");
}

void ls_spec_stats_add(ls_gen_stats *s, const ls_draft_chunk *ch, int accepted) {
    s->drafted += ch->m;
    s->accepted += accepted;
    s->rounds++;
    s->accept_hist[accepted]++;
    s->drafted_by[ch->source] += ch->m;
    s->accepted_by[ch->source] += accepted;
    s->rounds_by_k[ch->k]++;
}

/* ------------------------------------------------------------------ the rule */

ls_status ls_spec_scratch_init(ls_spec_scratch *s, int32_t n_vocab, ls_err *err) {
    memset(s, 0, sizeof *s);
    s->logits = malloc(sizeof(float) * (size_t)n_vocab * (LS_MAX_SPECULATIONS + 1));
    s->dense = calloc((size_t)n_vocab, sizeof(float));
    if (!s->logits || !s->dense || ls_dist_init(&s->pf, n_vocab) != LS_OK) {
        ls_spec_scratch_free(s);
        return ls_err_set(err, LS_ERR_NOMEM, "out of memory for verification");
    }
    return LS_OK;
}

void ls_spec_scratch_free(ls_spec_scratch *s) {
    free(s->logits);
    free(s->dense);
    ls_dist_free(&s->pf);
    memset(s, 0, sizeof *s);
}

ls_status ls_spec_verify(ls_ctx *c, const ls_sampling *s, const ls_draft_chunk *ch, int p0, const float *rows,
                         const int32_t *hist, ls_rng *rng, ls_spec_scratch *sc, int32_t *accepted, int32_t *next,
                         ls_err *err) {
    const ls_config *cfg = ls_model_config(ls_ctx_model(c));
    const int V = cfg->n_vocab, D = cfg->dim, m = ch->m;
    const bool greedy = s->temperature <= 0;
    if (m < 0 || m > LS_MAX_SPECULATIONS)
        return ls_err_set(err, LS_ERR_INVALID, "a chunk of %d drafts (at most %d)", m, LS_MAX_SPECULATIONS);
    int first = ch->head_batch < 1 ? 1 : ch->head_batch > m + 1 ? m + 1 : ch->head_batch;
    if (first > ls_ctx_max_batch(c)) first = ls_ctx_max_batch(c);
    for (int n = 0;; n++) {
        /* rows [0, first) in one head call, later ones one at a time */
        float *lg = sc->logits;
        if (n == 0 || n >= first) {
            const int nb = n == 0 ? first : 1;
            ls_status st = ls_exit_head(c, rows + (size_t)n * D, nb, sc->logits, err);
            if (st != LS_OK) return st;
        } else {
            lg = sc->logits + (size_t)n * V;
        }
        /* the full distribution at p0 + n, with the history its draft saw */
        ls_sampler_probs(s, lg, V, hist, p0 + 1 + n, &sc->pf);
        if (n == m) { /* all accepted: the bonus token */
            *accepted = n;
            *next = ls_dist_pick(&sc->pf, rng);
            return LS_OK;
        }
        const int32_t d = ch->tokens[n + 1];
        if (greedy) {
            if (sc->pf.ids[0] == d) continue;
            *accepted = n;
            *next = sc->pf.ids[0];
            return LS_OK;
        }
        /* speculative sampling: keep d with probability min(1, p_full/p_draft),
         * else draw from normalize(max(p_full - p_draft, 0)); q is what d was
         * drawn from (a point mass for a lookup draft) */
        const int qn = ch->q_n[n];
        if (qn < 1 || qn > LS_DRAFT_Q_CAP)
            return ls_err_set(err, LS_ERR_INVALID, "draft %d of a sampled chunk has %d candidates (1 to %d)", n + 1,
                              qn, LS_DRAFT_Q_CAP);
        const ls_dist q = {.n = qn, .ids = (int32_t *)ch->q_ids[n], .p = (float *)ch->q_p[n], .cap = qn};
        const double p_draft = ls_dist_prob(&q, d), p_full = ls_dist_prob(&sc->pf, d);
        const double u = ls_rng_uniform(rng);
        if (p_draft > 0 && u * p_draft < p_full) continue;
        *accepted = n;
        *next = ls_dist_draw_residual(&sc->pf, &q, sc->dense, rng);
        return LS_OK;
    }
}

/* ------------------------------------------------------------------ drafting */

#define LOOKUP_MAX_NGRAM 4
#define LOOKUP_MIN_NGRAM 2
#define PROBE_EVERY 32       /* auto k: a plain-step streak is broken by one draft to keep the estimate alive */
#define DECAY 0.9            /* weight of the past in the running estimates, per round */
#define MARGIN 1.05          /* auto k drafts only when it expects at least 5% over plain steps: the
                              * estimates come from noisy timings, and a draft that merely breaks
                              * even measured 0.87-0.97x on Q4_1 here (BENCHMARKS.md) */

/* a cost that grows with the positions n of a pass, fitted as a + b (n - 1)
 * by weighted least squares over decayed observations */
typedef struct line_fit {
    double s0, s1, s2, sy, sxy;
} line_fit;

static void fit_add(line_fit *f, int n, double y) {
    const double x = n - 1, w = 0.97;
    f->s0 = w * f->s0 + 1;
    f->s1 = w * f->s1 + x;
    f->s2 = w * f->s2 + x * x;
    f->sy = w * f->sy + y;
    f->sxy = w * f->sxy + x * y;
}

/* the fitted cost of n positions; with one width seen so far each further
 * position is taken to cost 30% of the first (about what multi-row kernels
 * measured here); unknown = -1 */
static double fit_at(const line_fit *f, int n) {
    if (f->s0 <= 0) return -1;
    const double det = f->s0 * f->s2 - f->s1 * f->s1;
    double a, b;
    if (det > 1e-6 * f->s0 * f->s0) {
        b = (f->s0 * f->sxy - f->s1 * f->sy) / det;
        a = (f->sy - b * f->s1) / f->s0;
        if (a <= 0) a = f->sy / f->s0 * 0.5;
        if (b < 0.05 * a) b = 0.05 * a;
    } else {
        const double xm = f->s1 / f->s0, ym = f->sy / f->s0; /* one width: ym = a (1 + 0.3 xm) */
        a = ym / (1 + 0.3 * xm);
        b = 0.3 * a;
    }
    return a + b * (n - 1);
}

typedef struct accept_est {
    double acc, rej;          /* decayed counts: drafts accepted, rounds ended by a rejection */
} accept_est;

struct ls_drafter {
    ls_ctx *c;
    ls_kv *kv;
    const ls_gen_params *p;
    const ls_config *cfg;
    const ls_tokenizer *tok;
    const ls_adapter *ad;
    int E, V, D, n_ctx;
    bool greedy;
    bool use_block;           /* model drafts go through the adapter's block */
    ls_kv *akv;               /* the block's cache (use_block) */
    int pending_pos;          /* a position whose layer-E state the block has not taken, -1 none */
    float *pending;           /* (D) */
    float *x;                 /* (max_batch, D) block input/output */
    float *logits;            /* (V) full head / dense draft logits */
    float *small;             /* (draft_vocab) draft head logits */
    ls_dist q;
    int32_t lookup[LS_MAX_SPECULATIONS + 1]; /* a round's lookup continuation */
    /* the policy */
    accept_est est[LS_N_DRAFT_SOURCES];
    line_fit early;           /* layers [0, E) over n positions (a round's first position, lookup chunks) */
    double draft_ms;          /* one model draft beyond the first position (block + head + [0, E)) */
    line_fit verify;          /* verification of n positions */
    int plain_streak;
    ls_status (*hook)(void *user, bool *abandon, ls_err *err);
    void *hook_user;
};

void ls_drafter_set_hook(ls_drafter *d, ls_status (*hook)(void *user, bool *abandon, ls_err *err), void *user) {
    d->hook = hook;
    d->hook_user = user;
}

void ls_drafter_free(ls_drafter *d) {
    if (!d) return;
    ls_kv_free(d->akv);
    free(d->pending);
    free(d->x);
    free(d->logits);
    free(d->small);
    ls_dist_free(&d->q);
    free(d);
}

ls_status ls_drafter_create(ls_ctx *c, ls_kv *kv, const ls_gen_params *p, int n_ctx, ls_drafter **out,
                            ls_err *err) {
    *out = NULL;
    const ls_model *m = ls_ctx_model(c);
    ls_drafter *d = calloc(1, sizeof *d);
    if (!d) return ls_err_set(err, LS_ERR_NOMEM, "out of memory");
    d->c = c;
    d->kv = kv;
    d->p = p;
    d->cfg = ls_model_config(m);
    d->tok = ls_model_tokenizer(m);
    d->ad = p->adapter;
    d->E = p->exit_layer;
    d->V = d->cfg->n_vocab;
    d->D = d->cfg->dim;
    d->n_ctx = n_ctx;
    d->greedy = p->sampling.temperature <= 0;
    d->pending_pos = -1;
    d->use_block = d->ad && d->ad->has_block &&
                   (p->draft_source == LS_DRAFT_ADAPTER || p->draft_source == LS_DRAFT_AUTO);
    const int B = ls_ctx_max_batch(c);
    d->pending = malloc(sizeof(float) * (size_t)d->D);
    d->x = malloc(sizeof(float) * (size_t)B * (size_t)d->D);
    d->logits = malloc(sizeof(float) * (size_t)d->V);
    d->small = p->draft_vocab > 0 ? malloc(sizeof(float) * (size_t)p->draft_vocab) : NULL;
    ls_status st = LS_OK;
    if (!d->pending || !d->x || !d->logits || (p->draft_vocab > 0 && !d->small) || ls_dist_init(&d->q, d->V) != LS_OK)
        st = ls_err_set(err, LS_ERR_NOMEM, "out of memory for drafting");
    if (st == LS_OK && d->use_block) st = ls_kv_create(m, 0, 1, n_ctx, &d->akv, err);
    if (st == LS_OK && p->draft_vocab > 0)
        for (int32_t i = 0; i < d->V; i++) d->logits[i] = -INFINITY;
    if (st != LS_OK) {
        ls_drafter_free(d);
        return st;
    }
    /* priors, worth two rounds: early exit of an untrained model drafts
     * poorly, an adapter fairly, a lookup match often */
    d->est[LS_DRAFT_EXIT] = (accept_est){0.4, 1.6};
    d->est[LS_DRAFT_ADAPTER] = (accept_est){1.0, 1.0};
    d->est[LS_DRAFT_LOOKUP] = (accept_est){1.5, 1.0};
    /* auto k: the first plain step is a probe, so the model drafter's cost
     * and acceptance are measured from the start, not after 32 rounds */
    d->plain_streak = PROBE_EVERY - 1;
    *out = d;
    return LS_OK;
}

/* the block over positions [pos, pos+n) from their layer-E states h (kept) */
static ls_status block_feed(ls_drafter *d, int pos, int n, const float *h, ls_err *err) {
    const int B = ls_ctx_max_batch(d->c);
    for (int done = 0; done < n; done += B) {
        const int nb = n - done < B ? n - done : B;
        memcpy(d->x, h + (size_t)done * d->D, sizeof(float) * (size_t)nb * d->D);
        ls_status st = ls_forward_block(d->c, &d->ad->blk, d->ad->ffn_dim, d->akv, pos + done, nb, d->x, err);
        if (st != LS_OK) return st;
    }
    if (d->pending_pos >= pos && d->pending_pos < pos + n) d->pending_pos = -1;
    return LS_OK;
}

bool ls_drafter_needs_states(const ls_drafter *d) { return d->use_block; }

ls_status ls_drafter_feed(ls_drafter *d, int pos, int n, const float *h_exit, ls_err *err) {
    if (!d->use_block || n < 1) return LS_OK;
    return block_feed(d, pos, n, h_exit, err);
}

void ls_drafter_rollback(ls_drafter *d, int len) {
    if (d->akv) ls_kv_truncate(d->akv, 0, 1, len);
    if (d->pending_pos >= len) d->pending_pos = -1;
}

/* the block's cache must hold [0, pos) before it runs at pos */
static ls_status block_catch_up(ls_drafter *d, int pos, ls_err *err) {
    if (!d->use_block) return LS_OK;
    int have = ls_kv_len(d->akv, 0);
    if (have < pos && d->pending_pos == have) {
        ls_status st = block_feed(d, have, 1, d->pending, err);
        if (st != LS_OK) return st;
        have++;
    }
    if (have < pos)
        return ls_err_set(err, LS_ERR_INVALID, "the draft adapter's cache holds %d positions, drafting at %d: the "
                          "prompt's layer-%d states were not fed to it", have, pos, d->E);
    if (have > pos) ls_kv_truncate(d->akv, 0, 1, pos);
    return LS_OK;
}

static double top_prob(const float *logits, int32_t n) {
    float mx = logits[ls_argmax(logits, n)];
    double sum = 0;
    for (int32_t i = 0; i < n; i++) sum += exp((double)logits[i] - mx);
    return 1.0 / sum;
}

/* false when logits hold a NaN or no finite value (an adapter whose
 * activations overflowed): such a draft is not made */
static bool usable(const float *x, int32_t n) {
    bool any = false;
    for (int32_t i = 0; i < n; i++) {
        if (isnan(x[i])) return false;
        any |= isfinite(x[i]);
    }
    return any;
}

/* a draft from layer-E state h at position pos (the block's cache holds
 * [0, pos)): the draft distribution into d->q; *unsure when min-p says stop
 * or the draft logits are unusable (then d->q is not set) */
static ls_status model_draft(ls_drafter *d, const float *h, int pos, const int32_t *hist, bool *unsure, ls_err *err) {
    const ls_gen_params *p = d->p;
    const float *x = h;
    ls_status st;
    if (d->use_block) {
        memcpy(d->x, h, sizeof(float) * d->D);
        st = ls_forward_block(d->c, &d->ad->blk, d->ad->ffn_dim, d->akv, pos, 1, d->x, err);
        if (st != LS_OK) return st;
        x = d->x;
    }
    const int32_t N = p->draft_vocab;
    if (N > 0) {
        const ls_weight w = {.type = d->ad->head.type, .rows = N, .cols = d->ad->head.cols, .data = d->ad->head.data};
        st = ls_head_rows(d->c, &w, x, 1, d->small, err);
        if (st != LS_OK) return st;
        if (!usable(d->small, N)) {
            *unsure = true;
            d->q.n = 0;
            return LS_OK;
        }
        for (int32_t i = 0; i < N; i++) d->logits[d->ad->table[i]] = d->small[i];
    } else {
        st = ls_exit_head(d->c, x, 1, d->logits, err);
        if (st != LS_OK) return st;
        if (!usable(d->logits, d->V)) {
            *unsure = true;
            d->q.n = 0;
            return LS_OK;
        }
    }
    *unsure = p->draft_min_p > 0 && top_prob(d->logits, d->V) < p->draft_min_p;
    ls_sampler_probs(&p->sampling, d->logits, d->V, hist, pos + 1, &d->q);
    if (N > 0) /* back to all -inf for the next draft */
        for (int32_t i = 0; i < N; i++) d->logits[d->ad->table[i]] = -INFINITY;
    return LS_OK;
}

/* draw from d->q kept to its LS_DRAFT_Q_CAP most likely tokens; record that
 * distribution as draft i's (sampling) */
static int32_t draw_draft(ls_drafter *d, ls_rng *rng, ls_draft_chunk *ch, int i) {
    if (d->greedy) return d->q.ids[0];
    const int n = d->q.n < LS_DRAFT_Q_CAP ? d->q.n : LS_DRAFT_Q_CAP;
    double sum = 0;
    for (int j = 0; j < n; j++) sum += d->q.p[j];
    int32_t *ids = i < LS_MAX_SPECULATIONS ? ch->q_ids[i] : NULL;
    float tmp_p[LS_DRAFT_Q_CAP];
    int32_t tmp_ids[LS_DRAFT_Q_CAP];
    float *pp = ids ? ch->q_p[i] : tmp_p;
    if (!ids) ids = tmp_ids;
    for (int j = 0; j < n; j++) {
        ids[j] = d->q.ids[j];
        pp[j] = (float)(d->q.p[j] / sum);
    }
    if (i < LS_MAX_SPECULATIONS) ch->q_n[i] = n;
    const ls_dist view = {.n = n, .ids = ids, .p = pp, .cap = n};
    return ls_dist_pick(&view, rng);
}

/* the longest recent n-gram match of the text ending at pos: its
 * continuation (at most k_max tokens, all before pos + 1) into d->lookup;
 * returns its length (0: no match) */
static int lookup_find(ls_drafter *d, const int32_t *hist, int pos, int k_max) {
    for (int g = LOOKUP_MAX_NGRAM; g >= LOOKUP_MIN_NGRAM; g--) {
        if (pos + 1 < g + 1) continue;
        const int32_t *suffix = hist + pos + 1 - g;
        for (int j = pos - g; j >= 0; j--) { /* candidate match hist[j .. j+g) */
            if (hist[j] != suffix[0] || memcmp(hist + j, suffix, sizeof(int32_t) * (size_t)g) != 0) continue;
            int n = 0;
            while (n < k_max + 1 && j + g + n <= pos) {
                d->lookup[n] = hist[j + g + n];
                n++;
            }
            if (n > 0) return n;
        }
    }
    return 0;
}

/* ---- the k policy: expected tokens per round over its cost ---- */

static double accept_rate(const accept_est *e) {
    const double a = e->acc / (e->acc + e->rej);
    return a < 0.98 ? a : 0.98;
}

/* verification of n positions, fitted from what was measured (relative
 * units before any measurement) */
static double verify_cost(const ls_drafter *d, int n) {
    const double v = fit_at(&d->verify, n);
    return v > 0 ? v : 1.0 + 0.3 * (n - 1);
}

/* layers [0, E) over n positions at once */
static double early_cost(const ls_drafter *d, int n) {
    const double v = fit_at(&d->early, n);
    return v > 0 ? v : (0.3 + 0.1 * (n - 1)) * verify_cost(d, 1);
}

static double tokens_per_round(double a, int k) {
    double t = 1, ak = 1;
    for (int i = 0; i < k; i++) {
        ak *= a;
        t += ak;
    }
    return t;
}

/* the best k in [0, k_max] for a model drafter, and its gain over plain steps */
static int best_model_k(const ls_drafter *d, ls_draft_source src, int k_max, double *gain) {
    const double a = accept_rate(&d->est[src]);
    const double f0 = early_cost(d, 1);
    const double dc = d->draft_ms > 0 ? d->draft_ms : f0 + 0.3 * verify_cost(d, 1);
    const double plain = f0 + verify_cost(d, 1);
    int best = 0;
    double best_rate = 1.0 / plain;
    for (int k = 1; k <= k_max; k++) {
        const double rate = tokens_per_round(a, k) / (f0 + k * dc + verify_cost(d, k + 1));
        if (rate > best_rate) {
            best_rate = rate;
            best = k;
        }
    }
    *gain = best_rate * plain;
    return best;
}

/* lookup drafts cost a batched pass of layers [0, E) over the chunk: scaled
 * like verification */
static int best_lookup_k(const ls_drafter *d, int n_avail, double *gain) {
    const double a = accept_rate(&d->est[LS_DRAFT_LOOKUP]);
    const double plain = early_cost(d, 1) + verify_cost(d, 1);
    int best = 0;
    double best_rate = 1.0 / plain;
    for (int k = 1; k <= n_avail; k++) {
        const double rate = tokens_per_round(a, k) / (early_cost(d, k + 1) + verify_cost(d, k + 1));
        if (rate > best_rate) {
            best_rate = rate;
            best = k;
        }
    }
    *gain = best_rate * plain;
    return best;
}

void ls_drafter_observe(ls_drafter *d, const ls_draft_chunk *ch, int accepted, double verify_ms) {
    if (ch->m > 0) {
        accept_est *e = &d->est[ch->source];
        e->acc = DECAY * e->acc + accepted;
        e->rej = DECAY * e->rej + (accepted < ch->m ? 1 : 0);
    }
    const int n = ch->m + 1;
    if (verify_ms > 0) fit_add(&d->verify, n, verify_ms);
}

/* ---- one chunk ---- */

/* rows the verification's head takes at once: those the acceptance so far
 * says will be needed (the expected accepted drafts plus one) */
static void set_head_batch(const ls_drafter *d, ls_draft_chunk *ch) {
    const double t = tokens_per_round(accept_rate(&d->est[ch->source]), ch->m);
    int hb = (int)(t + 0.5);
    ch->head_batch = hb < 1 ? 1 : hb > ch->m + 1 ? ch->m + 1 : hb;
}

static void note_ms(double *v, double x) { *v = *v > 0 ? 0.8 * *v + 0.2 * x : x; }

ls_status ls_drafter_draft(ls_drafter *d, ls_rng *rng, int pos, int32_t tok0, int k_max, bool want_guess,
                           int32_t *hist, float *h_exit, ls_draft_chunk *ch, ls_err *err) {
    const ls_gen_params *p = d->p;
    const int D = d->D, E = d->E;
    const double t0 = ls_time_ms();
    if (k_max > p->num_speculations) k_max = p->num_speculations;
    if (k_max > LS_MAX_SPECULATIONS) k_max = LS_MAX_SPECULATIONS;
    if (k_max < 0) k_max = 0;
    ch->m = 0;
    ch->guess = -1;
    ch->abandoned = false;
    ch->tokens[0] = tok0;
    hist[pos] = tok0;

    /* the source and k of this round */
    const ls_draft_source model_src = d->use_block ? LS_DRAFT_ADAPTER : LS_DRAFT_EXIT;
    const ls_draft_source want = p->draft_source;
    int n_look = 0;
    if ((want == LS_DRAFT_LOOKUP || want == LS_DRAFT_AUTO) && k_max > 0)
        n_look = lookup_find(d, hist, pos, k_max);
    const int n_look_drafts = n_look < k_max ? n_look : k_max;
    ls_draft_source src = want == LS_DRAFT_LOOKUP ? LS_DRAFT_LOOKUP : n_look_drafts > 0 ? LS_DRAFT_LOOKUP : model_src;
    int k = src == LS_DRAFT_LOOKUP ? n_look_drafts : k_max;
    if (p->auto_speculations && k_max > 0) {
        double g_model = 0, g_look = 0;
        const int k_model = want == LS_DRAFT_LOOKUP ? 0 : best_model_k(d, model_src, k_max, &g_model);
        const int k_look = n_look_drafts > 0 ? best_lookup_k(d, n_look_drafts, &g_look) : 0;
        if (k_look > 0 && g_look >= g_model && g_look >= MARGIN) {
            src = LS_DRAFT_LOOKUP;
            k = k_look;
        } else {
            src = want == LS_DRAFT_LOOKUP ? LS_DRAFT_LOOKUP : model_src;
            k = g_model >= MARGIN ? k_model : 0;
        }
        /* keep the estimates alive: a long streak of plain steps probes once */
        if (k == 0 && ++d->plain_streak >= PROBE_EVERY && want != LS_DRAFT_LOOKUP) {
            d->plain_streak = 0;
            src = model_src;
            k = 1;
        } else if (k > 0) {
            d->plain_streak = 0;
        }
    }
    if (src == LS_DRAFT_LOOKUP && k == 0 && want != LS_DRAFT_LOOKUP) src = model_src;
    ch->source = src;
    ch->k = k;

    ls_status st = LS_OK;
    if (src == LS_DRAFT_LOOKUP && k > 0) {
        /* copies from the text: one batched pass of layers [0, E) over the chunk */
        const int m = k;
        for (int i = 0; i < m; i++) {
            ch->tokens[i + 1] = d->lookup[i];
            hist[pos + 1 + i] = d->lookup[i];
            if (!d->greedy) {
                ch->q_n[i] = 1;
                ch->q_ids[i][0] = d->lookup[i];
                ch->q_p[i][0] = 1.0f;
            }
        }
        ch->m = m;
        for (int i = 1; i <= m && !p->ignore_eog; i++) /* nothing is drafted past an end of generation */
            if (ls_tokenizer_is_eog(d->tok, ch->tokens[i])) { ch->m = i; break; }
        const int n = ch->m + 1;
        st = ls_embed(d->c, ch->tokens, n, h_exit, err);
        if (st == LS_OK) st = ls_forward(d->c, d->kv, 0, E, pos, n, h_exit, err);
        if (st == LS_OK && d->use_block) {
            st = block_catch_up(d, pos, err);
            if (st == LS_OK) st = block_feed(d, pos, n, h_exit, err);
        }
        if (st == LS_OK && d->hook) st = d->hook(d->hook_user, &ch->abandoned, err);
        if (st == LS_OK && want_guess && !ch->abandoned &&
            !(ch->m > 0 && !p->ignore_eog && ls_tokenizer_is_eog(d->tok, ch->tokens[ch->m]))) {
            if (n_look > ch->m && ch->m == k) {
                ch->guess = d->lookup[ch->m];
            } else { /* the model guesses the token after the copy */
                bool unsure;
                if (d->use_block) {
                    /* the block took position pos+m already: rerun it there */
                    ls_kv_truncate(d->akv, 0, 1, pos + ch->m);
                }
                st = model_draft(d, h_exit + (size_t)ch->m * D, pos + ch->m, hist, &unsure, err);
                if (st == LS_OK && d->q.n >= 1) ch->guess = draw_draft(d, rng, ch, LS_MAX_SPECULATIONS);
            }
        }
        set_head_batch(d, ch);
        ch->draft_ms = ls_time_ms() - t0;
        if (st == LS_OK && !ch->abandoned && ch->guess < 0) fit_add(&d->early, n, ch->draft_ms);
        return st;
    }

    /* model drafts, one position at a time: layers [0, E), then the block
     * (adapter) and the draft head */
    if (d->use_block) st = block_catch_up(d, pos, err);
    int m = 0;
    double t_first = 0;
    for (; st == LS_OK; m++) {
        float *hm = h_exit + (size_t)m * D;
        st = ls_embed(d->c, &ch->tokens[m], 1, hm, err);
        if (st == LS_OK) st = ls_forward(d->c, d->kv, 0, E, pos + m, 1, hm, err);
        if (st == LS_OK && d->hook) st = d->hook(d->hook_user, &ch->abandoned, err);
        if (st != LS_OK || ch->abandoned) break;
        if (m == 0) t_first = ls_time_ms() - t0;
        if (m > 0 && !p->ignore_eog && ls_tokenizer_is_eog(d->tok, ch->tokens[m])) break;
        if (m == k && !want_guess) break;
        bool unsure = false;
        st = model_draft(d, hm, pos + m, hist, &unsure, err);
        if (st != LS_OK || d->q.n < 1) break; /* unusable logits: no draft, no guess */
        const int32_t t = draw_draft(d, rng, ch, m < k ? m : LS_MAX_SPECULATIONS);
        if (m == k || unsure) {
            if (want_guess) ch->guess = t;
            break;
        }
        ch->tokens[m + 1] = t;
        hist[pos + 1 + m] = t;
    }
    if (st != LS_OK) return st;
    ch->m = m;
    set_head_batch(d, ch);
    /* the block has not seen the last position's state: keep it for later */
    if (d->use_block && ls_kv_len(d->akv, 0) == pos + m) {
        memcpy(d->pending, h_exit + (size_t)m * D, sizeof(float) * D);
        d->pending_pos = pos + m;
    }
    ch->draft_ms = ls_time_ms() - t0;
    if (!ch->abandoned) {
        fit_add(&d->early, 1, t_first);
        if (m > 0) note_ms(&d->draft_ms, (ch->draft_ms - t_first) / m);
    }
    return st;
}
