/* test_tokenizer.c: our tokenizer against llama.cpp's.
 *
 * Golden data (tests/data/tokenizer_golden_<vocab>.json, written by
 * scripts/golden_tokenizer.py through llama-cpp-python) for SmolLM2
 * (byte-level BPE, pre "smollm"), Llama 2 (SentencePiece) and Llama 3
 * (byte-level BPE, pre "llama-bpe"): every string must give llama.cpp's ids
 * with and without BOS and special-token parsing, and llama.cpp's
 * detokenization, whether the vocabulary comes from the GGUF or from a
 * tokenizer.json written by tests/support/tokjson_writer.c and loaded back.
 * Also: llama.cpp's own ggml-vocab-*.gguf.inp/.out suites, round trips,
 * the streaming detokenizer, API edge cases, malformed tokenizer.json
 * files, and encoding speed on long text. */
#define _GNU_SOURCE /* memmem */
#include "test_util.h"
#include "layerskip/tokenizer.h"
#include "gguf.h"
#include "tokjson_writer.h"

#include <cJSON.h>
#include <sys/stat.h>
#include <time.h>

typedef struct gstr {
    char *text;
    size_t len;
    int32_t *ids, *ids_bos, *ids_sp;
    int n_ids, n_bos, n_sp;  /* n_bos / n_sp < 0: not given */
    char *detok;             /* NULL: equal to text */
    size_t detok_len;
    char *detok_repl;        /* NULL: detok is valid UTF-8 */
} gstr;

typedef struct golden {
    char name[64];
    int32_t bos, eos, n_vocab;
    int32_t bos_prefix[4];
    int n_prefix;
    gstr *s;
    int n;
} golden;

static int hexval(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* "key" (text) or "key_hex" (bytes); NULL when neither */
static char *get_bytes(const cJSON *e, const char *key, size_t *len) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(e, key);
    if (cJSON_IsString(j)) {
        *len = strlen(j->valuestring);
        return strdup(j->valuestring);
    }
    char hk[64];
    snprintf(hk, sizeof hk, "%s_hex", key);
    j = cJSON_GetObjectItemCaseSensitive(e, hk);
    if (!cJSON_IsString(j)) return NULL;
    size_t n = strlen(j->valuestring) / 2;
    char *b = malloc(n + 1);
    for (size_t i = 0; i < n; i++)
        b[i] = (char)(hexval(j->valuestring[2 * i]) * 16 + hexval(j->valuestring[2 * i + 1]));
    b[n] = 0;
    *len = n;
    return b;
}

static int32_t *get_ids(const cJSON *e, const char *key, int *n) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(e, key);
    if (!cJSON_IsArray(a)) { *n = -1; return NULL; }
    *n = cJSON_GetArraySize(a);
    int32_t *v = malloc(sizeof(int32_t) * (size_t)(*n + 1));
    int i = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, a) v[i++] = (int32_t)x->valueint;
    return v;
}

static bool golden_load(const char *vocab, golden *g) {
    char fname[128];
    snprintf(fname, sizeof fname, "tokenizer_golden_%s.json", vocab);
    size_t len;
    char *text = tu_read_file(tu_data_path(fname), &len);
    if (!text) { fprintf(stderr, "cannot read %s\n", tu_data_path(fname)); return false; }
    cJSON *doc = cJSON_ParseWithLength(text, len);
    free(text);
    if (!doc) { fprintf(stderr, "%s: malformed JSON\n", fname); return false; }
    memset(g, 0, sizeof *g);
    snprintf(g->name, sizeof g->name, "%s", vocab);
    g->bos = cJSON_GetObjectItem(doc, "bos")->valueint;
    g->eos = cJSON_GetObjectItem(doc, "eos")->valueint;
    g->n_vocab = cJSON_GetObjectItem(doc, "n_vocab")->valueint;
    const cJSON *bp = cJSON_GetObjectItem(doc, "bos_prefix"), *x;
    cJSON_ArrayForEach(x, bp) if (g->n_prefix < 4) g->bos_prefix[g->n_prefix++] = x->valueint;
    const cJSON *arr = cJSON_GetObjectItem(doc, "strings");
    g->n = cJSON_GetArraySize(arr);
    g->s = calloc((size_t)g->n, sizeof(gstr));
    int i = 0;
    cJSON_ArrayForEach(x, arr) {
        gstr *s = &g->s[i++];
        s->text = get_bytes(x, "text", &s->len);
        s->ids = get_ids(x, "ids", &s->n_ids);
        s->ids_bos = get_ids(x, "ids_bos", &s->n_bos);
        s->ids_sp = get_ids(x, "ids_sp", &s->n_sp);
        s->detok = get_bytes(x, "detok", &s->detok_len);
        size_t rl;
        s->detok_repl = get_bytes(x, "detok_repl", &rl);
    }
    cJSON_Delete(doc);
    return true;
}

static void golden_free(golden *g) {
    for (int i = 0; i < g->n; i++) {
        free(g->s[i].text);
        free(g->s[i].ids);
        free(g->s[i].ids_bos);
        free(g->s[i].ids_sp);
        free(g->s[i].detok);
        free(g->s[i].detok_repl);
    }
    free(g->s);
}

static const char *esc(const char *s, size_t n) {
    static char buf[4][256];
    static int k = 0;
    char *b = buf[k++ % 4];
    size_t o = 0;
    for (size_t i = 0; i < n && o < 200; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n') o += (size_t)sprintf(b + o, "\\n");
        else if (c == '\t') o += (size_t)sprintf(b + o, "\\t");
        else if (c == '\r') o += (size_t)sprintf(b + o, "\\r");
        else if (c < 0x20 || c == 0x7f) o += (size_t)sprintf(b + o, "\\x%02x", c);
        else b[o++] = (char)c;
    }
    if (o >= 200) o += (size_t)sprintf(b + o, "...");
    b[o] = 0;
    return b;
}

static void print_ids(const char *label, const int32_t *v, int64_t n) {
    fprintf(stderr, "    %s:", label);
    for (int64_t i = 0; i < n && i < 40; i++) fprintf(stderr, " %d", v[i]);
    fprintf(stderr, "%s\n", n > 40 ? " ..." : "");
}

static int64_t encode(const ls_tokenizer *t, const char *s, size_t n, bool bos, bool special, int32_t **out) {
    int64_t need = ls_tokenize(t, s, n, bos, special, NULL, 0);
    int64_t cap = need < 0 ? -need : need;
    *out = malloc(sizeof(int32_t) * (size_t)(cap + 1));
    int64_t got = ls_tokenize(t, s, n, bos, special, *out, cap);
    if (got != cap) fprintf(stderr, "ls_tokenize: sized %lld, then gave %lld\n", (long long)cap, (long long)got);
    return got;
}

static bool ids_eq(const int32_t *a, int64_t na, const int32_t *b, int64_t nb) {
    return na == nb && (na == 0 || memcmp(a, b, sizeof(int32_t) * (size_t)na) == 0);
}

/* every golden string: ids, ids with BOS, ids with special parsing, detok */
static void check_golden(const ls_tokenizer *t, const golden *g, const char *source) {
    int ok = 0, printed = 0;
    bool add_bos = ls_tokenizer_add_bos(t);
    for (int i = 0; i < g->n; i++) {
        const gstr *s = &g->s[i];
        bool good = true;
        int32_t *ids, *ib, *isp;
        int64_t n = encode(t, s->text, s->len, false, false, &ids);
        int64_t nb = encode(t, s->text, s->len, add_bos, false, &ib);
        int64_t nsp = encode(t, s->text, s->len, false, true, &isp);
        int32_t want_bos[4096];
        const int32_t *wb = s->ids_bos;
        int wnb = s->n_bos;
        if (wnb < 0) {
            memcpy(want_bos, g->bos_prefix, sizeof(int32_t) * (size_t)g->n_prefix);
            memcpy(want_bos + g->n_prefix, s->ids, sizeof(int32_t) * (size_t)s->n_ids);
            wb = want_bos;
            wnb = g->n_prefix + s->n_ids;
        }
        const int32_t *wsp = s->n_sp >= 0 ? s->ids_sp : s->ids;
        int wnsp = s->n_sp >= 0 ? s->n_sp : s->n_ids;
        const char *what = NULL;
        const int32_t *got = NULL, *want = NULL;
        int64_t ngot = 0, nwant = 0;
        if (!ids_eq(ids, n, s->ids, s->n_ids)) { what = "ids"; got = ids; ngot = n; want = s->ids; nwant = s->n_ids; }
        else if (!ids_eq(ib, nb, wb, wnb)) { what = "ids with BOS"; got = ib; ngot = nb; want = wb; nwant = wnb; }
        else if (!ids_eq(isp, nsp, wsp, wnsp)) { what = "ids with parse_special"; got = isp; ngot = nsp; want = wsp; nwant = wnsp; }
        if (what) {
            good = false;
            if (printed++ < 6) {
                fprintf(stderr, "  %s [%s] \"%s\": %s differ\n", g->name, source, esc(s->text, s->len), what);
                print_ids("llama.cpp", want, nwant);
                print_ids("ours     ", got, ngot);
            }
        }
        /* llama.cpp's detokenization of its ids */
        const char *wd = s->detok ? s->detok : s->text;
        size_t wdl = s->detok ? s->detok_len : s->len;
        char *dec = malloc(s->len * 4 + 64);
        int64_t dl = ls_detokenize(t, s->ids, s->n_ids, false, dec, (int64_t)(s->len * 4 + 64));
        if (dl != (int64_t)wdl || memcmp(dec, wd, wdl) != 0) {
            good = false;
            if (printed++ < 6)
                fprintf(stderr, "  %s [%s] \"%s\": detokenized to \"%s\", llama.cpp \"%s\"\n", g->name, source,
                        esc(s->text, s->len), dl >= 0 ? esc(dec, (size_t)dl) : "(error)", esc(wd, wdl));
        }
        free(dec);
        free(ids);
        free(ib);
        free(isp);
        ok += good;
    }
    fprintf(stderr, "  %s [%s]: %d of %d golden strings match llama.cpp\n", g->name, source, ok, g->n);
    CHECK_EQ_INT(ok, g->n);
}


/* decode(encode(s)) == s for valid UTF-8, with the model's BOS; with
 * special-token parsing (and rendering, without BOS) on BPE vocabularies.
 * Excluded, as llama.cpp does the same:
 * - invalid UTF-8: BPE turns each bad byte into U+FFFD before encoding; SPM
 *   cuts symbols by the lead byte, so a truncated sequence swallows the next
 *   bytes (e.g. of an escaped space, which then decodes as "▁");
 * - SPM text containing U+2581 "▁", which decodes as a space;
 * - special-token parsing on SPM: a space is prefixed to the text after
 *   every special token, so "<s>Hi" decodes as "<s> Hi". */
static void check_roundtrip(const ls_tokenizer *t, const golden *g) {
    int n_ok = 0, n_tried = 0;
    bool spm = ls_tokenizer_kind(t) == LS_TOK_SPM;
    for (int i = 0; i < g->n; i++) {
        const gstr *s = &g->s[i];
        if (!tu_valid_utf8(s->text, s->len)) continue;
        if (spm && memmem(s->text, s->len, "\xE2\x96\x81", 3)) continue;
        for (int mode = 0; mode < 2; mode++) {
            bool special = mode == 1;
            if (special && spm) continue;
            int32_t *ids;
            int64_t n = encode(t, s->text, s->len, !special && ls_tokenizer_add_bos(t), special, &ids);
            size_t cap = s->len * 4 + 64;
            char *dec = malloc(cap);
            int64_t dl = ls_detokenize(t, ids, n, special, dec, (int64_t)cap);
            n_tried++;
            if (dl == (int64_t)s->len && memcmp(dec, s->text, s->len) == 0) n_ok++;
            else fprintf(stderr, "  %s round trip%s: \"%s\" -> \"%s\"\n", g->name, special ? " (special)" : "",
                         esc(s->text, s->len), dl >= 0 ? esc(dec, (size_t)dl) : "(error)");
            free(dec);
            free(ids);
        }
    }
    fprintf(stderr, "  %s: %d of %d round trips exact\n", g->name, n_ok, n_tried);
    CHECK_EQ_INT(n_ok, n_tried);
}

/* streaming: every chunk is whole UTF-8 characters and the chunks add up to
 * the full decode (with U+FFFD for bytes that are not UTF-8) */
static void check_stream(const ls_tokenizer *t, const golden *g) {
    int bad = 0;
    for (int i = 0; i < g->n; i++) {
        const gstr *s = &g->s[i];
        const char *want = s->detok_repl ? s->detok_repl : s->detok ? s->detok : s->text;
        size_t wl = s->detok_repl ? strlen(s->detok_repl) : s->detok ? s->detok_len : s->len;
        ls_detok_stream st;
        ls_detok_stream_init(&st, t, false);
        size_t cap = wl * 3 + 64, o = 0;
        char *acc = malloc(cap + 64);
        char chunk[512];
        bool ok = true;
        for (int k = 0; k <= s->n_ids; k++) {
            int64_t c = k < s->n_ids ? ls_detok_stream_push(&st, s->ids[k], chunk, sizeof chunk)
                                     : ls_detok_stream_flush(&st, chunk, sizeof chunk);
            if (c < 0 || chunk[c] != 0 || !tu_valid_utf8(chunk, (size_t)c)) { ok = false; break; }
            if (o + (size_t)c > cap) { ok = false; break; }
            memcpy(acc + o, chunk, (size_t)c);
            o += (size_t)c;
        }
        if (!ok || o != wl || memcmp(acc, want, wl) != 0) {
            if (bad++ < 5)
                fprintf(stderr, "  %s stream: \"%s\" gave \"%s\"\n", g->name, esc(s->text, s->len), esc(acc, o));
        }
        free(acc);
    }
    CHECK_EQ_INT(bad, 0);
}

static ls_tokenizer *load_gguf(const char *path) {
    gguf_ctx *g;
    ls_err err;
    if (gguf_ctx_init_from_file(path, &g, &err) != LS_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return NULL;
    }
    ls_tokenizer *t = NULL;
    if (ls_tokenizer_from_gguf(g, &t, &err) != LS_OK) fprintf(stderr, "%s\n", err.msg);
    gguf_ctx_free(g);
    return t;
}

static const char *vocab_path(const char *name) {
    if (strcmp(name, "smollm2") == 0) return tu_default_model();
    static char buf[4096];
    snprintf(buf, sizeof buf, "%s", tu_models_path(strcmp(name, "llama-spm") == 0 ? "vocab/ggml-vocab-llama-spm.gguf"
                                                                                     : "vocab/ggml-vocab-llama-bpe.gguf"));
    return buf;
}

/* the same answers from two loads of one vocabulary */
static void check_same_vocab(const ls_tokenizer *a, const ls_tokenizer *b) {
    CHECK_EQ_INT(ls_tokenizer_kind(a), ls_tokenizer_kind(b));
    CHECK_EQ_INT(ls_tokenizer_n_vocab(a), ls_tokenizer_n_vocab(b));
    CHECK_EQ_INT(ls_tokenizer_bos(a), ls_tokenizer_bos(b));
    CHECK_EQ_INT(ls_tokenizer_eos(a), ls_tokenizer_eos(b));
    CHECK_EQ_INT(ls_tokenizer_add_bos(a), ls_tokenizer_add_bos(b));
    CHECK_EQ_INT(ls_tokenizer_add_space_prefix(a), ls_tokenizer_add_space_prefix(b));
    CHECK_STR_EQ(ls_tokenizer_pre(a), strcmp(ls_tokenizer_pre(b), "default") == 0 ? "default" : ls_tokenizer_pre(b));
    int diff_piece = 0, diff_type = 0, diff_eog = 0;
    for (int32_t i = 0; i < ls_tokenizer_n_vocab(a) && i < ls_tokenizer_n_vocab(b); i++) {
        if (ls_tokenizer_piece_len(a, i) != ls_tokenizer_piece_len(b, i) ||
            memcmp(ls_tokenizer_piece(a, i), ls_tokenizer_piece(b, i), ls_tokenizer_piece_len(a, i)) != 0)
            diff_piece++;
        if (ls_tokenizer_token_type(a, i) != ls_tokenizer_token_type(b, i)) diff_type++;
        if (ls_tokenizer_is_eog(a, i) != ls_tokenizer_is_eog(b, i)) diff_eog++;
    }
    CHECK_EQ_INT(diff_piece, 0);
    CHECK_EQ_INT(diff_type, 0);
    CHECK_EQ_INT(diff_eog, 0);
}

static void test_vocab(const char *name) {
    golden g;
    REQUIRE(golden_load(name, &g));
    ls_tokenizer *t = load_gguf(vocab_path(name));
    REQUIRE(t != NULL);
    CHECK_EQ_INT(ls_tokenizer_n_vocab(t), g.n_vocab);
    CHECK_EQ_INT(ls_tokenizer_bos(t), g.bos);
    CHECK_EQ_INT(ls_tokenizer_eos(t), g.eos);
    CHECK_EQ_INT(ls_tokenizer_add_bos(t), g.n_prefix > 0);
    check_golden(t, &g, "gguf");
    check_roundtrip(t, &g);
    check_stream(t, &g);

    /* tokenizer.json (+ tokenizer_config.json) written by our writer */
    char dirname[128];
    snprintf(dirname, sizeof dirname, "tokjson_%s", name);
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", tu_tmp_path(dirname));
    mkdir(dir, 0755);
    ls_err err;
    clock_t c0 = clock();
    ls_status st = tokjson_write_hf_dir(t, dir, &err);
    if (st != LS_OK) fprintf(stderr, "%s\n", err.msg);
    REQUIRE(st == LS_OK);
    double t_write = (double)(clock() - c0) / CLOCKS_PER_SEC;
    ls_tokenizer *h = NULL;
    c0 = clock();
    st = ls_tokenizer_from_hf_dir(dir, &h, &err);
    double t_load = (double)(clock() - c0) / CLOCKS_PER_SEC;
    if (st != LS_OK) fprintf(stderr, "%s\n", err.msg);
    REQUIRE(st == LS_OK);
    fprintf(stderr, "  %s: tokenizer.json written in %.2f s, loaded in %.2f s\n", name, t_write, t_load);
    check_same_vocab(t, h);
    check_golden(h, &g, "tokenizer.json dir");
    check_stream(h, &g);

    /* tokenizer.json alone: BOS from the post-processor template */
    char path[4200];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    size_t len;
    char *json = tu_read_file(path, &len);
    REQUIRE(json != NULL);
    ls_tokenizer *j = NULL;
    st = ls_tokenizer_from_json(json, len, path, &j, &err);
    free(json);
    if (st != LS_OK) fprintf(stderr, "%s\n", err.msg);
    REQUIRE(st == LS_OK);
    CHECK_EQ_INT(ls_tokenizer_add_bos(j), ls_tokenizer_add_bos(t));
    if (ls_tokenizer_add_bos(t)) CHECK_EQ_INT(ls_tokenizer_bos(j), ls_tokenizer_bos(t));
    check_golden(j, &g, "tokenizer.json");
    ls_tokenizer_free(j);
    ls_tokenizer_free(h);
    ls_tokenizer_free(t);
    golden_free(&g);
}

static void test_smollm2(void) { test_vocab("smollm2"); }
static void test_llama_spm(void) { test_vocab("llama-spm"); }
static void test_llama_bpe(void) { test_vocab("llama-bpe"); }

/* llama.cpp's tests/test-tokenizer-0 data: inputs separated by
 * "\n__ggml_vocab_test__\n", one line of ids per input */
static void run_inp_out(const char *vocab) {
    char p[256];
    snprintf(p, sizeof p, "vocab/ggml-vocab-%s.gguf", vocab);
    ls_tokenizer *t = load_gguf(tu_models_path(p));
    REQUIRE(t != NULL);
    snprintf(p, sizeof p, "vocab/ggml-vocab-%s.gguf.inp", vocab);
    size_t ni, no;
    char *inp = tu_read_file(tu_models_path(p), &ni);
    snprintf(p, sizeof p, "vocab/ggml-vocab-%s.gguf.out", vocab);
    char *outp = tu_read_file(tu_models_path(p), &no);
    REQUIRE(inp && outp);
    const char *sep = "\n__ggml_vocab_test__\n";
    size_t sl = strlen(sep);
    char *pos = inp, *line = outp;
    int n_tests = 0, n_fail = 0;
    while (pos < inp + ni && *line) {
        char *nx = strstr(pos, sep);
        size_t len = nx ? (size_t)(nx - pos) : strlen(pos);
        char *eol = strchr(line, '\n');
        if (eol) *eol = 0;
        int32_t want[1024];
        int nw = 0;
        for (char *q = line; *q;) {
            char *end;
            long v = strtol(q, &end, 10);
            if (end == q) break;
            want[nw++] = (int32_t)v;
            q = end;
        }
        int32_t *ids;
        int64_t n = encode(t, pos, len, false, false, &ids);
        n_tests++;
        if (!ids_eq(ids, n, want, nw)) {
            n_fail++;
            fprintf(stderr, "  %s.inp \"%s\"\n", vocab, esc(pos, len));
            print_ids("expected", want, nw);
            print_ids("ours    ", ids, n);
        }
        free(ids);
        line = eol ? eol + 1 : line + strlen(line);
        if (!nx) break;
        pos = nx + sl;
    }
    fprintf(stderr, "  ggml-vocab-%s: %d of %d llama.cpp tests pass\n", vocab, n_tests - n_fail, n_tests);
    CHECK(n_tests >= 40);
    CHECK_EQ_INT(n_fail, 0);
    free(inp);
    free(outp);
    ls_tokenizer_free(t);
}

static void test_llama_cpp_suites(void) {
    run_inp_out("llama-spm");
    run_inp_out("llama-bpe");
}

static void expect_ids(const ls_tokenizer *t, const char *s, bool bos, bool special, const int32_t *want, int nw) {
    int32_t *ids;
    int64_t n = encode(t, s, strlen(s), bos, special, &ids);
    if (!ids_eq(ids, n, want, nw)) {
        fprintf(stderr, "  \"%s\" (bos %d, special %d)\n", esc(s, strlen(s)), bos, special);
        print_ids("want", want, nw);
        print_ids("got ", ids, n);
        CHECK(false);
    } else {
        CHECK(true);
    }
    free(ids);
}

static void test_special_and_ids(void) {
    ls_tokenizer *sm = load_gguf(tu_default_model());
    ls_tokenizer *l2 = load_gguf(vocab_path("llama-spm"));
    ls_tokenizer *l3 = load_gguf(vocab_path("llama-bpe"));
    REQUIRE(sm && l2 && l3);
    /* BOS/EOS and defaults */
    CHECK_EQ_INT(ls_tokenizer_kind(sm), LS_TOK_BPE);
    CHECK_EQ_INT(ls_tokenizer_bos(sm), 1);
    CHECK_EQ_INT(ls_tokenizer_eos(sm), 2);
    CHECK(!ls_tokenizer_add_bos(sm));
    CHECK_EQ_INT(ls_tokenizer_kind(l2), LS_TOK_SPM);
    CHECK_EQ_INT(ls_tokenizer_bos(l2), 1);
    CHECK_EQ_INT(ls_tokenizer_eos(l2), 2);
    CHECK(ls_tokenizer_add_bos(l2));
    CHECK_EQ_INT(ls_tokenizer_bos(l3), 128000);
    CHECK_EQ_INT(ls_tokenizer_eos(l3), 128001);
    CHECK(ls_tokenizer_add_bos(l3));
    CHECK_STR_EQ(ls_tokenizer_pre(l3), "llama-bpe");
    CHECK_STR_EQ(ls_tokenizer_pre(sm), "smollm");
    /* end of generation */
    CHECK(ls_tokenizer_is_eog(sm, 2));   /* <|im_end|> */
    CHECK(ls_tokenizer_is_eog(sm, 0));   /* <|endoftext|> */
    CHECK(!ls_tokenizer_is_eog(sm, 1));  /* <|im_start|> */
    CHECK(ls_tokenizer_is_eog(l2, 2));
    CHECK(!ls_tokenizer_is_eog(l2, 1));
    CHECK(ls_tokenizer_is_eog(l3, 128001));
    CHECK(ls_tokenizer_is_eog(l3, 128009)); /* <|eot_id|> */
    CHECK(!ls_tokenizer_is_eog(l3, 128000));
    CHECK(!ls_tokenizer_is_eog(l3, -1));
    CHECK(!ls_tokenizer_is_eog(l3, 1 << 30));
    CHECK_STR_EQ(ls_tokenizer_piece(sm, 1), "<|im_start|>");
    CHECK(ls_tokenizer_piece(sm, -1) == NULL);

    /* special-token parsing on/off (ids from llama.cpp) */
    const char *chat = "<|im_start|>user\nHi<|im_end|>\n";
    int32_t chat_sp[] = {1, 4093, 198, 26843, 2, 198};
    expect_ids(sm, chat, false, true, chat_sp, 6);
    int32_t *plain;
    int64_t np = encode(sm, chat, strlen(chat), false, false, &plain);
    CHECK(np > 6);
    bool has_special = false;
    for (int64_t i = 0; i < np; i++) has_special |= plain[i] == 1 || plain[i] == 2;
    CHECK(!has_special);
    free(plain);
    int32_t l2_sp[] = {1, 15043, 2};
    expect_ids(l2, "<s>Hello</s>", false, true, l2_sp, 3);
    int32_t l2_plain[] = {529, 29879, 29958, 10994, 829, 29879, 29958};
    expect_ids(l2, "<s>Hello</s>", false, false, l2_plain, 7);
    int32_t l2_bos[] = {1, 15043, 3186};
    expect_ids(l2, "Hello world", true, false, l2_bos, 3);
    int32_t l2_empty_bos[] = {1};
    expect_ids(l2, "", true, false, l2_empty_bos, 1);
    expect_ids(l2, "", false, false, NULL, 0);
    int32_t l3_hdr[] = {128000, 128006, 882, 128007, 271, 13347, 128009};
    expect_ids(l3, "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>", false, true, l3_hdr, 7);

    /* rendering control tokens */
    char buf[64];
    CHECK_EQ_INT(ls_token_to_bytes(sm, 1, false, buf, sizeof buf), 0);
    int64_t n = ls_token_to_bytes(sm, 1, true, buf, sizeof buf);
    CHECK_EQ_INT(n, 12);
    CHECK(n == 12 && memcmp(buf, "<|im_start|>", 12) == 0);
    CHECK_EQ_INT(ls_token_to_bytes(sm, 1, true, buf, 4), -12);
    CHECK_EQ_INT(ls_token_to_bytes(sm, -5, true, buf, sizeof buf), 0);
    CHECK_EQ_INT(ls_token_to_bytes(l2, 3 + 0x41, false, buf, sizeof buf), 1); /* <0x41> */
    CHECK_EQ_INT(buf[0], 'A');
    CHECK_EQ_INT(ls_token_to_bytes(l2, 15043, false, buf, sizeof buf), 6);   /* "▁Hello" */
    CHECK(memcmp(buf, " Hello", 6) == 0);
    int32_t seq[] = {1, 15043, 3186, 2};
    char out[64];
    CHECK_EQ_INT(ls_detokenize(l2, seq, 4, false, out, sizeof out), 11);
    CHECK_STR_EQ(out, "Hello world");
    CHECK_EQ_INT(ls_detokenize(l2, seq, 4, true, out, sizeof out), 19);
    CHECK_STR_EQ(out, "<s> Hello world</s>");
    CHECK_EQ_INT(ls_detokenize(l2, seq, 4, false, NULL, 0), -12);
    CHECK_EQ_INT(ls_detokenize(l2, seq, 4, false, out, 11), -12);

    /* cap too small: the negative count, then the ids */
    int32_t few[2];
    int64_t need = ls_tokenize(l3, "Hello world, again and again", 28, true, false, few, 2);
    CHECK(need < -2);
    int32_t *all = malloc(sizeof(int32_t) * (size_t)(-need));
    CHECK_EQ_INT(ls_tokenize(l3, "Hello world, again and again", 28, true, false, all, -need), -need);
    CHECK_EQ_INT(all[0], 128000);
    free(all);
    CHECK_EQ_INT(ls_tokenize(l3, NULL, 0, false, false, NULL, 0), 0);

    ls_tokenizer_free(sm);
    ls_tokenizer_free(l2);
    ls_tokenizer_free(l3);
}

static void test_stream_edges(void) {
    ls_tokenizer *l2 = load_gguf(vocab_path("llama-spm"));
    ls_tokenizer *l3 = load_gguf(vocab_path("llama-bpe"));
    REQUIRE(l2 && l3);
    /* "🦙" in byte tokens arrives one byte at a time */
    int32_t llama_bytes[] = {29871, 3 + 0xF0, 3 + 0x9F, 3 + 0xA6, 3 + 0x99, 29889};
    ls_detok_stream st;
    ls_detok_stream_init(&st, l2, false);
    char out[64];
    CHECK_EQ_INT(ls_detok_stream_push(&st, llama_bytes[0], out, sizeof out), 0); /* stripped leading space */
    CHECK_EQ_INT(ls_detok_stream_push(&st, llama_bytes[1], out, sizeof out), 0);
    CHECK_EQ_INT(ls_detok_stream_push(&st, llama_bytes[2], out, sizeof out), 0);
    CHECK_EQ_INT(ls_detok_stream_push(&st, llama_bytes[3], out, sizeof out), 0);
    CHECK_EQ_INT(ls_detok_stream_push(&st, llama_bytes[4], out, sizeof out), 4);
    CHECK_STR_EQ(out, "\xF0\x9F\xA6\x99");
    CHECK_EQ_INT(ls_detok_stream_push(&st, llama_bytes[5], out, sizeof out), 1);
    CHECK_STR_EQ(out, ".");
    CHECK_EQ_INT(ls_detok_stream_flush(&st, out, sizeof out), 0);
    /* a truncated character is replaced at the end; a bad byte at once */
    ls_detok_stream_init(&st, l2, false);
    st.first = false;
    CHECK_EQ_INT(ls_detok_stream_push(&st, 3 + 0xE4, out, sizeof out), 0);
    CHECK_EQ_INT(ls_detok_stream_push(&st, 3 + 0xB8, out, sizeof out), 0);
    CHECK_EQ_INT(ls_detok_stream_push(&st, 3 + 'A', out, sizeof out), 4);
    CHECK_STR_EQ(out, "\xEF\xBF\xBD" "A");
    CHECK_EQ_INT(ls_detok_stream_push(&st, 3 + 0xFF, out, sizeof out), 3);
    CHECK_EQ_INT(ls_detok_stream_push(&st, 3 + 0xC3, out, sizeof out), 0);
    CHECK_EQ_INT(ls_detok_stream_flush(&st, out, sizeof out), 3);
    CHECK_STR_EQ(out, "\xEF\xBF\xBD");
    /* a buffer too small leaves the stream unchanged */
    ls_detok_stream_init(&st, l3, false);
    int32_t *ids;
    int64_t n = encode(l3, "Hello world", 11, false, false, &ids);
    CHECK_EQ_INT(n, 2);
    CHECK_EQ_INT(ls_detok_stream_push(&st, ids[1], out, 3), -7);
    CHECK_EQ_INT(ls_detok_stream_push(&st, ids[1], out, sizeof out), 6);
    CHECK_STR_EQ(out, " world");
    free(ids);
    ls_tokenizer_free(l2);
    ls_tokenizer_free(l3);
}

/* generation_config.json eos lists and tokenizer_config.json tokens */
static void test_hf_dir_configs(void) {
    ls_tokenizer *l3 = load_gguf(vocab_path("llama-bpe"));
    REQUIRE(l3);
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", tu_tmp_path("tokjson_cfg"));
    mkdir(dir, 0755);
    ls_err err;
    REQUIRE(tokjson_write_hf_dir(l3, dir, &err) == LS_OK);
    char path[4200];
    snprintf(path, sizeof path, "%s/generation_config.json", dir);
    FILE *f = fopen(path, "w");
    REQUIRE(f);
    fputs("{\"bos_token_id\": 128000, \"eos_token_id\": [128009, 128008, 128001]}", f);
    fclose(f);
    ls_tokenizer *h = NULL;
    ls_status st = ls_tokenizer_from_hf_dir(dir, &h, &err);
    if (st != LS_OK) fprintf(stderr, "%s\n", err.msg);
    REQUIRE(st == LS_OK);
    CHECK_EQ_INT(ls_tokenizer_eos(h), 128009);
    CHECK(ls_tokenizer_is_eog(h, 128008));
    CHECK(ls_tokenizer_is_eog(h, 128001));
    CHECK(!ls_tokenizer_is_eog(h, 128000));
    ls_tokenizer_free(h);

    f = fopen(path, "w");
    fputs("{\"eos_token_id\": 999999}", f);
    fclose(f);
    st = ls_tokenizer_from_hf_dir(dir, &h, &err);
    CHECK_EQ_INT(st, LS_ERR_FORMAT);
    CHECK(strstr(err.msg, "generation_config.json") != NULL);
    f = fopen(path, "w");
    fputs("{\"eos_token_id\": ", f);
    fclose(f);
    st = ls_tokenizer_from_hf_dir(dir, &h, &err);
    CHECK_EQ_INT(st, LS_ERR_FORMAT);
    CHECK(strstr(err.msg, "generation_config.json") != NULL);
    remove(path);

    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    f = fopen(path, "w");
    fputs("{\"add_bos_token\": false, \"bos_token\": {\"content\": \"<|eot_id|>\"}, \"eos_token\": \"<|end_of_text|>\"}", f);
    fclose(f);
    st = ls_tokenizer_from_hf_dir(dir, &h, &err);
    REQUIRE(st == LS_OK);
    CHECK(!ls_tokenizer_add_bos(h));
    CHECK_EQ_INT(ls_tokenizer_bos(h), 128009);
    CHECK_EQ_INT(ls_tokenizer_eos(h), 128001);
    ls_tokenizer_free(h);
    f = fopen(path, "w");
    fputs("{\"eos_token\": \"<|no such token|>\"}", f);
    fclose(f);
    st = ls_tokenizer_from_hf_dir(dir, &h, &err);
    CHECK_EQ_INT(st, LS_ERR_FORMAT);
    CHECK(strstr(err.msg, "tokenizer_config.json") && strstr(err.msg, "<|no such token|>"));

    st = ls_tokenizer_from_hf_dir(tu_tmp_path("no_such_dir_for_tokenizer"), &h, &err);
    CHECK_EQ_INT(st, LS_ERR_MISSING);
    CHECK(strstr(err.msg, "tokenizer.json") != NULL);
    ls_tokenizer_free(l3);
}

typedef struct bad_case {
    const char *json;
    ls_status want;
    const char *needle; /* in the message */
} bad_case;

static void test_bad_json(void) {
    static const bad_case cases[] = {
        {"", LS_ERR_FORMAT, "malformed JSON"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}", LS_ERR_FORMAT, "malformed JSON"},
        {"[1, 2, 3]", LS_ERR_FORMAT, "not a JSON object"},
        {"{}", LS_ERR_FORMAT, "\"model\""},
        {"{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}", LS_ERR_UNSUPPORTED, "model.type"},
        {"{\"model\": {\"type\": \"BPE\", \"merges\": []}}", LS_ERR_FORMAT, "model.vocab"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}}}", LS_ERR_FORMAT, "model.merges"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": []}}", LS_ERR_FORMAT, "empty"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -1}, \"merges\": []}}", LS_ERR_FORMAT, "model.vocab[\"a\"]"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 1.5}, \"merges\": []}}", LS_ERR_FORMAT, "not an integer"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 99999999}, \"merges\": []}}", LS_ERR_FORMAT, "model.vocab"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": \"0\"}, \"merges\": []}}", LS_ERR_FORMAT, "model.vocab"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 2}, \"merges\": []},"
         " \"pre_tokenizer\": {\"type\": \"ByteLevel\"}}", LS_ERR_FORMAT, "no token has id 1"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 0}, \"merges\": []}}", LS_ERR_FORMAT, "id 0"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [\"a c\"]},"
         " \"pre_tokenizer\": {\"type\": \"ByteLevel\"}}", LS_ERR_FORMAT, "model.merges[0]: \"c\""},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [\"a b\"]},"
         " \"pre_tokenizer\": {\"type\": \"ByteLevel\"}}", LS_ERR_FORMAT, "merge of \"a\" and \"b\""},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, \"merges\": [\"ab\"]},"
         " \"pre_tokenizer\": {\"type\": \"ByteLevel\"}}", LS_ERR_FORMAT, "model.merges[0]"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, \"merges\": [[\"a\", 3]]},"
         " \"pre_tokenizer\": {\"type\": \"ByteLevel\"}}", LS_ERR_FORMAT, "model.merges[0]"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}", LS_ERR_UNSUPPORTED, "kind"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
         " \"pre_tokenizer\": {\"type\": \"Whitespace\"}}", LS_ERR_UNSUPPORTED, "Whitespace"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
         " \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"ByteLevel\"},"
         " {\"type\": \"Digits\"}]}}", LS_ERR_UNSUPPORTED, "after ByteLevel"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
         " \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\":"
         " {\"Regex\": \"(unclosed\"}, \"behavior\": \"Isolated\"}, {\"type\": \"ByteLevel\"}]}}",
         LS_ERR_UNSUPPORTED, "does not compile"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
         " \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\":"
         " {\"Regex\": \"a\"}, \"behavior\": \"Removed\"}, {\"type\": \"ByteLevel\"}]}}",
         LS_ERR_UNSUPPORTED, "Isolated"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
         " \"normalizer\": {\"type\": \"NFKC\"}, \"pre_tokenizer\": {\"type\": \"ByteLevel\"}}",
         LS_ERR_UNSUPPORTED, "NFKC"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [], \"byte_fallback\": true}}",
         LS_ERR_UNSUPPORTED, "Replace"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [], \"byte_fallback\": 1}}",
         LS_ERR_FORMAT, "byte_fallback"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [], \"unk_token\": \"<unk>\"},"
         " \"pre_tokenizer\": {\"type\": \"ByteLevel\"}}", LS_ERR_FORMAT, "unk_token"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"added_tokens\": {},"
         " \"pre_tokenizer\": {\"type\": \"ByteLevel\"}}", LS_ERR_FORMAT, "added_tokens"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"added_tokens\": [{\"id\": 0,"
         " \"content\": \"b\"}], \"pre_tokenizer\": {\"type\": \"ByteLevel\"}}", LS_ERR_FORMAT, "added_tokens[0]"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"added_tokens\": [{\"id\": -3,"
         " \"content\": \"b\"}], \"pre_tokenizer\": {\"type\": \"ByteLevel\"}}", LS_ERR_FORMAT, "added_tokens[0].id"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"added_tokens\": [{\"id\": 1}],"
         " \"pre_tokenizer\": {\"type\": \"ByteLevel\"}}", LS_ERR_FORMAT, "added_tokens[0].content"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ls_tokenizer *t = (ls_tokenizer *)1;
        ls_err err = {{0}};
        ls_status st = ls_tokenizer_from_json(cases[i].json, strlen(cases[i].json), "bad.json", &t, &err);
        bool ok = st == cases[i].want && t == NULL && strstr(err.msg, "bad.json") && strstr(err.msg, cases[i].needle);
        if (!ok)
            fprintf(stderr, "  case %zu: status %d (want %d), message \"%s\" (want \"%s\")\n", i, st, cases[i].want,
                    err.msg, cases[i].needle);
        CHECK(ok);
        if (st == LS_OK) ls_tokenizer_free(t);
    }
    /* a minimal valid file works */
    /* an added token beyond model.vocab (as in Llama 3's file) */
    const char *good = "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2, \"\xC4\xA0\": 3},"
                       " \"merges\": [[\"a\", \"b\"]]}, \"pre_tokenizer\": {\"type\": \"ByteLevel\"},"
                       " \"added_tokens\": [{\"id\": 4, \"content\": \"<|x|>\", \"special\": true}]}";
    ls_tokenizer *t = NULL;
    ls_err err;
    ls_status st = ls_tokenizer_from_json(good, strlen(good), "good.json", &t, &err);
    if (st != LS_OK) fprintf(stderr, "%s\n", err.msg);
    REQUIRE(st == LS_OK);
    int32_t want[] = {2, 3, 0};
    expect_ids(t, "ab a", false, false, want, 3);
    int32_t want_sp[] = {2, 4, 0};
    expect_ids(t, "ab<|x|>a", false, true, want_sp, 3);
    CHECK_EQ_INT(ls_tokenizer_n_vocab(t), 5);
    CHECK_EQ_INT(ls_tokenizer_bos(t), -1);
    CHECK(!ls_tokenizer_add_bos(t));
    ls_tokenizer_free(t);
}

/* encoding speed on ~100 KB of mixed text; a loose bound catches O(n^2) */
static void test_speed(void) {
    const char *names[3] = {"smollm2", "llama-spm", "llama-bpe"};
    golden g;
    REQUIRE(golden_load("llama-bpe", &g));
    size_t cap = 1 << 20, len = 0;
    char *text = malloc(cap);
    for (int round = 0; len < 100000; round++)
        for (int i = 0; i < g.n && len < 100000; i++) {
            if (!tu_valid_utf8(g.s[i].text, g.s[i].len)) continue;
            memcpy(text + len, g.s[i].text, g.s[i].len);
            len += g.s[i].len;
            text[len++] = round % 2 ? ' ' : '\n';
        }
    golden_free(&g);
    /* one run of 100 KB without spaces or newlines */
    char *word = malloc(100001);
    for (int i = 0; i < 100000; i++) word[i] = "abcdefghij"[(i * 7) % 10];
    for (int k = 0; k < 3; k++) {
        ls_tokenizer *t = load_gguf(vocab_path(names[k]));
        REQUIRE(t);
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        int64_t n = ls_tokenize(t, text, len, false, true, NULL, 0);
        clock_gettime(CLOCK_MONOTONIC, &b);
        double ms = (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6;
        clock_gettime(CLOCK_MONOTONIC, &a);
        int64_t nw = ls_tokenize(t, word, 100000, false, false, NULL, 0);
        clock_gettime(CLOCK_MONOTONIC, &b);
        double msw = (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6;
        fprintf(stderr, "  %s: %zu bytes -> %lld tokens in %.1f ms; one 100 KB word -> %lld tokens in %.1f ms\n",
                names[k], len, (long long)-n, ms, (long long)-nw, msw);
        CHECK(n < 0 && nw < 0);
        CHECK(ms < 3000 && msw < 3000);
        ls_tokenizer_free(t);
    }
    free(word);
    free(text);
}

int main(void) {
    RUN(test_smollm2);
    RUN(test_llama_spm);
    RUN(test_llama_bpe);
    RUN(test_llama_cpp_suites);
    RUN(test_special_and_ids);
    RUN(test_stream_edges);
    RUN(test_hf_dir_configs);
    RUN(test_bad_json);
    RUN(test_speed);
    TEST_MAIN_END();
}
