/* fingerprint.h: a cheap identity of a model on disk, so every rank can check
 * it loaded the same model as rank 0 without hashing gigabytes. A GGUF file:
 * FNV-1a 64 over its size, its first 4 MiB (header, metadata, tensor table)
 * and its last 1 MiB. A Hugging Face directory: over config.json and, for
 * every *.safetensors file (sorted by name), its name, size and first 1 MiB
 * (the tensor table). Different sizes, headers or tensor tables always
 * differ; two files equal there but differing only in the middle of their
 * weights would not be told apart. */
#ifndef LSW_FINGERPRINT_H
#define LSW_FINGERPRINT_H

#include "layerskip/ls_common.h"

ls_status lsw_model_fingerprint(const char *path, uint64_t *out, ls_err *err);

#endif
