/* speculate.h: the parts of self-speculative decoding that ls_generate and
 * the MPI pipeline share (docs/LAYERSKIP.md, docs/ADAPTER.md):
 *
 *   draft sources   exit (layers [0, E) + the model's own final norm and
 *                   head), adapter (layers [0, E) + a small trained block +
 *                   the model's head), lookup (n-gram copies from the prompt
 *                   and the text so far: no model compute), auto (lookup when
 *                   it has a match, else the adapter if one is loaded, else
 *                   exit)
 *   draft head      drafts may score only the N most frequent tokens (the
 *                   adapter file's frequency table); verification always
 *                   uses the full head, so output does not change
 *   the k policy    --num-speculations auto: k per round from the running
 *                   acceptance and the measured cost of drafts and of
 *                   verification passes, k = 0 (a plain step) included
 *   the rule        ls_spec_verify: greedy = longest prefix equal to the full
 *                   model's choice plus one token; sampling = speculative
 *                   sampling against the draft distribution the draft was
 *                   drawn from (a point mass for lookup drafts)
 *
 * One ls_drafter per running request (it holds the adapter's KV cache and the
 * policy's running estimates); ls_spec_verify is stateless. */
#ifndef LS_SPECULATE_H
#define LS_SPECULATE_H

#include "layerskip/engine.h"
#include "layerskip/sampler.h"

struct ls_gen_params;

#define LS_MAX_SPECULATIONS 32 /* drafts per round at most */
/* "--num-speculations auto": the bound on the k the policy picks each round */
#define LS_AUTO_SPECULATIONS_MAX 8

typedef enum ls_draft_source {
    LS_DRAFT_AUTO = 0,    /* lookup when it matches, else adapter if loaded, else exit */
    LS_DRAFT_EXIT = 1,
    LS_DRAFT_ADAPTER = 2,
    LS_DRAFT_LOOKUP = 3,
} ls_draft_source;
#define LS_N_DRAFT_SOURCES 4 /* statistics are indexed by source; [LS_DRAFT_AUTO] stays 0 */
/* "auto", "exit", "adapter", "lookup" */
const char *ls_draft_source_name(ls_draft_source s);
/* the inverse; the error lists the valid names */
ls_status ls_draft_source_parse(const char *name, ls_draft_source *out, ls_err *err);

/* ---- the draft adapter: a sidecar GGUF (docs/ADAPTER.md) ---- */
typedef struct ls_adapter ls_adapter;
/* Load an adapter for model m. Refused, with a message naming the mismatch:
 * a file that is not an adapter, a corrupt or truncated one, one made for a
 * model of another architecture, shape or vocabulary, tensors of the wrong
 * shape or type, an exit layer outside [1, L-1]. The adapter keeps its own
 * copy of what it needs from m (the draft head rows): free it before m. */
ls_status ls_adapter_load(const char *path, const ls_model *m, ls_adapter **out, ls_err *err);
void ls_adapter_free(ls_adapter *a);
int ls_adapter_exit_layer(const ls_adapter *a);    /* E the adapter was trained after */
bool ls_adapter_has_block(const ls_adapter *a);    /* false: a frequency table only */
int32_t ls_adapter_vocab_len(const ls_adapter *a); /* entries of its frequency table (0: none) */
const char *ls_adapter_path(const ls_adapter *a);

/* sampled drafts: a draft distribution keeps its LS_DRAFT_Q_CAP most likely
 * tokens (renormalised) and the draft is drawn from that, so the rule stays
 * exact while a chunk carries little (the pipeline sends it) */
#define LS_DRAFT_Q_CAP 64

/* one round's drafts */
typedef struct ls_draft_chunk {
    int32_t m;                               /* drafts, 0..k */
    int32_t k;                               /* the most drafts this round allowed (auto: the policy's choice) */
    ls_draft_source source;                  /* EXIT, ADAPTER or LOOKUP (EXIT when m = 0 and nothing drafted) */
    int32_t tokens[LS_MAX_SPECULATIONS + 1]; /* the newest confirmed token, then the drafts */
    int32_t guess;                           /* asked for: the drafter's token after the last draft, -1 none */
    double draft_ms;                         /* time spent drafting (layers [0, E) of every position included) */
    bool abandoned;                          /* the hook stopped the drafting: the chunk is not to be used */
    int32_t head_batch;                      /* verification: positions the full head takes in its first
                                              * batch (about the rows expected to be needed; >= 1) */
    /* sampling only: the distribution draft i+1 was drawn from */
    int32_t q_n[LS_MAX_SPECULATIONS];
    int32_t q_ids[LS_MAX_SPECULATIONS][LS_DRAFT_Q_CAP];
    float q_p[LS_MAX_SPECULATIONS][LS_DRAFT_Q_CAP];
} ls_draft_chunk;

/* ---- drafting (ls_generate and the pipeline's rank 0) ---- */
typedef struct ls_drafter ls_drafter;
/* For one request on context c with KV cache kv (holding at least layers
 * [0, E)); p is checked (ls_gen_params_check) and must outlive the drafter.
 * n_ctx positions at most. */
ls_status ls_drafter_create(ls_ctx *c, ls_kv *kv, const struct ls_gen_params *p, int n_ctx, ls_drafter **out,
                            ls_err *err);
void ls_drafter_free(ls_drafter *d);
/* Positions [pos, pos+n) went through layers [0, E) outside the drafter
 * (prompt processing): h_exit (n, dim) are their layer-E states. The
 * adapter's cache takes them (no-op without an adapter block). */
/* false: ls_drafter_feed does nothing (no adapter block in use), so prompt
 * processing may run all layers in one pass */
bool ls_drafter_needs_states(const ls_drafter *d);
ls_status ls_drafter_feed(ls_drafter *d, int pos, int n, const float *h_exit, ls_err *err);
/* Draft one chunk starting with token tok0 at position pos (the KV cache
 * holds [0, pos) for layers [0, E)). hist: the token at each position, with
 * room for pos + k_max + 2 entries (the drafts are written into it from
 * pos + 1; penalties read it). At most k_max drafts (the caller's bound:
 * tokens left, context left), fewer when the policy or min-p says so, or an
 * end-of-generation token is drafted. Writes layers [0, E) of every chunk
 * position into kv and their layer-E states into h_exit ((m+1, dim): what
 * verification continues from). want_guess: also predict the token after
 * the last draft (into ch->guess; -1 when the chunk ends in an
 * end-of-generation token or no prediction is made). */
ls_status ls_drafter_draft(ls_drafter *d, ls_rng *rng, int pos, int32_t tok0, int k_max, bool want_guess,
                           int32_t *hist, float *h_exit, ls_draft_chunk *ch, ls_err *err);
/* Called after layers [0, E) of each chunk position (the pipeline moves its
 * link along and looks for a verdict that makes the chunk stale: it sets
 * *abandon, and ls_drafter_draft returns at once with ch->abandoned). */
void ls_drafter_set_hook(ls_drafter *d, ls_status (*hook)(void *user, bool *abandon, ls_err *err), void *user);
/* After a verdict: `accepted` of ch's drafts were accepted; verify_ms is the
 * time the verification took (< 0: unknown). Updates the statistics the
 * policy uses. */
void ls_drafter_observe(ls_drafter *d, const ls_draft_chunk *ch, int accepted, double verify_ms);
/* the cache was cut back to len positions (a rejection): the drafter's own
 * state follows */
void ls_drafter_rollback(ls_drafter *d, int len);

/* a round's counts into the statistics (drafted, accepted, per source, by k) */
struct ls_gen_stats;
void ls_spec_stats_add(struct ls_gen_stats *s, const ls_draft_chunk *ch, int accepted);

/* ---- the rule (ls_generate and the pipeline's last stage) ---- */
typedef struct ls_spec_scratch {
    float *logits;   /* (LS_MAX_SPECULATIONS + 1, n_vocab): a batch of head rows */
    float *dense;    /* (n_vocab) all zero between calls */
    ls_dist pf;
} ls_spec_scratch;
ls_status ls_spec_scratch_init(ls_spec_scratch *s, int32_t n_vocab, ls_err *err);
void ls_spec_scratch_free(ls_spec_scratch *s);
/* Decide chunk ch at positions p0..p0+m: rows (m+1, dim) are the model's
 * last-layer outputs there. The full head runs on ch->head_batch positions
 * at once (one pass over its weights), then on the rest one at a time up to
 * the first rejection. hist holds the token at each position (the
 * drafts at p0+1..). *accepted = drafts accepted, *next = the token after
 * them (a correction or, all accepted, the bonus token). */
ls_status ls_spec_verify(ls_ctx *c, const ls_sampling *s, const ls_draft_chunk *ch, int p0, const float *rows,
                         const int32_t *hist, ls_rng *rng, ls_spec_scratch *sc, int32_t *accepted, int32_t *next,
                         ls_err *err);

#endif
