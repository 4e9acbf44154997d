/* gguf.h: reader for GGUF v2/v3 model files (memory-mapped, read-only).
 *
 * Byte layout (little endian):
 *   u32 magic "GGUF" (0x46554747) | u32 version (2 or 3)
 *   u64 n_tensors | u64 n_kv
 *   n_kv x { str key | u32 value_type | value }
 *      str   = u64 len | len bytes (not NUL terminated)
 *      value = scalar of value_type, or for ARRAY: u32 elem_type | u64 n | n values
 *   n_tensors x { str name | u32 n_dims (1..4) | n_dims x u64 ne | u32 type | u64 offset }
 *   padding to `general.alignment` (u32 key, default 32, power of two)
 *   tensor data: each tensor at data_start + offset (offset aligned)
 * ne[0] is the innermost (contiguous) dimension: a weight with ne = {cols, rows}
 * is `rows` rows of `cols` elements.
 *
 * Every count, length, offset and size is checked against the file size with
 * overflow-checked arithmetic; a bad file gives LS_ERR_FORMAT (or
 * LS_ERR_UNSUPPORTED for an unknown tensor type) with a message naming the
 * file and the problem. */
#ifndef LS_GGUF_H
#define LS_GGUF_H

#include "layerskip/ls_common.h"

typedef enum gguf_type {
    GGUF_TYPE_UINT8 = 0,
    GGUF_TYPE_INT8 = 1,
    GGUF_TYPE_UINT16 = 2,
    GGUF_TYPE_INT16 = 3,
    GGUF_TYPE_UINT32 = 4,
    GGUF_TYPE_INT32 = 5,
    GGUF_TYPE_FLOAT32 = 6,
    GGUF_TYPE_BOOL = 7,
    GGUF_TYPE_STRING = 8,
    GGUF_TYPE_ARRAY = 9,
    GGUF_TYPE_UINT64 = 10,
    GGUF_TYPE_INT64 = 11,
    GGUF_TYPE_FLOAT64 = 12,
    GGUF_TYPE_COUNT
} gguf_type;

/* a string inside the mapped file; not NUL terminated */
typedef struct gguf_str {
    uint64_t len;
    const char *ptr;
} gguf_str;

typedef struct gguf_kv {
    gguf_str key;
    gguf_type type;       /* value type; GGUF_TYPE_ARRAY for arrays */
    gguf_type arr_type;   /* element type when type == ARRAY */
    uint64_t arr_n;       /* element count when type == ARRAY */
    const void *data;     /* scalar: the value; array of numbers: first element
                             (unaligned: read with memcpy); unused for strings */
    gguf_str str;         /* type == STRING */
    gguf_str *strs;       /* ARRAY of STRING: arr_n entries (owned by ctx) */
} gguf_kv;

typedef struct gguf_tensor_info {
    gguf_str name;
    uint32_t n_dims;
    int64_t ne[4];        /* unused dims are 1 */
    ls_type type;
    uint64_t offset;      /* relative to the data section */
    uint64_t nbytes;
    const void *data;     /* pointer into the mapping */
} gguf_tensor_info;

typedef struct gguf_ctx {
    char *path;           /* copy of the path, for messages */
    const uint8_t *map;   /* whole file (mmap or caller's buffer) */
    uint64_t size;
    bool owns_map;        /* munmap on free */
    uint32_t version;
    uint64_t n_kv;
    gguf_kv *kv;
    uint64_t n_tensors;
    gguf_tensor_info *tensors;
    uint64_t alignment;
    uint64_t data_offset; /* start of the tensor data section */
} gguf_ctx;

/* Map and parse a file. On error *out is NULL and err says why. */
ls_status gguf_ctx_init_from_file(const char *path, gguf_ctx **out, ls_err *err);
/* Parse a caller-owned buffer (fuzzing, tests); `name` is used in messages. */
ls_status gguf_ctx_init_from_memory(const void *buf, uint64_t size, const char *name,
                                    gguf_ctx **out, ls_err *err);
void gguf_ctx_free(gguf_ctx *ctx);

const gguf_kv *gguf_find_kv(const gguf_ctx *ctx, const char *key);
const gguf_tensor_info *gguf_find_tensor(const gguf_ctx *ctx, const char *name);
bool gguf_str_eq(gguf_str s, const char *cstr);

/* Typed getters: LS_OK, LS_ERR_MISSING when absent (err filled only when
 * `required`), LS_ERR_FORMAT on a type that cannot convert (any integer type
 * converts to u32/i64 when the value fits; f32 accepts f32/f64). */
ls_status gguf_get_u32(const gguf_ctx *ctx, const char *key, uint32_t *out, bool required, ls_err *err);
ls_status gguf_get_f32(const gguf_ctx *ctx, const char *key, float *out, bool required, ls_err *err);
ls_status gguf_get_bool(const gguf_ctx *ctx, const char *key, bool *out, bool required, ls_err *err);
ls_status gguf_get_str(const gguf_ctx *ctx, const char *key, gguf_str *out, bool required, ls_err *err);
/* element i of a numeric array kv as double / int64 (false if out of range or not numeric) */
bool gguf_arr_get_f64(const gguf_kv *kv, uint64_t i, double *out);
bool gguf_arr_get_i64(const gguf_kv *kv, uint64_t i, int64_t *out);

#endif
