/* gguf_writer.h: builds GGUF v2/v3 files for tests and fuzz seeds. Values are
 * serialised as they are added; tensors are laid out in order, each at the
 * next offset aligned to general.alignment (default 32). Raw hooks let tests
 * write deliberately broken fields (bad types, counts, offsets). Out of
 * memory aborts: this is test code. */
#ifndef LS_GGUF_WRITER_H
#define LS_GGUF_WRITER_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include "gguf.h"

typedef struct gguf_writer gguf_writer;

gguf_writer *gguf_writer_init(void);
void gguf_writer_free(gguf_writer *w);
/* header version field (default 3); any value, to test rejection */
void gguf_writer_set_version(gguf_writer *w, uint32_t version);
/* adds the general.alignment u32 kv and lays tensors out with it
 * (adding "general.alignment" through gguf_writer_add_u32 does the same) */
void gguf_writer_set_alignment(gguf_writer *w, uint32_t alignment);
/* replace the header counts with these values (absurd-count tests) */
void gguf_writer_override_counts(gguf_writer *w, uint64_t n_tensors, uint64_t n_kv);

void gguf_writer_add_u8(gguf_writer *w, const char *key, uint8_t v);
void gguf_writer_add_i8(gguf_writer *w, const char *key, int8_t v);
void gguf_writer_add_u16(gguf_writer *w, const char *key, uint16_t v);
void gguf_writer_add_i16(gguf_writer *w, const char *key, int16_t v);
void gguf_writer_add_u32(gguf_writer *w, const char *key, uint32_t v);
void gguf_writer_add_i32(gguf_writer *w, const char *key, int32_t v);
void gguf_writer_add_u64(gguf_writer *w, const char *key, uint64_t v);
void gguf_writer_add_i64(gguf_writer *w, const char *key, int64_t v);
void gguf_writer_add_f32(gguf_writer *w, const char *key, float v);
void gguf_writer_add_f64(gguf_writer *w, const char *key, double v);
void gguf_writer_add_bool(gguf_writer *w, const char *key, bool v);
void gguf_writer_add_str(gguf_writer *w, const char *key, const char *v);
/* array of n numbers/bools of elem_type (data: n packed little-endian values) */
void gguf_writer_add_arr(gguf_writer *w, const char *key, gguf_type elem_type, const void *data, uint64_t n);
void gguf_writer_add_arr_str(gguf_writer *w, const char *key, const char *const *strs, uint64_t n);
/* key, u32 type, then `len` raw bytes as the value (nested arrays, broken values) */
void gguf_writer_add_raw(gguf_writer *w, const char *key, uint32_t type, const void *bytes, size_t len);

/* A tensor of a supported type; nbytes from ls_type_nbytes. data may be NULL
 * (zeros). Returns false (and adds nothing) if ne is not whole blocks. */
bool gguf_writer_add_tensor(gguf_writer *w, const char *name, ls_type type, uint32_t n_dims,
                            const int64_t *ne, const void *data);
/* Any header fields as given: n_dims ne values, type number; `nbytes` bytes
 * of data (NULL: zeros) are laid out like any tensor. */
void gguf_writer_add_tensor_raw(gguf_writer *w, const char *name, uint32_t n_dims,
                                const uint64_t *ne, uint32_t type, const void *data,
                                uint64_t nbytes);
/* force tensor i's offset field (data is still laid out at the computed offset) */
void gguf_writer_set_tensor_offset(gguf_writer *w, size_t i, uint64_t offset);

/* Copy one parsed kv (from a gguf_ctx) under its own key: scalars of the
 * types the model files use (string, u32, i32, f32, bool) and arrays. */
void gguf_writer_copy_kv(gguf_writer *w, const gguf_kv *kv);
/* Serialise to a malloc'd buffer (caller frees). */
void gguf_writer_write_mem(gguf_writer *w, uint8_t **out, size_t *len);
/* Write to a file; false on I/O failure. */
bool gguf_writer_write(gguf_writer *w, const char *path);

#endif
