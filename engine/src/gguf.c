/* gguf.c: GGUF v2/v3 reader. The file is mapped read-only and parsed in
 * place: keys, strings, arrays and tensor data are pointers into the map.
 * Every length, count and offset comes from untrusted bytes, so each read
 * goes through a bounds-checked cursor and every size is overflow-checked
 * before it is used or allocated. */
#include "gguf.h"
#include "mapfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define GGUF_MAGIC 0x46554747u /* "GGUF" read little endian */
#define GGUF_HEADER_BYTES 24u
#define GGUF_DEFAULT_ALIGNMENT 32u
/* arrays of arrays are legal but unused by real models; the limit keeps
 * recursion bounded on hostile input */
#define GGUF_MAX_ARRAY_DEPTH 8
/* smallest encodings: a kv is key len (8) + type (4); a tensor info is name
 * len (8) + n_dims (4) + one ne (8) + type (4) + offset (8) */
#define GGUF_MIN_KV_BYTES 12u
#define GGUF_MIN_TENSOR_INFO_BYTES 32u

typedef struct gguf_parser {
    const uint8_t *p;
    uint64_t size;
    uint64_t pos;           /* invariant: pos <= size */
    const char *path;
    ls_err *err;
    char where[224];        /* the item being parsed, for messages */
} gguf_parser;

/* Printable copy of an untrusted name (at most ~64 chars, control bytes
 * replaced) so messages stay one readable line. */
static const char *gguf_show(gguf_str s, char *buf, size_t cap) {
    size_t n = 0;
    uint64_t lim = s.len > 64 ? 64 : s.len;
    for (uint64_t i = 0; i < lim && n + 1 < cap; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        buf[n++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    if (s.len > lim) {
        for (int i = 0; i < 3 && n + 1 < cap; i++) buf[n++] = '.';
    }
    buf[n] = 0;
    return buf;
}

static const char *gguf_type_name(uint32_t t) {
    static const char *const names[GGUF_TYPE_COUNT] = {
        "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string",
        "array", "u64", "i64", "f64",
    };
    return t < GGUF_TYPE_COUNT ? names[t] : "invalid";
}

/* bytes of one scalar; 0 for string, array and invalid types */
static uint64_t gguf_scalar_size(uint32_t t) {
    switch (t) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_INT8: case GGUF_TYPE_BOOL: return 1;
    case GGUF_TYPE_UINT16: case GGUF_TYPE_INT16: return 2;
    case GGUF_TYPE_UINT32: case GGUF_TYPE_INT32: case GGUF_TYPE_FLOAT32: return 4;
    case GGUF_TYPE_UINT64: case GGUF_TYPE_INT64: case GGUF_TYPE_FLOAT64: return 8;
    }
    return 0;
}

/* ggml type numbers we do not load, so the message can say what the file holds */
static const char *ggml_type_label(uint32_t t) {
    static const char *const names[] = {
        [0] = "F32", [1] = "F16", [2] = "Q4_0", [3] = "Q4_1", [6] = "Q5_0",
        [7] = "Q5_1", [8] = "Q8_0", [9] = "Q8_1", [10] = "Q2_K", [11] = "Q3_K",
        [12] = "Q4_K", [13] = "Q5_K", [14] = "Q6_K", [15] = "Q8_K",
        [16] = "IQ2_XXS", [17] = "IQ2_XS", [18] = "IQ3_XXS", [19] = "IQ1_S",
        [20] = "IQ4_NL", [21] = "IQ3_S", [22] = "IQ2_S", [23] = "IQ4_XS",
        [24] = "I8", [25] = "I16", [26] = "I32", [27] = "I64", [28] = "F64",
        [29] = "IQ1_M", [30] = "BF16", [34] = "TQ1_0", [35] = "TQ2_0",
    };
    if (t < sizeof names / sizeof names[0] && names[t]) return names[t];
    return "unknown";
}

static ls_status gguf_past_end(gguf_parser *ps, const char *field, uint64_t need) {
    return ls_err_set(ps->err, LS_ERR_FORMAT,
                      "%s: %s: %s (%llu bytes at offset %llu) lies past the end of the file (size %llu)",
                      ps->path, ps->where, field, (unsigned long long)need,
                      (unsigned long long)ps->pos, (unsigned long long)ps->size);
}

static ls_status gguf_rd_bytes(gguf_parser *ps, uint64_t n, const char *field, const uint8_t **out) {
    if (n > ps->size - ps->pos) return gguf_past_end(ps, field, n);
    *out = ps->p + ps->pos;
    ps->pos += n;
    return LS_OK;
}

static ls_status gguf_rd_u32(gguf_parser *ps, const char *field, uint32_t *out) {
    const uint8_t *b = NULL;
    ls_status s = gguf_rd_bytes(ps, 4, field, &b);
    if (s != LS_OK) return s;
    *out = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    return LS_OK;
}

static ls_status gguf_rd_u64(gguf_parser *ps, const char *field, uint64_t *out) {
    const uint8_t *b = NULL;
    ls_status s = gguf_rd_bytes(ps, 8, field, &b);
    if (s != LS_OK) return s;
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | b[i];
    *out = v;
    return LS_OK;
}

static ls_status gguf_rd_str(gguf_parser *ps, const char *field, gguf_str *out) {
    uint64_t len;
    ls_status s = gguf_rd_u64(ps, field, &len);
    if (s != LS_OK) return s;
    if (len > ps->size - ps->pos)
        return ls_err_set(ps->err, LS_ERR_FORMAT,
                          "%s: %s: %s length %llu at offset %llu runs past the end of the file (size %llu)",
                          ps->path, ps->where, field, (unsigned long long)len,
                          (unsigned long long)(ps->pos - 8), (unsigned long long)ps->size);
    out->len = len;
    out->ptr = (const char *)ps->p + ps->pos;
    ps->pos += len;
    return LS_OK;
}

/* Bools must be 0 or 1: loading any other byte into a C bool is undefined. */
static ls_status gguf_check_bools(gguf_parser *ps, const uint8_t *b, uint64_t n) {
    for (uint64_t i = 0; i < n; i++) {
        if (b[i] > 1)
            return ls_err_set(ps->err, LS_ERR_FORMAT,
                              "%s: %s: bool value %u at offset %llu is not 0 or 1",
                              ps->path, ps->where, b[i],
                              (unsigned long long)(b + i - ps->p));
    }
    return LS_OK;
}

static ls_status gguf_check_type(gguf_parser *ps, uint32_t t, const char *field) {
    if (t >= GGUF_TYPE_COUNT)
        return ls_err_set(ps->err, LS_ERR_FORMAT,
                          "%s: %s: invalid %s type %u (valid: 0..%d)",
                          ps->path, ps->where, field, t, GGUF_TYPE_COUNT - 1);
    return LS_OK;
}

/* Array header + payload after the u32 elem type has been read. Scalar
 * payloads are skipped in one bounds check; strings and nested arrays are
 * walked (each consumes >= 8 bytes, so the walk is linear in the file size). */
static ls_status gguf_skip_value(gguf_parser *ps, uint32_t type, int depth);

static ls_status gguf_skip_array_body(gguf_parser *ps, uint32_t elem, uint64_t n, int depth) {
    uint64_t esz = gguf_scalar_size(elem);
    if (esz) {
        uint64_t total;
        if (!ls_mul_u64(n, esz, &total))
            return ls_err_set(ps->err, LS_ERR_FORMAT,
                              "%s: %s: array of %llu %s elements: byte size overflows",
                              ps->path, ps->where, (unsigned long long)n, gguf_type_name(elem));
        const uint8_t *b;
        ls_status s = gguf_rd_bytes(ps, total, "array data", &b);
        if (s != LS_OK) return s;
        return elem == GGUF_TYPE_BOOL ? gguf_check_bools(ps, b, n) : LS_OK;
    }
    uint64_t min_elem = elem == GGUF_TYPE_STRING ? 8 : 12;
    if (n > (ps->size - ps->pos) / min_elem)
        return ls_err_set(ps->err, LS_ERR_FORMAT,
                          "%s: %s: array of %llu %s elements at offset %llu cannot fit: it lies past the end of the file (size %llu)",
                          ps->path, ps->where, (unsigned long long)n, gguf_type_name(elem),
                          (unsigned long long)ps->pos, (unsigned long long)ps->size);
    for (uint64_t i = 0; i < n; i++) {
        ls_status s = gguf_skip_value(ps, elem, depth);
        if (s != LS_OK) return s;
    }
    return LS_OK;
}

static ls_status gguf_skip_value(gguf_parser *ps, uint32_t type, int depth) {
    ls_status s;
    if (type == GGUF_TYPE_STRING) {
        gguf_str str;
        return gguf_rd_str(ps, "string", &str);
    }
    if (type == GGUF_TYPE_ARRAY) {
        if (depth >= GGUF_MAX_ARRAY_DEPTH)
            return ls_err_set(ps->err, LS_ERR_FORMAT,
                              "%s: %s: arrays nested deeper than %d levels at offset %llu",
                              ps->path, ps->where, GGUF_MAX_ARRAY_DEPTH,
                              (unsigned long long)ps->pos);
        uint32_t elem;
        uint64_t n;
        if ((s = gguf_rd_u32(ps, "array element type", &elem)) != LS_OK) return s;
        if ((s = gguf_check_type(ps, elem, "array element")) != LS_OK) return s;
        if ((s = gguf_rd_u64(ps, "array length", &n)) != LS_OK) return s;
        return gguf_skip_array_body(ps, elem, n, depth + 1);
    }
    return gguf_skip_array_body(ps, type, 1, depth);
}

static ls_status gguf_parse_kv(gguf_parser *ps, gguf_kv *kv) {
    ls_status s;
    char shown[80];
    if ((s = gguf_rd_str(ps, "key", &kv->key)) != LS_OK) return s;
    snprintf(ps->where, sizeof ps->where, "key '%s'", gguf_show(kv->key, shown, sizeof shown));
    uint32_t type;
    if ((s = gguf_rd_u32(ps, "value type", &type)) != LS_OK) return s;
    if ((s = gguf_check_type(ps, type, "value")) != LS_OK) return s;
    kv->type = (gguf_type)type;

    if (type == GGUF_TYPE_STRING) return gguf_rd_str(ps, "string value", &kv->str);
    if (type != GGUF_TYPE_ARRAY) {
        kv->data = ps->p + ps->pos;
        return gguf_skip_array_body(ps, type, 1, 0);
    }

    uint32_t elem;
    uint64_t n;
    if ((s = gguf_rd_u32(ps, "array element type", &elem)) != LS_OK) return s;
    if ((s = gguf_check_type(ps, elem, "array element")) != LS_OK) return s;
    if ((s = gguf_rd_u64(ps, "array length", &n)) != LS_OK) return s;
    kv->arr_type = (gguf_type)elem;
    kv->arr_n = n;
    kv->data = ps->p + ps->pos;
    if (elem != GGUF_TYPE_STRING || n == 0) return gguf_skip_array_body(ps, elem, n, 1);

    /* string array: bound n by the bytes left before allocating the index */
    if (n > (ps->size - ps->pos) / 8)
        return ls_err_set(ps->err, LS_ERR_FORMAT,
                          "%s: %s: array of %llu strings at offset %llu cannot fit: it lies past the end of the file (size %llu)",
                          ps->path, ps->where, (unsigned long long)n,
                          (unsigned long long)ps->pos, (unsigned long long)ps->size);
    kv->strs = calloc((size_t)n, sizeof *kv->strs);
    if (!kv->strs)
        return ls_err_set(ps->err, LS_ERR_NOMEM, "%s: %s: out of memory for %llu strings",
                          ps->path, ps->where, (unsigned long long)n);
    for (uint64_t i = 0; i < n; i++) {
        if ((s = gguf_rd_str(ps, "array string", &kv->strs[i])) != LS_OK) return s;
    }
    return LS_OK;
}

static ls_status gguf_parse_tensor_info(gguf_parser *ps, gguf_tensor_info *ti, uint64_t alignment) {
    ls_status s;
    char shown[80];
    if ((s = gguf_rd_str(ps, "tensor name", &ti->name)) != LS_OK) return s;
    snprintf(ps->where, sizeof ps->where, "tensor '%s'", gguf_show(ti->name, shown, sizeof shown));
    if ((s = gguf_rd_u32(ps, "n_dims", &ti->n_dims)) != LS_OK) return s;
    if (ti->n_dims < 1 || ti->n_dims > 4)
        return ls_err_set(ps->err, LS_ERR_FORMAT, "%s: %s: n_dims %u is out of range (1..4)",
                          ps->path, ps->where, ti->n_dims);
    uint64_t nelem = 1;
    for (uint32_t d = 0; d < 4; d++) ti->ne[d] = 1;
    for (uint32_t d = 0; d < ti->n_dims; d++) {
        uint64_t v;
        if ((s = gguf_rd_u64(ps, "dimension", &v)) != LS_OK) return s;
        if (v > (uint64_t)INT64_MAX)
            return ls_err_set(ps->err, LS_ERR_FORMAT, "%s: %s: ne[%u] = %lld is negative",
                              ps->path, ps->where, d, (long long)v);
        ti->ne[d] = (int64_t)v;
        if (!ls_mul_u64(nelem, v, &nelem) || nelem > (uint64_t)INT64_MAX)
            return ls_err_set(ps->err, LS_ERR_FORMAT,
                              "%s: %s: element count overflows (product of the first %u dimensions exceeds 2^63)",
                              ps->path, ps->where, d + 1);
    }
    uint32_t type;
    if ((s = gguf_rd_u32(ps, "tensor type", &type)) != LS_OK) return s;
    if (!ls_type_is_supported(type))
        return ls_err_set(ps->err, LS_ERR_UNSUPPORTED,
                          "%s: %s: tensor type %u (%s) is not supported (supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, "
                          "Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS)",
                          ps->path, ps->where, type, ggml_type_label(type));
    ti->type = (ls_type)type;
    int64_t blk = ls_type_block_elems(ti->type);
    if (ti->ne[0] % blk != 0)
        return ls_err_set(ps->err, LS_ERR_FORMAT,
                          "%s: %s: ne[0] = %lld is not a multiple of the %s block size %lld",
                          ps->path, ps->where, (long long)ti->ne[0], ls_type_name(ti->type),
                          (long long)blk);
    if (!ls_type_nbytes(ti->type, (int64_t)nelem, &ti->nbytes))
        return ls_err_set(ps->err, LS_ERR_FORMAT,
                          "%s: %s: byte size of %llu %s elements overflows",
                          ps->path, ps->where, (unsigned long long)nelem, ls_type_name(ti->type));
    if ((s = gguf_rd_u64(ps, "data offset", &ti->offset)) != LS_OK) return s;
    if (ti->offset % alignment != 0)
        return ls_err_set(ps->err, LS_ERR_FORMAT,
                          "%s: %s: data offset %llu is not aligned to %llu bytes (general.alignment)",
                          ps->path, ps->where, (unsigned long long)ti->offset,
                          (unsigned long long)alignment);
    return LS_OK;
}

static int gguf_str_cmp(const void *a, const void *b) {
    const gguf_str *x = a, *y = b;
    uint64_t n = x->len < y->len ? x->len : y->len;
    int c = n ? memcmp(x->ptr, y->ptr, (size_t)n) : 0;
    if (c) return c;
    return x->len < y->len ? -1 : x->len > y->len;
}

/* Sorts a scratch copy of the names; O(n log n) so a hostile file with
 * millions of entries cannot stall the loader. */
static ls_status gguf_check_unique(gguf_parser *ps, gguf_str *names, uint64_t n, const char *what) {
    if (n < 2) return LS_OK;
    qsort(names, (size_t)n, sizeof *names, gguf_str_cmp);
    for (uint64_t i = 1; i < n; i++) {
        if (gguf_str_cmp(&names[i - 1], &names[i]) == 0) {
            char shown[80];
            return ls_err_set(ps->err, LS_ERR_FORMAT, "%s: duplicate %s '%s'", ps->path, what,
                              gguf_show(names[i], shown, sizeof shown));
        }
    }
    return LS_OK;
}

static ls_status gguf_parse(gguf_ctx *ctx, ls_err *err) {
    gguf_parser ps = {.p = ctx->map, .size = ctx->size, .pos = 0, .path = ctx->path, .err = err};
    ls_status s;
    snprintf(ps.where, sizeof ps.where, "header");

    if (ctx->size == 0)
        return ls_err_set(err, LS_ERR_FORMAT, "%s: empty file (0 bytes): not a GGUF file", ctx->path);
    if (ctx->size < 4 || memcmp(ctx->map, "GGUF", 4) != 0) {
        if (ctx->size < 4)
            return ls_err_set(err, LS_ERR_FORMAT,
                              "%s: file too short (%llu bytes) to hold the GGUF magic",
                              ctx->path, (unsigned long long)ctx->size);
        return ls_err_set(err, LS_ERR_FORMAT,
                          "%s: bad magic %02x %02x %02x %02x (expected \"GGUF\"): not a GGUF file",
                          ctx->path, ctx->map[0], ctx->map[1], ctx->map[2], ctx->map[3]);
    }
    ps.pos = 4;
    if ((s = gguf_rd_u32(&ps, "version", &ctx->version)) != LS_OK) return s;
    if (ctx->version != 2 && ctx->version != 3) {
        bool swapped = ctx->version == 0x02000000u || ctx->version == 0x03000000u;
        return ls_err_set(err, LS_ERR_UNSUPPORTED,
                          "%s: GGUF version %u is not supported (only versions 2 and 3%s)",
                          ctx->path, ctx->version,
                          swapped ? "; this looks like a big-endian file" : "");
    }
    if ((s = gguf_rd_u64(&ps, "tensor count", &ctx->n_tensors)) != LS_OK) return s;
    if ((s = gguf_rd_u64(&ps, "kv count", &ctx->n_kv)) != LS_OK) return s;

    /* reject counts that cannot fit before allocating anything for them */
    uint64_t left = ctx->size - ps.pos;
    uint64_t need_kv, need_ti, need;
    if (!ls_mul_u64(ctx->n_kv, GGUF_MIN_KV_BYTES, &need_kv) ||
        !ls_mul_u64(ctx->n_tensors, GGUF_MIN_TENSOR_INFO_BYTES, &need_ti) ||
        !ls_add_u64(need_kv, need_ti, &need) || need > left)
        return ls_err_set(err, LS_ERR_FORMAT,
                          "%s: header claims %llu tensors and %llu kv pairs, which cannot fit: "
                          "they would lie past the end of the file (size %llu)",
                          ctx->path, (unsigned long long)ctx->n_tensors,
                          (unsigned long long)ctx->n_kv, (unsigned long long)ctx->size);

    uint64_t n_names = ctx->n_kv > ctx->n_tensors ? ctx->n_kv : ctx->n_tensors;
    ctx->kv = calloc(ctx->n_kv ? (size_t)ctx->n_kv : 1, sizeof *ctx->kv);
    ctx->tensors = calloc(ctx->n_tensors ? (size_t)ctx->n_tensors : 1, sizeof *ctx->tensors);
    gguf_str *names = calloc(n_names ? (size_t)n_names : 1, sizeof *names);
    if (!ctx->kv || !ctx->tensors || !names) {
        free(names);
        return ls_err_set(err, LS_ERR_NOMEM, "%s: out of memory for %llu kv pairs and %llu tensors",
                          ctx->path, (unsigned long long)ctx->n_kv,
                          (unsigned long long)ctx->n_tensors);
    }

    for (uint64_t i = 0; i < ctx->n_kv; i++) {
        snprintf(ps.where, sizeof ps.where, "kv #%llu", (unsigned long long)i);
        if ((s = gguf_parse_kv(&ps, &ctx->kv[i])) != LS_OK) goto done;
        names[i] = ctx->kv[i].key;
    }
    if ((s = gguf_check_unique(&ps, names, ctx->n_kv, "key")) != LS_OK) goto done;

    ctx->alignment = GGUF_DEFAULT_ALIGNMENT;
    uint32_t align;
    s = gguf_get_u32(ctx, "general.alignment", &align, false, err);
    if (s == LS_OK) {
        if (align == 0 || (align & (align - 1)) != 0) {
            s = ls_err_set(err, LS_ERR_FORMAT,
                           "%s: general.alignment = %u is not a power of two", ctx->path, align);
            goto done;
        }
        ctx->alignment = align;
    } else if (s != LS_ERR_MISSING) {
        goto done;
    }

    for (uint64_t i = 0; i < ctx->n_tensors; i++) {
        snprintf(ps.where, sizeof ps.where, "tensor #%llu", (unsigned long long)i);
        if ((s = gguf_parse_tensor_info(&ps, &ctx->tensors[i], ctx->alignment)) != LS_OK) goto done;
        names[i] = ctx->tensors[i].name;
    }
    if ((s = gguf_check_unique(&ps, names, ctx->n_tensors, "tensor name")) != LS_OK) goto done;

    /* pos <= size and alignment <= 2^31, so this cannot overflow */
    uint64_t data_offset = (ps.pos + ctx->alignment - 1) / ctx->alignment * ctx->alignment;
    /* vocab-only files end right after the kv pairs, without padding */
    if (ctx->n_tensors == 0 && data_offset > ctx->size) data_offset = ctx->size;
    ctx->data_offset = data_offset;

    for (uint64_t i = 0; i < ctx->n_tensors; i++) {
        gguf_tensor_info *ti = &ctx->tensors[i];
        uint64_t begin, end;
        char shown[80];
        if (!ls_add_u64(data_offset, ti->offset, &begin) || !ls_add_u64(begin, ti->nbytes, &end)) {
            s = ls_err_set(err, LS_ERR_FORMAT,
                           "%s: tensor '%s': data offset %llu + size %llu overflows and lies past the end of the file (size %llu)",
                           ctx->path, gguf_show(ti->name, shown, sizeof shown),
                           (unsigned long long)ti->offset, (unsigned long long)ti->nbytes,
                           (unsigned long long)ctx->size);
            goto done;
        }
        if (end > ctx->size) {
            s = ls_err_set(err, LS_ERR_FORMAT,
                           "%s: tensor '%s': data [%llu, %llu) lies past the end of the file (size %llu)",
                           ctx->path, gguf_show(ti->name, shown, sizeof shown),
                           (unsigned long long)begin, (unsigned long long)end,
                           (unsigned long long)ctx->size);
            goto done;
        }
        ti->data = ctx->map + begin;
    }
    s = LS_OK;
done:
    free(names);
    return s;
}

static ls_status gguf_ctx_new(const char *name, gguf_ctx **out, ls_err *err) {
    gguf_ctx *ctx = calloc(1, sizeof *ctx);
    if (ctx) ctx->path = strdup(name);
    if (!ctx || !ctx->path) {
        free(ctx);
        return ls_err_set(err, LS_ERR_NOMEM, "%s: out of memory", name);
    }
    *out = ctx;
    return LS_OK;
}

ls_status gguf_ctx_init_from_memory(const void *buf, uint64_t size, const char *name,
                                    gguf_ctx **out, ls_err *err) {
    *out = NULL;
    if (!name) name = "<memory>";
    if (!buf && size)
        return ls_err_set(err, LS_ERR_INVALID, "%s: NULL buffer of %llu bytes", name,
                          (unsigned long long)size);
    gguf_ctx *ctx = NULL;
    ls_status s = gguf_ctx_new(name, &ctx, err);
    if (s != LS_OK) return s;
    ctx->map = buf;
    ctx->size = size;
    ctx->owns_map = false;
    if ((s = gguf_parse(ctx, err)) != LS_OK) {
        gguf_ctx_free(ctx);
        return s;
    }
    *out = ctx;
    return LS_OK;
}

ls_status gguf_ctx_init_from_file(const char *path, gguf_ctx **out, ls_err *err) {
    *out = NULL;
    const uint8_t *map;
    uint64_t size;
    ls_status s = ls_map_file(path, "GGUF file", &map, &size, err);
    if (s != LS_OK) return s;
    if ((s = gguf_ctx_init_from_memory(map, size, path, out, err)) != LS_OK) {
        ls_unmap_file(map, size);
        return s;
    }
    (*out)->owns_map = true;
    return LS_OK;
}

void gguf_ctx_free(gguf_ctx *ctx) {
    if (!ctx) return;
    if (ctx->kv) {
        for (uint64_t i = 0; i < ctx->n_kv; i++) free(ctx->kv[i].strs);
        free(ctx->kv);
    }
    free(ctx->tensors);
    if (ctx->owns_map) ls_unmap_file(ctx->map, ctx->size);
    free(ctx->path);
    free(ctx);
}

bool gguf_str_eq(gguf_str s, const char *cstr) {
    size_t n = strlen(cstr);
    return s.len == n && (n == 0 || memcmp(s.ptr, cstr, n) == 0);
}

const gguf_kv *gguf_find_kv(const gguf_ctx *ctx, const char *key) {
    for (uint64_t i = 0; i < ctx->n_kv; i++) {
        if (gguf_str_eq(ctx->kv[i].key, key)) return &ctx->kv[i];
    }
    return NULL;
}

const gguf_tensor_info *gguf_find_tensor(const gguf_ctx *ctx, const char *name) {
    for (uint64_t i = 0; i < ctx->n_tensors; i++) {
        if (gguf_str_eq(ctx->tensors[i].name, name)) return &ctx->tensors[i];
    }
    return NULL;
}

/* Integer value of an integer-typed scalar, widened: *is_neg tells the sign. */
static bool gguf_read_int(gguf_type t, const void *p, uint64_t *mag, bool *is_neg) {
    int64_t sv;
    uint64_t uv;
    switch (t) {
    case GGUF_TYPE_UINT8: { uint8_t v; memcpy(&v, p, 1); uv = v; goto unsigned_; }
    case GGUF_TYPE_UINT16: { uint16_t v; memcpy(&v, p, 2); uv = v; goto unsigned_; }
    case GGUF_TYPE_UINT32: { uint32_t v; memcpy(&v, p, 4); uv = v; goto unsigned_; }
    case GGUF_TYPE_UINT64: { memcpy(&uv, p, 8); goto unsigned_; }
    case GGUF_TYPE_INT8: { int8_t v; memcpy(&v, p, 1); sv = v; goto signed_; }
    case GGUF_TYPE_INT16: { int16_t v; memcpy(&v, p, 2); sv = v; goto signed_; }
    case GGUF_TYPE_INT32: { int32_t v; memcpy(&v, p, 4); sv = v; goto signed_; }
    case GGUF_TYPE_INT64: { memcpy(&sv, p, 8); goto signed_; }
    default: return false;
    }
unsigned_:
    *mag = uv;
    *is_neg = false;
    return true;
signed_:
    *is_neg = sv < 0;
    *mag = sv < 0 ? (uint64_t)0 - (uint64_t)sv : (uint64_t)sv;
    return true;
}

static const gguf_kv *gguf_lookup(const gguf_ctx *ctx, const char *key, bool required,
                                  ls_err *err, ls_status *s) {
    const gguf_kv *kv = gguf_find_kv(ctx, key);
    if (!kv) {
        *s = LS_ERR_MISSING;
        if (required) ls_err_set(err, LS_ERR_MISSING, "%s: required key '%s' is missing", ctx->path, key);
    }
    return kv;
}

static ls_status gguf_wrong_type(const gguf_ctx *ctx, const gguf_kv *kv, const char *key,
                                 const char *want, ls_err *err) {
    if (kv->type == GGUF_TYPE_ARRAY)
        return ls_err_set(err, LS_ERR_FORMAT, "%s: key '%s' is an array of %s, expected %s",
                          ctx->path, key, gguf_type_name(kv->arr_type), want);
    return ls_err_set(err, LS_ERR_FORMAT, "%s: key '%s' has type %s, expected %s", ctx->path,
                      key, gguf_type_name(kv->type), want);
}

ls_status gguf_get_u32(const gguf_ctx *ctx, const char *key, uint32_t *out, bool required, ls_err *err) {
    ls_status s = LS_OK;
    const gguf_kv *kv = gguf_lookup(ctx, key, required, err, &s);
    if (!kv) return s;
    uint64_t mag;
    bool neg;
    if (!gguf_read_int(kv->type, kv->data, &mag, &neg)) return gguf_wrong_type(ctx, kv, key, "an integer", err);
    if (neg || mag > UINT32_MAX)
        return ls_err_set(err, LS_ERR_FORMAT, "%s: key '%s' = %s%llu does not fit in u32",
                          ctx->path, key, neg ? "-" : "", (unsigned long long)mag);
    *out = (uint32_t)mag;
    return LS_OK;
}

ls_status gguf_get_f32(const gguf_ctx *ctx, const char *key, float *out, bool required, ls_err *err) {
    ls_status s = LS_OK;
    const gguf_kv *kv = gguf_lookup(ctx, key, required, err, &s);
    if (!kv) return s;
    if (kv->type == GGUF_TYPE_FLOAT32) {
        memcpy(out, kv->data, 4);
    } else if (kv->type == GGUF_TYPE_FLOAT64) {
        double d;
        memcpy(&d, kv->data, 8);
        *out = (float)d;
    } else {
        return gguf_wrong_type(ctx, kv, key, "f32", err);
    }
    return LS_OK;
}

ls_status gguf_get_bool(const gguf_ctx *ctx, const char *key, bool *out, bool required, ls_err *err) {
    ls_status s = LS_OK;
    const gguf_kv *kv = gguf_lookup(ctx, key, required, err, &s);
    if (!kv) return s;
    if (kv->type != GGUF_TYPE_BOOL) return gguf_wrong_type(ctx, kv, key, "bool", err);
    *out = *(const uint8_t *)kv->data != 0;
    return LS_OK;
}

ls_status gguf_get_str(const gguf_ctx *ctx, const char *key, gguf_str *out, bool required, ls_err *err) {
    ls_status s = LS_OK;
    const gguf_kv *kv = gguf_lookup(ctx, key, required, err, &s);
    if (!kv) return s;
    if (kv->type != GGUF_TYPE_STRING) return gguf_wrong_type(ctx, kv, key, "string", err);
    *out = kv->str;
    return LS_OK;
}

bool gguf_arr_get_f64(const gguf_kv *kv, uint64_t i, double *out) {
    if (!kv || kv->type != GGUF_TYPE_ARRAY || i >= kv->arr_n) return false;
    uint64_t esz = gguf_scalar_size(kv->arr_type);
    if (!esz) return false;
    const uint8_t *p = (const uint8_t *)kv->data + i * esz;
    if (kv->arr_type == GGUF_TYPE_FLOAT32) {
        float f;
        memcpy(&f, p, 4);
        *out = f;
        return true;
    }
    if (kv->arr_type == GGUF_TYPE_FLOAT64) {
        memcpy(out, p, 8);
        return true;
    }
    if (kv->arr_type == GGUF_TYPE_BOOL) {
        *out = *p != 0;
        return true;
    }
    uint64_t mag;
    bool neg;
    if (!gguf_read_int(kv->arr_type, p, &mag, &neg)) return false;
    *out = neg ? -(double)mag : (double)mag;
    return true;
}

bool gguf_arr_get_i64(const gguf_kv *kv, uint64_t i, int64_t *out) {
    if (!kv || kv->type != GGUF_TYPE_ARRAY || i >= kv->arr_n) return false;
    uint64_t esz = gguf_scalar_size(kv->arr_type);
    if (!esz) return false;
    const uint8_t *p = (const uint8_t *)kv->data + i * esz;
    if (kv->arr_type == GGUF_TYPE_FLOAT32 || kv->arr_type == GGUF_TYPE_FLOAT64) {
        double d;
        if (kv->arr_type == GGUF_TYPE_FLOAT32) {
            float f;
            memcpy(&f, p, 4);
            d = f;
        } else {
            memcpy(&d, p, 8);
        }
        /* only exact integers in range; the bound 2^63 is exact in a double */
        if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0) || d != (double)(int64_t)d)
            return false;
        *out = (int64_t)d;
        return true;
    }
    if (kv->arr_type == GGUF_TYPE_BOOL) {
        *out = *p != 0;
        return true;
    }
    uint64_t mag;
    bool neg;
    if (!gguf_read_int(kv->arr_type, p, &mag, &neg)) return false;
    if (neg) {
        if (mag > (uint64_t)INT64_MAX + 1) return false;
        *out = mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag;
    } else {
        if (mag > (uint64_t)INT64_MAX) return false;
        *out = (int64_t)mag;
    }
    return true;
}
