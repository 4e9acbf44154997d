/* heatmap.c: a small PNG heat map for layerskip-bench's sweep, with no
 * image library: a grid of coloured cells, each labelled with its value in
 * a built-in 5x7 pixel font, row labels (exit layer E) on the left, column
 * labels (speculations k) on top. PNG is written uncompressed (zlib stored
 * blocks), which keeps the writer short and the file small enough. */
#include "heatmap.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* 5x7 glyphs, one byte per row, bit 4 = leftmost pixel */
static const struct { char c; uint8_t rows[7]; } font[] = {
    {'0', {0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E}}, {'1', {0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E}},
    {'2', {0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F}}, {'3', {0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E}},
    {'4', {0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02}}, {'5', {0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E}},
    {'6', {0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E}}, {'7', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08}},
    {'8', {0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E}}, {'9', {0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C}},
    {'.', {0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C}}, {'x', {0x00, 0x00, 0x11, 0x0A, 0x04, 0x0A, 0x11}},
    {'E', {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F}}, {'k', {0x10, 0x10, 0x12, 0x14, 0x18, 0x14, 0x12}},
    {'=', {0x00, 0x00, 0x1F, 0x00, 0x1F, 0x00, 0x00}}, {'-', {0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00}},
    {'%', {0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03}}, {' ', {0, 0, 0, 0, 0, 0, 0}},
    {'/', {0x01, 0x01, 0x02, 0x04, 0x08, 0x10, 0x10}}, {'a', {0x00, 0x00, 0x0E, 0x01, 0x0F, 0x11, 0x0F}},
    {'c', {0x00, 0x00, 0x0E, 0x10, 0x10, 0x11, 0x0E}}, {'d', {0x01, 0x01, 0x0D, 0x13, 0x11, 0x11, 0x0F}},
    {'e', {0x00, 0x00, 0x0E, 0x11, 0x1F, 0x10, 0x0E}}, {'n', {0x00, 0x00, 0x16, 0x19, 0x11, 0x11, 0x11}},
    {'o', {0x00, 0x00, 0x0E, 0x11, 0x11, 0x11, 0x0E}}, {'p', {0x00, 0x00, 0x1E, 0x11, 0x1E, 0x10, 0x10}},
    {'r', {0x00, 0x00, 0x16, 0x19, 0x10, 0x10, 0x10}}, {'s', {0x00, 0x00, 0x0E, 0x10, 0x0E, 0x01, 0x1E}},
    {'t', {0x08, 0x08, 0x1C, 0x08, 0x08, 0x09, 0x06}}, {'u', {0x00, 0x00, 0x11, 0x11, 0x11, 0x13, 0x0D}},
    {'v', {0x00, 0x00, 0x11, 0x11, 0x11, 0x0A, 0x04}}, {'i', {0x04, 0x00, 0x0C, 0x04, 0x04, 0x04, 0x0E}},
    {'l', {0x0C, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E}}, {'g', {0x00, 0x0F, 0x11, 0x11, 0x0F, 0x01, 0x0E}},
    {'(', {0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02}}, {')', {0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08}},
    {',', {0x00, 0x00, 0x00, 0x00, 0x0C, 0x04, 0x08}}, {':', {0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00}},
};

typedef struct canvas {
    int w, h;
    uint8_t *px; /* (h, w, 3) */
} canvas;

static void fill(canvas *cv, int x0, int y0, int x1, int y1, const uint8_t rgb[3]) {
    for (int y = y0 < 0 ? 0 : y0; y < y1 && y < cv->h; y++)
        for (int x = x0 < 0 ? 0 : x0; x < x1 && x < cv->w; x++) memcpy(cv->px + ((size_t)y * cv->w + x) * 3, rgb, 3);
}

/* text with its top-left corner at (x, y), glyph pixels scaled by s */
static void text(canvas *cv, int x, int y, int s, const char *str, const uint8_t rgb[3]) {
    for (; *str; str++, x += 6 * s) {
        for (size_t g = 0; g < sizeof font / sizeof font[0]; g++) {
            if (font[g].c != *str) continue;
            for (int r = 0; r < 7; r++)
                for (int c = 0; c < 5; c++)
                    if (font[g].rows[r] & (0x10 >> c)) fill(cv, x + c * s, y + r * s, x + (c + 1) * s, y + (r + 1) * s, rgb);
            break;
        }
    }
}

static int text_width(const char *str, int s) { return (int)strlen(str) * 6 * s - s; }

/* blue (low) -> white -> red (high) */
static void colour(double t, uint8_t rgb[3]) {
    if (!(t >= 0)) t = 0;
    if (t > 1) t = 1;
    if (t < 0.5) {
        double u = t / 0.5;
        rgb[0] = (uint8_t)(59 + u * (255 - 59)); rgb[1] = (uint8_t)(76 + u * (255 - 76)); rgb[2] = (uint8_t)(192 + u * (255 - 192));
    } else {
        double u = (t - 0.5) / 0.5;
        rgb[0] = (uint8_t)(255 - u * (255 - 180)); rgb[1] = (uint8_t)(255 - u * 255); rgb[2] = (uint8_t)(255 - u * (255 - 38));
    }
}

static uint32_t crc_table[256];
static void crc_init(void) {
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[n] = c;
    }
}
static uint32_t crc(uint32_t c, const uint8_t *b, size_t n) {
    c ^= 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) c = crc_table[(c ^ b[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

static void put32(uint8_t *p, uint32_t v) { p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = (uint8_t)v; }

static bool chunk(FILE *f, const char *type, const uint8_t *data, size_t n) {
    uint8_t hdr[8], tail[4];
    put32(hdr, (uint32_t)n);
    memcpy(hdr + 4, type, 4);
    uint8_t *buf = malloc(n + 4); /* the CRC covers type + data */
    if (!buf) return false;
    memcpy(buf, type, 4);
    if (n) memcpy(buf + 4, data, n);
    put32(tail, crc(0, buf, n + 4));
    free(buf);
    return fwrite(hdr, 1, 8, f) == 8 && (n == 0 || fwrite(data, 1, n, f) == n) && fwrite(tail, 1, 4, f) == 4;
}

static bool write_png(const canvas *cv, const char *path) {
    crc_init();
    const size_t raw_row = (size_t)cv->w * 3 + 1, raw_n = raw_row * (size_t)cv->h;
    uint8_t *raw = malloc(raw_n);
    if (!raw) return false;
    for (int y = 0; y < cv->h; y++) {
        raw[y * raw_row] = 0; /* filter: none */
        memcpy(raw + y * raw_row + 1, cv->px + (size_t)y * cv->w * 3, (size_t)cv->w * 3);
    }
    /* zlib stream of stored deflate blocks */
    size_t nblk = (raw_n + 65534) / 65535;
    size_t zn = 2 + raw_n + nblk * 5 + 4;
    uint8_t *z = malloc(zn), *p = z;
    if (!z) { free(raw); return false; }
    *p++ = 0x78; *p++ = 0x01;
    uint32_t a = 1, b = 0;
    for (size_t off = 0; off < raw_n || off == 0; off += 65535) {
        size_t len = raw_n - off < 65535 ? raw_n - off : 65535;
        *p++ = off + len >= raw_n ? 1 : 0;
        *p++ = (uint8_t)len; *p++ = (uint8_t)(len >> 8);
        *p++ = (uint8_t)~len; *p++ = (uint8_t)(~len >> 8);
        memcpy(p, raw + off, len);
        p += len;
        if (off + len >= raw_n) break;
    }
    for (size_t i = 0; i < raw_n; i++) { a = (a + raw[i]) % 65521; b = (b + a) % 65521; }
    put32(p, (b << 16) | a);
    p += 4;
    uint8_t ihdr[13];
    put32(ihdr, (uint32_t)cv->w);
    put32(ihdr + 4, (uint32_t)cv->h);
    ihdr[8] = 8; ihdr[9] = 2; ihdr[10] = 0; ihdr[11] = 0; ihdr[12] = 0;
    FILE *f = fopen(path, "wb");
    bool ok = f && fwrite("\x89PNG\r\n\x1a\n", 1, 8, f) == 8 && chunk(f, "IHDR", ihdr, 13) &&
              chunk(f, "IDAT", z, (size_t)(p - z)) && chunk(f, "IEND", NULL, 0);
    if (f) ok = fclose(f) == 0 && ok;
    free(raw);
    free(z);
    return ok;
}

bool ls_heatmap_png(const char *path, const char *title, const int *rows, int n_rows, const char *row_label,
                    const char *const *cols, int n_cols, const char *col_label, const double *values,
                    int decimals, const char *suffix) {
    const int s = 2, cell_w = 64, cell_h = 26, left = 70, top = 56, pad = 12;
    canvas cv = {.w = left + n_cols * cell_w + pad, .h = top + n_rows * cell_h + pad};
    if (cv.w < text_width(title, s) + 2 * pad) cv.w = text_width(title, s) + 2 * pad;
    cv.px = malloc((size_t)cv.w * cv.h * 3);
    if (!cv.px) return false;
    const uint8_t white[3] = {255, 255, 255}, black[3] = {0, 0, 0}, grey[3] = {120, 120, 120};
    fill(&cv, 0, 0, cv.w, cv.h, white);
    double lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < n_rows * n_cols; i++)
        if (isfinite(values[i])) { lo = fmin(lo, values[i]); hi = fmax(hi, values[i]); }
    text(&cv, pad, pad / 2, s, title, black);
    char buf[32];
    snprintf(buf, sizeof buf, "%s", col_label);
    text(&cv, pad, top - 9 * s - 4, s, buf, grey);
    for (int c = 0; c < n_cols; c++) {
        snprintf(buf, sizeof buf, "%s", cols[c]);
        text(&cv, left + c * cell_w + (cell_w - text_width(buf, s)) / 2, top - 8 * s - 2, s, buf, black);
    }
    for (int r = 0; r < n_rows; r++) {
        snprintf(buf, sizeof buf, "%s%d", row_label, rows[r]);
        text(&cv, pad, top + r * cell_h + (cell_h - 7 * s) / 2, s, buf, black);
        for (int c = 0; c < n_cols; c++) {
            double v = values[r * n_cols + c];
            uint8_t rgb[3];
            colour(hi > lo ? (v - lo) / (hi - lo) : 0.5, rgb);
            fill(&cv, left + c * cell_w + 1, top + r * cell_h + 1, left + (c + 1) * cell_w - 1, top + (r + 1) * cell_h - 1, rgb);
            if (isfinite(v)) snprintf(buf, sizeof buf, "%.*f%s", decimals, v, suffix);
            else snprintf(buf, sizeof buf, "-");
            text(&cv, left + c * cell_w + (cell_w - text_width(buf, s)) / 2, top + r * cell_h + (cell_h - 7 * s) / 2, s,
                 buf, black);
        }
    }
    bool ok = write_png(&cv, path);
    free(cv.px);
    return ok;
}
