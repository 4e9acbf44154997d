/* speculative.c: self-speculative decoding (LayerSkip, docs/LAYERSKIP.md)
 * in one process. Each round the drafter (speculate.c) proposes up to k
 * tokens from its source (early exit, the adapter, or a lookup copy) and
 * runs layers [0, E) of every chunk position; layers [E, L) then verify the
 * whole chunk in one ls_forward call over the kept layer-E states, the rule
 * (ls_spec_verify) decides, and the cache is cut back to what was accepted.
 * In exact mode a position's result does not depend on its batch, so greedy
 * output equals autoregressive output bit for bit; sampling uses the
 * speculative-sampling rule, whose output follows the full model's
 * distribution. The MPI pipeline runs the same drafter and rule across
 * ranks (worker/pipeline.c, worker/stage.c). */
#include "generate_internal.h"

#include <stdlib.h>
#include <string.h>

ls_status ls_generate_self_speculative(ls_gen_run *r, const int32_t *prompt, int n_prompt, ls_err *err) {
    const ls_gen_params *p = r->p;
    const ls_config *cfg = r->cfg;
    ls_gen_stats *stats = r->stats;
    const int L = cfg->n_layers, E = p->exit_layer, K = p->num_speculations, D = cfg->dim;
    const int B = ls_ctx_max_batch(r->c), n_ctx = ls_kv_n_ctx(r->kv);
    if (K + 1 > B)
        return ls_err_set(err, LS_ERR_INVALID,
                          "num_speculations %d verifies %d positions at once: create the context with "
                          "max_batch >= %d (it has %d)", K, K + 1, K + 1, B);

    float *h = malloc(sizeof(float) * (size_t)B * D); /* exit states of a chunk or a prompt batch */
    ls_draft_chunk *ch = malloc(sizeof *ch);
    ls_spec_scratch sc = {0};
    ls_drafter *d = NULL;
    ls_status st = h && ch ? LS_OK : ls_err_set(err, LS_ERR_NOMEM, "out of memory for %d speculations", K);
    if (st == LS_OK) st = ls_spec_scratch_init(&sc, cfg->n_vocab, err);
    if (st == LS_OK) st = ls_drafter_create(r->c, r->kv, p, n_ctx, &d, err);

    /* the prompt but its last token (which starts the first round): layers
     * [0, E), the drafter's share of their states, layers [E, L) */
    double t0 = ls_time_ms();
    for (int done = 0; st == LS_OK && done < n_prompt - 1; done += B) {
        const int nb = n_prompt - 1 - done < B ? n_prompt - 1 - done : B;
        st = ls_embed(r->c, prompt + done, nb, h, err);
        if (st == LS_OK && !ls_drafter_needs_states(d)) {
            st = ls_forward(r->c, r->kv, 0, L, done, nb, h, err);
            continue;
        }
        if (st == LS_OK) st = ls_forward(r->c, r->kv, 0, E, done, nb, h, err);
        if (st == LS_OK) st = ls_drafter_feed(d, done, nb, h, err);
        if (st == LS_OK) st = ls_forward(r->c, r->kv, E, L, done, nb, h, err);
    }
    double t1 = ls_time_ms();
    stats->prefill_ms = t1 - t0;

    int32_t tok = prompt[n_prompt - 1];
    int pos = n_prompt - 1; /* position of tok */
    while (st == LS_OK && stats->n_generated < p->n_predict) {
        if (pos >= n_ctx) { stats->finish = LS_FINISH_CONTEXT; break; }
        int k_max = p->n_predict - stats->n_generated - 1; /* a round emits up to k + 1 tokens */
        if (k_max > n_ctx - 1 - pos) k_max = n_ctx - 1 - pos;
        st = ls_drafter_draft(d, &r->rng, pos, tok, k_max, false, r->history, h, ch, err);
        if (st != LS_OK) break;

        /* verify: layers [E, L) over the chunk in one call, then the rule */
        const double tv = ls_time_ms();
        int32_t n = 0, next = -1;
        st = ls_forward(r->c, r->kv, E, L, pos, ch->m + 1, h, err);
        if (st == LS_OK) st = ls_spec_verify(r->c, &p->sampling, ch, pos, h, r->history, &r->rng, &sc, &n, &next, err);
        if (st != LS_OK) break;
        ls_drafter_observe(d, ch, n, ls_time_ms() - tv);
        ls_spec_stats_add(stats, ch, n);

        /* emit the accepted drafts and `next`, then roll back: the cache
         * keeps the newest token and the emitted tokens but the last one
         * (not cached: it starts the next round), as autoregressive decoding
         * leaves it, also when generation stops mid-round */
        int emitted = 0;
        bool more = true;
        while (more && emitted < n) more = ls_gen_emit(r, ch->tokens[1 + emitted++]);
        if (more) {
            more = ls_gen_emit(r, next);
            emitted++;
        }
        ls_kv_truncate(r->kv, 0, L, pos + emitted);
        ls_drafter_rollback(d, pos + emitted);
        pos += emitted;
        if (!more) break;
        tok = next;
    }
    stats->decode_ms = ls_time_ms() - t1;
    ls_drafter_free(d);
    ls_spec_scratch_free(&sc);
    free(h);
    free(ch);
    return st;
}
