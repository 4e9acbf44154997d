/* tokenizer_json.c: loading a Hugging Face tokenizer.json (model.type BPE)
 * and the tokenizer_config.json / generation_config.json beside it.
 *
 * Supported shapes (the Llama family):
 *   Llama 2 style: model.byte_fallback, normalizer Prepend("▁") + Replace(" ",
 *     "▁") or a Metaspace pre-tokenizer -> LS_TOK_SPM. tokenizer.json has no
 *     piece scores, so a token's SPM score is minus the rank of the first
 *     merge producing it; tokens no merge produces are never merged into.
 *   Llama 3 / SmolLM2 style: pre_tokenizer Split(regex) / Digits / ByteLevel
 *     (in a Sequence, ByteLevel last) -> LS_TOK_BPE.
 * Everything is validated: a bad file gives LS_ERR_FORMAT naming the file and
 * the field, an unknown component LS_ERR_UNSUPPORTED. */
#include "tokenizer_internal.h"

#include <cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* settings from tokenizer_config.json / generation_config.json */
typedef struct hf_extra {
    const char *tc_name, *gc_name;
    char *bos_text, *eos_text;
    int add_bos;            /* -1 unset */
    int64_t bos_id, eos_id; /* -1 unset */
    int64_t *eog;           /* generation_config eos_token_id list */
    int n_eog;
} hf_extra;

typedef struct json_tok {
    const char *text;
    size_t len;
    bool added, special;
} json_tok;

static bool json_int(const cJSON *j, int64_t lo, int64_t hi, int64_t *out) {
    if (!cJSON_IsNumber(j)) return false;
    double d = j->valuedouble;
    if (!(d >= (double)lo && d <= (double)hi) || d != floor(d)) return false;
    *out = (int64_t)d;
    return true;
}

static const cJSON *obj_get(const cJSON *o, const char *key) {
    return cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;
}

static const char *obj_str(const cJSON *o, const char *key) {
    const cJSON *j = obj_get(o, key);
    return cJSON_IsString(j) ? j->valuestring : NULL;
}

/* a boolean field: absent/null -> def; anything else non-bool is an error */
static bool obj_bool(const cJSON *o, const char *key, bool def, bool *out) {
    const cJSON *j = obj_get(o, key);
    if (!j || cJSON_IsNull(j)) { *out = def; return true; }
    if (!cJSON_IsBool(j)) return false;
    *out = cJSON_IsTrue(j);
    return true;
}

typedef struct pre_info {
    bool byte_level;
    bool metaspace, meta_prefix;
    bool after_byte_level;   /* a component after ByteLevel (unsupported) */
    int n_regex;
    const char *regex[TOK_MAX_REGEX];
    char *owned[TOK_MAX_REGEX];
} pre_info;

static void pre_info_free(pre_info *p) {
    for (int i = 0; i < TOK_MAX_REGEX; i++) free(p->owned[i]);
}

static ls_status pre_add_regex(pre_info *pi, const char *re, char *owned, const char *name, const char *path,
                               ls_err *err) {
    if (pi->n_regex >= TOK_MAX_REGEX) {
        free(owned);
        return ls_err_set(err, LS_ERR_UNSUPPORTED, "%s: %s: more than %d pre-tokenizer splits", name, path,
                          TOK_MAX_REGEX);
    }
    pi->owned[pi->n_regex] = owned;
    pi->regex[pi->n_regex++] = re;
    return LS_OK;
}

/* a literal string as a PCRE2 pattern */
static char *regex_quote(const char *s) {
    size_t n = strlen(s);
    char *o = malloc(n * 2 + 1), *p = o;
    if (!o) return NULL;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x80 && !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == ' '))
            *p++ = '\\';
        *p++ = (char)c;
    }
    *p = 0;
    return o;
}

static ls_status parse_pretok(const cJSON *p, const char *path, pre_info *pi, const char *name, ls_err *err) {
    if (!p || cJSON_IsNull(p)) return LS_OK;
    const char *type = obj_str(p, "type");
    if (!type) return ls_err_set(err, LS_ERR_FORMAT, "%s: %s has no \"type\" string", name, path);
    if (pi->byte_level) pi->after_byte_level = true;
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *arr = obj_get(p, "pretokenizers");
        if (!cJSON_IsArray(arr))
            return ls_err_set(err, LS_ERR_FORMAT, "%s: %s.pretokenizers is not an array", name, path);
        if (pi->byte_level) pi->after_byte_level = false;
        int i = 0;
        const cJSON *e;
        cJSON_ArrayForEach(e, arr) {
            char sub[256];
            snprintf(sub, sizeof sub, "%.200s.pretokenizers[%d]", path, i++);
            ls_status s = parse_pretok(e, sub, pi, name, err);
            if (s != LS_OK) return s;
        }
        return LS_OK;
    }
    if (strcmp(type, "ByteLevel") == 0) {
        bool prefix, use_regex;
        if (!obj_bool(p, "add_prefix_space", false, &prefix) || !obj_bool(p, "use_regex", true, &use_regex))
            return ls_err_set(err, LS_ERR_FORMAT, "%s: %s: add_prefix_space/use_regex must be booleans", name, path);
        if (prefix)
            return ls_err_set(err, LS_ERR_UNSUPPORTED, "%s: %s: ByteLevel with add_prefix_space is not supported",
                              name, path);
        if (use_regex) {
            ls_status s = pre_add_regex(pi, tok_regex_gpt2, NULL, name, path, err);
            if (s != LS_OK) return s;
        }
        pi->byte_level = true;
        return LS_OK;
    }
    if (strcmp(type, "Split") == 0) {
        const cJSON *pat = obj_get(p, "pattern");
        const char *re = obj_str(pat, "Regex"), *lit = obj_str(pat, "String");
        if (!re && !lit)
            return ls_err_set(err, LS_ERR_FORMAT, "%s: %s.pattern needs a \"Regex\" or \"String\"", name, path);
        const char *behavior = obj_str(p, "behavior");
        bool invert;
        if (!obj_bool(p, "invert", false, &invert))
            return ls_err_set(err, LS_ERR_FORMAT, "%s: %s.invert is not a boolean", name, path);
        if (!behavior || strcmp(behavior, "Isolated") != 0 || invert)
            return ls_err_set(err, LS_ERR_UNSUPPORTED,
                              "%s: %s: only Split with behavior \"Isolated\" and invert false is supported", name, path);
        if (re) return pre_add_regex(pi, re, NULL, name, path, err);
        char *q = regex_quote(lit);
        if (!q) return ls_err_set(err, LS_ERR_NOMEM, "%s: out of memory", name);
        return pre_add_regex(pi, q, q, name, path, err);
    }
    if (strcmp(type, "Digits") == 0) {
        bool individual;
        if (!obj_bool(p, "individual_digits", false, &individual))
            return ls_err_set(err, LS_ERR_FORMAT, "%s: %s.individual_digits is not a boolean", name, path);
        return pre_add_regex(pi, individual ? "\\p{N}" : "\\p{N}+", NULL, name, path, err);
    }
    if (strcmp(type, "Metaspace") == 0) {
        const char *rep = obj_str(p, "replacement");
        if (rep && strcmp(rep, "\xE2\x96\x81") != 0)
            return ls_err_set(err, LS_ERR_UNSUPPORTED, "%s: %s: Metaspace replacement must be \"\xE2\x96\x81\"", name,
                              path);
        bool split;
        if (!obj_bool(p, "split", false, &split))
            return ls_err_set(err, LS_ERR_FORMAT, "%s: %s.split is not a boolean", name, path);
        if (split)
            return ls_err_set(err, LS_ERR_UNSUPPORTED, "%s: %s: Metaspace with split true is not supported", name,
                              path);
        const char *scheme = obj_str(p, "prepend_scheme");
        bool prefix;
        if (scheme) prefix = strcmp(scheme, "never") != 0;
        else if (!obj_bool(p, "add_prefix_space", true, &prefix))
            return ls_err_set(err, LS_ERR_FORMAT, "%s: %s.add_prefix_space is not a boolean", name, path);
        pi->metaspace = true;
        pi->meta_prefix = prefix;
        return LS_OK;
    }
    return ls_err_set(err, LS_ERR_UNSUPPORTED,
                      "%s: %s: pre-tokenizer type \"%.60s\" is not supported (Sequence, Split, Digits, ByteLevel, "
                      "Metaspace are)",
                      name, path, type);
}

typedef struct norm_info {
    bool prepend, replace, any;
} norm_info;

static ls_status parse_normalizer(const cJSON *p, const char *path, norm_info *ni, const char *name, ls_err *err) {
    if (!p || cJSON_IsNull(p)) return LS_OK;
    const char *type = obj_str(p, "type");
    if (!type) return ls_err_set(err, LS_ERR_FORMAT, "%s: %s has no \"type\" string", name, path);
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *arr = obj_get(p, "normalizers");
        if (!cJSON_IsArray(arr))
            return ls_err_set(err, LS_ERR_FORMAT, "%s: %s.normalizers is not an array", name, path);
        int i = 0;
        const cJSON *e;
        cJSON_ArrayForEach(e, arr) {
            char sub[256];
            snprintf(sub, sizeof sub, "%.200s.normalizers[%d]", path, i++);
            ls_status s = parse_normalizer(e, sub, ni, name, err);
            if (s != LS_OK) return s;
        }
        return LS_OK;
    }
    ni->any = true;
    if (strcmp(type, "Prepend") == 0) {
        const char *pp = obj_str(p, "prepend");
        if (!pp || strcmp(pp, "\xE2\x96\x81") != 0 || ni->replace)
            return ls_err_set(err, LS_ERR_UNSUPPORTED,
                              "%s: %s: only Prepend(\"\xE2\x96\x81\") before Replace is supported", name, path);
        ni->prepend = true;
        return LS_OK;
    }
    if (strcmp(type, "Replace") == 0) {
        const char *from = obj_str(obj_get(p, "pattern"), "String"), *to = obj_str(p, "content");
        if (!from || !to || strcmp(from, " ") != 0 || strcmp(to, "\xE2\x96\x81") != 0)
            return ls_err_set(err, LS_ERR_UNSUPPORTED,
                              "%s: %s: only Replace(\" \" -> \"\xE2\x96\x81\") is supported", name, path);
        ni->replace = true;
        return LS_OK;
    }
    return ls_err_set(err, LS_ERR_UNSUPPORTED,
                      "%s: %s: normalizer type \"%.60s\" is not supported (Prepend, Replace, Sequence are)", name,
                      path, type);
}

/* first/last SpecialToken of a TemplateProcessing "single" template */
static void parse_post(const cJSON *p, const char **bos, const char **eos) {
    const char *type = obj_str(p, "type");
    if (!type) return;
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *e;
        const cJSON *arr = obj_get(p, "processors");
        if (cJSON_IsArray(arr)) cJSON_ArrayForEach(e, arr) parse_post(e, bos, eos);
        return;
    }
    if (strcmp(type, "TemplateProcessing") != 0) return;
    const cJSON *single = obj_get(p, "single");
    if (!cJSON_IsArray(single)) return;
    int n = cJSON_GetArraySize(single), i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, single) {
        const char *id = obj_str(obj_get(e, "SpecialToken"), "id");
        if (id && i == 0) *bos = id;
        if (id && i == n - 1 && n > 1) *eos = id;
        i++;
    }
}

static char *tc_token(const cJSON *tc, const char *key) {
    const cJSON *j = obj_get(tc, key);
    if (cJSON_IsString(j)) return strdup(j->valuestring);
    const char *c = obj_str(j, "content");
    return c ? strdup(c) : NULL;
}

static ls_status build(const cJSON *root, const char *name, const hf_extra *ex, ls_tokenizer **out, ls_err *err) {
    ls_status s = LS_OK;
    json_tok *toks = NULL;
    ls_tokenizer *t = NULL;
    pre_info pi = {0};
    norm_info ni = {0};
    if (!cJSON_IsObject(root)) return ls_err_set(err, LS_ERR_FORMAT, "%s: the top level is not a JSON object", name);
    const cJSON *model = obj_get(root, "model");
    if (!cJSON_IsObject(model)) return ls_err_set(err, LS_ERR_FORMAT, "%s: no \"model\" object", name);
    const char *mtype = obj_str(model, "type");
    if (mtype && strcmp(mtype, "BPE") != 0)
        return ls_err_set(err, LS_ERR_UNSUPPORTED, "%s: model.type \"%.40s\" is not supported (only BPE)", name, mtype);
    const cJSON *vocab = obj_get(model, "vocab");
    if (!cJSON_IsObject(vocab)) return ls_err_set(err, LS_ERR_FORMAT, "%s: model.vocab is missing or not an object", name);
    const cJSON *merges = obj_get(model, "merges");
    if (!cJSON_IsArray(merges))
        return ls_err_set(err, LS_ERR_FORMAT, "%s: model.merges is missing or not an array", name);
    const char *cs = obj_str(model, "continuing_subword_prefix"), *ews = obj_str(model, "end_of_word_suffix");
    if ((cs && *cs) || (ews && *ews))
        return ls_err_set(err, LS_ERR_UNSUPPORTED,
                          "%s: model.continuing_subword_prefix / end_of_word_suffix are not supported", name);
    bool byte_fallback, ignore_merges;
    if (!obj_bool(model, "byte_fallback", false, &byte_fallback) ||
        !obj_bool(model, "ignore_merges", false, &ignore_merges))
        return ls_err_set(err, LS_ERR_FORMAT, "%s: model.byte_fallback / model.ignore_merges must be booleans", name);
    const cJSON *unkj = obj_get(model, "unk_token");
    if (unkj && !cJSON_IsNull(unkj) && !cJSON_IsString(unkj))
        return ls_err_set(err, LS_ERR_FORMAT, "%s: model.unk_token is not a string or null", name);
    const cJSON *added = obj_get(root, "added_tokens");
    if (added && !cJSON_IsNull(added) && !cJSON_IsArray(added))
        return ls_err_set(err, LS_ERR_FORMAT, "%s: added_tokens is not an array", name);

    /* ids */
    int64_t max_id = -1;
    const cJSON *e;
    cJSON_ArrayForEach(e, vocab) {
        int64_t id;
        if (!json_int(e, 0, TOK_MAX_VOCAB - 1, &id))
            return ls_err_set(err, LS_ERR_FORMAT, "%s: model.vocab[\"%.40s\"]: id is not an integer in 0..%d", name,
                              e->string ? e->string : "", TOK_MAX_VOCAB - 1);
        if (id > max_id) max_id = id;
    }
    int ai = 0;
    if (cJSON_IsArray(added)) {
        cJSON_ArrayForEach(e, added) {
            int64_t id;
            const char *content = obj_str(e, "content");
            if (!json_int(obj_get(e, "id"), 0, TOK_MAX_VOCAB - 1, &id))
                return ls_err_set(err, LS_ERR_FORMAT, "%s: added_tokens[%d].id is not an integer in 0..%d", name, ai,
                                  TOK_MAX_VOCAB - 1);
            if (!content || !*content)
                return ls_err_set(err, LS_ERR_FORMAT, "%s: added_tokens[%d].content is missing or empty", name, ai);
            if (id > max_id) max_id = id;
            ai++;
        }
    }
    if (max_id < 0) return ls_err_set(err, LS_ERR_FORMAT, "%s: model.vocab is empty", name);
    const int32_t n = (int32_t)(max_id + 1);
    toks = calloc((size_t)n, sizeof *toks);
    if (!toks) return ls_err_set(err, LS_ERR_NOMEM, "%s: out of memory for %d tokens", name, n);
    cJSON_ArrayForEach(e, vocab) {
        int32_t id = (int32_t)e->valuedouble;
        if (toks[id].text) {
            s = ls_err_set(err, LS_ERR_FORMAT, "%s: model.vocab: id %d is given to both \"%.40s\" and \"%.40s\"", name,
                           id, toks[id].text, e->string ? e->string : "");
            goto fail;
        }
        toks[id].text = e->string ? e->string : "";
        toks[id].len = strlen(toks[id].text);
    }
    ai = 0;
    if (cJSON_IsArray(added)) {
        cJSON_ArrayForEach(e, added) {
            int32_t id = (int32_t)obj_get(e, "id")->valuedouble;
            const char *content = obj_str(e, "content");
            bool special;
            if (!obj_bool(e, "special", false, &special)) {
                s = ls_err_set(err, LS_ERR_FORMAT, "%s: added_tokens[%d].special is not a boolean", name, ai);
                goto fail;
            }
            if (toks[id].text && strcmp(toks[id].text, content) != 0) {
                s = ls_err_set(err, LS_ERR_FORMAT,
                               "%s: added_tokens[%d]: id %d is \"%.40s\" here but \"%.40s\" in model.vocab", name, ai,
                               id, content, toks[id].text);
                goto fail;
            }
            toks[id].text = content;
            toks[id].len = strlen(content);
            toks[id].added = true;
            toks[id].special = special;
            ai++;
        }
    }
    for (int32_t i = 0; i < n; i++) {
        if (!toks[i].text) {
            s = ls_err_set(err, LS_ERR_FORMAT,
                           "%s: model.vocab / added_tokens: no token has id %d (ids must be 0..%d without gaps)", name,
                           i, n - 1);
            goto fail;
        }
    }

    /* components */
    if ((s = parse_normalizer(obj_get(root, "normalizer"), "normalizer", &ni, name, err)) != LS_OK) goto fail;
    if ((s = parse_pretok(obj_get(root, "pre_tokenizer"), "pre_tokenizer", &pi, name, err)) != LS_OK) goto fail;
    if (pi.after_byte_level) {
        s = ls_err_set(err, LS_ERR_UNSUPPORTED, "%s: pre_tokenizer: splits after ByteLevel are not supported", name);
        goto fail;
    }
    ls_tok_kind kind;
    if (byte_fallback || (!pi.byte_level && (ni.replace || pi.metaspace))) kind = LS_TOK_SPM;
    else if (pi.byte_level) kind = LS_TOK_BPE;
    else {
        s = ls_err_set(err, LS_ERR_UNSUPPORTED,
                       "%s: cannot tell the tokenizer kind: expected model.byte_fallback (SentencePiece style) or a "
                       "ByteLevel pre_tokenizer (GPT-2 style)",
                       name);
        goto fail;
    }
    if (kind == LS_TOK_SPM) {
        if (pi.byte_level || pi.n_regex > 0) {
            s = ls_err_set(err, LS_ERR_UNSUPPORTED,
                           "%s: pre_tokenizer: byte_fallback with ByteLevel/Split pre-tokenizers is not supported", name);
            goto fail;
        }
        if (!ni.replace && !pi.metaspace) {
            s = ls_err_set(err, LS_ERR_UNSUPPORTED,
                           "%s: byte_fallback model without a Replace(\" \" -> \"\xE2\x96\x81\") normalizer or Metaspace "
                           "pre_tokenizer is not supported",
                           name);
            goto fail;
        }
    } else if (ni.any) {
        s = ls_err_set(err, LS_ERR_UNSUPPORTED, "%s: normalizer: a ByteLevel tokenizer with a normalizer is not supported",
                       name);
        goto fail;
    }

    t = tok_new(kind, n, name);
    if (!t) { s = ls_err_set(err, LS_ERR_NOMEM, "%s: out of memory", name); goto fail; }
    const char *unk_text = cJSON_IsString(unkj) ? unkj->valuestring : NULL;
    for (int32_t i = 0; i < n; i++) {
        int type = LS_TOKT_NORMAL;
        uint8_t b;
        if (toks[i].added) type = toks[i].special ? LS_TOKT_CONTROL : LS_TOKT_USER_DEFINED;
        else if (kind == LS_TOK_SPM && byte_fallback && tok_parse_byte_token(toks[i].text, toks[i].len, &b))
            type = LS_TOKT_BYTE;
        /* SentencePiece marks <unk> as unknown; GGUF converters keep a
         * byte-level model's unk_token (e.g. <|endoftext|>) as control */
        if (kind == LS_TOK_SPM && unk_text && strcmp(toks[i].text, unk_text) == 0) type = LS_TOKT_UNKNOWN;
        if (!tok_set_token(t, i, toks[i].text, toks[i].len, kind == LS_TOK_SPM ? -INFINITY : 0.0f, type)) {
            s = ls_err_set(err, LS_ERR_NOMEM, "%s: out of memory", name);
            goto fail;
        }
    }
    if (!tok_index(t)) { s = ls_err_set(err, LS_ERR_NOMEM, "%s: out of memory", name); goto fail; }
    if (unk_text) {
        t->unk = tok_lookup(t, unk_text, strlen(unk_text));
        if (t->unk < 0) {
            s = ls_err_set(err, LS_ERR_FORMAT, "%s: model.unk_token \"%.40s\" is not in model.vocab", name, unk_text);
            goto fail;
        }
    }

    /* merges */
    int32_t rank = 0;
    cJSON_ArrayForEach(e, merges) {
        const char *a = NULL, *b = NULL;
        size_t la = 0, lb = 0;
        if (cJSON_IsString(e)) {
            const char *m = e->valuestring, *sp = strchr(m, ' ');
            if (sp && sp > m && sp[1] && !strchr(sp + 1, ' ')) {
                a = m;
                la = (size_t)(sp - m);
                b = sp + 1;
                lb = strlen(b);
            }
        } else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 && cJSON_IsString(e->child) &&
                   cJSON_IsString(e->child->next)) {
            a = e->child->valuestring;
            b = e->child->next->valuestring;
            la = strlen(a);
            lb = strlen(b);
        }
        if (!a || !la || !lb) {
            s = ls_err_set(err, LS_ERR_FORMAT, "%s: model.merges[%d] is not \"a b\" or [\"a\", \"b\"]", name, rank);
            goto fail;
        }
        int32_t ia = tok_lookup(t, a, la), ib = tok_lookup(t, b, lb);
        if (ia < 0 || ib < 0) {
            s = ls_err_set(err, LS_ERR_FORMAT, "%s: model.merges[%d]: \"%.*s\" is not in model.vocab", name, rank,
                           (int)((ia < 0 ? la : lb) > 40 ? 40 : (ia < 0 ? la : lb)), ia < 0 ? a : b);
            goto fail;
        }
        char stackbuf[512];
        char *cat = la + lb <= sizeof stackbuf ? stackbuf : malloc(la + lb);
        if (!cat) { s = ls_err_set(err, LS_ERR_NOMEM, "%s: out of memory", name); goto fail; }
        memcpy(cat, a, la);
        memcpy(cat + la, b, lb);
        int32_t ir = tok_lookup(t, cat, la + lb);
        if (cat != stackbuf) free(cat);
        if (ir < 0) {
            s = ls_err_set(err, LS_ERR_FORMAT, "%s: model.merges[%d]: the merge of \"%.40s\" and \"%.40s\" is not in model.vocab",
                           name, rank, t->sym[ia], t->sym[ib]);
            goto fail;
        }
        if (kind == LS_TOK_BPE) {
            if (!tok_add_merge(t, ia, ib)) { s = ls_err_set(err, LS_ERR_NOMEM, "%s: out of memory", name); goto fail; }
        } else if (t->score[ir] == -INFINITY) {
            t->score[ir] = -(float)rank;
        }
        rank++;
    }
    if (kind == LS_TOK_SPM) {
        for (int32_t i = 0; i < n; i++)
            if (t->score[i] == -INFINITY) t->flags[i] |= TOKF_NOMERGE;
        t->add_space_prefix = ni.prepend || (pi.metaspace && pi.meta_prefix);
        free(t->pre);
        t->pre = strdup("default");
    } else {
        t->ignore_merges = ignore_merges;
        for (int i = 0; i < pi.n_regex; i++)
            if ((s = tok_add_regex(t, pi.regex[i], err)) != LS_OK) goto fail;
        const char *pre = "custom";
        if (pi.n_regex == 1 && strcmp(pi.regex[0], tok_regex_gpt2) == 0) pre = "gpt2";
        else if (pi.n_regex == 2 && strcmp(pi.regex[0], "\\p{N}") == 0 && strcmp(pi.regex[1], tok_regex_gpt2) == 0)
            pre = "smollm";
        else if (pi.n_regex == 1 && (strcmp(pi.regex[0], tok_regex_llama3) == 0 || strcmp(pi.regex[0], tok_regex_llama3_hf) == 0))
            pre = "llama-bpe";
        free(t->pre);
        t->pre = strdup(pre);
    }
    if (!t->pre) { s = ls_err_set(err, LS_ERR_NOMEM, "%s: out of memory", name); goto fail; }

    /* BOS / EOS: the post-processor template, else well-known texts */
    const char *tbos = NULL, *teos = NULL;
    parse_post(obj_get(root, "post_processor"), &tbos, &teos);
    if (tbos) {
        t->bos = tok_lookup(t, tbos, strlen(tbos));
        t->add_bos = t->bos >= 0;
    }
    if (teos) {
        t->eos = tok_lookup(t, teos, strlen(teos));
        t->add_eos = t->eos >= 0;
    }
    static const char *const bos_names[] = {"<s>", "<|begin_of_text|>", "<|startoftext|>", NULL};
    static const char *const eos_names[] = {"</s>", "<|end_of_text|>", "<|endoftext|>", "<|im_end|>", "<|eot_id|>", NULL};
    for (int i = 0; t->bos < 0 && bos_names[i]; i++) t->bos = tok_lookup(t, bos_names[i], strlen(bos_names[i]));
    for (int i = 0; t->eos < 0 && eos_names[i]; i++) t->eos = tok_lookup(t, eos_names[i], strlen(eos_names[i]));

    if (ex) {
        if (ex->bos_text) {
            int32_t id = tok_lookup(t, ex->bos_text, strlen(ex->bos_text));
            if (id < 0 || id >= n) {
                s = ls_err_set(err, LS_ERR_FORMAT, "%s: bos_token \"%.40s\" is not in the vocabulary", ex->tc_name,
                               ex->bos_text);
                goto fail;
            }
            t->bos = id;
        }
        if (ex->eos_text) {
            int32_t id = tok_lookup(t, ex->eos_text, strlen(ex->eos_text));
            if (id < 0 || id >= n) {
                s = ls_err_set(err, LS_ERR_FORMAT, "%s: eos_token \"%.40s\" is not in the vocabulary", ex->tc_name,
                               ex->eos_text);
                goto fail;
            }
            t->eos = id;
        }
        if (ex->add_bos >= 0) t->add_bos = ex->add_bos;
        if (ex->bos_id >= n || ex->eos_id >= n) {
            s = ls_err_set(err, LS_ERR_FORMAT, "%s: bos_token_id/eos_token_id out of range (vocabulary has %d tokens)",
                           ex->gc_name, n);
            goto fail;
        }
        if (ex->bos_id >= 0) t->bos = (int32_t)ex->bos_id;
        if (ex->eos_id >= 0) t->eos = (int32_t)ex->eos_id;
        for (int i = 0; i < ex->n_eog; i++) {
            if (ex->eog[i] >= n) {
                s = ls_err_set(err, LS_ERR_FORMAT, "%s: eos_token_id %lld out of range (vocabulary has %d tokens)",
                               ex->gc_name, (long long)ex->eog[i], n);
                goto fail;
            }
            t->flags[ex->eog[i]] |= TOKF_EOG;
        }
    }
    if ((s = tok_finish(t, err)) != LS_OK) goto fail;
    free(toks);
    pre_info_free(&pi);
    *out = t;
    return LS_OK;
fail:
    free(toks);
    pre_info_free(&pi);
    ls_tokenizer_free(t);
    return s;
}

static ls_status parse_doc(const char *json, size_t len, const char *name, cJSON **out, ls_err *err) {
    const char *end = NULL;
    *out = cJSON_ParseWithLengthOpts(json, len, &end, false);
    if (!*out) {
        size_t at = end && end >= json && end <= json + len ? (size_t)(end - json) : 0;
        return ls_err_set(err, LS_ERR_FORMAT, "%s: malformed JSON near byte %zu", name, at);
    }
    return LS_OK;
}

ls_status ls_tokenizer_from_json(const char *json, size_t len, const char *name, ls_tokenizer **out, ls_err *err) {
    *out = NULL;
    if (!name) name = "tokenizer.json";
    if (!json) return ls_err_set(err, LS_ERR_INVALID, "%s: no data", name);
    cJSON *root;
    ls_status s = parse_doc(json, len, name, &root, err);
    if (s != LS_OK) return s;
    s = build(root, name, NULL, out, err);
    cJSON_Delete(root);
    return s;
}

char *ls_read_all(const char *path, size_t *len, ls_status *st, ls_err *err) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        *st = errno == ENOENT ? LS_ERR_MISSING : LS_ERR_IO;
        ls_err_set(err, *st, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (n < cap) break;
        cap *= 2;
        char *nb = realloc(buf, cap);
        if (!nb) { free(buf); buf = NULL; }
        else buf = nb;
    }
    bool bad = ferror(f);
    fclose(f);
    if (!buf || bad) {
        free(buf);
        *st = buf ? LS_ERR_IO : LS_ERR_NOMEM;
        ls_err_set(err, *st, "%s: cannot read", path);
        return NULL;
    }
    buf[n] = 0; /* n < cap: the loop ends on a short read */
    *len = n;
    *st = LS_OK;
    return buf;
}

static ls_status read_config(const char *path, hf_extra *ex, bool generation, ls_err *err) {
    size_t len;
    ls_status s;
    char *text = ls_read_all(path, &len, &s, err);
    if (s == LS_ERR_MISSING) return LS_OK; /* optional */
    if (s != LS_OK) return s;
    cJSON *root;
    s = parse_doc(text, len, path, &root, err);
    free(text);
    if (s != LS_OK) return s;
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return ls_err_set(err, LS_ERR_FORMAT, "%s: the top level is not a JSON object", path);
    }
    if (generation) {
        const cJSON *b = obj_get(root, "bos_token_id"), *e = obj_get(root, "eos_token_id");
        if (b && !cJSON_IsNull(b) && !json_int(b, 0, TOK_MAX_VOCAB - 1, &ex->bos_id))
            s = ls_err_set(err, LS_ERR_FORMAT, "%s: bos_token_id is not a token id", path);
        if (s == LS_OK && cJSON_IsArray(e)) {
            int n = cJSON_GetArraySize(e), i = 0;
            ex->eog = calloc((size_t)(n > 0 ? n : 1), sizeof(int64_t));
            if (!ex->eog) s = ls_err_set(err, LS_ERR_NOMEM, "%s: out of memory", path);
            const cJSON *x;
            cJSON_ArrayForEach(x, e) {
                if (s != LS_OK) break;
                if (!json_int(x, 0, TOK_MAX_VOCAB - 1, &ex->eog[i]))
                    s = ls_err_set(err, LS_ERR_FORMAT, "%s: eos_token_id[%d] is not a token id", path, i);
                i++;
            }
            if (s == LS_OK) {
                ex->n_eog = n;
                if (n > 0) ex->eos_id = ex->eog[0];
            }
        } else if (s == LS_OK && e && !cJSON_IsNull(e) && !json_int(e, 0, TOK_MAX_VOCAB - 1, &ex->eos_id)) {
            s = ls_err_set(err, LS_ERR_FORMAT, "%s: eos_token_id is not a token id or a list of them", path);
        }
    } else {
        ex->bos_text = tc_token(root, "bos_token");
        ex->eos_text = tc_token(root, "eos_token");
        const cJSON *ab = obj_get(root, "add_bos_token");
        if (cJSON_IsBool(ab)) ex->add_bos = cJSON_IsTrue(ab);
        else if (ab && !cJSON_IsNull(ab)) s = ls_err_set(err, LS_ERR_FORMAT, "%s: add_bos_token is not a boolean", path);
    }
    cJSON_Delete(root);
    return s;
}

ls_status ls_tokenizer_from_hf_dir(const char *dir, ls_tokenizer **out, ls_err *err) {
    *out = NULL;
    size_t dl = strlen(dir);
    char *tj = malloc(dl + 32), *tc = malloc(dl + 32), *gc = malloc(dl + 32);
    hf_extra ex = {.add_bos = -1, .bos_id = -1, .eos_id = -1};
    ls_status s = LS_OK;
    char *text = NULL;
    cJSON *root = NULL;
    if (!tj || !tc || !gc) { s = ls_err_set(err, LS_ERR_NOMEM, "out of memory"); goto done; }
    sprintf(tj, "%s/tokenizer.json", dir);
    sprintf(tc, "%s/tokenizer_config.json", dir);
    sprintf(gc, "%s/generation_config.json", dir);
    ex.tc_name = tc;
    ex.gc_name = gc;
    size_t len;
    text = ls_read_all(tj, &len, &s, err);
    if (s == LS_ERR_MISSING) {
        s = ls_err_set(err, LS_ERR_MISSING, "%s: missing (a Hugging Face model directory needs tokenizer.json)", tj);
        goto done;
    }
    if (s != LS_OK) goto done;
    if ((s = parse_doc(text, len, tj, &root, err)) != LS_OK) goto done;
    if ((s = read_config(tc, &ex, false, err)) != LS_OK) goto done;
    if ((s = read_config(gc, &ex, true, err)) != LS_OK) goto done;
    s = build(root, tj, &ex, out, err);
done:
    cJSON_Delete(root);
    free(text);
    free(ex.bos_text);
    free(ex.eos_text);
    free(ex.eog);
    free(tj);
    free(tc);
    free(gc);
    return s;
}
