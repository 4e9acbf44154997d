/* test_daemon_reflection.c: daemon/reflection.c. Requests are built and
 * responses parsed with protobuf-c's generated reflection code (v1 and
 * v1alpha share the wire format); the FileDescriptorProtos returned must be
 * byte for byte the ones embedded from proto/ (the FileDescriptorSet's only
 * field, unwrapped here independently). Unknown names answer NOT_FOUND,
 * invalid bytes -1, and random bytes never crash. */
#include "reflection.h"
#include "test_util.h"

#include "grpc/reflection/v1/reflection.pb-c.h"
#include "grpc/reflection/v1alpha/reflection.pb-c.h"

extern const unsigned char ls_desc_layerskip_v1[];
extern const size_t ls_desc_layerskip_v1_len;
extern const unsigned char ls_desc_grpc_health_v1[];
extern const size_t ls_desc_grpc_health_v1_len;
extern const unsigned char ls_desc_grpc_reflection_v1alpha[];
extern const size_t ls_desc_grpc_reflection_v1alpha_len;
extern const unsigned char ls_desc_grpc_reflection_v1[];
extern const size_t ls_desc_grpc_reflection_v1_len;

typedef Grpc__Reflection__V1__ServerReflectionRequest req_t;
typedef Grpc__Reflection__V1__ServerReflectionResponse resp_t;

/* the FileDescriptorProto inside a one-file FileDescriptorSet: tag 0x0a,
 * varint length, bytes */
static void unwrap_set(const unsigned char *set, size_t len, const uint8_t **out, size_t *out_len) {
    *out = NULL;
    *out_len = 0;
    if (len < 2 || set[0] != 0x0a) return;
    size_t i = 1, v = 0;
    int shift = 0;
    while (i < len && shift < 35) {
        v |= (size_t)(set[i] & 0x7f) << shift;
        shift += 7;
        if (!(set[i++] & 0x80)) break;
    }
    if (i + v != len) return;
    *out = set + i;
    *out_len = v;
}

/* name (field 1) of a FileDescriptorProto, assuming it comes first as protoc writes it */
static char *proto_name(const uint8_t *p, size_t len) {
    static char name[128];
    if (len < 2 || p[0] != 0x0a || p[1] >= 0x80 || (size_t)p[1] + 2 > len || p[1] >= sizeof name) return NULL;
    memcpy(name, p + 2, p[1]);
    name[p[1]] = '\0';
    return name;
}

static resp_t *ask(req_t *rq) {
    size_t n = grpc__reflection__v1__server_reflection_request__get_packed_size(rq);
    uint8_t *buf = malloc(n ? n : 1);
    grpc__reflection__v1__server_reflection_request__pack(rq, buf);
    uint8_t *out = NULL;
    size_t out_len = 0;
    int rc = lsd_reflection_answer(buf, n, &out, &out_len);
    free(buf);
    if (rc != 0) return NULL;
    resp_t *r = grpc__reflection__v1__server_reflection_response__unpack(NULL, out_len, out);
    free(out);
    return r;
}

static resp_t *ask_symbol(const char *sym) {
    req_t rq = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
    rq.host = "localhost:50051";
    rq.message_request_case = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL;
    rq.file_containing_symbol = (char *)sym;
    return ask(&rq);
}

static void test_list_services(void) {
    req_t rq = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
    rq.host = "example:1";
    rq.message_request_case = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES;
    rq.list_services = "*";
    resp_t *r = ask(&rq);
    REQUIRE(r);
    CHECK_STR_EQ(r->valid_host, "example:1");
    REQUIRE(r->original_request);
    CHECK_EQ_INT(r->original_request->message_request_case,
                 GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES);
    CHECK_STR_EQ(r->original_request->list_services, "*");
    CHECK_STR_EQ(r->original_request->host, "example:1");
    REQUIRE(r->message_response_case == GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_LIST_SERVICES_RESPONSE);
    const char *want[] = {"layerskip.v1.LayerSkip", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection",
                          "grpc.reflection.v1alpha.ServerReflection"};
    REQUIRE(r->list_services_response->n_service == 4);
    for (int i = 0; i < 4; i++) CHECK_STR_EQ(r->list_services_response->service[i]->name, want[i]);
    grpc__reflection__v1__server_reflection_response__free_unpacked(r, NULL);
}

/* sym must answer exactly one FileDescriptorProto equal to the embedded one */
static void expect_file(const char *sym, const unsigned char *set, size_t set_len, const char *file_name) {
    const uint8_t *want;
    size_t want_len;
    unwrap_set(set, set_len, &want, &want_len);
    REQUIRE(want);
    resp_t *r = ask_symbol(sym);
    REQUIRE(r);
    tu_checks++;
    if (r->message_response_case != GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE) {
        tu_failures++;
        fprintf(stderr, "  symbol %s: no file (%s)\n", sym,
                r->message_response_case == GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE
                    ? r->error_response->error_message : "?");
        grpc__reflection__v1__server_reflection_response__free_unpacked(r, NULL);
        return;
    }
    CHECK_STR_EQ(r->valid_host, "localhost:50051");
    CHECK_STR_EQ(r->original_request->file_containing_symbol, sym);
    Grpc__Reflection__V1__FileDescriptorResponse *f = r->file_descriptor_response;
    CHECK_EQ_INT(f->n_file_descriptor_proto, 1); /* none of our files imports another */
    REQUIRE(f->n_file_descriptor_proto >= 1);
    CHECK_EQ_INT(f->file_descriptor_proto[0].len, want_len);
    CHECK(f->file_descriptor_proto[0].len == want_len &&
          memcmp(f->file_descriptor_proto[0].data, want, want_len) == 0);
    CHECK_STR_EQ(proto_name(f->file_descriptor_proto[0].data, f->file_descriptor_proto[0].len), file_name);
    grpc__reflection__v1__server_reflection_response__free_unpacked(r, NULL);
}

#define LS_FILE ls_desc_layerskip_v1, ls_desc_layerskip_v1_len, "layerskip/v1/layerskip.proto"
#define HEALTH_FILE ls_desc_grpc_health_v1, ls_desc_grpc_health_v1_len, "grpc/health/v1/health.proto"
#define REFL_FILE ls_desc_grpc_reflection_v1, ls_desc_grpc_reflection_v1_len, "grpc/reflection/v1/reflection.proto"
#define REFLA_FILE ls_desc_grpc_reflection_v1alpha, ls_desc_grpc_reflection_v1alpha_len, \
    "grpc/reflection/v1alpha/reflection.proto"

static void test_symbols(void) {
    expect_file("layerskip.v1.LayerSkip", LS_FILE);
    expect_file("layerskip.v1.GenerateRequest", LS_FILE);
    expect_file("layerskip.v1.LayerSkip.Generate", LS_FILE);
    expect_file("layerskip.v1.LayerSkip.GenerateStream", LS_FILE);
    expect_file("layerskip.v1.LayerSkip.GetModelInfo", LS_FILE);
    expect_file("layerskip.v1.ModelInfo", LS_FILE);
    expect_file("layerskip.v1.FinishReason", LS_FILE);                /* enum */
    expect_file("layerskip.v1.FINISH_REASON_UNSPECIFIED", LS_FILE);   /* enum value, scoped beside its enum */
    expect_file("layerskip.v1.GenerateRequest.prompt", LS_FILE);      /* field */
    expect_file("layerskip.v1.SamplingParams.seed_option", LS_FILE);  /* oneof */
    expect_file("grpc.health.v1.Health", HEALTH_FILE);
    expect_file("grpc.health.v1.Health.Check", HEALTH_FILE);
    expect_file("grpc.health.v1.Health.Watch", HEALTH_FILE);
    expect_file("grpc.health.v1.HealthCheckRequest", HEALTH_FILE);
    expect_file("grpc.health.v1.HealthCheckResponse.ServingStatus", HEALTH_FILE); /* nested enum */
    expect_file("grpc.health.v1.HealthCheckResponse.SERVING", HEALTH_FILE);       /* its value */
    expect_file("grpc.reflection.v1.ServerReflection", REFL_FILE);
    expect_file("grpc.reflection.v1.ServerReflection.ServerReflectionInfo", REFL_FILE);
    expect_file("grpc.reflection.v1.ServerReflectionRequest", REFL_FILE);
    expect_file("grpc.reflection.v1alpha.ServerReflection", REFLA_FILE);
    expect_file("grpc.reflection.v1alpha.ErrorResponse", REFLA_FILE);
}

static void expect_error(resp_t *r, int code, const char *needle) {
    REQUIRE(r);
    tu_checks++;
    if (r->message_response_case != GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE) {
        tu_failures++;
        fprintf(stderr, "  expected error_response %d for '%s', got case %d\n", code, needle,
                (int)r->message_response_case);
    } else {
        CHECK_EQ_INT(r->error_response->error_code, code);
        if (needle) CHECK(strstr(r->error_response->error_message, needle) != NULL);
        if (getenv("LS_TEST_VERBOSE")) fprintf(stderr, "  [%d] %s\n", code, r->error_response->error_message);
    }
    grpc__reflection__v1__server_reflection_response__free_unpacked(r, NULL);
}

static void test_not_found(void) {
    const char *unknown[] = {"layerskip.v1.Nope", "layerskip.v1", "layerskip", "LayerSkip", "layerskip.v1.LayerSkip.",
                             "layerskip.v1.LayerSkip.Generat", "layerskip.v1.LayerSkipX", "layerskip.v1.LayerSkip.Generate.x",
                             "grpc.health.v1.HealthCheckResponse.ServingStatus.SERVING", ".layerskip.v1.LayerSkip",
                             "layerskip.v1.GenerateRequest.nope", "google.protobuf.Empty"};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) expect_error(ask_symbol(unknown[i]), 5, unknown[i]);
    expect_error(ask_symbol(""), 5, "not found");
    char long_name[3000];
    memset(long_name, 'a', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    expect_error(ask_symbol(long_name), 5, "not found");

    req_t rq = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
    rq.message_request_case = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_EXTENSION;
    Grpc__Reflection__V1__ExtensionRequest ext = GRPC__REFLECTION__V1__EXTENSION_REQUEST__INIT;
    ext.containing_type = "layerskip.v1.GenerateRequest";
    ext.extension_number = 100;
    rq.file_containing_extension = &ext;
    expect_error(ask(&rq), 5, "extensions");

    req_t all = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
    all.message_request_case = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_ALL_EXTENSION_NUMBERS_OF_TYPE;
    all.all_extension_numbers_of_type = "layerskip.v1.Nope";
    expect_error(ask(&all), 5, "layerskip.v1.Nope");
    all.all_extension_numbers_of_type = "layerskip.v1.LayerSkip"; /* a service, not a message */
    expect_error(ask(&all), 5, "layerskip.v1.LayerSkip");

    /* a known message: the (empty) list of its extension numbers */
    all.all_extension_numbers_of_type = "grpc.health.v1.HealthCheckResponse";
    resp_t *r = ask(&all);
    REQUIRE(r);
    REQUIRE(r->message_response_case ==
            GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ALL_EXTENSION_NUMBERS_RESPONSE);
    CHECK_STR_EQ(r->all_extension_numbers_response->base_type_name, "grpc.health.v1.HealthCheckResponse");
    CHECK_EQ_INT(r->all_extension_numbers_response->n_extension_number, 0);
    grpc__reflection__v1__server_reflection_response__free_unpacked(r, NULL);

    /* nothing asked */
    req_t empty = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
    expect_error(ask(&empty), 3, "empty reflection request");
}

static void test_file_by_filename(void) {
    struct { const unsigned char *set; size_t len; const char *name; } files[] = {
        {LS_FILE}, {HEALTH_FILE}, {REFL_FILE}, {REFLA_FILE}};
    for (int i = 0; i < 4; i++) {
        req_t rq = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
        rq.message_request_case = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME;
        rq.file_by_filename = (char *)files[i].name;
        resp_t *r = ask(&rq);
        REQUIRE(r);
        REQUIRE(r->message_response_case == GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE);
        const uint8_t *want;
        size_t want_len;
        unwrap_set(files[i].set, files[i].len, &want, &want_len);
        REQUIRE(want);
        REQUIRE(r->file_descriptor_response->n_file_descriptor_proto == 1);
        CHECK(r->file_descriptor_response->file_descriptor_proto[0].len == want_len &&
              memcmp(r->file_descriptor_response->file_descriptor_proto[0].data, want, want_len) == 0);
        CHECK_STR_EQ(r->valid_host, "");
        grpc__reflection__v1__server_reflection_response__free_unpacked(r, NULL);
    }
    req_t rq = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
    rq.message_request_case = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME;
    rq.file_by_filename = "layerskip.proto";
    expect_error(ask(&rq), 5, "layerskip.proto");
    rq.file_by_filename = "google/protobuf/descriptor.proto";
    expect_error(ask(&rq), 5, "layerskip/v1/layerskip.proto");
}

/* v1alpha clients send the same bytes and read the same answer */
static void test_v1alpha(void) {
    Grpc__Reflection__V1alpha__ServerReflectionRequest rq = GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__INIT;
    rq.host = "h";
    rq.message_request_case = GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL;
    rq.file_containing_symbol = "layerskip.v1.LayerSkip.Tokenize";
    size_t n = grpc__reflection__v1alpha__server_reflection_request__get_packed_size(&rq);
    uint8_t *buf = malloc(n);
    grpc__reflection__v1alpha__server_reflection_request__pack(&rq, buf);
    uint8_t *out = NULL;
    size_t out_len = 0;
    CHECK_EQ_INT(lsd_reflection_answer(buf, n, &out, &out_len), 0);
    free(buf);
    REQUIRE(out);
    Grpc__Reflection__V1alpha__ServerReflectionResponse *r =
        grpc__reflection__v1alpha__server_reflection_response__unpack(NULL, out_len, out);
    free(out);
    REQUIRE(r);
    CHECK_STR_EQ(r->valid_host, "h");
    REQUIRE(r->message_response_case ==
            GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE);
    REQUIRE(r->file_descriptor_response->n_file_descriptor_proto == 1);
    CHECK_STR_EQ(proto_name(r->file_descriptor_response->file_descriptor_proto[0].data,
                            r->file_descriptor_response->file_descriptor_proto[0].len),
                 "layerskip/v1/layerskip.proto");
    grpc__reflection__v1alpha__server_reflection_response__free_unpacked(r, NULL);
}

static void test_invalid(void) {
    uint8_t *out = (uint8_t *)1;
    size_t out_len = 99;
    /* exact heap copies so ASan sees any overread */
    struct { const char *bytes; size_t len; } bad[] = {
        {"\xff\xff\xff", 3},           /* truncated varint key */
        {"\x0a\x10" "ab", 4},          /* host longer than the message */
        {"\x22\x05" "ab", 4},          /* symbol longer than the message */
        {"\x0f", 1},                   /* wire type 7 */
        {"\x3a", 1},                   /* list_services without a length */
        {"\x2a\x03\x08\xff\xff", 5},   /* extension request with a truncated varint inside */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint8_t *copy = malloc(bad[i].len);
        memcpy(copy, bad[i].bytes, bad[i].len);
        CHECK_EQ_INT(lsd_reflection_answer(copy, bad[i].len, &out, &out_len), -1);
        CHECK(out == NULL);
        free(copy);
    }
    /* an empty message is valid: it asks nothing */
    CHECK_EQ_INT(lsd_reflection_answer(NULL, 0, &out, &out_len), 0);
    free(out);
    /* random bytes: -1 or a well-formed answer, never a crash or leak */
    uint64_t s = 0x9e3779b97f4a7c15ull;
    int answered = 0;
    for (int it = 0; it < 3000; it++) {
        size_t len = (size_t)(it % 48);
        uint8_t *buf = malloc(len ? len : 1);
        for (size_t i = 0; i < len; i++) {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            buf[i] = (uint8_t)s;
        }
        /* sometimes a plausible start so the parser gets deeper */
        if (len > 2 && it % 3 == 0) { buf[0] = 0x22; buf[1] = (uint8_t)(len - 2); }
        int rc = lsd_reflection_answer(buf, len, &out, &out_len);
        if (rc == 0) {
            answered++;
            resp_t *r = grpc__reflection__v1__server_reflection_response__unpack(NULL, out_len, out);
            CHECK(r != NULL);
            if (r) grpc__reflection__v1__server_reflection_response__free_unpacked(r, NULL);
            free(out);
        } else {
            CHECK(out == NULL);
        }
        free(buf);
    }
    CHECK(answered > 0);
}

int main(void) {
    RUN(test_list_services);
    RUN(test_symbols);
    RUN(test_not_found);
    RUN(test_file_by_filename);
    RUN(test_v1alpha);
    RUN(test_invalid);
    TEST_MAIN_END();
}
