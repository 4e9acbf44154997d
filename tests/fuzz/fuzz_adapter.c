/* fuzz_adapter.c: libFuzzer target for the draft adapter loader
 * (ls_adapter_load, docs/ADAPTER.md) against a small random model loaded
 * once (fuzz_adapter_model.h). The input is written to an in-memory file
 * (memfd) and loaded from its /proc/self/fd path. Checked:
 *   refused   no adapter comes back and the message is non-empty and names
 *             the path
 *   loaded    exit layer in [1, L-1], table length in [0, vocab], the path
 *             kept; then the adapter drafts: greedy self-speculative output
 *             (source auto, draft_vocab = the whole table) equals the
 *             autoregressive output, whatever the weights (NaN and Inf
 *             included), and sampled drafting from the adapter (or its table)
 *             gives in-range tokens
 * Broken invariants trap. LS_FUZZ_ADAPTER_VERBOSE=1 prints each input's
 * outcome.
 *
 * The seeds (tests/fuzz/corpus/fuzz_adapter, written by
 * gen_adapter_seeds.c) carry layerskip.base.vocab_hash as docs/ADAPTER.md
 * defines it (FNV-1a 64, what the trainer writes). Where the engine's
 * ls_vocab_hash differs from that, the harness replaces those 8 bytes with
 * the engine's value before loading, so that the seeds reach past the
 * identity checks either way (a no-op once the two agree). */
#include "fuzz_adapter_model.h"
#include "random_adapter.h"
#include "adapter_internal.h"
#include "layerskip/generate.h"

#include <string.h>

#define N_GEN 6

static volatile uint64_t sink;

static void check(bool ok) {
    if (!ok) __builtin_trap();
}

static ls_model *model;
static ls_ctx *ctx;
static ls_kv *kv;
static uint64_t doc_hash, engine_hash;
static const int32_t PROMPT[] = {1, 3, 4, 5, 6, 3, 4};
#define NP ((int)(sizeof PROMPT / sizeof PROMPT[0]))
static int32_t ar_out[N_GEN];
static bool verbose; /* LS_FUZZ_ADAPTER_VERBOSE=1: each input's outcome on stderr */

static void init(void) {
    const char *v = getenv("LS_FUZZ_ADAPTER_VERBOSE");
    verbose = v && strcmp(v, "1") == 0;
    model = fa_load_model();
    ls_err err = {{0}};
    if (ls_ctx_create(model, 1, 8, &ctx, &err) != LS_OK || ls_kv_create(model, 0, FA_N_LAYERS, 64, &kv, &err) != LS_OK) {
        fprintf(stderr, "fuzz_adapter: %s\n", err.msg);
        abort();
    }
    doc_hash = ra_vocab_hash(ls_model_tokenizer(model));
    engine_hash = ls_vocab_hash(ls_model_tokenizer(model));
    ls_gen_params gp = {.n_predict = N_GEN, .ignore_eog = true};
    ls_sampling_default(&gp.sampling);
    ls_gen_stats st;
    if (ls_generate(ctx, kv, PROMPT, NP, &gp, ar_out, NULL, NULL, &st, &err) != LS_OK || st.n_generated != N_GEN) {
        fprintf(stderr, "fuzz_adapter: %s\n", err.msg);
        abort();
    }
}

static void exercise(const ls_adapter *a) {
    const ls_config *c = ls_model_config(model);
    const int E = ls_adapter_exit_layer(a);
    const int32_t n_table = ls_adapter_vocab_len(a);
    const bool block = ls_adapter_has_block(a);
    check(E >= 1 && E <= c->n_layers - 1);
    check(n_table >= 0 && n_table <= c->n_vocab);
    check(block || n_table > 0);
    sink += (uint64_t)E + (uint64_t)n_table + block;
    ls_err err = {{0}};
    ls_gen_stats st;
    int32_t out[N_GEN];
    /* greedy: lossless whatever the adapter drafts */
    ls_gen_params gp = {.n_predict = N_GEN, .ignore_eog = true, .strategy = LS_STRATEGY_SELF_SPECULATIVE,
                        .exit_layer = E, .num_speculations = 3, .draft_source = LS_DRAFT_AUTO, .adapter = a,
                        .draft_vocab = n_table};
    ls_sampling_default(&gp.sampling);
    ls_status s = ls_generate(ctx, kv, PROMPT, NP, &gp, out, NULL, NULL, &st, &err);
    if (s != LS_OK) fprintf(stderr, "fuzz_adapter: generate: %s\n", err.msg);
    check(s == LS_OK && st.n_generated == N_GEN);
    check(memcmp(out, ar_out, sizeof out) == 0);
    /* sampled: the adapter's block (or the table's head over layer E) drafts */
    gp.draft_source = block ? LS_DRAFT_ADAPTER : LS_DRAFT_EXIT;
    gp.draft_vocab = n_table > 3 ? 3 : n_table;
    gp.sampling.temperature = 1.0f;
    gp.sampling.top_k = 5;
    gp.sampling.seed = 7;
    s = ls_generate(ctx, kv, PROMPT, NP, &gp, out, NULL, NULL, &st, &err);
    if (s != LS_OK) fprintf(stderr, "fuzz_adapter: sampled generate: %s\n", err.msg);
    check(s == LS_OK && st.n_generated == N_GEN);
    for (int i = 0; i < N_GEN; i++) check(out[i] >= 0 && out[i] < c->n_vocab);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!model) init();
    uint8_t *buf = malloc(size ? size : 1);
    check(buf != NULL);
    if (size) memcpy(buf, data, size);
    /* documented vocab hash -> the engine's (see the top of the file) */
    if (doc_hash != engine_hash)
        for (size_t i = 0; i + 8 <= size; i++)
            if (memcmp(buf + i, &doc_hash, 8) == 0) memcpy(buf + i, &engine_hash, 8);
    char path[64];
    int fd = fa_memfd("fuzz_adapter_input", path, sizeof path);
    check(fd >= 0);
    size_t done = 0;
    while (done < size) {
        ssize_t w = write(fd, buf + done, size - done);
        check(w > 0);
        done += (size_t)w;
    }
    free(buf);
    ls_adapter *a = (ls_adapter *)(uintptr_t)1; /* must be reset on every path */
    ls_err err = {{0}};
    ls_status s = ls_adapter_load(path, model, &a, &err);
    close(fd); /* a loaded adapter keeps its mapping */
    if (verbose) fprintf(stderr, "fuzz_adapter: %zu bytes: %s\n", size, s == LS_OK ? "loaded" : err.msg);
    if (s != LS_OK) {
        check(a == NULL);
        check(err.msg[0] != '\0');
        check(strstr(err.msg, path) != NULL);
        return 0;
    }
    check(a != NULL);
    check(strcmp(ls_adapter_path(a), path) == 0);
    exercise(a);
    ls_adapter_free(a);
    return 0;
}
