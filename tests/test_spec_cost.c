/* The cost model of each strategy, read from the context's counters
 * (ls_ctx_counters), and the KV cache after rollback.
 *
 * self_speculative: every layer runs once per position that ever entered
 * the cache, i.e. layers [0, E) once per drafted position, kept or rolled
 * back, and layers [E, L) once per verified position: for every layer,
 * evaluations = (prompt - 1) + drafted + rounds = kept + rolled back, with
 * kept = the final cache length = prompt + generated - 1 and rolled back =
 * drafted - accepted; one [E, L) call per round; the exit head runs on the
 * drafts and on verified positions up to the first rejection. early_exit:
 * layers [E, L) never run. Rollback: after generations with rejections
 * (greedy and sampled, random and default model, stopped by length, a
 * callback or EOS), every cached K and V row of every layer equals, bit for
 * bit, that of a fresh autoregressive pass over the same tokens. */
#include "test_util.h"
#include "gguf_writer.h"
#include "random_model.h"
#include "layerskip/engine.h"
#include "layerskip/generate.h"
#include "layerskip/tokenizer.h"

typedef struct setup {
    ls_model *m;
    ls_ctx *ctx;
    ls_kv *kv;
    int L, B;
} setup;

static bool setup_init(setup *s, const char *path, int max_batch, int n_ctx) {
    ls_err err;
    memset(s, 0, sizeof *s);
    if (ls_model_load(path, &s->m, &err) != LS_OK || ls_ctx_create(s->m, 2, max_batch, &s->ctx, &err) != LS_OK ||
        ls_kv_create(s->m, 0, ls_model_config(s->m)->n_layers, n_ctx, &s->kv, &err) != LS_OK) {
        fprintf(stderr, "setup %s: %s\n", path, err.msg);
        return false;
    }
    s->L = ls_model_config(s->m)->n_layers;
    s->B = max_batch;
    return true;
}

static void setup_free(setup *s) {
    ls_kv_free(s->kv);
    ls_ctx_free(s->ctx);
    ls_model_free(s->m);
}

static const char *random_model_path(const char *name, const char *vocab, uint64_t seed) {
    rm_spec spec = {.n_layers = 6, .dim = 64, .n_heads = 4, .n_kv_heads = 2, .ffn_dim = 128,
                    .rope_theta = 10000, .norm_eps = 1e-5f, .dtype = LS_TYPE_F16, .vocab_gguf = vocab,
                    .seed = seed, .n_shards = 1};
    rm_model *rm = rm_model_create(&spec);
    const char *path = tu_tmp_path(name);
    bool ok = rm && rm_write_gguf(rm, path);
    rm_model_free(rm);
    return ok ? path : NULL;
}

/* Cached rows of s->kv == those of a fresh cache filled one position at a
 * time over tokens[0..n) (all layers); the lengths must be n. */
static bool kv_matches_fresh(const setup *s, const int32_t *tokens, int n) {
    const ls_config *cfg = ls_model_config(s->m);
    const size_t row = sizeof(uint16_t) * (size_t)cfg->n_kv_heads * cfg->head_dim;
    ls_err err;
    ls_ctx *c;
    ls_kv *fresh;
    if (ls_ctx_create(s->m, 2, 1, &c, &err) != LS_OK ||
        ls_kv_create(s->m, 0, s->L, ls_kv_n_ctx(s->kv), &fresh, &err) != LS_OK)
        return false;
    float *h = malloc(sizeof(float) * (size_t)cfg->dim);
    bool ok = true;
    for (int i = 0; ok && i < n; i++)
        ok = ls_embed(c, &tokens[i], 1, h, &err) == LS_OK && ls_forward(c, fresh, 0, s->L, i, 1, h, &err) == LS_OK;
    int bad_layer = -1, bad_pos = -1;
    for (int l = 0; ok && l < s->L; l++) {
        if (ls_kv_len(s->kv, l) != n) {
            fprintf(stderr, "  layer %d caches %d positions, want %d\n", l, ls_kv_len(s->kv, l), n);
            ok = false;
        }
        for (int p = 0; ok && p < n; p++)
            if (memcmp(ls_kv_k_row(s->kv, l, p), ls_kv_k_row(fresh, l, p), row) != 0 ||
                memcmp(ls_kv_v_row(s->kv, l, p), ls_kv_v_row(fresh, l, p), row) != 0) {
                bad_layer = l;
                bad_pos = p;
                ok = false;
            }
    }
    if (bad_layer >= 0) fprintf(stderr, "  K/V row differs at layer %d position %d\n", bad_layer, bad_pos);
    free(h);
    ls_kv_free(fresh);
    ls_ctx_free(c);
    return ok;
}

typedef struct stop_after { int n, seen; } stop_after;
static bool stop_cb(void *user, int32_t t) {
    (void)t;
    stop_after *sa = user;
    return ++sa->seen < sa->n;
}

typedef struct run {
    int32_t out[512];
    ls_gen_stats st;
    ls_counters cnt;
} run;

static bool generate(setup *s, const int32_t *prompt, int np, const ls_gen_params *gp, ls_token_cb cb, void *user,
                     run *r) {
    ls_err err;
    ls_ctx_reset_counters(s->ctx);
    ls_status st = ls_generate(s->ctx, s->kv, prompt, np, gp, r->out, cb, user, &r->st, &err);
    if (st != LS_OK) fprintf(stderr, "  generate: %s\n", err.msg);
    r->cnt = *ls_ctx_counters(s->ctx);
    return st == LS_OK;
}

/* the self-speculative identities; min_p_on: a round may also stop drafting
 * after a head whose top probability is too low */
static void check_spec_cost(const setup *s, const run *r, int np, bool min_p_on) {
    const ls_gen_stats *st = &r->st;
    const int64_t kept = np + st->n_generated - 1;
    const int64_t evaluated = (np - 1) + st->drafted + st->rounds;
    for (int l = 0; l < s->L; l++) {
        /* [0, E): one per drafted position, kept or rolled back; [E, L): one per verified position */
        CHECK_EQ_INT(r->cnt.layer_positions[l], evaluated);
        CHECK_EQ_INT(ls_kv_len(s->kv, l), kept);
    }
    if (st->finish == LS_FINISH_LENGTH) {
        /* every round emits its accepted drafts and one more token */
        CHECK_EQ_INT(st->accepted + st->rounds, st->n_generated);
        CHECK_EQ_INT(r->cnt.layer_positions[0], kept + (st->drafted - st->accepted));
        CHECK_EQ_INT(r->cnt.layer_positions[s->L - 1], kept + (st->drafted - st->accepted));
    }
    /* prefill batches, one [0, E) call per drafted position and the newest
     * token, and ONE [E, L) call per round */
    const int64_t prefill_calls = (np - 1 + s->B - 1) / s->B;
    CHECK_EQ_INT(r->cnt.forward_calls, prefill_calls + st->drafted + 2 * st->rounds);
    /* heads: one per draft, and the verified positions up to the first
     * rejection (accepted + 1 per round); the verification's first head
     * batch may also take positions past the rejection (the drafts the
     * acceptance so far expected to be needed: at most the rejected ones);
     * with min-p a round may run one more draft head than it drafts */
    const uint64_t lo = (uint64_t)(st->drafted + st->accepted + st->rounds);
    const uint64_t hi = lo + (uint64_t)(st->drafted - st->accepted) + (min_p_on ? (uint64_t)st->rounds : 0);
    CHECK(r->cnt.head_positions >= lo && r->cnt.head_positions <= hi);
}

static void test_random_model(void) {
    const char *path = random_model_path("spec_cost_6l.gguf", tu_models_path("vocab/ggml-vocab-llama-spm.gguf"), 31);
    REQUIRE(path != NULL);
    setup s;
    REQUIRE(setup_init(&s, path, 16, 256));
    int32_t prompt[40];
    for (int i = 0; i < 40; i++) prompt[i] = 100 + (i * 7919) % 5000;
    const int np = 37; /* prefill of 36 positions: three batches of 16 at most */
    int n_runs = 0, n_rollbacks = 0;
    for (int E = 1; E < s.L; E += 2)
        for (int k = 1; k <= 8; k *= 2)
            for (int mode = 0; mode < 3; mode++) { /* greedy, sampled, sampled + draft_min_p */
                ls_gen_params gp = {.n_predict = 48, .ignore_eog = true, .strategy = LS_STRATEGY_SELF_SPECULATIVE,
                                    .exit_layer = E, .num_speculations = k, .draft_source = LS_DRAFT_EXIT};
                ls_sampling_default(&gp.sampling);
                if (mode > 0) {
                    gp.sampling.temperature = 1.0f;
                    gp.sampling.seed = (uint64_t)(E * 100 + k);
                }
                /* the random model's top draft probabilities are around 3e-4:
                 * about half the rounds stop drafting early */
                if (mode == 2) gp.draft_min_p = 0.0003f;
                run r;
                REQUIRE(generate(&s, prompt, np, &gp, NULL, NULL, &r));
                CHECK_EQ_INT(r.st.n_generated, 48);
                check_spec_cost(&s, &r, np, mode == 2);
                /* rollback left exactly the autoregressive cache of these tokens */
                int32_t seq[128];
                memcpy(seq, prompt, sizeof(int32_t) * np);
                memcpy(seq + np, r.out, sizeof(int32_t) * (size_t)(r.st.n_generated - 1));
                CHECK(kv_matches_fresh(&s, seq, np + r.st.n_generated - 1));
                n_runs++;
                n_rollbacks += r.st.accepted < r.st.drafted;
            }
    fprintf(stderr, "  random 6-layer model: %d runs (E in {1,3,5}, k in {1,2,4,8}, greedy/sampled/min-p), "
            "%d with rejections\n", n_runs, n_rollbacks);
    CHECK(n_rollbacks > n_runs / 2);

    /* stopped mid-round by the callback: the cache is autoregressive's */
    for (int stop = 1; stop <= 20; stop += 3) {
        ls_gen_params gp = {.n_predict = 48, .ignore_eog = true, .strategy = LS_STRATEGY_SELF_SPECULATIVE,
                            .exit_layer = 3, .num_speculations = 8, .draft_source = LS_DRAFT_EXIT};
        ls_sampling_default(&gp.sampling);
        gp.sampling.temperature = 0.8f;
        stop_after sa = {stop, 0};
        run r;
        REQUIRE(generate(&s, prompt, np, &gp, stop_cb, &sa, &r));
        CHECK_EQ_INT(r.st.finish, LS_FINISH_STOPPED);
        CHECK_EQ_INT(r.st.n_generated, stop);
        check_spec_cost(&s, &r, np, false);
        int32_t seq[128];
        memcpy(seq, prompt, sizeof(int32_t) * np);
        memcpy(seq + np, r.out, sizeof(int32_t) * (size_t)(stop - 1));
        CHECK(kv_matches_fresh(&s, seq, np + stop - 1));
    }

    /* autoregressive and early exit */
    ls_gen_params gp = {.n_predict = 20, .ignore_eog = true};
    ls_sampling_default(&gp.sampling);
    run a, e;
    REQUIRE(generate(&s, prompt, np, &gp, NULL, NULL, &a));
    for (int l = 0; l < s.L; l++) CHECK_EQ_INT(a.cnt.layer_positions[l], np + 19);
    CHECK_EQ_INT(a.cnt.head_positions, 20);
    gp.strategy = LS_STRATEGY_EARLY_EXIT;
    gp.exit_layer = 2;
    REQUIRE(generate(&s, prompt, np, &gp, NULL, NULL, &e));
    for (int l = 0; l < s.L; l++) CHECK_EQ_INT(e.cnt.layer_positions[l], l < 2 ? np + 19 : 0);
    CHECK_EQ_INT(e.cnt.head_positions, 20);
    /* early exit = greedy decoding of layers [0, E) + the exit head */
    {
        const ls_config *cfg = ls_model_config(s.m);
        ls_err err;
        float *h = malloc(sizeof(float) * (size_t)cfg->dim), *logits = malloc(sizeof(float) * (size_t)cfg->n_vocab);
        ls_kv_truncate(s.kv, 0, s.L, 0);
        int same = 1;
        for (int i = 0; i < np + 19; i++) { /* the prompt, then early exit's own tokens */
            int32_t t = i < np ? prompt[i] : e.out[i - np];
            REQUIRE(ls_embed(s.ctx, &t, 1, h, &err) == LS_OK);
            REQUIRE(ls_forward(s.ctx, s.kv, 0, 2, i, 1, h, &err) == LS_OK);
            if (i < np - 1) continue;
            REQUIRE(ls_exit_head(s.ctx, h, 1, logits, &err) == LS_OK);
            if (ls_argmax(logits, cfg->n_vocab) != e.out[i - np + 1]) same = 0;
        }
        CHECK(same);
        free(h);
        free(logits);
    }
    setup_free(&s);
}

/* a 12-token vocabulary: EOS (id 2) is drafted and drawn often */
static bool write_tiny_vocab(const char *path) {
    const char *toks[12] = {"<unk>", "<s>", "</s>"};
    static char names[12][16];
    int32_t types[12];
    for (int i = 0; i < 12; i++) {
        if (i >= 3) {
            snprintf(names[i], sizeof names[i], "\xe2\x96\x81%c", 'a' + i - 3);
            toks[i] = names[i];
        }
        types[i] = i == 0 ? 2 : i < 3 ? 3 : 1;
    }
    gguf_writer *w = gguf_writer_init();
    gguf_writer_add_str(w, "tokenizer.ggml.model", "llama");
    gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", toks, 12);
    gguf_writer_add_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types, 12);
    bool ok = gguf_writer_write(w, path);
    gguf_writer_free(w);
    return ok;
}

static void test_eos(void) {
    const char *vocab = tu_tmp_path("spec_cost_vocab.gguf");
    REQUIRE(write_tiny_vocab(vocab));
    const char *path = random_model_path("spec_cost_tiny.gguf", vocab, 41);
    REQUIRE(path != NULL);
    setup s;
    REQUIRE(setup_init(&s, path, 16, 128));
    const int32_t prompt[] = {1, 5, 9, 4, 7};
    int eos_runs = 0;
    for (int seed = 0; seed < 40; seed++) {
        ls_gen_params gp = {.n_predict = 64, .strategy = LS_STRATEGY_SELF_SPECULATIVE, .exit_layer = 2,
                            .num_speculations = 6, .draft_source = LS_DRAFT_EXIT};
        ls_sampling_default(&gp.sampling);
        gp.sampling.temperature = 1.0f;
        gp.sampling.seed = (uint64_t)seed;
        run r;
        REQUIRE(generate(&s, prompt, 5, &gp, NULL, NULL, &r));
        int first_eos = -1;
        for (int i = 0; i < r.st.n_generated; i++)
            if (r.out[i] == 2) { first_eos = i; break; }
        if (r.st.finish == LS_FINISH_EOG) {
            eos_runs++;
            CHECK_EQ_INT(first_eos, r.st.n_generated - 1); /* stops at the first EOS */
        } else {
            CHECK_EQ_INT(first_eos, -1);
        }
        check_spec_cost(&s, &r, 5, false);
        int32_t seq[128];
        memcpy(seq, prompt, sizeof prompt);
        memcpy(seq + 5, r.out, sizeof(int32_t) * (size_t)(r.st.n_generated - 1));
        CHECK(kv_matches_fresh(&s, seq, 5 + r.st.n_generated - 1));
    }
    fprintf(stderr, "  tiny vocabulary: %d/40 sampled runs end at EOS\n", eos_runs);
    CHECK(eos_runs >= 10);
    setup_free(&s);
}

static void test_default_model(void) {
    setup s;
    REQUIRE(setup_init(&s, tu_default_model(), 64, 256));
    const char *text = "The history of the Roman Empire begins with";
    int32_t prompt[64];
    int np = (int)ls_tokenize(ls_model_tokenizer(s.m), text, strlen(text), false, true, prompt, 64);
    REQUIRE(np > 1);
    ls_gen_params gp = {.n_predict = 40, .ignore_eog = true, .strategy = LS_STRATEGY_SELF_SPECULATIVE,
                        .exit_layer = 15, .num_speculations = 4, .draft_source = LS_DRAFT_EXIT};
    ls_sampling_default(&gp.sampling);
    run r;
    REQUIRE(generate(&s, prompt, np, &gp, NULL, NULL, &r));
    check_spec_cost(&s, &r, np, false);
    CHECK(r.st.accepted < r.st.drafted);
    int32_t seq[128];
    memcpy(seq, prompt, sizeof(int32_t) * np);
    memcpy(seq + np, r.out, sizeof(int32_t) * (size_t)(r.st.n_generated - 1));
    CHECK(kv_matches_fresh(&s, seq, np + r.st.n_generated - 1));
    fprintf(stderr, "  default model E=15 k=4: %lld drafted, %lld accepted, %lld rounds; layer 0 ran %llu "
            "positions, layer 29 %llu, head %llu\n", (long long)r.st.drafted, (long long)r.st.accepted,
            (long long)r.st.rounds, (unsigned long long)r.cnt.layer_positions[0],
            (unsigned long long)r.cnt.layer_positions[29], (unsigned long long)r.cnt.head_positions);
    setup_free(&s);
}

int main(void) {
    RUN(test_random_model);
    RUN(test_eos);
    RUN(test_default_model);
    TEST_MAIN_END();
}
