/* The MPI pipeline's pure parts, without mpirun: layout parsing, splitting
 * and checks (every error names the problem and the fix), and the checks a
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

/* a chunk message: header + tokens + states */
static size_t make_chunk(char *buf, int count, int dim, int32_t tok, uint32_t flags) {
    lsw_hdr h = {.type = LSW_MSG_CHUNK, .slot = 0, .generation = 1, .first_pos = 3, .count = count,
                 .flags = (int32_t)flags, .next = -1};
    memcpy(buf, &h, sizeof h);
    size_t at = sizeof h;
    for (int i = 0; i < count; i++, at += 4) memcpy(buf + at, &tok, 4);
    const int rows = count * dim * ((flags & LSW_CHUNK_EXIT) ? 2 : 1);
    for (int i = 0; i < rows; i++, at += 4) {
        float v = (float)i;
        memcpy(buf + at, &v, 4);
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
    CHECK(m.exit_states == NULL);
    len = make_chunk(buf, 2, 4, 5, LSW_CHUNK_SPECULATIVE | LSW_CHUNK_EXIT);
    REQUIRE(lsw_msg_decode(buf, len, LSW_MSG_CHUNK, &lim, &m, &err) == LS_OK);
    CHECK(m.exit_states == m.states + 8);

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
    RUN(test_decode);
    RUN(test_rejection_rule);
    TEST_MAIN_END();
}
