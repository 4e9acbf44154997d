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

/* Memory budgets: "--stages 2GiB,6GiB,6GiB" gives one budget per MPI rank
 * (rank 0 first) and lets lsw_layout_fit choose the layer ranges.
 * A budget is a decimal number (fraction allowed: "1.5G") followed by a unit
 * K, M, G or T (any case), optionally followed by "i" and/or "B": "512M",
 * "800MB", "6GiB", "2T". All units are binary multiples (K = 1024 bytes,
 * M = 1024^2, G = 1024^3, T = 1024^4), with or without the "i": memory is
 * sized in powers of two and one rule is easier to remember than two.
 * Fractions are rounded down to whole bytes; at most 9 decimals.
 * Spaces around an item and between number and unit are allowed.
 * A plain number without unit is not a budget. */

/* true when text is meant as a budget list, i.e. its first item is a number
 * followed by a letter ("6GiB,..."): the caller then parses it with
 * lsw_layout_parse_budgets, whose errors explain any mistake further on.
 * False for layer ranges ("0-8,8-30"), plain numbers, NULL and "". */
bool lsw_layout_is_budget(const char *text);
/* Parse exactly n_ranks budgets (each > 0) into budgets[0..n_ranks). Errors
 * quote the text and say what to write (wrong count, bad or missing unit,
 * zero, too large, empty item). */
ls_status lsw_layout_parse_budgets(const char *text, int n_ranks, uint64_t *budgets, ls_err *err);
/* Choose the layer ranges from memory budgets (byte counts come from the
 * caller; nothing here reads the model).
 *   layer_bytes[l] (n_layers entries): weights + KV cache of layer l;
 *   stage0_extra: what rank 0 holds besides its layers (embedding + final
 *   norm + LM head); last_extra: what the last rank holds besides its layers
 *   (final norm + LM head); budgets[r] (n_ranks entries): rank r's budget.
 * Stage 0 is [0, exit_layer) (exit_layer in [1, n_layers - 1]; it is chosen
 * for quality, never moved to save memory) and must fit budgets[0]. Stages
 * 1..n_ranks-1 split [exit_layer, n_layers) into contiguous non-empty ranges
 * minimising the largest bytes/budget over those stages (exact); among the
 * splits reaching that minimum, the one with the smallest sum of squared
 * bytes/budget (so no stage is loaded more than needed). Every stage must
 * fit its budget, else an error says which rank lacks how much (sizes like
 * "3.2 GiB") and what is missing in total. On success *out passes
 * lsw_layout_check(out, n_ranks, exit_layer); on error *out has no stages. */
ls_status lsw_layout_fit(int exit_layer, int n_layers, int n_ranks, const uint64_t *layer_bytes,
                         uint64_t stage0_extra, uint64_t last_extra, const uint64_t *budgets,
                         lsw_layout *out, ls_err *err);
/* b bytes as "512 B", "1.5 KiB", "3.2 GiB", "2.0 TiB" (one decimal, binary
 * units) into buf, always NUL-terminated when cap > 0. */
void lsw_format_bytes(uint64_t b, char *buf, size_t cap);

/* "0-8,8-30" into buf (always NUL-terminated) */
void lsw_layout_format(const lsw_layout *lo, char *buf, size_t cap);
bool lsw_layout_equal(const lsw_layout *a, const lsw_layout *b);

#endif
