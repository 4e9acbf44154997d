/* msg.h: the messages between pipeline stages (docs/ARCHITECTURE.md "Wire between
 * stages"). Every message is a header {type, slot, generation, first_pos,
 * count, ...} and a payload; the MPI tag is the type. Each type has its own
 * send helper taking that type's fields, so a wrong size or type cannot
 * compile, and every received message goes through lsw_msg_decode, which
 * checks its size, type, source and values against the limits agreed at
 * startup: a bad message is an error, never a crash.
 *
 * Sends are nonblocking (MPI_Isend of a private copy): a stage never waits
 * for its neighbour to take a message, and a neighbour that stops taking
 * them is noticed by lsw_net_progress's deadline instead of hanging. All
 * ranks must run the same build (LSW_PROTOCOL is checked at startup). */
#ifndef LSW_MSG_H
#define LSW_MSG_H

#include <mpi.h>
#include <stdint.h>

#include "layout.h"
#include "layerskip/sampler.h"
#include "layerskip/speculate.h"

#define LSW_PROTOCOL 4

typedef enum lsw_msg_type {
    LSW_MSG_CONFIG = 1,   /* rank 0 -> each worker: model, layout, limits */
    LSW_MSG_HELLO = 2,    /* worker -> rank 0: loaded (or why not) */
    LSW_MSG_START = 3,    /* along the chain: a request begins on a slot */
    LSW_MSG_CHUNK = 4,    /* along the chain: hidden states of positions */
    LSW_MSG_VERDICT = 5,  /* last stage -> rank 0: accepted count + next token */
    LSW_MSG_NOTICE = 6,   /* last stage -> middle stages: generations below are stale */
    LSW_MSG_ERROR = 7,    /* worker -> rank 0: a request failed on that stage */
    LSW_MSG_CLOSE = 8,    /* along the chain: pipeline freed, wait for a new CONFIG */
    LSW_MSG_SHUTDOWN = 9, /* along the chain: exit */
    LSW_MSG_PING = 10,    /* rank 0 -> a worker: are you alive? (next = sequence) */
    LSW_MSG_PONG = 11,    /* worker -> rank 0: the answer (next = the ping's sequence) */
} lsw_msg_type;
const char *lsw_msg_type_name(int type);

/* chunk flags */
#define LSW_CHUNK_PREFILL 1u     /* prompt positions: no verdict */
#define LSW_CHUNK_SPECULATIVE 2u /* tokens[1..] are drafts; see lsw_chunk_rejected */
#define LSW_CHUNK_DRAFT_Q 4u     /* sampling: each draft's distribution travels too
                                  * (lsw_draft_q, count - 1 of them), for the rule */

/* the distribution a sampled draft was drawn from (speculate.h's
 * LS_DRAFT_Q_CAP most likely tokens); fixed size on the wire */
typedef struct lsw_draft_q {
    int32_t n;
    int32_t ids[LS_DRAFT_Q_CAP];
    float p[LS_DRAFT_Q_CAP];
} lsw_draft_q;

typedef struct lsw_hdr {
    int32_t type;
    int32_t slot;
    int32_t generation; /* per slot, only grows; older chunks are stale */
    int32_t first_pos;  /* position of the first state (chunk, verdict) */
    int32_t count;      /* chunk: positions; error/other: 0 */
    int32_t flags;      /* chunk: LSW_CHUNK_* */
    int32_t next;       /* chunk: token the drafter assumed after its last draft (-1 none);
                         * verdict: the full model's next token; notice: the new floor;
                         * ping/pong: sequence number */
    int32_t accepted;   /* verdict: drafts accepted; speculative chunk: positions the last stage's
                         * head takes in its first batch (ls_draft_chunk.head_batch) */
    int32_t epoch;      /* which pipeline (CONFIG) this belongs to: messages of an
                         * earlier pipeline still on the wire are dropped */
} lsw_hdr;

typedef struct lsw_config_msg {
    int32_t protocol;
    int32_t n_ctx, max_slots, max_batch, n_threads, exact;
    double timeout_s;
    lsw_layout layout;
    /* the model as rank 0 sees it: workers compare their own */
    uint64_t fingerprint;
    int32_t n_layers, dim, n_vocab;
    char model_path[1024];
    char trace_prefix[512]; /* "" = no trace */
} lsw_config_msg;

typedef struct lsw_hello_msg {
    int32_t protocol;
    int32_t status;        /* ls_status of the worker's setup */
    int32_t pid;
    uint64_t fingerprint;
    char host[64];         /* gethostname, printable ASCII */
    char kernels[32];      /* ls_kernel_path(), printable ASCII */
    char msg[512];         /* why setup failed */
} lsw_hello_msg;

typedef struct lsw_start_msg {
    int32_t strategy;      /* ls_strategy */
    int32_t num_speculations;
    ls_sampling sampling;
} lsw_start_msg;

/* what a receiver checks values against */
typedef struct lsw_limits {
    int32_t dim, n_vocab, n_ctx, max_slots, max_batch;
} lsw_limits;

/* a decoded message; pointers are views into the receive buffer, valid
 * until the next receive */
typedef struct lsw_msg {
    int source;
    lsw_hdr h;
    const int32_t *tokens;     /* chunk: (count) */
    const float *states;       /* chunk: (count, dim) */
    const lsw_draft_q *draft_q; /* chunk with LSW_CHUNK_DRAFT_Q: (count - 1), else NULL */
    lsw_config_msg config;
    lsw_hello_msg hello;
    lsw_start_msg start;
    char error[512];
} lsw_msg;

/* Decode buf[0..len) received with MPI tag `tag`; lim NULL before CONFIG
 * (then only CONFIG, HELLO, CLOSE and SHUTDOWN are valid). Pure: no MPI. */
ls_status lsw_msg_decode(const void *buf, size_t len, int tag, const lsw_limits *lim, lsw_msg *out, ls_err *err);

/* ---- transport ---- */
typedef struct lsw_pending lsw_pending;

typedef struct lsw_net {
    MPI_Comm comm;
    int rank, size;
    int32_t epoch;            /* stamped on every message sent */
    double timeout_s;         /* how long a peer may leave a message untaken */
    const lsw_layout *layout; /* for naming stages in errors (may be NULL) */
    bool have_limits;
    lsw_limits lim;
    lsw_pending *pending;     /* sends not yet taken */
    void *rbuf;               /* receive buffer */
    size_t rcap;
} lsw_net;

void lsw_net_init(lsw_net *net, MPI_Comm comm, double timeout_s);
void lsw_net_free(lsw_net *net);
void lsw_net_set_limits(lsw_net *net, const lsw_limits *lim);
/* "stage 1 (rank 1, layers 8-30)" */
void lsw_stage_name(const lsw_net *net, int rank, char *buf, size_t cap);
/* complete finished sends; error naming the stage when one has waited past
 * the timeout */
ls_status lsw_net_progress(lsw_net *net, ls_err *err);
/* wait (up to the timeout) until every send was taken */
ls_status lsw_net_flush(lsw_net *net, ls_err *err);
/* one nonblocking look: *got = false when nothing is waiting (data messages
 * of another epoch than net->epoch are taken and dropped) */
ls_status lsw_recv_poll(lsw_net *net, lsw_msg *out, bool *got, ls_err *err);

ls_status lsw_send_config(lsw_net *net, int dest, const lsw_config_msg *c, ls_err *err);
ls_status lsw_send_hello(lsw_net *net, int dest, const lsw_hello_msg *h, ls_err *err);
ls_status lsw_send_start(lsw_net *net, int dest, int32_t slot, int32_t generation, const lsw_start_msg *s,
                         ls_err *err);
/* states (count, dim); draft_q (count - 1) only with LSW_CHUNK_DRAFT_Q; head_batch: see lsw_hdr.accepted */
ls_status lsw_send_chunk(lsw_net *net, int dest, int32_t slot, int32_t generation, int32_t first_pos,
                         int32_t count, uint32_t flags, int32_t assumed_next, int32_t head_batch,
                         const int32_t *tokens, const float *states, const lsw_draft_q *draft_q, ls_err *err);
ls_status lsw_send_verdict(lsw_net *net, int dest, int32_t slot, int32_t generation, int32_t first_pos,
                           int32_t accepted, int32_t next, ls_err *err);
ls_status lsw_send_notice(lsw_net *net, int dest, int32_t slot, int32_t generation_floor, ls_err *err);
ls_status lsw_send_error(lsw_net *net, int dest, int32_t slot, int32_t generation, const char *msg, ls_err *err);
ls_status lsw_send_close(lsw_net *net, int dest, ls_err *err);
ls_status lsw_send_ping(lsw_net *net, int dest, int32_t seq, ls_err *err);
ls_status lsw_send_pong(lsw_net *net, int dest, int32_t seq, ls_err *err);
ls_status lsw_send_shutdown(lsw_net *net, int dest, ls_err *err);

/* The rule both the drafter and the last stage apply to a speculative
 * chunk's verdict: when it holds, the drafter's later chunks are wrong and
 * the slot's generation goes up by one. */
static inline bool lsw_chunk_rejected(int32_t n_drafts, int32_t assumed_next, int32_t accepted, int32_t next) {
    return accepted < n_drafts || next != assumed_next;
}

/* this host's name, printable ASCII only (others become '?'), never empty */
void lsw_hostname(char *buf, size_t cap);

/* Short sleeps of the polling loops must be short: the default timer slack
 * (50 us) would add that much latency to every hop. Per thread. */
void lsw_precise_sleeps(void);

/* microseconds of the wall clock (comparable between ranks of one host) */
int64_t lsw_now_us(void);

#endif
