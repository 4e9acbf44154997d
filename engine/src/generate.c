/* generate.c: prompt processing, the autoregressive and early-exit loops,
 * the strategy names and the checks on generation parameters. The
 * self-speculative loop is in speculative.c. */
#include "generate_internal.h"
#include "model_internal.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

double ls_time_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

const char *ls_finish_name(ls_finish f) {
    switch (f) {
    case LS_FINISH_LENGTH: return "length";
    case LS_FINISH_EOG: return "eos";
    case LS_FINISH_STOPPED: return "stop";
    case LS_FINISH_CONTEXT: return "context";
    }
    return "?";
}

static const char *const strategy_names[] = {
    [LS_STRATEGY_AUTOREGRESSIVE] = "autoregressive",
    [LS_STRATEGY_EARLY_EXIT] = "early_exit",
    [LS_STRATEGY_SELF_SPECULATIVE] = "self_speculative",
};
#define N_STRATEGIES ((int)(sizeof strategy_names / sizeof strategy_names[0]))

const char *ls_strategy_name(ls_strategy s) {
    return (int)s >= 0 && (int)s < N_STRATEGIES ? strategy_names[s] : "?";
}

ls_status ls_strategy_parse(const char *name, ls_strategy *out, ls_err *err) {
    for (int i = 0; name && i < N_STRATEGIES; i++)
        if (strcmp(name, strategy_names[i]) == 0) {
            *out = (ls_strategy)i;
            return LS_OK;
        }
    return ls_err_set(err, LS_ERR_INVALID,
                      "unknown generation strategy \"%.64s\" (valid: autoregressive, early_exit, self_speculative)",
                      name ? name : "(null)");
}

ls_status ls_gen_params_check(const ls_gen_params *p, int n_layers, ls_err *err) {
    ls_status st = ls_sampling_check(&p->sampling, err);
    if (st != LS_OK) return st;
    if (p->n_predict < 0) return ls_err_set(err, LS_ERR_INVALID, "n_predict %d must be >= 0", p->n_predict);
    if ((int)p->strategy < 0 || (int)p->strategy >= N_STRATEGIES)
        return ls_err_set(err, LS_ERR_INVALID,
                          "strategy %d is not one of autoregressive (0), early_exit (1), self_speculative (2)",
                          (int)p->strategy);
    if (p->strategy == LS_STRATEGY_AUTOREGRESSIVE) return LS_OK;
    if (p->exit_layer < 1 || p->exit_layer > n_layers - 1)
        return ls_err_set(err, LS_ERR_INVALID,
                          "exit_layer %d is out of range [1, %d] for this %d-layer model (strategy %s needs "
                          "layers [0, exit_layer) to draft and at least one layer after them)",
                          p->exit_layer, n_layers - 1, n_layers, ls_strategy_name(p->strategy));
    if (p->strategy != LS_STRATEGY_SELF_SPECULATIVE) return LS_OK;
    if (p->num_speculations < 1 || p->num_speculations > LS_MAX_SPECULATIONS)
        return ls_err_set(err, LS_ERR_INVALID, "num_speculations %d is out of range [1, %d] (strategy %s)",
                          p->num_speculations, LS_MAX_SPECULATIONS, ls_strategy_name(p->strategy));
    if (!(p->draft_min_p >= 0 && p->draft_min_p <= 1))
        return ls_err_set(err, LS_ERR_INVALID, "draft_min_p %g is out of range [0, 1] (0 = off)",
                          (double)p->draft_min_p);
    if ((int)p->draft_source < 0 || (int)p->draft_source >= LS_N_DRAFT_SOURCES)
        return ls_err_set(err, LS_ERR_INVALID, "draft_source %d is not one of auto (0), exit (1), adapter (2), "
                          "lookup (3)", (int)p->draft_source);
    if (p->draft_source == LS_DRAFT_ADAPTER && !(p->adapter && ls_adapter_has_block(p->adapter)))
        return ls_err_set(err, LS_ERR_INVALID, p->adapter ? "draft source adapter: %s holds only a frequency table, "
                          "no adapter block" : "draft source adapter needs an adapter (--draft-adapter PATH)%s",
                          p->adapter ? ls_adapter_path(p->adapter) : "");
    const bool uses_block = p->adapter && ls_adapter_has_block(p->adapter) &&
                            (p->draft_source == LS_DRAFT_ADAPTER || p->draft_source == LS_DRAFT_AUTO);
    if (uses_block && ls_adapter_exit_layer(p->adapter) != p->exit_layer)
        return ls_err_set(err, LS_ERR_INVALID, "the draft adapter %s was trained after layer %d; exit_layer is %d: "
                          "use exit_layer %d with it", ls_adapter_path(p->adapter), ls_adapter_exit_layer(p->adapter),
                          p->exit_layer, ls_adapter_exit_layer(p->adapter));
    if (p->draft_vocab != 0) {
        const int32_t n = p->adapter ? ls_adapter_vocab_len(p->adapter) : 0;
        if (n == 0)
            return ls_err_set(err, LS_ERR_INVALID, "draft_vocab %d needs a frequency table: load a draft adapter "
                              "that carries one (--draft-adapter PATH)", p->draft_vocab);
        if (p->draft_vocab < 1 || p->draft_vocab > n)
            return ls_err_set(err, LS_ERR_INVALID, "draft_vocab %d is out of range [1, %d] (the adapter's frequency "
                              "table; 0 = the full head)", p->draft_vocab, n);
    }
    return LS_OK;
}

ls_status ls_prefill_layers(ls_ctx *c, ls_kv *kv, const int32_t *tokens, int n, int pos, int l1,
                            float *logits_last, ls_err *err) {
    const ls_config *cfg = ls_model_config(ls_ctx_model(c));
    const int B = ls_ctx_max_batch(c);
    float *hidden = malloc(sizeof(float) * (size_t)B * cfg->dim);
    if (!hidden) return ls_err_set(err, LS_ERR_NOMEM, "out of memory");
    ls_status st = LS_OK;
    for (int done = 0; done < n && st == LS_OK; done += B) {
        int nb = n - done < B ? n - done : B;
        st = ls_embed(c, tokens + done, nb, hidden, err);
        if (st == LS_OK) st = ls_forward(c, kv, 0, l1, pos + done, nb, hidden, err);
        if (st == LS_OK && logits_last && done + nb == n)
            st = ls_exit_head(c, hidden + (size_t)(nb - 1) * cfg->dim, 1, logits_last, err);
    }
    free(hidden);
    return st;
}

ls_status ls_prefill(ls_ctx *c, ls_kv *kv, const int32_t *tokens, int n, int pos,
                     float *logits_last, ls_err *err) {
    const ls_config *cfg = ls_model_config(ls_ctx_model(c));
    if (n < 1) return ls_err_set(err, LS_ERR_INVALID, "empty prompt: nothing to process");
    if (pos + n > ls_kv_n_ctx(kv))
        return ls_err_set(err, LS_ERR_RANGE, "prompt of %d tokens does not fit the context of %d (raise --ctx)",
                          n, ls_kv_n_ctx(kv));
    return ls_prefill_layers(c, kv, tokens, n, pos, cfg->n_layers, logits_last, err);
}

bool ls_gen_emit(ls_gen_run *r, int32_t t) {
    ls_gen_stats *s = r->stats;
    r->out[s->n_generated++] = t;
    r->history[r->n_hist++] = t;
    if (!r->p->ignore_eog && ls_tokenizer_is_eog(r->tok, t)) { s->finish = LS_FINISH_EOG; return false; }
    if (r->cb && !r->cb(r->user, t)) { s->finish = LS_FINISH_STOPPED; return false; }
    if (s->n_generated == r->p->n_predict) { s->finish = LS_FINISH_LENGTH; return false; }
    return true;
}

/* autoregressive (l1 = L) and early exit (l1 = E): every token, prompt
 * included, goes through layers [0, l1) and the exit head */
static ls_status generate_layers(ls_gen_run *r, const int32_t *prompt, int n_prompt, int l1, ls_err *err) {
    const ls_config *cfg = r->cfg;
    const ls_gen_params *p = r->p;
    float *logits = malloc(sizeof(float) * (size_t)cfg->n_vocab);
    float *hidden = malloc(sizeof(float) * (size_t)cfg->dim);
    ls_dist dist;
    if (!logits || !hidden || ls_dist_init(&dist, cfg->n_vocab) != LS_OK) {
        free(logits); free(hidden);
        return ls_err_set(err, LS_ERR_NOMEM, "out of memory");
    }
    double t0 = ls_time_ms();
    ls_status st = ls_prefill_layers(r->c, r->kv, prompt, n_prompt, 0, l1, logits, err);
    double t1 = ls_time_ms();
    r->stats->prefill_ms = t1 - t0;
    int pos = n_prompt;
    while (st == LS_OK && r->stats->n_generated < p->n_predict) {
        int32_t t = ls_sample(&p->sampling, &r->rng, logits, cfg->n_vocab, r->history, r->n_hist, &dist);
        if (!ls_gen_emit(r, t)) break;
        if (pos >= ls_kv_n_ctx(r->kv)) { r->stats->finish = LS_FINISH_CONTEXT; break; }
        st = ls_embed(r->c, &t, 1, hidden, err);
        if (st == LS_OK) st = ls_forward(r->c, r->kv, 0, l1, pos, 1, hidden, err);
        if (st == LS_OK) st = ls_exit_head(r->c, hidden, 1, logits, err);
        pos++;
    }
    r->stats->decode_ms = ls_time_ms() - t1;
    free(logits); free(hidden);
    ls_dist_free(&dist);
    return st;
}

ls_status ls_generate(ls_ctx *c, ls_kv *kv, const int32_t *prompt, int n_prompt,
                      const ls_gen_params *p, int32_t *out_tokens, ls_token_cb cb,
                      void *user, ls_gen_stats *stats, ls_err *err) {
    const ls_config *cfg = ls_model_config(ls_ctx_model(c));
    memset(stats, 0, sizeof *stats);
    stats->n_prompt = n_prompt;
    stats->finish = LS_FINISH_LENGTH;
    ls_status st = ls_gen_params_check(p, cfg->n_layers, err);
    if (st != LS_OK) return st;
    if (n_prompt < 1) return ls_err_set(err, LS_ERR_INVALID, "empty prompt: nothing to process");
    if (n_prompt > ls_kv_n_ctx(kv))
        return ls_err_set(err, LS_ERR_RANGE, "prompt of %d tokens does not fit the context of %d (raise --ctx)",
                          n_prompt, ls_kv_n_ctx(kv));
    ls_gen_run r = {.c = c, .kv = kv, .p = p, .cfg = cfg, .tok = ls_model_tokenizer(ls_ctx_model(c)),
                    .out = out_tokens, .cb = cb, .user = user, .stats = stats, .n_hist = n_prompt};
    r.history = malloc(sizeof(int32_t) * ((size_t)n_prompt + (size_t)p->n_predict + LS_MAX_SPECULATIONS + 1));
    if (!r.history) return ls_err_set(err, LS_ERR_NOMEM, "out of memory");
    memcpy(r.history, prompt, sizeof(int32_t) * (size_t)n_prompt);
    ls_rng_seed(&r.rng, p->sampling.seed);
    ls_kv_truncate(kv, 0, cfg->n_layers, 0);
    switch (p->strategy) {
    case LS_STRATEGY_SELF_SPECULATIVE:
        st = ls_generate_self_speculative(&r, prompt, n_prompt, err);
        break;
    case LS_STRATEGY_EARLY_EXIT:
        st = generate_layers(&r, prompt, n_prompt, p->exit_layer, err);
        break;
    case LS_STRATEGY_AUTOREGRESSIVE:
        st = generate_layers(&r, prompt, n_prompt, cfg->n_layers, err);
        break;
    }
    free(r.history);
    return st;
}
