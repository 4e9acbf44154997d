/* membw: this machine's memory read bandwidth, the bound on decode speed
 * (a decode step streams every weight once: tokens/s <= bandwidth / weight
 * bytes per token). Each thread sums its own slice of a buffer much larger
 * than the caches, with the same kind of wide sequential loads the kernels
 * use; the best of several passes is reported.
 *
 *   membw [--threads N] [--mib SIZE] [--passes P] [--json]
 */
#include "kernels.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct job {
    const uint64_t *buf;
    size_t words;
    volatile uint64_t sink[64];
} job;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void sum_slice(void *arg, int ith, int nth) {
    job *j = arg;
    const size_t per = j->words / (size_t)nth;
    const uint64_t *p = j->buf + per * (size_t)ith;
    /* 8 independent accumulators: the loads, not an add chain, set the pace */
    uint64_t a[8] = {0};
    for (size_t i = 0; i + 8 <= per; i += 8)
        for (int k = 0; k < 8; k++) a[k] += p[i + k];
    j->sink[ith % 64] = a[0] + a[1] + a[2] + a[3] + a[4] + a[5] + a[6] + a[7];
}

int main(int argc, char **argv) {
    int threads = 1, passes = 5;
    long mib = 1024;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--mib") && i + 1 < argc) mib = atol(argv[++i]);
        else if (!strcmp(argv[i], "--passes") && i + 1 < argc) passes = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--json")) json = 1;
        else {
            fprintf(stderr, "usage: membw [--threads N] [--mib SIZE] [--passes P] [--json]\n");
            return 2;
        }
    }
    if (threads < 1 || threads > 256 || mib < 16 || mib > (1L << 20) || passes < 1 || passes > 1000) {
        fprintf(stderr, "membw: --threads 1..256, --mib 16..1048576, --passes 1..1000\n");
        return 2;
    }
    const size_t bytes = (size_t)mib << 20;
    uint64_t *buf = aligned_alloc(64, bytes);
    if (!buf) {
        fprintf(stderr, "membw: cannot allocate %ld MiB\n", mib);
        return 1;
    }
    for (size_t i = 0; i < bytes / 8; i++) buf[i] = i; /* touch every page */
    ls_pool *pool = ls_pool_create(threads);
    if (!pool) {
        fprintf(stderr, "membw: cannot start %d threads\n", threads);
        return 1;
    }
    job j = {.buf = buf, .words = bytes / 8};
    double best = 0.0;
    for (int p = 0; p < passes; p++) {
        const double t0 = now_s();
        ls_pool_run(pool, sum_slice, &j);
        const double gbs = (double)bytes / (now_s() - t0) / 1e9;
        if (gbs > best) best = gbs;
    }
    if (json)
        printf("{\"threads\": %d, \"mib\": %ld, \"passes\": %d, \"read_gb_per_s\": %.2f}\n", threads, mib, passes, best);
    else
        printf("read bandwidth: %.2f GB/s (%d threads, %ld MiB buffer, best of %d passes)\n", best, threads, mib,
               passes);
    ls_pool_free(pool);
    free(buf);
    return 0;
}
