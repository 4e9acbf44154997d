/* layerskip-bench as a user runs it: --json carries the documented fields
 * and its greedy text is reproducible; --tokenize prints the ids as a JSON
 * array; sampling with a seed is reproducible; bad flags exit 2; the draft
 * options (--draft-source, --draft-adapter, --draft-vocab, --num-speculations
 * auto) reach the JSON, the CSV and the output stays the autoregressive one. */
#include "random_adapter.h"
#include "test_util.h"

#include <cJSON.h>
#include <sys/wait.h>

static char *run(const char *args, int *rc) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s/engine/layerskip-bench --threads 1 --model %s %s 2>/dev/null",
             getenv("LS_BIN_DIR"), tu_default_model(), args);
    FILE *p = popen(cmd, "r");
    if (!p) return NULL;
    size_t cap = 1 << 16, len = 0;
    char *out = malloc(cap);
    size_t got;
    while ((got = fread(out + len, 1, cap - len - 1, p)) > 0) {
        len += got;
        if (len + 1 >= cap) out = realloc(out, cap *= 2);
    }
    out[len] = 0;
    int st = pclose(p);
    *rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return out;
}

static void test_json(void) {
    int rc;
    char *out = run("--prompt 'The capital of France is' -n 12 --json", &rc);
    CHECK_EQ_INT(rc, 0);
    cJSON *j = cJSON_Parse(out);
    REQUIRE(j != NULL);
    const char *fields[] = {"text", "token_ids", "prompt_tokens", "generated_tokens", "prefill_tok_s",
                            "decode_tok_s", "load_ms", "peak_rss_mb"};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        if (!cJSON_GetObjectItem(j, fields[i])) fprintf(stderr, "  missing field %s\n", fields[i]);
        CHECK(cJSON_GetObjectItem(j, fields[i]) != NULL);
    }
    CHECK_EQ_INT(cJSON_GetObjectItem(j, "prompt_tokens")->valueint, 5);
    CHECK_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItem(j, "token_ids")),
                 cJSON_GetObjectItem(j, "generated_tokens")->valueint);
    CHECK(strncmp(cJSON_GetObjectItem(j, "text")->valuestring, " Paris.", 7) == 0);
    CHECK(cJSON_GetObjectItem(j, "decode_tok_s")->valuedouble > 0);
    CHECK(cJSON_GetObjectItem(j, "peak_rss_mb")->valuedouble > 50);
    cJSON_Delete(j);
    free(out);
}

static void test_tokenize(void) {
    int rc;
    char *out = run("--tokenize 'Hello world'", &rc);
    CHECK_EQ_INT(rc, 0);
    CHECK_STR_EQ(out, "[19556, 905]\n");
    free(out);
}

static void test_seeded_sampling(void) {
    int rc1, rc2, rc3;
    const char *a = "--prompt 'Once upon a time' -n 16 --temperature 0.9 --top-k 40 --top-p 0.95 --min-p 0.05 --repeat-penalty 1.1 --seed 7 --json";
    char *o1 = run(a, &rc1), *o2 = run(a, &rc2);
    char *o3 = run("--prompt 'Once upon a time' -n 16 --temperature 0.9 --top-k 40 --seed 8 --json", &rc3);
    CHECK(rc1 == 0 && rc2 == 0 && rc3 == 0);
    cJSON *j1 = cJSON_Parse(o1), *j2 = cJSON_Parse(o2);
    REQUIRE(j1 && j2);
    CHECK_STR_EQ(cJSON_GetObjectItem(j1, "text")->valuestring, cJSON_GetObjectItem(j2, "text")->valuestring);
    cJSON_Delete(j1);
    cJSON_Delete(j2);
    free(o1); free(o2); free(o3);
}

static void test_bad_flags(void) {
    int rc;
    const char *bad[] = {"--threads 0", "-n -3", "--temperature abc", "--top-p 1.5", "--ctx 4 -n 10",
                         "--bogus", "--prompt-file /nonexistent/file"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *out = run(bad[i], &rc);
        if (rc != 1 && rc != 2) fprintf(stderr, "  '%s' exited %d\n", bad[i], rc);
        CHECK(rc == 1 || rc == 2);
        free(out);
    }
}

/* the LayerSkip modes: strategy flags in --json, --compare (greedy outputs
 * must match), a small --sweep writing its CSV and PNG */
static void test_layerskip_modes(void) {
    int rc;
    char *out = run("--prompt 'The capital of France is' -n 12 --generation-strategy self_speculative "
                    "--exit-layer 20 --num-speculations 3 --json", &rc);
    CHECK_EQ_INT(rc, 0);
    cJSON *j = cJSON_Parse(out);
    REQUIRE(j != NULL);
    CHECK_STR_EQ(cJSON_GetObjectItem(j, "strategy")->valuestring, "self_speculative");
    CHECK_EQ_INT(cJSON_GetObjectItem(j, "exit_layer")->valueint, 20);
    CHECK_EQ_INT(cJSON_GetObjectItem(j, "num_speculations")->valueint, 3);
    CHECK(cJSON_GetObjectItem(j, "drafted")->valueint > 0);
    CHECK(cJSON_GetObjectItem(j, "acceptance_rate") != NULL);
    CHECK(strncmp(cJSON_GetObjectItem(j, "text")->valuestring, " Paris.", 7) == 0);
    cJSON_Delete(j);
    free(out);

    char prompts[512], csv[512], png[512], args[2048];
    snprintf(prompts, sizeof prompts, "%s", tu_tmp_path("bench-prompts.txt"));
    snprintf(csv, sizeof csv, "%s", tu_tmp_path("bench-sweep.csv"));
    snprintf(png, sizeof png, "%s", tu_tmp_path("bench-sweep.png"));
    FILE *f = fopen(prompts, "w");
    REQUIRE(f);
    fputs("The capital of France is\nOnce upon a time\n", f);
    fclose(f);
    snprintf(args, sizeof args, "-f %s -n 8 --compare --exit-layer 10 --num-speculations 2 --json", prompts);
    out = run(args, &rc);
    CHECK_EQ_INT(rc, 0);
    j = cJSON_Parse(out);
    REQUIRE(j != NULL);
    CHECK_EQ_INT(cJSON_GetObjectItem(j, "prompts")->valueint, 2);
    CHECK_EQ_INT(cJSON_GetObjectItem(j, "outputs_differ")->valueint, 0);
    cJSON_Delete(j);
    free(out);

    snprintf(args, sizeof args, "-f %s -n 6 --sweep-exit 10:20:10 --sweep-k 1:2 --csv %s --heatmap %s", prompts, csv, png);
    out = run(args, &rc);
    CHECK_EQ_INT(rc, 0);
    free(out);
    char *table = tu_read_file(csv, NULL);
    REQUIRE(table);
    int lines = 0;
    for (char *c = table; *c; c++) lines += *c == '\n';
    CHECK_EQ_INT(lines, 1 + 2 * 2); /* header + E {10, 20} x k {1, 2} */
    CHECK(strstr(table, "exit_layer,num_speculations,acceptance_rate") == table);
    CHECK(strstr(table, ",no\n") == NULL); /* greedy outputs matched everywhere */
    free(table);
    size_t n;
    char *img = tu_read_file(png, &n);
    CHECK(img && n > 100 && memcmp(img, "\x89PNG\r\n\x1a\n", 8) == 0);
    free(img);

    out = run("--generation-strategy nope", &rc);
    CHECK_EQ_INT(rc, 2);
    free(out);
    out = run("--generation-strategy early_exit --exit-layer 0", &rc);
    CHECK_EQ_INT(rc, 2);
    free(out);
    out = run("--generation-strategy self_speculative --num-speculations 33", &rc);
    CHECK_EQ_INT(rc, 2);
    free(out);
}

/* a draft adapter holding only a frequency table of n_table tokens, trained
 * after layer E, for the default model */
static bool write_table_adapter(int E, int n_table, const char *path) {
    ls_model *m;
    ls_err err;
    if (ls_model_load(tu_default_model(), &m, &err) != LS_OK) return false;
    bool ok = ra_write_for_model(m, &(ra_spec){.exit_layer = E, .no_block = true, .n_table = n_table, .seed = 1}, path);
    ls_model_free(m);
    return ok;
}

/* --draft-source, --draft-adapter, --draft-vocab, --num-speculations auto:
 * the JSON fields, per-source counts and the k distribution, greedy output
 * unchanged, E defaulting to the adapter's, the engine's refusals (exit 2),
 * an unreadable adapter (exit 1), and auto as a --sweep-k column */
static void test_draft_options(void) {
    int rc;
    char *ar = run("--prompt 'The capital of France is' -n 12 --json", &rc);
    CHECK_EQ_INT(rc, 0);
    char *out = run("--prompt 'The capital of France is' -n 12 --generation-strategy self_speculative "
                    "--draft-source lookup --num-speculations auto --json", &rc);
    CHECK_EQ_INT(rc, 0);
    cJSON *ja = cJSON_Parse(ar), *j = cJSON_Parse(out);
    REQUIRE(ja && j);
    char *ids_a = cJSON_PrintUnformatted(cJSON_GetObjectItem(ja, "token_ids"));
    char *ids_s = cJSON_PrintUnformatted(cJSON_GetObjectItem(j, "token_ids"));
    CHECK_STR_EQ(ids_s, ids_a); /* lossless */
    free(ids_a);
    free(ids_s);
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(j, "auto_speculations")));
    CHECK_EQ_INT(cJSON_GetObjectItem(j, "num_speculations")->valueint, 8);
    CHECK_STR_EQ(cJSON_GetObjectItem(j, "draft_source")->valuestring, "lookup");
    CHECK(cJSON_IsNull(cJSON_GetObjectItem(j, "draft_adapter")));
    CHECK_EQ_INT(cJSON_GetObjectItem(j, "draft_vocab")->valueint, 0);
    const cJSON *by = cJSON_GetObjectItem(j, "drafted_by"), *acc = cJSON_GetObjectItem(j, "accepted_by");
    REQUIRE(by && acc);
    CHECK_EQ_INT(cJSON_GetArraySize(by), 3);
    CHECK(cJSON_GetObjectItem(by, "auto") == NULL);
    CHECK_EQ_INT(cJSON_GetObjectItem(by, "exit")->valueint + cJSON_GetObjectItem(by, "adapter")->valueint, 0);
    CHECK_EQ_INT(cJSON_GetObjectItem(by, "lookup")->valueint, cJSON_GetObjectItem(j, "drafted")->valueint);
    CHECK_EQ_INT(cJSON_GetObjectItem(acc, "lookup")->valueint, cJSON_GetObjectItem(j, "accepted")->valueint);
    const cJSON *hist = cJSON_GetObjectItem(j, "rounds_by_k");
    REQUIRE(cJSON_IsArray(hist));
    int rounds = 0, ksum = 0, k = 0;
    for (const cJSON *e = hist->child; e; e = e->next, k++) {
        rounds += e->valueint;
        ksum += k * e->valueint;
    }
    CHECK(cJSON_GetArraySize(hist) <= 9); /* k in [0, 8] */
    CHECK_EQ_INT(rounds, cJSON_GetObjectItem(j, "rounds")->valueint);
    CHECK_NEAR(cJSON_GetObjectItem(j, "mean_k")->valuedouble, rounds ? (double)ksum / rounds : 0, 1e-9);
    cJSON_Delete(j);
    free(out);

    /* a frequency-table adapter trained after layer 12: E follows it, --draft-vocab within its table */
    char adapter[512], args[2048];
    snprintf(adapter, sizeof adapter, "%s", tu_tmp_path("bench-table.E12.gguf"));
    REQUIRE(write_table_adapter(12, 200, adapter));
    snprintf(args, sizeof args, "--prompt 'The capital of France is' -n 12 --generation-strategy self_speculative "
             "--draft-adapter %s --draft-vocab 150 --draft-source exit --json", adapter);
    out = run(args, &rc);
    CHECK_EQ_INT(rc, 0);
    j = cJSON_Parse(out);
    REQUIRE(j);
    CHECK_EQ_INT(cJSON_GetObjectItem(j, "exit_layer")->valueint, 12);
    CHECK_STR_EQ(cJSON_GetObjectItem(j, "draft_adapter")->valuestring, adapter);
    CHECK_EQ_INT(cJSON_GetObjectItem(j, "draft_vocab")->valueint, 150);
    CHECK_EQ_INT(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "drafted_by"), "exit")->valueint,
                 cJSON_GetObjectItem(j, "drafted")->valueint);
    ids_a = cJSON_PrintUnformatted(cJSON_GetObjectItem(ja, "token_ids"));
    ids_s = cJSON_PrintUnformatted(cJSON_GetObjectItem(j, "token_ids"));
    CHECK_STR_EQ(ids_s, ids_a);
    free(ids_a);
    free(ids_s);
    cJSON_Delete(j);
    free(out);
    cJSON_Delete(ja);
    free(ar);

    const char *bad2[] = {"--draft-vocab 201", "--draft-source adapter", "--draft-vocab -1"};
    for (size_t i = 0; i < sizeof bad2 / sizeof bad2[0]; i++) {
        snprintf(args, sizeof args, "--generation-strategy self_speculative --draft-adapter %s %s", adapter, bad2[i]);
        out = run(args, &rc);
        if (rc != 2) fprintf(stderr, "  '%s' exited %d\n", bad2[i], rc);
        CHECK_EQ_INT(rc, 2);
        free(out);
    }
    const char *bad[] = {"--draft-source bogus", "--num-speculations autox", "--num-speculations Auto",
                         "--generation-strategy self_speculative --draft-vocab 5",
                         "--generation-strategy self_speculative --draft-source adapter",
                         "--sweep-exit 10:10 --sweep-k 1,nope", "--sweep-exit 10:10 --sweep-k 2:1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        out = run(bad[i], &rc);
        if (rc != 2) fprintf(stderr, "  '%s' exited %d\n", bad[i], rc);
        CHECK_EQ_INT(rc, 2);
        free(out);
    }
    out = run("--draft-adapter /nonexistent/adapter.gguf", &rc);
    CHECK_EQ_INT(rc, 1);
    free(out);

    /* auto as a --sweep-k column, with the per-source and k columns */
    char prompts[512], csv[512], png[512];
    snprintf(prompts, sizeof prompts, "%s", tu_tmp_path("bench-prompts-auto.txt"));
    snprintf(csv, sizeof csv, "%s", tu_tmp_path("bench-sweep-auto.csv"));
    snprintf(png, sizeof png, "%s", tu_tmp_path("bench-sweep-auto.png"));
    FILE *f = fopen(prompts, "w");
    REQUIRE(f);
    fputs("1, 2, 3, 4, 1, 2, 3, 4,\n", f);
    fclose(f);
    snprintf(args, sizeof args, "-f %s -n 6 --sweep-exit 10:10 --sweep-k 2,auto --csv %s --heatmap %s", prompts, csv,
             png);
    out = run(args, &rc);
    CHECK_EQ_INT(rc, 0);
    free(out);
    char *table = tu_read_file(csv, NULL);
    REQUIRE(table);
    int lines = 0;
    for (char *c = table; *c; c++) lines += *c == '\n';
    CHECK_EQ_INT(lines, 1 + 2);
    CHECK(strstr(table, ",mean_k,rounds_by_k,drafted_exit,accepted_exit,drafted_adapter,accepted_adapter,"
                        "drafted_lookup,accepted_lookup\n") != NULL);
    CHECK(strstr(table, "\n10,2,") != NULL);
    CHECK(strstr(table, "\n10,auto,") != NULL);
    CHECK(strstr(table, ",no,") == NULL);
    free(table);
    remove(adapter);
}

int main(void) {
    RUN(test_json);
    RUN(test_tokenize);
    RUN(test_seeded_sampling);
    RUN(test_bad_flags);
    RUN(test_layerskip_modes);
    RUN(test_draft_options);
    TEST_MAIN_END();
}
