/* random_adapter.c: see random_adapter.h. */
#include "random_adapter.h"
#include "adapter_internal.h" /* ls_vocab_hash */
#include "gguf.h"
#include "gguf_writer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

uint64_t ra_vocab_hash(const ls_tokenizer *t) {
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a 64 offset basis */
    const uint64_t prime = 0x100000001b3ull;
    const int32_t n = ls_tokenizer_n_vocab(t);
    for (int32_t id = 0; id < n; id++) {
        const unsigned char *p = (const unsigned char *)ls_tokenizer_piece(t, id);
        const size_t len = p ? ls_tokenizer_piece_len(t, id) : 0;
        for (size_t j = 0; j < len; j++) h = (h ^ p[j]) * prime;
        h = (h ^ 0u) * prime; /* the 0 byte after each piece */
    }
    return h;
}

void ra_base_from_model(const ls_model *m, ra_base *b) {
    const ls_config *c = ls_model_config(m);
    memset(b, 0, sizeof *b);
    snprintf(b->arch, sizeof b->arch, "%s", c->arch);
    b->n_layers = c->n_layers;
    b->dim = c->dim;
    b->ffn_dim = c->ffn_dim;
    b->n_heads = c->n_heads;
    b->n_kv_heads = c->n_kv_heads;
    b->head_dim = c->head_dim;
    b->n_vocab = c->n_vocab;
    b->vocab_hash = ls_vocab_hash(ls_model_tokenizer(m));
}

bool ra_base_from_rm_spec(const rm_spec *s, ra_base *b) {
    gguf_ctx *g = NULL;
    ls_tokenizer *t = NULL;
    ls_err err;
    if (gguf_ctx_init_from_file(s->vocab_gguf, &g, &err) != LS_OK || ls_tokenizer_from_gguf(g, &t, &err) != LS_OK) {
        fprintf(stderr, "random_adapter: %s\n", err.msg);
        gguf_ctx_free(g);
        return false;
    }
    memset(b, 0, sizeof *b);
    snprintf(b->arch, sizeof b->arch, "llama");
    b->n_layers = s->n_layers;
    b->dim = s->dim;
    b->ffn_dim = s->ffn_dim;
    b->n_heads = s->n_heads;
    b->n_kv_heads = s->n_kv_heads;
    b->head_dim = s->dim / s->n_heads;
    b->n_vocab = ls_tokenizer_n_vocab(t);
    b->vocab_hash = ls_vocab_hash(t);
    ls_tokenizer_free(t);
    gguf_ctx_free(g);
    return true;
}

static const char *const FAULT_NAMES[RA_N_FAULTS] = {
    [RA_OK] = "ok", [RA_NOT_ADAPTER] = "not an adapter", [RA_NO_GENERAL_ARCH] = "no general.architecture",
    [RA_VERSION] = "version 2", [RA_BASE_ARCH] = "base architecture gpt2", [RA_LAYERS] = "layer count",
    [RA_DIM] = "hidden size", [RA_BASE_FFN] = "base feed-forward width", [RA_HEADS] = "head count",
    [RA_KV_HEADS] = "KV head count", [RA_VOCAB_SIZE] = "vocabulary size", [RA_NO_LAYERS] = "no block_count",
    [RA_VOCAB_HASH] = "vocabulary hash", [RA_NO_VOCAB_HASH] = "no vocabulary hash",
    [RA_VOCAB_HASH_U32] = "vocabulary hash as u32", [RA_E_ZERO] = "exit layer 0", [RA_E_L] = "exit layer L",
    [RA_E_HUGE] = "exit layer 2^32-1", [RA_NO_E] = "no exit layer", [RA_NO_FFN_DIM] = "no ffn_dim",
    [RA_FFN_TOO_BIG] = "ffn_dim too big", [RA_HAS_BLOCK_U32] = "has_block as u32", [RA_SHAPE] = "tensor shape",
    [RA_SHAPE_TRANSPOSED] = "tensor transposed", [RA_NORM_2D] = "2-D norm", [RA_TYPE_Q8_0] = "tensor type Q8_0",
    [RA_TYPE_BF16] = "tensor type BF16", [RA_MISSING_TENSOR] = "missing tensor",
    [RA_TABLE_DUP] = "table duplicate", [RA_TABLE_OOR] = "table id out of range", [RA_TABLE_NEG] = "table id -1",
    [RA_TABLE_EMPTY] = "empty table", [RA_TABLE_TOO_LONG] = "table longer than the vocabulary",
    [RA_TABLE_F32] = "table of f32", [RA_TABLE_NOT_ARRAY] = "table not an array",
    [RA_NOTHING] = "neither block nor table",
};

const char *ra_fault_name(ra_fault f) { return (int)f >= 0 && f < RA_N_FAULTS ? FAULT_NAMES[f] : "?"; }

static uint64_t ra_next(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static float ra_uniform(uint64_t *x) { return (float)((ra_next(x) >> 11) * 0x1.0p-53) * 2.0f - 1.0f; }

void ra_table(const ra_base *b, const ra_spec *s, int32_t *out) {
    if (s->n_table <= 0) return;
    if (s->table) {
        memcpy(out, s->table, sizeof(int32_t) * (size_t)s->n_table);
        return;
    }
    /* a seeded Fisher-Yates permutation of the vocabulary, its first n_table */
    int32_t *perm = malloc(sizeof(int32_t) * (size_t)b->n_vocab);
    if (!perm) abort();
    for (int32_t i = 0; i < b->n_vocab; i++) perm[i] = i;
    uint64_t rng = s->seed ^ 0x7ab1e5eedull;
    for (int32_t i = b->n_vocab - 1; i > 0; i--) {
        int32_t j = (int32_t)(ra_next(&rng) % (uint64_t)(i + 1)), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    for (int i = 0; i < s->n_table; i++) out[i] = i < b->n_vocab ? perm[i] : perm[i % b->n_vocab];
    free(perm);
}

static const char *fault_tensor(const ra_spec *s) {
    return s->fault_tensor ? s->fault_tensor : "adapter.attn_k.weight";
}

/* one tensor: rows x cols (cols = 0: a vector of rows), values offset + scale * U(-1, 1) */
static void add_tensor(gguf_writer *w, const ra_spec *s, const char *name, int64_t rows, int64_t cols, float scale,
                       float offset, uint64_t *rng) {
    const bool target = strcmp(name, fault_tensor(s)) == 0;
    if (target && s->fault == RA_MISSING_TENSOR) return;
    const bool vec = cols == 0;
    const int64_t n = rows * (vec ? 1 : cols);
    float *v = malloc(sizeof(float) * (size_t)(n + cols + 1));
    if (!v) abort();
    for (int64_t i = 0; i < n + cols + 1; i++) v[i] = offset + scale * ra_uniform(rng);
    if (s->fill_tensor && strcmp(name, s->fill_tensor) == 0)
        for (int64_t i = 0; i < n + cols + 1; i++) v[i] = s->fill_value;
    ls_type type = s->dtype == LS_TYPE_F16 ? LS_TYPE_F16 : LS_TYPE_F32;
    if (s->dtype == LS_TYPE_Q8_0) type = vec ? LS_TYPE_F32 : LS_TYPE_Q8_0; /* norms stay float */
    int64_t ne[2] = {vec ? rows : cols, vec ? 1 : rows};
    uint32_t n_dims = vec ? 1 : 2;
    if (target && s->fault == RA_SHAPE) {
        if (vec) ne[0]++;
        else ne[1]++;
    }
    if (target && s->fault == RA_SHAPE_TRANSPOSED) {
        int64_t t = ne[0];
        ne[0] = ne[1];
        ne[1] = t;
    }
    if (strcmp(name, "adapter.attn_norm.weight") == 0 && s->fault == RA_NORM_2D) n_dims = 2;
    if (target && s->fault == RA_TYPE_Q8_0) type = LS_TYPE_Q8_0;
    if (target && s->fault == RA_TYPE_BF16) type = LS_TYPE_BF16;
    const int64_t count = ne[0] * ne[1];
    uint64_t nbytes = 0;
    if (!ls_type_nbytes(type, count, &nbytes)) abort();
    uint8_t *bytes = calloc((size_t)nbytes + 1, 1);
    if (!bytes) abort();
    for (int64_t i = 0; i < count; i++) {
        if (type == LS_TYPE_F32) memcpy(bytes + 4 * i, &v[i], 4);
        else if (type == LS_TYPE_F16 || type == LS_TYPE_BF16) {
            uint16_t h = type == LS_TYPE_F16 ? ls_f32_to_f16(v[i]) : ls_f32_to_bf16(v[i]);
            memcpy(bytes + 2 * i, &h, 2);
        }
    }
    if (type == LS_TYPE_Q8_0) /* per block of 32: d = amax / 127, q = round(v / d) (a non-finite v gives d non-finite) */
        for (int64_t blk = 0; blk < count / 32; blk++) {
            uint8_t *q = bytes + blk * 34;
            float amax = 0;
            for (int i = 0; i < 32 && !isnan(amax); i++) {
                const float x = v[blk * 32 + i];
                if (isnan(x) || fabsf(x) > amax) amax = isnan(x) ? x : fabsf(x);
            }
            const float dq = amax / 127;
            uint16_t d = ls_f32_to_f16(dq);
            memcpy(q, &d, 2);
            for (int i = 0; i < 32; i++)
                q[2 + i] = (uint8_t)(int8_t)(dq > 0 && isfinite(dq) ? lrintf(v[blk * 32 + i] / dq) : 0);
        }
    if (!gguf_writer_add_tensor(w, name, type, n_dims, ne, bytes)) {
        fprintf(stderr, "random_adapter: cannot add tensor %s\n", name);
        abort();
    }
    free(bytes);
    free(v);
}

void ra_write_mem(const ra_base *b, const ra_spec *s, uint8_t **out, size_t *len) {
    const ra_fault f = s->fault;
    gguf_writer *w = gguf_writer_init();
    if (f != RA_NO_GENERAL_ARCH) gguf_writer_add_str(w, "general.architecture", f == RA_NOT_ADAPTER ? "llama"
                                                     : "layerskip-adapter");
    gguf_writer_add_str(w, "general.name", "random-test-adapter");
    gguf_writer_add_u32(w, "layerskip.adapter.version", f == RA_VERSION ? 2 : 1);
    uint32_t E = (uint32_t)s->exit_layer;
    if (f == RA_E_ZERO) E = 0;
    if (f == RA_E_L) E = (uint32_t)b->n_layers;
    if (f == RA_E_HUGE) E = 0xffffffffu;
    if (f != RA_NO_E) gguf_writer_add_u32(w, "layerskip.adapter.exit_layer", E);
    const int ffn = f == RA_FFN_TOO_BIG ? b->ffn_dim + 32 : s->ffn_dim;
    if (!s->no_block && f != RA_NO_FFN_DIM) gguf_writer_add_u32(w, "layerskip.adapter.ffn_dim", (uint32_t)ffn);
    if (f == RA_HAS_BLOCK_U32) gguf_writer_add_u32(w, "layerskip.adapter.has_block", s->no_block ? 0 : 1);
    else if (!s->omit_has_block) gguf_writer_add_bool(w, "layerskip.adapter.has_block", !s->no_block && f != RA_NOTHING);
    gguf_writer_add_str(w, "layerskip.base.architecture", f == RA_BASE_ARCH ? "gpt2" : b->arch);
    if (f != RA_NO_LAYERS)
        gguf_writer_add_u32(w, "layerskip.base.block_count", (uint32_t)(b->n_layers + (f == RA_LAYERS)));
    gguf_writer_add_u32(w, "layerskip.base.embedding_length", (uint32_t)(b->dim + (f == RA_DIM)));
    gguf_writer_add_u32(w, "layerskip.base.feed_forward_length", (uint32_t)(b->ffn_dim + (f == RA_BASE_FFN)));
    gguf_writer_add_u32(w, "layerskip.base.head_count", (uint32_t)(b->n_heads + (f == RA_HEADS)));
    gguf_writer_add_u32(w, "layerskip.base.head_count_kv", (uint32_t)(b->n_kv_heads + (f == RA_KV_HEADS)));
    gguf_writer_add_u32(w, "layerskip.base.vocab_size", (uint32_t)(b->n_vocab + (f == RA_VOCAB_SIZE)));
    if (f == RA_VOCAB_HASH_U32) gguf_writer_add_u32(w, "layerskip.base.vocab_hash", (uint32_t)b->vocab_hash);
    else if (f != RA_NO_VOCAB_HASH)
        gguf_writer_add_u64(w, "layerskip.base.vocab_hash", b->vocab_hash ^ (f == RA_VOCAB_HASH ? 1u : 0u));

    /* the frequency table */
    int n_table = s->n_table;
    if (f == RA_TABLE_EMPTY) n_table = 0;
    if (f == RA_TABLE_TOO_LONG) n_table = b->n_vocab + 1;
    const bool want_table = f != RA_NOTHING && (s->n_table > 0 || f == RA_TABLE_TOO_LONG || f == RA_TABLE_EMPTY ||
                                                f == RA_TABLE_DUP || f == RA_TABLE_OOR || f == RA_TABLE_NEG ||
                                                f == RA_TABLE_F32 || f == RA_TABLE_NOT_ARRAY);
    if (want_table) {
        if ((f == RA_TABLE_DUP || f == RA_TABLE_OOR || f == RA_TABLE_NEG || f == RA_TABLE_F32) && n_table < 4)
            n_table = 4;
        int32_t *t = malloc(sizeof(int32_t) * (size_t)(n_table + 1));
        if (!t) abort();
        if (f == RA_TABLE_TOO_LONG) {
            ra_spec s2 = *s;
            s2.n_table = b->n_vocab;
            s2.table = NULL;
            ra_table(b, &s2, t);
            t[b->n_vocab] = t[0];
        } else {
            ra_spec s2 = *s;
            s2.n_table = n_table;
            if (s->n_table < n_table) s2.table = NULL;
            ra_table(b, &s2, t);
        }
        if (f == RA_TABLE_DUP) t[n_table - 1] = t[0];
        if (f == RA_TABLE_OOR) t[1] = b->n_vocab;
        if (f == RA_TABLE_NEG) t[1] = -1;
        if (f == RA_TABLE_NOT_ARRAY) {
            gguf_writer_add_i32(w, "layerskip.draft_vocab", t[0]);
        } else if (f == RA_TABLE_F32) {
            float *ft = malloc(sizeof(float) * (size_t)n_table);
            if (!ft) abort();
            for (int i = 0; i < n_table; i++) ft[i] = (float)t[i];
            gguf_writer_add_arr(w, "layerskip.draft_vocab", GGUF_TYPE_FLOAT32, ft, (uint64_t)n_table);
            free(ft);
        } else {
            gguf_writer_add_arr(w, "layerskip.draft_vocab", s->table_u32 ? GGUF_TYPE_UINT32 : GGUF_TYPE_INT32, t,
                                (uint64_t)n_table);
        }
        free(t);
    }

    /* the block */
    if (!s->no_block && f != RA_NOTHING) {
        uint64_t rng = s->seed;
        const int64_t D = b->dim, qd = (int64_t)b->n_heads * b->head_dim, kvd = (int64_t)b->n_kv_heads * b->head_dim;
        const float sc = s->scale > 0 ? s->scale : 1.0f, ws = sc / sqrtf((float)D);
        add_tensor(w, s, "adapter.attn_norm.weight", D, 0, 0.2f, 1.0f, &rng);
        add_tensor(w, s, "adapter.attn_q.weight", qd, D, 2 * ws, 0, &rng);
        add_tensor(w, s, "adapter.attn_k.weight", kvd, D, 2 * ws, 0, &rng);
        add_tensor(w, s, "adapter.attn_v.weight", kvd, D, ws, 0, &rng);
        add_tensor(w, s, "adapter.attn_output.weight", D, qd, ws, 0, &rng);
        if (ffn > 0) {
            add_tensor(w, s, "adapter.ffn_norm.weight", D, 0, 0.2f, 1.0f, &rng);
            add_tensor(w, s, "adapter.ffn_gate.weight", ffn, D, ws, 0, &rng);
            add_tensor(w, s, "adapter.ffn_up.weight", ffn, D, ws, 0, &rng);
            add_tensor(w, s, "adapter.ffn_down.weight", D, ffn, sc / sqrtf((float)ffn), 0, &rng);
        }
    }
    gguf_writer_write_mem(w, out, len);
    gguf_writer_free(w);
}

bool ra_write(const ra_base *b, const ra_spec *s, const char *path) {
    uint8_t *buf;
    size_t len;
    ra_write_mem(b, s, &buf, &len);
    FILE *fp = fopen(path, "wb");
    bool ok = fp && fwrite(buf, 1, len, fp) == len;
    if (fp && fclose(fp) != 0) ok = false;
    free(buf);
    if (!ok) fprintf(stderr, "random_adapter: cannot write %s\n", path);
    return ok;
}

bool ra_write_for_model(const ls_model *m, const ra_spec *s, const char *path) {
    ra_base b;
    ra_base_from_model(m, &b);
    return ra_write(&b, s, path);
}
