/* kernels_pool.c: the thread pool that owns the cores, and per-thread
 * scratch for the kernels. The caller of ls_pool_run is thread 0. Workers
 * spin on a generation counter for a while after each job, then yield, then
 * sleep on a condition variable: back-to-back calls (a token makes ~300)
 * cost about a microsecond, an idle pool burns no CPU, and a pool with more
 * threads than cores still makes progress. OpenBLAS is set to one thread
 * once, since this pool owns the cores. */
#include "kernels_impl.h"

#include <cblas.h>
#include <pthread.h>
#include <sched.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* A waiter pause-spins this long, then spins calling sched_yield until the
 * second limit, then sleeps. The pause phase is short: when the cores are
 * shared (other processes, or more threads than cores) the thread it waits
 * for may need this very core, and a yield costs well under a microsecond
 * when nothing else is runnable. Within a token the gaps between jobs are
 * far shorter than the second limit. */
#define LS_POOL_SPIN_NS 3000
#define LS_POOL_YIELD_NS 2000000

static pthread_once_t blas_once = PTHREAD_ONCE_INIT;
static void blas_init_once(void) { openblas_set_num_threads(1); }

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static inline int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

typedef struct ls_pool_worker {
    ls_pool *pool;
    int ith;
} ls_pool_worker;

struct ls_pool {
    /* read by workers at each job: written by the caller before gen moves */
    alignas(64) _Atomic uint32_t gen;
    void (*fn)(void *arg, int ith, int nth);
    void *arg;
    atomic_bool stop;
    /* written by workers as they finish */
    alignas(64) atomic_int pending;
    alignas(64) atomic_int sleepers;        /* workers waiting on wake_cond */
    atomic_int caller_sleeping;
    int n;
    pthread_t *threads;
    ls_pool_worker *workers;
    pthread_mutex_t run_lock;   /* one ls_pool_run at a time per pool */
    pthread_mutex_t sleep_lock; /* guards both condition variables */
    pthread_cond_t wake_cond;
    pthread_cond_t done_cond;
};

/* the pool whose job this thread is running (nested runs go inline) */
static _Thread_local ls_pool *tls_in_job;

/* Worker: wait until gen differs from seen; returns the new gen. */
static uint32_t wait_new_gen(ls_pool *p, uint32_t seen) {
    int64_t t0 = 0;
    for (uint32_t i = 1;; i++) {
        uint32_t g = atomic_load_explicit(&p->gen, memory_order_acquire);
        if (g != seen) return g;
        if ((i & 15) == 0) {
            int64_t t = now_ns();
            if (!t0) t0 = t;
            if (t - t0 > LS_POOL_YIELD_NS) break;
            if (t - t0 > LS_POOL_SPIN_NS) sched_yield();
        }
        cpu_relax();
    }
    pthread_mutex_lock(&p->sleep_lock);
    atomic_fetch_add(&p->sleepers, 1);
    uint32_t g;
    while ((g = atomic_load(&p->gen)) == seen) pthread_cond_wait(&p->wake_cond, &p->sleep_lock);
    atomic_fetch_sub(&p->sleepers, 1);
    pthread_mutex_unlock(&p->sleep_lock);
    return g;
}

static void *worker_main(void *argp) {
    ls_pool_worker *wk = argp;
    ls_pool *p = wk->pool;
    tls_in_job = p;
    uint32_t seen = 0;
    for (;;) {
        seen = wait_new_gen(p, seen);
        if (atomic_load_explicit(&p->stop, memory_order_acquire)) break;
        p->fn(p->arg, wk->ith, p->n);
        /* seq_cst pairs with the caller's store of caller_sleeping */
        if (atomic_fetch_sub(&p->pending, 1) == 1 && atomic_load(&p->caller_sleeping)) {
            pthread_mutex_lock(&p->sleep_lock);
            pthread_cond_signal(&p->done_cond);
            pthread_mutex_unlock(&p->sleep_lock);
        }
    }
    return NULL;
}

ls_pool *ls_pool_create(int n_threads) {
    pthread_once(&blas_once, blas_init_once);
    if (n_threads < 1) n_threads = 1;
    size_t sz = (sizeof(ls_pool) + 63) / 64 * 64;
    ls_pool *p = aligned_alloc(64, sz);
    if (!p) return NULL;
    memset(p, 0, sizeof *p);
    atomic_init(&p->gen, 0);
    atomic_init(&p->stop, false);
    atomic_init(&p->pending, 0);
    atomic_init(&p->sleepers, 0);
    atomic_init(&p->caller_sleeping, 0);
    p->n = n_threads;
    pthread_mutex_init(&p->run_lock, NULL);
    pthread_mutex_init(&p->sleep_lock, NULL);
    pthread_cond_init(&p->wake_cond, NULL);
    pthread_cond_init(&p->done_cond, NULL);
    if (n_threads > 1) {
        p->threads = calloc((size_t)n_threads, sizeof *p->threads);
        p->workers = calloc((size_t)n_threads, sizeof *p->workers);
        if (!p->threads || !p->workers) {
            free(p->threads);
            free(p->workers);
            free(p);
            return NULL;
        }
        for (int i = 1; i < n_threads; i++) {
            p->workers[i].pool = p;
            p->workers[i].ith = i;
            if (pthread_create(&p->threads[i], NULL, worker_main, &p->workers[i]) != 0) {
                p->n = i; /* stop the ones that started */
                ls_pool_free(p);
                return NULL;
            }
        }
    }
    return p;
}

void ls_pool_free(ls_pool *p) {
    if (!p) return;
    if (p->n > 1) {
        pthread_mutex_lock(&p->sleep_lock);
        atomic_store(&p->stop, true);
        atomic_fetch_add(&p->gen, 1);
        pthread_cond_broadcast(&p->wake_cond);
        pthread_mutex_unlock(&p->sleep_lock);
        for (int i = 1; i < p->n; i++) pthread_join(p->threads[i], NULL);
    }
    pthread_mutex_destroy(&p->run_lock);
    pthread_mutex_destroy(&p->sleep_lock);
    pthread_cond_destroy(&p->wake_cond);
    pthread_cond_destroy(&p->done_cond);
    free(p->threads);
    free(p->workers);
    free(p);
}

int ls_pool_size(const ls_pool *p) { return p ? p->n : 1; }

void ls_pool_run(ls_pool *p, void (*fn)(void *arg, int ith, int nth), void *arg) {
    if (!p || p->n == 1) {
        fn(arg, 0, 1);
        return;
    }
    if (tls_in_job == p) { /* called from inside one of this pool's jobs */
        for (int i = 0; i < p->n; i++) fn(arg, i, p->n);
        return;
    }
    pthread_mutex_lock(&p->run_lock);
    p->fn = fn;
    p->arg = arg;
    atomic_store_explicit(&p->pending, p->n - 1, memory_order_relaxed);
    atomic_fetch_add(&p->gen, 1); /* seq_cst: pairs with a worker's sleepers++ */
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->sleep_lock);
        pthread_cond_broadcast(&p->wake_cond);
        pthread_mutex_unlock(&p->sleep_lock);
    }

    tls_in_job = p;
    fn(arg, 0, p->n);
    tls_in_job = NULL;

    int64_t t0 = 0;
    bool done = false;
    for (uint32_t i = 1;; i++) {
        if (atomic_load_explicit(&p->pending, memory_order_acquire) == 0) {
            done = true;
            break;
        }
        if ((i & 15) == 0) {
            int64_t t = now_ns();
            if (!t0) t0 = t;
            if (t - t0 > LS_POOL_YIELD_NS) break;
            if (t - t0 > LS_POOL_SPIN_NS) sched_yield();
        }
        cpu_relax();
    }
    if (!done) {
        pthread_mutex_lock(&p->sleep_lock);
        atomic_store(&p->caller_sleeping, 1);
        while (atomic_load(&p->pending) != 0) pthread_cond_wait(&p->done_cond, &p->sleep_lock);
        atomic_store(&p->caller_sleeping, 0);
        pthread_mutex_unlock(&p->sleep_lock);
    }
    pthread_mutex_unlock(&p->run_lock);
}

void ls_k_run(ls_pool *pool, void (*fn)(void *arg, int ith, int nth), void *arg) {
    pthread_once(&blas_once, blas_init_once);
    ls_pool_run(pool, fn, arg);
}

/* ---- per-thread scratch ---- */
typedef struct tls_scratch {
    void *p[LS_K_SLOT_COUNT];
    size_t cap[LS_K_SLOT_COUNT];
    bool registered;
} tls_scratch;

static _Thread_local tls_scratch tls_s;
static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void scratch_release(void *v) {
    tls_scratch *s = v;
    for (int i = 0; i < LS_K_SLOT_COUNT; i++) {
        free(s->p[i]);
        s->p[i] = NULL;
        s->cap[i] = 0;
    }
    s->registered = false;
}
static void scratch_key_init(void) {
    if (pthread_key_create(&scratch_key, scratch_release) != 0) {
        fprintf(stderr, "ls_k_scratch: pthread_key_create failed\n");
        abort();
    }
}

void *ls_k_scratch(int slot, size_t bytes) {
    tls_scratch *s = &tls_s;
    if (bytes <= s->cap[slot] && s->p[slot]) return s->p[slot];
    if (!s->registered) { /* frees this thread's buffers when it exits */
        pthread_once(&scratch_once, scratch_key_init);
        pthread_setspecific(scratch_key, s);
        s->registered = true;
    }
    size_t cap = s->cap[slot] * 2;
    if (cap < bytes) cap = bytes;
    cap = (cap + 4095) / 4096 * 4096;
    free(s->p[slot]);
    s->p[slot] = aligned_alloc(64, cap);
    if (!s->p[slot]) {
        fprintf(stderr, "ls_k_scratch: out of memory allocating %zu bytes of kernel scratch\n", cap);
        abort();
    }
    s->cap[slot] = cap;
    return s->p[slot];
}
