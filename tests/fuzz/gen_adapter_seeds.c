/* gen_adapter_seeds: writes the seed corpus of fuzz_adapter.c (good adapters
 * of several shapes and one-fault variants, for the model of
 * fuzz_adapter_model.h) into a directory:
 *
 *   cmake --build BUILD --target gen_adapter_seeds
 *   BUILD/tests/gen_adapter_seeds tests/fuzz/corpus/fuzz_adapter
 *
 * The vocab hash is the documented one (ra_vocab_hash), as the trainer
 * writes it; see fuzz_adapter.c. */
#include "fuzz_adapter_model.h"
#include "random_adapter.h"

#include <string.h>

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    ls_model *m = fa_load_model();
    ra_base b;
    ra_base_from_model(m, &b);
    b.vocab_hash = ra_vocab_hash(ls_model_tokenizer(m));
    static const struct { const char *name; ra_spec s; } seeds[] = {
        {"good_e1_attn_f32", {.exit_layer = 1, .dtype = LS_TYPE_F32, .seed = 1}},
        {"good_e2_ffn_f16_table", {.exit_layer = 2, .ffn_dim = 16, .dtype = LS_TYPE_F16, .seed = 2, .n_table = 12}},
        {"good_e3_ffn64_table_u32", {.exit_layer = 3, .ffn_dim = 64, .dtype = LS_TYPE_F32, .seed = 3, .n_table = 32,
                                     .table_u32 = true}},
        {"good_table_only", {.exit_layer = 2, .seed = 4, .n_table = 20, .no_block = true}},
        {"good_no_has_block_key", {.exit_layer = 1, .ffn_dim = 8, .dtype = LS_TYPE_F16, .seed = 5, .n_table = 4,
                                   .omit_has_block = true}},
        {"bad_table_dup", {.exit_layer = 2, .dtype = LS_TYPE_F16, .seed = 6, .n_table = 8, .fault = RA_TABLE_DUP}},
        {"bad_table_oor", {.exit_layer = 2, .dtype = LS_TYPE_F16, .seed = 7, .n_table = 8, .fault = RA_TABLE_OOR}},
        {"bad_shape", {.exit_layer = 2, .ffn_dim = 16, .dtype = LS_TYPE_F16, .seed = 8, .fault = RA_SHAPE,
                       .fault_tensor = "adapter.ffn_down.weight"}},
        {"bad_missing", {.exit_layer = 3, .dtype = LS_TYPE_F32, .seed = 9, .fault = RA_MISSING_TENSOR,
                         .fault_tensor = "adapter.attn_v.weight"}},
        {"bad_type", {.exit_layer = 1, .dtype = LS_TYPE_F16, .seed = 10, .fault = RA_TYPE_Q8_0,
                      .fault_tensor = "adapter.attn_q.weight"}},
        {"bad_exit_layer", {.exit_layer = 2, .dtype = LS_TYPE_F16, .seed = 11, .fault = RA_E_L}},
        {"bad_ffn_too_big", {.exit_layer = 2, .ffn_dim = 16, .dtype = LS_TYPE_F16, .seed = 12,
                             .fault = RA_FFN_TOO_BIG}},
        {"bad_vocab_size", {.exit_layer = 2, .dtype = LS_TYPE_F16, .seed = 13, .fault = RA_VOCAB_SIZE}},
    };
    int n = 0;
    for (size_t i = 0; i < sizeof seeds / sizeof seeds[0]; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", argv[1], seeds[i].name);
        if (!ra_write(&b, &seeds[i].s, path)) return 1;
        n++;
    }
    /* a good file cut in the middle of its tensor data */
    uint8_t *buf;
    size_t len;
    const ra_spec s = {.exit_layer = 2, .ffn_dim = 16, .dtype = LS_TYPE_F16, .seed = 14, .n_table = 6};
    ra_write_mem(&b, &s, &buf, &len);
    char path[4096];
    snprintf(path, sizeof path, "%s/bad_truncated", argv[1]);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(buf, 1, len * 2 / 3, f) != len * 2 / 3 || fclose(f) != 0) return 1;
    free(buf);
    n++;
    printf("%d seeds written to %s\n", n, argv[1]);
    ls_model_free(m);
    return 0;
}
