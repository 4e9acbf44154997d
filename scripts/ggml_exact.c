/* ggml_exact.c: the expected outputs of tests/test_kernels.c's exact test
 * (test_exact_vs_llamacpp), from ggml itself. Golden-data tool, not part of
 * the product or of CI.
 *
 * y = ggml_mul_mat(W, X) on ggml's CPU backend, one thread, one row of X at
 * a time, for W (rows x cols, ggml type number T, raw bytes) and X
 * (n x cols f32): prints the
 * outputs as float bit patterns, n-major (y[i*rows + r]), then a line
 * "deq 0x<fnv1a-64>": the FNV-1a hash of W dequantized by ggml's to_float
 * (what get_rows does for token embeddings).
 *
 *   bash scripts/llamacpp_tools.sh          # builds ggml into .cache-llamacpp/build
 *   V=.cache-llamacpp/llama_cpp_python-0.3.36/vendor/llama.cpp B=.cache-llamacpp/build/ggml/src
 *   gcc -O2 -I$V/ggml/include scripts/ggml_exact.c $B/libggml.a $B/libggml-cpu.a $B/libggml-base.a \
 *       -lstdc++ -lgomp -lm -lpthread -o /tmp/ggml_exact
 *   LS_KERNELS_DUMP=/tmp/d build/tests/test_kernels    # writes /tmp/d/<TYPE>_{w,x}.bin
 *   /tmp/ggml_exact 6 /tmp/d/Q5_0_w.bin /tmp/d/Q5_0_x.bin 16 96 3
 * (scripts/make_kquant_goldens.sh runs all of it for tests/test_kernels_k.c) */
#include "ggml.h"
#include "ggml-cpu.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(int argc, char **argv) {
    if (argc != 7) { fprintf(stderr, "usage: ggml_exact TYPE W.bin X.bin ROWS COLS N\n"); return 2; }
    int type = atoi(argv[1]); int rows = atoi(argv[4]), cols = atoi(argv[5]), n = atoi(argv[6]);
    struct ggml_init_params ip = {.mem_size = 64u << 20, .mem_buffer = NULL, .no_alloc = false};
    struct ggml_context *ctx = ggml_init(ip);
    struct ggml_tensor *w = ggml_new_tensor_2d(ctx, (enum ggml_type)type, cols, rows);
    struct ggml_tensor *x = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, cols, n);
    FILE *f = fopen(argv[2], "rb"); size_t nw = fread(w->data, 1, ggml_nbytes(w), f); fclose(f);
    f = fopen(argv[3], "rb"); size_t nx = fread(x->data, 1, ggml_nbytes(x), f); fclose(f);
    if (nw != ggml_nbytes(w) || nx != ggml_nbytes(x)) { fprintf(stderr, "short read\n"); return 1; }
    /* one activation row per mul_mat, as llama.cpp decodes a token: with
     * two or more rows ggml hands Q4_0/Q5_0/Q8_0/IQ4_NL to llamafile's
     * tinyBLAS, whose summation order differs for IQ4_NL */
    for (int i = 0; i < n; i++) {
        struct ggml_tensor *xi = ggml_view_2d(ctx, x, cols, 1, x->nb[1], (size_t)i * x->nb[1]);
        struct ggml_tensor *y = ggml_mul_mat(ctx, w, xi);
        struct ggml_cgraph *gf = ggml_new_graph(ctx);
        ggml_build_forward_expand(gf, y);
        ggml_graph_compute_with_ctx(ctx, gf, 1);
        const float *yd = y->data;
        for (int r = 0; r < rows; r++) {
            const int k = i * rows + r;
            unsigned u;
            memcpy(&u, &yd[r], 4);
            printf("0x%08x,%s", u, k % 6 == 5 ? "\n" : " ");
        }
    }
    printf("\n");
    const struct ggml_type_traits *tt = ggml_get_type_traits((enum ggml_type)type);
    float *deq = malloc(sizeof(float) * (size_t)rows * (size_t)cols);
    if (tt->to_float) {
        tt->to_float(w->data, deq, (int64_t)rows * cols);
    } else {
        memcpy(deq, w->data, sizeof(float) * (size_t)rows * (size_t)cols);
    }
    unsigned long long h = 0xcbf29ce484222325ull;
    const unsigned char *b = (const unsigned char *)deq;
    for (size_t i = 0; i < sizeof(float) * (size_t)rows * (size_t)cols; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    printf("deq 0x%016llx\n", h);
    free(deq);
    return 0;
}
