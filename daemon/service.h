/* service.h: the layerskip.v1.LayerSkip and grpc.health.v1 messages.
 *
 * Decoding and validation of requests (every rejection names the field and
 * the fix) and encoding of responses, as pure functions over bytes, so the
 * gRPC plumbing in server.c never touches protobuf-c and these can be
 * tested without a network. Results are gRPC status numbers. */
#ifndef LSD_SERVICE_H
#define LSD_SERVICE_H

#include "sched.h"
#include "layerskip/chat_template.h"

#include <grpc/status.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* one pipeline stage as GetModelInfo reports it */
typedef struct lsd_stage_info {
    int rank, first_layer, last_layer;
    bool embedding, head;
    char host[64];
    char kernels[32];          /* the stage's ls_kernel_path() */
} lsd_stage_info;

typedef struct lsd_service {
    const ls_model *model;
    const char *model_path;
    int n_ctx;                  /* KV positions per session */
    int default_max_tokens;
    ls_strategy default_strategy;
    int default_exit_layer;
    int default_num_speculations; /* LSD_NUM_SPECULATIONS_AUTO (-1) = auto */
    float draft_min_p;
    ls_draft_source default_draft_source;
    int default_draft_vocab;    /* 0 = the full head */
    const ls_adapter *adapter;  /* --draft-adapter (requests use it), NULL = none */
    int max_sessions, max_queue;
    /* MPI pipeline (n_stages > 0): its stages, and the drafter stage's end,
     * which early_exit / self_speculative requests must use as exit_layer */
    const lsd_stage_info *stages;
    int n_stages;
    int pipeline_exit_layer;
    atomic_uint_fast64_t next_request; /* for generated request ids */
    /* Chat: the parsed template (NULL: Chat answers FAILED_PRECONDITION with
     * chat_template_error), where it came from ("model" or the
     * --chat-template path), the bos/eos texts it is given */
    const ls_chat_template *chat_template;
    const char *chat_template_source;
    const char *chat_template_error;
    const char *bos_text, *eos_text;
} lsd_service;

/* health statuses (grpc.health.v1.HealthCheckResponse.ServingStatus) */
enum { LSD_HEALTH_UNKNOWN = 0, LSD_HEALTH_SERVING = 1, LSD_HEALTH_NOT_SERVING = 2,
       LSD_HEALTH_SERVICE_UNKNOWN = 3 };

/* Decode a GenerateRequest into job (lsd_job_init'ed by the caller; on
 * error job may hold allocations: lsd_job_clear it). msg gets the reason
 * for any non-OK result. */
#define LSD_MAX_CHAT_MESSAGES 1024 /* messages per conversation */

/* The one set of chat rules, for gRPC Chat and the HTTP API: the message
 * count, each message (role: non-empty UTF-8 of <= 64 bytes; content:
 * UTF-8), and rendering with the assistant's turn opened (*text malloc'ed;
 * INVALID_ARGUMENT when the template's raise_exception refuses the
 * conversation, FAILED_PRECONDITION without a usable template). */
grpc_status_code lsd_chat_check_messages(size_t n, char *msg, size_t msg_len);
grpc_status_code lsd_chat_check_message(size_t i, const char *role, const char *content, char *msg, size_t msg_len);
grpc_status_code lsd_chat_render(lsd_service *sv, const ls_chat_message *msgs, int n, char **text, char *msg,
                                 size_t msg_len);

/* the same for a ChatRequest: its messages rendered by the chat template
 * (assistant turn opened) are the prompt, its options the rest */
grpc_status_code lsd_service_prepare_chat(lsd_service *sv, const uint8_t *req, size_t len, lsd_job *job, char *msg,
                                          size_t msg_len);
grpc_status_code lsd_service_prepare_generate(lsd_service *sv, const uint8_t *req, size_t len,
                                              lsd_job *job, char *msg, size_t msg_len);

/* malloc'd serialized GenerateResponse of a finished job (text/ids whole) */
int lsd_service_encode_response(const lsd_service *sv, const lsd_job *job, uint8_t **out, size_t *out_len);
/* malloc'd serialized GenerateChunk; final adds finish_reason and stats */
int lsd_service_encode_chunk(const lsd_service *sv, const lsd_job *job, const char *text, size_t text_len,
                             const int32_t *ids, int n_ids, bool final, uint8_t **out, size_t *out_len);

/* Tokenize, Detokenize, GetModelInfo: request bytes -> malloc'd response bytes */
grpc_status_code lsd_service_tokenize(const lsd_service *sv, const uint8_t *req, size_t len,
                                      uint8_t **out, size_t *out_len, char *msg, size_t msg_len);
grpc_status_code lsd_service_detokenize(const lsd_service *sv, const uint8_t *req, size_t len,
                                        uint8_t **out, size_t *out_len, char *msg, size_t msg_len);
grpc_status_code lsd_service_model_info(const lsd_service *sv, const uint8_t *req, size_t len,
                                        uint8_t **out, size_t *out_len, char *msg, size_t msg_len);

/* HealthCheckRequest -> its service name (malloc'd) */
grpc_status_code lsd_service_health_request(const uint8_t *req, size_t len, char **service,
                                            char *msg, size_t msg_len);
/* serialized HealthCheckResponse{status} */
int lsd_service_health_response(int status, uint8_t **out, size_t *out_len);

/* strict UTF-8 (no overlongs, surrogates, or code points past U+10FFFF) */
bool lsd_utf8_valid(const char *s, size_t n);

#endif
