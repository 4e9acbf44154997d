/* sched.h: session slots and the request queue of layerskipd.
 *
 * Jobs come from one bounded FIFO queue and run on --max-sessions slots,
 * within a KV budget (positions, --kv-budget): a job leaves the queue when a
 * slot is free and its KV need fits what the running ones leave. In one
 * process a single step-loop thread runs every slot's job together on one
 * ls_ctx (ls_gen_step: one forward pass per step for all; --threads is the
 * process's threads); through the MPI pipeline each slot has a worker
 * thread running the pipeline's generate. A job is one generation request:
 * stop sequences and stop token ids are applied, tokens turned into
 * whole-character text and handed to the job's sink as it becomes final.
 * Cancelling a job (client cancel, deadline, shutdown) sets its atomic
 * flag, which the step loop checks every step (also during the prompt) and
 * the token callback every token, or takes it out of the queue. No gRPC in
 * here. */
#ifndef LSD_SCHED_H
#define LSD_SCHED_H

#include "layerskip/engine.h"
#include "layerskip/generate.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LSD_MAX_STOPS 16          /* stop strings per request */
#define LSD_MAX_STOP_BYTES 256    /* bytes per stop string */
#define LSD_MAX_STOP_IDS 1024     /* stop token ids per request */
#define LSD_REQUEST_ID_MAX 128    /* bytes of a request id, NUL included */
#define LSD_PREFILL_CHUNK 64      /* default prompt slice per step: a long prompt delays the others by one slice */

typedef struct lsd_metrics lsd_metrics;
typedef struct lsd_job lsd_job;

/* new final text (whole UTF-8 characters) and the ids generated since the
 * previous call; called on the worker thread, must not block */
typedef void (*lsd_job_chunk_fn)(void *user, lsd_job *job, const char *text, size_t len,
                                 const int32_t *ids, int n_ids);
/* called exactly once per accepted job, on the worker thread (or on the
 * thread that cancels a queued job); job->code tells how it ended */
typedef void (*lsd_job_done_fn)(void *user, lsd_job *job);

/* proto FinishReason values */
enum { LSD_FINISH_UNSPECIFIED = 0, LSD_FINISH_LENGTH = 1, LSD_FINISH_EOS = 2, LSD_FINISH_STOP = 3,
       LSD_FINISH_CONTEXT = 4 };

struct lsd_job {
    /* the request, filled by lsd_service_prepare_generate */
    char request_id[LSD_REQUEST_ID_MAX];
    int32_t *prompt;            /* (n_prompt) */
    int n_prompt;
    ls_gen_params params;       /* n_predict, sampling (seed chosen), strategy, E, k, draft_min_p */
    char *stops[LSD_MAX_STOPS]; /* NUL-terminated, non-empty */
    size_t stop_len[LSD_MAX_STOPS];
    int n_stops;
    int32_t *stop_ids;          /* (n_stop_ids) */
    int n_stop_ids;
    bool until_context_full;    /* n_predict is the room left in the context (a clamped default) */

    /* the sink, set by the server before submitting */
    lsd_job_chunk_fn on_chunk;  /* NULL: no streaming, only on_done */
    lsd_job_done_fn on_done;
    void *user;
    double t_arrival;           /* ls_time_ms() when the call arrived */
    atomic_bool cancel;
    atomic_int cancel_code;     /* gRPC status to report when cancelled */

    /* the result, filled by the worker */
    int code;                   /* gRPC status number; 0 = OK */
    char message[512];          /* when code != 0 */
    char *text;                 /* (text_len) whole generated text, NUL-terminated, stop match cut */
    size_t text_len, text_cap;
    size_t text_sent;           /* text[0..text_sent) went to on_chunk */
    int32_t *ids;               /* (n_ids) generated ids (a matched stop token id excluded) */
    int n_ids, ids_cap;
    int ids_sent;
    int finish_reason;          /* LSD_FINISH_* */
    ls_gen_stats gen;
    double queue_ms, ttft_ms, total_ms;

    /* queue link, owned by the scheduler */
    lsd_job *next;
    bool queued;
};

/* KV positions a job needs: its prompt, the tokens it may generate and
 * one more, at most n_ctx */
int64_t lsd_job_kv_need(const lsd_job *j, int n_ctx);

/* --kv-budget TEXT as positions: a plain number counts positions ("16384"),
 * a size ("2GiB", ls_parse_size) is divided by bytes_per_pos; "" = 0 (no
 * budget). Returns 0, or -1 with a message naming --kv-budget in err (a
 * bad number or size, or a budget below one context of n_ctx positions). */
int lsd_kv_budget_parse(const char *text, int64_t bytes_per_pos, int n_ctx, int64_t *out, char *err, size_t err_len);

/* zero a job (before lsd_service fills it) and free what it owns */
void lsd_job_init(lsd_job *j);
void lsd_job_clear(lsd_job *j);

/* Where generations run when not on the slot's own ls_ctx/ls_kv: the MPI
 * pipeline (lsw_generate) in main.c. Same contract as ls_generate, plus the
 * slot index. An LS_ERR_IO result means a stage was lost: the job ends
 * UNAVAILABLE with the message (which names the stage). */
typedef ls_status (*lsd_generate_fn)(void *user, int slot, const int32_t *prompt, int n_prompt,
                                     const ls_gen_params *p, int32_t *out, ls_token_cb cb, void *cb_user,
                                     ls_gen_stats *stats, ls_err *err);

typedef struct lsd_sched_opts {
    const ls_model *model;
    lsd_generate_fn generate; /* NULL: ls_generate on per-slot contexts and caches */
    void *generate_user;
    int n_slots;      /* --max-sessions */
    int n_threads;    /* --threads per slot */
    int n_ctx;        /* KV positions per slot */
    int max_batch;    /* positions per forward call; >= LS_MAX_SPECULATIONS + 1 */
    int max_queue;    /* jobs that may wait for a slot */
    int prefill_chunk; /* prompt tokens a job runs per step (0: LSD_PREFILL_CHUNK) */
    /* KV positions all running jobs may hold together (--kv-budget); 0 =
     * no limit beyond the slots. A job reserves lsd_job_kv_need positions
     * when it leaves the queue; the queue's first job waits (FIFO) until
     * they fit. Must be >= n_ctx. In one process each job's cache is made
     * at that size when it starts and freed when it ends. */
    int64_t kv_budget;
    int64_t kv_bytes_per_pos; /* for the metrics: bytes of one position in every layer */
    lsd_metrics *metrics; /* may be NULL */
} lsd_sched_opts;

typedef struct lsd_sched lsd_sched;

/* 0, or -1 with a message in err (out of memory for a slot's cache, ...) */
int lsd_sched_create(const lsd_sched_opts *o, lsd_sched **out, char *err, size_t err_len);
/* cancels every job (on_done with UNAVAILABLE) and joins the workers */
void lsd_sched_free(lsd_sched *s);

typedef enum lsd_submit_result {
    LSD_SUBMIT_OK = 0,
    LSD_SUBMIT_FULL = -1,   /* max_queue jobs already wait: *n_waiting tells how many */
    LSD_SUBMIT_CLOSED = -2, /* the scheduler is stopping */
} lsd_submit_result;
/* on LSD_SUBMIT_OK the scheduler owns the job until on_done */
lsd_submit_result lsd_sched_submit(lsd_sched *s, lsd_job *job, int *n_waiting);
/* Stop a job: a queued one leaves the queue and gets on_done (here, on
 * this thread, with code); a running one stops at its next token. Safe on a
 * job that already finished (the job's memory must still be valid). */
void lsd_sched_cancel(lsd_sched *s, lsd_job *job, int code);
/* cancel everything queued or running with code; new submits are refused */
void lsd_sched_cancel_all(lsd_sched *s, int code);
/* the same, with msg as the queued jobs' message instead of the default
 * ("server is shutting down"): why the server cannot run them */
void lsd_sched_fail_all(lsd_sched *s, int code, const char *msg);
/* jobs queued + running */
int lsd_sched_active(lsd_sched *s);
/* jobs waiting in the queue */
int lsd_sched_queued(lsd_sched *s);

#endif
