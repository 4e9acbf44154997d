/* Sampling: greedy, repetition penalty, top-k, top-p, min-p, temperature,
 * seeded reproducibility, and the empirical distribution of draws. */
#include "test_util.h"
#include "layerskip/sampler.h"

#define V 8

static void test_greedy_and_ties(void) {
    ls_sampling p;
    ls_sampling_default(&p);
    ls_dist d;
    REQUIRE(ls_dist_init(&d, V) == LS_OK);
    float l[V] = {0.1f, 2.0f, -1.0f, 2.0f, 0.5f, 0, 0, 0};
    ls_rng r;
    ls_rng_seed(&r, 1);
    CHECK_EQ_INT(ls_sample(&p, &r, l, V, NULL, 0, &d), 1); /* lowest id wins ties */
    ls_dist_free(&d);
}

static void test_repeat_penalty(void) {
    ls_sampling p;
    ls_sampling_default(&p);
    p.repeat_penalty = 2.0f;
    float l[V] = {3.0f, 2.0f, -1.0f, 0, 0, 0, 0, 0};
    int32_t hist[] = {0, 2, 0};
    ls_sampler_penalize(&p, l, V, hist, 3);
    CHECK_NEAR(l[0], 1.5, 1e-6);  /* positive: divided once although seen twice */
    CHECK_NEAR(l[2], -2.0, 1e-6); /* negative: multiplied */
    CHECK_NEAR(l[1], 2.0, 1e-6);
    ls_dist d;
    ls_dist_init(&d, V);
    float l2[V] = {3.0f, 2.0f, -1.0f, 0, 0, 0, 0, 0};
    ls_rng r;
    ls_rng_seed(&r, 1);
    CHECK_EQ_INT(ls_sample(&p, &r, l2, V, hist, 3, &d), 1); /* greedy after the penalty */
    /* repeat_last_n limits the window */
    float l3[V] = {3.0f, 2.0f, 0, 0, 0, 0, 0, 0};
    p.repeat_last_n = 1;
    int32_t hist2[] = {0, 5};
    ls_sampler_penalize(&p, l3, V, hist2, 2);
    CHECK_NEAR(l3[0], 3.0, 1e-6);
    ls_dist_free(&d);
}

static void test_filters(void) {
    ls_dist d;
    ls_dist_init(&d, V);
    float base[V] = {4, 3, 2, 1, 0, -1, -2, -3};
    float l[V];
    ls_sampling p;
    ls_sampling_default(&p);
    p.temperature = 1.0f;
    p.top_k = 3;
    memcpy(l, base, sizeof l);
    ls_sampler_probs(&p, l, V, NULL, 0, &d);
    CHECK_EQ_INT(d.n, 3);
    CHECK_EQ_INT(d.ids[0], 0);
    CHECK_EQ_INT(d.ids[2], 2);
    double s = 0;
    for (int i = 0; i < d.n; i++) s += d.p[i];
    CHECK_NEAR(s, 1.0, 1e-6);
    CHECK_NEAR(d.p[0] / d.p[1], exp(1.0), 1e-4);

    ls_sampling_default(&p);
    p.temperature = 1.0f;
    p.top_p = 0.9f; /* softmax of base: 0.6439, 0.2369, 0.0871, ... -> 3 kept */
    memcpy(l, base, sizeof l);
    ls_sampler_probs(&p, l, V, NULL, 0, &d);
    CHECK_EQ_INT(d.n, 3);

    ls_sampling_default(&p);
    p.temperature = 1.0f;
    p.min_p = 0.3f; /* keep p >= 0.3 * p_max: exp(-1) = 0.37 kept, exp(-2) dropped */
    memcpy(l, base, sizeof l);
    ls_sampler_probs(&p, l, V, NULL, 0, &d);
    CHECK_EQ_INT(d.n, 2);

    ls_sampling_default(&p);
    p.temperature = 0.5f; /* sharper: ratio of the first two = e^2 */
    memcpy(l, base, sizeof l);
    ls_sampler_probs(&p, l, V, NULL, 0, &d);
    CHECK_EQ_INT(d.n, V);
    CHECK_NEAR(d.p[0] / d.p[1], exp(2.0), 1e-3);
    ls_dist_free(&d);
}

static void test_top_p_large_vocab(void) {
    /* flat-ish distribution over 50k tokens: the provisional top-256 cut must
     * widen until it holds the top-p mass */
    const int n = 50000;
    float *l = malloc(sizeof(float) * n), *l2 = malloc(sizeof(float) * n);
    ls_rng r;
    ls_rng_seed(&r, 7);
    for (int i = 0; i < n; i++) l[i] = (float)ls_rng_uniform(&r) * 0.1f;
    memcpy(l2, l, sizeof(float) * n);
    ls_dist d;
    ls_dist_init(&d, n);
    ls_sampling p;
    ls_sampling_default(&p);
    p.temperature = 1.0f;
    p.top_p = 0.5f;
    ls_sampler_probs(&p, l, n, NULL, 0, &d);
    CHECK(d.n > 20000 && d.n < 30000);
    for (int i = 1; i < d.n; i++) CHECK(l2[d.ids[i - 1]] >= l2[d.ids[i]]);
    ls_dist_free(&d);
    free(l); free(l2);
}

static void test_seeded_draws(void) {
    ls_dist d;
    ls_dist_init(&d, V);
    ls_sampling p;
    ls_sampling_default(&p);
    p.temperature = 1.0f;
    const float base[V] = {1.0f, 0.5f, 0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -2.5f};
    int counts[V] = {0};
    int32_t seq1[50], seq2[50];
    for (int rep = 0; rep < 2; rep++) {
        ls_rng r;
        ls_rng_seed(&r, 1234);
        for (int i = 0; i < 50; i++) {
            float l[V];
            memcpy(l, base, sizeof l);
            (rep ? seq2 : seq1)[i] = ls_sample(&p, &r, l, V, NULL, 0, &d);
        }
    }
    CHECK(memcmp(seq1, seq2, sizeof seq1) == 0);
    ls_rng r;
    ls_rng_seed(&r, 99);
    const int N = 200000;
    for (int i = 0; i < N; i++) {
        float l[V];
        memcpy(l, base, sizeof l);
        counts[ls_sample(&p, &r, l, V, NULL, 0, &d)]++;
    }
    double z = 0;
    for (int i = 0; i < V; i++) z += exp(base[i]);
    for (int i = 0; i < V; i++) {
        double want = exp(base[i]) / z;
        CHECK_NEAR((double)counts[i] / N, want, 4 * sqrt(want * (1 - want) / N) + 1e-4);
    }
    ls_dist_free(&d);
}

static void test_check(void) {
    ls_sampling p;
    ls_err err;
    ls_sampling_default(&p);
    CHECK_EQ_INT(ls_sampling_check(&p, &err), LS_OK);
    p.top_p = 0;
    CHECK_EQ_INT(ls_sampling_check(&p, &err), LS_ERR_INVALID);
    CHECK(strstr(err.msg, "top_p") != NULL);
    ls_sampling_default(&p);
    p.temperature = -1;
    CHECK_EQ_INT(ls_sampling_check(&p, &err), LS_ERR_INVALID);
    CHECK(strstr(err.msg, "temperature") != NULL);
    ls_sampling_default(&p);
    p.repeat_penalty = 0;
    CHECK_EQ_INT(ls_sampling_check(&p, &err), LS_ERR_INVALID);
}

/* speculative sampling's correction: normalize(max(pf - pd, 0)) */
static void test_residual(void) {
    ls_dist pf, pd;
    CHECK_EQ_INT(ls_dist_init(&pf, V), LS_OK);
    CHECK_EQ_INT(ls_dist_init(&pd, V), LS_OK);
    float dense[8] = {0};
    ls_rng r;
    ls_rng_seed(&r, 7);
    /* pf = {3: 0.5, 1: 0.3, 5: 0.2}, pd = {3: 0.9, 1: 0.1}: residual {1: 0.2, 5: 0.2} */
    pf.n = 3; pf.ids[0] = 3; pf.p[0] = 0.5f; pf.ids[1] = 1; pf.p[1] = 0.3f; pf.ids[2] = 5; pf.p[2] = 0.2f;
    pd.n = 2; pd.ids[0] = 3; pd.p[0] = 0.9f; pd.ids[1] = 1; pd.p[1] = 0.1f;
    CHECK_NEAR(ls_dist_prob(&pf, 5), 0.2, 1e-7);
    CHECK_NEAR(ls_dist_prob(&pd, 5), 0.0, 0);
    int count[8] = {0};
    for (int i = 0; i < 4000; i++) count[ls_dist_draw_residual(&pf, &pd, dense, &r)]++;
    CHECK_EQ_INT(count[3], 0); /* pd covers pf there: never drawn */
    CHECK(count[1] > 1800 && count[1] < 2200);
    CHECK_EQ_INT(count[1] + count[5], 4000);
    for (int i = 0; i < V; i++) CHECK_NEAR(dense[i], 0.0, 0); /* scratch left zero */
    /* pf == pd: no residual mass, a draw from pf */
    pd.n = 3; pd.ids[0] = 3; pd.p[0] = 0.5f; pd.ids[1] = 1; pd.p[1] = 0.3f; pd.ids[2] = 5; pd.p[2] = 0.2f;
    int32_t t = ls_dist_draw_residual(&pf, &pd, dense, &r);
    CHECK(t == 3 || t == 1 || t == 5);
    /* a single candidate is taken without a random number */
    pf.n = 1;
    ls_rng a = r, b = r;
    CHECK_EQ_INT(ls_dist_pick(&pf, &a), 3);
    CHECK(ls_rng_next(&a) == ls_rng_next(&b));
    ls_dist_free(&pf);
    ls_dist_free(&pd);
}

int main(void) {
    RUN(test_greedy_and_ties);
    RUN(test_repeat_penalty);
    RUN(test_filters);
    RUN(test_top_p_large_vocab);
    RUN(test_seeded_draws);
    RUN(test_check);
    RUN(test_residual);
    TEST_MAIN_END();
}
