/* safetensors.c: Hugging Face safetensors reader. Each file is mapped
 * read-only; its JSON header is parsed with cJSON and every entry is checked
 * (dtype, shape, byte count, range inside the data section, no overlap)
 * before any pointer into the map is handed out. st_set gathers the shards of
 * a model directory. */
#include "safetensors.h"
#include "mapfile.h"

#include <cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* the Hugging Face library refuses headers above 100 MB; so do we, before
 * handing the bytes to the JSON parser */
#define ST_MAX_HEADER_BYTES (100u * 1000u * 1000u)
#define ST_MAX_INDEX_BYTES (100u * 1000u * 1000u)
/* doubles hold every integer up to 2^53 exactly; JSON numbers beyond that
 * cannot be trusted as sizes */
#define ST_MAX_JSON_INT 9007199254740992.0

typedef struct st_range {
    uint64_t begin, end;
    uint64_t idx;
} st_range;

/* Printable, bounded copy of an untrusted name for messages. */
static const char *st_show(const char *s, char *buf, size_t cap) {
    size_t n = 0, i = 0;
    for (; s[i] && i < 64 && n + 1 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        buf[n++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    if (s[i]) {
        for (int k = 0; k < 3 && n + 1 < cap; k++) buf[n++] = '.';
    }
    buf[n] = 0;
    return buf;
}

/* dtype string -> ls_type. Returns LS_OK, LS_ERR_UNSUPPORTED for valid
 * safetensors dtypes we do not load, LS_ERR_FORMAT for anything else. */
static ls_status st_parse_dtype(const char *s, ls_type *out) {
    static const char *const other[] = {
        "BOOL", "U8", "I8", "I16", "U16", "I32", "U32", "I64", "U64", "F64",
        "F8_E5M2", "F8_E4M3", "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4", "C64",
    };
    if (strcmp(s, "F32") == 0) { *out = LS_TYPE_F32; return LS_OK; }
    if (strcmp(s, "F16") == 0) { *out = LS_TYPE_F16; return LS_OK; }
    if (strcmp(s, "BF16") == 0) { *out = LS_TYPE_BF16; return LS_OK; }
    for (size_t i = 0; i < sizeof other / sizeof other[0]; i++) {
        if (strcmp(s, other[i]) == 0) return LS_ERR_UNSUPPORTED;
    }
    return LS_ERR_FORMAT;
}

/* A JSON number that is an exact non-negative integer below 2^53. */
static bool st_json_uint(const cJSON *j, uint64_t *out) {
    if (!cJSON_IsNumber(j)) return false;
    double d = j->valuedouble;
    if (!(d >= 0.0 && d <= ST_MAX_JSON_INT)) return false;
    uint64_t v = (uint64_t)d;
    if ((double)v != d) return false;
    *out = v;
    return true;
}

static int st_range_cmp(const void *a, const void *b) {
    const st_range *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

static int st_name_cmp(const void *a, const void *b) {
    const st_tensor *const *x = a, *const *y = b;
    return strcmp((*x)->name, (*y)->name);
}

static ls_status st_parse_entry(st_file *f, const cJSON *e, st_tensor *t, uint64_t data_size,
                                ls_err *err) {
    char shown[80];
    const char *nm = st_show(t->name, shown, sizeof shown);
    if (!cJSON_IsObject(e))
        return ls_err_set(err, LS_ERR_FORMAT, "%s: tensor '%s': entry is not a JSON object",
                          f->path, nm);

    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    if (!cJSON_IsString(dt) || !dt->valuestring)
        return ls_err_set(err, LS_ERR_FORMAT, "%s: tensor '%s': missing or non-string \"dtype\"",
                          f->path, nm);
    ls_status s = st_parse_dtype(dt->valuestring, &t->type);
    if (s != LS_OK) {
        char dshown[80];
        st_show(dt->valuestring, dshown, sizeof dshown);
        if (s == LS_ERR_UNSUPPORTED)
            return ls_err_set(err, s, "%s: tensor '%s': dtype %s is not supported (supported: F32, F16, BF16)",
                              f->path, nm, dshown);
        return ls_err_set(err, s, "%s: tensor '%s': unknown dtype \"%s\"", f->path, nm, dshown);
    }

    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(e, "shape");
    if (!cJSON_IsArray(shape))
        return ls_err_set(err, LS_ERR_FORMAT, "%s: tensor '%s': missing or non-array \"shape\"",
                          f->path, nm);
    int nd = cJSON_GetArraySize(shape);
    if (nd > 4)
        return ls_err_set(err, LS_ERR_UNSUPPORTED, "%s: tensor '%s': shape has %d dimensions (at most 4 supported)",
                          f->path, nm, nd);
    t->n_dims = (uint32_t)nd;
    for (int d = 0; d < 4; d++) t->shape[d] = 1;
    uint64_t nelem = 1;
    int d = 0;
    for (const cJSON *v = shape->child; v; v = v->next, d++) {
        uint64_t dim;
        if (!st_json_uint(v, &dim))
            return ls_err_set(err, LS_ERR_FORMAT,
                              "%s: tensor '%s': shape[%d] is not a non-negative integer (below 2^53)",
                              f->path, nm, d);
        t->shape[d] = (int64_t)dim;
        if (!ls_mul_u64(nelem, dim, &nelem))
            return ls_err_set(err, LS_ERR_FORMAT, "%s: tensor '%s': element count of the shape overflows",
                              f->path, nm);
    }
    if (nelem > (uint64_t)INT64_MAX || !ls_type_nbytes(t->type, (int64_t)nelem, &t->nbytes))
        return ls_err_set(err, LS_ERR_FORMAT, "%s: tensor '%s': byte size of the shape overflows",
                          f->path, nm);

    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    uint64_t begin, end;
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 ||
        !st_json_uint(offs->child, &begin) || !st_json_uint(offs->child->next, &end))
        return ls_err_set(err, LS_ERR_FORMAT,
                          "%s: tensor '%s': \"data_offsets\" must be [begin, end] of non-negative integers",
                          f->path, nm);
    if (begin > end)
        return ls_err_set(err, LS_ERR_FORMAT, "%s: tensor '%s': data_offsets [%llu, %llu] has begin > end",
                          f->path, nm, (unsigned long long)begin, (unsigned long long)end);
    if (end > data_size)
        return ls_err_set(err, LS_ERR_FORMAT,
                          "%s: tensor '%s': data_offsets [%llu, %llu) lie past the end of the data section (%llu bytes)",
                          f->path, nm, (unsigned long long)begin, (unsigned long long)end,
                          (unsigned long long)data_size);
    if (end - begin != t->nbytes)
        return ls_err_set(err, LS_ERR_FORMAT,
                          "%s: tensor '%s': data_offsets span %llu bytes but dtype %s and the shape need %llu (size mismatch)",
                          f->path, nm, (unsigned long long)(end - begin), ls_type_name(t->type),
                          (unsigned long long)t->nbytes);
    t->data = f->map + (f->size - data_size) + begin;
    return LS_OK;
}

static ls_status st_check_metadata(st_file *f, const cJSON *m, ls_err *err) {
    if (!cJSON_IsObject(m))
        return ls_err_set(err, LS_ERR_FORMAT, "%s: \"__metadata__\" is not a JSON object", f->path);
    for (const cJSON *v = m->child; v; v = v->next) {
        if (!cJSON_IsString(v)) {
            char shown[80];
            return ls_err_set(err, LS_ERR_FORMAT, "%s: \"__metadata__\" value '%s' is not a string",
                              f->path, st_show(v->string ? v->string : "", shown, sizeof shown));
        }
    }
    return LS_OK;
}

static ls_status st_check_layout(st_file *f, ls_err *err) {
    uint64_t n = f->n_tensors;
    if (n < 2) return LS_OK;
    ls_status s = LS_OK;
    st_tensor **byname = malloc((size_t)n * sizeof *byname);
    st_range *r = malloc((size_t)n * sizeof *r);
    if (!byname || !r) {
        s = ls_err_set(err, LS_ERR_NOMEM, "%s: out of memory checking %llu tensors", f->path,
                       (unsigned long long)n);
        goto done;
    }
    uint64_t nr = 0;
    for (uint64_t i = 0; i < n; i++) {
        byname[i] = &f->tensors[i];
        if (f->tensors[i].nbytes == 0) continue; /* empty ranges overlap nothing */
        uint64_t b = (uint64_t)((const uint8_t *)f->tensors[i].data - f->map);
        r[nr++] = (st_range){b, b + f->tensors[i].nbytes, i};
    }
    qsort(byname, (size_t)n, sizeof *byname, st_name_cmp);
    for (uint64_t i = 1; i < n; i++) {
        if (strcmp(byname[i - 1]->name, byname[i]->name) == 0) {
            char shown[80];
            s = ls_err_set(err, LS_ERR_FORMAT, "%s: duplicate tensor name '%s' in the header",
                           f->path, st_show(byname[i]->name, shown, sizeof shown));
            goto done;
        }
    }
    qsort(r, (size_t)nr, sizeof *r, st_range_cmp);
    for (uint64_t i = 1; i < nr; i++) {
        if (r[i].begin < r[i - 1].end) {
            char a[80], b[80];
            s = ls_err_set(err, LS_ERR_FORMAT, "%s: tensors '%s' and '%s' have overlapping data ranges",
                           f->path, st_show(f->tensors[r[i - 1].idx].name, a, sizeof a),
                           st_show(f->tensors[r[i].idx].name, b, sizeof b));
            goto done;
        }
    }
done:
    free(byname);
    free(r);
    return s;
}

static ls_status st_parse(st_file *f, ls_err *err) {
    if (f->size < 8)
        return ls_err_set(err, LS_ERR_FORMAT,
                          "%s: file too short (%llu bytes) for the 8-byte safetensors header length",
                          f->path, (unsigned long long)f->size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | f->map[i];
    if (hlen > f->size - 8)
        return ls_err_set(err, LS_ERR_FORMAT,
                          "%s: header length %llu lies past the end of the file (size %llu)",
                          f->path, (unsigned long long)hlen, (unsigned long long)f->size);
    if (hlen > ST_MAX_HEADER_BYTES)
        return ls_err_set(err, LS_ERR_FORMAT, "%s: header length %llu exceeds the %u-byte limit",
                          f->path, (unsigned long long)hlen, ST_MAX_HEADER_BYTES);
    uint64_t data_size = f->size - 8 - hlen;
    /* a NUL-terminated copy: cJSON is not built with our sanitizers, so do
     * not rely on it honouring the length of a non-terminated mapping */
    char *json = malloc((size_t)hlen + 1);
    if (!json)
        return ls_err_set(err, LS_ERR_NOMEM, "%s: out of memory for a %llu-byte header", f->path,
                          (unsigned long long)hlen);
    memcpy(json, f->map + 8, (size_t)hlen);
    json[hlen] = 0;

    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, (size_t)hlen, &end, false);
    ls_status s = LS_OK;
    if (!root) {
        uint64_t at = end && end >= json && end <= json + hlen ? (uint64_t)(end - json) : 0;
        s = ls_err_set(err, LS_ERR_FORMAT, "%s: header is not valid JSON (error near header byte %llu)",
                       f->path, (unsigned long long)at);
        goto done;
    }
    /* the library pads the header with spaces; anything else after the JSON is garbage */
    for (const char *p = end ? end : json + hlen; p < json + hlen; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            s = ls_err_set(err, LS_ERR_FORMAT, "%s: header has trailing bytes after the JSON at header byte %llu",
                           f->path, (unsigned long long)(p - json));
            goto done;
        }
    }
    if (!cJSON_IsObject(root)) {
        s = ls_err_set(err, LS_ERR_FORMAT, "%s: header JSON is not an object", f->path);
        goto done;
    }
    uint64_t n = 0;
    for (const cJSON *e = root->child; e; e = e->next) {
        if (!e->string) {
            s = ls_err_set(err, LS_ERR_FORMAT, "%s: header JSON object has an entry without a name", f->path);
            goto done;
        }
        if (strcmp(e->string, "__metadata__") == 0) {
            if ((s = st_check_metadata(f, e, err)) != LS_OK) goto done;
        } else {
            n++;
        }
    }
    f->tensors = calloc(n ? (size_t)n : 1, sizeof *f->tensors);
    if (!f->tensors) {
        s = ls_err_set(err, LS_ERR_NOMEM, "%s: out of memory for %llu tensors", f->path,
                       (unsigned long long)n);
        goto done;
    }
    for (const cJSON *e = root->child; e; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0) continue;
        st_tensor *t = &f->tensors[f->n_tensors];
        t->name = strdup(e->string);
        if (!t->name) {
            s = ls_err_set(err, LS_ERR_NOMEM, "%s: out of memory", f->path);
            goto done;
        }
        f->n_tensors++;
        if ((s = st_parse_entry(f, e, t, data_size, err)) != LS_OK) goto done;
    }
    s = st_check_layout(f, err);
done:
    cJSON_Delete(root);
    free(json);
    return s;
}

static ls_status st_file_new(const char *name, st_file **out, ls_err *err) {
    st_file *f = calloc(1, sizeof *f);
    if (f) f->path = strdup(name);
    if (!f || !f->path) {
        free(f);
        return ls_err_set(err, LS_ERR_NOMEM, "%s: out of memory", name);
    }
    *out = f;
    return LS_OK;
}

ls_status st_file_open_memory(const void *buf, uint64_t size, const char *name,
                              st_file **out, ls_err *err) {
    *out = NULL;
    if (!name) name = "<memory>";
    if (!buf && size)
        return ls_err_set(err, LS_ERR_INVALID, "%s: NULL buffer of %llu bytes", name,
                          (unsigned long long)size);
    st_file *f = NULL;
    ls_status s = st_file_new(name, &f, err);
    if (s != LS_OK) return s;
    f->map = buf;
    f->size = size;
    if ((s = st_parse(f, err)) != LS_OK) {
        st_file_free(f);
        return s;
    }
    *out = f;
    return LS_OK;
}

ls_status st_file_open(const char *path, st_file **out, ls_err *err) {
    *out = NULL;
    const uint8_t *map;
    uint64_t size;
    ls_status s = ls_map_file(path, "safetensors file", &map, &size, err);
    if (s != LS_OK) return s;
    if ((s = st_file_open_memory(map, size, path, out, err)) != LS_OK) {
        ls_unmap_file(map, size);
        return s;
    }
    (*out)->owns_map = true;
    return LS_OK;
}

void st_file_free(st_file *f) {
    if (!f) return;
    if (f->tensors) {
        for (uint64_t i = 0; i < f->n_tensors; i++) free(f->tensors[i].name);
        free(f->tensors);
    }
    if (f->owns_map) ls_unmap_file(f->map, f->size);
    free(f->path);
    free(f);
}

/* ---- model directories ---- */

static char *st_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    size_t n = a;
    if (n && p[n - 1] != '/') p[n++] = '/';
    memcpy(p + n, name, b + 1);
    return p;
}

static bool st_is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static ls_status st_set_add(st_set *set, const char *path, ls_err *err) {
    st_file **files = realloc(set->files, (size_t)(set->n_files + 1) * sizeof *files);
    if (!files) return ls_err_set(err, LS_ERR_NOMEM, "%s: out of memory", path);
    set->files = files;
    ls_status s = st_file_open(path, &set->files[set->n_files], err);
    if (s == LS_OK) set->n_files++;
    return s;
}

static int st_cstr_cmp(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* a shard name from the index must stay inside the model directory */
static bool st_shard_name_ok(const char *s) {
    if (!s[0] || s[0] == '/') return false;
    for (const char *p = s; *p;) {
        const char *q = strchr(p, '/');
        size_t n = q ? (size_t)(q - p) : strlen(p);
        if (n == 2 && p[0] == '.' && p[1] == '.') return false;
        if (!q) break;
        p = q + 1;
    }
    return true;
}

static ls_status st_set_load_index(st_set *set, const char *dir, const char *index_path, ls_err *err) {
    ls_status s = LS_OK;
    char *text = NULL;
    cJSON *root = NULL;
    const char **names = NULL;
    FILE *fp = fopen(index_path, "rb");
    if (!fp)
        return ls_err_set(err, LS_ERR_IO, "%s: cannot open: %s", index_path, strerror(errno));
    struct stat st;
    if (fstat(fileno(fp), &st) != 0 || st.st_size > (off_t)ST_MAX_INDEX_BYTES) {
        s = ls_err_set(err, LS_ERR_FORMAT, "%s: cannot stat, or larger than %u bytes", index_path,
                       ST_MAX_INDEX_BYTES);
        goto done;
    }
    size_t len = (size_t)st.st_size;
    text = malloc(len + 1);
    if (!text) {
        s = ls_err_set(err, LS_ERR_NOMEM, "%s: out of memory", index_path);
        goto done;
    }
    if (fread(text, 1, len, fp) != len) {
        s = ls_err_set(err, LS_ERR_IO, "%s: short read", index_path);
        goto done;
    }
    text[len] = 0;
    root = cJSON_ParseWithLength(text, len);
    if (!root || !cJSON_IsObject(root)) {
        s = ls_err_set(err, LS_ERR_FORMAT, "%s: not a valid JSON object", index_path);
        goto done;
    }
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(wm)) {
        s = ls_err_set(err, LS_ERR_FORMAT, "%s: missing or non-object \"weight_map\"", index_path);
        goto done;
    }
    int n = cJSON_GetArraySize(wm);
    names = calloc(n > 0 ? (size_t)n : 1, sizeof *names);
    if (!names) {
        s = ls_err_set(err, LS_ERR_NOMEM, "%s: out of memory", index_path);
        goto done;
    }
    int k = 0;
    for (const cJSON *e = wm->child; e; e = e->next) {
        char a[80];
        if (!cJSON_IsString(e) || !e->valuestring || !st_shard_name_ok(e->valuestring)) {
            s = ls_err_set(err, LS_ERR_FORMAT,
                           "%s: weight_map entry '%s' must name a file inside the model directory",
                           index_path, st_show(e->string ? e->string : "", a, sizeof a));
            goto done;
        }
        names[k++] = e->valuestring;
    }
    if (k == 0) {
        s = ls_err_set(err, LS_ERR_FORMAT, "%s: weight_map is empty", index_path);
        goto done;
    }
    qsort(names, (size_t)k, sizeof *names, st_cstr_cmp);
    for (int i = 0; i < k; i++) {
        if (i > 0 && strcmp(names[i], names[i - 1]) == 0) continue;
        char *p = st_join(dir, names[i]);
        if (!p) {
            s = ls_err_set(err, LS_ERR_NOMEM, "%s: out of memory", index_path);
            goto done;
        }
        ls_err inner = {{0}};
        s = st_set_add(set, p, &inner);
        free(p);
        if (s != LS_OK) {
            char a[80];
            ls_err_set(err, s, "%s: shard '%s' named in weight_map: %s", index_path,
                       st_show(names[i], a, sizeof a), inner.msg);
            goto done;
        }
    }
    /* each listed tensor must live in the shard the index names */
    for (const cJSON *e = wm->child; e; e = e->next) {
        const st_file *f = NULL;
        for (uint64_t i = 0; i < set->n_files && !f; i++) {
            const char *base = set->files[i]->path + strlen(dir);
            while (*base == '/') base++;
            if (strcmp(base, e->valuestring) == 0) f = set->files[i];
        }
        bool found = false;
        for (uint64_t t = 0; f && t < f->n_tensors && !found; t++)
            found = strcmp(f->tensors[t].name, e->string) == 0;
        if (!found) {
            char a[80], b[80];
            s = ls_err_set(err, LS_ERR_MISSING,
                           "%s: weight_map puts tensor '%s' in '%s', but that file has no such tensor",
                           index_path, st_show(e->string, a, sizeof a),
                           st_show(e->valuestring, b, sizeof b));
            goto done;
        }
    }
done:
    free(names);
    cJSON_Delete(root);
    free(text);
    fclose(fp);
    return s;
}

static ls_status st_set_load_glob(st_set *set, const char *dir, ls_err *err) {
    DIR *d = opendir(dir);
    if (!d) {
        int e = errno;
        return ls_err_set(err, e == ENOENT ? LS_ERR_MISSING : LS_ERR_IO,
                          "%s: cannot open model directory: %s", dir, strerror(e));
    }
    ls_status s = LS_OK;
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    static const char ext[] = ".safetensors";
    const size_t ext_len = sizeof ext - 1;
    while ((de = readdir(d))) {
        size_t len = strlen(de->d_name);
        if (de->d_name[0] == '.' || len <= ext_len || strcmp(de->d_name + len - ext_len, ext) != 0)
            continue;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 8;
            char **nn = realloc(names, nc * sizeof *nn);
            if (!nn) {
                s = ls_err_set(err, LS_ERR_NOMEM, "%s: out of memory", dir);
                goto done;
            }
            names = nn;
            cap = nc;
        }
        if (!(names[n] = strdup(de->d_name))) {
            s = ls_err_set(err, LS_ERR_NOMEM, "%s: out of memory", dir);
            goto done;
        }
        n++;
    }
    if (n == 0) {
        s = ls_err_set(err, LS_ERR_MISSING,
                       "%s: no model.safetensors, model.safetensors.index.json or *.safetensors file",
                       dir);
        goto done;
    }
    qsort(names, n, sizeof *names, st_cstr_cmp);
    for (size_t i = 0; i < n; i++) {
        char *p = st_join(dir, names[i]);
        if (!p) {
            s = ls_err_set(err, LS_ERR_NOMEM, "%s: out of memory", dir);
            goto done;
        }
        s = st_set_add(set, p, err);
        free(p);
        if (s != LS_OK) goto done;
    }
done:
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    closedir(d);
    return s;
}

typedef struct st_owner {
    const char *name;
    const st_file *file;
} st_owner;

static int st_owner_cmp(const void *a, const void *b) {
    return strcmp(((const st_owner *)a)->name, ((const st_owner *)b)->name);
}

static ls_status st_set_check_unique(const st_set *set, const char *dir, ls_err *err) {
    uint64_t total = 0;
    for (uint64_t i = 0; i < set->n_files; i++) total += set->files[i]->n_tensors;
    if (total < 2) return LS_OK;
    st_owner *o = malloc((size_t)total * sizeof *o);
    if (!o) return ls_err_set(err, LS_ERR_NOMEM, "%s: out of memory", dir);
    uint64_t k = 0;
    for (uint64_t i = 0; i < set->n_files; i++)
        for (uint64_t t = 0; t < set->files[i]->n_tensors; t++)
            o[k++] = (st_owner){set->files[i]->tensors[t].name, set->files[i]};
    qsort(o, (size_t)total, sizeof *o, st_owner_cmp);
    ls_status s = LS_OK;
    for (uint64_t i = 1; i < total; i++) {
        if (strcmp(o[i - 1].name, o[i].name) == 0) {
            char a[80];
            s = ls_err_set(err, LS_ERR_FORMAT, "%s: duplicate tensor name '%s' in %s and %s", dir,
                           st_show(o[i].name, a, sizeof a), o[i - 1].file->path, o[i].file->path);
            break;
        }
    }
    free(o);
    return s;
}

ls_status st_set_open_dir(const char *dir, st_set **out, ls_err *err) {
    *out = NULL;
    if (!dir) return ls_err_set(err, LS_ERR_INVALID, "safetensors: NULL directory");
    struct stat st;
    if (stat(dir, &st) != 0) {
        int e = errno;
        return ls_err_set(err, e == ENOENT ? LS_ERR_MISSING : LS_ERR_IO,
                          "%s: cannot open model directory: %s", dir, strerror(e));
    }
    if (!S_ISDIR(st.st_mode))
        return ls_err_set(err, LS_ERR_INVALID, "%s: not a directory (expected a Hugging Face model directory)", dir);
    st_set *set = calloc(1, sizeof *set);
    if (!set) return ls_err_set(err, LS_ERR_NOMEM, "%s: out of memory", dir);
    ls_status s;
    char *single = st_join(dir, "model.safetensors");
    char *index = st_join(dir, "model.safetensors.index.json");
    if (!single || !index) {
        s = ls_err_set(err, LS_ERR_NOMEM, "%s: out of memory", dir);
    } else if (st_is_file(single)) {
        s = st_set_add(set, single, err);
    } else if (st_is_file(index)) {
        s = st_set_load_index(set, dir, index, err);
    } else {
        s = st_set_load_glob(set, dir, err);
    }
    free(single);
    free(index);
    if (s == LS_OK) s = st_set_check_unique(set, dir, err);
    if (s != LS_OK) {
        st_set_free(set);
        return s;
    }
    *out = set;
    return LS_OK;
}

void st_set_free(st_set *s) {
    if (!s) return;
    for (uint64_t i = 0; i < s->n_files; i++) st_file_free(s->files[i]);
    free(s->files);
    free(s);
}

const st_tensor *st_set_find(const st_set *s, const char *name) {
    for (uint64_t i = 0; i < s->n_files; i++) {
        const st_file *f = s->files[i];
        for (uint64_t t = 0; t < f->n_tensors; t++) {
            if (strcmp(f->tensors[t].name, name) == 0) return &f->tensors[t];
        }
    }
    return NULL;
}
