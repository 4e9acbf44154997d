/* kernels_vec.c: the small vector ops of a Llama forward pass, following
 * llama.cpp's CPU numerics: rmsnorm sums float squares in double and
 * scales twice ((x*scale)*g), softmax sums exps in double, silu is
 * x/(1+exp(-x)). exp is ggml_v_expf (Cody-Waite reduction + degree-6
 * polynomial, within ~2 ulp of the true value). The portable variant
 * computes every lane and fused step of the AVX2 code in scalar code, so
 * both give the same bits. */
#include "kernels_impl.h"

#include <math.h>

#if !LS_K_AVX2
static inline uint32_t f2u(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static inline float u2f(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* one lane of exp8 below, step for step (fnmadd(a, b, c) = fmaf(-a, b, c)) */
static float exp1(float x) {
    const float r = 0x1.8p23f;
    const float z = fmaf(x, 0x1.715476p+0f, r);
    const float n = z - r;
    const float b = fmaf(-n, 0x1.7f7d1cp-20f, fmaf(-n, 0x1.62e4p-1f, x));
    const uint32_t e = f2u(z) << 23;
    const float k = u2f(e + f2u(1.0f));
    const float u = b * b;
    const float j = fmaf(fmaf(fmaf(0x1.0e4020p-7f, b, 0x1.573e2ep-5f), u, fmaf(0x1.555e66p-3f, b, 0x1.fffdb6p-2f)), u,
                         0x1.ffffecp-1f * b);
    if (!(fabsf(n) > 126)) return fmaf(k, j, k);
    const uint32_t g = n <= 0 ? 0x82000000u : 0;
    const float s1 = u2f(g + 0x7f000000u), s2 = u2f(e - g);
    if (fabsf(n) > 192) return s1 * s1;
    return fmaf(s2, j, s2) * s1;
}
#endif

#if LS_K_AVX2

static inline double hsum4d(__m256d v) {
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    s = _mm_add_sd(s, _mm_unpackhi_pd(s, s));
    return _mm_cvtsd_f64(s);
}

/* e^x for 8 floats, exactly as ggml_v_expf (AVX2) computes it (~1.5 ulp),
 * so softmax and SwiGLU round as llama.cpp's do; 0 for -inf */
static inline __m256 exp8(__m256 x) {
    const __m256 r = _mm256_set1_ps(0x1.8p23f);
    const __m256 z = _mm256_fmadd_ps(x, _mm256_set1_ps(0x1.715476p+0f), r);
    const __m256 n = _mm256_sub_ps(z, r);
    const __m256 b = _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.7f7d1cp-20f),
                                      _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.62e4p-1f), x));
    const __m256i e = _mm256_slli_epi32(_mm256_castps_si256(z), 23);
    const __m256 k = _mm256_castsi256_ps(_mm256_add_epi32(e, _mm256_castps_si256(_mm256_set1_ps(1))));
    const __m256i c = _mm256_castps_si256(
        _mm256_cmp_ps(_mm256_andnot_ps(_mm256_set1_ps(-0.f), n), _mm256_set1_ps(126), _CMP_GT_OQ));
    const __m256 u = _mm256_mul_ps(b, b);
    const __m256 j = _mm256_fmadd_ps(
        _mm256_fmadd_ps(_mm256_fmadd_ps(_mm256_set1_ps(0x1.0e4020p-7f), b, _mm256_set1_ps(0x1.573e2ep-5f)), u,
                        _mm256_fmadd_ps(_mm256_set1_ps(0x1.555e66p-3f), b, _mm256_set1_ps(0x1.fffdb6p-2f))),
        u, _mm256_mul_ps(_mm256_set1_ps(0x1.ffffecp-1f), b));
    if (!_mm256_movemask_ps(_mm256_castsi256_ps(c))) return _mm256_fmadd_ps(j, k, k);
    const __m256i g = _mm256_and_si256(_mm256_castps_si256(_mm256_cmp_ps(n, _mm256_setzero_ps(), _CMP_LE_OQ)),
                                       _mm256_set1_epi32((int)0x82000000u));
    const __m256 s1 = _mm256_castsi256_ps(_mm256_add_epi32(g, _mm256_set1_epi32(0x7f000000)));
    const __m256 s2 = _mm256_castsi256_ps(_mm256_sub_epi32(e, g));
    const __m256i d = _mm256_castps_si256(
        _mm256_cmp_ps(_mm256_andnot_ps(_mm256_set1_ps(-0.f), n), _mm256_set1_ps(192), _CMP_GT_OQ));
    return _mm256_or_ps(
        _mm256_and_ps(_mm256_castsi256_ps(d), _mm256_mul_ps(s1, s1)),
        _mm256_andnot_ps(_mm256_castsi256_ps(d),
                         _mm256_or_ps(_mm256_and_ps(_mm256_castsi256_ps(c), _mm256_mul_ps(_mm256_fmadd_ps(s2, j, s2), s1)),
                                      _mm256_andnot_ps(_mm256_castsi256_ps(c), _mm256_fmadd_ps(k, j, k)))));
}
#endif

void ls_rmsnorm(float *out, const float *x, const float *g, int64_t n, float eps) {
    double sum = 0.0;
    int64_t i = 0;
#if LS_K_AVX2
    __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd();
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        const __m256 sq = _mm256_mul_ps(v, v); /* float squares, as llama.cpp */
        a0 = _mm256_add_pd(a0, _mm256_cvtps_pd(_mm256_castps256_ps128(sq)));
        a1 = _mm256_add_pd(a1, _mm256_cvtps_pd(_mm256_extractf128_ps(sq, 1)));
    }
    sum = hsum4d(_mm256_add_pd(a0, a1));
#else
    double a[8] = {0};
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) a[l] += (double)(x[i + l] * x[i + l]);
    for (int l = 0; l < 4; l++) a[l] += a[l + 4];
    sum = (a[0] + a[2]) + (a[1] + a[3]);
#endif
    for (; i < n; i++) sum += (double)(x[i] * x[i]);
    const float mean = (float)(sum / (double)n);
    const float scale = 1.0f / sqrtf(mean + eps);
    i = 0;
#if LS_K_AVX2
    const __m256 sv = _mm256_set1_ps(scale);
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), sv), _mm256_loadu_ps(g + i)));
#endif
    for (; i < n; i++) {
        const float v = x[i] * scale;
        out[i] = v * g[i];
    }
}

/* ggml_vec_soft_max_f32's order: chunks of 8 (a short last chunk padded
 * with -inf, i.e. zeros, as llama.cpp's padded attention rows are), each
 * chunk summed as lanes (l, l+4), then (0+2)+(1+3), chunks added in double,
 * then everything scaled by (float)(1/sum) */
void ls_softmax(float *x, int64_t n) {
    if (n <= 0) return;
    float mx = -INFINITY;
    for (int64_t i = 0; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    double sum = 0;
    for (int64_t i = 0; i < n; i += 8) {
        float v[8];
        for (int l = 0; l < 8; l++) v[l] = i + l < n ? x[i + l] - mx : -INFINITY;
#if LS_K_AVX2
        _mm256_storeu_ps(v, exp8(_mm256_loadu_ps(v)));
#else
        for (int l = 0; l < 8; l++) v[l] = exp1(v[l]);
#endif
        float a[4];
        for (int l = 0; l < 4; l++) a[l] = v[l + 4] + v[l];
        sum += (double)((a[0] + a[2]) + (a[1] + a[3]));
        for (int l = 0; l < 8 && i + l < n; l++) x[i + l] = v[l];
    }
    const float inv = (float)(1.0 / sum);
    for (int64_t i = 0; i < n; i++) x[i] *= inv;
}

/* ggml_vec_swiglu_f32: x / (1 + exp(-x)) with the vector exp in chunks of 8
 * from the start of the row, a scalar tail with expf */
void ls_swiglu(float *out, const float *gate, const float *up, int64_t n) {
    int64_t i = 0;
#if LS_K_AVX2
    const __m256 one = _mm256_set1_ps(1.0f);
    for (; i + 8 <= n; i += 8) {
        const __m256 g = _mm256_loadu_ps(gate + i);
        const __m256 e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), g));
        const __m256 s = _mm256_div_ps(g, _mm256_add_ps(one, e));
        _mm256_storeu_ps(out + i, _mm256_mul_ps(s, _mm256_loadu_ps(up + i)));
    }
#else
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) out[i + l] = gate[i + l] / (1.0f + exp1(0.0f - gate[i + l])) * up[i + l];
#endif
    for (; i < n; i++) out[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}

float ls_dot_f32(const float *a, const float *b, int64_t n) {
    int64_t i = 0;
    float s = 0.0f;
#if LS_K_AVX2
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), a0);
    s = ls_k_hsum8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
#else
    float acc[4][8] = {{0}}, v[8];
    for (; i + 32 <= n; i += 32)
        for (int k = 0; k < 4; k++)
            for (int l = 0; l < 8; l++) acc[k][l] = fmaf(a[i + 8 * k + l], b[i + 8 * k + l], acc[k][l]);
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) acc[0][l] = fmaf(a[i + l], b[i + l], acc[0][l]);
    for (int l = 0; l < 8; l++) v[l] = (acc[0][l] + acc[1][l]) + (acc[2][l] + acc[3][l]);
    s = ls_k_hsum8_model(v);
#endif
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

void ls_axpy_f32(float *y, float a, const float *x, int64_t n) {
    int64_t i = 0;
#if LS_K_AVX2
    const __m256 av = _mm256_set1_ps(a);
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
#else
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) y[i + l] = fmaf(a, x[i + l], y[i + l]);
#endif
    for (; i < n; i++) y[i] += a * x[i];
}

void ls_f32_to_f16_row(uint16_t *dst, const float *src, int64_t n) {
    int64_t i = 0;
#if LS_K_AVX2
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(dst + i), _mm256_cvtps_ph(_mm256_loadu_ps(src + i), 0));
#endif
    for (; i < n; i++) dst[i] = ls_k_f2h(src[i]);
}

void ls_f16_to_f32_row(float *dst, const uint16_t *src, int64_t n) {
    int64_t i = 0;
#if LS_K_AVX2
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
#endif
    for (; i < n; i++) dst[i] = ls_k_h2f(src[i]);
}

float ls_dot_f16_f32(const uint16_t *a, const float *b, int64_t n) {
    int64_t i = 0;
    float s = 0.0f;
#if LS_K_AVX2
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(a + i))), _mm256_loadu_ps(b + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(a + i + 8))), _mm256_loadu_ps(b + i + 8),
                             a1);
    }
    for (; i + 8 <= n; i += 8)
        a0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(a + i))), _mm256_loadu_ps(b + i), a0);
    s = ls_k_hsum8(_mm256_add_ps(a0, a1));
#else
    float acc[2][8] = {{0}}, v[8];
    for (; i + 16 <= n; i += 16)
        for (int k = 0; k < 2; k++)
            for (int l = 0; l < 8; l++) acc[k][l] = fmaf(ls_k_h2f(a[i + 8 * k + l]), b[i + 8 * k + l], acc[k][l]);
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) acc[0][l] = fmaf(ls_k_h2f(a[i + l]), b[i + l], acc[0][l]);
    for (int l = 0; l < 8; l++) v[l] = acc[0][l] + acc[1][l];
    s = ls_k_hsum8_model(v);
#endif
    for (; i < n; i++) s += ls_k_h2f(a[i]) * b[i];
    return s;
}

void ls_axpy_f16(float *y, float a, const uint16_t *x, int64_t n) {
    int64_t i = 0;
#if LS_K_AVX2
    const __m256 av = _mm256_set1_ps(a);
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i))),
                                                _mm256_loadu_ps(y + i)));
#else
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) y[i + l] = fmaf(a, ls_k_h2f(x[i + l]), y[i + l]);
#endif
    for (; i < n; i++) y[i] += a * ls_k_h2f(x[i]);
}
