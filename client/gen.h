/* gen.h: generation parameters as the user gives them (flags or a JSONL
 * line), turned into a layerskip.v1.GenerateRequest, and the reply's
 * pieces turned into JSON. Shared by `generate` and `batch`. */
#ifndef LSC_GEN_H
#define LSC_GEN_H

#include "common.h"

#include "layerskip/v1/layerskip.pb-c.h"

#include <cJSON.h>
#include <stdio.h>

/* Zero means "the daemon's default", as on the wire. Strings and arrays are
 * borrowed (the owner keeps them alive while a request uses them). */
typedef struct lsc_gen_params {
    int max_tokens;
    bool sample;                 /* false: greedy (temperature 0) */
    double temperature, top_p, min_p, repetition_penalty;
    int top_k;
    bool has_temperature, has_top_p, has_top_k; /* given explicitly (else sampling defaults) */
    bool has_seed;
    uint64_t seed;
    char **stop;
    size_t n_stop;
    int32_t *stop_token_ids;
    size_t n_stop_token_ids;
    const char *strategy;        /* NULL or "" = daemon default */
    int exit_layer;
    int num_speculations;        /* k; LSC_NUM_SPECULATIONS_AUTO = auto */
    const char *draft_source;    /* NULL or "" = daemon default (the daemon checks the name) */
    bool has_draft_vocab;        /* else the daemon's default */
    int draft_vocab;             /* 0 = the full head */
    bool ignore_eos;
} lsc_gen_params;

/* num_speculations on the wire: -1 = auto (the daemon chooses k per round) */
#define LSC_NUM_SPECULATIONS_AUTO (-1)

/* "K|auto" as --num-speculations and the batch field give it: K >= 1, or
 * "auto" (LSC_NUM_SPECULATIONS_AUTO); false otherwise */
bool lsc_num_speculations_parse(const char *s, int *out);

/* The reference generate.py's sampling defaults. */
#define LSC_DEFAULT_TEMPERATURE 0.6
#define LSC_DEFAULT_TOP_P 0.9
#define LSC_DEFAULT_TOP_K 0

/* Fill req (and sp, which req->sampling points to) from p. req->prompt is
 * set to prompt. Nothing is allocated. */
void lsc_gen_request_fill(const lsc_gen_params *p, const char *prompt, Layerskip__V1__GenerateRequest *req,
                          Layerskip__V1__SamplingParams *sp);

/* "length", "eos", "stop", "context", "unspecified" */
const char *lsc_finish_reason_name(Layerskip__V1__FinishReason r);

/* Every Stats field under its proto name. NULL stats gives an empty object. */
cJSON *lsc_stats_to_json(const Layerskip__V1__Stats *s);

/* A deep copy of s (free with layerskip__v1__stats__free_unpacked); NULL on
 * out of memory */
Layerskip__V1__Stats *lsc_stats_copy(const Layerskip__V1__Stats *s);

/* Print the statistics block (stderr of `generate`), in the spirit of the
 * LayerSkip reference generate.py. */
void lsc_stats_print(FILE *f, const Layerskip__V1__Stats *s, Layerskip__V1__FinishReason reason, double client_ms);



/* Any protobuf-c message as JSON, fields under their proto names (enums as
 * their names, 64-bit integers past 2^53 as strings). */
cJSON *lsc_message_to_json(const ProtobufCMessage *m);
#endif
