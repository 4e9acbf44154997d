/* The MPI pipeline's pure parts, without mpirun: layout parsing, splitting,
 * memory budgets and fitting layers to them, and checks (every error names the problem and the fix), and the checks a
 * received message goes through (wrong size, type, counts, ids, positions
 * are errors, never crashes). */
#include "test_util.h"
#include "layout.h"
#include "msg.h"

static void expect_parse_error(const char *text, int L, int ranks, const char *needle) {
    lsw_layout lo;
    ls_err err = {{0}};
    ls_status st = lsw_layout_parse(text, L, ranks, &lo, &err);
    CHECK_EQ_INT(st, LS_ERR_INVALID);
    if (!strstr(err.msg, needle)) {
        fprintf(stderr, "  \"%s\": expected \"%s\" in: %s\n", text ? text : "(null)", needle, err.msg);
        CHECK(false);
    }
}

static void test_layout_parse(void) {
    lsw_layout lo;
    ls_err err;
    REQUIRE(lsw_layout_parse("0-8,8-20,20-30", 30, 3, &lo, &err) == LS_OK);
    CHECK_EQ_INT(lo.n_stages, 3);
    CHECK_EQ_INT(lsw_layout_exit_layer(&lo), 8);
    CHECK_EQ_INT(lo.l0[2], 20);
    CHECK_EQ_INT(lo.l1[2], 30);
    char buf[64];
    lsw_layout_format(&lo, buf, sizeof buf);
    CHECK_STR_EQ(buf, "0-8,8-20,20-30");
    CHECK(lsw_layout_check(&lo, 3, 8, &err) == LS_OK);
    CHECK(lsw_layout_check(&lo, 3, 4, &err) == LS_ERR_INVALID);
    CHECK(strstr(err.msg, "stage 0 ends at layer 8 but the exit layer is 4") != NULL);
    expect_parse_error("", 30, 2, "empty --stages");
    expect_parse_error(NULL, 30, 2, "empty --stages");
    expect_parse_error("0-8,9-30", 30, 2, "stage 1 starts at layer 9 but stage 0 ends at layer 8");
    expect_parse_error("0-8,8-30", 30, 3, "2 stages but 3 MPI ranks");
    expect_parse_error("0-8,8-25", 30, 2, "must cover [0, 30)");
    expect_parse_error("0-8,8-8,8-30", 30, 3, "stage 1 range 8-8 is empty");
    expect_parse_error("0-30", 30, 1, "at least 2");
    expect_parse_error("0-8,8-31", 30, 2, "past the model's 30 layers");
    expect_parse_error("0-8 8-30", 30, 2, "separated by commas");
    expect_parse_error("a-8,8-30", 30, 2, "range 0 is not \"first-end\"");
    expect_parse_error("0-8,8-", 30, 2, "range 1 is not");
    expect_parse_error("0-8,8-99999999999", 30, 2, "range 1 is not");
    expect_parse_error("1-8,8-30", 30, 2, "must start at layer 0");
    expect_parse_error("0-8,,8-30", 30, 2, "range 1 is not");
}

static void test_layout_split(void) {
    lsw_layout lo;
    ls_err err;
    REQUIRE(lsw_layout_split(8, 30, 2, &lo, &err) == LS_OK);
    CHECK_EQ_INT(lo.l0[1], 8);
    CHECK_EQ_INT(lo.l1[1], 30);
    REQUIRE(lsw_layout_split(4, 30, 4, &lo, &err) == LS_OK); /* 26 layers over 3: 9, 9, 8 */
    CHECK_EQ_INT(lo.l1[1], 13);
    CHECK_EQ_INT(lo.l1[2], 22);
    CHECK_EQ_INT(lo.l1[3], 30);
    CHECK(lsw_layout_split(28, 30, 4, &lo, &err) == LS_ERR_INVALID);
    CHECK(strstr(err.msg, "3 verifier ranks cannot share the 2 layers") != NULL);
    CHECK(lsw_layout_split(0, 30, 2, &lo, &err) == LS_ERR_INVALID);
    CHECK(strstr(err.msg, "exit layer 0 is out of range [1, 29]") != NULL);
    CHECK(lsw_layout_split(8, 30, 1, &lo, &err) == LS_ERR_INVALID);
    CHECK(lsw_layout_split(8, 30, 1000, &lo, &err) == LS_ERR_INVALID);
}

static void expect_budget_error(const char *text, int ranks, const char *needle) {
    uint64_t b[LSW_MAX_STAGES];
    for (int i = 0; i < LSW_MAX_STAGES; i++) b[i] = 7;
    ls_err err = {{0}};
    CHECK_EQ_INT(lsw_layout_parse_budgets(text, ranks, b, &err), LS_ERR_INVALID);
    CHECK_EQ_INT(b[0], 7); /* nothing written on error */
    if (!strstr(err.msg, needle)) {
        fprintf(stderr, "  \"%s\": expected \"%s\" in: %s\n", text ? text : "(null)", needle, err.msg);
        CHECK(false);
    }
}

static void test_layout_budget_parse(void) {
    CHECK(lsw_layout_is_budget("2GiB,6GiB,6GiB"));
    CHECK(lsw_layout_is_budget("512M"));
    CHECK(lsw_layout_is_budget("1.5G,2G"));
    CHECK(lsw_layout_is_budget(" 6 GiB"));
    CHECK(lsw_layout_is_budget(".5T"));
    CHECK(lsw_layout_is_budget("6X,2G")); /* meant as budgets: the parser explains the bad unit */
    CHECK(!lsw_layout_is_budget("0-8,8-30"));
    CHECK(!lsw_layout_is_budget("8"));
    CHECK(!lsw_layout_is_budget("8,8"));
    CHECK(!lsw_layout_is_budget("8-G"));
    CHECK(!lsw_layout_is_budget("GiB"));
    CHECK(!lsw_layout_is_budget("-2G"));
    CHECK(!lsw_layout_is_budget(""));
    CHECK(!lsw_layout_is_budget(NULL));

    uint64_t b[LSW_MAX_STAGES];
    ls_err err;
    REQUIRE(lsw_layout_parse_budgets("512M,6GiB,1.5G,800MB,2T,1k,3Gi,0.5K,4 kb , 1.000000001G", 10, b, &err) == LS_OK);
    const uint64_t K = 1024, M = K * K, G = M * K, T = G * K;
    CHECK(b[0] == 512 * M);
    CHECK(b[1] == 6 * G);
    CHECK(b[2] == 3 * G / 2);
    CHECK(b[3] == 800 * M); /* "MB" is binary too (documented) */
    CHECK(b[4] == 2 * T);
    CHECK(b[5] == K);
    CHECK(b[6] == 3 * G);
    CHECK(b[7] == 512);
    CHECK(b[8] == 4 * K);
    CHECK(b[9] == G + 1); /* 1e-9 GiB rounds down to 1 byte */
    REQUIRE(lsw_layout_parse_budgets("16777215T,1.25K", 2, b, &err) == LS_OK);
    CHECK(b[0] == UINT64_MAX - T + 1);
    CHECK(b[1] == 1280);
    REQUIRE(lsw_layout_parse_budgets("16777215.99T,1G", 2, b, &err) == LS_OK); /* the largest fraction still fits */
    CHECK(b[0] == UINT64_MAX - T + 1 + 99 * T / 100);

    expect_budget_error("2G,6X", 2, "--stages \"2G,6X\": budget 1 \"6X\" has an unknown unit \"X\"");
    expect_budget_error("2G,6X", 2, "like \"2GiB,6GiB,6GiB\"");
    expect_budget_error("2G,6GBs", 2, "unknown unit \"GBs\"");
    expect_budget_error("2G,6G2", 2, "unknown unit \"G2\"");
    expect_budget_error("2G,1.5.5G", 2, "unknown unit \".5G\"");
    expect_budget_error("2G,6", 2, "budget 1 \"6\" has no unit");
    expect_budget_error("0G,6G", 2, "budget 0 \"0G\" is zero bytes");
    expect_budget_error("2G,0.000000001K", 2, "is zero bytes");
    expect_budget_error("2G,1.0000000001G", 2, "more than 9 decimals");
    expect_budget_error("2G,16777216T", 2, "budget 1 \"16777216T\" is too large");
    expect_budget_error("2G,99999999999999999999K", 2, "is too large");
    expect_budget_error("2G,,6G", 3, "budget 1 is empty");
    expect_budget_error("2G,6G,", 2, "budget 2 is empty");
    expect_budget_error("2G, ,6G", 3, "budget 1 is empty");
    expect_budget_error("G,6G", 2, "budget 0 \"G\" does not start with a number");
    expect_budget_error("2G,6G", 3, "--stages \"2G,6G\" gives 2 budget(s) but 3 MPI ranks were started");
    expect_budget_error("2G,6G,6G", 2, "give one budget per rank");
    expect_budget_error("", 2, "empty --stages");
    expect_budget_error(NULL, 2, "empty --stages");
    expect_budget_error("6G", 1, "between 2 and 64 MPI ranks");
    char many[LSW_MAX_STAGES * 4 + 8] = "";
    for (int i = 0; i <= LSW_MAX_STAGES; i++) strcat(many, i ? ",1G" : "1G");
    expect_budget_error(many, LSW_MAX_STAGES, "more than 64 budgets");
}

static void test_format_bytes(void) {
    char buf[64];
    lsw_format_bytes(0, buf, sizeof buf);
    CHECK_STR_EQ(buf, "0 B");
    lsw_format_bytes(1023, buf, sizeof buf);
    CHECK_STR_EQ(buf, "1023 B");
    lsw_format_bytes(1024, buf, sizeof buf);
    CHECK_STR_EQ(buf, "1.0 KiB");
    lsw_format_bytes(1536, buf, sizeof buf);
    CHECK_STR_EQ(buf, "1.5 KiB");
    lsw_format_bytes(1024 * 1024 - 1, buf, sizeof buf);
    CHECK_STR_EQ(buf, "1.0 MiB");
    lsw_format_bytes((uint64_t)(3.2 * 1024 * 1024 * 1024), buf, sizeof buf);
    CHECK_STR_EQ(buf, "3.2 GiB");
    lsw_format_bytes((uint64_t)2 << 40, buf, sizeof buf);
    CHECK_STR_EQ(buf, "2.0 TiB");
    lsw_format_bytes(UINT64_MAX, buf, sizeof buf);
    CHECK_STR_EQ(buf, "16.0 EiB");
    lsw_format_bytes(1536, buf, 4);
    CHECK_STR_EQ(buf, "1.5");
}

static ls_status fit(int E, int L, int N, const uint64_t *lb, uint64_t x0, uint64_t xl, const uint64_t *bud,
                     lsw_layout *lo, ls_err *err) {
    ls_status st = lsw_layout_fit(E, L, N, lb, x0, xl, bud, lo, err);
    if (st == LS_OK) {
        ls_err e2;
        CHECK(lsw_layout_check(lo, N, E, &e2) == LS_OK);
        CHECK_EQ_INT(lsw_layout_exit_layer(lo), E);
    } else {
        CHECK_EQ_INT(lo->n_stages, 0);
    }
    return st;
}

static void expect_fit(int E, int L, int N, const uint64_t *lb, uint64_t x0, uint64_t xl, const uint64_t *bud,
                       const char *want) {
    lsw_layout lo;
    ls_err err = {{0}};
    char got[sizeof err.msg + 16] = "";
    if (fit(E, L, N, lb, x0, xl, bud, &lo, &err) == LS_OK) lsw_layout_format(&lo, got, sizeof got);
    else snprintf(got, sizeof got, "error: %s", err.msg);
    CHECK_STR_EQ(got, want);
}

static void expect_fit_error(int E, int L, int N, const uint64_t *lb, uint64_t x0, uint64_t xl, const uint64_t *bud,
                             const char *needle) {
    lsw_layout lo;
    ls_err err = {{0}};
    CHECK_EQ_INT(fit(E, L, N, lb, x0, xl, bud, &lo, &err), LS_ERR_INVALID);
    if (!strstr(err.msg, needle)) {
        fprintf(stderr, "  fit E=%d L=%d N=%d: expected \"%s\" in: %s\n", E, L, N, needle, err.msg);
        CHECK(false);
    }
}

static void test_layout_fit(void) {
    const uint64_t G = (uint64_t)1 << 30;
    uint64_t lb[256], bud[LSW_MAX_STAGES];
    for (int i = 0; i < 256; i++) lb[i] = 100;
    for (int i = 0; i < LSW_MAX_STAGES; i++) bud[i] = 1000000;
    /* same sizes, same budgets: the plain layer-count split */
    lsw_layout lo, sp;
    ls_err err;
    REQUIRE(fit(4, 30, 4, lb, 0, 0, bud, &lo, &err) == LS_OK);
    REQUIRE(lsw_layout_split(4, 30, 4, &sp, &err) == LS_OK);
    CHECK(lsw_layout_equal(&lo, &sp));
    /* uneven budgets: proportionally more layers (1:2:1 over 24 layers) */
    bud[1] = 1000, bud[2] = 2000, bud[3] = 1000;
    expect_fit(2, 26, 4, lb, 0, 0, bud, "0-2,2-8,8-20,20-26");
    bud[1] = 3000, bud[2] = 1000, bud[3] = 2000; /* 3:1:2 */
    expect_fit(2, 26, 4, lb, 0, 0, bud, "0-2,2-14,14-18,18-26");
    /* the last rank's head counts: 20 layers + 400 bytes over two equal budgets */
    bud[1] = 2000, bud[2] = 2000;
    expect_fit(2, 22, 3, lb, 0, 0, bud, "0-2,2-12,12-22");
    expect_fit(2, 22, 3, lb, 0, 400, bud, "0-2,2-14,14-22");
    /* exactly full is fine; one byte less is not */
    bud[1] = 1200, bud[2] = 1200;
    expect_fit(2, 22, 3, lb, 0, 400, bud, "0-2,2-14,14-22");
    bud[2] = 1199;
    expect_fit_error(2, 22, 3, lb, 0, 400, bud, "ranks 1-2 cannot hold layers [2, 22)");
    expect_fit_error(2, 22, 3, lb, 0, 400, bud, "1 B missing in total");
    /* non-uniform layers: a split by bytes, not by count */
    const uint64_t odd[8] = {5, 10, 10, 10, 10, 40, 40, 10};
    bud[0] = 1000, bud[1] = 100, bud[2] = 100;
    expect_fit(1, 8, 3, odd, 0, 0, bud, "0-1,1-6,6-8"); /* 80 + 50 bytes; by count it would be 1-5,5-8 */
    expect_fit_error(1, 8, 3, odd, 0, 60, bud, "the best one, \"0-1,1-6,6-8\", needs 110 B on rank 2, which has "
                     "100 B (10 B missing there)");
    bud[2] = 200;
    expect_fit(1, 8, 3, odd, 0, 60, bud, "0-1,1-5,5-8"); /* 40/100 and (50 + 60)/200 */

    /* stage 0: its layers + embedding/head must fit rank 0, in human units */
    for (int i = 0; i < 8; i++) lb[i] = G;
    bud[0] = 3 * G, bud[1] = 8 * G, bud[2] = 8 * G;
    expect_fit_error(3, 8, 3, lb, G / 5, 0, bud, "stage 0 (rank 0: embedding, layers [0, 3), final norm and LM head) "
                     "needs 3.2 GiB but rank 0's budget is 3.0 GiB (204.8 MiB missing)");
    expect_fit_error(3, 8, 3, lb, 1, 0, bud, "needs 3.0 GiB (3221225473 bytes) but rank 0's budget is 3.0 GiB "
                     "(3221225472 bytes)");
    expect_fit(3, 8, 3, lb, 0, 0, bud, "0-3,3-6,6-8");
    /* the verifiers lack memory in total */
    bud[0] = 4 * G, bud[1] = 2 * G, bud[2] = 2 * G;
    expect_fit_error(3, 8, 3, lb, 0, G, bud, "ranks 1-2 cannot hold layers [3, 8) and the final norm + LM head: "
                     "they need 6.0 GiB in all but their budgets add up to 4.0 GiB, 2.0 GiB missing in total; "
                     "start more ranks or give them bigger budgets");
    bud[1] = 4 * G;
    expect_fit_error(3, 8, 2, lb, 0, G, bud, "rank 1 cannot hold layers [3, 8)");
    /* enough in total, but one layer fits no rank */
    const uint64_t big[5] = {1, 100, 5000, 100, 100};
    bud[0] = 10, bud[1] = 4000, bud[2] = 4000;
    expect_fit_error(1, 5, 3, big, 0, 0, bud, "ranks 1-2 have 7.8 KiB in all, enough in total for the 5.2 KiB");
    expect_fit_error(1, 5, 3, big, 0, 0, bud, "the best one, \"0-1,1-3,3-5\", needs 5.0 KiB on rank 1, which has "
                     "3.9 KiB");
    expect_fit_error(1, 5, 3, big, 0, 0, bud, "give rank 1 a bigger budget or start more ranks");

    /* arguments */
    for (int i = 0; i < LSW_MAX_STAGES; i++) bud[i] = G;
    for (int i = 0; i < 256; i++) lb[i] = 100;
    expect_fit_error(0, 30, 2, lb, 0, 0, bud, "exit layer 0 is out of range [1, 29]");
    expect_fit_error(30, 30, 2, lb, 0, 0, bud, "exit layer 30 is out of range [1, 29]");
    expect_fit_error(28, 30, 4, lb, 0, 0, bud, "3 verifier ranks cannot share the 2 layers");
    expect_fit_error(8, 30, 1, lb, 0, 0, bud, "between 2 and 64 MPI ranks");
    expect_fit_error(8, 30, 65, lb, 0, 0, bud, "between 2 and 64 MPI ranks");
    expect_fit_error(1, 1, 2, lb, 0, 0, bud, "at least 2 layers");
    expect_fit_error(8, 30, 2, NULL, 0, 0, bud, "are required");
    bud[1] = 0;
    expect_fit_error(8, 30, 3, lb, 0, 0, bud, "rank 1 has a memory budget of 0 bytes");
    bud[1] = G;
    const uint64_t huge[4] = {1, UINT64_MAX / 2, UINT64_MAX / 2, UINT64_MAX / 2};
    expect_fit_error(1, 4, 2, huge, 0, 0, bud, "add up past 2^64 bytes");
    /* 64 ranks, one layer each for the verifiers */
    expect_fit(1, 64, 64, lb, 0, 0, bud, "0-1,1-2,2-3,3-4,4-5,5-6,6-7,7-8,8-9,9-10,10-11,11-12,12-13,13-14,14-15,"
               "15-16,16-17,17-18,18-19,19-20,20-21,21-22,22-23,23-24,24-25,25-26,26-27,27-28,28-29,29-30,30-31,"
               "31-32,32-33,33-34,34-35,35-36,36-37,37-38,38-39,39-40,40-41,41-42,42-43,43-44,44-45,45-46,46-47,"
               "47-48,48-49,49-50,50-51,51-52,52-53,53-54,54-55,55-56,56-57,57-58,58-59,59-60,60-61,61-62,62-63,63-64");
}

/* brute force: the smallest max over verifier stages of bytes/budget, as
 * num/den (small numbers, so the products fit in 64 bits); -1 num if none */
static void brute_best(const uint64_t *lb, int at, int L, int s, int N, uint64_t xl, const uint64_t *bud,
                       uint64_t cur_n, uint64_t cur_d, uint64_t *best_n, uint64_t *best_d) {
    const int left = N - s; /* stages still to place, this one included */
    for (int end = at + 1; end <= L - (left - 1); end++) {
        if (left == 1 && end != L) continue;
        uint64_t bytes = 0;
        for (int l = at; l < end; l++) bytes += lb[l];
        if (s == N - 1) bytes += xl;
        uint64_t n = cur_n, d = cur_d;
        if (bytes * d > n * bud[s]) n = bytes, d = bud[s];
        if (left == 1) {
            if (*best_d == 0 || n * *best_d < *best_n * d) *best_n = n, *best_d = d;
        } else {
            brute_best(lb, end, L, s + 1, N, xl, bud, n, d, best_n, best_d);
        }
    }
}

static void test_layout_fit_random(void) {
    ls_rng rng;
    ls_rng_seed(&rng, 7);
    int fitted = 0, refused = 0;
    for (int it = 0; it < 3000; it++) {
        const int L = 2 + (int)(ls_rng_next(&rng) % 11);
        const int E = 1 + (int)(ls_rng_next(&rng) % (uint64_t)(L - 1));
        const int N = 2 + (int)(ls_rng_next(&rng) % (uint64_t)(L - E < 4 ? L - E : 4));
        uint64_t lb[16], bud[8];
        for (int l = 0; l < L; l++) lb[l] = 1 + ls_rng_next(&rng) % 1000;
        const uint64_t xl = ls_rng_next(&rng) % 500;
        bud[0] = 1000000;
        for (int r = 1; r < N; r++) bud[r] = 1 + ls_rng_next(&rng) % 4000;
        lsw_layout lo;
        ls_err err;
        ls_status st = fit(E, L, N, lb, 0, xl, bud, &lo, &err);
        uint64_t bn = 0, bd = 0;
        brute_best(lb, E, L, 1, N, xl, bud, 0, 1, &bn, &bd);
        REQUIRE(bd > 0);
        const bool fits = bn <= bd;
        CHECK_EQ_INT(st == LS_OK, fits);
        if (st != LS_OK) {
            CHECK(strstr(err.msg, "missing") != NULL);
            refused++;
            continue;
        }
        fitted++;
        /* every stage within budget, and the largest ratio is the brute-force optimum */
        uint64_t mn = 0, md = 1;
        for (int s = 1; s < N; s++) {
            uint64_t bytes = s == N - 1 ? xl : 0;
            for (int l = lo.l0[s]; l < lo.l1[s]; l++) bytes += lb[l];
            CHECK(bytes <= bud[s]);
            if (bytes * md > mn * bud[s]) mn = bytes, md = bud[s];
        }
        CHECK(mn * bd == bn * md);
    }
    CHECK(fitted > 300);
    CHECK(refused > 300);
    fprintf(stderr, "   %d fitted, %d refused\n", fitted, refused);
}

/* a chunk message: header + tokens + states */
static size_t make_chunk(char *buf, int count, int dim, int32_t tok, uint32_t flags) {
    lsw_hdr h = {.type = LSW_MSG_CHUNK, .slot = 0, .generation = 1, .first_pos = 3, .count = count,
                 .flags = (int32_t)flags, .next = -1};
    memcpy(buf, &h, sizeof h);
    size_t at = sizeof h;
    for (int i = 0; i < count; i++, at += 4) memcpy(buf + at, &tok, 4);
    const int rows = count * dim;
    for (int i = 0; i < rows; i++, at += 4) {
        float v = (float)i;
        memcpy(buf + at, &v, 4);
    }
    for (int i = 0; (flags & LSW_CHUNK_DRAFT_Q) && i < count - 1; i++, at += sizeof(lsw_draft_q)) {
        lsw_draft_q q = {.n = 2, .ids = {tok, tok + 1}, .p = {0.75f, 0.25f}};
        memcpy(buf + at, &q, sizeof q);
    }
    return at;
}

static void test_decode(void) {
    const lsw_limits lim = {.dim = 4, .n_vocab = 100, .n_ctx = 16, .max_slots = 2, .max_batch = 8};
    static char buf[4096];
    lsw_msg m;
    ls_err err;
    size_t len = make_chunk(buf, 3, 4, 42, LSW_CHUNK_SPECULATIVE);
    REQUIRE(lsw_msg_decode(buf, len, LSW_MSG_CHUNK, &lim, &m, &err) == LS_OK);
    CHECK_EQ_INT(m.h.count, 3);
    CHECK_EQ_INT(m.tokens[2], 42);
    CHECK_NEAR(m.states[11], 11.0, 0);
    CHECK(m.draft_q == NULL);
    len = make_chunk(buf, 3, 4, 5, LSW_CHUNK_SPECULATIVE | LSW_CHUNK_DRAFT_Q);
    REQUIRE(lsw_msg_decode(buf, len, LSW_MSG_CHUNK, &lim, &m, &err) == LS_OK);
    CHECK((const void *)m.draft_q == (const void *)(m.states + 12));
    CHECK_EQ_INT(m.draft_q[1].n, 2);
    CHECK_EQ_INT(m.draft_q[1].ids[1], 6);
    /* a draft distribution with a bad size or entry is refused */
    lsw_draft_q bad_q = {.n = LS_DRAFT_Q_CAP + 1};
    memcpy(buf + len - sizeof bad_q, &bad_q, sizeof bad_q);
    CHECK_EQ_INT(lsw_msg_decode(buf, len, LSW_MSG_CHUNK, &lim, &m, &err), LS_ERR_FORMAT);
    CHECK(strstr(err.msg, "draft distribution size") != NULL);
    bad_q = (lsw_draft_q){.n = 1, .ids = {100}, .p = {1}};
    memcpy(buf + len - sizeof bad_q, &bad_q, sizeof bad_q);
    CHECK_EQ_INT(lsw_msg_decode(buf, len, LSW_MSG_CHUNK, &lim, &m, &err), LS_ERR_FORMAT);
    CHECK(strstr(err.msg, "draft distribution entry") != NULL);

    /* each corruption is refused with a message */
    len = make_chunk(buf, 3, 4, 42, 0);
    CHECK_EQ_INT(lsw_msg_decode(buf, len - 4, LSW_MSG_CHUNK, &lim, &m, &err), LS_ERR_FORMAT);
    CHECK(strstr(err.msg, "payload size") != NULL);
    CHECK_EQ_INT(lsw_msg_decode(buf, len + 4, LSW_MSG_CHUNK, &lim, &m, &err), LS_ERR_FORMAT);
    CHECK_EQ_INT(lsw_msg_decode(buf, len, LSW_MSG_VERDICT, &lim, &m, &err), LS_ERR_FORMAT);
    CHECK(strstr(err.msg, "tag") != NULL);
    CHECK_EQ_INT(lsw_msg_decode(buf, 7, LSW_MSG_CHUNK, &lim, &m, &err), LS_ERR_FORMAT);
    CHECK(strstr(err.msg, "shorter than a header") != NULL);
    len = make_chunk(buf, 3, 4, 100, 0); /* token id = n_vocab */
    CHECK_EQ_INT(lsw_msg_decode(buf, len, LSW_MSG_CHUNK, &lim, &m, &err), LS_ERR_FORMAT);
    CHECK(strstr(err.msg, "token id out of range") != NULL);
    len = make_chunk(buf, 3, 4, -1, 0);
    CHECK_EQ_INT(lsw_msg_decode(buf, len, LSW_MSG_CHUNK, &lim, &m, &err), LS_ERR_FORMAT);
    len = make_chunk(buf, 9, 4, 1, 0); /* count > max_batch */
    CHECK_EQ_INT(lsw_msg_decode(buf, len, LSW_MSG_CHUNK, &lim, &m, &err), LS_ERR_FORMAT);
    CHECK(strstr(err.msg, "count out of range") != NULL);
    len = make_chunk(buf, 3, 4, 1, 0);
    lsw_hdr h;
    memcpy(&h, buf, sizeof h);
    h.first_pos = 14; /* 14 + 3 > n_ctx 16 */
    memcpy(buf, &h, sizeof h);
    CHECK_EQ_INT(lsw_msg_decode(buf, len, LSW_MSG_CHUNK, &lim, &m, &err), LS_ERR_FORMAT);
    CHECK(strstr(err.msg, "outside the context") != NULL);
    h.first_pos = 0;
    h.slot = 2;
    memcpy(buf, &h, sizeof h);
    CHECK_EQ_INT(lsw_msg_decode(buf, len, LSW_MSG_CHUNK, &lim, &m, &err), LS_ERR_FORMAT);
    CHECK(strstr(err.msg, "slot out of range") != NULL);
    h.slot = 0;
    h.flags = 64;
    memcpy(buf, &h, sizeof h);
    CHECK_EQ_INT(lsw_msg_decode(buf, len, LSW_MSG_CHUNK, &lim, &m, &err), LS_ERR_FORMAT);
    CHECK(strstr(err.msg, "unknown flags") != NULL);

    /* verdicts */
    lsw_hdr v = {.type = LSW_MSG_VERDICT, .slot = 1, .generation = 3, .first_pos = 5, .accepted = 2, .next = 7};
    CHECK_EQ_INT(lsw_msg_decode(&v, sizeof v, LSW_MSG_VERDICT, &lim, &m, &err), LS_OK);
    v.next = 100;
    CHECK_EQ_INT(lsw_msg_decode(&v, sizeof v, LSW_MSG_VERDICT, &lim, &m, &err), LS_ERR_FORMAT);
    v.next = 7;
    v.accepted = 8;
    CHECK_EQ_INT(lsw_msg_decode(&v, sizeof v, LSW_MSG_VERDICT, &lim, &m, &err), LS_ERR_FORMAT);
    v.accepted = 2;
    v.generation = -1;
    CHECK_EQ_INT(lsw_msg_decode(&v, sizeof v, LSW_MSG_VERDICT, &lim, &m, &err), LS_ERR_FORMAT);

    /* before CONFIG only control messages are valid */
    v.generation = 0;
    CHECK_EQ_INT(lsw_msg_decode(&v, sizeof v, LSW_MSG_VERDICT, NULL, &m, &err), LS_ERR_FORMAT);
    CHECK(strstr(err.msg, "before the pipeline was configured") != NULL);
    lsw_hdr sd = {.type = LSW_MSG_SHUTDOWN};
    CHECK_EQ_INT(lsw_msg_decode(&sd, sizeof sd, LSW_MSG_SHUTDOWN, NULL, &m, &err), LS_OK);
    CHECK_EQ_INT(lsw_msg_decode(&sd, sizeof sd, 99, NULL, &m, &err), LS_ERR_FORMAT);
    sd.type = 99;
    CHECK_EQ_INT(lsw_msg_decode(&sd, sizeof sd, 99, &lim, &m, &err), LS_ERR_FORMAT);
    CHECK(strstr(err.msg, "unknown type 99") != NULL);

    /* config: wrong protocol, unterminated path */
    static char cbuf[sizeof(lsw_hdr) + sizeof(lsw_config_msg)];
    lsw_hdr ch = {.type = LSW_MSG_CONFIG};
    lsw_config_msg c = {.protocol = LSW_PROTOCOL, .n_ctx = 16, .max_slots = 1, .max_batch = 8, .n_threads = 1,
                        .timeout_s = 10, .n_layers = 30, .dim = 4, .n_vocab = 100};
    REQUIRE(lsw_layout_parse("0-8,8-30", 30, 2, &c.layout, &err) == LS_OK);
    strcpy(c.model_path, "m.gguf");
    memcpy(cbuf, &ch, sizeof ch);
    memcpy(cbuf + sizeof ch, &c, sizeof c);
    CHECK_EQ_INT(lsw_msg_decode(cbuf, sizeof cbuf, LSW_MSG_CONFIG, NULL, &m, &err), LS_OK);
    CHECK_STR_EQ(m.config.model_path, "m.gguf");
    c.protocol = LSW_PROTOCOL + 1;
    memcpy(cbuf + sizeof ch, &c, sizeof c);
    CHECK_EQ_INT(lsw_msg_decode(cbuf, sizeof cbuf, LSW_MSG_CONFIG, NULL, &m, &err), LS_ERR_FORMAT);
    CHECK(strstr(err.msg, "protocol") != NULL);
    c.protocol = LSW_PROTOCOL;
    memset(c.model_path, 'x', sizeof c.model_path);
    memcpy(cbuf + sizeof ch, &c, sizeof c);
    CHECK_EQ_INT(lsw_msg_decode(cbuf, sizeof cbuf, LSW_MSG_CONFIG, NULL, &m, &err), LS_ERR_FORMAT);
    CHECK_EQ_INT(lsw_msg_decode(cbuf, sizeof cbuf - 1, LSW_MSG_CONFIG, NULL, &m, &err), LS_ERR_FORMAT);

    /* random bytes never crash the decoder */
    ls_rng rng;
    ls_rng_seed(&rng, 1);
    for (int it = 0; it < 20000; it++) {
        size_t n = (size_t)(ls_rng_next(&rng) % 200);
        for (size_t i = 0; i < n; i++) buf[i] = (char)ls_rng_next(&rng);
        if (n >= sizeof(lsw_hdr) && (it & 1)) { /* plausible header, random body */
            lsw_hdr r = {.type = 1 + (int32_t)(ls_rng_next(&rng) % 9), .count = (int32_t)(ls_rng_next(&rng) % 10)};
            memcpy(buf, &r, sizeof r);
        }
        lsw_hdr t;
        memcpy(&t, buf, n >= sizeof t ? sizeof t : 0);
        (void)lsw_msg_decode(buf, n, n >= sizeof t ? t.type : 4, (it & 2) ? &lim : NULL, &m, &err);
    }
    CHECK(true);
}

static void test_rejection_rule(void) {
    CHECK(!lsw_chunk_rejected(4, 17, 4, 17)); /* all accepted, bonus as assumed */
    CHECK(lsw_chunk_rejected(4, 17, 4, 18));  /* bonus differs */
    CHECK(lsw_chunk_rejected(4, 17, 2, 17));  /* a draft rejected */
    CHECK(lsw_chunk_rejected(0, -1, 0, 5));   /* no continuation assumed */
}

int main(void) {
    RUN(test_layout_parse);
    RUN(test_layout_split);
    RUN(test_layout_budget_parse);
    RUN(test_format_bytes);
    RUN(test_layout_fit);
    RUN(test_layout_fit_random);
    RUN(test_decode);
    RUN(test_rejection_rule);
    TEST_MAIN_END();
}
