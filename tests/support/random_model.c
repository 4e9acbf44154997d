/* random_model.c: see random_model.h. */
#include "random_model.h"
#include "gguf.h"
#include "gguf_writer.h"
#include "st_writer.h"
#include "tokjson_writer.h"
#include "kernels.h"

#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct rm_tensor {
    char hf_name[96], gguf_name[96];
    int64_t rows, cols;       /* cols = 0 for vectors */
    float *val;               /* stored values (rounded / dequantized), HF layout */
    bool is_matrix;
    ls_type type;             /* matrices: storage type */
    uint8_t *enc;             /* K-quant / IQ4 matrices: their blocks (HF row order) */
    bool qk;                  /* permute rows for GGUF; n heads in `heads` */
    int heads;
} rm_tensor;

struct rm_model {
    rm_spec s;
    int n_vocab, head_dim;
    rm_tensor *t;
    int n_t;
    gguf_ctx *vocab;
};

static uint64_t rng_next(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static float rng_uniform(uint64_t *x) { return (float)((rng_next(x) >> 11) * 0x1.0p-53) * 2.0f - 1.0f; }

/* ---------------------------------------------------- reference quantizers */
static void quant_q8_0(const float *x, uint8_t *blk) {
    float amax = 0;
    for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(x[i]));
    float d = amax / 127.0f, id = d ? 1.0f / d : 0.0f;
    uint16_t dh = ls_f32_to_f16(d);
    memcpy(blk, &dh, 2);
    for (int i = 0; i < 32; i++) blk[2 + i] = (uint8_t)(int8_t)roundf(x[i] * id);
}
static void quant_q4_0(const float *x, uint8_t *blk) {
    float amax = 0, max = 0;
    for (int i = 0; i < 32; i++) if (fabsf(x[i]) > amax) { amax = fabsf(x[i]); max = x[i]; }
    float d = max / -8.0f, id = d ? 1.0f / d : 0.0f;
    uint16_t dh = ls_f32_to_f16(d);
    memcpy(blk, &dh, 2);
    for (int i = 0; i < 16; i++) {
        int a = (int)(x[i] * id + 8.5f), b = (int)(x[i + 16] * id + 8.5f);
        a = a > 15 ? 15 : a; b = b > 15 ? 15 : b;
        blk[2 + i] = (uint8_t)(a | (b << 4));
    }
}
static void quant_q4_1(const float *x, uint8_t *blk) {
    float mn = x[0], mx = x[0];
    for (int i = 1; i < 32; i++) { mn = fminf(mn, x[i]); mx = fmaxf(mx, x[i]); }
    float d = (mx - mn) / 15.0f, id = d ? 1.0f / d : 0.0f;
    uint16_t dh = ls_f32_to_f16(d), mh = ls_f32_to_f16(mn);
    memcpy(blk, &dh, 2);
    memcpy(blk + 2, &mh, 2);
    for (int i = 0; i < 16; i++) {
        int a = (int)((x[i] - mn) * id + 0.5f), b = (int)((x[i + 16] - mn) * id + 0.5f);
        a = a > 15 ? 15 : a; b = b > 15 ? 15 : b;
        blk[4 + i] = (uint8_t)(a | (b << 4));
    }
}
static void dequant_block(ls_type t, const uint8_t *blk, float *y) {
    uint16_t dh, mh;
    memcpy(&dh, blk, 2);
    float d = ls_f16_to_f32(dh);
    switch (t) {
    case LS_TYPE_Q8_0:
        for (int i = 0; i < 32; i++) y[i] = d * (float)(int8_t)blk[2 + i];
        break;
    case LS_TYPE_Q4_0:
        for (int i = 0; i < 16; i++) { y[i] = d * (float)((blk[2 + i] & 15) - 8); y[i + 16] = d * (float)((blk[2 + i] >> 4) - 8); }
        break;
    case LS_TYPE_Q4_1:
        memcpy(&mh, blk + 2, 2);
        for (int i = 0; i < 16; i++) {
            y[i] = d * (float)(blk[4 + i] & 15) + ls_f16_to_f32(mh);
            y[i + 16] = d * (float)(blk[4 + i] >> 4) + ls_f16_to_f32(mh);
        }
        break;
    default: break;
    }
}

/* encode n floats as type t; returns malloc'd bytes and rounds vals in place
 * to what the encoding stores */
static void *encode(ls_type t, float *vals, int64_t n) {
    uint64_t nb;
    if (!ls_type_nbytes(t, n, &nb)) return NULL;
    uint8_t *out = malloc(nb ? nb : 1);
    for (int64_t i = 0; t == LS_TYPE_F32 && i < n; i++) memcpy(out + 4 * i, &vals[i], 4);
    for (int64_t i = 0; t == LS_TYPE_F16 && i < n; i++) {
        uint16_t h = ls_f32_to_f16(vals[i]);
        memcpy(out + 2 * i, &h, 2);
        vals[i] = ls_f16_to_f32(h);
    }
    for (int64_t i = 0; t == LS_TYPE_BF16 && i < n; i++) {
        uint16_t h = ls_f32_to_bf16(vals[i]);
        memcpy(out + 2 * i, &h, 2);
        vals[i] = ls_bf16_to_f32(h);
    }
    if (t == LS_TYPE_Q8_0 || t == LS_TYPE_Q4_0 || t == LS_TYPE_Q4_1) {
        size_t bb = ls_type_block_bytes(t);
        for (int64_t b = 0; b < n / 32; b++) {
            uint8_t *blk = out + (size_t)b * bb;
            if (t == LS_TYPE_Q8_0) quant_q8_0(vals + b * 32, blk);
            else if (t == LS_TYPE_Q4_0) quant_q4_0(vals + b * 32, blk);
            else quant_q4_1(vals + b * 32, blk);
            dequant_block(t, blk, vals + b * 32);
        }
    }
    return out;
}

/* K-quants and IQ4: every quant and sub-block scale bit random, the fp16
 * super-block scales sized so values span about the block's largest
 * magnitude; vals become the stored values (the engine's dequantization,
 * which test_kernels_k holds bit-equal to ggml's) */
static bool is_lowbit(ls_type t) { return ls_type_block_elems(t) > 1 && t != LS_TYPE_Q8_0 && t != LS_TYPE_Q4_0 && t != LS_TYPE_Q4_1; }
static uint8_t *encode_lowbit(ls_type t, float *vals, int64_t rows, int64_t cols, uint64_t *rng) {
    const int64_t be = ls_type_block_elems(t), nblk = rows * cols / be;
    const size_t bb = ls_type_block_bytes(t);
    uint8_t *out = malloc((size_t)nblk * bb);
    for (size_t i = 0; i < (size_t)nblk * bb; i++) out[i] = (uint8_t)rng_next(rng);
    for (int64_t b = 0; b < nblk; b++) {
        float a = 0.0f;
        for (int64_t j = 0; j < be; j++) a = fmaxf(a, fabsf(vals[b * be + j]));
        uint8_t *blk = out + (size_t)b * bb;
        uint16_t d = 0, dmin = 0;
        size_t at_d = 0, at_m = 2;
        switch (t) {
        case LS_TYPE_Q2_K: d = ls_f32_to_f16(a / 24); dmin = ls_f32_to_f16(a / 30); at_d = 80; at_m = 82; break;
        case LS_TYPE_Q3_K: d = ls_f32_to_f16(a / 64); at_d = 108; break;
        case LS_TYPE_Q4_K: d = ls_f32_to_f16(a / 504); dmin = ls_f32_to_f16(a / 63); break;
        case LS_TYPE_Q5_K: d = ls_f32_to_f16(a / 1008); dmin = ls_f32_to_f16(a / 63); break;
        case LS_TYPE_Q6_K: d = ls_f32_to_f16(a / 2048); at_d = 208; break;
        case LS_TYPE_IQ4_XS: d = ls_f32_to_f16(a / 2032); break;
        case LS_TYPE_IQ4_NL: d = ls_f32_to_f16(a / 127); break;
        case LS_TYPE_Q5_0: d = ls_f32_to_f16(a / 16); break;
        case LS_TYPE_Q5_1: d = ls_f32_to_f16(a / 16); dmin = ls_f32_to_f16(-a); break;
        default: abort();
        }
        memcpy(blk + at_d, &d, 2);
        if (t == LS_TYPE_Q2_K || t == LS_TYPE_Q4_K || t == LS_TYPE_Q5_K || t == LS_TYPE_Q5_1)
            memcpy(blk + at_m, &dmin, 2);
    }
    const ls_weight w = {.type = t, .rows = rows, .cols = cols, .data = out};
    for (int64_t r = 0; r < rows; r++) ls_weight_get_row(&w, r, vals + r * cols);
    return out;
}

static rm_tensor *add_t(rm_model *m, const char *hf, const char *gg, int64_t rows, int64_t cols,
                        float scale, float offset, uint64_t *rng) {
    rm_tensor *t = &m->t[m->n_t++];
    snprintf(t->hf_name, sizeof t->hf_name, "%s", hf);
    snprintf(t->gguf_name, sizeof t->gguf_name, "%s", gg);
    t->rows = rows;
    t->cols = cols;
    t->is_matrix = cols > 0;
    int64_t n = rows * (cols > 0 ? cols : 1);
    t->val = malloc(sizeof(float) * (size_t)n);
    /* one rounding (fma) on every build: a compiler that contracts and one
     * that does not would otherwise make different models */
    for (int64_t i = 0; i < n; i++) t->val[i] = fmaf(scale, rng_uniform(rng), offset);
    return t;
}

static const rm_tensor *find_t(const rm_model *m, const char *hf) {
    for (int i = 0; i < m->n_t; i++)
        if (strcmp(m->t[i].hf_name, hf) == 0) return &m->t[i];
    return NULL;
}

rm_model *rm_model_create(const rm_spec *spec) {
    rm_model *m = calloc(1, sizeof *m);
    m->s = *spec;
    ls_err err;
    if (gguf_ctx_init_from_file(spec->vocab_gguf, &m->vocab, &err) != LS_OK) {
        fprintf(stderr, "random_model: %s\n", err.msg);
        free(m);
        return NULL;
    }
    const gguf_kv *toks = gguf_find_kv(m->vocab, "tokenizer.ggml.tokens");
    if (!toks) { gguf_ctx_free(m->vocab); free(m); return NULL; }
    m->n_vocab = (int)toks->arr_n;
    m->head_dim = spec->dim / spec->n_heads;
    m->t = calloc((size_t)(4 + 9 * spec->n_layers), sizeof(rm_tensor));
    uint64_t rng = spec->seed;
    const int D = spec->dim, hd = m->head_dim, F = spec->ffn_dim;
    const float ws = 1.0f / sqrtf((float)D);
    add_t(m, "model.embed_tokens.weight", "token_embd.weight", m->n_vocab, D, 1.0f, 0, &rng);
    for (int l = 0; l < spec->n_layers; l++) {
        char h[96], g[96];
#define T(hs, gs, r, c, sc, off) (snprintf(h, sizeof h, "model.layers.%d." hs, l), \
        snprintf(g, sizeof g, "blk.%d." gs, l), add_t(m, h, g, r, c, sc, off, &rng))
        T("input_layernorm.weight", "attn_norm.weight", D, 0, 0.2f, 1.0f);
        rm_tensor *q = T("self_attn.q_proj.weight", "attn_q.weight", spec->n_heads * hd, D, ws * 2, 0);
        q->qk = true; q->heads = spec->n_heads;
        rm_tensor *k = T("self_attn.k_proj.weight", "attn_k.weight", spec->n_kv_heads * hd, D, ws * 2, 0);
        k->qk = true; k->heads = spec->n_kv_heads;
        T("self_attn.v_proj.weight", "attn_v.weight", spec->n_kv_heads * hd, D, ws, 0);
        T("self_attn.o_proj.weight", "attn_output.weight", D, spec->n_heads * hd, ws, 0);
        T("post_attention_layernorm.weight", "ffn_norm.weight", D, 0, 0.2f, 1.0f);
        T("mlp.gate_proj.weight", "ffn_gate.weight", F, D, ws, 0);
        T("mlp.up_proj.weight", "ffn_up.weight", F, D, ws, 0);
        T("mlp.down_proj.weight", "ffn_down.weight", D, F, 1.0f / sqrtf((float)F), 0);
#undef T
    }
    add_t(m, "model.norm.weight", "output_norm.weight", D, 0, 0.2f, 1.0f, &rng);
    if (!spec->tied) add_t(m, "lm_head.weight", "output.weight", m->n_vocab, D, ws, 0, &rng);
    /* round every matrix to its storage type now, so both files and the
     * reference see identical values */
    int k = 0;
    for (int i = 0; i < m->n_t; i++) {
        rm_tensor *t = &m->t[i];
        if (!t->is_matrix) continue;
        t->type = spec->mix ? spec->mix[k++ % spec->n_mix] : spec->dtype;
        if (is_lowbit(t->type)) t->enc = encode_lowbit(t->type, t->val, t->rows, t->cols, &rng);
        else free(encode(t->type, t->val, t->rows * t->cols));
    }
    return m;
}

rm_spec rm_lowbit_spec(const char *vocab_gguf) {
    static const ls_type mix[] = {LS_TYPE_Q2_K, LS_TYPE_Q3_K, LS_TYPE_Q4_K, LS_TYPE_Q5_K,
                                  LS_TYPE_Q6_K, LS_TYPE_IQ4_NL, LS_TYPE_IQ4_XS};
    return (rm_spec){.n_layers = 2, .dim = 256, .n_heads = 4, .n_kv_heads = 2, .ffn_dim = 512,
                     .rope_theta = 10000.0f, .norm_eps = 1e-5f, .dtype = LS_TYPE_F32, .mix = mix, .n_mix = 7,
                     .vocab_gguf = vocab_gguf, .seed = 21, .n_shards = 1};
}

void rm_model_free(rm_model *m) {
    if (!m) return;
    for (int i = 0; i < m->n_t; i++) {
        free(m->t[i].val);
        free(m->t[i].enc);
    }
    free(m->t);
    gguf_ctx_free(m->vocab);
    free(m);
}

int rm_model_n_vocab(const rm_model *m) { return m->n_vocab; }

/* ---------------------------------------------------------------- GGUF */

static void copy_tokenizer_kvs(const gguf_ctx *v, gguf_writer *w) {
    for (uint64_t i = 0; i < v->n_kv; i++)
        if (v->kv[i].key.len >= 10 && memcmp(v->kv[i].key.ptr, "tokenizer.", 10) == 0)
            gguf_writer_copy_kv(w, &v->kv[i]);
}

/* llama.cpp's converter: per head, rows i and i + hd/2 become rows 2i, 2i+1 */
static float *permute_qk(const rm_tensor *t) {
    const int64_t hd = t->rows / t->heads, cols = t->cols;
    float *out = malloc(sizeof(float) * (size_t)(t->rows * cols));
    for (int h = 0; h < t->heads; h++)
        for (int64_t i = 0; i < hd / 2; i++) {
            memcpy(out + (h * hd + 2 * i) * cols, t->val + (h * hd + i) * cols, sizeof(float) * (size_t)cols);
            memcpy(out + (h * hd + 2 * i + 1) * cols, t->val + (h * hd + i + hd / 2) * cols, sizeof(float) * (size_t)cols);
        }
    return out;
}

bool rm_write_gguf(const rm_model *m, const char *path) {
    const rm_spec *s = &m->s;
    gguf_writer *w = gguf_writer_init();
    gguf_writer_add_str(w, "general.architecture", "llama");
    gguf_writer_add_str(w, "general.name", "random-test-model");
    gguf_writer_add_u32(w, "llama.block_count", (uint32_t)s->n_layers);
    gguf_writer_add_u32(w, "llama.context_length", 4096);
    gguf_writer_add_u32(w, "llama.embedding_length", (uint32_t)s->dim);
    gguf_writer_add_u32(w, "llama.feed_forward_length", (uint32_t)s->ffn_dim);
    gguf_writer_add_u32(w, "llama.attention.head_count", (uint32_t)s->n_heads);
    gguf_writer_add_u32(w, "llama.attention.head_count_kv", (uint32_t)s->n_kv_heads);
    gguf_writer_add_f32(w, "llama.rope.freq_base", s->rope_theta);
    gguf_writer_add_f32(w, "llama.attention.layer_norm_rms_epsilon", s->norm_eps);
    gguf_writer_add_u32(w, "llama.rope.dimension_count", (uint32_t)m->head_dim);
    gguf_writer_add_u32(w, "llama.vocab_size", (uint32_t)m->n_vocab);
    copy_tokenizer_kvs(m->vocab, w);
    void **bufs = calloc((size_t)m->n_t + 1, sizeof(void *));
    int nb = 0;
    for (int i = 0; i < m->n_t; i++) {
        const rm_tensor *t = &m->t[i];
        if (t->is_matrix && t->enc) { /* the blocks as made; q/k rows permuted whole */
            const size_t rb = (size_t)(t->cols / ls_type_block_elems(t->type)) * ls_type_block_bytes(t->type);
            uint8_t *b = malloc(rb * (size_t)t->rows);
            const int64_t hd = t->qk ? t->rows / t->heads : 0;
            for (int64_t r = 0; r < t->rows; r++) {
                int64_t src = r;
                if (t->qk) { /* GGUF row h*hd + 2i (+1) is HF row h*hd + i (+ hd/2) */
                    const int64_t h = r / hd, j = r % hd;
                    src = h * hd + (j % 2 ? j / 2 + hd / 2 : j / 2);
                }
                memcpy(b + (size_t)r * rb, t->enc + (size_t)src * rb, rb);
            }
            bufs[nb] = b;
            int64_t ne[2] = {t->cols, t->rows};
            gguf_writer_add_tensor(w, t->gguf_name, t->type, 2, ne, bufs[nb++]);
        } else if (t->is_matrix) {
            float *v = t->qk ? permute_qk(t) : NULL;
            int64_t n = t->rows * t->cols;
            float *tmp = malloc(sizeof(float) * (size_t)n);
            memcpy(tmp, v ? v : t->val, sizeof(float) * (size_t)n);
            bufs[nb] = encode(t->type, tmp, n);
            free(tmp);
            free(v);
            int64_t ne[2] = {t->cols, t->rows};
            gguf_writer_add_tensor(w, t->gguf_name, t->type, 2, ne, bufs[nb++]);
        } else {
            int64_t ne[1] = {t->rows};
            gguf_writer_add_tensor(w, t->gguf_name, LS_TYPE_F32, 1, ne, t->val);
        }
    }
    if (s->llama3_rope) { /* llama.cpp stores the llama3 factors as a tensor */
        int half = m->head_dim / 2;
        float *f = malloc(sizeof(float) * (size_t)half);
        const double factor = 8, low = 1, high = 4, orig = 8192;
        for (int i = 0; i < half; i++) {
            double freq = 1.0 / pow(s->rope_theta, 2.0 * i / m->head_dim), wl = 2 * M_PI / freq;
            if (wl < orig / high) f[i] = 1;
            else if (wl > orig / low) f[i] = (float)factor;
            else {
                double sm = (orig / wl - low) / (high - low);
                f[i] = (float)(1.0 / ((1 - sm) / factor + sm));
            }
        }
        int64_t ne[1] = {half};
        gguf_writer_add_tensor(w, "rope_freqs.weight", LS_TYPE_F32, 1, ne, f);
        bufs[nb++] = f;
    }
    bool ok = gguf_writer_write(w, path);
    gguf_writer_free(w);
    for (int i = 0; i < nb; i++) free(bufs[i]);
    free(bufs);
    return ok;
}

/* ------------------------------------------------------- Hugging Face dir */

static bool write_json(const char *dir, const char *name, cJSON *j) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    char *s = cJSON_Print(j);
    FILE *f = fopen(path, "w");
    bool ok = f && fputs(s, f) >= 0;
    if (f) ok = fclose(f) == 0 && ok;
    free(s);
    cJSON_Delete(j);
    return ok;
}

bool rm_write_hf_dir(const rm_model *m, const char *dir) {
    const rm_spec *s = &m->s;
    mkdir(dir, 0755);
    if (s->dtype != LS_TYPE_F32 && s->dtype != LS_TYPE_F16 && s->dtype != LS_TYPE_BF16) return false;
    cJSON *c = cJSON_CreateObject();
    cJSON *arch = cJSON_AddArrayToObject(c, "architectures");
    cJSON_AddItemToArray(arch, cJSON_CreateString("LlamaForCausalLM"));
    cJSON_AddStringToObject(c, "model_type", "llama");
    cJSON_AddNumberToObject(c, "hidden_size", s->dim);
    cJSON_AddNumberToObject(c, "intermediate_size", s->ffn_dim);
    cJSON_AddNumberToObject(c, "num_hidden_layers", s->n_layers);
    cJSON_AddNumberToObject(c, "num_attention_heads", s->n_heads);
    cJSON_AddNumberToObject(c, "num_key_value_heads", s->n_kv_heads);
    cJSON_AddNumberToObject(c, "max_position_embeddings", 4096);
    cJSON_AddNumberToObject(c, "rms_norm_eps", s->norm_eps);
    cJSON_AddNumberToObject(c, "rope_theta", s->rope_theta);
    cJSON_AddNumberToObject(c, "vocab_size", m->n_vocab);
    cJSON_AddBoolToObject(c, "tie_word_embeddings", s->tied);
    cJSON_AddStringToObject(c, "torch_dtype", s->dtype == LS_TYPE_F32 ? "float32" : s->dtype == LS_TYPE_F16 ? "float16" : "bfloat16");
    if (s->llama3_rope) {
        cJSON *rs = cJSON_AddObjectToObject(c, "rope_scaling");
        cJSON_AddStringToObject(rs, "rope_type", "llama3");
        cJSON_AddNumberToObject(rs, "factor", 8.0);
        cJSON_AddNumberToObject(rs, "low_freq_factor", 1.0);
        cJSON_AddNumberToObject(rs, "high_freq_factor", 4.0);
        cJSON_AddNumberToObject(rs, "original_max_position_embeddings", 8192);
    } else {
        cJSON_AddNullToObject(c, "rope_scaling");
    }
    if (!write_json(dir, "config.json", c)) return false;

    const int n_shards = s->n_shards > 1 ? s->n_shards : 1;
    st_writer **ws = calloc((size_t)n_shards, sizeof(st_writer *));
    void **bufs = calloc((size_t)m->n_t, sizeof(void *));
    for (int k = 0; k < n_shards; k++) {
        ws[k] = st_writer_init();
        st_writer_add_metadata(ws[k], "format", "pt");
    }
    cJSON *index = cJSON_CreateObject();
    cJSON *wm = cJSON_AddObjectToObject(index, "weight_map");
    char fname[64];
    for (int i = 0; i < m->n_t; i++) {
        const rm_tensor *t = &m->t[i];
        int shard = (int)((int64_t)i * n_shards / m->n_t);
        if (n_shards == 1) snprintf(fname, sizeof fname, "model.safetensors");
        else snprintf(fname, sizeof fname, "model-%05d-of-%05d.safetensors", shard + 1, n_shards);
        cJSON_AddStringToObject(wm, t->hf_name, fname);
        int64_t n = t->rows * (t->is_matrix ? t->cols : 1);
        float *tmp = malloc(sizeof(float) * (size_t)n);
        memcpy(tmp, t->val, sizeof(float) * (size_t)n);
        ls_type ty = t->is_matrix ? s->dtype : LS_TYPE_F32;
        bufs[i] = encode(ty, tmp, n);
        free(tmp);
        int64_t shape[2] = {t->rows, t->cols};
        st_writer_add_tensor(ws[shard], t->hf_name, ty, t->is_matrix ? 2 : 1, shape, bufs[i]);
    }
    bool ok = true;
    for (int k = 0; k < n_shards; k++) {
        char path[4096];
        if (n_shards == 1) snprintf(path, sizeof path, "%s/model.safetensors", dir);
        else snprintf(path, sizeof path, "%s/model-%05d-of-%05d.safetensors", dir, k + 1, n_shards);
        ok = st_writer_write(ws[k], path) && ok;
        st_writer_free(ws[k]);
    }
    free(ws);
    for (int i = 0; i < m->n_t; i++) free(bufs[i]);
    free(bufs);
    if (n_shards > 1) ok = write_json(dir, "model.safetensors.index.json", index) && ok;
    else cJSON_Delete(index);

    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    ok = tokjson_write_from_gguf(m->vocab, path) && ok;
    uint32_t bos = 1, eos = 2;
    gguf_get_u32(m->vocab, "tokenizer.ggml.bos_token_id", &bos, false, NULL);
    gguf_get_u32(m->vocab, "tokenizer.ggml.eos_token_id", &eos, false, NULL);
    cJSON *g = cJSON_CreateObject();
    cJSON_AddNumberToObject(g, "bos_token_id", bos);
    cJSON_AddNumberToObject(g, "eos_token_id", eos);
    ok = write_json(dir, "generation_config.json", g) && ok;
    cJSON *tc = cJSON_CreateObject();
    bool add_bos = true;
    gguf_get_bool(m->vocab, "tokenizer.ggml.add_bos_token", &add_bos, false, NULL);
    cJSON_AddBoolToObject(tc, "add_bos_token", add_bos);
    ok = write_json(dir, "tokenizer_config.json", tc) && ok;
    return ok;
}

/* ------------------------------------------------------ reference forward */

static void rmsnorm_d(double *out, const double *x, const float *g, int n, double eps) {
    double ss = 0;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    double sc = 1.0 / sqrt(ss / n + eps);
    for (int i = 0; i < n; i++) out[i] = x[i] * sc * g[i];
}

static void matvec_d(double *y, const rm_tensor *w, const double *x) {
    for (int64_t r = 0; r < w->rows; r++) {
        double acc = 0;
        const float *row = w->val + r * w->cols;
        for (int64_t c = 0; c < w->cols; c++) acc += (double)row[c] * x[c];
        y[r] = acc;
    }
}

double *rm_reference_logits(const rm_model *m, const int32_t *tokens, int n) {
    const rm_spec *s = &m->s;
    const int D = s->dim, hd = m->head_dim, H = s->n_heads, KVH = s->n_kv_heads, F = s->ffn_dim;
    const int V = m->n_vocab;
    double *x = calloc((size_t)n * D, sizeof(double));
    double *xn = malloc(sizeof(double) * (size_t)D);
    double *q = malloc(sizeof(double) * (size_t)n * H * hd);
    double *k = malloc(sizeof(double) * (size_t)n * KVH * hd);
    double *v = malloc(sizeof(double) * (size_t)n * KVH * hd);
    double *att = malloc(sizeof(double) * (size_t)H * hd);
    double *tmp = malloc(sizeof(double) * (size_t)(F > D ? F : D));
    double *g = malloc(sizeof(double) * (size_t)F), *u = malloc(sizeof(double) * (size_t)F);
    double *sc = malloc(sizeof(double) * (size_t)n);
    double *logits = malloc(sizeof(double) * (size_t)n * V);
    const rm_tensor *emb = find_t(m, "model.embed_tokens.weight");
    for (int i = 0; i < n; i++)
        for (int d = 0; d < D; d++) x[(size_t)i * D + d] = emb->val[(size_t)tokens[i] * D + d];
    /* inverse frequencies, with llama3 scaling when asked */
    double *inv = malloc(sizeof(double) * (size_t)hd / 2);
    for (int j = 0; j < hd / 2; j++) {
        double freq = 1.0 / pow(s->rope_theta, 2.0 * j / hd);
        if (s->llama3_rope) {
            const double factor = 8, low = 1, high = 4, orig = 8192, wl = 2 * M_PI / freq;
            if (wl > orig / low) freq /= factor;
            else if (wl >= orig / high) {
                double sm = (orig / wl - low) / (high - low);
                freq = (1 - sm) * freq / factor + sm * freq;
            }
        }
        inv[j] = freq;
    }
    for (int l = 0; l < s->n_layers; l++) {
        char nm[128];
#define W(suffix) (snprintf(nm, sizeof nm, "model.layers.%d." suffix, l), find_t(m, nm))
        const rm_tensor *an = W("input_layernorm.weight"), *wq = W("self_attn.q_proj.weight"),
                        *wk = W("self_attn.k_proj.weight"), *wv = W("self_attn.v_proj.weight"),
                        *wo = W("self_attn.o_proj.weight"), *fn = W("post_attention_layernorm.weight"),
                        *wg = W("mlp.gate_proj.weight"), *wu = W("mlp.up_proj.weight"),
                        *wd = W("mlp.down_proj.weight");
#undef W
        for (int i = 0; i < n; i++) {
            rmsnorm_d(xn, x + (size_t)i * D, an->val, D, s->norm_eps);
            matvec_d(q + (size_t)i * H * hd, wq, xn);
            matvec_d(k + (size_t)i * KVH * hd, wk, xn);
            matvec_d(v + (size_t)i * KVH * hd, wv, xn);
            /* rotate_half rotary embedding (Hugging Face layout) */
            for (int h = 0; h < H + KVH; h++) {
                double *vec = h < H ? q + ((size_t)i * H + h) * hd : k + ((size_t)i * KVH + h - H) * hd;
                for (int j = 0; j < hd / 2; j++) {
                    double a = i * inv[j], c0 = cos(a), s0 = sin(a);
                    double x0 = vec[j], x1 = vec[j + hd / 2];
                    vec[j] = x0 * c0 - x1 * s0;
                    vec[j + hd / 2] = x0 * s0 + x1 * c0;
                }
            }
        }
        for (int i = 0; i < n; i++) { /* causal attention for position i */
            for (int h = 0; h < H; h++) {
                int kh = h / (H / KVH);
                double mx = -INFINITY, sum = 0;
                for (int t = 0; t <= i; t++) {
                    double d = 0;
                    for (int e = 0; e < hd; e++) d += q[((size_t)i * H + h) * hd + e] * k[((size_t)t * KVH + kh) * hd + e];
                    sc[t] = d / sqrt((double)hd);
                    if (sc[t] > mx) mx = sc[t];
                }
                for (int t = 0; t <= i; t++) { sc[t] = exp(sc[t] - mx); sum += sc[t]; }
                for (int e = 0; e < hd; e++) {
                    double acc = 0;
                    for (int t = 0; t <= i; t++) acc += sc[t] / sum * v[((size_t)t * KVH + kh) * hd + e];
                    att[h * hd + e] = acc;
                }
            }
            matvec_d(tmp, wo, att);
            for (int d = 0; d < D; d++) x[(size_t)i * D + d] += tmp[d];
            rmsnorm_d(xn, x + (size_t)i * D, fn->val, D, s->norm_eps);
            matvec_d(g, wg, xn);
            matvec_d(u, wu, xn);
            for (int f = 0; f < F; f++) g[f] = g[f] / (1 + exp(-g[f])) * u[f];
            matvec_d(tmp, wd, g);
            for (int d = 0; d < D; d++) x[(size_t)i * D + d] += tmp[d];
        }
    }
    const rm_tensor *on = find_t(m, "model.norm.weight");
    const rm_tensor *head = s->tied ? emb : find_t(m, "lm_head.weight");
    for (int i = 0; i < n; i++) {
        rmsnorm_d(xn, x + (size_t)i * D, on->val, D, s->norm_eps);
        matvec_d(logits + (size_t)i * V, head, xn);
    }
    free(x); free(xn); free(q); free(k); free(v); free(att); free(tmp); free(g); free(u); free(sc); free(inv);
    return logits;
}
