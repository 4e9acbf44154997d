/* st_writer.h: builds safetensors files for tests and fuzz seeds. Tensors are
 * laid out in the order added; the JSON header is padded with spaces to a
 * multiple of 8 bytes, as the Hugging Face library does. Out of memory
 * aborts: this is test code. */
#ifndef LS_ST_WRITER_H
#define LS_ST_WRITER_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include "layerskip/ls_common.h"

typedef struct st_writer st_writer;

st_writer *st_writer_init(void);
void st_writer_free(st_writer *w);
void st_writer_add_metadata(st_writer *w, const char *key, const char *value);
/* F32, F16 or BF16; shape row-major (shape[0] outermost); data NULL: zeros */
void st_writer_add_tensor(st_writer *w, const char *name, ls_type type, uint32_t n_dims,
                          const int64_t *shape, const void *data);
/* any dtype string and byte count (unsupported dtypes, size mismatches) */
void st_writer_add_tensor_raw(st_writer *w, const char *name, const char *dtype, uint32_t n_dims,
                              const int64_t *shape, const void *data, uint64_t nbytes);

void st_writer_write_mem(st_writer *w, uint8_t **out, size_t *len);
bool st_writer_write(st_writer *w, const char *path);

/* A file from a hand-written header: u64 length | header (space padded to
 * 8) | data. For malformed-header tests. */
void st_write_raw_mem(const char *header_json, const void *data, size_t ndata, uint8_t **out, size_t *len);
bool st_write_raw(const char *path, const char *header_json, const void *data, size_t ndata);

#endif
