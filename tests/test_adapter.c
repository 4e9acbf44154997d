/* Draft adapters (docs/ADAPTER.md, engine/src/adapter.c): loading and the
 * parameter checks that involve them.
 *
 *   vocab hash    the engine's ls_vocab_hash equals an independent FNV-1a
 *                 (random_adapter.c) on three vocabularies, and a GGUF model
 *                 and the Hugging Face directory of the same weights share
 *                 it (one adapter serves both storages)
 *   good files    F32/F16, E in [1, L-1], attention-only and with a
 *                 feed-forward part up to the model's width, with and
 *                 without a frequency table (i32 or u32), a table-only file,
 *                 has_block left out: loaded, with the right exit layer,
 *                 has_block and vocab_len
 *   bad files     every fault of random_adapter.h, truncations at many cut
 *                 points, an empty file, a text file, a missing file, a
 *                 model GGUF, an adapter for another model: refused, the
 *                 message naming the adapter's path and the problem
 *   params        ls_gen_params_check: draft_vocab 0, 1..n_table ok;
 *                 n_table+1, negative, without a table, without an adapter
 *                 refused naming draft_vocab; source adapter without an
 *                 adapter or with a table-only one refused; an adapter whose
 *                 E != exit_layer refused for sources adapter and auto, taken
 *                 for exit and lookup; ls_generate refuses the same
 *   draft head    drafts with --draft-vocab N are tokens of the table's first
 *                 N entries, and (exit source, greedy) the argmax of the full
 *                 head restricted to them; N = the whole vocabulary drafts
 *                 exactly like no table (same statistics, same sampled
 *                 output)
 *   non-finite    an adapter with NaN/Inf weights is refused at load or
 *                 drafts without harm: greedy output unchanged, sampled
 *                 tokens (top-k, top-p, plain) and a drafter's guess valid
 *   storages      the adapter drafts the same on the GGUF model and on the
 *                 Hugging Face directory of the same weights (the block's
 *                 rotary layout does not depend on the base model's) */
#include "test_util.h"
#include "random_adapter.h"
#include "random_model.h"
#include "adapter_internal.h"
#include "layerskip/engine.h"
#include "layerskip/generate.h"
#include "layerskip/tokenizer.h"

#include <sys/stat.h>

static rm_spec small_spec(uint64_t seed) {
    rm_spec s = {.n_layers = 4, .dim = 64, .n_heads = 4, .n_kv_heads = 2, .ffn_dim = 128, .rope_theta = 10000,
                 .norm_eps = 1e-5f, .dtype = LS_TYPE_F32,
                 .vocab_gguf = tu_models_path("vocab/ggml-vocab-llama-spm.gguf"), .seed = seed, .n_shards = 1};
    return s;
}

static ls_model *load_spec(const rm_spec *s, const char *name, const char *hf_dir) {
    rm_model *rm = rm_model_create(s);
    if (!rm) return NULL;
    const char *path = tu_tmp_path(name);
    bool ok = rm_write_gguf(rm, path);
    if (ok && hf_dir) ok = rm_write_hf_dir(rm, hf_dir);
    rm_model_free(rm);
    ls_model *m = NULL;
    ls_err err;
    if (!ok || ls_model_load(path, &m, &err) != LS_OK) {
        fprintf(stderr, "  cannot make %s: %s\n", name, ok ? err.msg : "write failed");
        return NULL;
    }
    return m;
}

static ls_model *model;      /* small_spec(31), 4 layers, SentencePiece vocabulary */
static ra_base base;

/* write spec to tmp/name; load it; *out NULL when refused (message in err) */
static ls_status try_load(const ra_spec *s, const char *name, ls_adapter **out, ls_err *err) {
    const char *path = tu_tmp_path(name);
    *out = NULL;
    if (!ra_write(&base, s, path)) return LS_ERR_IO;
    err->msg[0] = 0;
    return ls_adapter_load(path, model, out, err);
}

/* ------------------------------------------------------------ vocab hash */

static void test_vocab_hash(void) {
    const char *vocabs[] = {"vocab/ggml-vocab-llama-spm.gguf", "vocab/ggml-vocab-llama-bpe.gguf"};
    for (int i = 0; i < 2; i++) {
        gguf_ctx *g;
        ls_tokenizer *t;
        ls_err err;
        REQUIRE(gguf_ctx_init_from_file(tu_models_path(vocabs[i]), &g, &err) == LS_OK);
        REQUIRE(ls_tokenizer_from_gguf(g, &t, &err) == LS_OK);
        const uint64_t doc = ra_vocab_hash(t), engine = ls_vocab_hash(t);
        fprintf(stderr, "  %s: %d tokens, FNV-1a 64 %016llx, engine %016llx%s\n", vocabs[i],
                ls_tokenizer_n_vocab(t), (unsigned long long)doc, (unsigned long long)engine,
                doc == engine ? "" : " (DIFFERENT: is engine/src/adapter.c ls_vocab_hash's offset basis "
                "14695981039346656037 = 0xcbf29ce484222325?)");
        CHECK(doc == engine);
        ls_tokenizer_free(t);
        gguf_ctx_free(g);
    }
    CHECK(ra_vocab_hash(ls_model_tokenizer(model)) == ls_vocab_hash(ls_model_tokenizer(model)));
    /* an adapter with the documented hash (what tools/train/adapter.py
     * writes) loads */
    {
        ra_base doc = base;
        doc.vocab_hash = ra_vocab_hash(ls_model_tokenizer(model));
        ra_spec s = {.exit_layer = 2, .dtype = LS_TYPE_F16, .seed = 4, .n_table = 10};
        const char *path = tu_tmp_path("adapter_doc_hash.gguf");
        REQUIRE(ra_write(&doc, &s, path));
        ls_adapter *a = NULL;
        ls_err err;
        ls_status st = ls_adapter_load(path, model, &a, &err);
        if (st != LS_OK) fprintf(stderr, "  an adapter with the documented vocab_hash is refused: %s\n", err.msg);
        CHECK_EQ_INT(st, LS_OK);
        ls_adapter_free(a);
    }
    /* the default model's vocabulary (49152 tokens) */
    ls_model *dm;
    ls_err err;
    REQUIRE(ls_model_load(tu_default_model(), &dm, &err) == LS_OK);
    CHECK(ra_vocab_hash(ls_model_tokenizer(dm)) == ls_vocab_hash(ls_model_tokenizer(dm)));
    /* an adapter made for the default model does not fit the random one */
    ra_spec s = {.exit_layer = 8, .ffn_dim = 0, .dtype = LS_TYPE_F16, .seed = 5, .n_table = 100};
    const char *path = tu_tmp_path("adapter_for_default.gguf");
    REQUIRE(ra_write_for_model(dm, &s, path));
    ls_adapter *a = NULL;
    CHECK_EQ_INT(ls_adapter_load(path, dm, &a, &err), LS_OK);
    if (a) {
        CHECK_EQ_INT(ls_adapter_exit_layer(a), 8);
        CHECK_EQ_INT(ls_adapter_vocab_len(a), 100);
        ls_adapter_free(a);
    }
    CHECK(ls_adapter_load(path, model, &a, &err) != LS_OK);
    CHECK(a == NULL);
    fprintf(stderr, "  default model's adapter on the random model: %s\n", err.msg);
    CHECK(strstr(err.msg, path) != NULL);
    CHECK(strstr(err.msg, "30 layers") != NULL);
    ls_model_free(dm);

    /* ra_base from the spec (before the model exists) equals ra_base from the model */
    rm_spec sp = small_spec(31);
    ra_base b2;
    REQUIRE(ra_base_from_rm_spec(&sp, &b2));
    CHECK_STR_EQ(b2.arch, base.arch);
    CHECK_EQ_INT(b2.n_layers, base.n_layers);
    CHECK_EQ_INT(b2.dim, base.dim);
    CHECK_EQ_INT(b2.ffn_dim, base.ffn_dim);
    CHECK_EQ_INT(b2.n_heads, base.n_heads);
    CHECK_EQ_INT(b2.n_kv_heads, base.n_kv_heads);
    CHECK_EQ_INT(b2.head_dim, base.head_dim);
    CHECK_EQ_INT(b2.n_vocab, base.n_vocab);
    CHECK(b2.vocab_hash == base.vocab_hash);
}

/* ------------------------------------------------------------ good files */

static void test_good_files(void) {
    const int V = base.n_vocab;
    struct { int E, ffn; ls_type t; int n_table; bool u32, no_block, omit_has_block; } good[] = {
        {1, 0, LS_TYPE_F32, 0, false, false, false},
        {2, 64, LS_TYPE_F16, 0, false, false, false},
        {3, 128, LS_TYPE_F32, 1, false, false, false},   /* ffn_dim = the model's */
        {2, 0, LS_TYPE_F16, 1000, false, false, false},
        {3, 32, LS_TYPE_F16, V, false, false, false},    /* the whole vocabulary */
        {1, 64, LS_TYPE_F32, 500, true, false, false},   /* the table as u32 */
        {2, 0, LS_TYPE_F32, 2000, false, true, false},   /* a table only */
        {3, 64, LS_TYPE_F16, 10, false, false, true},    /* has_block left out: a block */
        {2, 64, LS_TYPE_Q8_0, 100, false, false, false}, /* Q8_0 matrices, F32 norms */
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        ra_spec s = {.exit_layer = good[i].E, .ffn_dim = good[i].ffn, .dtype = good[i].t, .seed = 100 + i,
                     .n_table = good[i].n_table, .table_u32 = good[i].u32, .no_block = good[i].no_block,
                     .omit_has_block = good[i].omit_has_block};
        char name[64];
        snprintf(name, sizeof name, "adapter_good_%zu.gguf", i);
        ls_adapter *a;
        ls_err err;
        ls_status st = try_load(&s, name, &a, &err);
        if (st != LS_OK) fprintf(stderr, "  good file %zu refused: %s\n", i, err.msg);
        CHECK_EQ_INT(st, LS_OK);
        if (!a) continue;
        CHECK_EQ_INT(ls_adapter_exit_layer(a), good[i].E);
        CHECK_EQ_INT(ls_adapter_has_block(a), !good[i].no_block);
        CHECK_EQ_INT(ls_adapter_vocab_len(a), good[i].n_table);
        CHECK_STR_EQ(ls_adapter_path(a), tu_tmp_path(name));
        /* the table and the draft head's rows, in table order */
        int32_t *want = malloc(sizeof(int32_t) * (size_t)(good[i].n_table + 1));
        ra_table(&base, &s, want);
        bool same = true;
        for (int j = 0; j < a->n_table; j++) same = same && a->table[j] == want[j];
        CHECK(same);
        if (a->n_table > 0) {
            const ls_weight *out = &model->output;
            const size_t rb = ls_weight_row_bytes(out);
            bool rows = a->head.rows == a->n_table && a->head.cols == out->cols && a->head.type == out->type;
            for (int j = 0; rows && j < a->n_table; j++)
                rows = memcmp((const uint8_t *)a->head.data + rb * (size_t)j,
                              (const uint8_t *)out->data + rb * (size_t)want[j], rb) == 0;
            CHECK(rows);
        }
        free(want);
        ls_adapter_free(a);
    }
}

/* ------------------------------------------------------------- bad files */

static void test_bad_files(void) {
    struct {
        ra_fault f;
        const char *tensor; /* fault_tensor; NULL: adapter.attn_k.weight */
        int ffn;
        const char *needle, *needle2;
    } bad[] = {
        {RA_NOT_ADAPTER, NULL, 0, "is not a draft adapter", "layerskip-adapter"},
        {RA_NO_GENERAL_ARCH, NULL, 0, "is not a draft adapter", NULL},
        {RA_VERSION, NULL, 0, "has version 2", "reads version 1"},
        {RA_BASE_ARCH, NULL, 0, "made for a gpt2 model", "this one is llama"},
        {RA_LAYERS, NULL, 0, "5 layers", "has 4"},
        {RA_DIM, NULL, 0, "65 hidden size", "has 64"},
        {RA_BASE_FFN, NULL, 0, "129 feed-forward width", "has 128"},
        {RA_HEADS, NULL, 0, "5 attention heads", "has 4"},
        {RA_KV_HEADS, NULL, 0, "3 KV heads", "has 2"},
        {RA_VOCAB_SIZE, NULL, 0, "32001 vocabulary size", "has 32000"},
        {RA_NO_LAYERS, NULL, 0, "layerskip.base.block_count", "missing"},
        {RA_VOCAB_HASH, NULL, 0, "another vocabulary", NULL},
        {RA_NO_VOCAB_HASH, NULL, 0, "vocab_hash", "missing"},
        {RA_VOCAB_HASH_U32, NULL, 0, "vocab_hash", "u64"},
        {RA_E_ZERO, NULL, 0, "exit layer 0 is outside [1, 3]", NULL},
        {RA_E_L, NULL, 0, "exit layer 4 is outside [1, 3]", NULL},
        {RA_E_HUGE, NULL, 0, "exit layer 4294967295 is outside [1, 3]", NULL},
        {RA_NO_E, NULL, 0, "layerskip.adapter.exit_layer", "missing"},
        {RA_NO_FFN_DIM, NULL, 0, "layerskip.adapter.ffn_dim", "missing"},
        {RA_FFN_TOO_BIG, NULL, 64, "feed-forward width 160 exceeds the model's 128", NULL},
        {RA_HAS_BLOCK_U32, NULL, 0, "layerskip.adapter.has_block", "bool"},
        {RA_SHAPE, NULL, 0, "adapter.attn_k.weight has shape [64, 33], expected [64, 32]", NULL},
        {RA_SHAPE, "adapter.attn_q.weight", 0, "adapter.attn_q.weight has shape [64, 65], expected [64, 64]", NULL},
        {RA_SHAPE, "adapter.attn_output.weight", 0, "adapter.attn_output.weight has shape [64, 65]", NULL},
        {RA_SHAPE, "adapter.attn_norm.weight", 0, "adapter.attn_norm.weight has shape [65, 1], expected [64, 1]",
         NULL},
        {RA_SHAPE, "adapter.ffn_norm.weight", 64, "adapter.ffn_norm.weight has shape [65, 1]", NULL},
        {RA_SHAPE, "adapter.ffn_gate.weight", 64, "adapter.ffn_gate.weight has shape [64, 65], expected [64, 64]",
         NULL},
        {RA_SHAPE, "adapter.ffn_down.weight", 64, "adapter.ffn_down.weight has shape [64, 65], expected [64, 64]",
         NULL},
        {RA_SHAPE_TRANSPOSED, NULL, 0, "adapter.attn_k.weight has shape [32, 64], expected [64, 32]", NULL},
        {RA_SHAPE_TRANSPOSED, "adapter.ffn_up.weight", 32, "adapter.ffn_up.weight has shape [32, 64], expected [64, 32]",
         NULL},
        {RA_NORM_2D, NULL, 0, "adapter.attn_norm.weight has 2 dimensions, expected 1", NULL},
        {RA_TYPE_Q8_0, "adapter.attn_norm.weight", 0, "adapter.attn_norm.weight is Q8_0", "norms as F32 or F16"},
        {RA_TYPE_BF16, "adapter.attn_norm.weight", 0, "adapter.attn_norm.weight is BF16", "norms as F32 or F16"},
        {RA_TYPE_Q8_0, "adapter.ffn_norm.weight", 64, "adapter.ffn_norm.weight is Q8_0", NULL},
        {RA_TYPE_BF16, NULL, 0, "adapter.attn_k.weight is BF16", "matrices as F32, F16 or Q8_0"},
        {RA_TYPE_BF16, "adapter.ffn_down.weight", 64, "adapter.ffn_down.weight is BF16", NULL},
        {RA_MISSING_TENSOR, NULL, 0, "tensor adapter.attn_k.weight is missing", NULL},
        {RA_MISSING_TENSOR, "adapter.attn_norm.weight", 0, "tensor adapter.attn_norm.weight is missing", NULL},
        {RA_MISSING_TENSOR, "adapter.attn_v.weight", 0, "tensor adapter.attn_v.weight is missing", NULL},
        {RA_MISSING_TENSOR, "adapter.ffn_up.weight", 64, "tensor adapter.ffn_up.weight is missing", NULL},
        {RA_MISSING_TENSOR, "adapter.ffn_norm.weight", 64, "tensor adapter.ffn_norm.weight is missing", NULL},
        {RA_TABLE_DUP, NULL, 0, "layerskip.draft_vocab lists token", "twice"},
        {RA_TABLE_OOR, NULL, 0, "layerskip.draft_vocab[1] = 32000 is not a token id in [0, 32000)", NULL},
        {RA_TABLE_NEG, NULL, 0, "layerskip.draft_vocab[1] = -1 is not a token id", NULL},
        {RA_TABLE_EMPTY, NULL, 0, "layerskip.draft_vocab has 0 entries, expected 1 to 32000", NULL},
        {RA_TABLE_TOO_LONG, NULL, 0, "layerskip.draft_vocab has 32001 entries", NULL},
        {RA_TABLE_F32, NULL, 0, "layerskip.draft_vocab is not an array of i32", NULL},
        {RA_TABLE_NOT_ARRAY, NULL, 0, "layerskip.draft_vocab is not an array of i32", NULL},
        {RA_NOTHING, NULL, 0, "neither a block nor a frequency table", NULL},
    };
    int refused = 0, named = 0;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ra_spec s = {.exit_layer = 2, .ffn_dim = bad[i].ffn, .dtype = i % 2 ? LS_TYPE_F16 : LS_TYPE_F32,
                     .seed = 200 + i, .n_table = 50, .fault = bad[i].f, .fault_tensor = bad[i].tensor};
        if (bad[i].f == RA_NOTHING) s.n_table = 0;
        char name[64];
        snprintf(name, sizeof name, "adapter_bad_%02zu.gguf", i);
        ls_adapter *a;
        ls_err err;
        ls_status st = try_load(&s, name, &a, &err);
        const bool ok_refused = st != LS_OK && a == NULL;
        const bool has_path = strstr(err.msg, tu_tmp_path(name)) != NULL;
        const bool has_needle = strstr(err.msg, bad[i].needle) && (!bad[i].needle2 || strstr(err.msg, bad[i].needle2));
        fprintf(stderr, "  %-34s %s: %s\n", ra_fault_name(bad[i].f), ok_refused ? "refused" : "LOADED", err.msg);
        if (!has_needle)
            fprintf(stderr, "    message lacks \"%s\"%s%s\n", bad[i].needle, bad[i].needle2 ? " / " : "",
                    bad[i].needle2 ? bad[i].needle2 : "");
        CHECK(ok_refused);
        CHECK(has_path);
        CHECK(has_needle);
        refused += ok_refused;
        named += has_path && has_needle;
        if (a) ls_adapter_free(a);
    }
    fprintf(stderr, "  %d/%zu bad files refused, %d with the path and the problem named\n", refused,
            sizeof bad / sizeof bad[0], named);
}

/* A 2-D [dim, 1] norm is refused for its dimension count, and the message
 * says so (it used to show two equal shapes: "has shape [64, 1], expected
 * [64, 1]") */
static void test_norm_2d_message(void) {
    ra_spec s = {.exit_layer = 2, .dtype = LS_TYPE_F32, .seed = 7, .fault = RA_NORM_2D};
    ls_adapter *a;
    ls_err err;
    ls_status st = try_load(&s, "adapter_norm2d.gguf", &a, &err);
    CHECK(st != LS_OK);
    fprintf(stderr, "  2-D norm: %s\n", err.msg);
    CHECK(strstr(err.msg, "has shape [64, 1], expected [64, 1]") == NULL);
    CHECK(strstr(err.msg, "dimensions") != NULL);
    if (a) ls_adapter_free(a);
}

/* every prefix of a good file is refused with a message */
static void test_truncated(void) {
    ra_spec s = {.exit_layer = 2, .ffn_dim = 32, .dtype = LS_TYPE_F16, .seed = 9, .n_table = 40};
    uint8_t *buf;
    size_t len;
    ra_write_mem(&base, &s, &buf, &len);
    const char *path = tu_tmp_path("adapter_truncated.gguf");
    size_t cuts[64];
    int n = 0;
    const size_t fixed[] = {0, 1, 3, 4, 7, 8, 12, 16, 20, 23, 24, 25, 40, 64, 100, 200, 300, 500, 700, 1000};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        if (fixed[i] < len) cuts[n++] = fixed[i];
    for (int i = 1; i <= 16; i++) cuts[n++] = len * (size_t)i / 17;
    cuts[n++] = len - 1;
    cuts[n++] = len - 2;
    cuts[n++] = len - 33;
    int refused = 0;
    for (int i = 0; i < n; i++) {
        FILE *f = fopen(path, "wb");
        REQUIRE(f);
        REQUIRE(fwrite(buf, 1, cuts[i], f) == cuts[i]);
        fclose(f);
        ls_adapter *a = NULL;
        ls_err err;
        err.msg[0] = 0;
        ls_status st = ls_adapter_load(path, model, &a, &err);
        const bool ok = st != LS_OK && a == NULL && strstr(err.msg, "draft adapter") && strstr(err.msg, path);
        if (!ok) fprintf(stderr, "  cut at %zu of %zu: status %d, message \"%s\"\n", cuts[i], len, st, err.msg);
        CHECK(ok);
        refused += ok;
        if (a) ls_adapter_free(a);
    }
    fprintf(stderr, "  %d/%d truncations of a %zu-byte adapter refused with a message\n", refused, n, len);
    /* the whole file loads */
    FILE *f = fopen(path, "wb");
    REQUIRE(f);
    REQUIRE(fwrite(buf, 1, len, f) == len);
    fclose(f);
    ls_adapter *a = NULL;
    ls_err err;
    CHECK_EQ_INT(ls_adapter_load(path, model, &a, &err), LS_OK);
    ls_adapter_free(a);
    free(buf);
}

static void test_other_files(void) {
    ls_adapter *a = NULL;
    ls_err err;
    /* missing, a directory, empty, text, a model GGUF (not an adapter) */
    const char *missing = tu_tmp_path("no_such_adapter.gguf");
    remove(missing);
    CHECK(ls_adapter_load(missing, model, &a, &err) != LS_OK && a == NULL);
    fprintf(stderr, "  missing: %s\n", err.msg);
    CHECK(strstr(err.msg, "draft adapter") && strstr(err.msg, missing));
    const char *dir = tu_tmp_path("adapter_dir");
    mkdir(dir, 0755);
    CHECK(ls_adapter_load(dir, model, &a, &err) != LS_OK && a == NULL);
    fprintf(stderr, "  directory: %s\n", err.msg);
    CHECK(strstr(err.msg, "draft adapter") && strstr(err.msg, dir));
    const char *empty = tu_tmp_path("adapter_empty.gguf"), *text = tu_tmp_path("adapter_text.gguf");
    FILE *f = fopen(empty, "wb");
    REQUIRE(f);
    fclose(f);
    CHECK(ls_adapter_load(empty, model, &a, &err) != LS_OK && a == NULL);
    fprintf(stderr, "  empty: %s\n", err.msg);
    CHECK(strstr(err.msg, "draft adapter") && strstr(err.msg, empty));
    f = fopen(text, "wb");
    REQUIRE(f);
    fputs("this is not a GGUF file, just some text that is long enough to have a header\n", f);
    fclose(f);
    CHECK(ls_adapter_load(text, model, &a, &err) != LS_OK && a == NULL);
    fprintf(stderr, "  text: %s\n", err.msg);
    CHECK(strstr(err.msg, "draft adapter") && strstr(err.msg, text));
    const char *mpath = tu_tmp_path("adapter_test_model.gguf");
    CHECK(ls_adapter_load(mpath, model, &a, &err) != LS_OK && a == NULL);
    fprintf(stderr, "  a model file: %s\n", err.msg);
    CHECK(strstr(err.msg, "is not a draft adapter") != NULL);
    /* an adapter for a model of another vocabulary (Llama 3 BPE, 128256
     * tokens, same shape otherwise) */
    rm_spec s = small_spec(31);
    s.vocab_gguf = tu_models_path("vocab/ggml-vocab-llama-bpe.gguf");
    ra_base other;
    REQUIRE(ra_base_from_rm_spec(&s, &other));
    ra_spec as = {.exit_layer = 2, .dtype = LS_TYPE_F16, .seed = 3};
    const char *p = tu_tmp_path("adapter_other_vocab.gguf");
    REQUIRE(ra_write(&other, &as, p));
    CHECK(ls_adapter_load(p, model, &a, &err) != LS_OK && a == NULL);
    fprintf(stderr, "  another vocabulary: %s\n", err.msg);
    CHECK(strstr(err.msg, "vocabulary size") != NULL);
    /* same size, other pieces: only the hash tells */
    other = base;
    other.vocab_hash = ra_vocab_hash(ls_model_tokenizer(model)) * 3 + 1;
    REQUIRE(ra_write(&other, &as, p));
    CHECK(ls_adapter_load(p, model, &a, &err) != LS_OK && a == NULL);
    CHECK(strstr(err.msg, "another vocabulary") != NULL);
}

/* ------------------------------------------------------------ parameters */

static ls_gen_params spec_params(int E, int k, ls_draft_source src, const ls_adapter *a, int dv) {
    ls_gen_params gp = {.n_predict = 8, .ignore_eog = true, .strategy = LS_STRATEGY_SELF_SPECULATIVE,
                        .exit_layer = E, .num_speculations = k, .draft_source = src, .adapter = a,
                        .draft_vocab = dv};
    ls_sampling_default(&gp.sampling);
    return gp;
}

static void expect_refused(const ls_gen_params *gp, const char *n1, const char *n2) {
    ls_err err;
    err.msg[0] = 0;
    ls_status st = ls_gen_params_check(gp, 4, &err);
    const bool ok = st == LS_ERR_INVALID && strstr(err.msg, n1) && (!n2 || strstr(err.msg, n2));
    if (!ok) fprintf(stderr, "  expected a refusal naming \"%s\": status %d, \"%s\"\n", n1, st, err.msg);
    CHECK(ok);
}

static void expect_ok(const ls_gen_params *gp) {
    ls_err err;
    err.msg[0] = 0;
    ls_status st = ls_gen_params_check(gp, 4, &err);
    if (st != LS_OK) fprintf(stderr, "  expected ok: %s\n", err.msg);
    CHECK_EQ_INT(st, LS_OK);
}

static void test_params(void) {
    ls_adapter *a2 = NULL, *tonly = NULL, *notable = NULL;
    ls_err err;
    ra_spec s = {.exit_layer = 2, .ffn_dim = 64, .dtype = LS_TYPE_F16, .seed = 1, .n_table = 300};
    REQUIRE(try_load(&s, "adapter_params_a2.gguf", &a2, &err) == LS_OK);
    ra_spec st = {.exit_layer = 3, .seed = 2, .n_table = 200, .no_block = true};
    REQUIRE(try_load(&st, "adapter_params_tonly.gguf", &tonly, &err) == LS_OK);
    ra_spec sn = {.exit_layer = 2, .seed = 3};
    REQUIRE(try_load(&sn, "adapter_params_notable.gguf", &notable, &err) == LS_OK);

    /* draft_vocab */
    const ls_draft_source srcs[] = {LS_DRAFT_AUTO, LS_DRAFT_EXIT, LS_DRAFT_ADAPTER, LS_DRAFT_LOOKUP};
    for (int i = 0; i < 4; i++) {
        ls_gen_params gp = spec_params(2, 4, srcs[i], a2, 0);
        expect_ok(&gp);
        gp.draft_vocab = 1;
        expect_ok(&gp);
        gp.draft_vocab = 150;
        expect_ok(&gp);
        gp.draft_vocab = 300;
        expect_ok(&gp);
        gp.draft_vocab = 301;
        expect_refused(&gp, "draft_vocab 301 is out of range [1, 300]", NULL);
        gp.draft_vocab = -1;
        expect_refused(&gp, "draft_vocab -1", NULL);
        gp.draft_vocab = INT32_MIN;
        expect_refused(&gp, "draft_vocab", NULL);
        gp.draft_vocab = 5;
        gp.adapter = i == LS_DRAFT_ADAPTER ? notable : NULL;
        if (i != LS_DRAFT_ADAPTER) expect_refused(&gp, "draft_vocab 5 needs a frequency table", NULL);
        gp.adapter = notable;
        expect_refused(&gp, "draft_vocab 5 needs a frequency table", NULL);
    }
    /* a table-only adapter: its table serves any source but adapter, at any exit layer */
    for (int E = 1; E <= 3; E++) {
        ls_gen_params gp = spec_params(E, 4, LS_DRAFT_EXIT, tonly, 200);
        expect_ok(&gp);
        gp.draft_source = LS_DRAFT_LOOKUP;
        expect_ok(&gp);
        gp.draft_source = LS_DRAFT_AUTO;
        expect_ok(&gp);
        gp.draft_vocab = 201;
        expect_refused(&gp, "draft_vocab 201", "[1, 200]");
        gp.draft_vocab = 0;
        gp.draft_source = LS_DRAFT_ADAPTER;
        expect_refused(&gp, "holds only a frequency table", NULL);
    }
    /* source adapter needs an adapter */
    ls_gen_params gp = spec_params(2, 4, LS_DRAFT_ADAPTER, NULL, 0);
    expect_refused(&gp, "draft source adapter needs an adapter", NULL);
    /* the adapter's E must be the exit layer when its block drafts */
    for (int E = 1; E <= 3; E += 2) {
        gp = spec_params(E, 4, LS_DRAFT_ADAPTER, a2, 0);
        char want[96];
        snprintf(want, sizeof want, "trained after layer 2; exit_layer is %d", E);
        expect_refused(&gp, want, "use exit_layer 2");
        gp.draft_source = LS_DRAFT_AUTO;
        expect_refused(&gp, want, NULL);
        gp.draft_source = LS_DRAFT_EXIT; /* the block is not used: its table is */
        gp.draft_vocab = 100;
        expect_ok(&gp);
        gp.draft_source = LS_DRAFT_LOOKUP;
        expect_ok(&gp);
    }
    /* draft_source out of range */
    gp = spec_params(2, 4, (ls_draft_source)4, NULL, 0);
    expect_refused(&gp, "draft_source 4", "auto (0), exit (1), adapter (2), lookup (3)");
    gp.draft_source = (ls_draft_source)-1;
    expect_refused(&gp, "draft_source -1", NULL);
    /* strategies other than self_speculative ignore the draft fields */
    gp = spec_params(2, 4, LS_DRAFT_ADAPTER, NULL, 7);
    gp.strategy = LS_STRATEGY_EARLY_EXIT;
    expect_ok(&gp);
    gp.strategy = LS_STRATEGY_AUTOREGRESSIVE;
    expect_ok(&gp);

    /* ls_generate checks the same */
    ls_ctx *ctx;
    ls_kv *kv;
    REQUIRE(ls_ctx_create(model, 1, 16, &ctx, &err) == LS_OK);
    REQUIRE(ls_kv_create(model, 0, 4, 64, &kv, &err) == LS_OK);
    int32_t prompt[4] = {1, 100, 200, 300}, out[8];
    ls_gen_stats stats;
    gp = spec_params(2, 4, LS_DRAFT_AUTO, a2, 301);
    CHECK_EQ_INT(ls_generate(ctx, kv, prompt, 4, &gp, out, NULL, NULL, &stats, &err), LS_ERR_INVALID);
    CHECK(strstr(err.msg, "draft_vocab 301") != NULL);
    gp = spec_params(3, 4, LS_DRAFT_ADAPTER, a2, 0);
    CHECK_EQ_INT(ls_generate(ctx, kv, prompt, 4, &gp, out, NULL, NULL, &stats, &err), LS_ERR_INVALID);
    CHECK(strstr(err.msg, "exit_layer is 3") != NULL);
    gp = spec_params(2, 4, LS_DRAFT_ADAPTER, a2, 300);
    CHECK_EQ_INT(ls_generate(ctx, kv, prompt, 4, &gp, out, NULL, NULL, &stats, &err), LS_OK);
    CHECK_EQ_INT(stats.n_generated, 8);
    ls_kv_free(kv);
    ls_ctx_free(ctx);

    /* names */
    ls_draft_source ds;
    for (int i = 0; i < LS_N_DRAFT_SOURCES; i++) {
        CHECK_EQ_INT(ls_draft_source_parse(ls_draft_source_name((ls_draft_source)i), &ds, &err), LS_OK);
        CHECK_EQ_INT(ds, i);
    }
    CHECK_STR_EQ(ls_draft_source_name(LS_DRAFT_LOOKUP), "lookup");
    CHECK_STR_EQ(ls_draft_source_name((ls_draft_source)9), "?");
    CHECK_EQ_INT(ls_draft_source_parse("ngram", &ds, &err), LS_ERR_INVALID);
    CHECK(strstr(err.msg, "\"ngram\"") && strstr(err.msg, "auto, exit, adapter, lookup"));
    CHECK_EQ_INT(ls_draft_source_parse(NULL, &ds, &err), LS_ERR_INVALID);
    ls_adapter_free(a2);
    ls_adapter_free(tonly);
    ls_adapter_free(notable);
}

/* ------------------------------------------------------------ draft head */

/* one drafted chunk after prompt[0..np) (the last prompt token starts it) */
typedef struct draft_env {
    ls_ctx *ctx;
    ls_kv *kv;
    ls_drafter *d;
    int32_t hist[256];
    float *h;
    ls_rng rng;
} draft_env;

static bool env_open(draft_env *e, const ls_model *m, const ls_gen_params *gp, const int32_t *prompt, int np) {
    const ls_config *c = ls_model_config(m);
    ls_err err;
    memset(e, 0, sizeof *e);
    bool ok = ls_ctx_create(m, 1, 16, &e->ctx, &err) == LS_OK &&
              ls_kv_create(m, 0, c->n_layers, 128, &e->kv, &err) == LS_OK &&
              ls_drafter_create(e->ctx, e->kv, gp, 128, &e->d, &err) == LS_OK;
    e->h = malloc(sizeof(float) * 16 * (size_t)c->dim);
    memcpy(e->hist, prompt, sizeof(int32_t) * (size_t)np);
    ls_rng_seed(&e->rng, gp->sampling.seed);
    /* prefill [0, np-1): layers [0, E), the drafter's share, layers [E, L) */
    if (ok && np > 1) {
        ok = ls_embed(e->ctx, prompt, np - 1, e->h, &err) == LS_OK &&
             ls_forward(e->ctx, e->kv, 0, gp->exit_layer, 0, np - 1, e->h, &err) == LS_OK &&
             ls_drafter_feed(e->d, 0, np - 1, e->h, &err) == LS_OK &&
             ls_forward(e->ctx, e->kv, gp->exit_layer, c->n_layers, 0, np - 1, e->h, &err) == LS_OK;
    }
    if (!ok) fprintf(stderr, "  env_open: %s\n", err.msg);
    return ok;
}

static void env_close(draft_env *e) {
    ls_drafter_free(e->d);
    ls_kv_free(e->kv);
    ls_ctx_free(e->ctx);
    free(e->h);
}

static void test_draft_head(void) {
    const int V = base.n_vocab, N = 40;
    ra_spec s = {.exit_layer = 2, .ffn_dim = 64, .dtype = LS_TYPE_F16, .seed = 77, .n_table = 3000};
    ls_adapter *a;
    ls_err err;
    REQUIRE(try_load(&s, "adapter_head.gguf", &a, &err) == LS_OK);
    int32_t *table = malloc(sizeof(int32_t) * 3000);
    ra_table(&base, &s, table);
    const int32_t prompt[] = {1, 450, 4996, 17354, 1701, 29916, 432, 17204, 975};
    const int np = 9, D = base.dim;
    float *logits = malloc(sizeof(float) * (size_t)V);
    for (int src = LS_DRAFT_EXIT; src <= LS_DRAFT_ADAPTER; src++) {
        ls_gen_params gp = spec_params(2, 6, (ls_draft_source)src, a, N);
        draft_env e;
        REQUIRE(env_open(&e, model, &gp, prompt, np));
        ls_draft_chunk *ch = malloc(sizeof *ch);
        int pos = np - 1, in_table = 0, argmax_ok = 0, total = 0;
        int32_t tok = prompt[np - 1];
        for (int round = 0; round < 4; round++) {
            REQUIRE(ls_drafter_draft(e.d, &e.rng, pos, tok, 6, false, e.hist, e.h, ch, &err) == LS_OK);
            CHECK_EQ_INT(ch->source, src);
            CHECK_EQ_INT(ch->m, 6);
            for (int i = 1; i <= ch->m; i++) {
                bool found = false;
                for (int j = 0; j < N; j++) found = found || table[j] == ch->tokens[i];
                in_table += found;
                total++;
                if (src == LS_DRAFT_EXIT) {
                    /* the full head at the layer-E state of position i-1,
                     * restricted to the first N table entries */
                    REQUIRE(ls_exit_head(e.ctx, e.h + (size_t)(i - 1) * D, 1, logits, &err) == LS_OK);
                    int32_t best = table[0];
                    for (int j = 1; j < N; j++)
                        if (logits[table[j]] > logits[best]) best = table[j];
                    argmax_ok += best == ch->tokens[i];
                }
            }
            /* accept everything: the cache keeps the chunk, the next round
             * starts after it (drafts need not be the model's choices) */
            REQUIRE(ls_forward(e.ctx, e.kv, 2, 4, pos, ch->m + 1, e.h, &err) == LS_OK);
            pos += ch->m + 1;
            tok = table[round];
        }
        fprintf(stderr, "  %s drafts with draft_vocab %d: %d/%d in the table's first %d%s\n",
                ls_draft_source_name((ls_draft_source)src), N, in_table, total, N,
                src == LS_DRAFT_EXIT ? "" : " (adapter block)");
        CHECK_EQ_INT(in_table, total);
        if (src == LS_DRAFT_EXIT) CHECK_EQ_INT(argmax_ok, total);
        free(ch);
        env_close(&e);
    }
    free(logits);
    free(table);
    ls_adapter_free(a);

    /* a table of the whole vocabulary: the draft head is the full head,
     * permuted; drafts and therefore statistics and sampled output equal
     * those without a table */
    ra_spec sv = {.exit_layer = 2, .ffn_dim = 0, .dtype = LS_TYPE_F32, .seed = 78, .n_table = V};
    REQUIRE(try_load(&sv, "adapter_head_full.gguf", &a, &err) == LS_OK);
    ls_ctx *ctx;
    ls_kv *kv;
    REQUIRE(ls_ctx_create(model, 1, 16, &ctx, &err) == LS_OK);
    REQUIRE(ls_kv_create(model, 0, 4, 128, &kv, &err) == LS_OK);
    for (int src = LS_DRAFT_EXIT; src <= LS_DRAFT_ADAPTER; src++)
        for (int sampled = 0; sampled < 2; sampled++) {
            int32_t o1[40], o2[40];
            ls_gen_stats s1, s2;
            ls_gen_params gp = spec_params(2, 4, (ls_draft_source)src, a, 0);
            gp.n_predict = 40;
            if (sampled) {
                gp.sampling.temperature = 1.0f;
                gp.sampling.seed = 99;
            }
            REQUIRE(ls_generate(ctx, kv, prompt, np, &gp, o1, NULL, NULL, &s1, &err) == LS_OK);
            gp.draft_vocab = V;
            REQUIRE(ls_generate(ctx, kv, prompt, np, &gp, o2, NULL, NULL, &s2, &err) == LS_OK);
            CHECK(memcmp(o1, o2, sizeof o1) == 0);
            CHECK_EQ_INT(s1.drafted, s2.drafted);
            CHECK_EQ_INT(s1.accepted, s2.accepted);
            CHECK_EQ_INT(s1.rounds, s2.rounds);
        }
    ls_kv_free(kv);
    ls_ctx_free(ctx);
    ls_adapter_free(a);
}

/* ---------------------------------------------------- non-finite weights */

/* An adapter whose weights hold NaN or Inf (a diverged training run, a
 * corrupted file, F16 overflow) must either be refused at load with a
 * message, or draft without harm: greedy output equal to autoregressive,
 * sampled output (top-k, top-p, plain) valid tokens, a drafter's guess (the
 * pipeline asks for one) a token or -1. */
static void test_nonfinite_weights(void) {
    static const struct { const char *tensor; float value; ls_type t; } fills[] = {
        {"adapter.attn_output.weight", NAN, LS_TYPE_F16},
        {"adapter.ffn_down.weight", INFINITY, LS_TYPE_F16},
        {"adapter.attn_norm.weight", NAN, LS_TYPE_F16},
        {"adapter.attn_q.weight", 60000.0f, LS_TYPE_F16},
        {"adapter.ffn_up.weight", NAN, LS_TYPE_Q8_0},      /* a NaN block scale */
        {"adapter.attn_v.weight", INFINITY, LS_TYPE_Q8_0},
        {"adapter.attn_k.weight", 1e30f, LS_TYPE_Q8_0},    /* scale 1e30/127 overflows fp16 */
    };
    const int32_t prompt[] = {1, 450, 4996, 17354, 1701, 29916, 432, 17204, 975};
    const int np = 9, V = base.n_vocab;
    ls_ctx *ctx;
    ls_kv *kv;
    ls_err err;
    REQUIRE(ls_ctx_create(model, 1, 16, &ctx, &err) == LS_OK);
    REQUIRE(ls_kv_create(model, 0, 4, 128, &kv, &err) == LS_OK);
    int32_t ar[16], out[16];
    ls_gen_stats st;
    ls_gen_params gp = spec_params(2, 4, LS_DRAFT_ADAPTER, NULL, 0);
    gp.strategy = LS_STRATEGY_AUTOREGRESSIVE;
    gp.n_predict = 16;
    REQUIRE(ls_generate(ctx, kv, prompt, np, &gp, ar, NULL, NULL, &st, &err) == LS_OK);
    for (size_t f = 0; f < sizeof fills / sizeof fills[0]; f++) {
        ra_spec s = {.exit_layer = 2, .ffn_dim = 64, .dtype = fills[f].t, .seed = 500 + f, .n_table = 100,
                     .fill_tensor = fills[f].tensor, .fill_value = fills[f].value};
        char name[64];
        snprintf(name, sizeof name, "adapter_nonfinite_%zu.gguf", f);
        ls_adapter *a;
        ls_status ls = try_load(&s, name, &a, &err);
        fprintf(stderr, "  %s = %g: %s\n", fills[f].tensor, (double)fills[f].value,
                ls == LS_OK ? "loaded" : err.msg);
        if (ls != LS_OK) { /* refused: the message names the file and the tensor */
            CHECK(a == NULL && strstr(err.msg, tu_tmp_path(name)) != NULL && strstr(err.msg, fills[f].tensor) != NULL);
            continue;
        }
        /* greedy: lossless */
        gp = spec_params(2, 4, LS_DRAFT_ADAPTER, a, 0);
        gp.n_predict = 16;
        ls_status gs = ls_generate(ctx, kv, prompt, np, &gp, out, NULL, NULL, &st, &err);
        if (gs != LS_OK) fprintf(stderr, "    greedy: %s\n", err.msg);
        CHECK(gs == LS_OK && memcmp(out, ar, sizeof ar) == 0);
        /* sampled, three warper settings, with and without the table */
        for (int w = 0; w < 6; w++) {
            gp.sampling.temperature = 1.0f;
            gp.sampling.top_k = w % 3 == 0 ? 5 : 0;
            gp.sampling.top_p = w % 3 == 1 ? 0.9f : 1.0f;
            gp.sampling.seed = 40 + (uint64_t)w;
            gp.draft_vocab = w < 3 ? 0 : 100;
            gs = ls_generate(ctx, kv, prompt, np, &gp, out, NULL, NULL, &st, &err);
            bool valid = gs == LS_OK && st.n_generated == 16;
            for (int i = 0; valid && i < 16; i++) valid = out[i] >= 0 && out[i] < V;
            if (!valid)
                fprintf(stderr, "    sampled (top-k %d, top-p %.1f, draft_vocab %d): %s\n", gp.sampling.top_k,
                        (double)gp.sampling.top_p, gp.draft_vocab, gs == LS_OK ? "a token out of range" : err.msg);
            CHECK(valid);
        }
        /* a drafter asked for a guess after its drafts (the pipeline's way) */
        gp.sampling.top_k = 5;
        gp.sampling.top_p = 1.0f;
        gp.draft_vocab = 0;
        draft_env e;
        REQUIRE(env_open(&e, model, &gp, prompt, np));
        ls_draft_chunk *ch = malloc(sizeof *ch);
        ls_status ds = ls_drafter_draft(e.d, &e.rng, np - 1, prompt[np - 1], 4, true, e.hist, e.h, ch, &err);
        bool valid = ds == LS_OK && ch->guess >= -1 && ch->guess < V;
        for (int i = 1; ds == LS_OK && i <= ch->m; i++) valid = valid && ch->tokens[i] >= 0 && ch->tokens[i] < V;
        for (int i = 0; ds == LS_OK && i < ch->m; i++) valid = valid && ch->q_n[i] >= 1;
        if (!valid) fprintf(stderr, "    drafter: status %d, %d drafts, guess %d %s\n", ds, ds == LS_OK ? ch->m : -1,
                            ds == LS_OK ? ch->guess : -1, ds == LS_OK ? "" : err.msg);
        CHECK(valid);
        free(ch);
        env_close(&e);
        ls_adapter_free(a);
    }
    ls_kv_free(kv);
    ls_ctx_free(ctx);
}

/* ------------------------------------------------------------ storages */

static void test_hf_storage(void) {
    rm_spec sp = small_spec(41);
    char dir[512];
    snprintf(dir, sizeof dir, "%s", tu_tmp_path("adapter_hf_model"));
    ls_model *mg = load_spec(&sp, "adapter_hf_model.gguf", dir), *mh = NULL;
    REQUIRE(mg != NULL);
    ls_err err;
    REQUIRE(ls_model_load(dir, &mh, &err) == LS_OK);
    const uint64_t hg = ls_vocab_hash(ls_model_tokenizer(mg)), hh = ls_vocab_hash(ls_model_tokenizer(mh));
    fprintf(stderr, "  vocabulary hash: GGUF %016llx, Hugging Face directory %016llx\n", (unsigned long long)hg,
            (unsigned long long)hh);
    CHECK(hg == hh);
    ra_spec s = {.exit_layer = 2, .ffn_dim = 64, .dtype = LS_TYPE_F32, .seed = 5, .n_table = 500, .scale = 2};
    const char *path = tu_tmp_path("adapter_hf.gguf");
    REQUIRE(ra_write_for_model(mg, &s, path));
    ls_adapter *ag = NULL, *ah = NULL;
    CHECK_EQ_INT(ls_adapter_load(path, mg, &ag, &err), LS_OK);
    ls_status st = ls_adapter_load(path, mh, &ah, &err);
    if (st != LS_OK) fprintf(stderr, "  on the Hugging Face directory: %s\n", err.msg);
    CHECK_EQ_INT(st, LS_OK);
    if (!ag || !ah) {
        ls_adapter_free(ag);
        ls_adapter_free(ah);
        ls_model_free(mg);
        ls_model_free(mh);
        return;
    }
    /* draft with the adapter block on both, each chunk accepted whole: the
     * same drafts (the block's rotary pairs are adjacent whatever the base
     * model's storage) and, sampled, draft distributions within rounding */
    const int32_t prompt[] = {1, 450, 4996, 17354, 1701, 29916, 432, 17204, 975, 278, 17366};
    const int np = 11;
    for (int sampled = 0; sampled < 2; sampled++) {
        ls_gen_params gp = spec_params(2, 5, LS_DRAFT_ADAPTER, ag, 0);
        if (sampled) {
            gp.sampling.temperature = 1.0f;
            gp.sampling.seed = 3;
        }
        ls_gen_params gph = gp;
        gph.adapter = ah;
        draft_env eg, eh;
        REQUIRE(env_open(&eg, mg, &gp, prompt, np));
        REQUIRE(env_open(&eh, mh, &gph, prompt, np));
        ls_draft_chunk *cg = malloc(sizeof *cg), *chh = malloc(sizeof *chh);
        int pos = np - 1, same = 0, total = 0;
        double max_dp = 0;
        int32_t tok = prompt[np - 1];
        for (int round = 0; round < 4; round++) {
            REQUIRE(ls_drafter_draft(eg.d, &eg.rng, pos, tok, 5, false, eg.hist, eg.h, cg, &err) == LS_OK);
            REQUIRE(ls_drafter_draft(eh.d, &eh.rng, pos, tok, 5, false, eh.hist, eh.h, chh, &err) == LS_OK);
            REQUIRE(cg->m == chh->m);
            for (int i = 1; i <= cg->m; i++) {
                same += cg->tokens[i] == chh->tokens[i];
                total++;
            }
            if (sampled)
                for (int i = 0; i < cg->m; i++)
                    for (int j = 0; j < cg->q_n[i] && j < chh->q_n[i]; j++)
                        if (cg->q_ids[i][j] == chh->q_ids[i][j])
                            max_dp = fmax(max_dp, fabs((double)cg->q_p[i][j] - chh->q_p[i][j]));
            /* both continue from the GGUF model's chunk */
            for (int i = 0; i <= cg->m; i++) eh.hist[pos + i] = cg->tokens[i];
            REQUIRE(ls_forward(eg.ctx, eg.kv, 2, 4, pos, cg->m + 1, eg.h, &err) == LS_OK);
            REQUIRE(ls_forward(eh.ctx, eh.kv, 2, 4, pos, chh->m + 1, eh.h, &err) == LS_OK);
            pos += cg->m + 1;
            tok = cg->tokens[cg->m];
        }
        fprintf(stderr, "  %s adapter drafts: GGUF and Hugging Face directory agree on %d/%d%s", sampled ? "sampled" : "greedy",
                same, total, sampled ? "" : "\n");
        if (sampled) fprintf(stderr, " (draft probabilities within %.2g)\n", max_dp);
        if (!sampled) CHECK_EQ_INT(same, total);
        else CHECK(max_dp < 1e-3);
        free(cg);
        free(chh);
        env_close(&eg);
        env_close(&eh);
    }
    ls_adapter_free(ag);
    ls_adapter_free(ah);
    ls_model_free(mg);
    ls_model_free(mh);
}

int main(void) {
    rm_spec s = small_spec(31);
    model = load_spec(&s, "adapter_test_model.gguf", NULL);
    if (!model) return 1;
    ra_base_from_model(model, &base);
    RUN(test_vocab_hash);
    RUN(test_good_files);
    RUN(test_bad_files);
    RUN(test_norm_2d_message);
    RUN(test_truncated);
    RUN(test_other_files);
    RUN(test_params);
    RUN(test_draft_head);
    RUN(test_nonfinite_weights);
    RUN(test_hf_storage);
    ls_model_free(model);
    TEST_MAIN_END();
}
