/* layout.c: parsing and validating the stage split (layout.h). The text
 * form is what operators type (--stages), so every error quotes it. */
#include "layout.h"

#include <errno.h>
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
