/* fuzz_safetensors.c: libFuzzer target for the safetensors parser. Parses
 * the input in place and reads every tensor it reports (name, shape, first
 * and last data byte); broken invariants trap. */
#include "safetensors.h"

#include <string.h>

#define FUZZ_NAME "fuzz.safetensors"

static volatile uint64_t sink;

static void check(bool ok) {
    if (!ok) __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    st_file *f = NULL;
    ls_err err = {{0}};
    ls_status s = st_file_open_memory(data, size, FUZZ_NAME, &f, &err);
    if (s != LS_OK) {
        check(f == NULL);
        check(strstr(err.msg, FUZZ_NAME) != NULL);
        return 0;
    }
    check(f->size == size && f->map == data && !f->owns_map);
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const st_tensor *t = &f->tensors[i];
        check(t->name != NULL);
        sink += strlen(t->name);
        check(t->type == LS_TYPE_F32 || t->type == LS_TYPE_F16 || t->type == LS_TYPE_BF16);
        check(t->n_dims <= 4);
        int64_t n = 1;
        for (int d = 0; d < 4; d++) {
            check(t->shape[d] >= 0);
            check(!__builtin_mul_overflow(n, t->shape[d], &n));
        }
        uint64_t nb;
        check(ls_type_nbytes(t->type, n, &nb) && nb == t->nbytes);
        const uint8_t *p = t->data;
        check(p >= f->map + 8 && p <= f->map + f->size && t->nbytes <= (uint64_t)(f->map + f->size - p));
        if (t->nbytes) sink += p[0] + p[t->nbytes - 1];
    }
    st_file_free(f);
    return 0;
}
