/* random-gguf: write a random-weight Llama GGUF of a given shape and storage
 * type (tests/support/random_model.c), for benchmarks on models larger than
 * the CPU's cache, e.g. a Llama-3.2-1B-shaped Q8_0 file:
 *
 *   build/tests/random-gguf --shape llama-3.2-1b --type Q8_0 --out /tmp/l1b.q8_0.gguf
 *
 * The weights are random (the output is noise); the shape, the types and
 * the bytes a step reads are what a real file of that shape has. */
#include "random_model.h"
#include "test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f, "usage: random-gguf --out FILE [--shape llama-3.2-1b|smollm2-135m] [--type F16|BF16|F32|Q8_0|Q4_0|Q4_1|\n"
               "                   Q5_0|Q5_1|Q2_K|Q3_K|Q4_K|Q5_K|Q6_K|IQ4_NL|IQ4_XS] [--layers N] [--vocab GGUF] [--seed N]\n"
               "  --shape    dims, heads, FFN width, vocabulary (default llama-3.2-1b: 16 layers, dim 2048,\n"
               "             32/8 heads, FFN 8192, tied head, llama3 rope, the Llama 3 vocabulary)\n"
               "  --type     storage of every matrix (default Q8_0)\n"
               "  --layers   override the layer count\n"
               "  --vocab    a GGUF with tokenizer.ggml.* (default: models/vocab/ of the shape)\n");
}

int main(int argc, char **argv) {
    const char *out = NULL, *shape = "llama-3.2-1b", *type = "Q8_0", *vocab = NULL;
    int layers = 0;
    unsigned long long seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 0; }
        if (!v) { fprintf(stderr, "random-gguf: %s needs a value\n", a); usage(stderr); return 2; }
        if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--shape")) shape = v;
        else if (!strcmp(a, "--type")) type = v;
        else if (!strcmp(a, "--vocab")) vocab = v;
        else if (!strcmp(a, "--layers")) layers = atoi(v);
        else if (!strcmp(a, "--seed")) seed = strtoull(v, NULL, 10);
        else { fprintf(stderr, "random-gguf: unknown option %s\n", a); usage(stderr); return 2; }
        i++;
    }
    if (!out) { fprintf(stderr, "random-gguf: --out is required\n"); usage(stderr); return 2; }
    rm_spec s = {.rope_theta = 10000.0f, .norm_eps = 1e-5f, .tied = true, .seed = seed, .n_shards = 1};
    if (!strcmp(shape, "llama-3.2-1b")) {
        s.n_layers = 16; s.dim = 2048; s.n_heads = 32; s.n_kv_heads = 8; s.ffn_dim = 8192;
        s.rope_theta = 500000.0f; s.llama3_rope = true;
        if (!vocab) vocab = tu_models_path("vocab/ggml-vocab-llama-bpe.gguf");
    } else if (!strcmp(shape, "smollm2-135m")) {
        s.n_layers = 30; s.dim = 576; s.n_heads = 9; s.n_kv_heads = 3; s.ffn_dim = 1536;
        if (!vocab) vocab = tu_models_path("vocab/ggml-vocab-llama-bpe.gguf");
    } else {
        fprintf(stderr, "random-gguf: unknown shape '%s' (llama-3.2-1b, smollm2-135m)\n", shape);
        return 2;
    }
    if (layers) {
        if (layers < 1 || layers > 256) { fprintf(stderr, "random-gguf: --layers %d is out of range [1, 256]\n", layers); return 2; }
        s.n_layers = layers;
    }
    bool found = false;
    for (uint32_t t = 0; t < 64 && !found; t++)
        if (ls_type_is_supported(t) && !strcmp(ls_type_name((ls_type)t), type)) {
            s.dtype = (ls_type)t;
            found = true;
        }
    if (!found) { fprintf(stderr, "random-gguf: unknown or unsupported --type '%s'\n", type); return 2; }
    if (s.dim % ls_type_block_elems(s.dtype) || s.ffn_dim % ls_type_block_elems(s.dtype)) {
        fprintf(stderr, "random-gguf: %s rows need a multiple of %lld elements; the %s shape has %d/%d\n", type,
                (long long)ls_type_block_elems(s.dtype), shape, s.dim, s.ffn_dim);
        return 2;
    }
    /* one type for every matrix: a mix of one */
    const ls_type one[1] = {s.dtype};
    s.mix = one;
    s.n_mix = 1;
    s.vocab_gguf = vocab;
    rm_model *m = rm_model_create(&s);
    if (!m) { fprintf(stderr, "random-gguf: cannot build the model (vocabulary %s)\n", vocab); return 1; }
    const bool ok = rm_write_gguf(m, out);
    rm_model_free(m);
    if (!ok) { fprintf(stderr, "random-gguf: cannot write %s\n", out); return 1; }
    printf("%s\n", out);
    return 0;
}
