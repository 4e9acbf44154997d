/* model.c: load a Llama-family model from a GGUF file or a Hugging Face
 * directory (config.json + *.safetensors + tokenizer.json) into one
 * ls_model. Hyperparameters are validated against each other and every
 * tensor's type and shape is checked before use, so a bad file ends here
 * with a message naming the file and the tensor or key at fault. */
#include "model_internal.h"
#include "tokenizer_internal.h"

#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_LAYERS 4096

static ls_status load_layers(ls_model *m, const gguf_ctx *g, const st_set *s, const char *path, ls_err *err);

static ls_status tensor_to_weight(const char *file, const char *name, ls_type type,
                                  int64_t rows, int64_t cols, const void *data,
                                  int64_t want_rows, int64_t want_cols, ls_weight *w,
                                  ls_err *err) {
    if (rows != want_rows || cols != want_cols)
        return ls_err_set(err, LS_ERR_FORMAT,
                          "%s: tensor '%s' has shape [%lld rows x %lld cols], expected [%lld x %lld]",
                          file, name, (long long)rows, (long long)cols,
                          (long long)want_rows, (long long)want_cols);
    if (cols % ls_type_block_elems(type) != 0)
        return ls_err_set(err, LS_ERR_FORMAT, "%s: tensor '%s': row length %lld is not a multiple of the %s block size",
                          file, name, (long long)cols, ls_type_name(type));
    w->type = type;
    w->rows = rows;
    w->cols = cols;
    w->data = data;
    return LS_OK;
}

/* copy a 1-D F32/F16/BF16 tensor of n elements into a new f32 array */
static ls_status vec_to_f32(const char *file, const char *name, ls_type type, int64_t n_have,
                            const void *data, int64_t n, float **out, ls_err *err) {
    if (n_have != n)
        return ls_err_set(err, LS_ERR_FORMAT, "%s: tensor '%s' has %lld elements, expected %lld",
                          file, name, (long long)n_have, (long long)n);
    float *v = malloc(sizeof(float) * (size_t)n);
    if (!v) return ls_err_set(err, LS_ERR_NOMEM, "%s: out of memory", file);
    const uint8_t *p = data;
    for (int64_t i = 0; i < n; i++) {
        switch (type) {
        case LS_TYPE_F32: memcpy(&v[i], p + 4 * i, 4); break;
        case LS_TYPE_F16: { uint16_t h; memcpy(&h, p + 2 * i, 2); v[i] = ls_f16_to_f32(h); break; }
        case LS_TYPE_BF16: { uint16_t h; memcpy(&h, p + 2 * i, 2); v[i] = ls_bf16_to_f32(h); break; }
        default:
            free(v);
            return ls_err_set(err, LS_ERR_UNSUPPORTED, "%s: tensor '%s' has type %s; norm vectors must be F32, F16 or BF16",
                              file, name, ls_type_name(type));
        }
    }
    *out = v;
    return LS_OK;
}

static ls_status check_config(const char *file, ls_config *c, ls_err *err) {
#define NEED(cond, ...) do { if (!(cond)) return ls_err_set(err, LS_ERR_FORMAT, __VA_ARGS__); } while (0)
    NEED(c->n_layers >= 1 && c->n_layers <= MAX_LAYERS, "%s: layer count %d is out of range [1, %d]", file, c->n_layers, MAX_LAYERS);
    NEED(c->dim >= 1 && c->dim <= 65536, "%s: hidden size %d is out of range", file, c->dim);
    NEED(c->n_heads >= 1 && c->n_heads <= 1024, "%s: head count %d is out of range", file, c->n_heads);
    NEED(c->n_kv_heads >= 1 && c->n_kv_heads <= c->n_heads && c->n_heads % c->n_kv_heads == 0,
         "%s: KV head count %d must divide the head count %d", file, c->n_kv_heads, c->n_heads);
    NEED(c->head_dim >= 2 && c->head_dim % 2 == 0 && c->head_dim <= 1024, "%s: head dimension %d must be even and <= 1024", file, c->head_dim);
    NEED(c->ffn_dim >= 1 && c->ffn_dim <= 1 << 20, "%s: feed-forward size %d is out of range", file, c->ffn_dim);
    NEED(c->n_vocab >= 1 && c->n_vocab <= 1 << 24, "%s: vocabulary size %d is out of range", file, c->n_vocab);
    NEED(c->norm_eps > 0 && c->norm_eps < 1, "%s: RMS norm epsilon %g is out of range (0, 1)", file, (double)c->norm_eps);
    NEED(c->rope_theta > 0 && isfinite(c->rope_theta), "%s: rope theta %g must be positive", file, (double)c->rope_theta);
    if (c->ctx_train <= 0) c->ctx_train = 4096;
#undef NEED
    return LS_OK;
}

/* llama3 rope scaling: per-frequency divisors, as Meta / Hugging Face define them */
static float *llama3_rope_factors(int head_dim, float theta, float factor, float low_ff,
                                  float high_ff, float orig_ctx) {
    int n = head_dim / 2;
    float *f = malloc(sizeof(float) * (size_t)n);
    if (!f) return NULL;
    const double low_wavelen = orig_ctx / low_ff;
    const double high_wavelen = orig_ctx / high_ff;
    for (int i = 0; i < n; i++) {
        double freq = 1.0 / pow(theta, (2.0 * i) / head_dim);
        double wavelen = 2 * M_PI / freq;
        if (wavelen < high_wavelen) {
            f[i] = 1.0f;
        } else if (wavelen > low_wavelen) {
            f[i] = factor;
        } else {
            double smooth = (orig_ctx / wavelen - low_ff) / (high_ff - low_ff);
            f[i] = (float)(1.0 / ((1 - smooth) / factor + smooth));
        }
    }
    return f;
}

/* ------------------------------------------------------------------ GGUF */

static ls_status gguf_weight(const gguf_ctx *g, const char *name, int64_t rows, int64_t cols,
                             bool required, ls_weight *w, ls_err *err) {
    const gguf_tensor_info *t = gguf_find_tensor(g, name);
    if (!t) {
        if (!required) return LS_ERR_MISSING;
        return ls_err_set(err, LS_ERR_MISSING, "%s: required tensor '%s' is missing", g->path, name);
    }
    if (t->n_dims != 2)
        return ls_err_set(err, LS_ERR_FORMAT, "%s: tensor '%s' has %u dimensions, expected 2", g->path, name, t->n_dims);
    return tensor_to_weight(g->path, name, t->type, t->ne[1], t->ne[0], t->data, rows, cols, w, err);
}

static ls_status gguf_vec(const gguf_ctx *g, const char *name, int64_t n, float **out, ls_err *err) {
    const gguf_tensor_info *t = gguf_find_tensor(g, name);
    if (!t) return ls_err_set(err, LS_ERR_MISSING, "%s: required tensor '%s' is missing", g->path, name);
    int64_t cnt = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
    return vec_to_f32(g->path, name, t->type, cnt, t->data, n, out, err);
}

static ls_status load_gguf(ls_model *m, const char *path, ls_err *err) {
    ls_status st = gguf_ctx_init_from_file(path, &m->gguf, err);
    if (st != LS_OK) return st;
    const gguf_ctx *g = m->gguf;
    ls_config *c = &m->cfg;

    gguf_str arch;
    if ((st = gguf_get_str(g, "general.architecture", &arch, true, err)) != LS_OK) return st;
    if (!gguf_str_eq(arch, "llama"))
        return ls_err_set(err, LS_ERR_UNSUPPORTED, "%s: architecture '%.*s' is not supported (only 'llama': Llama 2/3, CodeLlama, SmolLM2)",
                          path, (int)(arch.len > 64 ? 64 : arch.len), arch.ptr);
    snprintf(c->arch, sizeof c->arch, "llama");
    gguf_str name;
    if (gguf_get_str(g, "general.name", &name, false, NULL) == LS_OK)
        snprintf(c->name, sizeof c->name, "%.*s", (int)(name.len > 127 ? 127 : name.len), name.ptr);

    uint32_t u;
    float f;
#define GET_U32(key, dst, req) do { st = gguf_get_u32(g, key, &u, req, err); \
        if (st == LS_OK) { if (u > INT32_MAX) return ls_err_set(err, LS_ERR_FORMAT, "%s: %s = %u is too large", path, key, u); (dst) = (int32_t)u; } \
        else if (st != LS_ERR_MISSING || (req)) return st; } while (0)
    GET_U32("llama.block_count", c->n_layers, true);
    GET_U32("llama.embedding_length", c->dim, true);
    GET_U32("llama.feed_forward_length", c->ffn_dim, true);
    GET_U32("llama.attention.head_count", c->n_heads, true);
    c->n_kv_heads = c->n_heads;
    GET_U32("llama.attention.head_count_kv", c->n_kv_heads, false);
    c->ctx_train = 0;
    GET_U32("llama.context_length", c->ctx_train, false);
#undef GET_U32
    c->rope_theta = 10000.0f;
    st = gguf_get_f32(g, "llama.rope.freq_base", &f, false, err);
    if (st == LS_OK) c->rope_theta = f; else if (st != LS_ERR_MISSING) return st;
    c->norm_eps = 1e-5f;
    st = gguf_get_f32(g, "llama.attention.layer_norm_rms_epsilon", &f, true, err);
    if (st == LS_OK) c->norm_eps = f; else return st;
    if (c->n_heads <= 0 || c->dim % c->n_heads != 0)
        return ls_err_set(err, LS_ERR_FORMAT, "%s: embedding length %d is not a multiple of the head count %d", path, c->dim, c->n_heads);
    c->head_dim = c->dim / c->n_heads;
    uint32_t kl;
    st = gguf_get_u32(g, "llama.attention.key_length", &kl, false, err);
    if (st == LS_OK) c->head_dim = (int32_t)kl; else if (st != LS_ERR_MISSING) return st;
    st = gguf_get_u32(g, "llama.rope.dimension_count", &u, false, err);
    if (st == LS_OK && (int64_t)u != c->head_dim)
        return ls_err_set(err, LS_ERR_UNSUPPORTED, "%s: partial rotary embeddings (rope.dimension_count %u != head dim %d) are not supported",
                          path, u, c->head_dim);
    if (st != LS_OK && st != LS_ERR_MISSING) return st;
    m->rope_freq_scale = 1.0f;
    st = gguf_get_f32(g, "llama.rope.scaling.factor", &f, false, err);
    if (st == LS_OK) {
        gguf_str stype = {0, NULL};
        gguf_get_str(g, "llama.rope.scaling.type", &stype, false, NULL);
        if (gguf_str_eq(stype, "linear") && f > 0) m->rope_freq_scale = 1.0f / f;
    } else if (st != LS_ERR_MISSING) return st;

    const gguf_tensor_info *te = gguf_find_tensor(g, "token_embd.weight");
    if (!te) return ls_err_set(err, LS_ERR_MISSING, "%s: required tensor 'token_embd.weight' is missing", path);
    c->n_vocab = (int32_t)(te->ne[1] > INT32_MAX ? -1 : te->ne[1]);
    if ((st = check_config(path, c, err)) != LS_OK) return st;

    const int64_t dim = c->dim;
    if ((st = gguf_weight(g, "token_embd.weight", c->n_vocab, dim, true, &m->tok_embd, err)) != LS_OK) return st;
    if ((st = gguf_vec(g, "output_norm.weight", dim, &m->out_norm, err)) != LS_OK) return st;
    st = gguf_weight(g, "output.weight", c->n_vocab, dim, false, &m->output, err);
    if (st == LS_ERR_MISSING) {
        m->output = m->tok_embd;
        c->tied_embeddings = true;
    } else if (st != LS_OK) return st;
    if (gguf_find_tensor(g, "rope_freqs.weight")) {
        if ((st = gguf_vec(g, "rope_freqs.weight", c->head_dim / 2, &m->rope_factors, err)) != LS_OK) return st;
        c->has_rope_scaling = true;
    }
    c->rope_kind = LS_ROPE_NORM;

    if ((st = load_layers(m, g, NULL, path, err)) != LS_OK) return st;
    gguf_str tpl;
    if (gguf_get_str(g, "tokenizer.chat_template", &tpl, false, NULL) == LS_OK && tpl.len > 0) {
        if (!(m->chat_template = strndup(tpl.ptr, tpl.len)))
            return ls_err_set(err, LS_ERR_NOMEM, "%s: out of memory for the chat template", path);
    }
    return ls_tokenizer_from_gguf(g, &m->tok, err);
}

/* ------------------------------------------------------ Hugging Face dir */

static char *read_text_file(const char *path, size_t max, size_t *len_out) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 65536 + 1 > cap) {
            cap = (len + 65536 + 1) * 2;
            char *nb = realloc(buf, cap);
            if (!nb) { free(buf); fclose(fp); return NULL; }
            buf = nb;
        }
        size_t got = fread(buf + len, 1, 65536, fp);
        len += got;
        if (got == 0 || len > max) break;
    }
    fclose(fp);
    if (len > max) { free(buf); return NULL; }
    buf[len] = 0;
    if (len_out) *len_out = len;
    return buf;
}

static ls_status json_int(const char *file, const cJSON *o, const char *key, bool required,
                          int32_t *out, ls_err *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) {
        if (required) return ls_err_set(err, LS_ERR_MISSING, "%s: required key '%s' is missing", file, key);
        return LS_ERR_MISSING;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < 0 || v->valuedouble > INT32_MAX)
        return ls_err_set(err, LS_ERR_FORMAT, "%s: key '%s' must be a non-negative integer", file, key);
    *out = (int32_t)v->valuedouble;
    return LS_OK;
}

static ls_status json_float(const char *file, const cJSON *o, const char *key, float *out, ls_err *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) return LS_ERR_MISSING;
    if (!cJSON_IsNumber(v)) return ls_err_set(err, LS_ERR_FORMAT, "%s: key '%s' must be a number", file, key);
    *out = (float)v->valuedouble;
    return LS_OK;
}

static ls_status parse_hf_config(ls_model *m, const char *dir, ls_err *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    size_t len;
    char *text = read_text_file(path, 16 << 20, &len);
    if (!text) return ls_err_set(err, LS_ERR_IO, "%s: cannot read (a Hugging Face model directory needs config.json)", path);
    cJSON *j = cJSON_ParseWithLength(text, len);
    free(text);
    if (!j || !cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return ls_err_set(err, LS_ERR_FORMAT, "%s: malformed JSON", path);
    }
    ls_config *c = &m->cfg;
    ls_status st = LS_OK;
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(j, "model_type");
    if (cJSON_IsString(mt) && strcmp(mt->valuestring, "llama") != 0) {
        st = ls_err_set(err, LS_ERR_UNSUPPORTED, "%s: model_type '%s' is not supported (only 'llama')", path, mt->valuestring);
        goto out;
    }
    snprintf(c->arch, sizeof c->arch, "llama");
    const char *base = strrchr(dir, '/');
    snprintf(c->name, sizeof c->name, "%s", base && base[1] ? base + 1 : dir);
#define REQ(key, dst) do { if ((st = json_int(path, j, key, true, &(dst), err)) != LS_OK) goto out; } while (0)
#define OPT(key, dst) do { st = json_int(path, j, key, false, &(dst), err); \
        if (st != LS_OK && st != LS_ERR_MISSING) goto out; \
        st = LS_OK; } while (0)
    REQ("hidden_size", c->dim);
    REQ("intermediate_size", c->ffn_dim);
    REQ("num_hidden_layers", c->n_layers);
    REQ("num_attention_heads", c->n_heads);
    REQ("vocab_size", c->n_vocab);
    c->n_kv_heads = c->n_heads;
    OPT("num_key_value_heads", c->n_kv_heads);
    c->ctx_train = 0;
    OPT("max_position_embeddings", c->ctx_train);
    if (c->n_heads <= 0 || c->dim % c->n_heads != 0) {
        st = ls_err_set(err, LS_ERR_FORMAT, "%s: hidden_size %d is not a multiple of num_attention_heads %d", path, c->dim, c->n_heads);
        goto out;
    }
    c->head_dim = c->dim / c->n_heads;
    OPT("head_dim", c->head_dim);
#undef REQ
#undef OPT
    c->norm_eps = 1e-6f;
    st = json_float(path, j, "rms_norm_eps", &c->norm_eps, err);
    if (st != LS_OK && st != LS_ERR_MISSING) goto out;
    c->rope_theta = 10000.0f;
    st = json_float(path, j, "rope_theta", &c->rope_theta, err);
    if (st != LS_OK && st != LS_ERR_MISSING) goto out;
    const cJSON *tie = cJSON_GetObjectItemCaseSensitive(j, "tie_word_embeddings");
    c->tied_embeddings = cJSON_IsTrue(tie);
    st = check_config(path, c, err);
    if (st != LS_OK) goto out;

    m->rope_freq_scale = 1.0f;
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(j, "rope_scaling");
    if (rs && !cJSON_IsNull(rs)) {
        if (!cJSON_IsObject(rs)) {
            st = ls_err_set(err, LS_ERR_FORMAT, "%s: rope_scaling must be an object or null", path);
            goto out;
        }
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(rs, "rope_type");
        if (!cJSON_IsString(type)) type = cJSON_GetObjectItemCaseSensitive(rs, "type");
        const char *tname = cJSON_IsString(type) ? type->valuestring : "";
        float factor = 1, low = 1, high = 4, orig = 8192;
        json_float(path, rs, "factor", &factor, NULL);
        if (!(factor > 0 && isfinite(factor))) {
            st = ls_err_set(err, LS_ERR_FORMAT, "%s: rope_scaling.factor must be positive", path);
            goto out;
        }
        if (strcmp(tname, "llama3") == 0) {
            json_float(path, rs, "low_freq_factor", &low, NULL);
            json_float(path, rs, "high_freq_factor", &high, NULL);
            int32_t o = 8192;
            if (json_int(path, rs, "original_max_position_embeddings", false, &o, NULL) == LS_OK) orig = (float)o;
            if (!(low > 0 && high > low && orig > 0)) {
                st = ls_err_set(err, LS_ERR_FORMAT, "%s: rope_scaling (llama3) needs 0 < low_freq_factor < high_freq_factor", path);
                goto out;
            }
            m->rope_factors = llama3_rope_factors(c->head_dim, c->rope_theta, factor, low, high, orig);
            if (!m->rope_factors) { st = ls_err_set(err, LS_ERR_NOMEM, "%s: out of memory", path); goto out; }
            c->has_rope_scaling = true;
        } else if (strcmp(tname, "linear") == 0) {
            m->rope_freq_scale = 1.0f / factor;
        } else if (strcmp(tname, "default") != 0) {
            st = ls_err_set(err, LS_ERR_UNSUPPORTED, "%s: rope_scaling type '%s' is not supported (llama3, linear)", path, tname);
            goto out;
        }
    }
    c->rope_kind = LS_ROPE_NEOX;
out:
    cJSON_Delete(j);
    return st;
}

static ls_status st_weight(const st_set *s, const char *dir, const char *name, int64_t rows,
                           int64_t cols, bool required, ls_weight *w, ls_err *err) {
    const st_tensor *t = st_set_find(s, name);
    if (!t) {
        if (!required) return LS_ERR_MISSING;
        return ls_err_set(err, LS_ERR_MISSING, "%s: required tensor '%s' is missing from the safetensors files", dir, name);
    }
    if (t->n_dims != 2)
        return ls_err_set(err, LS_ERR_FORMAT, "%s: tensor '%s' has %u dimensions, expected 2", dir, name, t->n_dims);
    return tensor_to_weight(dir, name, t->type, t->shape[0], t->shape[1], t->data, rows, cols, w, err);
}

static ls_status st_vec(const st_set *s, const char *dir, const char *name, int64_t n, float **out, ls_err *err) {
    const st_tensor *t = st_set_find(s, name);
    if (!t) return ls_err_set(err, LS_ERR_MISSING, "%s: required tensor '%s' is missing from the safetensors files", dir, name);
    int64_t cnt = 1;
    for (uint32_t i = 0; i < t->n_dims; i++) cnt *= t->shape[i];
    return vec_to_f32(dir, name, t->type, cnt, t->data, n, out, err);
}

/* chat_template.jinja, else tokenizer_config.json's chat_template: a string,
 * or a list of {name, template} (the one named "default") */
static ls_status load_hf_chat_template(ls_model *m, const char *dir, ls_err *err) {
    char path[4200];
    snprintf(path, sizeof path, "%s/chat_template.jinja", dir);
    size_t len = 0;
    ls_status st;
    ls_err rerr = {{0}}; /* a missing file is no error: err stays untouched */
    char *text = ls_read_all(path, &len, &st, &rerr);
    if (text) {
        m->chat_template = text;
        return LS_OK;
    }
    if (st != LS_ERR_MISSING) return ls_err_set(err, st, "%s", rerr.msg);
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    if (!(text = ls_read_all(path, &len, &st, &rerr))) /* optional */
        return st == LS_ERR_MISSING ? LS_OK : ls_err_set(err, st, "%s", rerr.msg);
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    if (!root) return LS_OK; /* the tokenizer loader reports a malformed file */
    const cJSON *ct = cJSON_GetObjectItemCaseSensitive(root, "chat_template");
    const char *tpl = cJSON_IsString(ct) ? ct->valuestring : NULL;
    if (cJSON_IsArray(ct)) {
        const cJSON *e;
        cJSON_ArrayForEach(e, ct) {
            const cJSON *nm = cJSON_GetObjectItemCaseSensitive(e, "name");
            const cJSON *tt = cJSON_GetObjectItemCaseSensitive(e, "template");
            if (cJSON_IsString(nm) && cJSON_IsString(tt) && strcmp(nm->valuestring, "default") == 0) tpl = tt->valuestring;
        }
    }
    st = LS_OK;
    if (tpl && *tpl && !(m->chat_template = strdup(tpl)))
        st = ls_err_set(err, LS_ERR_NOMEM, "%s: out of memory for the chat template", path);
    cJSON_Delete(root);
    return st;
}

static ls_status load_hf(ls_model *m, const char *dir, ls_err *err) {
    ls_status st = parse_hf_config(m, dir, err);
    if (st != LS_OK) return st;
    if ((st = st_set_open_dir(dir, &m->st, err)) != LS_OK) return st;
    const st_set *s = m->st;
    ls_config *c = &m->cfg;
    const int64_t dim = c->dim;
    if ((st = st_weight(s, dir, "model.embed_tokens.weight", c->n_vocab, dim, true, &m->tok_embd, err)) != LS_OK) return st;
    if ((st = st_vec(s, dir, "model.norm.weight", dim, &m->out_norm, err)) != LS_OK) return st;
    st = st_weight(s, dir, "lm_head.weight", c->n_vocab, dim, !c->tied_embeddings, &m->output, err);
    if (st == LS_ERR_MISSING) {
        m->output = m->tok_embd;
        c->tied_embeddings = true;
    } else if (st != LS_OK) return st;
    if ((st = load_layers(m, NULL, s, dir, err)) != LS_OK) return st;
    if ((st = load_hf_chat_template(m, dir, err)) != LS_OK) return st;
    return ls_tokenizer_from_hf_dir(dir, &m->tok, err);
}

/* ------------------------------------------------------------- layers */

/* the per-layer tensors in ls_layer order: GGUF and Hugging Face names */
enum { T_ATTN_NORM, T_Q, T_K, T_V, T_O, T_FFN_NORM, T_GATE, T_UP, T_DOWN, T_COUNT };
static const char *const gguf_layer_names[T_COUNT] = {
    "attn_norm.weight", "attn_q.weight", "attn_k.weight", "attn_v.weight", "attn_output.weight",
    "ffn_norm.weight", "ffn_gate.weight", "ffn_up.weight", "ffn_down.weight"};
static const char *const hf_layer_names[T_COUNT] = {
    "input_layernorm.weight", "self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight",
    "self_attn.o_proj.weight", "post_attention_layernorm.weight", "mlp.gate_proj.weight", "mlp.up_proj.weight",
    "mlp.down_proj.weight"};

/* every layer's weights from a GGUF file (g) or a safetensors set (s) */
static ls_status load_layers(ls_model *m, const gguf_ctx *g, const st_set *s, const char *path, ls_err *err) {
    const ls_config *c = &m->cfg;
    const int64_t dim = c->dim, qdim = (int64_t)c->n_heads * c->head_dim,
                  kvdim = (int64_t)c->n_kv_heads * c->head_dim, ffn = c->ffn_dim;
    /* (rows, cols) of each matrix; norms are vectors of dim */
    const int64_t shape[T_COUNT][2] = {{0, 0}, {qdim, dim}, {kvdim, dim}, {kvdim, dim}, {dim, qdim},
                                       {0, 0}, {ffn, dim}, {ffn, dim}, {dim, ffn}};
    m->layers = calloc((size_t)c->n_layers, sizeof(ls_layer));
    if (!m->layers) return ls_err_set(err, LS_ERR_NOMEM, "%s: out of memory", path);
    for (int l = 0; l < c->n_layers; l++) {
        ls_layer *L = &m->layers[l];
        ls_weight *mats[T_COUNT] = {NULL, &L->wq, &L->wk, &L->wv, &L->wo, NULL, &L->w_gate, &L->w_up, &L->w_down};
        float **vecs[T_COUNT] = {&L->attn_norm, NULL, NULL, NULL, NULL, &L->ffn_norm, NULL, NULL, NULL};
        for (int t = 0; t < T_COUNT; t++) {
            char nm[128];
            if (g) snprintf(nm, sizeof nm, "blk.%d.%s", l, gguf_layer_names[t]);
            else snprintf(nm, sizeof nm, "model.layers.%d.%s", l, hf_layer_names[t]);
            ls_status st;
            if (vecs[t]) st = g ? gguf_vec(g, nm, dim, vecs[t], err) : st_vec(s, path, nm, dim, vecs[t], err);
            else st = g ? gguf_weight(g, nm, shape[t][0], shape[t][1], true, mats[t], err)
                        : st_weight(s, path, nm, shape[t][0], shape[t][1], true, mats[t], err);
            if (st != LS_OK) return st;
        }
    }
    return LS_OK;
}

/* --------------------------------------------------------------- public */

ls_status ls_model_load(const char *path, ls_model **out, ls_err *err) {
    *out = NULL;
    if (!path || !*path) return ls_err_set(err, LS_ERR_INVALID, "no model path given (--model PATH: a .gguf file or a Hugging Face directory)");
    struct stat sb;
    if (stat(path, &sb) != 0)
        return ls_err_set(err, LS_ERR_IO, "%s: no such file or directory (--model takes a .gguf file or a Hugging Face directory)", path);
    ls_model *m = calloc(1, sizeof *m);
    if (!m) return ls_err_set(err, LS_ERR_NOMEM, "out of memory");
    m->path = strdup(path);
    ls_status st = S_ISDIR(sb.st_mode) ? load_hf(m, path, err) : load_gguf(m, path, err);
    if (st == LS_OK && ls_tokenizer_n_vocab(m->tok) > m->cfg.n_vocab) {
        st = ls_err_set(err, LS_ERR_FORMAT, "%s: the tokenizer has %d tokens but the embedding only %d rows",
                        path, ls_tokenizer_n_vocab(m->tok), m->cfg.n_vocab);
    }
    if (st != LS_OK) {
        ls_model_free(m);
        return st;
    }
    *out = m;
    return LS_OK;
}

void ls_model_free(ls_model *m) {
    if (!m) return;
    if (m->layers) {
        for (int l = 0; l < m->cfg.n_layers; l++) {
            free(m->layers[l].attn_norm);
            free(m->layers[l].ffn_norm);
        }
        free(m->layers);
    }
    free(m->out_norm);
    free(m->rope_factors);
    free(m->chat_template);
    ls_tokenizer_free(m->tok);
    if (m->gguf) gguf_ctx_free(m->gguf);
    if (m->st) st_set_free(m->st);
    free(m->path);
    free(m);
}

const ls_config *ls_model_config(const ls_model *m) { return &m->cfg; }
const char *ls_model_chat_template(const ls_model *m) { return m->chat_template; }
const ls_tokenizer *ls_model_tokenizer(const ls_model *m) { return m->tok; }

static uint64_t wbytes(const ls_weight *w) { return (uint64_t)ls_weight_row_bytes(w) * (uint64_t)w->rows; }

uint64_t ls_model_weight_bytes(const ls_model *m, int l0, int l1, bool embed, bool head) {
    uint64_t b = 0;
    for (int l = l0; l < l1 && l < m->cfg.n_layers; l++) {
        const ls_layer *L = &m->layers[l];
        b += wbytes(&L->wq) + wbytes(&L->wk) + wbytes(&L->wv) + wbytes(&L->wo) +
             wbytes(&L->w_gate) + wbytes(&L->w_up) + wbytes(&L->w_down);
    }
    if (embed) b += wbytes(&m->tok_embd);
    if (head && !(embed && m->cfg.tied_embeddings)) b += wbytes(&m->output);
    return b;
}

static volatile uint8_t touch_sink;
static void touch(const ls_weight *w) {
    const uint8_t *p = w->data;
    uint64_t n = wbytes(w);
    uint8_t acc = 0;
    for (uint64_t i = 0; i < n; i += 4096) acc ^= p[i];
    touch_sink ^= acc;
}

void ls_model_touch(const ls_model *m, int l0, int l1, bool embed, bool head) {
    for (int l = l0; l < l1 && l < m->cfg.n_layers; l++) {
        const ls_layer *L = &m->layers[l];
        touch(&L->wq); touch(&L->wk); touch(&L->wv); touch(&L->wo);
        touch(&L->w_gate); touch(&L->w_up); touch(&L->w_down);
    }
    if (embed) touch(&m->tok_embd);
    if (head) touch(&m->output);
}
