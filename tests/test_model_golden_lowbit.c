/* K-quant and I-quant models against llama.cpp (tests/data/golden_lowbit.json,
 * scripts/golden_lowbit.py: llama.cpp's AVX2 build, prompt evaluated one
 * token at a time): first-step logits bit for bit, argmax and the 48-token
 * greedy continuation identical.
 *   test_model_golden_lowbit random    the random model mixing all seven
 *                                      types (written here, as the goldens' file)
 *   test_model_golden_lowbit smollm2   the default model's weights as Q4_K_M,
 *                                      Q5_K_M, Q6_K, Q3_K_M, Q2_K, IQ4_XS made by
 *                                      llama.cpp's quantizer (models/bench/, from
 *                                      scripts/llamacpp_tools.sh --models; run
 *                                      with LS_LLAMACPP_MODELS=1 bash scripts/test.sh) */
#include "test_util.h"
#include "random_model.h"
#include "layerskip/engine.h"
#include "layerskip/generate.h"

#include <cJSON.h>

static uint64_t fnv1a_file(const char *path) {
    size_t len;
    char *b = tu_read_file(path, &len);
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; b && i < len; i++) h = (h ^ (uint8_t)b[i]) * 0x100000001b3ull;
    free(b);
    return h;
}

static int *int_array(const cJSON *a, int *n) {
    *n = cJSON_GetArraySize(a);
    int *v = malloc(sizeof(int) * (size_t)(*n > 0 ? *n : 1));
    for (int i = 0; i < *n; i++) v[i] = cJSON_GetArrayItem(a, i)->valueint;
    return v;
}

static void check_file(const char *path, const cJSON *cases, int n_gen, const char *name) {
    ls_err err;
    ls_model *model = NULL;
    ls_ctx *ctx = NULL;
    ls_kv *kv = NULL;
    ls_status st = ls_model_load(path, &model, &err);
    if (st != LS_OK) fprintf(stderr, "  %s: %s\n", name, err.msg);
    REQUIRE(st == LS_OK);
    const ls_config *cfg = ls_model_config(model);
    REQUIRE(ls_ctx_create(model, 2, 64, &ctx, &err) == LS_OK);
    REQUIRE(ls_kv_create(model, 0, cfg->n_layers, 512, &kv, &err) == LS_OK);
    ls_ctx_set_exact(ctx, true);
    float *logits = malloc(sizeof(float) * (size_t)cfg->n_vocab);
    int32_t *out = malloc(sizeof(int32_t) * (size_t)n_gen);
    int identical = 0, n_cases = 0, logit_bits_differ = 0, logits_checked = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cases) {
        n_cases++;
        int np, ng;
        int *pids = int_array(cJSON_GetObjectItem(c, "prompt_ids"), &np);
        int *gids = int_array(cJSON_GetObjectItem(c, "greedy_ids"), &ng);
        int32_t *p32 = malloc(sizeof(int32_t) * (size_t)np);
        for (int i = 0; i < np; i++) p32[i] = pids[i];
        ls_kv_truncate(kv, 0, cfg->n_layers, 0);
        CHECK_EQ_INT(ls_prefill(ctx, kv, p32, np, 0, logits, &err), LS_OK);
        const cJSON *fl = cJSON_GetObjectItem(c, "first_logits");
        CHECK_EQ_INT(ls_argmax(logits, cfg->n_vocab), cJSON_GetObjectItem(fl, "argmax")->valueint);
        const char *pairs[2][2] = {{"top_ids", "top_values"}, {"fixed_ids", "fixed_values"}};
        for (int k = 0; k < 2; k++) {
            const cJSON *ids = cJSON_GetObjectItem(fl, pairs[k][0]), *vals = cJSON_GetObjectItem(fl, pairs[k][1]);
            for (int i = 0; i < cJSON_GetArraySize(ids); i++) {
                const int id = cJSON_GetArrayItem(ids, i)->valueint;
                const float want = (float)cJSON_GetArrayItem(vals, i)->valuedouble; /* %.9g: exact */
                logits_checked++;
                if (memcmp(&logits[id], &want, 4) != 0) {
                    if (logit_bits_differ++ < 3)
                        fprintf(stderr, "  %s case %d: logit %d is %.9g, llama.cpp %.9g\n", name, n_cases, id,
                                (double)logits[id], (double)want);
                }
            }
        }
        ls_gen_params gp = {.n_predict = n_gen, .ignore_eog = true};
        ls_sampling_default(&gp.sampling);
        ls_gen_stats stats;
        CHECK_EQ_INT(ls_generate(ctx, kv, p32, np, &gp, out, NULL, NULL, &stats, &err), LS_OK);
        int first_diff = -1;
        for (int i = 0; i < ng; i++)
            if (i >= stats.n_generated || out[i] != gids[i]) {
                first_diff = i;
                break;
            }
        if (first_diff >= 0)
            fprintf(stderr, "  %s case %d: greedy output differs from llama.cpp at token %d\n", name, n_cases,
                    first_diff);
        else
            identical++;
        CHECK_EQ_INT(first_diff, -1);
        free(p32);
        free(pids);
        free(gids);
    }
    CHECK_EQ_INT(logit_bits_differ, 0);
    fprintf(stderr, "  %s: %d/%d greedy continuations identical; %d/%d first-step logits bit-equal\n", name,
            identical, n_cases, logits_checked - logit_bits_differ, logits_checked);
    free(logits);
    free(out);
    ls_kv_free(kv);
    ls_ctx_free(ctx);
    ls_model_free(model);
}

int main(int argc, char **argv) {
    if (argc != 2 || (strcmp(argv[1], "random") && strcmp(argv[1], "smollm2"))) {
        fprintf(stderr, "usage: test_model_golden_lowbit random|smollm2\n");
        return 2;
    }
    const bool random = !strcmp(argv[1], "random");
    size_t len;
    char *text = tu_read_file(tu_data_path("golden_lowbit.json"), &len);
    if (!text) {
        fprintf(stderr, "cannot read golden_lowbit.json\n");
        return 1;
    }
    cJSON *doc = cJSON_ParseWithLength(text, len);
    free(text);
    if (!doc) {
        fprintf(stderr, "golden_lowbit.json does not parse\n");
        return 1;
    }
    const int n_gen = cJSON_GetObjectItem(doc, "n_gen")->valueint;
    int n_models = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, cJSON_GetObjectItem(doc, "models")) {
        const char *name = cJSON_GetObjectItem(m, "name")->valuestring;
        const cJSON *cases = cJSON_GetObjectItem(m, "cases");
        if (random != !strcmp(name, "random-lowbit")) continue;
        n_models++;
        fprintf(stderr, "-- %s\n", name);
        if (random) { /* write the model again; it must be the goldens' file byte for byte */
            rm_spec spec = rm_lowbit_spec(tu_models_path("vocab/ggml-vocab-llama-spm.gguf"));
            rm_model *rm = rm_model_create(&spec);
            const char *path = tu_tmp_path("golden-lowbit.gguf");
            const bool written = rm && rm_write_gguf(rm, path);
            rm_model_free(rm);
            CHECK(written);
            if (!written) break;
            char want[32];
            snprintf(want, sizeof want, "%016llx", (unsigned long long)fnv1a_file(path));
            const cJSON *fh = cJSON_GetObjectItem(m, "file_fnv1a64");
            CHECK(cJSON_IsString(fh) && !strcmp(want, fh->valuestring));
            check_file(path, cases, n_gen, name);
        } else {
            char path[4096];
            snprintf(path, sizeof path, "%s/bench/%s.gguf", getenv("LS_MODELS_DIR") ? getenv("LS_MODELS_DIR") : "models",
                     name);
            check_file(path, cases, n_gen, name);
        }
    }
    CHECK_EQ_INT(n_models, random ? 1 : 6);
    cJSON_Delete(doc);
    TEST_MAIN_END();
}
