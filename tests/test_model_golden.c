/* The default model against llama.cpp: greedy continuations of every golden
 * prompt (48 tokens, EOS ignored) must be identical, the first step's argmax
 * identical, and first-step logits close. Goldens: scripts/golden_model.py
 * (llama-cpp-python 0.3.36, llama.cpp CPU backend, prompt evaluated one
 * token at a time). The context runs in exact mode (per-row arithmetic for
 * every batch size), so our batched prompt pass equals llama.cpp's
 * single-token path operation for operation. */
#include "test_util.h"
#include "layerskip/engine.h"
#include "layerskip/generate.h"
#include "layerskip/tokenizer.h"

#include <cJSON.h>

/* Same operations in the same order: logits agree to float rounding. The
 * tolerance leaves room for a machine whose libm cosf/sinf (rotary tables)
 * round differently from the one that made the goldens. */
#define LOGIT_TOL 1e-3

static ls_model *model;
static ls_ctx *ctx;
static ls_kv *kv;

static int *int_array(const cJSON *a, int *n) {
    *n = cJSON_GetArraySize(a);
    int *v = malloc(sizeof(int) * (size_t)(*n > 0 ? *n : 1));
    for (int i = 0; i < *n; i++) v[i] = cJSON_GetArrayItem(a, i)->valueint;
    return v;
}

static void test_cases(void) {
    size_t len;
    char *text = tu_read_file(tu_data_path("golden_smollm2_q4_1.json"), &len);
    REQUIRE(text != NULL);
    cJSON *doc = cJSON_ParseWithLength(text, len);
    free(text);
    REQUIRE(doc != NULL);
    const cJSON *cases = cJSON_GetObjectItem(doc, "cases");
    const int n_gen = cJSON_GetObjectItem(doc, "n_gen")->valueint;
    REQUIRE(cJSON_GetArraySize(cases) >= 8 && n_gen >= 48);
    const ls_config *cfg = ls_model_config(model);
    const ls_tokenizer *tok = ls_model_tokenizer(model);
    float *logits = malloc(sizeof(float) * (size_t)cfg->n_vocab);
    int32_t *out = malloc(sizeof(int32_t) * (size_t)n_gen);
    double max_diff = 0;
    int identical = 0, n_cases = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cases) {
        n_cases++;
        const char *prompt = cJSON_GetObjectItem(c, "prompt")->valuestring;
        int np, ng;
        int *pids = int_array(cJSON_GetObjectItem(c, "prompt_ids"), &np);
        int *gids = int_array(cJSON_GetObjectItem(c, "greedy_ids"), &ng);
        /* our tokenizer gives llama.cpp's prompt ids */
        int32_t ours[4096];
        int64_t n = ls_tokenize(tok, prompt, strlen(prompt), false, true, ours, 4096);
        CHECK_EQ_INT(n, np);
        for (int i = 0; i < np && i < n; i++) CHECK_EQ_INT(ours[i], pids[i]);

        int32_t *p32 = malloc(sizeof(int32_t) * (size_t)np);
        for (int i = 0; i < np; i++) p32[i] = pids[i];
        ls_err err;
        ls_kv_truncate(kv, 0, cfg->n_layers, 0);
        ls_status st = ls_prefill(ctx, kv, p32, np, 0, logits, &err);
        CHECK_EQ_INT(st, LS_OK);
        const cJSON *fl = cJSON_GetObjectItem(c, "first_logits");
        CHECK_EQ_INT(ls_argmax(logits, cfg->n_vocab), cJSON_GetObjectItem(fl, "argmax")->valueint);
        const char *pairs[2][2] = {{"top_ids", "top_values"}, {"fixed_ids", "fixed_values"}};
        for (int k = 0; k < 2; k++) {
            const cJSON *ids = cJSON_GetObjectItem(fl, pairs[k][0]), *vals = cJSON_GetObjectItem(fl, pairs[k][1]);
            for (int i = 0; i < cJSON_GetArraySize(ids); i++) {
                int id = cJSON_GetArrayItem(ids, i)->valueint;
                double want = cJSON_GetArrayItem(vals, i)->valuedouble;
                double d = fabs(logits[id] - want);
                if (d > max_diff) max_diff = d;
                CHECK_NEAR(logits[id], want, LOGIT_TOL);
            }
        }

        ls_gen_params gp = {.n_predict = n_gen, .ignore_eog = true};
        ls_sampling_default(&gp.sampling);
        ls_gen_stats stats;
        st = ls_generate(ctx, kv, p32, np, &gp, out, NULL, NULL, &stats, &err);
        CHECK_EQ_INT(st, LS_OK);
        CHECK_EQ_INT(stats.n_generated, ng);
        int first_diff = -1;
        for (int i = 0; i < ng && i < stats.n_generated; i++)
            if (out[i] != gids[i]) { first_diff = i; break; }
        if (first_diff >= 0)
            fprintf(stderr, "  prompt %d (%.30s...): greedy output differs from llama.cpp at token %d (%d vs %d)\n",
                    n_cases, prompt, first_diff, out[first_diff], gids[first_diff]);
        else
            identical++;
        CHECK_EQ_INT(first_diff, -1);
        free(p32); free(pids); free(gids);
    }
    fprintf(stderr, "  %d/%d greedy continuations identical to llama.cpp; max |logit diff| %.4f (tolerance %.2f)\n",
            identical, n_cases, max_diff, LOGIT_TOL);
    free(logits); free(out);
    cJSON_Delete(doc);
}

int main(void) {
    ls_err err;
    if (ls_model_load(tu_default_model(), &model, &err) != LS_OK) {
        fprintf(stderr, "load failed: %s\n", err.msg);
        return 1;
    }
    if (ls_ctx_create(model, 2, 64, &ctx, &err) != LS_OK ||
        ls_kv_create(model, 0, ls_model_config(model)->n_layers, 512, &kv, &err) != LS_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    ls_ctx_set_exact(ctx, true);
    RUN(test_cases);
    ls_kv_free(kv);
    ls_ctx_free(ctx);
    ls_model_free(model);
    TEST_MAIN_END();
}
