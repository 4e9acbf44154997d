/* tokjson_writer.c: Hugging Face tokenizer.json from an ls_tokenizer (see the
 * header for the shapes written). The JSON is streamed to the file with our
 * own escaping; pieces must be valid UTF-8 (JSON cannot hold other bytes). */
#include "test_util.h"
#include "tokjson_writer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct jw {
    FILE *f;
    bool bad;      /* a string was not valid UTF-8 */
} jw;


static void jw_str(jw *w, const char *s, size_t n) {
    if (!tu_valid_utf8(s, n)) w->bad = true;
    fputc('"', w->f);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') { fputc('\\', w->f); fputc(c, w->f); }
        else if (c == '\n') fputs("\\n", w->f);
        else if (c == '\r') fputs("\\r", w->f);
        else if (c == '\t') fputs("\\t", w->f);
        else if (c < 0x20 || c == 0x7F) fprintf(w->f, "\\u%04x", c);
        else fputc(c, w->f);
    }
    fputc('"', w->f);
}

static void jw_cstr(jw *w, const char *s) { jw_str(w, s, strlen(s)); }

static void jw_piece(jw *w, const ls_tokenizer *t, int32_t id) {
    jw_str(w, ls_tokenizer_piece(t, id), ls_tokenizer_piece_len(t, id));
}

static bool is_added(const ls_tokenizer *t, int32_t id) {
    ls_tok_type ty = ls_tokenizer_token_type(t, id);
    return ty == LS_TOKT_CONTROL || ty == LS_TOKT_USER_DEFINED || ty == LS_TOKT_UNKNOWN;
}

/* ---- SPM merges from scores ---- */

typedef struct piece_key {
    float score;
    uint32_t len;
    int32_t id;
} piece_key;

/* score descending, then longer first, then id */
static int cmp_piece(const void *pa, const void *pb) {
    const piece_key *a = pa, *b = pb;
    if (a->score != b->score) return a->score > b->score ? -1 : 1;
    if (a->len != b->len) return a->len > b->len ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id;
}

typedef struct pair32 {
    int32_t l, r;
} pair32;

static int cmp_pair(const void *pa, const void *pb) {
    const pair32 *a = pa, *b = pb;
    if (a->l != b->l) return a->l < b->l ? -1 : 1;
    return a->r < b->r ? -1 : a->r > b->r;
}

static void write_spm_merges(jw *w, const ls_tokenizer *t) {
    int32_t n = ls_tokenizer_n_vocab(t);
    piece_key *order = malloc(sizeof(piece_key) * (size_t)n);
    pair32 *local = NULL;
    size_t cap_local = 0;
    if (!order) { w->bad = true; return; }
    int32_t m = 0;
    for (int32_t i = 0; i < n; i++)
        if (ls_tokenizer_piece_len(t, i) > 1 && ls_tokenizer_score(t, i) != -INFINITY)
            order[m++] = (piece_key){ls_tokenizer_score(t, i), (uint32_t)ls_tokenizer_piece_len(t, i), i};
    qsort(order, (size_t)m, sizeof(piece_key), cmp_piece);
    bool first = true;
    for (int32_t k = 0; k < m; k++) {
        const char *p = ls_tokenizer_piece(t, order[k].id);
        size_t len = order[k].len, nl = 0;
        if (len > cap_local) {
            cap_local = len;
            pair32 *nlp = realloc(local, sizeof(pair32) * cap_local);
            if (!nlp) { w->bad = true; break; }
            local = nlp;
        }
        for (size_t cut = 1; cut < len; cut++) {
            if (((unsigned char)p[cut] & 0xC0) == 0x80) continue; /* inside a character */
            int32_t l = ls_tokenizer_find(t, p, cut), r = ls_tokenizer_find(t, p + cut, len - cut);
            if (l >= 0 && r >= 0) local[nl++] = (pair32){l, r};
        }
        qsort(local, nl, sizeof(pair32), cmp_pair);
        for (size_t i = 0; i < nl; i++) {
            fputs(first ? "\n    " : ",\n    ", w->f);
            first = false;
            fputc('[', w->f);
            jw_piece(w, t, local[i].l);
            fputc(',', w->f);
            jw_piece(w, t, local[i].r);
            fputc(']', w->f);
        }
    }
    free(local);
    free(order);
}

static void write_bpe_merges(jw *w, const ls_tokenizer *t) {
    int32_t n = ls_tokenizer_n_merges(t);
    for (int32_t i = 0; i < n; i++) {
        const char *a, *b;
        ls_tokenizer_merge(t, i, &a, &b);
        fputs(i ? ",\n    " : "\n    ", w->f);
        if (strchr(a, ' ') || strchr(b, ' ')) {
            fputc('[', w->f);
            jw_cstr(w, a);
            fputc(',', w->f);
            jw_cstr(w, b);
            fputc(']', w->f);
        } else {
            size_t la = strlen(a), lb = strlen(b);
            char *s = malloc(la + lb + 2);
            if (!s) { w->bad = true; return; }
            memcpy(s, a, la);
            s[la] = ' ';
            memcpy(s + la + 1, b, lb + 1);
            jw_str(w, s, la + lb + 1);
            free(s);
        }
    }
}

static void write_pre_tokenizer(jw *w, const ls_tokenizer *t) {
    int nr = ls_tokenizer_n_pretok_regex(t);
    const char *r0 = nr > 0 ? ls_tokenizer_pretok_regex(t, 0) : "";
    const char *r1 = nr > 1 ? ls_tokenizer_pretok_regex(t, 1) : "";
    const char *bl_regex = "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":true}";
    const char *bl_plain = "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":false}";
    /* the GPT-2 regex is what ByteLevel(use_regex) applies */
    const char *gpt2 = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
    if (nr == 1 && strcmp(r0, gpt2) == 0) {
        fputs(bl_regex, w->f);
    } else if (nr == 2 && strcmp(r0, "\\p{N}") == 0 && strcmp(r1, gpt2) == 0) {
        fprintf(w->f, "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Digits\",\"individual_digits\":true},%s]}",
                bl_regex);
    } else {
        fputs("{\"type\":\"Sequence\",\"pretokenizers\":[", w->f);
        for (int i = 0; i < nr; i++) {
            fputs("{\"type\":\"Split\",\"pattern\":{\"Regex\":", w->f);
            jw_cstr(w, ls_tokenizer_pretok_regex(t, i));
            fputs("},\"behavior\":\"Isolated\",\"invert\":false},", w->f);
        }
        fprintf(w->f, "%s]}", bl_plain);
    }
}

ls_status tokjson_write(const ls_tokenizer *t, const char *path, ls_err *err) {
    jw w = {fopen(path, "wb"), false};
    if (!w.f) return ls_err_set(err, LS_ERR_IO, "%s: cannot create", path);
    const bool spm = ls_tokenizer_kind(t) == LS_TOK_SPM;
    const int32_t n = ls_tokenizer_n_vocab(t);
    const int32_t bos = ls_tokenizer_bos(t), unk = ls_tokenizer_unk(t);

    fputs("{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n  \"added_tokens\": [", w.f);
    bool first = true;
    for (int32_t i = 0; i < n; i++) {
        if (!is_added(t, i)) continue;
        fprintf(w.f, "%s\n    {\"id\": %d, \"content\": ", first ? "" : ",", i);
        first = false;
        jw_piece(&w, t, i);
        fprintf(w.f, ", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": false, "
                     "\"special\": %s}",
                ls_tokenizer_token_type(t, i) == LS_TOKT_USER_DEFINED ? "false" : "true");
    }
    fputs("\n  ],\n  \"normalizer\": ", w.f);
    if (spm) {
        fputs("{\"type\":\"Sequence\",\"normalizers\":[", w.f);
        if (ls_tokenizer_add_space_prefix(t)) fputs("{\"type\":\"Prepend\",\"prepend\":\"\xE2\x96\x81\"},", w.f);
        fputs("{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"\xE2\x96\x81\"}]}", w.f);
    } else {
        fputs("null", w.f);
    }
    fputs(",\n  \"pre_tokenizer\": ", w.f);
    if (spm) fputs("null", w.f);
    else write_pre_tokenizer(&w, t);
    fputs(",\n  \"post_processor\": ", w.f);
    if (ls_tokenizer_add_bos(t) && bos >= 0) {
        fputs("{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":", w.f);
        jw_piece(&w, t, bos);
        fputs(",\"type_id\":0}},{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],\"pair\":[{\"SpecialToken\":{\"id\":", w.f);
        jw_piece(&w, t, bos);
        fputs(",\"type_id\":0}},{\"Sequence\":{\"id\":\"A\",\"type_id\":0}},{\"SpecialToken\":{\"id\":", w.f);
        jw_piece(&w, t, bos);
        fputs(",\"type_id\":1}},{\"Sequence\":{\"id\":\"B\",\"type_id\":1}}],\"special_tokens\":{", w.f);
        jw_piece(&w, t, bos);
        fputs(":{\"id\":", w.f);
        jw_piece(&w, t, bos);
        fprintf(w.f, ",\"ids\":[%d],\"tokens\":[", bos);
        jw_piece(&w, t, bos);
        fputs("]}}}", w.f);
    } else if (spm) {
        fputs("null", w.f);
    } else {
        fputs("{\"type\":\"ByteLevel\",\"add_prefix_space\":true,\"trim_offsets\":false,\"use_regex\":true}", w.f);
    }
    fputs(",\n  \"decoder\": ", w.f);
    if (spm) {
        fputs("{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Replace\",\"pattern\":{\"String\":\"\xE2\x96\x81\"},"
              "\"content\":\" \"},{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"}",
              w.f);
        if (ls_tokenizer_add_space_prefix(t)) fputs(",{\"type\":\"Strip\",\"content\":\" \",\"start\":1,\"stop\":0}", w.f);
        fputs("]}", w.f);
    } else {
        fputs("{\"type\":\"ByteLevel\",\"add_prefix_space\":true,\"trim_offsets\":true,\"use_regex\":true}", w.f);
    }
    fputs(",\n  \"model\": {\"type\": \"BPE\", \"dropout\": null, \"unk_token\": ", w.f);
    if (unk >= 0) jw_piece(&w, t, unk);
    else fputs("null", w.f);
    fprintf(w.f,
            ", \"continuing_subword_prefix\": null, \"end_of_word_suffix\": null, \"fuse_unk\": %s, "
            "\"byte_fallback\": %s, \"ignore_merges\": %s,\n    \"vocab\": {",
            spm ? "true" : "false", spm ? "true" : "false", ls_tokenizer_ignore_merges(t) ? "true" : "false");
    for (int32_t i = 0; i < n; i++) {
        fputs(i ? ",\n    " : "\n    ", w.f);
        jw_piece(&w, t, i);
        fprintf(w.f, ": %d", i);
    }
    fputs("\n    },\n    \"merges\": [", w.f);
    if (spm) write_spm_merges(&w, t);
    else write_bpe_merges(&w, t);
    fputs("\n    ]\n  }\n}\n", w.f);
    bool io_bad = ferror(w.f) != 0;
    if (fclose(w.f) != 0) io_bad = true;
    if (w.bad) return ls_err_set(err, LS_ERR_UNSUPPORTED, "%s: a piece is not valid UTF-8 (JSON cannot hold it)", path);
    if (io_bad) return ls_err_set(err, LS_ERR_IO, "%s: write failed", path);
    return LS_OK;
}

ls_status tokjson_write_hf_dir(const ls_tokenizer *t, const char *dir, ls_err *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    ls_status s = tokjson_write(t, path, err);
    if (s != LS_OK) return s;
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    jw w = {fopen(path, "wb"), false};
    if (!w.f) return ls_err_set(err, LS_ERR_IO, "%s: cannot create", path);
    const char *keys[3] = {"bos_token", "eos_token", "unk_token"};
    int32_t ids[3] = {ls_tokenizer_bos(t), ls_tokenizer_eos(t), ls_tokenizer_unk(t)};
    fprintf(w.f, "{\n  \"add_bos_token\": %s,\n  \"add_eos_token\": %s,\n",
            ls_tokenizer_add_bos(t) ? "true" : "false", ls_tokenizer_add_eos(t) ? "true" : "false");
    for (int i = 0; i < 3; i++) {
        fprintf(w.f, "  \"%s\": ", keys[i]);
        if (ids[i] >= 0) jw_piece(&w, t, ids[i]);
        else fputs("null", w.f);
        fputs(",\n", w.f);
    }
    fputs("  \"clean_up_tokenization_spaces\": false,\n  \"model_max_length\": 131072,\n"
          "  \"tokenizer_class\": \"PreTrainedTokenizerFast\"\n}\n",
          w.f);
    bool io_bad = ferror(w.f) != 0;
    if (fclose(w.f) != 0) io_bad = true;
    if (w.bad) return ls_err_set(err, LS_ERR_UNSUPPORTED, "%s: a special token is not valid UTF-8", path);
    if (io_bad) return ls_err_set(err, LS_ERR_IO, "%s: write failed", path);
    return LS_OK;
}

bool tokjson_write_from_gguf(const gguf_ctx *vocab, const char *path) {
    ls_tokenizer *t;
    ls_err err;
    if (ls_tokenizer_from_gguf(vocab, &t, &err) != LS_OK) {
        fprintf(stderr, "tokjson_write_from_gguf: %s\n", err.msg);
        return false;
    }
    ls_status s = tokjson_write(t, path, &err);
    ls_tokenizer_free(t);
    if (s != LS_OK) {
        fprintf(stderr, "tokjson_write_from_gguf: %s\n", err.msg);
        return false;
    }
    return true;
}
