/* generate_internal.h: what the generation loops share (generate.c holds the
 * autoregressive and early-exit loops, speculative.c the self-speculative
 * one): the run state and the rule for emitting a token. */
#ifndef LS_GENERATE_INTERNAL_H
#define LS_GENERATE_INTERNAL_H

#include "layerskip/generate.h"
#include "layerskip/tokenizer.h"

typedef struct ls_gen_run {
    ls_ctx *c;
    ls_kv *kv;
    const ls_gen_params *p;
    const ls_config *cfg;
    const ls_tokenizer *tok;
    int32_t *out;        /* (n_predict) generated ids */
    int32_t *history;    /* (n_prompt + n_predict + LS_MAX_SPECULATIONS + 1): prompt,
                          * emitted tokens, then a round's drafts (penalty history) */
    int64_t n_hist;      /* prompt + emitted */
    ls_token_cb cb;
    void *user;
    ls_gen_stats *stats;
    ls_rng rng;
} ls_gen_run;

/* Record t as the next generated token (out, history, count, callback).
 * False when generation ends with it: stats->finish says why (EOG, the
 * callback, or n_predict reached: LS_FINISH_LENGTH). */
bool ls_gen_emit(ls_gen_run *r, int32_t t);

/* Layers [0, l1) over tokens[0..n) at positions pos.. in batches of the
 * context's max_batch; logits_last (optional) gets the last position's
 * logits through the exit head. */
ls_status ls_prefill_layers(ls_ctx *c, ls_kv *kv, const int32_t *tokens, int n, int pos, int l1,
                            float *logits_last, ls_err *err);

/* the self-speculative loop (speculative.c); the caller has checked the
 * parameters, cleared the cache and stats and filled history with the prompt */
ls_status ls_generate_self_speculative(ls_gen_run *r, const int32_t *prompt, int n_prompt, ls_err *err);

#endif
