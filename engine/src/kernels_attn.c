/* kernels_attn.c: attention of a batch of queries over an fp16 KV cache
 * (ls_attn_worker, kernels.h), one of the variant sources (compiled once per
 * instruction set, kernels_variants.h). */
#include "kernels_impl.h"

#include <math.h>

/* ---- attention arithmetic, in llama.cpp's order ----
 * Greedy decoding is chaotic under 8-bit activation quantization: a one-ulp
 * difference in an attention weight can flip a rounding downstream and
 * change a later token. So attention reproduces the exact float operations
 * of llama.cpp's single-token path (ggml_vec_dot_f16 here; ls_softmax and
 * ls_swiglu in kernels_vec.c follow ggml too), for every position of a batch
 * alike: a position's result never depends on the batch it was computed in,
 * which is also what makes self-speculative verification lossless. */

/* ggml's reduction of four 8-lane accumulators: x0+=x2, x1+=x3, x0+=x1, then
 * lanes (l, l+4) paired, then ((t0+t1)+(t2+t3)) */
static float reduce_4x8(float acc[4][8]) {
    float x0[8];
    for (int l = 0; l < 8; l++) {
        float a = acc[0][l] + acc[2][l], b = acc[1][l] + acc[3][l];
        x0[l] = a + b;
    }
    float t0[4];
    for (int l = 0; l < 4; l++) t0[l] = x0[l] + x0[l + 4];
    return (t0[0] + t0[1]) + (t0[2] + t0[3]);
}

#if LS_K_AVX2
/* reduce_4x8 on four registers */
static inline float reduce_4x8_avx2(__m256 s0, __m256 s1, __m256 s2, __m256 s3) {
    s0 = _mm256_add_ps(s0, s2);
    s1 = _mm256_add_ps(s1, s3);
    s0 = _mm256_add_ps(s0, s1);
    __m128 t0 = _mm_add_ps(_mm256_castps256_ps128(s0), _mm256_extractf128_ps(s0, 1));
    __m128 t1 = _mm_hadd_ps(t0, t0);
    return _mm_cvtss_f32(_mm_hadd_ps(t1, t1));
}
#endif

/* dot of two fp16 vectors as ggml_vec_dot_f16: element e accumulates (fma)
 * into lane e%8 of accumulator (e/8)%4; the tail past a multiple of 32 adds
 * in double */
static float dot_f16_ggml(const uint16_t *x, const uint16_t *y, int n) {
    const int np = n & ~31;
    double sumf;
#if LS_K_AVX2
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    for (int i = 0; i < np; i += 32) {
#define LD(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p)))
        s0 = _mm256_fmadd_ps(LD(x + i), LD(y + i), s0);
        s1 = _mm256_fmadd_ps(LD(x + i + 8), LD(y + i + 8), s1);
        s2 = _mm256_fmadd_ps(LD(x + i + 16), LD(y + i + 16), s2);
        s3 = _mm256_fmadd_ps(LD(x + i + 24), LD(y + i + 24), s3);
#undef LD
    }
    sumf = (double)reduce_4x8_avx2(s0, s1, s2, s3);
#else
    float acc[4][8] = {{0}};
    for (int i = 0; i < np; i++)
        acc[(i >> 3) & 3][i & 7] = fmaf(ls_f16_to_f32(x[i]), ls_f16_to_f32(y[i]), acc[(i >> 3) & 3][i & 7]);
    sumf = (double)reduce_4x8(acc);
#endif
    for (int i = np; i < n; i++) sumf += (double)(ls_f16_to_f32(x[i]) * ls_f16_to_f32(y[i]));
    return (float)sumf;
}

/* ggml_vec_dot_f16 on operands already widened from fp16 to fp32 (the
 * widening is exact, so the result is bit for bit ggml's): element e
 * accumulates (fma) into lane e%8 of accumulator (e/8)%4, the tail past a
 * multiple of 32 adds in double */
static inline float dot_ggml_f32(const float *x, const float *y, int n) {
    const int np = n & ~31;
    double sumf;
#if LS_K_AVX2
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    for (int i = 0; i < np; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 16), _mm256_loadu_ps(y + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 24), _mm256_loadu_ps(y + i + 24), s3);
    }
    sumf = (double)reduce_4x8_avx2(s0, s1, s2, s3);
#else
    float acc[4][8] = {{0}};
    for (int i = 0; i < np; i++)
        acc[(i >> 3) & 3][i & 7] = fmaf(x[i], y[i], acc[(i >> 3) & 3][i & 7]);
    sumf = (double)reduce_4x8(acc);
#endif
    for (int i = np; i < n; i++) sumf += (double)(x[i] * y[i]);
    return (float)sumf;
}

/* head kvh of cache row t */
static inline const uint16_t *kv_row(const uint16_t *base, const ls_attn_batch *b, int t, int kvh) {
    return base + (size_t)t * b->kv_stride + (size_t)kvh * (size_t)b->head_dim;
}

/* A task is up to qb queries (position i, head h) of one KV head of one job.
 * Each query gets scores over its cached keys, a softmax, and the weighted
 * sum of the cached values, out[d] = sum_t fp16(p_t) * v_t[d] in ggml's dot
 * order over t (lane t%8 of accumulator (t/8)%4), exactly as one query alone
 * would: the queries only share the widening of each K and V row
 * (verification batches and prefill read every row once per task, not once
 * per query). */
void ls_attn_worker(void *arg, int ith, int nth) {
    const ls_attn_batch *b = arg;
    const int hd = b->head_dim, nh = b->n_heads, nkv = b->n_kv_heads, group = nh / nkv;
    const size_t cap = (size_t)b->scores_cap;
    const float scale = 1.0f / sqrtf((float)hd);
    float *qf = b->scratch + (size_t)ith * ls_attn_scratch_floats(hd); /* (QB, hd) */
    float *row = qf + (size_t)LS_ATTN_QB * hd;                          /* (hd) */
    float *acc = row + hd;                                              /* (QB, 32, hd) */
    float *scores = b->scores + (size_t)ith * LS_ATTN_QB * cap;          /* (QB, scores_cap) */
    uint16_t qh16[1024];
    /* tasks are numbered job by job; this thread takes ith, ith + nth, ... */
    int task = ith, first = 0;
    for (int js = 0; js < b->n_jobs; js++) {
        const ls_attn_job *j = &b->jobs[js];
        const int nq_all = j->n * group, chunks = (nq_all + j->qb - 1) / j->qb, n_tasks = nkv * chunks;
        for (; task < first + n_tasks; task += nth) {
            const int kvh = (task - first) / chunks, q0 = ((task - first) % chunks) * j->qb;
            const int nq = nq_all - q0 < j->qb ? nq_all - q0 : j->qb;
            int qi[LS_ATTN_QB], qhead[LS_ATTN_QB], nk[LS_ATTN_QB], max_keys = 0;
            for (int a = 0; a < nq; a++) {
                qi[a] = (q0 + a) / group;
                qhead[a] = kvh * group + (q0 + a) % group;
                nk[a] = j->pos + qi[a] + 1;
                if (nk[a] > max_keys) max_keys = nk[a];
                /* llama.cpp multiplies fp16 K by fp16-rounded Q */
                ls_f32_to_f16_row(qh16, j->q + ((size_t)qi[a] * nh + qhead[a]) * hd, hd);
                ls_f16_to_f32_row(qf + (size_t)a * hd, qh16, hd);
            }
            if (nq == 1) { /* one query: widening in registers beats a shared row */
                for (int t = 0; t < max_keys; t++) scores[t] = dot_f16_ggml(kv_row(j->k, b, t, kvh), qh16, hd) * scale;
            } else for (int t = 0; t < max_keys; t++) {
                ls_f16_to_f32_row(row, kv_row(j->k, b, t, kvh), hd);
                for (int a = 0; a < nq; a++)
                    if (t < nk[a]) scores[(size_t)a * cap + t] = dot_ggml_f32(row, qf + (size_t)a * hd, hd) * scale;
            }
            for (int a = 0; a < nq; a++) ls_softmax(scores + (size_t)a * cap, nk[a]);
            memset(acc, 0, sizeof(float) * 32 * (size_t)hd * (size_t)nq);
            if (nq == 1) {
                for (int t = 0; t < max_keys; t++) {
                    const float p = ls_f16_to_f32(ls_f32_to_f16(scores[t]));
                    ls_axpy_f16(acc + (size_t)(t & 31) * hd, p, kv_row(j->v, b, t, kvh), hd);
                }
            } else for (int t = 0; t < max_keys; t++) {
                ls_f16_to_f32_row(row, kv_row(j->v, b, t, kvh), hd);
                for (int a = 0; a < nq; a++) {
                    if (t >= nk[a]) continue;
                    const float p = ls_f16_to_f32(ls_f32_to_f16(scores[(size_t)a * cap + t]));
                    ls_axpy_f32(acc + ((size_t)a * 32 + (size_t)(t & 31)) * hd, p, row, hd); /* fused per 8 lanes */
                }
            }
            for (int a = 0; a < nq; a++) {
                const float *ac = acc + (size_t)a * 32 * hd;
                float *out = j->out + ((size_t)qi[a] * nh + qhead[a]) * hd;
                for (int d = 0; d < hd; d++) {
                    float lanes[4][8];
                    for (int r = 0; r < 32; r++) lanes[r >> 3][r & 7] = ac[(size_t)r * hd + d];
                    out[d] = reduce_4x8(lanes);
                }
            }
        }
        first += n_tasks;
    }
}
