/* Random-weight models written by the test in both formats: logits from the
 * GGUF file == logits from the Hugging Face directory, and both match a slow,
 * obviously correct reference forward (random_model.c) within tolerance.
 * Shapes: Llama-2 (SentencePiece vocabulary, MHA), CodeLlama (rope theta 1e6,
 * sharded F16), Llama-3 (byte-level BPE, GQA, llama3 rope scaling, tied
 * head, BF16), and quantized GGUF variants (Q8_0, Q4_0, Q4_1). */
#include "test_util.h"
#include "random_model.h"
#include "layerskip/engine.h"
#include "layerskip/tokenizer.h"

#include <sys/stat.h>

static const char *PROMPT = "The quick brown fox jumps over the lazy dog, then naps.";

/* engine logits for every position: one batched pass, and one position at a
 * time (exercises the KV cache) */
static float *engine_logits(ls_model *m, const int32_t *ids, int n, bool one_by_one) {
    const ls_config *c = ls_model_config(m);
    ls_err err;
    ls_ctx *ctx;
    ls_kv *kv;
    if (ls_ctx_create(m, 2, one_by_one ? 1 : n, &ctx, &err) != LS_OK) return NULL;
    if (ls_kv_create(m, 0, c->n_layers, 64, &kv, &err) != LS_OK) return NULL;
    float *hidden = malloc(sizeof(float) * (size_t)n * c->dim);
    float *logits = malloc(sizeof(float) * (size_t)n * c->n_vocab);
    bool ok = ls_embed(ctx, ids, n, hidden, &err) == LS_OK;
    if (one_by_one) {
        for (int i = 0; ok && i < n; i++)
            ok = ls_forward(ctx, kv, 0, c->n_layers, i, 1, hidden + (size_t)i * c->dim, &err) == LS_OK &&
                 ls_exit_head(ctx, hidden + (size_t)i * c->dim, 1, logits + (size_t)i * c->n_vocab, &err) == LS_OK;
    } else {
        ok = ok && ls_forward(ctx, kv, 0, c->n_layers, 0, n, hidden, &err) == LS_OK &&
             ls_exit_head(ctx, hidden, n, logits, &err) == LS_OK;
    }
    if (!ok) { fprintf(stderr, "engine: %s\n", err.msg); free(logits); logits = NULL; }
    free(hidden);
    ls_kv_free(kv);
    ls_ctx_free(ctx);
    return logits;
}

static double max_abs_diff_f(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - b[i]));
    return m;
}
static double max_abs_diff_d(const float *a, const double *b, size_t n, double *scale) {
    double m = 0, s = 0;
    for (size_t i = 0; i < n; i++) { m = fmax(m, fabs((double)a[i] - b[i])); s = fmax(s, fabs(b[i])); }
    *scale = s;
    return m;
}

/* tol_ref: allowed max |engine - reference| relative to max |reference|.
 * The KV cache, the attention queries and the attention weights are fp16
 * (as in llama.cpp): ~1e-3 even for F32 weights; F16/BF16 weights also round
 * the activations to 16 bits; Q types quantize activations to 8 bits. */
static void check_model(const char *label, rm_spec spec, bool with_hf, double tol_ref) {
    fprintf(stderr, "  [%s]\n", label);
    rm_model *rm = rm_model_create(&spec);
    REQUIRE(rm != NULL);
    char gpath[512], hdir[512];
    snprintf(gpath, sizeof gpath, "%s", tu_tmp_path(label));
    strncat(gpath, ".gguf", sizeof gpath - strlen(gpath) - 1);
    snprintf(hdir, sizeof hdir, "%s", tu_tmp_path(label));
    strncat(hdir, "-hf", sizeof hdir - strlen(hdir) - 1);
    REQUIRE(rm_write_gguf(rm, gpath));
    ls_err err;
    ls_model *mg = NULL, *mh = NULL;
    ls_status st = ls_model_load(gpath, &mg, &err);
    if (st != LS_OK) fprintf(stderr, "  gguf load: %s\n", err.msg);
    REQUIRE(st == LS_OK);
    const ls_config *cg = ls_model_config(mg);
    CHECK_EQ_INT(cg->n_layers, spec.n_layers);
    CHECK_EQ_INT(cg->n_kv_heads, spec.n_kv_heads);
    CHECK_EQ_INT(cg->tied_embeddings, spec.tied);
    CHECK_EQ_INT(cg->has_rope_scaling, spec.llama3_rope);

    int32_t ids[128];
    const ls_tokenizer *tg = ls_model_tokenizer(mg);
    int n = (int)ls_tokenize(tg, PROMPT, strlen(PROMPT), ls_tokenizer_add_bos(tg), false, ids, 128);
    REQUIRE(n > 4 && n < 64);
    const size_t nv = (size_t)n * (size_t)rm_model_n_vocab(rm);

    float *lg = engine_logits(mg, ids, n, false);
    float *lg1 = engine_logits(mg, ids, n, true);
    REQUIRE(lg && lg1);
    double d_inc = max_abs_diff_f(lg, lg1, nv);
    fprintf(stderr, "    batched vs one-at-a-time: max diff %.3g\n", d_inc);
    CHECK(d_inc == 0); /* exact mode: a position never depends on its batch */

    double *ref = rm_reference_logits(rm, ids, n);
    double scale;
    double d_ref = max_abs_diff_d(lg, ref, nv, &scale);
    fprintf(stderr, "    gguf vs reference: max diff %.3g (max |logit| %.3g, tolerance %.3g)\n",
            d_ref, scale, tol_ref * scale);
    CHECK(d_ref <= tol_ref * scale);

    if (with_hf) {
        REQUIRE(rm_write_hf_dir(rm, hdir));
        st = ls_model_load(hdir, &mh, &err);
        if (st != LS_OK) fprintf(stderr, "  hf load: %s\n", err.msg);
        REQUIRE(st == LS_OK);
        const ls_config *ch = ls_model_config(mh);
        CHECK_EQ_INT(ch->n_vocab, cg->n_vocab);
        CHECK_EQ_INT(ch->head_dim, cg->head_dim);
        /* the same ids from tokenizer.json as from GGUF metadata */
        int32_t ids2[128];
        const ls_tokenizer *th = ls_model_tokenizer(mh);
        int n2 = (int)ls_tokenize(th, PROMPT, strlen(PROMPT), ls_tokenizer_add_bos(th), false, ids2, 128);
        CHECK_EQ_INT(n2, n);
        for (int i = 0; i < n && i < n2; i++) CHECK_EQ_INT(ids2[i], ids[i]);
        float *lh = engine_logits(mh, ids, n, false);
        REQUIRE(lh);
        double d_fmt = max_abs_diff_f(lg, lh, nv);
        double d_href = max_abs_diff_d(lh, ref, nv, &scale);
        fprintf(stderr, "    gguf vs safetensors: max diff %.3g; safetensors vs reference %.3g\n", d_fmt, d_href);
        /* same weights, same kernels; only the order of the head-dimension sums differs */
        CHECK(d_fmt < 1e-4 * (scale > 1 ? scale : 1));
        CHECK(d_href <= tol_ref * scale);
        free(lh);
        ls_model_free(mh);
        /* the chat template of a Hugging Face directory: chat_template.jinja */
        char tpath[1200];
        snprintf(tpath, sizeof tpath, "%s/chat_template.jinja", hdir);
        FILE *tf = fopen(tpath, "w");
        REQUIRE(tf != NULL);
        fputs("{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}", tf);
        fclose(tf);
        REQUIRE(ls_model_load(hdir, &mh, &err) == LS_OK);
        CHECK(ls_model_chat_template(mh) &&
              !strcmp(ls_model_chat_template(mh), "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}"));
        ls_model_free(mh);
        remove(tpath);
    }
    free(ref);
    free(lg);
    free(lg1);
    ls_model_free(mg);
    rm_model_free(rm);
}

static rm_spec llama2_spec(void) {
    rm_spec s = {.n_layers = 2, .dim = 64, .n_heads = 4, .n_kv_heads = 4, .ffn_dim = 160,
                 .rope_theta = 10000.0f, .norm_eps = 1e-5f, .dtype = LS_TYPE_F32,
                 .vocab_gguf = tu_models_path("vocab/ggml-vocab-llama-spm.gguf"), .seed = 1, .n_shards = 1};
    return s;
}

static void test_llama2_f32(void) { check_model("llama2-f32", llama2_spec(), true, 1e-3); }

static void test_codellama_f16_sharded(void) {
    rm_spec s = llama2_spec();
    s.rope_theta = 1e6f;
    s.dtype = LS_TYPE_F16;
    s.n_shards = 2;
    s.seed = 2;
    check_model("codellama-f16", s, true, 4e-3);
}

static void test_llama3_bf16_gqa_rope_scaling(void) {
    rm_spec s = {.n_layers = 2, .dim = 64, .n_heads = 8, .n_kv_heads = 2, .ffn_dim = 128,
                 .rope_theta = 500000.0f, .norm_eps = 1e-5f, .llama3_rope = true, .tied = true,
                 .dtype = LS_TYPE_BF16, .vocab_gguf = tu_models_path("vocab/ggml-vocab-llama-bpe.gguf"),
                 .seed = 3, .n_shards = 3};
    check_model("llama3-bf16", s, true, 2e-2);
}

static void test_quantized(void) {
    const ls_type types[3] = {LS_TYPE_Q8_0, LS_TYPE_Q4_0, LS_TYPE_Q4_1};
    const char *names[3] = {"llama2-q8_0", "llama2-q4_0", "llama2-q4_1"};
    for (int i = 0; i < 3; i++) {
        rm_spec s = llama2_spec();
        s.dtype = types[i];
        s.seed = 10 + (uint64_t)i;
        check_model(names[i], s, false, 3e-2);
    }
}

/* every K-quant and I-quant type in one model (matrices cycle through
 * them), dimensions multiples of 256 so none falls back; the file is kept
 * (tests/tmp/llama2-lowbit.gguf) for scripts/golden_lowbit.py */
static void test_lowbit_mix(void) {
    check_model("llama2-lowbit", rm_lowbit_spec(tu_models_path("vocab/ggml-vocab-llama-spm.gguf")), false, 3e-2);
}

int main(void) {
    RUN(test_lowbit_mix);
    RUN(test_llama2_f32);
    RUN(test_codellama_f16_sharded);
    RUN(test_llama3_bf16_gqa_rope_scaling);
    RUN(test_quantized);
    TEST_MAIN_END();
}
