/* gguf_writer.c: see gguf_writer.h. */
#include "gguf_writer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct gw_buf {
    uint8_t *p;
    size_t len, cap;
} gw_buf;

typedef struct gw_tensor {
    char *name;
    uint32_t n_dims;
    uint64_t ne[8];
    uint32_t type;
    uint8_t *data;
    uint64_t nbytes;
    bool offset_forced;
    uint64_t offset;
} gw_tensor;

struct gguf_writer {
    uint32_t version;
    uint32_t alignment;
    bool counts_forced;
    uint64_t forced_n_tensors, forced_n_kv;
    uint64_t n_kv;
    gw_buf kv;
    gw_tensor *tensors;
    size_t n_tensors;
};

static void *gw_xalloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) {
        fprintf(stderr, "gguf_writer: out of memory\n");
        abort();
    }
    return q;
}

static void gw_put(gw_buf *b, const void *p, size_t n) {
    if (b->len + n > b->cap) {
        size_t nc = b->cap ? b->cap : 256;
        while (nc < b->len + n) nc *= 2;
        b->p = gw_xalloc(b->p, nc);
        b->cap = nc;
    }
    if (n) memcpy(b->p + b->len, p, n);
    b->len += n;
}

static void gw_zeros(gw_buf *b, size_t n) {
    static const uint8_t z[64];
    while (n) {
        size_t k = n < sizeof z ? n : sizeof z;
        gw_put(b, z, k);
        n -= k;
    }
}

/* little-endian host assumed (x86-64/aarch64), as in the reader's users */
static void gw_u32(gw_buf *b, uint32_t v) { gw_put(b, &v, 4); }
static void gw_u64(gw_buf *b, uint64_t v) { gw_put(b, &v, 8); }
static void gw_str(gw_buf *b, const char *s) {
    size_t n = strlen(s);
    gw_u64(b, n);
    gw_put(b, s, n);
}

gguf_writer *gguf_writer_init(void) {
    gguf_writer *w = gw_xalloc(NULL, sizeof *w);
    memset(w, 0, sizeof *w);
    w->version = 3;
    w->alignment = 32;
    return w;
}

void gguf_writer_free(gguf_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_tensors; i++) {
        free(w->tensors[i].name);
        free(w->tensors[i].data);
    }
    free(w->tensors);
    free(w->kv.p);
    free(w);
}

void gguf_writer_set_version(gguf_writer *w, uint32_t version) { w->version = version; }

void gguf_writer_override_counts(gguf_writer *w, uint64_t n_tensors, uint64_t n_kv) {
    w->counts_forced = true;
    w->forced_n_tensors = n_tensors;
    w->forced_n_kv = n_kv;
}

static void gw_kv_head(gguf_writer *w, const char *key, uint32_t type) {
    gw_str(&w->kv, key);
    gw_u32(&w->kv, type);
    w->n_kv++;
}

void gguf_writer_set_alignment(gguf_writer *w, uint32_t alignment) {
    gguf_writer_add_u32(w, "general.alignment", alignment);
}

#define GW_SCALAR(fn, ctype, gtype)                                   \
    void fn(gguf_writer *w, const char *key, ctype v) {               \
        gw_kv_head(w, key, gtype);                                    \
        gw_put(&w->kv, &v, sizeof v);                                 \
    }
GW_SCALAR(gguf_writer_add_u8, uint8_t, GGUF_TYPE_UINT8)
GW_SCALAR(gguf_writer_add_i8, int8_t, GGUF_TYPE_INT8)
GW_SCALAR(gguf_writer_add_u16, uint16_t, GGUF_TYPE_UINT16)
GW_SCALAR(gguf_writer_add_i16, int16_t, GGUF_TYPE_INT16)
GW_SCALAR(gguf_writer_add_i32, int32_t, GGUF_TYPE_INT32)
GW_SCALAR(gguf_writer_add_u64, uint64_t, GGUF_TYPE_UINT64)
GW_SCALAR(gguf_writer_add_i64, int64_t, GGUF_TYPE_INT64)
GW_SCALAR(gguf_writer_add_f32, float, GGUF_TYPE_FLOAT32)
GW_SCALAR(gguf_writer_add_f64, double, GGUF_TYPE_FLOAT64)
#undef GW_SCALAR

void gguf_writer_add_u32(gguf_writer *w, const char *key, uint32_t v) {
    gw_kv_head(w, key, GGUF_TYPE_UINT32);
    gw_u32(&w->kv, v);
    /* a power of two lays the data out; other values are written as-is so
     * tests can check that the reader rejects them */
    if (strcmp(key, "general.alignment") == 0 && v && !(v & (v - 1))) w->alignment = v;
}

void gguf_writer_add_bool(gguf_writer *w, const char *key, bool v) {
    uint8_t b = v ? 1 : 0;
    gw_kv_head(w, key, GGUF_TYPE_BOOL);
    gw_put(&w->kv, &b, 1);
}

void gguf_writer_add_str(gguf_writer *w, const char *key, const char *v) {
    gw_kv_head(w, key, GGUF_TYPE_STRING);
    gw_str(&w->kv, v);
}

static size_t gw_scalar_size(gguf_type t) {
    switch (t) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_INT8: case GGUF_TYPE_BOOL: return 1;
    case GGUF_TYPE_UINT16: case GGUF_TYPE_INT16: return 2;
    case GGUF_TYPE_UINT32: case GGUF_TYPE_INT32: case GGUF_TYPE_FLOAT32: return 4;
    case GGUF_TYPE_UINT64: case GGUF_TYPE_INT64: case GGUF_TYPE_FLOAT64: return 8;
    default: return 0;
    }
}

void gguf_writer_add_arr(gguf_writer *w, const char *key, gguf_type elem_type, const void *data, uint64_t n) {
    size_t esz = gw_scalar_size(elem_type);
    if (!esz) {
        fprintf(stderr, "gguf_writer_add_arr: '%s': element type %d is not a number type\n", key, (int)elem_type);
        abort();
    }
    gw_kv_head(w, key, GGUF_TYPE_ARRAY);
    gw_u32(&w->kv, elem_type);
    gw_u64(&w->kv, n);
    gw_put(&w->kv, data, (size_t)n * esz);
}

void gguf_writer_add_arr_str(gguf_writer *w, const char *key, const char *const *strs, uint64_t n) {
    gw_kv_head(w, key, GGUF_TYPE_ARRAY);
    gw_u32(&w->kv, GGUF_TYPE_STRING);
    gw_u64(&w->kv, n);
    for (uint64_t i = 0; i < n; i++) gw_str(&w->kv, strs[i]);
}

void gguf_writer_add_raw(gguf_writer *w, const char *key, uint32_t type, const void *bytes, size_t len) {
    gw_kv_head(w, key, type);
    gw_put(&w->kv, bytes, len);
}

void gguf_writer_add_tensor_raw(gguf_writer *w, const char *name, uint32_t n_dims,
                                const uint64_t *ne, uint32_t type, const void *data,
                                uint64_t nbytes) {
    w->tensors = gw_xalloc(w->tensors, (w->n_tensors + 1) * sizeof *w->tensors);
    gw_tensor *t = &w->tensors[w->n_tensors++];
    memset(t, 0, sizeof *t);
    t->name = gw_xalloc(NULL, strlen(name) + 1);
    strcpy(t->name, name);
    t->n_dims = n_dims;
    for (uint32_t d = 0; d < n_dims && d < 8; d++) t->ne[d] = ne[d];
    t->type = type;
    t->nbytes = nbytes;
    t->data = gw_xalloc(NULL, (size_t)nbytes);
    if (data) memcpy(t->data, data, (size_t)nbytes);
    else memset(t->data, 0, (size_t)nbytes);
}

bool gguf_writer_add_tensor(gguf_writer *w, const char *name, ls_type type, uint32_t n_dims,
                            const int64_t *ne, const void *data) {
    if (n_dims < 1 || n_dims > 4) return false;
    int64_t n = 1;
    uint64_t une[4];
    for (uint32_t d = 0; d < n_dims; d++) {
        if (ne[d] < 0 || __builtin_mul_overflow(n, ne[d], &n)) return false;
        une[d] = (uint64_t)ne[d];
    }
    if (ne[0] % ls_type_block_elems(type) != 0) return false;
    uint64_t nbytes;
    if (!ls_type_nbytes(type, n, &nbytes)) return false;
    gguf_writer_add_tensor_raw(w, name, n_dims, une, (uint32_t)type, data, nbytes);
    return true;
}

void gguf_writer_set_tensor_offset(gguf_writer *w, size_t i, uint64_t offset) {
    if (i >= w->n_tensors) {
        fprintf(stderr, "gguf_writer_set_tensor_offset: no tensor %zu\n", i);
        abort();
    }
    w->tensors[i].offset_forced = true;
    w->tensors[i].offset = offset;
}

static uint64_t gw_align(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

void gguf_writer_write_mem(gguf_writer *w, uint8_t **out, size_t *len) {
    gw_buf b = {0};
    gw_put(&b, "GGUF", 4);
    gw_u32(&b, w->version);
    gw_u64(&b, w->counts_forced ? w->forced_n_tensors : w->n_tensors);
    gw_u64(&b, w->counts_forced ? w->forced_n_kv : w->n_kv);
    gw_put(&b, w->kv.p, w->kv.len);

    uint64_t off = 0;
    uint64_t *layout = gw_xalloc(NULL, w->n_tensors * sizeof *layout);
    for (size_t i = 0; i < w->n_tensors; i++) {
        gw_tensor *t = &w->tensors[i];
        layout[i] = off;
        off = gw_align(off + t->nbytes, w->alignment);
        gw_str(&b, t->name);
        gw_u32(&b, t->n_dims);
        for (uint32_t d = 0; d < t->n_dims && d < 8; d++) gw_u64(&b, t->ne[d]);
        gw_u32(&b, t->type);
        gw_u64(&b, t->offset_forced ? t->offset : layout[i]);
    }
    if (w->n_tensors) {
        gw_zeros(&b, (size_t)(gw_align(b.len, w->alignment) - b.len));
        size_t data_start = b.len;
        for (size_t i = 0; i < w->n_tensors; i++) {
            gw_zeros(&b, (size_t)(data_start + layout[i] - b.len));
            gw_put(&b, w->tensors[i].data, (size_t)w->tensors[i].nbytes);
        }
        gw_zeros(&b, (size_t)(gw_align(b.len - data_start, w->alignment) - (b.len - data_start)));
    }
    free(layout);
    *out = b.p ? b.p : gw_xalloc(NULL, 1);
    *len = b.len;
}

bool gguf_writer_write(gguf_writer *w, const char *path) {
    uint8_t *buf;
    size_t len;
    gguf_writer_write_mem(w, &buf, &len);
    FILE *f = fopen(path, "wb");
    bool ok = f && fwrite(buf, 1, len, f) == len;
    if (f && fclose(f) != 0) ok = false;
    free(buf);
    return ok;
}

void gguf_writer_copy_kv(gguf_writer *w, const gguf_kv *kv) {
    char key[256];
    snprintf(key, sizeof key, "%.*s", (int)kv->key.len, kv->key.ptr);
    switch (kv->type) {
    case GGUF_TYPE_STRING: {
        char *v = strndup(kv->str.ptr, kv->str.len);
        gguf_writer_add_str(w, key, v);
        free(v);
        break;
    }
    case GGUF_TYPE_UINT32: { uint32_t v; memcpy(&v, kv->data, 4); gguf_writer_add_u32(w, key, v); break; }
    case GGUF_TYPE_INT32: { int32_t v; memcpy(&v, kv->data, 4); gguf_writer_add_i32(w, key, v); break; }
    case GGUF_TYPE_FLOAT32: { float v; memcpy(&v, kv->data, 4); gguf_writer_add_f32(w, key, v); break; }
    case GGUF_TYPE_BOOL: { uint8_t v; memcpy(&v, kv->data, 1); gguf_writer_add_bool(w, key, v != 0); break; }
    case GGUF_TYPE_ARRAY:
        if (kv->arr_type == GGUF_TYPE_STRING) {
            char **ss = malloc(sizeof(char *) * (size_t)(kv->arr_n ? kv->arr_n : 1));
            for (uint64_t k = 0; k < kv->arr_n; k++) ss[k] = strndup(kv->strs[k].ptr, kv->strs[k].len);
            gguf_writer_add_arr_str(w, key, (const char *const *)ss, kv->arr_n);
            for (uint64_t k = 0; k < kv->arr_n; k++) free(ss[k]);
            free(ss);
        } else {
            gguf_writer_add_arr(w, key, kv->arr_type, kv->data, kv->arr_n);
        }
        break;
    default: break;
    }
}
