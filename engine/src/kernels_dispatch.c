/* kernels_dispatch.c: the kernel functions of kernels.h, each a call through
 * the table of the variant chosen for this CPU (kernels_variants.h).
 *
 * The choice is made once, on the first kernel call: the best variant whose
 * instructions the CPU has and the operating system saves (XCR0), or the one
 * LS_KERNELS names. Every variant gives the same bits, so the choice changes
 * speed only. */
#include "kernels_impl.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define LS_KV_X86 1
#else
#define LS_KV_X86 0
#endif

/* the variants built (LS_KV_HAVE_<variant>, from engine/CMakeLists.txt) */
extern const ls_kv_table ls_kv_table__portable;
#if LS_KV_X86 && LS_KV_HAVE_avx2
extern const ls_kv_table ls_kv_table__avx2;
#endif
#if LS_KV_X86 && LS_KV_HAVE_avxvnni
extern const ls_kv_table ls_kv_table__avxvnni;
#endif
#if LS_KV_X86 && LS_KV_HAVE_avx512
extern const ls_kv_table ls_kv_table__avx512;
#endif

/* ---- what this CPU can run ---- */
#if LS_KV_X86
typedef struct cpu_feats {
    bool avx2, avxvnni, avx512;
} cpu_feats;

static uint64_t xgetbv0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static cpu_feats cpu_detect(void) {
    cpu_feats f = {0};
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
    const bool fma = c & (1u << 12), osxsave = c & (1u << 27), avx = c & (1u << 28), f16c = c & (1u << 29);
    if (!osxsave || !avx) return f;
    const uint64_t xcr0 = xgetbv0();
    if ((xcr0 & 0x6) != 0x6) return f; /* the OS saves XMM and YMM state */
    if (__get_cpuid_max(0, NULL) < 7) return f;
    unsigned b7 = 0, c7 = 0, d7 = 0, a71 = 0, b71, c71, d71;
    __cpuid_count(7, 0, a, b7, c7, d7);
    if (a >= 1) __cpuid_count(7, 1, a71, b71, c71, d71);
    f.avx2 = (b7 & (1u << 5)) && fma && f16c;
    f.avxvnni = f.avx2 && (a71 & (1u << 4));
    const bool zmm_state = (xcr0 & 0xE0) == 0xE0; /* opmask, ZMM0-15 high halves, ZMM16-31 */
    const bool avx512f = b7 & (1u << 16), dq = b7 & (1u << 17), bw = b7 & (1u << 30), vl = b7 & (1u << 31);
    const bool vnni = c7 & (1u << 11), bf16 = a71 & (1u << 5);
    f.avx512 = f.avx2 && zmm_state && avx512f && dq && bw && vl && vnni && bf16;
    return f;
}
#endif

typedef struct variant {
    const ls_kv_table *t;
    bool cpu_has;
} variant;

static variant variants[4];
static int n_variants;
static _Atomic(const ls_kv_table *) current;
static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void init(void) {
#if LS_KV_X86
    const cpu_feats f = cpu_detect();
    (void)f;
#if LS_KV_HAVE_avx512
    variants[n_variants++] = (variant){&ls_kv_table__avx512, f.avx512};
#endif
#if LS_KV_HAVE_avxvnni
    variants[n_variants++] = (variant){&ls_kv_table__avxvnni, f.avxvnni};
#endif
#if LS_KV_HAVE_avx2
    variants[n_variants++] = (variant){&ls_kv_table__avx2, f.avx2};
#endif
#endif
    variants[n_variants++] = (variant){&ls_kv_table__portable, true};
    const ls_kv_table *best = NULL;
    for (int i = 0; i < n_variants && !best; i++)
        if (variants[i].cpu_has) best = variants[i].t;
    const char *want = getenv("LS_KERNELS");
    if (want && *want) {
        const ls_kv_table *named = NULL;
        bool known = false;
        for (int i = 0; i < n_variants; i++)
            if (!strcmp(want, variants[i].t->path)) {
                known = true;
                if (variants[i].cpu_has) named = variants[i].t;
            }
        char built[64] = "";
        for (int i = 0; i < n_variants; i++)
            snprintf(built + strlen(built), sizeof built - strlen(built), "%s%s", i ? ", " : "", variants[i].t->path);
        if (named)
            best = named;
        else if (known)
            fprintf(stderr, "layerskip: LS_KERNELS=%s: this CPU lacks its instructions; running the %s kernels\n",
                    want, best->path);
        else
            fprintf(stderr, "layerskip: LS_KERNELS=%s: not a kernel variant of this build (%s); running the %s kernels\n",
                    want, built, best->path);
    }
    atomic_store_explicit(&current, best, memory_order_release);
}

static inline const ls_kv_table *kv(void) {
    const ls_kv_table *t = atomic_load_explicit(&current, memory_order_acquire);
    if (__builtin_expect(t != NULL, 1)) return t;
    pthread_once(&init_once, init);
    return atomic_load_explicit(&current, memory_order_acquire);
}

int ls_kernels_count(void) {
    pthread_once(&init_once, init);
    return n_variants;
}

const char *ls_kernels_name(int i) {
    pthread_once(&init_once, init);
    return i >= 0 && i < n_variants ? variants[i].t->path : NULL;
}

bool ls_kernels_cpu_has(int i) {
    pthread_once(&init_once, init);
    return i >= 0 && i < n_variants && variants[i].cpu_has;
}

bool ls_kernels_use(const char *name) {
    pthread_once(&init_once, init);
    for (int i = 0; i < n_variants; i++)
        if (name && !strcmp(name, variants[i].t->path)) {
            if (!variants[i].cpu_has) return false;
            atomic_store_explicit(&current, variants[i].t, memory_order_release);
            return true;
        }
    return false;
}

const char *ls_kernel_path(void) { return kv()->path; }

/* the kernel functions: one call through the chosen table each */
#define LS_KV_FWD_R(ret, name, params, args) \
    ret name params { return kv()->f_##name args; }
#define LS_KV_FWD_V(name, params, args) \
    void name params { kv()->f_##name args; }
LS_KV_FUNCS(LS_KV_FWD_R, LS_KV_FWD_V)
