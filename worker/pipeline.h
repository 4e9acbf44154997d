/* pipeline.h: the MPI pipeline as the daemon (rank 0) sees it.
 *
 * Rank 0 hosts the drafter stage (embedding, layers [0, E), final norm + LM
 * head); ranks 1..N-1 run lsw_worker_run (layerskip-worker) and verify. Call
 * MPI_Init_thread(MPI_THREAD_SERIALIZED or more) on every rank first.
 *
 *   lsw_pipeline_create   send the model path, layout and limits to every
 *                         worker, wait until each has loaded its layers and
 *                         checked it has the same model file and split
 *   lsw_generate          ls_generate's semantics (autoregressive: every
 *                         token through all stages; self_speculative:
 *                         rank 0 drafts ahead while later stages verify)
 *   lsw_pipeline_free     workers drop their stage and wait for a new one
 *   lsw_shutdown_workers  workers exit (their main returns)
 *
 * A stage that stops answering for timeout_s makes the call fail with a
 * message naming it, and the pipeline is then broken: every later call fails
 * at once (the daemon should report UNAVAILABLE and exit, docs/ARCHITECTURE.md
 * "Failure model"). Requests on different slots run concurrently (one
 * thread each: every slot has its own compute context and KV caches; the
 * link is shared under a lock, and each stage serves the chunks of all
 * slots in arrival order), so one request's drafting fills the gaps of
 * another's verification. One request per slot at a time. */
#ifndef LSW_PIPELINE_H
#define LSW_PIPELINE_H

#include <mpi.h>

#include "layout.h"
#include "layerskip/engine.h"
#include "layerskip/generate.h"

typedef struct lsw_options {
    const char *model_path;   /* required: every rank loads this path */
    const ls_model *model;    /* optional: rank 0's loaded copy of it (else loaded here) */
    const char *stages;       /* "0-8,8-20,20-30" (one range per rank), or NULL: split by exit_layer */
    int exit_layer;           /* E: with stages NULL, [E, L) is split over ranks 1..N-1 */
    int n_ctx;                /* positions per slot (default 2048) */
    int max_slots;            /* KV slots per stage (default 1) */
    int n_threads;            /* compute threads per rank (default 1) */
    int max_batch;            /* positions per message and forward call (default 64); >= k + 1 */
    int max_inflight;         /* chunks the drafter runs ahead of verdicts (default 4) */
    double timeout_s;         /* a stage silent this long is an error (default 10) */
    double startup_timeout_s; /* for loading the model on every rank (default 300) */
    bool fast_math;           /* default false: exact mode (greedy output equals ls_generate's) */
    const char *trace_prefix; /* spans to <prefix>.rank<R>.jsonl; NULL = off */
} lsw_options;

void lsw_options_default(lsw_options *o);

typedef struct lsw_pipeline lsw_pipeline;

ls_status lsw_pipeline_create(MPI_Comm comm, const lsw_options *o, lsw_pipeline **out, ls_err *err);
const lsw_layout *lsw_pipeline_layout(const lsw_pipeline *pl);
const ls_model *lsw_pipeline_model(const lsw_pipeline *pl);
/* process id of a worker rank as it reported it (same host: for tools and tests) */
int lsw_pipeline_worker_pid(const lsw_pipeline *pl, int rank);
/* the host name a worker rank reported */
const char *lsw_pipeline_worker_host(const lsw_pipeline *pl, int rank);
/* the worker's matmul kernels (ls_kernel_path() on its host, from its HELLO) */
const char *lsw_pipeline_worker_kernels(const lsw_pipeline *pl, int rank);
/* Workers on this host whose process no longer exists break the pipeline,
 * naming the stage (for a signal from mpirun, which stops the job when a
 * rank dies). True when the pipeline is broken (now or before). */
bool lsw_pipeline_probe(lsw_pipeline *pl);
/* Roll call: ping every worker and wait up to wait_s for a message from
 * each; the first one silent that long breaks the pipeline, naming its stage
 * (for a signal from the launcher, which also comes when a rank on another
 * host is gone). A stage busy with a chunk longer than wait_s counts as
 * silent: call it only when the job is ending anyway. True when the pipeline
 * is broken (now or before). */
bool lsw_pipeline_roll_call(lsw_pipeline *pl, double wait_s);
/* true after a stage failed or timed out; the message says which */
bool lsw_pipeline_broken(const lsw_pipeline *pl, const char **why);

/* Liveness: the first call starts a thread that pings each worker whose
 * last message is older than interval_s; a ping unanswered (and the stage
 * otherwise silent) for timeout_s breaks the pipeline, naming the stage.
 * This call itself never enters MPI: when that thread has been stuck for
 * timeout_s (OpenMPI can block a call while mpirun ends the job) it breaks
 * the pipeline, naming the stages silent as long. Returns the pipeline's
 * state (an error once broken). Call it every second or so from one thread
 * (the daemon's monitor), never after lsw_pipeline_free has begun. */
ls_status lsw_pipeline_check(lsw_pipeline *pl, double interval_s, ls_err *err);

/* ls_generate through the pipeline (strategies autoregressive and
 * self_speculative; early_exit runs on rank 0 alone). self_speculative needs
 * exit_layer == the drafter stage's end. Greedy output equals ls_generate's
 * token for token (exact mode). With sampling both follow the model's
 * distribution, but the draws differ from ls_generate's and depend on
 * timing. stats as ls_generate's; prefill_ms is rank 0's share of the
 * prompt (its layers and sending), decode_ms the rest. */
ls_status lsw_generate(lsw_pipeline *pl, int slot, const int32_t *prompt, int n_prompt, const ls_gen_params *p,
                       int32_t *out_tokens, ls_token_cb cb, void *user, ls_gen_stats *stats, ls_err *err);

/* workers go back to waiting for a pipeline (bounded by timeout_s) */
void lsw_pipeline_free(lsw_pipeline *pl);
/* workers exit; call after lsw_pipeline_free, or when create failed */
ls_status lsw_shutdown_workers(MPI_Comm comm, double timeout_s, ls_err *err);

/* ---- worker ranks ---- */
typedef struct lsw_worker_options {
    const char *model_path; /* NULL: the path rank 0 sends (override when mounted elsewhere) */
    const char *stages;     /* NULL, or a --stages string that must equal rank 0's split */
    int n_threads;          /* 0: rank 0's setting */
    bool verbose;
} lsw_worker_options;

/* The stage loop of ranks 1..N-1: wait for a pipeline, load the model, serve
 * chunks until CLOSE (then wait again) or SHUTDOWN (then return LS_OK).
 * Setup errors are reported to rank 0 and the rank waits again; a broken
 * link returns an error. */
ls_status lsw_worker_run(MPI_Comm comm, const lsw_worker_options *o, ls_err *err);

#endif
