/* mapfile.c: see mapfile.h. */
#include "mapfile.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

ls_status ls_map_file(const char *path, const char *what, const uint8_t **map, uint64_t *size,
                      ls_err *err) {
    *map = NULL;
    *size = 0;
    if (!path) return ls_err_set(err, LS_ERR_INVALID, "%s: NULL path", what);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return ls_err_set(err, e == ENOENT ? LS_ERR_MISSING : LS_ERR_IO, "%s: cannot open %s: %s", path,
                          what, strerror(e));
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return ls_err_set(err, LS_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return ls_err_set(err, LS_ERR_IO, "%s: not a regular file%s", path,
                          S_ISDIR(st.st_mode) ? " (it is a directory)" : "");
    }
    if (st.st_size > 0) {
        void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            int e = errno;
            close(fd);
            return ls_err_set(err, LS_ERR_IO, "%s: cannot mmap %llu bytes: %s", path,
                              (unsigned long long)st.st_size, strerror(e));
        }
        *map = m;
        *size = (uint64_t)st.st_size;
    }
    close(fd);
    return LS_OK;
}

void ls_unmap_file(const uint8_t *map, uint64_t size) {
    if (map && size) munmap((void *)map, (size_t)size);
}
