/* engine.h: the engine's public API.
 *
 * A model (GGUF file or Hugging Face directory, weights memory-mapped) is
 * read-only and shared. Work happens in an ls_ctx (scratch buffers and the
 * thread pool; one per thread of control) over an ls_kv (one sequence's KV
 * cache for a range of layers, indexed by position; rollback = truncate).
 *
 * The two primitives everything is built from (docs/ARCHITECTURE.md):
 *   ls_forward(layers [l0, l1), positions pos..pos+n-1): hidden -> hidden
 *   ls_exit_head(hidden) -> logits: final norm + LM head on any layer's output
 * Prefill, decoding, early-exit drafting, verification and pipeline stages
 * are calls of these with different ranges and batch sizes. */
#ifndef LS_ENGINE_H
#define LS_ENGINE_H

#include "layerskip/ls_common.h"

typedef struct ls_tokenizer ls_tokenizer;

typedef enum ls_rope_kind {
    LS_ROPE_NORM = 0, /* rotate adjacent pairs (x[2i], x[2i+1]): GGUF's permuted Q/K rows */
    LS_ROPE_NEOX = 1, /* rotate halves (x[i], x[i+d/2]): Hugging Face layout */
} ls_rope_kind;

typedef struct ls_config {
    char arch[32];          /* "llama" */
    char name[128];         /* general.name or the directory name */
    int32_t n_layers;       /* L */
    int32_t dim;            /* hidden size */
    int32_t n_heads;
    int32_t n_kv_heads;
    int32_t head_dim;
    int32_t ffn_dim;
    int32_t n_vocab;
    int32_t ctx_train;      /* context length the model was trained for */
    float rope_theta;
    float norm_eps;
    ls_rope_kind rope_kind;
    bool tied_embeddings;   /* LM head shares the token embedding */
    bool has_rope_scaling;  /* llama3-style frequency factors present */
} ls_config;

typedef struct ls_model ls_model;

/* Load a GGUF file or a Hugging Face model directory. Errors name the file and
 * the problem (missing tensor, shape mismatch, unsupported type, ...). */
ls_status ls_model_load(const char *path, ls_model **out, ls_err *err);
void ls_model_free(ls_model *m);
const ls_config *ls_model_config(const ls_model *m);
const ls_tokenizer *ls_model_tokenizer(const ls_model *m);
/* the model's chat template (Jinja source: GGUF tokenizer.chat_template, or
 * chat_template in a Hugging Face directory's tokenizer_config.json or
 * chat_template.jinja); NULL when the model has none */
const char *ls_model_chat_template(const ls_model *m);
/* bytes of weights memory-mapped for layers [l0, l1) (+ embedding/head when
 * asked), for memory planning */
uint64_t ls_model_weight_bytes(const ls_model *m, int l0, int l1, bool embed, bool head);
/* read a layer range's weights once so later use does not page-fault */
void ls_model_touch(const ls_model *m, int l0, int l1, bool embed, bool head);
/* the kernels this process runs: "avx512" (AVX-512 F/BW/DQ/VL + VNNI + BF16),
 * "avxvnni", "avx2" or "portable" (scalar). Chosen at run time: the best the
 * CPU supports, or the one the environment variable LS_KERNELS names. Every
 * variant gives the same bits (a scalar model of the AVX2 lanes), so the
 * choice changes speed, never output. */
const char *ls_kernel_path(void);

/* ---- KV cache for one sequence, layers [l0, l1), n_ctx positions, fp16 ---- */
typedef struct ls_kv ls_kv;
ls_status ls_kv_create(const ls_model *m, int l0, int l1, int n_ctx, ls_kv **out, ls_err *err);
void ls_kv_free(ls_kv *kv);
int ls_kv_n_ctx(const ls_kv *kv);
/* bytes of K and V (fp16) for layers [l0, l1) and n_ctx positions: what
 * ls_kv_create maps (one rule for every KV size: budgets, metrics) */
uint64_t ls_kv_bytes(const ls_model *m, int l0, int l1, int n_ctx);
/* number of valid positions cached for layer l (0 when l is not held) */
int ls_kv_len(const ls_kv *kv, int layer);
/* rollback: cut layers [l0, l1) back to at most len positions */
void ls_kv_truncate(ls_kv *kv, int l0, int l1, int len);
/* pointer to the fp16 K (or V) row of (layer, pos): n_kv_heads*head_dim values */
const uint16_t *ls_kv_k_row(const ls_kv *kv, int layer, int pos);
const uint16_t *ls_kv_v_row(const ls_kv *kv, int layer, int pos);

/* ---- context: scratch + threads ---- */
typedef struct ls_ctx ls_ctx;
/* max_batch: most positions per ls_forward / ls_exit_head call */
ls_status ls_ctx_create(const ls_model *m, int n_threads, int max_batch, ls_ctx **out, ls_err *err);
void ls_ctx_free(ls_ctx *c);
int ls_ctx_max_batch(const ls_ctx *c);
const ls_model *ls_ctx_model(const ls_ctx *c);
/* Exact mode (the default): every operation runs in llama.cpp's order for its
 * single-token path (quantized dots, Q4_1 block mins, attention, softmax,
 * SwiGLU), whatever the batch size, so outputs are bit-identical to
 * llama.cpp on AVX2 machines and a position's result never depends on how
 * positions were batched. Off ("fast math"): batches past a size measured per
 * CPU go through OpenBLAS sgemm and Q4_1 sums in a faster order, equal up to
 * float rounding. */
void ls_ctx_set_exact(ls_ctx *c, bool exact);
int ls_ctx_n_threads(const ls_ctx *c);

/* hidden[n x dim] = embedding rows of tokens (ids must be < n_vocab) */
ls_status ls_embed(ls_ctx *c, const int32_t *tokens, int n, float *hidden, ls_err *err);
/* Run layers [l0, l1) on n positions pos..pos+n-1, hidden[n x dim] in place.
 * Each layer's cache must hold positions [0, pos) (ls_kv_len(l) >= pos); the
 * call writes positions [pos, pos+n) and sets the length to pos+n. */
ls_status ls_forward(ls_ctx *c, ls_kv *kv, int l0, int l1, int pos, int n,
                     float *hidden, ls_err *err);
/* Several sequences in one call: each with its own KV cache (distinct
 * caches) and positions; hidden holds sequence 0's rows, then sequence 1's,
 * ... (at most max_batch rows in all). Every matrix product reads its
 * weights once for all rows; attention stays per sequence. In exact mode a
 * row's result is bit for bit what ls_forward on its sequence alone gives
 * (tests/test_forward_multi.c). The same checks as ls_forward, per sequence. */
typedef struct ls_seq_slice {
    ls_kv *kv;
    int pos, n; /* positions pos..pos+n-1 of this sequence */
} ls_seq_slice;
ls_status ls_forward_multi(ls_ctx *c, const ls_seq_slice *seqs, int n_seqs, int l0, int l1, float *hidden,
                           ls_err *err);
/* logits[n x n_vocab] = LM head(final norm(hidden)) for n <= max_batch rows */
ls_status ls_exit_head(ls_ctx *c, const float *hidden, int n, float *logits, ls_err *err);

/* counters for the cost model (layer evaluations by layer) */
typedef struct ls_counters {
    uint64_t layer_positions[256]; /* positions evaluated per layer (first 256 layers) */
    uint64_t head_positions;       /* positions through ls_exit_head */
    uint64_t forward_calls;
} ls_counters;
const ls_counters *ls_ctx_counters(const ls_ctx *c);
void ls_ctx_reset_counters(ls_ctx *c);

#endif
