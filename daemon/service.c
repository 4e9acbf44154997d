/* service.c: request validation and protobuf encode/decode for the
 * LayerSkip and Health services. Requests are hostile until checked: every
 * field is checked here before a job reaches a session, and every answer
 * that carries model text is valid UTF-8 (protobuf strings must be). */
#include "service.h"

#include "config.h"
#include "layerskip/tokenizer.h"
#include "layerskip/v1/layerskip.pb-c.h"
#include "grpc/health/v1/health.pb-c.h"

#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define REPEAT_LAST_N 64 /* the bench's default history for the repetition penalty */

__attribute__((format(printf, 3, 4)))
static grpc_status_code fail(char *msg, size_t msg_len, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, msg_len, fmt, ap);
    va_end(ap);
    return GRPC_STATUS_INVALID_ARGUMENT;
}

bool lsd_utf8_valid(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned c = p[i];
        if (c < 0x80) { i++; continue; }
        int len;
        unsigned cp, min;
        if ((c & 0xE0) == 0xC0) { len = 2; cp = c & 0x1F; min = 0x80; }
        else if ((c & 0xF0) == 0xE0) { len = 3; cp = c & 0x0F; min = 0x800; }
        else if ((c & 0xF8) == 0xF0) { len = 4; cp = c & 0x07; min = 0x10000; }
        else return false;
        if (i + (size_t)len > n) return false;
        for (int k = 1; k < len; k++) {
            if ((p[i + k] & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (p[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
        i += (size_t)len;
    }
    return true;
}

/* length of the valid UTF-8 character at p (n bytes left), 0 if invalid */
static size_t utf8_char_len(const unsigned char *p, size_t n) {
    return lsd_utf8_valid((const char *)p, 1) ? 1
           : n >= 2 && lsd_utf8_valid((const char *)p, 2) ? 2
           : n >= 3 && lsd_utf8_valid((const char *)p, 3) ? 3
           : n >= 4 && lsd_utf8_valid((const char *)p, 4) ? 4 : 0;
}

/* copy of s with every byte that is not part of a valid UTF-8 character
 * written as repl(byte) ("<0xNN>" or U+FFFD); malloc'd, NUL-terminated */
static char *utf8_clean(const char *s, size_t n, bool hex) {
    char *out = malloc(n * 6 + 1);
    if (!out) return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        size_t k = utf8_char_len((const unsigned char *)s + i, n - i);
        if (k && s[i] != 0) {
            memcpy(out + o, s + i, k);
            o += k;
            i += k;
        } else if (hex) {
            o += (size_t)sprintf(out + o, "<0x%02X>", (unsigned char)s[i]);
            i++;
        } else {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        }
    }
    out[o] = 0;
    return out;
}

static uint64_t random_seed(void) {
    uint64_t v = 0;
    if (getrandom(&v, sizeof v, GRND_NONBLOCK) == (ssize_t)sizeof v) return v;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15ull ^ (uint64_t)ts.tv_sec ^ ((uint64_t)getpid() << 32);
}

/* chat: the rendered conversation, which is the prompt instead of r's */
static grpc_status_code fill_prompt(lsd_service *sv, const Layerskip__V1__GenerateRequest *r, const char *chat,
                                    lsd_job *job, char *msg, size_t msg_len) {
    const ls_tokenizer *tok = ls_model_tokenizer(sv->model);
    int32_t n_vocab = ls_tokenizer_n_vocab(tok);
    if (!chat && r->input_case == LAYERSKIP__V1__GENERATE_REQUEST__INPUT_PROMPT_IDS) {
        const Layerskip__V1__TokenIds *t = r->prompt_ids;
        if (!t || t->n_ids == 0)
            return fail(msg, msg_len, "prompt_ids is empty: give at least one token id, or a prompt text");
        if (t->n_ids > (size_t)sv->n_ctx)
            return fail(msg, msg_len, "prompt_ids has %zu tokens, more than the context of %d (the daemon's --ctx)",
                        t->n_ids, sv->n_ctx);
        for (size_t i = 0; i < t->n_ids; i++)
            if (t->ids[i] < 0 || t->ids[i] >= n_vocab)
                return fail(msg, msg_len, "prompt_ids[%zu] = %d is outside the vocabulary [0, %d)", i, t->ids[i],
                            n_vocab);
        job->prompt = malloc(sizeof(int32_t) * t->n_ids);
        if (!job->prompt) return fail(msg, msg_len, "out of memory for prompt_ids");
        memcpy(job->prompt, t->ids, sizeof(int32_t) * t->n_ids);
        job->n_prompt = (int)t->n_ids;
        return GRPC_STATUS_OK;
    }
    const char *text = chat ? chat : r->input_case == LAYERSKIP__V1__GENERATE_REQUEST__INPUT_PROMPT ? r->prompt : "";
    size_t len = strlen(text);
    if (len == 0) return fail(msg, msg_len, "prompt is empty: give a prompt text or prompt_ids");
    if (!lsd_utf8_valid(text, len)) return fail(msg, msg_len, "prompt is not valid UTF-8: send UTF-8 text");
    /* as layerskip-bench: the model's BOS rule, special token texts matched */
    bool add_bos = ls_tokenizer_add_bos(tok);
    int64_t n = ls_tokenize(tok, text, len, add_bos, true, NULL, 0);
    if (n == INT64_MIN) return fail(msg, msg_len, "out of memory tokenizing the prompt");
    int64_t cap = (n < 0 ? -n : n) + 1;
    if (cap - 1 > sv->n_ctx)
        return fail(msg, msg_len, "prompt is %lld tokens, longer than the context of %d (the daemon's --ctx): "
                    "shorten the prompt or raise --ctx", (long long)(cap - 1), sv->n_ctx);
    job->prompt = malloc(sizeof(int32_t) * (size_t)cap);
    if (!job->prompt) return fail(msg, msg_len, "out of memory for the prompt");
    n = ls_tokenize(tok, text, len, add_bos, true, job->prompt, cap);
    if (n < 1) return fail(msg, msg_len, "prompt gives no tokens: give a non-empty prompt");
    /* a template that writes bos_token itself: one BOS, not two */
    if (chat && add_bos && n >= 2 && job->prompt[0] == ls_tokenizer_bos(tok) && job->prompt[1] == job->prompt[0]) {
        memmove(job->prompt, job->prompt + 1, sizeof(int32_t) * (size_t)(n - 1));
        n--;
    }
    job->n_prompt = (int)n;
    return GRPC_STATUS_OK;
}

static grpc_status_code fill_params(lsd_service *sv, const Layerskip__V1__GenerateRequest *r, lsd_job *job,
                                    char *msg, size_t msg_len) {
    const ls_config *cfg = ls_model_config(sv->model);
    const int L = cfg->n_layers;
    ls_gen_params *p = &job->params;
    memset(p, 0, sizeof *p);
    ls_err err = {{0}};

    if (r->strategy && r->strategy[0]) {
        if (ls_strategy_parse(r->strategy, &p->strategy, &err) != LS_OK)
            return fail(msg, msg_len, "strategy: %s", err.msg);
    } else {
        p->strategy = sv->default_strategy;
    }
    if (r->exit_layer != 0 && (r->exit_layer < 1 || r->exit_layer > L - 1))
        return fail(msg, msg_len, "exit_layer %d is out of range [1, %d] (this model has %d layers; 0 = the daemon's "
                    "default %d)", r->exit_layer, L - 1, L, sv->default_exit_layer);
    p->exit_layer = r->exit_layer ? r->exit_layer : sv->default_exit_layer;
    if (sv->pipeline_exit_layer > 0 && p->strategy != LS_STRATEGY_AUTOREGRESSIVE &&
        p->exit_layer != sv->pipeline_exit_layer)
        return fail(msg, msg_len, "exit_layer %d: this daemon runs an MPI pipeline whose drafter stage is layers "
                    "0-%d, so early exit happens after layer %d: use exit_layer %d (or 0 for the default)",
                    p->exit_layer, sv->pipeline_exit_layer, sv->pipeline_exit_layer, sv->pipeline_exit_layer);
    if (r->num_speculations != 0 && r->num_speculations != LSD_NUM_SPECULATIONS_AUTO &&
        (r->num_speculations < 1 || r->num_speculations > LS_MAX_SPECULATIONS)) {
        char def[16];
        if (sv->default_num_speculations == LSD_NUM_SPECULATIONS_AUTO) snprintf(def, sizeof def, "auto");
        else snprintf(def, sizeof def, "%d", sv->default_num_speculations);
        return fail(msg, msg_len, "num_speculations %d is out of range [1, %d] (-1 = auto: k chosen per round in "
                    "[0, %d]; 0 = the daemon's default, %s)", r->num_speculations, LS_MAX_SPECULATIONS,
                    LS_AUTO_SPECULATIONS_MAX, def);
    }
    const int k = r->num_speculations ? r->num_speculations : sv->default_num_speculations;
    p->auto_speculations = k == LSD_NUM_SPECULATIONS_AUTO;
    p->num_speculations = p->auto_speculations ? LS_AUTO_SPECULATIONS_MAX : k;
    p->draft_min_p = sv->draft_min_p;
    if (r->draft_source && r->draft_source[0]) {
        if (ls_draft_source_parse(r->draft_source, &p->draft_source, &err) != LS_OK)
            return fail(msg, msg_len, "draft_source: %s", err.msg);
    } else {
        p->draft_source = sv->default_draft_source;
    }
    p->adapter = sv->adapter;
    /* its range is the adapter's table: ls_gen_params_check below names it */
    p->draft_vocab = r->draft_vocab_option_case == LAYERSKIP__V1__GENERATE_REQUEST__DRAFT_VOCAB_OPTION_DRAFT_VOCAB
                         ? r->draft_vocab : sv->default_draft_vocab;
    p->ignore_eog = r->ignore_eos;

    ls_sampling_default(&p->sampling);
    p->sampling.repeat_last_n = REPEAT_LAST_N;
    const Layerskip__V1__SamplingParams *s = r->sampling;
    if (s) {
        p->sampling.temperature = s->temperature;
        p->sampling.top_k = s->top_k;
        p->sampling.top_p = s->top_p == 0 ? 1.0f : s->top_p;
        p->sampling.min_p = s->min_p;
        p->sampling.repeat_penalty = s->repetition_penalty == 0 ? 1.0f : s->repetition_penalty;
    }
    if (s && s->seed_option_case == LAYERSKIP__V1__SAMPLING_PARAMS__SEED_OPTION_SEED) p->sampling.seed = s->seed;
    else p->sampling.seed = random_seed();
    if (ls_sampling_check(&p->sampling, &err) != LS_OK) {
        /* the engine names its own fields; the proto calls the penalty repetition_penalty */
        if (strncmp(err.msg, "repeat_penalty", 14) == 0)
            return fail(msg, msg_len, "sampling.repetition_penalty%s", err.msg + 14);
        return fail(msg, msg_len, "sampling.%s", err.msg);
    }

    /* room left in the context decides max_tokens */
    int room = sv->n_ctx - job->n_prompt;
    if (r->max_tokens < 0)
        return fail(msg, msg_len, "max_tokens %d must be >= 0 (0 = the daemon's default %d)", r->max_tokens,
                    sv->default_max_tokens);
    if (room < 1)
        return fail(msg, msg_len, "prompt is %d tokens and fills the context of %d (the daemon's --ctx): "
                    "shorten the prompt or raise --ctx", job->n_prompt, sv->n_ctx);
    if (r->max_tokens > room)
        return fail(msg, msg_len, "max_tokens %d does not fit: the prompt is %d tokens and the context %d "
                    "(--ctx), so at most %d tokens can be generated; lower max_tokens", r->max_tokens,
                    job->n_prompt, sv->n_ctx, room);
    p->n_predict = r->max_tokens ? r->max_tokens : (sv->default_max_tokens < room ? sv->default_max_tokens : room);
    job->until_context_full = r->max_tokens == 0 && sv->default_max_tokens >= room;

    if (ls_gen_params_check(p, L, &err) != LS_OK) return fail(msg, msg_len, "%s", err.msg);
    return GRPC_STATUS_OK;
}

static grpc_status_code prepare(lsd_service *sv, const Layerskip__V1__GenerateRequest *r, const char *chat,
                                lsd_job *job, char *msg, size_t msg_len) {
    grpc_status_code code = GRPC_STATUS_OK;
    size_t id_len = strlen(r->request_id);
    const ls_tokenizer *tok = ls_model_tokenizer(sv->model);
    if (id_len >= LSD_REQUEST_ID_MAX || !lsd_utf8_valid(r->request_id, id_len)) {
        code = fail(msg, msg_len, "request_id must be valid UTF-8 of at most %d bytes", LSD_REQUEST_ID_MAX - 1);
        goto out;
    }
    if (id_len) memcpy(job->request_id, r->request_id, id_len + 1);
    else snprintf(job->request_id, sizeof job->request_id, "req-%llu",
                  (unsigned long long)atomic_fetch_add(&sv->next_request, 1) + 1);

    if (r->n_stop > LSD_MAX_STOPS) {
        code = fail(msg, msg_len, "stop has %zu strings, more than %d: send fewer stop sequences", r->n_stop,
                    LSD_MAX_STOPS);
        goto out;
    }
    for (size_t i = 0; i < r->n_stop; i++) {
        size_t n = strlen(r->stop[i]);
        if (n == 0) { code = fail(msg, msg_len, "stop[%zu] is empty: remove it", i); goto out; }
        if (n > LSD_MAX_STOP_BYTES) {
            code = fail(msg, msg_len, "stop[%zu] is %zu bytes, longer than %d", i, n, LSD_MAX_STOP_BYTES);
            goto out;
        }
        if (!lsd_utf8_valid(r->stop[i], n)) { code = fail(msg, msg_len, "stop[%zu] is not valid UTF-8", i); goto out; }
        job->stops[i] = strdup(r->stop[i]);
        if (!job->stops[i]) { code = fail(msg, msg_len, "out of memory for stop[%zu]", i); goto out; }
        job->stop_len[i] = n;
        job->n_stops = (int)i + 1;
    }
    if (r->n_stop_token_ids > LSD_MAX_STOP_IDS) {
        code = fail(msg, msg_len, "stop_token_ids has %zu ids, more than %d", r->n_stop_token_ids, LSD_MAX_STOP_IDS);
        goto out;
    }
    for (size_t i = 0; i < r->n_stop_token_ids; i++) {
        if (r->stop_token_ids[i] < 0 || r->stop_token_ids[i] >= ls_tokenizer_n_vocab(tok)) {
            code = fail(msg, msg_len, "stop_token_ids[%zu] = %d is outside the vocabulary [0, %d)", i,
                        r->stop_token_ids[i], ls_tokenizer_n_vocab(tok));
            goto out;
        }
    }
    if (r->n_stop_token_ids) {
        job->stop_ids = malloc(sizeof(int32_t) * r->n_stop_token_ids);
        if (!job->stop_ids) { code = fail(msg, msg_len, "out of memory for stop_token_ids"); goto out; }
        memcpy(job->stop_ids, r->stop_token_ids, sizeof(int32_t) * r->n_stop_token_ids);
        job->n_stop_ids = (int)r->n_stop_token_ids;
    }
    code = fill_prompt(sv, r, chat, job, msg, msg_len);
    if (code == GRPC_STATUS_OK) code = fill_params(sv, r, job, msg, msg_len);
out:
    return code;
}

grpc_status_code lsd_service_prepare_generate(lsd_service *sv, const uint8_t *req, size_t len, lsd_job *job,
                                              char *msg, size_t msg_len) {
    Layerskip__V1__GenerateRequest *r = layerskip__v1__generate_request__unpack(NULL, len, req);
    if (!r) return fail(msg, msg_len, "the request is not a valid layerskip.v1.GenerateRequest message");
    grpc_status_code code = prepare(sv, r, NULL, job, msg, msg_len);
    layerskip__v1__generate_request__free_unpacked(r, NULL);
    return code;
}

grpc_status_code lsd_service_prepare_chat(lsd_service *sv, const uint8_t *req, size_t len, lsd_job *job, char *msg,
                                          size_t msg_len) {
    Layerskip__V1__ChatRequest *r = layerskip__v1__chat_request__unpack(NULL, len, req);
    if (!r) return fail(msg, msg_len, "the request is not a valid layerskip.v1.ChatRequest message");
    grpc_status_code code = GRPC_STATUS_OK;
    char *text = NULL;
    Layerskip__V1__GenerateRequest dflt = LAYERSKIP__V1__GENERATE_REQUEST__INIT;
    const Layerskip__V1__GenerateRequest *o = r->options ? r->options : &dflt;
    ls_chat_message *msgs = NULL;
    if (!sv->chat_template) {
        code = GRPC_STATUS_FAILED_PRECONDITION;
        snprintf(msg, msg_len, "%s", sv->chat_template_error ? sv->chat_template_error
                                                             : "no chat template: start layerskipd with --chat-template");
        goto out;
    }
    if (o->input_case != LAYERSKIP__V1__GENERATE_REQUEST__INPUT__NOT_SET) {
        code = fail(msg, msg_len, "options.prompt and options.prompt_ids must be unset in a ChatRequest: the "
                    "messages are the prompt");
        goto out;
    }
    code = lsd_chat_check_messages(r->n_messages, msg, msg_len);
    if (code != GRPC_STATUS_OK) goto out;
    msgs = calloc(r->n_messages, sizeof *msgs);
    if (!msgs) { code = fail(msg, msg_len, "out of memory for the messages"); goto out; }
    for (size_t i = 0; i < r->n_messages; i++) {
        const Layerskip__V1__ChatMessage *m = r->messages[i];
        msgs[i].role = m->role;
        msgs[i].content = m->content;
        if ((code = lsd_chat_check_message(i, m->role, m->content, msg, msg_len)) != GRPC_STATUS_OK) goto out;
    }
    code = lsd_chat_render(sv, msgs, (int)r->n_messages, &text, msg, msg_len);
    if (code == GRPC_STATUS_OK) code = prepare(sv, o, text, job, msg, msg_len);
out:
    free(msgs);
    free(text);
    layerskip__v1__chat_request__free_unpacked(r, NULL);
    return code;
}

grpc_status_code lsd_chat_check_messages(size_t n, char *msg, size_t msg_len) {
    if (n == 0) return fail(msg, msg_len, "messages is empty: give at least one message");
    if (n > LSD_MAX_CHAT_MESSAGES)
        return fail(msg, msg_len, "messages has %zu entries, more than %d", n, LSD_MAX_CHAT_MESSAGES);
    return GRPC_STATUS_OK;
}

grpc_status_code lsd_chat_check_message(size_t i, const char *role, const char *content, char *msg, size_t msg_len) {
    size_t rl = role ? strlen(role) : 0;
    if (rl == 0) return fail(msg, msg_len, "messages[%zu].role is empty (system, user or assistant)", i);
    if (rl > 64 || !lsd_utf8_valid(role, rl))
        return fail(msg, msg_len, "messages[%zu].role must be valid UTF-8 of at most 64 bytes", i);
    if (!content || !lsd_utf8_valid(content, strlen(content)))
        return fail(msg, msg_len, "messages[%zu].content is not valid UTF-8", i);
    return GRPC_STATUS_OK;
}

grpc_status_code lsd_chat_render(lsd_service *sv, const ls_chat_message *msgs, int n, char **text, char *msg,
                                 size_t msg_len) {
    *text = NULL;
    if (!sv->chat_template) {
        snprintf(msg, msg_len, "%s", sv->chat_template_error ? sv->chat_template_error
                                                             : "no chat template: start layerskipd with --chat-template");
        return GRPC_STATUS_FAILED_PRECONDITION;
    }
    ls_chat_render_opts ro = {.bos_token = sv->bos_text, .eos_token = sv->eos_text, .add_generation_prompt = true,
                              .max_output = (size_t)sv->n_ctx * 64 + 4096};
    ls_err err = {{0}};
    ls_status st = ls_chat_template_render(sv->chat_template, msgs, n, &ro, text, NULL, &err);
    if (st == LS_ERR_INVALID) /* the template's raise_exception: the conversation is refused */
        return fail(msg, msg_len, "the chat template refuses this conversation: %s", err.msg);
    if (st == LS_ERR_NOMEM) {
        snprintf(msg, msg_len, "out of memory rendering the chat template");
        return GRPC_STATUS_RESOURCE_EXHAUSTED;
    }
    if (st != LS_OK) {
        snprintf(msg, msg_len, "rendering the chat template (%s) failed: %s", sv->chat_template_source, err.msg);
        return GRPC_STATUS_FAILED_PRECONDITION;
    }
    return GRPC_STATUS_OK;
}

/* by_source and src: room for LS_N_DRAFT_SOURCES entries (the caller's, alive until packed) */
static void fill_stats(const lsd_job *j, Layerskip__V1__Stats *st, Layerskip__V1__DraftSourceStats **by_source,
                       Layerskip__V1__DraftSourceStats *src) {
    const ls_gen_params *p = &j->params;
    st->prompt_tokens = j->n_prompt;
    st->generated_tokens = j->n_ids;
    st->drafted = j->gen.drafted;
    st->accepted = j->gen.accepted;
    st->acceptance_rate = j->gen.drafted ? (double)j->gen.accepted / (double)j->gen.drafted : 0;
    st->time_to_first_token_ms = j->ttft_ms;
    st->tokens_per_second = j->gen.decode_ms > 0 ? j->n_ids / (j->gen.decode_ms / 1e3) : 0;
    st->queue_ms = j->queue_ms;
    st->total_ms = j->total_ms;
    st->strategy = (char *)ls_strategy_name(p->strategy);
    st->exit_layer = p->strategy == LS_STRATEGY_AUTOREGRESSIVE ? 0 : p->exit_layer;
    st->num_speculations = p->strategy == LS_STRATEGY_SELF_SPECULATIVE ? p->num_speculations : 0;
    st->seed = p->sampling.seed;
    st->rounds = j->gen.rounds;
    if (p->strategy != LS_STRATEGY_SELF_SPECULATIVE) return;
    if (p->auto_speculations) st->num_speculations = LSD_NUM_SPECULATIONS_AUTO;
    st->draft_source = (char *)ls_draft_source_name(p->draft_source);
    st->draft_vocab = p->draft_vocab;
    /* every source but auto (a choice among them, never a drafter itself) */
    st->n_by_source = 0;
    for (int s = 0; s < LS_N_DRAFT_SOURCES; s++) {
        if (s == LS_DRAFT_AUTO) continue;
        Layerskip__V1__DraftSourceStats *d = &src[st->n_by_source];
        layerskip__v1__draft_source_stats__init(d);
        d->source = (char *)ls_draft_source_name((ls_draft_source)s);
        d->drafted = j->gen.drafted_by[s];
        d->accepted = j->gen.accepted_by[s];
        by_source[st->n_by_source++] = d;
    }
    st->by_source = by_source;
    int64_t rounds = 0, ksum = 0;
    size_t n_k = 0;
    for (int k = 0; k <= LS_MAX_SPECULATIONS; k++) {
        rounds += j->gen.rounds_by_k[k];
        ksum += (int64_t)k * j->gen.rounds_by_k[k];
        if (j->gen.rounds_by_k[k]) n_k = (size_t)k + 1;
    }
    st->n_rounds_by_k = n_k;
    st->rounds_by_k = (int64_t *)j->gen.rounds_by_k;
    st->mean_k = rounds ? (double)ksum / (double)rounds : 0;
}

static int pack_msg(const ProtobufCMessage *m, uint8_t **out, size_t *out_len) {
    size_t n = protobuf_c_message_get_packed_size(m);
    *out = malloc(n ? n : 1);
    if (!*out) return -1;
    *out_len = protobuf_c_message_pack(m, *out);
    return 0;
}

int lsd_service_encode_response(const lsd_service *sv, const lsd_job *job, uint8_t **out, size_t *out_len) {
    Layerskip__V1__GenerateResponse r = LAYERSKIP__V1__GENERATE_RESPONSE__INIT;
    Layerskip__V1__Stats st = LAYERSKIP__V1__STATS__INIT;
    Layerskip__V1__DraftSourceStats src[LS_N_DRAFT_SOURCES], *by_source[LS_N_DRAFT_SOURCES];
    fill_stats(job, &st, by_source, src);
    r.request_id = (char *)job->request_id;
    r.text = job->text ? job->text : "";
    r.n_token_ids = (size_t)job->n_ids;
    r.token_ids = job->ids;
    r.finish_reason = (Layerskip__V1__FinishReason)job->finish_reason;
    r.stats = &st;
    return pack_msg(&r.base, out, out_len);
}

int lsd_service_encode_chunk(const lsd_service *sv, const lsd_job *job, const char *text, size_t text_len,
                             const int32_t *ids, int n_ids, bool final, uint8_t **out, size_t *out_len) {
    Layerskip__V1__GenerateChunk c = LAYERSKIP__V1__GENERATE_CHUNK__INIT;
    Layerskip__V1__Stats st = LAYERSKIP__V1__STATS__INIT;
    Layerskip__V1__DraftSourceStats src[LS_N_DRAFT_SOURCES], *by_source[LS_N_DRAFT_SOURCES];
    char *t = malloc(text_len + 1);
    if (!t) return -1;
    memcpy(t, text, text_len);
    t[text_len] = 0;
    c.request_id = (char *)job->request_id;
    c.text = t;
    c.n_token_ids = (size_t)n_ids;
    c.token_ids = (int32_t *)ids;
    if (final) {
        fill_stats(job, &st, by_source, src);
        c.finish_reason = (Layerskip__V1__FinishReason)job->finish_reason;
        c.stats = &st;
    }
    int rc = pack_msg(&c.base, out, out_len);
    free(t);
    return rc;
}

grpc_status_code lsd_service_tokenize(const lsd_service *sv, const uint8_t *req, size_t len, uint8_t **out,
                                      size_t *out_len, char *msg, size_t msg_len) {
    Layerskip__V1__TokenizeRequest *r = layerskip__v1__tokenize_request__unpack(NULL, len, req);
    if (!r) return fail(msg, msg_len, "the request is not a valid layerskip.v1.TokenizeRequest message");
    const ls_tokenizer *tok = ls_model_tokenizer(sv->model);
    grpc_status_code code = GRPC_STATUS_OK;
    int32_t *ids = NULL;
    char **pieces = NULL;
    int64_t n = 0;
    size_t tl = strlen(r->text);
    if (!lsd_utf8_valid(r->text, tl)) { code = fail(msg, msg_len, "text is not valid UTF-8"); goto out; }
    bool add_bos = r->add_bos_option_case == LAYERSKIP__V1__TOKENIZE_REQUEST__ADD_BOS_OPTION_ADD_BOS
                       ? r->add_bos : ls_tokenizer_add_bos(tok);
    n = ls_tokenize(tok, r->text, tl, add_bos, r->parse_special, NULL, 0);
    int64_t cap = (n < 0 ? -n : n) + 1;
    ids = malloc(sizeof(int32_t) * (size_t)cap);
    if (n == INT64_MIN || !ids) { code = GRPC_STATUS_RESOURCE_EXHAUSTED; snprintf(msg, msg_len, "out of memory"); goto out; }
    n = ls_tokenize(tok, r->text, tl, add_bos, r->parse_special, ids, cap);
    if (n < 0) n = 0;
    pieces = calloc((size_t)n + 1, sizeof(char *));
    if (!pieces) { code = GRPC_STATUS_RESOURCE_EXHAUSTED; snprintf(msg, msg_len, "out of memory"); goto out; }
    for (int64_t i = 0; i < n; i++) {
        char buf[512];
        int64_t k = ls_token_to_bytes(tok, ids[i], true, buf, sizeof buf);
        char *big = NULL;
        if (k < 0) {
            big = malloc((size_t)-k);
            k = big ? ls_token_to_bytes(tok, ids[i], true, big, -k) : 0;
        }
        pieces[i] = utf8_clean(big ? big : buf, k > 0 ? (size_t)k : 0, true);
        free(big);
        if (!pieces[i]) { code = GRPC_STATUS_RESOURCE_EXHAUSTED; snprintf(msg, msg_len, "out of memory"); goto out; }
    }
    Layerskip__V1__TokenizeResponse resp = LAYERSKIP__V1__TOKENIZE_RESPONSE__INIT;
    resp.n_ids = (size_t)n;
    resp.ids = ids;
    resp.n_pieces = (size_t)n;
    resp.pieces = pieces;
    if (pack_msg(&resp.base, out, out_len) != 0) { code = GRPC_STATUS_RESOURCE_EXHAUSTED; snprintf(msg, msg_len, "out of memory"); }
out:
    if (pieces) for (int64_t i = 0; i < n; i++) free(pieces[i]);
    free(pieces);
    free(ids);
    layerskip__v1__tokenize_request__free_unpacked(r, NULL);
    return code;
}

grpc_status_code lsd_service_detokenize(const lsd_service *sv, const uint8_t *req, size_t len, uint8_t **out,
                                        size_t *out_len, char *msg, size_t msg_len) {
    Layerskip__V1__DetokenizeRequest *r = layerskip__v1__detokenize_request__unpack(NULL, len, req);
    if (!r) return fail(msg, msg_len, "the request is not a valid layerskip.v1.DetokenizeRequest message");
    const ls_tokenizer *tok = ls_model_tokenizer(sv->model);
    grpc_status_code code = GRPC_STATUS_OK;
    char *raw = NULL, *clean = NULL;
    for (size_t i = 0; i < r->n_ids; i++) {
        if (r->ids[i] < 0 || r->ids[i] >= ls_tokenizer_n_vocab(tok)) {
            code = fail(msg, msg_len, "ids[%zu] = %d is outside the vocabulary [0, %d)", i, r->ids[i],
                        ls_tokenizer_n_vocab(tok));
            goto out;
        }
    }
    int64_t need = ls_detokenize(tok, r->ids, (int64_t)r->n_ids, r->render_special, NULL, 0);
    int64_t cap = need < 0 ? -need : need + 1;
    raw = malloc((size_t)cap);
    if (!raw) { code = GRPC_STATUS_RESOURCE_EXHAUSTED; snprintf(msg, msg_len, "out of memory"); goto out; }
    int64_t n = ls_detokenize(tok, r->ids, (int64_t)r->n_ids, r->render_special, raw, cap);
    clean = utf8_clean(raw, n > 0 ? (size_t)n : 0, false); /* partial characters become U+FFFD */
    if (!clean) { code = GRPC_STATUS_RESOURCE_EXHAUSTED; snprintf(msg, msg_len, "out of memory"); goto out; }
    Layerskip__V1__DetokenizeResponse resp = LAYERSKIP__V1__DETOKENIZE_RESPONSE__INIT;
    resp.text = clean;
    if (pack_msg(&resp.base, out, out_len) != 0) { code = GRPC_STATUS_RESOURCE_EXHAUSTED; snprintf(msg, msg_len, "out of memory"); }
out:
    free(raw);
    free(clean);
    layerskip__v1__detokenize_request__free_unpacked(r, NULL);
    return code;
}

grpc_status_code lsd_service_model_info(const lsd_service *sv, const uint8_t *req, size_t len, uint8_t **out,
                                        size_t *out_len, char *msg, size_t msg_len) {
    Layerskip__V1__GetModelInfoRequest *r = layerskip__v1__get_model_info_request__unpack(NULL, len, req);
    if (!r) return fail(msg, msg_len, "the request is not a valid layerskip.v1.GetModelInfoRequest message");
    layerskip__v1__get_model_info_request__free_unpacked(r, NULL);
    const ls_config *cfg = ls_model_config(sv->model);
    const ls_tokenizer *tok = ls_model_tokenizer(sv->model);
    char host[256] = "localhost";
    if (gethostname(host, sizeof host - 1) != 0) snprintf(host, sizeof host, "localhost");
    host[sizeof host - 1] = 0;

    Layerskip__V1__ModelInfo m = LAYERSKIP__V1__MODEL_INFO__INIT;
    Layerskip__V1__IntRange er = LAYERSKIP__V1__INT_RANGE__INIT, kr = LAYERSKIP__V1__INT_RANGE__INIT,
                            mr = LAYERSKIP__V1__INT_RANGE__INIT;
    Layerskip__V1__Stage stage = LAYERSKIP__V1__STAGE__INIT, *stages[65] = {&stage};
    Layerskip__V1__Stage pstages[64];
    char *strategies[3] = {(char *)ls_strategy_name(LS_STRATEGY_AUTOREGRESSIVE),
                           (char *)ls_strategy_name(LS_STRATEGY_EARLY_EXIT),
                           (char *)ls_strategy_name(LS_STRATEGY_SELF_SPECULATIVE)};
    m.name = (char *)cfg->name;
    m.architecture = (char *)cfg->arch;
    m.path = (char *)sv->model_path;
    m.layers = cfg->n_layers;
    m.hidden_size = cfg->dim;
    m.heads = cfg->n_heads;
    m.kv_heads = cfg->n_kv_heads;
    m.ffn_size = cfg->ffn_dim;
    m.vocab_size = cfg->n_vocab;
    m.context = sv->n_ctx;
    m.train_context = cfg->ctx_train;
    m.tokenizer = ls_tokenizer_kind(tok) == LS_TOK_SPM ? "spm" : "bpe";
    m.bos_id = ls_tokenizer_bos(tok);
    m.eos_id = ls_tokenizer_eos(tok);
    m.default_strategy = (char *)ls_strategy_name(sv->default_strategy);
    m.default_exit_layer = sv->default_exit_layer;
    m.default_num_speculations = sv->default_num_speculations;
    m.default_max_tokens = sv->default_max_tokens;
    m.n_strategies = 3;
    m.strategies = strategies;
    er.min = 1;
    er.max = cfg->n_layers - 1;
    kr.min = 1;
    kr.max = LS_MAX_SPECULATIONS;
    mr.min = 1;
    mr.max = sv->n_ctx - 1;
    m.exit_layer_range = &er;
    m.num_speculations_range = &kr;
    m.max_tokens_range = &mr;
    stage.rank = 0;
    stage.first_layer = 0;
    stage.last_layer = cfg->n_layers;
    stage.embedding = 1;
    stage.head = 1;
    stage.host = host;
    stage.kernels = (char *)ls_kernel_path();
    m.n_stages = 1;
    m.stages = stages;
    for (int i = 0; i < sv->n_stages && i < 64; i++) {
        const lsd_stage_info *si = &sv->stages[i];
        layerskip__v1__stage__init(&pstages[i]);
        pstages[i].rank = si->rank;
        pstages[i].first_layer = si->first_layer;
        pstages[i].last_layer = si->last_layer;
        pstages[i].embedding = si->embedding;
        pstages[i].head = si->head;
        pstages[i].host = (char *)si->host; /* hostnames are ASCII (checked when received) */
        pstages[i].kernels = (char *)si->kernels;
        stages[i] = &pstages[i];
        m.n_stages = (size_t)i + 1;
    }
    m.max_sessions = sv->max_sessions;
    m.max_queue = sv->max_queue;
    m.version = LSD_VERSION;
    m.kernels = (char *)ls_kernel_path();
    m.chat_template = (char *)(sv->chat_template_source ? sv->chat_template_source : "");
    char *sources[LS_N_DRAFT_SOURCES];
    for (int i = 0; i < LS_N_DRAFT_SOURCES; i++) sources[i] = (char *)ls_draft_source_name((ls_draft_source)i);
    m.default_draft_source = (char *)ls_draft_source_name(sv->default_draft_source);
    m.n_draft_sources = LS_N_DRAFT_SOURCES;
    m.draft_sources = sources;
    m.default_draft_vocab = sv->default_draft_vocab;
    m.draft_adapter_exit_layer = sv->adapter ? ls_adapter_exit_layer(sv->adapter) : 0;
    m.draft_vocab_max = sv->adapter ? ls_adapter_vocab_len(sv->adapter) : 0;
    m.auto_speculations_max = LS_AUTO_SPECULATIONS_MAX;
    /* names come from files: never send invalid UTF-8 */
    char *name = utf8_clean(cfg->name, strlen(cfg->name), false);
    char *path = utf8_clean(sv->model_path, strlen(sv->model_path), false);
    const char *apath = sv->adapter ? ls_adapter_path(sv->adapter) : "";
    char *adapter = utf8_clean(apath, strlen(apath), false);
    grpc_status_code code = GRPC_STATUS_OK;
    m.draft_adapter = adapter;
    if (!name || !path || !adapter) { code = GRPC_STATUS_RESOURCE_EXHAUSTED; snprintf(msg, msg_len, "out of memory"); goto out; }
    m.name = name;
    m.path = path;
    if (pack_msg(&m.base, out, out_len) != 0) { code = GRPC_STATUS_RESOURCE_EXHAUSTED; snprintf(msg, msg_len, "out of memory"); }
out:
    free(name);
    free(path);
    free(adapter);
    return code;
}

grpc_status_code lsd_service_health_request(const uint8_t *req, size_t len, char **service, char *msg,
                                            size_t msg_len) {
    Grpc__Health__V1__HealthCheckRequest *r = grpc__health__v1__health_check_request__unpack(NULL, len, req);
    if (!r) return fail(msg, msg_len, "the request is not a valid grpc.health.v1.HealthCheckRequest message");
    *service = strdup(r->service);
    grpc__health__v1__health_check_request__free_unpacked(r, NULL);
    if (!*service) { snprintf(msg, msg_len, "out of memory"); return GRPC_STATUS_RESOURCE_EXHAUSTED; }
    return GRPC_STATUS_OK;
}

int lsd_service_health_response(int status, uint8_t **out, size_t *out_len) {
    Grpc__Health__V1__HealthCheckResponse r = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    r.status = (Grpc__Health__V1__HealthCheckResponse__ServingStatus)status;
    return pack_msg(&r.base, out, out_len);
}
