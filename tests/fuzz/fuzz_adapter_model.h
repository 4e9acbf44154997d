/* fuzz_adapter_model.h: the small random model fuzz_adapter.c loads once and
 * gen_adapter_seeds.c writes its seeds for (a 4-layer, 32-wide Llama over a
 * 32-token vocabulary: tests/support/random_model.c, tiny_vocab.c). Both
 * files live in memory (memfd), so nothing is left on disk. */
#ifndef LS_FUZZ_ADAPTER_MODEL_H
#define LS_FUZZ_ADAPTER_MODEL_H

#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "random_model.h"
#include "tiny_vocab.h"
#include "layerskip/engine.h"

#define FA_N_VOCAB 32
#define FA_N_LAYERS 4

/* an in-memory file; its path (/proc/self/fd/N) into path; -1 on failure */
static int fa_memfd(const char *name, char *path, size_t cap) {
    int fd = memfd_create(name, MFD_CLOEXEC);
    if (fd >= 0) snprintf(path, cap, "/proc/self/fd/%d", fd);
    return fd;
}

/* the model; aborts on failure (a broken harness, not a finding) */
static ls_model *fa_load_model(void) {
    char vpath[64], mpath[64];
    int vfd = fa_memfd("fuzz_adapter_vocab", vpath, sizeof vpath);
    int mfd = fa_memfd("fuzz_adapter_model", mpath, sizeof mpath);
    if (vfd < 0 || mfd < 0 || !tv_write_vocab(vpath, FA_N_VOCAB)) {
        fprintf(stderr, "fuzz_adapter: cannot write the vocabulary\n");
        abort();
    }
    rm_spec spec = {.n_layers = FA_N_LAYERS, .dim = 32, .n_heads = 2, .n_kv_heads = 1, .ffn_dim = 64,
                    .rope_theta = 10000, .norm_eps = 1e-5f, .dtype = LS_TYPE_F16, .vocab_gguf = vpath,
                    .seed = 2024, .n_shards = 1};
    rm_model *rm = rm_model_create(&spec);
    ls_model *m = NULL;
    ls_err err = {{0}};
    if (!rm || !rm_write_gguf(rm, mpath) || ls_model_load(mpath, &m, &err) != LS_OK) {
        fprintf(stderr, "fuzz_adapter: cannot make the model: %s\n", err.msg);
        abort();
    }
    rm_model_free(rm);
    close(vfd);
    close(mfd); /* the model keeps its mapping */
    return m;
}

#endif
