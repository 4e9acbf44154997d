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
