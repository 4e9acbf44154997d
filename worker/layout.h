/* layout.h: how the model's layers are split into pipeline stages, one per
 * MPI rank. Stage 0 (rank 0) is the drafter: embedding, layers [0, E), final
 * norm + LM head. Stages 1..N-1 verify: contiguous ranges covering [E, L);
 * the last one also holds the final norm + LM head and decides acceptance.
 * Pure functions (no MPI), so they are testable alone. */
#ifndef LSW_LAYOUT_H
#define LSW_LAYOUT_H

#include "layerskip/ls_common.h"

#define LSW_MAX_STAGES 64

typedef struct lsw_layout {
    int n_stages;              /* = MPI ranks in the pipeline, >= 2 */
    int n_layers;              /* L */
    int l0[LSW_MAX_STAGES];    /* stage s holds layers [l0[s], l1[s]) */
    int l1[LSW_MAX_STAGES];
} lsw_layout;

/* E: the drafter stage's end */
static inline int lsw_layout_exit_layer(const lsw_layout *lo) { return lo->l1[0]; }

/* Parse "0-8,8-20,20-30" (stage ranges, half-open: "a-b" is [a, b)) for a
 * model of n_layers layers and n_ranks ranks, then lsw_layout_check it. */
ls_status lsw_layout_parse(const char *text, int n_layers, int n_ranks, lsw_layout *out, ls_err *err);
/* Stage 0 = [0, E); [E, L) split by layer count over n_ranks - 1 verifier
 * stages (earlier stages get the extra layer when it does not divide). */
ls_status lsw_layout_split(int exit_layer, int n_layers, int n_ranks, lsw_layout *out, ls_err *err);
/* Ranges contiguous, non-empty, covering [0, L); one stage per rank;
 * E (when > 0) must be the end of stage 0. Errors name the stage and the fix. */
ls_status lsw_layout_check(const lsw_layout *lo, int n_ranks, int exit_layer, ls_err *err);
/* "0-8,8-30" into buf (always NUL-terminated) */
void lsw_layout_format(const lsw_layout *lo, char *buf, size_t cap);
bool lsw_layout_equal(const lsw_layout *a, const lsw_layout *b);

#endif
