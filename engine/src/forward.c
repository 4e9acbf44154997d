/* forward.c: the Llama forward pass over a layer range, the exit head, and
 * the per-sequence KV cache.
 *
 * Numerics follow llama.cpp's CPU path so greedy decoding matches it token
 * for token: KV cache in fp16; queries rounded to fp16 before Q.K; softmax
 * probabilities rounded to fp16 before the weighted sum of V; rotary angles
 * accumulated as theta *= theta_scale in float. The hot spot is ls_matmul
 * (kernels.c); attention is split over (position, head) pairs. */
#include "model_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

struct ls_kv {
    int l0, l1, n_ctx, kv_dim;
    int *len;             /* (l1 - l0) valid positions per layer */
    uint16_t *k;          /* (l1 - l0, n_ctx, kv_dim) fp16 */
    uint16_t *v;          /* (l1 - l0, n_ctx, kv_dim) fp16 */
    size_t bytes;         /* of k and v together (ls_kv_bytes) */
};

/* K and V come straight from the OS: pages become resident as positions
 * are written, and go back when the cache is freed (a server makes and
 * frees one per request; the heap would keep them) */
static uint16_t *kv_map(size_t bytes) {
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

uint64_t ls_kv_bytes(const ls_model *m, int l0, int l1, int n_ctx) {
    const ls_config *c = &m->cfg;
    return 2ull * (uint64_t)(l1 - l0) * (uint64_t)n_ctx * (uint64_t)c->n_kv_heads * (uint64_t)c->head_dim *
           sizeof(uint16_t);
}

ls_status ls_kv_create(const ls_model *m, int l0, int l1, int n_ctx, ls_kv **out, ls_err *err) {
    *out = NULL;
    const ls_config *c = &m->cfg;
    if (l0 < 0 || l1 > c->n_layers || l0 >= l1)
        return ls_err_set(err, LS_ERR_INVALID, "KV cache layer range [%d, %d) is not within [0, %d)", l0, l1, c->n_layers);
    if (n_ctx < 1 || n_ctx > (1 << 22))
        return ls_err_set(err, LS_ERR_INVALID, "context size %d is out of range [1, %d]", n_ctx, 1 << 22);
    ls_kv *kv = calloc(1, sizeof *kv);
    if (!kv) return ls_err_set(err, LS_ERR_NOMEM, "out of memory for the KV cache");
    kv->l0 = l0;
    kv->l1 = l1;
    kv->n_ctx = n_ctx;
    kv->kv_dim = c->n_kv_heads * c->head_dim;
    kv->bytes = (size_t)ls_kv_bytes(m, l0, l1, n_ctx);
    kv->len = calloc((size_t)(l1 - l0), sizeof(int));
    kv->k = kv_map(kv->bytes / 2);
    kv->v = kv_map(kv->bytes / 2);
    if (!kv->len || !kv->k || !kv->v) {
        ls_kv_free(kv);
        return ls_err_set(err, LS_ERR_NOMEM, "out of memory for a KV cache of %zu MB (reduce --ctx)",
                          kv->bytes / (1024 * 1024));
    }
    *out = kv;
    return LS_OK;
}

void ls_kv_free(ls_kv *kv) {
    if (!kv) return;
    free(kv->len);
    if (kv->k) munmap(kv->k, kv->bytes / 2);
    if (kv->v) munmap(kv->v, kv->bytes / 2);
    free(kv);
}

int ls_kv_n_ctx(const ls_kv *kv) { return kv->n_ctx; }

int ls_kv_len(const ls_kv *kv, int layer) {
    if (layer < kv->l0 || layer >= kv->l1) return 0;
    return kv->len[layer - kv->l0];
}

void ls_kv_truncate(ls_kv *kv, int l0, int l1, int len) {
    if (len < 0) len = 0;
    for (int l = l0 < kv->l0 ? kv->l0 : l0; l < l1 && l < kv->l1; l++)
        if (kv->len[l - kv->l0] > len) kv->len[l - kv->l0] = len;
}

static size_t kv_off(const ls_kv *kv, int layer, int pos) {
    return ((size_t)(layer - kv->l0) * (size_t)kv->n_ctx + (size_t)pos) * (size_t)kv->kv_dim;
}

const uint16_t *ls_kv_k_row(const ls_kv *kv, int layer, int pos) { return kv->k + kv_off(kv, layer, pos); }
const uint16_t *ls_kv_v_row(const ls_kv *kv, int layer, int pos) { return kv->v + kv_off(kv, layer, pos); }

/* ------------------------------------------------------------------ ctx */

struct ls_ctx {
    const ls_model *m;
    ls_pool *pool;
    int max_batch;
    float *xb;            /* (B, dim) normed input */
    float *q;             /* (B, n_heads*head_dim) */
    float *k;             /* (B, kv_dim) */
    float *v;             /* (B, kv_dim) */
    float *att;           /* (B, n_heads*head_dim) attention output */
    float *hb;            /* (B, ffn_dim) */
    float *hb2;           /* (B, ffn_dim) */
    float *tmp;           /* (B, dim) */
    float *scores;        /* (n_threads, LS_ATTN_QB, scores_cap) */
    float *vacc;          /* (n_threads, ls_attn_scratch_floats(head_dim)) attention scratch */
    int scores_cap;
    float *rope_cos;      /* (B, head_dim/2) */
    float *rope_sin;      /* (B, head_dim/2) */
    ls_attn_job *jobs;    /* (B) one attention job per sequence of a call */
    bool exact;           /* per-row matrix products for any batch size */
    ls_counters counters;
};

ls_status ls_ctx_create(const ls_model *m, int n_threads, int max_batch, ls_ctx **out, ls_err *err) {
    *out = NULL;
    if (n_threads < 1 || n_threads > 256)
        return ls_err_set(err, LS_ERR_INVALID, "thread count %d is out of range [1, 256]", n_threads);
    if (max_batch < 1 || max_batch > 65536)
        return ls_err_set(err, LS_ERR_INVALID, "batch size %d is out of range [1, 65536]", max_batch);
    const ls_config *c = &m->cfg;
    ls_ctx *x = calloc(1, sizeof *x);
    if (!x) return ls_err_set(err, LS_ERR_NOMEM, "out of memory");
    x->m = m;
    x->max_batch = max_batch;
    x->exact = true;
    size_t B = (size_t)max_batch;
    size_t qdim = (size_t)c->n_heads * c->head_dim, kvdim = (size_t)c->n_kv_heads * c->head_dim;
    x->xb = malloc(B * c->dim * sizeof(float));
    x->q = malloc(B * qdim * sizeof(float));
    x->k = malloc(B * kvdim * sizeof(float));
    x->v = malloc(B * kvdim * sizeof(float));
    x->att = malloc(B * qdim * sizeof(float));
    x->hb = malloc(B * c->ffn_dim * sizeof(float));
    x->hb2 = malloc(B * c->ffn_dim * sizeof(float));
    x->tmp = malloc(B * c->dim * sizeof(float));
    x->rope_cos = malloc(B * (c->head_dim / 2) * sizeof(float));
    x->rope_sin = malloc(B * (c->head_dim / 2) * sizeof(float));
    x->pool = ls_pool_create(n_threads);
    x->vacc = malloc(sizeof(float) * ls_attn_scratch_floats(c->head_dim) * (size_t)n_threads);
    x->jobs = malloc(B * sizeof(ls_attn_job));
    if (!x->xb || !x->q || !x->k || !x->v || !x->att || !x->hb || !x->hb2 || !x->tmp ||
        !x->rope_cos || !x->rope_sin || !x->pool || !x->vacc || !x->jobs) {
        ls_ctx_free(x);
        return ls_err_set(err, LS_ERR_NOMEM, "out of memory for a batch of %d positions", max_batch);
    }
    *out = x;
    return LS_OK;
}

void ls_ctx_free(ls_ctx *x) {
    if (!x) return;
    free(x->xb); free(x->q); free(x->k); free(x->v); free(x->att);
    free(x->hb); free(x->hb2); free(x->tmp); free(x->scores); free(x->vacc);
    free(x->rope_cos); free(x->rope_sin); free(x->jobs);
    if (x->pool) ls_pool_free(x->pool);
    free(x);
}

int ls_ctx_max_batch(const ls_ctx *c) { return c->max_batch; }
const ls_model *ls_ctx_model(const ls_ctx *c) { return c->m; }
void ls_ctx_set_exact(ls_ctx *c, bool exact) { c->exact = exact; }
int ls_ctx_n_threads(const ls_ctx *c) { return ls_pool_size(c->pool); }
const ls_counters *ls_ctx_counters(const ls_ctx *c) { return &c->counters; }
void ls_ctx_reset_counters(ls_ctx *c) { memset(&c->counters, 0, sizeof c->counters); }

ls_status ls_embed(ls_ctx *c, const int32_t *tokens, int n, float *hidden, ls_err *err) {
    const ls_model *m = c->m;
    for (int i = 0; i < n; i++) {
        if (tokens[i] < 0 || tokens[i] >= m->cfg.n_vocab)
            return ls_err_set(err, LS_ERR_INVALID, "token id %d is outside the vocabulary [0, %d)", tokens[i], m->cfg.n_vocab);
        ls_weight_get_row(&m->tok_embd, tokens[i], hidden + (size_t)i * m->cfg.dim);
    }
    return LS_OK;
}

/* rotary tables for the rows of a call (sequence s's rows are its positions
 * pos..pos+n-1, sequences one after another), the way llama.cpp builds them */
static void rope_tables(ls_ctx *c, const ls_seq_slice *seqs, int n_seqs) {
    const ls_model *m = c->m;
    const int half = m->cfg.head_dim / 2;
    const float theta_scale = powf(m->cfg.rope_theta, -2.0f / (float)m->cfg.head_dim);
    int i = 0;
    for (int s = 0; s < n_seqs; s++) {
        for (int p = seqs[s].pos; p < seqs[s].pos + seqs[s].n; p++, i++) {
            float theta = (float)p;
            float *cs = c->rope_cos + (size_t)i * half, *sn = c->rope_sin + (size_t)i * half;
            for (int j = 0; j < half; j++) {
                float ff = m->rope_factors ? m->rope_factors[j] : 1.0f;
                float t = m->rope_freq_scale * (theta / ff);
                cs[j] = cosf(t);
                sn[j] = sinf(t);
                theta *= theta_scale;
            }
        }
    }
}

static void rope_apply(const ls_ctx *c, ls_rope_kind kind, float *vec, int n_heads, int i) {
    const ls_model *m = c->m;
    const int hd = m->cfg.head_dim, half = hd / 2;
    const float *cs = c->rope_cos + (size_t)i * half, *sn = c->rope_sin + (size_t)i * half;
    for (int h = 0; h < n_heads; h++) {
        float *x = vec + (size_t)h * hd;
        if (kind == LS_ROPE_NORM) {
            for (int j = 0; j < half; j++) {
                float x0 = x[2 * j], x1 = x[2 * j + 1];
                x[2 * j] = x0 * cs[j] - x1 * sn[j];
                x[2 * j + 1] = x0 * sn[j] + x1 * cs[j];
            }
        } else {
            for (int j = 0; j < half; j++) {
                float x0 = x[j], x1 = x[j + half];
                x[j] = x0 * cs[j] - x1 * sn[j];
                x[j + half] = x0 * sn[j] + x1 * cs[j];
            }
        }
    }
}

/* ---- attention: kernels_attn.c (ls_attn_worker), in llama.cpp's order ---- */

static void matmul(ls_ctx *c, const ls_weight *w, const float *x, int n, float *y) {
    if (c->exact) ls_matmul_ex(c->pool, w, x, n, y, LS_MATMUL_EXACT);
    else ls_matmul(c->pool, w, x, n, y);
}

/* make room for attention scores over up to n_ctx keys of every sequence */
static ls_status scores_reserve(ls_ctx *c, const ls_seq_slice *seqs, int n_seqs, ls_err *err) {
    int cap = 0;
    for (int s = 0; s < n_seqs; s++)
        if (seqs[s].kv->n_ctx > cap) cap = seqs[s].kv->n_ctx;
    if (c->scores_cap >= cap) return LS_OK;
    const int nth = ls_pool_size(c->pool);
    float *s = realloc(c->scores, sizeof(float) * (size_t)cap * LS_ATTN_QB * (size_t)nth);
    if (!s) return ls_err_set(err, LS_ERR_NOMEM, "out of memory for attention scores");
    c->scores = s;
    c->scores_cap = cap;
    return LS_OK;
}

/* queries per attention task: about two tasks a thread, at most LS_ATTN_QB */
static int attn_block(const ls_ctx *c, int n) {
    const ls_config *cfg = &c->m->cfg;
    const int nth = ls_pool_size(c->pool), nh = cfg->n_heads, nkv = cfg->n_kv_heads;
    const int group = nh / nkv, per_kvh = (2 * nth + nkv - 1) / nkv;
    const int n_chunks = per_kvh < n * group ? per_kvh : n * group;
    int attn_qb = (n * group + n_chunks - 1) / n_chunks;
    return attn_qb > LS_ATTN_QB ? LS_ATTN_QB : attn_qb;
}

/* One decoder layer over the n rows of a call (rope tables already built):
 * each sequence's attention with cache layer l of its kv, then the
 * feed-forward part when ffn > 0 (its width; the model's layers use
 * cfg->ffn_dim). The matrix products take all rows at once. */
static void layer_body(ls_ctx *c, const ls_layer *L, ls_rope_kind rk, int ffn, const ls_seq_slice *seqs, int n_seqs,
                       int l, int n, float *hidden) {
    const ls_config *cfg = &c->m->cfg;
    const int dim = cfg->dim, hd = cfg->head_dim, nh = cfg->n_heads, nkv = cfg->n_kv_heads;
    const int qdim = nh * hd, kv_dim = nkv * hd;
    /* attention block: x += Wo . attn(rope(Wq xn), rope(Wk xn), Wv xn) */
    for (int i = 0; i < n; i++)
        ls_rmsnorm(c->xb + (size_t)i * dim, hidden + (size_t)i * dim, L->attn_norm, dim, cfg->norm_eps);
    matmul(c, &L->wq, c->xb, n, c->q);
    matmul(c, &L->wk, c->xb, n, c->k);
    matmul(c, &L->wv, c->xb, n, c->v);
    for (int s = 0, i = 0; s < n_seqs; s++) {
        ls_kv *kv = seqs[s].kv;
        const int pos = seqs[s].pos, i0 = i;
        for (; i < i0 + seqs[s].n; i++) {
            rope_apply(c, rk, c->q + (size_t)i * qdim, nh, i);
            rope_apply(c, rk, c->k + (size_t)i * kv_dim, nkv, i);
            ls_f32_to_f16_row(kv->k + kv_off(kv, l, pos + i - i0), c->k + (size_t)i * kv_dim, kv_dim);
            ls_f32_to_f16_row(kv->v + kv_off(kv, l, pos + i - i0), c->v + (size_t)i * kv_dim, kv_dim);
        }
        kv->len[l - kv->l0] = pos + seqs[s].n;
        c->jobs[s] = (ls_attn_job){.pos = pos, .n = seqs[s].n, .qb = attn_block(c, seqs[s].n),
                                   .q = c->q + (size_t)i0 * qdim, .k = kv->k + kv_off(kv, l, 0),
                                   .v = kv->v + kv_off(kv, l, 0), .out = c->att + (size_t)i0 * qdim};
    }
    ls_attn_batch batch = {.head_dim = hd, .n_heads = nh, .n_kv_heads = nkv, .kv_stride = (size_t)kv_dim,
                           .jobs = c->jobs, .n_jobs = n_seqs, .scratch = c->vacc, .scores = c->scores,
                           .scores_cap = c->scores_cap};
    ls_pool_run(c->pool, ls_attn_worker, &batch);
    matmul(c, &L->wo, c->att, n, c->tmp);
    for (size_t i = 0; i < (size_t)n * dim; i++) hidden[i] += c->tmp[i];
    if (ffn <= 0) return;

    /* feed-forward block: x += W_down (silu(W_gate xn) * W_up xn) */
    for (int i = 0; i < n; i++)
        ls_rmsnorm(c->xb + (size_t)i * dim, hidden + (size_t)i * dim, L->ffn_norm, dim, cfg->norm_eps);
    matmul(c, &L->w_gate, c->xb, n, c->hb);
    matmul(c, &L->w_up, c->xb, n, c->hb2);
    for (int i = 0; i < n; i++)
        ls_swiglu(c->hb + (size_t)i * ffn, c->hb + (size_t)i * ffn, c->hb2 + (size_t)i * ffn, ffn);
    matmul(c, &L->w_down, c->hb, n, c->tmp);
    for (size_t i = 0; i < (size_t)n * dim; i++) hidden[i] += c->tmp[i];
}

ls_status ls_forward_multi(ls_ctx *c, const ls_seq_slice *seqs, int n_seqs, int l0, int l1, float *hidden,
                           ls_err *err) {
    const ls_model *m = c->m;
    const ls_config *cfg = &m->cfg;
    if (n_seqs < 1 || n_seqs > c->max_batch)
        return ls_err_set(err, LS_ERR_INVALID, "%d sequences in one call is outside [1, %d]", n_seqs, c->max_batch);
    int n = 0;
    for (int s = 0; s < n_seqs; s++) {
        const ls_kv *kv = seqs[s].kv;
        const int pos = seqs[s].pos, k = seqs[s].n;
        if (!kv) return ls_err_set(err, LS_ERR_INVALID, "sequence %d has no KV cache", s);
        if (k < 1 || k > c->max_batch - n)
            return ls_err_set(err, LS_ERR_INVALID, "batch of %d positions (sequence %d: %d) is outside [1, %d]",
                              n + k, s, k, c->max_batch);
        n += k;
        if (l0 < kv->l0 || l1 > kv->l1 || l0 >= l1)
            return ls_err_set(err, LS_ERR_INVALID, "layer range [%d, %d) is not held by this KV cache [%d, %d)", l0, l1,
                              kv->l0, kv->l1);
        if (pos < 0 || pos + k > kv->n_ctx)
            return ls_err_set(err, LS_ERR_RANGE, "positions [%d, %d) exceed the context size %d", pos, pos + k,
                              kv->n_ctx);
        for (int l = l0; l < l1; l++)
            if (ls_kv_len(kv, l) < pos)
                return ls_err_set(err, LS_ERR_INVALID, "layer %d has %d cached positions; cannot run position %d", l,
                                  ls_kv_len(kv, l), pos);
        for (int t = 0; t < s; t++)
            if (seqs[t].kv == kv)
                return ls_err_set(err, LS_ERR_INVALID, "sequences %d and %d share one KV cache", t, s);
    }
    ls_status st = scores_reserve(c, seqs, n_seqs, err);
    if (st != LS_OK) return st;
    rope_tables(c, seqs, n_seqs);
    for (int l = l0; l < l1; l++) {
        layer_body(c, &m->layers[l], cfg->rope_kind, cfg->ffn_dim, seqs, n_seqs, l, n, hidden);
        if (l < 256) c->counters.layer_positions[l] += (uint64_t)n;
    }
    c->counters.forward_calls++;
    return LS_OK;
}

ls_status ls_forward(ls_ctx *c, ls_kv *kv, int l0, int l1, int pos, int n, float *hidden, ls_err *err) {
    const ls_seq_slice one = {.kv = kv, .pos = pos, .n = n};
    return ls_forward_multi(c, &one, 1, l0, l1, hidden, err);
}

ls_status ls_forward_block(ls_ctx *c, const ls_layer *blk, int ffn_dim, ls_kv *kv, int pos, int n, float *hidden,
                           ls_err *err) {
    if (n < 1 || n > c->max_batch)
        return ls_err_set(err, LS_ERR_INVALID, "batch of %d positions is outside [1, %d]", n, c->max_batch);
    if (pos < 0 || pos + n > kv->n_ctx)
        return ls_err_set(err, LS_ERR_RANGE, "positions [%d, %d) exceed the context size %d", pos, pos + n, kv->n_ctx);
    if (ls_kv_len(kv, kv->l0) < pos)
        return ls_err_set(err, LS_ERR_INVALID, "the adapter's cache has %d positions; cannot run position %d",
                          ls_kv_len(kv, kv->l0), pos);
    if (ffn_dim > c->m->cfg.ffn_dim)
        return ls_err_set(err, LS_ERR_INVALID, "block feed-forward width %d exceeds the model's %d", ffn_dim,
                          c->m->cfg.ffn_dim);
    const ls_seq_slice one = {.kv = kv, .pos = pos, .n = n};
    ls_status st = scores_reserve(c, &one, 1, err);
    if (st != LS_OK) return st;
    rope_tables(c, &one, 1);
    layer_body(c, blk, LS_ROPE_NORM, ffn_dim, &one, 1, kv->l0, n, hidden);
    return LS_OK;
}

ls_status ls_head_rows(ls_ctx *c, const ls_weight *w, const float *hidden, int n, float *logits, ls_err *err) {
    const ls_model *m = c->m;
    const int dim = m->cfg.dim;
    if (n < 1 || n > c->max_batch)
        return ls_err_set(err, LS_ERR_INVALID, "batch of %d positions is outside [1, %d]", n, c->max_batch);
    for (int i = 0; i < n; i++)
        ls_rmsnorm(c->xb + (size_t)i * dim, hidden + (size_t)i * dim, m->out_norm, dim, m->cfg.norm_eps);
    matmul(c, w, c->xb, n, logits);
    return LS_OK;
}

ls_status ls_exit_head(ls_ctx *c, const float *hidden, int n, float *logits, ls_err *err) {
    ls_status st = ls_head_rows(c, &c->m->output, hidden, n, logits, err);
    if (st == LS_OK) c->counters.head_positions += (uint64_t)n;
    return st;
}
