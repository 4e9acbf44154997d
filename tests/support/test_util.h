/* test_util.h: assert macros that print both values, and helpers to find
 * test data. Each test file is its own executable: main() runs its cases
 * through RUN(fn) and returns non-zero if any check failed. */
#ifndef LS_TEST_UTIL_H
#define LS_TEST_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <math.h>
#include <stdbool.h>

extern int tu_failures;
extern int tu_checks;

#define CHECK(cond) do { tu_checks++; if (!(cond)) { tu_failures++; \
    fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); } } while (0)
#define CHECK_EQ_INT(a, b) do { long long _a = (long long)(a), _b = (long long)(b); tu_checks++; \
    if (_a != _b) { tu_failures++; fprintf(stderr, "%s:%d: CHECK_EQ_INT failed: %s == %s (%lld vs %lld)\n", \
    __FILE__, __LINE__, #a, #b, _a, _b); } } while (0)
#define CHECK_NEAR(a, b, tol) do { double _a = (double)(a), _b = (double)(b); tu_checks++; \
    if (!(fabs(_a - _b) <= (tol))) { tu_failures++; fprintf(stderr, "%s:%d: CHECK_NEAR failed: %s ~ %s (%.9g vs %.9g, tol %g)\n", \
    __FILE__, __LINE__, #a, #b, _a, _b, (double)(tol)); } } while (0)
#define CHECK_STR_EQ(a, b) do { const char *_a = (a), *_b = (b); tu_checks++; \
    if (!_a || !_b || strcmp(_a, _b) != 0) { tu_failures++; fprintf(stderr, "%s:%d: CHECK_STR_EQ failed: %s == %s (\"%s\" vs \"%s\")\n", \
    __FILE__, __LINE__, #a, #b, _a ? _a : "(null)", _b ? _b : "(null)"); } } while (0)
/* stop the current test case when a precondition fails */
#define REQUIRE(cond) do { tu_checks++; if (!(cond)) { tu_failures++; \
    fprintf(stderr, "%s:%d: REQUIRE failed: %s\n", __FILE__, __LINE__, #cond); return; } } while (0)

/* LS_TEST_ONLY="test_a,test_b" runs only those cases (the ThreadSanitizer
 * stage picks the concurrent ones); each case left out says so */
static inline bool tu_selected(const char *name) {
    const char *only = getenv("LS_TEST_ONLY");
    if (!only || !*only) return true;
    const size_t n = strlen(name);
    for (const char *p = only; (p = strstr(p, name)) != NULL; p += n)
        if ((p == only || p[-1] == ',') && (p[n] == ',' || p[n] == 0)) return true;
    return false;
}
#define RUN(fn) do { if (!tu_selected(#fn)) { fprintf(stderr, "-- %s not run (LS_TEST_ONLY)\n", #fn); break; } \
    int _f = tu_failures; fprintf(stderr, "-- %s\n", #fn); fn(); \
    fprintf(stderr, "   %s %s\n", #fn, tu_failures == _f ? "ok" : "FAILED"); } while (0)
#define TEST_MAIN_END() do { fprintf(stderr, "%d checks, %d failed\n", tu_checks, tu_failures); \
    return tu_failures ? 1 : 0; } while (0)

/* xorshift64 test data: each test executable has its own state (seed it
 * by assigning tu_rng_state); rng_uniform in [0, 1), rng_normal N(0, 1) */
static __attribute__((unused)) uint64_t tu_rng_state = 0x9E3779B97F4A7C15ull;
static inline uint64_t tu_rng_u64(void) {
    tu_rng_state ^= tu_rng_state << 13;
    tu_rng_state ^= tu_rng_state >> 7;
    tu_rng_state ^= tu_rng_state << 17;
    return tu_rng_state;
}
static inline double tu_rng_uniform(void) { return (double)(tu_rng_u64() >> 11) * (1.0 / 9007199254740992.0); }
static inline double tu_rng_normal(void) {
    double u1 = tu_rng_uniform(), u2 = tu_rng_uniform();
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* $LS_MODELS_DIR/<name> etc.; returned string is static storage (one per call site use) */
const char *tu_models_path(const char *name);
const char *tu_data_path(const char *name);
const char *tu_tmp_path(const char *name);
/* read a whole file (NUL-terminated); NULL on failure; *len optional */
char *tu_read_file(const char *path, size_t *len);
/* the default model (models/SmolLM2-135M-Instruct.Q4_1.gguf); exits the test
 * with failure and a clear message when missing (never skips) */
const char *tu_default_model(void);
/* strict UTF-8: no overlongs, surrogates or code points past U+10FFFF */
bool tu_valid_utf8(const char *s, size_t n);

#endif
