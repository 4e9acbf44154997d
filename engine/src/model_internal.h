/* model_internal.h: the model struct shared by model.c (loading) and
 * forward.c (math). Weights point into the memory-mapped file(s); only the
 * small norm vectors (and llama3 rope factors) are owned f32 copies. */
#ifndef LS_MODEL_INTERNAL_H
#define LS_MODEL_INTERNAL_H

#include "layerskip/engine.h"
#include "kernels.h"
#include "gguf.h"
#include "safetensors.h"
#include "layerskip/tokenizer.h"

typedef struct ls_layer {
    float *attn_norm;     /* (dim) */
    ls_weight wq;         /* (n_heads*head_dim, dim) */
    ls_weight wk;         /* (n_kv_heads*head_dim, dim) */
    ls_weight wv;         /* (n_kv_heads*head_dim, dim) */
    ls_weight wo;         /* (dim, n_heads*head_dim) */
    float *ffn_norm;      /* (dim) */
    ls_weight w_gate;     /* (ffn_dim, dim) */
    ls_weight w_up;       /* (ffn_dim, dim) */
    ls_weight w_down;     /* (dim, ffn_dim) */
} ls_layer;

struct ls_model {
    ls_config cfg;
    char *path;
    ls_weight tok_embd;   /* (n_vocab, dim) */
    float *out_norm;      /* (dim) */
    ls_weight output;     /* (n_vocab, dim); == tok_embd when tied */
    float *rope_factors;  /* (head_dim/2) divisors of the rotary frequencies, or NULL */
    float rope_freq_scale;/* linear rope scaling: positions multiplied by this (1 = off) */
    ls_layer *layers;     /* (n_layers) */
    ls_tokenizer *tok;
    char *chat_template;  /* GGUF tokenizer.chat_template / tokenizer_config.json chat_template, or NULL */
    gguf_ctx *gguf;       /* one of gguf / st is set */
    st_set *st;
};

/* One decoder layer `blk` (the model's attention shape, feed-forward width
 * ffn_dim <= the model's, 0 = none) over n positions from pos, with the
 * pairwise rotary layout, using layer kv->l0 of kv as its cache: a draft
 * adapter's block (docs/ADAPTER.md). */
ls_status ls_forward_block(ls_ctx *c, const ls_layer *blk, int ffn_dim, ls_kv *kv, int pos, int n, float *hidden,
                           ls_err *err);
/* logits[n x w->rows] = w . final norm(hidden): the exit head over a subset
 * of the vocabulary (the draft head) */
ls_status ls_head_rows(ls_ctx *c, const ls_weight *w, const float *hidden, int n, float *logits, ls_err *err);

#endif
