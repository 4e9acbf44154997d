/* tiny_vocab.c: see tiny_vocab.h. */
#include "tiny_vocab.h"
#include "gguf_writer.h"

#include <stdio.h>
#include <stdlib.h>

bool tv_write_vocab(const char *path, int n_vocab) {
    if (n_vocab < 4 || n_vocab > 3 + 26 * 27) return false;
    const char **toks = malloc(sizeof(char *) * (size_t)n_vocab);
    char (*names)[16] = malloc(16 * (size_t)n_vocab);
    float *scores = malloc(sizeof(float) * (size_t)n_vocab);
    int32_t *types = malloc(sizeof(int32_t) * (size_t)n_vocab);
    if (!toks || !names || !scores || !types) abort();
    toks[0] = "<unk>";
    toks[1] = "<s>";
    toks[2] = "</s>";
    for (int i = 0; i < n_vocab; i++) {
        if (i >= 3) {
            const int j = i - 3;
            if (j < 26) snprintf(names[i], sizeof names[i], "\xe2\x96\x81%c", 'a' + j); /* "▁a", "▁b", ... */
            else snprintf(names[i], sizeof names[i], "\xe2\x96\x81%c%c", 'a' + (j - 26) / 26, 'a' + (j - 26) % 26);
            toks[i] = names[i];
        }
        scores[i] = -(float)i;
        types[i] = i == 0 ? 2 : i < 3 ? 3 : 1; /* unknown, control, normal */
    }
    gguf_writer *w = gguf_writer_init();
    gguf_writer_add_str(w, "tokenizer.ggml.model", "llama");
    gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", toks, (uint64_t)n_vocab);
    gguf_writer_add_arr(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, scores, (uint64_t)n_vocab);
    gguf_writer_add_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types, (uint64_t)n_vocab);
    gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", 1);
    gguf_writer_add_u32(w, "tokenizer.ggml.eos_token_id", 2);
    gguf_writer_add_u32(w, "tokenizer.ggml.unknown_token_id", 0);
    bool ok = gguf_writer_write(w, path);
    gguf_writer_free(w);
    free(toks);
    free(names);
    free(scores);
    free(types);
    return ok;
}
