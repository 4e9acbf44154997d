/* sampler.h: token selection as pure functions over logits.
 *
 * Order (llama.cpp's default chain): repetition penalty -> top-k -> top-p ->
 * min-p -> temperature -> draw. temperature <= 0 is greedy (argmax after the
 * repetition penalty; the lowest id wins ties). The warped distribution is
 * exposed too (ls_sampler_probs) because speculative sampling must apply the
 * same warpers to the draft and the full model's distributions. */
#ifndef LS_SAMPLER_H
#define LS_SAMPLER_H

#include "layerskip/ls_common.h"

typedef struct ls_sampling {
    float temperature;     /* <= 0: greedy */
    int32_t top_k;         /* <= 0: off */
    float top_p;           /* >= 1: off */
    float min_p;           /* <= 0: off */
    float repeat_penalty;  /* 1: off */
    int32_t repeat_last_n; /* tokens of history the penalty looks at */
    uint64_t seed;
} ls_sampling;

/* greedy, no penalty, seed 42 */
void ls_sampling_default(ls_sampling *p);
/* message naming the bad field, or LS_OK */
ls_status ls_sampling_check(const ls_sampling *p, ls_err *err);

typedef struct ls_rng { uint64_t s[4]; } ls_rng;
void ls_rng_seed(ls_rng *r, uint64_t seed);
uint64_t ls_rng_next(ls_rng *r);
double ls_rng_uniform(ls_rng *r); /* [0, 1) */

/* sparse distribution over the vocabulary: n candidates, probabilities sum 1,
 * sorted by decreasing probability */
typedef struct ls_dist {
    int32_t n;
    int32_t *ids;          /* (cap) */
    float *p;              /* (cap) */
    int32_t cap;           /* = n_vocab */
    float *work;           /* (cap) scratch */
} ls_dist;
ls_status ls_dist_init(ls_dist *d, int32_t n_vocab);
void ls_dist_free(ls_dist *d);

/* apply the repetition penalty to logits in place (llama.cpp rule: divide
 * positive logits, multiply negative ones, once per distinct token) */
void ls_sampler_penalize(const ls_sampling *p, float *logits, int32_t n_vocab,
                         const int32_t *history, int64_t n_history);
/* the warped distribution after the penalty (applied in place to logits).
 * Greedy gives a single candidate with probability 1. */
void ls_sampler_probs(const ls_sampling *p, float *logits, int32_t n_vocab,
                      const int32_t *history, int64_t n_history, ls_dist *out);
/* draw from a distribution with one uniform number */
int32_t ls_dist_draw(const ls_dist *d, ls_rng *rng);
/* probability of token id in d (0 when it is not a candidate) */
double ls_dist_prob(const ls_dist *d, int32_t id);
/* ls_dist_draw, but a single candidate is taken without using a random
 * number (greedy stays greedy, and random streams stay aligned) */
int32_t ls_dist_pick(const ls_dist *d, ls_rng *rng);
/* speculative sampling's correction after a rejected draft: a draw from
 * normalize(max(pf - pd, 0)) (pf: full model, pd: draft); when pf == pd up to
 * rounding (a rejection had probability ~0) a draw from pf. dense is
 * n_vocab floats of all-zero scratch, left all zero. */
int32_t ls_dist_draw_residual(const ls_dist *pf, const ls_dist *pd, float *dense, ls_rng *rng);
/* one step: penalty, warpers, draw (logits are modified) */
int32_t ls_sample(const ls_sampling *p, ls_rng *rng, float *logits, int32_t n_vocab,
                  const int32_t *history, int64_t n_history, ls_dist *scratch);
/* index of the largest value, lowest index on ties */
int32_t ls_argmax(const float *x, int32_t n);

#endif
