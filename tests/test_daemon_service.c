/* test_daemon_service.c: request validation and encoding of layerskipd's
 * service layer, on the default model, without a network: every bad field
 * gives INVALID_ARGUMENT with a message naming it, good requests become
 * the job the scheduler expects, and responses decode back. */
#include "service.h"

#include "config.h" /* LSD_NUM_SPECULATIONS_AUTO, LS_AUTO_SPECULATIONS_MAX */
#include "layerskip/v1/layerskip.pb-c.h"
#include "grpc/health/v1/health.pb-c.h"
#include "random_adapter.h"
#include "test_util.h"

static ls_model *model;
static lsd_service sv;

/* pack r, run prepare_generate; returns the code, msg filled */
static grpc_status_code prepare(Layerskip__V1__GenerateRequest *r, lsd_job *job, char *msg, size_t msg_len) {
    size_t n = layerskip__v1__generate_request__get_packed_size(r);
    uint8_t *buf = malloc(n + 1);
    layerskip__v1__generate_request__pack(r, buf);
    lsd_job_init(job);
    msg[0] = 0;
    grpc_status_code c = lsd_service_prepare_generate(&sv, buf, n, job, msg, msg_len);
    free(buf);
    return c;
}

static void expect_invalid(Layerskip__V1__GenerateRequest *r, const char *needle) {
    lsd_job job;
    char msg[1024];
    grpc_status_code c = prepare(r, &job, msg, sizeof msg);
    CHECK_EQ_INT(c, GRPC_STATUS_INVALID_ARGUMENT);
    if (!strstr(msg, needle)) {
        tu_failures++;
        fprintf(stderr, "message \"%s\" does not name \"%s\"\n", msg, needle);
    }
    lsd_job_clear(&job);
}

static void test_validation(void) {
    Layerskip__V1__GenerateRequest r = LAYERSKIP__V1__GENERATE_REQUEST__INIT;
    expect_invalid(&r, "prompt is empty");
    r.input_case = LAYERSKIP__V1__GENERATE_REQUEST__INPUT_PROMPT;
    r.prompt = "hi";
    r.max_tokens = -1;
    expect_invalid(&r, "max_tokens -1");
    r.max_tokens = 300;
    expect_invalid(&r, "max_tokens 300 does not fit");
    r.max_tokens = 0;
    r.strategy = "fast";
    expect_invalid(&r, "strategy");
    r.strategy = "";
    r.exit_layer = 30;
    expect_invalid(&r, "exit_layer 30");
    r.exit_layer = 0;
    r.num_speculations = 33;
    expect_invalid(&r, "num_speculations 33");
    r.num_speculations = 0;
    Layerskip__V1__SamplingParams sp = LAYERSKIP__V1__SAMPLING_PARAMS__INIT;
    sp.top_p = 1.5f;
    r.sampling = &sp;
    expect_invalid(&r, "sampling.top_p");
    sp.top_p = 0;
    sp.repetition_penalty = -2;
    expect_invalid(&r, "sampling.repetition_penalty");
    r.sampling = NULL;
    char *stops[17];
    for (int i = 0; i < 17; i++) stops[i] = "x";
    r.n_stop = 17;
    r.stop = stops;
    expect_invalid(&r, "stop has 17");
    r.n_stop = 1;
    stops[0] = "\xff";
    expect_invalid(&r, "stop[0] is not valid UTF-8");
    r.n_stop = 0;
    int32_t bad_id = 1 << 20;
    r.n_stop_token_ids = 1;
    r.stop_token_ids = &bad_id;
    expect_invalid(&r, "stop_token_ids[0]");
    r.n_stop_token_ids = 0;
    r.prompt = "caf\xc3";
    expect_invalid(&r, "prompt is not valid UTF-8");
    Layerskip__V1__TokenIds ids = LAYERSKIP__V1__TOKEN_IDS__INIT;
    int32_t pids[2] = {1, -5};
    ids.n_ids = 2;
    ids.ids = pids;
    r.input_case = LAYERSKIP__V1__GENERATE_REQUEST__INPUT_PROMPT_IDS;
    r.prompt_ids = &ids;
    expect_invalid(&r, "prompt_ids[1] = -5");
    ids.n_ids = 0;
    expect_invalid(&r, "prompt_ids is empty");

    /* not a protobuf message at all */
    lsd_job job;
    lsd_job_init(&job);
    char msg[1024];
    static const uint8_t garbage[] = {0xff, 0xff, 0xff};
    CHECK_EQ_INT(lsd_service_prepare_generate(&sv, garbage, sizeof garbage, &job, msg, sizeof msg),
                 GRPC_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(msg, "GenerateRequest") != NULL);
    lsd_job_clear(&job);
}

static void test_good_request(void) {
    Layerskip__V1__GenerateRequest r = LAYERSKIP__V1__GENERATE_REQUEST__INIT;
    r.input_case = LAYERSKIP__V1__GENERATE_REQUEST__INPUT_PROMPT;
    r.prompt = "The capital of France is";
    r.strategy = "self_speculative";
    char *stops[1] = {"\n\n"};
    r.n_stop = 1;
    r.stop = stops;
    lsd_job job;
    char msg[1024];
    CHECK_EQ_INT(prepare(&r, &job, msg, sizeof msg), GRPC_STATUS_OK);
    CHECK_EQ_INT(job.n_prompt, 5);
    CHECK_EQ_INT(job.prompt[0], 504);
    CHECK_EQ_INT(job.params.strategy, LS_STRATEGY_SELF_SPECULATIVE);
    CHECK_EQ_INT(job.params.exit_layer, 7);       /* the service's defaults */
    CHECK_EQ_INT(job.params.num_speculations, 4);
    CHECK_EQ_INT(job.params.n_predict, 100);
    CHECK(!job.until_context_full);
    CHECK_EQ_INT(job.n_stops, 1);
    CHECK(strncmp(job.request_id, "req-", 4) == 0);
    long first = atol(job.request_id + 4);
    /* a default that does not fit is cut to the room left */
    lsd_job_clear(&job);
    sv.default_max_tokens = 1000;
    CHECK_EQ_INT(prepare(&r, &job, msg, sizeof msg), GRPC_STATUS_OK);
    CHECK_EQ_INT(job.params.n_predict, 256 - 5);
    CHECK(job.until_context_full);
    CHECK_EQ_INT(atol(job.request_id + 4), first + 1); /* ids are unique */
    sv.default_max_tokens = 100;

    /* a finished job encodes into a GenerateResponse that decodes back */
    job.text = strdup(" Paris.");
    job.text_len = 7;
    job.ids = malloc(2 * sizeof(int32_t));
    job.ids[0] = 7042;
    job.ids[1] = 30;
    job.n_ids = 2;
    job.finish_reason = LSD_FINISH_STOP;
    uint8_t *out;
    size_t len;
    REQUIRE(lsd_service_encode_response(&sv, &job, &out, &len) == 0);
    Layerskip__V1__GenerateResponse *resp = layerskip__v1__generate_response__unpack(NULL, len, out);
    REQUIRE(resp != NULL);
    CHECK_STR_EQ(resp->text, " Paris.");
    CHECK_EQ_INT(resp->n_token_ids, 2);
    CHECK_EQ_INT(resp->finish_reason, LAYERSKIP__V1__FINISH_REASON__FINISH_REASON_STOP);
    CHECK_STR_EQ(resp->stats->strategy, "self_speculative");
    CHECK_EQ_INT(resp->stats->generated_tokens, 2);
    CHECK_EQ_INT(resp->stats->exit_layer, 7);
    layerskip__v1__generate_response__free_unpacked(resp, NULL);
    free(out);
    lsd_job_clear(&job);
}

static void test_tokenize_and_info(void) {
    Layerskip__V1__TokenizeRequest t = LAYERSKIP__V1__TOKENIZE_REQUEST__INIT;
    t.text = "The capital of France is";
    uint8_t buf[256], *out;
    size_t n = layerskip__v1__tokenize_request__pack(&t, buf), len;
    char msg[512];
    REQUIRE(lsd_service_tokenize(&sv, buf, n, &out, &len, msg, sizeof msg) == GRPC_STATUS_OK);
    Layerskip__V1__TokenizeResponse *tr = layerskip__v1__tokenize_response__unpack(NULL, len, out);
    REQUIRE(tr != NULL);
    CHECK_EQ_INT(tr->n_ids, 5);
    CHECK_EQ_INT(tr->n_pieces, 5);
    CHECK_STR_EQ(tr->pieces[1], " capital");
    free(out);

    Layerskip__V1__DetokenizeRequest d = LAYERSKIP__V1__DETOKENIZE_REQUEST__INIT;
    d.n_ids = tr->n_ids;
    d.ids = tr->ids;
    n = layerskip__v1__detokenize_request__pack(&d, buf);
    REQUIRE(lsd_service_detokenize(&sv, buf, n, &out, &len, msg, sizeof msg) == GRPC_STATUS_OK);
    Layerskip__V1__DetokenizeResponse *dr = layerskip__v1__detokenize_response__unpack(NULL, len, out);
    REQUIRE(dr != NULL);
    CHECK_STR_EQ(dr->text, "The capital of France is");
    layerskip__v1__detokenize_response__free_unpacked(dr, NULL);
    layerskip__v1__tokenize_response__free_unpacked(tr, NULL);
    free(out);

    /* ids outside the vocabulary are named */
    int32_t bad[1] = {-1};
    d.n_ids = 1;
    d.ids = bad;
    n = layerskip__v1__detokenize_request__pack(&d, buf);
    CHECK_EQ_INT(lsd_service_detokenize(&sv, buf, n, &out, &len, msg, sizeof msg), GRPC_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(msg, "ids[0] = -1") != NULL);

    REQUIRE(lsd_service_model_info(&sv, NULL, 0, &out, &len, msg, sizeof msg) == GRPC_STATUS_OK);
    Layerskip__V1__ModelInfo *mi = layerskip__v1__model_info__unpack(NULL, len, out);
    REQUIRE(mi != NULL);
    CHECK_EQ_INT(mi->layers, 30);
    CHECK_EQ_INT(mi->context, 256);
    CHECK_EQ_INT(mi->n_stages, 1);
    CHECK_EQ_INT(mi->stages[0]->last_layer, 30);
    CHECK_EQ_INT(mi->exit_layer_range->max, 29);
    CHECK_EQ_INT(mi->n_strategies, 3);
    CHECK_STR_EQ(mi->tokenizer, "bpe");
    layerskip__v1__model_info__free_unpacked(mi, NULL);
    free(out);

    REQUIRE(lsd_service_health_response(LSD_HEALTH_NOT_SERVING, &out, &len) == 0);
    Grpc__Health__V1__HealthCheckResponse *h = grpc__health__v1__health_check_response__unpack(NULL, len, out);
    REQUIRE(h != NULL);
    CHECK_EQ_INT(h->status, GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING);
    grpc__health__v1__health_check_response__free_unpacked(h, NULL);
    free(out);
}

/* a draft adapter holding only a frequency table of n_table tokens, E = 7 */
static bool write_table_adapter(const ls_model *m, int n_table, const char *path) {
    return ra_write_for_model(m, &(ra_spec){.exit_layer = 7, .no_block = true, .n_table = n_table, .seed = 1}, path);
}

/* draft_source, draft_vocab and num_speculations -1 (auto): request -> ls_gen_params,
 * the engine's refusals as INVALID_ARGUMENT, the daemon's defaults, and the
 * per-source and per-k statistics in the response */
static void test_draft_options(void) {
    Layerskip__V1__GenerateRequest r = LAYERSKIP__V1__GENERATE_REQUEST__INIT;
    r.input_case = LAYERSKIP__V1__GENERATE_REQUEST__INPUT_PROMPT;
    r.prompt = "The capital of France is";
    r.strategy = "self_speculative";
    r.draft_source = "bogus";
    expect_invalid(&r, "draft_source: unknown draft source \"bogus\" (valid: auto, exit, adapter, lookup)");
    r.draft_source = "adapter";
    expect_invalid(&r, "draft source adapter needs an adapter");
    r.draft_source = "";
    r.draft_vocab_option_case = LAYERSKIP__V1__GENERATE_REQUEST__DRAFT_VOCAB_OPTION_DRAFT_VOCAB;
    r.draft_vocab = 5;
    expect_invalid(&r, "draft_vocab 5 needs a frequency table");
    r.draft_vocab = 0; /* explicitly the full head */
    r.num_speculations = -2;
    expect_invalid(&r, "num_speculations -2 is out of range [1, 32] (-1 = auto");

    lsd_job job;
    char msg[1024];
    r.num_speculations = -1;
    r.draft_source = "lookup";
    CHECK_EQ_INT(prepare(&r, &job, msg, sizeof msg), GRPC_STATUS_OK);
    CHECK(job.params.auto_speculations);
    CHECK_EQ_INT(job.params.num_speculations, LS_AUTO_SPECULATIONS_MAX);
    CHECK_EQ_INT(job.params.draft_source, LS_DRAFT_LOOKUP);
    CHECK_EQ_INT(job.params.draft_vocab, 0);
    CHECK(job.params.adapter == NULL);

    /* statistics: every real source in order, rounds by k up to the last used, mean k, -1 for auto */
    job.gen.drafted = 9;
    job.gen.accepted = 6;
    job.gen.rounds = 5;
    job.gen.drafted_by[LS_DRAFT_EXIT] = 4;
    job.gen.accepted_by[LS_DRAFT_EXIT] = 2;
    job.gen.drafted_by[LS_DRAFT_LOOKUP] = 5;
    job.gen.accepted_by[LS_DRAFT_LOOKUP] = 4;
    job.gen.rounds_by_k[0] = 1;
    job.gen.rounds_by_k[2] = 2;
    job.gen.rounds_by_k[3] = 2;
    uint8_t *out;
    size_t len;
    for (int chunk = 0; chunk < 2; chunk++) {
        if (chunk) REQUIRE(lsd_service_encode_chunk(&sv, &job, "", 0, NULL, 0, true, &out, &len) == 0);
        else REQUIRE(lsd_service_encode_response(&sv, &job, &out, &len) == 0);
        Layerskip__V1__Stats *st;
        Layerskip__V1__GenerateResponse *resp = NULL;
        Layerskip__V1__GenerateChunk *ch = NULL;
        if (chunk) st = (ch = layerskip__v1__generate_chunk__unpack(NULL, len, out)) ? ch->stats : NULL;
        else st = (resp = layerskip__v1__generate_response__unpack(NULL, len, out)) ? resp->stats : NULL;
        REQUIRE(st != NULL);
        CHECK_EQ_INT(st->num_speculations, -1);
        CHECK_STR_EQ(st->draft_source, "lookup");
        CHECK_EQ_INT(st->draft_vocab, 0);
        REQUIRE(st->n_by_source == 3);
        CHECK_STR_EQ(st->by_source[0]->source, "exit");
        CHECK_STR_EQ(st->by_source[1]->source, "adapter");
        CHECK_STR_EQ(st->by_source[2]->source, "lookup");
        CHECK_EQ_INT(st->by_source[0]->drafted, 4);
        CHECK_EQ_INT(st->by_source[0]->accepted, 2);
        CHECK_EQ_INT(st->by_source[1]->drafted, 0);
        CHECK_EQ_INT(st->by_source[2]->drafted, 5);
        CHECK_EQ_INT(st->by_source[2]->accepted, 4);
        REQUIRE(st->n_rounds_by_k == 4);
        CHECK_EQ_INT(st->rounds_by_k[0], 1);
        CHECK_EQ_INT(st->rounds_by_k[1], 0);
        CHECK_EQ_INT(st->rounds_by_k[3], 2);
        CHECK_NEAR(st->mean_k, (0 * 1 + 2 * 2 + 3 * 2) / 5.0, 1e-12);
        if (ch) layerskip__v1__generate_chunk__free_unpacked(ch, NULL);
        if (resp) layerskip__v1__generate_response__free_unpacked(resp, NULL);
        free(out);
    }
    lsd_job_clear(&job);

    /* the daemon's defaults fill what the request leaves out; other strategies carry none of it */
    r.num_speculations = 0;
    r.draft_source = "";
    r.draft_vocab_option_case = LAYERSKIP__V1__GENERATE_REQUEST__DRAFT_VOCAB_OPTION__NOT_SET;
    sv.default_num_speculations = LSD_NUM_SPECULATIONS_AUTO;
    sv.default_draft_source = LS_DRAFT_EXIT;
    CHECK_EQ_INT(prepare(&r, &job, msg, sizeof msg), GRPC_STATUS_OK);
    CHECK(job.params.auto_speculations);
    CHECK_EQ_INT(job.params.draft_source, LS_DRAFT_EXIT);
    lsd_job_clear(&job);
    r.num_speculations = 3;
    CHECK_EQ_INT(prepare(&r, &job, msg, sizeof msg), GRPC_STATUS_OK);
    CHECK(!job.params.auto_speculations);
    CHECK_EQ_INT(job.params.num_speculations, 3);
    lsd_job_clear(&job);
    r.strategy = "autoregressive";
    CHECK_EQ_INT(prepare(&r, &job, msg, sizeof msg), GRPC_STATUS_OK);
    REQUIRE(lsd_service_encode_response(&sv, &job, &out, &len) == 0);
    Layerskip__V1__GenerateResponse *resp = layerskip__v1__generate_response__unpack(NULL, len, out);
    REQUIRE(resp != NULL);
    CHECK_STR_EQ(resp->stats->draft_source, "");
    CHECK_EQ_INT(resp->stats->n_by_source, 0);
    CHECK_EQ_INT(resp->stats->n_rounds_by_k, 0);
    CHECK_EQ_INT(resp->stats->num_speculations, 0);
    layerskip__v1__generate_response__free_unpacked(resp, NULL);
    free(out);
    lsd_job_clear(&job);
    r.strategy = "self_speculative";
    sv.default_num_speculations = 4;
    sv.default_draft_source = LS_DRAFT_AUTO;

    /* with a loaded adapter (a frequency table of 100 tokens): its range, and ModelInfo */
    const char *path = tu_tmp_path("daemon_service_table.gguf");
    REQUIRE(write_table_adapter(model, 100, path));
    ls_adapter *a = NULL;
    ls_err err;
    if (ls_adapter_load(path, model, &a, &err) != LS_OK) fprintf(stderr, "  %s\n", err.msg);
    REQUIRE(a != NULL);
    sv.adapter = a;
    r.draft_vocab_option_case = LAYERSKIP__V1__GENERATE_REQUEST__DRAFT_VOCAB_OPTION_DRAFT_VOCAB;
    r.draft_vocab = 101;
    expect_invalid(&r, "draft_vocab 101 is out of range [1, 100]");
    r.draft_vocab = -1;
    expect_invalid(&r, "draft_vocab -1 is out of range [1, 100]");
    r.draft_vocab = 0;
    r.draft_source = "adapter";
    expect_invalid(&r, "holds only a frequency table");
    r.draft_source = "";
    r.draft_vocab = 100;
    CHECK_EQ_INT(prepare(&r, &job, msg, sizeof msg), GRPC_STATUS_OK);
    CHECK_EQ_INT(job.params.draft_vocab, 100);
    CHECK(job.params.adapter == a);
    lsd_job_clear(&job);
    sv.default_draft_vocab = 50;
    r.draft_vocab_option_case = LAYERSKIP__V1__GENERATE_REQUEST__DRAFT_VOCAB_OPTION__NOT_SET;
    CHECK_EQ_INT(prepare(&r, &job, msg, sizeof msg), GRPC_STATUS_OK);
    CHECK_EQ_INT(job.params.draft_vocab, 50);
    lsd_job_clear(&job);

    REQUIRE(lsd_service_model_info(&sv, NULL, 0, &out, &len, msg, sizeof msg) == GRPC_STATUS_OK);
    Layerskip__V1__ModelInfo *mi = layerskip__v1__model_info__unpack(NULL, len, out);
    REQUIRE(mi != NULL);
    CHECK_STR_EQ(mi->default_draft_source, "auto");
    REQUIRE(mi->n_draft_sources == 4);
    CHECK_STR_EQ(mi->draft_sources[3], "lookup");
    CHECK_EQ_INT(mi->default_draft_vocab, 50);
    CHECK_STR_EQ(mi->draft_adapter, path);
    CHECK_EQ_INT(mi->draft_adapter_exit_layer, 7);
    CHECK_EQ_INT(mi->draft_vocab_max, 100);
    CHECK_EQ_INT(mi->auto_speculations_max, LS_AUTO_SPECULATIONS_MAX);
    layerskip__v1__model_info__free_unpacked(mi, NULL);
    free(out);
    sv.adapter = NULL;
    sv.default_draft_vocab = 0;
    ls_adapter_free(a);
    remove(path);
}

static void test_utf8(void) {
    CHECK(lsd_utf8_valid("caf\xc3\xa9", 5));
    CHECK(!lsd_utf8_valid("\xc0\xaf", 2));         /* overlong */
    CHECK(!lsd_utf8_valid("\xed\xa0\x80", 3));     /* surrogate */
    CHECK(!lsd_utf8_valid("\xf4\x90\x80\x80", 4)); /* past U+10FFFF */
    CHECK(lsd_utf8_valid("\xf0\x9f\x98\x80", 4));
}

int main(void) {
    ls_err err;
    if (ls_model_load(tu_default_model(), &model, &err) != LS_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    sv = (lsd_service){.model = model, .model_path = tu_default_model(), .n_ctx = 256, .default_max_tokens = 100,
                       .default_strategy = LS_STRATEGY_AUTOREGRESSIVE, .default_exit_layer = 7,
                       .default_num_speculations = 4, .draft_min_p = 0.95f, .max_sessions = 2, .max_queue = 8};
    RUN(test_validation);
    RUN(test_good_request);
    RUN(test_draft_options);
    RUN(test_tokenize_and_info);
    RUN(test_utf8);
    ls_model_free(model);
    TEST_MAIN_END();
}
