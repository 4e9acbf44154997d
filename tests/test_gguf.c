/* test_gguf.c: GGUF reader. Round trips through the test writer (every kv
 * type, v2 and v3, every supported tensor type, custom alignment), hostile
 * files (each must fail with a message naming the file and the problem),
 * and the real model and vocabulary files. */
#define _GNU_SOURCE /* memmem */
#include "gguf.h"
#include "gguf_writer.h"
#include "test_util.h"

#include <sys/stat.h>
#include <unistd.h>

/* Parse a heap copy of exactly `len` bytes so ASan catches any overread;
 * only the status and message survive (a parsed ctx is freed at once). */
static ls_status parse_mem(const uint8_t *buf, size_t len, const char *name, gguf_ctx **out, ls_err *err) {
    uint8_t *copy = malloc(len ? len : 1);
    if (len) memcpy(copy, buf, len);
    ls_status s = gguf_ctx_init_from_memory(copy, len, name, out, err);
    if (s == LS_OK) {
        gguf_ctx_free(*out);
        *out = NULL;
    }
    free(copy);
    return s;
}

/* Expect a failure whose message names the file and contains `needle`. */
static void expect_fail_mem(gguf_writer *w, const char *name, ls_status want, const char *needle) {
    uint8_t *buf;
    size_t len;
    gguf_writer_write_mem(w, &buf, &len);
    gguf_ctx *ctx = (gguf_ctx *)1;
    ls_err err = {{0}};
    ls_status s = parse_mem(buf, len, name, &ctx, &err);
    free(buf);
    gguf_writer_free(w);
    CHECK(s != LS_OK);
    CHECK(ctx == NULL);
    if (want != LS_OK) CHECK_EQ_INT(s, want);
    CHECK(strstr(err.msg, name) != NULL);
    if (getenv("LS_TEST_VERBOSE")) fprintf(stderr, "  [%s] %s\n", ls_strerror(s), err.msg);
    if (!strstr(err.msg, needle)) {
        tu_failures++;
        fprintf(stderr, "  %s: message lacks \"%s\": %s\n", name, needle, err.msg);
    }
    tu_checks++;
}

static void expect_fail_file(gguf_writer *w, const char *fname, ls_status want, const char *needle) {
    const char *path = tu_tmp_path(fname);
    REQUIRE(gguf_writer_write(w, path));
    gguf_writer_free(w);
    gguf_ctx *ctx = (gguf_ctx *)1;
    ls_err err = {{0}};
    ls_status s = gguf_ctx_init_from_file(path, &ctx, &err);
    CHECK(s != LS_OK);
    CHECK(ctx == NULL);
    if (want != LS_OK) CHECK_EQ_INT(s, want);
    CHECK(strstr(err.msg, path) != NULL);
    if (getenv("LS_TEST_VERBOSE")) fprintf(stderr, "  [%s] %s\n", ls_strerror(s), err.msg);
    if (!strstr(err.msg, needle)) {
        tu_failures++;
        fprintf(stderr, "  %s: message lacks \"%s\": %s\n", path, needle, err.msg);
    }
    tu_checks++;
    remove(path);
}

static gguf_writer *small_model(void) {
    gguf_writer *w = gguf_writer_init();
    gguf_writer_add_str(w, "general.architecture", "llama");
    gguf_writer_add_u32(w, "llama.block_count", 2);
    const char *toks[] = {"<s>", "</s>", "a"};
    gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", toks, 3);
    float f[6] = {1, 2, 3, 4, 5, 6};
    int64_t ne[2] = {3, 2};
    gguf_writer_add_tensor(w, "a", LS_TYPE_F32, 2, ne, f);
    int64_t ne1[1] = {32};
    gguf_writer_add_tensor(w, "b", LS_TYPE_Q8_0, 1, ne1, NULL);
    return w;
}

static void test_kv_roundtrip_version(uint32_t version) {
    gguf_writer *w = gguf_writer_init();
    gguf_writer_set_version(w, version);
    gguf_writer_add_u8(w, "k.u8", 200);
    gguf_writer_add_i8(w, "k.i8", -100);
    gguf_writer_add_u16(w, "k.u16", 60000);
    gguf_writer_add_i16(w, "k.i16", -30000);
    gguf_writer_add_u32(w, "k.u32", 4000000000u);
    gguf_writer_add_i32(w, "k.i32", -2000000000);
    gguf_writer_add_u64(w, "k.u64", 1ull << 40);
    gguf_writer_add_i64(w, "k.i64", -(1ll << 40));
    gguf_writer_add_u64(w, "k.u64small", 7);
    gguf_writer_add_i64(w, "k.i64small", 8);
    gguf_writer_add_f32(w, "k.f32", 1.5f);
    gguf_writer_add_f64(w, "k.f64", -2.25);
    gguf_writer_add_bool(w, "k.true", true);
    gguf_writer_add_bool(w, "k.false", false);
    gguf_writer_add_str(w, "k.str", "hello world");
    gguf_writer_add_str(w, "k.empty", "");
    uint8_t a_u8[3] = {1, 2, 255};
    int8_t a_i8[3] = {-1, 0, 127};
    uint16_t a_u16[2] = {1, 65535};
    int16_t a_i16[2] = {-32768, 5};
    uint32_t a_u32[2] = {0, 4294967295u};
    int32_t a_i32[4] = {-5, 6, -7, 8};
    uint64_t a_u64[2] = {1, UINT64_MAX};
    int64_t a_i64[2] = {INT64_MIN, INT64_MAX};
    float a_f32[3] = {0.5f, -1.0f, 3.0f};
    double a_f64[2] = {1e300, -0.125};
    uint8_t a_bool[3] = {1, 0, 1};
    gguf_writer_add_arr(w, "a.u8", GGUF_TYPE_UINT8, a_u8, 3);
    gguf_writer_add_arr(w, "a.i8", GGUF_TYPE_INT8, a_i8, 3);
    gguf_writer_add_arr(w, "a.u16", GGUF_TYPE_UINT16, a_u16, 2);
    gguf_writer_add_arr(w, "a.i16", GGUF_TYPE_INT16, a_i16, 2);
    gguf_writer_add_arr(w, "a.u32", GGUF_TYPE_UINT32, a_u32, 2);
    gguf_writer_add_arr(w, "a.i32", GGUF_TYPE_INT32, a_i32, 4);
    gguf_writer_add_arr(w, "a.u64", GGUF_TYPE_UINT64, a_u64, 2);
    gguf_writer_add_arr(w, "a.i64", GGUF_TYPE_INT64, a_i64, 2);
    gguf_writer_add_arr(w, "a.f32", GGUF_TYPE_FLOAT32, a_f32, 3);
    gguf_writer_add_arr(w, "a.f64", GGUF_TYPE_FLOAT64, a_f64, 2);
    gguf_writer_add_arr(w, "a.bool", GGUF_TYPE_BOOL, a_bool, 3);
    gguf_writer_add_arr(w, "a.empty", GGUF_TYPE_INT32, NULL, 0);
    const char *strs[] = {"x", "", "yz\xe2\x96\x81"};
    gguf_writer_add_arr_str(w, "a.str", strs, 3);
    gguf_writer_add_arr_str(w, "a.str_empty", NULL, 0);
    /* array of 2 arrays: [[1,2],["p"]] */
    const uint8_t nested[] = {
        GGUF_TYPE_ARRAY, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0,
        GGUF_TYPE_UINT32, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0,
        GGUF_TYPE_STRING, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 'p',
    };
    gguf_writer_add_raw(w, "a.nested", GGUF_TYPE_ARRAY, nested, sizeof nested);
    gguf_writer_add_str(w, "k.after_nested", "still here");

    char fname[64];
    snprintf(fname, sizeof fname, "gguf_kv_v%u.gguf", version);
    const char *path = tu_tmp_path(fname);
    REQUIRE(gguf_writer_write(w, path));
    gguf_writer_free(w);

    gguf_ctx *ctx = NULL;
    ls_err err = {{0}};
    ls_status s = gguf_ctx_init_from_file(path, &ctx, &err);
    if (s != LS_OK) fprintf(stderr, "  %s\n", err.msg);
    REQUIRE(s == LS_OK);
    CHECK_EQ_INT(ctx->version, version);
    CHECK_EQ_INT(ctx->n_tensors, 0);
    CHECK_EQ_INT(ctx->n_kv, 32);
    CHECK(ctx->owns_map);
    CHECK_STR_EQ(ctx->path, path);

    uint32_t u32 = 0;
    CHECK_EQ_INT(gguf_get_u32(ctx, "k.u8", &u32, true, &err), LS_OK);
    CHECK_EQ_INT(u32, 200);
    CHECK_EQ_INT(gguf_get_u32(ctx, "k.u16", &u32, true, &err), LS_OK);
    CHECK_EQ_INT(u32, 60000);
    CHECK_EQ_INT(gguf_get_u32(ctx, "k.u32", &u32, true, &err), LS_OK);
    CHECK_EQ_INT(u32, 4000000000u);
    CHECK_EQ_INT(gguf_get_u32(ctx, "k.u64small", &u32, true, &err), LS_OK);
    CHECK_EQ_INT(u32, 7);
    CHECK_EQ_INT(gguf_get_u32(ctx, "k.i64small", &u32, true, &err), LS_OK);
    CHECK_EQ_INT(u32, 8);
    /* values that do not fit u32 */
    err.msg[0] = 0;
    CHECK_EQ_INT(gguf_get_u32(ctx, "k.i8", &u32, true, &err), LS_ERR_FORMAT);
    CHECK(strstr(err.msg, "k.i8") && strstr(err.msg, path));
    CHECK_EQ_INT(gguf_get_u32(ctx, "k.u64", &u32, true, &err), LS_ERR_FORMAT);
    CHECK_EQ_INT(gguf_get_u32(ctx, "k.i32", &u32, true, &err), LS_ERR_FORMAT);
    CHECK_EQ_INT(gguf_get_u32(ctx, "k.str", &u32, true, &err), LS_ERR_FORMAT);
    CHECK(strstr(err.msg, "string") != NULL);
    CHECK_EQ_INT(gguf_get_u32(ctx, "a.u32", &u32, true, &err), LS_ERR_FORMAT);
    CHECK(strstr(err.msg, "array") != NULL);

    float f = 0;
    CHECK_EQ_INT(gguf_get_f32(ctx, "k.f32", &f, true, &err), LS_OK);
    CHECK_NEAR(f, 1.5, 0);
    CHECK_EQ_INT(gguf_get_f32(ctx, "k.f64", &f, true, &err), LS_OK);
    CHECK_NEAR(f, -2.25, 0);
    CHECK_EQ_INT(gguf_get_f32(ctx, "k.u32", &f, true, &err), LS_ERR_FORMAT);

    bool b = false;
    CHECK_EQ_INT(gguf_get_bool(ctx, "k.true", &b, true, &err), LS_OK);
    CHECK(b);
    CHECK_EQ_INT(gguf_get_bool(ctx, "k.false", &b, true, &err), LS_OK);
    CHECK(!b);
    CHECK_EQ_INT(gguf_get_bool(ctx, "k.u8", &b, true, &err), LS_ERR_FORMAT);

    gguf_str str = {0};
    CHECK_EQ_INT(gguf_get_str(ctx, "k.str", &str, true, &err), LS_OK);
    CHECK(gguf_str_eq(str, "hello world"));
    CHECK_EQ_INT(gguf_get_str(ctx, "k.empty", &str, true, &err), LS_OK);
    CHECK_EQ_INT(str.len, 0);
    CHECK(gguf_str_eq(str, ""));
    CHECK_EQ_INT(gguf_get_str(ctx, "k.after_nested", &str, true, &err), LS_OK);
    CHECK(gguf_str_eq(str, "still here"));

    /* missing keys: err only filled when required */
    strcpy(err.msg, "untouched");
    CHECK_EQ_INT(gguf_get_u32(ctx, "nope", &u32, false, &err), LS_ERR_MISSING);
    CHECK_STR_EQ(err.msg, "untouched");
    CHECK_EQ_INT(gguf_get_str(ctx, "nope", &str, true, &err), LS_ERR_MISSING);
    CHECK(strstr(err.msg, "nope") && strstr(err.msg, path));

    int64_t iv;
    double dv;
    const gguf_kv *kv = gguf_find_kv(ctx, "a.u8");
    REQUIRE(kv && kv->type == GGUF_TYPE_ARRAY && kv->arr_type == GGUF_TYPE_UINT8 && kv->arr_n == 3);
    CHECK(gguf_arr_get_i64(kv, 2, &iv) && iv == 255);
    CHECK(!gguf_arr_get_i64(kv, 3, &iv));
    kv = gguf_find_kv(ctx, "a.i8");
    CHECK(gguf_arr_get_i64(kv, 0, &iv) && iv == -1);
    kv = gguf_find_kv(ctx, "a.u16");
    CHECK(gguf_arr_get_i64(kv, 1, &iv) && iv == 65535);
    kv = gguf_find_kv(ctx, "a.i16");
    CHECK(gguf_arr_get_i64(kv, 0, &iv) && iv == -32768);
    kv = gguf_find_kv(ctx, "a.u32");
    CHECK(gguf_arr_get_i64(kv, 1, &iv) && iv == 4294967295ll);
    kv = gguf_find_kv(ctx, "a.i32");
    REQUIRE(kv && kv->arr_n == 4);
    for (int i = 0; i < 4; i++) CHECK(gguf_arr_get_i64(kv, (uint64_t)i, &iv) && iv == a_i32[i]);
    CHECK(gguf_arr_get_f64(kv, 2, &dv) && dv == -7.0);
    kv = gguf_find_kv(ctx, "a.u64");
    CHECK(gguf_arr_get_i64(kv, 0, &iv) && iv == 1);
    CHECK(!gguf_arr_get_i64(kv, 1, &iv)); /* UINT64_MAX does not fit */
    CHECK(gguf_arr_get_f64(kv, 1, &dv) && dv == 18446744073709551615.0);
    kv = gguf_find_kv(ctx, "a.i64");
    CHECK(gguf_arr_get_i64(kv, 0, &iv) && iv == INT64_MIN);
    CHECK(gguf_arr_get_i64(kv, 1, &iv) && iv == INT64_MAX);
    kv = gguf_find_kv(ctx, "a.f32");
    CHECK(gguf_arr_get_f64(kv, 0, &dv) && dv == 0.5);
    CHECK(gguf_arr_get_i64(kv, 1, &iv) && iv == -1);
    CHECK(!gguf_arr_get_i64(kv, 0, &iv)); /* 0.5 is not an integer */
    kv = gguf_find_kv(ctx, "a.f64");
    CHECK(gguf_arr_get_f64(kv, 0, &dv) && dv == 1e300);
    CHECK(!gguf_arr_get_i64(kv, 0, &iv));
    kv = gguf_find_kv(ctx, "a.bool");
    CHECK(gguf_arr_get_i64(kv, 0, &iv) && iv == 1);
    CHECK(gguf_arr_get_i64(kv, 1, &iv) && iv == 0);
    kv = gguf_find_kv(ctx, "a.empty");
    REQUIRE(kv);
    CHECK_EQ_INT(kv->arr_n, 0);
    CHECK(!gguf_arr_get_i64(kv, 0, &iv));
    kv = gguf_find_kv(ctx, "a.str");
    REQUIRE(kv && kv->arr_type == GGUF_TYPE_STRING && kv->arr_n == 3 && kv->strs);
    CHECK(gguf_str_eq(kv->strs[0], "x"));
    CHECK(gguf_str_eq(kv->strs[1], ""));
    CHECK(gguf_str_eq(kv->strs[2], "yz\xe2\x96\x81"));
    CHECK(!gguf_arr_get_f64(kv, 0, &dv));
    kv = gguf_find_kv(ctx, "a.str_empty");
    REQUIRE(kv);
    CHECK_EQ_INT(kv->arr_n, 0);
    kv = gguf_find_kv(ctx, "a.nested");
    REQUIRE(kv);
    CHECK_EQ_INT(kv->arr_type, GGUF_TYPE_ARRAY);
    CHECK_EQ_INT(kv->arr_n, 2);
    CHECK(!gguf_arr_get_i64(kv, 0, &iv));
    kv = gguf_find_kv(ctx, "k.u32");
    CHECK(!gguf_arr_get_i64(kv, 0, &iv)); /* a scalar is not an array */
    gguf_ctx_free(ctx);
    remove(path);
}

static void test_kv_roundtrip(void) {
    test_kv_roundtrip_version(2);
    test_kv_roundtrip_version(3);
}

static void fill(uint8_t *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)(seed * 31 + i * 7 + (i >> 8));
}

static void test_tensor_roundtrip_align(uint32_t version, uint32_t alignment) {
    static const struct { const char *name; ls_type type; uint32_t n_dims; int64_t ne[4]; } specs[] = {
        {"t.f32", LS_TYPE_F32, 2, {5, 3, 1, 1}},
        {"t.f16", LS_TYPE_F16, 3, {7, 2, 2, 1}},
        {"t.bf16", LS_TYPE_BF16, 1, {9, 1, 1, 1}},
        {"t.q4_0", LS_TYPE_Q4_0, 2, {64, 3, 1, 1}},
        {"t.q4_1", LS_TYPE_Q4_1, 4, {32, 2, 1, 2}},
        {"t.q8_0", LS_TYPE_Q8_0, 2, {96, 1, 1, 1}},
        {"t.empty", LS_TYPE_F32, 2, {4, 0, 1, 1}},
    };
    const size_t n = sizeof specs / sizeof specs[0];
    uint8_t *data[sizeof specs / sizeof specs[0]];
    uint64_t nbytes[sizeof specs / sizeof specs[0]];
    gguf_writer *w = gguf_writer_init();
    gguf_writer_set_version(w, version);
    if (alignment) gguf_writer_set_alignment(w, alignment);
    gguf_writer_add_str(w, "general.name", "tensors");
    for (size_t i = 0; i < n; i++) {
        int64_t ne = 1;
        for (uint32_t d = 0; d < specs[i].n_dims; d++) ne *= specs[i].ne[d];
        REQUIRE(ls_type_nbytes(specs[i].type, ne, &nbytes[i]));
        data[i] = malloc(nbytes[i] ? nbytes[i] : 1);
        fill(data[i], nbytes[i], (unsigned)i);
        REQUIRE(gguf_writer_add_tensor(w, specs[i].name, specs[i].type, specs[i].n_dims, specs[i].ne, data[i]));
    }
    /* not whole blocks: the writer refuses */
    int64_t bad_ne[1] = {33};
    CHECK(!gguf_writer_add_tensor(w, "bad", LS_TYPE_Q8_0, 1, bad_ne, NULL));

    uint8_t *buf;
    size_t len;
    gguf_writer_write_mem(w, &buf, &len);
    gguf_writer_free(w);
    gguf_ctx *ctx = NULL;
    ls_err err = {{0}};
    ls_status s = gguf_ctx_init_from_memory(buf, len, "mem.gguf", &ctx, &err);
    if (s != LS_OK) fprintf(stderr, "  %s\n", err.msg);
    if (s == LS_OK) {
        uint64_t a = alignment ? alignment : 32;
        CHECK(!ctx->owns_map);
        CHECK(ctx->map == buf);
        CHECK_EQ_INT(ctx->alignment, a);
        CHECK_EQ_INT(ctx->data_offset % a, 0);
        CHECK_EQ_INT(ctx->n_tensors, n);
        for (size_t i = 0; i < n; i++) {
            const gguf_tensor_info *t = gguf_find_tensor(ctx, specs[i].name);
            REQUIRE(t);
            CHECK(t == &ctx->tensors[i]);
            CHECK_EQ_INT(t->type, specs[i].type);
            CHECK_EQ_INT(t->n_dims, specs[i].n_dims);
            for (int d = 0; d < 4; d++) CHECK_EQ_INT(t->ne[d], specs[i].ne[d]);
            CHECK_EQ_INT(t->nbytes, nbytes[i]);
            CHECK_EQ_INT(t->offset % a, 0);
            CHECK((const uint8_t *)t->data == buf + ctx->data_offset + t->offset);
            CHECK(memcmp(t->data, data[i], nbytes[i]) == 0);
        }
        CHECK(gguf_find_tensor(ctx, "t.nope") == NULL);
        CHECK(gguf_find_tensor(ctx, "t.f3") == NULL);
        gguf_ctx_free(ctx);
    } else {
        CHECK(s == LS_OK);
    }
    free(buf);
    for (size_t i = 0; i < n; i++) free(data[i]);
}

static void test_tensor_roundtrip(void) {
    test_tensor_roundtrip_align(3, 0);
    test_tensor_roundtrip_align(2, 0);
    test_tensor_roundtrip_align(3, 1);
    test_tensor_roundtrip_align(3, 64);
    test_tensor_roundtrip_align(2, 4096);
}

/* Every prefix of a valid file that cuts into the header or tensor data must
 * fail cleanly (ASan catches overreads: each prefix is its own allocation). */
static void test_truncation(void) {
    gguf_writer *w = small_model();
    uint8_t *buf;
    size_t len;
    gguf_writer_write_mem(w, &buf, &len);
    gguf_writer_free(w);
    gguf_ctx *ctx = NULL;
    ls_err err = {{0}};
    REQUIRE(gguf_ctx_init_from_memory(buf, len, "full.gguf", &ctx, &err) == LS_OK);
    uint64_t needed = ctx->data_offset;
    for (uint64_t i = 0; i < ctx->n_tensors; i++) {
        uint64_t e = ctx->data_offset + ctx->tensors[i].offset + ctx->tensors[i].nbytes;
        if (e > needed) needed = e;
    }
    gguf_ctx_free(ctx);
    int bad_msgs = 0, wrong_ok = 0;
    for (size_t cut = 0; cut < len; cut++) {
        ctx = NULL;
        err.msg[0] = 0;
        ls_status s = parse_mem(buf, cut, "cut.gguf", &ctx, &err);
        if (cut < needed) {
            if (s == LS_OK) wrong_ok++;
            if (!strstr(err.msg, "cut.gguf")) bad_msgs++;
            if (cut > 24 && !strstr(err.msg, "past the end")) bad_msgs++;
        }
    }
    CHECK_EQ_INT(wrong_ok, 0);
    CHECK_EQ_INT(bad_msgs, 0);

    /* a few cuts through the file path too (mmap of a short file) */
    const char *path = tu_tmp_path("gguf_cut.gguf");
    const size_t cuts[] = {1, 3, 4, 8, 23, 24, 40, (size_t)needed - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        FILE *f = fopen(path, "wb");
        REQUIRE(f);
        fwrite(buf, 1, cuts[i], f);
        fclose(f);
        ctx = (gguf_ctx *)1;
        ls_status s = gguf_ctx_init_from_file(path, &ctx, &err);
        CHECK(s != LS_OK);
        CHECK(ctx == NULL);
        CHECK(strstr(err.msg, path) != NULL);
    }
    remove(path);
    free(buf);
}

static void test_bad_header(void) {
    gguf_writer *w = small_model();
    uint8_t *buf;
    size_t len;
    gguf_writer_write_mem(w, &buf, &len);
    gguf_writer_free(w);
    gguf_ctx *ctx;
    ls_err err;

    buf[0] = 'X';
    CHECK(parse_mem(buf, len, "magic.gguf", &ctx, &err) == LS_ERR_FORMAT);
    CHECK(strstr(err.msg, "magic.gguf") && strstr(err.msg, "magic"));
    buf[0] = 'G';

    const uint8_t be[4] = {0, 0, 0, 3};
    uint8_t saved[4];
    memcpy(saved, buf + 4, 4);
    memcpy(buf + 4, be, 4);
    CHECK(parse_mem(buf, len, "be.gguf", &ctx, &err) == LS_ERR_UNSUPPORTED);
    CHECK(strstr(err.msg, "be.gguf") && strstr(err.msg, "version") && strstr(err.msg, "big-endian"));
    memcpy(buf + 4, saved, 4);
    free(buf);

    uint32_t versions[] = {0, 1, 4, 0xffffffffu};
    for (size_t i = 0; i < 4; i++) {
        w = small_model();
        gguf_writer_set_version(w, versions[i]);
        expect_fail_mem(w, "version.gguf", LS_ERR_UNSUPPORTED, "version");
    }

    const char *path = tu_tmp_path("gguf_empty.gguf");
    FILE *f = fopen(path, "wb");
    REQUIRE(f);
    fclose(f);
    ctx = (gguf_ctx *)1;
    CHECK(gguf_ctx_init_from_file(path, &ctx, &err) == LS_ERR_FORMAT);
    CHECK(ctx == NULL);
    CHECK(strstr(err.msg, path) && strstr(err.msg, "empty"));
    remove(path);
    CHECK(gguf_ctx_init_from_memory(NULL, 0, "null.gguf", &ctx, &err) == LS_ERR_FORMAT);
    CHECK(strstr(err.msg, "null.gguf") != NULL);

    const char *dir = tu_tmp_path("gguf_dir.gguf");
    mkdir(dir, 0755);
    CHECK(gguf_ctx_init_from_file(dir, &ctx, &err) != LS_OK);
    CHECK(strstr(err.msg, dir) && strstr(err.msg, "directory"));
    rmdir(dir);

    const char *missing = tu_tmp_path("gguf_does_not_exist.gguf");
    CHECK(gguf_ctx_init_from_file(missing, &ctx, &err) != LS_OK);
    CHECK(strstr(err.msg, missing) && strstr(err.msg, "No such file"));
}

static void test_bad_counts(void) {
    gguf_writer *w = small_model();
    gguf_writer_override_counts(w, 2, UINT64_MAX);
    expect_fail_mem(w, "nkv.gguf", LS_ERR_FORMAT, "cannot fit");
    w = small_model();
    gguf_writer_override_counts(w, 1ull << 60, 3);
    expect_fail_mem(w, "nt.gguf", LS_ERR_FORMAT, "cannot fit");
    w = small_model();
    gguf_writer_override_counts(w, UINT64_MAX / 24 + 1, UINT64_MAX / 12 + 1);
    expect_fail_mem(w, "both.gguf", LS_ERR_FORMAT, "cannot fit");
    /* plausible but one too many: runs into the tensor infos / data */
    w = small_model();
    gguf_writer_override_counts(w, 2, 4);
    expect_fail_mem(w, "nkv4.gguf", LS_OK, "nkv4.gguf");
    w = small_model();
    gguf_writer_override_counts(w, 3, 3);
    expect_fail_file(w, "gguf_nt3.gguf", LS_OK, "");
}

static void test_bad_kv(void) {
    /* string value whose length runs past the end */
    gguf_writer *w = gguf_writer_init();
    uint8_t s1[12] = {0};
    uint64_t big = 1ull << 40;
    memcpy(s1, &big, 8);
    memcpy(s1 + 8, "abcd", 4);
    gguf_writer_add_raw(w, "k.str", GGUF_TYPE_STRING, s1, sizeof s1);
    expect_fail_mem(w, "strlen.gguf", LS_ERR_FORMAT, "past the end");

    /* key whose length runs past the end */
    w = gguf_writer_init();
    gguf_writer_add_u32(w, "a", 1);
    uint8_t *buf;
    size_t len;
    gguf_writer_write_mem(w, &buf, &len);
    gguf_writer_free(w);
    uint64_t huge = UINT64_MAX;
    memcpy(buf + 24, &huge, 8);
    gguf_ctx *ctx;
    ls_err err;
    CHECK(parse_mem(buf, len, "keylen.gguf", &ctx, &err) == LS_ERR_FORMAT);
    CHECK(strstr(err.msg, "keylen.gguf") && strstr(err.msg, "past the end"));
    free(buf);

    /* string array claiming 2^61 strings */
    w = gguf_writer_init();
    uint8_t sa[12 + 8] = {GGUF_TYPE_STRING};
    uint64_t n = 1ull << 61;
    memcpy(sa + 4, &n, 8);
    gguf_writer_add_raw(w, "k.strs", GGUF_TYPE_ARRAY, sa, sizeof sa);
    expect_fail_mem(w, "strarr.gguf", LS_ERR_FORMAT, "past the end");

    /* numeric array whose byte size overflows */
    w = gguf_writer_init();
    uint8_t na[12] = {GGUF_TYPE_UINT64};
    n = 1ull << 62;
    memcpy(na + 4, &n, 8);
    gguf_writer_add_raw(w, "k.nums", GGUF_TYPE_ARRAY, na, sizeof na);
    expect_fail_mem(w, "numarr.gguf", LS_ERR_FORMAT, "overflow");

    /* numeric array longer than the file */
    w = gguf_writer_init();
    n = 1000;
    memcpy(na + 4, &n, 8);
    gguf_writer_add_raw(w, "k.nums", GGUF_TYPE_ARRAY, na, sizeof na);
    expect_fail_mem(w, "numarr2.gguf", LS_ERR_FORMAT, "past the end");

    /* invalid value type and element type */
    w = gguf_writer_init();
    gguf_writer_add_raw(w, "k.bad", 13, "xxxx", 4);
    expect_fail_mem(w, "vtype.gguf", LS_ERR_FORMAT, "type 13");
    w = gguf_writer_init();
    uint8_t ea[12] = {77};
    gguf_writer_add_raw(w, "k.bad", GGUF_TYPE_ARRAY, ea, sizeof ea);
    expect_fail_mem(w, "etype.gguf", LS_ERR_FORMAT, "type 77");

    /* bool other than 0/1 */
    w = gguf_writer_init();
    gguf_writer_add_raw(w, "k.bool", GGUF_TYPE_BOOL, "\x02", 1);
    expect_fail_mem(w, "bool.gguf", LS_ERR_FORMAT, "bool");
    w = gguf_writer_init();
    uint8_t ba[15] = {GGUF_TYPE_BOOL, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 1, 0, 9};
    gguf_writer_add_raw(w, "k.bools", GGUF_TYPE_ARRAY, ba, sizeof ba);
    expect_fail_mem(w, "bools.gguf", LS_ERR_FORMAT, "bool");

    /* arrays nested deeper than the limit: 20 levels of [[...]] */
    w = gguf_writer_init();
    uint8_t deep[20 * 12 + 12];
    size_t at = 0;
    for (int lvl = 0; lvl < 20; lvl++) {
        uint32_t t = GGUF_TYPE_ARRAY;
        uint64_t one = 1;
        memcpy(deep + at, &t, 4);
        memcpy(deep + at + 4, &one, 8);
        at += 12;
    }
    uint32_t t32 = GGUF_TYPE_UINT8;
    uint64_t zero = 0;
    memcpy(deep + at, &t32, 4);
    memcpy(deep + at + 4, &zero, 8);
    gguf_writer_add_raw(w, "k.deep", GGUF_TYPE_ARRAY, deep + 12, sizeof deep - 12);
    expect_fail_mem(w, "deep.gguf", LS_ERR_FORMAT, "nested");

    /* nested array with a truncated inner string */
    w = gguf_writer_init();
    uint8_t ns[12 + 12 + 8] = {GGUF_TYPE_ARRAY, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0,
                               GGUF_TYPE_STRING, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0,
                               0xff, 0xff, 0, 0, 0, 0, 0, 0};
    gguf_writer_add_raw(w, "k.nstr", GGUF_TYPE_ARRAY, ns, sizeof ns);
    expect_fail_mem(w, "nstr.gguf", LS_ERR_FORMAT, "past the end");

    /* duplicate key */
    w = gguf_writer_init();
    gguf_writer_add_u32(w, "k.dup", 1);
    gguf_writer_add_str(w, "k.other", "x");
    gguf_writer_add_str(w, "k.dup", "y");
    expect_fail_mem(w, "dupkey.gguf", LS_ERR_FORMAT, "duplicate key 'k.dup'");

    /* alignment: not a power of two, zero, wrong type */
    w = small_model();
    gguf_writer_add_u32(w, "general.alignment", 48);
    expect_fail_mem(w, "align48.gguf", LS_ERR_FORMAT, "power of two");
    w = small_model();
    gguf_writer_add_u32(w, "general.alignment", 0);
    expect_fail_mem(w, "align0.gguf", LS_ERR_FORMAT, "power of two");
    w = small_model();
    gguf_writer_add_str(w, "general.alignment", "32");
    expect_fail_mem(w, "alignstr.gguf", LS_ERR_FORMAT, "general.alignment");
}

static void test_bad_tensors(void) {
    gguf_writer *w = small_model();
    uint64_t ne5[5] = {1, 1, 1, 1, 1};
    gguf_writer_add_tensor_raw(w, "t.5d", 5, ne5, LS_TYPE_F32, NULL, 4);
    expect_fail_mem(w, "ndims5.gguf", LS_ERR_FORMAT, "n_dims 5");
    w = small_model();
    gguf_writer_add_tensor_raw(w, "t.0d", 0, ne5, LS_TYPE_F32, NULL, 4);
    expect_fail_mem(w, "ndims0.gguf", LS_ERR_FORMAT, "n_dims 0");

    w = small_model();
    uint64_t ovf[3] = {1ull << 32, 1ull << 32, 1ull << 32};
    gguf_writer_add_tensor_raw(w, "t.ovf", 3, ovf, LS_TYPE_F32, NULL, 4);
    expect_fail_mem(w, "prod.gguf", LS_ERR_FORMAT, "overflow");
    w = small_model();
    uint64_t ovf2[2] = {1ull << 62, 2};
    gguf_writer_add_tensor_raw(w, "t.ovf2", 2, ovf2, LS_TYPE_F32, NULL, 4);
    expect_fail_mem(w, "prod2.gguf", LS_ERR_FORMAT, "overflow");
    w = small_model();
    uint64_t ovf3[1] = {1ull << 62}; /* elements fit, bytes (x4) do not */
    gguf_writer_add_tensor_raw(w, "t.ovf3", 1, ovf3, LS_TYPE_F32, NULL, 4);
    expect_fail_mem(w, "bytes.gguf", LS_ERR_FORMAT, "overflow");
    w = small_model();
    uint64_t neg[2] = {4, (uint64_t)-1};
    gguf_writer_add_tensor_raw(w, "t.neg", 2, neg, LS_TYPE_F32, NULL, 4);
    expect_fail_mem(w, "neg.gguf", LS_ERR_FORMAT, "negative");

    w = small_model();
    uint64_t ne1[1] = {4};
    gguf_writer_add_tensor_raw(w, "t.type99", 1, ne1, 99, NULL, 16);
    expect_fail_mem(w, "type99.gguf", LS_ERR_UNSUPPORTED, "'t.type99': tensor type 99");
    w = small_model();
    gguf_writer_add_tensor_raw(w, "t.iq2", 1, (const uint64_t[]){256}, 16, NULL, 66);
    expect_fail_mem(w, "iq2xxs.gguf", LS_ERR_UNSUPPORTED, "'t.iq2': tensor type 16 (IQ2_XXS) is not supported");
    w = small_model();
    gguf_writer_add_tensor_raw(w, "t.q8k", 1, (const uint64_t[]){256}, 15, NULL, 292);
    expect_fail_mem(w, "q8k.gguf", LS_ERR_UNSUPPORTED, "(Q8_K) is not supported");
    /* K-quant rows are whole 256-element super-blocks */
    w = small_model();
    gguf_writer_add_tensor_raw(w, "t.q6k", 2, (const uint64_t[]){576, 2}, LS_TYPE_Q6_K, NULL, 210);
    expect_fail_mem(w, "q6k576.gguf", LS_ERR_FORMAT, "ne[0] = 576 is not a multiple of the Q6_K block size 256");

    w = small_model();
    gguf_writer_add_tensor_raw(w, "t.q8", 2, (const uint64_t[]){33, 32}, LS_TYPE_Q8_0, NULL, 34 * 33);
    expect_fail_mem(w, "block.gguf", LS_ERR_FORMAT, "multiple of the Q8_0 block size");

    w = small_model();
    gguf_writer_set_tensor_offset(w, 1, 1ull << 20);
    expect_fail_mem(w, "offset.gguf", LS_ERR_FORMAT, "tensor 'b': data [");
    w = small_model();
    gguf_writer_set_tensor_offset(w, 1, 1ull << 20);
    expect_fail_file(w, "gguf_offset.gguf", LS_ERR_FORMAT, "past the end of the file");
    w = small_model();
    gguf_writer_set_tensor_offset(w, 0, UINT64_MAX - 31);
    expect_fail_mem(w, "offovf.gguf", LS_ERR_FORMAT, "overflow");
    w = small_model();
    gguf_writer_set_tensor_offset(w, 1, 4);
    expect_fail_mem(w, "misalign.gguf", LS_ERR_FORMAT, "not aligned");
    /* a tensor that straddles the end by one block */
    w = small_model();
    gguf_writer_set_tensor_offset(w, 1, 64);
    expect_fail_mem(w, "straddle.gguf", LS_ERR_FORMAT, "past the end");

    w = small_model();
    gguf_writer_add_tensor(w, "a", LS_TYPE_F32, 1, (const int64_t[]){2}, NULL);
    expect_fail_mem(w, "duptensor.gguf", LS_ERR_FORMAT, "duplicate tensor name 'a'");

    /* tensor name length past the end */
    w = small_model();
    gguf_writer_add_tensor(w, "zzzz", LS_TYPE_F32, 1, (const int64_t[]){2}, NULL);
    uint8_t *buf;
    size_t len;
    gguf_writer_write_mem(w, &buf, &len);
    gguf_writer_free(w);
    uint8_t *p = memmem(buf, len, "zzzz", 4);
    REQUIRE(p);
    uint64_t huge = 1ull << 50;
    memcpy(p - 8, &huge, 8);
    gguf_ctx *ctx;
    ls_err err;
    CHECK(parse_mem(buf, len, "namelen.gguf", &ctx, &err) == LS_ERR_FORMAT);
    CHECK(strstr(err.msg, "namelen.gguf") && strstr(err.msg, "past the end"));
    free(buf);
}

/* names with control characters show up sanitised in messages */
static void test_message_sanitised(void) {
    gguf_writer *w = gguf_writer_init();
    gguf_writer_add_u32(w, "evil\nkey\x1b[31m", 1);
    gguf_writer_add_u32(w, "evil\nkey\x1b[31m", 2);
    uint8_t *buf;
    size_t len;
    gguf_writer_write_mem(w, &buf, &len);
    gguf_writer_free(w);
    gguf_ctx *ctx;
    ls_err err;
    CHECK(parse_mem(buf, len, "evil.gguf", &ctx, &err) == LS_ERR_FORMAT);
    CHECK(strstr(err.msg, "duplicate key") != NULL);
    CHECK(strchr(err.msg, '\n') == NULL);
    CHECK(strchr(err.msg, '\x1b') == NULL);
    free(buf);
}

static void test_real_model(void) {
    const char *path = tu_default_model();
    gguf_ctx *ctx = NULL;
    ls_err err = {{0}};
    ls_status s = gguf_ctx_init_from_file(path, &ctx, &err);
    if (s != LS_OK) fprintf(stderr, "  %s\n", err.msg);
    REQUIRE(s == LS_OK);
    CHECK_EQ_INT(ctx->n_tensors, 272);
    CHECK_EQ_INT(ctx->version, 3);
    uint32_t v = 0;
    CHECK_EQ_INT(gguf_get_u32(ctx, "llama.block_count", &v, true, &err), LS_OK);
    CHECK_EQ_INT(v, 30);
    CHECK_EQ_INT(gguf_get_u32(ctx, "llama.embedding_length", &v, true, &err), LS_OK);
    CHECK_EQ_INT(v, 576);
    gguf_str arch;
    CHECK_EQ_INT(gguf_get_str(ctx, "general.architecture", &arch, true, &err), LS_OK);
    CHECK(gguf_str_eq(arch, "llama"));
    float eps = 0;
    CHECK_EQ_INT(gguf_get_f32(ctx, "llama.attention.layer_norm_rms_epsilon", &eps, true, &err), LS_OK);
    CHECK(eps > 0 && eps < 1e-3);
    const gguf_tensor_info *t = gguf_find_tensor(ctx, "token_embd.weight");
    REQUIRE(t);
    CHECK_EQ_INT(t->type, LS_TYPE_Q8_0);
    CHECK_EQ_INT(t->n_dims, 2);
    CHECK_EQ_INT(t->ne[0], 576);
    CHECK_EQ_INT(t->ne[1], 49152);
    CHECK_EQ_INT(t->nbytes, 576 / 32 * 34 * 49152ull);
    const gguf_kv *tok = gguf_find_kv(ctx, "tokenizer.ggml.tokens");
    REQUIRE(tok);
    CHECK_EQ_INT(tok->type, GGUF_TYPE_ARRAY);
    CHECK_EQ_INT(tok->arr_type, GGUF_TYPE_STRING);
    CHECK_EQ_INT(tok->arr_n, 49152);
    REQUIRE(tok->strs);
    CHECK(tok->strs[0].len > 0);
    const gguf_kv *tt = gguf_find_kv(ctx, "tokenizer.ggml.token_type");
    int64_t ty;
    CHECK(tt && gguf_arr_get_i64(tt, 0, &ty));
    for (uint64_t i = 0; i < ctx->n_tensors; i++) {
        const gguf_tensor_info *ti = &ctx->tensors[i];
        CHECK((const uint8_t *)ti->data + ti->nbytes <= ctx->map + ctx->size);
    }
    gguf_ctx_free(ctx);
}

static void test_vocab_files(void) {
    const char *names[] = {"vocab/ggml-vocab-llama-spm.gguf", "vocab/ggml-vocab-llama-bpe.gguf"};
    const uint64_t n_tok[] = {32000, 128256};
    for (int i = 0; i < 2; i++) {
        const char *path = tu_models_path(names[i]);
        gguf_ctx *ctx = NULL;
        ls_err err = {{0}};
        ls_status s = gguf_ctx_init_from_file(path, &ctx, &err);
        if (s != LS_OK) fprintf(stderr, "  %s\n", err.msg);
        REQUIRE(s == LS_OK);
        CHECK_EQ_INT(ctx->n_tensors, 0);
        CHECK(ctx->data_offset <= ctx->size);
        const gguf_kv *tok = gguf_find_kv(ctx, "tokenizer.ggml.tokens");
        CHECK(tok && tok->arr_n == n_tok[i] && tok->strs);
        gguf_str model;
        CHECK_EQ_INT(gguf_get_str(ctx, "tokenizer.ggml.model", &model, true, &err), LS_OK);
        gguf_ctx_free(ctx);
    }
}

int main(void) {
    RUN(test_kv_roundtrip);
    RUN(test_tensor_roundtrip);
    RUN(test_truncation);
    RUN(test_bad_header);
    RUN(test_bad_counts);
    RUN(test_bad_kv);
    RUN(test_bad_tensors);
    RUN(test_message_sanitised);
    RUN(test_real_model);
    RUN(test_vocab_files);
    TEST_MAIN_END();
}
