/* mapfile.h: map a whole regular file read-only (the model readers' one way
 * in), with messages that name the file and say what went wrong. */
#ifndef LS_MAPFILE_H
#define LS_MAPFILE_H

#include "layerskip/ls_common.h"

/* what: "GGUF file", "safetensors file", ... for messages. A missing file is
 * LS_ERR_MISSING, anything else that fails LS_ERR_IO. An empty file maps to
 * (NULL, 0). */
ls_status ls_map_file(const char *path, const char *what, const uint8_t **map, uint64_t *size,
                      ls_err *err);
void ls_unmap_file(const uint8_t *map, uint64_t size);

#endif
