/* test_client_batch: the batch command's file logic without a server: the
 * id set, resume (torn last line truncated, ids collected, junk ignored),
 * input line parsing (every error names the field), and the output lines
 * (one JSON object + newline that a resume scan reads back). */
#include "batch.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int failures;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            failures++;                                                              \
        }                                                                            \
    } while (0)
#define CHECK_EQ_INT(a, b)                                                                                   \
    do {                                                                                                     \
        long long a_ = (long long)(a), b_ = (long long)(b);                                                  \
        if (a_ != b_) {                                                                                      \
            fprintf(stderr, "%s:%d: %s == %lld, expected %s == %lld\n", __FILE__, __LINE__, #a, a_, #b, b_); \
            failures++;                                                                                      \
        }                                                                                                    \
    } while (0)
#define CHECK_EQ_STR(a, b)                                                                                         \
    do {                                                                                                           \
        const char *a_ = (a), *b_ = (b);                                                                           \
        if (!a_ || !b_ || strcmp(a_, b_)) {                                                                        \
            fprintf(stderr, "%s:%d: %s == \"%s\", expected \"%s\"\n", __FILE__, __LINE__, #a, a_ ? a_ : "(null)", \
                    b_ ? b_ : "(null)");                                                                           \
            failures++;                                                                                            \
        }                                                                                                          \
    } while (0)
#define CHECK_CONTAINS(hay, needle)                                                                              \
    do {                                                                                                         \
        if (!strstr((hay), (needle))) {                                                                          \
            fprintf(stderr, "%s:%d: \"%s\" does not contain \"%s\"\n", __FILE__, __LINE__, (hay), (needle));    \
            failures++;                                                                                          \
        }                                                                                                        \
    } while (0)

static char tmpdir[512];

static int write_file(const char *name, const char *content, char *path, size_t len) {
    snprintf(path, len, "%s/%s", tmpdir, name);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return -1;
    if (write(fd, content, strlen(content)) != (ssize_t)strlen(content)) {
        close(fd);
        return -1;
    }
    return fd;
}

static void test_idset(void) {
    lsc_idset s;
    lsc_idset_init(&s);
    CHECK(!lsc_idset_has(&s, "\"a\""));
    char key[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof key, "%d", i);
        CHECK(lsc_idset_add(&s, key) == LSC_OK);
    }
    CHECK(lsc_idset_add(&s, "7") == LSC_OK); /* twice: no-op */
    CHECK_EQ_INT(s.count, 1000);
    CHECK(lsc_idset_has(&s, "999"));
    CHECK(lsc_idset_has(&s, "0"));
    CHECK(!lsc_idset_has(&s, "1000"));
    CHECK(!lsc_idset_has(&s, "\"7\"")); /* the string "7" is not the number 7 */
    lsc_idset_free(&s);
}

static void test_resume(void) {
    char path[600];
    /* two results, an error line, junk, and a torn last line */
    const char *content = "{\"id\":\"a\",\"text\":\"x\"}\n"
                          "{\"id\":2,\"error\":{\"code\":\"INVALID_ARGUMENT\",\"message\":\"m\"}}\n"
                          "not json\n"
                          "\n"
                          "{\"id\":\"c\",\"text\":\"y\"}\n"
                          "{\"id\":\"torn\",\"te";
    int fd = write_file("resume.jsonl", content, path, sizeof path);
    CHECK(fd >= 0);
    lsc_idset done;
    lsc_idset_init(&done);
    size_t lines = 0, dropped = 0;
    lsc_err err = {{0}};
    CHECK(lsc_resume_scan(fd, path, &done, &lines, &dropped, &err) == LSC_OK);
    CHECK_EQ_INT(lines, 3);
    CHECK_EQ_INT(dropped, strlen("{\"id\":\"torn\",\"te"));
    CHECK(lsc_idset_has(&done, "\"a\""));
    CHECK(lsc_idset_has(&done, "2"));
    CHECK(lsc_idset_has(&done, "\"c\""));
    CHECK(!lsc_idset_has(&done, "\"torn\""));
    struct stat sb;
    fstat(fd, &sb);
    CHECK_EQ_INT(sb.st_size, strlen(content) - dropped);
    /* the file now ends with a newline: appending gives whole lines */
    char last;
    CHECK(pread(fd, &last, 1, sb.st_size - 1) == 1 && last == '\n');
    lsc_idset_free(&done);

    /* a second scan finds nothing to drop */
    lsc_idset_init(&done);
    CHECK(lsc_resume_scan(fd, path, &done, &lines, &dropped, &err) == LSC_OK);
    CHECK_EQ_INT(dropped, 0);
    CHECK_EQ_INT(lines, 3);
    lsc_idset_free(&done);
    close(fd);

    /* a file that is only a torn line becomes empty */
    fd = write_file("torn-only.jsonl", "{\"id\":1,", path, sizeof path);
    lsc_idset_init(&done);
    CHECK(lsc_resume_scan(fd, path, &done, &lines, &dropped, &err) == LSC_OK);
    CHECK_EQ_INT(lines, 0);
    CHECK_EQ_INT(dropped, 8);
    fstat(fd, &sb);
    CHECK_EQ_INT(sb.st_size, 0);
    lsc_idset_free(&done);
    close(fd);

    /* an empty file */
    fd = write_file("empty.jsonl", "", path, sizeof path);
    lsc_idset_init(&done);
    CHECK(lsc_resume_scan(fd, path, &done, &lines, &dropped, &err) == LSC_OK);
    CHECK_EQ_INT(lines + dropped + done.count, 0);
    lsc_idset_free(&done);
    close(fd);
}

/* Parse one line; returns the status, err filled on failure. */
static lsc_status parse(const char *line, lsc_batch_item *it, lsc_err *err) {
    lsc_gen_params defaults;
    memset(&defaults, 0, sizeof defaults);
    defaults.max_tokens = 16;
    defaults.strategy = "self_speculative";
    return lsc_batch_parse_line(line, 1, &defaults, it, err);
}

static void test_parse_ok(void) {
    lsc_batch_item it;
    lsc_err err = {{0}};
    CHECK(parse("{\"id\":\"q1\",\"prompt\":\"Hello\"}", &it, &err) == LSC_OK);
    CHECK_EQ_STR(it.id_key, "\"q1\"");
    CHECK_EQ_STR(it.prompt, "Hello");
    CHECK_EQ_INT(it.params.max_tokens, 16); /* from the defaults */
    CHECK_EQ_STR(it.params.strategy, "self_speculative");
    lsc_batch_item_free(&it);

    CHECK(parse("{\"id\":7,\"prompt\":\"p\",\"max_tokens\":5,\"temperature\":0.7,\"top_k\":40,\"top_p\":0.95,"
                "\"min_p\":0.05,\"repetition_penalty\":1.1,\"seed\":\"18446744073709551615\",\"stop\":[\"a,b\",\"\\n\"],"
                "\"stop_token_ids\":[2,3],\"strategy\":\"early_exit\",\"exit_layer\":6,\"num_speculations\":3,"
                "\"ignore_eos\":true}",
                &it, &err) == LSC_OK);
    CHECK_EQ_STR(it.id_key, "7");
    CHECK_EQ_INT(it.params.max_tokens, 5);
    CHECK(it.params.sample && it.params.has_temperature && it.params.temperature == 0.7);
    CHECK_EQ_INT(it.params.top_k, 40);
    CHECK(it.params.has_seed && it.params.seed == 18446744073709551615ull);
    CHECK_EQ_INT(it.params.n_stop, 2);
    CHECK_EQ_STR(it.params.stop[0], "a,b");
    CHECK_EQ_STR(it.params.stop[1], "\n");
    CHECK_EQ_INT(it.params.n_stop_token_ids, 2);
    CHECK_EQ_INT(it.params.stop_token_ids[1], 3);
    CHECK_EQ_STR(it.params.strategy, "early_exit");
    CHECK_EQ_INT(it.params.exit_layer, 6);
    CHECK_EQ_INT(it.params.num_speculations, 3);
    CHECK(it.params.ignore_eos);

    /* the request built from it carries every field */
    Layerskip__V1__GenerateRequest req;
    Layerskip__V1__SamplingParams sp;
    lsc_gen_request_fill(&it.params, it.prompt, &req, &sp);
    CHECK_EQ_STR(req.prompt, "p");
    CHECK_EQ_INT(req.max_tokens, 5);
    CHECK(req.sampling && req.sampling->temperature > 0.69f && req.sampling->temperature < 0.71f);
    CHECK_EQ_INT(req.sampling->top_k, 40);
    CHECK(req.sampling->seed_option_case == LAYERSKIP__V1__SAMPLING_PARAMS__SEED_OPTION_SEED);
    CHECK_EQ_INT(req.n_stop, 2);
    CHECK_EQ_INT(req.exit_layer, 6);
    CHECK(req.ignore_eos);
    CHECK(req.draft_vocab_option_case == LAYERSKIP__V1__GENERATE_REQUEST__DRAFT_VOCAB_OPTION__NOT_SET);
    CHECK(req.draft_source == NULL || req.draft_source[0] == 0);
    lsc_batch_item_free(&it);

    /* the draft fields: num_speculations "auto" is -1 on the wire, draft_vocab 0 is sent (the full head) */
    CHECK(parse("{\"id\":8,\"prompt\":\"p\",\"num_speculations\":\"auto\",\"draft_source\":\"lookup\","
                "\"draft_vocab\":0}", &it, &err) == LSC_OK);
    CHECK_EQ_INT(it.params.num_speculations, LSC_NUM_SPECULATIONS_AUTO);
    CHECK_EQ_STR(it.params.draft_source, "lookup");
    lsc_gen_request_fill(&it.params, it.prompt, &req, &sp);
    CHECK_EQ_INT(req.num_speculations, -1);
    CHECK_EQ_STR(req.draft_source, "lookup");
    CHECK(req.draft_vocab_option_case == LAYERSKIP__V1__GENERATE_REQUEST__DRAFT_VOCAB_OPTION_DRAFT_VOCAB);
    CHECK_EQ_INT(req.draft_vocab, 0);
    lsc_batch_item_free(&it);
    CHECK(parse("{\"id\":9,\"prompt\":\"p\",\"num_speculations\":\"5\",\"draft_vocab\":4096}", &it, &err) ==
          LSC_OK);
    CHECK_EQ_INT(it.params.num_speculations, 5);
    CHECK(it.params.has_draft_vocab && it.params.draft_vocab == 4096);
    lsc_batch_item_free(&it);
    int k = 0;
    CHECK(lsc_num_speculations_parse("auto", &k) && k == LSC_NUM_SPECULATIONS_AUTO);
    CHECK(lsc_num_speculations_parse("32", &k) && k == 32);
    CHECK(!lsc_num_speculations_parse("0", &k) && !lsc_num_speculations_parse("-1", &k) &&
          !lsc_num_speculations_parse("Auto", &k) && !lsc_num_speculations_parse("", &k));

    /* temperature 0 in a line means greedy even if the defaults sample */
    lsc_gen_params d2;
    memset(&d2, 0, sizeof d2);
    d2.sample = true;
    CHECK(lsc_batch_parse_line("{\"id\":1,\"prompt\":\"p\",\"temperature\":0}", 1, &d2, &it, &err) == LSC_OK);
    lsc_gen_request_fill(&it.params, it.prompt, &req, &sp);
    CHECK(req.sampling->temperature == 0.0f);
    lsc_batch_item_free(&it);

    /* --sample alone: the reference generate.py defaults */
    CHECK(lsc_batch_parse_line("{\"id\":1,\"prompt\":\"p\"}", 1, &d2, &it, &err) == LSC_OK);
    lsc_gen_request_fill(&it.params, it.prompt, &req, &sp);
    CHECK(req.sampling->temperature > 0.59f && req.sampling->temperature < 0.61f);
    CHECK(req.sampling->top_p > 0.89f && req.sampling->top_p < 0.91f);
    CHECK_EQ_INT(req.sampling->top_k, 0);
    lsc_batch_item_free(&it);
}

static void test_parse_messages(void) {
    lsc_batch_item it;
    lsc_err err = {{0}};
    CHECK(parse("{\"id\":\"c1\",\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
                "{\"role\":\"user\",\"content\":\"Hi \\u00e9\"}],\"max_tokens\":4}", &it, &err) == LSC_OK);
    CHECK(it.prompt == NULL);
    CHECK_EQ_INT(it.n_messages, 2);
    CHECK_EQ_STR(it.messages[0].role, "system");
    CHECK_EQ_STR(it.messages[1].content, "Hi \xc3\xa9");
    CHECK(it.message_ptrs[1] == &it.messages[1]);
    CHECK_EQ_INT(it.params.max_tokens, 4);
    lsc_batch_item_free(&it);
}

static void test_parse_errors(void) {
    static const struct {
        const char *line;
        bool has_id;
        const char *msg;
    } cases[] = {
        {"{\"id\":1,", false, "not valid JSON"},
        {"[1,2]", false, "not a JSON object"},
        {"{\"prompt\":\"p\"}", false, "\"id\" is missing"},
        {"{\"id\":\"\",\"prompt\":\"p\"}", false, "non-empty string or a number"},
        {"{\"id\":[1],\"prompt\":\"p\"}", false, "non-empty string or a number"},
        {"{\"id\":1}", true, "\"prompt\" (or \"messages\") is missing"},
        {"{\"id\":1,\"messages\":[]}", true, "non-empty array"},
        {"{\"id\":1,\"messages\":[{\"role\":\"user\"}]}", true, "\"messages\"[0] must be"},
        {"{\"id\":1,\"messages\":[{\"role\":\"user\",\"content\":\"a\"},3]}", true, "\"messages\"[1] must be"},
        {"{\"id\":1,\"prompt\":\"p\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"}]}", true, "not both"},
        {"{\"id\":1,\"prompt\":5}", true, "\"prompt\" must be a string"},
        {"{\"id\":1,\"prompt\":\"p\",\"max_tokens\":1.5}", true, "\"max_tokens\""},
        {"{\"id\":1,\"prompt\":\"p\",\"max_tokens\":-1}", true, "\"max_tokens\""},
        {"{\"id\":1,\"prompt\":\"p\",\"temperature\":\"hot\"}", true, "\"temperature\""},
        {"{\"id\":1,\"prompt\":\"p\",\"stop\":\"x\"}", true, "\"stop\" must be an array"},
        {"{\"id\":1,\"prompt\":\"p\",\"stop\":[\"x\",3]}", true, "element 1"},
        {"{\"id\":1,\"prompt\":\"p\",\"stop_token_ids\":[-1]}", true, "\"stop_token_ids\""},
        {"{\"id\":1,\"prompt\":\"p\",\"seed\":-3}", true, "\"seed\""},
        {"{\"id\":1,\"prompt\":\"p\",\"ignore_eos\":1}", true, "\"ignore_eos\""},
        {"{\"id\":1,\"prompt\":\"p\",\"max_token\":4}", true, "unknown field \"max_token\""},
        {"{\"id\":1,\"prompt\":\"p\",\"num_speculations\":\"many\"}", true, "\"num_speculations\""},
        {"{\"id\":1,\"prompt\":\"p\",\"num_speculations\":-1}", true, "or \"auto\""},
        {"{\"id\":1,\"prompt\":\"p\",\"draft_source\":3}", true, "\"draft_source\" must be a string"},
        {"{\"id\":1,\"prompt\":\"p\",\"draft_vocab\":-5}", true, "\"draft_vocab\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        lsc_batch_item it;
        lsc_err err = {{0}};
        lsc_status st = parse(cases[i].line, &it, &err);
        if (st != LSC_ERR_INPUT) {
            fprintf(stderr, "case %zu (%s): status %d, expected LSC_ERR_INPUT\n", i, cases[i].line, st);
            failures++;
        }
        CHECK_EQ_INT(it.id_key != NULL, cases[i].has_id);
        CHECK_CONTAINS(err.msg, cases[i].msg);
        lsc_batch_item_free(&it);
    }
}

static void test_output_lines(void) {
    Layerskip__V1__Stats stats = LAYERSKIP__V1__STATS__INIT;
    stats.prompt_tokens = 5;
    stats.generated_tokens = 3;
    stats.drafted = 4;
    stats.accepted = 3;
    stats.acceptance_rate = 0.75;
    stats.strategy = "self_speculative";
    stats.seed = 18446744073709551615ull;
    stats.num_speculations = -1;
    stats.draft_source = "auto";
    Layerskip__V1__DraftSourceStats lookup = LAYERSKIP__V1__DRAFT_SOURCE_STATS__INIT, *by[1] = {&lookup};
    lookup.source = "lookup";
    lookup.drafted = 4;
    lookup.accepted = 3;
    stats.n_by_source = 1;
    stats.by_source = by;
    int64_t by_k[3] = {1, 0, 2};
    stats.n_rounds_by_k = 3;
    stats.rounds_by_k = by_k;
    stats.mean_k = 4.0 / 3.0;
    Layerskip__V1__GenerateResponse r = LAYERSKIP__V1__GENERATE_RESPONSE__INIT;
    r.text = "a\"b\nc";
    int32_t ids[3] = {10, 11, 12};
    r.token_ids = ids;
    r.n_token_ids = 3;
    r.finish_reason = LAYERSKIP__V1__FINISH_REASON__FINISH_REASON_EOS;
    r.stats = &stats;
    char *line = lsc_batch_result_line("\"q\\u00e91\"", &r, true);
    CHECK(line != NULL);
    size_t n = strlen(line);
    CHECK(n > 1 && line[n - 1] == '\n' && !memchr(line, '\n', n - 1)); /* one line */
    cJSON *o = cJSON_Parse(line);
    CHECK(o != NULL);
    CHECK_EQ_STR(cJSON_GetObjectItem(o, "id")->valuestring, "q\xc3\xa9" "1");
    CHECK_EQ_STR(cJSON_GetObjectItem(o, "text")->valuestring, "a\"b\nc");
    CHECK_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItem(o, "token_ids")), 3);
    CHECK_EQ_STR(cJSON_GetObjectItem(o, "finish_reason")->valuestring, "eos");
    cJSON *s = cJSON_GetObjectItem(o, "stats");
    CHECK_EQ_INT(cJSON_GetObjectItem(s, "drafted")->valuedouble, 4);
    CHECK_EQ_STR(cJSON_GetObjectItem(s, "strategy")->valuestring, "self_speculative");
    CHECK_EQ_STR(cJSON_GetObjectItem(s, "seed")->valuestring, "18446744073709551615");
    static const char *fields[] = {"prompt_tokens", "generated_tokens", "drafted", "accepted", "acceptance_rate",
                                   "time_to_first_token_ms", "tokens_per_second", "queue_ms", "total_ms",
                                   "strategy", "exit_layer", "num_speculations", "seed", "rounds",
                                   "draft_source", "draft_vocab", "by_source", "rounds_by_k", "mean_k"};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) CHECK(cJSON_GetObjectItem(s, fields[i]) != NULL);
    CHECK_EQ_INT(cJSON_GetObjectItem(s, "num_speculations")->valueint, -1);
    CHECK_EQ_STR(cJSON_GetObjectItem(s, "draft_source")->valuestring, "auto");
    const cJSON *bs = cJSON_GetArrayItem(cJSON_GetObjectItem(s, "by_source"), 0);
    CHECK(bs != NULL);
    CHECK_EQ_STR(cJSON_GetObjectItem(bs, "source")->valuestring, "lookup");
    CHECK_EQ_INT(cJSON_GetObjectItem(bs, "accepted")->valueint, 3);
    CHECK_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItem(s, "rounds_by_k")), 3);
    CHECK_EQ_INT(cJSON_GetArrayItem(cJSON_GetObjectItem(s, "rounds_by_k"), 2)->valueint, 2);

    /* a deep copy outlives the message it was made from */
    Layerskip__V1__Stats *copy = lsc_stats_copy(&stats);
    CHECK(copy != NULL);
    CHECK_EQ_STR(copy->draft_source, "auto");
    CHECK(copy->n_by_source == 1 && copy->by_source[0]->drafted == 4 && copy->by_source[0] != &lookup);
    CHECK(copy->n_rounds_by_k == 3 && copy->rounds_by_k[2] == 2 && copy->rounds_by_k != by_k);
    layerskip__v1__stats__free_unpacked(copy, NULL);
    cJSON_Delete(o);

    /* written lines are read back by a resume scan under the same key */
    char path[600];
    int fd = write_file("roundtrip.jsonl", line, path, sizeof path);
    char *el = lsc_batch_error_line("42", "INVALID_ARGUMENT", "bad \"x\"");
    CHECK(el && write(fd, el, strlen(el)) == (ssize_t)strlen(el));
    lsc_idset done;
    lsc_idset_init(&done);
    size_t lines = 0, dropped = 0;
    lsc_err err = {{0}};
    CHECK(lsc_resume_scan(fd, path, &done, &lines, &dropped, &err) == LSC_OK);
    CHECK_EQ_INT(lines, 2);
    CHECK(lsc_idset_has(&done, "42"));
    /* the key of the id as an input line spells it */
    lsc_batch_item it;
    CHECK(parse("{\"id\":\"q\\u00e91\",\"prompt\":\"p\"}", &it, &err) == LSC_OK);
    CHECK(it.id_key && lsc_idset_has(&done, it.id_key));
    lsc_batch_item_free(&it);
    CHECK(parse("{\"id\":42.0,\"prompt\":\"p\"}", &it, &err) == LSC_OK);
    CHECK(it.id_key && lsc_idset_has(&done, it.id_key));
    lsc_batch_item_free(&it);
    lsc_idset_free(&done);
    close(fd);
    o = cJSON_Parse(el);
    CHECK_EQ_STR(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "error"), "code")->valuestring, "INVALID_ARGUMENT");
    cJSON_Delete(o);
    free(el);
    free(line);
}

int main(void) {
    const char *base = getenv("LS_TMP_DIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/test_client_batch-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_idset();
    test_resume();
    test_parse_ok();
    test_parse_messages();
    test_parse_errors();
    test_output_lines();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    if (failures) {
        fprintf(stderr, "test_client_batch: %d checks failed\n", failures);
        return 1;
    }
    printf("test_client_batch: all checks passed\n");
    return 0;
}
