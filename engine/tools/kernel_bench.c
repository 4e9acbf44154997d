/* kernel_bench.c: speed of ls_matmul and the thread pool on SmolLM2-135M
 * shapes (a benchmark, not a test). Weights are random but well formed, and
 * each timed call uses the next of enough copies to exceed the caches, so
 * GB/s is streaming from DRAM as in decode. Prints medians of several runs:
 *   1. ls_pool_run overhead per call;
 *   2. GB/s (weight bytes per second) and GFLOP/s per type, shape, n, threads;
 *   3. a decode step of the real model's matmuls (30 layers of Q4_1 plus the
 *      Q8_0 49152x576 output): time at n = k+1 relative to n = 1, and the
 *      cost of LS_MATMUL_EXACT;
 *   4. multirow vs sgemm path on that step, for the batch threshold.
 * usage: kernel-bench [--quick] [--threads N] [--only pool|shapes|step] */
#include "kernels.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static uint64_t rng = 88172645463325252ull;
static uint64_t rnd(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}
static float rndf(void) { return (float)((double)(rnd() >> 11) * (1.0 / 9007199254740992.0) - 0.5); }

/* fill with well-formed values of the type (no NaN, no subnormal floats) */
static void fill(ls_type t, uint8_t *p, size_t bytes) {
    const size_t bb = ls_type_block_bytes(t);
    for (size_t off = 0; off + bb <= bytes; off += bb) {
        uint8_t *b = p + off;
        uint16_t h;
        switch (t) {
        case LS_TYPE_F32: {
            const float f = rndf() * 0.1f;
            memcpy(b, &f, 4);
            break;
        }
        case LS_TYPE_F16: h = ls_f32_to_f16(rndf() * 0.1f); memcpy(b, &h, 2); break;
        case LS_TYPE_BF16: h = ls_f32_to_bf16(rndf() * 0.1f); memcpy(b, &h, 2); break;
        default: {
            for (size_t j = 0; j < bb; j += 8) {
                const uint64_t r = rnd();
                memcpy(b + j, &r, bb - j < 8 ? bb - j : 8);
            }
            h = ls_f32_to_f16(0.01f + 0.02f * rndf());
            memcpy(b, &h, 2);
            if (t == LS_TYPE_Q4_1) {
                h = ls_f32_to_f16(-0.1f + 0.02f * rndf());
                memcpy(b + 2, &h, 2);
            }
        }
        }
    }
}

/* copies of one matrix laid out back to back in a big buffer */
typedef struct wset {
    ls_weight *w;
    int count, next;
} wset;

static wset make_wset(ls_type t, int64_t rows, int64_t cols, uint8_t *buf, size_t buf_bytes) {
    wset s = {0};
    const ls_weight proto = {.type = t, .rows = rows, .cols = cols, .data = NULL};
    const size_t bytes = ls_weight_row_bytes(&proto) * (size_t)rows;
    s.count = (int)(buf_bytes / bytes);
    if (s.count < 1) s.count = 1;
    s.w = calloc((size_t)s.count, sizeof *s.w);
    for (int i = 0; i < s.count; i++) {
        s.w[i] = proto;
        s.w[i].data = buf + (size_t)i * bytes;
    }
    return s;
}

static const ls_weight *next_w(wset *s) {
    const ls_weight *w = &s->w[s->next];
    s->next = (s->next + 1) % s->count;
    return w;
}

static void empty_job(void *arg, int ith, int nth) {
    (void)arg;
    (void)ith;
    (void)nth;
}

typedef void (*mm_fn)(ls_pool *, const ls_weight *, const float *, int64_t, float *);

int main(int argc, char **argv) {
    bool quick = false;
    int max_threads = 2;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) quick = true;
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) max_threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--quick] [--threads N] [--only pool|shapes|step]\n", argv[0]);
            return 2;
        }
    }
    if (max_threads < 1) max_threads = 1;
    const int reps = quick ? 5 : 11;
    ls_pool *pools[9] = {0};
    for (int t = 1; t <= max_threads && t < 9; t++) pools[t] = ls_pool_create(t);

    /* 1. pool overhead */
    if (!only || !strcmp(only, "pool")) {
    printf("== ls_pool_run overhead (empty job), median of %d x 20000 calls\n", reps);
    for (int t = 1; t <= max_threads && t < 9; t++) {
        double v[32];
        for (int r = 0; r < reps; r++) {
            const double t0 = now_s();
            for (int i = 0; i < 20000; i++) ls_pool_run(pools[t], empty_job, NULL);
            v[r] = (now_s() - t0) / 20000 * 1e6;
        }
        printf("threads %d: %.3f us/call\n", t, median(v, reps));
    }
    }

    /* 2. per type and shape */
    const size_t buf_bytes = (size_t)256 << 20;
    uint8_t *buf = aligned_alloc(64, buf_bytes);
    float *x = malloc(sizeof(float) * 128 * 1536);
    float *y = malloc(sizeof(float) * 128 * 49152);
    if (!buf || !x || !y) {
        fprintf(stderr, "kernel-bench: out of memory\n");
        return 1;
    }
    for (int i = 0; i < 128 * 1536; i++) x[i] = rndf() * 4.0f;
    static const ls_type types[] = {LS_TYPE_Q4_1, LS_TYPE_Q8_0, LS_TYPE_Q4_0, LS_TYPE_F16, LS_TYPE_BF16, LS_TYPE_F32};
    static const int64_t shapes[][2] = {{576, 576}, {192, 576}, {1536, 576}, {576, 1536}, {49152, 576}};
    static const int64_t ns[] = {1, 2, 4, 8, 16, 128};
    if (!only || !strcmp(only, "shapes")) {
    printf("\n== ls_matmul, weights streamed from DRAM (rotating copies), median of %d\n", reps);
    printf("%-5s %-11s %3s %4s %6s %9s %8s %8s\n", "type", "shape", "thr", "n", "path", "us", "GB/s", "GFLOP/s");
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        const ls_type t = types[ti];
        fill(t, buf, buf_bytes);
        for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
            const int64_t rows = shapes[si][0], cols = shapes[si][1];
            wset ws = make_wset(t, rows, cols, buf, buf_bytes);
            const double bytes = (double)ls_weight_row_bytes(&ws.w[0]) * (double)rows;
            for (int th = 1; th <= max_threads && th < 9; th++) {
                for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++) {
                    const int64_t n = ns[ni];
                    double v[32];
                    ls_matmul(pools[th], next_w(&ws), x, n, y); /* warm scratch */
                    for (int r = 0; r < reps; r++) {
                        const ls_weight *w = next_w(&ws);
                        const double t0 = now_s();
                        ls_matmul(pools[th], w, x, n, y);
                        v[r] = now_s() - t0;
                    }
                    const double s = median(v, reps);
                    char shp[32];
                    snprintf(shp, sizeof shp, "%lldx%lld", (long long)rows, (long long)cols);
                    printf("%-5s %-11s %3d %4lld %6s %9.1f %8.2f %8.2f\n", ls_type_name(t), shp, th, (long long)n,
                           n >= ls_matmul_sgemm_min_n(t) ? "sgemm" : "multi", s * 1e6, bytes / s * 1e-9,
                           2.0 * (double)rows * (double)cols * (double)n / s * 1e-9);
                }
            }
            free(ws.w);
        }
        fflush(stdout);
    }
    }

    /* 3. and 4. one decode step of SmolLM2-135M's matmuls */
    const int L = 30;
    static const int64_t layer_shapes[7][2] = {{576, 576}, {192, 576}, {192, 576}, {576, 576},
                                               {1536, 576}, {1536, 576}, {576, 1536}};
    size_t layer_bytes = 0;
    for (int k = 0; k < 7; k++) layer_bytes += (size_t)(layer_shapes[k][0] * layer_shapes[k][1] / 32 * 20);
    const size_t out_bytes = (size_t)49152 * 576 / 32 * 34;
    const size_t model_bytes = layer_bytes * (size_t)L + out_bytes;
    uint8_t *mbuf = aligned_alloc(64, (model_bytes + 63) / 64 * 64);
    if (!mbuf) return 1;
    ls_weight mw[30 * 7 + 1];
    size_t off = 0;
    for (int l = 0; l < L; l++)
        for (int k = 0; k < 7; k++) {
            ls_weight *w = &mw[l * 7 + k];
            *w = (ls_weight){.type = LS_TYPE_Q4_1, .rows = layer_shapes[k][0], .cols = layer_shapes[k][1],
                             .data = mbuf + off};
            const size_t b = ls_weight_row_bytes(w) * (size_t)w->rows;
            fill(LS_TYPE_Q4_1, mbuf + off, b);
            off += b;
        }
    mw[L * 7] = (ls_weight){.type = LS_TYPE_Q8_0, .rows = 49152, .cols = 576, .data = mbuf + off};
    fill(LS_TYPE_Q8_0, mbuf + off, out_bytes);
    if (!only || !strcmp(only, "step")) {
    printf("\n== SmolLM2-135M decode step: 30 layers x 7 Q4_1 matmuls + Q8_0 output, %.1f MB of weights\n",
           (double)model_bytes / 1e6);
    for (int th = 1; th <= max_threads && th < 9; th++) {
        double t1 = 0.0;
        printf("threads %d:\n", th);
        for (int64_t n = 1; n <= 9; n++) {
            double v[32];
            for (int r = 0; r < reps; r++) {
                const double t0 = now_s();
                for (int k = 0; k <= L * 7; k++) ls_matmul(pools[th], &mw[k], x, n, y);
                v[r] = now_s() - t0;
            }
            const double s = median(v, reps);
            if (n == 1) t1 = s;
            printf("  n=%lld: %7.3f ms  %6.2f GB/s  cost vs n=1: %.2fx%s\n", (long long)n, s * 1e3,
                   (double)model_bytes / s * 1e-9, s / t1, n == 1 ? "  (matmul-only ceiling: tok/s = 1000/ms)" : "");
        }
        {
            double v[32];
            for (int r = 0; r < reps; r++) {
                const double t0 = now_s();
                for (int k = 0; k <= L * 7; k++) ls_matmul_ex(pools[th], &mw[k], x, 1, y, LS_MATMUL_EXACT);
                v[r] = now_s() - t0;
            }
            const double s = median(v, reps);
            printf("  n=1 with LS_MATMUL_EXACT: %7.3f ms (%.2fx)\n", s * 1e3, s / t1);
        }
        printf("  path comparison (whole step):\n");
        static const int64_t tn[] = {4, 8, 12, 16, 24, 32, 64, 128};
        for (size_t i = 0; i < sizeof tn / sizeof tn[0]; i++) {
            const int64_t n = tn[i];
            double res[2];
            const mm_fn fns[2] = {ls_matmul_multirow, ls_matmul_sgemm};
            for (int p = 0; p < 2; p++) {
                double v[32];
                const int rr = n >= 64 ? (reps + 1) / 2 : reps;
                for (int r = 0; r < rr; r++) {
                    const double t0 = now_s();
                    for (int k = 0; k < L * 7; k++) fns[p](pools[th], &mw[k], x, n, y);
                    v[r] = now_s() - t0;
                }
                res[p] = median(v, rr);
            }
            printf("  n=%3lld layers only: multirow %8.3f ms, sgemm %8.3f ms  (%.0f vs %.0f positions/s)\n",
                   (long long)n, res[0] * 1e3, res[1] * 1e3, (double)n / res[0], (double)n / res[1]);
        }
    }
    }
    for (int t = 1; t <= max_threads && t < 9; t++) ls_pool_free(pools[t]);
    free(mbuf);
    free(buf);
    free(x);
    free(y);
    return 0;
}
