/* golden_llamacpp.c: llama.cpp's own greedy output and first-step logits for
 * a GGUF file, from the llama.cpp library that scripts/llamacpp_tools.sh
 * builds (the source in the llama-cpp-python 0.3.36 sdist), for model files
 * made by llama-quantize (Q5_0, Q5_1, K-quants). Golden-data tool, not part
 * of the product or of CI.
 *
 *   V=.cache-llamacpp/llama_cpp_python-0.3.36/vendor/llama.cpp B=.cache-llamacpp/build-avx2
 *   gcc -O2 -I$V/include -I$V/ggml/include scripts/golden_llamacpp.c $B/src/libllama.a \
 *       $B/ggml/src/libggml.a $B/ggml/src/libggml-cpu.a $B/ggml/src/libggml-base.a \
 *       -lstdc++ -lgomp -lm -lpthread -o /tmp/golden_llamacpp
 *
 * Link it against the AVX2-only build (scripts/llamacpp_tools.sh --avx2):
 * llama.cpp's AVX-512 build rounds differently (it has 16-wide variants of
 * its vector loops, the vector exp of softmax and SwiGLU among them), and our engine
 * reproduces the AVX2 build on every CPU. Linked against the AVX2 build it
 * agrees with tests/data/golden_smollm2_q4_1.json on every prompt; linked
 * against a native build on an AVX-512 CPU it disagrees from about the
 * 12th position on (this was the discrepancy noted here before).
 * scripts/golden_lowbit.py runs it for the K-quant goldens.
 *
 * Reads one prompt per stdin line as space-separated token ids; evaluates
 * each prompt one token at a time (llama.cpp's single-token arithmetic, as
 * scripts/golden_model.py does), then N_GEN greedy tokens; prints one JSON
 * object per prompt: prompt_ids, greedy_ids, first_logits (argmax, the 64
 * largest and 64 fixed-index logits, in golden_model.py's layout). */
#include "llama.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_GEN 48
#define N_TOP 64

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

static float *g_logits;
static int cmp_desc(const void *a, const void *b) { /* stable by id on ties */
    const int x = *(const int *)a, y = *(const int *)b;
    if (g_logits[x] != g_logits[y]) return g_logits[x] > g_logits[y] ? -1 : 1;
    return (x > y) - (x < y);
}

static int eval1(struct llama_context *ctx, llama_token t) {
    return llama_decode(ctx, llama_batch_get_one(&t, 1));
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: golden_llamacpp MODEL.gguf < prompts (token ids per line)\n");
        return 2;
    }
    llama_backend_init();
    struct llama_model_params mp = llama_model_default_params();
    mp.use_extra_bufts = getenv("GOLDEN_EXTRA_BUFTS") != NULL; /* off: no weight repacking, ggml's vec_dot path */
    struct llama_model *model = llama_model_load_from_file(argv[1], mp);
    if (!model) return 1;
    const int V = llama_vocab_n_tokens(llama_model_get_vocab(model));
    char line[65536];
    int fixed[N_TOP];
    for (int i = 0; i < N_TOP; i++) fixed[i] = (int)((double)(V - 1) * i / (N_TOP - 1));
    int *order = malloc(sizeof(int) * (size_t)V);
    float *first = malloc(sizeof(float) * (size_t)V);
    while (fgets(line, sizeof line, stdin)) {
        llama_token ids[4096];
        int n = 0;
        for (char *p = strtok(line, " \n"); p && n < 4096; p = strtok(NULL, " \n")) ids[n++] = atoi(p);
        if (n == 0) continue;
        struct llama_context_params cp = llama_context_default_params();
        cp.n_ctx = 512;
        cp.n_batch = 512;
        cp.n_threads = cp.n_threads_batch = 2;
        cp.flash_attn_type = getenv("GOLDEN_FA") ? LLAMA_FLASH_ATTN_TYPE_ENABLED : LLAMA_FLASH_ATTN_TYPE_DISABLED;
        struct llama_context *ctx = llama_init_from_model(model, cp);
        if (!ctx) return 1;
        for (int i = 0; i < n; i++)
            if (eval1(ctx, ids[i]) != 0) return 1;
        memcpy(first, llama_get_logits_ith(ctx, -1), sizeof(float) * (size_t)V);
        printf("{\"prompt_ids\": [");
        for (int i = 0; i < n; i++) printf("%s%d", i ? ", " : "", ids[i]);
        printf("], \"greedy_ids\": [");
        int tok = argmax(first, V);
        for (int s = 0; s < N_GEN; s++) {
            printf("%s%d", s ? ", " : "", tok);
            if (s + 1 == N_GEN) break;
            if (eval1(ctx, tok) != 0) return 1;
            tok = argmax(llama_get_logits_ith(ctx, -1), V);
        }
        for (int i = 0; i < V; i++) order[i] = i;
        g_logits = first;
        qsort(order, (size_t)V, sizeof(int), cmp_desc);
        printf("], \"first_logits\": {\"argmax\": %d, \"top_ids\": [", argmax(first, V));
        for (int i = 0; i < N_TOP; i++) printf("%s%d", i ? ", " : "", order[i]);
        printf("], \"top_values\": [");
        for (int i = 0; i < N_TOP; i++) printf("%s%.9g", i ? ", " : "", first[order[i]]);
        printf("], \"fixed_ids\": [");
        for (int i = 0; i < N_TOP; i++) printf("%s%d", i ? ", " : "", fixed[i]);
        printf("], \"fixed_values\": [");
        for (int i = 0; i < N_TOP; i++) printf("%s%.9g", i ? ", " : "", first[fixed[i]]);
        printf("]}}\n");
        fflush(stdout);
        llama_free(ctx);
    }
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
