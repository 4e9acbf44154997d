/* Bad model files and directories: one clear message naming the file and
 * the problem, a non-OK status, no crash (also run under ASan+UBSan); and
 * layerskip-bench exits non-zero with that message. */
#include "test_util.h"
#include "random_model.h"
#include "gguf_writer.h"
#include "layerskip/engine.h"

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static void expect_fail(const char *path, const char *needle) {
    ls_model *m = (ls_model *)0x1;
    ls_err err = {{0}};
    ls_status st = ls_model_load(path, &m, &err);
    CHECK(st != LS_OK);
    CHECK(m == NULL);
    if (!strstr(err.msg, needle))
        fprintf(stderr, "  message for %s lacks '%s': %s\n", path, needle, err.msg);
    CHECK(strstr(err.msg, needle) != NULL);
    const char *base = strrchr(path, '/');
    CHECK(strstr(err.msg, base ? base + 1 : path) != NULL); /* names the file */
}

static rm_spec tiny_spec(void) {
    rm_spec s = {.n_layers = 2, .dim = 64, .n_heads = 4, .n_kv_heads = 2, .ffn_dim = 96,
                 .rope_theta = 10000.0f, .norm_eps = 1e-5f, .dtype = LS_TYPE_F16,
                 .vocab_gguf = tu_models_path("vocab/ggml-vocab-llama-spm.gguf"), .seed = 5, .n_shards = 1};
    return s;
}

/* copy a GGUF dropping or reshaping one tensor, or changing one key */
static void write_variant(const char *src, const char *dst, const char *drop_tensor,
                          const char *reshape_tensor, const char *arch) {
    gguf_ctx *g;
    ls_err err;
    if (gguf_ctx_init_from_file(src, &g, &err) != LS_OK) { fprintf(stderr, "%s\n", err.msg); return; }
    gguf_writer *w = gguf_writer_init();
    for (uint64_t i = 0; i < g->n_kv; i++) {
        const gguf_kv *kv = &g->kv[i];
        char key[256];
        snprintf(key, sizeof key, "%.*s", (int)kv->key.len, kv->key.ptr);
        if (strcmp(key, "general.architecture") == 0) { gguf_writer_add_str(w, key, arch); continue; }
        gguf_writer_copy_kv(w, kv);
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const gguf_tensor_info *t = &g->tensors[i];
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)t->name.len, t->name.ptr);
        if (drop_tensor && strcmp(name, drop_tensor) == 0) continue;
        int64_t ne[4] = {t->ne[0], t->ne[1], t->ne[2], t->ne[3]};
        if (reshape_tensor && strcmp(name, reshape_tensor) == 0 && t->n_dims == 2) {
            ne[1] = t->ne[1] / 2; /* half the rows: a shape mismatch */
        }
        gguf_writer_add_tensor(w, name, t->type, t->n_dims, ne, t->data);
    }
    gguf_writer_write(w, dst);
    gguf_writer_free(w);
    gguf_ctx_free(g);
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (f) { fputs(text, f); fclose(f); }
}

static void test_gguf_models(void) {
    rm_spec s = tiny_spec();
    rm_model *rm = rm_model_create(&s);
    REQUIRE(rm);
    char good[512], bad[512];
    snprintf(good, sizeof good, "%s", tu_tmp_path("err-good.gguf"));
    REQUIRE(rm_write_gguf(rm, good));
    ls_model *m;
    ls_err err;
    CHECK_EQ_INT(ls_model_load(good, &m, &err), LS_OK);
    ls_model_free(m);

    snprintf(bad, sizeof bad, "%s", tu_tmp_path("err-missing.gguf"));
    write_variant(good, bad, "blk.1.ffn_up.weight", NULL, "llama");
    expect_fail(bad, "blk.1.ffn_up.weight");
    snprintf(bad, sizeof bad, "%s", tu_tmp_path("err-shape.gguf"));
    write_variant(good, bad, NULL, "blk.0.attn_k.weight", "llama");
    expect_fail(bad, "shape");
    snprintf(bad, sizeof bad, "%s", tu_tmp_path("err-arch.gguf"));
    write_variant(good, bad, NULL, NULL, "mamba");
    expect_fail(bad, "mamba");

    /* truncated copies of a real file: header, metadata, tensor data */
    size_t len;
    char *bytes = tu_read_file(good, &len);
    REQUIRE(bytes);
    const size_t cuts[] = {0, 3, 7, 100, 5000, len / 2, len - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        snprintf(bad, sizeof bad, "%s", tu_tmp_path("err-trunc.gguf"));
        FILE *f = fopen(bad, "wb");
        fwrite(bytes, 1, cuts[i], f);
        fclose(f);
        expect_fail(bad, "err-trunc.gguf");
    }
    free(bytes);
    rm_model_free(rm);
}

static void test_hf_dirs(void) {
    rm_spec s = tiny_spec();
    rm_model *rm = rm_model_create(&s);
    REQUIRE(rm);
    char dir[512], path[600];
    snprintf(dir, sizeof dir, "%s", tu_tmp_path("err-hf"));
    REQUIRE(rm_write_hf_dir(rm, dir));
    ls_model *m;
    ls_err err;
    CHECK_EQ_INT(ls_model_load(dir, &m, &err), LS_OK);
    ls_model_free(m);

    snprintf(path, sizeof path, "%s/config.json", dir);
    char *cfg = tu_read_file(path, NULL);
    write_text(path, "{\"hidden_size\": 64, ");
    expect_fail(dir, "config.json");
    write_text(path, "{\"model_type\": \"llama\", \"hidden_size\": 64}");
    expect_fail(dir, "intermediate_size");
    write_text(path, "{\"model_type\": \"gpt_neox\"}");
    expect_fail(dir, "gpt_neox");
    write_text(path, cfg);
    free(cfg);

    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    char *tok = tu_read_file(path, NULL);
    write_text(path, "{\"model\": {\"type\": \"BPE\", \"vocab\": [1, 2]}}");
    expect_fail(dir, "tokenizer.json");
    write_text(path, tok);
    free(tok);

    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    size_t len;
    char *st = tu_read_file(path, &len);
    FILE *f = fopen(path, "wb");
    fwrite(st, 1, len - 100, f);
    fclose(f);
    expect_fail(dir, "model.safetensors");
    unlink(path);
    expect_fail(dir, "safetensors");
    f = fopen(path, "wb");
    fwrite(st, 1, len, f);
    fclose(f);
    free(st);
    CHECK_EQ_INT(ls_model_load(dir, &m, &err), LS_OK);
    ls_model_free(m);
    rm_model_free(rm);
}

static void test_paths(void) {
    expect_fail(tu_tmp_path("does-not-exist.gguf"), "does-not-exist.gguf");
    char empty[512];
    snprintf(empty, sizeof empty, "%s", tu_tmp_path("err-empty-dir"));
    mkdir(empty, 0755);
    expect_fail(empty, "config.json");
}

/* the command-line tool turns the same errors into a message and exit 1 */
static void test_bench_exit_codes(void) {
    const char *bin = getenv("LS_BIN_DIR");
    REQUIRE(bin);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s/engine/layerskip-bench --model %s -n 1 > /dev/null 2> %s",
             bin, tu_tmp_path("err-trunc.gguf"), tu_tmp_path("bench-stderr.txt"));
    int rc = system(cmd);
    CHECK(WIFEXITED(rc) && WEXITSTATUS(rc) == 1);
    char *msg = tu_read_file(tu_tmp_path("bench-stderr.txt"), NULL);
    CHECK(msg && strstr(msg, "err-trunc.gguf") != NULL);
    free(msg);
    snprintf(cmd, sizeof cmd, "%s/engine/layerskip-bench --model %s --threads zero > /dev/null 2>&1", bin,
             tu_default_model());
    rc = system(cmd);
    CHECK(WIFEXITED(rc) && WEXITSTATUS(rc) == 2);
    snprintf(cmd, sizeof cmd, "%s/engine/layerskip-bench --help > /dev/null 2>&1", bin);
    rc = system(cmd);
    CHECK(WIFEXITED(rc) && WEXITSTATUS(rc) == 0);
}

int main(void) {
    RUN(test_gguf_models);
    RUN(test_hf_dirs);
    RUN(test_paths);
    RUN(test_bench_exit_codes);
    TEST_MAIN_END();
}
