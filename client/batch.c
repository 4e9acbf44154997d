/* batch.c: `layerskip batch`. The input is read and checked up front (so
 * progress knows the total and bad lines are reported before any work);
 * C worker threads then send one unary Generate each at a time over the
 * shared channel; results go to the output file one whole line per write()
 * + fdatasync, in completion order. Errors that belong to a line (bad
 * request, deadline) are written as that line's result; errors that belong
 * to the job (server gone, auth, Ctrl-C) stop it without writing, so a rerun
 * retries those lines. */
#include "batch.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- id set: open addressing over strings ---- */

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

void lsc_idset_init(lsc_idset *s) { memset(s, 0, sizeof *s); }

void lsc_idset_free(lsc_idset *s) {
    for (size_t i = 0; i < s->cap; i++) free(s->slots[i]);
    free(s->slots);
    memset(s, 0, sizeof *s);
}

bool lsc_idset_has(const lsc_idset *s, const char *key) {
    if (!s->cap) return false;
    for (size_t i = hash_str(key) & (s->cap - 1);; i = (i + 1) & (s->cap - 1)) {
        if (!s->slots[i]) return false;
        if (!strcmp(s->slots[i], key)) return true;
    }
}

lsc_status lsc_idset_add(lsc_idset *s, const char *key) {
    if (lsc_idset_has(s, key)) return LSC_OK;
    if ((s->count + 1) * 2 > s->cap) { /* keep the load under 1/2 */
        size_t ncap = s->cap ? s->cap * 2 : 64;
        char **ns = calloc(ncap, sizeof *ns);
        if (!ns) return LSC_ERR_NOMEM;
        for (size_t i = 0; i < s->cap; i++) {
            if (!s->slots[i]) continue;
            size_t j = hash_str(s->slots[i]) & (ncap - 1);
            while (ns[j]) j = (j + 1) & (ncap - 1);
            ns[j] = s->slots[i];
        }
        free(s->slots);
        s->slots = ns;
        s->cap = ncap;
    }
    char *k = strdup(key);
    if (!k) return LSC_ERR_NOMEM;
    size_t i = hash_str(key) & (s->cap - 1);
    while (s->slots[i]) i = (i + 1) & (s->cap - 1);
    s->slots[i] = k;
    s->count++;
    return LSC_OK;
}

/* ---- ids ---- */

/* The id's key: its compact JSON text. NULL when the id is unusable. */
static char *id_key_of(const cJSON *id) {
    if (cJSON_IsString(id)) {
        if (!id->valuestring || !*id->valuestring) return NULL;
    } else if (cJSON_IsNumber(id)) {
        if (!isfinite(id->valuedouble)) return NULL;
    } else {
        return NULL;
    }
    return cJSON_PrintUnformatted(id);
}

/* ---- resume ---- */

lsc_status lsc_resume_scan(int fd, const char *path, lsc_idset *done, size_t *lines, size_t *dropped, lsc_err *err) {
    *lines = 0;
    *dropped = 0;
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        lsc_err_set(err, "cannot stat '%s': %s", path, strerror(errno));
        return LSC_ERR_IO;
    }
    size_t size = (size_t)sb.st_size;
    char *buf = malloc(size + 1);
    if (!buf) {
        lsc_err_set(err, "out of memory reading '%s' (%zu bytes)", path, size);
        return LSC_ERR_NOMEM;
    }
    size_t got = 0;
    while (got < size) {
        ssize_t n = pread(fd, buf + got, size - got, (off_t)got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            lsc_err_set(err, "cannot read '%s': %s", path, n < 0 ? strerror(errno) : "file shrank while reading");
            free(buf);
            return LSC_ERR_IO;
        }
        got += (size_t)n;
    }
    buf[size] = '\0';
    size_t keep = size;
    while (keep > 0 && buf[keep - 1] != '\n') keep--;
    if (keep < size) {
        /* a line without its newline is a write cut short by a crash */
        if (ftruncate(fd, (off_t)keep) != 0) {
            lsc_err_set(err, "cannot truncate the torn last line of '%s': %s", path, strerror(errno));
            free(buf);
            return LSC_ERR_IO;
        }
        *dropped = size - keep;
        buf[keep] = '\0';
    }
    size_t line_no = 0;
    lsc_status st = LSC_OK;
    for (char *p = buf; p < buf + keep;) {
        char *nl = memchr(p, '\n', (size_t)(buf + keep - p));
        *nl = '\0';
        line_no++;
        cJSON *o = cJSON_Parse(p);
        char *key = o && cJSON_IsObject(o) ? id_key_of(cJSON_GetObjectItemCaseSensitive(o, "id")) : NULL;
        if (key) {
            if (lsc_idset_add(done, key) != LSC_OK) st = LSC_ERR_NOMEM;
            (*lines)++;
        } else if (p[strspn(p, " \t\r")] != '\0') {
            fprintf(stderr, "layerskip batch: %s line %zu is not a result line with an \"id\" (ignored)\n", path,
                    line_no);
        }
        cJSON_free(key);
        cJSON_Delete(o);
        p = nl + 1;
    }
    free(buf);
    if (st != LSC_OK) lsc_err_set(err, "out of memory collecting the ids of '%s'", path);
    return st;
}

/* ---- input lines ---- */

static bool json_int(const cJSON *v, double lo, double hi, long long *out) {
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble != floor(v->valuedouble) ||
        v->valuedouble < lo || v->valuedouble > hi)
        return false;
    *out = (long long)v->valuedouble;
    return true;
}

void lsc_batch_item_free(lsc_batch_item *it) {
    cJSON_free(it->id_key);
    free(it->prompt);
    for (size_t i = 0; it->messages && i < it->n_messages; i++) {
        free(it->messages[i].role);
        free(it->messages[i].content);
    }
    free(it->messages);
    free(it->message_ptrs);
    free(it->strategy);
    free(it->draft_source);
    if (it->stop)
        for (size_t i = 0; i < it->params.n_stop; i++) free(it->stop[i]);
    free(it->stop);
    free(it->stop_ids);
    memset(it, 0, sizeof *it);
}

#define BAD(...) do { lsc_err_set(err, __VA_ARGS__); return LSC_ERR_INPUT; } while (0)

static lsc_status parse_fields(const cJSON *o, lsc_batch_item *it, lsc_err *err) {
    lsc_gen_params *p = &it->params;
    const cJSON *v;
    cJSON_ArrayForEach(v, o) {
        const char *k = v->string;
        long long iv;
        if (!strcmp(k, "id")) continue;
        if (!strcmp(k, "prompt")) {
            if (!cJSON_IsString(v)) BAD("\"prompt\" must be a string");
            if (!(it->prompt = strdup(v->valuestring))) BAD("out of memory");
        } else if (!strcmp(k, "messages")) {
            /* [{"role": "user", "content": "..."}, ...]: Chat through the model's chat template */
            if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) == 0)
                BAD("\"messages\" must be a non-empty array of {\"role\", \"content\"} objects");
            size_t n = (size_t)cJSON_GetArraySize(v), i = 0;
            it->messages = calloc(n, sizeof *it->messages);
            it->message_ptrs = calloc(n, sizeof *it->message_ptrs);
            if (!it->messages || !it->message_ptrs) BAD("out of memory");
            const cJSON *m;
            cJSON_ArrayForEach(m, v) {
                const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
                const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
                if (!cJSON_IsObject(m) || !cJSON_IsString(role) || !cJSON_IsString(content))
                    BAD("\"messages\"[%zu] must be {\"role\": \"...\", \"content\": \"...\"} (content a string)", i);
                layerskip__v1__chat_message__init(&it->messages[i]);
                it->message_ptrs[i] = &it->messages[i];
                it->n_messages = i + 1;
                if (!(it->messages[i].role = strdup(role->valuestring)) ||
                    !(it->messages[i].content = strdup(content->valuestring)))
                    BAD("out of memory");
                i++;
            }
        } else if (!strcmp(k, "max_tokens")) {
            if (!json_int(v, 0, INT32_MAX, &iv)) BAD("\"max_tokens\" must be an integer >= 0 (0 = the daemon's default)");
            p->max_tokens = (int)iv;
        } else if (!strcmp(k, "temperature")) {
            if (!cJSON_IsNumber(v) || v->valuedouble < 0) BAD("\"temperature\" must be a number >= 0 (0 = greedy)");
            p->has_temperature = true;
            p->temperature = v->valuedouble;
            p->sample = v->valuedouble > 0;
        } else if (!strcmp(k, "top_k")) {
            if (!json_int(v, 0, INT32_MAX, &iv)) BAD("\"top_k\" must be an integer >= 0 (0 = off)");
            p->has_top_k = true;
            p->top_k = (int)iv;
        } else if (!strcmp(k, "top_p")) {
            if (!cJSON_IsNumber(v)) BAD("\"top_p\" must be a number in (0, 1]");
            p->has_top_p = true;
            p->top_p = v->valuedouble;
        } else if (!strcmp(k, "min_p")) {
            if (!cJSON_IsNumber(v)) BAD("\"min_p\" must be a number in [0, 1)");
            p->min_p = v->valuedouble;
        } else if (!strcmp(k, "repetition_penalty")) {
            if (!cJSON_IsNumber(v)) BAD("\"repetition_penalty\" must be a number > 0 (1 = off)");
            p->repetition_penalty = v->valuedouble;
        } else if (!strcmp(k, "seed")) {
            if (cJSON_IsString(v)) {
                char *end = NULL;
                errno = 0;
                unsigned long long s = strtoull(v->valuestring, &end, 10);
                if (errno || end == v->valuestring || *end || v->valuestring[0] == '-')
                    BAD("\"seed\" must be an integer in [0, 2^64) (a number, or a string of digits for large seeds)");
                p->seed = s;
            } else if (json_int(v, 0, 9007199254740992.0, &iv)) {
                p->seed = (uint64_t)iv;
            } else {
                BAD("\"seed\" must be an integer in [0, 2^64) (a number, or a string of digits for large seeds)");
            }
            p->has_seed = true;
        } else if (!strcmp(k, "stop")) {
            if (!cJSON_IsArray(v)) BAD("\"stop\" must be an array of strings");
            size_t n = (size_t)cJSON_GetArraySize(v), i = 0;
            if (!(it->stop = calloc(n ? n : 1, sizeof *it->stop))) BAD("out of memory");
            const cJSON *s;
            cJSON_ArrayForEach(s, v) {
                if (!cJSON_IsString(s)) BAD("\"stop\" must be an array of strings (element %zu is not)", i);
                if (!(it->stop[i] = strdup(s->valuestring))) BAD("out of memory");
                p->n_stop = ++i;
            }
            p->stop = it->stop;
        } else if (!strcmp(k, "stop_token_ids")) {
            if (!cJSON_IsArray(v)) BAD("\"stop_token_ids\" must be an array of integers");
            size_t n = (size_t)cJSON_GetArraySize(v), i = 0;
            if (!(it->stop_ids = calloc(n ? n : 1, sizeof *it->stop_ids))) BAD("out of memory");
            const cJSON *s;
            cJSON_ArrayForEach(s, v) {
                if (!json_int(s, 0, INT32_MAX, &iv))
                    BAD("\"stop_token_ids\" must be an array of token ids >= 0 (element %zu is not)", i);
                it->stop_ids[i++] = (int32_t)iv;
            }
            p->stop_token_ids = it->stop_ids;
            p->n_stop_token_ids = n;
        } else if (!strcmp(k, "strategy")) {
            if (!cJSON_IsString(v)) BAD("\"strategy\" must be a string: autoregressive, early_exit or self_speculative");
            if (!(it->strategy = strdup(v->valuestring))) BAD("out of memory");
            p->strategy = it->strategy;
        } else if (!strcmp(k, "exit_layer")) {
            if (!json_int(v, 0, INT32_MAX, &iv)) BAD("\"exit_layer\" must be an integer >= 0 (0 = the daemon's default)");
            p->exit_layer = (int)iv;
        } else if (!strcmp(k, "num_speculations")) {
            /* as --num-speculations K|auto, plus 0 = the daemon's default */
            if (cJSON_IsString(v)) {
                if (!lsc_num_speculations_parse(v->valuestring, &p->num_speculations))
                    BAD("\"num_speculations\" must be an integer >= 0 (0 = the daemon's default) or \"auto\"");
            } else {
                if (!json_int(v, 0, INT32_MAX, &iv))
                    BAD("\"num_speculations\" must be an integer >= 0 (0 = the daemon's default) or \"auto\"");
                p->num_speculations = (int)iv;
            }
        } else if (!strcmp(k, "draft_source")) {
            if (!cJSON_IsString(v)) BAD("\"draft_source\" must be a string: auto, exit, adapter or lookup");
            if (!(it->draft_source = strdup(v->valuestring))) BAD("out of memory");
            p->draft_source = it->draft_source;
        } else if (!strcmp(k, "draft_vocab")) {
            if (!json_int(v, 0, INT32_MAX, &iv)) BAD("\"draft_vocab\" must be an integer >= 0 (0 = the full head)");
            p->has_draft_vocab = true;
            p->draft_vocab = (int)iv;
        } else if (!strcmp(k, "ignore_eos")) {
            if (!cJSON_IsBool(v)) BAD("\"ignore_eos\" must be true or false");
            p->ignore_eos = cJSON_IsTrue(v);
        } else {
            BAD("unknown field \"%s\" (known: id, prompt, messages, max_tokens, temperature, top_k, top_p, min_p, "
                "repetition_penalty, seed, stop, stop_token_ids, strategy, exit_layer, num_speculations, draft_source, "
                "draft_vocab, ignore_eos)",
                k);
        }
    }
    if (!it->prompt && !it->n_messages) BAD("\"prompt\" (or \"messages\") is missing (add \"prompt\": \"...\")");
    if (it->prompt && it->n_messages) BAD("give \"prompt\" or \"messages\", not both");
    return LSC_OK;
}

lsc_status lsc_batch_parse_line(const char *line, size_t line_no, const lsc_gen_params *defaults,
                                lsc_batch_item *it, lsc_err *err) {
    memset(it, 0, sizeof *it);
    it->line_no = line_no;
    it->params = *defaults;
    /* the line's own arrays replace the defaults', never merge with them */
    cJSON *o = cJSON_ParseWithOpts(line, NULL, 1);
    if (!o) BAD("not valid JSON (each line must be one JSON object)");
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        BAD("not a JSON object (each line must be {\"id\": ..., \"prompt\": \"...\"})");
    }
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "id");
    if (!id) {
        cJSON_Delete(o);
        BAD("\"id\" is missing (add a unique \"id\": a string or a number)");
    }
    if (!(it->id_key = id_key_of(id))) {
        cJSON_Delete(o);
        BAD("\"id\" must be a non-empty string or a number");
    }
    lsc_status st = parse_fields(o, it, err);
    cJSON_Delete(o);
    return st;
}

/* ---- output lines ---- */

static char *finish_line(cJSON *o) {
    char *s = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (!s) return NULL;
    size_t n = strlen(s);
    char *line = malloc(n + 2);
    if (line) {
        memcpy(line, s, n);
        line[n] = '\n';
        line[n + 1] = '\0';
    }
    cJSON_free(s);
    return line;
}

static cJSON *object_with_id(const char *id_key) {
    cJSON *o = cJSON_CreateObject();
    cJSON *id = cJSON_Parse(id_key);
    if (!o || !id) {
        cJSON_Delete(o);
        cJSON_Delete(id);
        return NULL;
    }
    cJSON_AddItemToObject(o, "id", id);
    return o;
}

char *lsc_batch_result_line(const char *id_key, const Layerskip__V1__GenerateResponse *r, bool token_ids) {
    cJSON *o = object_with_id(id_key);
    if (!o) return NULL;
    cJSON_AddStringToObject(o, "text", r->text ? r->text : "");
    if (token_ids) {
        cJSON *a = cJSON_AddArrayToObject(o, "token_ids");
        for (size_t i = 0; a && i < r->n_token_ids; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(r->token_ids[i]));
    }
    cJSON_AddStringToObject(o, "finish_reason", lsc_finish_reason_name(r->finish_reason));
    cJSON_AddItemToObject(o, "stats", lsc_stats_to_json(r->stats));
    return finish_line(o);
}

char *lsc_batch_error_line(const char *id_key, const char *code, const char *message) {
    cJSON *o = object_with_id(id_key);
    if (!o) return NULL;
    cJSON *e = cJSON_AddObjectToObject(o, "error");
    cJSON_AddStringToObject(e, "code", code);
    cJSON_AddStringToObject(e, "message", message);
    return finish_line(o);
}

/* ---- the job ---- */

typedef struct batch_job {
    lsc_conn *conn;
    const lsc_batch_opts *o;
    const atomic_int *interrupted;
    lsc_batch_item *items;
    size_t n_items, next;
    int fd;
    pthread_mutex_t mu;       /* next, counters, fatal */
    pthread_mutex_t write_mu; /* the output file */
    atomic_int stop;          /* set on a job-level error */
    size_t done, failed, active;
    long long tokens, drafted, accepted;
    char fatal[1200];
} batch_job;

static bool stopping(batch_job *b) {
    return atomic_load(&b->stop) || (b->interrupted && atomic_load(b->interrupted));
}

static void job_fatal(batch_job *b, const char *msg) {
    pthread_mutex_lock(&b->mu);
    if (!b->fatal[0]) snprintf(b->fatal, sizeof b->fatal, "%s", msg);
    pthread_mutex_unlock(&b->mu);
    atomic_store(&b->stop, 1);
}

/* One write() of the whole line, then fdatasync: the line is either all
 * there or (torn by a crash) truncated away by the next run. */
static bool write_line(batch_job *b, const char *line) {
    size_t len = strlen(line), off = 0;
    bool ok = true;
    pthread_mutex_lock(&b->write_mu);
    while (off < len) {
        ssize_t n = write(b->fd, line + off, len - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            char msg[512];
            snprintf(msg, sizeof msg, "cannot write to '%s': %s (free some space, then rerun the same command to resume)",
                     b->o->output, n < 0 ? strerror(errno) : "short write");
            ok = false;
            pthread_mutex_unlock(&b->write_mu);
            job_fatal(b, msg);
            return false;
        }
        off += (size_t)n;
    }
    if (fdatasync(b->fd) != 0 && errno != EINVAL) {
        char msg[512];
        snprintf(msg, sizeof msg, "cannot sync '%s': %s", b->o->output, strerror(errno));
        ok = false;
        pthread_mutex_unlock(&b->write_mu);
        job_fatal(b, msg);
        return false;
    }
    pthread_mutex_unlock(&b->write_mu);
    return ok;
}

static void sleep_interruptible(batch_job *b, double seconds) {
    struct timespec nap = {0, 50 * 1000 * 1000};
    for (double t = 0; t < seconds && !stopping(b); t += 0.05) nanosleep(&nap, NULL);
}

static void run_item(batch_job *b, lsc_batch_item *it, unsigned *rng) {
    Layerskip__V1__GenerateRequest req;
    Layerskip__V1__SamplingParams sp;
    lsc_gen_request_fill(&it->params, it->prompt, &req, &sp);
    Layerskip__V1__ChatRequest chat = LAYERSKIP__V1__CHAT_REQUEST__INIT;
    if (it->n_messages) { /* the conversation is the prompt: Chat, Generate's options */
        req.input_case = LAYERSKIP__V1__GENERATE_REQUEST__INPUT__NOT_SET;
        chat.n_messages = it->n_messages;
        chat.messages = it->message_ptrs;
        chat.options = &req;
    }
    lsc_rpc_status st;
    ProtobufCMessage *resp = NULL;
    for (int attempt = 0;; attempt++) {
        lsc_call_unary(b->conn, it->n_messages ? "/layerskip.v1.LayerSkip/Chat" : "/layerskip.v1.LayerSkip/Generate",
                       it->n_messages ? &chat.base : &req.base, &layerskip__v1__generate_response__descriptor, &resp,
                       b->o->timeout_s, &st);
        if (st.code != GRPC_STATUS_RESOURCE_EXHAUSTED || stopping(b)) break;
        /* the daemon's queue is full: back off (exponential, jittered) and retry */
        double wait = 0.05 * (double)(1u << (attempt < 6 ? attempt : 6));
        if (wait > 2.0) wait = 2.0;
        wait *= 0.5 + (double)(rand_r(rng) % 1000) / 1000.0;
        sleep_interruptible(b, wait);
    }
    /* a finished result is kept even when Ctrl-C came meanwhile */
    if (st.code != GRPC_STATUS_OK && (st.interrupted || (b->interrupted && atomic_load(b->interrupted)))) return;
    char *line = NULL;
    if (st.code == GRPC_STATUS_OK) {
        const Layerskip__V1__GenerateResponse *r = (const Layerskip__V1__GenerateResponse *)resp;
        line = lsc_batch_result_line(it->id_key, r, b->o->token_ids);
        if (line && write_line(b, line)) {
            pthread_mutex_lock(&b->mu);
            b->done++;
            if (r->stats) {
                b->tokens += r->stats->generated_tokens;
                b->drafted += r->stats->drafted;
                b->accepted += r->stats->accepted;
            }
            pthread_mutex_unlock(&b->mu);
        }
        protobuf_c_message_free_unpacked(resp, NULL);
    } else if (st.code == GRPC_STATUS_UNAVAILABLE || st.code == GRPC_STATUS_UNAUTHENTICATED ||
               st.code == GRPC_STATUS_PERMISSION_DENIED || st.code == GRPC_STATUS_UNIMPLEMENTED ||
               st.code == GRPC_STATUS_CANCELLED || st.code == GRPC_STATUS_RESOURCE_EXHAUSTED) {
        /* the job's problem, not the line's: stop without writing so a rerun retries */
        char msg[1100];
        lsc_rpc_status_describe(b->conn, &st, msg, sizeof msg);
        job_fatal(b, msg);
    } else {
        char msg[1100];
        snprintf(msg, sizeof msg, "%s", st.message);
        line = lsc_batch_error_line(it->id_key, lsc_grpc_code_name(st.code), msg);
        if (line && write_line(b, line)) {
            pthread_mutex_lock(&b->mu);
            b->done++;
            b->failed++;
            pthread_mutex_unlock(&b->mu);
        }
    }
    if (!line && !stopping(b)) job_fatal(b, "out of memory formatting a result line");
    free(line);
}

static void *worker_main(void *arg) {
    batch_job *b = arg;
    unsigned rng = (unsigned)(uintptr_t)pthread_self() ^ (unsigned)time(NULL);
    for (;;) {
        pthread_mutex_lock(&b->mu);
        if (stopping(b) || b->next >= b->n_items) {
            b->active--;
            pthread_mutex_unlock(&b->mu);
            return NULL;
        }
        lsc_batch_item *it = &b->items[b->next++];
        pthread_mutex_unlock(&b->mu);
        run_item(b, it, &rng);
    }
}

static void fmt_eta(double s, char *buf, size_t len) {
    if (!isfinite(s) || s < 0) snprintf(buf, len, "?");
    else if (s < 120) snprintf(buf, len, "%.0f s", s);
    else if (s < 7200) snprintf(buf, len, "%.0f min", s / 60);
    else snprintf(buf, len, "%.1f h", s / 3600);
}

static void progress(batch_job *b, size_t base_done, size_t total, double t0, bool bar, bool final) {
    pthread_mutex_lock(&b->mu);
    size_t done = base_done + b->done;
    size_t run_done = b->done;
    long long tokens = b->tokens;
    pthread_mutex_unlock(&b->mu);
    double el = lsc_now() - t0;
    double lps = el > 0 ? (double)run_done / el : 0, tps = el > 0 ? (double)tokens / el : 0;
    char eta[32];
    fmt_eta(lps > 0 ? (double)(total - done) / lps : NAN, eta, sizeof eta);
    if (bar) {
        char cells[31];
        size_t fill = total ? done * 30 / total : 30;
        for (size_t i = 0; i < 30; i++) cells[i] = i < fill ? '#' : '.';
        cells[30] = '\0';
        fprintf(stderr, "\r\033[K[%s] %zu/%zu lines  %.1f lines/s  %.1f tok/s  ETA %s%s", cells, done, total, lps, tps,
                eta, final ? "\n" : "");
    } else {
        fprintf(stderr, "batch: %zu/%zu lines, %.1f lines/s, %.1f tokens/s, ETA %s\n", done, total, lps, tps, eta);
    }
    fflush(stderr);
}

static bool same_file(const char *a, const char *b) {
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

lsc_status lsc_batch_run(lsc_conn *conn, const lsc_batch_opts *o, const atomic_int *interrupted,
                         lsc_batch_summary *sum, lsc_err *err) {
    memset(sum, 0, sizeof *sum);
    double t0 = lsc_now();
    if (same_file(o->input, o->output)) {
        lsc_err_set(err, "--output '%s' is the input file (give a different --output)", o->output);
        return LSC_ERR_USAGE;
    }
    char *data = NULL;
    size_t data_len = 0;
    lsc_err ferr;
    if (lsc_read_file(strcmp(o->input, "-") ? o->input : "/dev/stdin", &data, &data_len, &ferr) != LSC_OK) {
        lsc_err_set(err, "--input: %s", ferr.msg);
        return LSC_ERR_IO;
    }
    int fd = open(o->output, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        lsc_err_set(err, "--output '%s': %s (give a writable path)", o->output, strerror(errno));
        free(data);
        return LSC_ERR_IO;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        lsc_err_set(err, "--output '%s' is in use by another layerskip batch (wait for it, or give another --output)",
                    o->output);
        close(fd);
        free(data);
        return LSC_ERR_IO;
    }
    lsc_idset done, seen;
    lsc_idset_init(&done);
    lsc_idset_init(&seen);
    size_t kept = 0, dropped = 0;
    lsc_status st = lsc_resume_scan(fd, o->output, &done, &kept, &dropped, err);
    if (st != LSC_OK) goto out_early;
    if (dropped)
        fprintf(stderr, "layerskip batch: %s: removed a torn last line (%zu bytes) left by an interrupted run\n",
                o->output, dropped);

    batch_job b;
    memset(&b, 0, sizeof b);
    b.conn = conn;
    b.o = o;
    b.interrupted = interrupted;
    b.fd = fd;
    pthread_mutex_init(&b.mu, NULL);
    pthread_mutex_init(&b.write_mu, NULL);

    /* pass 1: count lines, so items can be one array */
    size_t n_lines = 1;
    for (size_t i = 0; i < data_len; i++) n_lines += data[i] == '\n';
    b.items = calloc(n_lines, sizeof *b.items);
    if (!b.items) {
        lsc_err_set(err, "out of memory for %zu input lines", n_lines);
        st = LSC_ERR_NOMEM;
        goto out;
    }
    size_t line_no = 0, invalid_written = 0;
    for (char *p = data; p < data + data_len;) {
        char *nl = memchr(p, '\n', (size_t)(data + data_len - p));
        char *end = nl ? nl : data + data_len;
        *end = '\0';
        if (end > p && end[-1] == '\r') end[-1] = '\0';
        line_no++;
        char *line = p;
        p = nl ? nl + 1 : data + data_len;
        if (line[strspn(line, " \t\r")] == '\0') continue; /* blank */
        sum->total++;
        lsc_batch_item it;
        lsc_err lerr;
        lsc_status ps = lsc_batch_parse_line(line, line_no, &o->defaults, &it, &lerr);
        if (it.id_key && lsc_idset_has(&done, it.id_key)) {
            sum->skipped++;
            lsc_batch_item_free(&it);
            continue;
        }
        if (it.id_key && lsc_idset_has(&seen, it.id_key)) {
            /* writing an error under this id would give the id twice (and
             * could mark the first occurrence done before it ran) */
            fprintf(stderr, "layerskip batch: %s line %zu: duplicate id %s (ids must be unique; line skipped)\n",
                    o->input, line_no, it.id_key);
            sum->failed++;
            sum->invalid_no_id++;
            lsc_batch_item_free(&it);
            continue;
        }
        if (it.id_key && lsc_idset_add(&seen, it.id_key) != LSC_OK) {
            lsc_batch_item_free(&it);
            lsc_err_set(err, "out of memory");
            st = LSC_ERR_NOMEM;
            goto out;
        }
        if (ps == LSC_OK) {
            b.items[b.n_items++] = it;
            continue;
        }
        char msg[1200];
        snprintf(msg, sizeof msg, "%s line %zu: %s", o->input, line_no, lerr.msg);
        if (!it.id_key) {
            fprintf(stderr, "layerskip batch: %s\n", msg);
            sum->failed++;
            sum->invalid_no_id++;
        } else {
            char *el = lsc_batch_error_line(it.id_key, "INVALID_ARGUMENT", msg);
            bool ok = el && write_line(&b, el);
            free(el);
            if (!ok) {
                lsc_batch_item_free(&it);
                lsc_err_set(err, "%s", b.fatal[0] ? b.fatal : "out of memory");
                st = LSC_ERR_IO;
                goto out;
            }
            sum->failed++;
            invalid_written++;
        }
        lsc_batch_item_free(&it);
    }

    size_t base_done = sum->skipped + sum->failed;
    bool bar = o->progress > 0 || (o->progress < 0 && isatty(2));
    int nthreads = o->concurrency > 0 ? o->concurrency : 4;
    if ((size_t)nthreads > b.n_items) nthreads = (int)b.n_items;
    pthread_t *th = calloc(nthreads > 0 ? (size_t)nthreads : 1, sizeof *th);
    if (!th) {
        lsc_err_set(err, "out of memory");
        st = LSC_ERR_NOMEM;
        goto out;
    }
    int started = 0;
    b.active = (size_t)nthreads;
    for (; started < nthreads; started++)
        if (pthread_create(&th[started], NULL, worker_main, &b) != 0) break;
    if (started < nthreads) {
        pthread_mutex_lock(&b.mu);
        b.active -= (size_t)(nthreads - started);
        pthread_mutex_unlock(&b.mu);
        if (started == 0) {
            free(th);
            lsc_err_set(err, "cannot start worker threads: %s", strerror(errno));
            st = LSC_ERR_NOMEM;
            goto out;
        }
    }
    double every = bar ? 0.25 : (o->progress_every_s > 0 ? o->progress_every_s : 5.0);
    double last = lsc_now();
    for (;;) {
        pthread_mutex_lock(&b.mu);
        size_t active = b.active;
        pthread_mutex_unlock(&b.mu);
        if (active == 0) break;
        struct timespec nap = {0, 50 * 1000 * 1000};
        nanosleep(&nap, NULL);
        if (lsc_now() - last >= every) {
            progress(&b, base_done, sum->total, t0, bar, false);
            last = lsc_now();
        }
    }
    for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
    free(th);
    if (bar && sum->total > 0) progress(&b, base_done, sum->total, t0, true, true);

    sum->done = b.done - b.failed; /* succeeded in this run */
    sum->failed += b.failed;
    sum->tokens = b.tokens;
    sum->drafted = b.drafted;
    sum->accepted = b.accepted;
    sum->interrupted = interrupted && atomic_load(interrupted);
    sum->fatal = b.fatal[0] != '\0';
    if (sum->fatal) {
        lsc_err_set(err, "%s", b.fatal);
        st = LSC_ERR_RPC;
    } else if (sum->interrupted) {
        lsc_err_set(err, "interrupted");
        st = LSC_ERR_INTERRUPTED;
    }
    (void)invalid_written;
out:
    for (size_t i = 0; i < b.n_items; i++) lsc_batch_item_free(&b.items[i]);
    free(b.items);
    pthread_mutex_destroy(&b.mu);
    pthread_mutex_destroy(&b.write_mu);
out_early:
    sum->seconds = lsc_now() - t0;
    lsc_idset_free(&done);
    lsc_idset_free(&seen);
    close(fd);
    free(data);
    return st;
}
