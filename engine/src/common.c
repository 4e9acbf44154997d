/* common.c: status strings, error messages, tensor type table, fp16/bf16. */
#include "layerskip/ls_common.h"
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <stdbool.h>

const char *ls_strerror(ls_status s) {
    switch (s) {
    case LS_OK: return "ok";
    case LS_ERR_IO: return "I/O error";
    case LS_ERR_FORMAT: return "malformed input";
    case LS_ERR_UNSUPPORTED: return "unsupported";
    case LS_ERR_NOMEM: return "out of memory";
    case LS_ERR_INVALID: return "invalid argument";
    case LS_ERR_RANGE: return "out of range";
    case LS_ERR_MISSING: return "missing";
    }
    return "unknown status";
}

ls_status ls_err_set(ls_err *err, ls_status s, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return s;
}

bool ls_type_is_supported(uint32_t t) {
    switch (t) {
    case LS_TYPE_F32: case LS_TYPE_F16: case LS_TYPE_BF16:
    case LS_TYPE_Q4_0: case LS_TYPE_Q4_1: case LS_TYPE_Q5_0: case LS_TYPE_Q5_1: case LS_TYPE_Q8_0:
    case LS_TYPE_Q2_K: case LS_TYPE_Q3_K: case LS_TYPE_Q4_K: case LS_TYPE_Q5_K: case LS_TYPE_Q6_K:
    case LS_TYPE_IQ4_NL: case LS_TYPE_IQ4_XS:
        return true;
    }
    return false;
}

const char *ls_type_name(ls_type t) {
    switch (t) {
    case LS_TYPE_F32: return "F32";
    case LS_TYPE_F16: return "F16";
    case LS_TYPE_BF16: return "BF16";
    case LS_TYPE_Q4_0: return "Q4_0";
    case LS_TYPE_Q4_1: return "Q4_1";
    case LS_TYPE_Q5_0: return "Q5_0";
    case LS_TYPE_Q5_1: return "Q5_1";
    case LS_TYPE_Q8_0: return "Q8_0";
    case LS_TYPE_Q2_K: return "Q2_K";
    case LS_TYPE_Q3_K: return "Q3_K";
    case LS_TYPE_Q4_K: return "Q4_K";
    case LS_TYPE_Q5_K: return "Q5_K";
    case LS_TYPE_Q6_K: return "Q6_K";
    case LS_TYPE_IQ4_NL: return "IQ4_NL";
    case LS_TYPE_IQ4_XS: return "IQ4_XS";
    }
    return "?";
}

int64_t ls_type_block_elems(ls_type t) {
    switch (t) {
    case LS_TYPE_Q4_0: case LS_TYPE_Q4_1: case LS_TYPE_Q5_0: case LS_TYPE_Q5_1: case LS_TYPE_Q8_0:
    case LS_TYPE_IQ4_NL:
        return 32;
    case LS_TYPE_Q2_K: case LS_TYPE_Q3_K: case LS_TYPE_Q4_K: case LS_TYPE_Q5_K: case LS_TYPE_Q6_K:
    case LS_TYPE_IQ4_XS:
        return 256;
    default: return 1;
    }
}

size_t ls_type_block_bytes(ls_type t) {
    switch (t) {
    case LS_TYPE_F32: return 4;
    case LS_TYPE_F16: case LS_TYPE_BF16: return 2;
    case LS_TYPE_Q4_0: return 18;
    case LS_TYPE_Q4_1: return 20;
    case LS_TYPE_Q5_0: return 22;
    case LS_TYPE_Q5_1: return 24;
    case LS_TYPE_Q8_0: return 34;
    case LS_TYPE_IQ4_NL: return 18;
    case LS_TYPE_Q2_K: return 84;
    case LS_TYPE_Q3_K: return 110;
    case LS_TYPE_Q4_K: return 144;
    case LS_TYPE_Q5_K: return 176;
    case LS_TYPE_Q6_K: return 210;
    case LS_TYPE_IQ4_XS: return 136;
    }
    return 0;
}

bool ls_type_nbytes(ls_type t, int64_t n, uint64_t *out) {
    int64_t be = ls_type_block_elems(t);
    size_t bb = ls_type_block_bytes(t);
    if (n < 0 || bb == 0 || n % be != 0) return false;
    return ls_mul_u64((uint64_t)(n / be), bb, out);
}

float ls_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    uint32_t bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do { mant <<= 1; e++; } while (!(mant & 0x400));
            mant &= 0x3ff;
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | (mant << 13);
        }
    } else if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t ls_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t absx = x & 0x7fffffffu;
    if (absx >= 0x7f800000u) /* inf / nan */
        return (uint16_t)(sign | 0x7c00 | (absx > 0x7f800000u ? 0x200 : 0));
    if (absx >= 0x477ff000u) /* rounds to >= 65520: overflow to inf */
        return (uint16_t)(sign | 0x7c00);
    if (absx < 0x38800000u) { /* below smallest normal half: subnormal or zero */
        if (absx < 0x33000000u) return (uint16_t)sign;
        uint32_t e = absx >> 23;
        uint32_t m = (absx & 0x7fffff) | 0x800000;
        /* value = m * 2^(e-150); half subnormal unit = 2^-24 */
        uint32_t s = 150 - 24 - e; /* right shift to express in 2^-24 units */
        uint32_t q = m >> s;
        uint32_t rem = m & ((1u << s) - 1);
        uint32_t mid = 1u << (s - 1);
        if (rem > mid || (rem == mid && (q & 1))) q++;
        return (uint16_t)(sign | q);
    }
    uint32_t e = ((absx >> 23) - 127 + 15) << 10;
    uint32_t m = (absx >> 13) & 0x3ff;
    uint32_t rem = absx & 0x1fff;
    uint32_t h = e | m;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++;
    return (uint16_t)(sign | h);
}

float ls_bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t ls_f32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40);
    x += 0x7fff + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

bool ls_parse_size(const char *s, size_t n, uint64_t *out, char *why, size_t why_cap) {
#define FAIL(...) do { if (why && why_cap) snprintf(why, why_cap, __VA_ARGS__); return false; } while (0)
    const char *p = s, *e = s + n;
    while (p < e && *p == ' ') p++;
    while (e > p && e[-1] == ' ') e--;
    if (p == e) FAIL("is empty");
    uint64_t ip = 0, frac = 0, pow10 = 1;
    bool digits = false, too_big = false;
    for (; p < e && *p >= '0' && *p <= '9'; p++) {
        const uint64_t d = (uint64_t)(*p - '0');
        if (ip > (UINT64_MAX - d) / 10) too_big = true;
        else ip = ip * 10 + d;
        digits = true;
    }
    if (p < e && *p == '.') {
        int nd = 0;
        for (p++; p < e && *p >= '0' && *p <= '9'; p++, nd++) {
            if (nd == 9) FAIL("has more than 9 decimals (write fewer, like \"1.5G\")");
            frac = frac * 10 + (uint64_t)(*p - '0');
            pow10 *= 10;
            digits = true;
        }
    }
    if (!digits) FAIL("does not start with a number");
    while (p < e && *p == ' ') p++;
    if (p == e) FAIL("has no unit");
    const char *unit = p;
    int shift;
    switch (*p) {
    case 'K': case 'k': shift = 10; break;
    case 'M': case 'm': shift = 20; break;
    case 'G': case 'g': shift = 30; break;
    case 'T': case 't': shift = 40; break;
    default: shift = -1; break;
    }
    if (shift > 0) {
        p++;
        if (p < e && (*p == 'i' || *p == 'I')) p++;
        if (p < e && (*p == 'B' || *p == 'b')) p++;
    }
    if (shift < 0 || p != e) FAIL("has an unknown unit \"%.*s\"", (int)(e - unit > 20 ? 20 : e - unit), unit);
    const uint64_t mult = (uint64_t)1 << shift;
    if (too_big || ip > UINT64_MAX / mult) FAIL("is too large (write a size below 16 EiB)");
    /* frac / pow10 * mult, exactly and without overflow: frac < pow10 <= 1e9 */
    const uint64_t v = ip * mult + frac * (mult / pow10) + frac * (mult % pow10) / pow10;
    if (v < ip * mult) FAIL("is too large (write a size below 16 EiB)");
    if (v == 0) FAIL("is zero bytes");
    *out = v;
    return true;
#undef FAIL
}
