/* speculative.c: self-speculative decoding (LayerSkip, docs/LAYERSKIP.md). Layers
 * [0, E) + the exit head draft up to k tokens one at a time; layers [E, L)
 * then verify all of them in one ls_forward call over the kept exit states
 * (the output of layer E-1), and the cache is cut back to what was accepted.
 * Every drafted position runs layers [0, E) once (kept or rolled back),
 * every verified position runs layers [E, L) once, and the exit head runs
 * on verified positions up to the first rejection only. In exact mode a
 * position's result does not depend on its batch, so greedy output equals
 * autoregressive output bit for bit; sampling uses the speculative-sampling
 * rule, whose output follows the full model's distribution. */
#include "generate_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* top probability of softmax(logits) */
static double top_prob(const float *logits, int32_t n) {
    float mx = logits[ls_argmax(logits, n)];
    double sum = 0;
    for (int32_t i = 0; i < n; i++) sum += exp((double)logits[i] - mx);
    return 1.0 / sum;
}

ls_status ls_generate_self_speculative(ls_gen_run *r, const int32_t *prompt, int n_prompt, ls_err *err) {
    const ls_gen_params *p = r->p;
    const ls_config *cfg = r->cfg;
    ls_gen_stats *stats = r->stats;
    const int L = cfg->n_layers, E = p->exit_layer, K = p->num_speculations, V = cfg->n_vocab, D = cfg->dim;
    const bool greedy = p->sampling.temperature <= 0;
    if (K + 1 > ls_ctx_max_batch(r->c))
        return ls_err_set(err, LS_ERR_INVALID,
                          "num_speculations %d verifies %d positions at once: create the context with "
                          "max_batch >= %d (it has %d)", K, K + 1, K + 1, ls_ctx_max_batch(r->c));

    float *h = malloc(sizeof(float) * (size_t)(K + 1) * D);            /* (K+1, dim) exit states */
    float *logits = malloc(sizeof(float) * (size_t)V);                 /* (n_vocab) one position's logits */
    float *dense = calloc((size_t)V, sizeof(float));                   /* (n_vocab) residual scratch */
    ls_dist *q = calloc((size_t)K, sizeof(ls_dist));                   /* a round's draft distributions */
    ls_dist pf = {0};
    bool ok = h && logits && dense && q && ls_dist_init(&pf, V) == LS_OK;
    /* greedy keeps only each draft's argmax, in q[0] */
    for (int i = 0; ok && i < (greedy ? 1 : K); i++) ok = ls_dist_init(&q[i], V) == LS_OK;
    ls_status st = LS_OK;
    if (!ok) st = ls_err_set(err, LS_ERR_NOMEM, "out of memory for %d speculations", K);

    /* the prompt's last token is not cached: it starts the first round */
    double t0 = ls_time_ms();
    if (st == LS_OK && n_prompt > 1) st = ls_prefill_layers(r->c, r->kv, prompt, n_prompt - 1, 0, L, NULL, err);
    double t1 = ls_time_ms();
    stats->prefill_ms = t1 - t0;

    int32_t tokens[LS_MAX_SPECULATIONS + 1]; /* newest token, then the drafts */
    tokens[0] = prompt[n_prompt - 1];
    int pos = n_prompt - 1; /* position of tokens[0] */
    while (st == LS_OK && stats->n_generated < p->n_predict) {
        if (pos >= ls_kv_n_ctx(r->kv)) { stats->finish = LS_FINISH_CONTEXT; break; }
        int m_max = p->n_predict - stats->n_generated - 1; /* a round emits up to m + 1 tokens */
        if (m_max > K) m_max = K;
        if (m_max > ls_kv_n_ctx(r->kv) - 1 - pos) m_max = ls_kv_n_ctx(r->kv) - 1 - pos;

        /* draft: layers [0, E) one position at a time, keeping each exit state */
        int m = 0;
        for (;; m++) {
            float *hm = h + (size_t)m * D;
            st = ls_embed(r->c, &tokens[m], 1, hm, err);
            if (st == LS_OK) st = ls_forward(r->c, r->kv, 0, E, pos + m, 1, hm, err);
            if (st != LS_OK || m == m_max) break;
            if (m > 0 && !p->ignore_eog && ls_tokenizer_is_eog(r->tok, tokens[m])) break;
            st = ls_exit_head(r->c, hm, 1, logits, err);
            if (st != LS_OK) break;
            if (p->draft_min_p > 0 && top_prob(logits, V) < p->draft_min_p) break;
            ls_dist *qm = &q[greedy ? 0 : m];
            ls_sampler_probs(&p->sampling, logits, V, r->history, r->n_hist + m, qm);
            tokens[m + 1] = ls_dist_pick(qm, &r->rng);
            r->history[r->n_hist + m] = tokens[m + 1];
        }
        if (st != LS_OK) break;

        /* verify: layers [E, L) over the m + 1 exit states in one call; the
         * head runs position by position and stops at the first rejection
         * (logits past it would be thrown away) */
        st = ls_forward(r->c, r->kv, E, L, pos, m + 1, h, err);
        int n = 0;
        int32_t next = -1;
        for (; st == LS_OK; n++) {
            st = ls_exit_head(r->c, h + (size_t)n * D, 1, logits, err);
            if (st != LS_OK) break;
            /* the full distribution at pos + n, with the history its draft saw */
            ls_sampler_probs(&p->sampling, logits, V, r->history, r->n_hist + n, &pf);
            if (n == m) { next = ls_dist_pick(&pf, &r->rng); break; } /* all accepted: the bonus token */
            const int32_t d = tokens[n + 1];
            if (greedy) {
                if (pf.ids[0] != d) { next = pf.ids[0]; break; }
                continue;
            }
            double p_draft = ls_dist_prob(&q[n], d), p_full = ls_dist_prob(&pf, d);
            if (ls_rng_uniform(&r->rng) < p_full / p_draft) continue; /* p_draft > 0: d was drawn from it */
            next = ls_dist_draw_residual(&pf, &q[n], dense, &r->rng);
            break;
        }
        if (st != LS_OK) break;
        stats->drafted += m;
        stats->accepted += n;
        stats->rounds++;
        stats->accept_hist[n]++;

        /* emit the accepted drafts and `next`, then roll back: the cache
         * keeps the newest token and the emitted tokens but the last one
         * (not cached: it starts the next round), as autoregressive decoding
         * leaves it, also when generation stops mid-round */
        int emitted = 0;
        bool more = true;
        while (more && emitted < n) more = ls_gen_emit(r, tokens[1 + emitted++]);
        if (more) {
            more = ls_gen_emit(r, next);
            emitted++;
        }
        ls_kv_truncate(r->kv, 0, L, pos + emitted);
        pos += emitted;
        if (!more) break;
        tokens[0] = next;
    }
    stats->decode_ms = ls_time_ms() - t1;
    free(h); free(logits); free(dense);
    for (int i = 0; q && i < K; i++) ls_dist_free(&q[i]);
    free(q);
    ls_dist_free(&pf);
    return st;
}
