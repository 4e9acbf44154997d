/* generate.c: prompt processing and the autoregressive loop. */
#include "layerskip/generate.h"
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

ls_status ls_prefill(ls_ctx *c, ls_kv *kv, const int32_t *tokens, int n, int pos,
                     float *logits_last, ls_err *err) {
    const ls_config *cfg = ls_model_config(ls_ctx_model(c));
    if (n < 1) return ls_err_set(err, LS_ERR_INVALID, "empty prompt: nothing to process");
    if (pos + n > ls_kv_n_ctx(kv))
        return ls_err_set(err, LS_ERR_RANGE, "prompt of %d tokens does not fit the context of %d (raise --ctx)",
                          n, ls_kv_n_ctx(kv));
    const int B = ls_ctx_max_batch(c);
    float *hidden = malloc(sizeof(float) * (size_t)B * cfg->dim);
    if (!hidden) return ls_err_set(err, LS_ERR_NOMEM, "out of memory");
    ls_status st = LS_OK;
    for (int done = 0; done < n && st == LS_OK; done += B) {
        int nb = n - done < B ? n - done : B;
        st = ls_embed(c, tokens + done, nb, hidden, err);
        if (st == LS_OK) st = ls_forward(c, kv, 0, cfg->n_layers, pos + done, nb, hidden, err);
        if (st == LS_OK && done + nb == n)
            st = ls_exit_head(c, hidden + (size_t)(nb - 1) * cfg->dim, 1, logits_last, err);
    }
    free(hidden);
    return st;
}

ls_status ls_generate(ls_ctx *c, ls_kv *kv, const int32_t *prompt, int n_prompt,
                      const ls_gen_params *p, int32_t *out_tokens, ls_token_cb cb,
                      void *user, ls_gen_stats *stats, ls_err *err) {
    const ls_config *cfg = ls_model_config(ls_ctx_model(c));
    const ls_tokenizer *tok = ls_model_tokenizer(ls_ctx_model(c));
    memset(stats, 0, sizeof *stats);
    stats->n_prompt = n_prompt;
    ls_status st = ls_sampling_check(&p->sampling, err);
    if (st != LS_OK) return st;
    if (p->n_predict < 0) return ls_err_set(err, LS_ERR_INVALID, "n_predict %d must be >= 0", p->n_predict);
    float *logits = malloc(sizeof(float) * (size_t)cfg->n_vocab);
    float *hidden = malloc(sizeof(float) * (size_t)cfg->dim);
    int32_t *history = malloc(sizeof(int32_t) * ((size_t)n_prompt + (size_t)p->n_predict + 1));
    ls_dist dist;
    if (!logits || !hidden || !history || ls_dist_init(&dist, cfg->n_vocab) != LS_OK) {
        free(logits); free(hidden); free(history);
        return ls_err_set(err, LS_ERR_NOMEM, "out of memory");
    }
    memcpy(history, prompt, sizeof(int32_t) * (size_t)n_prompt);
    int64_t n_hist = n_prompt;
    ls_rng rng;
    ls_rng_seed(&rng, p->sampling.seed);
    ls_kv_truncate(kv, 0, cfg->n_layers, 0);

    double t0 = ls_time_ms();
    st = ls_prefill(c, kv, prompt, n_prompt, 0, logits, err);
    double t1 = ls_time_ms();
    stats->prefill_ms = t1 - t0;
    stats->finish = LS_FINISH_LENGTH;
    int pos = n_prompt;
    for (int i = 0; st == LS_OK && i < p->n_predict; i++) {
        int32_t t = ls_sample(&p->sampling, &rng, logits, cfg->n_vocab, history, n_hist, &dist);
        out_tokens[i] = t;
        history[n_hist++] = t;
        stats->n_generated = i + 1;
        if (!p->ignore_eog && ls_tokenizer_is_eog(tok, t)) { stats->finish = LS_FINISH_EOG; break; }
        if (cb && !cb(user, t)) { stats->finish = LS_FINISH_STOPPED; break; }
        if (i + 1 == p->n_predict) break;
        if (pos >= ls_kv_n_ctx(kv)) { stats->finish = LS_FINISH_CONTEXT; break; }
        st = ls_embed(c, &t, 1, hidden, err);
        if (st == LS_OK) st = ls_forward(c, kv, 0, cfg->n_layers, pos, 1, hidden, err);
        if (st == LS_OK) st = ls_exit_head(c, hidden, 1, logits, err);
        pos++;
    }
    stats->decode_ms = ls_time_ms() - t1;
    free(logits); free(hidden); free(history);
    ls_dist_free(&dist);
    return st;
}
