/* safetensors.h: reader for Hugging Face *.safetensors files (memory-mapped).
 *
 * Layout: u64 header_len (little endian) | header_len bytes of JSON |
 * data. The JSON maps tensor names to {"dtype": "F32"|"F16"|"BF16"|...,
 * "shape": [d0, d1, ...], "data_offsets": [begin, end]} (offsets relative to
 * the data section), plus an optional "__metadata__" object of strings.
 * shape[last] is the contiguous dimension (row-major), so a Linear weight of
 * shape [out, in] is `out` rows of `in` elements.
 *
 * A model directory may hold one file or many, listed by
 * model.safetensors.index.json ({"weight_map": {name: file}}); st_set_t
 * gathers all of them. Every size/offset is checked (overflow-safe) against
 * the file; dtype must match the byte count; overlapping or out-of-bounds
 * ranges are LS_ERR_FORMAT with a message naming the file and tensor. */
#ifndef LS_SAFETENSORS_H
#define LS_SAFETENSORS_H

#include "layerskip/ls_common.h"

typedef struct st_tensor {
    char *name;
    ls_type type;         /* F32, F16 or BF16 (others: LS_ERR_UNSUPPORTED at load) */
    uint32_t n_dims;      /* 0..4 */
    int64_t shape[4];     /* row-major, as in the file (shape[0] outermost) */
    uint64_t nbytes;
    const void *data;     /* pointer into the mapping */
} st_tensor;

typedef struct st_file {
    char *path;
    const uint8_t *map;
    uint64_t size;
    bool owns_map;
    uint64_t n_tensors;
    st_tensor *tensors;
} st_file;

ls_status st_file_open(const char *path, st_file **out, ls_err *err);
ls_status st_file_open_memory(const void *buf, uint64_t size, const char *name,
                              st_file **out, ls_err *err);
void st_file_free(st_file *f);

/* All tensors of a Hugging Face model directory: either model.safetensors,
 * or the files named by model.safetensors.index.json, or (if neither exists)
 * every *.safetensors file in the directory. Duplicate names are an error. */
typedef struct st_set {
    uint64_t n_files;
    st_file **files;
} st_set;

ls_status st_set_open_dir(const char *dir, st_set **out, ls_err *err);
void st_set_free(st_set *s);
const st_tensor *st_set_find(const st_set *s, const char *name);

#endif
