/* sampler.c: repetition penalty, top-k, top-p, min-p, temperature, draw.
 * Selection avoids sorting the whole vocabulary per token: candidates are
 * cut by top-k (or a provisional top-256 for top-p, widened when the mass
 * it holds is not enough), then sorted. */
#define _GNU_SOURCE
#include "layerskip/sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void ls_sampling_default(ls_sampling *p) {
    p->temperature = 0.0f;
    p->top_k = 0;
    p->top_p = 1.0f;
    p->min_p = 0.0f;
    p->repeat_penalty = 1.0f;
    p->repeat_last_n = 64;
    p->seed = 42;
}

ls_status ls_sampling_check(const ls_sampling *p, ls_err *err) {
    if (!(p->temperature >= 0 && p->temperature <= 100) )
        return ls_err_set(err, LS_ERR_INVALID, "temperature %g is out of range [0, 100]", (double)p->temperature);
    if (p->top_k < 0)
        return ls_err_set(err, LS_ERR_INVALID, "top_k %d must be >= 0 (0 = off)", p->top_k);
    if (!(p->top_p > 0 && p->top_p <= 1))
        return ls_err_set(err, LS_ERR_INVALID, "top_p %g is out of range (0, 1]", (double)p->top_p);
    if (!(p->min_p >= 0 && p->min_p <= 1))
        return ls_err_set(err, LS_ERR_INVALID, "min_p %g is out of range [0, 1]", (double)p->min_p);
    if (!(p->repeat_penalty > 0 && p->repeat_penalty <= 10))
        return ls_err_set(err, LS_ERR_INVALID, "repeat_penalty %g is out of range (0, 10]", (double)p->repeat_penalty);
    if (p->repeat_last_n < 0)
        return ls_err_set(err, LS_ERR_INVALID, "repeat_last_n %d must be >= 0", p->repeat_last_n);
    return LS_OK;
}

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void ls_rng_seed(ls_rng *r, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t ls_rng_next(ls_rng *r) { /* xoshiro256** */
    uint64_t *s = r->s;
    const uint64_t result = rotl(s[1] * 5, 7) * 9;
    const uint64_t t = s[1] << 17;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double ls_rng_uniform(ls_rng *r) { return (double)(ls_rng_next(r) >> 11) * 0x1.0p-53; }

ls_status ls_dist_init(ls_dist *d, int32_t n_vocab) {
    memset(d, 0, sizeof *d);
    d->ids = malloc(sizeof(int32_t) * (size_t)n_vocab);
    d->p = malloc(sizeof(float) * (size_t)n_vocab);
    d->work = malloc(sizeof(float) * (size_t)n_vocab);
    d->cap = n_vocab;
    if (!d->ids || !d->p || !d->work) { ls_dist_free(d); return LS_ERR_NOMEM; }
    return LS_OK;
}

void ls_dist_free(ls_dist *d) {
    free(d->ids); free(d->p); free(d->work);
    memset(d, 0, sizeof *d);
}

int32_t ls_argmax(const float *x, int32_t n) {
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

void ls_sampler_penalize(const ls_sampling *p, float *logits, int32_t n_vocab,
                         const int32_t *history, int64_t n_history) {
    if (p->repeat_penalty == 1.0f || p->repeat_last_n == 0 || n_history <= 0) return;
    int64_t start = n_history > p->repeat_last_n ? n_history - p->repeat_last_n : 0;
    for (int64_t i = start; i < n_history; i++) {
        int32_t t = history[i];
        if (t < 0 || t >= n_vocab) continue;
        bool seen = false; /* penalise each distinct token once */
        for (int64_t k = start; k < i; k++) if (history[k] == t) { seen = true; break; }
        if (seen) continue;
        logits[t] = logits[t] > 0 ? logits[t] / p->repeat_penalty : logits[t] * p->repeat_penalty;
    }
}

/* sort candidates ids[0..n) by decreasing logit (ties: lower id first) */
static int cmp_cand(const void *a, const void *b, void *arg) {
    const float *logits = arg;
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    float lx = logits[x], ly = logits[y];
    if (lx > ly) return -1;
    if (lx < ly) return 1;
    return (x > y) - (x < y);
}

/* keep the `k` largest logits in ids[0..k) (unsorted), via a threshold found
 * by selection on a copy */
static int32_t select_top(const float *logits, int32_t n_vocab, int32_t k, int32_t *ids, float *work) {
    if (k >= n_vocab) {
        for (int32_t i = 0; i < n_vocab; i++) ids[i] = i;
        return n_vocab;
    }
    memcpy(work, logits, sizeof(float) * (size_t)n_vocab);
    /* quickselect for the k-th largest value */
    int32_t lo = 0, hi = n_vocab - 1, target = k - 1;
    while (lo < hi) {
        float pivot = work[lo + (hi - lo) / 2];
        int32_t i = lo, j = hi;
        while (i <= j) {
            while (work[i] > pivot) i++;
            while (work[j] < pivot) j--;
            if (i <= j) { float t = work[i]; work[i] = work[j]; work[j] = t; i++; j--; }
        }
        if (target <= j) hi = j; else if (target >= i) lo = i; else break;
    }
    float thr = work[target];
    int32_t n = 0;
    for (int32_t i = 0; i < n_vocab && n < k; i++)
        if (logits[i] > thr) ids[n++] = i;
    for (int32_t i = 0; i < n_vocab && n < k; i++)
        if (logits[i] == thr) ids[n++] = i;
    return n;
}

void ls_sampler_probs(const ls_sampling *p, float *logits, int32_t n_vocab,
                      const int32_t *history, int64_t n_history, ls_dist *out) {
    ls_sampler_penalize(p, logits, n_vocab, history, n_history);
    if (p->temperature <= 0) {
        out->n = 1;
        out->ids[0] = ls_argmax(logits, n_vocab);
        out->p[0] = 1.0f;
        return;
    }
    int32_t k = p->top_k > 0 && p->top_k < n_vocab ? p->top_k : n_vocab;
    const bool want_top_p = p->top_p < 1.0f;
    int32_t n;
    float maxl = logits[ls_argmax(logits, n_vocab)];
    for (int32_t tryk = (k < 256 || !want_top_p) ? k : 256;; tryk = tryk * 4 < k ? tryk * 4 : k) {
        n = select_top(logits, n_vocab, tryk, out->ids, out->work);
        qsort_r(out->ids, (size_t)n, sizeof(int32_t), cmp_cand, logits);
        if (!want_top_p || tryk >= k) break;
        /* is the top-p mass inside these candidates? compare with the full sum */
        double inside = 0, total = 0;
        for (int32_t i = 0; i < n; i++) inside += exp((double)logits[out->ids[i]] - maxl);
        for (int32_t i = 0; i < n_vocab; i++) total += exp((double)logits[i] - maxl);
        if (inside / total >= p->top_p) break;
    }
    /* softmax over the kept candidates (top-k restricts the support first) */
    double sum = 0;
    for (int32_t i = 0; i < n; i++) {
        out->p[i] = (float)exp((double)logits[out->ids[i]] - maxl);
        sum += out->p[i];
    }
    if (want_top_p) {
        /* top-p mass is measured over the top-k distribution, as llama.cpp does */
        double cum = 0;
        int32_t keep = n;
        for (int32_t i = 0; i < n; i++) {
            cum += out->p[i] / sum;
            if (cum >= p->top_p) { keep = i + 1; break; }
        }
        n = keep;
    }
    if (p->min_p > 0) {
        float thr = out->p[0] * p->min_p;
        int32_t keep = 1;
        while (keep < n && out->p[keep] >= thr) keep++;
        n = keep;
    }
    /* temperature on the surviving logits */
    sum = 0;
    for (int32_t i = 0; i < n; i++) {
        out->p[i] = (float)exp(((double)logits[out->ids[i]] - maxl) / p->temperature);
        sum += out->p[i];
    }
    for (int32_t i = 0; i < n; i++) out->p[i] = (float)(out->p[i] / sum);
    out->n = n;
}

int32_t ls_dist_draw(const ls_dist *d, ls_rng *rng) {
    double u = ls_rng_uniform(rng), cum = 0;
    for (int32_t i = 0; i < d->n; i++) {
        cum += d->p[i];
        if (u < cum) return d->ids[i];
    }
    return d->ids[d->n - 1];
}

double ls_dist_prob(const ls_dist *d, int32_t id) {
    for (int32_t i = 0; i < d->n; i++)
        if (d->ids[i] == id) return d->p[i];
    return 0;
}

int32_t ls_dist_pick(const ls_dist *d, ls_rng *rng) {
    return d->n == 1 ? d->ids[0] : ls_dist_draw(d, rng);
}

/* over the union of both supports; max(pf - pd, 0) > 0 only where pf > 0 */
int32_t ls_dist_draw_residual(const ls_dist *pf, const ls_dist *pd, float *dense, ls_rng *rng) {
    for (int32_t i = 0; i < pf->n; i++) dense[pf->ids[i]] = pf->p[i];
    for (int32_t i = 0; i < pd->n; i++) dense[pd->ids[i]] -= pd->p[i];
    double sum = 0;
    for (int32_t i = 0; i < pf->n; i++)
        if (dense[pf->ids[i]] > 0) sum += dense[pf->ids[i]];
    int32_t pick = -1;
    if (sum > 0) {
        double u = ls_rng_uniform(rng) * sum, cum = 0;
        for (int32_t i = 0; i < pf->n; i++) {
            float r = dense[pf->ids[i]];
            if (r <= 0) continue;
            cum += r;
            pick = pf->ids[i];
            if (u < cum) break;
        }
    }
    for (int32_t i = 0; i < pf->n; i++) dense[pf->ids[i]] = 0;
    for (int32_t i = 0; i < pd->n; i++) dense[pd->ids[i]] = 0;
    /* pf == pd up to rounding: a rejection had probability ~0, pf is the answer */
    return pick >= 0 ? pick : ls_dist_pick(pf, rng);
}

int32_t ls_sample(const ls_sampling *p, ls_rng *rng, float *logits, int32_t n_vocab,
                  const int32_t *history, int64_t n_history, ls_dist *scratch) {
    ls_sampler_probs(p, logits, n_vocab, history, n_history, scratch);
    if (scratch->n == 1) return scratch->ids[0];
    return ls_dist_draw(scratch, rng);
}
