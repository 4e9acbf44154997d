/* generate.h: generation loops built on the two primitives (ls_forward and
 * ls_exit_head): prompt processing in batches, then one token at a time. */
#ifndef LS_GENERATE_H
#define LS_GENERATE_H

#include "layerskip/engine.h"
#include "layerskip/sampler.h"

typedef enum ls_finish {
    LS_FINISH_LENGTH = 0,  /* n_predict tokens generated */
    LS_FINISH_EOG = 1,     /* end-of-generation token */
    LS_FINISH_STOPPED = 2, /* the token callback asked to stop */
    LS_FINISH_CONTEXT = 3, /* the KV cache is full */
} ls_finish;
const char *ls_finish_name(ls_finish f);

typedef struct ls_gen_params {
    int32_t n_predict;     /* tokens to generate at most */
    ls_sampling sampling;
    bool ignore_eog;       /* keep going past end-of-generation tokens */
} ls_gen_params;

typedef struct ls_gen_stats {
    int32_t n_prompt;
    int32_t n_generated;
    double prefill_ms;     /* prompt processing up to the first token's logits */
    double decode_ms;      /* everything after */
    ls_finish finish;
} ls_gen_stats;

/* called for every generated token; return false to stop */
typedef bool (*ls_token_cb)(void *user, int32_t token);

/* Run all layers over tokens[0..n) at positions pos.. (in batches of the
 * context's max_batch) and write the last position's logits (n_vocab). */
ls_status ls_prefill(ls_ctx *c, ls_kv *kv, const int32_t *tokens, int n, int pos,
                     float *logits_last, ls_err *err);

/* Autoregressive generation from an empty cache. out_tokens (n_predict
 * entries) receives the generated ids. */
ls_status ls_generate(ls_ctx *c, ls_kv *kv, const int32_t *prompt, int n_prompt,
                      const ls_gen_params *p, int32_t *out_tokens, ls_token_cb cb,
                      void *user, ls_gen_stats *stats, ls_err *err);

double ls_time_ms(void); /* monotonic clock */

#endif
