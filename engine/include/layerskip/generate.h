/* generate.h: generation loops built on the two primitives (ls_forward and
 * ls_exit_head): prompt processing in batches, then one token at a time
 * (autoregressive), from an early exit (early_exit), or drafted by the first
 * layers and verified by the rest (self_speculative, docs/LAYERSKIP.md). */
#ifndef LS_GENERATE_H
#define LS_GENERATE_H

#include "layerskip/engine.h"
#include "layerskip/sampler.h"
#include "layerskip/speculate.h"

typedef enum ls_finish {
    LS_FINISH_LENGTH = 0,  /* n_predict tokens generated */
    LS_FINISH_EOG = 1,     /* end-of-generation token */
    LS_FINISH_STOPPED = 2, /* the token callback asked to stop */
    LS_FINISH_CONTEXT = 3, /* the KV cache is full */
} ls_finish;
const char *ls_finish_name(ls_finish f);

typedef enum ls_strategy {
    LS_STRATEGY_AUTOREGRESSIVE = 0, /* all layers, one token at a time */
    LS_STRATEGY_EARLY_EXIT = 1,     /* layers [0, E) + exit head, prompt included; no verification */
    LS_STRATEGY_SELF_SPECULATIVE = 2, /* draft with [0, E), verify with [E, L): output of autoregressive */
} ls_strategy;
/* "autoregressive", "early_exit", "self_speculative" */
const char *ls_strategy_name(ls_strategy s);
/* the inverse of ls_strategy_name; the error lists the valid names */
ls_status ls_strategy_parse(const char *name, ls_strategy *out, ls_err *err);

typedef struct ls_gen_params {
    int32_t n_predict;     /* tokens to generate at most */
    ls_sampling sampling;
    bool ignore_eog;       /* keep going past end-of-generation tokens */
    /* zero-initialised: autoregressive, and the fields below are ignored */
    ls_strategy strategy;
    int32_t exit_layer;       /* E in [1, L-1]: early_exit and self_speculative */
    int32_t num_speculations; /* k in [1, LS_MAX_SPECULATIONS]: drafts per round (self_speculative);
                               * with auto_speculations the most a round may draft */
    /* stop a round's drafting when the draft softmax's top probability (raw
     * logits, before penalty and warpers) is below this; 0 = off, <= 1 */
    float draft_min_p;
    /* self_speculative (speculate.h); zero-initialised: auto source, no
     * adapter, full draft head, fixed k */
    ls_draft_source draft_source;
    const ls_adapter *adapter;   /* the adapter source's block and the draft head's table; NULL none */
    int32_t draft_vocab;         /* drafts score the N most frequent tokens (needs an adapter's table); 0 = all */
    bool auto_speculations;      /* k chosen per round in [0, num_speculations] */
} ls_gen_params;
/* message naming the bad field (strategy, exit_layer, num_speculations,
 * draft_min_p, draft_source, draft_vocab, adapter, n_predict, sampling), or
 * LS_OK; n_layers from the model */
ls_status ls_gen_params_check(const ls_gen_params *p, int n_layers, ls_err *err);

typedef struct ls_gen_stats {
    int32_t n_prompt;
    int32_t n_generated;
    double prefill_ms;     /* prompt processing up to the first token's logits;
                            * self_speculative: all prompt tokens but the last,
                            * which starts the first round (decode_ms) */
    double decode_ms;      /* everything after */
    ls_finish finish;
    /* self_speculative only (zero otherwise); acceptance rate = accepted / drafted */
    int64_t drafted;       /* draft tokens proposed (all sources) */
    int64_t accepted;      /* of those, accepted by the verification */
    int64_t rounds;        /* verification rounds (one [E, L) call each) */
    int64_t accept_hist[LS_MAX_SPECULATIONS + 1]; /* rounds by drafts accepted, 0..32 */
    int64_t drafted_by[LS_N_DRAFT_SOURCES];  /* per source (ls_draft_source); [LS_DRAFT_AUTO] = 0 */
    int64_t accepted_by[LS_N_DRAFT_SOURCES];
    int64_t rounds_by_k[LS_MAX_SPECULATIONS + 1]; /* rounds by the k allowed (auto: chosen; 0 = a plain step) */
} ls_gen_stats;

/* called for every generated token; return false to stop */
typedef bool (*ls_token_cb)(void *user, int32_t token);

/* Run all layers over tokens[0..n) at positions pos.. (in batches of the
 * context's max_batch) and write the last position's logits (n_vocab). */
ls_status ls_prefill(ls_ctx *c, ls_kv *kv, const int32_t *tokens, int n, int pos,
                     float *logits_last, ls_err *err);

/* Generation from an empty cache with p->strategy. out_tokens (n_predict
 * entries) receives the generated ids. The cache must hold layers [0, L) and
 * self_speculative needs a context with max_batch >= num_speculations + 1.
 * Greedy self_speculative output equals autoregressive output token for
 * token (exact mode); with sampling both follow the same distribution. */
ls_status ls_generate(ls_ctx *c, ls_kv *kv, const int32_t *prompt, int n_prompt,
                      const ls_gen_params *p, int32_t *out_tokens, ls_token_cb cb,
                      void *user, ls_gen_stats *stats, ls_err *err);

/* ---- many generations at once, a step at a time (gen_step.c) ----
 * A scheduler creates one ls_gen per request (its own KV cache, cleared
 * here; bound to context c, on which every step runs) and calls
 * ls_gen_step over the unfinished ones: each gets its next work, a slice of
 * up to prefill_chunk prompt tokens, one decode token, or one
 * self-speculative round (drafted on its own, its chunk verified in the
 * shared pass), all of it in one forward pass per layer range and one
 * exit-head call (generations that do not fit the context's max_batch wait
 * a step). The callback, finish rules, sampling and stats are ls_generate's,
 * and in exact mode each output is token for token what ls_generate gives
 * alone; one exception: with auto k (auto_speculations) the k chosen
 * follows the measured cost of the shared pass, so a sampled (not greedy)
 * self-speculative output may differ from its run alone. out_tokens, cb's
 * user and stats must live until ls_gen_free. A failed step ends every
 * generation it ran with that status (ls_gen_status). */
typedef struct ls_gen ls_gen;
ls_status ls_gen_create(ls_ctx *c, ls_kv *kv, const int32_t *prompt, int n_prompt, const ls_gen_params *p,
                        int32_t *out_tokens, ls_token_cb cb, void *user, ls_gen_stats *stats, ls_gen **out,
                        ls_err *err);
void ls_gen_free(ls_gen *g);
bool ls_gen_done(const ls_gen *g);
ls_status ls_gen_status(const ls_gen *g);
/* prompt tokens not yet run */
int ls_gen_prompt_left(const ls_gen *g);
ls_status ls_gen_step(ls_ctx *c, ls_gen **gens, int n_gens, int prefill_chunk, ls_err *err);

double ls_time_ms(void); /* monotonic clock */

#endif
