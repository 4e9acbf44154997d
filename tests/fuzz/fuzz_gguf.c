/* fuzz_gguf.c: libFuzzer target for the GGUF parser. Parses the input in
 * place, then reads every field it produced (keys, values through every
 * getter, array elements, strings, tensor data) so the sanitizers see any
 * pointer that escapes the buffer. Broken invariants trap. */
#include "gguf.h"
#include "kernels.h"

#include <stdlib.h>
#include <string.h>

#define FUZZ_NAME "fuzz.gguf"

static volatile uint64_t sink;

static void check(bool ok) {
    if (!ok) __builtin_trap();
}

static bool inside(const gguf_ctx *ctx, const void *p, uint64_t n) {
    const uint8_t *b = p;
    return n == 0 || (b >= ctx->map && b <= ctx->map + ctx->size && n <= (uint64_t)(ctx->map + ctx->size - b));
}

static void touch_str(const gguf_ctx *ctx, gguf_str s) {
    check(inside(ctx, s.ptr, s.len));
    uint64_t h = s.len;
    if (s.len) h += (uint8_t)s.ptr[0] + (uint8_t)s.ptr[s.len - 1];
    sink += h;
}

/* NUL-terminated copy of a name, for the lookup API */
static char *cstr(gguf_str s) {
    char *c = malloc(s.len + 1);
    if (!c) return NULL;
    if (s.len) memcpy(c, s.ptr, s.len);
    c[s.len] = 0;
    return c;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    gguf_ctx *ctx = NULL;
    ls_err err = {{0}};
    ls_status s = gguf_ctx_init_from_memory(data, size, FUZZ_NAME, &ctx, &err);
    if (s != LS_OK) {
        check(ctx == NULL);
        check(strstr(err.msg, FUZZ_NAME) != NULL);
        return 0;
    }
    check(ctx->version == 2 || ctx->version == 3);
    check(ctx->alignment && !(ctx->alignment & (ctx->alignment - 1)));
    check(ctx->data_offset <= ctx->size);
    for (uint64_t i = 0; i < ctx->n_kv; i++) {
        const gguf_kv *kv = &ctx->kv[i];
        touch_str(ctx, kv->key);
        check(kv->type < GGUF_TYPE_COUNT);
        char *key = cstr(kv->key);
        if (key) {
            /* lookups by name: the first match is not necessarily kv (keys
             * with embedded NULs), so only check that something is found */
            if (i < 64 && !memchr(kv->key.ptr, 0, kv->key.len)) check(gguf_find_kv(ctx, key) == kv);
            uint32_t u;
            float f;
            bool b;
            gguf_str str;
            if (gguf_get_u32(ctx, key, &u, true, &err) == LS_OK) sink += u;
            if (gguf_get_f32(ctx, key, &f, true, &err) == LS_OK) sink += (uint64_t)(f == f);
            if (gguf_get_bool(ctx, key, &b, true, &err) == LS_OK) sink += b;
            if (gguf_get_str(ctx, key, &str, true, &err) == LS_OK) touch_str(ctx, str);
            free(key);
        }
        if (kv->type == GGUF_TYPE_STRING) touch_str(ctx, kv->str);
        if (kv->type != GGUF_TYPE_ARRAY) continue;
        check(kv->arr_type < GGUF_TYPE_COUNT);
        if (kv->arr_type == GGUF_TYPE_STRING) {
            check(kv->arr_n == 0 || kv->strs != NULL);
            for (uint64_t k = 0; k < kv->arr_n; k++) touch_str(ctx, kv->strs[k]);
        }
        for (uint64_t k = 0; k <= kv->arr_n && k < 4096; k++) {
            double d;
            int64_t v;
            bool okd = gguf_arr_get_f64(kv, k, &d);
            bool oki = gguf_arr_get_i64(kv, k, &v);
            if (k == kv->arr_n) check(!okd && !oki);
            sink += (uint64_t)okd + (uint64_t)oki;
        }
    }
    for (uint64_t i = 0; i < ctx->n_tensors; i++) {
        const gguf_tensor_info *t = &ctx->tensors[i];
        touch_str(ctx, t->name);
        check(t->n_dims >= 1 && t->n_dims <= 4);
        check(ls_type_is_supported(t->type));
        int64_t n = 1;
        for (int d = 0; d < 4; d++) {
            check(t->ne[d] >= 0);
            check(!__builtin_mul_overflow(n, t->ne[d], &n));
        }
        uint64_t nb;
        check(ls_type_nbytes(t->type, n, &nb) && nb == t->nbytes);
        check(t->offset % ctx->alignment == 0);
        check(inside(ctx, t->data, t->nbytes));
        check((const uint8_t *)t->data == ctx->map + ctx->data_offset + t->offset);
        if (t->nbytes) sink += ((const uint8_t *)t->data)[0] + ((const uint8_t *)t->data)[t->nbytes - 1];
        /* any bytes of a small matrix of any type dequantize and multiply
         * without reading outside it (values may be NaN: not checked) */
        if (t->ne[0] > 0 && t->ne[0] <= 4096 && n / t->ne[0] >= 1) {
            const int64_t rows = n / t->ne[0] < 4 ? n / t->ne[0] : 4;
            const ls_weight w = {.type = (ls_type)t->type, .rows = rows, .cols = t->ne[0], .data = t->data};
            float *row = malloc(sizeof(float) * (size_t)t->ne[0]), y[4];
            if (row) {
                for (int64_t r = 0; r < rows; r++) {
                    ls_weight_get_row(&w, r, row);
                    sink += (uint64_t)(row[0] != row[0]);
                }
                for (int64_t k = 0; k < t->ne[0]; k++) row[k] = (float)(k % 7) - 3.0f;
                ls_matmul(NULL, &w, row, 1, y);
                free(row);
            }
        }
        if (i < 64 && !memchr(t->name.ptr, 0, t->name.len)) {
            char *name = cstr(t->name);
            if (name) check(gguf_find_tensor(ctx, name) == t);
            free(name);
        }
    }
    gguf_ctx_free(ctx);
    return 0;
}
