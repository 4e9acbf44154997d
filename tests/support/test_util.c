#include "test_util.h"
#include <unistd.h>

int tu_failures = 0;
int tu_checks = 0;

static const char *join(const char *envname, const char *fallback, const char *name) {
    static char bufs[8][4096];
    static int next = 0;
    const char *dir = getenv(envname);
    if (!dir) dir = fallback;
    char *b = bufs[next++ % 8];
    snprintf(b, sizeof bufs[0], "%s/%s", dir, name);
    return b;
}

const char *tu_models_path(const char *name) { return join("LS_MODELS_DIR", "models", name); }
const char *tu_data_path(const char *name) { return join("LS_TESTDATA_DIR", "tests/data", name); }
const char *tu_tmp_path(const char *name) { return join("LS_TMP_DIR", "/tmp", name); }

char *tu_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    if (fseek(f, 0, SEEK_END) != 0) { fclose(f); return NULL; }
    long n = ftell(f);
    if (n < 0) { fclose(f); return NULL; }
    rewind(f);
    char *buf = malloc((size_t)n + 1);
    if (!buf) { fclose(f); return NULL; }
    size_t got = fread(buf, 1, (size_t)n, f);
    fclose(f);
    if (got != (size_t)n) { free(buf); return NULL; }
    buf[n] = 0;
    if (len) *len = (size_t)n;
    return buf;
}

const char *tu_default_model(void) {
    const char *p = tu_models_path("SmolLM2-135M-Instruct.Q4_1.gguf");
    if (access(p, R_OK) != 0) {
        fprintf(stderr, "default model missing: %s (run scripts/setup.sh)\n", p);
        exit(1);
    }
    return p;
}

/* strict UTF-8: no overlongs, surrogates or code points past U+10FFFF */
bool tu_valid_utf8(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        unsigned char b = p[i];
        size_t len;
        uint32_t c, min;
        if (b < 0x80) { i++; continue; }
        if (b >= 0xC2 && b <= 0xDF) { len = 2; c = b & 0x1F; min = 0x80; }
        else if (b >= 0xE0 && b <= 0xEF) { len = 3; c = b & 0x0F; min = 0x800; }
        else if (b >= 0xF0 && b <= 0xF4) { len = 4; c = b & 0x07; min = 0x10000; }
        else return false;
        if (i + len > n) return false;
        for (size_t k = 1; k < len; k++) {
            if ((p[i + k] & 0xC0) != 0x80) return false;
            c = (c << 6) | (p[i + k] & 0x3F);
        }
        if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return false;
        i += len;
    }
    return true;
}
