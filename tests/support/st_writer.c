/* st_writer.c: see st_writer.h. The header is built with cJSON so names
 * are escaped correctly. */
#include "st_writer.h"

#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct sw_tensor {
    char *name;
    char dtype[16];
    uint32_t n_dims;
    int64_t shape[8];
    uint8_t *data;
    uint64_t nbytes;
} sw_tensor;

struct st_writer {
    sw_tensor *tensors;
    size_t n_tensors;
    cJSON *meta;
};

static void *sw_xalloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) {
        fprintf(stderr, "st_writer: out of memory\n");
        abort();
    }
    return q;
}

static void sw_check(const void *p) {
    if (!p) {
        fprintf(stderr, "st_writer: out of memory\n");
        abort();
    }
}

st_writer *st_writer_init(void) {
    st_writer *w = sw_xalloc(NULL, sizeof *w);
    memset(w, 0, sizeof *w);
    return w;
}

void st_writer_free(st_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_tensors; i++) {
        free(w->tensors[i].name);
        free(w->tensors[i].data);
    }
    free(w->tensors);
    cJSON_Delete(w->meta);
    free(w);
}

void st_writer_add_metadata(st_writer *w, const char *key, const char *value) {
    if (!w->meta) sw_check(w->meta = cJSON_CreateObject());
    sw_check(cJSON_AddStringToObject(w->meta, key, value));
}

void st_writer_add_tensor_raw(st_writer *w, const char *name, const char *dtype, uint32_t n_dims,
                              const int64_t *shape, const void *data, uint64_t nbytes) {
    w->tensors = sw_xalloc(w->tensors, (w->n_tensors + 1) * sizeof *w->tensors);
    sw_tensor *t = &w->tensors[w->n_tensors++];
    memset(t, 0, sizeof *t);
    t->name = sw_xalloc(NULL, strlen(name) + 1);
    strcpy(t->name, name);
    snprintf(t->dtype, sizeof t->dtype, "%s", dtype);
    t->n_dims = n_dims > 8 ? 8 : n_dims;
    for (uint32_t d = 0; d < t->n_dims; d++) t->shape[d] = shape[d];
    t->nbytes = nbytes;
    t->data = sw_xalloc(NULL, (size_t)nbytes);
    if (data) memcpy(t->data, data, (size_t)nbytes);
    else memset(t->data, 0, (size_t)nbytes);
}

void st_writer_add_tensor(st_writer *w, const char *name, ls_type type, uint32_t n_dims,
                          const int64_t *shape, const void *data) {
    int64_t n = 1;
    for (uint32_t d = 0; d < n_dims; d++) n *= shape[d];
    uint64_t nbytes = 0;
    if (!ls_type_nbytes(type, n, &nbytes) || ls_type_block_elems(type) != 1) {
        fprintf(stderr, "st_writer_add_tensor: '%s': type %s cannot be stored\n", name, ls_type_name(type));
        abort();
    }
    st_writer_add_tensor_raw(w, name, ls_type_name(type), n_dims, shape, data, nbytes);
}

static void sw_pack(const char *header, size_t hlen, const void *data, size_t ndata,
                    uint8_t **out, size_t *len) {
    size_t padded = (hlen + 7) / 8 * 8;
    size_t total = 8 + padded + ndata;
    uint8_t *b = sw_xalloc(NULL, total);
    uint64_t h = padded;
    memcpy(b, &h, 8); /* little-endian host */
    memcpy(b + 8, header, hlen);
    memset(b + 8 + hlen, ' ', padded - hlen);
    if (ndata) memcpy(b + 8 + padded, data, ndata);
    *out = b;
    *len = total;
}

void st_write_raw_mem(const char *header_json, const void *data, size_t ndata, uint8_t **out, size_t *len) {
    sw_pack(header_json, strlen(header_json), data, ndata, out, len);
}

static bool sw_write_file(const char *path, const uint8_t *buf, size_t len) {
    FILE *f = fopen(path, "wb");
    bool ok = f && fwrite(buf, 1, len, f) == len;
    if (f && fclose(f) != 0) ok = false;
    return ok;
}

bool st_write_raw(const char *path, const char *header_json, const void *data, size_t ndata) {
    uint8_t *buf;
    size_t len;
    st_write_raw_mem(header_json, data, ndata, &buf, &len);
    bool ok = sw_write_file(path, buf, len);
    free(buf);
    return ok;
}

void st_writer_write_mem(st_writer *w, uint8_t **out, size_t *len) {
    cJSON *root = cJSON_CreateObject();
    sw_check(root);
    if (w->meta && !cJSON_AddItemReferenceToObject(root, "__metadata__", w->meta)) sw_check(NULL);
    uint64_t off = 0;
    for (size_t i = 0; i < w->n_tensors; i++) {
        sw_tensor *t = &w->tensors[i];
        cJSON *e = cJSON_AddObjectToObject(root, t->name);
        sw_check(e);
        sw_check(cJSON_AddStringToObject(e, "dtype", t->dtype));
        cJSON *shape = cJSON_AddArrayToObject(e, "shape");
        sw_check(shape);
        for (uint32_t d = 0; d < t->n_dims; d++) {
            cJSON *v = cJSON_CreateNumber((double)t->shape[d]);
            sw_check(v);
            cJSON_AddItemToArray(shape, v);
        }
        cJSON *offs = cJSON_AddArrayToObject(e, "data_offsets");
        sw_check(offs);
        cJSON *b = cJSON_CreateNumber((double)off), *en = cJSON_CreateNumber((double)(off + t->nbytes));
        sw_check(b);
        sw_check(en);
        cJSON_AddItemToArray(offs, b);
        cJSON_AddItemToArray(offs, en);
        off += t->nbytes;
    }
    char *json = cJSON_PrintUnformatted(root);
    sw_check(json);
    cJSON_Delete(root);
    uint8_t *data = sw_xalloc(NULL, (size_t)off);
    size_t at = 0;
    for (size_t i = 0; i < w->n_tensors; i++) {
        if (w->tensors[i].nbytes) memcpy(data + at, w->tensors[i].data, (size_t)w->tensors[i].nbytes);
        at += (size_t)w->tensors[i].nbytes;
    }
    sw_pack(json, strlen(json), data, (size_t)off, out, len);
    free(data);
    free(json);
}

bool st_writer_write(st_writer *w, const char *path) {
    uint8_t *buf;
    size_t len;
    st_writer_write_mem(w, &buf, &len);
    bool ok = sw_write_file(path, buf, len);
    free(buf);
    return ok;
}
