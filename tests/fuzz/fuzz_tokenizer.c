/* fuzz_tokenizer: ls_tokenize / detokenization on arbitrary bytes and
 * ls_tokenizer_from_json on arbitrary documents.
 *
 * The first input byte picks the target (the rest is the payload):
 *   0, 1  the Llama 2 SentencePiece vocabulary ($LS_MODELS_DIR/vocab/
 *         ggml-vocab-llama-spm.gguf, else models/vocab/...), parse_special =
 *         byte & 1
 *   2     ls_tokenizer_from_json on the payload; a tokenizer that loads then
 *         encodes a fixed text and the payload
 *   3     a small byte-level BPE vocabulary (built from an embedded
 *         tokenizer.json, Llama 3 regex) on the payload
 * Checked: ids in range and stable across the two-call size protocol,
 * detokenize succeeds and is NUL-terminated, streaming output is valid UTF-8
 * chunk by chunk and adds up to the full decode when that is valid UTF-8,
 * and BPE round-trips valid UTF-8 exactly. */
#include "test_util.h"
#include "layerskip/tokenizer.h"
#include "gguf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK_OR_DIE(c) do { if (!(c)) { fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, #c); abort(); } } while (0)


static ls_tokenizer *load_spm(void) {
    const char *dir = getenv("LS_MODELS_DIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/vocab/ggml-vocab-llama-spm.gguf", dir ? dir : "models");
    gguf_ctx *g;
    ls_err err;
    if (gguf_ctx_init_from_file(path, &g, &err) != LS_OK) {
        fprintf(stderr, "fuzz_tokenizer: %s (set LS_MODELS_DIR or run scripts/setup.sh)\n", err.msg);
        abort();
    }
    ls_tokenizer *t = NULL;
    if (ls_tokenizer_from_gguf(g, &t, &err) != LS_OK) {
        fprintf(stderr, "fuzz_tokenizer: %s\n", err.msg);
        abort();
    }
    gguf_ctx_free(g);
    return t;
}

/* GPT-2 byte -> code point */
static unsigned byte_cp(int b) {
    int n = 0;
    for (int x = 0; x < 256; x++) {
        bool printable = (x >= 0x21 && x <= 0x7E) || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE && x <= 0xFF);
        if (x == b) return printable ? (unsigned)x : 256u + (unsigned)n;
        if (!printable) n++;
    }
    return 0;
}

static size_t put_cp(char *o, unsigned cp) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    o[0] = (char)(0xC0 | (cp >> 6));
    o[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
}

/* 256 byte tokens, a few merges, two special tokens */
static ls_tokenizer *load_small_bpe(void) {
    size_t cap = 1 << 16, n = 0;
    char *j = malloc(cap);
    n += (size_t)sprintf(j + n, "{\"added_tokens\": [{\"id\": 256, \"content\": \"<|bos|>\", \"special\": true},"
                                "{\"id\": 257, \"content\": \"<|user|>\", \"special\": false}],"
                                "\"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": ["
                                "{\"type\": \"Split\", \"pattern\": {\"Regex\": \"(?i:'s|'t|'re|'ve|'m|'ll|'d)|"
                                "[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}{1,3}| ?[^\\\\s\\\\p{L}\\\\p{N}]+"
                                "[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"}, \"behavior\": \"Isolated\","
                                " \"invert\": false}, {\"type\": \"ByteLevel\", \"add_prefix_space\": false,"
                                " \"use_regex\": false}]},"
                                "\"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": ["
                                "{\"SpecialToken\": {\"id\": \"<|bos|>\"}}, {\"Sequence\": {\"id\": \"A\"}}]},"
                                "\"model\": {\"type\": \"BPE\", \"ignore_merges\": true, \"vocab\": {");
    for (int b = 0; b < 256; b++) {
        char c[4];
        size_t l = put_cp(c, byte_cp(b));
        j[n++] = '"';
        if (c[0] == '"' || c[0] == '\\') j[n++] = '\\';
        memcpy(j + n, c, l);
        n += l;
        n += (size_t)sprintf(j + n, "\": %d, ", b);
    }
    n += (size_t)sprintf(j + n, "\"<|bos|>\": 256, \"<|user|>\": 257, \"\xC4\xA0t\": 258, \"he\": 259, \"\xC4\xA0the\": 260,"
                                " \"in\": 261, \"\xC4\xA0\xC4\xA0\": 262, \"12\": 263},"
                                " \"merges\": [\"\xC4\xA0 t\", \"h e\", \"\xC4\xA0t he\", \"i n\", \"\xC4\xA0 \xC4\xA0\","
                                " \"1 2\"]}}");
    ls_tokenizer *t = NULL;
    ls_err err;
    if (ls_tokenizer_from_json(j, n, "fuzz-bpe.json", &t, &err) != LS_OK) {
        fprintf(stderr, "fuzz_tokenizer: %s\n", err.msg);
        abort();
    }
    free(j);
    return t;
}

static void exercise(const ls_tokenizer *t, const char *s, size_t n, bool special, bool check_roundtrip) {
    int64_t need = ls_tokenize(t, s, n, false, special, NULL, 0);
    CHECK_OR_DIE(need <= 0);
    int64_t cnt = -need;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)(cnt + 2));
    CHECK_OR_DIE(ls_tokenize(t, s, n, false, special, ids, cnt) == cnt);
    for (int64_t i = 0; i < cnt; i++) CHECK_OR_DIE(ids[i] >= 0 && ids[i] < ls_tokenizer_n_vocab(t));
    if (ls_tokenizer_bos(t) >= 0) {
        CHECK_OR_DIE(ls_tokenize(t, s, n, true, special, ids, cnt + 1) == cnt + 1);
        CHECK_OR_DIE(ids[0] == ls_tokenizer_bos(t));
        memmove(ids, ids + 1, sizeof(int32_t) * (size_t)cnt);
    }

    int64_t dn = ls_detokenize(t, ids, cnt, special, NULL, 0);
    CHECK_OR_DIE(dn < 0);
    char *dec = malloc((size_t)(-dn));
    int64_t dl = ls_detokenize(t, ids, cnt, special, dec, -dn);
    CHECK_OR_DIE(dl == -dn - 1 && dec[dl] == 0);
    if (check_roundtrip && tu_valid_utf8(s, n)) CHECK_OR_DIE((size_t)dl == n && memcmp(dec, s, n) == 0);

    ls_detok_stream st;
    ls_detok_stream_init(&st, t, special);
    char *acc = malloc((size_t)dl * 3 + 16);
    size_t o = 0;
    char chunk[256];
    for (int64_t i = 0; i <= cnt; i++) {
        int64_t c = i < cnt ? ls_detok_stream_push(&st, ids[i], chunk, sizeof chunk)
                            : ls_detok_stream_flush(&st, chunk, sizeof chunk);
        CHECK_OR_DIE(c >= 0 && chunk[c] == 0 && tu_valid_utf8(chunk, (size_t)c));
        CHECK_OR_DIE(o + (size_t)c <= (size_t)dl * 3 + 16);
        memcpy(acc + o, chunk, (size_t)c);
        o += (size_t)c;
    }
    if (tu_valid_utf8(dec, (size_t)dl)) CHECK_OR_DIE(o == (size_t)dl && memcmp(acc, dec, o) == 0);
    for (int64_t i = 0; i < cnt && i < 64; i++) {
        char one[256];
        int64_t k = ls_token_to_bytes(t, ids[i], true, one, sizeof one);
        CHECK_OR_DIE(k >= 0);
    }
    free(acc);
    free(dec);
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static ls_tokenizer *spm, *bpe; /* loaded once per process */
    if (size == 0) return 0;
    const char *s = (const char *)data + 1;
    size_t n = size - 1;
    switch (data[0] & 3) {
    case 0:
    case 1:
        if (!spm) spm = load_spm();
        exercise(spm, s, n, data[0] & 1, false);
        break;
    case 2: {
        ls_tokenizer *t = NULL;
        ls_err err;
        ls_status st = ls_tokenizer_from_json(s, n, "fuzz.json", &t, &err);
        if (st == LS_OK) {
            CHECK_OR_DIE(t != NULL);
            const char *fixed = "Hello world! 123 <s> \xE2\x96\x81 caf\xC3\xA9 \xF0\x9F\xA6\x99\n";
            exercise(t, fixed, strlen(fixed), true, false);
            exercise(t, s, n < 512 ? n : 512, false, false);
            ls_tokenizer_free(t);
        } else {
            CHECK_OR_DIE(t == NULL && err.msg[0] != 0);
        }
        break;
    }
    default:
        if (!bpe) bpe = load_small_bpe();
        exercise(bpe, s, n, false, true);
        exercise(bpe, s, n, true, false);
        break;
    }
    return 0;
}
