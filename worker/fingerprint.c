/* fingerprint.c: see fingerprint.h for what is hashed and why. */
#include "fingerprint.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define FNV_OFFSET 1469598103934665603ull
#define FNV_PRIME 1099511628211ull

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * FNV_PRIME;
    return h;
}

/* hash size, then up to head bytes from the start and tail bytes from the end */
static ls_status hash_file(const char *path, uint64_t *h, size_t head, size_t tail, ls_err *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return ls_err_set(err, LS_ERR_IO, "cannot open the model file %s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0) {
        fclose(f);
        return ls_err_set(err, LS_ERR_IO, "cannot stat the model file %s: %s", path, strerror(errno));
    }
    uint64_t size = (uint64_t)sb.st_size;
    *h = fnv(*h, &size, sizeof size);
    char *buf = malloc(head > tail ? head : tail);
    if (!buf) {
        fclose(f);
        return ls_err_set(err, LS_ERR_NOMEM, "out of memory");
    }
    size_t n = fread(buf, 1, head, f);
    *h = fnv(*h, buf, n);
    if (tail && size > head + tail && fseeko(f, (off_t)(size - tail), SEEK_SET) == 0) {
        n = fread(buf, 1, tail, f);
        *h = fnv(*h, buf, n);
    }
    free(buf);
    fclose(f);
    return LS_OK;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

ls_status lsw_model_fingerprint(const char *path, uint64_t *out, ls_err *err) {
    uint64_t h = FNV_OFFSET;
    struct stat sb;
    if (stat(path, &sb) != 0)
        return ls_err_set(err, LS_ERR_IO, "cannot stat the model %s: %s (is the path the same on every host?)", path,
                          strerror(errno));
    if (!S_ISDIR(sb.st_mode)) {
        ls_status st = hash_file(path, &h, 4u << 20, 1u << 20, err);
        *out = h;
        return st;
    }
    char sub[4096];
    snprintf(sub, sizeof sub, "%s/config.json", path);
    ls_status st = hash_file(sub, &h, 1u << 20, 0, err);
    if (st != LS_OK) return st;
    DIR *d = opendir(path);
    if (!d) return ls_err_set(err, LS_ERR_IO, "cannot list the model directory %s: %s", path, strerror(errno));
    char **names = NULL;
    size_t n = 0, cap = 0;
    for (struct dirent *e; (e = readdir(d));) {
        size_t len = strlen(e->d_name);
        if (len < 12 || strcmp(e->d_name + len - 12, ".safetensors") != 0) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            char **nn = realloc(names, cap * sizeof *nn);
            if (!nn) break;
            names = nn;
        }
        if (!(names[n] = strdup(e->d_name))) break;
        n++;
    }
    closedir(d);
    qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n && st == LS_OK; i++) {
        h = fnv(h, names[i], strlen(names[i]));
        snprintf(sub, sizeof sub, "%s/%s", path, names[i]);
        st = hash_file(sub, &h, 1u << 20, 0, err);
    }
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    *out = h;
    return st;
}
