/* layout.c: parsing and validating the stage split (layout.h). The text
 * form is what operators type (--stages), so every error quotes it. */
#include "layout.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

ls_status lsw_layout_check(const lsw_layout *lo, int n_ranks, int exit_layer, ls_err *err) {
    const int L = lo->n_layers;
    if (L < 2)
        return ls_err_set(err, LS_ERR_INVALID, "a pipeline needs a model of at least 2 layers (this one has %d)", L);
    if (lo->n_stages < 2)
        return ls_err_set(err, LS_ERR_INVALID,
                          "the pipeline has %d stage(s): it needs at least 2 (a drafter on rank 0 and one verifier); "
                          "start more ranks (mpirun -np 2 or more) or run without MPI", lo->n_stages);
    if (lo->n_stages > LSW_MAX_STAGES)
        return ls_err_set(err, LS_ERR_INVALID, "the pipeline has %d stages: at most %d are supported",
                          lo->n_stages, LSW_MAX_STAGES);
    if (n_ranks > 0 && lo->n_stages != n_ranks)
        return ls_err_set(err, LS_ERR_INVALID,
                          "the layout has %d stages but %d MPI ranks were started: give one range per rank "
                          "(or start mpirun with -np %d in all)", lo->n_stages, n_ranks, lo->n_stages);
    if (lo->l0[0] != 0)
        return ls_err_set(err, LS_ERR_INVALID, "stage 0 starts at layer %d: it must start at layer 0 (the drafter "
                          "holds the embedding and layers [0, E))", lo->l0[0]);
    for (int s = 0; s < lo->n_stages; s++) {
        if (lo->l1[s] <= lo->l0[s])
            return ls_err_set(err, LS_ERR_INVALID, "stage %d range %d-%d is empty: each stage needs at least one layer",
                              s, lo->l0[s], lo->l1[s]);
        if (s > 0 && lo->l0[s] != lo->l1[s - 1])
            return ls_err_set(err, LS_ERR_INVALID,
                              "stage %d starts at layer %d but stage %d ends at layer %d: ranges must be contiguous "
                              "(write \"%d-%d\" for stage %d)", s, lo->l0[s], s - 1, lo->l1[s - 1],
                              lo->l1[s - 1], lo->l1[s], s);
    }
    if (lo->l1[lo->n_stages - 1] != L)
        return ls_err_set(err, LS_ERR_INVALID, "the last stage ends at layer %d but the model has %d layers: the ranges "
                          "must cover [0, %d)", lo->l1[lo->n_stages - 1], L, L);
    if (exit_layer > 0 && lo->l1[0] != exit_layer)
        return ls_err_set(err, LS_ERR_INVALID, "stage 0 ends at layer %d but the exit layer is %d: the drafter stage "
                          "must be exactly [0, exit_layer) (write \"0-%d,...\" or change the exit layer)",
                          lo->l1[0], exit_layer, exit_layer);
    return LS_OK;
}

/* a decimal integer in [0, 100000] at *p; advances p */
static bool parse_int(const char **p, int *out) {
    if (**p < '0' || **p > '9') return false;
    char *end;
    errno = 0;
    long v = strtol(*p, &end, 10);
    if (errno || v > 100000) return false;
    *out = (int)v;
    *p = end;
    return true;
}

ls_status lsw_layout_parse(const char *text, int n_layers, int n_ranks, lsw_layout *out, ls_err *err) {
    memset(out, 0, sizeof *out);
    out->n_layers = n_layers;
    if (!text || !*text)
        return ls_err_set(err, LS_ERR_INVALID, "empty --stages: give one layer range per rank, like \"0-8,8-20,20-30\"");
    const char *p = text;
    for (;;) {
        int a, b;
        if (out->n_stages == LSW_MAX_STAGES)
            return ls_err_set(err, LS_ERR_INVALID, "--stages \"%.200s\" has more than %d ranges", text, LSW_MAX_STAGES);
        if (!parse_int(&p, &a) || *p++ != '-' || !parse_int(&p, &b))
            return ls_err_set(err, LS_ERR_INVALID,
                              "--stages \"%.200s\": range %d is not \"first-end\" (half-open layer ranges separated "
                              "by commas, like \"0-8,8-20,20-30\")", text, out->n_stages);
        if (b > n_layers)
            return ls_err_set(err, LS_ERR_INVALID, "--stages \"%.200s\": range %d-%d goes past the model's %d layers",
                              text, a, b, n_layers);
        out->l0[out->n_stages] = a;
        out->l1[out->n_stages] = b;
        out->n_stages++;
        if (*p == '\0') break;
        if (*p++ != ',')
            return ls_err_set(err, LS_ERR_INVALID, "--stages \"%.200s\": unexpected character after range %d "
                              "(ranges are separated by commas, like \"0-8,8-20,20-30\")", text, out->n_stages - 1);
    }
    ls_status st = lsw_layout_check(out, n_ranks, 0, err);
    if (st != LS_OK) {
        char msg[sizeof err->msg];
        snprintf(msg, sizeof msg, "%s", err ? err->msg : "");
        return ls_err_set(err, st, "--stages \"%.200s\": %s", text, msg);
    }
    return LS_OK;
}

ls_status lsw_layout_split(int exit_layer, int n_layers, int n_ranks, lsw_layout *out, ls_err *err) {
    memset(out, 0, sizeof *out);
    out->n_layers = n_layers;
    if (n_ranks < 2 || n_ranks > LSW_MAX_STAGES)
        return ls_err_set(err, LS_ERR_INVALID, "a pipeline needs between 2 and %d MPI ranks (%d were started)",
                          LSW_MAX_STAGES, n_ranks);
    if (exit_layer < 1 || exit_layer > n_layers - 1)
        return ls_err_set(err, LS_ERR_INVALID, "exit layer %d is out of range [1, %d] for this %d-layer model",
                          exit_layer, n_layers - 1, n_layers);
    const int n_verify = n_ranks - 1, rest = n_layers - exit_layer;
    if (rest < n_verify)
        return ls_err_set(err, LS_ERR_INVALID, "%d verifier ranks cannot share the %d layers [%d, %d): start at most "
                          "%d ranks or lower the exit layer", n_verify, rest, exit_layer, n_layers, rest + 1);
    out->n_stages = n_ranks;
    out->l0[0] = 0;
    out->l1[0] = exit_layer;
    int at = exit_layer;
    for (int s = 1; s < n_ranks; s++) {
        int n = rest / n_verify + (s - 1 < rest % n_verify ? 1 : 0);
        out->l0[s] = at;
        out->l1[s] = at + n;
        at += n;
    }
    return lsw_layout_check(out, n_ranks, exit_layer, err);
}

void lsw_layout_format(const lsw_layout *lo, char *buf, size_t cap) {
    size_t at = 0;
    if (cap) buf[0] = '\0';
    for (int s = 0; s < lo->n_stages && at < cap; s++) {
        int w = snprintf(buf + at, cap - at, "%s%d-%d", s ? "," : "", lo->l0[s], lo->l1[s]);
        if (w < 0) break;
        at += (size_t)w;
    }
}

bool lsw_layout_equal(const lsw_layout *a, const lsw_layout *b) {
    if (a->n_stages != b->n_stages || a->n_layers != b->n_layers) return false;
    for (int s = 0; s < a->n_stages; s++)
        if (a->l0[s] != b->l0[s] || a->l1[s] != b->l1[s]) return false;
    return true;
}

/* ---- memory budgets (--stages 2GiB,6GiB,6GiB) ---- */

#define BUDGET_HELP "write one size per rank like \"2GiB,6GiB,6GiB\" (" LS_SIZE_HELP ")"

void lsw_format_bytes(uint64_t b, char *buf, size_t cap) {
    static const char *const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    if (!buf || !cap) return;
    if (b < 1024) {
        snprintf(buf, cap, "%u B", (unsigned)b);
        return;
    }
    double v = (double)b / 1024.0;
    int u = 0;
    while (v >= 1023.95 && u < 5) { /* so that 1023.97 KiB reads "1.0 MiB", not "1024.0 KiB" */
        v /= 1024.0;
        u++;
    }
    snprintf(buf, cap, "%.1f %s", v, units[u]);
}

/* a and b in human units; when they read the same, with the exact counts */
static void format_pair(uint64_t a, uint64_t b, char *sa, char *sb, size_t cap) {
    lsw_format_bytes(a, sa, cap);
    lsw_format_bytes(b, sb, cap);
    if (strcmp(sa, sb) == 0) {
        size_t na = strlen(sa), nb = strlen(sb);
        snprintf(sa + na, cap - na, " (%" PRIu64 " bytes)", a);
        snprintf(sb + nb, cap - nb, " (%" PRIu64 " bytes)", b);
    }
}

bool lsw_layout_is_budget(const char *text) {
    if (!text) return false;
    const char *p = text;
    bool digit = false;
    while (*p == ' ') p++;
    for (; (*p >= '0' && *p <= '9') || *p == '.'; p++)
        if (*p != '.') digit = true;
    while (*p == ' ') p++;
    return digit && isalpha((unsigned char)*p);
}

/* budget item idx, the text [b, e), into *out */
static ls_status parse_budget_item(const char *text, int idx, const char *b, const char *e, uint64_t *out,
                                   ls_err *err) {
    while (b < e && *b == ' ') b++;
    while (e > b && e[-1] == ' ') e--;
    const int n = (int)(e - b > 60 ? 60 : e - b);
    if (b == e)
        return ls_err_set(err, LS_ERR_INVALID, "--stages \"%.200s\": budget %d is empty: %s", text, idx, BUDGET_HELP);
    char why[96];
    if (!ls_parse_size(b, (size_t)(e - b), out, why, sizeof why))
        return ls_err_set(err, LS_ERR_INVALID, "--stages \"%.200s\": budget %d \"%.*s\" %s: %s", text, idx, n, b, why,
                          BUDGET_HELP);
    return LS_OK;
}

ls_status lsw_layout_parse_budgets(const char *text, int n_ranks, uint64_t *budgets, ls_err *err) {
    if (n_ranks < 2 || n_ranks > LSW_MAX_STAGES)
        return ls_err_set(err, LS_ERR_INVALID, "a pipeline needs between 2 and %d MPI ranks (%d were started)",
                          LSW_MAX_STAGES, n_ranks);
    if (!budgets) return ls_err_set(err, LS_ERR_INVALID, "lsw_layout_parse_budgets: no output array");
    if (!text || !*text)
        return ls_err_set(err, LS_ERR_INVALID, "empty --stages: give one memory budget per rank, like \"2GiB,6GiB\" "
                          "for 2 ranks, or one layer range per rank, like \"0-8,8-30\"");
    uint64_t v[LSW_MAX_STAGES];
    int count = 0;
    for (const char *p = text;;) {
        const char *c = strchr(p, ',');
        const char *e = c ? c : p + strlen(p);
        if (count == LSW_MAX_STAGES)
            return ls_err_set(err, LS_ERR_INVALID, "--stages \"%.200s\" has more than %d budgets: give one per rank "
                              "(%d ranks were started)", text, LSW_MAX_STAGES, n_ranks);
        ls_status st = parse_budget_item(text, count, p, e, &v[count], err);
        if (st != LS_OK) return st;
        count++;
        if (!c) break;
        p = c + 1;
    }
    if (count != n_ranks)
        return ls_err_set(err, LS_ERR_INVALID, "--stages \"%.200s\" gives %d budget(s) but %d MPI ranks were started: "
                          "give one budget per rank, rank 0 (the drafter) first (or start mpirun with -np %d)",
                          text, count, n_ranks, count);
    memcpy(budgets, v, (size_t)count * sizeof v[0]);
    return LS_OK;
}

/* exact comparison of byte/budget ratios: num / den with den > 0 */
typedef struct ratio {
    uint64_t num, den;
} ratio;

/* a * b as 128 bits, portable C11 */
static void mul_u64(uint64_t a, uint64_t b, uint64_t *hi, uint64_t *lo) {
    const uint64_t m = 0xffffffffu;
    const uint64_t p00 = (a & m) * (b & m), p01 = (a & m) * (b >> 32);
    const uint64_t p10 = (a >> 32) * (b & m), p11 = (a >> 32) * (b >> 32);
    const uint64_t mid = (p00 >> 32) + (p01 & m) + (p10 & m);
    *lo = (mid << 32) | (p00 & m);
    *hi = p11 + (p01 >> 32) + (p10 >> 32) + (mid >> 32);
}

static int ratio_cmp(ratio a, ratio b) {
    uint64_t h1, l1, h2, l2;
    mul_u64(a.num, b.den, &h1, &l1);
    mul_u64(b.num, a.den, &h2, &l2);
    if (h1 != h2) return h1 < h2 ? -1 : 1;
    if (l1 != l2) return l1 < l2 ? -1 : 1;
    return 0;
}

static double ratio_val(ratio a) { return (double)a.num / (double)a.den; }

static bool add_u64(uint64_t *acc, uint64_t v) {
    if (*acc > UINT64_MAX - v) return false;
    *acc += v;
    return true;
}

ls_status lsw_layout_fit(int exit_layer, int n_layers, int n_ranks, const uint64_t *layer_bytes,
                         uint64_t stage0_extra, uint64_t last_extra, const uint64_t *budgets,
                         lsw_layout *out, ls_err *err) {
    const int E = exit_layer, L = n_layers, N = n_ranks;
    memset(out, 0, sizeof *out);
    out->n_layers = L;
    if (N < 2 || N > LSW_MAX_STAGES)
        return ls_err_set(err, LS_ERR_INVALID, "a pipeline needs between 2 and %d MPI ranks (%d were started)",
                          LSW_MAX_STAGES, N);
    if (L < 2)
        return ls_err_set(err, LS_ERR_INVALID, "a pipeline needs a model of at least 2 layers (this one has %d)", L);
    if (E < 1 || E > L - 1)
        return ls_err_set(err, LS_ERR_INVALID, "exit layer %d is out of range [1, %d] for this %d-layer model",
                          E, L - 1, L);
    if (!layer_bytes || !budgets)
        return ls_err_set(err, LS_ERR_INVALID, "lsw_layout_fit: the layer sizes and the budgets are required");
    const int V = N - 1, M = L - E; /* verifier stages 1..V share the M layers [E, L) */
    if (M < V)
        return ls_err_set(err, LS_ERR_INVALID, "%d verifier ranks cannot share the %d layers [%d, %d): start at most "
                          "%d ranks or lower the exit layer", V, M, E, L, M + 1);
    for (int r = 0; r < N; r++)
        if (budgets[r] == 0)
            return ls_err_set(err, LS_ERR_INVALID, "rank %d has a memory budget of 0 bytes: every rank needs a budget "
                              "above zero", r);
    char a[96], b[96], c[96];

    /* stage 0: fixed by the exit layer */
    uint64_t need0 = stage0_extra;
    for (int l = 0; l < E; l++)
        if (!add_u64(&need0, layer_bytes[l]))
            return ls_err_set(err, LS_ERR_INVALID, "the sizes of layers [0, %d) add up past 2^64 bytes: check the "
                              "per-layer byte counts", E);
    if (need0 > budgets[0]) {
        format_pair(need0, budgets[0], a, b, sizeof a);
        lsw_format_bytes(need0 - budgets[0], c, sizeof c);
        return ls_err_set(err, LS_ERR_INVALID, "stage 0 (rank 0: embedding, layers [0, %d), final norm and LM head) "
                          "needs %s but rank 0's budget is %s (%s missing): give rank 0 (the first budget) at least %s",
                          E, a, b, c, a);
    }

    /* verifier stages: exact minimax of bytes/budget by dynamic programming
     * over (stage s, end j of its range in [0, M]) */
    ls_status st = LS_OK;
    const size_t cells = (size_t)V * (size_t)(M + 1);
    uint64_t *P = malloc((size_t)(M + 1) * sizeof *P);
    ratio *best = malloc(cells * sizeof *best);
    double *sq = malloc(cells * sizeof *sq);
    int *from = malloc(cells * sizeof *from);
    if (!P || !best || !sq || !from) {
        st = ls_err_set(err, LS_ERR_NOMEM, "out of memory choosing the layout of %d layers over %d ranks", L, N);
        goto done;
    }
    P[0] = 0;
    for (int k = 0; k < M; k++) {
        P[k + 1] = P[k];
        if (!add_u64(&P[k + 1], layer_bytes[E + k])) {
            st = ls_err_set(err, LS_ERR_INVALID, "the sizes of layers [%d, %d) add up past 2^64 bytes: check the "
                            "per-layer byte counts", E, L);
            goto done;
        }
    }
    uint64_t needv = P[M];
    if (!add_u64(&needv, last_extra)) {
        st = ls_err_set(err, LS_ERR_INVALID, "the sizes of layers [%d, %d) and the LM head add up past 2^64 bytes: "
                        "check the byte counts", E, L);
        goto done;
    }
#define CELL(s, j) ((size_t)((s) - 1) * (size_t)(M + 1) + (size_t)(j))
#define COST(s, i, j) ((ratio){P[j] - P[i] + ((s) == V ? last_extra : 0), budgets[s]})
    /* stage s (1-based) ends at j in [s, M - (V - s)]; the last one at M */
    for (int s = 1; s <= V; s++)
        for (int j = s == V ? M : s; j <= M - (V - s); j++) {
            if (s == 1) {
                best[CELL(s, j)] = COST(s, 0, j);
                continue;
            }
            ratio m = {0, 0};
            for (int i = s - 1; i < j; i++) {
                ratio r = best[CELL(s - 1, i)], cs = COST(s, i, j);
                if (ratio_cmp(cs, r) > 0) r = cs;
                if (m.den == 0 || ratio_cmp(r, m) < 0) m = r;
            }
            best[CELL(s, j)] = m;
        }
    const ratio top = best[CELL(V, M)];
    /* among the splits whose stages all stay within top, the smallest sum of
     * squared ratios (ties: earlier stages get the extra layer) */
    for (int s = 1; s <= V; s++)
        for (int j = s == V ? M : s; j <= M - (V - s); j++) {
            sq[CELL(s, j)] = -1.0;
            from[CELL(s, j)] = -1;
            for (int i = s == 1 ? 0 : s - 1; i < (s == 1 ? 1 : j); i++) {
                const ratio cs = COST(s, i, j);
                if (ratio_cmp(cs, top) > 0) continue;
                const double prev = s == 1 ? 0.0 : sq[CELL(s - 1, i)];
                if (prev < 0) continue;
                const double cand = prev + ratio_val(cs) * ratio_val(cs), cur = sq[CELL(s, j)];
                if (cur < 0 || cand <= cur * (1 + 1e-12)) {
                    sq[CELL(s, j)] = cand;
                    from[CELL(s, j)] = i;
                }
            }
        }
    lsw_layout lo = {.n_stages = N, .n_layers = L};
    lo.l1[0] = E;
    for (int s = V, j = M; s >= 1; s--) {
        const int i = from[CELL(s, j)];
        if (i < 0) {
            st = ls_err_set(err, LS_ERR_INVALID, "internal error: no layout found for stage %d", s);
            goto done;
        }
        lo.l0[s] = E + i;
        lo.l1[s] = E + j;
        j = i;
    }
    if (ratio_cmp(top, (ratio){1, 1}) > 0) {
        /* does not fit: say where and by how much */
        int worst = 1;
        for (int s = 2; s <= V; s++)
            if (ratio_cmp(COST(s, lo.l0[s] - E, lo.l1[s] - E), COST(worst, lo.l0[worst] - E, lo.l1[worst] - E)) > 0)
                worst = s;
        const ratio w = COST(worst, lo.l0[worst] - E, lo.l1[worst] - E);
        uint64_t havev = 0;
        for (int s = 1; s <= V; s++)
            if (!add_u64(&havev, budgets[s])) havev = UINT64_MAX;
        char ranks[32], split[LSW_MAX_STAGES * 16], d[96];
        if (V == 1) snprintf(ranks, sizeof ranks, "rank 1");
        else snprintf(ranks, sizeof ranks, "ranks 1-%d", V);
        lsw_layout_format(&lo, split, sizeof split);
        format_pair(w.num, w.den, c, d, sizeof c);
        if (needv > havev) {
            format_pair(needv, havev, a, b, sizeof a);
            char miss[96];
            lsw_format_bytes(needv - havev, miss, sizeof miss);
            st = ls_err_set(err, LS_ERR_INVALID, "%s cannot hold layers [%d, %d) and the final norm + LM head: they "
                            "need %s in all but their budgets add up to %s, %s missing in total; start more ranks or "
                            "give them bigger budgets (the best split, \"%.300s\", needs %s on rank %d, which has %s)",
                            ranks, E, L, a, b, miss, split, c, worst, d);
        } else {
            lsw_format_bytes(needv, a, sizeof a);
            lsw_format_bytes(havev, b, sizeof b);
            char miss[96];
            lsw_format_bytes(w.num - w.den, miss, sizeof miss);
            st = ls_err_set(err, LS_ERR_INVALID, "%s have %s in all, enough in total for the %s that layers [%d, %d) "
                            "and the final norm + LM head need, but no split into contiguous ranges fits: the best one, "
                            "\"%.300s\", needs %s on rank %d, which has %s (%s missing there); give rank %d a bigger "
                            "budget or start more ranks", ranks, b, a, E, L, split, c, worst, d, miss, worst);
        }
        goto done;
    }
#undef CELL
#undef COST
    *out = lo;
    st = lsw_layout_check(out, N, E, err);
done:
    free(P);
    free(best);
    free(sq);
    free(from);
    return st;
}
