/* kernels_vec.c: the small vector ops of a Llama forward pass, following
 * llama.cpp's CPU numerics: rmsnorm sums float squares in double and
 * scales twice ((x*scale)*g), softmax sums exps in double, silu is
 * x/(1+exp(-x)). exp is vectorized (Cody-Waite reduction + degree-6
 * polynomial, within ~2 ulp of the true value; libm expf in portable
 * builds). */
#include "kernels_impl.h"

#include <math.h>

#if LS_K_AVX2
static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline double hsum4d(__m256d v) {
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    s = _mm_add_sd(s, _mm_unpackhi_pd(s, s));
    return _mm_cvtsd_f64(s);
}

/* e^x for 8 floats: x = n*ln2 + r, |r| <= ln2/2, e^r by a minimax
 * polynomial, 2^n applied in two halves so subnormal results and n = 128
 * stay exact in the exponent arithmetic. */
static inline __m256 exp8(__m256 x) {
    const __m256 hi = _mm256_set1_ps(88.72283935546875f);
    const __m256 lo = _mm256_set1_ps(-103.972084045410156f);
    const __m256 xc = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(89.0f)), _mm256_set1_ps(-104.0f));
    const __m256 nf = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(1.44269504088896341f)),
                                      _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(nf, _mm256_set1_ps(0.693359375f), xc);
    r = _mm256_fnmadd_ps(nf, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    const __m256i n = _mm256_cvtps_epi32(nf);
    const __m256i n1 = _mm256_srai_epi32(n, 1);
    const __m256i n2 = _mm256_sub_epi32(n, n1);
    const __m256i bias = _mm256_set1_epi32(127);
    const __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
    const __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
    __m256 e = _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
    e = _mm256_blendv_ps(e, _mm256_set1_ps(INFINITY), _mm256_cmp_ps(x, hi, _CMP_GT_OQ));
    e = _mm256_blendv_ps(e, _mm256_setzero_ps(), _mm256_cmp_ps(x, lo, _CMP_LT_OQ));
    return _mm256_blendv_ps(e, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q)); /* NaN stays NaN */
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

void ls_softmax(float *x, int64_t n) {
    if (n <= 0) return;
    float mx = -INFINITY;
    for (int64_t i = 0; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    double sum = 0.0;
    int64_t i = 0;
#if LS_K_AVX2
    const __m256 mv = _mm256_set1_ps(mx);
    __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd();
    for (; i + 8 <= n; i += 8) {
        const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), mv));
        _mm256_storeu_ps(x + i, e);
        a0 = _mm256_add_pd(a0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        a1 = _mm256_add_pd(a1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
    }
    sum = hsum4d(_mm256_add_pd(a0, a1));
    if (i < n) { /* tail through the same exp, so every element rounds alike */
        float t[8] = {0};
        const int64_t k = n - i;
        for (int64_t j = 0; j < 8; j++) t[j] = j < k ? x[i + j] - mx : -INFINITY;
        _mm256_storeu_ps(t, exp8(_mm256_loadu_ps(t)));
        for (int64_t j = 0; j < k; j++) {
            x[i + j] = t[j];
            sum += (double)t[j];
        }
        i = n;
    }
#endif
    for (; i < n; i++) {
        const float e = expf(x[i] - mx);
        x[i] = e;
        sum += (double)e;
    }
    const float inv = (float)(1.0 / sum);
    i = 0;
#if LS_K_AVX2
    const __m256 iv = _mm256_set1_ps(inv);
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), iv));
#endif
    for (; i < n; i++) x[i] *= inv;
}

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
    if (i < n) {
        float t[8] = {0};
        const int64_t k = n - i;
        for (int64_t j = 0; j < k; j++) t[j] = -gate[i + j];
        _mm256_storeu_ps(t, exp8(_mm256_loadu_ps(t)));
        for (int64_t j = 0; j < k; j++) {
            const float s = gate[i + j] / (1.0f + t[j]);
            out[i + j] = s * up[i + j];
        }
        i = n;
    }
#endif
    for (; i < n; i++) {
        const float s = gate[i] / (1.0f + expf(-gate[i]));
        out[i] = s * up[i];
    }
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
    s = hsum8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
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
    s = hsum8(_mm256_add_ps(a0, a1));
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
#endif
    for (; i < n; i++) y[i] += a * ls_k_h2f(x[i]);
}
