/* gen.c: generation parameters -> GenerateRequest, and reply -> JSON/text. */
#include "gen.h"

#include <stdio.h>
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
    req->ignore_eos = p->ignore_eos;
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
    return o;
}

void lsc_stats_print(FILE *f, const Layerskip__V1__Stats *s, Layerskip__V1__FinishReason reason, double client_ms) {
    static const Layerskip__V1__Stats empty = LAYERSKIP__V1__STATS__INIT;
    if (!s) s = &empty;
    fprintf(f, "\n--- layerskip ---\n");
    fprintf(f, "strategy:            %s", s->strategy && *s->strategy ? s->strategy : "?");
    if (s->exit_layer > 0 && s->num_speculations > 0)
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
