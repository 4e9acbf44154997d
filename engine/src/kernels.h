/* kernels.h: the engine's math. Matrix products of a weight matrix (any
 * supported ls_type, row-major, memory-mapped) with a batch of activation
 * rows, a thread pool that owns the cores, and the small vector ops of a
 * Llama forward pass.
 *
 * Numerics follow llama.cpp so greedy outputs match it token for token:
 * for quantized weights the activations are quantized per 32-element block
 * (Q8_0-style for Q4_0/Q5_0/Q8_0/IQ4_NL weights, Q8_1-style with the fp16 block
 * sum for Q4_1/Q5_1 weights, Q8_K per 256 for the K-quants and IQ4_XS) and
 * dotted in integers; F16/BF16/F32 weights dot in f32. K-quant and IQ4 outputs
 * are always llama.cpp's bits (kernels_k.c), with or without LS_MATMUL_EXACT.
 * The multi-row path streams each weight row once for all rows of a batch
 * (decode, verification of k+1 drafted positions, and in exact mode every
 * prompt batch: on AVX2 it beats OpenBLAS at every size measured). Without
 * LS_MATMUL_EXACT, batches past a size measured per OpenBLAS kernel
 * dequantize weight tiles and call sgemm on the quantize-dequantized
 * activations (same rounding as the integer path, other summation order).
 * Every fast kernel has a scalar reference beside it (ls_matmul_ref). */
#ifndef LS_KERNELS_H
#define LS_KERNELS_H

#include "layerskip/ls_common.h"

/* ---- thread pool: one owner of the cores (OpenBLAS is set to 1 thread) --- */
typedef struct ls_pool ls_pool;
ls_pool *ls_pool_create(int n_threads);   /* n_threads >= 1; caller is thread 0 */
void ls_pool_free(ls_pool *p);
int ls_pool_size(const ls_pool *p);
/* run fn(arg, ith, nth) on every thread (ith = 0..nth-1) and wait for all */
void ls_pool_run(ls_pool *p, void (*fn)(void *arg, int ith, int nth), void *arg);

/* ---- weights ---- */
typedef struct ls_weight {
    ls_type type;
    int64_t rows;         /* output features */
    int64_t cols;         /* input features (contiguous) */
    const void *data;     /* rows x row_bytes */
} ls_weight;

size_t ls_weight_row_bytes(const ls_weight *w);
/* dequantize row r into out[cols] */
void ls_weight_get_row(const ls_weight *w, int64_t r, float *out);

/* y[i*rows + r] = dot(W[r,:], x[i*cols : (i+1)*cols]) for i in [0,n).
 * pool may be NULL (single thread). Thread-safe for distinct y. */
void ls_matmul(ls_pool *pool, const ls_weight *w, const float *x, int64_t n, float *y);
/* the same, obviously correct and slow (dequantize, quantize activations the
 * same way, dot in double order-independent enough for tests) */
void ls_matmul_ref(const ls_weight *w, const float *x, int64_t n, float *y);
/* ls_matmul with options (0 = ls_matmul).
 * LS_MATMUL_EXACT: for Q4_0/Q4_1/Q5_0/Q5_1/Q8_0 weights every output is bit for bit
 * what llama.cpp's x86 AVX2/VNNI single-row dot (ggml_vec_dot_q4_1_q8_1 etc.)
 * returns, for any n (checked against ggml from llama-cpp-python 0.3.36):
 * always the multi-row path, Q4_1/Q5_1 block mins summed in block order after
 * the rest (Q4_1 ~15-20% slower; Q4_0/Q5_0/Q8_0 run as fast as without the flag,
 * their default order already is llama.cpp's). Float weights keep their own
 * (batch-invariant) order; the portable scalar build sums in a plain order.
 * Without the flag, multi-row outputs are still batch invariant: row i of
 * an n-row call is bit for bit the 1-row call on it, on any thread count. */
#define LS_MATMUL_EXACT 1u
void ls_matmul_ex(ls_pool *pool, const ls_weight *w, const float *x, int64_t n, float *y, unsigned flags);
/* The two paths ls_matmul chooses between (any n works on either; exposed
 * for tests and benchmarks): multi-row streams each weight row once for
 * all n rows; sgemm dequantizes weight tiles for OpenBLAS. ls_matmul takes
 * sgemm when n >= ls_matmul_sgemm_min_n(type). */
void ls_matmul_multirow(ls_pool *pool, const ls_weight *w, const float *x, int64_t n, float *y);
void ls_matmul_sgemm(ls_pool *pool, const ls_weight *w, const float *x, int64_t n, float *y);
int64_t ls_matmul_sgemm_min_n(ls_type t);

/* Activation quantization exactly as the integer path does it (llama.cpp's
 * x86 rounding: d = amax/127 stored as fp16, q = round-half-even(x*127/amax)),
 * in ggml block layouts; n is a multiple of 32.
 * q8_0: 34 bytes per block {fp16 d; int8 q[32]}
 * q8_1: 36 bytes per block {fp16 d; fp16 s = fp16(d * sum(q)); int8 q[32]} */
void ls_quantize_row_q8_0(const float *x, int64_t n, void *dst);
void ls_quantize_row_q8_1(const float *x, int64_t n, void *dst);

/* ---- vector ops ---- */
/* out = x / sqrt(mean(x^2) + eps) * g  (n elements; sum accumulated in double) */
void ls_rmsnorm(float *out, const float *x, const float *g, int64_t n, float eps);
/* in-place softmax over n elements, in ggml_vec_soft_max_f32's order */
void ls_softmax(float *x, int64_t n);
/* out[i] = silu(gate[i]) * up[i], in ggml_vec_swiglu_f32's order (call per row) */
void ls_swiglu(float *out, const float *gate, const float *up, int64_t n);
float ls_dot_f32(const float *a, const float *b, int64_t n);
/* y += a * x */
void ls_axpy_f32(float *y, float a, const float *x, int64_t n);
/* fp16 row helpers for the KV cache */
void ls_f32_to_f16_row(uint16_t *dst, const float *src, int64_t n);
void ls_f16_to_f32_row(float *dst, const uint16_t *src, int64_t n);
float ls_dot_f16_f32(const uint16_t *a, const float *b, int64_t n);
/* y += a * x (x in fp16) */
void ls_axpy_f16(float *y, float a, const uint16_t *x, int64_t n);

/* ---- attention over fp16 KV caches (kernels_attn.c) ----
 * ls_pool_run(pool, ls_attn_worker, &batch) runs one layer's attention for
 * several sequences at once: job s holds n positions x n_heads queries of
 * one sequence, whose position i (0-based in the job) attends to rows
 * [0, pos + i] of that sequence's cache. A task is up to qb (<= LS_ATTN_QB)
 * queries of one KV head of one job; tasks of all jobs are spread over the
 * threads. Arithmetic: llama.cpp's single-token path (fp16-rounded
 * queries, ggml_vec_dot_f16 order, ggml's softmax, fp16 probabilities), the
 * same for every position of any batch. */
#define LS_ATTN_QB 8
/* scratch floats per thread: LS_ATTN_QB widened queries, one widened row,
 * LS_ATTN_QB x 32 partial output rows */
static inline size_t ls_attn_scratch_floats(int hd) { return ((size_t)LS_ATTN_QB * 33 + 1) * (size_t)hd; }
typedef struct ls_attn_job {
    int pos, n, qb;
    const float *q;           /* (n, n_heads, head_dim) rotated queries */
    const uint16_t *k, *v;    /* cache row t of this layer at k + t * kv_stride */
    float *out;               /* (n, n_heads, head_dim) */
} ls_attn_job;
typedef struct ls_attn_batch {
    int head_dim, n_heads, n_kv_heads;
    size_t kv_stride;         /* elements between positions (n_kv_heads * head_dim) */
    const ls_attn_job *jobs;
    int n_jobs;
    float *scratch;           /* (threads, ls_attn_scratch_floats(head_dim)) */
    float *scores;            /* (threads, LS_ATTN_QB, scores_cap) */
    int scores_cap;           /* >= every job's pos + n */
} ls_attn_batch;
void ls_attn_worker(void *arg, int ith, int nth);

/* ---- kernel variants (kernels_dispatch.c, kernels_variants.h) ----
 * Variants built into this binary, best first; the engine runs the best one
 * this CPU supports, or the one named by the environment variable
 * LS_KERNELS (portable, avx2, avxvnni, avx512). ls_kernels_use switches
 * (tests and benchmarks; never while kernels run): false, and no change,
 * when the name is unknown or this CPU lacks the instructions. */
int ls_kernels_count(void);
const char *ls_kernels_name(int i);
bool ls_kernels_cpu_has(int i);
bool ls_kernels_use(const char *name);

#endif
