/* random_adapter.h: draft adapter sidecars (docs/ADAPTER.md) with seeded
 * random weights, for tests and fuzz seeds, plus faults that break one thing
 * each (for the loader's error tests).
 *
 * The identity keys come from an ra_base: taken from a loaded model, or from
 * an rm_spec (random_model.h) before the model is written. Its vocab_hash is
 * the engine's own (ls_vocab_hash), so the files load with the engine as
 * built; ra_vocab_hash is an independent implementation of the hash as
 * docs/ADAPTER.md defines it (FNV-1a 64 over every token's raw piece bytes,
 * each followed by one 0 byte, in id order), which is what the trainer
 * (tools/train/adapter.py) writes: test_adapter checks that the two agree. */
#ifndef LS_RANDOM_ADAPTER_H
#define LS_RANDOM_ADAPTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "layerskip/engine.h"
#include "layerskip/tokenizer.h"
#include "random_model.h"

/* what identifies the base model */
typedef struct ra_base {
    char arch[32];
    int n_layers, dim, ffn_dim, n_heads, n_kv_heads, head_dim, n_vocab;
    uint64_t vocab_hash;
} ra_base;

/* FNV-1a 64 (offset basis 0xcbf29ce484222325, prime 0x100000001b3) as documented */
uint64_t ra_vocab_hash(const ls_tokenizer *t);
void ra_base_from_model(const ls_model *m, ra_base *b);
/* from the spec of a random model (its vocabulary file is read); false on failure */
bool ra_base_from_rm_spec(const rm_spec *s, ra_base *b);

/* one broken thing per file (RA_OK: a good file) */
typedef enum ra_fault {
    RA_OK = 0,
    RA_NOT_ADAPTER,        /* general.architecture "llama" */
    RA_NO_GENERAL_ARCH,    /* general.architecture missing */
    RA_VERSION,            /* layerskip.adapter.version 2 */
    RA_BASE_ARCH,          /* layerskip.base.architecture "gpt2" */
    RA_LAYERS,             /* base.block_count + 1 */
    RA_DIM,                /* base.embedding_length + 1 */
    RA_BASE_FFN,           /* base.feed_forward_length + 1 */
    RA_HEADS,              /* base.head_count + 1 */
    RA_KV_HEADS,           /* base.head_count_kv + 1 */
    RA_VOCAB_SIZE,         /* base.vocab_size + 1 */
    RA_NO_LAYERS,          /* base.block_count missing */
    RA_VOCAB_HASH,         /* vocab_hash with one bit flipped */
    RA_NO_VOCAB_HASH,      /* vocab_hash missing */
    RA_VOCAB_HASH_U32,     /* vocab_hash stored as u32 */
    RA_E_ZERO,             /* exit_layer 0 */
    RA_E_L,                /* exit_layer = n_layers */
    RA_E_HUGE,             /* exit_layer 0xffffffff */
    RA_NO_E,               /* exit_layer missing */
    RA_NO_FFN_DIM,         /* adapter.ffn_dim missing (a block needs it) */
    RA_FFN_TOO_BIG,        /* ffn_dim = the base's + 32 (tensors to match) */
    RA_HAS_BLOCK_U32,      /* has_block stored as u32 */
    RA_SHAPE,              /* fault_tensor with one row too many */
    RA_SHAPE_TRANSPOSED,   /* fault_tensor with rows and cols swapped (a matrix whose rows != cols) */
    RA_NORM_2D,            /* adapter.attn_norm.weight as a 2-D [dim, 1] */
    RA_TYPE_Q8_0,          /* fault_tensor stored as Q8_0 */
    RA_TYPE_BF16,          /* fault_tensor stored as BF16 */
    RA_MISSING_TENSOR,     /* fault_tensor left out */
    RA_TABLE_DUP,          /* the table's last entry repeats its first */
    RA_TABLE_OOR,          /* a table entry = n_vocab */
    RA_TABLE_NEG,          /* a table entry = -1 */
    RA_TABLE_EMPTY,        /* a table of 0 entries */
    RA_TABLE_TOO_LONG,     /* n_vocab + 1 entries */
    RA_TABLE_F32,          /* the table as an array of f32 */
    RA_TABLE_NOT_ARRAY,    /* layerskip.draft_vocab as a scalar i32 */
    RA_NOTHING,            /* has_block false and no table */
    RA_N_FAULTS
} ra_fault;
const char *ra_fault_name(ra_fault f);

typedef struct ra_spec {
    int exit_layer;            /* E */
    int ffn_dim;               /* 0: attention only */
    ls_type dtype;             /* LS_TYPE_F32 (0), LS_TYPE_F16, or LS_TYPE_Q8_0 (matrices; norms F32) */
    uint64_t seed;
    int n_table;               /* 0: no table; else that many entries */
    const int32_t *table;      /* the entries; NULL: a seeded permutation of the vocabulary */
    bool table_u32;            /* store the table as an array of u32 (the loader takes both) */
    bool no_block;             /* has_block false, no tensors (a frequency table only) */
    bool omit_has_block;       /* leave has_block out (the loader then assumes a block) */
    float scale;               /* weight scale multiplier (0: 1) */
    ra_fault fault;
    const char *fault_tensor;  /* RA_SHAPE*, RA_TYPE*, RA_MISSING_TENSOR: a tensor name (NULL: adapter.attn_k.weight) */
    const char *fill_tensor;   /* a tensor whose every value is fill_value (NAN, INFINITY, ...); NULL: none */
    float fill_value;
} ra_spec;

/* the table the file gets (s->n_table entries) */
void ra_table(const ra_base *b, const ra_spec *s, int32_t *out);
/* serialise (malloc'd buffer; aborts on out of memory) */
void ra_write_mem(const ra_base *b, const ra_spec *s, uint8_t **out, size_t *len);
bool ra_write(const ra_base *b, const ra_spec *s, const char *path);
/* ra_write for a loaded model */
bool ra_write_for_model(const ls_model *m, const ra_spec *s, const char *path);

#endif
