/* random_model.h: random-weight Llama models for tests, written as a GGUF
 * file and as a Hugging Face directory from the same weights, plus a slow,
 * obviously correct reference forward pass (double precision, Hugging Face
 * layout, straight from the formulas) to check the engine against.
 *
 * Weights are generated in Hugging Face layout and rounded to the storage
 * type; the GGUF copy permutes the Q/K rows the way llama.cpp's converter
 * does (interleaved rotary pairs), so the two files hold the same model. */
#ifndef LS_RANDOM_MODEL_H
#define LS_RANDOM_MODEL_H

#include "layerskip/ls_common.h"

typedef struct rm_spec {
    int n_layers, dim, n_heads, n_kv_heads, ffn_dim;
    float rope_theta;
    float norm_eps;
    bool llama3_rope;         /* llama3 rope scaling (factor 8, 1, 4, 8192) */
    bool tied;                /* LM head = embedding */
    ls_type dtype;            /* storage of the matrices: F32/F16/BF16 (both files) or Q* (GGUF only) */
    const ls_type *mix;       /* if set: matrix i (creation order) is stored as mix[i % n_mix] (GGUF only);
                               * K-quants and IQ4 get random quants and scales sized to the values */
    int n_mix;
    const char *vocab_gguf;   /* a GGUF holding tokenizer.ggml.* (vocab size from it) */
    uint64_t seed;
    int n_shards;             /* safetensors files in the HF directory (1 = model.safetensors) */
} rm_spec;

typedef struct rm_model rm_model;

/* build the weights (n_vocab from the vocabulary file); NULL on failure */
rm_model *rm_model_create(const rm_spec *spec);
/* a small Llama whose matrices cycle through Q2_K, Q3_K, Q4_K, Q5_K, Q6_K,
 * IQ4_NL, IQ4_XS (dims multiples of 256, nothing falls back); llama.cpp's
 * goldens for it are in tests/data/golden_lowbit.json */
rm_spec rm_lowbit_spec(const char *vocab_gguf);
void rm_model_free(rm_model *m);
int rm_model_n_vocab(const rm_model *m);

bool rm_write_gguf(const rm_model *m, const char *path);
/* config.json, *.safetensors (+ index when sharded), tokenizer.json,
 * tokenizer_config.json, generation_config.json */
bool rm_write_hf_dir(const rm_model *m, const char *dir);

/* logits (n x n_vocab) of every position of tokens[0..n), reference math on
 * the stored (rounded/dequantized) weights */
double *rm_reference_logits(const rm_model *m, const int32_t *tokens, int n);

#endif
