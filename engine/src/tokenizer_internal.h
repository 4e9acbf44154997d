/* tokenizer_internal.h: the tokenizer object shared by the encoder/decoder
 * (tokenizer.c) and the two loaders (GGUF in tokenizer.c, Hugging Face
 * tokenizer.json in tokenizer_json.c). A loader allocates with tok_new, fills
 * tokens/merges/flags, then calls tok_finish, which builds every lookup table.
 *
 * Symbols: ids [0, n_vocab) are tokens; BPE merges may name strings that are
 * not tokens (a GGUF is not validated like a tokenizer.json), which get
 * "virtual" ids [n_vocab, n_sym) so merging works on ids while behaving like
 * llama.cpp's string-based merging. */
#ifndef LS_TOKENIZER_INTERNAL_H
#define LS_TOKENIZER_INTERNAL_H

#include "layerskip/tokenizer.h"

#include <stdio.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#define TOK_MAX_VOCAB (1 << 24)
#define TOK_MAX_REGEX 8

/* per-token flag bits (tok->flags) */
enum {
    TOKF_EOG = 1,      /* ends generation */
    TOKF_NOMERGE = 2,  /* SPM from tokenizer.json: no merge produces this token */
};

/* open-addressing hash from byte strings to symbol ids */
typedef struct tok_strmap {
    uint32_t cap;      /* power of two */
    uint32_t n;
    int32_t *slot;     /* -1 = empty */
    uint32_t *hash;
} tok_strmap;

/* open-addressing hash from (left id, right id) to merge index */
typedef struct tok_pairmap {
    uint32_t cap;
    uint32_t n;
    uint64_t *key;     /* UINT64_MAX = empty */
    int32_t *val;
} tok_pairmap;

/* bump allocator for symbol strings (NUL-terminated copies) */
typedef struct tok_arena {
    char **blocks;
    int n_blocks, cap_blocks;
    size_t used, block_size;
} tok_arena;

struct ls_tokenizer {
    ls_tok_kind kind;
    char *name;               /* file name for messages */
    char *pre;                /* pre-tokenizer name ("llama-bpe", "smollm", "gpt2", "custom", "") */

    int32_t n_vocab;
    int32_t n_sym;            /* n_vocab + virtual merge strings */
    int32_t cap_sym;
    const char **sym;         /* symbol text (arena, NUL-terminated) */
    uint32_t *sym_len;
    float *score;             /* n_vocab */
    uint8_t *type;            /* n_vocab, ls_tok_type (0 = undefined) */
    uint8_t *flags;           /* n_vocab, TOKF_* */
    tok_arena arena;
    tok_strmap map;           /* text -> symbol id (tokens and virtual strings) */
    uint32_t max_token_len;

    /* BPE merges in rank order */
    int32_t n_merges, cap_merges;
    int32_t *merge_a, *merge_b, *merge_res; /* symbol ids */
    tok_pairmap pairs;        /* (a, b) -> first rank */
    bool ignore_merges;       /* a pre-token that is a whole token skips merging */

    /* pre-tokenizer regexes, applied in sequence (BPE) */
    int n_regex;
    char *regex_src[TOK_MAX_REGEX];
    pcre2_code *regex[TOK_MAX_REGEX];
    pcre2_match_context *mctx;

    bool add_space_prefix;    /* SPM: prefix "▁" to each text fragment */
    bool add_bos, add_eos;
    int32_t bos, eos, unk, eot, eom;

    /* special tokens matched in raw text (control, user-defined, unknown),
     * longest first */
    int32_t n_special;
    int32_t *special;

    int32_t byte_tok[256];    /* byte -> token for byte fallback (-1 none) */
    /* GPT-2 byte <-> code point table */
    uint16_t byte_cp[256];
    int16_t cp_byte[512];     /* code point < 512 -> byte, -1 none */
    int32_t byte_sym[256];    /* BPE: symbol id of the encoded byte (-1 none) */

    /* decoded bytes of every token (render_special = false view) */
    char *dec;
    uint64_t *dec_off;        /* n_vocab + 1 */
};

ls_tokenizer *tok_new(ls_tok_kind kind, int32_t n_vocab, const char *name);
/* set token id's text; returns false on out-of-memory */
bool tok_set_token(ls_tokenizer *t, int32_t id, const char *text, size_t len, float score, int type);
/* symbol id of a string, interning it as a virtual symbol when absent and
 * `intern`; -1 when absent (or out of memory) */
int32_t tok_sym(ls_tokenizer *t, const char *s, size_t len, bool intern);
int32_t tok_lookup(const ls_tokenizer *t, const char *s, size_t len);
/* append a merge of two symbols; the result is interned */
bool tok_add_merge(ls_tokenizer *t, int32_t a, int32_t b);
/* add a pre-tokenizer regex (copied) */
ls_status tok_add_regex(ls_tokenizer *t, const char *src, ls_err *err);
/* standard regex sets by llama.cpp pre-tokenizer name; sets ignore_merges */
ls_status tok_set_pre(ls_tokenizer *t, const char *pre, ls_err *err);
/* build the text -> id map once every token is set (before merges) */
bool tok_index(ls_tokenizer *t);
/* everything else: specials, EOG set, byte tables, decode cache */
ls_status tok_finish(ls_tokenizer *t, ls_err *err);
/* "<0xNN>" byte-fallback piece */
bool tok_parse_byte_token(const char *s, size_t len, uint8_t *out);
/* mark end-of-generation tokens by llama.cpp's text list */
void tok_mark_eog_by_text(ls_tokenizer *t);

extern const char *const tok_regex_gpt2;
extern const char *const tok_regex_llama3;
extern const char *const tok_regex_llama3_hf;

/* a whole file, NUL-terminated (*len bytes before the NUL); NULL with
 * *st = LS_ERR_MISSING when it does not exist, else the error in err */
char *ls_read_all(const char *path, size_t *len, ls_status *st, ls_err *err);

#endif
