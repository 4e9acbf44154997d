/* ls_common.h: status codes, error messages and tensor element types shared by
 * every engine module. Bad input is reported through ls_status + ls_err (a
 * message that names the file/flag/field and the problem); broken invariants
 * assert. */
#ifndef LS_COMMON_H
#define LS_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

typedef enum ls_status {
    LS_OK = 0,
    LS_ERR_IO = -1,          /* open/read/mmap failed */
    LS_ERR_FORMAT = -2,      /* malformed file or JSON */
    LS_ERR_UNSUPPORTED = -3, /* valid but not supported (tensor type, arch) */
    LS_ERR_NOMEM = -4,
    LS_ERR_INVALID = -5,     /* bad argument / request value */
    LS_ERR_RANGE = -6,       /* value out of allowed range (context full) */
    LS_ERR_MISSING = -7,     /* required tensor / key / file missing */
} ls_status;

const char *ls_strerror(ls_status s);

/* Error detail: a human-readable message, filled by the function that fails. */
typedef struct ls_err {
    char msg[1024];
} ls_err;

/* printf-style: set err->msg (err may be NULL). Returns `s` for tail calls:
 *   return ls_err_set(err, LS_ERR_FORMAT, "%s: bad magic", path); */
ls_status ls_err_set(ls_err *err, ls_status s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Tensor element types. Values are ggml's numbering (as stored in GGUF). */
typedef enum ls_type {
    LS_TYPE_F32 = 0,
    LS_TYPE_F16 = 1,
    LS_TYPE_Q4_0 = 2,
    LS_TYPE_Q4_1 = 3,
    LS_TYPE_Q5_0 = 6,
    LS_TYPE_Q5_1 = 7,
    LS_TYPE_Q8_0 = 8,
    LS_TYPE_Q2_K = 10,
    LS_TYPE_Q3_K = 11,
    LS_TYPE_Q4_K = 12,
    LS_TYPE_Q5_K = 13,
    LS_TYPE_Q6_K = 14,
    LS_TYPE_IQ4_NL = 20,
    LS_TYPE_IQ4_XS = 23,
    LS_TYPE_BF16 = 30,
} ls_type;

/* true for the types above; anything else from a file is LS_ERR_UNSUPPORTED */
bool ls_type_is_supported(uint32_t t);
const char *ls_type_name(ls_type t);
/* elements per block: 1 for float types, 32 for Q4_0/Q4_1/Q5_0/Q5_1/Q8_0/
 * IQ4_NL, 256 for the K-quants and IQ4_XS (super-blocks) */
int64_t ls_type_block_elems(ls_type t);
/* bytes per block: 4/2/2 for F32/F16/BF16; 18 Q4_0, 20 Q4_1, 22 Q5_0,
 * 24 Q5_1, 34 Q8_0, 18 IQ4_NL; 84 Q2_K, 110 Q3_K, 144 Q4_K, 176 Q5_K,
 * 210 Q6_K, 136 IQ4_XS (ggml's block layouts) */
size_t ls_type_block_bytes(ls_type t);
/* bytes of n elements; false if n is not a whole number of blocks or the
 * byte count overflows */
bool ls_type_nbytes(ls_type t, int64_t n, uint64_t *out);

/* fp16 / bf16 conversion (scalar, exact IEEE semantics; round-to-nearest-even) */
float ls_f16_to_f32(uint16_t h);
uint16_t ls_f32_to_f16(float f);
float ls_bf16_to_f32(uint16_t h);
uint16_t ls_f32_to_bf16(float f);

/* A memory size: a decimal number (fraction allowed, at most 9 decimals:
 * "1.5G") then a unit K, M, G or T, optionally followed by i and/or B
 * ("2GiB", "512M", "1.5 GB"); all units are binary (K = 1024 bytes). The
 * text is [s, s + n), spaces around it ignored. On success *out > 0 bytes
 * and true. On failure false, with a short reason in why ("has no unit",
 * "is zero bytes", ...) for the caller to put after the flag and value it
 * names. */
bool ls_parse_size(const char *s, size_t n, uint64_t *out, char *why, size_t why_cap);
#define LS_SIZE_HELP "a number, fractions allowed, then K, M, G or T, optionally followed by i and/or B; " \
                     "all are binary: K = 1024 bytes, G = 1024^3 bytes"

/* checked arithmetic for sizes read from files */
static inline bool ls_mul_u64(uint64_t a, uint64_t b, uint64_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}
static inline bool ls_add_u64(uint64_t a, uint64_t b, uint64_t *out) {
    return !__builtin_add_overflow(a, b, out);
}

#endif
