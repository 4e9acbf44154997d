/* gen.c: generation parameters -> GenerateRequest, and reply -> JSON/text. */
#include "gen.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void lsc_gen_request_fill(const lsc_gen_params *p, const char *prompt, Layerskip__V1__GenerateRequest *req,
                          Layerskip__V1__SamplingParams *sp) {
    layerskip__v1__generate_request__init(req);
    layerskip__v1__sampling_params__init(sp);
    req->input_case = LAYERSKIP__V1__GENERATE_REQUEST__INPUT_PROMPT;
    req->prompt = (char *)prompt;
    req->max_tokens = p->max_tokens;
    bool sampling = p->sample || (p->has_temperature && p->temperature > 0);
    if (sampling) {
        sp->temperature = (float)(p->has_temperature ? p->temperature : LSC_DEFAULT_TEMPERATURE);
        sp->top_p = (float)(p->has_top_p ? p->top_p : LSC_DEFAULT_TOP_P);
        sp->top_k = p->has_top_k ? p->top_k : LSC_DEFAULT_TOP_K;
    } else {
        /* greedy; top-k/top-p still travel so the daemon can reject bad values */
        sp->top_p = (float)(p->has_top_p ? p->top_p : 0);
        sp->top_k = p->has_top_k ? p->top_k : 0;
    }
    sp->min_p = (float)p->min_p;
    sp->repetition_penalty = (float)p->repetition_penalty;
    if (p->has_seed) {
        sp->seed_option_case = LAYERSKIP__V1__SAMPLING_PARAMS__SEED_OPTION_SEED;
        sp->seed = p->seed;
    }
    req->sampling = sp;
    req->n_stop = p->n_stop;
    req->stop = p->stop;
    req->n_stop_token_ids = p->n_stop_token_ids;
    req->stop_token_ids = p->stop_token_ids;
    if (p->strategy && *p->strategy) req->strategy = (char *)p->strategy;
    req->exit_layer = p->exit_layer;
    req->num_speculations = p->num_speculations;
    if (p->draft_source && *p->draft_source) req->draft_source = (char *)p->draft_source;
    if (p->has_draft_vocab) {
        req->draft_vocab_option_case = LAYERSKIP__V1__GENERATE_REQUEST__DRAFT_VOCAB_OPTION_DRAFT_VOCAB;
        req->draft_vocab = p->draft_vocab;
    }
    req->ignore_eos = p->ignore_eos;
}

bool lsc_num_speculations_parse(const char *s, int *out) {
    long long v;
    if (!strcmp(s, "auto")) {
        *out = LSC_NUM_SPECULATIONS_AUTO;
        return true;
    }
    if (!lsc_parse_int(s, 1, INT32_MAX, &v)) return false;
    *out = (int)v;
    return true;
}

const char *lsc_finish_reason_name(Layerskip__V1__FinishReason r) {
    switch (r) {
    case LAYERSKIP__V1__FINISH_REASON__FINISH_REASON_LENGTH: return "length";
    case LAYERSKIP__V1__FINISH_REASON__FINISH_REASON_EOS: return "eos";
    case LAYERSKIP__V1__FINISH_REASON__FINISH_REASON_STOP: return "stop";
    case LAYERSKIP__V1__FINISH_REASON__FINISH_REASON_CONTEXT: return "context";
    default: return "unspecified";
    }
}

cJSON *lsc_stats_to_json(const Layerskip__V1__Stats *s) {
    cJSON *o = cJSON_CreateObject();
    if (!o || !s) return o;
    cJSON_AddNumberToObject(o, "prompt_tokens", s->prompt_tokens);
    cJSON_AddNumberToObject(o, "generated_tokens", s->generated_tokens);
    cJSON_AddNumberToObject(o, "drafted", (double)s->drafted);
    cJSON_AddNumberToObject(o, "accepted", (double)s->accepted);
    cJSON_AddNumberToObject(o, "acceptance_rate", s->acceptance_rate);
    cJSON_AddNumberToObject(o, "time_to_first_token_ms", s->time_to_first_token_ms);
    cJSON_AddNumberToObject(o, "tokens_per_second", s->tokens_per_second);
    cJSON_AddNumberToObject(o, "queue_ms", s->queue_ms);
    cJSON_AddNumberToObject(o, "total_ms", s->total_ms);
    cJSON_AddStringToObject(o, "strategy", s->strategy ? s->strategy : "");
    cJSON_AddNumberToObject(o, "exit_layer", s->exit_layer);
    cJSON_AddNumberToObject(o, "num_speculations", s->num_speculations);
    /* seeds are 64-bit: a JSON number would lose digits past 2^53 */
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)s->seed);
    if (s->seed < (1ull << 53))
        cJSON_AddNumberToObject(o, "seed", (double)s->seed);
    else
        cJSON_AddStringToObject(o, "seed", seed);
    cJSON_AddNumberToObject(o, "rounds", (double)s->rounds);
    cJSON_AddStringToObject(o, "draft_source", s->draft_source ? s->draft_source : "");
    cJSON_AddNumberToObject(o, "draft_vocab", s->draft_vocab);
    cJSON *by = cJSON_AddArrayToObject(o, "by_source");
    for (size_t i = 0; by && i < s->n_by_source; i++) {
        const Layerskip__V1__DraftSourceStats *d = s->by_source[i];
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "source", d->source ? d->source : "");
        cJSON_AddNumberToObject(e, "drafted", (double)d->drafted);
        cJSON_AddNumberToObject(e, "accepted", (double)d->accepted);
        cJSON_AddItemToArray(by, e);
    }
    cJSON *k = cJSON_AddArrayToObject(o, "rounds_by_k");
    for (size_t i = 0; k && i < s->n_rounds_by_k; i++) cJSON_AddItemToArray(k, cJSON_CreateNumber((double)s->rounds_by_k[i]));
    cJSON_AddNumberToObject(o, "mean_k", s->mean_k);
    return o;
}

Layerskip__V1__Stats *lsc_stats_copy(const Layerskip__V1__Stats *s) {
    size_t n = layerskip__v1__stats__get_packed_size(s);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) return NULL;
    layerskip__v1__stats__pack(s, buf);
    Layerskip__V1__Stats *c = layerskip__v1__stats__unpack(NULL, n, buf);
    free(buf);
    return c;
}

void lsc_stats_print(FILE *f, const Layerskip__V1__Stats *s, Layerskip__V1__FinishReason reason, double client_ms) {
    static const Layerskip__V1__Stats empty = LAYERSKIP__V1__STATS__INIT;
    if (!s) s = &empty;
    fprintf(f, "\n--- layerskip ---\n");
    fprintf(f, "strategy:            %s", s->strategy && *s->strategy ? s->strategy : "?");
    if (s->exit_layer > 0 && s->num_speculations == LSC_NUM_SPECULATIONS_AUTO)
        fprintf(f, " (exit layer E=%d, speculations k=auto)", s->exit_layer);
    else if (s->exit_layer > 0 && s->num_speculations > 0)
        fprintf(f, " (exit layer E=%d, speculations k=%d)", s->exit_layer, s->num_speculations);
    else if (s->exit_layer > 0)
        fprintf(f, " (exit layer E=%d)", s->exit_layer);
    fprintf(f, "\n");
    fprintf(f, "finish reason:       %s\n", lsc_finish_reason_name(reason));
    fprintf(f, "prompt tokens:       %d\n", s->prompt_tokens);
    fprintf(f, "generated tokens:    %d\n", s->generated_tokens);
    fprintf(f, "time to first token: %.1f ms (queue %.1f ms)\n", s->time_to_first_token_ms, s->queue_ms);
    fprintf(f, "time:                %.1f ms (server), %.1f ms (client)\n", s->total_ms, client_ms);
    if (s->generated_tokens > 0)
        fprintf(f, "time per token:      %.2f ms\n", s->total_ms / s->generated_tokens);
    fprintf(f, "tokens per second:   %.2f\n", s->tokens_per_second);
    if (s->drafted > 0) {
        fprintf(f, "drafted / accepted:  %lld / %lld in %lld rounds\n", (long long)s->drafted, (long long)s->accepted,
                (long long)s->rounds);
        fprintf(f, "acceptance rate:     %.3f\n", s->acceptance_rate);
    }
    if (s->draft_source && *s->draft_source) {
        fprintf(f, "draft source:        %s", s->draft_source);
        if (s->draft_vocab > 0) fprintf(f, ", draft vocabulary %d", s->draft_vocab);
        fprintf(f, " (drafted/accepted:");
        for (size_t i = 0; i < s->n_by_source; i++)
            fprintf(f, "%s %s %lld/%lld", i ? "," : "", s->by_source[i]->source ? s->by_source[i]->source : "?",
                    (long long)s->by_source[i]->drafted, (long long)s->by_source[i]->accepted);
        fprintf(f, ")\n");
    }
    if (s->n_rounds_by_k > 0) {
        fprintf(f, "k per round:         mean %.2f; rounds by k", s->mean_k);
        for (size_t k = 0; k < s->n_rounds_by_k; k++)
            if (s->rounds_by_k[k]) fprintf(f, " %zu:%lld", k, (long long)s->rounds_by_k[k]);
        fprintf(f, "\n");
    }
    fprintf(f, "seed:                %llu\n", (unsigned long long)s->seed);
}

static cJSON *value_to_json(const ProtobufCFieldDescriptor *f, const void *v) {
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32: case PROTOBUF_C_TYPE_SINT32: case PROTOBUF_C_TYPE_SFIXED32:
        return cJSON_CreateNumber(*(const int32_t *)v);
    case PROTOBUF_C_TYPE_UINT32: case PROTOBUF_C_TYPE_FIXED32:
        return cJSON_CreateNumber(*(const uint32_t *)v);
    case PROTOBUF_C_TYPE_INT64: case PROTOBUF_C_TYPE_SINT64: case PROTOBUF_C_TYPE_SFIXED64: {
        int64_t x = *(const int64_t *)v;
        if (x > -(1ll << 53) && x < (1ll << 53)) return cJSON_CreateNumber((double)x);
        char b[32];
        snprintf(b, sizeof b, "%lld", (long long)x);
        return cJSON_CreateString(b);
    }
    case PROTOBUF_C_TYPE_UINT64: case PROTOBUF_C_TYPE_FIXED64: {
        uint64_t x = *(const uint64_t *)v;
        if (x < (1ull << 53)) return cJSON_CreateNumber((double)x);
        char b[32];
        snprintf(b, sizeof b, "%llu", (unsigned long long)x);
        return cJSON_CreateString(b);
    }
    case PROTOBUF_C_TYPE_FLOAT: return cJSON_CreateNumber(*(const float *)v);
    case PROTOBUF_C_TYPE_DOUBLE: return cJSON_CreateNumber(*(const double *)v);
    case PROTOBUF_C_TYPE_BOOL: return cJSON_CreateBool(*(const protobuf_c_boolean *)v);
    case PROTOBUF_C_TYPE_ENUM: {
        const ProtobufCEnumValue *ev =
            protobuf_c_enum_descriptor_get_value((const ProtobufCEnumDescriptor *)f->descriptor, *(const int *)v);
        return ev ? cJSON_CreateString(ev->name) : cJSON_CreateNumber(*(const int *)v);
    }
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)v;
        return cJSON_CreateString(s ? s : "");
    }
    case PROTOBUF_C_TYPE_BYTES: return cJSON_CreateNull(); /* none in our protocol */
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *sub = *(const ProtobufCMessage *const *)v;
        return sub ? lsc_message_to_json(sub) : cJSON_CreateNull();
    }
    }
    return cJSON_CreateNull();
}

static size_t type_size(ProtobufCType t) {
    switch (t) {
    case PROTOBUF_C_TYPE_INT64: case PROTOBUF_C_TYPE_SINT64: case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64: case PROTOBUF_C_TYPE_FIXED64: return 8;
    case PROTOBUF_C_TYPE_DOUBLE: return sizeof(double);
    case PROTOBUF_C_TYPE_BOOL: return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_ENUM: return sizeof(int);
    case PROTOBUF_C_TYPE_STRING: return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES: return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE: return sizeof(void *);
    default: return 4;
    }
}

cJSON *lsc_message_to_json(const ProtobufCMessage *m) {
    cJSON *o = cJSON_CreateObject();
    if (!o || !m) return o;
    const ProtobufCMessageDescriptor *d = m->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        const char *base = (const char *)m;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)(base + f->quantifier_offset);
            const char *arr = *(const char *const *)(base + f->offset);
            cJSON *a = cJSON_AddArrayToObject(o, f->name);
            for (size_t k = 0; a && k < n; k++) cJSON_AddItemToArray(a, value_to_json(f, arr + k * type_size(f->type)));
            continue;
        }
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            if (*(const uint32_t *)(base + f->quantifier_offset) != f->id) continue;
        }
        cJSON_AddItemToObject(o, f->name, value_to_json(f, base + f->offset));
    }
    return o;
}
