/* adapter.c: the draft adapter sidecar (docs/ADAPTER.md): loading, the
 * checks that it belongs to the loaded model, and the draft head (the rows
 * of the model's LM head for the adapter's frequency table, gathered once). */
#include "adapter_internal.h"

#include <math.h>
#include <stddef.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

uint64_t ls_vocab_hash(const ls_tokenizer *t) {
    uint64_t h = 14695981039346656037ull; /* FNV-1a 64 offset basis */
    const int32_t n = ls_tokenizer_n_vocab(t);
    for (int32_t i = 0; i < n; i++) {
        const char *p = ls_tokenizer_piece(t, i);
        const size_t len = p ? ls_tokenizer_piece_len(t, i) : 0;
        for (size_t j = 0; j < len; j++) {
            h ^= (uint8_t)p[j];
            h *= 1099511628211ull;
        }
        h ^= 0;
        h *= 1099511628211ull;
    }
    return h;
}

void ls_adapter_free(ls_adapter *a) {
    if (!a) return;
    free(a->blk.attn_norm);
    free(a->blk.ffn_norm);
    free(a->head_rows);
    free(a->table);
    free(a->path);
    gguf_ctx_free(a->g);
    free(a);
}

int ls_adapter_exit_layer(const ls_adapter *a) { return a->exit_layer; }
bool ls_adapter_has_block(const ls_adapter *a) { return a->has_block; }
int32_t ls_adapter_vocab_len(const ls_adapter *a) { return a->n_table; }
const char *ls_adapter_path(const ls_adapter *a) { return a->path; }

/* err's message, prefixed with the adapter's path */
static ls_status prefixed(const ls_adapter *a, ls_status st, ls_err *err) {
    char msg[sizeof err->msg];
    snprintf(msg, sizeof msg, "%s", err->msg);
    return ls_err_set(err, st, "draft adapter %s: %s", a->path, msg);
}

static ls_status get_u32(const ls_adapter *a, const char *key, uint32_t *v, ls_err *err) {
    ls_status st = gguf_get_u32(a->g, key, v, true, err);
    return st == LS_OK ? st : prefixed(a, st, err);
}

/* a tensor of the block of exactly rows x cols: F32 or F16, or Q8_0 for a
 * matrix (rows > 1: the norms are vectors and stay float) */
static ls_status get_weight(ls_adapter *a, const char *name, int64_t rows, int64_t cols, ls_weight *w, ls_err *err) {
    const gguf_tensor_info *t = gguf_find_tensor(a->g, name);
    if (!t) return ls_err_set(err, LS_ERR_MISSING, "draft adapter %s: tensor %s is missing", a->path, name);
    const int64_t want_dims = rows == 1 ? 1 : 2;
    if ((int64_t)t->n_dims != want_dims)
        return ls_err_set(err, LS_ERR_FORMAT, "draft adapter %s: tensor %s has %u dimensions, expected %lld", a->path,
                          name, t->n_dims, (long long)want_dims);
    if (t->ne[0] != cols || t->ne[1] != rows || t->ne[2] != 1 || t->ne[3] != 1)
        return ls_err_set(err, LS_ERR_FORMAT, "draft adapter %s: tensor %s has shape [%lld, %lld], expected [%lld, "
                          "%lld] (cols, rows) for this model", a->path, name, (long long)t->ne[0],
                          (long long)t->ne[1], (long long)cols, (long long)rows);
    const bool q8_ok = rows > 1;
    if (t->type != LS_TYPE_F32 && t->type != LS_TYPE_F16 && !(q8_ok && t->type == LS_TYPE_Q8_0))
        return ls_err_set(err, LS_ERR_UNSUPPORTED, "draft adapter %s: tensor %s is %s; adapters store %s", a->path,
                          name, ls_type_name(t->type), q8_ok ? "matrices as F32, F16 or Q8_0" : "norms as F32 or F16");
    *w = (ls_weight){.type = t->type, .rows = rows, .cols = cols, .data = t->data};
    /* a diverged training run or a damaged file: NaN or Inf would poison
     * every draft (Q8_0: the fp16 scale of each block of 32; its int8
     * quants are always finite) */
    const bool q8 = t->type == LS_TYPE_Q8_0;
    const int64_t n = q8 ? rows * cols / 32 : rows * cols;
    for (int64_t i = 0; i < n; i++) {
        bool finite;
        if (t->type == LS_TYPE_F32) {
            float v;
            memcpy(&v, (const uint8_t *)t->data + 4 * i, 4);
            finite = isfinite(v);
        } else {
            uint16_t h;
            memcpy(&h, (const uint8_t *)t->data + (q8 ? 34 : 2) * i, 2);
            finite = (h & 0x7C00) != 0x7C00;
        }
        if (!finite)
            return ls_err_set(err, LS_ERR_FORMAT, "draft adapter %s: tensor %s holds a NaN or infinite %s %lld", a->path,
                              name, q8 ? "scale in block" : "value at element", (long long)i);
    }
    return LS_OK;
}

static ls_status get_norm(ls_adapter *a, const char *name, int dim, float **out, ls_err *err) {
    ls_weight w;
    ls_status st = get_weight(a, name, 1, dim, &w, err);
    if (st != LS_OK) return st;
    *out = malloc(sizeof(float) * (size_t)dim);
    if (!*out) return ls_err_set(err, LS_ERR_NOMEM, "out of memory");
    ls_weight_get_row(&w, 0, *out);
    return LS_OK;
}

static ls_status check_base(ls_adapter *a, const ls_model *m, ls_err *err) {
    const ls_config *c = ls_model_config(m);
    gguf_str arch;
    ls_status st = gguf_get_str(a->g, "layerskip.base.architecture", &arch, true, err);
    if (st != LS_OK) return prefixed(a, st, err);
    if (!gguf_str_eq(arch, c->arch))
        return ls_err_set(err, LS_ERR_INVALID, "draft adapter %s was made for a %.*s model; this one is %s", a->path,
                          (int)(arch.len > 32 ? 32 : arch.len), arch.ptr, c->arch);
    static const struct { const char *key, *what; size_t off; } dims[] = {
        {"layerskip.base.block_count", "layers", offsetof(ls_config, n_layers)},
        {"layerskip.base.embedding_length", "hidden size", offsetof(ls_config, dim)},
        {"layerskip.base.feed_forward_length", "feed-forward width", offsetof(ls_config, ffn_dim)},
        {"layerskip.base.head_count", "attention heads", offsetof(ls_config, n_heads)},
        {"layerskip.base.head_count_kv", "KV heads", offsetof(ls_config, n_kv_heads)},
        {"layerskip.base.vocab_size", "vocabulary size", offsetof(ls_config, n_vocab)},
    };
    for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++) {
        uint32_t v = 0;
        if ((st = get_u32(a, dims[i].key, &v, err)) != LS_OK) return st;
        int32_t have;
        memcpy(&have, (const char *)c + dims[i].off, sizeof have);
        if ((int64_t)v != have)
            return ls_err_set(err, LS_ERR_INVALID, "draft adapter %s was made for a model with %u %s; this model "
                              "(%s) has %d: use an adapter trained for this model", a->path, v, dims[i].what,
                              c->name, have);
    }
    const gguf_kv *hk = gguf_find_kv(a->g, "layerskip.base.vocab_hash");
    if (!hk || hk->type != GGUF_TYPE_UINT64)
        return ls_err_set(err, LS_ERR_FORMAT, "draft adapter %s: layerskip.base.vocab_hash %s", a->path,
                          hk ? "is not a u64" : "(u64) is missing");
    uint64_t want;
    memcpy(&want, hk->data, sizeof want);
    const uint64_t have = ls_vocab_hash(ls_model_tokenizer(m));
    if (want != have)
        return ls_err_set(err, LS_ERR_INVALID, "draft adapter %s was made for another vocabulary (hash %016llx; this "
                          "model's is %016llx): use an adapter trained for this model", a->path,
                          (unsigned long long)want, (unsigned long long)have);
    return LS_OK;
}

static ls_status load_table(ls_adapter *a, const ls_model *m, ls_err *err) {
    const gguf_kv *kv = gguf_find_kv(a->g, "layerskip.draft_vocab");
    if (!kv) return LS_OK;
    const int32_t V = ls_model_config(m)->n_vocab;
    if (kv->type != GGUF_TYPE_ARRAY || (kv->arr_type != GGUF_TYPE_INT32 && kv->arr_type != GGUF_TYPE_UINT32))
        return ls_err_set(err, LS_ERR_FORMAT, "draft adapter %s: layerskip.draft_vocab is not an array of i32",
                          a->path);
    if (kv->arr_n < 1 || kv->arr_n > (uint64_t)V)
        return ls_err_set(err, LS_ERR_FORMAT, "draft adapter %s: layerskip.draft_vocab has %llu entries, expected 1 "
                          "to %d", a->path, (unsigned long long)kv->arr_n, V);
    a->n_table = (int32_t)kv->arr_n;
    a->table = malloc(sizeof(int32_t) * (size_t)a->n_table);
    uint8_t *seen = calloc((size_t)V, 1);
    ls_status st = LS_OK;
    if (!a->table || !seen) st = ls_err_set(err, LS_ERR_NOMEM, "out of memory");
    for (int32_t i = 0; st == LS_OK && i < a->n_table; i++) {
        int64_t id = -1;
        if (!gguf_arr_get_i64(kv, (uint64_t)i, &id) || id < 0 || id >= V)
            st = ls_err_set(err, LS_ERR_FORMAT, "draft adapter %s: layerskip.draft_vocab[%d] = %lld is not a token id "
                            "in [0, %d)", a->path, i, (long long)id, V);
        else if (seen[id]++)
            st = ls_err_set(err, LS_ERR_FORMAT, "draft adapter %s: layerskip.draft_vocab lists token %lld twice",
                            a->path, (long long)id);
        else
            a->table[i] = (int32_t)id;
    }
    free(seen);
    if (st != LS_OK) return st;
    /* the draft head: the table's rows of the LM head, most frequent first,
     * so the first N rows are the head of --draft-vocab N */
    const ls_weight *out = &m->output;
    const size_t rb = ls_weight_row_bytes(out);
    a->head_rows = malloc(rb * (size_t)a->n_table);
    if (!a->head_rows) return ls_err_set(err, LS_ERR_NOMEM, "out of memory for the draft head");
    for (int32_t i = 0; i < a->n_table; i++)
        memcpy((uint8_t *)a->head_rows + rb * (size_t)i, (const uint8_t *)out->data + rb * (size_t)a->table[i], rb);
    a->head = (ls_weight){.type = out->type, .rows = a->n_table, .cols = out->cols, .data = a->head_rows};
    return LS_OK;
}

ls_status ls_adapter_load(const char *path, const ls_model *m, ls_adapter **out, ls_err *err) {
    *out = NULL;
    ls_adapter *a = calloc(1, sizeof *a);
    if (!a || !(a->path = strdup(path ? path : ""))) {
        free(a);
        return ls_err_set(err, LS_ERR_NOMEM, "out of memory");
    }
    ls_status st = gguf_ctx_init_from_file(path, &a->g, err);
    if (st != LS_OK) {
        char msg[sizeof err->msg];
        snprintf(msg, sizeof msg, "%s", err->msg);
        ls_adapter_free(a);
        return ls_err_set(err, st, "draft adapter: %s", msg);
    }
    const ls_config *c = ls_model_config(m);
    gguf_str arch;
    uint32_t version = 0, E = 0, ffn = 0;
    bool has_block = true;
    if (gguf_get_str(a->g, "general.architecture", &arch, false, err) != LS_OK ||
        !gguf_str_eq(arch, "layerskip-adapter"))
        st = ls_err_set(err, LS_ERR_FORMAT, "%s is not a draft adapter (general.architecture is not "
                        "\"layerskip-adapter\"; docs/ADAPTER.md)", path);
    if (st == LS_OK) st = get_u32(a, "layerskip.adapter.version", &version, err);
    if (st == LS_OK && version != 1)
        st = ls_err_set(err, LS_ERR_UNSUPPORTED, "draft adapter %s has version %u; this build reads version 1", path,
                        version);
    if (st == LS_OK) st = check_base(a, m, err);
    if (st == LS_OK) st = get_u32(a, "layerskip.adapter.exit_layer", &E, err);
    if (st == LS_OK && (E < 1 || (int64_t)E > c->n_layers - 1))
        st = ls_err_set(err, LS_ERR_FORMAT, "draft adapter %s: exit layer %u is outside [1, %d] for a %d-layer model",
                        path, E, c->n_layers - 1, c->n_layers);
    if (st == LS_OK) {
        ls_status hs = gguf_get_bool(a->g, "layerskip.adapter.has_block", &has_block, false, err);
        if (hs != LS_OK && hs != LS_ERR_MISSING) st = prefixed(a, hs, err);
    }
    if (st == LS_OK && has_block) st = get_u32(a, "layerskip.adapter.ffn_dim", &ffn, err);
    if (st == LS_OK && has_block && (int64_t)ffn > c->ffn_dim)
        st = ls_err_set(err, LS_ERR_UNSUPPORTED, "draft adapter %s: feed-forward width %u exceeds the model's %d", path,
                        ffn, c->ffn_dim);
    a->exit_layer = (int)E;
    a->has_block = has_block;
    a->ffn_dim = has_block ? (int)ffn : 0;
    const int64_t dim = c->dim, qdim = (int64_t)c->n_heads * c->head_dim, kvdim = (int64_t)c->n_kv_heads * c->head_dim;
    if (st == LS_OK && has_block) {
        ls_layer *b = &a->blk;
        st = get_norm(a, "adapter.attn_norm.weight", c->dim, &b->attn_norm, err);
        if (st == LS_OK) st = get_weight(a, "adapter.attn_q.weight", qdim, dim, &b->wq, err);
        if (st == LS_OK) st = get_weight(a, "adapter.attn_k.weight", kvdim, dim, &b->wk, err);
        if (st == LS_OK) st = get_weight(a, "adapter.attn_v.weight", kvdim, dim, &b->wv, err);
        if (st == LS_OK) st = get_weight(a, "adapter.attn_output.weight", dim, qdim, &b->wo, err);
        if (st == LS_OK && ffn > 0) {
            st = get_norm(a, "adapter.ffn_norm.weight", c->dim, &b->ffn_norm, err);
            if (st == LS_OK) st = get_weight(a, "adapter.ffn_gate.weight", ffn, dim, &b->w_gate, err);
            if (st == LS_OK) st = get_weight(a, "adapter.ffn_up.weight", ffn, dim, &b->w_up, err);
            if (st == LS_OK) st = get_weight(a, "adapter.ffn_down.weight", dim, ffn, &b->w_down, err);
        }
    }
    if (st == LS_OK) st = load_table(a, m, err);
    if (st == LS_OK && !has_block && a->n_table == 0)
        st = ls_err_set(err, LS_ERR_FORMAT, "draft adapter %s has neither a block nor a frequency table", path);
    if (st != LS_OK) {
        ls_adapter_free(a);
        return st;
    }
    *out = a;
    return LS_OK;
}
