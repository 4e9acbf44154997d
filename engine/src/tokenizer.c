/* tokenizer.c: SentencePiece-style and byte-level BPE encoding, decoding and
 * the GGUF vocabulary loader. Behaviour follows llama.cpp's llama-vocab.cpp
 * (the reference for GGUF files): special tokens are cut out of the raw text
 * first (longest first), SPM merges the highest-scoring adjacent pair that
 * forms a token, BPE merges the lowest-ranked pair inside each pre-token.
 * Both merge loops use a binary heap, so encoding is O(n log n). */
#define _GNU_SOURCE /* memmem */
#include "tokenizer_internal.h"

#include "gguf.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *const tok_regex_gpt2 =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
/* llama.cpp's form of the Llama 3 regex: (?i:...) spelled out so that only
 * ASCII letters fold (PCRE2 would also fold U+017F to 's') */
const char *const tok_regex_llama3 =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
    "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
/* as written in Llama 3's tokenizer.json */
const char *const tok_regex_llama3_hf =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+"
    "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/* Unicode White_Space, which is what llama.cpp and Hugging Face mean by \s
 * (PCRE2's \s also matches U+180E) */
#define TOK_WS_CLASS "\\t-\\r \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"

/* ------------------------------------------------------------ containers */

static uint32_t tok_hash(const char *s, size_t len) {
    uint32_t h = 2166136261u ^ (uint32_t)len;
    for (size_t i = 0; i < len; i++) h = (h ^ (uint8_t)s[i]) * 16777619u;
    h ^= h >> 15;
    h *= 0x2c1b3c6du;
    h ^= h >> 12;
    return h;
}

static bool strmap_init(tok_strmap *m, uint32_t want) {
    uint32_t cap = 16;
    while (cap < want * 2) cap <<= 1;
    m->slot = malloc(sizeof(int32_t) * cap);
    m->hash = malloc(sizeof(uint32_t) * cap);
    if (!m->slot || !m->hash) return false;
    memset(m->slot, 0xff, sizeof(int32_t) * cap);
    m->cap = cap;
    m->n = 0;
    return true;
}

static void strmap_free(tok_strmap *m) {
    free(m->slot);
    free(m->hash);
    memset(m, 0, sizeof *m);
}

static int32_t strmap_find(const ls_tokenizer *t, const char *s, size_t len, uint32_t h) {
    const tok_strmap *m = &t->map;
    if (!m->cap) return -1;
    for (uint32_t i = h & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        int32_t id = m->slot[i];
        if (id < 0) return -1;
        if (m->hash[i] == h && t->sym_len[id] == len && memcmp(t->sym[id], s, len) == 0) return id;
    }
}

static bool strmap_grow(ls_tokenizer *t);

/* insert or overwrite (a later token with the same text wins, as in llama.cpp) */
static bool strmap_put(ls_tokenizer *t, int32_t id) {
    tok_strmap *m = &t->map;
    if ((m->n + 1) * 2 > m->cap && !strmap_grow(t)) return false;
    const char *s = t->sym[id];
    size_t len = t->sym_len[id];
    uint32_t h = tok_hash(s, len);
    for (uint32_t i = h & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        int32_t cur = m->slot[i];
        if (cur < 0) {
            m->slot[i] = id;
            m->hash[i] = h;
            m->n++;
            return true;
        }
        if (m->hash[i] == h && t->sym_len[cur] == len && memcmp(t->sym[cur], s, len) == 0) {
            m->slot[i] = id;
            return true;
        }
    }
}

static bool strmap_grow(ls_tokenizer *t) {
    tok_strmap old = t->map;
    if (!strmap_init(&t->map, old.cap ? old.cap : 8)) {
        strmap_free(&t->map);
        t->map = old;
        return false;
    }
    for (uint32_t i = 0; i < old.cap; i++) {
        if (old.slot[i] < 0) continue;
        uint32_t h = old.hash[i];
        for (uint32_t j = h & (t->map.cap - 1);; j = (j + 1) & (t->map.cap - 1)) {
            if (t->map.slot[j] < 0) {
                t->map.slot[j] = old.slot[i];
                t->map.hash[j] = h;
                t->map.n++;
                break;
            }
        }
    }
    strmap_free(&old);
    return true;
}

static uint64_t pair_key(int32_t a, int32_t b) { return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b; }

static uint32_t pair_hash(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return (uint32_t)k;
}

static bool pairmap_grow(tok_pairmap *m) {
    uint32_t cap = m->cap ? m->cap * 2 : 1024;
    uint64_t *key = malloc(sizeof(uint64_t) * cap);
    int32_t *val = malloc(sizeof(int32_t) * cap);
    if (!key || !val) { free(key); free(val); return false; }
    memset(key, 0xff, sizeof(uint64_t) * cap);
    for (uint32_t i = 0; i < m->cap; i++) {
        if (m->key[i] == UINT64_MAX) continue;
        for (uint32_t j = pair_hash(m->key[i]) & (cap - 1);; j = (j + 1) & (cap - 1)) {
            if (key[j] == UINT64_MAX) { key[j] = m->key[i]; val[j] = m->val[i]; break; }
        }
    }
    free(m->key);
    free(m->val);
    m->key = key;
    m->val = val;
    m->cap = cap;
    return true;
}

static int32_t pairmap_get(const tok_pairmap *m, int32_t a, int32_t b) {
    if (!m->cap || a < 0 || b < 0) return -1;
    uint64_t k = pair_key(a, b);
    for (uint32_t i = pair_hash(k) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        if (m->key[i] == k) return m->val[i];
        if (m->key[i] == UINT64_MAX) return -1;
    }
}

/* keeps the first (lowest) rank of a pair, like llama.cpp's emplace */
static bool pairmap_add(tok_pairmap *m, int32_t a, int32_t b, int32_t v) {
    if ((m->n + 1) * 2 > m->cap && !pairmap_grow(m)) return false;
    uint64_t k = pair_key(a, b);
    for (uint32_t i = pair_hash(k) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        if (m->key[i] == k) return true;
        if (m->key[i] == UINT64_MAX) { m->key[i] = k; m->val[i] = v; m->n++; return true; }
    }
}

static char *arena_dup(tok_arena *a, const char *s, size_t len) {
    if (len + 1 > a->block_size - a->used || a->n_blocks == 0) {
        size_t bs = len + 1 > (1u << 20) ? len + 1 : (1u << 20);
        if (a->n_blocks == a->cap_blocks) {
            int nc = a->cap_blocks ? a->cap_blocks * 2 : 16;
            char **nb = realloc(a->blocks, sizeof(char *) * (size_t)nc);
            if (!nb) return NULL;
            a->blocks = nb;
            a->cap_blocks = nc;
        }
        char *b = malloc(bs);
        if (!b) return NULL;
        a->blocks[a->n_blocks++] = b;
        a->block_size = bs;
        a->used = 0;
    }
    char *p = a->blocks[a->n_blocks - 1] + a->used;
    if (len) memcpy(p, s, len);
    p[len] = 0;
    a->used += len + 1;
    return p;
}

static void arena_free(tok_arena *a) {
    for (int i = 0; i < a->n_blocks; i++) free(a->blocks[i]);
    free(a->blocks);
    memset(a, 0, sizeof *a);
}

/* ------------------------------------------------------------- building */

ls_tokenizer *tok_new(ls_tok_kind kind, int32_t n_vocab, const char *name) {
    if (n_vocab <= 0 || n_vocab > TOK_MAX_VOCAB) return NULL;
    ls_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->kind = kind;
    t->name = strdup(name ? name : "tokenizer");
    t->pre = strdup("");
    t->n_vocab = n_vocab;
    t->n_sym = n_vocab;
    t->cap_sym = n_vocab;
    t->sym = calloc((size_t)n_vocab, sizeof(char *));
    t->sym_len = calloc((size_t)n_vocab, sizeof(uint32_t));
    t->score = calloc((size_t)n_vocab, sizeof(float));
    t->type = calloc((size_t)n_vocab, 1);
    t->flags = calloc((size_t)n_vocab, 1);
    t->bos = t->eos = t->unk = t->eot = t->eom = -1;
    if (!t->name || !t->pre || !t->sym || !t->sym_len || !t->score || !t->type || !t->flags) {
        ls_tokenizer_free(t);
        return NULL;
    }
    for (int32_t i = 0; i < n_vocab; i++) t->sym[i] = "";
    return t;
}

bool tok_set_token(ls_tokenizer *t, int32_t id, const char *text, size_t len, float score, int type) {
    if (id < 0 || id >= t->n_vocab || len >= UINT32_MAX) return false;
    char *s = arena_dup(&t->arena, text, len);
    if (!s) return false;
    t->sym[id] = s;
    t->sym_len[id] = (uint32_t)len;
    t->score[id] = score;
    t->type[id] = (uint8_t)(type >= LS_TOKT_NORMAL && type <= LS_TOKT_BYTE ? type : 0);
    if (len > t->max_token_len) t->max_token_len = (uint32_t)len;
    return true;
}

bool tok_index(ls_tokenizer *t) {
    if (!strmap_init(&t->map, (uint32_t)t->n_vocab + 16)) return false;
    for (int32_t i = 0; i < t->n_vocab; i++) {
        if (t->sym_len[i] == 0) continue; /* never matched */
        if (!strmap_put(t, i)) return false;
    }
    return true;
}

int32_t tok_lookup(const ls_tokenizer *t, const char *s, size_t len) {
    if (len == 0) return -1;
    return strmap_find(t, s, len, tok_hash(s, len));
}

int32_t tok_sym(ls_tokenizer *t, const char *s, size_t len, bool intern) {
    int32_t id = tok_lookup(t, s, len);
    if (id >= 0 || !intern || len == 0 || len >= UINT32_MAX) return id;
    if (t->n_sym == t->cap_sym) {
        int32_t nc = t->cap_sym + t->cap_sym / 2 + 16;
        const char **ns = realloc(t->sym, sizeof(char *) * (size_t)nc);
        if (!ns) return -1;
        t->sym = ns;
        uint32_t *nl = realloc(t->sym_len, sizeof(uint32_t) * (size_t)nc);
        if (!nl) return -1;
        t->sym_len = nl;
        t->cap_sym = nc;
    }
    char *c = arena_dup(&t->arena, s, len);
    if (!c) return -1;
    id = t->n_sym;
    t->sym[id] = c;
    t->sym_len[id] = (uint32_t)len;
    t->n_sym++;
    if (!strmap_put(t, id)) { t->n_sym--; return -1; }
    return id;
}

bool tok_add_merge(ls_tokenizer *t, int32_t a, int32_t b) {
    if (a < 0 || b < 0) return false;
    size_t la = t->sym_len[a], lb = t->sym_len[b];
    char stackbuf[512];
    char *cat = la + lb <= sizeof stackbuf ? stackbuf : malloc(la + lb);
    if (!cat) return false;
    memcpy(cat, t->sym[a], la);
    memcpy(cat + la, t->sym[b], lb);
    int32_t r = tok_sym(t, cat, la + lb, true);
    if (cat != stackbuf) free(cat);
    if (r < 0) return false;
    if (t->n_merges == t->cap_merges) {
        int32_t nc = t->cap_merges ? t->cap_merges * 2 : 1024;
        int32_t *na = realloc(t->merge_a, sizeof(int32_t) * (size_t)nc);
        if (!na) return false;
        t->merge_a = na;
        int32_t *nb = realloc(t->merge_b, sizeof(int32_t) * (size_t)nc);
        if (!nb) return false;
        t->merge_b = nb;
        int32_t *nr = realloc(t->merge_res, sizeof(int32_t) * (size_t)nc);
        if (!nr) return false;
        t->merge_res = nr;
        t->cap_merges = nc;
    }
    int32_t rank = t->n_merges++;
    t->merge_a[rank] = a;
    t->merge_b[rank] = b;
    t->merge_res[rank] = r;
    return pairmap_add(&t->pairs, a, b, rank);
}

/* \s -> explicit White_Space class; \S outside a class -> its complement */
static char *regex_rewrite_ws(const char *src) {
    size_t n = strlen(src), cap = n * 8 + 256, o = 0;
    char *out = malloc(cap);
    if (!out) return NULL;
    bool in_class = false;
    for (size_t i = 0; i < n; i++) {
        if (o + sizeof TOK_WS_CLASS + 8 > cap) {
            cap *= 2;
            char *no = realloc(out, cap);
            if (!no) { free(out); return NULL; }
            out = no;
        }
        char c = src[i];
        if (c == '\\' && i + 1 < n) {
            char d = src[i + 1];
            if (d == 's') {
                o += (size_t)sprintf(out + o, in_class ? "%s" : "[%s]", TOK_WS_CLASS);
                i++;
                continue;
            }
            if (d == 'S' && !in_class) {
                o += (size_t)sprintf(out + o, "[^%s]", TOK_WS_CLASS);
                i++;
                continue;
            }
            out[o++] = c;
            out[o++] = d;
            i++;
            continue;
        }
        if (c == '[' && !in_class) {
            in_class = true;
            out[o++] = c;
            /* a leading ']' or '^]' is literal */
            if (i + 1 < n && src[i + 1] == '^') out[o++] = src[++i];
            if (i + 1 < n && src[i + 1] == ']') out[o++] = src[++i];
            continue;
        }
        if (c == ']' && in_class) in_class = false;
        out[o++] = c;
    }
    out[o] = 0;
    return out;
}

ls_status tok_add_regex(ls_tokenizer *t, const char *src, ls_err *err) {
    if (t->n_regex >= TOK_MAX_REGEX)
        return ls_err_set(err, LS_ERR_UNSUPPORTED, "%s: more than %d pre-tokenizer regexes", t->name, TOK_MAX_REGEX);
    char *rw = regex_rewrite_ws(src);
    char *copy = strdup(src);
    if (!rw || !copy) {
        free(rw);
        free(copy);
        return ls_err_set(err, LS_ERR_NOMEM, "%s: out of memory", t->name);
    }
    int ecode;
    PCRE2_SIZE eoff;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)rw, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &ecode, &eoff, NULL);
    free(rw);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(ecode, msg, sizeof msg);
        ls_status s = ls_err_set(err, LS_ERR_UNSUPPORTED, "%s: pre-tokenizer regex \"%.200s\" does not compile: %s",
                                 t->name, src, (const char *)msg);
        free(copy);
        return s;
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* the interpreter is the fallback */
    t->regex[t->n_regex] = re;
    t->regex_src[t->n_regex] = copy;
    t->n_regex++;
    return LS_OK;
}

static bool str_in(const char *s, const char *const *list) {
    for (; *list; list++)
        if (strcmp(s, *list) == 0) return true;
    return false;
}

ls_status tok_set_pre(ls_tokenizer *t, const char *pre, ls_err *err) {
    static const char *const llama3[] = {"llama3", "llama-v3", "llama-bpe", "falcon3", "pixtral", "smaug-bpe", "dbrx", NULL};
    static const char *const digits[] = {"smollm", "starcoder", "refact", "codeshell", "exaone", "minerva-7b",
                                         "command-r", NULL};
    free(t->pre);
    t->pre = strdup(pre ? pre : "");
    if (!t->pre) return ls_err_set(err, LS_ERR_NOMEM, "%s: out of memory", t->name);
    ls_status s;
    if (str_in(t->pre, llama3)) {
        t->ignore_merges = true;
        t->add_bos = true;
        return tok_add_regex(t, tok_regex_llama3, err);
    }
    if (str_in(t->pre, digits)) {
        if ((s = tok_add_regex(t, "\\p{N}", err)) != LS_OK) return s;
        return tok_add_regex(t, tok_regex_gpt2, err);
    }
    return tok_add_regex(t, tok_regex_gpt2, err);
}

void tok_mark_eog_by_text(ls_tokenizer *t) {
    static const char *const eog[] = {
        "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>", "<EOT>",
        "_<EOT>", "<|end_of_text|>", "<end_of_utterance>",
        /* fill-in-the-middle repo/file/pad markers, as llama.cpp */
        "<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>",
        "<reponame>", "<|file_sep|>", NULL};
    for (int i = 0; eog[i]; i++) {
        int32_t id = tok_lookup(t, eog[i], strlen(eog[i]));
        if (id >= 0 && id < t->n_vocab) t->flags[id] |= TOKF_EOG;
    }
}

/* longest first, then lower id */
static bool special_before(const ls_tokenizer *t, int32_t a, int32_t b) {
    if (t->sym_len[a] != t->sym_len[b]) return t->sym_len[a] > t->sym_len[b];
    return a < b;
}

/* few specials (hundreds at most): insertion sort */
static void sort_specials(ls_tokenizer *t) {
    for (int32_t i = 1; i < t->n_special; i++) {
        int32_t v = t->special[i];
        int32_t j = i - 1;
        while (j >= 0 && special_before(t, v, t->special[j])) {
            t->special[j + 1] = t->special[j];
            j--;
        }
        t->special[j + 1] = v;
    }
}

static size_t utf8_encode(uint32_t cp, char *out) {
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    if (cp < 0x800) { out[0] = (char)(0xC0 | (cp >> 6)); out[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* strict decode of one code point; returns its length, 0 if invalid */
static size_t utf8_decode_strict(const uint8_t *s, size_t n, uint32_t *cp) {
    uint8_t b = s[0];
    if (b < 0x80) { *cp = b; return 1; }
    size_t len;
    uint32_t c, min;
    if (b >= 0xC2 && b <= 0xDF) { len = 2; c = b & 0x1F; min = 0x80; }
    else if (b >= 0xE0 && b <= 0xEF) { len = 3; c = b & 0x0F; min = 0x800; }
    else if (b >= 0xF0 && b <= 0xF4) { len = 4; c = b & 0x07; min = 0x10000; }
    else return 0;
    if (n < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        c = (c << 6) | (s[i] & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return 0;
    *cp = c;
    return len;
}

bool tok_parse_byte_token(const char *s, size_t len, uint8_t *out) {
    if (len != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return false;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) return false;
        v = v * 16 + d;
    }
    *out = (uint8_t)v;
    return true;
}

static void build_byte_tables(ls_tokenizer *t) {
    int n = 0;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        t->byte_cp[b] = (uint16_t)(printable ? b : 256 + n++);
    }
    for (int i = 0; i < 512; i++) t->cp_byte[i] = -1;
    for (int b = 0; b < 256; b++) t->cp_byte[t->byte_cp[b]] = (int16_t)b;
    for (int b = 0; b < 256; b++) {
        char enc[4];
        size_t el = utf8_encode(t->byte_cp[b], enc);
        t->byte_sym[b] = tok_lookup(t, enc, el);
        t->byte_tok[b] = -1;
        if (t->kind == LS_TOK_SPM) {
            char hex[8];
            snprintf(hex, sizeof hex, "<0x%02X>", b);
            int32_t id = tok_lookup(t, hex, 6);
            if (id < 0) {
                char one = (char)b;
                id = tok_lookup(t, &one, 1);
            }
            t->byte_tok[b] = id >= 0 && id < t->n_vocab ? id : -1;
        }
    }
}

/* bytes of token id as text, render_special = false */
static size_t token_decoded(const ls_tokenizer *t, int32_t id, char *out) {
    const char *s = t->sym[id];
    size_t len = t->sym_len[id], o = 0;
    switch (t->type[id]) {
    case LS_TOKT_CONTROL:
    case LS_TOKT_UNKNOWN:
    case LS_TOKT_UNUSED:
    case 0:
        return 0;
    case LS_TOKT_USER_DEFINED:
        if (out) memcpy(out, s, len);
        return len;
    case LS_TOKT_BYTE: {
        uint8_t b;
        if (tok_parse_byte_token(s, len, &b)) {
            if (out) out[0] = (char)b;
            return 1;
        }
        if (out) memcpy(out, s, len);
        return len;
    }
    default:
        break;
    }
    if (t->kind == LS_TOK_SPM) {
        for (size_t i = 0; i < len;) {
            if (i + 3 <= len && memcmp(s + i, "\xE2\x96\x81", 3) == 0) {
                if (out) out[o] = ' ';
                o++;
                i += 3;
            } else {
                if (out) out[o] = s[i];
                o++;
                i++;
            }
        }
        return o;
    }
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t n = utf8_decode_strict((const uint8_t *)s + i, len - i, &cp);
        if (n == 0) {
            if (out) out[o] = s[i];
            o++;
            i++;
            continue;
        }
        if (cp < 512 && t->cp_byte[cp] >= 0) {
            if (out) out[o] = (char)t->cp_byte[cp];
            o++;
        } else {
            if (out) memcpy(out + o, s + i, n);
            o += n;
        }
        i += n;
    }
    return o;
}

ls_status tok_finish(ls_tokenizer *t, ls_err *err) {
    const int32_t n = t->n_vocab;
    if (t->bos >= n) t->bos = -1;
    if (t->eos >= n) t->eos = -1;
    if (t->unk >= n) t->unk = -1;
    if (t->eot >= n) t->eot = -1;
    if (t->eom >= n) t->eom = -1;
    if (t->bos < 0) t->add_bos = false;
    if (t->eos < 0) t->add_eos = false;
    if (t->eos >= 0) t->flags[t->eos] |= TOKF_EOG;
    if (t->eot >= 0) t->flags[t->eot] |= TOKF_EOG;
    if (t->eom >= 0) t->flags[t->eom] |= TOKF_EOG;
    tok_mark_eog_by_text(t);

    int32_t ns = 0;
    for (int32_t i = 0; i < n; i++) {
        int ty = t->type[i];
        if ((ty == LS_TOKT_CONTROL || ty == LS_TOKT_USER_DEFINED || ty == LS_TOKT_UNKNOWN) && t->sym_len[i] > 0) ns++;
    }
    t->special = malloc(sizeof(int32_t) * (size_t)(ns ? ns : 1));
    if (!t->special) return ls_err_set(err, LS_ERR_NOMEM, "%s: out of memory", t->name);
    t->n_special = 0;
    for (int32_t i = 0; i < n; i++) {
        int ty = t->type[i];
        if ((ty == LS_TOKT_CONTROL || ty == LS_TOKT_USER_DEFINED || ty == LS_TOKT_UNKNOWN) && t->sym_len[i] > 0)
            t->special[t->n_special++] = i;
    }
    sort_specials(t);

    build_byte_tables(t);

    t->dec_off = malloc(sizeof(uint64_t) * ((size_t)n + 1));
    if (!t->dec_off) return ls_err_set(err, LS_ERR_NOMEM, "%s: out of memory", t->name);
    uint64_t total = 0;
    for (int32_t i = 0; i < n; i++) {
        t->dec_off[i] = total;
        total += token_decoded(t, i, NULL);
    }
    t->dec_off[n] = total;
    t->dec = malloc(total ? total : 1);
    if (!t->dec) return ls_err_set(err, LS_ERR_NOMEM, "%s: out of memory", t->name);
    for (int32_t i = 0; i < n; i++) token_decoded(t, i, t->dec + t->dec_off[i]);

    if (t->n_regex) {
        t->mctx = pcre2_match_context_create(NULL);
        if (!t->mctx) return ls_err_set(err, LS_ERR_NOMEM, "%s: out of memory", t->name);
        /* bound pathological user regexes (tokenizer.json) */
        pcre2_set_match_limit(t->mctx, 10000000);
        pcre2_set_depth_limit(t->mctx, 100000);
    }
    return LS_OK;
}

void ls_tokenizer_free(ls_tokenizer *t) {
    if (!t) return;
    free(t->name);
    free(t->pre);
    free(t->sym);
    free(t->sym_len);
    free(t->score);
    free(t->type);
    free(t->flags);
    arena_free(&t->arena);
    strmap_free(&t->map);
    free(t->merge_a);
    free(t->merge_b);
    free(t->merge_res);
    free(t->pairs.key);
    free(t->pairs.val);
    for (int i = 0; i < t->n_regex; i++) {
        pcre2_code_free(t->regex[i]);
        free(t->regex_src[i]);
    }
    pcre2_match_context_free(t->mctx);
    free(t->special);
    free(t->dec);
    free(t->dec_off);
    free(t);
}

/* ---------------------------------------------------------- GGUF loader */

static bool kv_is_array(const gguf_kv *kv) { return kv && kv->type == GGUF_TYPE_ARRAY; }

static bool gguf_type_numeric(gguf_type ty) {
    return ty != GGUF_TYPE_STRING && ty != GGUF_TYPE_ARRAY && ty != GGUF_TYPE_BOOL && ty < GGUF_TYPE_COUNT;
}

static ls_status gguf_opt_id(const gguf_ctx *g, const char *key, int32_t *id, ls_err *err) {
    uint32_t v;
    ls_status s = gguf_get_u32(g, key, &v, false, NULL);
    if (s == LS_ERR_MISSING) return LS_OK;
    if (s != LS_OK) return ls_err_set(err, LS_ERR_FORMAT, "%s: %s is not an unsigned integer", g->path, key);
    *id = (int32_t)(v < (uint32_t)TOK_MAX_VOCAB ? v : (uint32_t)TOK_MAX_VOCAB); /* range checked in tok_finish */
    return LS_OK;
}

static ls_status gguf_opt_bool(const gguf_ctx *g, const char *key, bool *out, ls_err *err) {
    bool v;
    ls_status s = gguf_get_bool(g, key, &v, false, NULL);
    if (s == LS_ERR_MISSING) return LS_OK;
    if (s != LS_OK) return ls_err_set(err, LS_ERR_FORMAT, "%s: %s is not a bool", g->path, key);
    *out = v;
    return LS_OK;
}

ls_status ls_tokenizer_from_gguf(const gguf_ctx *g, ls_tokenizer **out, ls_err *err) {
    *out = NULL;
    const char *path = g->path ? g->path : "gguf";
    gguf_str model;
    ls_status s = gguf_get_str(g, "tokenizer.ggml.model", &model, false, NULL);
    if (s == LS_ERR_MISSING)
        return ls_err_set(err, LS_ERR_MISSING, "%s: no tokenizer.ggml.model key (the file has no vocabulary)", path);
    if (s != LS_OK) return ls_err_set(err, LS_ERR_FORMAT, "%s: tokenizer.ggml.model is not a string", path);
    ls_tok_kind kind;
    if (gguf_str_eq(model, "llama")) kind = LS_TOK_SPM;
    else if (gguf_str_eq(model, "gpt2")) kind = LS_TOK_BPE;
    else
        return ls_err_set(err, LS_ERR_UNSUPPORTED,
                          "%s: tokenizer.ggml.model \"%.*s\" is not supported (only \"llama\" and \"gpt2\")", path,
                          (int)(model.len > 64 ? 64 : model.len), model.ptr);

    const gguf_kv *toks = gguf_find_kv(g, "tokenizer.ggml.tokens");
    if (!toks) return ls_err_set(err, LS_ERR_MISSING, "%s: no tokenizer.ggml.tokens key", path);
    if (!kv_is_array(toks) || toks->arr_type != GGUF_TYPE_STRING || !toks->strs)
        return ls_err_set(err, LS_ERR_FORMAT, "%s: tokenizer.ggml.tokens is not an array of strings", path);
    if (toks->arr_n == 0 || toks->arr_n > TOK_MAX_VOCAB)
        return ls_err_set(err, LS_ERR_FORMAT, "%s: tokenizer.ggml.tokens has %llu entries (want 1..%d)", path,
                          (unsigned long long)toks->arr_n, TOK_MAX_VOCAB);
    const int32_t n = (int32_t)toks->arr_n;

    const gguf_kv *scores = gguf_find_kv(g, "tokenizer.ggml.scores");
    if (scores && (!kv_is_array(scores) || !gguf_type_numeric(scores->arr_type) || scores->arr_n < (uint64_t)n))
        return ls_err_set(err, LS_ERR_FORMAT, "%s: tokenizer.ggml.scores is not a numeric array of %d entries", path, n);
    const gguf_kv *types = gguf_find_kv(g, "tokenizer.ggml.token_type");
    if (types && (!kv_is_array(types) || !gguf_type_numeric(types->arr_type) || types->arr_n < (uint64_t)n))
        return ls_err_set(err, LS_ERR_FORMAT, "%s: tokenizer.ggml.token_type is not an integer array of %d entries",
                          path, n);

    ls_tokenizer *t = tok_new(kind, n, path);
    if (!t) return ls_err_set(err, LS_ERR_NOMEM, "%s: out of memory for %d tokens", path, n);
    for (int32_t i = 0; i < n; i++) {
        double sc = 0;
        int64_t ty = LS_TOKT_NORMAL;
        if (scores) gguf_arr_get_f64(scores, (uint64_t)i, &sc);
        if (types) gguf_arr_get_i64(types, (uint64_t)i, &ty);
        if (!tok_set_token(t, i, toks->strs[i].ptr, (size_t)toks->strs[i].len, (float)sc,
                           ty >= 0 && ty <= 255 ? (int)ty : 0)) {
            ls_tokenizer_free(t);
            return ls_err_set(err, LS_ERR_NOMEM, "%s: out of memory", path);
        }
    }
    if (!tok_index(t)) {
        ls_tokenizer_free(t);
        return ls_err_set(err, LS_ERR_NOMEM, "%s: out of memory", path);
    }

    gguf_str pre = {0, NULL};
    s = gguf_get_str(g, "tokenizer.ggml.pre", &pre, false, NULL);
    if (s != LS_OK && s != LS_ERR_MISSING) {
        ls_tokenizer_free(t);
        return ls_err_set(err, LS_ERR_FORMAT, "%s: tokenizer.ggml.pre is not a string", path);
    }
    char prebuf[128];
    snprintf(prebuf, sizeof prebuf, "%.*s", (int)(pre.len < 120 ? pre.len : 120), pre.ptr ? pre.ptr : "");

    if (kind == LS_TOK_BPE) {
        const gguf_kv *merges = gguf_find_kv(g, "tokenizer.ggml.merges");
        if (!merges) {
            ls_tokenizer_free(t);
            return ls_err_set(err, LS_ERR_MISSING, "%s: BPE vocabulary without tokenizer.ggml.merges", path);
        }
        if (!kv_is_array(merges) || merges->arr_type != GGUF_TYPE_STRING || !merges->strs) {
            ls_tokenizer_free(t);
            return ls_err_set(err, LS_ERR_FORMAT, "%s: tokenizer.ggml.merges is not an array of strings", path);
        }
        for (uint64_t i = 0; i < merges->arr_n; i++) {
            gguf_str m = merges->strs[i];
            /* split at the first space after the first byte, as llama.cpp */
            const char *sp = m.len > 1 ? memchr(m.ptr + 1, ' ', (size_t)m.len - 1) : NULL;
            if (!sp) continue; /* cannot match anything */
            size_t la = (size_t)(sp - m.ptr), lb = (size_t)m.len - la - 1;
            if (lb == 0) continue;
            int32_t a = tok_sym(t, m.ptr, la, true), b = tok_sym(t, sp + 1, lb, true);
            if (a < 0 || b < 0 || !tok_add_merge(t, a, b)) {
                ls_tokenizer_free(t);
                return ls_err_set(err, LS_ERR_NOMEM, "%s: out of memory", path);
            }
        }
        if ((s = tok_set_pre(t, prebuf, err)) != LS_OK) {
            ls_tokenizer_free(t);
            return s;
        }
        t->add_space_prefix = false;
    } else {
        free(t->pre);
        t->pre = strdup(prebuf);
        t->add_space_prefix = true;
        t->add_bos = true;
        t->bos = 1;
        t->eos = 2;
        t->unk = 0;
    }

    if ((s = gguf_opt_bool(g, "tokenizer.ggml.add_space_prefix", &t->add_space_prefix, err)) != LS_OK ||
        (s = gguf_opt_bool(g, "tokenizer.ggml.add_bos_token", &t->add_bos, err)) != LS_OK ||
        (s = gguf_opt_bool(g, "tokenizer.ggml.add_eos_token", &t->add_eos, err)) != LS_OK ||
        (s = gguf_opt_id(g, "tokenizer.ggml.bos_token_id", &t->bos, err)) != LS_OK ||
        (s = gguf_opt_id(g, "tokenizer.ggml.eos_token_id", &t->eos, err)) != LS_OK ||
        (s = gguf_opt_id(g, "tokenizer.ggml.unknown_token_id", &t->unk, err)) != LS_OK ||
        (s = gguf_opt_id(g, "tokenizer.ggml.eot_token_id", &t->eot, err)) != LS_OK ||
        (s = gguf_opt_id(g, "tokenizer.ggml.eom_token_id", &t->eom, err)) != LS_OK ||
        (s = tok_finish(t, err)) != LS_OK) {
        ls_tokenizer_free(t);
        return s;
    }
    *out = t;
    return LS_OK;
}

/* ------------------------------------------------------------- encoding */

typedef struct tok_ids {
    int32_t *v;
    int64_t n, cap;
    bool oom;
} tok_ids;

static void ids_push(tok_ids *o, int32_t id) {
    if (o->n == o->cap) {
        int64_t nc = o->cap ? o->cap * 2 : 256;
        int32_t *nv = realloc(o->v, sizeof(int32_t) * (size_t)nc);
        if (!nv) { o->oom = true; return; }
        o->v = nv;
        o->cap = nc;
    }
    o->v[o->n++] = id;
}

typedef struct tok_sym_node {
    int64_t start;   /* byte offset in the word */
    int32_t n;       /* bytes; 0 once merged into the left neighbour */
    int32_t prev, next;
    int32_t id;      /* BPE: symbol id (-1 unknown) */
} tok_sym_node;

typedef struct tok_bigram {
    uint64_t key;    /* heap order: smallest first */
    int32_t left, right;
    uint32_t size;
} tok_bigram;

/* merge state reused across words of one call */
typedef struct tok_work {
    tok_sym_node *sym;
    int64_t cap_sym;
    tok_bigram *heap;
    int64_t n_heap, cap_heap;
    char *buf;       /* scratch text */
    size_t cap_buf;
    bool oom;
} tok_work;

static bool work_reserve_sym(tok_work *w, int64_t n) {
    if (n <= w->cap_sym) return true;
    int64_t nc = n + n / 2 + 64;
    tok_sym_node *ns = realloc(w->sym, sizeof(tok_sym_node) * (size_t)nc);
    if (!ns) { w->oom = true; return false; }
    w->sym = ns;
    w->cap_sym = nc;
    return true;
}

static bool work_reserve_buf(tok_work *w, size_t n) {
    if (n <= w->cap_buf) return true;
    size_t nc = n + n / 2 + 64;
    char *nb = realloc(w->buf, nc);
    if (!nb) { w->oom = true; return false; }
    w->buf = nb;
    w->cap_buf = nc;
    return true;
}

static void heap_push(tok_work *w, tok_bigram b) {
    if (w->n_heap == w->cap_heap) {
        int64_t nc = w->cap_heap ? w->cap_heap * 2 : 256;
        tok_bigram *nh = realloc(w->heap, sizeof(tok_bigram) * (size_t)nc);
        if (!nh) { w->oom = true; return; }
        w->heap = nh;
        w->cap_heap = nc;
    }
    int64_t i = w->n_heap++;
    while (i > 0) {
        int64_t p = (i - 1) / 2;
        if (w->heap[p].key <= b.key) break;
        w->heap[i] = w->heap[p];
        i = p;
    }
    w->heap[i] = b;
}

static tok_bigram heap_pop(tok_work *w) {
    tok_bigram top = w->heap[0];
    tok_bigram last = w->heap[--w->n_heap];
    int64_t i = 0, n = w->n_heap;
    for (;;) {
        int64_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && w->heap[c + 1].key < w->heap[c].key) c++;
        if (w->heap[c].key >= last.key) break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (n > 0) w->heap[i] = last;
    return top;
}

/* float score, higher first, as an ascending unsigned key */
static uint32_t score_key(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    u = (u & 0x80000000u) ? ~u : (u | 0x80000000u); /* ascending with f */
    return ~u;                                       /* descending */
}

/* --- SPM: llama.cpp's llm_tokenizer_spm over an escaped fragment --- */

static void spm_try_bigram(const ls_tokenizer *t, tok_work *w, const char *text, int32_t l, int32_t r) {
    if (l < 0 || r < 0) return;
    uint32_t len = (uint32_t)(w->sym[l].n + w->sym[r].n);
    if (len > t->max_token_len) return;
    int32_t id = tok_lookup(t, text + w->sym[l].start, len);
    if (id < 0 || id >= t->n_vocab || (t->flags[id] & TOKF_NOMERGE)) return;
    tok_bigram b = {((uint64_t)score_key(t->score[id]) << 32) | (uint32_t)l, l, r, len};
    heap_push(w, b);
}

static void spm_encode(const ls_tokenizer *t, tok_work *w, const char *raw, size_t rlen, tok_ids *out) {
    /* escape: optional "▁" prefix, spaces -> "▁" */
    size_t need = rlen * 3 + 3;
    if (!work_reserve_buf(w, need)) return;
    char *text = w->buf;
    size_t n = 0;
    if (t->add_space_prefix) { memcpy(text, "\xE2\x96\x81", 3); n = 3; }
    for (size_t i = 0; i < rlen; i++) {
        if (raw[i] == ' ') { memcpy(text + n, "\xE2\x96\x81", 3); n += 3; }
        else text[n++] = raw[i];
    }
    if (n == 0) return;
    if (n >= INT32_MAX) { w->oom = true; return; } /* symbol indices are 32-bit */
    if (!work_reserve_sym(w, (int64_t)n)) return;
    int32_t ns = 0;
    for (size_t off = 0; off < n;) {
        static const uint8_t lens[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
        size_t cl = lens[(uint8_t)text[off] >> 4];
        if (cl > n - off) cl = n - off;
        w->sym[ns] = (tok_sym_node){(int64_t)off, (int32_t)cl, ns - 1, off + cl == n ? -1 : ns + 1, -1};
        off += cl;
        ns++;
    }
    w->n_heap = 0;
    for (int32_t i = 1; i < ns; i++) spm_try_bigram(t, w, text, i - 1, i);
    while (w->n_heap > 0 && !w->oom) {
        tok_bigram b = heap_pop(w);
        tok_sym_node *L = &w->sym[b.left], *R = &w->sym[b.right];
        if (L->n == 0 || R->n == 0 || (uint32_t)(L->n + R->n) != b.size) continue;
        L->n += R->n;
        R->n = 0;
        L->next = R->next;
        if (R->next >= 0) w->sym[R->next].prev = b.left;
        spm_try_bigram(t, w, text, L->prev, b.left);
        spm_try_bigram(t, w, text, b.left, L->next);
    }
    for (int32_t i = 0; i != -1; i = w->sym[i].next) {
        const tok_sym_node *s = &w->sym[i];
        int32_t id = tok_lookup(t, text + s->start, (size_t)s->n);
        if (id >= 0 && id < t->n_vocab) {
            ids_push(out, id);
            continue;
        }
        for (int32_t j = 0; j < s->n; j++) {
            int32_t bt = t->byte_tok[(uint8_t)text[s->start + j]];
            if (bt < 0) bt = t->unk;
            if (bt >= 0) ids_push(out, bt);
        }
    }
}

/* --- BPE --- */

/* llama.cpp decodes text leniently (unicode_cpt_from_utf8: overlong forms
 * and surrogates pass, each undecodable byte becomes U+FFFD) and re-encodes
 * it. `real` gets those bytes; `rx` (same length) is what the regexes see:
 * surrogates, which PCRE2 rejects, are U+FFFD there (same class: not a
 * letter, number or space). Returns the length; *same is false when rx
 * differs from real. */
static size_t bpe_sanitize(const uint8_t *s, size_t n, char *real, char *rx, bool *differs) {
    size_t o = 0;
    *differs = false;
    for (size_t i = 0; i < n;) {
        uint8_t b = s[i];
        uint32_t cp = 0;
        size_t len = 0;
        if (b < 0x80) { cp = b; len = 1; }
        else if (!(b & 0x40)) len = 0;
        else if (!(b & 0x20)) {
            if (i + 1 < n && (s[i + 1] & 0xC0) == 0x80) { cp = ((uint32_t)(b & 0x1F) << 6) | (s[i + 1] & 0x3F); len = 2; }
        } else if (!(b & 0x10)) {
            if (i + 2 < n && (s[i + 1] & 0xC0) == 0x80 && (s[i + 2] & 0xC0) == 0x80) {
                cp = ((uint32_t)(b & 0x0F) << 12) | ((uint32_t)(s[i + 1] & 0x3F) << 6) | (s[i + 2] & 0x3F);
                len = 3;
            }
        } else if (!(b & 0x08)) {
            if (i + 3 < n && (s[i + 1] & 0xC0) == 0x80 && (s[i + 2] & 0xC0) == 0x80 && (s[i + 3] & 0xC0) == 0x80) {
                cp = ((uint32_t)(b & 0x07) << 18) | ((uint32_t)(s[i + 1] & 0x3F) << 12) |
                     ((uint32_t)(s[i + 2] & 0x3F) << 6) | (s[i + 3] & 0x3F);
                len = cp <= 0x10FFFF ? 4 : 0; /* llama.cpp would throw; treat as invalid */
            }
        }
        if (len == 0) { cp = 0xFFFD; len = 1; }
        size_t el = utf8_encode(cp, real + o);
        if (cp >= 0xD800 && cp <= 0xDFFF) {
            memcpy(rx + o, "\xEF\xBF\xBD", 3);
            *differs = true;
        } else {
            memcpy(rx + o, real + o, el);
        }
        o += el;
        i += len;
    }
    return o;
}

typedef struct tok_span {
    int64_t off, len;
} tok_span;

typedef struct tok_spans {
    tok_span *v;
    int64_t n, cap;
    bool oom;
} tok_spans;

static void spans_push(tok_spans *s, int64_t off, int64_t len) {
    if (len <= 0) return;
    if (s->n == s->cap) {
        int64_t nc = s->cap ? s->cap * 2 : 64;
        tok_span *nv = realloc(s->v, sizeof(tok_span) * (size_t)nc);
        if (!nv) { s->oom = true; return; }
        s->v = nv;
        s->cap = nc;
    }
    s->v[s->n++] = (tok_span){off, len};
}

/* split every span by one regex: matches and the gaps between them become
 * spans ("Isolated"); the regex sees each span as a whole subject */
static void regex_split(const ls_tokenizer *t, int ri, const char *rx, const tok_spans *in, tok_spans *out,
                        pcre2_match_data *md) {
    const pcre2_code *re = t->regex[ri];
    out->n = 0;
    for (int64_t k = 0; k < in->n && !out->oom; k++) {
        const char *subj = rx + in->v[k].off;
        PCRE2_SIZE len = (PCRE2_SIZE)in->v[k].len, pos = 0, last = 0;
        while (pos < len) {
            int rc = pcre2_match(re, (PCRE2_SPTR)subj, len, pos, PCRE2_NO_UTF_CHECK, md, t->mctx);
            if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
                rc = pcre2_match(re, (PCRE2_SPTR)subj, len, pos, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md, t->mctx);
            if (rc < 0 && rc != PCRE2_ERROR_NOMATCH) break; /* limits hit: the rest stays one piece */
            if (rc == PCRE2_ERROR_NOMATCH) break;
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
            PCRE2_SIZE ms = ov[0], me = ov[1];
            if (me <= ms) {
                /* empty match: step one character */
                pos = ms + 1;
                while (pos < len && ((uint8_t)subj[pos] & 0xC0) == 0x80) pos++;
                continue;
            }
            spans_push(out, in->v[k].off + (int64_t)last, (int64_t)(ms - last));
            spans_push(out, in->v[k].off + (int64_t)ms, (int64_t)(me - ms));
            last = pos = me;
        }
        spans_push(out, in->v[k].off + (int64_t)last, (int64_t)(len - last));
    }
}

static void bpe_add_bigram(const ls_tokenizer *t, tok_work *w, int32_t l, int32_t r) {
    if (l < 0 || r < 0) return;
    int32_t rank = pairmap_get(&t->pairs, w->sym[l].id, w->sym[r].id);
    if (rank < 0) return;
    tok_bigram b = {((uint64_t)(uint32_t)rank << 32) | (uint32_t)l, l, r, (uint32_t)(w->sym[l].n + w->sym[r].n)};
    heap_push(w, b);
}

/* byte-level encoding of word bytes into w->buf; returns its length */
static size_t bpe_encode_bytes(const ls_tokenizer *t, tok_work *w, const char *s, size_t n) {
    if (!work_reserve_buf(w, n * 2 + 1)) return 0;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) o += utf8_encode(t->byte_cp[(uint8_t)s[i]], w->buf + o);
    return o;
}

static void bpe_word(const ls_tokenizer *t, tok_work *w, const char *word, size_t n, tok_ids *out) {
    if (t->ignore_merges) {
        size_t el = bpe_encode_bytes(t, w, word, n);
        int32_t id = tok_lookup(t, w->buf, el);
        if (id >= 0 && id < t->n_vocab) {
            ids_push(out, id);
            return;
        }
    }
    if (n >= INT32_MAX) { w->oom = true; return; } /* symbol indices are 32-bit */
    if (!work_reserve_sym(w, (int64_t)n)) return;
    for (size_t i = 0; i < n; i++)
        w->sym[i] = (tok_sym_node){(int64_t)i, 1, (int32_t)i - 1, i + 1 == n ? -1 : (int32_t)i + 1,
                                   t->byte_sym[(uint8_t)word[i]]};
    w->n_heap = 0;
    for (size_t i = 1; i < n; i++) bpe_add_bigram(t, w, (int32_t)i - 1, (int32_t)i);
    while (w->n_heap > 0 && !w->oom) {
        tok_bigram b = heap_pop(w);
        tok_sym_node *L = &w->sym[b.left], *R = &w->sym[b.right];
        if (L->n == 0 || R->n == 0 || (uint32_t)(L->n + R->n) != b.size) continue;
        L->id = t->merge_res[b.key >> 32];
        L->n += R->n;
        R->n = 0;
        L->next = R->next;
        if (R->next >= 0) w->sym[R->next].prev = b.left;
        bpe_add_bigram(t, w, L->prev, b.left);
        bpe_add_bigram(t, w, b.left, L->next);
    }
    for (int32_t i = 0; i != -1; i = w->sym[i].next) {
        const tok_sym_node *s = &w->sym[i];
        if (s->id >= 0 && s->id < t->n_vocab) {
            ids_push(out, s->id);
            continue;
        }
        /* not a token (only with inconsistent merges): single-byte pieces of
         * the encoded text that are tokens, as llama.cpp */
        char enc[8];
        for (int32_t j = 0; j < s->n; j++) {
            size_t el = utf8_encode(t->byte_cp[(uint8_t)word[s->start + j]], enc);
            for (size_t k = 0; k < el; k++) {
                int32_t id = tok_lookup(t, enc + k, 1);
                if (id >= 0 && id < t->n_vocab) ids_push(out, id);
            }
        }
    }
}

static void bpe_encode(const ls_tokenizer *t, tok_work *w, const char *raw, size_t rlen, tok_ids *out) {
    char *real = malloc(rlen * 3 + 4), *rx = malloc(rlen * 3 + 4);
    pcre2_match_data *md = pcre2_match_data_create(1, NULL);
    tok_spans a = {0}, b = {0};
    if (!real || !rx || !md) { w->oom = true; goto done; }
    bool differs;
    size_t n = bpe_sanitize((const uint8_t *)raw, rlen, real, rx, &differs);
    spans_push(&a, 0, (int64_t)n);
    for (int ri = 0; ri < t->n_regex && !a.oom && !b.oom; ri++) {
        regex_split(t, ri, differs ? rx : real, &a, &b, md);
        tok_spans tmp = a;
        a = b;
        b = tmp;
    }
    if (a.oom || b.oom) { w->oom = true; goto done; }
    for (int64_t k = 0; k < a.n && !w->oom; k++) bpe_word(t, w, real + a.v[k].off, (size_t)a.v[k].len, out);
done:
    free(real);
    free(rx);
    free(a.v);
    free(b.v);
    pcre2_match_data_free(md);
}

/* --- special tokens: llama.cpp's tokenizer_st_partition --- */

typedef struct tok_frag {
    int64_t off, len;
    int32_t tok;     /* -1: raw text */
} tok_frag;

typedef struct tok_frags {
    tok_frag *v;
    int64_t n, cap;
    bool oom;
} tok_frags;

static void frags_push(tok_frags *f, int64_t off, int64_t len, int32_t tok) {
    if (f->n == f->cap) {
        int64_t nc = f->cap ? f->cap * 2 : 16;
        tok_frag *nv = realloc(f->v, sizeof(tok_frag) * (size_t)nc);
        if (!nv) { f->oom = true; return; }
        f->v = nv;
        f->cap = nc;
    }
    f->v[f->n++] = (tok_frag){off, len, tok};
}

static void partition_specials(const ls_tokenizer *t, const char *text, size_t len, bool parse_special,
                               tok_frags *cur) {
    bool present[256] = {false};
    for (size_t i = 0; i < len; i++) present[(uint8_t)text[i]] = true;
    tok_frags next = {0};
    for (int32_t k = 0; k < t->n_special && !cur->oom; k++) {
        int32_t id = t->special[k];
        int ty = t->type[id];
        if (!parse_special && (ty == LS_TOKT_CONTROL || ty == LS_TOKT_UNKNOWN)) continue;
        const char *sp = t->sym[id];
        size_t sl = t->sym_len[id];
        if (sl > len || !present[(uint8_t)sp[0]]) continue;
        bool any = false;
        next.n = 0;
        for (int64_t f = 0; f < cur->n; f++) {
            tok_frag fr = cur->v[f];
            if (fr.tok >= 0 || (size_t)fr.len < sl) {
                frags_push(&next, fr.off, fr.len, fr.tok);
                continue;
            }
            int64_t pos = fr.off, end = fr.off + fr.len;
            for (;;) {
                const char *m = memmem(text + pos, (size_t)(end - pos), sp, sl);
                if (!m) break;
                int64_t mo = m - text;
                any = true;
                if (mo > pos) frags_push(&next, pos, mo - pos, -1);
                frags_push(&next, mo, (int64_t)sl, id);
                pos = mo + (int64_t)sl;
            }
            if (pos < end) frags_push(&next, pos, end - pos, -1);
        }
        if (next.oom) { cur->oom = true; break; }
        if (any) {
            tok_frags tmp = *cur;
            *cur = next;
            next = tmp;
        }
    }
    free(next.v);
}

int64_t ls_tokenize(const ls_tokenizer *t, const char *text, size_t len, bool add_bos, bool parse_special,
                    int32_t *ids, int64_t cap) {
    tok_ids out = {0};
    tok_work w = {0};
    tok_frags frags = {0};
    if (add_bos && t->bos >= 0) ids_push(&out, t->bos);
    if (len > 0 && text) {
        frags_push(&frags, 0, (int64_t)len, -1);
        partition_specials(t, text, len, parse_special, &frags);
        for (int64_t f = 0; f < frags.n && !out.oom && !w.oom && !frags.oom; f++) {
            const tok_frag *fr = &frags.v[f];
            if (fr->tok >= 0) ids_push(&out, fr->tok);
            else if (t->kind == LS_TOK_SPM) spm_encode(t, &w, text + fr->off, (size_t)fr->len, &out);
            else bpe_encode(t, &w, text + fr->off, (size_t)fr->len, &out);
        }
    }
    int64_t n = out.n;
    bool oom = out.oom || w.oom || frags.oom;
    if (!oom && n <= cap && ids && n > 0) memcpy(ids, out.v, sizeof(int32_t) * (size_t)n);
    free(out.v);
    free(w.sym);
    free(w.heap);
    free(w.buf);
    free(frags.v);
    if (oom) return INT64_MIN; /* out of memory (or a > 2 GB piece): no sensible count */
    return n <= cap ? n : -n;
}

/* ------------------------------------------------------------- decoding */

/* the bytes of a token; *len set; NULL for an invalid id */
static const char *token_bytes(const ls_tokenizer *t, int32_t id, bool render_special, size_t *len) {
    if (id < 0 || id >= t->n_vocab) { *len = 0; return NULL; }
    int ty = t->type[id];
    if (render_special && (ty == LS_TOKT_CONTROL || ty == LS_TOKT_UNKNOWN)) {
        *len = t->sym_len[id];
        return t->sym[id];
    }
    *len = (size_t)(t->dec_off[id + 1] - t->dec_off[id]);
    return t->dec + t->dec_off[id];
}

int64_t ls_token_to_bytes(const ls_tokenizer *t, int32_t id, bool render_special, char *buf, int64_t cap) {
    size_t len;
    const char *p = token_bytes(t, id, render_special, &len);
    if (!p) return 0;
    if ((int64_t)len > cap) return -(int64_t)len;
    if (len) memcpy(buf, p, len);
    return (int64_t)len;
}

/* SentencePiece drops the space it added: the first token that produces
 * text loses one leading space */
static bool strip_first_space(const ls_tokenizer *t) { return t->kind == LS_TOK_SPM && t->add_space_prefix; }

int64_t ls_detokenize(const ls_tokenizer *t, const int32_t *ids, int64_t n, bool render_special, char *buf,
                      int64_t cap) {
    int64_t total = 0;
    bool first = strip_first_space(t);
    for (int64_t i = 0; i < n; i++) {
        size_t len;
        const char *p = token_bytes(t, ids[i], render_special, &len);
        if (!p || len == 0) continue;
        if (first) {
            first = false;
            if (p[0] == ' ') { p++; len--; }
        }
        if (buf && total + (int64_t)len < cap) memcpy(buf + total, p, len);
        total += (int64_t)len;
    }
    if (!buf || total + 1 > cap) return -(total + 1);
    buf[total] = 0;
    return total;
}

void ls_detok_stream_init(ls_detok_stream *s, const ls_tokenizer *t, bool render_special) {
    memset(s, 0, sizeof *s);
    s->tok = t;
    s->render_special = render_special;
    s->first = strip_first_space(t);
}

/* Length of the valid or invalid unit at s[0..n): >0 a whole character of
 * that many bytes; <0 an invalid sequence of -that many bytes (the maximal
 * subpart, replaced by one U+FFFD); 0 when it may still complete. */
static int utf8_unit(const uint8_t *s, size_t n) {
    uint8_t b = s[0];
    if (b < 0x80) return 1;
    int need;
    uint8_t lo = 0x80, hi = 0xBF;
    if (b >= 0xC2 && b <= 0xDF) need = 1;
    else if (b == 0xE0) { need = 2; lo = 0xA0; }
    else if (b >= 0xE1 && b <= 0xEC) need = 2;
    else if (b == 0xED) { need = 2; hi = 0x9F; }
    else if (b >= 0xEE && b <= 0xEF) need = 2;
    else if (b == 0xF0) { need = 3; lo = 0x90; }
    else if (b >= 0xF1 && b <= 0xF3) need = 3;
    else if (b == 0xF4) { need = 3; hi = 0x8F; }
    else return -1;
    for (int i = 1; i <= need; i++) {
        if ((size_t)i >= n) return 0;
        uint8_t c = s[i];
        if (c < lo || c > hi) return -i;
        lo = 0x80;
        hi = 0xBF;
    }
    return need + 1;
}

/* append the complete part of pend[0..n) to out; returns bytes consumed,
 * *o advanced. At `final`, an incomplete tail is replaced too. */
static size_t emit_valid(const uint8_t *pend, size_t n, bool final, char *out, int64_t *o) {
    size_t i = 0;
    while (i < n) {
        int u = utf8_unit(pend + i, n - i);
        if (u == 0) {
            if (!final) break;
            u = -(int)(n - i);
        }
        if (u > 0) {
            if (out) memcpy(out + *o, pend + i, (size_t)u);
            *o += u;
            i += (size_t)u;
        } else {
            if (out) memcpy(out + *o, "\xEF\xBF\xBD", 3);
            *o += 3;
            i += (size_t)(-u);
        }
    }
    return i;
}

int64_t ls_detok_stream_push(ls_detok_stream *s, int32_t id, char *out, int64_t cap) {
    size_t len;
    const char *p = token_bytes(s->tok, id, s->render_special, &len);
    bool strip = false;
    if (p && len > 0 && s->first && p[0] == ' ') strip = true;
    if (!p) len = 0;
    if (strip) { p++; len--; }
    /* pending (<= 3 bytes) + token bytes */
    size_t n = (size_t)s->n_pending + len;
    uint8_t stackbuf[256];
    uint8_t *tmp = n <= sizeof stackbuf ? stackbuf : malloc(n);
    if (!tmp) return 0;
    memcpy(tmp, s->pending, (size_t)s->n_pending);
    if (len) memcpy(tmp + s->n_pending, p, len);
    int64_t need = 0;
    size_t used = emit_valid(tmp, n, false, NULL, &need);
    if (need + 1 > cap) {
        if (tmp != stackbuf) free(tmp);
        return -(need + 1);
    }
    int64_t o = 0;
    emit_valid(tmp, n, false, out, &o);
    out[o] = 0;
    s->n_pending = (int)(n - used);
    memcpy(s->pending, tmp + used, (size_t)s->n_pending);
    if (p && len + (strip ? 1 : 0) > 0) s->first = false;
    if (tmp != stackbuf) free(tmp);
    return o;
}

int64_t ls_detok_stream_flush(ls_detok_stream *s, char *out, int64_t cap) {
    int64_t need = 0;
    emit_valid(s->pending, (size_t)s->n_pending, true, NULL, &need);
    if (need + 1 > cap) return -(need + 1);
    int64_t o = 0;
    emit_valid(s->pending, (size_t)s->n_pending, true, out, &o);
    out[o] = 0;
    s->n_pending = 0;
    return o;
}

/* ------------------------------------------------------------ accessors */

ls_tok_kind ls_tokenizer_kind(const ls_tokenizer *t) { return t->kind; }
int32_t ls_tokenizer_n_vocab(const ls_tokenizer *t) { return t->n_vocab; }
int32_t ls_tokenizer_bos(const ls_tokenizer *t) { return t->bos; }
int32_t ls_tokenizer_eos(const ls_tokenizer *t) { return t->eos; }
int32_t ls_tokenizer_unk(const ls_tokenizer *t) { return t->unk; }
bool ls_tokenizer_add_bos(const ls_tokenizer *t) { return t->add_bos; }
bool ls_tokenizer_add_eos(const ls_tokenizer *t) { return t->add_eos; }
bool ls_tokenizer_add_space_prefix(const ls_tokenizer *t) { return t->add_space_prefix; }
bool ls_tokenizer_ignore_merges(const ls_tokenizer *t) { return t->ignore_merges; }
const char *ls_tokenizer_pre(const ls_tokenizer *t) { return t->pre; }

bool ls_tokenizer_is_eog(const ls_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_vocab && (t->flags[id] & TOKF_EOG);
}

const char *ls_tokenizer_piece(const ls_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_vocab ? t->sym[id] : NULL;
}

size_t ls_tokenizer_piece_len(const ls_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_vocab ? t->sym_len[id] : 0;
}

float ls_tokenizer_score(const ls_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_vocab ? t->score[id] : 0.0f;
}

ls_tok_type ls_tokenizer_token_type(const ls_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_vocab ? (ls_tok_type)t->type[id] : (ls_tok_type)0;
}

int32_t ls_tokenizer_find(const ls_tokenizer *t, const char *text, size_t len) {
    int32_t id = tok_lookup(t, text, len);
    return id < t->n_vocab ? id : -1;
}

int32_t ls_tokenizer_n_merges(const ls_tokenizer *t) { return t->n_merges; }

bool ls_tokenizer_merge(const ls_tokenizer *t, int32_t i, const char **a, const char **b) {
    if (i < 0 || i >= t->n_merges) return false;
    *a = t->sym[t->merge_a[i]];
    *b = t->sym[t->merge_b[i]];
    return true;
}

int ls_tokenizer_n_pretok_regex(const ls_tokenizer *t) { return t->n_regex; }

const char *ls_tokenizer_pretok_regex(const ls_tokenizer *t, int i) {
    return i >= 0 && i < t->n_regex ? t->regex_src[i] : NULL;
}
