/* adapter_internal.h: the loaded draft adapter (adapter.c), as the drafter
 * (speculate.c) uses it. */
#ifndef LS_ADAPTER_INTERNAL_H
#define LS_ADAPTER_INTERNAL_H

#include "model_internal.h"
#include "layerskip/speculate.h"

struct ls_adapter {
    char *path;
    gguf_ctx *g;          /* the mapped file: the block's weights point into it */
    int exit_layer;
    bool has_block;
    int ffn_dim;          /* 0: attention only */
    ls_layer blk;         /* norms owned; weights F32/F16 in the file */
    int32_t n_table;      /* frequency table length (0: none) */
    int32_t *table;       /* (n_table) token ids, most frequent first */
    void *head_rows;      /* (n_table) rows of the model's LM head, in table order */
    ls_weight head;       /* over head_rows; the first N rows = --draft-vocab N */
};

/* FNV-1a 64 over every token's raw piece, each followed by a 0 byte */
uint64_t ls_vocab_hash(const ls_tokenizer *t);

#endif
