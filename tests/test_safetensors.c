/* test_safetensors.c: safetensors reader. Round trips through the test
 * writer (single file, index.json with two shards, a directory of shards),
 * then hostile headers and directories: each must fail with a message that
 * names the file and the problem. */
#include "safetensors.h"
#include "st_writer.h"
#include "test_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

/* a fresh, empty directory under the test tmp dir */
static const char *fresh_dir(const char *name) {
    const char *dir = tu_tmp_path(name);
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (e->d_name[0] == '.') continue;
            char p[4096];
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
        closedir(d);
    } else {
        mkdir(dir, 0755);
    }
    return dir;
}

static const char *in_dir(const char *dir, const char *name) {
    static char bufs[4][4096];
    static int next;
    char *b = bufs[next++ % 4];
    snprintf(b, sizeof bufs[0], "%s/%s", dir, name);
    return b;
}

static bool write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (!f) return false;
    bool ok = fwrite(text, 1, strlen(text), f) == strlen(text);
    return fclose(f) == 0 && ok;
}

static void check_msg(ls_status s, ls_status want, const ls_err *err, const char *name, const char *needle) {
    CHECK(s != LS_OK);
    if (want != LS_OK) CHECK_EQ_INT(s, want);
    if (getenv("LS_TEST_VERBOSE")) fprintf(stderr, "  [%s] %s\n", ls_strerror(s), err->msg);
    tu_checks += 2;
    if (!strstr(err->msg, name)) {
        tu_failures++;
        fprintf(stderr, "  message lacks the name \"%s\": %s\n", name, err->msg);
    }
    if (!strstr(err->msg, needle)) {
        tu_failures++;
        fprintf(stderr, "  message lacks \"%s\": %s\n", needle, err->msg);
    }
}

/* Header JSON + data parsed from an exact-size heap copy (ASan sees overreads). */
static void expect_bad_header(const char *name, const char *json, size_t ndata, ls_status want, const char *needle) {
    uint8_t *data = calloc(ndata ? ndata : 1, 1);
    uint8_t *buf;
    size_t len;
    st_write_raw_mem(json, data, ndata, &buf, &len);
    free(data);
    st_file *f = (st_file *)1;
    ls_err err = {{0}};
    ls_status s = st_file_open_memory(buf, len, name, &f, &err);
    CHECK(f == NULL);
    check_msg(s, want, &err, name, needle);
    if (s == LS_OK) st_file_free(f);
    free(buf);
}

static void fill(uint8_t *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)(seed * 13 + i * 5);
}

static void test_single_file(void) {
    const char *dir = fresh_dir("st_single");
    float a[6] = {1, 2, 3, 4, 5, 6};
    uint16_t h[4] = {0x3c00, 0x4000, 0xc000, 0};
    uint8_t bf[16];
    fill(bf, sizeof bf, 1);
    float scalar = 42;
    st_writer *w = st_writer_init();
    st_writer_add_metadata(w, "format", "pt");
    st_writer_add_tensor(w, "model.a", LS_TYPE_F32, 2, (const int64_t[]){2, 3}, a);
    st_writer_add_tensor(w, "model.h", LS_TYPE_F16, 1, (const int64_t[]){4}, h);
    st_writer_add_tensor(w, "model.bf", LS_TYPE_BF16, 3, (const int64_t[]){2, 2, 2}, bf);
    st_writer_add_tensor(w, "model.scalar", LS_TYPE_F32, 0, NULL, &scalar);
    st_writer_add_tensor(w, "model.empty", LS_TYPE_F32, 2, (const int64_t[]){0, 5}, NULL);
    st_writer_add_tensor(w, "model.w4", LS_TYPE_F16, 4, (const int64_t[]){1, 2, 1, 2}, h);
    const char *path = in_dir(dir, "model.safetensors");
    REQUIRE(st_writer_write(w, path));
    st_writer_free(w);

    size_t flen;
    uint8_t *raw = (uint8_t *)tu_read_file(path, &flen);
    REQUIRE(raw);
    uint64_t hlen;
    memcpy(&hlen, raw, 8);
    CHECK_EQ_INT(hlen % 8, 0);
    CHECK(raw[8] == '{');
    free(raw);

    st_file *f = NULL;
    ls_err err = {{0}};
    ls_status s = st_file_open(path, &f, &err);
    if (s != LS_OK) fprintf(stderr, "  %s\n", err.msg);
    REQUIRE(s == LS_OK);
    CHECK_EQ_INT(f->n_tensors, 6);
    CHECK(f->owns_map);
    CHECK_STR_EQ(f->path, path);
    const st_tensor *t = &f->tensors[0];
    CHECK_STR_EQ(t->name, "model.a");
    CHECK_EQ_INT(t->type, LS_TYPE_F32);
    CHECK_EQ_INT(t->n_dims, 2);
    CHECK_EQ_INT(t->shape[0], 2);
    CHECK_EQ_INT(t->shape[1], 3);
    CHECK_EQ_INT(t->shape[2], 1);
    CHECK_EQ_INT(t->nbytes, 24);
    CHECK(memcmp(t->data, a, 24) == 0);
    t = &f->tensors[1];
    CHECK_EQ_INT(t->type, LS_TYPE_F16);
    CHECK(memcmp(t->data, h, 8) == 0);
    t = &f->tensors[2];
    CHECK_EQ_INT(t->type, LS_TYPE_BF16);
    CHECK_EQ_INT(t->n_dims, 3);
    CHECK(memcmp(t->data, bf, 16) == 0);
    t = &f->tensors[3];
    CHECK_EQ_INT(t->n_dims, 0);
    CHECK_EQ_INT(t->nbytes, 4);
    CHECK(memcmp(t->data, &scalar, 4) == 0);
    t = &f->tensors[4];
    CHECK_EQ_INT(t->nbytes, 0);
    CHECK_EQ_INT(t->shape[1], 5);
    t = &f->tensors[5];
    CHECK_EQ_INT(t->n_dims, 4);
    CHECK_EQ_INT(t->shape[3], 2);
    for (uint64_t i = 0; i < f->n_tensors; i++)
        CHECK((const uint8_t *)f->tensors[i].data + f->tensors[i].nbytes <= f->map + f->size);
    st_file_free(f);

    /* the same file through the directory loader; a stray shard is ignored
     * because model.safetensors takes precedence */
    REQUIRE(st_write_raw(in_dir(dir, "zz-other.safetensors"), "{}", NULL, 0));
    st_set *set = NULL;
    s = st_set_open_dir(dir, &set, &err);
    if (s != LS_OK) fprintf(stderr, "  %s\n", err.msg);
    REQUIRE(s == LS_OK);
    CHECK_EQ_INT(set->n_files, 1);
    t = st_set_find(set, "model.h");
    CHECK(t && t->type == LS_TYPE_F16 && t->shape[0] == 4);
    CHECK(st_set_find(set, "model.nope") == NULL);
    st_set_free(set);

    /* memory variant does not own the buffer */
    uint8_t *buf;
    size_t len;
    w = st_writer_init();
    st_writer_add_tensor(w, "x", LS_TYPE_F32, 1, (const int64_t[]){2}, a);
    st_writer_write_mem(w, &buf, &len);
    st_writer_free(w);
    REQUIRE(st_file_open_memory(buf, len, "mem.safetensors", &f, &err) == LS_OK);
    CHECK(!f->owns_map);
    CHECK(f->map == buf);
    CHECK_EQ_INT(f->n_tensors, 1);
    st_file_free(f);
    /* a header with only metadata and no tensors is valid */
    free(buf);
    st_write_raw_mem("{\"__metadata__\":{\"a\":\"b\"}}", NULL, 0, &buf, &len);
    REQUIRE(st_file_open_memory(buf, len, "meta.safetensors", &f, &err) == LS_OK);
    CHECK_EQ_INT(f->n_tensors, 0);
    st_file_free(f);
    free(buf);
}

static void write_shard(const char *path, const char *const *names, int n, unsigned seed) {
    st_writer *w = st_writer_init();
    for (int i = 0; i < n; i++) {
        float v[4];
        for (int k = 0; k < 4; k++) v[k] = (float)(seed * 100 + i * 10 + k);
        st_writer_add_tensor(w, names[i], LS_TYPE_F32, 2, (const int64_t[]){2, 2}, v);
    }
    if (!st_writer_write(w, path)) fprintf(stderr, "cannot write %s\n", path);
    st_writer_free(w);
}

static void test_index_shards(void) {
    const char *dir = fresh_dir("st_index");
    const char *s1[] = {"layers.0.w", "layers.0.b"};
    const char *s2[] = {"layers.1.w", "layers.1.b", "extra.not_in_index"};
    write_shard(in_dir(dir, "model-00001-of-00002.safetensors"), s1, 2, 1);
    write_shard(in_dir(dir, "model-00002-of-00002.safetensors"), s2, 3, 2);
    REQUIRE(write_text(in_dir(dir, "model.safetensors.index.json"),
                       "{\"metadata\": {\"total_size\": 64}, \"weight_map\": {"
                       "\"layers.0.w\": \"model-00001-of-00002.safetensors\","
                       "\"layers.1.w\": \"model-00002-of-00002.safetensors\","
                       "\"layers.0.b\": \"model-00001-of-00002.safetensors\","
                       "\"layers.1.b\": \"model-00002-of-00002.safetensors\"}}"));
    st_set *set = NULL;
    ls_err err = {{0}};
    ls_status s = st_set_open_dir(dir, &set, &err);
    if (s != LS_OK) fprintf(stderr, "  %s\n", err.msg);
    REQUIRE(s == LS_OK);
    CHECK_EQ_INT(set->n_files, 2);
    const st_tensor *t = st_set_find(set, "layers.1.b");
    REQUIRE(t);
    float v;
    memcpy(&v, (const uint8_t *)t->data + 4, 4);
    CHECK_NEAR(v, 211, 0);
    CHECK(st_set_find(set, "layers.0.w") != NULL);
    st_set_free(set);

    /* the index names a tensor its shard lacks */
    REQUIRE(write_text(in_dir(dir, "model.safetensors.index.json"),
                       "{\"weight_map\": {\"layers.0.w\": \"model-00002-of-00002.safetensors\"}}"));
    set = (st_set *)1;
    s = st_set_open_dir(dir, &set, &err);
    CHECK(set == NULL);
    check_msg(s, LS_OK, &err, "model.safetensors.index.json", "'layers.0.w'");
    CHECK(strstr(err.msg, "no such tensor") != NULL);

    /* the index names a missing shard */
    REQUIRE(write_text(in_dir(dir, "model.safetensors.index.json"),
                       "{\"weight_map\": {\"layers.0.w\": \"model-00001-of-00002.safetensors\","
                       "\"layers.9.w\": \"model-00003-of-00002.safetensors\"}}"));
    s = st_set_open_dir(dir, &set, &err);
    check_msg(s, LS_ERR_MISSING, &err, "model-00003-of-00002.safetensors", "No such file");
    CHECK(strstr(err.msg, "index.json") != NULL);

    /* shard names must stay inside the directory */
    REQUIRE(write_text(in_dir(dir, "model.safetensors.index.json"),
                       "{\"weight_map\": {\"layers.0.w\": \"../st_single/model.safetensors\"}}"));
    s = st_set_open_dir(dir, &set, &err);
    check_msg(s, LS_ERR_FORMAT, &err, "index.json", "inside the model directory");
    REQUIRE(write_text(in_dir(dir, "model.safetensors.index.json"),
                       "{\"weight_map\": {\"layers.0.w\": \"/etc/passwd\"}}"));
    s = st_set_open_dir(dir, &set, &err);
    check_msg(s, LS_ERR_FORMAT, &err, "index.json", "inside the model directory");

    /* malformed index */
    REQUIRE(write_text(in_dir(dir, "model.safetensors.index.json"), "{\"weight_map\": {"));
    s = st_set_open_dir(dir, &set, &err);
    check_msg(s, LS_ERR_FORMAT, &err, "index.json", "JSON");
    REQUIRE(write_text(in_dir(dir, "model.safetensors.index.json"), "{\"weights\": {}}"));
    s = st_set_open_dir(dir, &set, &err);
    check_msg(s, LS_ERR_FORMAT, &err, "index.json", "weight_map");
    REQUIRE(write_text(in_dir(dir, "model.safetensors.index.json"), "{\"weight_map\": {\"a\": 3}}"));
    s = st_set_open_dir(dir, &set, &err);
    check_msg(s, LS_ERR_FORMAT, &err, "index.json", "'a'");

    /* a bad shard: its own message comes through */
    REQUIRE(write_text(in_dir(dir, "model-00001-of-00002.safetensors"), "garbage!garbage!"));
    REQUIRE(write_text(in_dir(dir, "model.safetensors.index.json"),
                       "{\"weight_map\": {\"layers.0.w\": \"model-00001-of-00002.safetensors\"}}"));
    s = st_set_open_dir(dir, &set, &err);
    check_msg(s, LS_ERR_FORMAT, &err, "model-00001-of-00002.safetensors", "past the end");
}

static void test_glob_dir(void) {
    const char *dir = fresh_dir("st_glob");
    const char *s1[] = {"b.w"};
    const char *s2[] = {"a.w", "a.b"};
    write_shard(in_dir(dir, "b.safetensors"), s1, 1, 1);
    write_shard(in_dir(dir, "a.safetensors"), s2, 2, 2);
    REQUIRE(write_text(in_dir(dir, "config.json"), "{}"));
    REQUIRE(write_text(in_dir(dir, "notes.safetensors.txt"), "x"));
    st_set *set = NULL;
    ls_err err = {{0}};
    ls_status s = st_set_open_dir(dir, &set, &err);
    if (s != LS_OK) fprintf(stderr, "  %s\n", err.msg);
    REQUIRE(s == LS_OK);
    CHECK_EQ_INT(set->n_files, 2);
    CHECK(strstr(set->files[0]->path, "a.safetensors") != NULL);
    CHECK(strstr(set->files[1]->path, "b.safetensors") != NULL);
    CHECK(st_set_find(set, "b.w") != NULL);
    CHECK(st_set_find(set, "a.b") != NULL);
    st_set_free(set);

    /* duplicate names across shards */
    const char *s3[] = {"c.w", "a.w"};
    write_shard(in_dir(dir, "c.safetensors"), s3, 2, 3);
    set = (st_set *)1;
    s = st_set_open_dir(dir, &set, &err);
    CHECK(set == NULL);
    check_msg(s, LS_ERR_FORMAT, &err, "a.safetensors", "duplicate tensor name 'a.w'");
    CHECK(strstr(err.msg, "c.safetensors") != NULL);

    /* no model files at all; a missing directory; a file instead of a dir */
    const char *empty = fresh_dir("st_empty");
    s = st_set_open_dir(empty, &set, &err);
    check_msg(s, LS_ERR_MISSING, &err, empty, "no model.safetensors");
    const char *missing = tu_tmp_path("st_does_not_exist");
    s = st_set_open_dir(missing, &set, &err);
    check_msg(s, LS_ERR_MISSING, &err, missing, "No such file");
    s = st_set_open_dir(in_dir(dir, "config.json"), &set, &err);
    check_msg(s, LS_OK, &err, "config.json", "not a directory");
}

static void test_bad_headers(void) {
    expect_bad_header("json.safetensors", "{\"a\": {\"dtype\": \"F32\",", 0, LS_ERR_FORMAT, "JSON");
    expect_bad_header("json2.safetensors", "not json", 0, LS_ERR_FORMAT, "JSON");
    expect_bad_header("trail.safetensors", "{} xyz", 0, LS_ERR_FORMAT, "trailing");
    expect_bad_header("array.safetensors", "[1, 2]", 0, LS_ERR_FORMAT, "not an object");
    expect_bad_header("entry.safetensors", "{\"a\": 3}", 0, LS_ERR_FORMAT, "'a'");
    expect_bad_header("nodtype.safetensors", "{\"a\": {\"shape\": [1], \"data_offsets\": [0, 4]}}", 4,
                      LS_ERR_FORMAT, "dtype");
    expect_bad_header("noshape.safetensors", "{\"a\": {\"dtype\": \"F32\", \"data_offsets\": [0, 4]}}", 4,
                      LS_ERR_FORMAT, "shape");
    expect_bad_header("nooffs.safetensors", "{\"a\": {\"dtype\": \"F32\", \"shape\": [1]}}", 4,
                      LS_ERR_FORMAT, "data_offsets");
    expect_bad_header("offs3.safetensors",
                      "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4, 8]}}", 8,
                      LS_ERR_FORMAT, "data_offsets");
    expect_bad_header("offsneg.safetensors",
                      "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [-4, 0]}}", 8,
                      LS_ERR_FORMAT, "data_offsets");
    expect_bad_header("mismatch.safetensors",
                      "{\"w\": {\"dtype\": \"F32\", \"shape\": [2, 2], \"data_offsets\": [0, 12]}}", 16,
                      LS_ERR_FORMAT, "size mismatch");
    expect_bad_header("mismatch16.safetensors",
                      "{\"w\": {\"dtype\": \"BF16\", \"shape\": [2, 2], \"data_offsets\": [0, 16]}}", 16,
                      LS_ERR_FORMAT, "size mismatch");
    expect_bad_header("past.safetensors",
                      "{\"w\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]}}", 8,
                      LS_ERR_FORMAT, "past the end");
    expect_bad_header("past2.safetensors",
                      "{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [9007199254740988, 9007199254740992]}}",
                      8, LS_ERR_FORMAT, "past the end");
    expect_bad_header("backwards.safetensors",
                      "{\"w\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [8, 4]}}", 8,
                      LS_ERR_FORMAT, "begin > end");
    expect_bad_header("overlap.safetensors",
                      "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
                      " \"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}",
                      12, LS_ERR_FORMAT, "overlapping");
    expect_bad_header("same.safetensors",
                      "{\"a\": {\"dtype\": \"F16\", \"shape\": [2], \"data_offsets\": [0, 4]},"
                      " \"b\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}",
                      4, LS_ERR_FORMAT, "overlapping");
    expect_bad_header("i64.safetensors",
                      "{\"pos\": {\"dtype\": \"I64\", \"shape\": [2], \"data_offsets\": [0, 16]}}", 16,
                      LS_ERR_UNSUPPORTED, "'pos': dtype I64");
    expect_bad_header("f64.safetensors",
                      "{\"x\": {\"dtype\": \"F64\", \"shape\": [1], \"data_offsets\": [0, 8]}}", 8,
                      LS_ERR_UNSUPPORTED, "F64");
    expect_bad_header("u8.safetensors",
                      "{\"x\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [0, 1]}}", 1,
                      LS_ERR_UNSUPPORTED, "U8");
    expect_bad_header("unknown.safetensors",
                      "{\"x\": {\"dtype\": \"F33\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 4,
                      LS_ERR_FORMAT, "unknown dtype \"F33\"");
    expect_bad_header("dtypenum.safetensors",
                      "{\"x\": {\"dtype\": 32, \"shape\": [1], \"data_offsets\": [0, 4]}}", 4,
                      LS_ERR_FORMAT, "dtype");
    expect_bad_header("negshape.safetensors",
                      "{\"x\": {\"dtype\": \"F32\", \"shape\": [-1, 2], \"data_offsets\": [0, 4]}}", 4,
                      LS_ERR_FORMAT, "shape[0]");
    expect_bad_header("fracshape.safetensors",
                      "{\"x\": {\"dtype\": \"F32\", \"shape\": [2.5], \"data_offsets\": [0, 10]}}", 10,
                      LS_ERR_FORMAT, "shape[0]");
    expect_bad_header("strshape.safetensors",
                      "{\"x\": {\"dtype\": \"F32\", \"shape\": [1, \"2\"], \"data_offsets\": [0, 8]}}", 8,
                      LS_ERR_FORMAT, "shape[1]");
    expect_bad_header("hugeshape.safetensors",
                      "{\"x\": {\"dtype\": \"F32\", \"shape\": [1e300], \"data_offsets\": [0, 4]}}", 4,
                      LS_ERR_FORMAT, "shape[0]");
    expect_bad_header("ovfshape.safetensors",
                      "{\"x\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296, 4294967296], \"data_offsets\": [0, 4]}}",
                      4, LS_ERR_FORMAT, "overflow");
    expect_bad_header("ovfbytes.safetensors",
                      "{\"x\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296], \"data_offsets\": [0, 4]}}",
                      4, LS_ERR_FORMAT, "overflow");
    expect_bad_header("dims5.safetensors",
                      "{\"x\": {\"dtype\": \"F32\", \"shape\": [1, 1, 1, 1, 1], \"data_offsets\": [0, 4]}}", 4,
                      LS_ERR_UNSUPPORTED, "5 dimensions");
    expect_bad_header("dup.safetensors",
                      "{\"x\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},"
                      " \"x\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}",
                      8, LS_ERR_FORMAT, "duplicate tensor name 'x'");
    expect_bad_header("meta.safetensors", "{\"__metadata__\": [1]}", 0, LS_ERR_FORMAT, "__metadata__");
    expect_bad_header("meta2.safetensors", "{\"__metadata__\": {\"k\": 1}}", 0, LS_ERR_FORMAT, "'k'");
    /* control characters in names are not echoed raw */
    expect_bad_header("ctrl.safetensors",
                      "{\"a\\nb\\u001b\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 8]}}", 8,
                      LS_ERR_FORMAT, "'a?b?'");
}

static void test_bad_header_len(void) {
    ls_err err = {{0}};
    st_file *f = (st_file *)1;
    /* 0..7 bytes: no room for the length */
    const uint8_t zeros[8] = {0};
    for (size_t n = 0; n < 8; n++) {
        ls_status s = st_file_open_memory(n ? zeros : NULL, n, "short.safetensors", &f, &err);
        check_msg(s, LS_ERR_FORMAT, &err, "short.safetensors", "too short");
    }
    uint8_t *buf;
    size_t len;
    st_write_raw_mem("{}", NULL, 0, &buf, &len);
    uint64_t h = len - 8 + 1;
    memcpy(buf, &h, 8);
    check_msg(st_file_open_memory(buf, len, "hlen.safetensors", &f, &err), LS_ERR_FORMAT, &err,
              "hlen.safetensors", "past the end");
    h = UINT64_MAX;
    memcpy(buf, &h, 8);
    check_msg(st_file_open_memory(buf, len, "hlen2.safetensors", &f, &err), LS_ERR_FORMAT, &err,
              "hlen2.safetensors", "past the end");
    h = 0; /* empty header: not JSON */
    memcpy(buf, &h, 8);
    check_msg(st_file_open_memory(buf, len, "hlen0.safetensors", &f, &err), LS_ERR_FORMAT, &err,
              "hlen0.safetensors", "JSON");
    free(buf);

    /* header length over the limit, in a sparse file so it costs no disk */
    const char *path = tu_tmp_path("st_huge.safetensors");
    int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0644);
    REQUIRE(fd >= 0);
    h = 200u * 1000u * 1000u;
    CHECK(write(fd, &h, 8) == 8);
    CHECK(ftruncate(fd, (off_t)(h + 8)) == 0);
    close(fd);
    check_msg(st_file_open(path, &f, &err), LS_ERR_FORMAT, &err, path, "limit");
    CHECK(f == NULL);
    remove(path);

    /* files: empty, directory, missing */
    path = tu_tmp_path("st_empty.safetensors");
    REQUIRE(write_text(path, ""));
    check_msg(st_file_open(path, &f, &err), LS_ERR_FORMAT, &err, path, "too short");
    remove(path);
    const char *dir = fresh_dir("st_dir.safetensors");
    check_msg(st_file_open(dir, &f, &err), LS_OK, &err, dir, "directory");
    path = tu_tmp_path("st_missing.safetensors");
    check_msg(st_file_open(path, &f, &err), LS_ERR_MISSING, &err, path, "No such file");
}

/* Every prefix of a valid file must fail cleanly. */
static void test_truncation(void) {
    st_writer *w = st_writer_init();
    st_writer_add_metadata(w, "format", "pt");
    st_writer_add_tensor(w, "a", LS_TYPE_F32, 2, (const int64_t[]){2, 3}, NULL);
    st_writer_add_tensor(w, "b", LS_TYPE_BF16, 1, (const int64_t[]){5}, NULL);
    uint8_t *buf;
    size_t len;
    st_writer_write_mem(w, &buf, &len);
    st_writer_free(w);
    int wrong_ok = 0, bad_msg = 0;
    for (size_t cut = 0; cut < len; cut++) {
        uint8_t *copy = malloc(cut ? cut : 1);
        memcpy(copy, buf, cut);
        st_file *f = NULL;
        ls_err err = {{0}};
        ls_status s = st_file_open_memory(copy, cut, "cut.safetensors", &f, &err);
        if (s == LS_OK) {
            wrong_ok++;
            st_file_free(f);
        } else if (!strstr(err.msg, "cut.safetensors")) {
            bad_msg++;
        }
        free(copy);
    }
    CHECK_EQ_INT(wrong_ok, 0);
    CHECK_EQ_INT(bad_msg, 0);
    st_file *f = NULL;
    ls_err err;
    CHECK(st_file_open_memory(buf, len, "full.safetensors", &f, &err) == LS_OK);
    st_file_free(f);
    free(buf);
}

int main(void) {
    RUN(test_single_file);
    RUN(test_index_shards);
    RUN(test_glob_dir);
    RUN(test_bad_headers);
    RUN(test_bad_header_len);
    RUN(test_truncation);
    TEST_MAIN_END();
}
