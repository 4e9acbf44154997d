/* Self-speculative sampling follows the full model's distribution, not the
 * draft's. A random 4-layer model over a 16-token vocabulary (written here)
 * drafts with layer 0 only (E = 1), whose next-token distribution differs
 * from the full model's. 20,000 seeded generations (k = 4, three tokens, so
 * the first round drafts two): the first token's counts pass a chi-square
 * test against the full model's warped next-token distribution (p > 0.01)
 * and fail one against the draft's (p < 0.01); the joint counts of the first
 * two tokens (second draft accepted or rejected, bonus or correction) pass
 * against p_full(t1) p_full(t2 | t1). Two warper settings: plain temperature
 * 1, and temperature 0.7 + top-k 8 + top-p 0.9 + repetition penalty 1.3
 * (different supports for draft and full, and a history that includes the
 * earlier draft). The seeds are fixed, so the outcome is deterministic.
 *
 * The same for the other draft sources: a random draft adapter after layer 1
 * (tests/support/random_adapter.c; its draft distribution, taken from the
 * drafter, is what the counts must not follow), and lookup, whose draft is a
 * point mass: the prompt ends in an n-gram seen earlier in it, so lookup
 * proposes the earlier continuation (checked: it drafted in every run; the
 * counts cannot follow a point mass); 5,000 runs each under AddressSanitizer.
 * The 16-token vocabulary is tests/support/tiny_vocab.c's. */
#include "test_util.h"
#include "gguf_writer.h"
#include "random_model.h"
#include "random_adapter.h"
#include "tiny_vocab.h"
#include "chi2.h"
#include "layerskip/engine.h"
#include "layerskip/generate.h"

#define V 16
#define N_SAMPLES 20000
/* the adapter and lookup checks under AddressSanitizer (about 10x slower) */
#if defined(__SANITIZE_ADDRESS__)
#define N_SRC_SAMPLES 5000
#else
#define N_SRC_SAMPLES N_SAMPLES
#endif
#define E_EXIT 1

static void test_chi2_function(void) {
    /* known values: chi2 sf(3.84, 1) = 0.0500, sf(18.307, 10) = 0.0500,
     * sf(2, 2) = e^-1, sf(30.578, 15) = 0.0100 */
    CHECK_NEAR(chi2_sf(3.841459, 1), 0.05, 1e-6);
    CHECK_NEAR(chi2_sf(18.307038, 10), 0.05, 1e-6);
    CHECK_NEAR(chi2_sf(2.0, 2), exp(-1.0), 1e-12);
    CHECK_NEAR(chi2_sf(30.577914, 15), 0.01, 1e-6);
    CHECK_NEAR(chi2_sf(0.5, 3), 0.918891, 1e-6);
}

/* ------------------------------------------------------- the tiny model */

static ls_model *model;
static ls_ctx *ctx;
static ls_kv *kv;

/* warped next-token distribution (dense, V) after tokens[0..n) from layers
 * [0, l1): the full model (l1 = L) or the draft (l1 = E) */
static void next_dist(const int32_t *tokens, int n, int l1, const ls_sampling *s, double *out) {
    const int D = ls_model_config(model)->dim;
    float *h = malloc(sizeof(float) * (size_t)n * D), logits[V];
    ls_err err;
    ls_kv_truncate(kv, 0, ls_model_config(model)->n_layers, 0);
    bool ok = ls_embed(ctx, tokens, n, h, &err) == LS_OK &&
              ls_forward(ctx, kv, 0, l1, 0, n, h, &err) == LS_OK &&
              ls_exit_head(ctx, h + (size_t)(n - 1) * D, 1, logits, &err) == LS_OK;
    if (!ok) fprintf(stderr, "  next_dist: %s\n", err.msg);
    CHECK(ok);
    ls_dist d;
    ls_dist_init(&d, V);
    ls_sampler_probs(s, logits, V, tokens, n, &d);
    for (int i = 0; i < V; i++) out[i] = 0;
    for (int i = 0; i < d.n; i++) out[d.ids[i]] = d.p[i];
    ls_dist_free(&d);
    free(h);
}

/* how the drafts are made */
typedef struct draft_cfg {
    int n_samples;
    ls_draft_source source;     /* EXIT, ADAPTER or LOOKUP */
    const ls_adapter *adapter;  /* ADAPTER */
    const int32_t *prompt;
    int np;
    int32_t lookup_token;       /* LOOKUP: the continuation lookup proposes first */
} draft_cfg;

static const int32_t PROMPT[] = {1, 7, 4, 12, 9};
static const draft_cfg EXIT_DRAFTS = {N_SAMPLES, LS_DRAFT_EXIT, NULL, PROMPT, 5, -1};

/* the adapter's draft distribution for the first draft after the prompt, as
 * the drafter computes it (a chunk of one sampled draft) */
static void adapter_dist(const draft_cfg *dc, const ls_sampling *s, double *out) {
    const ls_config *c = ls_model_config(model);
    ls_gen_params gp = {.n_predict = 2, .sampling = *s, .ignore_eog = true, .strategy = LS_STRATEGY_SELF_SPECULATIVE,
                        .exit_layer = E_EXIT, .num_speculations = 1, .draft_source = LS_DRAFT_ADAPTER,
                        .adapter = dc->adapter};
    ls_kv *dkv = NULL;
    ls_drafter *d = NULL;
    ls_err err;
    float *h = malloc(sizeof(float) * 16 * (size_t)c->dim);
    int32_t hist[32];
    memcpy(hist, dc->prompt, sizeof(int32_t) * (size_t)dc->np);
    ls_draft_chunk *ch = calloc(1, sizeof *ch);
    ls_rng rng;
    ls_rng_seed(&rng, 1);
    const int n0 = dc->np - 1;
    bool ok = ls_kv_create(model, 0, c->n_layers, 32, &dkv, &err) == LS_OK &&
              ls_drafter_create(ctx, dkv, &gp, 32, &d, &err) == LS_OK && ls_embed(ctx, dc->prompt, n0, h, &err) == LS_OK &&
              ls_forward(ctx, dkv, 0, E_EXIT, 0, n0, h, &err) == LS_OK && ls_drafter_feed(d, 0, n0, h, &err) == LS_OK &&
              ls_drafter_draft(d, &rng, n0, dc->prompt[n0], 1, false, hist, h, ch, &err) == LS_OK;
    if (!ok) fprintf(stderr, "  adapter_dist: %s\n", err.msg);
    CHECK(ok && ch->m == 1 && ch->source == LS_DRAFT_ADAPTER);
    for (int i = 0; i < V; i++) out[i] = 0;
    for (int i = 0; ok && i < ch->q_n[0]; i++) out[ch->q_ids[0][i]] = ch->q_p[0][i];
    ls_drafter_free(d);
    ls_kv_free(dkv);
    free(ch);
    free(h);
}

static void check_sampling(const char *label, ls_sampling s, const draft_cfg *dc) {
    const int32_t *prompt = dc->prompt;
    const int np = dc->np, L = ls_model_config(model)->n_layers;
    double p_full[V], p_draft[V], tv = 0;
    next_dist(prompt, np, L, &s, p_full);
    if (dc->source == LS_DRAFT_EXIT) next_dist(prompt, np, E_EXIT, &s, p_draft);
    if (dc->source == LS_DRAFT_ADAPTER) adapter_dist(dc, &s, p_draft);
    if (dc->source == LS_DRAFT_LOOKUP)
        for (int i = 0; i < V; i++) p_draft[i] = i == dc->lookup_token; /* a point mass */
    for (int i = 0; i < V; i++) tv += fabs(p_full[i] - p_draft[i]) / 2;
    /* p_full(t2 | t1): the history the full model sees includes t1 */
    static double joint[V * V];
    for (int t1 = 0; t1 < V; t1++) {
        double cond[V];
        int32_t seq[16];
        memcpy(seq, prompt, sizeof(int32_t) * (size_t)np);
        seq[np] = t1;
        if (p_full[t1] > 0) next_dist(seq, np + 1, L, &s, cond);
        for (int t2 = 0; t2 < V; t2++) joint[t1 * V + t2] = p_full[t1] > 0 ? p_full[t1] * cond[t2] : 0;
    }

    static long c1[V], c12[V * V];
    memset(c1, 0, sizeof c1);
    memset(c12, 0, sizeof c12);
    int64_t drafted = 0, accepted = 0, other_source = 0;
    int runs_drafted = 0;
    double t0 = ls_time_ms();
    for (int i = 0; i < dc->n_samples; i++) {
        ls_gen_params gp = {.n_predict = 3, .sampling = s, .ignore_eog = true,
                            .strategy = LS_STRATEGY_SELF_SPECULATIVE, .exit_layer = E_EXIT, .num_speculations = 4,
                            .draft_source = dc->source, .adapter = dc->adapter};
        gp.sampling.seed = 0x5eed0000ull + (uint64_t)i;
        int32_t out[3];
        ls_gen_stats st;
        ls_err err;
        ls_status rc = ls_generate(ctx, kv, prompt, np, &gp, out, NULL, NULL, &st, &err);
        if (rc != LS_OK) fprintf(stderr, "  generate: %s\n", err.msg);
        REQUIRE(rc == LS_OK && st.n_generated == 3);
        c1[out[0]]++;
        c12[out[0] * V + out[1]]++;
        drafted += st.drafted;
        accepted += st.accepted;
        other_source += st.drafted - st.drafted_by[dc->source];
        runs_drafted += st.drafted_by[dc->source] > 0;
    }
    int df_full, df_draft, df_joint;
    double pv_full = chi2_pvalue(c1, p_full, V, dc->n_samples, &df_full);
    double pv_draft = chi2_pvalue(c1, p_draft, V, dc->n_samples, &df_draft);
    double pv_joint = chi2_pvalue(c12, joint, V * V, dc->n_samples, &df_joint);
    fprintf(stderr, "  [%s] %d samples in %.1f s, acceptance %.3f, TV(full, draft) %.3f\n", label, dc->n_samples,
            (ls_time_ms() - t0) / 1e3, drafted ? (double)accepted / drafted : 0.0, tv);
    fprintf(stderr, "    first token vs full: p = %.4f (df %d); vs draft: p = %.3g (df %d, -1: drew outside its support); "
            "first two vs full: p = %.4f (df %d)\n", pv_full, df_full, pv_draft, df_draft, pv_joint, df_joint);
    fprintf(stderr, "    %s drafted in %d of %d runs\n", ls_draft_source_name(dc->source), runs_drafted, dc->n_samples);
    CHECK(pv_full > 0.01);
    CHECK(pv_draft < 0.01);
    CHECK(pv_joint > 0.01);
    CHECK(accepted > 0 && accepted < drafted); /* both acceptance and rejection happened */
    CHECK_EQ_INT(other_source, 0);            /* every draft came from the source asked for */
    CHECK(runs_drafted >= dc->n_samples * 9 / 10);
}

static ls_sampling plain_sampling(void) {
    ls_sampling s;
    ls_sampling_default(&s);
    s.temperature = 1.0f;
    return s;
}

static ls_sampling warped_sampling(void) {
    ls_sampling s = plain_sampling();
    s.temperature = 0.7f;
    s.top_k = 8;
    s.top_p = 0.9f;
    s.repeat_penalty = 1.3f;
    return s;
}

static void test_sampling(void) {
    check_sampling("temperature 1", plain_sampling(), &EXIT_DRAFTS);
    check_sampling("temperature 0.7, top-k 8, top-p 0.9, penalty 1.3", warped_sampling(), &EXIT_DRAFTS);
}

/* a random adapter after layer 1 (attention and a feed-forward part) */
static void test_sampling_adapter(void) {
    const ra_spec as = {.exit_layer = E_EXIT, .ffn_dim = 64, .dtype = LS_TYPE_F32, .seed = 61, .scale = 2};
    const char *path = tu_tmp_path("spec_sampling_adapter.gguf");
    REQUIRE(ra_write_for_model(model, &as, path));
    ls_adapter *a = NULL;
    ls_err err;
    ls_status st = ls_adapter_load(path, model, &a, &err);
    if (st != LS_OK) fprintf(stderr, "  %s\n", err.msg);
    REQUIRE(st == LS_OK);
    const draft_cfg dc = {N_SRC_SAMPLES, LS_DRAFT_ADAPTER, a, PROMPT, 5, -1};
    check_sampling("adapter, temperature 1", plain_sampling(), &dc);
    check_sampling("adapter, temperature 0.7, top-k 8, top-p 0.9, penalty 1.3", warped_sampling(), &dc);
    ls_adapter_free(a);
}

/* lookup: the draft is a point mass on the prompt's earlier continuation.
 * The prompt 1 7 4 X 9 7 4 ends in "7 4", seen at its start, so lookup
 * proposes X (then 9); X is the token the full model finds likeliest there
 * (with the warpers, so that the point mass is sometimes accepted) */
static void test_sampling_lookup(void) {
    static int32_t prompt[] = {1, 7, 4, -1, 9, 7, 4};
    const ls_sampling w = warped_sampling();
    double best = -1, p[V];
    int32_t x = -1;
    for (int32_t cand = 3; cand < V; cand++) {
        prompt[3] = cand;
        next_dist(prompt, 7, ls_model_config(model)->n_layers, &w, p);
        if (p[cand] > best) {
            best = p[cand];
            x = cand;
        }
    }
    prompt[3] = x;
    fprintf(stderr, "  lookup proposes token %d: p_full %.3f (warped)\n", x, best);
    REQUIRE(best > 0.05 && best < 0.95);
    const draft_cfg dc = {N_SRC_SAMPLES, LS_DRAFT_LOOKUP, NULL, prompt, 7, x};
    check_sampling("lookup, temperature 1", plain_sampling(), &dc);
    check_sampling("lookup, temperature 0.7, top-k 8, top-p 0.9, penalty 1.3", warped_sampling(), &dc);
}

int main(void) {
    RUN(test_chi2_function);
    const char *vocab = tu_tmp_path("spec_sampling_vocab.gguf"), *path = tu_tmp_path("spec_sampling_model.gguf");
    if (!tv_write_vocab(vocab, V)) { fprintf(stderr, "cannot write %s\n", vocab); return 1; }
    rm_spec spec = {.n_layers = 4, .dim = 64, .n_heads = 4, .n_kv_heads = 2, .ffn_dim = 128,
                    .rope_theta = 10000, .norm_eps = 1e-5f, .dtype = LS_TYPE_F32, .vocab_gguf = vocab,
                    .seed = 21, .n_shards = 1};
    rm_model *rm = rm_model_create(&spec);
    if (!rm || !rm_write_gguf(rm, path)) { fprintf(stderr, "cannot write %s\n", path); return 1; }
    rm_model_free(rm);
    ls_err err;
    if (ls_model_load(path, &model, &err) != LS_OK || ls_ctx_create(model, 1, 16, &ctx, &err) != LS_OK ||
        ls_kv_create(model, 0, 4, 32, &kv, &err) != LS_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    CHECK_EQ_INT(ls_model_config(model)->n_vocab, V);
    RUN(test_sampling);
    RUN(test_sampling_adapter);
    RUN(test_sampling_lookup);
    ls_kv_free(kv);
    ls_ctx_free(ctx);
    ls_model_free(model);
    TEST_MAIN_END();
}
